"""InterfacePolicy decisions: first match decides, groups, tags, targets, deny rules, the
default; a policy whose own tests fail is refused at validate time with its position; and
`hmctl policy test` shows the tests and answers one question."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hypermesh.policy import (
    OPERATIONS,
    Member,
    Policy,
    PolicyEngine,
    PolicyError,
    RateLimit,
    Selector,
    Verdict,
)
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
ENGINE = PolicyEngine.from_spec(SPEC, MEMBERS)


def test_first_match_decides_then_the_default() -> None:
    assert ENGINE.decide("alpha", "beta", "chain.write").rule == "staff"
    read = ENGINE.decide("partner", "alpha", "chain.read")
    assert (read.action, read.rule) == (Verdict.ALLOW, "web-read")
    assert read.rate_limit == RateLimit(10, "1m", 60.0)
    assert ENGINE.decide("partner", "beta", "chain.read").action is Verdict.DENY  # beta is not web
    assert ENGINE.decide("partner", "alpha", "chain.write").rule is None
    assert ENGINE.decide("partner", "alpha", "tunnel.relay").rule == "no-relay"
    no_target = ENGINE.decide("partner", None, "dns.query")
    assert no_target.action is Verdict.DENY  # a `to` needs a target
    assert ENGINE.decide("cruncher", None, "status.read").action is Verdict.ALLOW  # by tag
    assert ENGINE.decide("stranger", "alpha", "dns.query").action is Verdict.DENY
    allow_all = PolicyEngine.from_spec({"default": "allow"}, {})
    assert allow_all.decide("anyone", None, "dns.query").action is Verdict.ALLOW


def test_the_spec_is_parsed_once_into_typed_rules() -> None:
    policy = Policy.parse(SPEC)
    assert policy.default is Verdict.DENY
    assert policy.groups["staff"] == frozenset({"alpha", "beta"})
    relay, staff, web, gpu = policy.rules
    assert (relay.name, relay.action, relay.caller) == (
        "no-relay",
        Verdict.DENY,
        Selector(peers=frozenset({"partner"})),
    )
    assert staff.covers("registry.write") and not relay.covers("dns.query")
    assert web.target == Selector(tags=frozenset({"web"})) and web.rate_limit is not None
    assert web.rate_limit.seconds == 60.0 and str(web.rate_limit) == "10 per 1m"
    assert gpu.target is None and gpu.action is Verdict.ALLOW  # the schema's default
    unnamed = Policy.parse({"rules": [{"operations": ["*"]}]}).rules[0]
    assert unnamed.name == "rules[0]"


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        ({"operations": ["*"], "action": "refuse"}, "rules[0].action: 'refuse' is not one of"),
        ({"operations": ["tunnel.relays"]}, "rules[0].operations: 'tunnel.relays' is not one"),
        ({"name": "x"}, "rules[0].operations: missing"),
        ({"operations": ["*"], "from": ["a"]}, "rules[0].from: expected a mapping"),
        (
            {"operations": ["*"], "rateLimit": {"requests": 1, "per": "soon"}},
            "rules[0].rateLimit.per: not a duration: 'soon'",
        ),
        (
            {"operations": ["*"], "rateLimit": {"requests": 0, "per": "1s"}},
            "rules[0].rateLimit.requests: expected a whole number",
        ),
    ],
)
def test_a_rule_not_shaped_as_the_schema_says_is_refused_by_field(
    rule: dict[str, Any], error: str
) -> None:
    with pytest.raises(PolicyError, match=re.escape(error)):
        Policy.parse({"rules": [rule]})


def test_a_bad_rule_in_a_manifest_gives_the_schema_error_as_before(
    hmctl: Hmctl, tmp_path: Path
) -> None:
    """The manifest's schema refuses a bad rule first, with the same message as before rules
    were parsed into types; the typed parse never sees it."""
    folder = tmp_path / "net"
    shutil.copytree(EXAMPLES / "registry-and-names", folder)
    policy = folder / "policy.yaml"
    policy.write_text(policy.read_text().replace("action: deny", "action: refuse"))
    refused = hmctl("validate", "-f", str(folder))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert (
        "policy.yaml:33:7: InterfacePolicy/acme-private: spec.rules[2].action: "
        "'refuse' is not one of: allow, deny"
    ) in refused.stderr


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
        assert decision.action is Verdict.DENY
    if caller == "partner" and operation == "tunnel.relay":
        assert decision.rule == "no-relay"
    if caller in ("alpha", "beta") and operation != "tunnel.relay":
        assert decision.action is Verdict.ALLOW


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
