"""PCI hot-plug slot models: will a pending NIC hot plug find a free PCIe root port in the guest?

Why predict: a live migration does not change the guest's PCI topology (the domain definition travels
with the guest), so when the running domain has no free hot-pluggable root port, migrating only burns
a migration; the NIC then fails to attach (``No more available PCI slots``) and the only cure is a
restart. Predicting it lets the agent block with a useful Event instead. Observing it (VMI condition
``Synchronized=False`` with that message) is authoritative and always wins.

The agent cannot see the domain, only the VMI, so every model states whether its prediction is
*certain*. ``decide`` blocks only on certain (or observed) exhaustion; an uncertain "probably
exhausted" is reported but the migration is tried, and the observation catches it.

Models (KubeVirt's ``pkg/virt-launcher/virtwrap/nichotplug.go`` up to 1.5, ``calculateHotplugPortCount``
in ``pkg/virt-launcher/virtwrap/manager.go`` from 1.6; the rules in docs/decisions.md):

``v1`` (KubeVirt ≤ 1.5)
    ``placeholders = max(0, 4 - interfaces at boot)`` (``ReservedInterfaces = 4``); none with annotation
    ``kubevirt.io/placePCIDevicesOnRootComplex: "true"``. So NIC capacity is ``max(4, boot count)``.
    The boot count is unknown; we use "exhausted iff non-absent interfaces after the plug > 4", which
    is exact unless the VM booted with more than 4 interfaces and some were unplugged since (their
    ports are free again). Certain unless the VMI shows unplug history (an ``absent`` interface).
    Also certain: every interface is a hot plug (the VMI booted with none: no placeholders).
    Hot-plugged virtio disks use the same ports, so "fits" is only certain without hot-plugged volumes.
``v2`` (KubeVirt 1.6+)
    free ports at boot ``F = max(T - U, M)`` with ``(T, M) = (8, 3)``, or ``(16, 6)`` above 2 GiB guest
    memory, ``U`` = ports used at boot (NICs, virtio disks, controllers …; unknown to us). Hot plugs
    since boot ``h`` exhaust the guest iff ``h > F``. Certain bound: ``h ≥ known + plugs`` (hot plugs
    the agent saw for this VMI uid, plus the ones pending now) and the device count after the plug
    ``≥ n`` (non-absent NICs), so exhaustion is certain iff ``known + plugs > M`` and ``n > T``
    (then ``U + h ≥ n > T`` and ``h > M``, i.e. ``h > max(T - U, M)``). Unknown memory uses (16, 6).
    Unplugs free ports, so an ``absent`` interface in the spec voids certainty, and the caller passes
    ``known_hotplugged`` as plugs seen minus unplugs seen for this VMI uid.
``annotation`` (KubeVirt 1.9, ``kubevirt.io/pci-interface-slot-count: S``)
    ``S`` interface slots are reserved (placeholders ``max(0, S - n_boot)``) plus v2's extra empty
    root ports. Exhausted iff non-absent interfaces after the plug > ``S``; certain only when the v2
    bound is certain as well (the extra root ports could still take the NIC).
``none``
    Never predicts; only observation counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from agent.kubevirt import (
    V1_RESERVED_INTERFACES,
    V2_LARGE_MEMORY_THRESHOLD,
    V2_LARGE_MIN_FREE_PORTS,
    V2_LARGE_TOTAL_PORTS,
    V2_MIN_FREE_PORTS,
    V2_TOTAL_PORTS,
)
from agent.model import KubeVirtRecord, VMIRecord

SlotModel = Literal["v1", "v2", "annotation", "none"]

RESTART_HINT: Final = "restart the VM to get a fresh PCI topology"


@dataclass(frozen=True, slots=True)
class SlotPrediction:
    """Outcome of a slot model for one VMI. Numbers are ``None`` where the model cannot know them."""

    model: SlotModel | Literal["observed"]
    exhausted: bool
    certain: bool
    capacity: int | None
    used: int | None
    free: int | None
    explanation: str


def choose_slot_model(
    configured: str, kubevirt: KubeVirtRecord | None, vmi: VMIRecord | None = None
) -> SlotModel:
    """Pick the model: the configured one unless ``auto``; in ``auto`` the VMI's own annotations
    (``pci-interface-slot-count``, ``pci-topology-version``) win, then the KubeVirt version
    (< 1.6 → v1, ≥ 1.6 → v2); unknown version → ``none`` (never block on a guess).

    An unknown configured value is treated as ``none`` (the CLI validates; this stays total).
    """
    if configured in ("v1", "v2", "none"):
        return configured  # type: ignore[return-value]
    if configured != "auto":
        return "none"
    if vmi is not None:
        if vmi.pci_slot_count is not None:
            return "annotation"
        if vmi.pci_topology_version in ("v2", "v3"):
            return "v2"
    if kubevirt is None or kubevirt.version is None:
        return "none"
    if kubevirt.version[:2] < (1, 6):
        return "v1"
    return "v2"


def _v2_bounds(vmi: VMIRecord) -> tuple[int, int]:
    """(total, min free) for v2; unknown memory takes the larger pair (the conservative one)."""
    if vmi.memory_bytes is None or vmi.memory_bytes > V2_LARGE_MEMORY_THRESHOLD:
        return V2_LARGE_TOTAL_PORTS, V2_LARGE_MIN_FREE_PORTS
    return V2_TOTAL_PORTS, V2_MIN_FREE_PORTS


def _v2_certain(n_after: int, hotplugs_lower: int, total: int, min_free: int) -> bool:
    return hotplugs_lower > min_free and n_after > total


def observed(vmi: VMIRecord) -> SlotPrediction | None:
    """Observed exhaustion (``Synchronized=False`` with ``No more available PCI slots``), else None."""
    if not vmi.sync_failed_pci:
        return None
    return SlotPrediction(
        model="observed",
        exhausted=True,
        certain=True,
        capacity=None,
        used=None,
        free=0,
        explanation=f"KubeVirt reported 'No more available PCI slots' for this VMI; {RESTART_HINT}",
    )


def predict(vmi: VMIRecord, model: SlotModel, plugs: int, known_hotplugged: int = 0) -> SlotPrediction:
    """Predict whether ``plugs`` pending hot plugs (already in the VMI spec) fit.

    ``known_hotplugged``: interfaces the agent itself saw hot plugged into this VMI (same uid) before,
    a lower bound on ports consumed since boot. Observation is not consulted here (see
    :func:`assess`). Pure and total.
    """
    n_after = sum(1 for i in vmi.interfaces if not i.absent)
    plugs = max(plugs, 0)
    known_hotplugged = max(known_hotplugged, 0)
    # An absent interface in the spec means ports were freed since boot: no certainty then.
    unplug_history = any(i.absent for i in vmi.interfaces)
    if plugs == 0:
        return SlotPrediction(model, False, True, None, n_after, None, "no hot plug pending")
    if model == "none":
        return SlotPrediction("none", False, False, None, n_after, None, "slot prediction disabled")
    if model == "v1":
        if vmi.place_on_root_complex:
            return SlotPrediction(
                "v1",
                True,
                True,
                0,
                n_after,
                0,
                "kubevirt.io/placePCIDevicesOnRootComplex is set: no PCI hot-plug ports were reserved; "
                + RESTART_HINT,
            )
        if plugs >= n_after and not unplug_history:
            return SlotPrediction(
                "v1",
                True,
                True,
                0,
                n_after,
                0,
                "the VMI booted without interfaces, so KubeVirt ≤ 1.5 reserved no PCI hot-plug ports; "
                + RESTART_HINT,
            )
        cap = V1_RESERVED_INTERFACES
        if n_after > cap:
            return SlotPrediction(
                "v1",
                True,
                not unplug_history,
                cap,
                n_after,
                0,
                f"{n_after} interfaces after the hot plug exceed the {cap} reserved PCI slots "
                f"(KubeVirt ≤ 1.5); {RESTART_HINT}",
            )
        # Hot-plugged virtio disks take ports from the same pool, so "fits" is sure only without them.
        return SlotPrediction(
            "v1",
            False,
            vmi.hotplugged_volume_count == 0,
            cap,
            n_after,
            cap - n_after,
            f"{n_after} of {cap} reserved interface slots",
        )
    total, min_free = _v2_bounds(vmi)
    lower = known_hotplugged + plugs
    v2_certain = _v2_certain(n_after, lower, total, min_free) and not unplug_history
    if model == "annotation":
        cap = vmi.pci_slot_count if vmi.pci_slot_count is not None else V1_RESERVED_INTERFACES
        if n_after > cap:
            return SlotPrediction(
                "annotation",
                True,
                v2_certain,
                cap,
                n_after,
                0,
                f"{n_after} interfaces after the hot plug exceed kubevirt.io/pci-interface-slot-count={cap}"
                + (f"; {RESTART_HINT}" if v2_certain else "; extra root ports may still take it"),
            )
        return SlotPrediction(
            "annotation", False, True, cap, n_after, cap - n_after, f"{n_after} of {cap} interface slots"
        )
    # v2
    if v2_certain:
        return SlotPrediction(
            "v2",
            True,
            True,
            max(total, n_after),
            n_after,
            0,
            f"at least {lower} hot plugs since boot exceed the {min_free} guaranteed free ports and "
            f"{n_after} interfaces exceed the {total} default ports (KubeVirt ≥ 1.6); {RESTART_HINT}",
        )
    return SlotPrediction(
        "v2",
        False,
        lower <= min_free,
        None,
        n_after,
        None,
        f"{lower} known hot plug(s) since boot; at least {min_free} ports were free at boot",
    )


def assess(vmi: VMIRecord, model: SlotModel, plugs: int, known_hotplugged: int = 0) -> SlotPrediction:
    """Observation first (authoritative), else the model's prediction."""
    seen = observed(vmi) if plugs > 0 else None
    return seen if seen is not None else predict(vmi, model, plugs, known_hotplugged)
