"""Configuration of the simulated KubeVirt behaviour (shared by every controller)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

#: The SR-IOV device resources of the simulated nodes, VFs per node.
SRIOV_RESOURCE: Final = "intel.com/sriov_net"
SCARCE_RESOURCE: Final = "mellanox.com/cx5_sriov"
DEFAULT_SRIOV_RESOURCES: Final[Mapping[str, int]] = {SRIOV_RESOURCE: 16, SCARCE_RESOURCE: 1}

Distribution = Literal["fixed", "uniform", "exponential", "lognormal"]

#: Share of a migration's total duration spent reaching each phase (Pending → … → Succeeded).
DEFAULT_PHASE_SHARES: dict[str, float] = {
    "Scheduling": 0.05,
    "Scheduled": 0.20,
    "PreparingTarget": 0.10,
    "TargetReady": 0.10,
    "Running": 0.05,
    "Succeeded": 0.50,
}


@dataclass
class KubeVirtSimConfig:
    """What the simulated KubeVirt does and how fast.

    ``time_scale`` scales KubeVirt's own real-world periods (the 15 s dynamic-networks grace period of
    ``MigrationRequired``, the workload updater's 5 s throttle, the migration controller's 5 s re-check
    of a Pending migration over a limit and its 20 s backoff after a failed one): 0.1 makes them 1.5 s,
    0.5 s, 0.5 s and 2 s.
    Migration durations are given directly in simulated seconds (``migration_mean_seconds``).
    """

    kubevirt_version: str = "v1.5.2"
    #: ``spec.configuration.vmRolloutStrategy`` of the KubeVirt CR (KubeVirt's default is ``Stage``;
    #: live updates of CPU, memory, volumes and placement need ``LiveUpdate``).
    vm_rollout_strategy: str = "LiveUpdate"
    workload_update_methods: tuple[str, ...] = ()
    nodes: int = 4
    migration_mean_seconds: float = 2.0
    migration_distribution: Distribution = "lognormal"
    migration_sigma: float = 0.35
    #: > 0: a migration lasts ``migration_mean_seconds`` (its fixed cost: target pod, hand-off) plus this
    #: many seconds per GiB of guest memory, and its fate (fail / stuck) is drawn per VMI and attempt
    #: from ``seed`` (:func:`simulator.kubevirt.migration.sized_plan`): the same work fails the same
    #: attempts whoever migrates it. 0: durations from ``migration_distribution``.
    migration_seconds_per_gib: float = 0.0
    phase_shares: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PHASE_SHARES))
    failure_rate: float = 0.0
    stuck_rate: float = 0.0
    dnc_enabled: bool = False
    dnc_delay_seconds: float = 0.3
    parallel_migrations_per_cluster: int | None = None
    parallel_outbound_migrations_per_node: int | None = None
    seed: int = 0
    time_scale: float = 1.0
    migration_required_grace_seconds: float = 15.0
    workload_updater_interval_seconds: float = 5.0
    #: virt-controller re-checks a Pending migration held back by a limit after this long (v1.5-v1.8:
    #: 5 s; with the ``MigrationPriorityQueue`` feature gate of v1.7+, 1/3/5 s by ``spec.priority``,
    #: and a finished migration re-checks the Pending ones at once).
    pending_requeue_seconds: float = 5.0
    #: A workload-update or evacuation migration after a failed one waits this long after that
    #: failure, doubling per further failure (virt-controller's ``handleMigrationBackoff``: 20 s).
    migration_backoff_seconds: float = 20.0
    workers: int = 4
    #: Watch VMs/VMIs/VMIMs of this namespace only (None: cluster-wide, like KubeVirt); the KubeVirt CR
    #: is then read from namespace ``kubevirt``. For sharing a real API server with other tests.
    watch_namespace: str | None = None
    #: KubeVirt keeps the newest 5 finalized VMIMs per VMI (defaultFinalizedMigrationGarbageCollectionBuffer).
    finalized_migrations_kept: int = 5
    #: ``migrations.unschedulablePendingTimeoutSeconds``: a target pod no node fits is deleted after this
    #: long and the migration fails (KubeVirt's default 300 s; scaled by ``time_scale``).
    unschedulable_timeout_seconds: float = 300.0
    #: Extended resources every simulated node offers: SR-IOV VFs per device resource (the same on
    #: the embedded cluster and on a real API server, so SR-IOV hot plugs can migrate on both).
    sriov_resources: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_SRIOV_RESOURCES))

    @property
    def grace_seconds(self) -> float:
        return self.migration_required_grace_seconds * self.time_scale

    @property
    def updater_interval(self) -> float:
        return self.workload_updater_interval_seconds * self.time_scale

    @property
    def unschedulable_timeout(self) -> float:
        return self.unschedulable_timeout_seconds * self.time_scale

    @property
    def pending_requeue(self) -> float:
        return self.pending_requeue_seconds * self.time_scale

    @property
    def migration_backoff(self) -> float:
        return self.migration_backoff_seconds * self.time_scale
