"""The gates of a node's interfaces: who may do what, decided before any handler runs.

**Private** (``PrivateGate``): a second QUIC endpoint where only members of the network get
in. Every client must prove a node key in the handshake (``transport.pinning``); the caller is
the member whose node ID that key is (the Network's Nodes and Peers, from the node's config), or
``NETWORK/MEMBER`` when a federated network's registry vouches for the key
(``hypermesh.mirror.federation``). Members the registry's anchors name (``listed``: its static
members and the nodes that joined with a token, as the node's mirror holds them) are members
too; a name the node's config gives one key is not taken by another key in the anchors.
Each request is mapped to an operation (``operation_of``) and decided by the network's private
InterfacePolicy; without one, members may do anything and everyone else nothing.

**Public** (``PublicGate``): open to anyone, unless the network declares an InterfacePolicy for
``public``; then its rules decide (anonymous callers match the rules without ``from``) and its
``rateLimit``s are counted per source: the caller's node name when it proves one, else its IP
address.

**Revoked keys** (the registry's anchors list them; ``revoked``) are refused on every interface,
whatever the policy says, from the moment the revocation reaches the node.

The node's own key (which its controller holds, to observe it) is never refused, nor are its
``operators`` (a registry's administrator key, which ``hmctl registry`` proves). A refusal is
403 (429 past a rate limit), or for DNS over QUIC no answer (the stream is reset);
nothing of a refused request is stored.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from hypermesh.policy import Decision, Member, PolicyEngine, RateCounter, Verdict
from hypermesh.transport.address import parse_address

ALLOWED = (0, "")
Revoked = Callable[[str], bool]
"""Whether a node key is revoked (from the registry's anchors)."""


Federated = Callable[[str], str | None]
"""``NETWORK/MEMBER`` for a key a federated network's registry vouches for, else None."""


Listed = Callable[[], Mapping[str, Mapping[str, Any]]]
"""The members the registry's anchors name now: ``{name: {"identity", "kind", "tags"}}``."""


def _none_listed() -> Mapping[str, Mapping[str, Any]]:
    return {}


def _never(_: str) -> bool:
    return False


def _nobody(_: str) -> str | None:
    return None


IPV6_PREFIX = 64
"""IPv6 sources are counted by this prefix: one subscriber (or one attacker) usually holds a
whole /64 and can send from any of its 2^64 addresses."""


def source_key(source: str) -> str:
    """Who ``source`` (``host:port`` or ``[v6]:port``) is for counting: an IPv4 address as it
    is, an IPv4-mapped IPv6 address as its IPv4 address, any other IPv6 address as its /64
    (``2001:db8:1:2::/64``); anything that is not an IP address (a tunnel's "peer") unchanged."""
    try:
        host = parse_address(source)[0]
    except ValueError:
        host = source
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


def operation_of(method: str, path: str) -> str:
    """The InterfacePolicy operation a request performs."""
    if path == "/dns-query":
        return "dns.query"
    if path.startswith("/chain/v1/"):
        return "chain.write" if method == "POST" else "chain.read"
    if path.startswith("/message/v1/"):
        return "message.send"
    if path.startswith("/tunnel/v1/"):
        return "tunnel.relay"
    if path.startswith("/registry/v1/") and method == "POST":
        return "registry.write"
    return "status.read"


def _members(directory: Mapping[str, Any]) -> dict[str, str]:
    return {str(e["identity"]): name for name, e in directory.items() if e.get("identity")}


def _member(entry: Mapping[str, Any]) -> Member:
    return Member(str(entry.get("kind", "Node")), frozenset(entry.get("tags", ())))


class _MemberTags(Mapping[str, Member]):
    """The kinds and tags of the members by name, for policies: the config's directory, then
    the registry's anchors (read at each question, so a member who joins later is known)."""

    def __init__(self, directory: Mapping[str, Any], listed: Listed) -> None:
        self.static = {name: _member(entry) for name, entry in directory.items()}
        self.listed = listed

    def _all(self) -> dict[str, Member]:
        listed = {n: _member(e) for n, e in self.listed().items() if isinstance(e, Mapping)}
        return listed | self.static

    def __getitem__(self, name: str) -> Member:
        found = self.static.get(name)
        if found is not None:
            return found
        entry = self.listed().get(name)
        if not isinstance(entry, Mapping):
            raise KeyError(name)
        return _member(entry)

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def _engine(
    directory: Mapping[str, Any], policy: Mapping[str, Any], listed: Listed
) -> PolicyEngine:
    return PolicyEngine.from_spec(policy, _MemberTags(directory, listed))


@dataclass
class _Limits:
    counter: RateCounter = field(default_factory=RateCounter)
    clock: Callable[[], float] = time.monotonic

    def exceeded(self, who: str, decision: Decision) -> tuple[int, str] | None:
        limit = decision.rate_limit
        if not limit:
            return None
        if self.counter.allow((who, decision.rule), limit.requests, limit.seconds, self.clock()):
            return None
        return 429, f"rate limit of rule {decision.rule!r}: {limit}"


@dataclass
class _Gate:
    me: str
    """This node's name."""
    members: Mapping[str, str]
    """Node ID → name of every Node and Peer of the network."""
    policy: PolicyEngine | None = None
    limits: _Limits = field(default_factory=_Limits)
    revoked: Revoked = _never
    federated: Federated = _nobody
    operators: frozenset[str] = frozenset()
    """Keys that act for this node's operator besides its own (a registry's administrator)."""
    listed: Listed = _none_listed
    """The members the registry's anchors name (as the node's mirror holds them)."""
    _listed_seen: tuple[object, dict[str, str]] | None = field(default=None, repr=False)

    @classmethod
    def of(
        cls,
        me: str,
        directory: Mapping[str, Any],
        policy: Mapping[str, Any] | None,
        revoked: Revoked | None = None,
        federated: Federated | None = None,
        operators: frozenset[str] = frozenset(),
        listed: Listed | None = None,
    ) -> Self:
        """From the node config's ``directory`` ({name: {"kind", "identity", "tags"}}), the
        interface's InterfacePolicy spec if one is declared, and where revoked keys, members
        named in the registry's anchors and federated members are known."""
        listed = listed or _none_listed
        engine = None if policy is None else _engine(directory, policy, listed)
        return cls(
            me,
            _members(directory),
            engine,
            revoked=revoked or _never,
            federated=federated or _nobody,
            operators=operators,
            listed=listed,
        )

    def swap(
        self, directory: Mapping[str, Any], policy: Mapping[str, Any] | None
    ) -> Callable[[], None]:
        """Prepare to take a reloaded config's members and policy (``ValueError`` for a
        policy that does not compile, nothing changed); the returned call swaps them in. The
        rate counts, revocations, federation and operators stay as they are."""
        members = _members(directory)
        engine = None if policy is None else _engine(directory, policy, self.listed)

        def commit() -> None:
            self.members, self.policy, self._listed_seen = members, engine, None

        return commit

    def _listed_names(self) -> dict[str, str]:
        """Node ID → name of the anchors' members, but for the names the config gives to
        other keys; worked out again only when the anchors change."""
        listed = self.listed()
        if self._listed_seen is None or self._listed_seen[0] is not listed:
            taken = set(self.members.values())
            names = {
                str(entry["identity"]): name
                for name, entry in listed.items()
                if isinstance(entry, Mapping)
                and isinstance(entry.get("identity"), str)
                and name not in taken
            }
            self._listed_seen = (listed, names)
        return self._listed_seen[1]

    def named(self, caller_id: str | None) -> str | None:
        """The member (or ``NETWORK/MEMBER`` of a federated network) whose key
        ``caller_id`` is; None for an anonymous caller or a key nobody vouches for."""
        if caller_id is None:
            return None
        return (
            self.members.get(caller_id)
            or self._listed_names().get(caller_id)
            or self.federated(caller_id)
        )

    def who(self, caller_id: str | None, source: str) -> str:
        """Who a caller is for counting (rate limits, what it may hold): the member its key
        names, else its source (``source_key``). A key nobody vouches for costs nothing to
        make, so it does not earn a count of its own."""
        return self.named(caller_id) or source_key(source)


@dataclass
class PrivateGate(_Gate):
    """Who may do what on this node's private interface."""

    @property
    def own_id(self) -> str | None:
        """This node's own ID: the node's key (its operator: the controller) is never refused."""
        return next((i for i, name in self.members.items() if name == self.me), None)

    def check(self, caller_id: str | None, source: str, operation: str) -> tuple[int, str]:
        """(0, "") when the caller (its proven node ID, None when anonymous) may perform
        ``operation`` here; else the status and why."""
        if caller_id is None:
            return 403, "the private interface needs a client certificate (a node key)"
        if caller_id == self.own_id or caller_id in self.operators:
            return ALLOWED
        if self.revoked(caller_id):
            return 403, f"the key {caller_id} was revoked at the registry"
        caller = self.named(caller_id)
        if caller is None:
            return 403, f"{caller_id} is not a member of this network nor of a federated one"
        if self.policy is None:
            return ALLOWED
        decision = self.policy.decide(caller, self.me, operation)
        if decision.action is not Verdict.ALLOW:
            by = f"rule {decision.rule!r}" if decision.rule else "the default"
            return 403, f"{operation} by {caller} is denied here ({by})"
        return self.limits.exceeded(caller, decision) or ALLOWED


@dataclass
class PublicGate(_Gate):
    """The public interface (or the ephemeral one) under the network's InterfacePolicy for
    it; without one, open to everyone but revoked keys."""

    def check(self, caller_id: str | None, source: str, operation: str) -> tuple[int, str]:
        caller = self.named(caller_id)
        if (caller is not None and caller == self.me) or caller_id in self.operators:
            return ALLOWED  # the node's own key or an operator's, never refused
        if caller_id is not None and self.revoked(caller_id):
            return 403, f"the key {caller_id} was revoked at the registry"
        if self.policy is None:
            return ALLOWED
        decision = self.policy.decide(caller or "", self.me, operation)
        if decision.action is not Verdict.ALLOW:
            by = f"rule {decision.rule!r}" if decision.rule else "the default"
            return 403, f"{operation} is denied here ({by})"
        return self.limits.exceeded(self.who(caller_id, source), decision) or ALLOWED
