"""What the monitoring tests share: the shipped files, the tools, the metric names the nodes
export and the metric names a PromQL expression reads."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from hypermesh.node.features.paths import PathMetrics
from hypermesh.node.features.relay import RelayCollector
from hypermesh.node.metrics import NodeMetrics
from hypermesh.node.relay_hub import RelayStats
from hypermesh.registry.service import Registry
from hypermesh.transport.identity import Identity
from tests.conftest import ROOT

MONITORING = ROOT / "manifests" / "monitoring"
ALERTS = MONITORING / "alerts.yml"
ALERT_TESTS = MONITORING / "alerts_test.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
PROMETHEUS_YML = MONITORING / "prometheus.yml"

SYNTHETIC = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
"""Series Prometheus writes itself for every target."""

SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def tool(name: str) -> str:
    """The path of a Prometheus tool; the test fails (never skips) with the install command
    when it is missing."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: apt-get install prometheus")
    return found


def series_names(exposition: str) -> set[str]:
    """The series names a /metrics page exports, its families with no sample yet included
    (as they will be once they count something)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(family.name + s for s in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def exported_names() -> set[str]:
    """Every series name a node can export: NodeMetrics with each collector the features add
    (readiness and mirror, registry and directory, relay, paths), read from the rendered page."""
    metrics = NodeMetrics(name="n", network="demo", identity="hm1x", version="0")
    follower = SimpleNamespace(
        refused=None,
        connected=True,
        clock=lambda: 100.0,
        state=SimpleNamespace(copies={"demo": object()}, fresh_at={"demo": 90.0}),
    )
    metrics.watch_node(SimpleNamespace(mirror=follower, chains=None))
    metrics.registry.register(RelayCollector(SimpleNamespace(stats=RelayStats())))
    PathMetrics(SimpleNamespace(metrics=metrics))
    with tempfile.TemporaryDirectory() as folder:
        admin = Identity.generate().node_id
        registry = Registry.open(str(Path(folder) / "registry.db"), admin=admin)
        try:
            registry.register("demo", Identity.generate().node_id, "demo")
            metrics.watch_registry(registry)
            return series_names(metrics.render().decode())
        finally:
            registry.close()


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
    | {"bool", "offset", "inf", "nan"}
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads, roughly: identifiers used bare or before
    ``{`` or ``[``, once strings, label matchers, ranges, groupings, function names and
    keywords are set aside."""
    text = _STRING.sub(" ", expr)
    text = _MATCHERS.sub(" {} ", text)
    text = _RANGES.sub(" [] ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        rest = text[match.end() :].lstrip()
        word = match.group()
        if rest.startswith("(") or word.lower() in _KEYWORDS:
            continue
        if match.start() > 0 and (
            text[match.start() - 1].isdigit() or text[match.start() - 1] == "."
        ):
            continue  # the exponent or unit of a number (1e3)
        names.add(word)
    return names


def alert_expressions() -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            yield rule.get("alert") or rule["record"], rule["expr"]


def panel_expressions() -> Iterator[tuple[str, str]]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def _panels(panels: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def copy_shipped(to: Path) -> None:
    """The shipped monitoring files in ``to`` (promtool and Prometheus read them from there)."""
    for path in (ALERTS, ALERT_TESTS, PROMETHEUS_YML):
        shutil.copy(path, to / path.name)
