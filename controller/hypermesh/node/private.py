"""The private interface: a second QUIC endpoint where only members of the network get in, and
only for what the network's private InterfacePolicy allows.

Every client must prove a node key in the handshake (``transport.pinning``): the caller is the
member whose node ID that key is (the Network's Nodes and Peers, from the node's config). Each
request is mapped to an operation (``operation_of``) and decided before any handler runs; an
anonymous or unknown caller, or a denied operation, is answered 403 (a DoQ query REFUSED) and
nothing of it is stored. Without a private policy, members may do anything and everyone else
nothing: default deny.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hypermesh.policy import Member, PolicyEngine


def operation_of(method: str, path: str) -> str:
    """The InterfacePolicy operation a request performs."""
    if path == "/dns-query":
        return "dns.query"
    if path.startswith("/chain/v1/"):
        return "chain.write" if method == "POST" else "chain.read"
    if path.startswith("/message/v1/"):
        return "message.send"
    if path.startswith("/registry/v1/") and method == "POST":
        return "registry.write"
    return "status.read"


@dataclass(frozen=True, slots=True)
class PrivateGate:
    """Who may do what on this node's private interface."""

    me: str
    """This node's name (the target of every request)."""
    members: Mapping[str, str]
    """Node ID → name of every Node and Peer of the network."""
    policy: PolicyEngine | None = None
    tags: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of(
        cls, me: str, directory: Mapping[str, Any], policy: Mapping[str, Any] | None
    ) -> PrivateGate:
        """From the node config's ``directory`` ({name: {"kind", "identity", "tags"}}) and the
        private InterfacePolicy's spec, if one is declared."""
        members = {
            str(entry["identity"]): name
            for name, entry in directory.items()
            if entry.get("identity")
        }
        engine = None
        if policy is not None:
            engine = PolicyEngine(
                policy,
                {
                    name: Member(str(entry.get("kind", "Node")), frozenset(entry.get("tags", ())))
                    for name, entry in directory.items()
                },
            )
        return cls(me, members, engine)

    def decide(self, caller_id: str | None, operation: str) -> tuple[bool, str]:
        """Whether the caller (its proven node ID, None when anonymous) may perform
        ``operation`` here, and why not."""
        if caller_id is None:
            return False, "the private interface needs a client certificate (a node key)"
        caller = self.members.get(caller_id)
        if caller is None:
            return False, f"{caller_id} is not a member of this network"
        if self.policy is None:
            return True, ""
        decision = self.policy.decide(caller, self.me, operation)
        if decision.action != "allow":
            by = f"rule {decision.rule!r}" if decision.rule else "the default"
            return False, f"{operation} by {caller} is denied here ({by})"
        return True, ""
