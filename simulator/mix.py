"""The default scenario's mix of VMs: category → share, and what each category is for.

Kept apart from :mod:`simulator.scenario` (which imports kubernetes-asyncio, ~2 s) so that the command
line can describe the mix in ``cluster --help`` and ``simulate --help`` without loading the simulator.
"""

from __future__ import annotations

from typing import Final

#: Category → weight in the default mix.
DEFAULT_MIX: Final[dict[str, float]] = {
    "bridge-plug": 0.32,
    "sriov-plug": 0.13,
    "bridge-unplug": 0.15,
    "sriov-unplug": 0.03,
    "not-migratable-interface": 0.02,
    "not-migratable-hostdevice": 0.02,
    "not-migratable-disk": 0.02,
    "slots-predictable": 0.03,
    "slots-observed": 0.03,
    "opted-out": 0.04,
    "restart-required": 0.04,
    "missing-nad": 0.02,
    "sriov-exhausted": 0.01,
    "idle": 0.14,
}

#: Category → what its VM looks like and which rule its edit exercises.
CATEGORY_HELP: Final[dict[str, str]] = {
    "bridge-plug": "one bridge NIC; a bridge interface is plugged",
    "sriov-plug": "one bridge NIC; an SR-IOV interface is plugged",
    "bridge-unplug": "two bridge NICs; the second is set absent",
    "sriov-unplug": "one SR-IOV NIC set absent (admission refuses it)",
    "not-migratable-interface": "pod network with bridge binding (LiveMigratable=False); a plug",
    "not-migratable-hostdevice": "a host device (LiveMigratable=False); a plug",
    "not-migratable-disk": "a ReadWriteOnce PVC (LiveMigratable=False); a plug",
    "slots-predictable": "booted with 4 interfaces; a plug (no slot left, predictable)",
    "slots-observed": "hot-plugged disks took the free ports; a plug (no slot, seen after migrating)",
    "opted-out": 'label hotplug-agent.io/auto-migrate: "false"; a plug',
    "restart-required": "an interface removed instead of set absent (RestartRequired); a plug",
    "missing-nad": "a bridge interface plugged whose NetworkAttachmentDefinition nobody created",
    "sriov-exhausted": "booted with one VF of a 1-VF-per-node resource; a second SR-IOV plug on it",
    "idle": "no edit",
}


def describe_mix() -> str:
    """One line per category with its share, for ``--help``."""
    return "\n".join(
        f"  {share:4.0%}  {name:<26} {CATEGORY_HELP[name]}" for name, share in DEFAULT_MIX.items()
    )
