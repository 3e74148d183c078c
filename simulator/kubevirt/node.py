"""KubeVirt's node side: what virt-handler, libvirt (and, around a migration, the node) do to a VMI.

Why a module of its own: this is the part of KubeVirt that cannot run on this machine (there is no
kubelet, no virt-handler, no QEMU), so it is emulated, and emulated **once**. Two users:

* the simulated cluster: its VMI and migration controllers (virt-controller's part, simulated) call
  these functions where a node would act;
* the real-KubeVirt tier's stand-in (:mod:`simulator.real.node`), which plays only the node side next
  to KubeVirt's real virt-controller and virt-api.

What is here (pure functions over raw dicts and :class:`~simulator.kubevirt.pci.Domain`; no I/O):

* :func:`handler_sync`: virt-handler's NIC sync with the domain — detach ``absent`` NICs, hot attach
  the NICs the pod has and the domain lacks, or fail with libvirt's ``No more available PCI slots``
  when no hot-pluggable root port is free (HEAD:pkg/virt-launcher/virtwrap/network/nichotplug.go,
  HEAD:pkg/virt-handler/vm.go ``handleSyncError``);
* :func:`handler_status`: the VMI status virt-handler writes from the domain — ``status.interfaces``
  (``domain, guest-agent`` entries merged with the pod's ``multus-status`` ones,
  HEAD:pkg/network/setup/netstat.go), ``LiveMigratable`` (HEAD:pkg/virt-handler/vm.go
  ``calculateLiveMigrationCondition``) and ``Synchronized``;
* :func:`boot_status`: the status of a VMI whose domain just started on a node;
* :class:`MigrationPlan` / :func:`plan_migration`: how long a live migration takes on the node pair and
  whether it succeeds, fails or hangs (a configurable distribution; the real cost is copying guest
  memory, which no model here reproduces).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from agent.kubevirt import (
    COND_LIVE_MIGRATABLE,
    COND_SYNCHRONIZED,
    INFO_SOURCE_DOMAIN,
    INFO_SOURCE_MULTUS_STATUS,
    PHASE_PREPARING_TARGET,
    PHASE_RUNNING,
    PHASE_SCHEDULED,
    PHASE_SCHEDULING,
    PHASE_SUCCEEDED,
    PHASE_TARGET_READY,
    STATE_ABSENT,
)
from simulator.kubevirt import pci, rules, status
from simulator.kubevirt.config import KubeVirtSimConfig

#: virt-handler's sync error when libvirt finds no free root port for a hot-plugged NIC.
NO_PCI_SLOTS_ERROR: Final = (
    'server error. command SyncVMI failed: "LibvirtError(Code=1, Domain=20, '
    "Message='internal error: No more available PCI slots')\""
)
#: The launcher image KubeVirt reports in ``status.launcherContainerImageVersion``.
LAUNCHER_IMAGE: Final = "quay.io/kubevirt/virt-launcher"

Fate = Literal["succeed", "fail", "stuck"]
#: Migration phases after Pending, in order (the shares of a migration's duration are per phase).
MIGRATION_STEPS: Final = (
    PHASE_SCHEDULING,
    PHASE_SCHEDULED,
    PHASE_PREPARING_TARGET,
    PHASE_TARGET_READY,
    PHASE_RUNNING,
    PHASE_SUCCEEDED,
)
NEXT_STEP: Final = dict(itertools.pairwise(MIGRATION_STEPS))


def handler_sync(spec: Mapping[str, Any], domain: pci.Domain) -> str:
    """virt-handler's NIC sync: detach ``absent`` NICs, attach NICs present in the pod. Returns the sync
    error ("" when in sync)."""
    nets = rules.network_by_name(spec)
    names = set()
    error = ""
    ifaces = rules.interfaces(spec)
    for iface in ifaces:
        name = str(iface.get("name"))
        names.add(name)
        if iface.get("state") == STATE_ABSENT:
            domain.detach(name)
    for name in list(domain.attached):
        if name not in names:
            domain.detach(name)
    for iface in ifaces:
        name = str(iface.get("name"))
        if iface.get("state") == STATE_ABSENT or not rules.is_secondary_multus(nets.get(name, {})):
            continue
        if name in domain.pod_networks and name not in domain.attached and not domain.attach(name):
            error = NO_PCI_SLOTS_ERROR
    return error


def handler_status(
    vmi: Mapping[str, Any],
    domain: pci.Domain,
    *,
    now: float,
    sync_error: str,
    stamp: status.Stamp = status.rfc3339,
) -> dict[str, Any]:
    """The VMI status after virt-handler's update from the domain: interfaces, ``LiveMigratable``,
    ``Synchronized`` (False with the sync error, else absent). Other fields are kept as they are."""
    meta = vmi.get("metadata") or {}
    ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    spec = vmi.get("spec") or {}
    old = vmi.get("status") or {}
    new = dict(old)
    new["interfaces"] = status.interface_statuses(ns, name, spec, domain.attached, domain.pod_networks)
    conds: list[dict[str, Any]] = [c for c in old.get("conditions") or [] if isinstance(c, dict)]
    migratable, reason, message = rules.live_migratable(vmi)
    conds = status.set_condition(
        conds, COND_LIVE_MIGRATABLE, "True" if migratable else "False", reason, message, now, stamp
    )
    if sync_error:
        conds = status.set_condition(
            conds, COND_SYNCHRONIZED, "False", status.REASON_SYNC_FAILED, sync_error, now, stamp
        )
    else:
        conds = status.remove_condition(conds, COND_SYNCHRONIZED)
    new["conditions"] = conds
    return new


def new_domain(vmi: Mapping[str, Any], version: str) -> pci.Domain:
    """The domain virt-launcher defines for a starting VMI: its free hot-plug ports per KubeVirt's PCI
    topology of ``version``, every non-absent NIC attached, the pod's secondary networks."""
    meta = vmi.get("metadata") or {}
    spec = vmi.get("spec") or {}
    free, attached = pci.free_ports_for_new_domain(spec, meta.get("annotations") or {}, version)
    nets = rules.network_by_name(spec)
    pod = {n for n in attached if rules.is_secondary_multus(nets.get(n, {}))}
    return pci.Domain(uid=str(meta.get("uid", "")), free_ports=free, attached=set(attached), pod_networks=pod)


