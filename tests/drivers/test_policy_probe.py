"""The probe's pure core: which requests to send, what each gate expects, how answers are judged
and summed up (no sockets; the real nodes are probed in tests/e2e/test_policy_probe.py)."""

from __future__ import annotations

import base64
from typing import Any

import dns.message
import dns.rdatatype

from hypermesh.drivers.policies import (
    REVOKED,
    Probe,
    ProbePlan,
    judge,
    plan_probes,
    probe_requests,
    report,
)
from hypermesh.node.interfaces import operation_of
from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import Identity

KEYS = {name: Identity.generate() for name in ("alpha", "beta", "gamma")}
DIRECTORY: dict[str, dict[str, Any]] = {
    name: {"kind": "Node", "identity": key.node_id, "tags": []} for name, key in KEYS.items()
}
OPERATIONS = list(probe_requests("demo"))
POLICY: dict[str, Any] = {
    "network": "demo",
    "interface": "private",
    "default": "deny",
    "rules": [
        {
            "name": "alpha-reads-beta",
            "from": {"nodes": ["alpha"]},
            "to": {"nodes": ["beta"]},
            "operations": ["chain.read"],
        },
        {
            "name": "no-writes",
            "from": {"nodes": ["beta"]},
            "operations": ["chain.write"],
            "action": "deny",
        },
        {"name": "status", "operations": ["status.read"]},
        {
            "name": "limited",
            "from": {"nodes": ["gamma"]},
            "operations": ["dns.query"],
            "rateLimit": {"requests": 5, "per": "1m"},
        },
    ],
}
BETA = {"beta": PeerRef("127.0.0.1:1", KEYS["beta"].node_id)}
ALPHA = {"alpha": PeerRef("127.0.0.1:2", KEYS["alpha"].node_id)}


def verdicts(plan: ProbePlan) -> dict[tuple[str, str, str], int]:
    return {(p.caller, p.target, p.operation): p.verdict[0] for p in plan.probes}


def test_each_probe_request_is_the_operation_it_probes_and_harmless() -> None:
    for operation, request in probe_requests("demo").items():
        assert operation_of(request.method, request.path.split("?")[0]) == operation
        assert request.body == b""  # writes carry nothing to store
    path = probe_requests("demo")["dns.query"].path
    encoded = path.split("dns=", 1)[1]
    query = dns.message.from_wire(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    assert str(query.question[0].name) == "demo." and query.question[0].rdtype == dns.rdatatype.SOA


def test_gates_decide_what_to_expect_never_with_the_targets_own_key() -> None:
    plan = plan_probes(POLICY, DIRECTORY, BETA | ALPHA, list(KEYS), OPERATIONS, 256)
    seen = verdicts(plan)
    assert all(caller != target for caller, target, _ in seen)  # own key: never a caller
    assert seen[("alpha", "beta", "chain.read")] == 0  # rule alpha-reads-beta
    assert seen[("gamma", "beta", "chain.read")] == 403  # the default
    assert seen[("beta", "alpha", "chain.write")] == 403  # rule no-writes
    assert seen[("beta", "alpha", "status.read")] == 0
    assert seen[("", "beta", "status.read")] == 403  # anonymous: private needs a key
    # gamma's DNS queries are allowed under a rate limit: not probed, so as not to spend them.
    assert ("gamma", "beta", "dns.query") not in seen
    assert plan.skipped == 2 and "rate limit" in plan.notes[0]


def test_the_public_gate_judges_anonymous_callers_by_the_rules() -> None:
    public = {
        "network": "demo",
        "interface": "public",
        "default": "deny",
        "rules": [{"name": "open-dns", "operations": ["dns.query", "status.read"]}],
    }
    seen = verdicts(plan_probes(public, DIRECTORY, BETA, ["alpha"], OPERATIONS, 256))
    assert seen[("", "beta", "dns.query")] == 0
    assert seen[("", "beta", "chain.read")] == 403
    assert seen[("alpha", "beta", "registry.write")] == 403


def test_probes_over_the_bound_are_skipped_with_a_note() -> None:
    plan = plan_probes(POLICY, DIRECTORY, BETA | ALPHA, list(KEYS), OPERATIONS, 5)
    assert len(plan.probes) == 5
    assert any("over the limit of 5" in note for note in plan.notes)


def test_answers_are_judged_refused_or_reached() -> None:
    plan = plan_probes(POLICY, DIRECTORY, BETA, ["alpha"], OPERATIONS, 256)
    by = {(p.caller, p.operation): p for p in plan.probes}
    read, write = by[("alpha", "chain.read")], by[("alpha", "chain.write")]
    assert judge(read, 200) is None
    assert judge(write, 403) is None
    assert judge(write, 401) == (
        "alpha → beta private chain.write: the policy denies, the node allowed (401)"
    )
    assert judge(read, 403) == (
        "alpha → beta private chain.read: the policy allows, the node refused (403)"
    )
    assert judge(read, 429) is not None  # a rate limit the policy does not set
    assert judge(read, 404) is None  # past the gate: no such API on this node is fine


def test_a_report_is_ready_only_when_every_answer_matches() -> None:
    plan = plan_probes(POLICY, DIRECTORY, BETA, ["alpha"], OPERATIONS, 256)
    good = {p: (403 if p.verdict[0] else 200) for p in plan.probes}
    found = report("private", plan, good, targets=1)
    assert found.ready and found.reason == "Enforced" and found.probes == len(plan.probes)
    assert found.status(3)["conditions"][0]["status"] == "True"

    bad = dict(good)
    write = next(p for p in plan.probes if p.caller == "alpha" and p.operation == "chain.write")
    bad[write] = 401
    bad[next(iter(plan.probes))] = "connection failed: no QUIC handshake"
    found = report("private", plan, bad, targets=1)
    assert not found.ready and found.reason == "NotEnforced"
    assert "alpha → beta private chain.write" in found.message
    status = found.status(3)
    assert status["unanswered"] == 1
    assert status["conditions"][0]["type"] == "Enforced"
    assert status["conditions"][0]["status"] == "False"

    assert report("private", ProbePlan(()), {}, targets=0).reason == "NoNodes"
    assert report("private", plan, {}, targets=1).reason == "Unreachable"
    assert report("ephemeral", ProbePlan(()), {}, targets=0).reason == "NoNodes"


def test_a_revoked_callers_refusals_are_noted_not_counted_as_mismatches() -> None:
    plan = plan_probes(POLICY, DIRECTORY, BETA, ["alpha", "gamma"], OPERATIONS, 256)
    answers: dict[Probe, int | str] = {
        p: (REVOKED if p.caller == "alpha" else 403 if p.verdict[0] else 200) for p in plan.probes
    }
    found = report("private", plan, answers, targets=1)
    assert found.ready and found.mismatches == ()
    assert found.probes == sum(1 for p in plan.probes if p.caller != "alpha")
    assert any("alpha's key is revoked" in note for note in found.notes)
