"""The one RFC 3339 format: UTC, whole seconds, ``Z``; every older form still reads back."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from hypermesh.timefmt import parse_rfc3339, rfc3339, rfc3339_epoch

MOMENT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def test_written_in_utc_with_whole_seconds_and_z() -> None:
    assert rfc3339(MOMENT) == "2026-01-02T03:04:05Z"


def test_milliseconds_only_when_asked_and_truncated() -> None:
    assert rfc3339(MOMENT, milliseconds=True) == "2026-01-02T03:04:05.678Z"


def test_an_offset_is_converted_to_utc() -> None:
    paris = MOMENT.astimezone(timezone(timedelta(hours=1)))
    assert rfc3339(paris) == "2026-01-02T03:04:05Z"


def test_a_moment_without_offset_is_taken_as_utc() -> None:
    assert rfc3339(MOMENT.replace(tzinfo=None)) == "2026-01-02T03:04:05Z"


def test_epoch_seconds() -> None:
    assert rfc3339_epoch(MOMENT.timestamp()) == "2026-01-02T03:04:05Z"


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-02T03:04:05Z",
        "2026-01-02T03:04:05+00:00",
        "2026-01-02T03:04:05.000Z",
        "2026-01-02T04:04:05+01:00",
        "2026-01-02T03:04:05",
    ],
)
def test_every_form_written_before_reads_back(text: str) -> None:
    assert parse_rfc3339(text) == MOMENT.replace(microsecond=0)


def test_round_trip() -> None:
    assert parse_rfc3339(rfc3339(MOMENT)) == MOMENT.replace(microsecond=0)


@pytest.mark.parametrize("text", [None, "", "yesterday", 17, "2026-13-01T00:00:00Z"])
def test_what_is_not_a_moment_is_none(text: object) -> None:
    assert parse_rfc3339(text) is None


SOURCES = Path(__file__).resolve().parent.parent
WRITERS = re.compile(r"\.isoformat\(|strftime\([\"']%Y-%m-%dT|\.replace\([\"']\+00:00[\"']")


def test_no_module_writes_a_timestamp_of_its_own() -> None:
    """Every RFC 3339 text comes from ``timefmt``: a second writer would drift from it."""
    found = [
        f"{path.relative_to(SOURCES)}:{number}"
        for folder in ("controller", "operator")
        for path in sorted((SOURCES / folder).rglob("*.py"))
        if path.name != "timefmt.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if WRITERS.search(line)
    ]
    assert found == []
