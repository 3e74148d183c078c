"""Every fact of ``agent/kubevirt.py`` is KubeVirt's own, checked against KubeVirt's source.

Strings must appear quoted (or, for the message texts the agent matches on, anywhere) in KubeVirt's
non-test Go source — ``kubevirt.io/kubevirt`` and ``kubevirt.io/api`` at the pinned release, from
Go's module cache (``hack/kubevirt/build.sh`` downloaded them; ``go mod download`` fetches a release the
tier does not pin) — or in the CRDs KubeVirt generates at that release. Numbers must match their Go
declaration. A typo, a rename in a new release, or a fact from the wrong release fails here; under
``CI=true`` a source that cannot be had fails too (``skip_or_fail``).
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
from pathlib import Path

import pytest

from agent import kubevirt
from tests.controlplane.cluster import go_toolchain, skip_or_fail
from tests.kubevirt.cluster import DEFAULT_VERSION, ensure_build

pytestmark = pytest.mark.kubevirt

#: Facts KubeVirt introduced after the pinned releases; the agent reads them when a cluster has them.
RELEASE_OF = {
    "ANNOTATION_PCI_SLOT_COUNT": "v1.9.0",
    "ANNOTATION_PCI_TOPOLOGY_VERSION": "v1.9.0",
    # KubeVirt <= 1.5 (the v1 PCI topology), gone in 1.6.
    "V1_RESERVED_INTERFACES": "v1.5.2",
}
#: Strings that are not KubeVirt's although KubeVirt passes them on, and why.
NOT_KUBEVIRTS = {
    "MSG_NO_PCI_SLOTS": "libvirt's attach error, which virt-handler copies into Synchronized=False",
}
#: Facts made of other facts, and the facts they are made of (checked above on their own).
DERIVED = {"API_VERSION": ("GROUP", "VERSION")}
#: The empty string, by the Go identifier KubeVirt declares it as.
EMPTY = {"PHASE_UNSET": "MigrationPhaseUnset"}
#: Numbers, by the Go declaration that holds them: ``(file under the kubevirt module, identifier)``.
GO_DECLARATIONS = {
    "DEFAULT_PARALLEL_MIGRATIONS_PER_CLUSTER": (
        "pkg/virt-config/virt-config.go",
        "ParallelMigrationsPerClusterDefault",
    ),
    "DEFAULT_PARALLEL_OUTBOUND_MIGRATIONS_PER_NODE": (
        "pkg/virt-config/virt-config.go",
        "ParallelOutboundMigrationsPerNodeDefault",
    ),
    "V1_RESERVED_INTERFACES": ("pkg/virt-launcher/virtwrap/nichotplug.go", "ReservedInterfaces"),
    "V2_TOTAL_PORTS": ("pkg/virt-launcher/virtwrap/manager.go", "hotplugDefaultTotalPorts"),
    "V2_MIN_FREE_PORTS": ("pkg/virt-launcher/virtwrap/manager.go", "hotplugMinRequiredFreePorts"),
    "V2_LARGE_TOTAL_PORTS": ("pkg/virt-launcher/virtwrap/manager.go", "hotplugLargeMemoryDefaultTotalPorts"),
    "V2_LARGE_MIN_FREE_PORTS": (
        "pkg/virt-launcher/virtwrap/manager.go",
        "hotplugLargeMemoryMinRequiredFreePorts",
    ),
    "V2_LARGE_MEMORY_THRESHOLD": ("pkg/virt-launcher/virtwrap/manager.go", "hotplugLargeMemoryThreshold"),
}


def facts() -> dict[str, object]:
    """The public constants of agent.kubevirt (each is annotated ``Final``): strings, numbers, and
    collections of strings."""
    out: dict[str, object] = {}
    for name in kubevirt.__annotations__:
        value = getattr(kubevirt, name)
        if name.startswith("_"):
            continue
        if isinstance(value, str | int) or (
            isinstance(value, tuple | frozenset) and all(isinstance(v, str) for v in value)
        ):
            out[name] = value
    return out


def strings_of(value: object) -> list[str]:
    values = (
        [value] if isinstance(value, str) else sorted(value) if isinstance(value, tuple | frozenset) else []
    )
    return [v for v in values if isinstance(v, str) and v]  # the empty phase is Go's zero value


@functools.cache
def module_dir(module: str, version: str) -> Path:
    """The module's source in Go's module cache (downloaded through the Go module proxy if missing)."""
    go = go_toolchain()
    if go is None:
        skip_or_fail(f"no Go toolchain to find {module}@{version} in the module cache")
    proc = subprocess.run(
        [str(go), "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",  # outside any module: the request names its version
        timeout=600,
    )
    if proc.returncode != 0:
        skip_or_fail(f"go mod download {module}@{version} failed: {proc.stdout[-500:]} {proc.stderr[-500:]}")
    return Path(json.loads(proc.stdout)["Dir"])


@functools.cache
def source(version: str) -> str:
    """KubeVirt's non-test Go source at ``version`` (kubevirt.io/kubevirt and kubevirt.io/api), joined."""
    texts: list[str] = []
    for module in ("kubevirt.io/kubevirt", "kubevirt.io/api"):
        root = module_dir(module, version)
        for path in sorted(root.rglob("*.go")):
            if path.name.endswith("_test.go") or path.relative_to(root).parts[0] in ("tests", "vendor"):
                continue
            texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)


