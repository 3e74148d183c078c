"""End to end over HTTP through kubernetes-asyncio: VM edits, KubeVirt's reactions, migrations."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio.client import CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from simulator.apiserver import FaultRule
from simulator.cluster import SimulatedCluster
from simulator.kubevirt.pods import networks_of
from simulator.manifests import vm_manifest
from tests.simulator.conftest import (
    MERGE_KW,
    G,
    V,
    condition,
    create_nad,
    entry,
    fast_config,
    get,
    migrate,
    plug,
    set_state,
    wait_for,
)


async def create_vm(api: CustomObjectsApi, body: dict[str, Any]) -> None:
    """Create a running VM, its networks' NADs first (as an admin provides them)."""
    ns = body["metadata"]["namespace"]
    for (nad_ns, nad_name), binding in networks_of(body["spec"]["template"]["spec"], ns):
        await create_nad(api, nad_name, binding, nad_ns)
    await api.create_namespaced_custom_object(G, V, ns, "virtualmachines", body)
    name = body["metadata"]["name"]

    async def running() -> bool:
        try:
            vmi = await get(api, "virtualmachineinstances", name, ns)
        except ApiException:
            return False
        return vmi.get("status", {}).get("phase") == "Running" and bool(condition(vmi, "LiveMigratable"))

    await wait_for(running, what=f"VMI {name} running")


async def wait_vmim(api: CustomObjectsApi, name: str, phase: str, ns: str = "default") -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        m = await get(api, "virtualmachineinstancemigrations", name, ns)
        return m if m.get("status", {}).get("phase") == phase else None

    out: dict[str, Any] = await wait_for(done, what=f"VMIM {name} {phase}")
    return out


async def test_hotplug_bridge_via_migration(cluster: SimulatedCluster, api: CustomObjectsApi) -> None:
    await create_vm(api, vm_manifest("default", "vm1", [("blue", "bridge")]))
    vmi = await get(api, "virtualmachineinstances", "vm1")
    blue = entry(vmi, "blue")
    assert blue is not None and blue["infoSource"] == "domain, guest-agent, multus-status"
    assert entry(vmi, "default")["infoSource"] == "domain, guest-agent"  # type: ignore[index]
    source = vmi["status"]["nodeName"]
    await plug(api, "vm1", "red")

    async def propagated() -> bool:
        v = await get(api, "virtualmachineinstances", "vm1")
        return any(i["name"] == "red" for i in v["spec"]["domain"]["devices"]["interfaces"])

    await wait_for(propagated, what="red in VMI spec")
    v = await get(api, "virtualmachineinstances", "vm1")
    assert entry(v, "red") is None  # pod doesn't have it yet: pending hot plug
    m = await migrate(api, "vm1")
    assert m["metadata"]["labels"]["kubevirt.io/vmi-name"] == "vm1"
    # Both from the mutating webhook, in the create's answer (no extra write by the controller).
    assert m["metadata"]["finalizers"] == ["kubevirt.io/migrationJobFinalize"]
    done = await wait_vmim(api, m["metadata"]["name"], "Succeeded")
    phases = [p["phase"] for p in done["status"]["phaseTransitionTimestamps"]]
    assert phases == [
        "Pending",
        "Scheduling",
        "Scheduled",
        "PreparingTarget",
        "TargetReady",
        "Running",
        "Succeeded",
    ]
    assert done["status"]["migrationState"]["completed"] is True

    async def released() -> bool:  # KubeVirt drops its finalizer once the VMIM is final
        m2 = await get(api, "virtualmachineinstancemigrations", m["metadata"]["name"])
        return not (m2 or {}).get("metadata", {}).get("finalizers")

    await wait_for(released, timeout=10)

    async def attached() -> dict[str, Any] | None:
        v = await get(api, "virtualmachineinstances", "vm1")
        e = entry(v, "red")
        return v if e and "domain" in e["infoSource"] else None

    v = await wait_for(attached, what="red attached")
    red = entry(v, "red")
    assert red is not None
    assert red["infoSource"] == "domain, guest-agent, multus-status"
    assert red["podInterfaceName"].startswith("pod") and len(red["podInterfaceName"]) == 14
    assert v["status"]["nodeName"] != source
    assert v["metadata"]["labels"]["kubevirt.io/nodeName"] == v["status"]["nodeName"]


