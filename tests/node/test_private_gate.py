"""The private interface's gate: members by proven node ID, operations decided by the private
InterfacePolicy, default deny."""

from __future__ import annotations

from hypermesh.node.private import PrivateGate, operation_of

DIRECTORY = {
    "alpha": {"kind": "Node", "identity": "hm1alpha", "tags": ["web"]},
    "beta": {"kind": "Node", "identity": "hm1beta", "tags": []},
    "partner": {"kind": "Peer", "identity": "hm1partner", "tags": []},
}
POLICY = {
    "default": "deny",
    "groups": {"staff": ["alpha", "beta"]},
    "rules": [
        {"name": "staff", "from": {"groups": ["staff"]}, "operations": ["*"]},
        {
            "name": "read",
            "from": {"peers": ["partner"]},
            "to": {"tags": ["web"]},
            "operations": ["chain.read", "dns.query"],
        },
    ],
}


def test_operations_of_requests() -> None:
    assert operation_of("POST", "/dns-query") == "dns.query"
    assert operation_of("GET", "/chain/v1/head") == "chain.read"
    assert operation_of("POST", "/chain/v1/append") == "chain.write"
    assert operation_of("POST", "/message/v1/inbox") == "message.send"
    assert operation_of("POST", "/registry/v1/rrsets") == "registry.write"
    assert operation_of("GET", "/status") == "status.read"


def test_members_policy_and_default_deny() -> None:
    on_alpha = PrivateGate.of("alpha", DIRECTORY, POLICY)
    assert on_alpha.decide("hm1beta", "chain.write") == (True, "")
    assert on_alpha.decide("hm1partner", "chain.read") == (True, "")
    allowed, why = on_alpha.decide("hm1partner", "chain.write")
    assert not allowed and "denied here (the default)" in why
    allowed, why = on_alpha.decide("hm1stranger", "dns.query")
    assert not allowed and "not a member" in why
    allowed, why = on_alpha.decide(None, "status.read")
    assert not allowed and "client certificate" in why
    on_beta = PrivateGate.of("beta", DIRECTORY, POLICY)
    assert not on_beta.decide("hm1partner", "chain.read")[0]  # beta is not tagged web
    no_policy = PrivateGate.of("beta", DIRECTORY, None)
    assert no_policy.decide("hm1partner", "chain.write") == (True, "")  # members, no policy
    assert not no_policy.decide("hm1stranger", "status.read")[0]
