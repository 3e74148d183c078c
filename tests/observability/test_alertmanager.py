"""The agent's alerts reach a real Alertmanager, routed as docs/alerts.md shows.

* The example ``alertmanager.yml`` of docs/alerts.md passes ``amtool check-config`` (and a broken one
  does not: the check bites).
* End to end: the real agent against the simulated cluster blocks a VM that cannot live migrate; a real
  Prometheus (Debian's) scrapes the agent with the chart's PrometheusRule as rendered by Helm (the blocked
  alert's ``for`` shortened through ``prometheusRule.customRules``, a runbook URL template and an extra
  label through the other values) and sends to a real Alertmanager (Debian's) running the docs' route,
  whose webhook receiver, served by this test, sees ``HotplugAgentVMsBlocked`` fire with its severity,
  runbook URL and summary, on the team receiver and not the pager, then resolve once the VM is gone.
"""

from __future__ import annotations

import asyncio
import copy
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from simulator.manifests import vm_manifest
from tests.chart.helm import Helm, find_helm
from tests.e2e.world import NET_A, NS, VMS, cluster_config, world
from tests.observability.alertmanager import amtool_check_config, async_alertmanager, docs_route_config
from tests.observability.prometheus_server import ScrapeTarget, async_prometheus_server, free_port

pytestmark = pytest.mark.tools  # amtool, prometheus-alertmanager, prometheus, helm

ALERT = "HotplugAgentVMsBlocked"
SAFETY = 120.0  # a safety net for each wait, never a timing assertion


def test_docs_route_passes_amtool(tmp_path: Path) -> None:
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(docs_route_config(), sort_keys=False))
    proc = amtool_check_config(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_amtool_rejects_a_broken_route(tmp_path: Path) -> None:
    config = docs_route_config()
    config["route"]["routes"][0]["receiver"] = "nobody"
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = amtool_check_config(path)
    assert proc.returncode != 0
    assert "nobody" in proc.stdout + proc.stderr


def test_every_receiver_of_the_docs_route_is_used() -> None:
    config = docs_route_config()

    def used(route: dict[str, Any]) -> set[str]:
        names = {route["receiver"]} if "receiver" in route else set()
        for child in route.get("routes", []):
            names |= used(child)
        return names

    assert used(config["route"]) == {r["name"] for r in config["receivers"]}
    team = config["route"]["routes"][0]
    assert team["matchers"] == ['kubernetes_operator_component="hotplug-agent"']


def rendered_rules(helm: Helm, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """The chart's PrometheusRule spec with a 5 s `for` on the blocked alert, as a rule file."""
    spec = helm.render(
        set_values=(
            "prometheusRule.enabled=true",
            f"prometheusRule.customRules.{ALERT}.for=5s",
            "prometheusRule.runbookUrlTemplate=https://runbooks.example.com/hotplug-agent/%s",
            "prometheusRule.additionalRuleLabels.team=virt-platform",
        )
    ).one("PrometheusRule")["spec"]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    rule = next(r for g in spec["groups"] for r in g["rules"] if r["alert"] == ALERT)
    return path, rule


def route_towards(receiver_url: str) -> dict[str, Any]:
    """The docs' route with its webhooks pointed at this test and its timings shortened."""
    config = copy.deepcopy(docs_route_config())
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"{receiver_url}/{receiver['name']}"
    routes = [config["route"], *config["route"]["routes"], *config["route"]["routes"][0].get("routes", [])]
    for route in routes:
        route.update({"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"})
    return config


async def test_blocked_vm_alert_fires_and_resolves_through_alertmanager(tmp_path: Path) -> None:
    helm = Helm(find_helm())
    rules_path, rule = rendered_rules(helm, tmp_path)
    notifications: dict[str, list[dict[str, Any]]] = {"virt-platform": [], "virt-platform-pager": []}

    async def webhook(request: web.Request) -> web.Response:
        notifications[request.match_info["receiver"]].append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{receiver}", webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()

    def alerts(status: str) -> list[dict[str, Any]]:
        return [
            alert
            for payload in notifications["virt-platform"]
            for alert in payload["alerts"]
            if alert["labels"].get("alertname") == ALERT and alert["status"] == status
        ]

    async def wait(predicate: Any, what: str) -> None:
        deadline = time.monotonic() + SAFETY
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {notifications}"
            await asyncio.sleep(0.2)

    try:
        async with (
            world(cluster_config()) as w,
            async_alertmanager(route_towards(f"http://127.0.0.1:{port}")) as alertmanager,
        ):
            await w.seed(
                vm_manifest(NS, "vm-nlm", NET_A, pod_binding="bridge")
            )  # pod network on bridge: not migratable
            agent = await w.start_agent(http=True)
            await w.plug("vm-nlm")
            await w.wait(
                lambda: agent.sample("hotplug_agent_blocked_vms", reason="not-live-migratable") == 1,
                "blocked",
            )
            target = ScrapeTarget(
                f"127.0.0.1:{agent.port}", labels={"namespace": "hotplug", "pod": "hotplug-agent-0"}
            )
            async with async_prometheus_server(
                target, rule_files=[rules_path], alertmanagers=[alertmanager]
            ) as prometheus:
                await wait(lambda: alerts("firing"), f"{ALERT} firing at the receiver")
                firing = alerts("firing")[0]
                assert firing["labels"] == {
                    **rule["labels"],
                    "alertname": ALERT,
                    "namespace": "hotplug",
                    "reason": "not-live-migratable",
                }
                assert firing["labels"]["severity"] == "info"
                assert firing["labels"]["team"] == "virt-platform"
                assert (
                    firing["annotations"]["runbook_url"]
                    == f"https://runbooks.example.com/hotplug-agent/{ALERT}"
                )
                assert firing["annotations"]["summary"] == rule["annotations"]["summary"]
                assert "blocked with reason not-live-migratable" in firing["annotations"]["description"]
                # Routed to the team, not paged: its operator_health_impact is not critical.
                assert not notifications["virt-platform-pager"]

                await w.store.delete(VMS, NS, "vm-nlm")
                await w.wait(
                    lambda: agent.sample("hotplug_agent_blocked_vms", reason="not-live-migratable") == 0,
                    "the blocked gauge drops",
                )
                await wait(lambda: alerts("resolved"), f"{ALERT} resolved at the receiver")
                assert not await prometheus.query(f'ALERTS{{alertname="{ALERT}", alertstate="firing"}}')
    finally:
        await runner.cleanup()
