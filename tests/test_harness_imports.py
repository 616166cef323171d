"""No test or benchmark reaches into another concern's conftest or helpers: what more than one
concern needs lives in ``tests/harness`` — or is the network lab (``tests/lab``), a harness of its
own that the lab's tests, the many-hosts benchmark and people at a shell use."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMPORT = re.compile(r"^\s*from (tests\.\w+)[.\w]* import|^\s*from (\.\.\w+)[.\w]* import", re.M)
SHARED = {"tests.harness", "tests.conftest", "tests.lab"}


def _concern(path: Path) -> str:
    """``tests.<folder>`` for a test; a benchmark of one concern (``bench/operator.py``) belongs
    to that concern's tests (``tests.operator``)."""
    parts = path.relative_to(ROOT).parts
    if parts[0] == "bench":
        return f"tests.{path.stem}"
    return f"tests.{parts[1]}" if len(parts) > 2 else "tests"


def test_imports_stay_within_a_concern_or_go_through_the_harness() -> None:
    crossing = []
    for folder in ("tests", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for match in IMPORT.finditer(path.read_text()):
                source = match.group(1) or "tests." + match.group(2).lstrip(".")
                if source not in SHARED and source != _concern(path):
                    crossing.append(f"{path.relative_to(ROOT)}: {source}")
    assert crossing == []
