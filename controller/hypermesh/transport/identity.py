"""Node identities: an Ed25519 key on disk and the node ID derived from its public key.

A node ID is ``"hm1"`` followed by the raw 32-byte public key in base32 (RFC 4648 alphabet,
lowercased, no padding): always 55 characters matching ``^hm1[a-z2-7]{52}$``. Decoding is strict:
only the one canonical spelling of a key is accepted.

On disk a node directory holds ``identity.key`` (the private key, PEM PKCS#8, mode 0600, refused
when group or others may read it, as ssh does) and ``identity.pub`` (the node ID and a newline,
mode 0644), so a controller can pin a node without touching its private key.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hypermesh.errors import HyperMeshError
from hypermesh.files import FileCheckError, read_bounded, write_atomic

NODE_ID_PREFIX = "hm1"
NODE_ID_LENGTH = 55
NODE_ID_PATTERN = re.compile(r"hm1[a-z2-7]{52}")
"""A node ID, checked with ``fullmatch`` (``match`` with ``$`` would take a trailing newline)."""
KEY_FILE = "identity.key"
PUBLIC_FILE = "identity.pub"
NEW_KEY_MARK = "identity.new"
"""Made beside a key ``load_or_create_identity`` created, removed by the first node process
that starts with it: until then nobody can have seen anything that key signed."""
_KEY_MODE = 0o600
_PUBLIC_MODE = 0o644
MAX_KEY_FILE = 64 * 1024
"""An Ed25519 key in PEM is 119 bytes; a file far bigger is not a key."""


def node_id_from_public_key(raw: bytes) -> str:
    """The node ID of a raw 32-byte Ed25519 public key."""
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key has 32 bytes, not {len(raw)}")
    encoded = base64.b32encode(raw).decode("ascii").rstrip("=").lower()
    return NODE_ID_PREFIX + encoded


def public_key_from_node_id(node_id: str) -> bytes:
    """The raw 32-byte public key a node ID names; ``ValueError`` if the ID is malformed."""
    if not isinstance(node_id, str) or not NODE_ID_PATTERN.fullmatch(node_id):
        raise ValueError(f"malformed node ID {node_id!r}: expected 'hm1' and 52 base32 letters")
    body = node_id[len(NODE_ID_PREFIX) :].upper()
    raw = base64.b32decode(body + "====")
    if node_id_from_public_key(raw) != node_id:
        # The last letter carries 4 padding bits; only the spelling with zero bits is canonical.
        raise ValueError(f"malformed node ID {node_id!r}: not the canonical encoding of a key")
    return raw


def is_node_id(text: str) -> bool:
    """True when ``text`` is a well-formed node ID."""
    try:
        public_key_from_node_id(text)
    except ValueError:
        return False
    return True


def short_id(node_id: str) -> str:
    """The first 12 characters of a node ID, for tables and log lines."""
    return node_id[:12]


_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_SMALL_ORDER = frozenset(
    bytes.fromhex(h)
    for h in (
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    )
)
"""Encodings (sign bit cleared) of the points of small order, as libsodium blocks them."""


def is_weak_public_key(raw: bytes) -> bool:
    """True for a key no honest node has: a small-order point or a non-canonical encoding.

    OpenSSL (under cryptography) accepts such keys and libsodium does not; HyperMesh pins the
    strict rule, so a signature "by" a small-order key, which many messages satisfy, is never
    taken as proof of anything.
    """
    if len(raw) != 32:
        return True
    cleared = raw[:31] + bytes([raw[31] & 0x7F])
    return cleared in _SMALL_ORDER or int.from_bytes(cleared, "little") >= _P


def verify_signature(node_id: str, data: bytes, signature: bytes) -> bool:
    """True when ``signature`` is the node's Ed25519 signature over exactly ``data``.

    Strict: weak keys (``is_weak_public_key``) and non-canonical signatures (S not below the
    group order) are refused whatever the arithmetic says.
    """
    return verify_with_key(public_key_from_node_id(node_id), data, signature)


def verify_with_key(raw: bytes, data: bytes, signature: bytes) -> bool:
    """``verify_signature`` for a raw 32-byte public key, with the same strict rules."""
    if is_weak_public_key(raw) or len(signature) != 64:
        return False
    if int.from_bytes(signature[32:], "little") >= _L:
        return False
    key = Ed25519PublicKey.from_public_bytes(raw)
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Identity:
    """A node's Ed25519 key pair. Its repr shows the node ID only, never key material."""

    private_key: Ed25519PrivateKey = field(repr=False, compare=False)
    """The private key; keep it inside the process."""
    node_id: str = field(init=False)
    """The node ID derived from the public key."""
    public_key_bytes: bytes = field(init=False, repr=False)
    """The raw 32-byte public key."""

    def __post_init__(self) -> None:
        raw = self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        object.__setattr__(self, "public_key_bytes", raw)
        object.__setattr__(self, "node_id", node_id_from_public_key(raw))

    @classmethod
    def generate(cls) -> Identity:
        """A fresh identity (not stored anywhere)."""
        return cls(Ed25519PrivateKey.generate())

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature over ``data``."""
        return self.private_key.sign(data)

    def __repr__(self) -> str:
        return f"Identity({self.node_id})"

    __str__ = __repr__


def load_or_create_identity(directory: Path) -> Identity:
    """Load the identity kept in ``directory``, creating it (0600 key, 0644 ID) the first time.

    Raises ``HyperMeshError`` naming the file when the key is readable by others, unreadable or
    not an Ed25519 key. ``identity.pub`` is rewritten when missing or out of date.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path = directory / KEY_FILE
    try:
        identity = _load_key(key_path)
    except FileNotFoundError:
        identity = _create_key(key_path)
        (directory / NEW_KEY_MARK).touch()
    _write_public(directory / PUBLIC_FILE, identity.node_id)
    return identity


