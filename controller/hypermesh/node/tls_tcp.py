"""The node's one TLS listener on TCP: each connection served by the protocol its ALPN names.

It listens on the public interface's host and on the same port number as the node's UDP
port, with the node's own Ed25519 key in a self-signed certificate
(``transport.certificates``), as its QUIC endpoint does, TLS 1.3 only. A client pins the key
(the node ID, or the SHA-256 of the certificate's SubjectPublicKeyInfo); no client
certificate is asked for. What it serves is a list of ``TlsService``: DNS over TLS (``dot``)
and DNS over HTTPS on HTTP/2 (``h2``) on every node, the relay (``hm-relay``) on a relay-role
node. A client that offers no ALPN at all is served by ``without_alpn`` (DNS over TLS: most
DoT clients send none). One that negotiates ``http/1.1`` is closed at once; Python's ``ssl``
cannot tell a client that offered only unknown protocols from one that offered none, so such
a client is served as one that offered none.

Bounds (``TlsLimits``): the TLS handshake must end within ``handshake_timeout``; at most
``max_connections`` connections are open at once (more are closed at once, before any byte
is read). Each service bounds what it holds itself (idle timeouts, queries in flight).

A node may have a second listener with the operator's certificate (``spec.tls``,
``TlsConfig``) for clients that verify a chain and a host name instead of pinning a key. Its
files are read and checked by ``read_certified`` (I/O: the key's permissions, sizes) and
``check_certified`` (pure: PEM, the key matches the first certificate, the validity period),
each refusal a ``CertificateError`` naming the manifest field and the file.
``CertifiedContexts`` holds the context new connections get, so a renewed certificate is
served without a restart (``watch_certified`` reloads it when the files change).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import logging
import os
import secrets
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from hypermesh.errors import HyperMeshError
from hypermesh.files import FileCheckError, read_bounded
from hypermesh.node.config import TlsConfig
from hypermesh.timefmt import rfc3339
from hypermesh.transport.address import format_address
from hypermesh.transport.certificates import self_signed_certificate
from hypermesh.transport.identity import Identity, public_key_from_node_id

log = logging.getLogger("hypermesh.tls")

StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
"""Serves one TLS connection until it ends; the listener closes the writer afterwards."""

HTTP1_ALPN = "http/1.1"
"""Offered by the listener only to close the connections that pick it (no HTTP/1 here)."""


@dataclass(frozen=True, slots=True)
class TlsService:
    """One protocol the listener serves, by the ALPN a client negotiates."""

    alpn: str
    """The ALPN token (``dot``, ``h2``, ``hm-relay``)."""
    serve: StreamHandler
    """Serves one connection that negotiated ``alpn``."""
    required: bool = False
    """Whether the node must not start without it (the relay's): when the port is taken, the
    node fails to start rather than run without the service."""


@dataclass(frozen=True, slots=True)
class TlsLimits:
    """What the listener bounds before a service takes a connection."""

    handshake_timeout: float = 10.0
    """Seconds a TLS handshake (and a closing one) may take."""
    max_connections: int = 1024
    """Connections open at once; more are closed at once, before any byte is read."""


def tls_context(identity: Identity, alpns: Sequence[str]) -> ssl.SSLContext:
    """A TLS 1.3 server context with ``identity``'s self-signed certificate and ``alpns`` (in
    the server's order of preference).

    The ssl module loads keys only from files: the key is written encrypted with a one-time
    password to a private temporary directory, loaded, and the directory removed at once.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.set_alpn_protocols(list(alpns))
    certificate = self_signed_certificate(identity)
    _load_chain(context, certificate.public_bytes(serialization.Encoding.PEM), identity.private_key)
    return context


def _load_chain(context: ssl.SSLContext, chain_pem: bytes, key: PrivateKeyTypes) -> None:
    """Load ``chain_pem`` and ``key`` into ``context``: the key is written encrypted with a
    one-time password to a private temporary directory, loaded, and the directory removed."""
    password = secrets.token_bytes(32)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    with tempfile.TemporaryDirectory(prefix="hm-tls-") as folder:
        cert_file, key_file = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        cert_file.write_bytes(chain_pem)
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(key_pem)
        context.load_cert_chain(cert_file, key_file, password=password)


def observed(writer: asyncio.StreamWriter) -> str:
    """The client's ``host:port`` as this end sees it (``unknown:0`` when the socket says
    nothing)."""
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return format_address(str(peer[0]), int(peer[1]))
    return "unknown:0"


class TlsListener:
    """Dispatches each connection to the service of its ALPN; counts and closes them."""

    def __init__(
        self,
        services: Sequence[TlsService],
        *,
        without_alpn: str | None = None,
        limits: TlsLimits | None = None,
    ) -> None:
        self.services = {service.alpn: service for service in services}
        if len(self.services) != len(services):
            raise ValueError("two services with one ALPN")
        if without_alpn is not None and without_alpn not in self.services:
            raise ValueError(f"no service for {without_alpn!r} to serve clients without ALPN")
        self.without_alpn = without_alpn
        self.limits = limits or TlsLimits()
        self.open: set[asyncio.StreamWriter] = set()
        """The connections being served now."""
        self.refused = 0
        """Connections closed because ``max_connections`` were open."""

    @property
    def alpns(self) -> list[str]:
        """What the listener offers, in its order of preference."""
        return [*self.services, HTTP1_ALPN]

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one accepted connection to its end (``asyncio.start_server``'s callback)."""
        if len(self.open) >= self.limits.max_connections:
            self.refused += 1
            log.info("TLS: %s refused: %d connections open", observed(writer), len(self.open))
            writer.close()
            return
        ssl_object = writer.get_extra_info("ssl_object")
        alpn = None if ssl_object is None else ssl_object.selected_alpn_protocol()
        service = self.services.get(alpn if alpn is not None else self.without_alpn or "")
        if ssl_object is None or service is None:
            writer.close()
            return
        self.open.add(writer)
        try:
            await service.serve(reader, writer)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            log.debug("TLS: %s ended: %s", observed(writer), exc)
        except asyncio.CancelledError:
            # The loop is ending. asyncio (3.11) asks a cancelled client_connected_cb task for
            # its exception and logs the CancelledError as an unhandled one: end quietly.
            writer.transport.abort()
            return
        finally:
            self.open.discard(writer)
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), self.limits.handshake_timeout)

    def close_all(self) -> None:
        """Drop every connection being served (the node is stopping): their services see the
        connection lost at once and end."""
        for writer in list(self.open):
            writer.transport.abort()


