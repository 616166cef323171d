"""Notifications: the controller POSTs condition transitions to a webhook (``--notify URL``).

One JSON object per transition of a resource's ``Ready``, ``Stalled`` or ``Drifted``
condition: ``{"resource", "condition", "status", "reason", "message", "revision", "time"}``.
A transition is a change of the condition's status, or its first appearance (for Stalled and
Drifted only when True); a pass that says what the last one said sends nothing, and what holds
when the controller starts is not sent.

Sending never holds up a pass: transitions go into a bounded queue (the oldest dropped, and
counted, when it is full) that one background task empties, each POST in a thread with a short
timeout and a bounded number of retries with backoff; a dead webhook costs the queue, never a
pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from hypermesh.model.resources import ResourceKey
from hypermesh.reconcile.conditions import READY, STALLED
from hypermesh.reconcile.drift import DRIFTED
from hypermesh.store import ResourceRecord
from hypermesh.timefmt import rfc3339

log = logging.getLogger("hypermesh.notify")

WATCHED = (READY, STALLED, DRIFTED)
"""The conditions whose transitions are sent."""


def check_url(url: str) -> str:
    """``url`` when it is an http(s) URL with a host; else ValueError saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--notify: {url!r} is not an http:// or https:// URL with a host")
    return url


@dataclass(frozen=True, slots=True)
class NotifySettings:
    url: str
    timeout: float = 5.0
    """Seconds one POST may take."""
    attempts: int = 3
    """POSTs of one transition before it is given up (logged)."""
    backoff: float = 0.5
    """Seconds before the second attempt; doubles after each failure."""
    queue: int = 256
    """Transitions held at most; the oldest go first when more come."""


@dataclass(slots=True)
class Tracker:
    """The last status of each watched condition of each resource, to tell transitions."""

    seen: dict[tuple[ResourceKey, str], str] = field(default_factory=dict)

    def changes(
        self, records: Iterable[ResourceRecord], revision: str, now: datetime
    ) -> list[dict[str, Any]]:
        """The transitions since the last call, as the JSON objects sent."""
        out: list[dict[str, Any]] = []
        for record in records:
            for cond in record.status.get("conditions", []):
                if not isinstance(cond, Mapping) or cond.get("type") not in WATCHED:
                    continue
                mark = (record.key, str(cond["type"]))
                status = str(cond.get("status", ""))
                was = self.seen.get(mark)
                self.seen[mark] = status
                if was == status or (was is None and cond["type"] != READY and status != "True"):
                    continue  # no change; or a new resource neither stalled nor drifted
                out.append(transition(record.key, cond, revision, now))
        return out


def transition(
    key: ResourceKey, cond: Mapping[str, Any], revision: str, now: datetime
) -> dict[str, Any]:
    return {
        "resource": str(key),
        "condition": str(cond.get("type", "")),
        "status": str(cond.get("status", "")),
        "reason": str(cond.get("reason", "")),
        "message": str(cond.get("message", "")),
        "revision": revision,
        "time": rfc3339(now),
    }


class Notifier:
    """Sends transitions to one webhook from a background task."""

    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings
        self.queue: deque[dict[str, Any]] = deque(maxlen=max(1, settings.queue))
        self.sent = 0
        self.failed = 0
        """Transitions given up after every attempt failed."""
        self.dropped = 0
        """Transitions pushed out of a full queue before they were sent."""
        self._idle = asyncio.Event()
        self._idle.set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def post(self, events: Iterable[dict[str, Any]]) -> None:
        """Queue ``events``; returns at once (starts the sender on first use)."""
        for event in events:
            if len(self.queue) == self.queue.maxlen:
                self.dropped += 1
            self.queue.append(event)
        if self.queue:
            self._idle.clear()
            self._wake.set()
            if self._task is None or self._task.done():
                self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.queue:
                event = self.queue.popleft()
                if await self._deliver(event):
                    self.sent += 1
                else:
                    self.failed += 1
            self._idle.set()

    async def _deliver(self, event: dict[str, Any]) -> bool:
        """POST one event, retrying with backoff; whether the webhook took it (2xx)."""
        body = json.dumps(event).encode()
        delay = self.settings.backoff
        for attempt in range(1, self.settings.attempts + 1):
            problem = await asyncio.to_thread(_post, self.settings.url, body, self.settings.timeout)
            if problem is None:
                return True
            if attempt == self.settings.attempts:
                log.warning(
                    "notify %s: gave up on %s %s=%s after %d attempts: %s",
                    self.settings.url,
                    event["resource"],
                    event["condition"],
                    event["status"],
                    attempt,
                    problem,
                )
                return False
            await asyncio.sleep(delay)
            delay *= 2
        return False

    async def close(self, grace: float = 2.0) -> None:
        """Give what is queued up to ``grace`` seconds to go, then stop the sender."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def _post(url: str, body: bytes, timeout: float) -> str | None:
    """POST ``body`` as JSON; None when answered 2xx, else what went wrong."""
    request = urllib.request.Request(  # noqa: S310 (check_url: http and https only)
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            answer.read()
            return None
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return str(exc)
