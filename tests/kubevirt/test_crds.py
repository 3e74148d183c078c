"""simulator/crds against the CRDs KubeVirt's own generators produce at every pinned release, and the
objects the simulator and the agent write against those CRDs' schemas.

Needs the builds (``hack/kubevirt/build.sh``: kvgen writes the CRDs), not a running tier.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped,unused-ignore]
import pytest
import yaml

from agent.kube import vmim_body
from tests.kubevirt.cluster import ensure_build, pinned_versions
from tests.simulator.test_schema import simulated_objects

REPO = Path(__file__).resolve().parents[2]
OURS = {
    d["metadata"]["name"]: d
    for p in sorted((REPO / "simulator" / "crds").glob("*.yaml"))
    for d in yaml.safe_load_all(p.read_text())
    if d and d["spec"]["group"] == "kubevirt.io"
}
RELEASES = [pytest.param(v, marks=pytest.mark.kubevirt(version=v), id=v) for v in pinned_versions()]


def generated(version: str) -> dict[str, dict[str, Any]]:
    build = ensure_build(version)
    return {c["metadata"]["name"]: c for c in build.crds()}


def api_shape(crd: dict[str, Any]) -> dict[str, Any]:
    """What a client sees of a CRD: names (listKind defaulted as kube-apiserver does), scope, versions
    with served/storage/deprecated, subresources and printer columns."""
    spec = crd["spec"]
    names = dict(spec["names"])
    names.setdefault("listKind", f"{names['kind']}List")
    versions = [
        {
            "name": v["name"],
            "served": v["served"],
            "storage": v["storage"],
            "deprecated": bool(v.get("deprecated")),
            "subresources": v.get("subresources") or {},
            "columns": [
                (c["name"], c["type"], c["jsonPath"], c.get("priority", 0))
                for c in v.get("additionalPrinterColumns") or []
            ],
        }
        for v in spec["versions"]
    ]
    return {"group": spec["group"], "names": names, "scope": spec["scope"], "versions": versions}


@pytest.mark.parametrize("version", RELEASES)
def test_our_crds_have_kubevirts_names_versions_subresources_and_columns(version: str) -> None:
    theirs = generated(version)
    assert set(OURS) <= set(theirs), sorted(set(OURS) - set(theirs))
    for name, crd in OURS.items():
        assert api_shape(crd) == api_shape(theirs[name]), name


def strict(node: Any) -> Any:
    """A structural OpenAPI v3 schema as a JSON Schema that rejects what kube-apiserver would prune:
    objects with ``properties`` allow no other key (unless ``x-kubernetes-preserve-unknown-fields`` or
    ``additionalProperties``), ``nullable`` admits null, ``x-kubernetes-int-or-string`` either."""
    if isinstance(node, list):
        return [strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def validator(crd: dict[str, Any]) -> Any:
    schema = next(v for v in crd["spec"]["versions"] if v["storage"])["schema"]["openAPIV3Schema"]
    schema = strict(schema)
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


def errors(v: Any, obj: dict[str, Any]) -> list[str]:
    return [f"{list(e.path)}: {e.message}" for e in sorted(v.iter_errors(obj), key=lambda e: list(e.path))]


@pytest.mark.parametrize("version", RELEASES)
async def test_what_the_simulator_writes_fits_kubevirts_schemas(version: str, tmp_path: Path) -> None:
    """Nothing the simulator writes would be pruned or refused by KubeVirt's CRDs of the release."""
    theirs = generated(version)
    objects = await simulated_objects(tmp_path)
    for plural, items in objects.items():
        v = validator(theirs[f"{plural}.kubevirt.io"])
        for obj in items:
            assert not errors(v, obj), (plural, obj["metadata"]["name"], errors(v, obj)[:5])


@pytest.mark.parametrize("version", RELEASES)
def test_the_agents_migration_fits_kubevirts_schema(version: str) -> None:
    v = validator(generated(version)["virtualmachineinstancemigrations.kubevirt.io"])
    body = vmim_body("default", "vm-1")
    assert not errors(v, body), errors(v, body)


@pytest.mark.kubevirt
def test_the_strict_schema_refuses_what_kube_apiserver_would_prune() -> None:
    v = validator(generated(pinned_versions()[0])["virtualmachineinstances.kubevirt.io"])
    status = {"interfaces": [{"name": "a", "infoSourc": "domain"}]}
    body = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "metadata": {"name": "x"},
            "spec": {"domain": {"devices": {}}}, "status": status}  # fmt: skip
    found = errors(v, body)
    assert any("infoSourc" in e for e in found), found
    body["status"]["interfaces"][0] = {"name": "a", "infoSource": "domain"}
    assert not errors(v, body)
