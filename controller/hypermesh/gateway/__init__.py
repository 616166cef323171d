"""The browser gateway: a local CA name-constrained to the HyperMesh TLDs, and an HTTP proxy
that serves HyperMesh names to browsers over the verified path (``hmctl gateway``).

    authority = AuthorityFiles(default_directory()).load()
    gateway = Gateway(GatewaySettings(), authority, Upstream(mesh, route_ttl=60, timeout=15))
    await gateway.start()

See docs/clients.md ("Browsers")."""

from hypermesh.gateway.authority import (
    Authority,
    AuthorityError,
    create_authority,
    issue_leaf,
    permitted_tlds,
)
from hypermesh.gateway.files import AuthorityFiles, default_directory
from hypermesh.gateway.pac import pac_file
from hypermesh.gateway.server import Counters, Gateway
from hypermesh.gateway.settings import DEFAULT_LISTEN, GatewaySettings
from hypermesh.gateway.upstream import Stage, Upstream, UpstreamFailure

__all__ = [
    "DEFAULT_LISTEN",
    "Authority",
    "AuthorityError",
    "AuthorityFiles",
    "Counters",
    "Gateway",
    "GatewaySettings",
    "Stage",
    "Upstream",
    "UpstreamFailure",
    "create_authority",
    "default_directory",
    "issue_leaf",
    "pac_file",
    "permitted_tlds",
]
