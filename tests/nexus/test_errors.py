"""Error programs: each ``errors/*.nx`` starts with ``# expect: LINE:COL: message`` lines, and
checking it reports exactly those problems, in that order, as ``FILE:LINE:COL: message``.

In a message, ``{file}`` stands for the program's path and ``{dir}`` for its folder as shown.
A problem in another file (a module) is written ``NAME.nx:LINE:COL: message``.
A file without ``# expect:`` lines is a helper (a module another error program imports).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hypermesh.nexus.compiler import compile_file
from hypermesh.nexus.modules import _display
from tests.nexus.conftest import ERRORS

PROGRAMS = sorted(p for p in ERRORS.glob("*.nx") if "# expect:" in p.read_text())


def expected(path: Path) -> list[str]:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("# expect: "):
            break
        text = line.removeprefix("# expect: ")
        lines.append(text.replace("{file}", str(path)).replace("{dir}", _display(path.parent)))
    return lines


def test_there_are_error_programs() -> None:
    assert len(PROGRAMS) >= 25


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_error_position_and_message(program: Path) -> None:
    compiled = compile_file(str(program))
    got = []
    for problem in compiled.problems:
        text = str(problem)
        file = problem.position.file
        # Problems in the program itself are shown without its name; in another file (a
        # module it imports), with that file's name.
        shown = "" if file == str(program) else Path(file).name + ":"
        got.append(shown + text.removeprefix(f"{file}:"))
    assert got == expected(program)
    assert compiled.documents == () or not compiled.ok
