"""Golden programs: each ``golden/*.nx`` compiles to exactly ``golden/*.yaml``, and that YAML
passes the project's own validator (in process for all, the real ``hmctl validate`` for one).

Regenerate after an intended change with ``NEXUS_REGENERATE=1 pytest tests/nexus``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hypermesh.model.loader import load, load_text
from hypermesh.model.validate import build
from hypermesh.nexus.compiler import compile_file, to_yaml
from tests.conftest import EXAMPLES, Hmctl
from tests.nexus.conftest import GOLDEN, REGENERATE

PROGRAMS = sorted(GOLDEN.glob("*.nx"))


def compiled_yaml(path: Path) -> str:
    compiled = compile_file(str(path))
    assert not compiled.problems, "\n".join(map(str, compiled.problems))
    return to_yaml(compiled.documents, header=f"# Compiled from {path.name}.\n")


def test_there_are_golden_programs() -> None:
    assert {p.stem for p in PROGRAMS} >= {"quickstart", "names", "loops", "modules"}


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_golden_output(program: Path) -> None:
    text = compiled_yaml(program)
    expected = program.with_suffix(".yaml")
    if REGENERATE or not expected.exists():
        expected.write_text(text)
    assert text == expected.read_text()


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_golden_output_validates_in_process(program: Path) -> None:
    loaded = load_text(compiled_yaml(program), f"{program.stem}.yaml")
    _, problems = build(loaded)
    assert problems == []
    assert loaded.documents, "a golden program declares resources"


def test_golden_output_validates_with_hmctl(hmctl: Hmctl, tmp_path: Path) -> None:
    out = tmp_path / "names.yaml"
    out.write_text(compiled_yaml(GOLDEN / "names.nx"))
    result = hmctl("validate", "-f", str(out))
    assert result.returncode == 0, result.stdout + result.stderr


def _by_key(documents: list[dict[str, object]]) -> dict[tuple[str, str], dict[str, object]]:
    out = {}
    for doc in documents:
        metadata = doc["metadata"]
        assert isinstance(metadata, dict)
        out[(str(doc["kind"]), str(metadata["name"]))] = doc
    return out


@pytest.mark.parametrize(
    ("program", "example"),
    [("quickstart", "quickstart"), ("names", "registry-and-names")],
)
def test_golden_equals_hand_written_example(program: str, example: str) -> None:
    """The Nexus programs compile to the same resources as the hand-written YAML examples."""
    compiled = compile_file(str(GOLDEN / f"{program}.nx"))
    written = [d.data for d in load([str(EXAMPLES / example)]).documents]
    assert _by_key(compiled.manifests) == _by_key(written)


def test_documents_are_in_kind_order_and_keep_api_version() -> None:
    compiled = compile_file(str(GOLDEN / "names.nx"))
    kinds = [d["kind"] for d in compiled.manifests]
    order = ["Network", "Node", "Peer", "TLD", "Record", "InterfacePolicy"]
    assert kinds == sorted(kinds, key=order.index)
    assert {d["apiVersion"] for d in compiled.manifests} == {"hypermesh.online/v1alpha1"}
    assert list(compiled.manifests[0]) == ["apiVersion", "kind", "metadata", "spec"]


def test_compiling_twice_gives_the_same_bytes() -> None:
    assert compiled_yaml(GOLDEN / "loops.nx") == compiled_yaml(GOLDEN / "loops.nx")


def test_handlers_are_kept_not_emitted() -> None:
    compiled = compile_file(str(GOLDEN / "modules.nx"))
    assert [h.event for h in compiled.handlers] == ["message", "block", "schedule", "request"]
    assert compiled.handlers[0].params == {"to": "edge-0", "from": "core-1"}
    assert compiled.handlers[3].params["path"] == "/greet"
    assert compiled.handlers[2].env["net"] == "mods"
    assert all(d["kind"] != "Handler" for d in compiled.manifests)
    assert yaml.safe_load_all(to_yaml(compiled.documents))


def test_source_map_points_into_the_program() -> None:
    compiled = compile_file(str(GOLDEN / "loops.nx"))
    doc = next(d for d in compiled.documents if d.data["metadata"]["name"] == "lab-3")
    listen = doc.position(("spec", "listen"))
    line = (GOLDEN / "loops.nx").read_text().splitlines()[listen.line - 1]
    assert line[listen.column - 1 :].startswith("listen = format(")
    tag = doc.position(("spec", "tags", 1))
    assert (GOLDEN / "loops.nx").read_text().splitlines()[tag.line - 1][tag.column - 1] == '"'
