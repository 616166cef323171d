"""What a running node takes from a new config without a restart (``SIGHUP``), and what not.

A node's config carries, besides its own spec, what its network says: the members by node ID
(``directory``), the network's interface policies, the federated networks, the other mirrors
(``peers``). When only those change (a node joins or leaves the network, a policy's rules
change), the controller writes the new config file and sends the node ``SIGHUP``; the node reads
the file again, checks it, and swaps them in its gates, its registry's static members, its
federation and its peer lists (``node.process``). A file that does not parse, or that changes
anything else (an address to listen on, a role, the node's own generation), is refused: the
node keeps running the config it had, says so in its log and in ``GET /status``
(``reloadRefused``), and the controller restarts it instead.

``GET /status`` says which config the node runs (``configDigest``: the SHA-256 of the file's
bytes as the node read them), so the controller can tell that a reload took effect.

A node in a pod (``watch_config``) is not sent ``SIGHUP``: it watches its config file's
directory, where the kubelet swaps in a changed ConfigMap, and runs the same reload when the
file's digest changes. The operator puts ``restart_digest`` on the pod template, so that what
only a restart applies rolls the pod and the rest is reloaded in it.

Kept small and free of the node's features: the controller and the operator import it to
decide.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

RELOADED: frozenset[str] = frozenset(
    {
        "directory",
        "private_policy",
        "public_policy",
        "ephemeral_policy",
        "federation",
        "peers",
        "prefer_port",
    }
)
"""Fields of a node's config a running node takes on ``SIGHUP``. ``prefer_port`` is only a
hint for the next start (the port the node already holds)."""

GATED_BY_PRESENCE: tuple[str, ...] = ("public_policy", "ephemeral_policy")
"""Policies whose interface has a gate only when one is declared (the public interface of a
node that knows no revocations, the tunnels, which otherwise follow the public gate): declaring
or withdrawing one restarts the node; changing one reloads."""


def config_digest(text: str | bytes) -> str:
    """The digest a node reports of the config it runs (SHA-256 of the file, hex)."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def fields_of(text: str) -> dict[str, Any]:
    """A config's fields as JSON decodes them (``NodeConfig.to_json`` text)."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the configuration must be a JSON object")
    return data


def restart_needs(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The fields (sorted) that differ between two configs and that only a restart applies;
    empty when a reload takes ``new`` (or nothing differs)."""
    needs = {
        name
        for name in old.keys() | new.keys()
        if name not in RELOADED and old.get(name) != new.get(name)
    }
    for name in GATED_BY_PRESENCE:
        if (old.get(name) is None) != (new.get(name) is None):
            needs.add(name)
    if not old.get("federation") and new.get("federation"):
        needs.add("federation")  # the federation feature opens only at start
    return sorted(needs)


def restart_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """What of a config (``fields_of``) only a restart applies: every field a reload does not
    take, and whether each of those whose presence a reload cannot change is set. Two configs
    with the same ``restart_fields`` differ at most in what a running node reloads
    (``restart_needs`` of them is empty). Going from some federated networks to none changes
    them too: a restart the node would not need, where keeping them would need the history."""
    kept = {name: value for name, value in fields.items() if name not in RELOADED}
    present = {name: fields.get(name) is not None for name in GATED_BY_PRESENCE}
    return {"fields": kept, "present": present, "federated": bool(fields.get("federation"))}


def restart_digest(text: str) -> str:
    """A digest of ``restart_fields`` of a config's JSON text (SHA-256, hex). When two configs
    have the same, a node running either takes the other by a reload; when they differ, it
    would refuse it (but for the last federated network withdrawn), so a pod rolls."""
    canonical = json.dumps(restart_fields(fields_of(text)), sort_keys=True, separators=(",", ":"))
    return config_digest(canonical)


def reloadable(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether ``new`` differs from ``old`` and a running node can take it without a restart."""
    return dict(old) != dict(new) and not restart_needs(old, new)
