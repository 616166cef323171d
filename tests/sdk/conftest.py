"""A real network for the SDK's tests: the registry-and-names example applied by `hmctl`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, Hmctl


@pytest.fixture
def acme(hmctl: Hmctl, tmp_path: Path) -> Path:
    """The state directory of a running registry-and-names network (registry, alpha, beta)."""
    folder = tmp_path / "example"
    shutil.copytree(EXAMPLES / "registry-and-names", folder)
    result = hmctl("apply", "-f", str(folder), "--timeout", "60s")
    assert result.returncode == 0, result.stdout + result.stderr
    return hmctl.state