def create_key_file(path: Path) -> Identity:
    """A new key written to ``path`` (0600, atomically); when the file exists already, the key
    in it (so an interrupted rotation picks up where it stopped)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        return _load_key(path)
    except FileNotFoundError:
        return _create_key(path)


def install_key(directory: Path, key_file: Path) -> Identity:
    """Make ``key_file`` (in ``directory``) the identity of ``directory``: it replaces
    ``identity.key`` in one rename, and ``identity.pub`` follows. The old key is gone."""
    identity = _load_key(key_file)
    key_file.replace(directory / KEY_FILE)
    _fsync_directory(directory)
    _write_public(directory / PUBLIC_FILE, identity.node_id)
    return identity


def load_identity(path: Path) -> Identity:
    """Load an existing key file (never creating one); ``HyperMeshError`` naming the file when
    it is missing, readable by others, or not an Ed25519 key."""
    try:
        return _load_key(path)
    except FileNotFoundError:
        raise HyperMeshError(f"{path}: no such key file") from None
    except OSError as exc:
        raise HyperMeshError(f"{path}: cannot read the key: {exc.strerror}") from None


def held_identity(directory: Path) -> Identity | None:
    """The key in ``directory`` when this machine holds it, else None (never creating one):
    what a command proves in the handshake when it acts for a node of its state."""
    if not (directory / KEY_FILE).exists():
        return None
    return load_identity(directory / KEY_FILE)


def read_node_id(directory: Path) -> str | None:
    """The node ID in ``directory/identity.pub``, or None when there is none yet.

    Raises ``HyperMeshError`` when the file exists but does not hold a well-formed node ID.
    """
    path = directory / PUBLIC_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise HyperMeshError(f"{path}: cannot read the node ID: {exc}") from exc
    if not is_node_id(text):
        raise HyperMeshError(f"{path}: does not hold a well-formed node ID")
    return text


def _load_key(path: Path) -> Identity:
    try:
        data = read_bounded(path, MAX_KEY_FILE, private=True, follow=False)
    except FileCheckError as exc:
        raise HyperMeshError(f"{path}: {exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise HyperMeshError(f"{path}: not a PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise HyperMeshError(f"{path}: not an Ed25519 private key")
    return Identity(key)


def _create_key(path: Path) -> Identity:
    """Write a new key under a temporary name and link it into place: never a partial file,
    never an overwrite. If another process won the race, load its key instead."""
    identity = Identity.generate()
    pem = identity.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, _KEY_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), _KEY_MODE)  # whatever the umask says
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        mode = stat.S_IMODE(tmp.stat().st_mode)
        if mode != _KEY_MODE:
            raise HyperMeshError(f"{path}: could not set mode 0600 (got {mode:04o})")
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _load_key(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_directory(path.parent)
    return identity


def _write_public(path: Path, node_id: str) -> None:
    text = node_id + "\n"
    with contextlib.suppress(OSError):
        if path.read_text(encoding="ascii") == text:
            return
    write_atomic(path, text, _PUBLIC_MODE)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
