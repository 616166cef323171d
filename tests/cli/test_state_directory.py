"""A state directory hmctl cannot write (read-only, a file in the way) is a clear error naming
the directory and what is wrong, exit code 2, never a traceback.

Permission bits do not stop root (the tests run as root in CI), so a read-only directory is
made the way that holds for root too: a read-only bind mount, else ``chattr +i``; as another
user, ``chmod 0500`` does. A file where a directory should be needs nothing special.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hypermesh.cli.main import main
from tests.conftest import HEADER, documents, network

PEER = (
    f"{HEADER}kind: Peer\nmetadata: {{name: far}}\nspec:\n  network: demo\n"
    "  identity: hm1vl6i67ugvkxr4abg7em5bkgjpr674ddzijip464ahatw4ldj6wua\n"
    "  address: 192.0.2.10:443\n"
)

COMMANDS = [
    ["apply", "-f", "{manifest}"],
    ["up", "-f", "{manifest}"],
    ["down"],
    ["delete", "peer", "far"],
    ["controller", "suspend"],
]


def _run(state: Path, args: list[str], manifest: Path) -> int:
    argv = ["--state", str(state), *(a.format(manifest=manifest) for a in args)]
    return main(argv)


def _writable(directory: Path) -> bool:
    probe = directory / ".probe"
    try:
        probe.write_text("x")
    except OSError:
        return False
    probe.unlink()
    return True


def _run_quietly(*command: str) -> bool:
    if shutil.which(command[0]) is None:
        return False
    done = subprocess.run(command, capture_output=True, timeout=30, check=False)
    return done.returncode == 0


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[str]:
    """Make ``directory`` read-only for this process, whoever it runs as; yields how."""
    if os.geteuid() != 0:
        directory.chmod(0o500)
        try:
            yield "chmod 0500"
        finally:
            directory.chmod(0o700)
        return
    if _run_quietly("mount", "--bind", str(directory), str(directory)):
        try:
            if not _run_quietly("mount", "-o", "remount,ro,bind", str(directory)):
                pytest.fail("could not remount the bind mount read-only")
            yield "read-only bind mount"
        finally:
            _run_quietly("umount", str(directory))
        return
    if _run_quietly("chattr", "+i", str(directory)):
        try:
            yield "chattr +i"
        finally:
            _run_quietly("chattr", "-i", str(directory))
        return
    pytest.skip("as root without mount or chattr +i, no directory can be made read-only")


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "net.yaml"
    path.write_text(documents(network("demo"), PEER))
    return path


def _assert_clear(err: str, directory: Path, why: str) -> None:
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: ") and str(directory) in line and why in line, err


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(c[:2]) for c in COMMANDS])
def test_a_file_where_the_state_directory_goes(
    args: list[str], tmp_path: Path, manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    if args[0] in ("down", "delete") or args[:2] == ["controller", "suspend"]:
        # Commands that need an existing state find none there, and say so plainly.
        assert _run(blocker / "state", args, manifest) in (0, 2)
        assert "Traceback" not in capsys.readouterr().err
        assert blocker.read_text() == "not a directory\n"
        return
    assert _run(blocker / "state", args, manifest) == 2
    _assert_clear(capsys.readouterr().err, blocker / "state", f"{blocker} is a file")
    assert _run(blocker, args, manifest) == 2
    _assert_clear(capsys.readouterr().err, blocker, "is a file, not a directory")
    assert blocker.read_text() == "not a directory\n"


def test_a_read_only_state_directory(
    tmp_path: Path, manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    assert _run(state, ["apply", "-f", "{manifest}"], manifest) == 0
    capsys.readouterr()
    before = {p: p.stat().st_mtime_ns for p in state.rglob("*")}
    with read_only(state) as how:
        assert not _writable(state), how
        for args in COMMANDS:
            code = _run(state, args, manifest)
            err = capsys.readouterr().err
            assert code == 2, (how, args, err)
            _assert_clear(err, state, "not writable")
        # A new state below it cannot be made either.
        assert _run(state / "sub", ["apply", "-f", "{manifest}"], manifest) == 2
        _assert_clear(capsys.readouterr().err, state / "sub", "cannot be made")
    assert {p: p.stat().st_mtime_ns for p in state.rglob("*")} == before
    # Writable again: it works again.
    assert _run(state, ["apply", "-f", "{manifest}"], manifest) == 0
