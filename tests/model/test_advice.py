"""Warnings that never stop a command: a TXT value with unquoted whitespace (published as several
strings) is named with its position by validate and by diff, which still succeed."""

from __future__ import annotations

from pathlib import Path

import pytest

from hypermesh.cli.main import main
from tests.conftest import HEADER

MANIFEST = (
    f"{HEADER}kind: Network\nmetadata: {{name: demo}}\n"
    "spec: {mode: private, registry: {node: r}}\n---\n"
    f"{HEADER}kind: Node\nmetadata: {{name: r}}\nspec: {{network: demo, roles: [registry]}}\n---\n"
    f"{HEADER}kind: TLD\nmetadata: {{name: demo}}\nspec: {{network: demo, owner: {{node: r}}}}\n"
    f"---\n{HEADER}kind: Record\nmetadata: {{name: spf.demo}}\nspec:\n  tld: demo\n  type: TXT\n"
    "  values:\n"
    "    - '\"one quoted string\"'\n"
    "    - v=spf1 include:_spf.example ~all\n"
    "    - single\n"
)
WARNING = (
    "names.yaml:24:7: Record/spf.demo: spec.values[1]: warning: TXT value "
    "'v=spf1 include:_spf.example ~all' has unquoted whitespace: it is published as 3 strings "
    '("v=spf1" "include:_spf.example" "~all"); write \'"v=spf1 include:_spf.example ~all"\' '
    "for one string"
)


@pytest.mark.parametrize("command", [["validate"], ["diff"]])
def test_unquoted_whitespace_in_a_txt_value_is_warned_about_once(
    command: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("names.yaml").write_text(MANIFEST)
    code = main(["--state", str(tmp_path / "state"), *command, "-f", "names.yaml"])
    assert code in (0, 1)  # validate: valid; diff: 1, there are changes to make
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "warning:" in line]
    assert warnings == [WARNING], captured.err
    if command == ["validate"]:
        assert code == 0 and captured.out.startswith("valid: 4 resources")
