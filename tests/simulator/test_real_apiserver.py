"""The simulated KubeVirt controllers against a real kube-apiserver + etcd (controlplane tier).

Same controllers, no admission (webhooks are in-process hooks of the embedded server only): a VM gets
its VMI, a hot plug propagates with a JSON patch carrying ``test`` ops, a VMIM walks its phases and the
interface attaches after the migration.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio.client import CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.config import new_client_from_config

from simulator.kubevirt.config import KubeVirtSimConfig
from simulator.kubevirt.controllers import KubeVirtControllers, node_names
from simulator.manifests import vm_manifest
from tests.simulator.conftest import G, V, condition, create_nad, entry, get, migrate, plug, wait_for

pytestmark = pytest.mark.controlplane


@pytest.fixture(scope="module")
def real_kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from tests.controlplane.cluster import acquire_shared, release_shared

    cluster = acquire_shared(tmp_path_factory.mktemp("controlplane-sim"))
    try:
        yield cluster.kubeconfig
    finally:
        release_shared()


async def test_controllers_on_real_apiserver(real_kubeconfig: Path) -> None:
    ns = f"sim-{uuid.uuid4().hex[:8]}"
    client = await new_client_from_config(config_file=str(real_kubeconfig))
    cfg = KubeVirtSimConfig(migration_mean_seconds=0.3, migration_distribution="fixed", watch_namespace=ns)
    controllers = KubeVirtControllers(cfg, real_kubeconfig, node_names(2))
    try:
        core = CoreV1Api(client)
        body: Any = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        await core.create_namespace(body)
        await controllers.bootstrap()
        await controllers.start()
        api = CustomObjectsApi(client)
        await create_nad(api, "a", ns=ns)
        await api.create_namespaced_custom_object(
            G, V, ns, "virtualmachines", vm_manifest(ns, "real", [("a", "bridge")])
        )

        async def running() -> bool:
            try:
                v = await get(api, "virtualmachineinstances", "real", ns)
            except Exception:
                return False
            return bool(condition(v, "LiveMigratable"))

        await wait_for(running, what="VMI created by the VM controller")
        await plug(api, "real", "b", ns=ns)

        async def propagated() -> bool:
            v = await get(api, "virtualmachineinstances", "real", ns)
            return any(i["name"] == "b" for i in v["spec"]["domain"]["devices"]["interfaces"])

        await wait_for(propagated)
        m = await migrate(api, "real", ns)

        async def attached() -> bool:
            e = entry(await get(api, "virtualmachineinstances", "real", ns), "b")
            return bool(e and e["infoSource"] == "domain, guest-agent, multus-status")

        await wait_for(attached, timeout=20)
        done = await get(api, "virtualmachineinstancemigrations", m["metadata"]["name"], ns)
        assert done["status"]["phase"] == "Succeeded"
        assert done["metadata"]["labels"]["kubevirt.io/vmi-name"] == "real"  # added by the controller
        controllers.check()
        # Delete = cancel/cleanup: the controller drops its finalizer, so the namespace can go.
        name = m["metadata"]["name"]
        await api.delete_namespaced_custom_object(G, V, ns, "virtualmachineinstancemigrations", name)

        async def gone() -> bool:
            items = await api.list_namespaced_custom_object(G, V, ns, "virtualmachineinstancemigrations")
            return not items["items"]

        await wait_for(gone, what="VMIM finalizer removed")
    finally:
        await controllers.stop()
        await CoreV1Api(client).delete_namespace(ns)
        await client.close()
