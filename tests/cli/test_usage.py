"""A command given a bad option is answered with that command's usage, not hmctl's; ``hmctl up``
on a folder without manifests, a missing path or manifests that do not validate says so once,
exit code 2, and leaves no state directory behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from hypermesh.cli.main import main
from tests.conftest import HEADER


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["get", "nodes", "--bogus"], "usage: hmctl get "),
        (["apply", "-f", "x.yaml", "--bogus"], "usage: hmctl apply "),
        (["controller", "status", "--bogus"], "usage: hmctl controller status "),
        (["--bogus"], "usage: hmctl [-h]"),
    ],
)
def test_an_unknown_option_prints_the_usage_of_the_command_given(
    argv: list[str], usage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage), err
    assert err.rstrip().endswith("error: unrecognized arguments: --bogus"), err


def _up(tmp_path: Path, target: str) -> int:
    return main(["--state", str(tmp_path / "state"), "up", "-f", target])


def test_up_on_an_empty_folder_says_so_and_makes_no_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a manifest\n")
    assert _up(tmp_path, str(empty)) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{empty}:1:1: folder holds no *.yaml or *.yml files",
        "error: 1 problem in the manifests; nothing was changed",
    ]
    assert not (tmp_path / "state").exists()


def test_up_on_a_missing_path_says_so_and_makes_no_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _up(tmp_path, str(tmp_path / "nothere.yaml")) == 2
    assert f"{tmp_path / 'nothere.yaml'}:1:1: no such file or folder" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()


def test_up_on_invalid_manifests_names_each_problem_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"{HEADER}kind: Node\nmetadata: {{name: a}}\nspec: {{colour: blue}}\n")
    assert _up(tmp_path, str(bad)) == 2
    err = capsys.readouterr().err
    assert err.count("spec.colour: unknown field 'colour'") == 1, err
    assert "keeping nothing" not in err
    assert err.rstrip().endswith("error: 2 problems in the manifests; nothing was changed"), err
