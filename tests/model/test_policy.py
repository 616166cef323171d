"""InterfacePolicy decisions: first match decides, groups, tags, targets, deny rules, the
default; a policy whose own tests fail is refused at validate time with its position; and
`hmctl policy test` shows the tests and answers one question."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from hypermesh.policy import OPERATIONS, Member, PolicyEngine
from tests.conftest import EXAMPLES, Hmctl

SPEC: dict[str, Any] = {
    "default": "deny",
    "groups": {"staff": ["alpha", "beta"], "partners": ["partner"]},
    "rules": [
        {
            "name": "no-relay",
            "from": {"peers": ["partner"]},
            "operations": ["tunnel.relay"],
            "action": "deny",
        },
        {"name": "staff", "from": {"groups": ["staff"]}, "operations": ["*"]},
        {
            "name": "web-read",
            "from": {"groups": ["partners"]},
            "to": {"tags": ["web"]},
            "operations": ["dns.query", "chain.read"],
            "rateLimit": {"requests": 10, "per": "1m"},
        },
        {"name": "gpu-anyone", "from": {"tags": ["gpu"]}, "operations": ["status.read"]},
    ],
}
MEMBERS = {
    "alpha": Member("Node", frozenset({"web"})),
    "beta": Member("Node"),
    "partner": Member("Peer"),
    "cruncher": Member("Peer", frozenset({"gpu"})),
}
ENGINE = PolicyEngine(SPEC, MEMBERS)


def test_first_match_decides_then_the_default() -> None:
    assert ENGINE.decide("alpha", "beta", "chain.write").rule == "staff"
    read = ENGINE.decide("partner", "alpha", "chain.read")
    assert (read.action, read.rule) == ("allow", "web-read")
    assert read.rate_limit == {"requests": 10, "per": "1m"}
    assert ENGINE.decide("partner", "beta", "chain.read").action == "deny"  # beta is not web
    assert ENGINE.decide("partner", "alpha", "chain.write").rule is None
    assert ENGINE.decide("partner", "alpha", "tunnel.relay").rule == "no-relay"
    assert ENGINE.decide("partner", None, "dns.query").action == "deny"  # a `to` needs a target
    assert ENGINE.decide("cruncher", None, "status.read").action == "allow"  # by tag
    assert ENGINE.decide("stranger", "alpha", "dns.query").action == "deny"
    allow_all = PolicyEngine({"default": "allow"})
    assert allow_all.decide("anyone", None, "dns.query").action == "allow"


@given(
    st.sampled_from(["alpha", "beta", "partner", "cruncher", "stranger"]),
    st.sampled_from(["alpha", "beta", None]),
    st.sampled_from(OPERATIONS),
)
def test_deny_rules_ahead_win_and_unknown_callers_are_denied(
    caller: str, target: str | None, operation: str
) -> None:
    decision = ENGINE.decide(caller, target, operation)
    if caller == "stranger":
        assert decision.action == "deny"
    if caller == "partner" and operation == "tunnel.relay":
        assert decision.rule == "no-relay"
    if caller in ("alpha", "beta") and operation != "tunnel.relay":
        assert decision.action == "allow"


def test_a_policy_whose_tests_fail_is_refused(hmctl: Hmctl, tmp_path: Path) -> None:
    folder = tmp_path / "net"
    shutil.copytree(EXAMPLES / "registry-and-names", folder)
    assert hmctl("validate", "-f", str(folder)).returncode == 0
    shown = hmctl("policy", "test", "-f", str(folder))
    assert shown.returncode == 0 and "2 of 2 policy tests pass" in shown.stdout

    policy = folder / "policy.yaml"
    text = policy.read_text()
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "expect: deny" in row)
    policy.write_text(text.replace("expect: deny", "expect: allow"))
    refused = hmctl("validate", "-f", str(folder))
    assert refused.returncode == 1
    assert f"policy.yaml:{line}:" in refused.stderr
    assert "policy test 'partners cannot write chains' fails" in refused.stderr
    assert "the default decides deny" in refused.stderr
    failing = hmctl("policy", "test", "-f", str(folder))
    assert failing.returncode == 1 and "FAIL" in failing.stdout and "1 of 2" in failing.stdout

    asked = hmctl(
        "policy",
        "test",
        "-f",
        str(folder),
        "--from",
        "partner",
        "--to",
        "alpha",
        "--operation",
        "chain.read",
    )
    assert (
        asked.stdout.strip() == "acme-private: allow (rule 'partners-read-web', at most 100 per 1m)"
    )
    bad = hmctl("policy", "test", "-f", str(folder), "--from", "partner", "--operation", "x.y")
    assert bad.returncode == 2 and "--operation must be one of" in bad.stderr
