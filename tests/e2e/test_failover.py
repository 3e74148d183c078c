"""Restarts and failover: an in-flight migration is adopted, never duplicated.

"Abrupt" stops cancel the agent's task (no drain, no Lease release), as a crash would. VMIMs per VMI are
counted over the whole run by the API server's event observer, so a duplicate created and deleted in
between would still show.
"""

from __future__ import annotations

from typing import Any

from agent.kubevirt import is_final
from simulator.manifests import vm_manifest
from tests.e2e.world import NET_A, NS, RunningAgent, World, agent_vmims, cluster_config, world

LEASE: dict[str, Any] = {
    "leader_elect": True,
    "lease_namespace": "e2e",
    "lease_duration_seconds": 1.0,
    "renew_deadline_seconds": 0.6,
    "retry_period_seconds": 0.2,
}


def _unfinished(w: World, vmi: str) -> bool:
    ours = agent_vmims(w, vmi)
    return bool(ours) and not is_final(w.observer.phases[(ours[0].namespace, ours[0].name)][-1])


async def test_restart_adopts_the_in_flight_migration() -> None:
    async with world(cluster_config(migration_mean_seconds=4.0)) as w:
        await w.seed(vm_manifest(NS, "vm-adopt", NET_A))
        first = await w.start_agent(identity="agent-1")
        await w.plug("vm-adopt")
        await w.wait(lambda: agent_vmims(w, "vm-adopt"), "the first agent's migration")
        await first.kill()
        second = await w.start_agent(identity="agent-2")
        assert _unfinished(w, "vm-adopt"), "precondition: the migration is still running at the takeover"
        completed = await w.wait_event("vm-adopt", "HotplugCompleted")
        assert completed["reportingInstance"] == "agent-2"
        assert w.attached("vm-adopt", "hp-bridge")
        assert len(w.observer.for_vmi("vm-adopt")) == 1, w.describe()
        assert second.sample("hotplug_agent_migration_creates_total") == 0
        assert second.sample("hotplug_agent_hotplugs_completed_total", operation="plug") == 1


async def _leader(w: World, agents: list[RunningAgent]) -> RunningAgent:
    leaders: list[RunningAgent] = await w.wait(
        lambda: [a for a in agents if a.leading] if sum(a.leading for a in agents) == 1 else [],
        "exactly one leader",
    )
    return leaders[0]


async def test_two_replicas_only_the_leader_creates_and_the_standby_takes_over() -> None:
    async with world(cluster_config(migration_mean_seconds=3.0)) as w:
        await w.seed(vm_manifest(NS, "vm-1", NET_A), vm_manifest(NS, "vm-2", NET_A))
        replicas = [
            await w.start_agent(identity="replica-a", **LEASE),
            await w.start_agent(identity="replica-b", **LEASE),
        ]
        leader = await _leader(w, replicas)
        (standby,) = [r for r in replicas if r is not leader]
        await w.plug("vm-1")
        await w.wait(lambda: agent_vmims(w, "vm-1"), "the leader's migration")
        started = await w.wait_event("vm-1", "HotplugMigrationStarted")  # Events are sent asynchronously
        assert started["reportingInstance"] == leader.identity
        assert standby.sample("hotplug_agent_migration_creates_total") == 0
        assert not standby.leading

        await leader.kill()  # mid-migration, the Lease is not released: the standby waits it out
        assert _unfinished(w, "vm-1"), "precondition: the migration is still running at the takeover"
        await w.wait(lambda: standby.leading, "the standby leads")
        await w.plug("vm-2")
        await w.wait(lambda: w.recorder.completed_count == 2, "both hot plugs complete")
        started2 = await w.wait_event("vm-2", "HotplugMigrationStarted")
        assert started2["reportingInstance"] == standby.identity
        done = await w.wait_event("vm-1", "HotplugCompleted")
        assert done["reportingInstance"] == standby.identity, "the new leader verified the adopted one"
        for vmi in ("vm-1", "vm-2"):
            assert len(w.observer.for_vmi(vmi)) == 1, w.describe()
        assert w.observer.max_unfinished_per_vmi == 1
        assert standby.sample("hotplug_agent_migration_creates_total") == 1
        lease = w.store.get("leases", "e2e", "hotplug-agent")
        assert lease["spec"]["holderIdentity"] == standby.identity
