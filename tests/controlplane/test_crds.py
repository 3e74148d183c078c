"""Our hand-written KubeVirt CRDs (simulator/crds/*.yaml) and KubeVirt's sample objects.

No binaries needed. The CRDs use an open schema (x-kubernetes-preserve-unknown-fields), so what the
API server would accept says nothing about field correctness; instead the sample objects from
shared/kubevirt/examples/ are validated against the strict JSON schemas in shared/kubevirt/schemas/
(KubeVirt v1.6.2 openAPIV3Schema plus additionalProperties: false), and the CRDs' names, versions,
printer columns and subresources are checked against KubeVirt's generator (virt-operator crds.go).
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped,unused-ignore]
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "simulator" / "crds"
SHARED = REPO.parent / "shared" / "kubevirt"
EXAMPLES = SHARED / "examples"
SCHEMAS = SHARED / "schemas"

# kind -> (plural, short names, printer columns (name, jsonPath, priority), status subresource, schema file)
EXPECTED: dict[str, tuple[str, list[str], list[tuple[str, str, int]], bool, str]] = {
    "VirtualMachine": (
        "virtualmachines",
        ["vm", "vms"],
        [
            ("Age", ".metadata.creationTimestamp", 0),
            ("Status", ".status.printableStatus", 0),
            ("Ready", ".status.conditions[?(@.type=='Ready')].status", 0),
        ],
        True,
        "virtualmachine_v1.json",
    ),
    "VirtualMachineInstance": (
        "virtualmachineinstances",
        ["vmi", "vmis"],
        [
            ("Age", ".metadata.creationTimestamp", 0),
            ("Phase", ".status.phase", 0),
            ("IP", ".status.interfaces[0].ipAddress", 0),
            ("NodeName", ".status.nodeName", 0),
            ("Ready", ".status.conditions[?(@.type=='Ready')].status", 0),
            ("Live-Migratable", ".status.conditions[?(@.type=='LiveMigratable')].status", 1),
            ("Paused", ".status.conditions[?(@.type=='Paused')].status", 1),
        ],
        False,  # KubeVirt's VMI has NO status subresource
        "virtualmachineinstance_v1.json",
    ),
    "VirtualMachineInstanceMigration": (
        "virtualmachineinstancemigrations",
        ["vmim", "vmims"],
        [("Phase", ".status.phase", 0), ("VMI", ".spec.vmiName", 0)],
        True,
        "virtualmachineinstancemigration_v1.json",
    ),
    "KubeVirt": (
        "kubevirts",
        ["kv", "kvs"],
        [("Age", ".metadata.creationTimestamp", 0), ("Phase", ".status.phase", 0)],
        True,
        "kubevirt_v1.json",
    ),
}
# Sample kinds in shared/kubevirt/examples/ that belong to other KubeVirt CRDs we do not install.
NOT_OURS = {"MigrationPolicy"}


def load_crds(group: str = "kubevirt.io") -> dict[str, dict[str, Any]]:
    """The CRDs of ``group`` in simulator/crds (the folder also holds Multus's NAD CRD)."""
    crds: dict[str, dict[str, Any]] = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert len(docs) == 1, f"{path.name}: one CRD per file"
        crd = docs[0]
        assert path.stem == crd["spec"]["names"]["plural"], f"{path.name} is named after its plural"
        if crd["spec"]["group"] == group:
            crds[crd["spec"]["names"]["kind"]] = crd
    return crds


def shared_or_skip(path: Path) -> Path:
    if not path.is_dir():
        pytest.skip(f"{path} not found (shared/ is laid beside the repository)")
    return path


def example_objects() -> list[tuple[str, dict[str, Any]]]:
    if not EXAMPLES.is_dir():
        return []
    out = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc:
                out.append((f"{path.name}#{i}", doc))
    return out


@functools.cache
def strict_validator(kind: str) -> jsonschema.protocols.Validator:
    schema = json.loads((shared_or_skip(SCHEMAS) / EXPECTED[kind][4]).read_text())
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    validator: jsonschema.protocols.Validator = cls(schema)
    return validator


def test_one_crd_file_per_kind() -> None:
    assert set(load_crds()) == set(EXPECTED)


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_crd_matches_kubevirt(kind: str) -> None:
    crd = load_crds()[kind]
    plural, shorts, columns, status, _schema = EXPECTED[kind]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{plural}.kubevirt.io"
    spec = crd["spec"]
    assert spec["group"] == "kubevirt.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "plural": plural,
        "singular": plural[:-1],
        "kind": kind,
        "listKind": f"{kind}List",
        "shortNames": shorts,
        "categories": ["all"],
    }
    versions = {v["name"]: v for v in spec["versions"]}
    assert versions["v1"]["served"] is True
    assert versions["v1"]["storage"] is True
    assert [v["name"] for v in spec["versions"] if v["storage"]] == ["v1"], "exactly one storage version"
    assert set(versions) <= {"v1", "v1alpha3"}
    for version in spec["versions"]:
        got = [(c["name"], c["jsonPath"], c.get("priority", 0)) for c in version["additionalPrinterColumns"]]
        assert got == columns, version["name"]
        if status:
            assert version.get("subresources") == {"status": {}}, version["name"]
        else:
            assert "subresources" not in version, f"{kind} must have no subresources ({version['name']})"
        schema = version["schema"]["openAPIV3Schema"]
        assert schema["type"] == "object"
        assert schema["x-kubernetes-preserve-unknown-fields"] is True


