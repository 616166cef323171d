"""Shared by the end-to-end tests: the registry example applied by a real `hmctl apply`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLES, Hmctl

EXAMPLE = EXAMPLES / "registry-and-names"


def items(hmctl: Hmctl, kind: str) -> dict[str, dict[str, Any]]:
    result = hmctl("get", kind, "-o", "json")
    assert result.returncode == 0, result.stderr
    return {i["metadata"]["name"]: i for i in json.loads(result.stdout)["items"]}


def ready(item: dict[str, Any]) -> tuple[str, str]:
    (cond,) = [c for c in item["status"]["conditions"] if c["type"] == "Ready"]
    return cond["status"], cond["reason"]


@pytest.fixture
def applied(hmctl: Hmctl, tmp_path: Path) -> Path:
    folder = tmp_path / "example"
    shutil.copytree(EXAMPLE, folder)
    result = hmctl("apply", "-f", str(folder), "--timeout", "60s")
    # Everything converges, the InterfacePolicy too: its live probe finds it enforced.
    assert result.returncode == 0, result.stdout + result.stderr
    return folder
