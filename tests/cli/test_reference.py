"""docs/cli.md is generated from the parser, and every command's --help shows an example."""

from __future__ import annotations

import argparse

import pytest

from hypermesh.cli.main import build_parser, main
from hypermesh.cli.reference import REGENERATE, render_cli_reference
from tests.conftest import ROOT

CLI_MD = ROOT / "docs" / "cli.md"


def _commands(parser: argparse.ArgumentParser | None = None, prefix: str = "") -> list[str]:
    """Every command, nested ones as ``registry list``."""
    names: list[str] = []
    for action in (parser or build_parser())._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                names += [prefix + name, *_commands(sub, f"{prefix}{name} ")]
    return names


COMMANDS = _commands()


def test_docs_cli_md_is_the_rendered_reference() -> None:
    assert CLI_MD.read_text(encoding="utf-8") == render_cli_reference(), (
        f"docs/cli.md is stale; regenerate it with `{REGENERATE}`"
    )


def test_first_line_says_how_to_regenerate() -> None:
    first = render_cli_reference().splitlines()[0]
    assert REGENERATE in first and "Generated" in first


def test_reference_does_not_depend_on_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    narrow = render_cli_reference()
    monkeypatch.setenv("COLUMNS", "250")
    assert render_cli_reference() == narrow


def test_every_command_has_a_section_with_usage_and_example() -> None:
    text = render_cli_reference()
    assert "## Global options" in text
    for name in COMMANDS:
        section = text.split(f"\n## hmctl {name}\n", 1)[1].split("\n## ", 1)[0]
        assert f"usage: hmctl {name}" in section
        assert f"Example:\n\n```sh\nhmctl {name}" in section


def test_intro_states_the_conventions() -> None:
    text = render_cli_reference()
    for needle in ("-f PATH", "HM_STATE", "-o json", "NO_COLOR", "| 3 |", "| 2 |", "| 1 |"):
        assert needle in text, needle


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_shows_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command.split(), "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: hmctl {command}" in out
    assert "example" in out.lower()


def test_top_level_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: hmctl")
    for name in COMMANDS:
        assert name.split()[0] in out
    assert "examples:" in out
    assert "registry list" in COMMANDS and "registry approve" in COMMANDS
