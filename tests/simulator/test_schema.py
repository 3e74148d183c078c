"""Objects the simulator writes validate against KubeVirt's strict CRD schemas
(../shared/kubevirt/schemas)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped,unused-ignore]
from kubernetes_asyncio.client import CustomObjectsApi
from kubernetes_asyncio.config import new_client_from_config

from simulator.cluster import SimulatedCluster
from simulator.manifests import vm_manifest
from tests.simulator.conftest import (
    SHARED,
    G,
    V,
    entry,
    fast_config,
    get,
    migrate,
    plug,
    set_state,
    wait_for,
)
from tests.simulator.test_integration import create_vm, wait_vmim

SCHEMAS = {
    "virtualmachines": "virtualmachine_v1.json",
    "virtualmachineinstances": "virtualmachineinstance_v1.json",
    "virtualmachineinstancemigrations": "virtualmachineinstancemigration_v1.json",
    "kubevirts": "kubevirt_v1.json",
}


def _nullable(node: Any) -> Any:
    """OpenAPI ``nullable: true`` → JSON Schema ``type: [T, "null"]``."""
    if isinstance(node, dict):
        out = {k: _nullable(v) for k, v in node.items()}
        if out.pop("nullable", False) and isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(node, list):
        return [_nullable(v) for v in node]
    return node


def validator(plural: str) -> Any:
    schema = _nullable(json.loads((SHARED / "kubevirt" / "schemas" / SCHEMAS[plural]).read_text()))
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema)


async def simulated_objects(tmp_path: Path) -> dict[str, list[dict[str, Any]]]:
    """Every VM, VMI, VMIM and KubeVirt CR a small simulated run writes: plugs and unplugs (bridge and
    SR-IOV), a non-migratable VMI, the 1.6 workload updater's migrations, a failed migration."""
    cfg = fast_config(kubevirt_version="v1.6.0", workload_update_methods=("LiveMigrate",), failure_rate=0.0)
    async with SimulatedCluster(cfg, kubeconfig_path=tmp_path / "kc") as cluster:
        client = await new_client_from_config(config_file=str(cluster.kubeconfig_path))
        api = CustomObjectsApi(client)
        try:
            await create_vm(api, vm_manifest("default", "s1", [("a", "bridge"), ("b", "bridge")]))
            await cluster.seed([vm_manifest("default", "s2", [("x", "sriov")], pod_binding="bridge")])
            await plug(api, "s1", "c", "sriov")
            await set_state(api, "s1", "a", "absent")

            async def attached() -> bool:
                e = entry(await get(api, "virtualmachineinstances", "s1"), "c")
                return bool(e and "domain" in e["infoSource"])

            await wait_for(attached, timeout=15)
            cluster.world.config.failure_rate = 1.0  # type: ignore[union-attr]
            await create_vm(api, vm_manifest("default", "s3"))
            m = await migrate(api, "s3")
            await wait_vmim(api, m["metadata"]["name"], "Failed")
            return {
                plural: (await api.list_cluster_custom_object(G, V, plural))["items"] for plural in SCHEMAS
            }
        finally:
            await client.close()


async def test_written_objects_match_strict_schemas(tmp_path: Path) -> None:
    seen = 0
    for plural, items in (await simulated_objects(tmp_path)).items():
        v = validator(plural)
        assert items, plural
        for obj in items:
            errors = sorted(v.iter_errors(obj), key=lambda e: list(e.path))
            assert not errors, f"{plural} {obj['metadata']['name']}: " + "; ".join(
                f"{list(e.path)}: {e.message}" for e in errors[:5]
            )
            seen += 1
    assert seen >= 8
