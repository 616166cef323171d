"""The interfaces' gates: members by proven node ID, operations decided by the interface's
InterfacePolicy (default deny on private), and rate limits counted per caller or source."""

from __future__ import annotations

from hypermesh.node.interfaces import PrivateGate, PublicGate, operation_of
from hypermesh.policy import RateCounter

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
            "rateLimit": {"requests": 2, "per": "1m"},
        },
    ],
}


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_operations_of_requests() -> None:
    assert operation_of("POST", "/dns-query") == "dns.query"
    assert operation_of("GET", "/chain/v1/head") == "chain.read"
    assert operation_of("POST", "/chain/v1/append") == "chain.write"
    assert operation_of("POST", "/message/v1/inbox") == "message.send"
    assert operation_of("POST", "/registry/v1/rrsets") == "registry.write"
    assert operation_of("GET", "/status") == "status.read"


def test_private_members_policy_default_deny_and_limits() -> None:
    on_alpha = PrivateGate.of("alpha", DIRECTORY, POLICY)
    clock = Clock()
    on_alpha.limits.clock = clock
    assert on_alpha.check("hm1beta", "10.0.0.2:1", "chain.write") == (0, "")
    assert on_alpha.check("hm1partner", "10.0.0.3:1", "chain.read") == (0, "")
    status, why = on_alpha.check("hm1partner", "10.0.0.3:1", "chain.write")
    assert status == 403 and "denied here (the default)" in why
    status, why = on_alpha.check("hm1stranger", "10.0.0.4:1", "dns.query")
    assert status == 403 and "not a member" in why
    status, why = on_alpha.check(None, "10.0.0.4:1", "status.read")
    assert status == 403 and "client certificate" in why
    # Two per minute for the partner: one used above, one more, then 429 until time passes.
    assert on_alpha.check("hm1partner", "10.0.0.3:2", "dns.query")[0] == 0
    status, why = on_alpha.check("hm1partner", "10.0.0.3:3", "chain.read")
    assert status == 429 and "2 per 1m" in why
    clock.now += 30  # half a minute refills one request
    assert on_alpha.check("hm1partner", "10.0.0.3:3", "chain.read")[0] == 0
    assert on_alpha.check("hm1beta", "10.0.0.2:1", "chain.read")[0] == 0  # staff: no limit

    on_beta = PrivateGate.of("beta", DIRECTORY, POLICY)
    assert on_beta.check("hm1partner", "10.0.0.3:1", "chain.read")[0] == 403  # not web
    no_policy = PrivateGate.of("beta", DIRECTORY, None)
    assert no_policy.check("hm1partner", "x:1", "chain.write") == (0, "")
    assert no_policy.check("hm1stranger", "x:1", "status.read")[0] == 403


def test_public_policy_limits_each_source() -> None:
    public = {
        "default": "deny",
        "rules": [
            {
                "name": "anyone-dns",
                "operations": ["dns.query", "status.read"],
                "rateLimit": {"requests": 3, "per": "1s"},
            },
        ],
    }
    gate = PublicGate.of("alpha", DIRECTORY, public)
    clock = Clock()
    gate.limits.clock = clock
    for _ in range(3):
        assert gate.check(None, "198.51.100.7:5000", "dns.query") == (0, "")
    assert gate.check(None, "198.51.100.7:5001", "dns.query")[0] == 429  # same host
    assert gate.check(None, "198.51.100.8:5000", "dns.query") == (0, "")  # another source
    assert gate.check(None, "198.51.100.9:1", "chain.write")[0] == 403  # not allowed at all
    clock.now += 1
    assert gate.check(None, "198.51.100.7:5002", "dns.query") == (0, "")


def test_rate_counter_keeps_bounded_memory() -> None:
    counter = RateCounter(max_keys=10)
    for i in range(100):
        assert counter.allow(i, 1, 60, 0.0)
    assert not counter.allow(99, 1, 60, 0.0)  # the newest keys are kept
    assert counter.allow(0, 1, 60, 0.0)  # the oldest were forgotten


def test_revoked_keys_are_refused_whatever_the_policy_says() -> None:
    revoked = {"hm1beta"}.__contains__
    private = PrivateGate.of("alpha", DIRECTORY, None, revoked)
    status, why = private.check("hm1beta", "x:1", "status.read")
    assert status == 403 and "revoked" in why
    assert private.check("hm1partner", "x:1", "status.read") == (0, "")
    public = PublicGate.of("alpha", DIRECTORY, None, revoked)
    assert public.check("hm1beta", "x:1", "dns.query")[0] == 403
    assert public.check(None, "x:1", "dns.query") == (0, "")  # anonymous: still welcome
    assert public.check("hm1stranger", "x:1", "dns.query") == (0, "")
    own = PrivateGate.of("beta", DIRECTORY, None, revoked)
    assert own.check("hm1beta", "x:1", "status.read") == (0, "")  # its operator's own key


def test_members_of_federated_networks_are_named_and_matched_by_network() -> None:
    federated = {"hm1pnode": "partners/pnode"}.get
    policy = {
        "default": "deny",
        "rules": [
            {"name": "partners", "from": {"networks": ["partners"]}, "operations": ["chain.read"]},
            {"name": "tagged", "from": {"tags": ["web"]}, "operations": ["*"]},
        ],
    }
    gate = PrivateGate.of("beta", DIRECTORY, policy, federated=federated)
    assert gate.check("hm1pnode", "x:1", "chain.read") == (0, "")
    status, why = gate.check("hm1pnode", "x:1", "chain.write")
    assert status == 403 and "by partners/pnode" in why
    assert gate.check("hm1alpha", "x:1", "chain.write") == (0, "")  # tagged web
    status, why = gate.check("hm1other", "x:1", "chain.read")
    assert status == 403 and "nor of a federated one" in why
    # Without a policy, a federated member is admitted like a member.
    assert PrivateGate.of("beta", DIRECTORY, None, federated=federated).check(
        "hm1pnode", "x:1", "chain.write"
    ) == (0, "")
