"""The shell commands the docs show run as shown, against a live network, so the docs cannot
drift from the code: a fenced block right after a ``<!-- test: quickstart -->`` line in
README.md, docs/*.md or examples/*/README.md is run line by line, in the order of the files, with
the quickstart applied to a state of the test's own (``$HM_STATE``) and the repository as the
working directory.

A line is a command when it starts with ``hmctl `` or ``$ hmctl `` (other lines of a block
that shows ``$`` commands are their output). ``hmctl up`` runs in the foreground until stopped, so
the test applies the same files once instead (``hmctl apply``). A command must exit 0, or what
a trailing ``# exit N`` says (``hmctl diff`` exits 1 when there are changes); when the block
shows a table's header under a ``$`` command (words in capitals), the command's first line of
output starts with those columns.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MARK = "<!-- test: quickstart -->"
EXIT = re.compile(r"#\s*exit\s+(\d+)\s*$")


@dataclass(frozen=True)
class Command:
    where: str
    line: str
    expected: int
    header: tuple[str, ...] = ()
    """The columns the docs show the output's first line starting with (``...`` dropped)."""

    def argv(self) -> list[str]:
        words = shlex.split(EXIT.sub("", self.line), comments=True)
        if words[:2] == ["hmctl", "up"]:
            words[1] = "apply"
        return [sys.executable, "-m", "hypermesh.cli.main", *words[1:]]


def _files() -> list[Path]:
    return [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        *sorted((ROOT / "examples").glob("*/README.md")),
    ]


def marked_commands() -> list[Command]:
    found: list[Command] = []
    for path in _files():
        lines = path.read_text().splitlines()
        for index, text in enumerate(lines):
            if text.strip() != MARK:
                continue
            assert lines[index + 1].startswith("```"), f"{path}:{index + 2}: a fence must follow"
            block = []
            for number in range(index + 2, len(lines)):
                if lines[number].startswith("```"):
                    break
                block.append((number + 1, lines[number]))
            found += _commands(path, block)
    return found


def _commands(path: Path, block: list[tuple[int, str]]) -> list[Command]:
    found = []
    prompt = any(t.startswith("$ ") for _, t in block)
    for at, (number, t) in enumerate(block):
        line = t[2:] if prompt and t.startswith("$ ") else ("" if prompt else t)
        if not line.startswith("hmctl "):
            continue
        shown = block[at + 1][1].split() if prompt and at + 1 < len(block) else []
        header = tuple(w for w in shown if w != "...") if shown and shown[0].isupper() else ()
        match = EXIT.search(line)
        where = f"{path.relative_to(ROOT)}:{number}"
        found.append(Command(where, line, int(match.group(1)) if match else 0, header))
    return found


def test_the_docs_mark_their_quickstart_commands() -> None:
    commands = marked_commands()
    where = {c.where.split(":")[0] for c in commands}
    assert {"README.md", "examples/quickstart/README.md"} <= where, where
    wide = [c for c in commands if c.line == "hmctl get nodes -o wide" and c.header]
    assert wide and wide[0].header[:6] == (
        "NAME",
        "READY",
        "REASON",
        "NETWORK",
        "ADDRESS",
        "IDENTITY",
    )


def test_every_marked_command_runs_as_shown(tmp_path: Path) -> None:
    commands = marked_commands()
    env = {**os.environ, "HM_STATE": str(tmp_path / "state"), "NO_COLOR": "1"}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    applied = subprocess.run(
        [sys.executable, "-m", "hypermesh.cli.main", "apply", "-f", "examples/quickstart"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stdout + applied.stderr
    failed = []
    try:
        for command in commands:
            done = subprocess.run(
                command.argv(), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
            )
            first = done.stdout.splitlines()[0].split() if done.stdout.strip() else []
            if done.returncode != command.expected:
                failed.append(
                    f"{command.where}: `{command.line}` exited {done.returncode}, not "
                    f"{command.expected}:\n{done.stdout[-600:]}{done.stderr[-600:]}"
                )
            elif tuple(first[: len(command.header)]) != command.header:
                failed.append(f"{command.where}: `{command.line}` prints {first}")
    finally:
        subprocess.run(
            [sys.executable, "-m", "hypermesh.cli.main", "down"],
            cwd=ROOT, env=env, capture_output=True, timeout=120,
        )  # fmt: skip
    assert not failed, "\n".join(failed)
    assert len(commands) >= 8


@pytest.mark.parametrize(
    ("line", "argv_tail", "expected"),
    [
        ("hmctl up -f examples/quickstart", ["apply", "-f", "examples/quickstart"], 0),
        ("hmctl diff -f examples/quickstart   # exit 1", ["diff", "-f", "examples/quickstart"], 1),
    ],
)
def test_up_is_applied_once_and_exit_codes_are_read(
    line: str, argv_tail: list[str], expected: int
) -> None:
    match = EXIT.search(line)
    command = Command("x:1", line, int(match.group(1)) if match else 0)
    assert command.argv()[3:] == argv_tail and command.expected == expected
