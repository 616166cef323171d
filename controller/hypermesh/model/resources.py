"""Resources: validated, defaulted manifest documents as immutable values."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from hypermesh import API_VERSION
from hypermesh.errors import Position
from hypermesh.model.loader import Document
from hypermesh.model.schemas import KINDS

KIND_ORDER = {kind: i for i, kind in enumerate(KINDS)}
"""Dependency order: a kind may only refer to kinds before it."""


@dataclass(frozen=True, slots=True, order=True)
class ResourceKey:
    """What identifies a resource: kind, namespace ("" when not namespaced) and name."""

    kind: str
    name: str
    namespace: str = ""

    def __str__(self) -> str:
        """``Kind/name``, or ``Kind/namespace/name`` for a namespaced resource: how every
        message names a resource (validation problems, conditions, events, plans)."""
        if self.namespace:
            return f"{self.kind}/{self.namespace}/{self.name}"
        return f"{self.kind}/{self.name}"

    def lowercase(self) -> str:
        """``str()`` with the kind in lower case (``node/ns/name``), as kubectl prints what it
        did: hmctl's progress lines and ``get -o name``."""
        text = str(self)
        return self.kind.lower() + text[len(self.kind) :]

    @property
    def order(self) -> tuple[int, str, str]:
        """Sort key putting dependencies first, then names alphabetically."""
        return (KIND_ORDER.get(self.kind, len(KIND_ORDER)), self.namespace, self.name)

    @classmethod
    def parse(cls, text: str) -> ResourceKey:
        """The inverse of ``str()``: ``Kind/name`` or ``Kind/namespace/name``."""
        parts = text.split("/")
        if len(parts) == 2:
            return cls(parts[0], parts[1])
        if len(parts) == 3:
            return cls(parts[0], parts[2], parts[1])
        raise ValueError(f"not a resource key: {text!r}")


@dataclass(frozen=True, slots=True)
class Resource:
    """One declared resource. ``spec`` is defaulted and must be treated as read-only."""

    kind: str
    name: str
    spec: Mapping[str, Any]
    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    document: Document | None = field(default=None, compare=False, repr=False)
    key: ResourceKey = field(init=False, compare=False, repr=False)
    """Kind, namespace and name; computed once (plans look it up many times)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", ResourceKey(self.kind, self.name, self.namespace))

    def position(self, *path: str | int) -> Position:
        """Where ``spec.<path>`` (or the nearest enclosing value) was written."""
        if self.document is None:
            return Position("<unknown>")
        return self.document.position(("spec", *path) if path else ())

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name}
        if self.namespace:
            meta["namespace"] = self.namespace
        if self.labels:
            meta["labels"] = dict(self.labels)
        if self.annotations:
            meta["annotations"] = dict(self.annotations)
        return meta

    def to_manifest(self) -> dict[str, Any]:
        """The Kubernetes-style object, as it would be written in a manifest."""
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "metadata": self.metadata(),
            "spec": json.loads(json.dumps(self.spec)),
        }

    def spec_json(self) -> str:
        """A canonical JSON text of the spec: sorted keys, no whitespace."""
        return canonical_json(self.spec)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class DesiredState:
    """Everything the manifests declare, keyed and in dependency order."""

    resources: tuple[Resource, ...]
    files: tuple[str, ...] = ()

    @classmethod
    def of(cls, resources: Iterable[Resource], files: Iterable[str] = ()) -> DesiredState:
        ordered = sorted(resources, key=lambda r: r.key.order)
        return cls(tuple(ordered), tuple(files))

    def __iter__(self) -> Iterator[Resource]:
        return iter(self.resources)

    def __len__(self) -> int:
        return len(self.resources)

    def by_key(self) -> dict[ResourceKey, Resource]:
        return {r.key: r for r in self.resources}

    def of_kind(self, kind: str) -> list[Resource]:
        return [r for r in self.resources if r.kind == kind]

    def get(self, kind: str, name: str, namespace: str = "") -> Resource | None:
        for resource in self.resources:
            if resource.kind == kind and resource.name == name and resource.namespace == namespace:
                return resource
        return None
