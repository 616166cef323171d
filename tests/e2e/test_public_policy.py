"""The network's own traffic proves its keys on the public interface, so a public
InterfacePolicy's ``from: nodes`` rules match it, and its rate limits count strangers apart.

Two public networks, applied once for the module by a real ``hmctl apply``:

- ``open``: every node is named for everything, strangers get DNS only, and one node (``a2``)
  is kept off the registry. The TLD registers through apply, mirrors follow, ``hmctl registry``
  lists and revokes; an anonymous client is refused everything but DNS; ``a2``, whose mirror
  the registry refuses, is not Ready and says why.
- ``busy``: strangers may do anything, 5 requests an hour. The first anonymous request is
  answered (nothing of the network's own traffic was counted as anonymous), a burst is cut off
  with 429, and meanwhile the mirrors keep up and ``hmctl registry list`` works.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import pytest

from hypermesh.registry.client import API, RegistryClient
from hypermesh.registry.signing import sign_request
from hypermesh.store import StateStore
from hypermesh.transport.client import connect_h3, h3_get_json
from hypermesh.transport.dns_client import doh3_query, doq_query
from hypermesh.transport.identity import Identity, load_identity
from tests.conftest import HEADER, Hmctl, node_processes

NETWORKS = f"""\
{HEADER}kind: Network
metadata: {{name: open}}
spec: {{mode: public, registry: {{node: open-registry}}}}
---
{HEADER}kind: Network
metadata: {{name: busy}}
spec: {{mode: public, registry: {{node: busy-registry}}}}
"""


def _node(name: str, network: str, role: str) -> str:
    return (
        f"{HEADER}kind: Node\nmetadata: {{name: {name}}}\n"
        f'spec: {{network: {network}, listen: "127.0.0.1:0", roles: [{role}]}}\n'
    )


def _tld(name: str, network: str, owner: str) -> str:
    return (
        f"{HEADER}kind: TLD\nmetadata: {{name: {name}}}\n"
        f"spec: {{network: {network}, owner: {{node: {owner}}}, ttl: 60}}\n"
        f"---\n{HEADER}kind: Record\nmetadata: {{name: api.{name}}}\n"
        f"spec: {{tld: {name}, type: A, ttl: 60, values: [192.0.2.10]}}\n"
    )


POLICIES = f"""\
{HEADER}kind: InterfacePolicy
metadata: {{name: open-public}}
spec:
  network: open
  interface: public
  default: deny
  rules:
    - name: a2-kept-off-the-registry
      from: {{nodes: [a2]}}
      to: {{nodes: [open-registry]}}
      operations: ["*"]
      action: deny
    - name: members
      from: {{nodes: [open-registry, a1, a2]}}
      operations: ["*"]
    - name: strangers-dns
      operations: [dns.query]
---
{HEADER}kind: InterfacePolicy
metadata: {{name: busy-public}}
spec:
  network: busy
  interface: public
  default: deny
  rules:
    - name: members
      from: {{nodes: [busy-registry, b1, b2]}}
      operations: ["*"]
    - name: strangers
      operations: ["*"]
      rateLimit: {{requests: 5, per: 1h}}
"""

MANIFESTS = "---\n".join(
    [
        NETWORKS,
        _node("open-registry", "open", "registry"),
        _node("a1", "open", "mirror"),
        _node("a2", "open", "mirror"),
        _node("busy-registry", "busy", "registry"),
        _node("b1", "busy", "mirror"),
        _node("b2", "busy", "mirror"),
        _tld("openco", "open", "a1"),
        _tld("busyco", "busy", "b1"),
        POLICIES,
    ]
)
SETTLE = 120.0
"""Seconds the module's apply may take to bring everything to the states the tests read."""


@dataclass(frozen=True)
class Mesh:
    hmctl: Hmctl

    def path(self, name: str) -> Path:
        return self.hmctl.state / "nodes" / name

    def key(self, name: str) -> Identity:
        return load_identity(self.path(name) / "identity.key")

    def status(self, name: str) -> dict[str, Any]:
        """The stored status of Node ``name`` (or of any kind, ``Kind/name``)."""
        kind, _, rest = name.rpartition("/")
        store = StateStore.open(self.hmctl.state)
        try:
            for record in store.records(kind or "Node"):
                if record.key.name == rest:
                    return dict(record.status)
        finally:
            store.close()
        return {}

    def live(self, name: str) -> dict[str, Any]:
        """What node ``name`` says of itself, asked with its own key (the controller's)."""
        status = self.status(name)
        return asyncio.run(
            h3_get_json(
                status["address"],
                "/status",
                expected_id=status["identity"],
                identity=self.key(name),
            )
        )


