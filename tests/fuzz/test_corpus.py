"""Every input that ever broke a parser, replayed on every run: one test per corpus file."""

from __future__ import annotations

from pathlib import Path

import pytest

from .corpus import CORPUS, entries, run

ENTRIES = entries()


@pytest.mark.parametrize(("parser", "path"), ENTRIES, ids=[f"{p}/{f.name}" for p, f in ENTRIES])
def test_corpus_entry(parser: str, path: Path) -> None:
    run(parser, path.read_bytes(), "corpus")


def test_the_corpus_covers_every_parser() -> None:
    from .targets import PARSERS

    held = {parser for parser, _ in ENTRIES}
    assert held == set(PARSERS), f"no corpus entry for {sorted(set(PARSERS) - held)} in {CORPUS}"
