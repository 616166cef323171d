"""The controller's figures as a Prometheus textfile (``--metrics-file``).

The controller serves no HTTP of its own; after each pass it rewrites one file (atomically) in
the text exposition format, for node_exporter's textfile collector or anything that reads it:

- ``hypermesh_controller_drifted_resources``: resources the last pass left drifted (``detect``);
- ``hypermesh_controller_converged``: 1 when the last pass converged, else 0;
- ``hypermesh_controller_last_pass_timestamp_seconds``: when the last pass ended;
- ``hypermesh_controller_notifications_total{outcome}``: transitions the webhook took
  (``sent``), gave up on (``failed``) or that a full queue pushed out (``dropped``).
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from hypermesh.reconcile.notify import Notifier


def write(
    path: Path,
    *,
    drift: str,
    drifted: int,
    converged: bool,
    at: float,
    notifier: Notifier | None,
) -> None:
    """Rewrite ``path`` with the figures of the pass that just ended."""
    registry = CollectorRegistry()
    gauge = Gauge(
        "hypermesh_controller_drifted_resources",
        "Resources the last pass left drifted (drift policy detect)",
        ["policy"],
        registry=registry,
    )
    gauge.labels(policy=drift).set(drifted)
    Gauge(
        "hypermesh_controller_converged",
        "1 when the last pass converged, else 0",
        registry=registry,
    ).set(1 if converged else 0)
    Gauge(
        "hypermesh_controller_last_pass_timestamp_seconds",
        "When the last pass ended (seconds since the epoch)",
        registry=registry,
    ).set(at)
    if notifier is not None:
        sent = Gauge(
            "hypermesh_controller_notifications_total",
            "Transitions sent to the webhook, given up on, or dropped from a full queue",
            ["outcome"],
            registry=registry,
        )
        sent.labels(outcome="sent").set(notifier.sent)
        sent.labels(outcome="failed").set(notifier.failed)
        sent.labels(outcome="dropped").set(notifier.dropped)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