def adopt_domain(vmi: Mapping[str, Any], version: str) -> pci.Domain:
    """The domain of a VMI that is already running, reconstructed from its status (a node side that
    starts after the VMI did): NICs with ``domain`` in their info source are attached, those with
    ``multus-status`` are in the pod; the free ports are the new domain's, less the NICs attached
    beyond the boot set, plus the boot NICs no longer attached."""
    spec = vmi.get("spec") or {}
    fresh = new_domain(vmi, version)
    entries = rules.status_entries(vmi.get("status") or {})
    if not entries:
        return fresh
    attached = {n for n, e in entries.items() if INFO_SOURCE_DOMAIN in rules.info_sources(e)}
    pod = {n for n, e in entries.items() if INFO_SOURCE_MULTUS_STATUS in rules.info_sources(e)}
    boot = {str(i.get("name")) for i in rules.interfaces(spec) if i.get("state") != STATE_ABSENT}
    free = max(0, fresh.free_ports - len(attached - boot) + len(boot - attached))
    return pci.Domain(uid=fresh.uid, free_ports=free, attached=attached, pod_networks=pod)


def boot_status(
    vmi: Mapping[str, Any],
    domain: pci.Domain,
    *,
    node: str,
    version: str,
    now: float,
    stamp: status.Stamp = status.rfc3339,
) -> dict[str, Any]:
    """virt-handler's status for a VMI whose domain is up on ``node``: phase Running, Ready,
    LiveMigratable, AgentConnected, the interfaces, and the fields the migration controller checks
    (``selinuxContext`` — "none" on a node without SELinux —, ``migrationMethod``, ``machine``)."""
    spec = vmi.get("spec") or {}
    old = dict(vmi.get("status") or {})
    migratable, reason, message = rules.live_migratable(vmi)
    conds: list[dict[str, Any]] = [c for c in old.get("conditions") or [] if isinstance(c, dict)]
    conds = status.remove_condition(conds, "Ready")
    conds = status.set_condition(conds, "Ready", "True", now=now, stamp=stamp)
    conds = status.set_condition(
        conds, COND_LIVE_MIGRATABLE, "True" if migratable else "False", reason, message, now=now, stamp=stamp
    )
    conds = status.set_condition(conds, "AgentConnected", "True", now=now, stamp=stamp)
    meta = vmi.get("metadata") or {}
    ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    stamps = list(old.get("phaseTransitionTimestamps") or [])
    stamps.append({"phase": PHASE_RUNNING, "phaseTransitionTimestamp": stamp(now)})
    machine = ((spec.get("domain") or {}).get("machine") or {}).get("type") or "q35"
    old.update(
        phase=PHASE_RUNNING,
        nodeName=node,
        conditions=conds,
        interfaces=status.interface_statuses(ns, name, spec, domain.attached, domain.pod_networks),
        phaseTransitionTimestamps=stamps,
        launcherContainerImageVersion=f"{LAUNCHER_IMAGE}:{version}",
        migrationMethod="LiveMigration" if migratable else "BlockMigration",
        migrationTransport="Unix",
        selinuxContext="none",
        machine={"type": machine},
        guestOSInfo={"id": "fedora", "name": "Fedora Linux"},
        qosClass=old.get("qosClass") or "Burstable",
    )
    return old


