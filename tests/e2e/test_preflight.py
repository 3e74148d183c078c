"""The preflight end to end: what the cluster's infrastructure says before a migration is started.

Each test runs the real agent against the simulated cluster, which behaves as KubeVirt v1.7.0 does: a
missing NetworkAttachmentDefinition keeps a migration Pending, a target pod no node fits stays
unschedulable, a drained node is emptied by KubeVirt's own evacuation migrations. The agent must start
none of those migrations, say why (an Event, a metric), and go on by itself — no restart, no polling —
once the cause is gone.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from simulator.kubevirt.pods import SCARCE_RESOURCE
from simulator.manifests import vm_manifest
from tests.e2e.world import NET_A, NS, agent_vmims, cluster_config, world

#: Long enough for the agent to have acted if it were going to (its settle/grace are 0.2/0.3 s here).
QUIET = 2.0


async def test_missing_nad_blocks_until_it_is_created() -> None:
    async with world() as w:
        await w.seed(vm_manifest(NS, "vm-nad", NET_A))
        agent = await w.start_agent()
        await w.plug("vm-nad", "hp-late", nad=False)
        event = await w.wait_event("vm-nad", "HotplugBlocked")
        assert "network-missing" in event["message"] and f"{NS}/hp-late" in event["message"]
        await w.wait(
            lambda: agent.sample("hotplug_agent_blocked_vms", reason="network-missing") == 1, "gauge"
        )
        await asyncio.sleep(QUIET)
        assert not agent_vmims(w, "vm-nad"), "no migration while its NAD is missing"

        await w.cluster.ensure_nads([((NS, "hp-late"), "bridge")])
        await w.wait(lambda: w.attached("vm-nad", "hp-late"), "attached once the NAD exists")
        assert len(agent_vmims(w, "vm-nad")) == 1
        await w.wait(
            lambda: agent.sample("hotplug_agent_blocked_vms", reason="network-missing") == 0, "unblocked"
        )
        assert agent.sample("hotplug_agent_network_preflight_enabled") == 1


async def test_nad_arrival_requeues_only_the_vmis_waiting_for_it() -> None:
    async with world() as w:
        await w.seed(vm_manifest(NS, "vm-a", NET_A), vm_manifest(NS, "vm-b", NET_A))
        agent = await w.start_agent()
        await w.plug("vm-a", "hp-x", nad=False)
        await w.plug("vm-b", "hp-y", nad=False)
        await w.wait(lambda: agent.sample("hotplug_agent_blocked_vms", reason="network-missing") == 2, "both")
        await w.cluster.ensure_nads([((NS, "hp-x"), "bridge")])
        await w.wait(lambda: w.attached("vm-a", "hp-x"), "vm-a attached")
        await asyncio.sleep(QUIET)
        assert not agent_vmims(w, "vm-b"), "vm-b's NAD is still missing"
        assert agent.sample("hotplug_agent_blocked_vms", reason="network-missing") == 1


async def test_no_sriov_capacity_blocks_until_vfs_are_free() -> None:
    # One VF of the scarce resource per node: booted with one, a second plug needs two on another node.
    async with world(cluster_config(nodes=2)) as w:
        await w.seed(vm_manifest(NS, "vm-vf", [("cx5-a", "sriov")]))
        agent = await w.start_agent()
        await w.plug("vm-vf", "cx5-b", "sriov")
        event = await w.wait_event("vm-vf", "HotplugBlocked")
        assert "no-target-capacity" in event["message"] and SCARCE_RESOURCE in event["message"]
        await asyncio.sleep(QUIET)
        assert not agent_vmims(w, "vm-vf")

        # The admin adds VFs on the other node: the node's change releases the VM at once.
        source = w.vmi("vm-vf")["status"]["nodeName"]  # type: ignore[index]
        other = next(n for n in w.cluster.nodes if n != source)
        node = w.store.get("nodes", None, other)
        allocatable = {**node["status"]["allocatable"], SCARCE_RESOURCE: "4"}
        await w.store.update(
            "nodes", {**node, "status": {**node["status"], "allocatable": allocatable}}, subresource="status"
        )
        await w.wait(lambda: w.attached("vm-vf", "cx5-b"), "attached once VFs are free")
        assert len(agent_vmims(w, "vm-vf")) == 1
        await w.wait(
            lambda: agent.sample("hotplug_agent_blocked_vms", reason="no-target-capacity") == 0, "gauge"
        )


async def test_cordoned_nodes_are_no_target_and_uncordoning_releases() -> None:
    async with world(cluster_config(nodes=2)) as w:
        await w.seed(vm_manifest(NS, "vm-c", NET_A))
        source = w.vmi("vm-c")["status"]["nodeName"]  # type: ignore[index]
        other = next(n for n in w.cluster.nodes if n != source)
        await cordon(w, other, True)
        agent = await w.start_agent()
        await w.plug("vm-c")
        await w.wait(
            lambda: agent.sample("hotplug_agent_pending_hotplugs", state="no-target-node") == 1, "waits"
        )
        await asyncio.sleep(QUIET)
        assert not agent_vmims(w, "vm-c"), "nowhere to go: no migration"
        assert not w.events("vm-c", reason="HotplugBlocked"), "a wait, not a block"

        await cordon(w, other, False)
        await w.wait(lambda: w.attached("vm-c", "hp-bridge"), "attached once a node is schedulable")
        assert len(agent_vmims(w, "vm-c")) == 1


async def test_a_drained_node_is_left_to_kubevirts_evacuation() -> None:
    async with world(cluster_config(nodes=3)) as w:
        await w.seed(vm_manifest(NS, "vm-d", NET_A))
        source = w.vmi("vm-d")["status"]["nodeName"]  # type: ignore[index]
        agent = await w.start_agent(settle_seconds=1.0)
        await w.plug("vm-d")
        await taint(w, source)  # kubectl drain with KubeVirt's drain taint, right after the edit
        await w.wait(lambda: w.attached("vm-d", "hp-bridge"), "KubeVirt's evacuation delivered the hot plug")
        assert not agent_vmims(w, "vm-d"), "the agent left it to KubeVirt"
        assert w.observer.for_vmi("vm-d", "kubevirt")
        await w.wait(
            lambda: agent.sample("hotplug_agent_hotplugs_completed_total", operation="plug") == 1, "seen"
        )


async def test_outside_the_window_nothing_starts_and_plan_shows_when() -> None:
    opens = time.gmtime(time.time() + 2 * 3600)
    window = f"{opens.tm_hour:02d}:{opens.tm_min:02d}-{(opens.tm_hour + 1) % 24:02d}:{opens.tm_min:02d}"
    async with world() as w:
        await w.seed(vm_manifest(NS, "vm-w", NET_A))
        agent = await w.start_agent(migration_window=window)
        await w.plug("vm-w")
        await w.wait(
            lambda: agent.sample("hotplug_agent_pending_hotplugs", state="outside-window") == 1, "waits"
        )
        assert agent.sample("hotplug_agent_migration_window_open") == 0
        assert agent.sample("hotplug_agent_migration_window_next_open_timestamp_seconds") > time.time() + 3600
        await asyncio.sleep(QUIET)
        assert not agent_vmims(w, "vm-w")


async def test_plan_explains_each_new_reason(capsys: Any) -> None:
    from agent.config import AgentConfig
    from agent.plan import run_plan

    opens = time.gmtime(time.time() + 2 * 3600)
    window = f"{opens.tm_hour:02d}:{opens.tm_min:02d}-{(opens.tm_hour + 1) % 24:02d}:{opens.tm_min:02d}"
    async with world(cluster_config(nodes=2)) as w:
        await w.seed(
            vm_manifest(NS, "vm-nad", NET_A),
            vm_manifest(NS, "vm-vf", [("cx5-a", "sriov")]),
            vm_manifest(NS, "vm-ok", NET_A),
        )
        await w.plug("vm-nad", "hp-late", nad=False)
        await w.plug("vm-vf", "cx5-b", "sriov")
        await w.plug("vm-ok")
        await w.wait(
            lambda: all(len(w.vmi(n)["spec"]["networks"]) == 3 for n in ("vm-nad", "vm-vf", "vm-ok")),
            "synced",
        )  # type: ignore[index]
        config = AgentConfig(
            kubeconfig=str(w.cluster.kubeconfig_path), identity="plan", migration_window=window
        )
        assert await run_plan(config) == 0
    out = capsys.readouterr().out
    lines = {
        line.split()[2]: line
        for line in out.splitlines()
        if line.startswith(("-", "1", "2")) and "vm-" in line
    }
    assert "network-missing" in lines["vm-nad"] and f"{NS}/hp-late" in lines["vm-nad"]
    assert "no-target-capacity" in lines["vm-vf"] and SCARCE_RESOURCE in lines["vm-vf"]
    assert "outside-window" in lines["vm-ok"]
    assert "migration window: closed; the next one opens" in out


async def cordon(w: Any, node: str, on: bool) -> None:
    obj = w.store.get("nodes", None, node)
    await w.store.update("nodes", {**obj, "spec": {**(obj.get("spec") or {}), "unschedulable": on}})


async def taint(w: Any, node: str) -> None:
    obj = w.store.get("nodes", None, node)
    taints = [{"key": "kubevirt.io/drain", "value": "draining", "effect": "NoSchedule"}]
    await w.store.update("nodes", {**obj, "spec": {**(obj.get("spec") or {}), "taints": taints}})