def status_body(exc: ApiException) -> dict[str, Any]:
    import json

    out: dict[str, Any] = json.loads(exc.body or b"{}")
    return out


async def test_unplug_bridge(cluster: SimulatedCluster, api: CustomObjectsApi) -> None:
    await create_vm(api, vm_manifest("default", "vm2", [("blue", "bridge")]))
    await set_state(api, "vm2", "blue", "absent")

    async def detached() -> bool:
        v = await get(api, "virtualmachineinstances", "vm2")
        iface = next(i for i in v["spec"]["domain"]["devices"]["interfaces"] if i["name"] == "blue")
        e = entry(v, "blue")
        return iface.get("state") == "absent" and e is not None and e["infoSource"] == "multus-status"

    await wait_for(detached, what="blue detached from the domain, still in the pod")
    m = await migrate(api, "vm2")
    await wait_vmim(api, m["metadata"]["name"], "Succeeded")

    async def gone_from_vm() -> bool:
        vmx = await get(api, "virtualmachines", "vm2")
        v = await get(api, "virtualmachineinstances", "vm2")
        names = [i["name"] for i in vmx["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"]]
        vmi_names = [i["name"] for i in v["spec"]["domain"]["devices"]["interfaces"]]
        nets = [n["name"] for n in vmx["spec"]["template"]["spec"]["networks"]]
        return (
            "blue" not in names
            and "blue" not in nets
            and "blue" not in vmi_names
            and entry(v, "blue") is None
        )

    await wait_for(gone_from_vm, what="blue gone from VMI status, VMI spec, VM template")


async def test_sriov_absent_rejected(cluster: SimulatedCluster, api: CustomObjectsApi) -> None:
    await create_vm(api, vm_manifest("default", "vm3", [("fast", "sriov")]))
    with pytest.raises(ApiException) as err:
        await set_state(api, "vm3", "fast", "absent")
    assert (
        '"fast" interface\'s state "absent" is supported only for bridge binding'
        in status_body(err.value)["message"]
    )
    assert "virtualmachine-validator.kubevirt.io" in status_body(err.value)["message"]


async def test_restart_required(cluster: SimulatedCluster, api: CustomObjectsApi) -> None:
    await create_vm(api, vm_manifest("default", "vm4", [("blue", "bridge")]))
    cur = await get(api, "virtualmachines", "vm4")
    spec = cur["spec"]["template"]["spec"]
    ifaces = [i for i in spec["domain"]["devices"]["interfaces"] if i["name"] != "blue"]
    nets = [n for n in spec["networks"] if n["name"] != "blue"]
    body = {"spec": {"template": {"spec": {"domain": {"devices": {"interfaces": ifaces}}, "networks": nets}}}}
    await api.patch_namespaced_custom_object(G, V, "default", "virtualmachines", "vm4", body, **MERGE_KW)

    async def rr() -> dict[str, Any] | None:
        return condition(await get(api, "virtualmachines", "vm4"), "RestartRequired")

    cond = await wait_for(rr, what="RestartRequired")
    assert cond["status"] == "True"
    assert cond["message"] == "a non-live-updatable field was changed in the template spec"


