"""Where the DNS server gets its zones: a ``ZoneSource`` and the in-memory ``StaticZones``.

The answering engine only reads zones, and only trusts ``version`` to tell it when they changed:
a source must give a new ``version`` whenever any zone it serves is added, replaced, removed or
changed. Zones handed to a source are treated as read-only from then on; to change one, hand
over a new zone (or bump the version of a source that edits its zones in place).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Protocol, runtime_checkable

import dns.name
import dns.zone


@runtime_checkable
class ZoneSource(Protocol):
    """Zones to serve, by origin, and a version that changes whenever any of them changes."""

    @property
    def version(self) -> int:
        """Changes (to any other value) whenever any zone is added, replaced, removed or edited."""
        ...

    def zones(self) -> Mapping[dns.name.Name, dns.zone.Zone]:
        """The zones to serve, keyed by their (absolute) origin."""
        ...


class StaticZones:
    """An in-memory ``ZoneSource``: zones set, replaced and removed by the caller.

    Each change builds a new mapping and only then bumps ``version``, so a reader that sees the
    new version also sees the new zones (the answering engine reads the version first).
    """

    def __init__(self, zones: Iterable[dns.zone.Zone] = ()) -> None:
        self._zones: Mapping[dns.name.Name, dns.zone.Zone] = MappingProxyType(
            {_origin(zone): zone for zone in zones}
        )
        self._version = 0
        self._stale: frozenset[dns.name.Name] = frozenset()
        self._edits = 0
        self._listeners: list[Callable[[dns.name.Name, dns.zone.Zone | None], None]] = []
        self._watchers: list[Callable[[], None]] = []

    @property
    def version(self) -> int:
        """Starts at 0; grows by one with every change."""
        return self._version

    def zones(self) -> Mapping[dns.name.Name, dns.zone.Zone]:
        """A read-only view of the current zones."""
        return self._zones

    def listen(self, listener: Callable[[dns.name.Name, dns.zone.Zone | None], None]) -> None:
        """Call ``listener(origin, zone)`` after each zone is set (None: removed)."""
        self._listeners.append(listener)

    def watch(self, watcher: Callable[[], None]) -> None:
        """Call ``watcher()`` after every change of ``version`` (zones set, replaced or
        removed, edited in place, marked stale), once the change is complete."""
        self._watchers.append(watcher)

    def _bumped(self) -> None:
        self._version += 1
        for watcher in self._watchers:
            watcher()

    def set(self, zone: dns.zone.Zone) -> None:
        """Add ``zone``, or replace the zone with the same origin."""
        origin = _origin(zone)
        self._publish({**self._zones, origin: zone})
        self._tell(origin, zone)

    def remove(self, origin: dns.name.Name | str) -> bool:
        """Stop serving the zone at ``origin``; False when there was none."""
        name = dns.name.from_text(origin) if isinstance(origin, str) else origin
        if name not in self._zones:
            return False
        self._publish({key: zone for key, zone in self._zones.items() if key != name})
        self._tell(name, None)
        return True

    def replace(self, zones: Iterable[dns.zone.Zone]) -> None:
        """Serve exactly ``zones`` from now on."""
        before = self._zones
        self._publish({_origin(zone): zone for zone in zones})
        for origin in before.keys() - self._zones.keys():
            self._tell(origin, None)
        for origin, zone in self._zones.items():
            if before.get(origin) is not zone:
                self._tell(origin, zone)

    def _tell(self, origin: dns.name.Name, zone: dns.zone.Zone | None) -> None:
        for listener in self._listeners:
            listener(origin, zone)

    @property
    def stale(self) -> frozenset[dns.name.Name]:
        """Origins of zones served past their expiry: answers from them are marked stale."""
        return self._stale

    def set_stale(self, origins: Iterable[dns.name.Name]) -> None:
        """Mark exactly ``origins`` as stale (a change bumps the version)."""
        stale = frozenset(origins)
        if stale != self._stale:
            self._stale = stale
            self._bumped()

    @property
    def edits(self) -> int:
        """How many times ``touch`` was called: readers that index zones re-index them all
        when it moves, and only the replaced ones otherwise."""
        return self._edits

    def touch(self) -> None:
        """Bump the version after a zone was edited in place."""
        self._edits += 1
        self._bumped()

    def _publish(self, zones: dict[dns.name.Name, dns.zone.Zone]) -> None:
        self._zones = MappingProxyType(zones)
        self._bumped()


def _origin(zone: dns.zone.Zone) -> dns.name.Name:
    origin = zone.origin
    if origin is None or not origin.is_absolute():
        raise ValueError("a zone to serve needs an absolute origin")
    return origin
