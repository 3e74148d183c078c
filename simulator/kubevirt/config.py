"""Configuration of the simulated KubeVirt behaviour (shared by every controller)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

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
    ``MigrationRequired``, the workload updater's 5 s throttle): 0.1 makes them 1.5 s and 0.5 s.
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
    workers: int = 4
    #: Watch VMs/VMIs/VMIMs of this namespace only (None: cluster-wide, like KubeVirt); the KubeVirt CR
    #: is then read from namespace ``kubevirt``. For sharing a real API server with other tests.
    watch_namespace: str | None = None
    #: KubeVirt keeps the newest 5 finalized VMIMs per VMI (defaultFinalizedMigrationGarbageCollectionBuffer).
    finalized_migrations_kept: int = 5

    @property
    def grace_seconds(self) -> float:
        return self.migration_required_grace_seconds * self.time_scale

    @property
    def updater_interval(self) -> float:
        return self.workload_updater_interval_seconds * self.time_scale
