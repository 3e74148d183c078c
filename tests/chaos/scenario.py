"""The chaos scenarios' shared pieces: fast agent flags, fault schedules, the settle predicate."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from simulator.apiserver import FaultRule
from simulator.cluster import ClusterConfig
from simulator.report import Report
from simulator.scenario import ScenarioConfig
from simulator.testing import BLOCKED_STATES, AgentProcess, Metrics, SimHarness

#: Agent timings scaled to a simulated cluster whose migrations take about a second.
FAST_AGENT: tuple[str, ...] = (
    *("--settle-seconds", "0.2", "--bridge-grace-seconds", "0.3"),
    *("--backoff-initial-seconds", "0.2", "--backoff-max-seconds", "1"),
    *("--max-attempts", "8", "--migration-deadline-seconds", "6", "--verify-timeout-seconds", "5"),
    *("--creates-per-second", "50", "--create-burst", "10"),
    *("--lease-duration-seconds", "2", "--renew-deadline-seconds", "1.5", "--retry-period-seconds", "0.3"),
    *("--shutdown-grace-seconds", "2", "--log-level", "info"),
)

#: Disagreements the harness found that are agent bugs, reported to their owner and not fixed yet:
#: line prefix → what is wrong. A test that meets only these ends as xfail (and passes once fixed).
KNOWN_AGENT_BUGS: dict[str, str] = {
    # Empty: the one found (a bridge unplug counted and announced complete before virt-handler detached
    # it, then again after the migration) was fixed in 5092aef.
}


def split_known(lines: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(unexpected, known)``: lines caused by :data:`KNOWN_AGENT_BUGS` go to ``known``."""
    unexpected: list[str] = []
    known: list[str] = []
    for line in lines:
        bug = next((b for prefix, b in KNOWN_AGENT_BUGS.items() if line.startswith(prefix)), None)
        (known if bug is not None else unexpected).append(line if bug is None else f"{line}: {bug}")
    return unexpected, known


def cluster_config(**kw: object) -> ClusterConfig:
    base: dict[str, object] = {
        "migration_mean_seconds": 0.6,
        "migration_distribution": "lognormal",
        "time_scale": 0.02,
        "nodes": 4,
        "history_size": 200_000,
        "seed": 11,
    }
    base.update(kw)
    return ClusterConfig(**base)  # type: ignore[arg-type]


def scenario_config(vms: int, seed: int = 11, version: str = "v1.5.2") -> ScenarioConfig:
    return ScenarioConfig(vms=vms, seed=seed, request_window_seconds=1.0, kubevirt_version=version)


@dataclass
class FaultPlan:
    """What the simulator injects while the scenario runs."""

    error_rate: float = 0.05  # share of API requests answered 429 (Retry-After 1) / 500 / 503
    watch_drop_rate: float = 0.05  # per second, per open watch (connection reset)
    expire_every: float = 3.0  # seconds between forced 410s (+ clean watch ends, so clients resume)

    def rule(self) -> FaultRule:
        return FaultRule(
            error_rate=self.error_rate,
            error_codes=(429, 500, 503),
            retry_after=1,
            watch_drop_rate=self.watch_drop_rate,
        )


@contextlib.asynccontextmanager
async def injecting(h: SimHarness, plan: FaultPlan | None) -> AsyncIterator[None]:
    """Faults on while the block runs: error/drop rule, plus forced 410s on a schedule."""
    if plan is None:
        yield
        return
    faults = h.server.faults
    rule_id = faults.add(plan.rule())

    async def expire() -> None:
        while True:
            await asyncio.sleep(plan.expire_every)
            faults.force_expired(count=2)
            faults.drop_watches(mode="eof")  # the clients resume from their RV: the next ones get 410

    task = asyncio.create_task(expire())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        faults.remove(rule_id)
        faults.clear()


async def leader_of(agents: Sequence[AgentProcess]) -> AgentProcess | None:
    for a in agents:
        if a.alive and await a.is_leader():
            return a
    return None


async def settled(h: SimHarness, agents: Sequence[AgentProcess]) -> Metrics | None:
    """The run is over: no unfinished migration, and every request completed, blocked, or given up by
    the leader (whose metrics say nothing is pending). Returns the leader's scrape, else None."""
    rep = h.report()
    if rep.migrations.unfinished:
        return None
    leader = await leader_of(agents)
    if leader is None:
        return None
    metrics = await leader.scrape()
    if metrics.sum("hotplug_agent_pending_hotplugs") or metrics.sum("hotplug_agent_migrations_in_flight"):
        return None
    unexplained = [
        r
        for r in rep.requests
        if r.accepted and not r.completed and r.final_state == "pending" and not r.agent_block
    ]
    return None if unexplained else metrics


def outcome_lines(report: Report) -> list[str]:
    """For assertion messages: the report's summary plus the unfinished requests."""
    lines = report.summary_lines()
    for r in report.requests:
        if r.accepted and not r.completed and r.final_state not in BLOCKED_STATES:
            lines.append(f"  {r.final_state}: {r.namespace}/{r.vm} {r.op} {r.interface} ({r.category})")
    return lines
