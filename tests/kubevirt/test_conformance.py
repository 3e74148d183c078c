"""One suite, two KubeVirts: every behaviour the agent depends on, on the simulated cluster and on real
KubeVirt (the default release, its node side emulated). A difference fails one of the two; fixed in
the simulator or listed in ``SIMULATOR_DIFFERENCES`` with its reason (docs/simulator.md says the same).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from simulator.real.kubevirt import KubeVirtSettings
from tests.kubevirt.helpers import VMIMS, VMIS, VMS, Env, condition, info_sources, wait_for

VMIM_PHASES = ["Pending", "Scheduling", "Scheduled", "PreparingTarget", "TargetReady", "Running", "Succeeded"]


def interfaces(obj: dict[str, Any] | None, *, template: bool = False) -> dict[str, dict[str, Any]]:
    spec = (obj or {}).get("spec") or {}
    if template:
        spec = spec["template"]["spec"]
    return {i["name"]: i for i in spec["domain"]["devices"]["interfaces"]}


def networks(obj: dict[str, Any] | None, *, template: bool = False) -> dict[str, dict[str, Any]]:
    spec = (obj or {}).get("spec") or {}
    if template:
        spec = spec["template"]["spec"]
    return {n["name"]: n for n in spec.get("networks") or []}


def refused(exc: pytest.ExceptionInfo[ApiException]) -> tuple[int, str]:
    import json

    body = json.loads(exc.value.body)
    return exc.value.status, str(body.get("message", ""))


async def migrate_and_wait(env: Env, vmi: str) -> dict[str, Any]:
    vmim = await env.migrate(vmi)
    return await env.wait_vmim_final(vmim["metadata"]["name"], 90)


async def test_a_hot_plug_reaches_the_vmi_spec_and_asks_for_a_migration(kv_env: Env) -> None:
    env = kv_env
    await env.create_vm("hp", [("net-a", "bridge")])
    await env.plug("hp", "hp1")

    async def synced() -> dict[str, Any] | None:
        vmi = await env.get(VMIS, "hp")
        return vmi if "hp1" in interfaces(vmi) else None

    vmi = await wait_for(synced, "hp1 in the VMI spec", 30)
    assert interfaces(vmi)["hp1"] == {"name": "hp1", "bridge": {}}
    assert networks(vmi)["hp1"] == {"name": "hp1", "multus": {"networkName": f"{env.ns}/hp1"}}
    assert info_sources(vmi, "hp1") == set()

    async def pending() -> dict[str, Any] | None:
        return condition(await env.get(VMIS, "hp"), "MigrationRequired")

    required = await wait_for(pending, "MigrationRequired on the VMI", 30)
    assert (required["status"], required["reason"]) == ("False", "AutoMigrationPending")
    vm = await env.get(VMS, "hp")
    assert condition(vm, "RestartRequired") is None


async def test_an_sriov_plug_requires_a_migration_at_once(kv_env: Env) -> None:
    env = kv_env
    await env.create_vm("sr", [("net-a", "bridge")])
    await env.plug("sr", "hp-sriov", "sriov")

    async def required() -> dict[str, Any] | None:
        cond = condition(await env.get(VMIS, "sr"), "MigrationRequired")
        return cond if cond and cond["status"] == "True" else None

    cond = await wait_for(required, "MigrationRequired=True", 30)
    assert cond["reason"] == "AutoMigrationDueToLiveUpdate"


async def test_a_migration_goes_through_kubevirts_phases_and_attaches_the_plug(kv_env: Env) -> None:
    env = kv_env
    await env.create_vm("mig", [("net-a", "bridge")])
    await env.plug("mig", "hp1")

    async def synced() -> bool:
        return "hp1" in interfaces(await env.get(VMIS, "mig"))

    await wait_for(synced, "hp1 in the VMI spec", 30)
    vmim = await migrate_and_wait(env, "mig")
    phases = [p["phase"] for p in vmim["status"]["phaseTransitionTimestamps"]]
    assert phases == VMIM_PHASES, phases
    assert vmim["metadata"]["labels"]["kubevirt.io/vmi-name"] == "mig"
    assert vmim["status"]["phase"] == "Succeeded"

    async def attached() -> dict[str, Any] | None:
        vmi = await env.get(VMIS, "mig")
        return vmi if "domain" in info_sources(vmi, "hp1") else None

    vmi = await wait_for(attached, "hp1 attached after the migration", 30)
    assert info_sources(vmi, "hp1") == {"domain", "guest-agent", "multus-status"}
    entry = next(e for e in vmi["status"]["interfaces"] if e["name"] == "hp1")
    assert entry["podInterfaceName"].startswith("pod") and len(entry["podInterfaceName"]) == 14
    assert condition(vmi, "MigrationRequired") is None

    async def settled() -> dict[str, Any] | None:
        # KubeVirt copies the VMI's migrationState into the VMIM, and drops its finalizer, once final
        m = await env.get(VMIMS, vmim["metadata"]["name"])
        state = ((m or {}).get("status") or {}).get("migrationState") or {}
        return m if state.get("targetNode") and not m["metadata"].get("finalizers") else None

    final = await wait_for(settled, "the final VMIM's migrationState and finalizer", 30)
    state = final["status"]["migrationState"]
    assert state["completed"] is True and state["sourceNode"] != state["targetNode"]
    assert vmi["status"]["nodeName"] == state["targetNode"]


async def test_an_unplug_leaves_the_guest_then_the_pod_then_the_vm(kv_env: Env) -> None:
    env = kv_env
    await env.create_vm("un", [("net-a", "bridge"), ("net-b", "bridge")])
    await env.unplug("un", "net-b")

    async def detached() -> dict[str, Any] | None:
        vmi = await env.get(VMIS, "un")
        ok = interfaces(vmi).get("net-b", {}).get("state") == "absent"
        return vmi if ok and info_sources(vmi, "net-b") == {"multus-status"} else None

    await wait_for(detached, "net-b absent in the VMI, out of the guest, still in the pod", 30)
    await migrate_and_wait(env, "un")

    async def gone() -> bool:
        vmi, vm = await env.get(VMIS, "un"), await env.get(VMS, "un")
        return "net-b" not in interfaces(vmi) and "net-b" not in interfaces(vm, template=True)

    await wait_for(gone, "net-b gone from the VMI and the VM template", 30)
    vm = await env.get(VMS, "un")
    assert "net-b" not in networks(vm, template=True)


async def test_admission_refuses_a_migration_of_a_missing_vmi(kv_env: Env) -> None:
    with pytest.raises(ApiException) as exc:
        await kv_env.migrate("nosuch")
    code, message = refused(exc)
    assert code == 400
    assert message == (
        'admission webhook "migration-create-validator.kubevirt.io" denied the request: '
        f'the VMI "{kv_env.ns}/nosuch" does not exist'
    )


async def test_admission_refuses_a_second_migration(kv_env: Env) -> None:
    env = kv_env
    await env.create_vm("two")
    env.backend.timing.stuck_rate = 1.0
    try:
        first = await env.migrate("two")
        with pytest.raises(ApiException) as exc:
            await env.migrate("two")
    finally:
        env.backend.timing.stuck_rate = 0.0
    code, message = refused(exc)
    assert code == 400
    assert message == (
        'admission webhook "migration-create-validator.kubevirt.io" denied the request: in-flight '
        f"migration detected. Active migration job ({first['metadata']['uid']}) is currently already in "
        "progress for VMI two."
    )
    await env.custom.delete_namespaced_custom_object(
        "kubevirt.io", "v1", env.ns, VMIMS, first["metadata"]["name"]
    )


async def test_a_pod_network_bridge_is_not_live_migratable_and_admission_says_so(kv_env: Env) -> None:
    env = kv_env
    vmi = await env.create_vm("lm", pod_binding="bridge")
    cond = condition(vmi, "LiveMigratable")
    assert cond is not None and cond["status"] == "False"
    assert cond["reason"] == "InterfaceNotLiveMigratable"
    assert cond["message"] == (
        "cannot migrate VMI which does not use masquerade or a migratable plugin to connect to the "
        "pod network"
    )
    with pytest.raises(ApiException) as exc:
        await env.migrate("lm")
    code, message = refused(exc)
    assert code == 400
    assert message == (
        'admission webhook "migration-create-validator.kubevirt.io" denied the request: Cannot migrate VMI, '
        f"Reason: InterfaceNotLiveMigratable, Message: {cond['message']}"
    )


async def test_admission_refuses_an_sriov_unplug(kv_env: Env) -> None:
    env = kv_env
    await env.create_vm("sru", [("sriov-a", "sriov")])
    with pytest.raises(ApiException) as exc:
        await env.unplug("sru", "sriov-a")
    code, message = refused(exc)
    assert code == 422
    assert message == (
        'admission webhook "virtualmachine-validator.kubevirt.io" denied the request: "sriov-a" '
        'interface\'s state "absent" is supported only for bridge binding'
    )


async def test_removing_an_interface_instead_of_absent_requires_a_restart(kv_env: Env) -> None:
    env = kv_env
    await env.create_vm("rr", [("net-a", "bridge"), ("net-b", "bridge")])
    vm = await env.get(VMS, "rr")
    spec = vm["spec"]["template"]["spec"]
    keep = [i for i in spec["domain"]["devices"]["interfaces"] if i["name"] != "net-b"]
    nets = [n for n in spec["networks"] if n["name"] != "net-b"]
    await env.merge_vm("rr", {"spec": {"template": {"spec": {"domain": {"devices": {"interfaces": keep}},
                                                             "networks": nets}}}})  # fmt: skip

    async def restart() -> dict[str, Any] | None:
        return condition(await env.get(VMS, "rr"), "RestartRequired")

    cond = await wait_for(restart, "RestartRequired on the VM", 30)
    assert cond["status"] == "True"
    assert cond["message"] == "a non-live-updatable field was changed in the template spec"


async def test_a_bridge_plug_listed_before_an_sriov_plug_waits_for_the_grace(kv_env: Env) -> None:
    """KubeVirt's evaluator returns at the first interface that needs a migration (spec order): a bridge
    plug before an SR-IOV plug in one edit asks for a pending migration, not an immediate one."""
    env = kv_env
    await env.create_vm("mixed", [("net-a", "bridge")])
    await env.plug_all("mixed", [("hp-b", "bridge"), ("hp-s", "sriov")])

    async def evaluated() -> dict[str, Any] | None:
        vmi = await env.get(VMIS, "mixed")
        ok = {"hp-b", "hp-s"} <= set(interfaces(vmi))
        return condition(vmi, "MigrationRequired") if ok else None

    cond = await wait_for(evaluated, "MigrationRequired after the mixed plug", 30)
    assert (cond["status"], cond["reason"]) == ("False", "AutoMigrationPending")


async def test_changing_a_networks_nad_requires_a_restart(kv_env: Env) -> None:
    """v1.5.2 to v1.8 (without ``LiveUpdateNADRef``): a NAD reference change of an existing network is not
    synced to the VMI and sets RestartRequired — the agent must not excuse it as a hot plug."""
    env = kv_env
    await env.create_vm("nad", [("net-a", "bridge")])
    await env.create_nad("net-other")
    vm = await env.get(VMS, "nad")
    assert vm is not None
    index = next(i for i, n in enumerate(vm["spec"]["template"]["spec"]["networks"]) if n["name"] == "net-a")
    path = f"/spec/template/spec/networks/{index}/multus/networkName"
    await env.patch_vm("nad", [{"op": "replace", "path": path, "value": f"{env.ns}/net-other"}])

    async def restart() -> dict[str, Any] | None:
        return condition(await env.get(VMS, "nad"), "RestartRequired")

    cond = await wait_for(restart, "RestartRequired on the VM", 30)
    assert cond["status"] == "True"
    assert cond["message"] == "a non-live-updatable field was changed in the template spec"
    vmi = await env.get(VMIS, "nad")
    assert networks(vmi)["net-a"]["multus"]["networkName"] == f"{env.ns}/net-a"
    assert condition(vmi, "MigrationRequired") is None


def stamp(vmim: dict[str, Any], phase: str) -> datetime:
    for entry in vmim["status"]["phaseTransitionTimestamps"]:
        if entry["phase"] == phase:
            return datetime.fromisoformat(entry["phaseTransitionTimestamp"].replace("Z", "+00:00"))
    raise AssertionError(f"no {phase} in {vmim['status']['phaseTransitionTimestamps']}")


async def test_over_the_limit_a_migration_waits_pending_and_cancels_end_failed(kv_env: Env) -> None:
    """``parallelMigrationsPerCluster: 1``. A second VMIM stays Pending while the first runs (no timeout);
    deleting it (cancel before the hand-off) ends it Failed and the VMIM goes; deleting the running one
    (cancel after the hand-off: an abort) ends it Failed, the VMI stays on its node, and the waiting one
    then runs — its Scheduling after the first's end."""
    env = kv_env
    await env.configure_kubevirt(KubeVirtSettings(parallel_migrations_per_cluster=1))
    try:
        first_vmi = await env.create_vm("cap-a")
        await env.create_vm("cap-b")
        async with env.history(VMIMS) as seen:
            env.backend.timing.stuck_rate = 1.0
            try:
                running = (await env.migrate("cap-a"))["metadata"]["name"]
                await env.wait_vmim_phase(running, "Running")
            finally:
                env.backend.timing.stuck_rate = 0.0
            waiting = (await env.migrate("cap-b"))["metadata"]["name"]
            await env.wait_vmim_phase(waiting, "Pending")
            await env.delete_vmim(waiting)
            await env.wait_gone(VMIMS, waiting)
            assert seen.phase(waiting) == "Failed"
            vmi_b = await env.get(VMIS, "cap-b")
            assert not ((vmi_b or {}).get("status") or {}).get("migrationState")

            queued = (await env.migrate("cap-b"))["metadata"]["name"]
            await env.wait_vmim_phase(queued, "Pending")
            assert ((await env.get(VMIMS, running)) or {})["status"]["phase"] == "Running"
            await env.delete_vmim(running)
            await env.wait_gone(VMIMS, running)
            ended = seen.last(running)
            assert ended is not None and seen.phase(running) == "Failed"
            vmi_a = await env.get(VMIS, "cap-a")
            assert vmi_a is not None
            assert vmi_a["status"]["nodeName"] == first_vmi["status"]["nodeName"]
            assert vmi_a["status"]["migrationState"]["failed"] is True
            done = await env.wait_vmim_final(queued, 90)
        assert done["status"]["phase"] == "Succeeded"
        failed_at = max(stamp(ended, "Failed"), stamp(ended, "Running"))
        assert stamp(done, "Scheduling") >= failed_at.replace(microsecond=0)
    finally:
        await env.configure_kubevirt(KubeVirtSettings())


