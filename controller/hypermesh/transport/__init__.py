"""QUIC transport shared by nodes and the controller: identities, certificates, a pinned client.

A peer is authenticated by its node ID (derived from its Ed25519 key), not by a public CA.
"""

from hypermesh.transport.certificates import node_id_from_certificate, self_signed_certificate
from hypermesh.transport.client import connect_h3, fetch_status, h3_get, h3_get_json
from hypermesh.transport.identity import (
    Identity,
    load_or_create_identity,
    node_id_from_public_key,
    public_key_from_node_id,
    read_node_id,
    short_id,
)

__all__ = [
    "Identity",
    "connect_h3",
    "fetch_status",
    "h3_get",
    "h3_get_json",
    "load_or_create_identity",
    "node_id_from_certificate",
    "node_id_from_public_key",
    "public_key_from_node_id",
    "read_node_id",
    "self_signed_certificate",
    "short_id",
]
