"""Modes: KubeVirt 1.6 with ``LiveMigrate`` (``auto`` stands down, still measures) and ``--dry-run``."""

from __future__ import annotations

import logging

import structlog
from structlog.testing import capture_logs

from metrics.definitions import PHASES
from simulator.manifests import vm_manifest
from tests.e2e.world import NET_A, NS, cluster_config, world


async def test_kubevirt_live_migrate_auto_mode_observes_and_measures() -> None:
    """KubeVirt >= 1.6 with ``LiveMigrate`` migrates by itself (its workload updater, once
    ``MigrationRequired`` turns True): the agent in ``auto`` creates nothing, and its metrics still count
    KubeVirt's migrations and their phases."""
    cfg = cluster_config(kubevirt_version="v1.6.0", workload_update_methods=("LiveMigrate",))
    names = ["vm-kv-1", "vm-kv-2", "vm-kv-3"]
    async with world(cfg) as w:
        await w.seed(*(vm_manifest(NS, n, NET_A) for n in names))
        agent = await w.start_agent(mode="auto")
        await w.wait(lambda: agent.sample("hotplug_agent_mode", mode="observe") == 1, "observe mode")
        for n in names:
            await w.plug(n)
        await w.wait(lambda: w.recorder.completed_count == len(names), "KubeVirt completed every plug")
        by_creator = w.observer.by_creator()
        assert by_creator["agent"] == 0
        assert by_creator["kubevirt"] >= len(names)
        succeeded = w.recorder.report().migrations.succeeded
        await w.wait(
            lambda: (
                agent.sample("hotplug_agent_migrations_total", result="succeeded", initiator="kubevirt")
                == succeeded
            ),
            "KubeVirt's migrations counted",
        )
        assert agent.sample("hotplug_agent_migration_creates_total") == 0
        assert agent.sample("hotplug_agent_migrations_total", result="succeeded", initiator="agent") == 0
        for phase in PHASES:
            seen = agent.sample(
                "hotplug_agent_migration_phase_duration_seconds_count", phase=phase, initiator="kubevirt"
            )
            assert seen == succeeded, (phase, seen)
        count = agent.sample(
            "hotplug_agent_migration_duration_seconds_count", result="succeeded", initiator="kubevirt"
        )
        assert count == succeeded
        assert not w.events(reason="HotplugMigrationStarted")


async def test_dry_run_decides_but_creates_nothing() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    async with world() as w:
        await w.seed(vm_manifest(NS, "vm-dry", NET_A))
        with capture_logs() as logs:
            agent = await w.start_agent(dry_run=True)
            await w.plug("vm-dry")
            await w.wait(
                lambda: any(e.get("event") == "dry_run_would_migrate" for e in logs), "dry-run log line"
            )
        (line,) = [e for e in logs if e.get("event") == "dry_run_would_migrate"]
        assert line["vmi"] == "e2e/vm-dry"
        await w.wait(
            lambda: agent.sample("hotplug_agent_pending_hotplugs", state="queued") == 1, "queued gauge"
        )
        assert agent.sample("hotplug_agent_mode", mode="dry-run") == 1
        assert w.observer.created == []
        assert w.vmims() == []
        assert agent.sample("hotplug_agent_migration_creates_total") == 0
        assert not w.events(reason="HotplugMigrationStarted")
        assert not w.attached("vm-dry", "hp-bridge")
