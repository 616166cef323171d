"""What ``hmctl controller run`` prints of what its loop tells: one line a pass, and a pass
that says the same as the last one is quiet unless it changed something (or ``--verbose``)."""

from __future__ import annotations

import io

import pytest

from hypermesh.cli.commands import _LoopPrinter, _ProgressPrinter
from hypermesh.reconcile.controller import PassReport
from hypermesh.reconcile.gitops import PassOutcome

REVISION = "git:main@0123456789abcdef0123"


def report(
    *, changes: tuple[str, ...] = (), failing: dict[str, str] | None = None, refused: str = ""
) -> PassReport:
    outcome = PassOutcome(
        revision=REVISION,
        converged=not failing and not refused,
        seconds=0.25,
        changes=changes,
        failing=failing or {},
        refused=refused,
    )
    return PassReport(outcome, invalid=False)


def printer(*, verbose: bool = False) -> _LoopPrinter:
    return _LoopPrinter(_ProgressPrinter(io.StringIO()), verbose=verbose)


def test_a_pass_that_says_the_same_is_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    loop = printer()
    for _ in range(3):
        loop.pass_done(report())
    failing = {"Node/a (a.yaml:1:1)": "port busy"}
    loop.pass_done(report(failing=failing))
    loop.pass_done(report(failing=failing))
    loop.pass_done(report(changes=("created Node/b",)))
    loop.pass_done(report(changes=("created Node/b",)))
    assert capsys.readouterr().out.splitlines() == [
        "pass git:main@0123456789ab (0.25s): no changes",
        "pass git:main@0123456789ab (0.25s): no changes; "
        "not converged: Node/a (a.yaml:1:1): port busy",
        "pass git:main@0123456789ab (0.25s): created Node/b",
        "pass git:main@0123456789ab (0.25s): created Node/b",
    ]


def test_verbose_prints_every_pass(capsys: pytest.CaptureFixture[str]) -> None:
    loop = printer(verbose=True)
    loop.pass_done(report())
    loop.pass_done(report())
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_a_refused_prune_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    printer().pass_done(report(refused="refusing to prune 2 of 3 resources"))
    assert capsys.readouterr().out == (
        "pass git:main@0123456789ab (0.25s): no changes; "
        "prune refused: refusing to prune 2 of 3 resources\n"
    )


def test_an_invalid_revision_names_its_problems_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    printer().revision_invalid("git:main@feedfacefeedfacefeed", "", ["bad.yaml:3:1: no port"])
    err = capsys.readouterr().err
    assert err.startswith("bad.yaml:3:1: no port\n")
    assert "revision git:main@feedfacefeed is invalid; keeping nothing" in err


def test_a_suspended_loop_tells_its_waiting_changes_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    loop = printer()
    loop.observed(REVISION, ("create Node/b",))
    loop.observed(REVISION, ("create Node/b",))
    loop.observed(REVISION, ())
    assert capsys.readouterr().out.splitlines() == [
        "suspended, git:main@0123456789ab: 1 change(s) waiting: create Node/b",
        "suspended, git:main@0123456789ab: no drift",
    ]
