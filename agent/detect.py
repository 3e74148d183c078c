"""Detection of pending NIC hot plugs and unplugs, with KubeVirt's own rules.

Why KubeVirt's rules: the agent must agree with KubeVirt on what "pending" means, or it migrates VMs
KubeVirt considers done (or misses ones it considers pending). The rules mirror
``pkg/network/migration/evaluator.go`` (``shouldVMIBeMarkedForAutoMigration``),
evaluated only over secondary (non-default) Multus interfaces:

* pending plug: ``state != absent`` and no ``status.interfaces`` entry (the pod lacks the network);
  SR-IOV is *immediate*, everything else gets the dynamic-networks-controller grace;
* pending unplug: ``state == absent`` and a status entry with ``multus-status`` but without ``domain``
  (detached from the guest, still in the pod).

Plus what only the VM shows (``pkg/network/controllers/vm.go``):

* waiting for KubeVirt: a template interface (bridge/SR-IOV binding, secondary Multus, not absent) not
  yet in the VMI spec, or a template ``absent`` not yet propagated to the VMI;
* not deliverable by live update: a template interface KubeVirt never hot plugs (other bindings, the pod
  network, a default Multus network) or an interface *removed* from the template instead of being set
  ``absent`` (KubeVirt sets ``RestartRequired``); an ``absent`` request on a VMI that uses legacy ordinal
  pod-interface names (``net1``…; KubeVirt does not propagate it, ``hasOrdinalIfaces``);
* SR-IOV unplug: an SR-IOV interface ``absent`` in the VMI spec (admission rejects it today, older
  versions or bypassed admission can still produce it), or an SR-IOV interface removed from the VM
  template while the VMI still has it. KubeVirt cannot unplug SR-IOV at all.

Not covered: the HEAD-only "NAD reference changed" rule, which needs the pod's ``network-status``
annotation (the agent does not watch pods).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

from agent.kubevirt import HOTPLUG_BINDINGS, VMI_PHASE_RUNNING
from agent.model import Binding, Interface, VMIMRecord, VMIRecord, VMRecord

ChangeKind = Literal["plug", "unplug"]
Status = Literal["not-running", "in-progress", "pending", "waiting-for-kubevirt", "undeliverable", "done"]

_ORDINAL_POD_IFACE: Final = re.compile(r"net\d+")


@dataclass(frozen=True, slots=True)
class PendingChange:
    """One interface that needs a migration to reach the guest (plug) or to leave the pod (unplug)."""

    iface: str
    kind: ChangeKind
    binding: Binding

    @property
    def immediate(self) -> bool:
        """SR-IOV plugs cannot happen in place, so KubeVirt (and we) skip the grace period."""
        return self.kind == "plug" and self.binding == "sriov"


@dataclass(frozen=True, slots=True)
class Detection:
    """Everything ``decide`` needs to know about one VMI's interfaces."""

    status: Status
    changes: tuple[PendingChange, ...] = ()
    waiting_for_kubevirt: tuple[str, ...] = ()
    #: Template changes KubeVirt cannot apply live (name, why).
    undeliverable: tuple[tuple[str, str], ...] = ()
    #: Of those, interfaces removed from the template instead of set ``absent``: KubeVirt sets
    #: ``RestartRequired`` for them whatever else is pending (``IsRestartRequired``).
    removed: tuple[str, ...] = ()
    sriov_unplugs: tuple[str, ...] = ()
    #: In the pod, not (yet) in the guest: virt-handler attaches these in place (bridge).
    attaching: tuple[str, ...] = ()
    #: ``absent`` in the VMI spec but still in the guest: virt-handler detaches these in place first,
    #: then the unplug needs a migration to leave the pod. Not done yet, not a change to migrate for.
    detaching: tuple[str, ...] = ()
    #: The unfinished VMIM of this VMI, if one exists (any initiator).
    active_migration: VMIMRecord | None = None

    @property
    def plugs(self) -> tuple[PendingChange, ...]:
        return tuple(c for c in self.changes if c.kind == "plug")

    @property
    def unplugs(self) -> tuple[PendingChange, ...]:
        return tuple(c for c in self.changes if c.kind == "unplug")

    @property
    def anything_pending(self) -> bool:
        """Some interface change is not in the guest yet, in whatever way (the agent tracks the VMI)."""
        return bool(
            self.changes
            or self.waiting_for_kubevirt
            or self.undeliverable
            or self.sriov_unplugs
            or self.attaching
            or self.detaching
        )


def _hotpluggable(iface: Interface) -> bool:
    return iface.network.is_secondary_multus and iface.binding in HOTPLUG_BINDINGS


