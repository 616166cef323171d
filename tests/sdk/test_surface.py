"""The SDK's public surface is documented: every public method of both Meshes and every name
the package exports appears in docs/sdk.md, and each has a docstring or is a plain value."""

from __future__ import annotations

import inspect

import hypermesh.sdk
from hypermesh.sdk import mesh, sync
from tests.conftest import ROOT

DOC = (ROOT / "docs" / "sdk.md").read_text()


def public_methods(cls: type) -> list[str]:
    return [
        name
        for name, member in vars(cls).items()
        if not name.startswith("_") and (callable(member) or isinstance(member, classmethod))
    ]


def test_every_mesh_operation_is_documented() -> None:
    names = set(public_methods(mesh.Mesh)) | set(public_methods(sync.Mesh))
    assert {"resolve", "fetch", "send", "messages", "tunnel", "append"} <= names
    missing = sorted(n for n in names if f"{n}(" not in DOC and f".{n}" not in DOC)
    assert not missing, f"not in docs/sdk.md: {missing}"


def test_every_exported_name_is_documented_and_has_a_docstring() -> None:
    for name in hypermesh.sdk.__all__:
        assert f"`{name}" in DOC or name in DOC, name
        obj = getattr(hypermesh.sdk, name)
        assert inspect.getdoc(obj), name
