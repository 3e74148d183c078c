"""One suite, two KubeVirts: every behaviour the agent depends on, on the simulated cluster and on real
KubeVirt (the default release, its node side emulated). A difference fails one of the two; fixed in
the simulator or listed in ``SIMULATOR_DIFFERENCES`` with its reason (docs/simulator.md says the same).
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from agent.kubevirt import VMIMS, VMIS, VMS
from tests.kubevirt.helpers import Env, condition, info_sources, wait_for

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
