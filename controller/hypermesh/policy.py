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


@dataclass(frozen=True, slots=True)
class Decision:
    action: str
    """``allow`` or ``deny``."""
    rule: str | None
    """The name (or ``rules[i]``) of the rule that decided; None for the default."""
    rate_limit: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class TestResult:
    index: int
    name: str
    expected: str
    decision: Decision
    request: tuple[str, str | None, str]

    @property
    def passed(self) -> bool:
        return self.decision.action == self.expected

    def describe(self) -> str:
        caller, target, operation = self.request
        who = f"{caller} → {target or 'any node'}: {operation}"
        by = f"rule {self.decision.rule!r}" if self.decision.rule else "the default"
        return f"{who}: expected {self.expected}, {by} decides {self.decision.action}"


@dataclass(frozen=True, slots=True)
class PolicyEngine:
    spec: Mapping[str, Any]
    members: Mapping[str, Member] = field(default_factory=dict)

    @classmethod
    def of(cls, spec: Mapping[str, Any], resources: Iterable[Any]) -> PolicyEngine:
        """The engine for ``spec`` with the tags of the Nodes and Peers among ``resources``."""
        members = {
            r.name: Member(r.kind, frozenset(r.spec.get("tags", ())))
            for r in resources
            if r.kind in ("Node", "Peer")
        }
        return cls(spec, members)

    def decide(self, caller: str, target: str | None, operation: str) -> Decision:
        groups = self.spec.get("groups", {})
        for i, rule in enumerate(self.spec.get("rules", [])):
            if not _covers(rule.get("operations", []), operation):
                continue
            if "from" in rule and not self._is(caller, rule["from"], groups):
                continue
            if "to" in rule and (target is None or not self._is(target, rule["to"], {})):
                continue
            name = rule.get("name") or f"rules[{i}]"
            action = rule.get("action", "allow")
            return Decision(action, name, rule.get("rateLimit") if action == "allow" else None)
        return Decision(self.spec.get("default", "deny"), None)

    def _is(self, name: str, selector: Mapping[str, Any], groups: Mapping[str, Any]) -> bool:
        network, slash, _ = name.partition("/")
        if slash:  # a member of a federated network: matched by that network only
            return network in selector.get("networks", ())
        if name in selector.get("nodes", ()) or name in selector.get("peers", ()):
            return True
        if any(name in groups.get(group, ()) for group in selector.get("groups", ())):
            return True
        member = self.members.get(name)
        return member is not None and bool(member.tags & set(selector.get("tags", ())))

    def run_tests(self) -> list[TestResult]:
        results = []
        for i, test in enumerate(self.spec.get("tests", [])):
            request = (str(test["from"]), test.get("to"), str(test["operation"]))
            results.append(
                TestResult(
                    i,
                    str(test.get("name") or f"tests[{i}]"),
                    str(test["expect"]),
                    self.decide(*request),
                    request,
                )
            )
        return results


def _covers(operations: Iterable[str], operation: str) -> bool:
    return any(op == "*" or op == operation for op in operations)
