"""The agent's preflight on real KubeVirt (virt-controller, virt-api) with the node stand-in.

Real virt-controller keeps a migration ``Pending`` while a NetworkAttachmentDefinition its VMI names is
missing, and its target pod stays unschedulable when no node has the SR-IOV VFs it requests: the agent
must start neither migration, say why, and migrate by itself once the NAD exists or VFs are freed.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from tests.kubevirt.helpers import (
    NODES,
    SRIOV_RESOURCE,
    VFS_PER_NODE,
    VMIMS,
    VMIS,
    Env,
    info_sources,
    sample,
    wait_for,
)

pytestmark = pytest.mark.kubevirt

MANAGED_BY = "app.kubernetes.io/managed-by"


async def agent_vmims(env: Env) -> list[dict[str, Any]]:
    return [
        m
        for m in await env.list(VMIMS)
        if (m["metadata"].get("labels") or {}).get(MANAGED_BY) == "hotplug-agent"
    ]


async def plug_without_nad(env: Env, vm: str, iface: str, binding: str = "bridge") -> None:
    """The user's edit, with no NetworkAttachmentDefinition behind the network it names."""
    network = {"name": iface, "multus": {"networkName": f"{env.ns}/{iface}"}}
    await env.patch_vm(
        vm,
        [
            {"op": "add", "path": "/spec/template/spec/domain/devices/interfaces/-",
             "value": {"name": iface, binding: {}}},
            {"op": "add", "path": "/spec/template/spec/networks/-", "value": network},
        ],
    )  # fmt: skip


async def blocked_event(env: Env, vm: str, reason: str) -> dict[str, Any]:
    import json

    async def found() -> dict[str, Any] | None:
        out = await env.client_core().list_namespaced_event(env.ns, _preload_content=False)
        for e in json.loads(await out.read()).get("items") or []:
            if (e.get("involvedObject") or {}).get("name") == vm and reason in str(e.get("message", "")):
                return dict(e)
        return None

    event: dict[str, Any] = await wait_for(found, f"a {reason} Event on {vm}", 60)
    return event


async def gauge(metrics: Any, reason: str) -> None:
    async def counted() -> bool:
        return sample(metrics, "hotplug_agent_blocked_vms", reason=reason) == 1

    await wait_for(counted, f"hotplug_agent_blocked_vms{{reason={reason!r}}} 1", 10)


async def test_missing_nad_blocks_then_migrates_once_it_is_created(env: Env) -> None:
    await env.create_vm("nadvm", [("net-a", "bridge")])
    async with env.agent() as metrics:
        await plug_without_nad(env, "nadvm", "hp-late")

        async def in_vmi() -> bool:
            vmi = await env.get(VMIS, "nadvm") or {}
            return any(i["name"] == "hp-late" for i in vmi["spec"]["domain"]["devices"]["interfaces"])

        await wait_for(in_vmi, "virt-controller copied the interface to the VMI", 60)
        event = await blocked_event(env, "nadvm", "network-missing")
        assert f"{env.ns}/hp-late" in event["message"]
        await gauge(metrics, "network-missing")
        assert await agent_vmims(env) == []

        await env.create_nad("hp-late")

        async def attached() -> bool:
            return "domain" in info_sources(await env.get(VMIS, "nadvm"), "hp-late")

        await wait_for(attached, "hp-late attached once its NAD exists", 120)
    vmims = await agent_vmims(env)
    assert len(vmims) == 1 and vmims[0]["status"]["phase"] == "Succeeded"


async def test_no_sriov_capacity_blocks_then_migrates_once_vfs_are_free(env: Env) -> None:
    await env.create_vm("vfvm", [("net-a", "bridge")])
    fillers = [f"vf-filler-{i}" for i in range(1, NODES + 1)]
    nodes = [n["metadata"]["name"] for n in env.side.node_objects.cache.values()]
    try:
        for name, node in zip(fillers, nodes, strict=False):
            await fill(env, name, node)  # every VF of every node held by another workload
        async with env.agent() as metrics:
            await env.plug("vfvm", "hp-vf", "sriov")
            event = await blocked_event(env, "vfvm", "no-target-capacity")
            assert SRIOV_RESOURCE in event["message"]
            await gauge(metrics, "no-target-capacity")
            assert await agent_vmims(env) == []

            for name in fillers:  # the other workloads end: their VFs are free again
                await env.client_core().delete_namespaced_pod(name, env.ns, grace_period_seconds=0)

            async def attached() -> bool:
                return "domain" in info_sources(await env.get(VMIS, "vfvm"), "hp-vf")

            await wait_for(attached, "the SR-IOV NIC attached once VFs were freed", 120)
    finally:
        for name in fillers:
            with contextlib.suppress(ApiException):
                await env.client_core().delete_namespaced_pod(name, env.ns, grace_period_seconds=0)
    vmims = await agent_vmims(env)
    assert len(vmims) == 1 and vmims[0]["status"]["phase"] == "Succeeded"


async def fill(env: Env, name: str, node: str) -> None:
    """A pod bound to ``node`` that requests every VF the node has (not a virt-launcher pod)."""
    vfs = {SRIOV_RESOURCE: str(VFS_PER_NODE)}
    body: Any = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": env.ns},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "dpdk", "image": "example.invalid/dpdk:1",
                            "resources": {"requests": vfs, "limits": vfs}}],
        },
    }  # fmt: skip
    await env.client_core().create_namespaced_pod(env.ns, body)
