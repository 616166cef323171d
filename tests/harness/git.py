"""Test and benchmark helpers: ``git`` run in a test's repository, as a throwaway author; the
package of an earlier revision, for a benchmark to run it beside this one."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path


def git(cwd: Path, *args: str) -> str:
    """Run ``git ARGS`` in ``cwd``; its standard output, stripped. Raises on failure."""
    result = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout.strip()


def archived_package(root: Path, rev: str, into: Path) -> Path:
    """The package of ``rev`` of the repository at ``root`` (``git archive`` of the controller
    and the schemas, unpacked into ``into``): the folder to put first on ``PYTHONPATH`` so
    that the code before a change runs in the same invocation as this one."""
    data = subprocess.run(
        ["git", "-C", str(root), "archive", "--format=tar", rev, "controller", "schemas"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into / "controller"
