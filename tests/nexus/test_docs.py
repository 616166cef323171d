"""docs/nexus.md carries the grammar exactly as the package ships it, and its examples compile."""

from __future__ import annotations

import re

from hypermesh.nexus.compiler import compile_source
from hypermesh.nexus.parser import grammar_text, parse
from tests.conftest import ROOT

DOC = (ROOT / "docs" / "nexus.md").read_text()


def test_the_documented_grammar_is_the_shipped_grammar() -> None:
    found = re.search(r"```lark\n(.*?)```", DOC, re.S)
    assert found is not None
    assert found.group(1).strip() == grammar_text().strip()


def test_the_first_example_compiles() -> None:
    found = re.search(r"## Design choices", DOC)
    assert found is not None
    example = re.search(r"```\n(# A private network.*?)```", DOC, re.S)
    assert example is not None
    compiled = compile_source(example.group(1), "demo.nx")
    assert compiled.ok, compiled.problems
    assert [d["kind"] for d in compiled.manifests] == ["Network", *["Node"] * 4]


def test_the_handler_and_template_examples_parse() -> None:
    blocks = re.findall(r"```[a-z]*\n(.*?)```", DOC, re.S)
    snippets = [b for b in blocks if b.startswith(("on message", "def mirrors"))]
    assert len(snippets) == 2
    for snippet in snippets:
        parse(snippet, "doc.nx")
