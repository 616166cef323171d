"""Per-resource exponential backoff. Pure: time comes in as ``now``."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K")


@dataclass
class Backoff(Generic[K]):
    """Delay after the n-th consecutive failure: ``base * factor**(n-1)``, capped, ±10% jitter."""

    base: float = 0.5
    factor: float = 2.0
    cap: float = 60.0
    _failures: dict[K, tuple[int, float]] = field(default_factory=dict)
    _random: random.Random = field(default_factory=lambda: random.Random(0x484D))  # noqa: S311 (jitter)

    def failed(self, key: K, now: float, delay: float | None = None) -> float:
        """Record a failure at ``now``; returns the delay before the next try."""
        count = self._failures.get(key, (0, 0.0))[0] + 1
        if delay is None:
            delay = min(self.cap, self.base * self.factor ** (count - 1))
            delay *= 1 + self._random.uniform(-0.1, 0.1)
        self._failures[key] = (count, now + delay)
        return delay

    def succeeded(self, key: K) -> None:
        self._failures.pop(key, None)

    def ready(self, key: K, now: float) -> bool:
        entry = self._failures.get(key)
        return entry is None or now >= entry[1]

    def failures(self, key: K) -> int:
        return self._failures.get(key, (0, 0.0))[0]

    def next_due(self) -> float | None:
        """The earliest time a backed-off resource may be tried again."""
        return min((due for _, due in self._failures.values()), default=None)
