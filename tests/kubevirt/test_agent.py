"""The agent end to end on real KubeVirt: real virt-controller syncs the VM edit into the VMI, real
virt-api admits (or refuses) the agent's migrations, real virt-controller runs them; the node side
plays the nodes. Judged from the API server's objects."""

from __future__ import annotations

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from agent.kubevirt import VMIMS, VMIS, VMS
from agent.names import LABEL_MANAGED_BY, MANAGED_BY_VALUE
from tests.kubevirt.helpers import Env, condition, info_sources, sample, wait_for

pytestmark = pytest.mark.kubevirt


async def agent_vmims(env: Env) -> list[dict]:
    return [
        m
        for m in await env.list(VMIMS)
        if (m["metadata"].get("labels") or {}).get(LABEL_MANAGED_BY) == MANAGED_BY_VALUE
    ]


async def test_bridge_hot_plug(env: Env) -> None:
    await env.create_vm("plug", [("net-a", "bridge")])
    async with env.agent() as metrics:
        await env.plug("plug", "hp1")

        async def attached() -> bool:
            return "domain" in info_sources(await env.get(VMIS, "plug"), "hp1")

        await wait_for(attached, "hp1 attached to the guest", 90)

        async def completed() -> bool:
            return sample(metrics, "hotplug_agent_hotplugs_completed_total", operation="plug") >= 1

        await wait_for(completed, "the agent counted the hot plug completed", 30)
    vmims = await agent_vmims(env)
    assert len(vmims) == 1, [m["metadata"]["name"] for m in vmims]
    vmim = vmims[0]
    assert vmim["metadata"]["name"].startswith("hotplug-plug-")
    assert vmim["metadata"]["labels"]["kubevirt.io/vmi-name"] == "plug"
    assert vmim["status"]["phase"] == "Succeeded"
    phases = [p["phase"] for p in vmim["status"]["phaseTransitionTimestamps"]]
    assert phases[-1] == "Succeeded" and "Running" in phases and "TargetReady" in phases
    vm = await env.get(VMS, "plug")
    assert condition(vm, "RestartRequired") is None


async def events_for(env: Env, name: str) -> list[dict]:
    out = await env.client_core().list_namespaced_event(env.ns, _preload_content=False)
    import json as _json

    items = _json.loads(await out.read()).get("items") or []
    return [e for e in items if (e.get("involvedObject") or {}).get("name") == name]


async def test_bridge_hot_unplug(env: Env) -> None:
    """``state: absent``: virt-controller copies it to the VMI, virt-handler detaches the NIC from the
    guest, the agent migrates so it leaves the pod, virt-controller drops it from the VMI and the VM."""
    await env.create_vm("unplug", [("net-a", "bridge"), ("net-b", "bridge")])
    async with env.agent() as metrics:
        await env.unplug("unplug", "net-b")

        async def gone() -> bool:
            vm = await env.get(VMS, "unplug")
            names = [i["name"] for i in vm["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"]]
            return "net-b" not in names and not info_sources(await env.get(VMIS, "unplug"), "net-b")

        await wait_for(gone, "net-b gone from the VMI status and the VM template", 90)

        async def completed() -> bool:
            return sample(metrics, "hotplug_agent_hotplugs_completed_total", operation="unplug") >= 1

        await wait_for(completed, "the agent counted the unplug completed", 30)
    assert len(await agent_vmims(env)) == 1


async def test_sriov_hot_plug(env: Env) -> None:
    """SR-IOV needs no grace period; the target pod asks for a VF of the NAD's resource."""
    await env.create_vm("sriov", [("net-a", "bridge")])
    async with env.agent():
        await env.plug("sriov", "hp-sriov", "sriov")

        async def attached() -> bool:
            return "domain" in info_sources(await env.get(VMIS, "sriov"), "hp-sriov")

        await wait_for(attached, "the SR-IOV NIC attached", 90)
    vmims = await agent_vmims(env)
    assert len(vmims) == 1 and vmims[0]["status"]["phase"] == "Succeeded"
    vmi = await env.get(VMIS, "sriov")
    pods = [p for p in env.side.launcher_pods_of(vmi) if p["status"].get("phase") == "Running"]
    requests = pods[0]["spec"]["containers"][0]["resources"]["requests"]
    assert requests.get("intel.com/sriov_net") == "1", requests


async def test_sriov_unplug_is_refused_and_reported_blocked(env: Env) -> None:
    """Real admission refuses ``state: absent`` on SR-IOV; removing the interface from the template is
    accepted by KubeVirt (it needs a restart): the agent reports it blocked and never migrates."""
    await env.create_vm("sriovun", [("sriov-a", "sriov")])
    async with env.agent() as metrics:
        with pytest.raises(ApiException) as refused:
            await env.unplug("sriovun", "sriov-a")
        assert refused.value.status in (400, 422)
        assert "absent" in str(refused.value.body) and "bridge" in str(refused.value.body)
        vm = await env.get(VMS, "sriovun")
        spec = vm["spec"]["template"]["spec"]
        keep = [i for i in spec["domain"]["devices"]["interfaces"] if i["name"] != "sriov-a"]
        nets = [n for n in spec["networks"] if n["name"] != "sriov-a"]
        await env.merge_vm("sriovun", {"spec": {"template": {"spec": {
            "domain": {"devices": {"interfaces": keep}}, "networks": nets}}}})  # fmt: skip

        async def blocked() -> bool:
            return sample(metrics, "hotplug_agent_blocked_vms", reason="sriov-unplug") >= 1

        await wait_for(blocked, "the agent reporting sriov-unplug", 30)
        reasons = {e.get("reason") for e in await events_for(env, "sriovun")}
        assert "HotplugBlocked" in reasons, reasons
    assert await agent_vmims(env) == []


async def test_a_non_migratable_vmi_is_blocked(env: Env) -> None:
    """Bridge binding on the pod network: virt-handler reports LiveMigratable=False
    (InterfaceNotLiveMigratable); the agent blocks the hot plug instead of trying."""
    vmi = await env.create_vm("nolm", [("net-a", "bridge")], pod_binding="bridge")
    live = condition(vmi, "LiveMigratable")
    assert live is not None and live["status"] == "False" and live["reason"] == "InterfaceNotLiveMigratable"
    async with env.agent() as metrics:
        await env.plug("nolm", "hp1")

        async def blocked() -> bool:
            return sample(metrics, "hotplug_agent_blocked_vms", reason="not-live-migratable") >= 1

        await wait_for(blocked, "the agent reporting not-live-migratable", 30)
    assert await env.list(VMIMS) == []


async def test_a_second_migration_is_refused_by_real_admission(env: Env) -> None:
    """KubeVirt's own text for a second migration of a VMI, as the agent's client receives it."""
    await env.create_vm("twice")
    env.side.timing.stuck_rate = 1.0  # the first never ends until cancelled
    try:
        first = await env.migrate("twice")
        with pytest.raises(ApiException) as refused:
            await env.migrate("twice")
    finally:
        env.side.timing.stuck_rate = 0.0
    body = str(refused.value.body)
    assert refused.value.status == 400, body
    assert 'admission webhook \\"migration-create-validator.kubevirt.io\\" denied the request' in body or (
        'admission webhook "migration-create-validator.kubevirt.io" denied the request' in body
    ), body
    assert "in-flight migration detected" in body, body
    await env.custom.delete_namespaced_custom_object(
        "kubevirt.io", "v1", env.ns, VMIMS, first["metadata"]["name"]
    )
