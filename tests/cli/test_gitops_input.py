"""A GitOps controller reading a repository meets manifests that cannot be loaded (a recursive
YAML anchor, nesting too deep, a port out of range): each revision is reported invalid with
FILE:LINE:COL, the loop keeps running on the last good revision, and the state store does not
change. No node process is needed: the manifests declare a Network and a Peer."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import HEADER, Hmctl, documents, network, wait_for
from tests.harness.git import git

PEER = (
    f"{HEADER}kind: Peer\nmetadata: {{name: far}}\nspec:\n  network: demo\n"
    "  identity: hm1vl6i67ugvkxr4abg7em5bkgjpr674ddzijip464ahatw4ldj6wua\n"
    "  address: 192.0.2.10:443\n"
)

BROKEN = {
    # file -> (its content, what `controller status` must say: where, and the problem)
    "mapping.yaml": (
        f"{HEADER}kind: Peer\nmetadata: {{name: x}}\nspec: &a {{network: *a}}\n",
        "mapping.yaml:4:11: recursive alias",
    ),
    "list.yaml": ("&a [*a]\n", "list.yaml:1:1: recursive alias"),
    "nested.yaml": (
        f"{HEADER}kind: Peer\nmetadata: &m\n  name: x\n  labels: {{l: [{{m: *m}}]}}\nspec: {{}}\n",
        "nested.yaml:5:17: recursive alias",
    ),
    "deep.yaml": (
        f"{HEADER}kind: Peer\nmetadata: {{name: x}}\nspec: {'[' * 80}{']' * 80}\n",
        "deep.yaml:4:",
    ),
    "port.yaml": (
        PEER.replace("far", "near").replace("192.0.2.10:443", "192.0.2.10:65536"),
        "port.yaml:7:3: Peer/near: spec.address: '192.0.2.10:65536': port 65536 is out of range",
    ),
}


def resources(state: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(state / "state.db") as conn:
        return sorted(conn.execute("SELECT * FROM resources").fetchall(), key=repr)


def status(hmctl: Hmctl) -> dict[str, Any]:
    result = hmctl("controller", "status", "-o", "json")
    assert result.returncode == 0, result.stderr
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def test_a_repository_with_unloadable_manifests_is_reported_not_applied(
    hmctl: Hmctl, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "net.yaml").write_text(documents(network("demo"), PEER))
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "good")

    process = hmctl.popen("controller", "run", "-f", str(repo), "--interval", "0.3s")
    lines: list[str] = []
    assert process.stdout is not None
    stdout = process.stdout
    reader = threading.Thread(target=lambda: lines.extend(stdout), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("reconciling every" in x for x in lines), timeout=120)
        good = status(hmctl)["status"]["lastAppliedRevision"]
        before = resources(hmctl.state)
        for name, (content, _) in BROKEN.items():
            (repo / name).write_text(content)
        # The controller sees the files before they are committed (``+dirty``), then the
        # commit of the same files: the report must follow the revision, not only the content.
        wait_for(
            lambda: status(hmctl)["status"]["lastAttemptedRevision"].endswith("+dirty"),
            timeout=120,
        )
        git(repo, "add", ".")
        git(repo, "commit", "-q", "-m", "bad")
        commit = git(repo, "rev-parse", "HEAD")

        def reported() -> dict[str, Any] | None:
            body = status(hmctl)["status"]
            attempted = body["lastAttemptedRevision"]
            return body if attempted.endswith(commit) and body["problems"] else None

        try:
            body = wait_for(reported, timeout=120)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{status(hmctl)}\n{''.join(lines)}") from None
        assert isinstance(body, dict)
        for _, expected in BROKEN.values():
            found = [p for p in body["problems"] if p.startswith(str(repo / expected))]
            assert found, (expected, body["problems"])
        assert body["lastAppliedRevision"] == good  # the last good revision stays in force
        (stalled,) = [c for c in body["conditions"] if c["type"] == "Stalled"]
        assert stalled["status"] == "True" and stalled["reason"] == "ValidationFailed"
        assert process.poll() is None, "".join(lines)  # still running
        assert resources(hmctl.state) == before  # nothing of it applied

        # Fixed: the next revision is applied again.
        git(repo, "rm", "-q", *BROKEN)
        git(repo, "commit", "-q", "-m", "fix")
        fixed = git(repo, "rev-parse", "HEAD")
        wait_for(
            lambda: status(hmctl)["status"]["lastAppliedRevision"].endswith(fixed), timeout=120
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        reader.join(timeout=5)
    output = "".join(lines)
    assert process.returncode == 0, output
    assert "Traceback" not in output and "RecursionError" not in output


@pytest.fixture(autouse=True)
def _needs_git() -> None:
    try:
        subprocess.run(["git", "--version"], capture_output=True, check=True, timeout=10)
    except (OSError, subprocess.CalledProcessError):
        pytest.fail("git is needed for the GitOps tests", pytrace=False)
