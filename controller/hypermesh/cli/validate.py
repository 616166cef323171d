"""``hmctl validate`` and ``hmctl version``: kept light (no database, no QUIC) so that they start
fast in editors, hooks and CI."""

from __future__ import annotations

import argparse
import sys

from hypermesh import API_VERSION, __version__
from hypermesh.cli.common import nothing_declared
from hypermesh.cli.render import error
from hypermesh.model.advice import warnings
from hypermesh.model.loader import load
from hypermesh.model.validate import build


def validate(args: argparse.Namespace) -> int:
    loaded = load(args.files, sys.stdin.buffer)
    desired, problems = build(loaded)
    if not problems and not len(desired):
        problems = nothing_declared(loaded.files)
    for problem in problems:
        sys.stderr.write(f"{problem}\n")
    if problems:
        n = len(problems)
        error(f"{n} problem{'s' if n != 1 else ''} found")
        return 1
    for warning in warnings(desired):
        sys.stderr.write(f"{warning}\n")
    kinds: dict[str, int] = {}
    for resource in desired:
        kinds[resource.kind] = kinds.get(resource.kind, 0) + 1
    counts = ", ".join(f"{n} {k}" for k, n in kinds.items())
    print(f"valid: {len(desired)} resources ({counts}) in {len(loaded.files)} file(s)")
    return 0


def version(args: argparse.Namespace) -> int:
    print(f"hmctl {__version__} (API {API_VERSION}, Python {sys.version.split()[0]})")
    return 0
