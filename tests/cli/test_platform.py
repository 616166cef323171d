"""hmctl is Linux-only (flock, /proc, network namespaces): on any other system it says so in
one line and exits 2 before doing anything, rather than seeing every node as dead."""

from __future__ import annotations

import sys

import pytest

from hypermesh.cli.main import EXIT_ERROR, main


@pytest.mark.parametrize("platform", ["darwin", "win32", "freebsd14"])
def test_another_system_is_refused_in_one_line(
    platform: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "platform", platform)
    assert main(["get", "nodes"]) == EXIT_ERROR
    printed = capsys.readouterr()
    assert printed.out == ""
    lines = printed.err.splitlines()
    assert len(lines) == 1, printed.err
    assert "Linux only" in lines[0] and platform in lines[0]


def test_linux_runs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    assert main(["version"]) == 0
    assert "hmctl" in capsys.readouterr().out
