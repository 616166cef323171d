"""One root error for the whole project, and errors that say where and whether to retry.

The caller's mistakes (a bad manifest, a bad flag) carry a position; a misbehaving peer or
process is the peer's fault and says which; the reconciler reads the retry policy from the
type (``TemporaryError`` is retried with backoff, ``PermanentError`` is not) and never guesses.
"""

from __future__ import annotations

from dataclasses import dataclass


class HyperMeshError(Exception):
    """The root of every error HyperMesh raises on purpose."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where a value came from: a file (or ``<stdin>``), 1-based line and column."""

    file: str
    line: int = 1
    column: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the input, rendered ``FILE:LINE:COL: Kind/name: path: message``."""

    position: Position
    message: str
    resource: str = ""
    path: str = ""
    unresolved: bool = False
    """True for a reference to a resource that is not declared: something that may yet be
    created (the objects of one ``kubectl apply`` arrive in any order), unlike a spec that is
    wrong in itself."""

    def __str__(self) -> str:
        parts = [str(self.position)]
        if self.resource:
            parts.append(self.resource)
        if self.path:
            parts.append(self.path)
        parts.append(self.message)
        return ": ".join(parts)


class ManifestError(HyperMeshError):
    """The manifests are wrong; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(
            problems, key=lambda p: (p.position.file, p.position.line, p.position.column)
        )
        super().__init__("\n".join(str(p) for p in self.problems))


class UsageError(HyperMeshError):
    """The command line is wrong (unknown kind, conflicting flags)."""


class StateError(HyperMeshError):
    """The state store cannot be used (corrupt, newer schema, unreachable database)."""


class LockHeldError(StateError):
    """Another hmctl holds the state lock; the message says who."""


class PruneRefused(HyperMeshError):
    """A prune would delete too much; ``--force`` overrides."""


class MoveRefused(PruneRefused):
    """A plan would move resources from one network to another (the same names applied from
    other manifests, most often); ``--force`` overrides."""


class TransportError(HyperMeshError):
    """A QUIC/HTTP/3 exchange with a peer failed (unreachable, reset, bad answer)."""


class NotReady(TransportError):
    """The peer is up but cannot answer this yet (503): a node that has just started and not
    yet copied what the request needs. Asking again in a moment may succeed."""


class IdentityMismatch(TransportError):
    """The peer presented a key whose node ID is not the one we pinned."""


class ReconcileError(HyperMeshError):
    """A driver could not converge a resource. ``reason`` is a CamelCase condition reason."""

    reason = "Failed"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class TemporaryError(ReconcileError):
    """Worth retrying; ``delay`` (seconds) overrides the backoff when given."""

    reason = "Retrying"

    def __init__(self, message: str, *, reason: str | None = None, delay: float | None = None):
        super().__init__(message, reason=reason)
        self.delay = delay


class AwaitingPerson(ReconcileError):
    """Waits on a person (a registry administrator's approval), whom the message tells what to
    run: said once, not retried within an apply (what depends on it waits with it), tried
    again at the next apply or pass of the loop."""

    reason = "AwaitingPerson"


class PermanentError(ReconcileError):
    """Retrying will not help until the desired state changes."""

    reason = "Stalled"
