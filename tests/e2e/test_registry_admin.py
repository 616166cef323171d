"""Administering a registry started by `hmctl apply`: `hmctl registry …` end to end, the
controller keeping its TLDs (approval, renewal, a transfer put back), and the registry's page
opened in a real browser (Debian's headless Chromium) over TCP."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from tests.conftest import Hmctl
from tests.e2e.conftest import items, ready
from tests.harness.chromium import dump_dom

BETA = """\
apiVersion: hypermesh.online/v1alpha1
kind: TLD
metadata:
  name: beta
spec:
  network: acme
  owner:
    node: alpha
"""


def _ok(hmctl: Hmctl, *args: str) -> str:
    result = hmctl(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _rcode(hmctl: Hmctl, name: str) -> str:
    answer = json.loads(_ok(hmctl, "dns", "query", name, "SOA", "-o", "json"))
    return str(answer["rcode"])


def test_administration_from_the_command_line(hmctl: Hmctl, applied: Path) -> None:
    key = hmctl.state / "nodes" / "registry" / "registry-admin" / "identity.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    policy = json.loads(_ok(hmctl, "registry", "policy", "-o", "json"))
    admin_id = (key.parent / "identity.pub").read_text().strip()
    assert policy == {
        "approval": "automatic",
        "termDays": 365,
        "maxTldsPerOwner": 10,
        "reserved": [],
        "admin": admin_id,
    }
    assert "at most 50" in _ok(hmctl, "registry", "policy", "--max-tlds-per-owner", "50")

    listing = _ok(hmctl, "registry", "list")
    assert listing.splitlines()[0].split() == [
        "NAME", "STATUS", "OWNER", "SERIAL", "EXPIRES", "NOTE"
    ]  # fmt: skip
    (acme,) = [line for line in listing.splitlines() if line.startswith("acme ")]
    assert acme.split()[1:3] == ["active", "alpha"]

    # Manual approval: a new TLD waits, the controller says why, the administrator approves.
    assert "manual" in _ok(hmctl, "registry", "policy", "--approval", "manual")
    (applied / "beta.yaml").write_text(BETA)
    result = hmctl("apply", "-f", str(applied), "--timeout", "60s")  # ends without waiting
    assert result.returncode == 1
    said = result.stdout + result.stderr
    assert "AwaitingApproval" in said and "`hmctl registry approve beta`" in said
    told = [line for line in said.splitlines() if "awaits the registry administrator" in line]
    assert len(told) == 2, said  # the progress line, once, and the summary table's row
    assert " pending " in _ok(hmctl, "registry", "list")

    alpha_key = str(hmctl.state / "nodes" / "alpha" / "identity.key")
    refused = hmctl("registry", "approve", "beta", "--admin-key", alpha_key)
    assert refused.returncode == 2
    assert "403 forbidden: only the registry's administrator may do this" in refused.stderr
    assert "approved beta: active" in _ok(hmctl, "registry", "approve", "beta")
    hmctl("apply", "-f", str(applied), "--timeout", "30s")
    assert ready(items(hmctl, "tlds")["beta"]) == ("True", "Converged")

    # Reserved names cannot be registered; a reserved name that is taken cannot be reserved.
    assert "gamma" in _ok(hmctl, "registry", "reserve", "gamma")
    refused = hmctl("registry", "reserve", "acme")
    assert refused.returncode == 2 and "registered to" in refused.stderr

    # Expiry withdraws the zone; the owner's renewal brings it back.
    assert _rcode(hmctl, "acme.") == "NOERROR"
    assert "expired acme: expired (unpaid)" in _ok(
        hmctl, "registry", "expire", "acme", "--reason", "unpaid"
    )
    assert _rcode(hmctl, "acme.") == "REFUSED"
    assert "renewed acme: active" in _ok(hmctl, "registry", "renew", "acme")
    assert _rcode(hmctl, "acme.") == "NOERROR"

    # A transfer by hand (signed by alpha, cosigned by the registry node) is drift: the
    # manifests say alpha owns acme, so the next apply transfers it back.
    assert "transferred to registry" in _ok(
        hmctl, "registry", "transfer", "acme", "--to", "registry"
    )
    assert " registry (" in _ok(hmctl, "registry", "list").split("acme ", 1)[1].splitlines()[0]
    hmctl("apply", "-f", str(applied), "--timeout", "30s")
    acme_line = _ok(hmctl, "registry", "list").split("acme ", 1)[1].splitlines()[0]
    assert " alpha (" in acme_line

    # The administrator's key never appears in any output.
    pem = key.read_text()
    body = pem.splitlines()[1]
    for args in (
        ("registry", "policy"),
        ("get", "nodes", "-o", "yaml"),
        ("describe", "node", "registry"),
    ):
        assert body not in hmctl(*args).stdout


def test_the_registry_page_opens_in_a_browser(hmctl: Hmctl, applied: Path, tmp_path: Path) -> None:
    web = items(hmctl, "nodes")["registry"]["status"]["webAddress"]
    registry_id = items(hmctl, "nodes")["alpha"]["status"]["identity"]
    dom = dump_dom(f"http://{web}/registry/", tmp_path / "chromium")
    assert "<title>HyperMesh registry</title>" in dom
    row = dom.split('<tr id="tld-acme">', 1)[1].split("</tr>", 1)[0]
    assert "acme" in row and ">active<" in row
    assert f'title="{registry_id}"' in row  # the owner, alpha, with its full node ID
