"""The metrics the alerts need, read from a real registry (SQLite): the TLD expiries, the
directory's live and stale node records and its next expiry, as the node's /metrics page
renders them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hypermesh.node.metrics import NodeMetrics
from hypermesh.registry.directory import Directory
from hypermesh.registry.service import Registry
from hypermesh.transport.identity import Identity
from hypermesh.transport.noderecord import NodeRecord

NOW = 1_800_000_000.0


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    admin = Identity.generate()
    opened = Registry.open(str(tmp_path / "registry.db"), admin=admin.node_id, clock=lambda: NOW)
    yield opened
    opened.close()


def samples(metrics: NodeMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    page = metrics.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
    }


def test_tld_expiry_and_directory_freshness(registry: Registry) -> None:
    owner, fresh, stale = (Identity.generate() for _ in range(3))
    registry.register("acme", owner.node_id, "demo")
    directory = Directory(registry, "demo", trusted=(fresh.node_id, stale.node_id))
    for key, name, issued in ((fresh, "fresh", NOW - 20), (stale, "stale", NOW - 50)):
        record = NodeRecord.issue(
            key,
            network="demo",
            name=name,
            interfaces={"public": ["192.0.2.7:4433"]},
            issued_at=issued,
            lifetime=60.0,
            seq=1,
        )
        directory.publish(record.to_json())
    metrics = NodeMetrics(name="registry", network="demo", identity="hm1x", version="0")
    metrics.watch_registry(registry)

    seen = samples(metrics)
    (tld,) = registry.list_tlds()
    expiry = seen[("hypermesh_registry_tld_expiry_timestamp_seconds", (("tld", "acme"),))]
    assert expiry == tld.expires_at.timestamp() > NOW
    assert seen[("hypermesh_directory_records", ())] == 2
    # 20 s into 60 is fresh (the node refreshes at 30); 50 s is past three quarters: stale.
    assert seen[("hypermesh_directory_records_stale", ())] == 1
    assert seen[("hypermesh_directory_next_expiry_timestamp_seconds", ())] == NOW + 10


def test_an_expired_tld_is_not_exported(registry: Registry) -> None:
    owner = Identity.generate()
    registry.register("acme", owner.node_id, "demo")
    registry.register("gone", owner.node_id, "demo")
    registry.expire("gone", "test", signer=registry.admin)
    metrics = NodeMetrics(name="registry", network="demo", identity="hm1x", version="0")
    metrics.watch_registry(registry)
    tlds = {
        labels
        for name, labels in samples(metrics)
        if name == "hypermesh_registry_tld_expiry_timestamp_seconds"
    }
    assert tlds == {(("tld", "acme"),)}
