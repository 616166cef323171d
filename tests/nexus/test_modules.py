"""Imports: local files and folders, and git repositories pinned by hash in nexus.lock.

Git tests use a bare repository in a temporary folder (no network): ``nexus lock`` records the
content hash; a changed lock, an unlocked import or a missing commit is an error at the import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hypermesh.nexus.cli import main
from hypermesh.nexus.compiler import compile_file
from hypermesh.nexus.modules import LOCK_FILE, ModuleResolver, content_hash, write_lock

NETWORK = 'network "demo" {\n  mode = "public"\n}\n'
LIB = """
let listen = "127.0.0.1:0"
def mirror(name) {
  node name {
    network = "demo"
    listen = listen
    roles = ["mirror"]
  }
}
"""


def git(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    """A bare repository holding a module (main.nx importing util.nx) and its first commit."""
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    (work / "main.nx").write_text('import "util" as util\n' + LIB + "let port = util.port\n")
    (work / "util.nx").write_text("let port = 4433\n")
    (work / "README.md").write_text("a module\n")
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "first", cwd=work)
    bare = tmp_path / "lib.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp_path)
    return bare, git("rev-parse", "HEAD", cwd=work)


def program(folder: Path, url: Path, rev: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "app.nx"
    path.write_text(
        f'import git "{url}" rev "{rev}" as lib\n{NETWORK}lib.mirror("m-${{lib.port}}")\n'
    )
    return path


def test_local_folder_module(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "main.nx").write_text(LIB)
    (tmp_path / "names.nx").write_text('let first = "alpha"\n')
    app = tmp_path / "app.nx"
    app.write_text(
        'import "shared" as shared\nimport "names" as names\n'
        + NETWORK
        + "shared.mirror(names.first)\n"
    )
    compiled = compile_file(str(app))
    assert compiled.ok, compiled.problems
    assert [d["metadata"]["name"] for d in compiled.manifests] == ["demo", "alpha"]


def test_module_imported_twice_declares_once(tmp_path: Path) -> None:
    (tmp_path / "net.nx").write_text(NETWORK + 'let name = "demo"\n')
    (tmp_path / "a.nx").write_text('import "net" as net\nlet n = net.name\n')
    app = tmp_path / "app.nx"
    app.write_text('import "net" as net\nimport "a" as a\nlet x = a.n + net.name\n')
    compiled = compile_file(str(app))
    assert compiled.ok, compiled.problems
    assert len(compiled.manifests) == 1


def test_private_names_are_not_exported(tmp_path: Path) -> None:
    (tmp_path / "lib.nx").write_text('let _secret = "x"\nlet shown = "y"\n')
    app = tmp_path / "app.nx"
    app.write_text('import "lib" as lib\nlet a = lib.shown\nlet b = lib._secret\n')
    [problem] = compile_file(str(app)).problems
    assert (problem.position.line, problem.position.column) == (3, 13)
    assert problem.message == "module 'lib' has no '_secret'"


def test_import_cycle_names_the_chain(tmp_path: Path) -> None:
    (tmp_path / "a.nx").write_text('import "b" as b\n')
    (tmp_path / "b.nx").write_text('import "a" as a\n')
    app = tmp_path / "app.nx"
    app.write_text('import "a" as a\n')
    [problem] = compile_file(str(app)).problems
    assert problem.message == "import cycle: a.nx -> b.nx -> a.nx"
    assert problem.position.file.endswith("b.nx")


def test_git_module_lock_then_compile(tmp_path: Path, repo: tuple[Path, str]) -> None:
    bare, rev = repo
    app = program(tmp_path / "app", bare, rev)
    unlocked = compile_file(str(app))
    assert "is not in nexus.lock" in unlocked.problems[0].message
    assert main(["lock", str(app)]) == 0
    lock = json.loads((app.parent / LOCK_FILE).read_text())
    entry = lock["modules"][f"{bare}@{rev}"]
    assert entry["rev"] == rev and entry["hash"].startswith("sha256:")
    compiled = compile_file(str(app))
    assert compiled.ok, compiled.problems
    assert [d["metadata"]["name"] for d in compiled.manifests] == ["demo", "m-4433"]


def test_git_module_hash_mismatch(tmp_path: Path, repo: tuple[Path, str]) -> None:
    bare, rev = repo
    app = program(tmp_path / "app", bare, rev)
    assert main(["lock", str(app)]) == 0
    lock_path = app.parent / LOCK_FILE
    lock = json.loads(lock_path.read_text())
    lock["modules"][f"{bare}@{rev}"]["hash"] = "sha256:" + "0" * 64
    lock_path.write_text(json.dumps(lock))
    [problem] = compile_file(str(app)).problems
    assert (problem.position.line, problem.position.column) == (1, 1)
    assert "but nexus.lock pins sha256:000" in problem.message
    assert "run `nexus lock`" in problem.message


def test_git_module_missing_commit(tmp_path: Path, repo: tuple[Path, str]) -> None:
    bare, _ = repo
    app = program(tmp_path / "app", bare, "f" * 40)
    resolver = ModuleResolver.beside(str(app), locking=True)
    compiled = compile_file(str(app), resolver=resolver)
    assert f"commit {'f' * 40} is not in {bare}" in compiled.problems[0].message
    assert main(["lock", str(app)]) == 1


def test_git_module_escaping_its_tree(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    git("init", "-q", cwd=work)
    (work / "main.nx").write_text('import "../outside" as o\n')
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "x", cwd=work)
    rev = git("rev-parse", "HEAD", cwd=work)
    app = program(tmp_path / "app", work, rev)
    resolver = ModuleResolver.beside(str(app), locking=True)
    compiled = compile_file(str(app), resolver=resolver)
    assert any("leaves the git module" in p.message for p in compiled.problems)


def test_content_hash_covers_module_files_only() -> None:
    files = {"main.nx": b"let a = 1\n", "README.md": b"x"}
    same = {"main.nx": b"let a = 1\n", "README.md": b"changed"}
    other = {"main.nx": b"let a = 2\n", "README.md": b"x"}
    assert content_hash(files) == content_hash(same) != content_hash(other)


def test_lock_file_is_stable(tmp_path: Path, repo: tuple[Path, str]) -> None:
    bare, rev = repo
    app = program(tmp_path / "app", bare, rev)
    assert main(["lock", str(app)]) == 0
    first = (app.parent / LOCK_FILE).read_text()
    resolver = ModuleResolver.beside(str(app), locking=True)
    compile_file(str(app), resolver=resolver)
    write_lock(resolver.lock)
    assert (app.parent / LOCK_FILE).read_text() == first


def test_nexus_lock_subprocess(tmp_path: Path, repo: tuple[Path, str]) -> None:
    bare, rev = repo
    app = program(tmp_path / "app", bare, rev)
    done = subprocess.run(
        [sys.executable, "-m", "hypermesh.nexus.cli", "lock", str(app)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "1 git module(s) pinned" in done.stderr
