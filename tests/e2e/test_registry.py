"""The registry end to end: `hmctl apply` registers a TLD at the network's registry node and
publishes its records; independent clients (dnspython, kdig) read them over DoQ and DoH3 with
valid DNSSEC, and the ZONEMD served by the registry and a mirror matches their zone; a
record changed behind the controller's back is put back; a non-owner's write is refused; prune
withdraws a record."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import dns.dnssec
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
from dns.dnssectypes import DSDigest
from prometheus_client.parser import text_string_to_metric_families

from hypermesh.registry.signing import sign_request
from hypermesh.transport.address import parse_address
from hypermesh.transport.client import connect_h3, h3_get
from hypermesh.transport.dns_client import doh3_query, doq_query
from hypermesh.transport.identity import load_or_create_identity
from tests.conftest import Hmctl
from tests.e2e.conftest import items, ready
from tests.harness.kdig import kdig
from tests.harness.zonemd import check_zonemd


def _ask(address: str, pin: str, name: str, rdtype: str, doh: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    send = doh3_query if doh else doq_query
    return dns.message.from_wire(
        asyncio.run(send(address, query.to_wire(), expected_id=pin, identity=None))
    )


async def _signed_post(
    address: str, pin: str, path: str, body: dict[str, Any], key_dir: Path
) -> int:
    raw = json.dumps(body).encode()
    signer = load_or_create_identity(key_dir)
    headers = [
        ("content-type", "application/json"),
        *sign_request(signer, "POST", path, raw, now=time.time()).items(),
    ]
    async with asyncio.timeout(10), connect_h3(address, expected_id=pin, identity=signer) as h3:
        status, _, _ = await h3.request("POST", path, headers=headers, body=raw)
    return status


def test_registered_names_resolve_with_valid_dnssec(hmctl: Hmctl, applied: Path) -> None:
    (tld,) = items(hmctl, "tlds").values()
    assert ready(tld) == ("True", "Converged")
    assert all(ready(r) == ("True", "Converged") for r in items(hmctl, "records").values())
    nodes = items(hmctl, "nodes")
    registry = nodes["registry"]["status"]
    address, pin = registry["address"], registry["identity"]

    origin = dns.name.from_text("acme.")
    keys = _ask(address, pin, "acme.", "DNSKEY")
    (dnskey,) = [r for r in keys.answer if r.rdtype == dns.rdatatype.DNSKEY]
    # The DS the owner is shown matches the zone's KSK.
    made = {dns.dnssec.make_ds(origin, k, DSDigest.SHA256).to_text() for k in dnskey}
    assert set(tld["status"]["ds"]) <= made

    for name, rdtype, doh in (("www.acme.", "HTTPS", False), ("api.acme.", "A", True)):
        response = _ask(address, pin, name, rdtype, doh)
        assert response.rcode() == dns.rcode.NOERROR
        rrset = next(r for r in response.answer if r.rdtype == dns.rdatatype.from_text(rdtype))
        sig = next(r for r in response.answer if r.rdtype == dns.rdatatype.RRSIG)
        dns.dnssec.validate(rrset, sig, {origin: dnskey})

    # The target record points at alpha's live endpoint and pins alpha's key.
    alpha = nodes["alpha"]["status"]
    https = _ask(address, pin, "www.acme.", "HTTPS").answer[0].to_text()
    port = parse_address(alpha["address"])[1]
    assert f'port="{port}"' in https
    tlsa = _ask(address, pin, f"_{port}._udp.www.acme.", "TLSA").answer[0].to_text()
    key = load_or_create_identity(hmctl.state / "nodes" / "alpha").public_key_bytes.hex()
    assert key in tlsa.replace(" ", "")

    # The registry node's metrics count the registration and show the zone's serial.
    status, _, body = asyncio.run(h3_get(address, "/metrics", expected_id=pin, identity=None))
    assert status == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    assert samples[("hypermesh_registry_registrations_total", ())] == 1
    assert samples[("hypermesh_zone_serial", (("zone", "acme"),))] == tld["status"]["serial"] + 3

    # kdig +quic, an independent DNS client, sees the same records (CI installs it: the check
    # fails rather than skips without it).
    answer = kdig(parse_address(address)[1], "api.acme", "A")
    assert answer["rcode"] == "NOERROR"
    answers = answer["sections"]
    assert isinstance(answers, dict)
    found = [line.split()[-1] for line in answers.get("ANSWER", []) if line.split()[3] == "A"]
    assert sorted(found) == ["192.0.2.10", "192.0.2.11"]

    # ZONEMD over the wire, judged by dnspython alone: at the registry node and at a mirror,
    # the digest of the zone each serves over HTTP/3 is the ZONEMD it serves over DoQ, signed
    # by the key the owner's DS names.
    serial = tld["status"]["serial"] + 3
    for status in (registry, alpha):
        deadline = time.monotonic() + 20  # a mirror may still be taking the last increment
        while True:
            checked = asyncio.run(
                check_zonemd(status["address"], status["identity"], "acme.", tld["status"]["ds"])
            )
            if checked.serial == serial or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert checked.serial == serial


def test_drift_is_put_back_and_strangers_are_refused(hmctl: Hmctl, applied: Path) -> None:
    registry = items(hmctl, "nodes")["registry"]["status"]
    address, pin = registry["address"], registry["identity"]
    path = "/registry/v1/rrsets"
    serial = items(hmctl, "tlds")["acme"]["status"]["serial"]

    # beta does not own acme: refused, nothing stored.
    stranger = {"tld": "acme", "rrsets": [{"name": "evil", "type": "A", "values": ["203.0.113.9"]}]}
    assert (
        asyncio.run(_signed_post(address, pin, path, stranger, hmctl.state / "nodes" / "beta"))
        == 403
    )
    assert _ask(address, pin, "evil.acme.", "A").rcode() == dns.rcode.NXDOMAIN

    # The owner's key deletes api.acme behind the controller's back: the next apply repairs it.
    gone = {"tld": "acme", "rrsets": [{"name": "api", "type": "A", "changetype": "DELETE"}]}
    assert (
        asyncio.run(_signed_post(address, pin, path, gone, hmctl.state / "nodes" / "alpha")) == 200
    )
    assert not _ask(address, pin, "api.acme.", "A").answer
    diff = hmctl("diff", "-f", str(applied))
    assert "Record/api.acme  (drift: api A differs at the registry)" in diff.stdout
    hmctl("apply", "-f", str(applied), "--timeout", "30s")
    assert len(_ask(address, pin, "api.acme.", "A").answer[0]) == 2
    assert items(hmctl, "tlds")["acme"]["status"]["serial"] > serial


def test_prune_withdraws_a_record(hmctl: Hmctl, applied: Path) -> None:
    names = applied / "names.yaml"
    text = names.read_text()
    start = text.index("kind: Record\nmetadata:\n  name: api.acme")
    start = text.rindex("---", 0, start)
    end = text.index("---", start + 3)
    names.write_text(text[:start] + text[end:])
    result = hmctl("apply", "-f", str(applied), "--prune", "--timeout", "30s")
    assert "record/api.acme deleted" in result.stdout, result.stdout + result.stderr
    registry = items(hmctl, "nodes")["registry"]["status"]
    assert not _ask(registry["address"], registry["identity"], "api.acme.", "A").answer
    assert "api.acme" not in items(hmctl, "records")


def test_every_node_mirrors_the_registry_and_answers_verified(hmctl: Hmctl, applied: Path) -> None:
    nodes = items(hmctl, "nodes")
    registry = nodes["registry"]["status"]
    serial = int(registry["zones"]["acme."])
    for name in ("alpha", "beta"):
        status = nodes[name]["status"]
        response = _ask(status["address"], status["identity"], "api.acme.", "A")
        assert response.rcode() == dns.rcode.NOERROR and response.answer
        assert int(status["zones"]["acme."]) == serial
        assert status["mirror"]["connected"] is True

    table = hmctl("get", "nodes", "-o", "wide")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    columns = header.split()
    assert columns[-3:] == ["SERIAL", "LAG", "AGE"]
    lag = {row.split()[0]: row.split()[-2] for row in rows}
    serials = {row.split()[0]: row.split()[-3] for row in rows}
    assert lag == {"registry": "-", "alpha": "0", "beta": "0"}
    # The node directory's zone (_nodes.) is mirrored too; its serial moves as nodes publish.
    assert re.fullmatch(rf"_nodes=\d+,acme={serial}", serials["alpha"]), serials["alpha"]

    # An answer from a mirror, checked from the registry's key (taken from the state).
    verified = hmctl("dns", "query", "api.acme", "A", "--via", "alpha", "--verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert ";; VERIFIED: zone acme." in verified.stdout
