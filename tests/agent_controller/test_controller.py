"""Controller logic with a recording fake for the two API calls it makes (narrow unit tests).

The end-to-end behaviour against the simulated cluster over HTTP is in tests/e2e; these pin the
invariants that are hard to provoke there: no second create before the cache shows the first, retries
with backoff then giving up, verification, caps.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest

from agent.config import DEFAULTS, AgentConfig
from agent.controller import Controller
from agent.decide import BlockReason
from agent.events import EventRecorder
from agent.kube import ApiError
from agent.model import parse_vmim
from metrics.definitions import HotplugMetrics
from tests.agent_unit.builders import NS, iface, net, vm, vmi


def config(**overrides: Any) -> AgentConfig:
    return dataclasses.replace(DEFAULTS, **overrides)


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


class FakeApi:
    def __init__(self) -> None:
        self.created: list[tuple[str, str]] = []
        self.deleted: list[tuple[str, str]] = []
        self.fail_with: Exception | None = None

    async def create_vmim(self, namespace: str, vmi_name: str) -> Mapping[str, Any]:
        if self.fail_with is not None:
            raise self.fail_with
        self.created.append((namespace, vmi_name))
        return {"metadata": {"name": f"hotplug-{vmi_name}-{len(self.created)}", "namespace": namespace}}

    async def delete_vmim(self, namespace: str, name: str) -> None:
        self.deleted.append((namespace, name))

    async def restart_inputs(
        self, namespace: str, name: str
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None:
        return None  # no start revision: the agent trusts RestartRequired


def sample(metrics: HotplugMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


BRIDGE = (iface("hp1", "bridge"), net("hp1"))


def vmim_obj(name: str, vmi_name: str, phase: str, created: str = "2026-01-01T00:00:00Z") -> Any:
    return parse_vmim(
        {
            "metadata": {
                "name": name,
                "namespace": NS,
                "uid": f"uid-{name}",
                "labels": {"app.kubernetes.io/managed-by": "hotplug-agent", "kubevirt.io/vmi-name": vmi_name},
                "creationTimestamp": created,
            },
            "spec": {"vmiName": vmi_name},
            "status": {
                "phase": phase,
                "migrationState": {"sourceNode": "node-a"},
                "phaseTransitionTimestamps": [
                    {"phase": "Pending", "phaseTransitionTimestamp": "2026-01-01T00:00:00Z"},
                    {"phase": "Running", "phaseTransitionTimestamp": "2026-01-01T00:00:01Z"},
                    {"phase": phase, "phaseTransitionTimestamp": "2026-01-01T00:00:03Z"},
                ],
            },
        }
    )


async def make(
    settings: AgentConfig | None = None,
) -> tuple[Controller, FakeApi, Clock, asyncio.Task[None]]:
    clock = Clock()
    api = FakeApi()
    metrics = HotplugMetrics()
    ctl = Controller(
        settings or config(settle_seconds=0, bridge_grace_seconds=0, mode="active"),
        api,
        metrics,
        EventRecorder(None),
        clock=clock,
    )
    ctl.set_leading(True)
    task = asyncio.create_task(ctl.run())
    await asyncio.sleep(0)
    return ctl, api, clock, task


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_pending_plug_migrates_once_then_completes() -> None:
    ctl, api, clock, task = await make()
    ctl.on_vm("ADDED", None, vm([BRIDGE]))
    ctl.on_vmi("ADDED", None, vmi([BRIDGE]))
    await settle()
    assert api.created == [(NS, "vm1")]
    # The cache has not shown the VMIM yet: more events must not create a second one.
    ctl.on_vmi("MODIFIED", None, vmi([BRIDGE]))
    await settle()
    assert api.created == [(NS, "vm1")]
    running = vmim_obj("hotplug-vm1-1", "vm1", "Running")
    ctl.on_vmim("ADDED", None, running)
    await settle()
    assert not ctl.expected
    done = vmim_obj("hotplug-vm1-1", "vm1", "Succeeded")
    ctl.on_vmim("MODIFIED", running, done)
    await settle()
    # Succeeded but the status has not caught up: verifying, no new migration.
    assert ctl.tracks[(NS, "vm1")].state == "verifying"
    assert api.created == [(NS, "vm1")]
    clock.t += 2
    ctl.on_vmi("MODIFIED", None, vmi([BRIDGE], {"hp1": "domain, guest-agent, multus-status"}))
    await settle()
    assert (NS, "vm1") not in ctl.tracks
    assert sample(ctl.metrics, "hotplug_agent_hotplugs_completed_total", operation="plug") == 1
    assert sample(ctl.metrics, "hotplug_agent_migrations_total", result="succeeded", initiator="agent") == 1
    assert (
        sample(
            ctl.metrics,
            "hotplug_agent_migration_phase_duration_seconds_count",
            phase="Running",
            initiator="agent",
        )
        == 1
    )
    await stop(task)


async def test_the_worker_dispatches_what_it_made_ready_without_waiting_for_the_dispatch_loop() -> None:
    """The reaction path: a VMI made ready is dispatched (and its create sent) in the worker's own turn,
    not after the event loop's other callbacks and the dispatch loop's wake-up."""
    api = FakeApi()
    ctl = Controller(
        config(settle_seconds=0, bridge_grace_seconds=0, mode="active"),
        api,
        HotplugMetrics(),
        EventRecorder(None),
        clock=Clock(),
    )
    ctl.set_leading(True)
    async with asyncio.TaskGroup() as tg:
        ctl.executor.bind(tg)
        worker = tg.create_task(ctl.reconcile_loop())  # no dispatch loop
        ctl.on_vm("ADDED", None, vm([BRIDGE]))
        ctl.on_vmi("ADDED", None, vmi([BRIDGE]))
        await settle()
        assert api.created == [(NS, "vm1")]
        worker.cancel()


async def test_a_vmi_status_heartbeat_queues_nothing() -> None:
    """An update that changes nothing the VMI's record holds (a new resourceVersion only) is not
    reconciled: it cannot change a decision, and at 1,000 events/s it would queue ahead of real work."""
    ctl, api, _clock, task = await make()
    ctl.on_vm("ADDED", None, vm([BRIDGE]))
    first = vmi([BRIDGE])
    ctl.on_vmi("ADDED", None, first)
    await settle()
    assert api.created == [(NS, "vm1")] and len(ctl.queue) == 0
    heartbeat = dataclasses.replace(first, resource_version="heartbeat")
    ctl.on_vmi("MODIFIED", first, heartbeat)
    assert len(ctl.queue) == 0 and ctl.mirror.vmis[(NS, "vm1")] is heartbeat
    ctl.on_vmi("MODIFIED", heartbeat, vmi([BRIDGE], {"hp1": "domain, guest-agent, multus-status"}))
    assert len(ctl.queue) == 1
    await stop(task)


@pytest.mark.parametrize("resumed", [True, False])
async def test_follower_backlog_is_reported_only_when_leadership_resumes(resumed: bool) -> None:
    """Leadership lost mid-migration (renews failed), regained: the migration's end and the hot plug's
    completion seen meanwhile are counted once — by this replica only if nobody else led in between."""
    ctl, api, clock, task = await make()
    ctl.on_vm("ADDED", None, vm([BRIDGE]))
    ctl.on_vmi("ADDED", None, vmi([BRIDGE]))
    await settle()
    running = vmim_obj("hotplug-vm1-1", "vm1", "Running")
    ctl.on_vmim("ADDED", None, running)
    ctl.mark_synced()
    await settle()
    ctl.set_leading(False)
    ctl.on_vmim("MODIFIED", running, vmim_obj("hotplug-vm1-1", "vm1", "Succeeded"))
    clock.t += 2
    ctl.on_vmi("MODIFIED", None, vmi([BRIDGE], {"hp1": "domain, guest-agent, multus-status"}))
    await settle()
    assert (NS, "vm1") not in ctl.tracks
    # A follower counts nothing (the leader does)...
    completed = ("hotplug_agent_hotplugs_completed_total", {"operation": "plug"})
    succeeded = ("hotplug_agent_migrations_total", {"result": "succeeded", "initiator": "agent"})
    assert sample(ctl.metrics, completed[0], **completed[1]) == 0
    assert sample(ctl.metrics, succeeded[0], **succeeded[1]) == 0
    ctl.set_leading(True, resumed=resumed)
    expected = 1 if resumed else 0
    assert sample(ctl.metrics, completed[0], **completed[1]) == expected
    assert sample(ctl.metrics, succeeded[0], **succeeded[1]) == expected
    # ...and the backlog is reported at most once.
    ctl.set_leading(False)
    ctl.set_leading(True, resumed=True)
    assert sample(ctl.metrics, succeeded[0], **succeeded[1]) == expected
    assert api.created == [(NS, "vm1")]
    await stop(task)


async def test_migration_that_succeeds_as_the_deadline_cancel_lands_counts_as_succeeded() -> None:
    """The deadline passes, the agent deletes the VMIM, but KubeVirt finished it first: succeeded,
    verified, not retried (and not counted as cancelled)."""
    ctl, api, clock, task = await make(
        config(settle_seconds=0, bridge_grace_seconds=0, mode="active", migration_deadline_seconds=5)
    )
    ctl.on_vm("ADDED", None, vm([BRIDGE]))
    ctl.on_vmi("ADDED", None, vmi([BRIDGE]))
    await settle()
    running = vmim_obj("hotplug-vm1-1", "vm1", "Running")
    clock.t = running.creation_ts + 6  # past the deadline
    ctl.on_vmim("ADDED", None, running)
    ctl.mark_synced()
    await settle()
    assert api.deleted == [(NS, "hotplug-vm1-1")]
    ctl.on_vmim("MODIFIED", running, vmim_obj("hotplug-vm1-1", "vm1", "Succeeded"))
    await settle()
    assert sample(ctl.metrics, "hotplug_agent_migrations_total", result="succeeded", initiator="agent") == 1
    assert sample(ctl.metrics, "hotplug_agent_migrations_total", result="cancelled", initiator="agent") == 0
    assert ctl.tracks[(NS, "vm1")].state == "verifying"
    assert ctl.tracks[(NS, "vm1")].attempts == 0
    assert api.created == [(NS, "vm1")]
    await stop(task)


async def test_failed_migration_retries_with_backoff_then_gives_up() -> None:
    settings = config(
        settle_seconds=0, bridge_grace_seconds=0, mode="active", max_attempts=2, backoff_initial_seconds=10
    )
    ctl, api, clock, task = await make(settings)
    ctl.on_vm("ADDED", None, vm([BRIDGE]))
    ctl.on_vmi("ADDED", None, vmi([BRIDGE]))
    await settle()
    for attempt in (1, 2):
        assert len(api.created) == attempt
        name = f"hotplug-vm1-{attempt}"
        running = vmim_obj(name, "vm1", "Running")
        ctl.on_vmim("ADDED", None, running)
        ctl.on_vmim("MODIFIED", running, vmim_obj(name, "vm1", "Failed"))
        await settle()
        if attempt == 1:
            # backing off: no immediate retry
            assert len(api.created) == 1
            clock.t += settings.backoff_max_seconds + 1
            ctl.enqueue((NS, "vm1"))
            await settle()
    track = ctl.tracks[(NS, "vm1")]
    assert track.blocked is BlockReason.RETRIES_EXHAUSTED
    assert len(api.created) == 2
    assert sample(ctl.metrics, "hotplug_agent_migration_failures_total", reason="migration-failed") == 2
    assert sample(ctl.metrics, "hotplug_agent_migration_retries_total") == 1
    assert sample(ctl.metrics, "hotplug_agent_blocked_vms", reason="retries-exhausted") in (0, 1)
    await stop(task)


async def test_cannot_migrate_rejection_blocks() -> None:
    ctl, api, _clock, task = await make()
    api.fail_with = ApiError(
        422, "Invalid", "Cannot migrate VMI, Reason: DisksNotLiveMigratable, Message: no", verb="create"
    )
    ctl.on_vm("ADDED", None, vm([BRIDGE]))
    ctl.on_vmi("ADDED", None, vmi([BRIDGE]))
    await settle()
    assert ctl.tracks[(NS, "vm1")].blocked is BlockReason.MIGRATION_REJECTED
    await stop(task)


async def test_in_flight_rejection_requeues_without_counting_an_attempt() -> None:
    ctl, api, _clock, task = await make()
    api.fail_with = ApiError(409, "Conflict", "in-flight migration detected. Active migration job (x) ...")
    ctl.on_vm("ADDED", None, vm([BRIDGE]))
    ctl.on_vmi("ADDED", None, vmi([BRIDGE]))
    await settle()
    assert ctl.tracks[(NS, "vm1")].attempts == 0
    assert not ctl.expected
    await stop(task)


async def test_cluster_cap_counts_every_active_migration() -> None:
    settings = config(settle_seconds=0, bridge_grace_seconds=0, mode="active", max_in_flight=3)
    ctl, api, _clock, task = await make(settings)
    # one migration KubeVirt started counts against the cap
    other = parse_vmim(
        {
            "metadata": {"name": "kubevirt-migrate-vm-x", "namespace": NS, "uid": "u-x"},
            "spec": {"vmiName": "busy"},
            "status": {"phase": "Running"},
        }
    )
    ctl.on_vmim("ADDED", None, other)
    for i in range(6):
        name = f"vm{i}"
        ctl.on_vm("ADDED", None, vm([BRIDGE], name=name))
        ctl.on_vmi("ADDED", None, vmi([BRIDGE], name=name, node=f"node-{i}"))
    await settle()
    assert len(api.created) == 2
    assert sample(ctl.metrics, "hotplug_agent_rate_limited_dispatches_total", limit="cluster") == 4
    await stop(task)


async def test_follower_and_observe_mode_create_nothing() -> None:
    ctl, api, _clock, task = await make(config(settle_seconds=0, bridge_grace_seconds=0, mode="observe"))
    ctl.on_vm("ADDED", None, vm([BRIDGE]))
    ctl.on_vmi("ADDED", None, vmi([BRIDGE]))
    await settle()
    assert api.created == []
    ctl2, api2, _c2, task2 = await make()
    ctl2.set_leading(False)
    ctl2.on_vm("ADDED", None, vm([BRIDGE]))
    ctl2.on_vmi("ADDED", None, vmi([BRIDGE]))
    await settle()
    assert api2.created == []
    ctl2.set_leading(True)
    await settle()
    assert api2.created == [(NS, "vm1")]
    await stop(task)
    await stop(task2)


async def test_restart_right_after_our_success_verifies_instead_of_migrating_again() -> None:
    ctl, api, clock, task = await make()
    # The agent restarts: its initial list shows our migration already Succeeded (at 00:00:03), and the
    # VMI status has not caught up yet.
    clock.t = vmim_obj("x", "vm1", "Succeeded").phase_ts("Succeeded") + 1.0
    ctl.on_vmim("ADDED", None, vmim_obj("hotplug-vm1-old", "vm1", "Succeeded"))
    ctl.on_vm("ADDED", None, vm([BRIDGE]))
    ctl.on_vmi("ADDED", None, vmi([BRIDGE]))
    ctl.mark_synced()
    await settle()
    assert api.created == []
    assert ctl.tracks[(NS, "vm1")].state == "verifying"
    ctl.on_vmi("MODIFIED", None, vmi([BRIDGE], {"hp1": "domain, guest-agent, multus-status"}))
    await settle()
    assert (NS, "vm1") not in ctl.tracks
    assert api.created == []
    await stop(task)


async def test_a_migration_window_holds_creates_until_it_opens_then_releases_without_polling() -> None:
    # The fake clock starts at 1970-01-12 13:46:40 UTC; the window opens at 15:00 UTC.
    ctl, api, clock, task = await make(
        config(settle_seconds=0, bridge_grace_seconds=0, mode="active", migration_window="15:00-16:00")
    )
    ctl.on_vm("ADDED", None, vm([BRIDGE]))
    ctl.on_vmi("ADDED", None, vmi([BRIDGE]))
    await settle()
    assert api.created == []
    assert ctl.tracks[(NS, "vm1")].state == "outside-window"
    assert sample(ctl.metrics, "hotplug_agent_migration_window_open") == 0
    opens = 11 * 86400 + 15 * 3600
    assert sample(ctl.metrics, "hotplug_agent_migration_window_next_open_timestamp_seconds") == opens
    clock.t = opens + 1.0
    ctl.wakeups.schedule(("", "tick"), 0.0)  # wakes the loop: it reads the (fake) clock again
    for _ in range(4):
        await settle()
    assert api.created == [(NS, "vm1")]  # the window's own wake-up re-decided the waiting VMI
    assert sample(ctl.metrics, "hotplug_agent_migration_window_open") == 1
    await stop(task)
