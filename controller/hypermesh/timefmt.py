"""RFC 3339 timestamps: the one way HyperMesh writes a moment as text, and reads one back.

Every moment HyperMesh writes (status fields and conditions in the state store, ``runtime.json``,
the state lock, the registry's API, the tables ``hmctl`` prints) reads ``2026-01-02T03:04:05Z``:
UTC, whole seconds, ``Z``. Whole seconds, because these moments are compared with TTLs and
terms of days and shown to people, and one format makes them comparable as text. Log lines are
the one place that asks for milliseconds (``milliseconds=True``): they order events within a
second and the benchmarks measure propagation from them.

Reading takes every form HyperMesh wrote before: ``Z`` or an offset such as ``+00:00``, any
fraction of a second, and a moment without an offset, which is taken as UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(moment: datetime, *, milliseconds: bool = False) -> str:
    """``2026-01-02T03:04:05Z`` (or ``…05.123Z`` with ``milliseconds``): ``moment`` in UTC,
    truncated, never rounded; a moment without an offset is taken as UTC already."""
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    timespec = "milliseconds" if milliseconds else "seconds"
    return utc.replace(tzinfo=None).isoformat(timespec=timespec) + "Z"


def rfc3339_epoch(seconds: float, *, milliseconds: bool = False) -> str:
    """:func:`rfc3339` of a Unix time (seconds since the epoch)."""
    return rfc3339(datetime.fromtimestamp(seconds, UTC), milliseconds=milliseconds)


def parse_rfc3339(text: object) -> datetime | None:
    """The moment an RFC 3339 text names (an aware datetime), or None when it is not one."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
