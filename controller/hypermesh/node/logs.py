"""Structured logs: one JSON object per line (``ts``, ``level``, ``logger``, ``msg``, extras).

Extra fields come from ``logger.info("...", extra={"node": name, "address": addr})``. Nothing
here knows about keys; callers never pass key material (an ``Identity`` renders as its node ID).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hypermesh.timefmt import rfc3339_epoch

# Attributes every LogRecord has; anything else on a record came in through ``extra``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON; values that are not JSON become ``str(value)``."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single JSON line (no newline; the handler adds it)."""
        data: dict[str, Any] = {
            "ts": rfc3339_epoch(record.created, milliseconds=True),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exc"] = record.exc_text
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return json.dumps(data, default=str, ensure_ascii=False)


def log_to_file(path: Path, level: str = "info", logger: str = "hypermesh") -> logging.Handler:
    """Send ``logger``'s records at ``level`` and above to ``path`` as JSON lines (append)."""
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger(logger)
    root.setLevel(level.upper())
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.propagate = False
    return handler
