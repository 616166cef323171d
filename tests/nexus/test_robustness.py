"""Whatever the text, Nexus reports problems and never crashes: the language server sees every
half-typed program, so parse, compile, fmt, completion and hover are fuzzed with hypothesis."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hypermesh.nexus.compiler import compile_source
from hypermesh.nexus.errors import NexusError
from hypermesh.nexus.formatter import format_source
from hypermesh.nexus.lsp import completions, hover_text

PIECES = st.sampled_from(
    [
        "network", "node", "tld", "record", "policy", "peer", "let", "for", "in", "if", "else",
        "def", "on", "as", "import", "git", "rev", "message", "to", "and", "not", "x", "i",
        "range(3)", '"a"', '"${i}"', '"${', "}", "{", "[", "]", "(", ")", "=", ",", ":", ".",
        "+", "-", "*", "/", "==", "<", "1", "0", "\n", " ", "# c\n", '"', "\\", "$", "mode",
        "registry", "rule", '"r"', "true", "log(", "send", "lib.", "@", "\t",
    ]
)  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(PIECES, max_size=40).map(" ".join))
def test_nothing_crashes(text: str) -> None:
    compiled = compile_source(text, "fuzz.nx")
    for problem in compiled.problems:
        assert problem.position.line >= 1 and problem.position.column >= 1
    try:
        formatted = format_source(text)
    except NexusError:
        pass
    else:
        assert format_source(formatted) == formatted
    lines = text.split("\n")
    completions(text, len(lines) - 1, len(lines[-1]))
    hover_text(text, 0, min(3, len(lines[0])))


def test_deep_nesting_is_a_problem_not_a_crash() -> None:
    assert compile_source("let x = " + "(" * 5000 + "1" + ")" * 5000, "p.nx").ok
    text = "let x = " + "[" * 5000 + "1" + "]" * 5000 + "\n"
    compiled = compile_source(text, "deep.nx")
    assert [str(p) for p in compiled.problems] == [
        "deep.nx:1:1: nested too deeply: split the expression with let"
    ]
    for depth in (300, 5000):
        deep = "let x = " + "[" * depth + "1" + "]" * depth + "\n"
        try:
            format_source(deep)
        except NexusError as exc:
            assert "nested too deeply" in str(exc)
