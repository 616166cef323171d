"""GitOps end to end: `hmctl controller run -f DIR --prune` keeps a folder, and a git checkout
pulled from a local bare repository, converged with real node processes on 127.0.0.1 — adds,
edits, deletes (prune), a killed node, suspend and resume, a broken manifest and its fix, and
what `hmctl controller status` says meanwhile."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import HEADER, Hmctl, network, node, node_processes, wait_for
from tests.e2e.conftest import items
from tests.harness.git import git

WAIT = 60.0


def status(hmctl: Hmctl) -> dict[str, Any]:
    result = hmctl("controller", "status", "-o", "json")
    assert result.returncode == 0, result.stderr
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def condition(body: dict[str, Any], type_: str) -> tuple[str, str, str]:
    (cond,) = [c for c in body["status"]["conditions"] if c["type"] == type_]
    return cond["status"], cond["reason"], cond["message"]


def running_node(hmctl: Hmctl, name: str) -> dict[str, Any] | None:
    item = items(hmctl, "nodes").get(name)
    if item is None:
        return None
    ready = [c for c in item["status"].get("conditions", []) if c["type"] == "Ready"]
    return item if ready and ready[0]["status"] == "True" else None


def applied_generation(item: dict[str, Any] | None) -> bool:
    """The node runs the spec its manifest declares now."""
    return bool(item) and item["status"].get("observedGeneration") == item["status"]["generation"]


@contextmanager
def loop(hmctl: Hmctl, *args: str) -> Iterator[list[str]]:
    """`hmctl controller run` in the background; yields its output lines as they come."""
    process = hmctl.popen("controller", "run", *args)
    lines: list[str] = []
    assert process.stdout is not None
    stdout = process.stdout

    def drain() -> None:
        for line in stdout:
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("reconciling every" in x for x in lines), timeout=WAIT)
        yield lines
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        reader.join(timeout=5)
    assert process.returncode == 0, "\n".join(lines)


def test_a_folder_is_kept_converged(hmctl: Hmctl, tmp_path: Path) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "network.yaml").write_text(network("demo"))
    for name in ("n1", "n2"):
        (folder / f"{name}.yaml").write_text(node(name))

    with loop(hmctl, "-f", str(folder), "--interval", "2s", "--prune") as output:
        first = status(hmctl)
        assert first["spec"]["source"] == {"type": "folder", "paths": [str(folder)]}
        assert first["status"]["running"]["pid"] > 0
        assert condition(first, "Ready")[:2] == ("True", "ReconciliationSucceeded")
        revision = first["status"]["lastAppliedRevision"]
        assert revision.startswith("sha256:")

        # (a) A new file: its node runs, and the new revision is the applied one.
        (folder / "n3.yaml").write_text(node("n3"))
        wait_for(lambda: running_node(hmctl, "n3"), timeout=WAIT)
        wait_for(lambda: status(hmctl)["status"]["lastAppliedRevision"] != revision, timeout=WAIT)

        # (b) An edit: the node is updated to it.
        (folder / "n3.yaml").write_text(node("n3", tags="[edge]"))
        wait_for(lambda: applied_generation(running_node(hmctl, "n3")), timeout=WAIT)
        assert running_node(hmctl, "n3")["spec"]["tags"] == ["edge"]  # type: ignore[index]

        # (d) Drift: a killed node is started again.
        victim = running_node(hmctl, "n1")["status"]["pid"]  # type: ignore[index]
        os.kill(victim, signal.SIGKILL)

        def restarted() -> bool:
            item = running_node(hmctl, "n1")
            return item is not None and item["status"].get("pid") not in (None, victim)

        wait_for(restarted, timeout=WAIT)

        # (c) A deleted file: its node is pruned.
        n3 = running_node(hmctl, "n3")["status"]["pid"]  # type: ignore[index]
        (folder / "n3.yaml").unlink()
        wait_for(lambda: "n3" not in items(hmctl, "nodes"), timeout=WAIT)
        assert n3 not in node_processes(hmctl.state)
        assert any("deleted Node/n3" in line for line in output)

        # (e) Suspended: an edit is seen, reported, and not applied; resumed: applied.
        n2 = running_node(hmctl, "n2")["status"]["pid"]  # type: ignore[index]
        suspended = hmctl("controller", "suspend", "--reason", "maintenance")
        assert suspended.returncode == 0, suspended.stderr
        (folder / "n2.yaml").write_text(node("n2", tags="[blue]"))

        def waiting() -> dict[str, Any] | None:
            body = status(hmctl)
            return body if body["status"]["pending"] else None

        body = wait_for(waiting, timeout=WAIT)
        assert isinstance(body, dict)
        assert body["spec"]["suspend"] is True and body["status"]["suspendReason"] == "maintenance"
        assert body["status"]["pending"] == ["update Node/n2 (tags)"]
        assert condition(body, "Reconciling")[:2] == ("False", "Suspended")
        text = hmctl("controller", "status").stdout
        assert "Suspended:       yes" in text and "maintenance" in text
        unchanged = items(hmctl, "nodes")["n2"]
        assert "tags" not in unchanged["spec"] and unchanged["status"]["pid"] == n2
        assert hmctl("controller", "resume").returncode == 0

        def tagged() -> bool:
            item = running_node(hmctl, "n2")
            return applied_generation(item) and item["spec"].get("tags") == ["blue"]  # type: ignore[index]

        wait_for(tagged, timeout=WAIT)
        assert status(hmctl)["spec"]["suspend"] is False

        # (g) A broken manifest: Stalled, Ready=False, file:line named; nothing touched.
        pids = {name: item["status"]["pid"] for name, item in items(hmctl, "nodes").items()}
        broken = folder / "n4.yaml"
        broken.write_text(
            f"{HEADER}kind: Node\nmetadata: {{name: n4}}\nspec:\n  network: demo\n  listen: 12\n"
        )

        def stalled() -> dict[str, Any] | None:
            body = status(hmctl)
            return body if condition(body, "Stalled")[0] == "True" else None

        body = wait_for(stalled, timeout=WAIT)
        assert isinstance(body, dict)
        ready, reason, message = condition(body, "Ready")
        assert (ready, reason) == ("False", "ValidationFailed")
        assert f"{broken}:6:3: Node/n4: spec.listen" in message
        good = body["status"]["lastAppliedRevision"]
        assert body["status"]["lastAttemptedRevision"] != good
        assert {n: i["status"]["pid"] for n, i in items(hmctl, "nodes").items()} == pids
        # The fix is applied, and everything is Ready again.
        broken.write_text(node("n4"))
        wait_for(lambda: running_node(hmctl, "n4"), timeout=WAIT)

        def recovered() -> bool:
            body = status(hmctl)
            return condition(body, "Ready")[0] == "True" and (
                body["status"]["lastAppliedRevision"] == body["status"]["lastAttemptedRevision"]
            )

        wait_for(recovered, timeout=WAIT)
        assert condition(status(hmctl), "Stalled")[0] == "False"

    # One line per pass that did something, with the revision and how long it took.
    assert any(line.startswith("pass sha256:") and "created Node/n3" in line for line in output)
    assert not status(hmctl)["status"]["running"]


def test_a_git_checkout_is_pulled_and_applied(hmctl: Hmctl, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "--bare", "-b", "main", str(remote))
    author = tmp_path / "author"
    git(tmp_path, "clone", str(remote), str(author))
    git(author, "checkout", "-b", "main")
    (author / "net").mkdir()
    (author / "net" / "network.yaml").write_text(network("demo"))
    (author / "net" / "g1.yaml").write_text(node("g1"))
    git(author, "add", ".")
    git(author, "commit", "-m", "g1")
    git(author, "push", "-u", "origin", "main")
    checkout = tmp_path / "checkout"
    git(tmp_path, "clone", str(remote), str(checkout))

    args = ("-f", str(checkout / "net"), "--interval", "2s", "--git-pull", "--pull-interval", "1s")
    with loop(hmctl, *args):
        assert running_node(hmctl, "g1")
        body = status(hmctl)
        first = git(author, "rev-parse", "HEAD")
        assert body["spec"]["source"]["type"] == "git"
        assert body["spec"]["source"]["remote"] == str(remote)
        assert body["spec"]["source"]["branch"] == "main"
        assert body["status"]["lastAppliedRevision"] == f"git:main@{first}"

        (author / "net" / "g2.yaml").write_text(node("g2"))
        git(author, "add", ".")
        git(author, "commit", "-m", "g2")
        git(author, "push")
        second = git(author, "rev-parse", "HEAD")
        wait_for(lambda: running_node(hmctl, "g2"), timeout=WAIT)

        def at_second() -> bool:
            return status(hmctl)["status"]["lastAppliedRevision"] == f"git:main@{second}"

        wait_for(at_second, timeout=WAIT)
        body = status(hmctl)
        assert condition(body, "Ready")[:2] == ("True", "ReconciliationSucceeded")
        assert condition(body, "SourceReady")[:2] == ("True", "Pulled")
        assert body["spec"]["source"]["commit"] == second
