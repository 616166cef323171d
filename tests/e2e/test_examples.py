"""Every example folder has a README, validates, and the runnable ones converge for real."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, Hmctl, node_processes

FOLDERS = sorted(p for p in EXAMPLES.iterdir() if p.is_dir())


def test_there_are_examples() -> None:
    assert {p.name for p in FOLDERS} >= {"quickstart", "registry-and-names"}


@pytest.mark.parametrize("folder", FOLDERS, ids=[p.name for p in FOLDERS])
def test_example_has_readme_and_validates(folder: Path, hmctl: Hmctl) -> None:
    readme = folder / "README.md"
    assert readme.exists() and len(readme.read_text()) > 200
    result = hmctl("validate", "-f", str(folder))
    assert result.returncode == 0, result.stderr


def test_quickstart_converges_and_stops(hmctl: Hmctl) -> None:
    folder = EXAMPLES / "quickstart"
    result = hmctl("apply", "-f", str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    listed = json.loads(hmctl("get", "nodes", "-o", "json").stdout)["items"]
    assert sorted(i["metadata"]["name"] for i in listed) == ["alpha", "beta", "registry"]
    wide = hmctl("get", "nodes", "-o", "wide")
    assert wide.returncode == 0
    header = wide.stdout.splitlines()[0].split()
    assert header[:6] == ["NAME", "READY", "REASON", "NETWORK", "ADDRESS", "IDENTITY"]
    assert "PID" in header and "ROLES" in header
    described = hmctl("describe", "node", "alpha")
    assert described.returncode == 0
    assert "Conditions:" in described.stdout and "Created" in described.stdout
    # Every node answers DNS over QUIC and HTTP/3, its key pinned from the state; with no zones
    # served (the quickstart registers no TLD) the answer is REFUSED.
    asked = hmctl("dns", "query", "www.demo", "HTTPS")
    assert asked.returncode == 0, asked.stderr
    assert "rcode REFUSED" in asked.stdout and "(node registry," in asked.stdout
    via = hmctl("dns", "query", "www.demo", "--via", "alpha", "--doh", "-o", "json")
    assert via.returncode == 0, via.stderr
    assert json.loads(via.stdout)["server"].split()[1:3] == ["(node", "alpha,"]
    unknown = hmctl("dns", "query", "www.demo", "--via", "ghost")
    assert unknown.returncode == 2 and "no node 'ghost'" in unknown.stderr
    assert hmctl("down").returncode == 0
    assert node_processes(hmctl.state) == set()
