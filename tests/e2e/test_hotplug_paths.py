"""The migrate paths: bridge plug, SR-IOV plug (no bridge grace), bridge unplug — judged by the cluster.

Each test seeds one running VM, starts the real agent, edits the VM the way a user does, and waits for
the cluster to show the outcome: exactly one migration, created by the agent, and the interface
attached (``domain`` in ``infoSource``) or gone from status, VMI spec and VM template, plus the agent's
``HotplugCompleted`` Event on the VM.
"""

from __future__ import annotations

from simulator.manifests import vm_manifest
from tests.e2e.world import NET_A, NS, agent_vmims, cluster_config, reasons, world


async def test_bridge_plug_one_migration_attached_and_event() -> None:
    async with world() as w:
        await w.seed(vm_manifest(NS, "vm-bridge", NET_A))
        agent = await w.start_agent()
        await w.plug("vm-bridge", "hp-bridge", "bridge")
        await w.wait_event("vm-bridge", "HotplugCompleted")
        assert w.attached("vm-bridge", "hp-bridge"), w.info_source("vm-bridge", "hp-bridge")
        ours = agent_vmims(w, "vm-bridge")
        assert len(ours) == 1, w.describe()
        assert len(w.observer.created) == 1, "nobody else migrated it"
        (vmim,) = w.vmims("vm-bridge")
        assert vmim["status"]["phase"] == "Succeeded"
        assert vmim["metadata"]["generateName"] == "hotplug-vm-bridge-"
        assert vmim["metadata"]["labels"]["kubevirt.io/vmi-name"] == "vm-bridge"
        told = reasons(w.events("vm-bridge"))
        assert told[0] == "HotplugWaiting"  # the settle window began
        assert [r for r in told if r != "HotplugWaiting"] == ["HotplugMigrationStarted", "HotplugCompleted"]
        assert "hp-bridge" in w.events("vm-bridge", reason="HotplugCompleted")[0]["message"]
        assert agent.sample("hotplug_agent_hotplugs_completed_total", operation="plug") == 1
        assert agent.sample("hotplug_agent_migrations_total", result="succeeded", initiator="agent") == 1
        assert not w.recorder.report().violations


async def test_sriov_plug_migrates_without_the_bridge_grace() -> None:
    """SR-IOV cannot be plugged in place by the dynamic networks controller: no grace applies, so a
    bridge grace of an hour must not hold the SR-IOV plug back."""
    async with world() as w:
        await w.seed(vm_manifest(NS, "vm-sriov", NET_A))
        await w.start_agent(bridge_grace_seconds=3600.0)
        await w.plug("vm-sriov", "hp-sriov", "sriov")
        await w.wait_event("vm-sriov", "HotplugCompleted")
        assert w.attached("vm-sriov", "hp-sriov")
        assert len(agent_vmims(w, "vm-sriov")) == 1
        assert len(w.observer.created) == 1


async def test_bridge_plug_waits_out_the_grace_when_the_dnc_plugs_in_place() -> None:
    """With the dynamic networks controller running, a bridge plug lands in place within the grace:
    the agent never migrates (the grace is long; the DNC is quick)."""
    async with world(cluster_config(dnc_enabled=True, dnc_delay_seconds=0.2)) as w:
        await w.seed(vm_manifest(NS, "vm-dnc", NET_A))
        await w.start_agent(bridge_grace_seconds=3600.0)
        await w.plug("vm-dnc", "hp-bridge", "bridge")
        await w.wait(lambda: w.attached("vm-dnc", "hp-bridge"), "in-place attach")
        assert w.observer.created == []


async def test_bridge_unplug_leaves_status_spec_then_template() -> None:
    async with world() as w:
        await w.seed(vm_manifest(NS, "vm-unplug", [("net-a", "bridge"), ("net-b", "bridge")]))
        await w.start_agent()
        assert w.attached("vm-unplug", "net-b")
        await w.unplug("vm-unplug", "net-b")

        def template_names() -> set[str]:
            vm = w.vm("vm-unplug") or {}
            return {i["name"] for i in vm["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"]}

        def vmi_spec_names() -> set[str]:
            vmi = w.vmi("vm-unplug") or {}
            return {i["name"] for i in vmi["spec"]["domain"]["devices"]["interfaces"]}

        await w.wait(lambda: "net-b" not in template_names(), "net-b gone from the VM template")
        assert w.info_source("vm-unplug", "net-b") is None, "left the VMI status"
        assert "net-b" not in vmi_spec_names(), "left the VMI spec"
        assert {"default", "net-a"} <= template_names()
        assert w.attached("vm-unplug", "net-a"), "the other interface stays"
        assert len(agent_vmims(w, "vm-unplug")) == 1
        assert len(w.observer.created) == 1
        await w.wait_event("vm-unplug", "HotplugCompleted")


async def test_bridge_unplug_completes_once() -> None:
    """One unplug is one completion: a single ``HotplugCompleted`` Event, after the migration, and
    the completion counter and latency histogram count it once."""
    async with world() as w:
        await w.seed(vm_manifest(NS, "vm-unplug", [("net-a", "bridge"), ("net-b", "bridge")]))
        agent = await w.start_agent()
        await w.unplug("vm-unplug", "net-b")
        await w.wait(lambda: w.recorder.completed_count == 1, "unplug complete in the cluster")
        await w.wait(lambda: w.events("vm-unplug", reason="HotplugCompleted"), "HotplugCompleted")
        # Let the agent settle: its gauge of pending work drops to 0 once it forgot the VMI.
        await w.wait(lambda: agent.parsed().sum("hotplug_agent_pending_hotplugs") == 0, "agent idle")
        told = reasons(w.events("vm-unplug"))
        assert told[0] == "HotplugWaiting"  # the settle window began
        assert [r for r in told if r != "HotplugWaiting"] == ["HotplugMigrationStarted", "HotplugCompleted"]
        assert agent.sample("hotplug_agent_hotplugs_completed_total", operation="unplug") == 1
        assert agent.sample("hotplug_agent_hotplug_latency_seconds_count", operation="unplug") == 1