def ready(status: dict[str, Any]) -> tuple[str, str, str]:
    for cond in status.get("conditions", []):
        if cond["type"] == "Ready":
            return cond["status"], cond["reason"], cond.get("message", "")
    return "Unknown", "", ""


def settled(mesh: Mesh) -> bool:
    """Everything the tests read has come about: TLDs and Records published, the policies
    probed, every node but a2 Ready, a2 not Ready because its mirror is refused."""
    for name in ("TLD/openco", "TLD/busyco", "Record/api.openco", "Record/api.busyco"):
        if ready(mesh.status(name))[0] != "True":
            return False
    for name in ("InterfacePolicy/open-public", "InterfacePolicy/busy-public"):
        if ready(mesh.status(name))[0] != "True":
            return False
    for name in ("open-registry", "a1", "busy-registry", "b1", "b2"):
        if ready(mesh.status(name))[0] != "True":
            return False
    return ready(mesh.status("a2"))[:2] == ("False", "MirrorRefused")


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    root = tmp_path_factory.mktemp("public-policy")
    hmctl = Hmctl(root / "state", root)
    (root / "mesh.yaml").write_text(MANIFESTS)
    mesh = Mesh(hmctl)
    created = hmctl("apply", "-f", str(root / "mesh.yaml"), "--timeout", f"{SETTLE:g}s")
    assert created.returncode == 0, created.stdout + created.stderr
    # The pass that created a2 saw it answer; the next one observes that its mirror is refused.
    # a2 then stays not Ready, so that apply would wait out its timeout: run it until what the
    # tests read has settled, then stop it.
    apply = hmctl.popen("apply", "-f", str(root / "mesh.yaml"), "--timeout", f"{SETTLE:g}s")
    try:
        deadline = time.monotonic() + SETTLE
        while not settled(mesh):
            if apply.poll() is not None:
                output = apply.stdout.read() if apply.stdout else ""
                raise AssertionError(f"apply ended before the mesh settled:\n{output}")
            if time.monotonic() > deadline:
                raise AssertionError("the mesh did not settle in time")
            time.sleep(0.5)
        yield mesh
    finally:
        if apply.poll() is None:
            apply.send_signal(signal.SIGINT)
            try:
                apply.wait(30)
            except subprocess.TimeoutExpired:
                apply.kill()
                apply.wait(10)
        hmctl("down", timeout=120)
        assert not node_processes(hmctl.state)


# -- helpers --------------------------------------------------------------------------------


async def anonymous(node: dict[str, Any], method: str, path: str, body: bytes = b"") -> int:
    """One request by a client that proves no key."""
    async with (
        asyncio.timeout(10),
        connect_h3(node["address"], expected_id=node["identity"], identity=None) as h3,
    ):
        status, _, _ = await h3.request(method, path, body=body)
    return status


async def signed_by_a_stranger(node: dict[str, Any], path: str, body: dict[str, Any]) -> int:
    """A registry write signed by a key the network does not know, over an anonymous handshake:
    the request is well formed, only the caller is unknown."""
    raw = json.dumps(body).encode()
    headers = sign_request(Identity.generate(), "POST", path, raw, now=time.time())
    async with (
        asyncio.timeout(10),
        connect_h3(node["address"], expected_id=node["identity"], identity=None) as h3,
    ):
        status, _, _ = await h3.request(
            "POST", path, headers=[("content-type", "application/json"), *headers.items()], body=raw
        )
    return status


def write_record(mesh: Mesh, registry: str, owner: str, tld: str, value: str) -> int:
    """Replace ``www`` A in ``tld`` as its owner (proving and signing with the owner's key);
    returns the zone's new serial."""
    node = mesh.status(registry)
    key = mesh.key(owner)
    change = {"name": "www", "type": "A", "changetype": "REPLACE", "ttl": 60, "values": [value]}
    client = RegistryClient(node["address"], node["identity"], identity=key)
    status, data = asyncio.run(
        client.call("POST", f"{API}/rrsets", {"tld": tld, "rrsets": [change]}, signer=key)
    )
    assert status == 200, (status, data)
    return int(data["serial"])


def mirrored(mesh: Mesh, mirror: str, zone: str, serial: int, timeout: float = 30.0) -> None:
    """Wait (bounded) until ``mirror`` serves ``zone`` at ``serial`` or later."""
    deadline = time.monotonic() + timeout
    held: object = None
    while time.monotonic() < deadline:
        held = mesh.live(mirror).get("zones", {}).get(zone)
        if isinstance(held, int) and held >= serial:
            return
        time.sleep(0.2)
    raise AssertionError(f"{mirror} serves {zone} at {held}, not {serial}, after {timeout:g}s")


