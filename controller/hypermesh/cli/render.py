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
    diff = _diff(item)
    if not diff:
        if item.drift:
            lines.append(palette.dim("  spec unchanged; the live object will be repaired"))
        return lines
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


def _diff(item: PlanItem) -> list[str]:
    """The item's spec, applied against desired, as unified diff lines (none: unchanged)."""
    old = _object(item.key, item.observed.spec if item.observed else None)
    new = _object(item.key, item.desired.spec if item.desired else None)
    if item.action is Action.DELETE:
        new = ""
    elif item.action is Action.CREATE:
        old = ""
    if old == new:
        return []
    return list(
        difflib.unified_diff(
            old.splitlines(),
            new.splitlines(),
            fromfile=f"{item.key} (applied)" if old else "/dev/null",
            tofile=f"{item.key} (desired)" if new else "/dev/null",
            lineterm="",
            n=3,
        )
    )


_SECTIONS = (
    (Action.CREATE, "Creates"),
    (Action.UPDATE, "Changes"),
    (Action.DELETE, "Prunes"),
)


def render_markdown(plan: Plan, title: str = "HyperMesh plan") -> str:
    """A plan as a pull-request comment: its summary, then creates, changes, prunes and drift
    in sections of their own, each resource's diff folded in a ``<details>`` block (secrets
    masked as in the text diff)."""
    out = [f"### {title}: {plan.summary()}", ""]
    if not plan.has_changes and not plan.orphans:
        out.append("No changes: the live network matches the manifests.")
    for action, heading in _SECTIONS:
        diffs = [(i, _diff(i)) for i in plan.items if i.action is action]
        diffs = [(i, d) for i, d in diffs if d]  # an update for drift alone is under Drift
        if diffs:
            out += [f"#### {heading} ({len(diffs)})", ""]
            for item, diff in diffs:
                out += _markdown_item(item, diff)
    drifted = [i for i in plan.items if i.drift]
    if drifted:
        out += [f"#### Drift ({len(drifted)}): the live objects are put back as declared", ""]
        out += [f"- `{i.key}`: {'; '.join(map(str, i.drift))}" for i in drifted]
        out.append("")
    if plan.orphans:
        out += [f"#### No longer declared ({len(plan.orphans)})", ""]
        out += [f"- `{key}` (kept: apply with `--prune` deletes it)" for key in plan.orphans]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def _markdown_item(item: PlanItem, diff: list[str]) -> list[str]:
    body = "\n".join(diff[2:])  # the ---/+++ header says nothing the summary does not
    fence = "~~~" if "```" in body else "```"
    return [
        f"<details><summary><code>{item.key}</code></summary>",
        "",
        f"{fence}diff",
        body,
        fence,
        "",
        "</details>",
        "",
    ]


def _object(key: Any, spec: Mapping[str, Any] | None) -> str:
    """The object as the diff shows it: keys sorted at every level, so the applied spec (as
    stored) and the desired one (as written) differ only where their values do."""
    if spec is None:
        return ""
    shown = {"kind": key.kind, "name": key.name, "spec": mask_secrets(dict(spec))}
    return yaml.safe_dump(shown, sort_keys=True, default_flow_style=False, allow_unicode=True)


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