@dataclass(slots=True)
class _Found:
    """What :func:`detect` collects about the interfaces, before it is frozen into a :class:`Detection`."""

    changes: list[PendingChange] = field(default_factory=list)
    attaching: list[str] = field(default_factory=list)
    detaching: list[str] = field(default_factory=list)
    sriov_unplugs: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    undeliverable: list[tuple[str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def detect(vmi: VMIRecord, vm: VMRecord | None, migrations: Iterable[VMIMRecord] = ()) -> Detection:
    """Classify one VMI. ``migrations``: VMIMs of this VMI (others are ignored). Pure and total.

    Only a Running VMI with a node is evaluated: before that there are no status entries and every
    interface would look like a pending plug.
    """
    active = _active_migration(vmi, migrations)
    if vmi.phase != VMI_PHASE_RUNNING or not vmi.node or vmi.deletion_requested:
        return Detection(status="not-running", active_migration=active)
    found = _Found()
    _read_vmi(vmi, found)
    if vm is not None:
        _read_template(vmi, vm, found)
        _read_removed(vmi, vm, found)
    return Detection(
        status=_status(found, migrating=active is not None or vmi.migrating),
        changes=tuple(found.changes),
        waiting_for_kubevirt=tuple(found.waiting),
        undeliverable=tuple(found.undeliverable),
        removed=tuple(found.removed),
        sriov_unplugs=tuple(dict.fromkeys(found.sriov_unplugs)),
        attaching=tuple(found.attaching),
        detaching=tuple(found.detaching),
        active_migration=active,
    )


def _active_migration(vmi: VMIRecord, migrations: Iterable[VMIMRecord]) -> VMIMRecord | None:
    """The newest unfinished VMIM of this VMI."""
    active = None
    for m in migrations:
        newer = active is None or (m.creation_ts or 0.0) > (active.creation_ts or 0.0)
        if m.vmi_key == vmi.key and not m.final and newer:
            active = m
    return active


def _read_vmi(vmi: VMIRecord, found: _Found) -> None:
    """The VMI spec against its status: plugs and unplugs to migrate for, and what happens in place."""
    for iface in vmi.interfaces:
        if not iface.network.is_secondary_multus:
            continue
        st = vmi.status_for(iface.name)
        if iface.absent:
            if iface.binding == "sriov":
                if st is not None:
                    found.sriov_unplugs.append(iface.name)
                continue
            if st is not None and st.in_pod and not st.in_domain:
                found.changes.append(PendingChange(iface.name, "unplug", iface.binding))
            elif st is not None and st.in_domain:
                found.detaching.append(iface.name)
        elif st is None:
            found.changes.append(PendingChange(iface.name, "plug", iface.binding))
        elif st.in_pod and not st.in_domain:
            found.attaching.append(iface.name)


def _read_template(vmi: VMIRecord, vm: VMRecord, found: _Found) -> None:
    """The VM template against the VMI spec: edits KubeVirt has yet to sync, and edits it never will."""
    ordinal = any(_ORDINAL_POD_IFACE.fullmatch(s.pod_interface_name) for s in vmi.statuses)
    for t in vm.template_interfaces:
        current = vmi.interface(t.name)
        if current is None:
            if t.absent:
                continue  # never plugged, nothing to remove
            if _hotpluggable(t):
                found.waiting.append(t.name)
            else:
                why = (
                    f"binding {t.binding} cannot be hot plugged"
                    if t.network.is_secondary_multus
                    else "only secondary Multus networks can be hot plugged"
                )
                found.undeliverable.append((t.name, why))
        elif t.absent and not current.absent:
            if current.binding == "sriov":
                found.sriov_unplugs.append(t.name)
            elif ordinal:
                found.undeliverable.append(
                    (t.name, "VMI uses legacy ordinal interface names, hot unplug is not supported")
                )
            else:
                found.waiting.append(t.name)


def _read_removed(vmi: VMIRecord, vm: VMRecord, found: _Found) -> None:
    """Interfaces of the VMI that the VM template no longer names at all (not set absent)."""
    template_names = {t.name for t in vm.template_interfaces}
    for iface in vmi.interfaces:
        if iface.name in template_names or iface.absent:
            continue
        if iface.binding == "sriov":
            found.sriov_unplugs.append(iface.name)
        else:
            found.removed.append(iface.name)
            found.undeliverable.append(
                (iface.name, "removed from the VM template instead of being set to state absent")
            )


def _status(found: _Found, *, migrating: bool) -> Status:
    """The one word for the VMI, most urgent first."""
    if migrating:
        return "in-progress"
    if found.changes:
        return "pending"
    if found.waiting:
        return "waiting-for-kubevirt"
    if found.undeliverable or found.sriov_unplugs:
        return "undeliverable"
    return "done"
