"""Everything the simulator writes parses with the agent's own record parsers (agent/model.py)."""

from __future__ import annotations

from pathlib import Path

from kubernetes_asyncio.client import CustomObjectsApi
from kubernetes_asyncio.config import new_client_from_config

from agent.model import parse_kubevirt, parse_vm, parse_vmi, parse_vmim
from simulator.cluster import SimulatedCluster
from simulator.manifests import vm_manifest
from tests.simulator.conftest import G, V, entry, fast_config, get, migrate, plug, set_state, wait_for


async def test_agent_parses_simulated_objects(tmp_path: Path) -> None:
    async with SimulatedCluster(
        fast_config(kubevirt_version="v1.6.0"), kubeconfig_path=tmp_path / "kc"
    ) as cluster:
        await cluster.seed(40)
        await cluster.seed([vm_manifest("default", "p1", [("a", "bridge")])])
        client = await new_client_from_config(config_file=str(cluster.kubeconfig_path))
        api = CustomObjectsApi(client)
        try:
            await plug(api, "p1", "b")
            await set_state(api, "p1", "a", "absent")

            async def propagated() -> bool:
                v = await get(api, "virtualmachineinstances", "p1")
                return any(i["name"] == "b" for i in v["spec"]["domain"]["devices"]["interfaces"])

            await wait_for(propagated)
            m = await migrate(api, "p1")

            async def attached() -> bool:
                e = entry(await get(api, "virtualmachineinstances", "p1"), "b")
                return bool(e and "domain" in e["infoSource"])

            await wait_for(attached)
            parsed = await api.get_namespaced_custom_object(
                G, V, "default", "virtualmachineinstancemigrations", m["metadata"]["name"]
            )
            rec = parse_vmim(parsed)
            assert rec.phase == "Succeeded"
            for plural, parser in (
                ("virtualmachines", parse_vm),
                ("virtualmachineinstances", parse_vmi),
                ("virtualmachineinstancemigrations", parse_vmim),
                ("kubevirts", parse_kubevirt),
            ):
                items = (await api.list_cluster_custom_object(G, V, plural))["items"]
                assert items
                for obj in items:
                    parser(obj)  # raises InvalidObject on anything malformed
        finally:
            await client.close()