# -- open: members named for everything, strangers DNS only ---------------------------------


def test_the_tld_registers_through_apply_and_mirrors_follow(mesh: Mesh) -> None:
    assert ready(mesh.status("TLD/openco"))[0] == "True"
    serial = write_record(mesh, "open-registry", "a1", "openco", "192.0.2.20")
    mirrored(mesh, "a1", "openco.", serial)
    mirror = mesh.live("a1")["mirror"]
    assert mirror["connected"] and mirror["refused"] is None
    assert mesh.live("a1")["readiness"] == {"ready": True}


def test_hmctl_registry_lists_and_revokes(mesh: Mesh) -> None:
    listed = mesh.hmctl("registry", "list", "--registry", "open-registry", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert [i["name"] for i in json.loads(listed.stdout)["items"]] == ["openco"]
    somebody = Identity.generate().node_id
    revoked = mesh.hmctl(
        "registry", "revoke", somebody, "--reason", "a test", "--registry", "open-registry"
    )
    assert revoked.returncode == 0, revoked.stderr
    shown = mesh.hmctl("registry", "revocations", "--registry", "open-registry", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    assert somebody in {i["nodeId"] for i in json.loads(shown.stdout)["items"]}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{API}/tlds"),
        ("GET", f"{API}/anchors"),
        ("GET", f"{API}/ixfr?tld=openco.&serial=0"),
        ("GET", f"{API}/watch"),
        ("GET", f"{API}/revocations"),
        ("GET", "/status"),
        ("GET", "/chain/v1/head"),
        ("POST", f"{API}/register"),
    ],
)
def test_a_stranger_is_refused_everything_but_dns(mesh: Mesh, method: str, path: str) -> None:
    registry = mesh.status("open-registry")
    body = b'{"tld": "stranger", "network": "open"}' if method == "POST" else b""
    assert asyncio.run(anonymous(registry, method, path, body)) == 403


def test_a_stranger_may_ask_dns_but_not_write(mesh: Mesh) -> None:
    registry = mesh.status("open-registry")
    query = dns.message.make_query("api.openco.", "A").to_wire()
    address, pin = registry["address"], registry["identity"]
    for ask in (doq_query, doh3_query):
        answer = dns.message.from_wire(
            asyncio.run(ask(address, query, expected_id=pin, identity=None))
        )
        assert answer.rcode() == dns.rcode.NOERROR
        assert {r.to_text() for rrset in answer.answer for r in rrset} == {"192.0.2.10"}
    body = {"tld": "stranger", "network": "open"}
    assert asyncio.run(signed_by_a_stranger(registry, f"{API}/register", body)) == 403


def test_a_node_whose_mirror_is_refused_is_not_ready_and_says_why(mesh: Mesh) -> None:
    state, reason, message = ready(mesh.status("a2"))
    assert (state, reason) == ("False", "MirrorRefused")
    assert "a2-kept-off-the-registry" in message and "403" in message
    live = mesh.live("a2")
    assert live["readiness"]["ready"] is False
    assert live["readiness"]["reason"] == "MirrorRefused"
    assert "a2-kept-off-the-registry" in live["mirror"]["refused"]
    # The others are unaffected: a1 follows the same registry with its own key.
    assert ready(mesh.status("a1"))[0] == "True"


# -- busy: strangers rate-limited ------------------------------------------------------------


def test_strangers_are_counted_apart_from_the_network(mesh: Mesh) -> None:
    registry = mesh.status("busy-registry")
    # Nothing of the network's own traffic (mirrors, chain following, the controller, hmctl)
    # was counted as anonymous: a stranger's first request is answered.
    assert asyncio.run(anonymous(registry, "GET", f"{API}/tlds")) == 200
    burst = [asyncio.run(anonymous(registry, "GET", f"{API}/tlds")) for _ in range(8)]
    assert burst.count(429) >= 4 and set(burst) <= {200, 429}
    # Meanwhile the network goes on at full speed: writes, mirrors, the administrator.
    for value in ("192.0.2.31", "192.0.2.32", "192.0.2.33"):
        serial = write_record(mesh, "busy-registry", "b1", "busyco", value)
        for mirror in ("b1", "b2"):
            mirrored(mesh, mirror, "busyco.", serial)
    listed = mesh.hmctl("registry", "list", "--registry", "busy-registry", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert [i["name"] for i in json.loads(listed.stdout)["items"]] == ["busyco"]
    assert asyncio.run(anonymous(registry, "GET", f"{API}/tlds")) == 429  # still cut off
    for name in ("b1", "b2"):
        assert mesh.live(name)["readiness"] == {"ready": True}
