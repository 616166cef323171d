"""Shared helpers for the Nexus tests: the folders of golden and error programs."""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
ERRORS = HERE / "errors"
REGENERATE = os.environ.get("NEXUS_REGENERATE") == "1"
"""``NEXUS_REGENERATE=1 pytest tests/nexus`` rewrites the golden ``*.yaml`` files."""
