"""The sample applications in examples/ (chat, bulletin board, an HTTP/3 service by name), each
run end to end against its network started by `hmctl apply`: real node processes on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import EXAMPLES, Hmctl


def apply(hmctl: Hmctl, example: str) -> None:
    result = hmctl("apply", "-f", str(EXAMPLES / example), "--timeout", "60s")
    assert result.returncode == 0, result.stdout + result.stderr


def app(hmctl: Hmctl, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--state", str(hmctl.state), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=hmctl.cwd,
        env=hmctl.env,
    )


def test_chat(hmctl: Hmctl) -> None:
    apply(hmctl, "chat")
    said = app(hmctl, "chat/chat.py", "say", "ana", "bo", "lunch at noon?")
    assert said.returncode == 0, said.stderr
    assert "ana → bo: lunch at noon?" in said.stdout
    assert app(hmctl, "chat/chat.py", "say", "cy", "bo", "count me in").returncode == 0
    heard = app(hmctl, "chat/chat.py", "listen", "bo", "--count", "2", "--timeout", "20")
    assert heard.returncode == 0, heard.stderr
    lines = heard.stdout.splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == ["ana: lunch at noon?", "cy: count me in"]
    history = app(hmctl, "chat/chat.py", "history", "ana")
    assert history.returncode == 0 and history.stdout == ""  # ana received nothing
    wrong = app(hmctl, "chat/chat.py", "say", "ana", "nobody", "hi")
    assert wrong.returncode == 1 and "no node 'nobody'" in wrong.stderr


def test_bulletin_board(hmctl: Hmctl) -> None:
    apply(hmctl, "bulletin-board")
    for node, text in (("north", "the river path is closed"), ("south", "market on Saturday")):
        posted = app(hmctl, "bulletin-board/board.py", "post", node, text)
        assert posted.returncode == 0, posted.stderr
    board = app(hmctl, "bulletin-board/board.py", "read", "--proofs")
    assert board.returncode == 0, board.stderr
    assert "north #" in board.stdout and "the river path is closed  (proof ok)" in board.stdout
    assert "south #" in board.stdout and "market on Saturday" in board.stdout
    assert "2 post(s) from 2 node(s), all verified" in board.stdout


def test_h3_service_by_name(hmctl: Hmctl, tmp_path: Path) -> None:
    apply(hmctl, "h3-service")
    fetched = app(hmctl, "h3-service/fetch.py", "https://www.hmshop/status", "--as", "client")
    assert fetched.returncode == 0, fetched.stderr
    assert '"name":"web"' in fetched.stdout
    assert "verified: True" in fetched.stderr and 'alpn="h3"' in fetched.stderr
    missing = app(hmctl, "h3-service/fetch.py", "https://nope.hmshop/status", "--as", "client")
    assert missing.returncode == 1 and "error:" in missing.stderr


def test_the_sdk_sample_in_the_docs_runs_against_its_example(hmctl: Hmctl, tmp_path: Path) -> None:
    apply(hmctl, "registry-and-names")
    text = (EXAMPLES.parent / "docs" / "sdk.md").read_text()
    sample = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert "examples/registry-and-names" in sample
    script = tmp_path / "sample.py"
    script.write_text(sample.replace('".hypermesh"', repr(str(hmctl.state))))
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=hmctl.cwd,
        env=hmctl.env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "['192.0.2.10', '192.0.2.11'] True", done.stdout
    nodes = json.loads(hmctl("get", "nodes", "-o", "json").stdout)["items"]
    (alpha,) = [n for n in nodes if n["metadata"]["name"] == "alpha"]
    assert lines[1] == f"200 {alpha['status']['identity']}"
    assert lines[2].startswith("block ") and lines[3].startswith("sent ")
    asked = hmctl("dns", "query", "build.acme", "TXT")
    assert '"v2"' in asked.stdout, asked.stdout + asked.stderr
