"""examples/nexus-quickstart compiles to the same resources as examples/quickstart, and its
checked-in ``network.yaml`` is exactly what ``nexus compile`` makes of ``network.nx``."""

from __future__ import annotations

from pathlib import Path

import pytest

from hypermesh.model.loader import load
from hypermesh.nexus.cli import main
from hypermesh.nexus.compiler import compile_file
from tests.conftest import EXAMPLES


def _key(doc: dict[str, object]) -> str:
    metadata = doc["metadata"]
    assert isinstance(metadata, dict)
    return f"{doc['kind']}/{metadata['name']}"


def test_nexus_quickstart_equals_the_yaml_quickstart() -> None:
    folder = EXAMPLES / "nexus-quickstart"
    assert len((folder / "README.md").read_text()) > 200
    compiled = compile_file(str(folder / "network.nx"))
    assert compiled.ok, compiled.problems
    written = [d.data for d in load([str(EXAMPLES / "quickstart")]).documents]
    assert sorted(compiled.manifests, key=_key) == sorted(written, key=_key)


def test_checked_in_yaml_is_the_compiled_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regenerate with: nexus compile examples/nexus-quickstart/network.nx -o
    examples/nexus-quickstart/network.yaml (from the top of the repository)."""
    monkeypatch.chdir(EXAMPLES.parent)
    out = tmp_path / "network.yaml"
    assert main(["compile", "examples/nexus-quickstart/network.nx", "-o", str(out)]) == 0
    assert out.read_text() == (EXAMPLES / "nexus-quickstart" / "network.yaml").read_text()
