"""The language's semantics, one rule a test: values, operators, scoping, loops, templates,
blocks, and what each declaration becomes."""

from __future__ import annotations

from typing import Any

import pytest

from hypermesh.nexus.compiler import compile_source

NET = 'network "n" {\n  mode = "public"\n}\n'


def values(text: str) -> dict[str, Any]:
    """Compile ``text`` and return the description of network "v", evaluated as a map of lets.

    Each program ends by putting what it wants checked into ``description`` as text."""
    compiled = compile_source(text, "t.nx", validate=False)
    assert compiled.ok, compiled.problems
    return {d["metadata"]["name"]: d["spec"] for d in compiled.manifests}


def describe(expr: str, prelude: str = "") -> str:
    spec = values(f'{prelude}\nnetwork "v" {{\n  mode = "public"\n  description = {expr}\n}}\n')
    return str(spec["v"]["description"])


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('"${1 + 2 * 3}"', "7"),
        ('"${(1 + 2) * 3}"', "9"),
        ('"${7 / 2} ${-7 / 2} ${7 % 3}"', "3 -4 1"),
        ('"${1 < 2 and not (2 < 1) or false}"', "true"),
        ('"${"b" in ["a", "b"]} ${"ell" in "hello"} " + str("k" in {k: 1})', "true true true"),
        (
            'join([str([1] in {k: 1}), str(1 in {k: 1}), str([1] in [[1]])], " ")',
            "false false true",
        ),
        ('join(["a", "b"] + ["c"], "-")', "a-b-c"),
        ('format("{}:{}", "h", 80)', "h:80"),
        ('str(len({a: 1, b: 2})) + "${upper("x")}${lower("Y")}"', "2Xy"),
        ('join(split("a.b.c", "."), "/")', "a/b/c"),
        ("str(({a: 1} + {a: 2, b: 3}).a)", "2"),
        ('"${[10, 20, 30][-1]}"', "30"),
        ('"${int("42") + 1}"', "43"),
        ('replace("a-b", "-", "_")', "a_b"),
        ('"\\$${1}\\"q\\""', '$1"q"'),
        ('join(keys({z: 1, a: 2}), "")', "za"),
        ('join(range(3), ",") + "|" + join(range(1, 7, 2), ",")', "0,1,2|1,3,5"),
    ],
)
def test_expressions(expr: str, expected: str) -> None:
    assert describe(expr) == expected


def test_and_or_short_circuit() -> None:
    assert describe('"${false and missing_name_is_not_evaluated}"') == "false"


def test_shadowing_and_loop_scopes() -> None:
    prelude = 'let x = "outer"\nlet out = [x]\n'
    text = (
        prelude
        + 'for x in ["a", "b"] {\n  node "n-${x}" {\n    let y = x\n    network = y\n  }\n}\n'
    )
    spec = values(NET + text)
    assert spec["n-a"]["network"] == "a" and spec["n-b"]["network"] == "b"


def test_map_loops_keep_written_order() -> None:
    text = 'for k, v in {b: 2, a: 1} {\n  node "n-${k}-${v}" {\n    network = "n"\n  }\n}\n'
    assert list(values(NET + text)) == ["n", "n-b-2", "n-a-1"]


def test_template_sees_its_definition_scope_not_the_callers() -> None:
    text = (
        'let where = "definition"\n'
        "def t(name) {\n  node name {\n    network = where\n  }\n}\n"
        'for where in ["caller"] {\n  t("x")\n}\n'
    )
    assert values(NET + text)["x"]["network"] == "definition"


def test_metadata_fields_and_tld_records() -> None:
    text = (
        'tld "acme" {\n  namespace = "team"\n  network = "n"\n  owner { node = "a" }\n'
        '  labels { tier = "gold" }\n  record "www" {\n    target { node = "a" }\n  }\n}\n'
    )
    compiled = compile_source(NET + text, "t.nx", validate=False)
    tld, record = compiled.manifests[1:]
    assert tld["metadata"] == {"name": "acme", "namespace": "team", "labels": {"tier": "gold"}}
    assert record["metadata"] == {"name": "www.acme", "namespace": "team"}
    assert record["spec"] == {"tld": "acme", "target": {"node": "a"}}


def test_labelled_blocks_in_loops_append_items() -> None:
    text = (
        'policy "p" {\n  network = "n"\n  interface = "public"\n'
        '  for op in ["dns.query", "chain.read"] {\n'
        '    rule "allow-${op}" {\n      operations = [op]\n    }\n  }\n'
        '  rule {\n    operations = ["*"]\n    action = "deny"\n  }\n}\n'
    )
    rules = values(NET + text)["p"]["rules"]
    assert rules == [
        {"name": "allow-dns.query", "operations": ["dns.query"]},
        {"name": "allow-chain.read", "operations": ["chain.read"]},
        {"operations": ["*"], "action": "deny"},
    ]


def test_spec_fields_come_out_in_schema_order() -> None:
    text = (
        'node "a" {\n  tags = ["x"]\n  roles = []\n  listen = "127.0.0.1:0"\n  network = "n"\n}\n'
    )
    assert list(values(NET + text)["a"]) == ["network", "listen", "roles", "tags"]


def test_every_problem_is_reported_not_just_the_first() -> None:
    text = 'let a = missing\nlet b = 1 + true\nnetwork "x" {\n  mdoe = 1\n}\n'
    compiled = compile_source(text, "t.nx")
    assert [(p.position.line, p.position.column) for p in compiled.problems] == [
        (1, 9),
        (2, 11),
        (4, 3),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("let x = range(2000000)", "range() of more than 1000000 numbers"),
        ("let x = 1 / 0", "division by zero"),
        ("let x = {a: 1}.b", "map has no key 'b'"),
        ("let x = [1][3]", "index 3 is out of range (list of length 1)"),
        ("let len = 1", "'len' is a built-in function; choose another name"),
        ('let x = "${[1]}"', 'cannot put a list into a string (use join(list, ", "))'),
        ("def t() {\n  t()\n}\nt()", "templates nested more than 64 deep"),
    ],
)
def test_runtime_errors(text: str, message: str) -> None:
    compiled = compile_source(text, "t.nx")
    assert compiled.problems and compiled.problems[0].message.startswith(message)
