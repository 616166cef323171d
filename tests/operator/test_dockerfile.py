"""The image's Dockerfile installs this repository's package with exactly the extras the
operator needs: every third-party module the operator imports is a dependency of the package or
of those extras (directly or through them), and every extra installed is needed. The image is
not built here (no registry is reachable); the Dockerfile is read.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shlex
import sys
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from hypermesh_operator.children import RUN_AS

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "operator" / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
OPERATOR = ROOT / "operator" / "hypermesh_operator"
OWN_PACKAGES = {"hypermesh", "hypermesh_operator"}


def instructions(text: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def pip_installs(text: str) -> list[list[str]]:
    """The arguments of every ``pip install`` in a RUN instruction."""
    commands = []
    for keyword, rest in instructions(text):
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|;", rest):
            words = shlex.split(command)
            if words[:2] == ["pip", "install"] or words[1:3] == ["-m", "pip"]:
                commands.append(words[words.index("install") + 1 :])
    return commands


def installed_target() -> tuple[str, set[str]]:
    """What the Dockerfile installs: the one target and the extras named on it."""
    (arguments,) = pip_installs(DOCKERFILE.read_text())
    targets = [word for word in arguments if not word.startswith("-")]
    assert len(targets) == 1, f"one package is installed, not {targets}"
    match = re.fullmatch(r"(?P<path>[^\[]+)(\[(?P<extras>[^\]]*)\])?", targets[0])
    assert match is not None, targets[0]
    extras = {e.strip() for e in (match["extras"] or "").split(",") if e.strip()}
    return match["path"], extras


def requirements(extras: Iterable[str]) -> list[Requirement]:
    project = PYPROJECT["project"]
    listed = list(project["dependencies"])
    for extra in extras:
        listed += project["optional-dependencies"][extra]
    return [Requirement(text) for text in listed]


def closure(roots: Iterable[Requirement]) -> set[str]:
    """The distributions ``roots`` install, with their own dependencies (from the installed
    metadata; an extra's dependencies only when the requirement names that extra)."""
    seen: set[str] = set()
    todo = [(r.name, set(r.extras)) for r in roots if r.marker is None or r.marker.evaluate()]
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if key in seen:
            continue
        seen.add(key)
        for text in importlib.metadata.requires(name) or ():
            req = Requirement(text)
            wanted = req.marker is None or any(
                req.marker.evaluate({"extra": extra}) for extra in (extras or {""})
            )
            if wanted:
                todo.append((req.name, set(req.extras)))
    return seen


def third_party_imports(package: Path) -> Iterator[str]:
    """The top-level modules ``package`` imports that are neither stdlib nor this project's."""
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in OWN_PACKAGES:
                    yield top


def distributions_imported() -> set[str]:
    providers = importlib.metadata.packages_distributions()
    found = set()
    for module in set(third_party_imports(OPERATOR)):
        assert module in providers, f"the operator imports {module}, which nothing installs"
        found |= {canonicalize_name(d) for d in providers[module]}
    return found


def copied_sources() -> list[str]:
    """The repository paths the Dockerfile's COPY instructions take (flags left out)."""
    sources = []
    for keyword, args in instructions(DOCKERFILE.read_text()):
        if keyword == "COPY":
            words = [w for w in args.split() if not w.startswith("--")]
            sources += [w.rstrip("/") for w in words[:-1]]
    return sources


def is_copied(path: str, sources: list[str]) -> bool:
    return any(path == s or path.startswith(s + "/") for s in sources)


def test_the_image_installs_this_repository_copied_into_it() -> None:
    path, _ = installed_target()
    assert path == ".", f"the image installs {path!r}, not the repository it copied"
    sources = copied_sources()
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"
    needed = ["pyproject.toml", PYPROJECT["project"]["readme"]]
    needed += PYPROJECT["tool"]["setuptools"]["package-dir"].values()
    missing = [n for n in needed if not is_copied(n, sources)]
    assert not missing, f"the package needs {missing}, which the image does not copy"


def test_symlinked_package_data_points_into_what_the_image_copies() -> None:
    """``hypermesh/schemas`` links to the top-level ``schemas/``: the image must copy both."""
    sources = copied_sources()
    for package in PYPROJECT["tool"]["setuptools"]["package-dir"].values():
        for link in (ROOT / package).rglob("*"):
            if link.is_symlink():
                target = str(link.resolve().relative_to(ROOT))
                assert is_copied(target, sources), f"{link} points to {target}, not copied"


def test_the_image_has_exactly_the_extras_the_operator_needs() -> None:
    _, extras = installed_target()
    declared = set(PYPROJECT["project"]["optional-dependencies"])
    assert extras <= declared, f"unknown extras {extras - declared}"
    imported = distributions_imported()
    provided = closure(requirements(extras))
    assert imported <= provided, f"the operator imports {imported - provided}, not installed"
    for extra in extras:
        without = closure(requirements(extras - {extra}))
        assert not imported <= without, f"extra {extra!r} installs nothing the operator needs"


def test_the_operator_needs_its_extra() -> None:
    """The check above can fail: without the operator extra, kopf is missing."""
    assert "kopf" in distributions_imported()
    assert "kopf" not in closure(requirements(()))


def test_the_image_runs_as_the_user_the_pods_run_as() -> None:
    users = [args for keyword, args in instructions(DOCKERFILE.read_text()) if keyword == "USER"]
    assert users[-1] == f"{RUN_AS}:{RUN_AS}"


def test_the_build_context_keeps_what_the_image_copies() -> None:
    """``Dockerfile.dockerignore`` ignores everything but the copied paths: each COPY source is
    let back in (``!path``), and no later pattern takes it out again."""
    lines = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"
    for source in copied_sources():
        assert f"!{source}" in patterns, f"COPY {source}: the build context leaves it out"
        after = patterns[patterns.index(f"!{source}") + 1 :]
        assert not any(p.rstrip("/") in (source, "*") for p in after), source
