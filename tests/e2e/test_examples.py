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
    # Every node answers DNS over QUIC and HTTP/3, its key pinned from the state: www.demo is
    # alpha's address, checked from the registry's key, from the registry and from a mirror.
    alpha = next(i for i in listed if i["metadata"]["name"] == "alpha")
    asked = hmctl("dns", "query", "www.demo", "A", "--verify")
    assert asked.returncode == 0, asked.stderr
    assert "rcode NOERROR" in asked.stdout and "(node registry," in asked.stdout
    assert f"www.demo. 3600 IN A {alpha['status']['address'].rsplit(':', 1)[0]}" in asked.stdout
    assert ";; VERIFIED: zone demo. checked from the registry key" in asked.stdout
    via = hmctl("dns", "query", "www.demo", "HTTPS", "--via", "beta", "--doh", "-o", "json")
    assert via.returncode == 0, via.stderr
    answered = json.loads(via.stdout)
    assert answered["server"].split()[1:3] == ["(node", "beta,"]
    assert answered["rcode"] == "NOERROR", answered
    port = alpha["status"]["address"].rsplit(":", 1)[1]
    assert any(f'port="{port}"' in line for line in answered["answer"]), answered
    unknown = hmctl("dns", "query", "www.demo", "--via", "ghost")
    assert unknown.returncode == 2 and "no node 'ghost'" in unknown.stderr
    assert hmctl("down").returncode == 0
    assert node_processes(hmctl.state) == set()
