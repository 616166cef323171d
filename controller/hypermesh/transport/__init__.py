"""QUIC transport shared by nodes and the controller: identities, certificates, a pinned client.

A peer is authenticated by its node ID (derived from its Ed25519 key), not by a public CA.

Nothing is imported here: import the module you need (``hypermesh.transport.client``,
``.identity``, ``.address``...), so that the pure core can use ``hypermesh.transport.address``
without pulling in aioquic.
"""
