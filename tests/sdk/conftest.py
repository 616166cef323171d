"""A real network for the SDK's tests: the registry-and-names example applied by `hmctl`."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from hypermesh.errors import HyperMeshError
from hypermesh.sdk import sync
from tests.conftest import EXAMPLES, Hmctl


@pytest.fixture
def acme(hmctl: Hmctl, tmp_path: Path) -> Path:
    """The state directory of a running registry-and-names network (registry, alpha, beta), once
    alpha's mirror answers verified names: an apply does not wait for a mirror's first copy."""
    folder = tmp_path / "example"
    shutil.copytree(EXAMPLES / "registry-and-names", folder)
    result = hmctl("apply", "-f", str(folder), "--timeout", "60s")
    assert result.returncode == 0, result.stdout + result.stderr
    mesh = sync.Mesh.from_state(hmctl.state, node="alpha")
    deadline = time.monotonic() + 30
    while True:
        try:
            if mesh.resolve("api.acme", "A").verified:
                return hmctl.state
            failure: Exception = AssertionError("api.acme A is not verified")
        except HyperMeshError as error:
            failure = error
        if time.monotonic() > deadline:
            raise failure
        time.sleep(0.2)
