"""What every hmctl command shares: durations, the state directory, "nothing declared"."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from hypermesh.errors import Position, Problem

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """``90``, ``90s``, ``1m30s``, ``500ms`` → seconds."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 30s, 2m, 1h30m)")
    return sum(float(n) * _UNIT[u] for n, u in parts)


def state_dir(args: argparse.Namespace) -> Path:
    raw = args.state or os.environ.get("HM_STATE") or ".hypermesh"
    return Path(raw).expanduser().resolve()


def nothing_declared(files: list[str]) -> list[Problem]:
    return [
        Problem(Position(file), "no resources found (empty, or only comments)")
        for file in files or ["<input>"]
    ]
