"""examples/gitops: the pull-request workflow's plan step, run as the workflow runs it (bash, from
the example's folder, hmctl on PATH), with the state path pointed at a test folder: it succeeds
with changes to make (diff's exit 1 is not a failure) and writes the markdown plan; a manifest
error fails it (exit 2)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import EXAMPLES

FOLDER = EXAMPLES / "gitops"
WORKFLOW = FOLDER / ".github" / "workflows" / "hypermesh-plan.yml"


def _workflow() -> dict[Any, Any]:
    loaded = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _plan_step(state: Path) -> str:
    steps = _workflow()["jobs"]["plan"]["steps"]
    (run,) = [s["run"] for s in steps if s.get("name") == "Plan"]
    assert "--state /var/lib/hypermesh" in run and "-o markdown" in run
    return str(run).replace("/var/lib/hypermesh", str(state))


def _run(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run(
        ["bash", "-e", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_the_workflow_runs_on_pull_requests_that_touch_the_manifests() -> None:
    workflow = _workflow()
    on = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads `on` as true
    assert on["pull_request"]["paths"] == ["manifests/**"]
    assert workflow["permissions"] == {"contents": "read", "pull-requests": "write"}
    comment = [s for s in workflow["jobs"]["plan"]["steps"] if s.get("name") == "Comment"]
    assert comment and "--body-file plan.md" in comment[0]["run"]


def test_the_plan_step_writes_the_markdown_plan(tmp_path: Path) -> None:
    work = tmp_path / "gitops"
    shutil.copytree(FOLDER, work)
    done = _run(_plan_step(tmp_path / "state"), work)
    assert done.returncode == 0, done.stdout + done.stderr
    plan = (work / "plan.md").read_text()
    assert plan.startswith("### HyperMesh plan: 3 to create, 0 to update, 0 to delete"), plan
    assert "#### Creates (3)" in plan and "<summary><code>Node/gitops-mirror</code>" in plan
    assert not (tmp_path / "state").exists(), "diff made the state directory"


def test_the_plan_step_fails_on_a_manifest_error(tmp_path: Path) -> None:
    work = tmp_path / "gitops"
    shutil.copytree(FOLDER, work)
    manifest = work / "manifests" / "network.yaml"
    manifest.write_text(manifest.read_text().replace("roles: [mirror]", "roles: [mirorr]"))
    done = _run(_plan_step(tmp_path / "state"), work)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "manifests/network.yaml:" in done.stderr and "mirorr" in done.stderr
