"""Small builders of raw KubeVirt objects (parsed through the real parsers) for the unit tests."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from agent import names
from agent.model import VMIMRecord, VMIRecord, VMRecord, parse_vm, parse_vmi, parse_vmim

#: Hypothesis examples per property test; raise it for a soak run: ``AGENT_UNIT_MAX_EXAMPLES=5000``.
MAX_EXAMPLES = int(os.environ.get("AGENT_UNIT_MAX_EXAMPLES", "300"))

NS = "ns1"
NAME = "vm1"


def iface(name: str, binding: str = "bridge", state: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"name": name}
    out["binding" if binding == "binding-plugin" else binding] = (
        {"name": "x"} if binding == "binding-plugin" else {}
    )
    if state:
        out["state"] = state
    return out


def net(name: str, kind: str = "multus", default: bool = False) -> dict[str, Any]:
    if kind == "pod":
        return {"name": name, "pod": {}}
    multus: dict[str, Any] = {"networkName": f"nad-{name}"}
    if default:
        multus["default"] = True
    return {"name": name, "multus": multus}


def default_ifaces() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(iface("default", "masquerade"), net("default", "pod"))]


def vmi(
    extra: Sequence[tuple[dict[str, Any], dict[str, Any]]] = (),
    statuses: dict[str, str] | None = None,
    *,
    phase: str = "Running",
    node: str = "node-a",
    live_migratable: str | None = "True",
    lm_reason: str = "",
    sync_pci: bool = False,
    memory: str | None = "1Gi",
    annotations: dict[str, str] | None = None,
    migrating: bool = False,
    migration_start: str | None = None,
    migration_required: tuple[str, str, str] | None = None,
    hotplug_volumes: int = 0,
    ordinal: bool = False,
    name: str = NAME,
) -> VMIRecord:
    """A VMI with the pod interface (in domain) plus ``extra`` (iface, network) pairs.

    ``statuses``: interface name → infoSource string (absent key = no status entry).
    """
    pairs = default_ifaces() + list(extra)
    st = {"default": "domain, guest-agent"}
    st.update(statuses or {})
    conds: list[dict[str, Any]] = []
    if live_migratable is not None:
        conds.append(
            {"type": "LiveMigratable", "status": live_migratable, "reason": lm_reason, "message": "nope"}
        )
    if sync_pci:
        conds.append(
            {
                "type": "Synchronized",
                "status": "False",
                "message": "internal error: No more available PCI slots",
            }
        )
    if migration_required:
        conds.append(
            {
                "type": "MigrationRequired",
                "status": migration_required[0],
                "reason": migration_required[1],
                "lastTransitionTime": migration_required[2],
            }
        )
    domain: dict[str, Any] = {"devices": {"interfaces": [p[0] for p in pairs]}}
    if memory:
        domain["memory"] = {"guest": memory}
    status: dict[str, Any] = {
        "phase": phase,
        "nodeName": node,
        "interfaces": [
            {
                "name": n,
                "infoSource": src,
                "podInterfaceName": (f"net{i}" if ordinal else f"pod{i:011d}") if n != "default" else "eth0",
            }
            for i, (n, src) in enumerate(st.items())
        ],
        "conditions": conds,
        "volumeStatus": [{"name": f"hp{i}", "hotplugVolume": {}} for i in range(hotplug_volumes)],
    }
    if migrating:
        status["migrationState"] = {"sourceNode": node, "targetNode": "node-b"}
        if migration_start is not None:
            status["migrationState"]["startTimestamp"] = migration_start
    return parse_vmi(
        {
            "metadata": {
                "name": name,
                "namespace": NS,
                "uid": f"uid-{name}",
                "annotations": annotations or {},
            },
            "spec": {"domain": domain, "networks": [p[1] for p in pairs]},
            "status": status,
        }
    )


def vm(
    extra: Sequence[tuple[dict[str, Any], dict[str, Any]]] = (),
    *,
    opted_out: bool = False,
    restart_required: bool = False,
    name: str = NAME,
) -> VMRecord:
    pairs = default_ifaces() + list(extra)
    labels = {names.LABEL_AUTO_MIGRATE: "false"} if opted_out else {}
    conds = [{"type": "RestartRequired", "status": "True"}] if restart_required else []
    return parse_vm(
        {
            "metadata": {"name": name, "namespace": NS, "uid": f"vm-{name}", "labels": labels},
            "spec": {
                "runStrategy": "Always",
                "template": {
                    "spec": {
                        "domain": {"devices": {"interfaces": [p[0] for p in pairs]}},
                        "networks": [p[1] for p in pairs],
                    }
                },
            },
            "status": {"conditions": conds},
        }
    )


def vmim(
    phase: str = "Running",
    *,
    vmi_name: str = NAME,
    name: str = "hotplug-vm1-xyz",
    ours: bool = True,
    source: str = "node-a",
) -> VMIMRecord:
    labels = {names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE} if ours else {}
    return parse_vmim(
        {
            "metadata": {
                "name": name,
                "namespace": NS,
                "labels": labels,
                "creationTimestamp": "2026-01-01T00:00:00Z",
            },
            "spec": {"vmiName": vmi_name},
            "status": {"phase": phase, "migrationState": {"sourceNode": source}},
        }
    )
