"""Fixtures: a running simulated cluster (fast timings) and a kubernetes-asyncio client for it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import new_client_from_config

from simulator.cluster import ClusterConfig, SimulatedCluster
from simulator.kubevirt.pods import NAD_GROUP, NAD_VERSION, NADS, nad_body, network_resource
from simulator.manifests import plug_patch

SHARED = Path(__file__).resolve().parents[3] / "shared"
if not SHARED.exists():  # the repo is /work/main, shared data is /work/shared
    SHARED = Path("/work/shared")

G, V = "kubevirt.io", "v1"
MERGE = "application/merge-patch+json"
MERGE_KW: dict[str, Any] = {"_content_type": MERGE}


def fast_config(**kw: Any) -> ClusterConfig:
    base: dict[str, Any] = {
        "migration_mean_seconds": 0.3,
        "migration_distribution": "fixed",
        "time_scale": 0.02,
        "nodes": 3,
    }
    base.update(kw)
    return ClusterConfig(**base)


@pytest.fixture
def cluster_config() -> ClusterConfig:
    return fast_config()


@pytest.fixture
async def cluster(cluster_config: ClusterConfig, tmp_path: Path) -> AsyncIterator[SimulatedCluster]:
    c = SimulatedCluster(cluster_config, kubeconfig_path=tmp_path / "kubeconfig")
    await c.start()
    try:
        yield c
        c.check()
    finally:
        await c.stop()


@pytest.fixture
async def api(cluster: SimulatedCluster) -> AsyncIterator[CustomObjectsApi]:
    client: ApiClient = await new_client_from_config(config_file=str(cluster.kubeconfig_path))
    try:
        yield CustomObjectsApi(client)
    finally:
        await client.close()


async def wait_for(
    fn: Callable[[], Awaitable[Any]],
    timeout: float = 10.0,  # noqa: ASYNC109 - polling helper with a deadline
    what: str = "condition",
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await fn()
        if last:
            return last
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}; last={last!r}")


async def get(api: CustomObjectsApi, plural: str, name: str, ns: str = "default") -> dict[str, Any]:
    out: dict[str, Any] = await api.get_namespaced_custom_object(G, V, ns, plural, name)
    return out


async def create_nad(api: CustomObjectsApi, name: str, binding: str = "bridge", ns: str = "default") -> None:
    """The NetworkAttachmentDefinition ``name`` as an admin creates it (an existing one is kept)."""
    body = nad_body(ns, name, network_resource(name, binding))
    try:
        await api.create_namespaced_custom_object(NAD_GROUP, NAD_VERSION, ns, NADS, body)
    except ApiException as exc:
        if exc.status != 409:
            raise


async def plug(
    api: CustomObjectsApi,
    name: str,
    net: str,
    binding: str = "bridge",
    ns: str = "default",
    *,
    nad: bool = True,
) -> None:
    """Hot plug the way a user does: merge patch of the template's interfaces and networks (the NAD
    ``<net>`` the network refers to, :func:`simulator.manifests.nad_name`, created first unless
    ``nad=False``)."""
    if nad:
        await create_nad(api, net, binding, ns)
    cur = await get(api, "virtualmachines", name, ns)
    body = plug_patch(cur, net, binding)
    await api.patch_namespaced_custom_object(G, V, ns, "virtualmachines", name, body, **MERGE_KW)


async def set_state(api: CustomObjectsApi, name: str, net: str, state: str, ns: str = "default") -> None:
    cur = await get(api, "virtualmachines", name, ns)
    spec = cur["spec"]["template"]["spec"]
    ifaces = [
        dict(i, state=state) if i["name"] == net else i for i in spec["domain"]["devices"]["interfaces"]
    ]
    body = {"spec": {"template": {"spec": {"domain": {"devices": {"interfaces": ifaces}}}}}}
    await api.patch_namespaced_custom_object(G, V, ns, "virtualmachines", name, body, **MERGE_KW)


async def migrate(api: CustomObjectsApi, vmi: str, ns: str = "default", **meta: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstanceMigration",
        "metadata": {"generateName": "kubevirt-migrate-vm-", **meta},
        "spec": {"vmiName": vmi},
    }
    out: dict[str, Any] = await api.create_namespaced_custom_object(
        G, V, ns, "virtualmachineinstancemigrations", body
    )
    return out


def entry(vmi: dict[str, Any], net: str) -> dict[str, Any] | None:
    for e in (vmi.get("status") or {}).get("interfaces") or []:
        if e.get("name") == net:
            return dict(e)
    return None


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return None
