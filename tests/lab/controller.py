"""HyperMesh controllers on the hosts of a lab, converging one git repository of manifests.

``ManifestRepo(root, files)`` makes a bare repository (``root/manifests.git``) that every host
pulls from (the hosts share the file system, only their networks differ) and a working clone
the test commits to (``write``). ``HostController(host, repo, root)`` clones the repository for
one host and runs ``hmctl controller run -f CHECKOUT --git-pull`` in that host's namespace, with
its own state directory (``root/HOST/state``) and log (``root/HOST/controller.log``), for the
host's name (``--host NAME`` when this hmctl has the flag, and ``$HM_HOST`` always). ``stop()``
ends the controller and then ``hmctl down`` stops the nodes it started; the lab kills whatever
is left when it closes.
"""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.harness.git import git
from tests.lab.lab import Host, python_env

HMCTL = [sys.executable, "-m", "hypermesh.cli.main"]
"""hmctl, run by this interpreter (the venv's), so every namespace runs the same code."""
STARTED = "hmctl controller run: reconciling every"
"""What the controller prints once its first pass is done."""


@functools.cache
def host_flag_supported() -> bool:
    """Whether ``hmctl controller run`` takes ``--host`` (being added by issue 16)."""
    done = subprocess.run(
        [*HMCTL, "controller", "run", "--help"],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return "--host" in done.stdout


class ManifestRepo:
    """A bare git repository of manifests and the clone a test changes it through."""

    def __init__(self, root: Path, files: Mapping[str, str | None] | None = None) -> None:
        self.root = root
        self.bare = root / "manifests.git"
        self.work = root / "author"
        root.mkdir(parents=True, exist_ok=True)
        git(root, "init", "--quiet", "--bare", "--initial-branch=main", str(self.bare))
        git(root, "clone", "--quiet", str(self.bare), str(self.work))
        git(self.work, "checkout", "--quiet", "-B", "main")
        self.write(files or {"README": "manifests of a lab network\n"}, "the first manifests")

    @property
    def url(self) -> str:
        """Where hosts clone and pull from (a path: every namespace sees the same files)."""
        return str(self.bare)

    def write(self, files: Mapping[str, str | None], message: str = "change manifests") -> str:
        """Write ``files`` (relative path -> text; None deletes), commit and push; the commit."""
        for name, text in files.items():
            path = self.work / name
            if text is None:
                path.unlink(missing_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        git(self.work, "add", "--all", ".")
        git(self.work, "commit", "--quiet", "--allow-empty", "-m", message)
        git(self.work, "push", "--quiet", "origin", "main")
        return git(self.work, "rev-parse", "HEAD")

    def clone(self, dest: Path) -> Path:
        """A checkout of the repository at ``dest`` (for a host's controller to pull into)."""
        git(dest.parent, "clone", "--quiet", "--branch", "main", self.url, str(dest))
        return dest


class HostController:
    """``hmctl controller run --git-pull`` for one lab host (see the module's docstring)."""

    def __init__(
        self,
        host: Host,
        repo: ManifestRepo,
        root: Path,
        host_name: str | None = None,
        interval: str = "1s",
        pull_interval: str = "1s",
        prune: bool = True,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host
        self.repo = repo
        self.host_name = host.name if host_name is None else host_name
        self.folder = root / host.name
        self.state = self.folder / "state"
        self.checkout = self.folder / "checkout"
        self.log = self.folder / "controller.log"
        self.args = ["--interval", interval, "--git-pull", "--pull-interval", pull_interval]
        self.args += (["--prune"] if prune else []) + list(extra_args)
        self.extra_env = dict(env or {})
        self.process: subprocess.Popen[str] | None = None

    def env(self) -> dict[str, str]:
        """The environment of every hmctl run for this host: its state and its host name."""
        extra = {"HM_STATE": str(self.state), "HM_HOST": self.host_name, "NO_COLOR": "1"}
        return python_env({**extra, **self.extra_env})

    def start(self, wait: float = 60) -> HostController:
        """Clone the repository and start the controller in the host's namespace; wait (up to
        ``wait`` seconds; 0: not) until it says it is reconciling, its state store made (an
        ``hmctl get`` racing the store's creation would fail)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.checkout.exists():
            self.repo.clone(self.checkout)
        argv = [*HMCTL, "controller", "run", "-f", str(self.checkout), *self.args]
        if host_flag_supported():
            argv += ["--host", self.host_name]
        with self.log.open("a") as log:
            self.process = self.host.popen(argv, env=self.env(), stdout=log, stderr=log)
        if wait:
            self.wait_for_output(STARTED, timeout=wait)
        return self

    def hmctl(
        self, *args: str, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``hmctl ARGS`` in the host's namespace, with this host's state and name."""
        return self.host.run([*HMCTL, *args], env=self.env(), timeout=timeout, input=input)

    def python(self, code: str, timeout: float = 120, **values: Any) -> Any:
        """Run Python ``code`` in the host (this host's state and name in the environment,
        ``values`` as the JSON object ``ARGS``); what it printed last, as JSON. Fails with
        what it printed when it exits non-zero."""
        self.folder.mkdir(parents=True, exist_ok=True)
        prelude = "import json, os\nARGS = json.loads(os.environ['HM_LAB_ARGS'])\n"
        env = {**self.env(), "HM_LAB_ARGS": json.dumps(values)}
        done = self.host.run(
            [sys.executable, "-c", prelude + code], env=env, timeout=timeout, cwd=self.folder
        )
        assert done.returncode == 0, f"python in {self.host.name}:\n{done.stdout}{done.stderr}"
        return json.loads(done.stdout.strip().splitlines()[-1])

    def output(self) -> str:
        """The controller's log so far."""
        return self.log.read_text() if self.log.exists() else ""

    def wait_for_output(self, text: str, timeout: float = 60) -> None:
        """Wait until the log contains ``text``; fail with the log's tail otherwise."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"controller of {self.host.name} exited:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in {self.host.name}'s log:\n{self.tail()}")
            time.sleep(0.2)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def stop(self) -> None:
        """End the controller (SIGTERM, then SIGKILL), then stop the nodes it started."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if (self.state / "state.db").exists():
            self.hmctl("down", timeout=120)

    def __enter__(self) -> HostController:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