@pytest.mark.parametrize(
    ("kwargs", "reason", "fragment"),
    [
        ({"pod_binding": "bridge"}, "InterfaceNotLiveMigratable", "does not use masquerade"),
        ({"host_devices": True}, "HostDeviceNotLiveMigratable", "PCI host devices"),
        (
            {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-rwo"}}]},
            "DisksNotLiveMigratable",
            "PVC data-rwo is not shared",
        ),
    ],
)
async def test_not_migratable_rejected(
    cluster: SimulatedCluster, api: CustomObjectsApi, kwargs: dict[str, Any], reason: str, fragment: str
) -> None:
    await create_vm(api, vm_manifest("default", "vm5", **kwargs))
    v = await get(api, "virtualmachineinstances", "vm5")
    assert condition(v, "LiveMigratable")["reason"] == reason  # type: ignore[index]
    with pytest.raises(ApiException) as err:
        await migrate(api, "vm5")
    msg = status_body(err.value)["message"]
    assert err.value.status == 400  # what KubeVirt's webhook answers (tests/kubevirt/test_conformance.py)
    assert msg.startswith(
        'admission webhook "migration-create-validator.kubevirt.io" denied the request: '
        f"Cannot migrate VMI, Reason: {reason}, Message: "
    )
    assert fragment in msg


async def test_in_flight_and_missing_rejected(cluster: SimulatedCluster, api: CustomObjectsApi) -> None:
    await create_vm(api, vm_manifest("default", "vm6"))
    first = await migrate(api, "vm6")
    with pytest.raises(ApiException) as err:
        await migrate(api, "vm6")
    assert err.value.status == 400
    assert status_body(err.value)["message"].endswith(
        f"in-flight migration detected. Active migration job ({first['metadata']['uid']}) is "
        f"currently already "
        "in progress for VMI vm6."
    )
    with pytest.raises(ApiException) as err2:
        await migrate(api, "nope")
    assert 'the VMI "default/nope" does not exist' in status_body(err2.value)["message"]
    await wait_vmim(api, first["metadata"]["name"], "Succeeded")
    await migrate(api, "vm6")  # allowed again once the first is final


async def test_cancel_by_delete(cluster: SimulatedCluster, api: CustomObjectsApi) -> None:
    cluster.config.migration_mean_seconds = 5.0
    assert cluster.world is not None
    cluster.world.config.migration_mean_seconds = 5.0
    await create_vm(api, vm_manifest("default", "vm7"))
    m = await migrate(api, "vm7")
    name = m["metadata"]["name"]
    await wait_vmim(api, name, "Scheduling")
    await api.delete_namespaced_custom_object(G, V, "default", "virtualmachineinstancemigrations", name)

    async def gone() -> bool:
        try:
            await get(api, "virtualmachineinstancemigrations", name)
        except ApiException as exc:
            return exc.status == 404
        return False

    await wait_for(gone, what="canceled VMIM gone (finalizer removed)")


@pytest.mark.parametrize("cluster_config", [fast_config(stuck_rate=1.0)])
async def test_cancel_with_a_failed_vmi_write_still_closes_the_vmi_migration_state(
    cluster: SimulatedCluster, api: CustomObjectsApi
) -> None:
    """Cancel writes two objects; when the VMI write fails once (an API error), the retry must not
    leave the VMI "migrating" forever (found by the long chaos run: the agent waited on it)."""
    await create_vm(api, vm_manifest("default", "vm8"))
    m = await migrate(api, "vm8")
    name = m["metadata"]["name"]
    await wait_vmim(api, name, "Running")  # stuck there
    vmi = await get(api, "virtualmachineinstances", "vm8")
    assert vmi["status"]["migrationState"]["migrationUid"] == m["metadata"]["uid"]
    cluster.server.faults.add(
        FaultRule(verbs=("update",), resources=("virtualmachineinstances",), error_rate=1.0, remaining=1)
    )
    await api.delete_namespaced_custom_object(G, V, "default", "virtualmachineinstancemigrations", name)

    async def closed() -> dict[str, Any] | None:
        v = await get(api, "virtualmachineinstances", "vm8")
        state = v["status"]["migrationState"]
        return state if state.get("failed") else None

    state = await wait_for(closed, what="the VMI's migrationState marked failed")
    assert state["migrationUid"] == m["metadata"]["uid"]
    assert cluster.server.faults.injected == 1
