"""Turning values into text: plans as kubectl-style diffs, lists as tables, objects as YAML/JSON.

Colour only on a terminal, and never when ``NO_COLOR`` is set; piped output stays plain.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import yaml

from hypermesh.plan import Action, Plan, PlanItem
from hypermesh.timefmt import parse_rfc3339

_SECRET = re.compile(r"(secret|password|token|private[_-]?key|passphrase)", re.IGNORECASE)
MASK = "(sensitive value)"


def use_colour(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


class Palette:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def _wrap(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.enabled else text

    def green(self, text: str) -> str:
        return self._wrap("32", text)

    def red(self, text: str) -> str:
        return self._wrap("31", text)

    def yellow(self, text: str) -> str:
        return self._wrap("33", text)

    def cyan(self, text: str) -> str:
        return self._wrap("36", text)

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)


def mask_secrets(value: Any) -> Any:
    """A copy of ``value`` with every field whose name looks secret replaced by a mask."""
    if isinstance(value, Mapping):
        return {k: (MASK if _SECRET.search(str(k)) else mask_secrets(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value


def to_yaml(value: Any) -> str:
    return yaml.safe_dump(value, sort_keys=False, default_flow_style=False, allow_unicode=True)


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False, default=str)


# -- plans -----------------------------------------------------------------------------------

_SYMBOL = {Action.CREATE: "+", Action.UPDATE: "~", Action.DELETE: "-", Action.NOOP: " "}


def render_plan(plan: Plan, palette: Palette, *, verbose: bool = False) -> str:
    """A plan as ``kubectl diff`` would show it: a unified diff of each changed object."""
    lines: list[str] = []
    for item in plan.items:
        if not item.changes and not verbose:
            continue
        lines.extend(_render_item(item, palette))
    for key in plan.orphans:
        lines.append(palette.dim(f"# {key} is no longer declared (apply --prune deletes it)"))
    summary = f"Plan: {plan.summary()}."
    lines.append(palette.bold(summary) if plan.has_changes else summary)
    return "\n".join(lines) + "\n"


def _render_item(item: PlanItem, palette: Palette) -> list[str]:
    colour = {
        Action.CREATE: palette.green,
        Action.UPDATE: palette.yellow,
        Action.DELETE: palette.red,
        Action.NOOP: palette.dim,
    }[item.action]
    title = f"{_SYMBOL[item.action]} {item.action.value} {item.key}"
    if item.drift:
        title += f"  (drift: {'; '.join(map(str, item.drift))})"
    lines = [colour(palette.bold(title))]
    old = _object(item.key, item.observed.spec if item.observed else None)
    new = _object(item.key, item.desired.spec if item.desired else None)
    if item.action is Action.DELETE:
        new = ""
    elif item.action is Action.CREATE:
        old = ""
    if old == new:
        if item.drift:
            lines.append(palette.dim("  spec unchanged; the live object will be repaired"))
        return lines
    diff = difflib.unified_diff(
        old.splitlines(),
        new.splitlines(),
        fromfile=f"{item.key} (applied)" if old else "/dev/null",
        tofile=f"{item.key} (desired)" if new else "/dev/null",
        lineterm="",
        n=3,
    )
    for line in diff:
        if line.startswith(("+++", "---")):
            lines.append(palette.bold(line))
        elif line.startswith("@@"):
            lines.append(palette.cyan(line))
        elif line.startswith("+"):
            lines.append(palette.green(line))
        elif line.startswith("-"):
            lines.append(palette.red(line))
        else:
            lines.append(line)
    return lines


def _object(key: Any, spec: Mapping[str, Any] | None) -> str:
    if spec is None:
        return ""
    return to_yaml({"kind": key.kind, "name": key.name, "spec": mask_secrets(dict(spec))})


def plan_json(plan: Plan) -> str:
    return to_json(mask_secrets(plan.to_dict()))


# -- tables ----------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Columns aligned with spaces, as kubectl prints them."""
    text_rows = [[_cell(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    out = ["   ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in text_rows:
        out.append("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(out) + "\n"


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "<none>"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "<none>"
    return str(value)


def age(since: str | datetime | None, now: datetime | None = None) -> str:
    """kubectl's compact age: 45s, 12m, 3h, 2d."""
    if since is None:
        return "<unknown>"
    if isinstance(since, str):
        since = parse_rfc3339(since)
        if since is None:
            return "<unknown>"
    if since.tzinfo is None:
        since = since.astimezone()
    now = now or datetime.now(UTC)
    seconds = max(0, int((now - since).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def error(message: str, stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    palette = Palette(use_colour(stream))
    stream.write(f"{palette.red('error:')} {message}\n")
