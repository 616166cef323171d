"""Anonymous tunnels between node processes started by `hmctl apply`: the example network's
relays carry a request to beta's services through two and three hops, under the ephemeral
InterfacePolicy, and `hmctl tunnel` refuses paths that would let one relay see both ends."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLES, Hmctl
from tests.e2e.conftest import items


@pytest.fixture
def popup(hmctl: Hmctl, tmp_path: Path) -> dict[str, dict[str, Any]]:
    folder = tmp_path / "example"
    shutil.copytree(EXAMPLES / "ephemeral-tunnels", folder)
    result = hmctl("apply", "-f", str(folder), "--timeout", "90s")
    assert result.returncode == 0, result.stdout + result.stderr
    return {name: item["status"] for name, item in items(hmctl, "nodes").items()}


def tunnel(hmctl: Hmctl, *args: str) -> tuple[int, dict[str, Any] | str]:
    result = hmctl("tunnel", "request", *args, "-o", "json")
    if result.stdout.strip():
        return result.returncode, json.loads(result.stdout)
    return result.returncode, result.stderr


def test_requests_reach_beta_through_two_and_three_relays(
    hmctl: Hmctl, popup: dict[str, dict[str, Any]]
) -> None:
    for name in ("r1", "r2", "r3", "alpha", "beta"):
        assert popup[name]["ephemeralAddress"], name
        assert popup[name]["ephemeralAddress"] != popup[name]["address"]
    assert "ephemeralAddress" not in popup["registry"]  # no ephemeral interface, not a relay

    for via in ("r1,r2", "r3,r1,r2"):
        code, answer = tunnel(hmctl, "beta", "/status", "--via", via)
        assert code == 0, answer
        assert isinstance(answer, dict)
        assert answer["path"] == [*via.split(","), "beta"]
        assert answer["status"] == 200
        assert answer["body"]["identity"] == popup["beta"]["identity"]

    # Relays picked at random among the network's relays.
    code, answer = tunnel(hmctl, "beta", "/healthz", "--hops", "3")
    assert code == 0 and isinstance(answer, dict)
    assert sorted(answer["path"][:3]) == ["r1", "r2", "r3"] and answer["body"] == {"ok": True}


def test_the_ephemeral_policy_decides_what_a_tunnel_may_ask(
    hmctl: Hmctl, popup: dict[str, dict[str, Any]]
) -> None:
    code, answer = tunnel(hmctl, "beta", "/chain/v1/head", "--via", "r1,r2")
    assert code == 0 and isinstance(answer, dict) and answer["status"] == 200
    code, answer = tunnel(
        hmctl, "beta", "/chain/v1/append", "-X", "POST", "--data", "{}", "--via", "r2,r3"
    )
    assert code == 1 and isinstance(answer, dict)
    assert answer["status"] == 403 and "chain.write" in answer["body"]["error"]


def test_paths_that_would_expose_both_ends_are_refused(
    hmctl: Hmctl, popup: dict[str, dict[str, Any]]
) -> None:
    code, answer = tunnel(hmctl, "beta", "--via", "r1")
    assert code == 2 and "at least 2" in str(answer)
    code, answer = tunnel(hmctl, "beta", "--hops", "1")
    assert code == 2 and "at least 2" in str(answer)
    code, answer = tunnel(hmctl, "beta", "--via", "r1,beta")
    assert code == 2 and "destination" in str(answer)
    # alpha takes tunnels but does not relay them.
    code, answer = tunnel(hmctl, "beta", "--via", "r1,alpha")
    assert code != 0 and "502" in str(answer)
    code, answer = tunnel(hmctl, "registry", "--via", "r1,r2")
    assert code == 2 and "no ephemeral interface" in str(answer)
