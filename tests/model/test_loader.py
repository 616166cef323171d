"""The YAML loader: positions, duplicate keys, tags, limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from hypermesh.model.loader import MAX_DEPTH, MAX_VALUES_PER_DOCUMENT, load, load_text


def test_positions_point_at_keys_and_items() -> None:
    result = load_text("a: 1\nb:\n  - x\n  - {c: d}\n", "f.yaml")
    assert not result.problems
    doc = result.documents[0]
    assert doc.data == {"a": 1, "b": ["x", {"c": "d"}]}
    assert str(doc.position(("a",))) == "f.yaml:1:1"
    assert str(doc.position(("b", 1, "c"))) == "f.yaml:4:6"
    # A path that does not exist falls back to its nearest ancestor.
    assert str(doc.position(("b", 1, "zzz"))) == "f.yaml:4:5"


def test_duplicate_key_is_an_error_with_both_lines() -> None:
    result = load_text("a: 1\nb: 2\na: 3\n", "f.yaml")
    assert [str(p) for p in result.problems] == [
        "f.yaml:3:1: a: duplicate key 'a' (first defined at line 1)"
    ]


def test_timestamps_stay_strings_and_tags_are_refused() -> None:
    result = load_text("when: 2024-01-02\nx: !custom 1\n", "f.yaml")
    assert result.documents[0].data["when"] == "2024-01-02"
    assert any("unsupported YAML tag" in p.message for p in result.problems)


def test_multi_document_skips_empty_documents() -> None:
    result = load_text("---\n---\na: 1\n---\n\n---\nb: 2\n")
    assert [d.data for d in result.documents] == [{"a": 1}, {"b": 2}]
    assert [d.index for d in result.documents] == [0, 1]


def test_merge_keys_work() -> None:
    result = load_text("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\n")
    assert result.documents[0].data["use"] == {"x": 1, "y": 3}


def test_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    result = load_text("\n".join(lines) + "\n", "bomb.yaml")
    assert MAX_VALUES_PER_DOCUMENT < 10**8
    assert any("alias bomb" in p.message for p in result.problems)


def test_folders_are_read_sorted_and_recursively(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("b: 1\n")
    (tmp_path / "a.yml").write_text("a: 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("c: 1\n")
    (tmp_path / "notes.txt").write_text("ignored: 1\n")
    result = load([str(tmp_path)])
    assert [d.data for d in result.documents] == [{"a": 1}, {"b": 1}, {"c": 1}]


def test_missing_path_is_reported(tmp_path: Path) -> None:
    result = load([str(tmp_path / "nope.yaml")])
    assert [p.message for p in result.problems] == ["no such file or folder"]


def test_manifest_set_reparses_only_changed_files(tmp_path: Path) -> None:
    import os

    from hypermesh.errors import ManifestError
    from hypermesh.model.validate import ManifestSet
    from tests.conftest import network, node

    (tmp_path / "a.yaml").write_text(network("demo"))
    (tmp_path / "b.yaml").write_text(node("x"))
    manifests = ManifestSet([str(tmp_path)])
    first = manifests.load()
    second = manifests.load()
    # Unchanged files: the very same resource objects, not parsed again.
    assert all(a is b for a, b in zip(first, second, strict=True))

    (tmp_path / "b.yaml").write_text(node("x", listen="127.0.0.1:7000"))
    os.utime(tmp_path / "b.yaml", ns=(1, 1))
    third = manifests.load()
    assert third.get("Network", "demo") is first.get("Network", "demo")
    changed = third.get("Node", "x")
    assert changed is not None and changed.spec["listen"] == "127.0.0.1:7000"

    # A reference broken by deleting the other file is caught: cross checks run every time.
    (tmp_path / "a.yaml").unlink()
    try:
        manifests.load()
    except ManifestError as exc:
        assert "Network 'demo' is not declared" in str(exc)
    else:
        raise AssertionError("the dangling reference was not reported")


RECURSIVE = [
    # (case, YAML, where the problem is reported, where the anchored value starts)
    ("mapping", "spec: &a {network: *a}\n", "f.yaml:1:11", "line 1, column 7"),
    ("sequence", "spec: &a [x, *a]\n", "f.yaml:1:1", "line 1, column 7"),
    ("nested", "spec: &a\n  x:\n  - y: [1, {z: *a}]\n", "f.yaml:3:13", "line 1, column 7"),
    ("self-list", "&a [*a]\n", "f.yaml:1:1", "line 1, column 1"),
    ("list-in-list", "spec: &a [[[*a]]]\n", "f.yaml:1:1", "line 1, column 7"),
    ("merge", "spec: &a {x: 1, <<: *a}\n", "f.yaml:1:1", "line 1, column 7"),
    ("merge-list", "spec: &a\n  <<: [*a]\n", "f.yaml:1:1", "line 1, column 7"),
    ("block", "a: &a\n  b: &b\n    c: *a\n", "f.yaml:3:5", "line 1, column 4"),
]


@pytest.mark.parametrize(
    ("text", "where", "anchor"), [c[1:] for c in RECURSIVE], ids=[c[0] for c in RECURSIVE]
)
def test_a_recursive_alias_is_an_error_at_file_line_column(
    text: str, where: str, anchor: str
) -> None:
    result = load_text(text + "---\nok: 1\n", "f.yaml")
    assert [str(p).split(": ", 1)[0] for p in result.problems] == [where]
    (problem,) = result.problems
    assert problem.message.startswith("recursive alias") and anchor in problem.message
    # The document is refused whole; the next one in the file is still read.
    assert [d.data for d in result.documents] == [{"ok": 1}]


def test_an_alias_used_twice_is_not_recursive() -> None:
    result = load_text("a: &a {x: 1}\nb: [*a, *a]\nc: {d: *a}\n", "f.yaml")
    assert not result.problems
    assert result.documents[0].data == {
        "a": {"x": 1},
        "b": [{"x": 1}, {"x": 1}],
        "c": {"d": {"x": 1}},
    }


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 500, 990])
def test_deep_nesting_is_refused_before_anything_recurses(depth: int) -> None:
    flow = load_text("a: " + "[" * depth + "]" * depth + "\n", "f.yaml")
    block = load_text("".join(" " * i + "a:\n" for i in range(depth)), "f.yaml")
    for result in (flow, block):
        assert not result.documents
        (problem,) = result.problems
        assert f"nested more than {MAX_DEPTH} levels" in problem.message


def test_nesting_up_to_the_limit_is_read() -> None:
    depth = MAX_DEPTH - 1
    result = load_text("a: " + "[" * depth + "]" * depth + "\n", "f.yaml")
    assert not result.problems and result.documents
