"""Blocked paths: each ends with the agent's Warning Event on the VM naming the reason, and no
migration the agent should not have created (judged from the cluster's stored objects and Events).

The Event is the proof the agent reached its decision (a block is decided before any create), so
"no migration" is checked after it, never by sleeping.
"""

from __future__ import annotations

from typing import Any

import pytest

from agent.kubevirt import VMIMS
from agent.names import LABEL_AUTO_MIGRATE, OPT_OUT_VALUE
from simulator.apiserver import AdmissionDenied, AdmissionRequest
from simulator.apiserver.errors import ApiError
from simulator.manifests import hotplug_volumes, vm_manifest
from tests.e2e.world import NET_A, NS, World, agent_vmims, cluster_config, reasons, world


async def assert_blocked(
    w: World, vm: str, reason: str, *, event: str = "HotplugBlocked", migrations: int = 0
) -> dict[str, Any]:
    """The agent's Warning Event says ``hot plug blocked (<reason>)``, the gauge counts the VM, and the
    VM saw exactly ``migrations`` migrations by the agent (0 unless the block is learnt from one)."""
    ev = await w.wait_event(vm, event)
    assert ev["type"] == "Warning"
    assert f"hot plug blocked ({reason})" in ev["message"], ev["message"]
    assert ev["involvedObject"]["uid"] == (w.vm(vm) or {})["metadata"]["uid"]
    (agent,) = w.agents
    await w.wait(
        lambda: agent.sample("hotplug_agent_blocked_vms", reason=reason) == 1, f"blocked_vms{{{reason}}}"
    )
    assert len(agent_vmims(w, vm)) == migrations, w.describe()
    assert "HotplugCompleted" not in reasons(w.events(vm))
    return ev


async def test_not_live_migratable() -> None:
    async with world() as w:
        # pod network on bridge: not migratable
        await w.seed(vm_manifest(NS, "vm-nlm", NET_A, pod_binding="bridge"))
        await w.start_agent()
        await w.plug("vm-nlm")
        ev = await assert_blocked(w, "vm-nlm", "not-live-migratable")
        assert "InterfaceNotLiveMigratable" in ev["message"] or "bridge" in ev["message"]
        assert w.observer.created == []


async def test_opted_out() -> None:
    async with world() as w:
        await w.seed(vm_manifest(NS, "vm-optout", NET_A, labels={LABEL_AUTO_MIGRATE: OPT_OUT_VALUE}))
        await w.start_agent()
        await w.plug("vm-optout")
        await assert_blocked(w, "vm-optout", "opted-out")
        assert w.observer.created == []
        assert not w.recorder.report().violations


async def test_opted_out_by_annotation() -> None:
    """The way users also write it: the same key as an annotation opts the VM out too."""
    async with world() as w:
        body = vm_manifest(NS, "vm-optout-ann", NET_A)
        body["metadata"]["annotations"] = {LABEL_AUTO_MIGRATE: OPT_OUT_VALUE}
        await w.seed(body)
        await w.start_agent()
        await w.plug("vm-optout-ann")
        ev = await assert_blocked(w, "vm-optout-ann", "opted-out")
        assert "label or annotation" in ev["message"]
        assert w.observer.created == []
        assert not w.recorder.report().violations


async def test_restart_required() -> None:
    """An interface removed instead of set absent (plus a plug): KubeVirt sets RestartRequired."""
    async with world() as w:
        await w.seed(vm_manifest(NS, "vm-restart", [("net-a", "bridge"), ("net-b", "bridge")]))
        await w.start_agent()
        vm = w.vm("vm-restart") or {}
        spec = vm["spec"]["template"]["spec"]
        ifaces = [i for i in spec["domain"]["devices"]["interfaces"] if i["name"] != "net-b"]
        nets = [n for n in spec["networks"] if n["name"] != "net-b"]
        ifaces.append({"name": "hp-bridge", "bridge": {}})
        nets.append({"name": "hp-bridge", "multus": {"networkName": "e2e/hp-bridge"}})
        await w.edit_template("vm-restart", ifaces, nets)
        await assert_blocked(w, "vm-restart", "restart-required")
        cond = w.condition(w.vm("vm-restart"), "RestartRequired")
        assert cond is not None and cond["status"] == "True"
        assert w.observer.created == []