def _json_strings(doc: object, out: set[str]) -> None:
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.add(k)
            _json_strings(v, out)
    elif isinstance(doc, list):
        for v in doc:
            _json_strings(v, out)
    elif isinstance(doc, str):
        out.add(doc)


@functools.cache
def crd_strings(version: str) -> frozenset[str]:
    """Every key and string value of the CRDs (and install manifest) KubeVirt generated at ``version``."""
    out: set[str] = set()
    for path in sorted(ensure_build(version).manifests.rglob("*.json")):
        _json_strings(json.loads(path.read_text()), out)
    return frozenset(out)


def go_constant(version: str, file: str, identifier: str) -> int:
    """The value of ``identifier = <number or product of numbers>`` in ``file`` of the kubevirt module."""
    text = (module_dir("kubevirt.io/kubevirt", version) / file).read_text()
    m = re.search(rf"\b{re.escape(identifier)}\b(?:\s+\w+)?\s*=\s*([0-9][0-9 *]*)", text)
    assert m is not None, f"{identifier} is not declared in {file} at KubeVirt {version}"
    product = 1
    for factor in m.group(1).split("*"):
        product *= int(factor)
    return product


STRING_FACTS = sorted(
    n for n, v in facts().items() if strings_of(v) and n not in NOT_KUBEVIRTS and n not in DERIVED
)
NUMBER_FACTS = sorted(n for n, v in facts().items() if isinstance(v, int))


@pytest.mark.parametrize("name", STRING_FACTS)
def test_string_is_kubevirts(name: str) -> None:
    version = RELEASE_OF.get(name, DEFAULT_VERSION)
    text = source(version)
    crds = crd_strings(version) if version == DEFAULT_VERSION else frozenset()
    for value in strings_of(getattr(kubevirt, name)):
        # A message text the agent matches is part of a longer format string; everything else is a literal.
        found = value in text if name.startswith("MSG_") else f'"{value}"' in text or value in crds
        assert found, f"{name} = {value!r} is not in KubeVirt {version}'s source (nor its CRDs)"


@pytest.mark.parametrize("name", NUMBER_FACTS)
def test_number_is_kubevirts(name: str) -> None:
    assert name in GO_DECLARATIONS, f"say where {name} comes from in GO_DECLARATIONS"
    version = RELEASE_OF.get(name, DEFAULT_VERSION)
    file, identifier = GO_DECLARATIONS[name]
    assert getattr(kubevirt, name) == go_constant(version, file, identifier)


def test_derived_and_empty_facts() -> None:
    assert "/".join(getattr(kubevirt, part) for part in DERIVED["API_VERSION"]) == kubevirt.API_VERSION
    assert set(DERIVED["API_VERSION"]) <= set(STRING_FACTS)
    text = source(DEFAULT_VERSION)
    for name, identifier in EMPTY.items():
        assert getattr(kubevirt, name) == ""
        assert re.search(rf'\b{identifier}\b(?:\s+\w+)?\s*=\s*""', text), (
            f"{identifier} is not declared empty"
        )


def test_every_fact_is_checked() -> None:
    """A new constant of agent/kubevirt.py is checked by one of the tests above, or excused by name."""
    checked = set(STRING_FACTS) | set(NUMBER_FACTS) | set(DERIVED) | set(EMPTY)
    unchecked = set(facts()) - checked - set(NOT_KUBEVIRTS)
    assert unchecked == set()
    assert set(NOT_KUBEVIRTS) <= set(facts()), "an excuse for a constant that no longer exists"
    assert set(RELEASE_OF) <= set(facts())
