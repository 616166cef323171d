"""Shared fixtures: manifests on disk, an isolated state directory, hmctl in a subprocess."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.harness.node_process import NodeStarter

settings.register_profile("hypermesh", deadline=None)
"""Hypothesis's 200 ms deadline per example is a timing assertion: on a loaded machine (CI beside
other work) a pure function's example took 268 ms once. Tests here assert no timing."""
settings.load_profile("hypermesh")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
HEADER = "apiVersion: hypermesh.online/v1alpha1\n"


PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
"""The real PostgreSQL server of this machine (trust auth, database ``test``)."""
SKIP = "skip"
"""The value of an ``HM_TEST_<NEED>`` variable that skips the tests needing it, knowingly."""


def skipped_on_request(need: str) -> bool:
    """Whether ``HM_TEST_<NEED>=skip`` asks to skip the tests that need ``need`` (the one way
    such tests skip: when what they need is missing otherwise, they fail)."""
    return os.environ.get(f"HM_TEST_{need.upper()}", "") == SKIP


@functools.cache
def _postgres_problem(url: str) -> str | None:
    """Why the server at ``url`` cannot be used, or None when it answers (asked once)."""
    try:
        import psycopg
        from sqlalchemy.engine import make_url

        conninfo = make_url(url).set(drivername="postgresql")
        psycopg.connect(conninfo.render_as_string(hide_password=False), connect_timeout=3).close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".strip()
    return None


@functools.cache
def _per_worker(url: str) -> str:
    """``url`` for this test process: under pytest-xdist each worker gets a database of its
    own (``test_gw0``, …, created on first use), since the tests empty the tables they use."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = f"{base.database}_{worker}"
    conninfo = base.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=3) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone() is None:
                conn.execute(f'CREATE DATABASE "{name}"')
    except Exception:
        return url  # _postgres_problem says what is wrong with the server
    return base.set(database=name).render_as_string(hide_password=False)


def require_postgres() -> str:
    """The test database URL (``HM_TEST_POSTGRES``, else the local server).

    The tests that use it fail when the server does not answer; ``HM_TEST_POSTGRES=skip`` skips
    them instead, on purpose. Nothing skips silently: CI (``.ci/run``) starts the server and
    fails before the tests when it cannot.
    """
    if skipped_on_request("postgres"):
        pytest.skip("HM_TEST_POSTGRES=skip: the PostgreSQL tests are skipped on request")
    url = _per_worker(os.environ.get("HM_TEST_POSTGRES") or PG_DEFAULT)
    problem = _postgres_problem(url)
    if problem is not None:
        pytest.fail(
            f"PostgreSQL is not reachable at {url}: {problem}. Start it (.ci/run does), point "
            "HM_TEST_POSTGRES at a server, or set HM_TEST_POSTGRES=skip to skip these tests",
            pytrace=False,
        )
    return url


def manifest(text: str) -> str:
    """Dedent a manifest written inline in a test."""
    return textwrap.dedent(text).lstrip("\n")


def network(name: str = "demo", mode: str = "private") -> str:
    return f"{HEADER}kind: Network\nmetadata: {{name: {name}}}\nspec: {{mode: {mode}}}\n"


def node(name: str, network: str = "demo", listen: str = "127.0.0.1:0", **extra: str) -> str:
    fields = "".join(f"  {k}: {v}\n" for k, v in extra.items())
    return (
        f"{HEADER}kind: Node\nmetadata: {{name: {name}}}\n"
        f'spec:\n  network: {network}\n  listen: "{listen}"\n{fields}'
    )


def documents(*docs: str) -> str:
    return "---\n".join(docs)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


class Hmctl:
    """Runs the real ``hmctl`` in a subprocess against one state directory."""

    def __init__(self, state: Path, cwd: Path) -> None:
        self.state = state
        self.cwd = cwd
        self.env = {**os.environ, "HM_STATE": str(state), "NO_COLOR": "1"}

    def __call__(
        self, *args: str, input: bytes | None = None, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hypermesh.cli.main", *args],
            cwd=self.cwd,
            env=self.env,
            input=input.decode() if input is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "hypermesh.cli.main", *args],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[NodeStarter]:
    """Node processes (:mod:`tests.harness.node_process`) stopped at teardown whatever happened."""
    starter = NodeStarter(tmp_path)
    try:
        yield starter
    finally:
        starter.stop_all()


@pytest.fixture
def hmctl(state: Path, tmp_path: Path) -> Iterator[Hmctl]:
    runner = Hmctl(state, tmp_path)
    yield runner
    # Never leave a node behind, whatever the test did.
    if (state / "state.db").exists():
        runner("down", timeout=120)


def node_processes(state: Path) -> set[int]:
    """Pids of every live node process whose config lives under ``state``."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat.split(") ", 1)[-1].startswith("Z"):
            continue  # a zombie is already dead
        if b"hypermesh.node" in argv and any(str(state).encode() in a for a in argv):
            found.add(int(entry.name))
    return found


def wait_for(predicate: object, timeout: float = 30.0, interval: float = 0.1) -> object:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    import time

    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)
