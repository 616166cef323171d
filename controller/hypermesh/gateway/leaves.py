"""TLS server contexts for the names browsers ask for: a leaf per host name, issued on the fly by
the local CA, kept in memory (least recently used dropped), made again before it expires.

One P-256 key serves every leaf of a gateway run; it is made at start and lives in memory and,
because ``ssl`` loads keys only from files, in a private temporary directory (0700, the file
0600) that is deleted when the gateway stops. The CA's key never leaves its own file.
"""

from __future__ import annotations

import datetime
import os
import ssl
import tempfile
from collections import OrderedDict
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hypermesh.gateway.authority import Authority, issue_leaf, key_pem

RENEW_BEFORE = datetime.timedelta(hours=1)


class Leaves:
    """TLS contexts by host name, issued by ``authority``."""

    def __init__(self, authority: Authority, max_leaves: int = 1024) -> None:
        self.authority = authority
        self.max_leaves = max_leaves
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._dir = tempfile.TemporaryDirectory(prefix="hm-gateway-")
        self._key_path = Path(self._dir.name) / "leaf.key"
        fd = os.open(self._key_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key_pem(self._key))
        self._contexts: OrderedDict[str, tuple[ssl.SSLContext, datetime.datetime]] = OrderedDict()
        self.issued = 0

    def context(self, host: str, now: datetime.datetime | None = None) -> ssl.SSLContext:
        """The server context presenting a leaf for ``host`` (issued now when there is none
        or it is about to expire). ``AuthorityError`` when ``host`` is outside the CA's TLDs."""
        when = now or datetime.datetime.now(datetime.UTC)
        held = self._contexts.get(host)
        if held is not None and held[1] - RENEW_BEFORE > when:
            self._contexts.move_to_end(host)
            return held[0]
        certificate = issue_leaf(self.authority, host, self._key, when)
        chain = certificate.public_bytes(serialization.Encoding.PEM)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])
        with tempfile.NamedTemporaryFile(dir=self._dir.name, suffix=".pem") as handle:
            handle.write(chain)
            handle.flush()
            context.load_cert_chain(handle.name, self._key_path)
        self._contexts[host] = (context, certificate.not_valid_after_utc)
        self._contexts.move_to_end(host)
        while len(self._contexts) > self.max_leaves:
            self._contexts.popitem(last=False)
        self.issued += 1
        return context

    def close(self) -> None:
        self._contexts.clear()
        self._dir.cleanup()
