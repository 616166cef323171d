"""Sources of ``hmctl controller run``: a folder's content digest, and a git checkout's revision
read with git itself, pulled from a local bare repository (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hypermesh.reconcile.source import FolderSource, GitSource, open_source, public_url
from tests.harness.git import git


def test_folder_revision_follows_the_manifests_only(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.yaml").write_text("a: 1\n")
    (folder / "sub" / "b.yml").write_text("b: 1\n")
    source = open_source([str(folder)])
    assert isinstance(source, FolderSource) and not isinstance(source, GitSource)
    first = source.snapshot()
    assert first.revision == first.digest and first.revision.startswith("sha256:")
    (folder / "notes.txt").write_text("not a manifest")
    assert source.snapshot() == first
    (folder / "sub" / "b.yml").write_text("b: 2\n")
    second = source.snapshot()
    assert second.revision != first.revision
    (folder / "sub" / "b.yml").write_text("b: 1\n")
    assert source.snapshot() == first  # the same content, the same revision
    # Moving the folder keeps the revision.
    moved = tmp_path / "elsewhere"
    folder.rename(moved)
    assert open_source([str(moved)]).snapshot() == first
    assert source.pull(1.0) is None


@pytest.fixture
def checkout(tmp_path: Path) -> tuple[Path, Path]:
    """A bare "remote", a clone of it with one commit on main, and the clone's manifests."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "--bare", "-b", "main", str(remote))
    clone = tmp_path / "clone"
    git(tmp_path, "clone", str(remote), str(clone))
    (clone / "manifests").mkdir()
    (clone / "manifests" / "net.yaml").write_text("a: 1\n")
    git(clone, "checkout", "-b", "main")
    git(clone, "add", ".")
    git(clone, "commit", "-m", "first")
    git(clone, "push", "-u", "origin", "main")
    return remote, clone


def test_git_revision_dirty_and_pull(checkout: tuple[Path, Path], tmp_path: Path) -> None:
    remote, clone = checkout
    source = open_source([str(clone / "manifests")])
    assert isinstance(source, GitSource)
    head = git(clone, "rev-parse", "HEAD")
    snap = source.snapshot()
    assert snap.revision == f"git:main@{head}"
    described = source.describe()
    assert described["remote"] == str(remote) and described["branch"] == "main"
    assert described["commit"] == head

    (clone / "manifests" / "net.yaml").write_text("a: 2\n")
    assert source.snapshot().revision == f"git:main@{head}+dirty"
    (clone / "manifests" / "net.yaml").write_text("a: 1\n")
    (clone / "README").write_text("outside the manifests")  # untracked, not a manifest
    assert source.snapshot().revision == f"git:main@{head}"
    (clone / "manifests" / "new.yaml").write_text("b: 1\n")  # an untracked manifest
    assert source.snapshot().revision.endswith("+dirty")
    (clone / "manifests" / "new.yaml").unlink()

    # Someone else pushes; a pull brings it.
    other = tmp_path / "other"
    git(tmp_path, "clone", str(remote), str(other))
    (other / "manifests" / "net.yaml").write_text("a: 3\n")
    git(other, "commit", "-am", "second")
    git(other, "push")
    pushed = git(other, "rev-parse", "HEAD")
    assert source.pull(30.0) is None
    assert source.snapshot().revision == f"git:main@{pushed}"
    assert (clone / "manifests" / "net.yaml").read_text() == "a: 3\n"

    # A pull that cannot fast-forward fails, says why, and leaves the files as they were.
    (other / "manifests" / "net.yaml").write_text("a: 4\n")
    git(other, "commit", "-am", "third")
    git(other, "push")
    (clone / "manifests" / "net.yaml").write_text("a: local\n")
    git(clone, "commit", "-am", "diverged")
    local = git(clone, "rev-parse", "HEAD")
    problem = source.pull(30.0)
    assert problem is not None and problem.startswith(("fatal:", "error:")), problem
    assert source.snapshot().revision == f"git:main@{local}"
    assert (clone / "manifests" / "net.yaml").read_text() == "a: local\n"


def test_public_url_drops_credentials() -> None:
    assert public_url("https://bot:s3cret@git.example.org/a/b.git") == (
        "https://git.example.org/a/b.git"
    )
    assert public_url("git@github.com:a/b.git") == "git@github.com:a/b.git"
    assert public_url("/srv/git/b.git") == "/srv/git/b.git"