def test_examples_are_all_known_kinds() -> None:
    shared_or_skip(EXAMPLES)
    kinds = {doc["kind"] for _name, doc in example_objects()}
    assert kinds, "no sample objects found"
    assert kinds - NOT_OURS <= set(EXPECTED), kinds - NOT_OURS - set(EXPECTED)
    # every CRD we install except KubeVirt has at least one upstream sample
    assert set(EXPECTED) - {"KubeVirt"} <= kinds


@pytest.mark.parametrize(
    ("name", "obj"),
    [pytest.param(n, o, id=n) for n, o in example_objects() if o["kind"] not in NOT_OURS],
)
def test_example_is_valid_against_strict_schema(name: str, obj: dict[str, Any]) -> None:
    crds = load_crds()
    crd = crds[obj["kind"]]
    group, version = obj["apiVersion"].split("/")
    assert group == crd["spec"]["group"]
    assert version in {v["name"] for v in crd["spec"]["versions"] if v["served"]}
    errors = sorted(strict_validator(obj["kind"]).iter_errors(obj), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_strict_schema_rejects_unknown_fields() -> None:
    """The validator above is not vacuous: a typo in a sample is caught."""
    samples = [o for _n, o in example_objects() if o["kind"] == "VirtualMachineInstanceMigration"]
    if not samples:
        pytest.skip("no VirtualMachineInstanceMigration sample")
    bad = copy.deepcopy(samples[0])
    bad["spec"]["vmiNmae"] = "typo"
    errors = list(strict_validator("VirtualMachineInstanceMigration").iter_errors(bad))
    assert errors
    bad = copy.deepcopy(samples[0])
    bad["spec"]["vmiName"] = 42
    assert list(strict_validator("VirtualMachineInstanceMigration").iter_errors(bad))


def test_kubevirt_cr_with_migration_limits_is_valid() -> None:
    """The KubeVirt CR fields the agent reads (migration limits) exist in KubeVirt's schema."""
    kv: dict[str, Any] = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "KubeVirt",
        "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
        "spec": {
            "configuration": {
                "migrations": {"parallelMigrationsPerCluster": 5, "parallelOutboundMigrationsPerNode": 2},
            },
        },
        "status": {"phase": "Deployed"},
    }
    validator = strict_validator("KubeVirt")
    assert not list(validator.iter_errors(kv))
    kv["spec"]["configuration"]["migrations"]["parallelMigrationsPerClsuter"] = 5
    assert list(validator.iter_errors(kv))
