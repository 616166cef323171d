"""InterfacePolicy decisions: who may do which operation to which node, decided as the policy
says — rules in order, the first that matches decides, ``default`` otherwise.

Pure: the same function decides for ``hmctl validate`` (the policy's own ``tests`` must hold
before it is accepted), for ``hmctl policy test``, and, once interfaces enforce policies, for a
node about to answer a request.

A rule matches a request when

- its ``from`` is omitted, or the caller is one of its ``nodes`` or ``peers``, a member of one
  of its ``groups``, carries one of its ``tags``, or is a member of one of its federated
  ``networks`` (such a caller is named ``NETWORK/MEMBER``);
- its ``to`` is omitted, or the target node is one of its ``nodes`` or carries one of its
  ``tags`` (a request with no named target matches only rules without ``to``);
- its ``operations`` hold the operation or ``*``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``1m30s``, ``500ms`` → seconds; ``ValueError`` otherwise."""
    text = text.strip()
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
        return float(text)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (try 30s, 2m, 1h30m)")
    return sum(float(n) * _UNIT[u] for n, u in parts)


class RateCounter:
    """Token buckets by key (a caller and the rule that limits it): ``requests`` per ``per``
    seconds, refilled continuously, a burst of ``requests``. At most ``max_keys`` buckets are
    kept (the least recently used go first), so many sources cost bounded memory."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()
        self._max = max_keys

    def allow(self, key: Hashable, requests: int, per: float, now: float) -> bool:
        tokens, last = self._buckets.pop(key, (float(requests), now))
        tokens = min(float(requests), tokens + (now - last) * requests / per)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return allowed


OPERATIONS = (
    "dns.query",
    "dns.update",
    "chain.read",
    "chain.write",
    "message.send",
    "tunnel.relay",
    "registry.write",
    "status.read",
)


@dataclass(frozen=True, slots=True)
class Member:
    """A Node or Peer as policies see it."""

    kind: str
    tags: frozenset[str] = frozenset()


class Verdict(StrEnum):
    """What a rule, the default or a test says of a request (its text is the manifest's)."""

    ALLOW = "allow"
    DENY = "deny"


class PolicyError(ValueError):
    """An InterfacePolicy spec that is not shaped as its schema says (a program built it, or
    the schema was skipped): the field and what is wrong with it."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``requests`` per ``per`` (a duration, as written) from each caller."""

    requests: int
    per: str
    seconds: float
    """``per`` in seconds."""

    def __str__(self) -> str:
        return f"{self.requests} per {self.per}"


@dataclass(frozen=True, slots=True)
class Selector:
    """A rule's ``from`` or ``to``: the union of the callers or targets it names."""

    nodes: frozenset[str] = frozenset()
    peers: frozenset[str] = frozenset()
    groups: tuple[str, ...] = ()
    tags: frozenset[str] = frozenset()
    networks: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: it decides ``action`` for the requests it matches."""

    name: str
    """Its ``name``, or ``rules[i]`` for a rule without one."""
    operations: frozenset[str]
    """The operations it covers; ``*`` covers all of them."""
    action: Verdict = Verdict.ALLOW
    caller: Selector | None = None
    """``from``; None: anyone."""
    target: Selector | None = None
    """``to``; None: any node (and a request with no named target)."""
    rate_limit: RateLimit | None = None

    def covers(self, operation: str) -> bool:
        return "*" in self.operations or operation in self.operations


@dataclass(frozen=True, slots=True)
class PolicyTest:
    """One of the policy's own expected decisions."""

    index: int
    name: str
    caller: str
    target: str | None
    operation: str
    expect: Verdict


@dataclass(frozen=True, slots=True)
class Policy:
    """An InterfacePolicy spec, parsed once: what the engine decides on."""

    default: Verdict = Verdict.DENY
    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    tests: tuple[PolicyTest, ...] = ()

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> Policy:
        """The policy ``spec`` (an InterfacePolicy's ``spec``) says; ``PolicyError`` naming the
        field when it is not shaped as the schema says."""
        groups = _mapping(spec.get("groups", {}), "groups")
        return cls(
            default=_verdict(spec.get("default", "deny"), "default"),
            groups={
                str(name): frozenset(_names(members, f"groups.{name}"))
                for name, members in groups.items()
            },
            rules=tuple(
                _rule(rule, f"rules[{i}]")
                for i, rule in enumerate(_list(spec.get("rules", []), "rules"))
            ),
            tests=tuple(
                _test(i, test) for i, test in enumerate(_list(spec.get("tests", []), "tests"))
            ),
        )


def _rule(data: Any, where: str) -> Rule:
    rule = _mapping(data, where)
    if "operations" not in rule:
        raise PolicyError(f"{where}.operations: missing")
    action = _verdict(rule.get("action", "allow"), f"{where}.action")
    limit = rule.get("rateLimit")
    return Rule(
        name=str(rule.get("name") or where),
        operations=frozenset(_operations(rule["operations"], f"{where}.operations")),
        action=action,
        caller=None if "from" not in rule else _selector(rule["from"], f"{where}.from"),
        target=None if "to" not in rule else _selector(rule["to"], f"{where}.to"),
        rate_limit=_rate_limit(limit, f"{where}.rateLimit") if limit is not None else None,
    )


def _selector(data: Any, where: str) -> Selector:
    selector = _mapping(data, where)
    return Selector(
        nodes=frozenset(_names(selector.get("nodes", []), f"{where}.nodes")),
        peers=frozenset(_names(selector.get("peers", []), f"{where}.peers")),
        groups=tuple(_names(selector.get("groups", []), f"{where}.groups")),
        tags=frozenset(_names(selector.get("tags", []), f"{where}.tags")),
        networks=frozenset(_names(selector.get("networks", []), f"{where}.networks")),
    )


def _rate_limit(data: Any, where: str) -> RateLimit:
    limit = _mapping(data, where)
    requests, per = limit.get("requests"), limit.get("per")
    if not isinstance(requests, int) or isinstance(requests, bool) or requests < 1:
        raise PolicyError(f"{where}.requests: expected a whole number of at least 1")
    if not isinstance(per, str):
        raise PolicyError(f"{where}.per: expected a duration such as 30s, 15m, 2h or 1d")
    try:
        seconds = parse_duration(per)
    except ValueError as exc:
        raise PolicyError(f"{where}.per: {exc}") from None
    return RateLimit(requests, per, seconds)


def _test(index: int, data: Any) -> PolicyTest:
    where = f"tests[{index}]"
    test = _mapping(data, where)
    for required in ("from", "operation", "expect"):
        if required not in test:
            raise PolicyError(f"{where}.{required}: missing")
    target = test.get("to")
    return PolicyTest(
        index=index,
        name=str(test.get("name") or where),
        caller=str(test["from"]),
        target=None if target is None else str(target),
        operation=_operations([test["operation"]], f"{where}.operation")[0],
        expect=_verdict(test["expect"], f"{where}.expect"),
    )


def _verdict(value: Any, where: str) -> Verdict:
    try:
        return Verdict(value)
    except ValueError:
        raise PolicyError(f"{where}: {value!r} is not one of: allow, deny") from None


def _operations(values: Any, where: str) -> list[str]:
    known = ("*", *OPERATIONS)
    operations = _names(values, where)
    for operation in operations:
        if operation not in known:
            raise PolicyError(f"{where}: {operation!r} is not one of: {', '.join(known)}")
    return operations


def _names(values: Any, where: str) -> list[str]:
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
        raise PolicyError(f"{where}: expected a list of names")
    return list(values)


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise PolicyError(f"{where}: expected a list")
    return list(value)


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PolicyError(f"{where}: expected a mapping")
    return value


@dataclass(frozen=True, slots=True)
class Decision:
    action: Verdict
    rule: str | None
    """The name (or ``rules[i]``) of the rule that decided; None for the default."""
    rate_limit: RateLimit | None = None


@dataclass(frozen=True, slots=True)
class TestResult:
    index: int
    name: str
    expected: Verdict
    decision: Decision
    request: tuple[str, str | None, str]

    @property
    def passed(self) -> bool:
        return self.decision.action is self.expected

    def describe(self) -> str:
        caller, target, operation = self.request
        who = f"{caller} → {target or 'any node'}: {operation}"
        by = f"rule {self.decision.rule!r}" if self.decision.rule else "the default"
        return f"{who}: expected {self.expected}, {by} decides {self.decision.action}"


@dataclass(frozen=True, slots=True)
class PolicyEngine:
    policy: Policy
    members: Mapping[str, Member] = field(default_factory=dict)

    @classmethod
    def of(cls, spec: Mapping[str, Any], resources: Iterable[Any]) -> PolicyEngine:
        """The engine for ``spec`` with the tags of the Nodes and Peers among ``resources``;
        ``PolicyError`` when ``spec`` is not shaped as the schema says."""
        members = {
            r.name: Member(r.kind, frozenset(r.spec.get("tags", ())))
            for r in resources
            if r.kind in ("Node", "Peer")
        }
        return cls(Policy.parse(spec), members)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], members: Mapping[str, Member]) -> PolicyEngine:
        """The engine for ``spec`` with ``members`` (their kinds and tags) known by name."""
        return cls(Policy.parse(spec), members)

    def decide(self, caller: str, target: str | None, operation: str) -> Decision:
        for rule in self.policy.rules:
            if not rule.covers(operation):
                continue
            if rule.caller is not None and not self._is(caller, rule.caller, self.policy.groups):
                continue
            if rule.target is not None and (target is None or not self._is(target, rule.target)):
                continue
            limit = rule.rate_limit if rule.action is Verdict.ALLOW else None
            return Decision(rule.action, rule.name, limit)
        return Decision(self.policy.default, None)

    def _is(
        self, name: str, selector: Selector, groups: Mapping[str, frozenset[str]] | None = None
    ) -> bool:
        """Whether ``selector`` names ``name``; ``groups`` are those a ``from`` may use."""
        network, slash, _ = name.partition("/")
        if slash:  # a member of a federated network: matched by that network only
            return network in selector.networks
        if name in selector.nodes or name in selector.peers:
            return True
        if groups and any(name in groups.get(group, ()) for group in selector.groups):
            return True
        member = self.members.get(name)
        return member is not None and bool(member.tags & selector.tags)

    def run_tests(self) -> list[TestResult]:
        return [
            TestResult(
                test.index,
                test.name,
                test.expect,
                self.decide(test.caller, test.target, test.operation),
                (test.caller, test.target, test.operation),
            )
            for test in self.policy.tests
        ]
