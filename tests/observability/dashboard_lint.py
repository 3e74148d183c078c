"""A Grafana dashboard linter for the chart's dashboard, after grafana/dashboard-linter's rules.

Why our own: grafana/dashboard-linter is a Go module, and the Go module proxy refuses it here (403 for
``github.com/grafana/dashboard-linter``), so it cannot be built. This module checks the same rules, by
the same names, plus two of ours; :func:`lint` returns one message per violation (empty: clean).

Rules (grafana/dashboard-linter's, unless marked *ours*):

* ``template-datasource-rule`` — a ``datasource`` variable (label "Data source") of Prometheus;
* ``template-job-rule`` — a ``job`` query variable on ``${datasource}``, label "Job", multi-select,
  ``allValue`` ``.+``; the same for the agent-namespace variable (*ours*: it is the dashboard's
  instance-like selector);
* ``template-on-time-change-reload`` — query variables refresh on time-range change (``refresh: 2``);
* ``template-label-promql-rule`` — ``label_values(<selector>, <label>)`` queries are well formed;
* ``panel-datasource-rule``, ``panel-title-description-rule``, ``panel-no-targets-rule``;
* ``panel-units-rule`` — a valid unit on every panel (*ours*: heatmaps too, on their y axis, and every
  unit override);
* ``target-rate-interval-rule`` — ``rate``/``irate`` over ``$__rate_interval``; *ours*: never
  ``increase(...[$__rate_interval])`` (a count per scrape-dependent window; use ``rate``);
* ``target-counter-agg-rule`` — a ``*_total`` series only inside ``rate``/``irate``/``increase``;
* ``target-job-rule`` and ``target-required-matchers`` — every selector carries the ``cluster``,
  ``job`` and agent-namespace matchers.

Excluded, with the reason the linter's ``.lint`` file would carry: ``template-instance-rule`` and
``target-instance-rule`` — replicas are told apart by ``pod``, which the per-replica panels group by;
an ``instance`` filter would duplicate the job and namespace ones.
PromQL validity (``target-promql-rule``) is checked by promtool in ``test_dashboard.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from tests.observability.promql_names import metric_names

#: Grafana value formats (packages/grafana-data/src/valueFormats/categories.ts) a dashboard of this
#: kind may use; anything else is reported.
VALID_UNITS = frozenset(
    {
        "none", "string", "short", "percent", "percentunit", "locale", "sci",
        "bytes", "decbytes", "bits", "kbytes", "mbytes", "gbytes",
        "Bps", "binBps", "bps",
        "ns", "µs", "ms", "s", "m", "h", "d", "dtdurations", "dtdurationms", "dateTimeAsIso",
        "dateTimeFromNow", "hertz",
        "cps", "ops", "reqps", "rps", "wps", "iops", "cpm", "opm", "rpm", "wpm",
        "bool", "bool_yes_no", "bool_on_off",
    }
)  # fmt: skip

PANELS_WITH_UNITS = ("stat", "singlestat", "graph", "table", "timeseries", "gauge", "bargauge", "heatmap")
PANELS_WITH_QUERIES = (*PANELS_WITH_UNITS, "piechart", "state-timeline")
#: Matchers every selector must carry: variable name -> the matcher text.
REQUIRED_MATCHERS = {
    "cluster": 'cluster="$cluster"',
    "job": 'job=~"$job"',
    "agent_namespace": 'namespace=~"$agent_namespace"',
}
SELECTOR_VARIABLES = {"job": "Job", "agent_namespace": "Agent namespace"}

_LABEL_VALUES = re.compile(
    r"^label_values\(\s*(?:[a-zA-Z_:][\w:]*\s*(?:\{[^{}]*\})?\s*,\s*)?[a-zA-Z_]\w*\s*\)$"
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_RANGE_CALL = re.compile(r"\b(rate|irate|increase)\s*\(([^()]*?)\[([^\]]+)\]")


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


def _datasource_uid(obj: dict[str, Any]) -> str:
    source = obj.get("datasource")
    if isinstance(source, dict):
        return str(source.get("uid", ""))
    return str(source or "")


def lint_templates(dashboard: dict[str, Any]) -> list[str]:
    out: list[str] = []
    found = variables(dashboard)
    sources = [v for v in found.values() if v.get("type") == "datasource"]
    if not sources:
        out.append("template-datasource-rule: no templated data source")
    for source in sources:
        if source["name"] != "datasource" or source.get("query") != "prometheus":
            out.append(f"template-datasource-rule: {source['name']!r} should be 'datasource' on prometheus")
        if source.get("label") != "Data source":
            out.append(f"template-datasource-rule: label {source.get('label')!r} should be 'Data source'")
    for name, label in SELECTOR_VARIABLES.items():
        variable = found.get(name)
        if variable is None:
            out.append(f"template-job-rule: missing the {name} template")
            continue
        if _datasource_uid(variable) not in ("$datasource", "${datasource}"):
            out.append(f"template-job-rule: {name} should use datasource '${{datasource}}'")
        if variable.get("type") != "query":
            out.append(f"template-job-rule: {name} should be a Prometheus query")
        if variable.get("label") != label:
            out.append(f"template-job-rule: {name} should be labelled {label!r}")
        if not variable.get("multi"):
            out.append(f"template-job-rule: {name} should be a multi select")
        if variable.get("allValue") != ".+":
            out.append(f"template-job-rule: {name} allValue should be '.+'")
    if "cluster" not in found:
        out.append("target-required-matchers: missing the cluster template")
    for variable in found.values():
        if variable.get("type") != "query":
            continue
        if variable.get("refresh") != 2:
            out.append(f"template-on-time-change-reload: {variable['name']} refresh should be 2")
        query = variable.get("query")
        text = str(query.get("query", "") if isinstance(query, dict) else query).strip()
        if not _LABEL_VALUES.match(text):
            out.append(f"template-label-promql-rule: {variable['name']}: {text!r}")
    return out


def _panel_units(panel: dict[str, Any]) -> list[str]:
    config = panel.get("fieldConfig", {})
    units = [config.get("defaults", {}).get("unit")]
    if panel["type"] == "heatmap":
        units.append(panel.get("options", {}).get("yAxis", {}).get("unit"))
    for override in config.get("overrides", []):
        units += [p.get("value") for p in override.get("properties", []) if p.get("id") == "unit"]
    return [str(u) if u is not None else "" for u in units]


def lint_panel(panel: dict[str, Any]) -> list[str]:
    title = panel.get("title", "")
    kind = panel["type"]
    if kind == "row":
        return []
    out: list[str] = []
    if _datasource_uid(panel) not in ("$datasource", "${datasource}"):
        out.append(f"panel-datasource-rule: {title!r} does not use ${{datasource}}")
    if not title or not panel.get("description"):
        out.append(f"panel-title-description-rule: panel {panel.get('id')} {title!r}")
    if kind in PANELS_WITH_QUERIES and not panel.get("targets"):
        out.append(f"panel-no-targets-rule: {title!r}")
    if kind in PANELS_WITH_UNITS:
        for unit in _panel_units(panel):
            if unit not in VALID_UNITS:
                out.append(f"panel-units-rule: {title!r} has no or an invalid unit {unit!r}")
    for target in panel.get("targets", []):
        out += [f"{message} ({title!r})" for message in lint_expr(target.get("expr", ""))]
    return out


def lint_expr(expr: str) -> list[str]:
    out: list[str] = []
    for function, _inner, window in _RANGE_CALL.findall(expr):
        if function in ("rate", "irate") and window != "$__rate_interval":
            out.append(f"target-rate-interval-rule: {function}(...[{window}]) should use $__rate_interval")
        if function == "increase" and window == "$__rate_interval":
            out.append("target-rate-interval-rule: increase(...[$__rate_interval]): use rate()")
    for name in sorted(metric_names(expr)):
        pattern = re.compile(rf"(?<![\w:]){re.escape(name)}(?![\w:])\s*(\{{[^{{}}]*\}})?")
        for match in pattern.finditer(_STRING.sub(lambda m: " " * len(m.group(0)), expr)):
            matchers = expr[match.start(1) : match.end(1)] if match.group(1) else ""
            for variable, matcher in REQUIRED_MATCHERS.items():
                if matcher not in matchers:
                    rule = "target-job-rule" if variable == "job" else "target-required-matchers"
                    out.append(f"{rule}: {name} lacks {matcher}")
            if name.endswith("_total"):
                before = expr[: match.start()].rstrip()
                after = expr[match.end() :].lstrip()
                if not (re.search(r"\b(rate|irate|increase)\s*\($", before) and after.startswith("[")):
                    out.append(f"target-counter-agg-rule: {name} not inside rate, irate or increase")
    return out


def lint(dashboard: dict[str, Any]) -> list[str]:
    """Every violation of the rules above, one message each."""
    out = lint_templates(dashboard)
    for panel in panels(dashboard):
        out += lint_panel(panel)
    return out
