"""``nexus fmt``: canonical, idempotent, and meaning-preserving.

Properties, on programs hypothesis generates with random spacing, line breaks and comments:
fmt(fmt(x)) == fmt(x), and compile(fmt(x)) == compile(x) (the same manifests, handlers and
problem messages). Every golden program and example is already in canonical form.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hypermesh.nexus.cli import main
from hypermesh.nexus.compiler import Compiled, compile_source
from hypermesh.nexus.formatter import format_source
from tests.conftest import EXAMPLES
from tests.nexus.conftest import GOLDEN

CANONICAL = [*sorted(GOLDEN.rglob("*.nx")), *sorted((EXAMPLES / "nexus-quickstart").glob("*.nx"))]

# -- a generator of programs, as token lists joined by random whitespace and comments ---------

SEPARATORS = st.sampled_from([" ", " ", " ", "  ", "\n", "\n  ", "\n\n", "  # note\n", "\n# c\n"])
WORDS = st.sampled_from(["alpha", "beta", "eu", "x", "db-1", "A B"])


@st.composite
def int_expr(draw: st.DrawFn, depth: int = 0) -> list[str]:
    choice = draw(st.integers(0, 5 if depth < 2 else 1))
    if choice == 0:
        return [str(draw(st.integers(0, 50)))]
    if choice == 1:
        return ["n"]
    if choice in (2, 3):
        op = draw(st.sampled_from(["+", "-", "*", "%"]))
        right = draw(int_expr(depth + 1)) if op != "%" else [str(draw(st.integers(1, 9)))]
        return ["(", *draw(int_expr(depth + 1)), op, *right, ")"]
    if choice == 4:
        return ["-", *draw(int_expr(depth + 1))]
    return ["len", "(", *draw(list_expr(depth + 1)), ")"]


@st.composite
def str_expr(draw: st.DrawFn, depth: int = 0) -> list[str]:
    choice = draw(st.integers(0, 3 if depth < 2 else 0))
    if choice == 0:
        word = draw(WORDS)
        return [f'"{word}"' if draw(st.booleans()) else f'"{word}-${{n}}"']
    if choice == 1:
        return ["lower", "(", *draw(str_expr(depth + 1)), ")"]
    if choice == 2:
        return [*draw(str_expr(depth + 1)), "+", *draw(str_expr(depth + 1))]
    return ["format", "(", '"{}/{}"', ",", *draw(int_expr(depth + 1)), ",", '"x"', ")"]


@st.composite
def list_expr(draw: st.DrawFn, depth: int = 0) -> list[str]:
    items = draw(st.lists(str_expr(depth + 1), max_size=4))
    out = ["["]
    for i, item in enumerate(items):
        out += item + ([","] if i < len(items) - 1 or draw(st.booleans()) else [])
    return [*out, "]"]


@st.composite
def bool_expr(draw: st.DrawFn) -> list[str]:
    left = draw(int_expr(1))
    op = draw(
        st.sampled_from(
            [
                "==",
                "!=",
                "<",
                ">=",
            ]
        )
    )
    out = [*left, op, *draw(int_expr(1))]
    if draw(st.booleans()):
        out = ["not", "(", *out, ")"]
    if draw(st.booleans()):
        out += [draw(st.sampled_from(["and", "or"])), "true"]
    return out


@st.composite
def node_body(draw: st.DrawFn) -> list[str]:
    body = ["network", "=", '"net"', "listen", "=", '"127.0.0.1:0"']
    if draw(st.booleans()):
        body += ["tags", "=", *draw(list_expr())]
    if draw(st.booleans()):
        body += ["chain", "{", "witnesses", "=", *draw(int_expr(1)), "}"]
    if draw(st.booleans()):
        body += ["if", *draw(bool_expr()), "{", "labels", "=", "{", "k", ":"]
        body += [*draw(str_expr()), "}", "}", "else", "{", "}"]
    return body


@st.composite
def programs(draw: st.DrawFn) -> str:
    tokens = ["let", "n", "=", str(draw(st.integers(0, 9)))]
    tokens += ["let", "s", "=", *draw(str_expr())]
    tokens += ["network", '"net"', "{", "mode", "=", '"public"', "description", "=", "s", "}"]
    for index in range(draw(st.integers(0, 3))):
        kind = draw(st.integers(0, 2))
        if kind == 0:
            tokens += ["node", f'"plain-{index}"', "{", *draw(node_body()), "}"]
        elif kind == 1:
            count = str(draw(st.integers(0, 3)))
            tokens += ["for", "i", "in", "range", "(", count, ")", "{"]
            tokens += ["node", f'"loop-{index}-${{i}}"', "{", *draw(node_body()), "}", "}"]
        else:
            tokens += ["let", f"v{index}", "=", *draw(list_expr())]
    if draw(st.booleans()):
        tokens += ["on", "schedule", "every", '"5m"', "at", '"plain-0"', "{"]
        tokens += ["log", "(", *draw(str_expr()), ")", "}"]
    text = ""
    for token in tokens:
        text += token + draw(SEPARATORS)
    return text


def summary(compiled: Compiled) -> tuple[object, ...]:
    return (
        compiled.manifests,
        [(h.event, dict(h.params)) for h in compiled.handlers],
        [p.message for p in compiled.problems],
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_fmt_is_idempotent_and_keeps_meaning(text: str) -> None:
    once = format_source(text)
    assert format_source(once) == once
    assert summary(compile_source(once, "p.nx")) == summary(compile_source(text, "p.nx"))


@settings(max_examples=150, deadline=None)
@given(programs())
def test_fmt_keeps_every_comment(text: str) -> None:
    once = format_source(text)
    assert once.count("# note") == text.count("# note")
    assert once.count("# c") == text.count("# c")


@pytest.mark.parametrize("path", CANONICAL, ids=[p.name for p in CANONICAL])
def test_shipped_programs_are_canonical(path: Path) -> None:
    text = path.read_text()
    assert format_source(text) == text


def test_layout_rules() -> None:
    ugly = (
        "# top\n\n\n"
        'let   x=[1,2 ,3]   # numbers\nnetwork "n" { mode="public"  registry {\n'
        'node = "r" } }\nif not x[0]==1 { let y = "a" } else if true {} else { # empty\n}\n'
    )
    assert format_source(ugly) == (
        "# top\n\n"
        "let x = [1, 2, 3]  # numbers\n"
        'network "n" {\n  mode = "public"\n  registry { node = "r" }\n}\n'
        "if not (x[0] == 1) {\n"
        '  let y = "a"\n'
        "} else if true {\n"
        "} else {\n"
        "  # empty\n"
        "}\n"
    )


def test_long_lists_break_one_item_a_line() -> None:
    items = ", ".join(f'"item-number-{i}"' for i in range(8))
    text = format_source(f"let xs = [{items}]\n")
    assert text.splitlines()[1] == '  "item-number-0",'
    assert text.splitlines()[-1] == "]"


def test_fmt_cli_check_and_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a.nx"
    path.write_text("let   x = 1\n")
    assert main(["fmt", "--check", str(path)]) == 1
    assert "would be reformatted" in capsys.readouterr().err
    assert main(["fmt", str(path)]) == 0
    assert path.read_text() == "let x = 1\n"
    assert main(["fmt", "--check", str(path)]) == 0


def test_fmt_refuses_a_program_that_does_not_parse(tmp_path: Path) -> None:
    path = tmp_path / "bad.nx"
    path.write_text("let x = \n")
    assert main(["fmt", str(path)]) == 1
    assert path.read_text() == "let x = \n"
