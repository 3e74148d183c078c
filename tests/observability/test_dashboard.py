"""Grafana dashboard sanity: identity, datasource variable, targets, and metric names that exist."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from metrics.definitions import SERIES, all_sample_names
from tests.observability.promql_names import metric_names
from tests.observability.promtool import check_rules

DASHBOARD = (
    Path(__file__).resolve().parents[2] / "charts" / "hotplug-agent" / "files" / "grafana-dashboard.json"
)
EXTERNAL_METRICS = {"up"}


def load() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    found = [
        (panel["title"], target["expr"])
        for panel in panels(dashboard)
        if panel["type"] != "row"
        for target in panel["targets"]
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            found.append((variable["name"], query["query"] if isinstance(query, dict) else query))
    return found


def test_identity() -> None:
    d = load()
    assert d["uid"] == "hotplug-agent"
    assert d["id"] is None
    assert d["title"]
    assert "__inputs" not in d, "import-only inputs break sidecar/file provisioning"
    assert "DS_PROMETHEUS" not in DASHBOARD.read_text()


def test_variables() -> None:
    variables = {v["name"]: v for v in load()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    namespace = variables["namespace"]
    assert namespace["type"] == "query"
    assert namespace["datasource"]["uid"] == "${datasource}"
    assert "namespace" in namespace["definition"]


def test_every_panel_has_a_target_on_the_datasource_variable() -> None:
    d = load()
    ids = []
    for panel in panels(d):
        ids.append(panel["id"])
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert 'namespace=~"$namespace"' in target["expr"], (panel["title"], target["expr"])
    assert len(ids) == len(set(ids))


def test_layout_has_no_overlaps() -> None:
    occupied: dict[tuple[int, int], str] = {}
    for panel in load()["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in occupied, f"{panel['title']} overlaps {occupied[(x, y)]}"
                occupied[(x, y)] = panel["title"]


def test_required_panels() -> None:
    d = load()
    types = {panel["type"] for panel in panels(d)}
    assert {"heatmap", "timeseries", "stat"} <= types
    text = " ".join(expr for _title, expr in expressions(d))
    for needle in (
        "hotplug_agent_pending_hotplugs",
        "hotplug_agent_blocked_vms",
        "hotplug_agent_migrations_in_flight",
        "hotplug_agent_migration_limit",
        "histogram_quantile(0.95, sum by (le, phase)",
        "hotplug_agent_hotplug_latency_seconds_bucket",
        "hotplug_agent_migration_failures_total",
        "hotplug_agent_slot_exhausted_vms",
        "hotplug_agent_leader",
        "hotplug_agent_watch_restarts_total",
    ):
        assert needle in text, needle
    for panel in panels(d):
        if panel["type"] == "heatmap":
            assert panel["options"]["calculate"] is False
            for target in panel["targets"]:
                assert target["format"] == "heatmap"
                assert target["legendFormat"] == "{{le}}"
                assert "_bucket" in target["expr"]


def test_dashboard_uses_only_defined_metrics_and_shows_all_of_them() -> None:
    known = all_sample_names() | EXTERNAL_METRICS
    used: set[str] = set()
    for title, expr in expressions(load()):
        names = metric_names(expr)
        assert names, (title, expr)
        assert names <= known, (title, names - known)
        used |= names
    families = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    missing = {spec.name for spec in SERIES} - families
    assert not missing, f"series not shown on the dashboard: {sorted(missing)}"


@pytest.mark.tools
def test_every_expression_parses(tmp_path: Path) -> None:
    """Feed each expression to promtool as a recording rule (Grafana variables substituted)."""
    rules = []
    for index, (_title, expr) in enumerate(expressions(load())):
        if expr.lstrip().startswith("label_values("):
            continue
        promql = (
            expr.replace("$__rate_interval", "5m").replace('"$namespace"', '".*"').replace('"$phase"', '".*"')
        )
        assert "$" not in promql, promql
        rules.append({"record": f"dashboard:expr_{index}:check", "expr": promql})
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = check_rules(path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()
