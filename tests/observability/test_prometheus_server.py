"""A real Prometheus (Debian 2.42) scraping a HotplugMetrics registry, via the reusable helper.

Proves what unit checks cannot: Prometheus negotiates OpenMetrics with our ``render`` and keeps the
exemplars, ingests every declared series, evaluates the alert rules without errors, and can run every
dashboard query.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import start_http_server

from metrics.definitions import HotplugMetrics, all_sample_names
from metrics.exposition import render
from tests.observability.prometheus_server import (
    PrometheusError,
    ScrapeTarget,
    async_prometheus_server,
    build_config,
    free_port,
    prometheus_server,
)
from tests.observability.promtool import RULES_FILE
from tests.observability.rules_files import alerting_rules
from tests.observability.test_dashboard import expressions, substitute
from tests.observability.test_dashboard import load as load_dashboard
from tests.observability.test_metrics_promtool import populated

pytestmark = pytest.mark.tools


def _value(result: list[dict[str, Any]]) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def test_build_config_groups_targets_by_job() -> None:
    config = build_config(
        [
            ScrapeTarget("127.0.0.1:1", labels={"pod": "a"}),
            ScrapeTarget("127.0.0.1:2", labels={"pod": "b"}),
            ScrapeTarget("127.0.0.1:3", job="other", metrics_path="/m"),
        ],
        scrape_interval="1s",
    )
    assert config["global"]["scrape_interval"] == "1s"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert [s["labels"]["pod"] for s in jobs["hotplug-agent"]["static_configs"]] == ["a", "b"]
    assert jobs["other"]["metrics_path"] == "/m"


async def test_async_prometheus_scrapes_registry_with_exemplars_rules_and_dashboard() -> None:
    metrics = populated()
    accept_headers: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        accept = request.headers.get("Accept", "")
        accept_headers.append(accept)
        body, content_type = render(metrics.registry, accept)
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    started = time.time()
    try:
        target = ScrapeTarget(f"127.0.0.1:{port}", labels={"namespace": "hotplug", "pod": "hotplug-agent-0"})
        async with async_prometheus_server(target, rule_files=[RULES_FILE], enable_exemplars=True) as prom:
            result = await prom.wait_for("hotplug_agent_migration_creates_total")
            assert _value(result) == 1.0
            assert result[0]["metric"]["namespace"] == "hotplug"
            assert result[0]["metric"]["job"] == "hotplug-agent"

            # A change in the registry shows up on the next scrape.
            metrics.record_migration_created()
            await prom.wait_for("hotplug_agent_migration_creates_total == 2", wait_seconds=15)

            [health] = [t["health"] for t in await prom.targets()]
            assert health == "up"
            assert any("application/openmetrics-text" in accept for accept in accept_headers)

            # Exemplars survive the OpenMetrics scrape (per-VM identity without a label).
            exemplars = await prom.query_exemplars(
                "hotplug_agent_migration_duration_seconds_bucket", started - 60, time.time() + 60
            )
            labels = [e["labels"] for series in exemplars for e in series["exemplars"]]
            assert {"vmi": "ns/vm"} in labels

            # Every declared sample name is ingested.
            names = {
                r["metric"]["__name__"]
                for r in await prom.query('count by (__name__) ({job="hotplug-agent"})')
            }
            assert all_sample_names() <= names, sorted(all_sample_names() - names)

            # Pre-initialised label values are there at 0 from the first scrape.
            zero = await prom.query('hotplug_agent_blocked_vms{reason="sriov-unplug"}')
            assert _value(zero) == 0.0

            # The alert rules load and evaluate without errors on real data.
            async def rules_evaluated() -> list[dict[str, Any]]:
                groups = await prom.rules()
                return [rule for group in groups for rule in group["rules"]]

            deadline = time.monotonic() + 20
            while True:
                rules = await rules_evaluated()
                if rules and all(rule.get("lastEvaluation", "").startswith("20") for rule in rules):
                    break
                assert time.monotonic() < deadline, rules
                await asyncio.sleep(0.5)
            assert sorted(rule["name"] for rule in rules) == sorted(r["alert"] for r in alerting_rules())
            bad = [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"]
            assert not bad

            # Every dashboard query runs against real series and most return data.
            empty = []
            for title, expr in expressions(load_dashboard()):
                if expr.lstrip().startswith("label_values("):
                    continue
                promql = substitute(expr, job="hotplug-agent", namespace="hotplug")
                try:
                    if not await prom.query(promql):
                        empty.append(title)
                except PrometheusError as error:
                    pytest.fail(f"{title}: {error}")
            # rate()/increase() need two scrapes and histogram_quantile needs observations in the
            # window, so some panels may be empty this early; gauges must not be.
            for must_have_data in (
                "Leader replicas",
                "Pending hot plugs",
                "Migrations in flight vs caps",
                "Memory",
                "Open file descriptors",
            ):
                assert must_have_data not in empty
    finally:
        await runner.cleanup()


def test_sync_prometheus_scrapes_threaded_exporter() -> None:
    metrics = HotplugMetrics(version="9.9.9")
    metrics.set_leader(True)
    metrics.set_mode("observe")
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=metrics.registry)
    try:
        with prometheus_server(f"127.0.0.1:{port}") as prom:
            assert _value(prom.wait_for("hotplug_agent_leader")) == 1.0
            assert _value(prom.query("up")) == 1.0
            info = prom.wait_for("hotplug_agent_build_info")
            assert info[0]["metric"]["version"] == "9.9.9"
            modes = {r["metric"]["mode"]: float(r["value"][1]) for r in prom.query("hotplug_agent_mode")}
            assert modes == {"active": 0.0, "observe": 1.0, "dry-run": 0.0}
            with pytest.raises(PrometheusError):
                prom.query("sum(")
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_startup_failure_is_reported(tmp_path: Any) -> None:
    bad_rules = tmp_path / "bad.yaml"
    bad_rules.write_text("groups: [{name: x, rules: [{alert: A, expr: 'sum('}]}]\n")
    with (
        pytest.raises(PrometheusError, match="exited"),
        prometheus_server("127.0.0.1:1", rule_files=[bad_rules]),
    ):
        pass
