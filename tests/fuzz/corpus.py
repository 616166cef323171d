"""The corpus: every input that ever broke a parser, one file each, replayed on every run.

``corpus/<parser>/<name>.<suffix>`` holds the exact bytes a parser is given (``targets.py``
says, per parser, what they are: a manifest, a DNS message, a block, a request spec). A fuzz
test that finds a failing input under ``HM_FUZZ_SAVE=1`` writes it to
``corpus/<parser>/found-<test>.<suffix>`` (the last one written is the one Hypothesis shrank
to); rename it to say what it is and commit it with the fix.
"""

from __future__ import annotations

import os
from pathlib import Path

from .targets import PARSERS, SUFFIXES

CORPUS = Path(__file__).resolve().parent / "corpus"


def entries() -> list[tuple[str, Path]]:
    """Every corpus file, as (parser, path), sorted."""
    found: list[tuple[str, Path]] = []
    for folder in sorted(p for p in CORPUS.iterdir() if p.is_dir()):
        assert folder.name in PARSERS, f"{folder}: no parser of that name in targets.PARSERS"
        found += [(folder.name, f) for f in sorted(folder.iterdir()) if f.is_file()]
    return found


def run(parser: str, data: bytes, test: str) -> None:
    """Check ``data`` with ``parser``'s contract; with ``HM_FUZZ_SAVE=1``, keep it in the
    corpus when the check fails."""
    try:
        PARSERS[parser](data)
    except BaseException:
        if os.environ.get("HM_FUZZ_SAVE") == "1":
            folder = CORPUS / parser
            folder.mkdir(exist_ok=True)
            (folder / f"found-{test}{SUFFIXES.get(parser, '.json')}").write_bytes(data)
        raise
