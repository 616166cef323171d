"""The shipped alert rules, example configuration and Grafana dashboard: Debian's real
``promtool`` checks and unit-tests the rules, and every expression reads only metrics the
nodes export."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.monitoring.names import (
    ALERTS,
    DASHBOARD,
    SYNTHETIC,
    alert_expressions,
    copy_shipped,
    exported_names,
    metric_names,
    panel_expressions,
    tool,
)


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    copy_shipped(tmp_path)
    result = promtool("check", "rules", "alerts.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 11 rules found" in result.stdout


def test_promtool_unit_tests_pass(tmp_path: Path) -> None:
    copy_shipped(tmp_path)
    result = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    """The unit tests can fail: with the not-ready alert's threshold inverted they do."""
    copy_shipped(tmp_path)
    rules = tmp_path / "alerts.yml"
    text = rules.read_text()
    assert "hypermesh_node_ready == 0" in text
    rules.write_text(text.replace("hypermesh_node_ready == 0", "hypermesh_node_ready == 1"))
    result = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "HyperMeshNodeNotReady" in result.stdout + result.stderr


def test_the_example_configuration_is_valid(tmp_path: Path) -> None:
    copy_shipped(tmp_path)
    (tmp_path / "hypermesh-targets.json").write_text("[]\n")
    result = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_what_the_docs_explain() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "monitoring.md").read_text()
    alerts = [name for name, _ in alert_expressions()]
    assert len(alerts) == 11
    for name in alerts:
        assert f"`{name}`" in docs, f"docs/monitoring.md does not explain {name}"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('up{job="hypermesh"} == 0', {"up"}),
        ('sum by (le) (rate(a_bucket{x=~"y|z"}[5m])) / ignoring (le) b', {"a_bucket", "b"}),
        ("histogram_quantile(0.99, c) > 1e3 and on (zone) d offset 5m", {"c", "d"}),
        ("e - time() < 14 * 86400", {"e"}),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_alerts_and_panels_name_only_exported_metrics() -> None:
    exported = exported_names() | SYNTHETIC
    expressions = [*alert_expressions(), *panel_expressions()]
    assert len(expressions) > 30
    unknown = {
        (where, name)
        for where, expr in expressions
        for name in metric_names(expr)
        if name not in exported
    }
    assert not unknown, f"metrics no node exports: {sorted(unknown)}"
    # Each one names a metric at all, and the check itself tells a wrong name.
    assert all(metric_names(expr) for _, expr in expressions)
    assert metric_names("rate(hypermesh_relay_bytes[5m])") - exported == {"hypermesh_relay_bytes"}


def test_every_alert_rule_and_panel_is_covered() -> None:
    """Each alert named in the issue has a rule, and the dashboard shows its metric."""
    alerts = dict(alert_expressions())
    for name in (
        "HyperMeshNodeDown",
        "HyperMeshNodeNotReady",
        "HyperMeshMirrorLag",
        "HyperMeshDirectoryRecordStale",
        "HyperMeshRelaySaturated",
        "HyperMeshTldExpiring",
        "HyperMeshNodeKeyExpiring",
    ):
        assert name in alerts
    shown = {name for _, expr in panel_expressions() for name in metric_names(expr)}
    alerted = {name for expr in alerts.values() for name in metric_names(expr)}
    assert alerted <= shown, f"alerted on but not on the dashboard: {sorted(alerted - shown)}"
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"
    assert ALERTS.exists()