async def open_tls_listener(
    host: str,
    port: int,
    identity: Identity | ssl.SSLContext,
    listener: TlsListener,
) -> asyncio.Server:
    """Listen on ``host:port`` over TCP (port 0: any free one), serving ``listener``'s
    services with ``identity``'s self-signed certificate (or a context of its own, such as
    ``CertifiedContexts.front``); raises ``OSError`` when the address is taken."""
    limits = listener.limits
    context = (
        identity if isinstance(identity, ssl.SSLContext) else tls_context(identity, listener.alpns)
    )
    return await asyncio.start_server(
        listener.serve,
        host,
        port,
        ssl=context,
        ssl_handshake_timeout=limits.handshake_timeout,
        ssl_shutdown_timeout=limits.handshake_timeout,
        reuse_address=True,
    )


# -- the operator's certificate (spec.tls) ------------------------------------------------------

MAX_CHAIN_BYTES = 1 << 20
"""The largest certificate chain file read (a chain of a few certificates is a few KiB)."""
MAX_KEY_BYTES = 64 << 10
"""The largest private key file read (an RSA-8192 key in PEM is under 7 KiB)."""
CERTIFICATE_FIELD = "spec.tls.certificate"
KEY_FIELD = "spec.tls.key"


class CertificateError(HyperMeshError):
    """The operator's certificate or key cannot be served; the message names the manifest
    field and the file."""


@dataclass(frozen=True, slots=True)
class Certified:
    """A checked certificate chain and its key, as read from the files."""

    chain_pem: bytes
    """The chain file's bytes (served as they are)."""
    key: PrivateKeyTypes
    """The first certificate's private key."""
    serial: int
    """The first certificate's serial number."""
    subject: str
    """The first certificate's subject, RFC 4514."""
    not_after: datetime.datetime
    """When the first certificate expires (UTC)."""
    files: bytes
    """Both files' bytes, to tell whether they changed since."""