async def test_the_vmi_reads_migrating_from_the_hand_off_before_the_migration_starts(kv_env: Env) -> None:
    """virt-controller writes the VMI's ``migrationState`` (uid, nodes, pods) at the target pod's hand-off;
    virt-handler adds ``startTimestamp`` later. A client that reads "migrating" from the VMI sees it
    before the migration has a start time."""
    env = kv_env
    await env.create_vm("handoff")
    async with env.history(VMIS) as seen:
        vmim = await migrate_and_wait(env, "handoff")
    uid = vmim["metadata"]["uid"]
    states = [(v.get("status") or {}).get("migrationState") or {} for v in seen.versions("handoff")]
    ours = [s for s in states if s.get("migrationUid") == uid]
    assert ours, states
    first = ours[0]
    assert not first.get("startTimestamp"), first
    assert first.get("targetNode") and first.get("sourceNode") and first.get("targetPod"), first


async def test_the_vmim_gets_the_vmis_migration_state_only_once_final(kv_env: Env) -> None:
    """While a VMIM runs KubeVirt keeps at most ``sourcePod`` in its ``migrationState``; the VMI's whole
    state (nodes, timestamps, ``completed``) is copied into it once the VMIM is final. Clients read the
    source node of a running migration from the VMI."""
    env = kv_env
    await env.create_vm("copy")
    async with env.history(VMIMS) as seen:
        vmim = await migrate_and_wait(env, "copy")

        async def copied() -> bool:
            state = ((seen.last(vmim["metadata"]["name"]) or {}).get("status") or {}).get("migrationState")
            return bool((state or {}).get("targetNode"))

        await wait_for(copied, "the final VMIM's migrationState", 30)
    unfinished = [v for v in seen.versions(vmim["metadata"]["name"])
                  if (v.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]  # fmt: skip
    assert unfinished
    for version in unfinished:
        state = (version.get("status") or {}).get("migrationState") or {}
        assert set(state) <= {"sourcePod"}, (version["status"]["phase"], state)


async def test_with_live_migrate_kubevirt_migrates_a_hot_plug_by_itself(kv_env: Env) -> None:
    """``workloadUpdateMethods: [LiveMigrate]`` (KubeVirt ≥ 1.6): the workload updater creates its own
    ``kubevirt-workload-update-*`` VMIM for a VMI with ``MigrationRequired=True``, and none for an idle
    one — what the agent's observe mode leaves to KubeVirt."""
    env = kv_env
    await env.create_vm("wu")
    await env.create_vm("wu-idle")
    await env.configure_kubevirt(KubeVirtSettings(workload_update_methods=("LiveMigrate",)))
    try:
        await env.plug("wu", "hp-s", "sriov")

        async def attached() -> bool:
            return "domain" in info_sources(await env.get(VMIS, "wu"), "hp-s")

        await wait_for(attached, "the SR-IOV plug attached by KubeVirt's own migration", 90)
    finally:
        await env.configure_kubevirt(KubeVirtSettings())
    vmims = await env.list(VMIMS)
    assert [m["spec"]["vmiName"] for m in vmims] == ["wu"]
    vmim = vmims[0]
    assert vmim["metadata"]["name"].startswith("kubevirt-workload-update-")
    assert "kubevirt.io/workloadUpdateMigration" in (vmim["metadata"].get("annotations") or {})
    assert vmim["status"]["phase"] == "Succeeded"


async def test_deleting_the_vm_during_a_migration_leaves_no_unfinished_vmim(kv_env: Env) -> None:
    """A client that counts unfinished VMIMs against the cluster's limits (the agent does) must not see a
    migration of a deleted VM stay in flight: KubeVirt fails the VMIM when its VMI shuts down, then drops
    it."""
    env = kv_env
    await env.create_vm("gone")
    async with env.history(VMIMS) as seen:
        env.backend.timing.stuck_rate = 1.0
        try:
            name = (await env.migrate("gone"))["metadata"]["name"]
            await env.wait_vmim_phase(name, "Running")
        finally:
            env.backend.timing.stuck_rate = 0.0
        await env.custom.delete_namespaced_custom_object("kubevirt.io", "v1", env.ns, VMS, "gone")
        env.vm_names.remove("gone")
        await env.wait_gone(VMIS, "gone")

        async def ended() -> bool:
            vmim = await env.get(VMIMS, name)
            return vmim is None or vmim["status"].get("phase") in ("Succeeded", "Failed")

        await wait_for(ended, "the migration of the deleted VM ended or gone", 30)
    assert seen.phase(name) == "Failed"
