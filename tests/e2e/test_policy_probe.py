"""The InterfacePolicy driver probes live enforcement: after `hmctl apply` the policy is Ready
and Enforced; a node that runs another policy than the one declared (restarted by hand with an
edited config) is reported as a mismatch naming caller, target and operation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypermesh.node.lockfile import running_pid
from hypermesh.node.runtime import read_runtime
from tests import conftest as c
from tests.conftest import Hmctl, wait_for
from tests.e2e.conftest import items, ready

NETWORK = """\
apiVersion: hypermesh.online/v1alpha1
kind: Network
metadata: {name: demo}
spec: {mode: private, registry: {node: registry}}
"""

POLICY = """\
apiVersion: hypermesh.online/v1alpha1
kind: InterfacePolicy
metadata: {name: demo-private}
spec:
  network: demo
  interface: private
  default: deny
  rules:
    - name: alpha-reads-beta
      from: {nodes: [alpha]}
      to: {nodes: [beta]}
      operations: [chain.read, dns.query]
    - name: beta-never-writes
      from: {nodes: [beta]}
      operations: [chain.write]
      action: deny
    - name: members-see-status
      operations: [status.read]
  tests:
    - {from: alpha, to: beta, operation: chain.read, expect: allow}
    - {from: beta, to: alpha, operation: chain.write, expect: deny}
"""


def enforced(item: dict[str, Any]) -> dict[str, Any]:
    (cond,) = [c for c in item["status"]["conditions"] if c["type"] == "Enforced"]
    return cond


def restart_with_policy(node_dir: Path, policy: dict[str, Any] | None) -> subprocess.Popen[bytes]:
    """Stop the node and start it by hand from its config with ``private_policy`` replaced:
    the node then enforces something other than what the controller declared."""
    pid = running_pid(node_dir)
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: running_pid(node_dir) is None, timeout=15)
    config = node_dir / "config.json"
    data = json.loads(config.read_text())
    data["private_policy"] = policy
    config.write_text(json.dumps(data))
    with (node_dir / "node.log").open("ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "hypermesh.node", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            cwd=node_dir,
        )

    def serving() -> bool:
        runtime = read_runtime(node_dir)
        return runtime is not None and runtime.pid == child.pid and runtime.private is not None

    wait_for(serving, timeout=20)
    return child


def test_the_probe_finds_enforcement_that_differs_from_the_policy(
    hmctl: Hmctl, tmp_path: Path
) -> None:
    folder = tmp_path / "net"
    folder.mkdir()
    (folder / "net.yaml").write_text(
        c.documents(
            NETWORK,
            c.node("registry", roles="[registry]", interfaces="[public]"),
            c.node("alpha", interfaces="[public, private]"),
            c.node("beta", interfaces="[public, private]"),
            POLICY,
        )
    )
    result = hmctl("apply", "-f", str(folder), "--timeout", "60s")
    assert result.returncode == 0, result.stdout + result.stderr

    policy = items(hmctl, "interfacepolicies")["demo-private"]
    assert ready(policy) == ("True", "Converged")
    assert enforced(policy)["status"] == "True", enforced(policy)
    # alpha and beta each probed by the registry, the other node and an anonymous caller.
    assert policy["status"]["probes"] > 0
    assert policy["status"]["mismatches"] == []

    wide = hmctl("get", "interfacepolicies", "-o", "wide")
    assert wide.returncode == 0, wide.stderr
    assert "ENFORCED" in wide.stdout and "PROBES" in wide.stdout
    assert "demo-private" in wide.stdout and "Enforced" in wide.stdout

    beta_dir = hmctl.state / "nodes" / "beta"
    child = restart_with_policy(beta_dir, None)  # no policy: members may do anything
    try:
        # hmctl get probes afresh: beta allows what the policy denies.
        wrong = "alpha → beta private chain.write: the policy denies, the node allowed"
        policy = items(hmctl, "interfacepolicies")["demo-private"]
        assert enforced(policy)["status"] == "False"
        assert any(m.startswith(wrong) for m in policy["status"]["mismatches"])
        # What alpha may do on beta, beta does: no mismatch is reported for it.
        assert not any(
            "alpha → beta private chain.read" in m for m in policy["status"]["mismatches"]
        )
        # alpha runs the declared policy: nothing is reported against it.
        assert not any("→ alpha " in m for m in policy["status"]["mismatches"])

        described = hmctl("describe", "interfacepolicy", "demo-private")
        assert described.returncode == 0, described.stderr
        assert "Enforced" in described.stdout and "NotEnforced" in described.stdout
        assert wrong in described.stdout

        # The next apply sees beta's config drift from its network's policy, restarts it with
        # the declared one, and the probe finds the policy enforced again.
        again = hmctl("apply", "-f", str(folder), "--timeout", "60s")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "node/beta repaired" in again.stdout and "private_policy" in again.stdout
        policy = items(hmctl, "interfacepolicies")["demo-private"]
        assert enforced(policy)["status"] == "True", policy["status"]
        assert policy["status"]["mismatches"] == []
    finally:
        hmctl("down", timeout=120)
        if child.poll() is None:
            child.terminate()
        child.wait(timeout=15)
