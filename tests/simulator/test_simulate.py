"""Scenario plan determinism, and a manual-mode ``simulate`` run end to end with its ground-truth report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from simulator.cli import run_simulate
from simulator.cli_args import add_simulate_arguments
from simulator.scenario import ScenarioConfig, build_plan, edit_body


def test_plan_is_deterministic_and_covers_categories() -> None:
    a = build_plan(ScenarioConfig(vms=60, seed=3))
    b = build_plan(ScenarioConfig(vms=60, seed=3))
    assert [(p.name, p.category) for p in a] == [(p.name, p.category) for p in b]
    assert {p.category for p in a} >= {
        "bridge-plug",
        "sriov-plug",
        "bridge-unplug",
        "sriov-unplug",
        "opted-out",
    }
    unplug = next(p for p in a if p.category == "bridge-unplug")
    body = edit_body(unplug.body, unplug)
    ifaces = body["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"]
    assert {"name": "net-b", "bridge": {}, "state": "absent"} in ifaces


async def test_manual_simulate_completes(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    out = tmp_path / "report.json"
    args = parser.parse_args(
        [
            "--vms", "40", "--migration-mean-seconds", "0.15", "--migration-distribution", "fixed",
            "--request-window-seconds", "0.3", "--quiet-seconds", "1.5", "--timeout", "60",
            "--report", str(out), "--failure-rate", "0.05",
        ]
    )  # fmt: skip
    rc = await run_simulate(args)
    report = json.loads(out.read_text())
    assert rc == 0, report["violations"]
    assert report["requested"] > 20
    assert report["migrations"]["by_creator"]["manual"] > 0
    assert report["migrations"]["max_concurrent_per_vmi"] == 1
    assert report["migrations"]["max_concurrent_running"] <= 5
    assert report["migrations"]["max_running_per_node"] <= 2
    assert report["migrations"]["for_opted_out"] == 0
    assert report["makespan_seconds"] is not None
    by_cat: dict[str, list[dict[str, object]]] = {}
    for r in report["requests"]:
        by_cat.setdefault(str(r["category"]), []).append(r)
    assert all(r["completed"] for r in by_cat.get("bridge-plug", []))
    assert all(not r["accepted"] for r in by_cat.get("sriov-unplug", []))
    assert all(r["final_state"] == "opted-out" for r in by_cat.get("opted-out", []))
    assert all(r["final_state"] == "slots-exhausted" for r in by_cat.get("slots-predictable", []))
    assert all(r["final_state"] == "slots-exhausted" for r in by_cat.get("slots-observed", []))
    assert all(
        r["final_state"] == "not-live-migratable"
        for c, rs in by_cat.items()
        if c.startswith("not-")
        for r in rs
    )


async def test_run_cluster_serves_until_stopped(tmp_path: Path) -> None:
    import asyncio

    from kubernetes_asyncio.client import CustomObjectsApi
    from kubernetes_asyncio.config import new_client_from_config

    from simulator.cli import run_cluster
    from simulator.cli_args import add_cluster_arguments

    parser = argparse.ArgumentParser()
    add_cluster_arguments(parser)
    kc = tmp_path / "kc"
    args = parser.parse_args(["--vms", "12", "--kubeconfig-out", str(kc)])
    stop = asyncio.Event()
    task = asyncio.create_task(run_cluster(args, stop))
    for _ in range(200):
        if kc.exists():
            break
        await asyncio.sleep(0.02)
    client = await new_client_from_config(config_file=str(kc))
    try:
        api = CustomObjectsApi(client)
        for _ in range(100):
            vms = await api.list_cluster_custom_object("kubevirt.io", "v1", "virtualmachines")
            if len(vms["items"]) == 12:
                break
            await asyncio.sleep(0.05)
        assert len(vms["items"]) == 12
        kv = await api.get_namespaced_custom_object("kubevirt.io", "v1", "kubevirt", "kubevirts", "kubevirt")
        assert kv["status"]["phase"] == "Deployed"
        assert kv["status"]["observedKubeVirtVersion"] == "v1.5.2"
    finally:
        await client.close()
        stop.set()
    assert await task == 0


async def test_seed_by_count(tmp_path: Path) -> None:
    from simulator.cluster import SimulatedCluster
    from tests.simulator.conftest import fast_config

    async with SimulatedCluster(fast_config(), kubeconfig_path=tmp_path / "kc") as cluster:
        bodies = await cluster.seed(25, namespaces=["x", "y"])
        assert len(bodies) == 25
        assert cluster.server.store.count("virtualmachineinstances") == 25
        assert {b["metadata"]["namespace"] for b in bodies} == {"x", "y"}


async def test_report_attributes_creators_and_flags_opted_out(tmp_path: Path) -> None:
    from kubernetes_asyncio.client import CustomObjectsApi
    from kubernetes_asyncio.config import new_client_from_config

    from agent.names import LABEL_AUTO_MIGRATE, OPT_OUT_VALUE
    from simulator.cluster import SimulatedCluster
    from simulator.manifests import vm_manifest
    from simulator.report import Recorder
    from tests.simulator.conftest import fast_config, migrate, wait_for

    async with SimulatedCluster(fast_config(), kubeconfig_path=tmp_path / "kc") as cluster:
        recorder = Recorder(cluster.server.store)
        cluster.server.add_event_observer(recorder.observe)
        opted_out = {LABEL_AUTO_MIGRATE: OPT_OUT_VALUE}
        await cluster.seed(
            [
                vm_manifest("default", "r1"),
                vm_manifest("default", "r2", labels=opted_out),
                vm_manifest("default", "r3"),
            ]
        )
        client = await new_client_from_config(config_file=str(cluster.kubeconfig_path))
        try:
            api = CustomObjectsApi(client)
            agent_labels: dict[str, Any] = {"labels": {"app.kubernetes.io/managed-by": "hotplug-agent"}}
            await migrate(api, "r1", generateName="hotplug-r1-", **agent_labels)
            await migrate(api, "r2", generateName="hotplug-r2-", **agent_labels)
            await migrate(api, "r3", annotations={"kubevirt.io/workloadUpdateMigration": ""})

            async def done() -> bool:
                return recorder.stats.succeeded == 3

            await wait_for(done)
        finally:
            await client.close()
        report = recorder.report()
        assert report.migrations.by_creator == {"agent": 2, "kubevirt": 1, "manual": 0}
        assert report.migrations.for_opted_out == 1
        assert report.violations == ["agent migrated opted-out VM default/r2"]
