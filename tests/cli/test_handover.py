"""``hmctl apply`` while a loop (``hmctl up``, ``controller run``) holds the state
(``cli.handover``): handed to the loop when it applies the same files, waiting until the loop has
applied that revision or found it invalid; refused, saying what the loop applies and what to do,
for other files, standard input or a suspended loop. The loop is played by the test, writing the
status a loop writes into a real state store; the holder's pid is this live process."""

from __future__ import annotations

import argparse
import os
import threading
from pathlib import Path

import pytest

from hypermesh.cli.handover import hand_to_loop
from hypermesh.errors import LockHeldError
from hypermesh.reconcile.gitops import LoopStatus
from hypermesh.reconcile.source import open_source
from hypermesh.store import StateStore
from tests.conftest import documents, network, node

HOLDER = {"command": "hmctl up", "pid": os.getpid()}


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore.open(tmp_path / "state")


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "net.yaml"
    path.write_text(documents(network("demo"), node("a")))
    return path


def loop_status(store: StateStore, watched: Path, **fields: object) -> None:
    status = LoopStatus(source={"type": "folder", "paths": [str(watched.resolve())]}, interval=5)
    store.set_controller_status({**status.to_json(), **fields})


def args(*files: Path | str, timeout: float = 10.0) -> argparse.Namespace:
    return argparse.Namespace(files=[str(f) for f in files], timeout=timeout)


def reported(store: StateStore) -> int:
    return 7  # what the apply's own report would return, passed through


def test_an_edit_is_handed_to_the_loop_and_waited_for(
    store: StateStore, manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    revision = open_source([str(manifest)]).snapshot().revision
    loop_status(store, manifest, lastAppliedRevision="sha256:older")
    later = threading.Timer(0.5, lambda: loop_status(store, manifest, lastAppliedRevision=revision))
    later.start()
    try:
        assert hand_to_loop(args(manifest), store, HOLDER, reported) == 7
    finally:
        later.cancel()
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"handed to hmctl up (pid {os.getpid()}), which applies these files: waiting for "
        f"revision {revision[:19]}",
        f"applied revision {revision[:19]}",
    ]


def test_manifests_the_loop_found_invalid_are_named(
    store: StateStore, manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    revision = open_source([str(manifest)]).snapshot().revision
    problem = f"{manifest}:3:1: Node/a: spec.colour: unknown field 'colour'"
    loop_status(store, manifest, lastAttemptedRevision=revision, problems=[problem])
    assert hand_to_loop(args(manifest), store, HOLDER, reported) == 2
    assert capsys.readouterr().out.splitlines()[-1] == problem


def test_manifests_applied_already_are_reported_at_once(
    store: StateStore, manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    revision = open_source([str(manifest)]).snapshot().revision
    loop_status(store, manifest, lastAppliedRevision=revision)
    assert hand_to_loop(args(manifest, timeout=0.0), store, HOLDER, reported) == 7
    assert "already applied these manifests" in capsys.readouterr().out


def test_other_files_or_stdin_are_refused_with_what_to_do(
    store: StateStore, manifest: Path, tmp_path: Path
) -> None:
    loop_status(store, manifest)
    other = tmp_path / "other.yaml"
    other.write_text(manifest.read_text())
    for given in (other, "-"):
        with pytest.raises(LockHeldError) as refused:
            hand_to_loop(args(given), store, HOLDER, reported)
        assert str(refused.value) == (
            f"hmctl up (pid {os.getpid()}) holds this state and applies {manifest.resolve()}: "
            "edit those files (it applies a change within 5s), or stop it (hmctl down) and "
            "apply again"
        )


def test_a_suspended_loop_or_another_holder_is_not_handed_anything(
    store: StateStore, manifest: Path
) -> None:
    loop_status(store, manifest)
    store.set_suspended(True, "maintenance")
    with pytest.raises(LockHeldError, match="is suspended: hmctl controller resume"):
        hand_to_loop(args(manifest), store, HOLDER, reported)
    for holder in ({"command": "hmctl apply", "pid": os.getpid()}, None):
        with pytest.raises(LockHeldError) as refused:
            hand_to_loop(args(manifest), store, holder, reported)
        assert str(refused.value) == ""  # the caller says who holds the lock, as before