def check_certified(
    chain_pem: bytes, key_pem: bytes, now: datetime.datetime, config: TlsConfig
) -> Certified:
    """Parse and check a chain and its key (no I/O): PEM, an unencrypted key that matches the
    first certificate, which is valid at ``now``. ``CertificateError`` naming the field and
    the file otherwise."""
    cert_at, key_at = f"{CERTIFICATE_FIELD} {config.certificate}", f"{KEY_FIELD} {config.key}"
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        raise CertificateError(f"{cert_at}: no PEM certificate in it") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise CertificateError(f"{key_at}: the key is encrypted; give it unencrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise CertificateError(f"{key_at}: not a PEM private key") from None
    leaf = chain[0]
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ) != key.public_key().public_bytes(serialization.Encoding.DER, spki):
        raise CertificateError(
            f"{key_at}: does not match the first certificate of {config.certificate}"
        )
    if now >= leaf.not_valid_after_utc:
        raise CertificateError(
            f"{cert_at}: expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )
    if now < leaf.not_valid_before_utc:
        raise CertificateError(
            f"{cert_at}: not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )
    return Certified(
        chain_pem,
        key,
        leaf.serial_number,
        leaf.subject.rfc4514_string(),
        leaf.not_valid_after_utc,
        chain_pem + b"\0" + key_pem,
    )


def read_certified(config: TlsConfig, now: datetime.datetime | None = None) -> Certified:
    """Read and check ``config``'s files (symbolic links followed, as Let's Encrypt's
    ``live/`` and a Kubernetes Secret's volume use): the key must not be readable by group or
    others. ``CertificateError`` naming the field and the file."""
    chain_pem = _read(config.certificate, CERTIFICATE_FIELD, MAX_CHAIN_BYTES, private=False)
    key_pem = _read(config.key, KEY_FIELD, MAX_KEY_BYTES, private=True)
    return check_certified(chain_pem, key_pem, now or datetime.datetime.now(datetime.UTC), config)


def _read(path: str, field: str, limit: int, *, private: bool) -> bytes:
    try:
        return read_bounded(path, limit, private=private)
    except FileCheckError as exc:
        raise CertificateError(f"{field} {path}: {exc}") from None
    except OSError as exc:
        raise CertificateError(f"{field} {path}: cannot read it: {exc.strerror}") from None


def certified_context(certified: Certified, alpns: Sequence[str]) -> ssl.SSLContext:
    """A server context with the operator's chain and key: TLS 1.2 or 1.3 (Android 9 speaks
    TLS 1.2 only), ``alpns`` in the server's order of preference."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(list(alpns))
    try:
        _load_chain(context, certified.chain_pem, certified.key)
    except ssl.SSLError as exc:
        raise CertificateError(
            f"{CERTIFICATE_FIELD}: the ssl module refuses this chain and key: {exc.reason}"
        ) from None
    return context


class CertifiedContexts:
    """The context each new connection of the certified listener gets: ``front`` is the
    listening one, whose server-name callback (called for every ClientHello, with a name or
    without) hands the connection the ``current`` context; ``reload`` replaces ``current``.
    Connections already open keep the certificate they were given."""

    def __init__(self, config: TlsConfig, alpns: Sequence[str], certified: Certified) -> None:
        self.config, self.alpns = config, list(alpns)
        self.certified = certified
        self.current = certified_context(certified, self.alpns)
        self.front = certified_context(certified, self.alpns)
        self.front.sni_callback = self._choose
        self.reloads = 0
        """Certificates replaced since the node started."""

    def _choose(self, connection: ssl.SSLObject, _name: str | None, _front: ssl.SSLContext) -> None:
        connection.context = self.current

    def reload(self) -> bool:
        """Read the files again and serve them to new connections when they changed and pass
        the checks; True when the certificate was replaced. A file that fails the checks
        (a renewal half written, an expired certificate) leaves the one being served, with a
        warning."""
        try:
            certified = read_certified(self.config)
            if certified.files == self.certified.files:
                return False
            context = certified_context(certified, self.alpns)
        except CertificateError as exc:
            log.warning(
                "TLS certificate not reloaded, still serving serial %x: %s",
                self.certified.serial,
                exc,
            )
            return False
        self.certified, self.current = certified, context
        self.reloads += 1
        log.info(
            "TLS certificate reloaded: %s, serial %x, expires %s",
            certified.subject,
            certified.serial,
            rfc3339(certified.not_after),
        )
        return True


async def watch_certified(contexts: CertifiedContexts, stop: asyncio.Event) -> None:
    """Reload ``contexts`` whenever something changes in the folders of its two files (a
    renewal, a Secret's volume updated) until ``stop`` is set."""
    from hypermesh.node.filewatch import changes  # only a node with spec.tls watches files

    config = contexts.config
    folders = sorted({Path(config.certificate).parent, Path(config.key).parent})

    async def reload_on_changes() -> None:
        try:
            async for _ in changes(folders, 0.2):
                contexts.reload()
        except OSError as exc:
            log.warning("TLS certificate files not watched (reloaded on restart only): %s", exc)

    watching = asyncio.ensure_future(reload_on_changes())
    try:
        await stop.wait()
    finally:
        watching.cancel()


_ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
"""DER of an Ed25519 SubjectPublicKeyInfo up to its 32-byte key (RFC 8410)."""


def spki_pin(node_id: str) -> str:
    """The key pin of a node's TLS certificate (RFC 7858 §4.2, ``kdig +tls-pin``, Android and
    stubby's ``tls_pubkey_pinset``): base64 of the SHA-256 of its SubjectPublicKeyInfo, made
    from the node ID alone. ``ValueError`` for a malformed node ID."""
    raw = public_key_from_node_id(node_id)
    return base64.b64encode(hashlib.sha256(_ED25519_SPKI_PREFIX + raw).digest()).decode("ascii")
