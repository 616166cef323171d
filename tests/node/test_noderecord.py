"""The node record's own checks: what a record from a mirror or a registry must pass before its
addresses are used."""

from __future__ import annotations

import json

import pytest

from hypermesh.transport import noderecord
from hypermesh.transport.identity import Identity
from hypermesh.transport.noderecord import MAX_LIFETIME, BadNodeRecord, NodeRecord

NOW = 1_800_000_000.0
KEY = Identity.generate()


def issued(**changes: object) -> NodeRecord:
    fields: dict[str, object] = {
        "network": "acme",
        "name": "gamma",
        "interfaces": {"public": ["198.18.1.3:4433"]},
        "issued_at": NOW,
        "seq": 1,
    }
    return NodeRecord.issue(KEY, **{**fields, **changes})  # type: ignore[arg-type]


def test_a_record_reads_back_from_its_txt_strings_as_the_same_record() -> None:
    record = issued(host="c")
    back = NodeRecord.from_txt(record.txt_strings(), now=NOW + 1, node_id=KEY.node_id)
    assert back == record and back.addresses == ("198.18.1.3:4433",) and back.host == "c"


def test_an_expired_record_or_another_keys_record_is_refused() -> None:
    record = issued()
    with pytest.raises(BadNodeRecord, match="expired"):
        NodeRecord.verify(record.to_json(), now=NOW + 601)
    other = Identity.generate().node_id
    with pytest.raises(BadNodeRecord, match=f"not {other}'s"):
        NodeRecord.verify(record.to_json(), now=NOW + 1, node_id=other)


def test_a_changed_document_no_longer_verifies() -> None:
    signed = issued().to_json()
    body = json.loads(signed["document"])
    body["interfaces"]["public"] = ["203.0.113.9:4433"]  # a mirror redirecting callers
    forged = {**signed, "document": json.dumps(body, separators=(",", ":"), sort_keys=True)}
    with pytest.raises(BadNodeRecord, match="not signed by"):
        NodeRecord.verify(forged)


def test_a_record_read_again_is_not_checked_again_but_a_forgery_always_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checked: list[str] = []
    real = noderecord.verify_signature

    def counting(node_id: str, message: bytes, signature: bytes) -> bool:
        checked.append(node_id)
        return real(node_id, message, signature)

    monkeypatch.setattr(noderecord, "verify_signature", counting)
    signed = issued(seq=7).to_json()
    first, again = NodeRecord.verify(signed), NodeRecord.verify(dict(signed))
    assert first == again and len(checked) == 1
    # Expiry and the node asked for are still checked each time, against the caller's values.
    with pytest.raises(BadNodeRecord, match="expired"):
        NodeRecord.verify(signed, now=NOW + 601)
    forged = {**signed, "signature": issued(seq=8).to_json()["signature"]}
    for _ in range(2):
        with pytest.raises(BadNodeRecord, match="not signed by"):
            NodeRecord.verify(forged)
    assert len(checked) == 3


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lifetime": MAX_LIFETIME + 1}, "at most"),
        ({"interfaces": {"public": ["not an address"]}}, "malformed"),
        ({"interfaces": {"secret": ["198.18.1.3:4433"]}}, "unknown interface"),
        ({"seq": -1}, "seq"),
    ],
)
def test_out_of_bounds_fields_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(BadNodeRecord, match=message):
        issued(**changes)


def test_reflexive_addresses_and_the_home_relay_read_back_and_are_checked() -> None:
    relay = Identity.generate().node_id
    record = issued(reflexive=["203.0.113.7:61002"], relay=(relay, ["198.18.1.9:4433"]))
    back = NodeRecord.verify(record.to_json(), now=NOW + 1)
    assert back.reflexive == ("203.0.113.7:61002",)
    assert (back.relay_id, back.relay_addresses) == (relay, ("198.18.1.9:4433",))
    assert issued().reflexive == () and issued().relay_id is None
    with pytest.raises(BadNodeRecord, match=r"relay\.node is not a node ID"):
        issued(relay=("not-a-key", ["198.18.1.9:4433"]))
    with pytest.raises(BadNodeRecord, match=r"relay\.addresses"):
        issued(relay=(relay, []))
    with pytest.raises(BadNodeRecord, match="port"):
        issued(reflexive=["203.0.113.7"])
