"""Where imports come from: a local folder or file, or a git repository pinned in nexus.lock.

``import "lib" as lib`` reads ``lib.nx``, ``lib`` (a file) or ``lib/main.nx`` beside the
importing file. ``import git "URL" rev "COMMIT" as lib`` reads ``main.nx`` at that commit of
that repository; the commit must be a full hash, and ``nexus.lock`` (beside the program) must
hold the content hash of the module's files at it: a mismatch is an error, so a rewritten
history or a different repository behind the same URL is noticed. ``nexus lock`` writes the
hashes. Repositories are kept as bare clones under ``.nexus/git/`` beside the program; reading a
module is ``git archive`` of the commit, never a checkout.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from hypermesh.nexus import ast
from hypermesh.nexus.compiler import Source
from hypermesh.nexus.errors import NexusError, Position, Problem

__all__ = ["LOCK_FILE", "Lock", "ModuleResolver", "content_hash", "write_lock"]

LOCK_FILE = "nexus.lock"
LOCK_VERSION = 1
MODULE_MAIN = "main.nx"
COMMIT = re.compile(r"[0-9a-f]{40}")
GIT_PREFIX = "git+"


def content_hash(files: dict[str, bytes]) -> str:
    """``sha256:`` of every ``.nx`` file of a module: path, NUL, length, NUL, bytes; by path."""
    digest = hashlib.sha256()
    for path in sorted(files):
        if not path.endswith(".nx"):
            continue
        data = files[path]
        digest.update(f"{path}\0{len(data)}\0".encode())
        digest.update(data)
    return "sha256:" + digest.hexdigest()


@dataclass(slots=True)
class Lock:
    """nexus.lock: for each git import (``URL@COMMIT``), the content hash of its files."""

    path: Path
    modules: dict[str, dict[str, str]] = field(default_factory=dict)
    exists: bool = False

    @classmethod
    def read(cls, path: Path) -> Lock:
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise NexusError(
                [Problem(Position(str(path)), f"cannot read lock file: {exc}")]
            ) from None
        if not isinstance(data, dict) or data.get("version") != LOCK_VERSION:
            raise NexusError(
                [Problem(Position(str(path)), f"not a nexus.lock of version {LOCK_VERSION}")]
            )
        modules = data.get("modules", {})
        return cls(path, {str(k): dict(v) for k, v in modules.items()}, exists=True)

    def text(self) -> str:
        body = {"version": LOCK_VERSION, "modules": dict(sorted(self.modules.items()))}
        return json.dumps(body, indent=2, sort_keys=False) + "\n"


def write_lock(lock: Lock) -> None:
    lock.path.write_text(lock.text(), encoding="utf-8")


@dataclass(frozen=True, slots=True)
class _GitTree:
    url: str
    rev: str
    files: dict[str, bytes]


class ModuleResolver:
    """Resolves imports for one program; with ``locking``, records git hashes instead of
    checking them (``nexus lock``)."""

    def __init__(self, root: Path, *, locking: bool = False, git: str = "git") -> None:
        self.root = root
        self.locking = locking
        self.git = git
        self.lock = Lock(root / LOCK_FILE)
        self.lock_error: NexusError | None = None
        if not locking:
            try:
                self.lock = Lock.read(root / LOCK_FILE)
            except NexusError as exc:
                self.lock_error = exc
        self.trees: dict[tuple[str, str], _GitTree] = {}
        self.failures: list[Problem] = []
        """Every import that could not be resolved (``nexus lock`` reports them)."""

    @classmethod
    def beside(cls, file: str, *, locking: bool = False) -> ModuleResolver:
        return cls(Path(file).resolve().parent, locking=locking)

    def resolve(self, stmt: ast.Import, importer: Source) -> Source:
        try:
            return self._resolve(stmt, importer)
        except NexusError as exc:
            self.failures.extend(exc.problems)
            raise

    def _resolve(self, stmt: ast.Import, importer: Source) -> Source:
        def fail(message: str) -> NexusError:
            position = Position(importer.file, stmt.span.line, stmt.span.column)
            return NexusError([Problem(position, message)])

        if stmt.git:
            return self._git(stmt, fail)
        if importer.key.startswith(GIT_PREFIX):
            return self._inside_git(stmt, importer, fail)
        base = Path(importer.file).resolve().parent if importer.file != "<string>" else self.root
        target = (base / stmt.path).resolve()
        for candidate in (target.with_name(target.name + ".nx"), target, target / MODULE_MAIN):
            if candidate.is_file():
                try:
                    text = candidate.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise fail(f"cannot read module {stmt.path!r}: {exc}") from None
                return Source(str(candidate), _display(candidate), text)
        raise fail(
            f"no module {stmt.path!r} (looked for {stmt.path}.nx, {stmt.path} and "
            f"{stmt.path}/{MODULE_MAIN} beside {_display(base)})"
        )

    def _git(self, stmt: ast.Import, fail: Any) -> Source:
        if not COMMIT.fullmatch(stmt.rev):
            raise fail(
                f"rev {stmt.rev!r} is not a full commit hash (40 hex digits): branches and "
                "tags move, a lock pins a commit"
            )
        if self.lock_error is not None:
            raise self.lock_error
        key = f"{stmt.path}@{stmt.rev}"
        entry = self.lock.modules.get(key)
        if entry is None and not self.locking:
            raise fail(f"git module {key} is not in {LOCK_FILE}; run `nexus lock` to pin its hash")
        tree = self._tree(stmt.path, stmt.rev, fail)
        digest = content_hash(tree.files)
        if self.locking:
            self.lock.modules[key] = {"url": stmt.path, "rev": stmt.rev, "hash": digest}
        elif entry is not None and entry.get("hash") != digest:
            raise fail(
                f"git module {key} has hash {digest}, but {LOCK_FILE} pins "
                f"{entry.get('hash')}; if the change is intended, run `nexus lock`"
            )
        return self._git_source(tree, MODULE_MAIN, fail)

    def _git_source(self, tree: _GitTree, path: str, fail: Any) -> Source:
        data = tree.files.get(path)
        if data is None:
            raise fail(f"git module {tree.url}@{tree.rev[:12]} has no {path}")
        label = f"{tree.url}@{tree.rev[:12]}/{path}"
        return Source(f"{GIT_PREFIX}{tree.url}@{tree.rev}/{path}", label, data.decode("utf-8"))

    def _inside_git(self, stmt: ast.Import, importer: Source, fail: Any) -> Source:
        match = re.fullmatch(r"(.*)@([0-9a-f]{40})/(.*)", importer.key[len(GIT_PREFIX) :])
        assert match is not None
        url, rev, current = match.groups()
        tree = self.trees[(url, rev)]
        base = PurePosixPath(current).parent
        joined = _normal(base / stmt.path)
        if joined is None:
            raise fail(f"import {stmt.path!r} leaves the git module it is in")
        for candidate in (f"{joined}.nx", joined, f"{joined}/{MODULE_MAIN}"):
            if candidate in tree.files:
                return self._git_source(tree, candidate, fail)
        raise fail(f"no module {stmt.path!r} in git module {url}@{rev[:12]}")

    def _tree(self, url: str, rev: str, fail: Any) -> _GitTree:
        cached = self.trees.get((url, rev))
        if cached is not None:
            return cached
        store = self.root / ".nexus" / "git" / hashlib.sha256(url.encode()).hexdigest()[:24]
        if not self._has(store, rev):
            if not store.exists():
                store.parent.mkdir(parents=True, exist_ok=True)
                self._run(["clone", "--quiet", "--bare", url, str(store)], fail, None)
            else:
                self._run(
                    [
                        "fetch",
                        "--quiet",
                        url,
                        "+refs/heads/*:refs/heads/*",
                        "+refs/tags/*:refs/tags/*",
                    ],
                    fail,
                    store,
                )
            if not self._has(store, rev):
                raise fail(f"commit {rev} is not in {url}")
        archive = self._run(["archive", "--format=tar", rev], fail, store)
        files: dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
            for member in tar.getmembers():
                if member.isfile():
                    extracted = tar.extractfile(member)
                    if extracted is not None:
                        files[member.name] = extracted.read()
        tree = _GitTree(url, rev, files)
        self.trees[(url, rev)] = tree
        return tree

    def _has(self, store: Path, rev: str) -> bool:
        if not store.exists():
            return False
        done = subprocess.run(
            [self.git, "--git-dir", str(store), "cat-file", "-e", f"{rev}^{{commit}}"],
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def _run(self, args: list[str], fail: Any, store: Path | None) -> bytes:
        command = [self.git, *(["--git-dir", str(store)] if store is not None else []), *args]
        try:
            done = subprocess.run(command, capture_output=True, check=False, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise fail(f"git failed: {exc}") from None
        if done.returncode != 0:
            message = done.stderr.decode(errors="replace").strip().splitlines()
            raise fail(f"git {args[0]} failed: {message[-1] if message else done.returncode}")
        return done.stdout


def _normal(path: PurePosixPath) -> str | None:
    parts: list[str] = []
    for part in path.parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
