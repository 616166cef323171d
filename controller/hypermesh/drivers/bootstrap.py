"""The public network's bootstrap data: where the public registry answers and its key.

Shipped as package data (``hypermesh/bootstrap.json``, as resolvers ship root hints):
``{"registry": {"endpoint": "dns.hypermesh.online:443", "identity": "hm1..."}}``; the
identity there is the shipped public registry key, pinned: a registry answering at the endpoint
with another key is refused. ``$HM_BOOTSTRAP`` names a file of the same shape that replaces it
(a stand-in public registry for a lab, or a new key before a release ships it). A ``mode:
public`` Network without ``spec.registry`` uses this registry.

Every byte of the file is checked (size, JSON, the two fields' forms); a bad file is an error
that names it, never a silent fall-back to the shipped data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from hypermesh.errors import HyperMeshError
from hypermesh.transport.address import parse_address
from hypermesh.transport.identity import is_node_id

ENV = "HM_BOOTSTRAP"
"""The variable naming a bootstrap file that replaces the shipped one."""
MAX_BYTES = 64 * 1024
"""A bootstrap file is a few hundred bytes; anything over this is not one."""

__all__ = ["ENV", "Bootstrap", "BootstrapError", "load_bootstrap"]


class BootstrapError(HyperMeshError):
    """The bootstrap file is missing, unreadable or not of the bootstrap's shape."""


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """The public registry: its QUIC endpoint (host:port) and its node ID."""

    endpoint: str
    identity: str
    source: str
    """Where it was read: the package's file or ``$HM_BOOTSTRAP``'s path."""

    def registry(self) -> dict[str, str]:
        """As a Network's ``spec.registry`` names a remote registry."""
        return {"endpoint": self.endpoint, "identity": self.identity}


def load_bootstrap(environ: Mapping[str, str] | None = None) -> Bootstrap:
    """The bootstrap data in force: ``$HM_BOOTSTRAP``'s file when set, else the package's."""
    env = os.environ if environ is None else environ
    override = env.get(ENV)
    if override:
        path = Path(override)
        try:
            with path.open("rb") as handle:
                raw = handle.read(MAX_BYTES + 1)
        except OSError as exc:
            raise BootstrapError(
                f"{path} (${ENV}): cannot read the bootstrap file: {exc.strerror}"
            ) from None
        return parse_bootstrap(raw, f"{path} (${ENV})")
    shipped = resources.files("hypermesh").joinpath("bootstrap.json")
    return parse_bootstrap(shipped.read_bytes(), "the package's bootstrap.json")


def parse_bootstrap(raw: bytes, source: str) -> Bootstrap:
    """Parse and check one bootstrap document; ``BootstrapError`` naming ``source``."""
    if len(raw) > MAX_BYTES:
        raise BootstrapError(f"{source}: over {MAX_BYTES} bytes: not a bootstrap file")
    try:
        data: Any = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BootstrapError(f"{source}: not JSON: {exc}") from None
    registry = data.get("registry") if isinstance(data, dict) else None
    if not isinstance(registry, dict):
        raise BootstrapError(
            f'{source}: expected {{"registry": {{"endpoint": "host:port", "identity": "hm1..."}}}}'
        )
    endpoint, identity = registry.get("endpoint"), registry.get("identity")
    try:
        if not isinstance(endpoint, str) or len(endpoint) > 261:
            raise ValueError("not a string")
        parse_address(endpoint)
    except ValueError as exc:
        raise BootstrapError(
            f"{source}: registry.endpoint must be host:port: {endpoint!r} ({exc})"
        ) from None
    if not isinstance(identity, str) or not is_node_id(identity):
        raise BootstrapError(
            f"{source}: registry.identity must be a node ID ('hm1' and 52 base32 "
            f"characters): {identity!r}"
        )
    return Bootstrap(endpoint, identity, source)
