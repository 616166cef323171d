"""What every hmctl command shares: durations, the state directory, "nothing declared"."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from hypermesh.errors import Position, Problem
from hypermesh.policy import parse_duration


def duration(text: str) -> float:
    """``90``, ``90s``, ``1m30s``, ``500ms`` → seconds."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def state_dir(args: argparse.Namespace) -> Path:
    raw = args.state or os.environ.get("HM_STATE") or ".hypermesh"
    return Path(raw).expanduser().resolve()


def nothing_declared(files: list[str]) -> list[Problem]:
    return [
        Problem(Position(file), "no resources found (empty, or only comments)")
        for file in files or ["<input>"]
    ]
