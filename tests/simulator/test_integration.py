"""End to end over HTTP through kubernetes-asyncio: VM edits, KubeVirt's reactions, migrations."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio.client import CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from simulator.cluster import SimulatedCluster
from tests.simulator.conftest import (
    G,
    V,
    condition,
    entry,
    get,
    migrate,
    plug,
    set_state,
    vm,
    wait_for,
)


async def create_vm(api: CustomObjectsApi, body: dict[str, Any]) -> None:
    ns = body["metadata"]["namespace"]
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
    await create_vm(api, vm("vm1", secondary=[("blue", "bridge")]))
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
    done = await wait_vmim(api, m["metadata"]["name"], "Succeeded")
    phases = [p["phase"] for p in done["status"]["phaseTransitionTimestamps"]]
    assert phases == ["Pending", "Scheduling", "Scheduled", "PreparingTarget", "TargetReady", "Running", "Succeeded"]
    assert done["status"]["migrationState"]["completed"] is True
    assert "kubevirt.io/migrationJobFinalize" in done["metadata"]["finalizers"]

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
