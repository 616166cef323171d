"""Node IDs and the identity files: format, strict decoding, file modes, no key in the repr."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hypermesh.errors import HyperMeshError
from hypermesh.transport.identity import (
    KEY_FILE,
    NODE_ID_PATTERN,
    PUBLIC_FILE,
    Identity,
    load_or_create_identity,
    node_id_from_public_key,
    public_key_from_node_id,
    read_node_id,
    short_id,
    verify_signature,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_node_id_round_trip() -> None:
    for raw in (bytes(32), b"\xff" * 32, os.urandom(32)):
        node_id = node_id_from_public_key(raw)
        assert len(node_id) == 55
        assert NODE_ID_PATTERN.match(node_id)
        assert public_key_from_node_id(node_id) == raw
    identity = Identity.generate()
    assert public_key_from_node_id(identity.node_id) == identity.public_key_bytes
    assert short_id(identity.node_id) == identity.node_id[:12]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "hm1",
        "hm2" + "a" * 52,
        "hm1" + "a" * 51,
        "hm1" + "a" * 53,
        "HM1" + "A" * 52,
        "hm1" + "a" * 51 + "1",  # 1 is not in the base32 alphabet
        "hm1" + "a" * 51 + "b",  # non-zero padding bits: not the canonical spelling
        " hm1" + "a" * 52,
    ],
)
def test_malformed_node_ids_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        public_key_from_node_id(bad)


def test_public_key_must_have_32_bytes() -> None:
    with pytest.raises(ValueError):
        node_id_from_public_key(bytes(31))


def test_key_file_is_0600_even_with_umask_000(tmp_path: Path, umask_000: None) -> None:
    identity = load_or_create_identity(tmp_path / "node")
    assert _mode(tmp_path / "node" / KEY_FILE) == 0o600
    assert _mode(tmp_path / "node" / PUBLIC_FILE) == 0o644
    assert (tmp_path / "node" / PUBLIC_FILE).read_text() == identity.node_id + "\n"
    assert read_node_id(tmp_path / "node") == identity.node_id
    assert [p.name for p in (tmp_path / "node").iterdir() if p.name.endswith(".tmp")] == []


def test_same_key_on_second_load(tmp_path: Path) -> None:
    first = load_or_create_identity(tmp_path)
    (tmp_path / PUBLIC_FILE).unlink()  # derived: rewritten from the key
    second = load_or_create_identity(tmp_path)
    assert second.node_id == first.node_id
    assert second == first
    assert read_node_id(tmp_path) == first.node_id


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o666])
def test_loose_key_mode_is_refused(tmp_path: Path, mode: int) -> None:
    load_or_create_identity(tmp_path)
    key = tmp_path / KEY_FILE
    key.chmod(mode)
    with pytest.raises(HyperMeshError, match=str(key)) as caught:
        load_or_create_identity(tmp_path)
    assert "too open" in str(caught.value)


def test_a_key_file_that_is_not_a_key_is_refused(tmp_path: Path) -> None:
    key = tmp_path / KEY_FILE
    key.write_text("not a key\n")
    key.chmod(0o600)
    with pytest.raises(HyperMeshError, match=str(key)):
        load_or_create_identity(tmp_path)


def test_read_node_id(tmp_path: Path) -> None:
    assert read_node_id(tmp_path) is None
    (tmp_path / PUBLIC_FILE).write_text("garbage\n")
    with pytest.raises(HyperMeshError, match=PUBLIC_FILE):
        read_node_id(tmp_path)


def test_repr_shows_no_key_material(tmp_path: Path) -> None:
    identity = load_or_create_identity(tmp_path)
    pem = (tmp_path / KEY_FILE).read_text()
    body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    seed = identity.private_key.private_bytes_raw()
    for text in (repr(identity), str(identity), f"{identity}", repr([identity])):
        assert identity.node_id in text
        assert body not in text
        assert seed.hex() not in text
        assert repr(seed) not in text
        assert "private" not in text.lower()


def test_sign_and_verify() -> None:
    identity = Identity.generate()
    signature = identity.sign(b"block")
    assert verify_signature(identity.node_id, b"block", signature)
    assert not verify_signature(identity.node_id, b"other", signature)
    assert not verify_signature(Identity.generate().node_id, b"block", signature)