async def test_slots_exhausted_predicted_v1() -> None:
    """KubeVirt <= 1.5 reserves hot-plug slots only up to 4 interfaces: a VM booted with 4 has none."""
    async with world(cluster_config(kubevirt_version="v1.5.2")) as w:
        four = [("net-a", "bridge"), ("net-b", "bridge"), ("net-c", "bridge")]
        await w.seed(vm_manifest(NS, "vm-slots", four))
        agent = await w.start_agent()
        await w.plug("vm-slots")
        await assert_blocked(w, "vm-slots", "slots-exhausted", event="HotplugSlotsExhausted")
        assert w.observer.created == []
        assert agent.sample("hotplug_agent_slot_exhaustion_total", kind="predicted") == 1
        assert agent.sample("hotplug_agent_slot_exhaustion_total", kind="observed") == 0
        await w.wait(
            lambda: agent.sample("hotplug_agent_slot_exhausted_vms", kind="predicted") == 1, "slot gauge"
        )


async def test_slots_exhausted_observed_after_a_migration() -> None:
    """Hot-plugged disks took the free root ports (the interface count says there is room): the agent
    migrates once, the VMI then shows ``Synchronized=False`` / ``No more available PCI slots``, and the
    agent blocks the VM instead of migrating again."""
    async with world(cluster_config(kubevirt_version="v1.5.2")) as w:
        # v1: 4 - 2 interfaces = 2 free ports, both taken by the hot-plugged disks
        await w.seed(vm_manifest(NS, "vm-obs", NET_A, volumes=hotplug_volumes("vm-obs", 2)))
        agent = await w.start_agent()
        await w.plug("vm-obs")
        await assert_blocked(w, "vm-obs", "slots-exhausted", event="HotplugSlotsExhausted", migrations=1)
        sync = w.condition(w.vmi("vm-obs"), "Synchronized")
        assert sync is not None and sync["status"] == "False"
        assert "No more available PCI slots" in sync["message"]
        assert not w.attached("vm-obs", "hp-bridge")
        assert agent.sample("hotplug_agent_slot_exhaustion_total", kind="observed") == 1
        assert agent.sample("hotplug_agent_slot_exhaustion_total", kind="predicted") == 0
        assert len(w.observer.created) == 1


async def test_namespace_excluded() -> None:
    async with world() as w:
        await w.seed(vm_manifest(NS, "vm-excl", NET_A))
        await w.start_agent(exclude_namespaces=("e2e",))
        await w.plug("vm-excl")
        await assert_blocked(w, "vm-excl", "namespace-not-selected")
        assert w.observer.created == []


async def test_sriov_unplug_rejected_by_admission() -> None:
    """``state: absent`` on SR-IOV never reaches the cluster: KubeVirt's VM webhook refuses it."""
    async with world() as w:
        await w.seed(vm_manifest(NS, "vm-sriov", [("sriov-a", "sriov")]))
        await w.start_agent()
        with pytest.raises(ApiError) as err:
            await w.unplug("vm-sriov", "sriov-a")
        assert "supported only for bridge binding" in str(err.value)
        assert w.observer.created == []


async def test_sriov_removed_from_template_is_blocked() -> None:
    """Where an SR-IOV unplug does arise (the NIC removed from the template instead of set absent),
    the agent blocks it: KubeVirt cannot hot unplug SR-IOV, a migration would not remove it."""
    async with world() as w:
        await w.seed(vm_manifest(NS, "vm-sriov", [("net-a", "bridge"), ("sriov-a", "sriov")]))
        await w.start_agent()
        vm = w.vm("vm-sriov") or {}
        spec = vm["spec"]["template"]["spec"]
        ifaces = [i for i in spec["domain"]["devices"]["interfaces"] if i["name"] != "sriov-a"]
        nets = [n for n in spec["networks"] if n["name"] != "sriov-a"]
        await w.edit_template("vm-sriov", ifaces, nets)
        await assert_blocked(w, "vm-sriov", "sriov-unplug")
        assert w.observer.created == []


