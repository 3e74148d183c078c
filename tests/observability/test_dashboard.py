"""Grafana dashboard sanity: identity, variables, targets, metric names that exist, and the linter
(``dashboard_lint.py``, grafana/dashboard-linter's rules) clean, with controls that it bites."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from metrics.definitions import RUNTIME_SERIES, SERIES, all_sample_names
from tests.observability.dashboard_lint import lint
from tests.observability.promql_names import metric_names
from tests.observability.promtool import check_rules

DASHBOARD = (
    Path(__file__).resolve().parents[2] / "charts" / "hotplug-agent" / "files" / "grafana-dashboard.json"
)
EXTERNAL_METRICS = {"up"}


def substitute(expr: str, *, cluster: str = "", job: str = ".+", namespace: str = ".+") -> str:
    """The PromQL Grafana sends for ``expr``: variables replaced (``$__rate_interval`` by 1m)."""
    return (
        expr.replace("$__rate_interval", "1m")
        .replace('"$cluster"', json.dumps(cluster))
        .replace('"$job"', json.dumps(job))
        .replace('"$agent_namespace"', json.dumps(namespace))
        .replace('"$phase"', '".*"')
    )


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
    assert list(variables) == ["datasource", "cluster", "job", "agent_namespace", "phase"]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    # kubernetes-mixin's cluster variable: one cluster at a time; without a cluster label (one
    # Prometheus per cluster) it is empty and cluster="" matches every series.
    cluster = variables["cluster"]
    assert cluster["definition"] == "label_values(hotplug_agent_build_info, cluster)"
    assert cluster["multi"] is False and cluster["includeAll"] is False
    # The namespace the agent runs in (its scrape target's namespace), not the VMs' namespaces.
    agent_namespace = variables["agent_namespace"]
    assert agent_namespace["label"] == "Agent namespace"
    assert agent_namespace["definition"].endswith(", namespace)")
    for name in ("job", "agent_namespace"):
        assert 'cluster="$cluster"' in variables[name]["definition"]


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
            assert '"$namespace"' not in target["expr"], (panel["title"], target["expr"])
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
        "hotplug_agent_queue_wait_seconds_bucket",
        "sum by (le, verb) (rate(hotplug_agent_rest_client_request_duration_seconds_bucket",
        "process_resident_memory_bytes",
        "rate(process_cpu_seconds_total",
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
    assert {spec.name for spec in RUNTIME_SERIES} & families, "no memory/CPU panel"


def test_dashboard_linter_clean() -> None:
    assert lint(load()) == []


def _panel(d: dict[str, Any], title: str) -> dict[str, Any]:
    return next(p for p in d["panels"] if p.get("title") == title)


def _drop_unit(d: dict[str, Any]) -> None:
    del _panel(d, "Queue wait")["fieldConfig"]["defaults"]["unit"]


def _bad_heatmap_unit(d: dict[str, Any]) -> None:
    _panel(d, "Phase duration heatmap")["options"]["yAxis"]["unit"] = "seconds"


def _increase_over_rate_interval(d: dict[str, Any]) -> None:
    target = _panel(d, "Failures by reason")["targets"][0]
    target["expr"] = target["expr"].replace("rate(", "increase(")


def _rate_over_fixed_window(d: dict[str, Any]) -> None:
    target = _panel(d, "Failures by reason")["targets"][0]
    target["expr"] = target["expr"].replace("$__rate_interval", "5m")


def _bare_counter(d: dict[str, Any]) -> None:
    target = _panel(d, "Watch restarts")["targets"][0]
    target["expr"] = re.sub(r"rate\((.*)\[\$__rate_interval\]\)", r"\1", target["expr"])


def _no_job_matcher(d: dict[str, Any]) -> None:
    target = _panel(d, "Memory")["targets"][0]
    target["expr"] = target["expr"].replace(', job=~"$job"', "")


def _no_cluster_variable(d: dict[str, Any]) -> None:
    d["templating"]["list"] = [v for v in d["templating"]["list"] if v["name"] != "cluster"]


def _job_not_multi(d: dict[str, Any]) -> None:
    next(v for v in d["templating"]["list"] if v["name"] == "job")["multi"] = False


def _no_description(d: dict[str, Any]) -> None:
    _panel(d, "CPU")["description"] = ""


@pytest.mark.parametrize(
    ("mutate", "rule"),
    [
        (_drop_unit, "panel-units-rule"),
        (_bad_heatmap_unit, "panel-units-rule"),
        (_increase_over_rate_interval, "target-rate-interval-rule"),
        (_rate_over_fixed_window, "target-rate-interval-rule"),
        (_bare_counter, "target-counter-agg-rule"),
        (_no_job_matcher, "target-job-rule"),
        (_no_cluster_variable, "target-required-matchers"),
        (_job_not_multi, "template-job-rule"),
        (_no_description, "panel-title-description-rule"),
    ],
)
def test_dashboard_linter_bites(mutate: Callable[[dict[str, Any]], None], rule: str) -> None:
    dashboard = copy.deepcopy(load())
    mutate(dashboard)
    problems = lint(dashboard)
    assert any(problem.startswith(rule) for problem in problems), problems


@pytest.mark.tools
def test_every_expression_parses(tmp_path: Path) -> None:
    """Feed each expression to promtool as a recording rule (Grafana variables substituted)."""
    rules = []
    for index, (_title, expr) in enumerate(expressions(load())):
        if expr.lstrip().startswith("label_values("):
            continue
        promql = substitute(expr)
        assert "$" not in promql, promql
        rules.append({"record": f"dashboard:expr_{index}:check", "expr": promql})
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = check_rules(path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()
