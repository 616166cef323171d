"""Where the controller loop gets its manifests, and which revision of them it holds.

The loop (``hypermesh.reconcile.controller``) sees a :class:`ManifestSource`: what it holds now
(a :class:`Snapshot`), how to describe it for ``hmctl controller status``, how to pull it, and
when it may have changed.

A *folder source* is the files of ``-f`` (a folder's ``*.yaml``/``*.yml``, recursively, as the
loader reads them); its revision is a digest of their names and bytes. When every ``-f`` path
lies in one git work tree, it is a *git source*: the revision is ``git:BRANCH@COMMIT`` (with
``+dirty`` when the manifests there differ from the commit), read with ``git`` itself, and
``--git-pull`` runs ``git pull --ff-only`` (bounded by a timeout, never prompting) before a
pass. A pull that fails leaves the work tree as it was: the last good files stay in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from watchfiles import Change, awatch

from hypermesh.model.loader import YAML_SUFFIXES, yaml_files
from hypermesh.reconcile.gitops import content_digest, git_revision

GIT_TIMEOUT = 10.0
"""Seconds for a local git command (rev-parse, status)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the source holds now."""

    revision: str
    """``sha256:…`` for a folder, ``git:BRANCH@COMMIT[+dirty]`` for a git checkout."""
    digest: str
    """``sha256:…`` of the manifest files' names and bytes, whatever the source: the loop
    reloads the manifests when it changes."""


class ManifestSource(Protocol):
    """Where the loop's manifests come from. ``snapshot``, ``describe`` and ``pull`` block
    (they may run git): the loop calls them in a thread."""

    kind: str
    """``folder`` or ``git``, as ``hmctl controller status`` names it."""

    def describe(self) -> dict[str, Any]:
        """What the source is, as the loop's status records it."""
        ...

    def snapshot(self) -> Snapshot:
        """The revision and content digest of the manifests now."""
        ...

    def pull(self, timeout: float) -> str | None:
        """Bring the manifests up to date; None when that worked, else why not (one line)."""
        ...

    def changes(self, stop: asyncio.Event) -> AsyncIterator[None]:
        """Yields whenever the manifests may have changed, until ``stop`` is set: the loop
        wakes before its interval is over."""
        ...


def manifest_files(paths: Sequence[str]) -> list[tuple[str, Path]]:
    """The files the loader reads for ``paths``, each with the name it has in the digest
    (relative to its ``-f`` path, so that moving the folder keeps the revision)."""
    out: list[tuple[str, Path]] = []
    for index, name in enumerate(paths):
        path = Path(name)
        prefix = f"{index}:" if len(paths) > 1 else ""
        if path.is_dir():
            out += [(prefix + f.relative_to(path).as_posix(), f) for f in yaml_files(path)]
        elif path.is_file():
            out.append((prefix + path.name, path))
    return out


def folder_digest(paths: Sequence[str]) -> str:
    """The content digest of the manifests under ``paths`` (unreadable files count as empty)."""
    entries: list[tuple[str, bytes]] = []
    for name, file in manifest_files(paths):
        try:
            entries.append((name, file.read_bytes()))
        except OSError:
            entries.append((name, b""))
    return content_digest(entries)


def public_url(url: str) -> str:
    """A remote's URL without credentials (``https://user:token@host/x`` → ``https://host/x``)."""
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return url


class FolderSource:
    """The files of ``-f`` as they are on disk."""

    kind = "folder"

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = [str(Path(p).resolve()) for p in paths]

    def describe(self) -> dict[str, Any]:
        return {"type": self.kind, "paths": self.paths}

    def snapshot(self) -> Snapshot:
        digest = folder_digest(self.paths)
        return Snapshot(digest, digest)

    def pull(self, timeout: float) -> str | None:
        """Nothing to pull; never fails."""
        return None

    async def changes(self, stop: asyncio.Event) -> AsyncIterator[None]:
        """A manifest file under the paths was written, added or removed."""
        if not self.paths:
            return
        async for _ in awatch(
            *self.paths, stop_event=stop, debounce=200, step=50, watch_filter=_manifest_change
        ):
            yield None


