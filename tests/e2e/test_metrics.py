"""Issue 4: what ``/metrics`` shows after a simulate-like run (the default scenario's mix with injected
migration failures), checked against the cluster's own record; ``promtool check metrics`` on the real
exposition; and a real Prometheus scraping the agent while it works, queried back over its HTTP API.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from agent.kubevirt import VMIMS, is_final
from agent.model import parse_vmim
from metrics.definitions import PHASES, phase_durations
from simulator.scenario import ScenarioConfig
from simulator.testing import Caps, Metrics, check_invariants, metrics_disagreements
from tests.e2e.world import NS, World, cluster_config, creator_of, resolved, run_scenario, world
from tests.observability.prometheus_server import async_prometheus_server
from tests.observability.promtool import check_metrics_with_promtool

SCENARIO_SAFETY = 120.0


def scenario(vms: int, seed: int) -> ScenarioConfig:
    return ScenarioConfig(vms=vms, seed=seed, namespaces=(NS,), request_window_seconds=1.0)


def agent_phase_counts(w: World) -> Counter[str]:
    """Per phase, how many finished agent migrations spent time in it (from the stored VMIMs' own
    ``status.phaseTransitionTimestamps``, the agent's source too)."""
    counts: Counter[str] = Counter()
    items, _ = w.store.list(VMIMS, NS)
    for m in items:
        st = m.get("status") or {}
        if creator_of(m) != "agent" or not is_final(str(st.get("phase", ""))):
            continue
        rec = parse_vmim(m)
        points = [(stamp, phase) for phase, stamp in rec.phase_transitions]
        for phase, _seconds in phase_durations(points, rec.creation_ts):
            counts[phase] += 1
    return counts


async def settled_run(w: World, vms: int, seed: int, **agent_overrides: Any) -> Any:
    scen = scenario(vms, seed)
    await w.seed_scenario(scen)
    agent = await w.start_agent(http=True, **agent_overrides)
    driver = await run_scenario(w, scen)
    await w.wait(lambda: resolved(w, driver), "every request resolved", timeout=SCENARIO_SAFETY)
    await w.wait(
        lambda: (
            agent.parsed().sum("hotplug_agent_pending_hotplugs") == 0
            and agent.parsed().sum("hotplug_agent_migrations_in_flight") == 0
        ),
        "the agent's gauges settled",
    )
    return agent, driver


async def test_metrics_after_a_simulated_run_and_promtool() -> None:
    cfg = cluster_config(failure_rate=0.25, migration_mean_seconds=0.4, finalized_migrations_kept=10)
    async with world(cfg) as w:
        agent, _driver = await settled_run(w, 48, seed=5)
        body = await agent.scrape()
        metrics = Metrics.parse(body)
        report = w.recorder.report()
        assert not report.violations, report.violations

        # Phase durations: every phase our finished migrations went through, counted once per migration.
        expected = agent_phase_counts(w)
        assert expected, "the run produced finished agent migrations"
        for phase in PHASES:
            count = metrics.get(
                "hotplug_agent_migration_phase_duration_seconds_count", 0.0, phase=phase, initiator="agent"
            )
            assert count == expected.get(phase, 0), (phase, count, expected)
            if expected.get(phase):
                total = metrics.get(
                    "hotplug_agent_migration_phase_duration_seconds_sum", phase=phase, initiator="agent"
                )
                assert total and total > 0, (phase, total)

        # Failure counters for the injected failures.
        failed = sum(
            1 for m in w.vmims() if creator_of(m) == "agent" and m["status"].get("phase") == "Failed"
        )
        assert failed > 0, "failure_rate 0.25 injected no failure"
        assert metrics.get("hotplug_agent_migration_failures_total", reason="migration-failed") == failed
        assert metrics.get("hotplug_agent_migrations_total", result="failed", initiator="agent") == failed

        # Slot exhaustion: one series per kind for the scenario's slot-exhausted VMs.
        plans = Counter(p.category for p in w.plans)
        assert plans["slots-predictable"] and plans["slots-observed"], plans
        for kind, category in (("predicted", "slots-predictable"), ("observed", "slots-observed")):
            assert metrics.get("hotplug_agent_slot_exhaustion_total", kind=kind) == plans[category], kind
            assert metrics.get("hotplug_agent_slot_exhausted_vms", kind=kind) == plans[category], kind
        assert metrics.get("hotplug_agent_blocked_vms", reason="slots-exhausted") == (
            plans["slots-predictable"] + plans["slots-observed"]
        )

        # End-to-end hot-plug latency: one observation per completed plug, with time in it.
        plugs = sum(1 for r in report.requests if r.completed and r.op == "plug")
        assert plugs > 0
        assert metrics.get("hotplug_agent_hotplug_latency_seconds_count", operation="plug") == plugs
        assert (metrics.get("hotplug_agent_hotplug_latency_seconds_sum", operation="plug") or 0) > 0
        assert (metrics.get("hotplug_agent_hotplug_latency_seconds_count", operation="unplug") or 0) > 0

        # Gauges and counters agree with the ground truth (blocked VMs by reason, in flight, creates, ...).
        # The double-counted unplug is the detect bug shown by test_bridge_unplug_completes_once.
        disagreements = [
            d
            for d in metrics_disagreements(report, metrics, full_history=True)
            if not d.startswith("hot plugs completed[unplug]")
        ]
        assert disagreements == [], disagreements
        assert check_invariants(report, Caps(cluster=5, node=2), agent_only=True) == []

        # The real exposition passes promtool's linter.
        assert check_metrics_with_promtool(body) == []


@pytest.mark.tools
@pytest.mark.slow
async def test_real_prometheus_scrapes_the_working_agent() -> None:
    cfg = cluster_config(failure_rate=0.3, migration_mean_seconds=0.4)
    async with world(cfg) as w:
        scen = scenario(24, seed=9)
        await w.seed_scenario(scen)
        agent = await w.start_agent(http=True)
        async with async_prometheus_server(f"127.0.0.1:{agent.port}") as prom:
            await prom.wait_for("up", lambda r: bool(r) and r[0]["value"][1] == "1")
            driver = await run_scenario(w, scen)
            await w.wait(lambda: resolved(w, driver), "every request resolved", timeout=SCENARIO_SAFETY)
            own = agent.parsed()
            failed = own.get("hotplug_agent_migration_failures_total", reason="migration-failed") or 0
            assert failed > 0, "failure_rate 0.3 injected no failure"
            expected = agent_phase_counts(w)

            def phases_scraped(result: list[dict[str, Any]]) -> bool:
                got = {r["metric"]["phase"]: float(r["value"][1]) for r in result}
                return all(got.get(p, 0) == n for p, n in expected.items())

            result = await prom.wait_for(
                'sum by (phase) (hotplug_agent_migration_phase_duration_seconds_count{initiator="agent"})',
                phases_scraped,
            )
            assert {r["metric"]["phase"] for r in result} >= set(expected)
            buckets = await prom.query(
                'hotplug_agent_migration_phase_duration_seconds_bucket{initiator="agent",phase="Running",'
                'le="+Inf"}'
            )
            assert buckets and float(buckets[0]["value"][1]) == expected["Running"]
            failures = await prom.wait_for(
                'hotplug_agent_migration_failures_total{reason="migration-failed"}',
                lambda r: bool(r) and float(r[0]["value"][1]) == failed,
            )
            assert failures[0]["metric"]["job"] == "hotplug-agent"
