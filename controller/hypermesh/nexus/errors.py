"""Nexus's errors: problems at a file, line and column, rendered ``FILE:LINE:COL: message``."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from hypermesh.errors import HyperMeshError, Position, Problem

__all__ = ["NexusError", "Position", "Problem", "did_you_mean", "sort_problems"]


class NexusError(HyperMeshError):
    """A Nexus program is wrong; carries every problem found (at least one)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sort_problems(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def sort_problems(problems: Iterable[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.position.file, p.position.line, p.position.column))


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when one of ``options`` is close to ``word``, else ``""``."""
    close = difflib.get_close_matches(word, sorted(set(options)), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