class FixedSource:
    """Manifests read once (from standard input): they never change and there is nothing to
    pull. Described as a folder source without paths."""

    kind = "folder"

    def __init__(self, digest: str) -> None:
        self.digest = digest

    def describe(self) -> dict[str, Any]:
        return {"type": self.kind, "paths": []}

    def snapshot(self) -> Snapshot:
        return Snapshot(self.digest, self.digest)

    def pull(self, timeout: float) -> str | None:
        return None

    async def changes(self, stop: asyncio.Event) -> AsyncIterator[None]:
        """Nothing ever changes."""
        return
        yield None


def _manifest_change(change: Change, path: str) -> bool:
    """What wakes the loop: a manifest file, not git's own files or an editor's."""
    return path.endswith(YAML_SUFFIXES) and "/.git/" not in path


class GitSource(FolderSource):
    """The files of ``-f`` in a git work tree at ``top``."""

    kind = "git"

    def __init__(self, paths: Sequence[str], top: Path) -> None:
        super().__init__(paths)
        self.top = top

    def _git(self, *args: str, timeout: float = GIT_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-C", str(self.top), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_git_env(),
            check=False,
        )

    def _out(self, *args: str) -> str:
        result = self._git(*args)
        return result.stdout.strip() if result.returncode == 0 else ""

    def branch(self) -> str:
        return self._out("symbolic-ref", "--short", "-q", "HEAD") or "HEAD"

    def remote(self, branch: str) -> str:
        name = self._out("config", f"branch.{branch}.remote") or "origin"
        url = self._out("remote", "get-url", name)
        return public_url(url) if url else ""

    def describe(self) -> dict[str, Any]:
        branch = self.branch()
        return {
            "type": self.kind,
            "path": str(self.top),
            "paths": self.paths,
            "remote": self.remote(branch),
            "branch": branch,
            "commit": self._out("rev-parse", "HEAD"),
        }

    def snapshot(self) -> Snapshot:
        digest = folder_digest(self.paths)
        commit = self._out("rev-parse", "HEAD")
        if not commit:  # no commit yet: only the files say what this is
            return Snapshot(digest, digest)
        status = self._git("status", "--porcelain", "--untracked-files=all", "--", *self.paths)
        dirty = any(
            not line.startswith("??") or line.rstrip().endswith(YAML_SUFFIXES)
            for line in status.stdout.splitlines()
            if line.strip()
        )
        return Snapshot(git_revision(self.branch(), commit, dirty), digest)

    def pull(self, timeout: float) -> str | None:
        """``git pull --ff-only``; None when it worked, else what went wrong (one line). On a
        timeout the whole process group of git is killed."""
        process = subprocess.Popen(
            ["git", "-C", str(self.top), "pull", "--ff-only", "--quiet"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_git_env(),
            start_new_session=True,
        )
        try:
            _, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            return f"git pull timed out after {timeout:g}s"
        if process.returncode == 0:
            return None
        lines = [line.strip() for line in err.splitlines() if line.strip()]
        fatal = [line for line in lines if line.startswith(("fatal:", "error:"))]
        return (fatal or lines or [f"git pull exited with {process.returncode}"])[0]


def _git_env() -> dict[str, str]:
    """Never prompt for credentials; the C locale so that messages are as documented."""
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


def open_source(paths: Sequence[str]) -> FolderSource:
    """A git source when every path lies in the same git work tree, else a folder source."""
    if not paths or "-" in paths or shutil.which("git") is None:
        return FolderSource([p for p in paths if p != "-"])
    tops: set[str] = set()
    for name in paths:
        path = Path(name).resolve()
        where = path if path.is_dir() else path.parent
        try:
            result = subprocess.run(
                ["git", "-C", str(where), "rev-parse", "--show-toplevel"],
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT,
                env=_git_env(),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return FolderSource(paths)
        if result.returncode != 0:
            return FolderSource(paths)
        tops.add(result.stdout.strip())
    if len(tops) != 1:
        return FolderSource(paths)
    return GitSource(paths, Path(tops.pop()))
