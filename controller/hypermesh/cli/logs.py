"""Logging for hmctl: JSON lines in ``<state>/logs/controller.log``, readable lines on stderr."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from hypermesh.node.logs import JsonFormatter


def setup_logging(state_dir: Path, *, verbose: bool = False) -> Path:
    """Send hypermesh's logs to a JSON-lines file (always) and to stderr (warnings, or all with
    ``--verbose``). Returns the log file's path."""
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / "controller.log"
    root = logging.getLogger("hypermesh")
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    to_file = logging.FileHandler(path)
    to_file.setFormatter(JsonFormatter())
    root.addHandler(to_file)
    to_terminal = logging.StreamHandler(sys.stderr)
    to_terminal.setLevel(logging.DEBUG if verbose else logging.WARNING)
    to_terminal.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(to_terminal)
    root.propagate = False
    return path
