"""Field-level diffs as data (rendering is somebody else's job)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from hypermesh.model.loader import FieldPath


class DiffOp(StrEnum):
    ADD = "add"
    CHANGE = "change"
    REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class DiffItem:
    """One changed field: ``path`` from the spec's root, the old and the new value."""

    op: DiffOp
    path: FieldPath
    old: Any = None
    new: Any = None

    @property
    def field(self) -> str:
        out = ""
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
        return out

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"op": self.op.value, "field": self.field}
        if self.op is not DiffOp.ADD:
            data["old"] = self.old
        if self.op is not DiffOp.REMOVE:
            data["new"] = self.new
        return data


def diff(old: Any, new: Any, path: FieldPath = ()) -> tuple[DiffItem, ...]:
    """The fields that differ between ``old`` and ``new``; mappings are compared key by key,
    everything else (lists included) as a whole value."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        items: list[DiffItem] = []
        for key in sorted(set(old) | set(new), key=str):
            if key not in new:
                items.append(DiffItem(DiffOp.REMOVE, (*path, key), old=old[key]))
            elif key not in old:
                items.append(DiffItem(DiffOp.ADD, (*path, key), new=new[key]))
            elif old[key] != new[key]:
                items.extend(diff(old[key], new[key], (*path, key)))
        return tuple(items)
    if old == new and type(old) is type(new):
        return ()
    return (DiffItem(DiffOp.CHANGE, path, old=old, new=new),)