@dataclass
class MigrationPlan:
    """A live migration's future on the nodes, decided when it starts."""

    fate: Fate
    #: the step at which a failing migration fails
    fail_phase: str
    #: seconds spent reaching each step of :data:`MIGRATION_STEPS`
    durations: dict[str, float]
    source_node: str
    target_node: str
    #: the target pod's secondary networks (captured when the target pod is made)
    target_pod_networks: set[str] = field(default_factory=set)
    due: float = 0.0
    #: wall time the migration entered Scheduling; 0 for one adopted after a restart
    started: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.durations.values())

    def deadline(self, phase: str) -> float:
        """When ``phase`` is due: the start plus the durations of every step up to it.

        Absolute deadlines keep a migration's length at the planned total however late each step is
        processed (on a loaded machine per-step write latency would otherwise add up)."""
        total = self.started
        step = MIGRATION_STEPS[0]
        while step != phase and step in NEXT_STEP:
            step = NEXT_STEP[step]
            total += self.durations.get(step, 0.0)
        return total


def migration_seconds(config: KubeVirtSimConfig, rng: random.Random) -> float:
    """One migration's total duration from the configured distribution."""
    mean = config.migration_mean_seconds
    if config.migration_distribution == "fixed":
        return mean
    if config.migration_distribution == "uniform":
        return rng.uniform(0.5 * mean, 1.5 * mean)
    if mean <= 0:
        return 0.0
    if config.migration_distribution == "exponential":
        return rng.expovariate(1.0 / mean)
    sigma = config.migration_sigma
    return rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma)


def plan_migration(
    config: KubeVirtSimConfig, rng: random.Random, source: str, nodes: list[str], target: str | None = None
) -> MigrationPlan:
    """Durations per step (the configured shares of a drawn total), a fate (fail / stuck rates) and a
    target node (``target`` when the cluster already chose one, else another node at random)."""
    total = migration_seconds(config, rng)
    shares = config.phase_shares
    weight = sum(shares.values()) or 1.0
    durations = {phase: total * share / weight for phase, share in shares.items()}
    roll = rng.random()
    fate: Fate = "succeed"
    if roll < config.failure_rate:
        fate = "fail"
    elif roll < config.failure_rate + config.stuck_rate:
        fate = "stuck"
    fail_phase = rng.choice(["Scheduled", "Running", "Running", "Running"])
    if target is None:
        others = [n for n in nodes if n != source] or [source]
        target = rng.choice(others)
    return MigrationPlan(fate, fail_phase, durations, source, target)