async def test_migration_rejected_by_the_webhook() -> None:
    """KubeVirt's migration webhook refuses with ``Cannot migrate VMI`` for a reason the VMI conditions
    do not show (here a hook plays a CPU-model check): blocked, no VMIM stored, failure counted."""
    async with world() as w:
        await w.seed(vm_manifest(NS, "vm-rej", NET_A))
        denied: list[str] = []

        async def reject(req: AdmissionRequest) -> None:
            if req.resource == VMIMS and req.operation == "CREATE":
                vmi = str((req.object.get("spec") or {}).get("vmiName", ""))
                if vmi == "vm-rej":
                    denied.append(vmi)
                    raise AdmissionDenied(
                        422,
                        "Cannot migrate VMI, Reason: CPUModeNotLiveMigratable, Message: host-passthrough "
                        "CPU model",
                        webhook_name="migration-create-validator.kubevirt.io",
                    )

        w.cluster.server.add_admission(reject)
        agent = await w.start_agent()
        await w.plug("vm-rej")
        ev = await assert_blocked(w, "vm-rej", "migration-rejected")
        assert "CPUModeNotLiveMigratable" in ev["message"]
        assert w.observer.created == []
        assert denied == ["vm-rej"], "one create attempt, then blocked"
        assert agent.sample("hotplug_agent_migration_failures_total", reason="create-rejected") == 1


async def test_retries_exhausted_gives_up() -> None:
    async with world(cluster_config(failure_rate=1.0)) as w:
        await w.seed(vm_manifest(NS, "vm-fail", NET_A))
        agent = await w.start_agent(max_attempts=2)
        await w.plug("vm-fail")
        gave_up = await w.wait_event("vm-fail", "HotplugMigrationGaveUp")
        assert gave_up["type"] == "Warning"
        assert "gave up after 2 attempts" in gave_up["message"]
        await assert_blocked(w, "vm-fail", "retries-exhausted", migrations=2)
        assert [m["status"]["phase"] for m in w.vmims("vm-fail")] == ["Failed", "Failed"]
        assert reasons(w.events("vm-fail", reason="HotplugMigrationRetry")) == ["HotplugMigrationRetry"]
        assert agent.sample("hotplug_agent_migration_failures_total", reason="migration-failed") == 2
        assert agent.sample("hotplug_agent_migration_retries_total") == 1
        assert w.observer.max_unfinished_per_vmi == 1


async def test_deadline_exceeded_cancels_and_retries() -> None:
    """Every migration hangs in Running: past the deadline the agent deletes (cancels) it and retries
    with a new one; never two at once for the VMI."""
    async with world(cluster_config(stuck_rate=1.0)) as w:
        await w.seed(vm_manifest(NS, "vm-stuck", NET_A))
        agent = await w.start_agent(max_attempts=2, migration_deadline_seconds=1.0)
        await w.plug("vm-stuck")
        await w.wait_event("vm-stuck", "HotplugMigrationGaveUp")
        ours = agent_vmims(w, "vm-stuck")
        assert len(ours) == 2, w.describe()
        for seen in ours:
            phases = w.observer.phases[(seen.namespace, seen.name)]
            # Cancelled, whichever phase it had reached (creationTimestamp has whole seconds, so a 1 s
            # deadline can come early): the simulator ends a deleted, unfinished VMIM as Failed.
            assert phases[-1] == "Failed", phases
        cancelled = [m for m in w.vmims("vm-stuck")]
        for vmim in cancelled:
            assert vmim["status"]["migrationState"].get("abortRequested") is True, vmim["status"]
        assert w.observer.max_unfinished_per_vmi == 1
        assert agent.sample("hotplug_agent_migration_failures_total", reason="deadline-exceeded") == 2
        assert agent.sample("hotplug_agent_migrations_total", result="cancelled", initiator="agent") == 2
        await assert_blocked(w, "vm-stuck", "retries-exhausted", migrations=2)
