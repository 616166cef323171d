"""``hmctl network token …``: a network's join tokens, on its registry's host.

A node on another host joins the network with a token (``hmctl controller run
--join-token-file``, or ``$HM_JOIN_TOKEN``) instead of having its key pinned in the manifests.
Every request is signed with the registry's administrator key (``registry-admin/identity.key``
of the registry node, or ``--admin-key``), found as ``hmctl registry`` finds it.

A token is a secret: ``create`` prints it once, alone on its line of standard output (what it
is for goes to standard error), and nothing prints it again — the registry keeps its hash only,
and ``list`` shows IDs, terms and uses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from typing import Any

from hypermesh.cli import registry as registry_cli
from hypermesh.cli.render import table
from hypermesh.errors import HyperMeshError, TransportError, UsageError
from hypermesh.registry.client import API, RegistryClient, refusal
from hypermesh.transport.identity import Identity, load_identity

MIN_TTL = 60
MAX_TTL = 31_536_000
"""A token lives from a minute to a year (the registry's bounds)."""
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_TOKEN_ID = re.compile(r"^[0-9a-f]{12}$")

__all__ = ["create_token", "list_tokens", "revoke_token"]


def _call(args: argparse.Namespace, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """One admin-signed request to the registry of this state; the answer, or an error in the
    registry's words (never the request body: it may hold a token)."""
    target = registry_cli.target_of(args)
    if target.admin_key is None or not target.admin_key.exists():
        raise UsageError(
            "the registry's administrator key is not on this machine "
            f"({target.admin_key or 'registry-admin/identity.key'}): run this on the "
            "registry's host, or name the key with --admin-key FILE"
        )
    admin = load_identity(target.admin_key)
    client = RegistryClient(
        target.registry.address, target.registry.node_id, identity=admin, timeout=target.timeout
    )
    try:
        status, data = client_call(client, path, body, admin)
    except TransportError as exc:
        raise HyperMeshError(str(exc)) from None
    if status not in (200, 201):
        raise HyperMeshError(f"the registry refused: {refusal(status, data)}")
    return data


def client_call(
    client: RegistryClient, path: str, body: dict[str, Any], signer: Identity
) -> tuple[int, dict[str, Any]]:
    """``client.call`` from synchronous code (one request, one event loop)."""
    return asyncio.run(client.call("POST", path, body, signer=signer))


def _tags(text: str) -> list[str]:
    tags = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in tags if not _LABEL.match(t)]
    if bad:
        raise UsageError(f"--tags: not a DNS label: {bad[0][:80]!r}")
    if len(tags) > 16:
        raise UsageError(f"--tags: at most 16 tags, not {len(tags)}")
    return tags


def create_token(args: argparse.Namespace) -> int:
    ttl = round(float(args.ttl))
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise UsageError(f"--ttl must be between 1m and 365d, not {ttl}s")
    if len(args.description) > 200:
        raise UsageError("--description: at most 200 characters")
    body = {
        "ttl": ttl,
        "reusable": bool(args.reusable),
        "ephemeral": bool(args.ephemeral),
        "tags": _tags(args.tags),
        "description": args.description,
    }
    data = _call(args, f"{API}/tokens", body)
    token = str(data.get("token", ""))
    if args.output == "json":
        print(json.dumps(data, indent=2))
        return 0
    kind = "reusable" if data.get("reusable") else "single-use"
    if data.get("ephemeral"):
        kind += ", ephemeral"
    sys.stderr.write(
        f"token {data.get('id')} ({kind}) expires {data.get('expiresAt')}; it is shown "
        "once, below: keep it secret\n"
    )
    sys.stderr.flush()
    print(token)
    return 0


def list_tokens(args: argparse.Namespace) -> int:
    data = _call(args, f"{API}/tokens/list", {})
    items = [i for i in data.get("items") or [] if isinstance(i, dict)]
    for item in items:  # whatever the registry sends, a secret is not shown
        item.pop("token", None)
        item.pop("hash", None)
    if getattr(args, "output", "text") == "json":
        print(json.dumps({"items": items}, indent=2))
        return 0
    if not items:
        sys.stderr.write("no join tokens\n")
        return 0
    rows = [
        [
            i.get("id"),
            str(i.get("createdAt") or "")[:19],
            str(i.get("expiresAt") or "")[:19],
            "yes" if i.get("reusable") else "no",
            "yes" if i.get("ephemeral") else "no",
            i.get("uses"),
            "yes" if i.get("revoked") else "no",
            ",".join(i.get("tags") or []) or "-",
            i.get("description") or "",
        ]
        for i in items
    ]
    headers = ["ID", "CREATED", "EXPIRES", "REUSABLE", "EPHEMERAL", "USES", "REVOKED", "TAGS"]
    sys.stdout.write(table([*headers, "DESCRIPTION"], rows))
    return 0


def revoke_token(args: argparse.Namespace) -> int:
    token_id = str(args.id)
    if not _TOKEN_ID.match(token_id):
        raise UsageError(f"not a token ID (12 hex digits, as list shows it): {token_id[:40]!r}")
    data = _call(args, f"{API}/tokens/revoke", {"id": token_id})
    if getattr(args, "output", "text") == "json":
        print(json.dumps(data, indent=2))
        return 0
    print(f"token {token_id} revoked")
    return 0
