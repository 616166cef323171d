"""Fixtures for the DNS tests: the signed test zone, and one server for a module
(:mod:`tests.harness.dns_server`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hypermesh.dns.source import StaticZones
from tests.harness.dns_server import DnsServer, ServerThread, SignedZone, make_zone, sign


@pytest.fixture(scope="session")
def signed_zone() -> SignedZone:
    return sign(make_zone())


@pytest.fixture(scope="module")
def dns_server(signed_zone: SignedZone) -> Iterator[DnsServer]:
    """One server for the module, serving the signed test zone."""
    thread = ServerThread(StaticZones([signed_zone.zone]))
    try:
        yield thread.start()
    finally:
        thread.stop()
