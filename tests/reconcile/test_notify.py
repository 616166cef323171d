"""Notifications (``hypermesh.reconcile.notify``): the controller loop POSTs the Ready,
Stalled and Drifted transitions of its resources to a webhook, here a real HTTP server on
loopback, exactly once each; a webhook that never answers holds up no pass."""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hypermesh.reconcile import Reconciler, ReconcileSettings
from hypermesh.reconcile.controller import ControllerLoop, LoopSettings
from hypermesh.reconcile.drift import DriftPolicy
from hypermesh.reconcile.notify import Notifier, NotifySettings, check_url
from hypermesh.store import StateStore
from hypermesh.timefmt import parse_rfc3339
from tests.reconcile.test_controller import Recorder, ScriptedSource
from tests.reconcile.test_drift_policy import A, manifests
from tests.reconcile.test_reconciler import MemoryDriver, World


class Hook:
    """A webhook on 127.0.0.1: every JSON body POSTed to it, in order."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                hook.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.close()


def loop_for(tmp_path: Path, world: World, url: str, timeout: float = 5.0) -> ControllerLoop:
    store = StateStore.open(tmp_path)
    drivers: dict[str, Any] = {k: MemoryDriver(k, world) for k in ("Network", "Node")}
    settings = ReconcileSettings(backoff_base=0.01, backoff_cap=0.05, drift=DriftPolicy.DETECT)
    reconciler = Reconciler(store, drivers, settings)
    source = ScriptedSource(manifests())
    notify = NotifySettings(url, timeout=timeout, attempts=2, backoff=0.05)
    loop_settings = LoopSettings(interval=3600.0, timeout=10.0, notify=notify)
    return ControllerLoop(
        loop_settings, source, source.load, store, reconciler, Recorder(), asyncio.Event()
    )


def said(bodies: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(b["resource"], b["condition"], b["status"]) for b in bodies]


def test_the_webhook_receives_exactly_the_transitions(tmp_path: Path, hook: Hook) -> None:
    world = World()
    loop = loop_for(tmp_path, world, hook.url)

    async def go() -> None:
        await loop.first()  # everything becomes Ready
        await loop.tick()  # nothing changes: nothing is sent
        del world.objects[A]
        await loop.tick()  # a drifts (detect): not Ready, Drifted
        await loop.tick()  # the same: nothing
        assert loop.notifier is not None
        await loop.notifier.close(grace=10.0)

    asyncio.run(go())
    assert said(hook.bodies) == [
        ("Network/n", "Ready", "True"),
        ("Node/a", "Ready", "True"),
        ("Node/b", "Ready", "True"),
        ("Node/a", "Ready", "False"),
        ("Node/a", "Drifted", "True"),
    ]
    drift = hook.bodies[-1]
    assert (drift["reason"], drift["message"], drift["revision"]) == ("Drifted", "gone", "r1")
    fields = {"resource", "condition", "status", "reason", "message", "revision", "time"}
    assert set(drift) == fields
    parse_rfc3339(drift["time"])


def test_a_webhook_that_never_answers_holds_up_no_pass(tmp_path: Path) -> None:
    """The webhook accepts connections and never answers: the passes go on regardless (the
    wait_for is a guard against a hang, not a measure)."""
    hole = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{hole.getsockname()[1]}/"
    world = World()
    loop = loop_for(tmp_path, world, url, timeout=1.0)

    async def go() -> None:
        await asyncio.wait_for(loop.first(), 30)
        del world.objects[A]
        for _ in range(3):
            await asyncio.wait_for(loop.tick(), 30)
        assert loop.notifier is not None
        assert loop.notifier.sent == 0 and loop.notifier.queue  # still trying the first
        await loop.notifier.close(grace=0.1)

    try:
        asyncio.run(go())
    finally:
        hole.close()
    record = loop.store.record(A)
    assert record is not None and world.calls.count(("apply", "Node/a")) == 1


def test_a_full_queue_drops_the_oldest() -> None:
    async def go() -> Notifier:
        notifier = Notifier(NotifySettings("http://127.0.0.1:9/", queue=2, timeout=0.2))
        notifier.post({"resource": f"Node/{i}"} for i in range(5))
        kept = [e["resource"] for e in notifier.queue]
        await notifier.close(grace=0.0)
        assert kept[-1] == "Node/4"
        return notifier

    notifier = asyncio.run(go())
    assert notifier.dropped == 3


@pytest.mark.parametrize("url", ["ftp://example.org/", "file:///etc/passwd", "http://", "hook"])
def test_only_http_urls_are_taken(url: str) -> None:
    with pytest.raises(ValueError, match="--notify"):
        check_url(url)
