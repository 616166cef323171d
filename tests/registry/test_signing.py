"""Signed requests: what verifies, and every way a forged, replayed or stale one is refused."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypermesh.registry.errors import AuthError
from hypermesh.registry.signing import (
    MemoryNonceCache,
    canonical,
    cosign,
    sign_request,
    verify_request,
)
from hypermesh.transport.identity import (
    Identity,
    is_weak_public_key,
    node_id_from_public_key,
    verify_signature,
)

NOW = 1_800_000_000
OWNER = Identity.generate()
BODY = b'{"tld": "acme"}'
PATH = "/registry/v1/tlds"


def signed(**overrides: str) -> dict[str, str]:
    return {**sign_request(OWNER, "POST", PATH, BODY, now=NOW), **overrides}


def verify(headers: dict[str, str], *, now: float = NOW, **kwargs: object) -> str:
    cache = kwargs.pop("seen", None) or MemoryNonceCache()
    return verify_request(
        "POST",
        PATH,
        BODY,
        headers,
        now=now,
        seen=cache,
        **kwargs,  # type: ignore[arg-type]
    ).signer


def test_a_signed_request_verifies_and_names_its_signer() -> None:
    assert verify(signed()) == OWNER.node_id


@pytest.mark.parametrize("missing", ["hm-signer", "hm-timestamp", "hm-nonce", "hm-signature"])
def test_unsigned_requests_are_refused(missing: str) -> None:
    headers = signed()
    del headers[missing]
    with pytest.raises(AuthError, match=f"missing header {missing}"):
        verify(headers)


def test_a_signature_by_someone_else_is_refused() -> None:
    intruder = Identity.generate()
    forged = signed(**{"hm-signer": intruder.node_id})
    with pytest.raises(AuthError, match="does not verify"):
        verify(forged)


def test_replay_is_refused() -> None:
    cache = MemoryNonceCache()
    headers = signed()
    verify(headers, seen=cache)
    with pytest.raises(AuthError, match="replayed"):
        verify(headers, seen=cache)


@pytest.mark.parametrize("offset", [-301, 301, 10_000])
def test_stale_and_future_requests_are_refused(offset: int) -> None:
    with pytest.raises(AuthError, match="stale or future"):
        verify(signed(), now=NOW + offset)


def test_transfer_needs_the_new_owner_too() -> None:
    newcomer = Identity.generate()
    headers = signed()
    with pytest.raises(AuthError, match="hm-cosigner"):
        verify(headers, require_cosigner=True)
    both = cosign(newcomer, headers, "POST", PATH, BODY)
    result = verify_request(
        "POST", PATH, BODY, both, now=NOW, seen=MemoryNonceCache(), require_cosigner=True
    )
    assert (result.signer, result.cosigner) == (OWNER.node_id, newcomer.node_id)
    wrong = {**both, "hm-cosigner": Identity.generate().node_id}
    with pytest.raises(AuthError, match="cosignature does not verify"):
        verify(wrong, require_cosigner=True)


@settings(max_examples=200)
@given(
    field=st.sampled_from(["method", "path", "body", "timestamp", "nonce"]),
    junk=st.binary(min_size=1, max_size=8),
)
def test_any_change_to_the_signed_fields_breaks_the_signature(field: str, junk: bytes) -> None:
    headers = signed()
    parts = {
        "method": "POST",
        "path": PATH,
        "body": BODY.decode(),
        "timestamp": headers["hm-timestamp"],
        "nonce": headers["hm-nonce"],
    }
    parts[field] = parts[field] + junk.hex()
    message = canonical(
        parts["method"], parts["path"], parts["body"].encode(), parts["timestamp"], parts["nonce"]
    )
    raw = base64.urlsafe_b64decode(headers["hm-signature"] + "==")
    assert not verify_signature(OWNER.node_id, message, raw)


def test_small_order_keys_are_refused() -> None:
    identity_point = bytes([1]) + bytes(31)
    assert is_weak_public_key(identity_point)
    weak = node_id_from_public_key(identity_point)
    # With the identity point as key, (R = identity, S = 0) "verifies" any message under
    # lenient rules; the strict rule refuses it.
    trivial = identity_point + bytes(32)
    assert not verify_signature(weak, b"anything", trivial)
    assert not is_weak_public_key(OWNER.public_key_bytes)


def test_non_canonical_signatures_are_refused() -> None:
    message = b"hello"
    signature = OWNER.sign(message)
    order = 2**252 + 27742317777372353535851937790883648493
    s = int.from_bytes(signature[32:], "little") + order
    malleated = signature[:32] + s.to_bytes(32, "little")
    assert verify_signature(OWNER.node_id, message, signature)
    assert not verify_signature(OWNER.node_id, message, malleated)
