"""Nexus: a small language for HyperMesh networks and mesh applications.

A program declares networks, nodes, peers, TLDs, records and policies (compiled to the manifest
kinds, checked by the project's own validator, with a source map back to the program) and
handlers (checked and kept for ``nexus run``). The language is specified in docs/nexus.md.

    from hypermesh.nexus import compile_file, to_yaml

    compiled = compile_file("network.nx")
    if compiled.problems:            # each: FILE:LINE:COL: message
        ...
    text = to_yaml(compiled.documents)
"""

from hypermesh.nexus.compiler import (
    Compiled,
    Handler,
    compile_file,
    compile_program,
    compile_source,
    to_yaml,
)
from hypermesh.nexus.errors import NexusError
from hypermesh.nexus.formatter import format_source
from hypermesh.nexus.parser import parse

__all__ = [
    "Compiled",
    "Handler",
    "NexusError",
    "compile_file",
    "compile_program",
    "compile_source",
    "format_source",
    "parse",
    "to_yaml",
]
