"""Scheduling: a busy VMI waits for someone else's migration; many pending hot plugs never exceed the
cluster cap (read from the KubeVirt CR) nor the per-node cap. Concurrency is measured by an observer
of the API server over every stored VMIM (unfinished = not yet Succeeded/Failed, *including* Pending:
the simulated KubeVirt would queue extra migrations itself, the agent must not create them)."""

from __future__ import annotations

from agent.kubevirt import VMIMS
from simulator.apiserver import RequestRecord
from simulator.manifests import vm_manifest
from tests.e2e.world import NET_A, NS, agent_vmims, cluster_config, world


async def test_busy_vmi_waits_for_a_running_manual_migration() -> None:
    async with world(cluster_config(migration_mean_seconds=1.5)) as w:
        await w.seed(vm_manifest(NS, "vm-busy", NET_A))
        creates: list[int] = []

        def on_request(rec: RequestRecord) -> None:
            if rec.resource == VMIMS and rec.verb == "create":
                creates.append(rec.status)

        w.cluster.server.add_request_observer(on_request)
        await w.start_agent()
        manual = await w.store.create(
            VMIMS,
            {
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachineInstanceMigration",
                "metadata": {"generateName": "kubevirt-migrate-vm-", "namespace": "e2e"},
                "spec": {"vmiName": "vm-busy"},
            },
        )
        key = ("e2e", manual["metadata"]["name"])
        # Plug once the manual migration has captured its target networks: it cannot carry the plug.
        await w.wait(
            lambda: set(w.observer.phases.get(key, [])) & {"Scheduled", "PreparingTarget"},
            "manual migration past Scheduling",
        )
        await w.plug("vm-busy")
        await w.wait_event("vm-busy", "HotplugCompleted")
        assert w.attached("vm-busy", "hp-bridge")
        assert w.observer.phases[key][-1] == "Succeeded"
        (ours,) = agent_vmims(w, "vm-busy")
        assert ours.unfinished_before == 0, "the agent created its migration only after the manual one ended"
        assert w.observer.max_unfinished_per_vmi == 1
        assert creates == [201], "no create attempt (and no in-flight rejection) while the VMI was busy"


async def test_cluster_cap_from_the_kubevirt_cr() -> None:
    """12 hot plugs at once, ``parallelMigrationsPerCluster: 3`` in the KubeVirt CR and no agent flag."""
    n = 12
    cfg = cluster_config(
        migration_mean_seconds=0.6, parallel_migrations_per_cluster=3, parallel_outbound_migrations_per_node=3
    )
    async with world(cfg) as w:
        await w.seed(*(vm_manifest(NS, f"vm-{i:02d}", NET_A) for i in range(n)))
        agent = await w.start_agent(settle_seconds=0.5)
        for i in range(n):
            await w.plug(f"vm-{i:02d}")
        await w.wait(lambda: w.recorder.completed_count == n, "every hot plug completed", timeout=90)
        assert w.observer.by_creator() == {"agent": n}
        assert w.observer.max_unfinished <= 3, w.observer.max_unfinished
        assert w.observer.max_unfinished_per_vmi == 1
        assert agent.sample("hotplug_agent_migration_limit", scope="cluster") == 3
        assert agent.sample("hotplug_agent_rate_limited_dispatches_total", limit="cluster") > 0, (
            "the cap held dispatches back"
        )
        assert not w.recorder.report().violations


async def test_per_node_cap_flag() -> None:
    """``--max-per-node 1`` over KubeVirt's larger limits: one unfinished migration per source node."""
    n = 10
    cfg = cluster_config(
        nodes=2,
        migration_mean_seconds=0.5,
        parallel_migrations_per_cluster=20,
        parallel_outbound_migrations_per_node=20,
    )
    async with world(cfg) as w:
        await w.seed(*(vm_manifest(NS, f"vm-{i:02d}", NET_A) for i in range(n)))
        agent = await w.start_agent(settle_seconds=0.5, max_per_node=1)
        for i in range(n):
            await w.plug(f"vm-{i:02d}")
        await w.wait(lambda: w.recorder.completed_count == n, "every hot plug completed", timeout=90)
        assert w.observer.by_creator() == {"agent": n}
        assert w.observer.max_unfinished_per_node <= 1, w.observer.max_unfinished_per_node
        assert agent.sample("hotplug_agent_migration_limit", scope="node") == 1
        assert agent.sample("hotplug_agent_rate_limited_dispatches_total", limit="node") > 0
