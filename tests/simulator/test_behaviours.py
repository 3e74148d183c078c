"""Limits, PCI slot exhaustion, KubeVirt 1.6 auto-migration, the dynamic networks controller."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from kubernetes_asyncio.client import CustomObjectsApi

from simulator.cluster import SimulatedCluster
from simulator.manifests import vm_manifest
from tests.simulator.conftest import G, V, condition, entry, fast_config, get, migrate, plug, wait_for
from tests.simulator.test_integration import create_vm, wait_vmim


async def phases(api: CustomObjectsApi) -> list[str]:
    out = await api.list_namespaced_custom_object(G, V, "default", "virtualmachineinstancemigrations")
    return [m.get("status", {}).get("phase", "") for m in out["items"]]


async def test_limits_keep_vmims_pending(tmp_path: Path) -> None:
    cfg = fast_config(migration_mean_seconds=2.0, parallel_migrations_per_cluster=2, nodes=3)
    async with SimulatedCluster(cfg, kubeconfig_path=tmp_path / "kc") as cluster:
        from kubernetes_asyncio.config import new_client_from_config

        client = await new_client_from_config(config_file=str(cluster.kubeconfig_path))
        api = CustomObjectsApi(client)
        try:
            vms = [vm_manifest("default", f"lim{i}") for i in range(5)]
            await cluster.seed(vms)
            for i in range(5):
                await migrate(api, f"lim{i}")

            async def settled() -> list[str] | None:
                ps = await phases(api)
                running = [p for p in ps if p not in ("", "Pending", "Succeeded", "Failed")]
                return ps if len(running) == 2 and ps.count("Pending") == 3 else None

            await wait_for(settled, what="2 running, 3 pending")
            await asyncio.sleep(0.3)
            ps = await phases(api)
            assert ps.count("Pending") == 3, ps

            async def all_done() -> bool:
                return (await phases(api)).count("Succeeded") == 5

            await wait_for(all_done, timeout=20, what="all succeeded")
        finally:
            await client.close()


async def test_per_node_limit(tmp_path: Path) -> None:
    cfg = fast_config(migration_mean_seconds=2.0, parallel_outbound_migrations_per_node=1, nodes=1)
    async with SimulatedCluster(cfg, kubeconfig_path=tmp_path / "kc") as cluster:
        from kubernetes_asyncio.config import new_client_from_config

        client = await new_client_from_config(config_file=str(cluster.kubeconfig_path))
        api = CustomObjectsApi(client)
        try:
            await cluster.seed([vm_manifest("default", f"n{i}") for i in range(3)])
            for i in range(3):
                await migrate(api, f"n{i}")

            async def one_running() -> list[str] | None:
                ps = await phases(api)
                return ps if ps.count("Pending") == 2 else None

            await wait_for(one_running, what="one running per node")
        finally:
            await client.close()


async def test_slot_exhaustion_v1(cluster: SimulatedCluster, api: CustomObjectsApi) -> None:
    # v1: booted with 4 interfaces -> no placeholders; a 5th cannot attach after migration.
    await create_vm(api, vm_manifest("default", "full", [("a", "bridge"), ("b", "bridge"), ("c", "bridge")]))
    await plug(api, "full", "d")

    async def propagated() -> bool:
        v = await get(api, "virtualmachineinstances", "full")
        return any(i["name"] == "d" for i in v["spec"]["domain"]["devices"]["interfaces"])

    await wait_for(propagated)
    m = await migrate(api, "full")
    await wait_vmim(api, m["metadata"]["name"], "Succeeded")

    async def unsynced() -> dict[str, Any] | None:
        v = await get(api, "virtualmachineinstances", "full")
        c = condition(v, "Synchronized")
        return v if c and c["status"] == "False" else None

    v = await wait_for(unsynced, what="Synchronized=False")
    c = condition(v, "Synchronized")
    assert c is not None
    assert c["reason"] == "Synchronizing with the Domain failed."
    assert "internal error: No more available PCI slots" in c["message"]
    assert entry(v, "d")["infoSource"] == "multus-status"  # type: ignore[index]


async def test_hotplugged_disks_exhaust_slots(cluster: SimulatedCluster, api: CustomObjectsApi) -> None:
    hot = [
        {"name": f"hp{i}", "persistentVolumeClaim": {"claimName": f"hp{i}", "hotpluggable": True}}
        for i in range(2)
    ]
    # 2 interfaces -> 2 placeholders, both taken by hot-plugged disks.
    await create_vm(api, vm_manifest("default", "disks", [("a", "bridge")], volumes=hot))
    await plug(api, "disks", "b")

    async def propagated() -> bool:
        v = await get(api, "virtualmachineinstances", "disks")
        return any(i["name"] == "b" for i in v["spec"]["domain"]["devices"]["interfaces"])

    await wait_for(propagated)
    m = await migrate(api, "disks")
    await wait_vmim(api, m["metadata"]["name"], "Succeeded")

    async def unsynced() -> bool:
        c = condition(await get(api, "virtualmachineinstances", "disks"), "Synchronized")
        return bool(c and "No more available PCI slots" in c.get("message", ""))

    await wait_for(unsynced)


async def test_kubevirt_16_migration_required_and_workload_updater(tmp_path: Path) -> None:
    cfg = fast_config(kubevirt_version="v1.6.0", workload_update_methods=("LiveMigrate",), time_scale=0.05)
    async with SimulatedCluster(cfg, kubeconfig_path=tmp_path / "kc") as cluster:
        from kubernetes_asyncio.config import new_client_from_config

        client = await new_client_from_config(config_file=str(cluster.kubeconfig_path))
        api = CustomObjectsApi(client)
        try:
            await create_vm(api, vm_manifest("default", "auto", [("a", "bridge")]))
            await create_vm(api, vm_manifest("default", "autosriov"))
            await plug(api, "auto", "b")
            await plug(api, "autosriov", "s", "sriov")

            async def pending() -> dict[str, Any] | None:
                c = condition(await get(api, "virtualmachineinstances", "auto"), "MigrationRequired")
                return c if c else None

            c = await wait_for(pending, what="MigrationRequired on bridge plug")
            assert c["status"] == "False" and c["reason"] == "AutoMigrationPending"

            async def attached(name: str, net: str) -> bool:
                e = entry(await get(api, "virtualmachineinstances", name), net)
                return bool(e and "domain" in e["infoSource"])

            await wait_for(
                lambda: attached("auto", "b"), timeout=15, what="bridge plugged by workload updater"
            )
            await wait_for(
                lambda: attached("autosriov", "s"), timeout=15, what="sriov plugged by workload updater"
            )
            out = await api.list_namespaced_custom_object(G, V, "default", "virtualmachineinstancemigrations")
            names = {m["spec"]["vmiName"] for m in out["items"]}
            assert names == {"auto", "autosriov"}
            for m in out["items"]:
                assert m["metadata"]["name"].startswith("kubevirt-workload-update-")
                assert m["metadata"]["annotations"] == {"kubevirt.io/workloadUpdateMigration": ""}
            v = await get(api, "virtualmachineinstances", "auto")
            assert condition(v, "MigrationRequired") is None
        finally:
            await client.close()


async def test_migration_required_without_live_migrate(tmp_path: Path) -> None:
    cfg = fast_config(kubevirt_version="v1.6.0", time_scale=0.01)
    async with SimulatedCluster(cfg, kubeconfig_path=tmp_path / "kc") as cluster:
        from kubernetes_asyncio.config import new_client_from_config

        client = await new_client_from_config(config_file=str(cluster.kubeconfig_path))
        api = CustomObjectsApi(client)
        try:
            await create_vm(api, vm_manifest("default", "idle", [("a", "bridge")]))
            await plug(api, "idle", "b")

            async def flipped() -> bool:
                c = condition(await get(api, "virtualmachineinstances", "idle"), "MigrationRequired")
                return bool(c and c["status"] == "True" and c["reason"] == "AutoMigrationDueToLiveUpdate")

            await wait_for(flipped, what="True after the grace period")
            await asyncio.sleep(0.3)
            out = await api.list_namespaced_custom_object(G, V, "default", "virtualmachineinstancemigrations")
            assert out["items"] == []  # without LiveMigrate nothing migrates (issue #17329)
        finally:
            await client.close()


async def test_dnc_in_place(tmp_path: Path) -> None:
    cfg = fast_config(dnc_enabled=True, dnc_delay_seconds=0.05)
    async with SimulatedCluster(cfg, kubeconfig_path=tmp_path / "kc") as cluster:
        from kubernetes_asyncio.config import new_client_from_config

        client = await new_client_from_config(config_file=str(cluster.kubeconfig_path))
        api = CustomObjectsApi(client)
        try:
            await create_vm(api, vm_manifest("default", "dyn", [("a", "bridge")]))
            node = (await get(api, "virtualmachineinstances", "dyn"))["status"]["nodeName"]
            await plug(api, "dyn", "b")

            async def attached() -> dict[str, Any] | None:
                v = await get(api, "virtualmachineinstances", "dyn")
                e = entry(v, "b")
                return v if e and e["infoSource"] == "domain, guest-agent, multus-status" else None

            v = await wait_for(attached, what="in-place plug")
            assert v["status"]["nodeName"] == node
            out = await api.list_namespaced_custom_object(G, V, "default", "virtualmachineinstancemigrations")
            assert out["items"] == []
        finally:
            await client.close()


async def test_finalized_vmims_garbage_collected(tmp_path: Path) -> None:
    cfg = fast_config(migration_mean_seconds=0.05, finalized_migrations_kept=2)
    async with SimulatedCluster(cfg, kubeconfig_path=tmp_path / "kc") as cluster:
        from kubernetes_asyncio.config import new_client_from_config

        client = await new_client_from_config(config_file=str(cluster.kubeconfig_path))
        api = CustomObjectsApi(client)
        try:
            await cluster.seed([vm_manifest("default", "gc")])
            for _ in range(4):
                m = await migrate(api, "gc")
                await wait_vmim(api, m["metadata"]["name"], "Succeeded")

            async def collected() -> bool:
                return len(await phases(api)) == 2

            await wait_for(collected, what="only the newest 2 finalized VMIMs kept")
        finally:
            await client.close()


async def test_gc_freeze_option_freezes_after_seed_and_periodically(tmp_path: Path) -> None:
    """Benchmarks' option (ClusterConfig.gc_freeze_seconds): long-lived objects leave the cyclic GC's
    sight after seeding and then periodically; off by default; the task ends with the cluster."""
    import gc

    gc.unfreeze()
    try:
        async with SimulatedCluster(fast_config(), kubeconfig_path=tmp_path / "off") as plain:
            await plain.seed([vm_manifest("default", "p0")])
            assert gc.get_freeze_count() == 0
        cluster = SimulatedCluster(fast_config(gc_freeze_seconds=0.05), kubeconfig_path=tmp_path / "on")
        async with cluster:
            await cluster.seed([vm_manifest("default", "f0")])
            after_seed = gc.get_freeze_count()
            assert after_seed > 0
            gc.unfreeze()
            await asyncio.sleep(0.2)
            assert gc.get_freeze_count() > 0  # the periodic freeze ran again
            freezer = cluster._freezer
            assert freezer is not None and not freezer.done()
        assert freezer.done() and cluster._freezer is None
    finally:
        gc.unfreeze()
