"""Leader election: two electors against one embedded API server, short durations."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.kube import KubeClient
from agent.leader import LeaderElector
from agent.startup import connect
from simulator.apiserver import ApiServer, FaultRule
from tests.agent_io.conftest import eventually

LEASE = dict(lease_duration=1.5, renew_deadline=1.0, retry_period=0.2)


class Tracker:
    def __init__(self) -> None:
        self.log: list[str] = []

    def started(self) -> None:
        self.log.append("started")

    def stopped(self) -> None:
        self.log.append("stopped")


@contextlib.asynccontextmanager
async def clients(kubeconfig: Path, n: int) -> AsyncIterator[list[KubeClient]]:
    made = [await connect(str(kubeconfig), request_timeout=5.0, retry_attempts=1) for _ in range(n)]
    try:
        yield made
    finally:
        for c in made:
            await c.close()


def elector(kube: KubeClient, identity: str, tracker: Tracker | None = None, **kw: Any) -> LeaderElector:
    opts: dict[str, Any] = {**LEASE, **kw}
    return LeaderElector(
        kube,
        "default",
        "hotplug-agent",
        identity,
        on_started_leading=tracker.started if tracker else None,
        on_stopped_leading=tracker.stopped if tracker else None,
        **opts,
    )


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def holder(kube: KubeClient) -> dict[str, Any]:
    lease = await kube.get_lease("default", "hotplug-agent")
    assert lease is not None
    spec: dict[str, Any] = lease["spec"]
    return spec


async def test_only_one_of_two_leads(kubeconfig: Path) -> None:
    async with clients(kubeconfig, 2) as (k1, k2):
        e1, e2 = elector(k1, "one"), elector(k2, "two")
        tasks = [asyncio.create_task(e.run()) for e in (e1, e2)]
        try:
            await eventually(lambda: e1.leading or e2.leading, what="a leader")
            for _ in range(10):  # stays exclusive across several renew periods
                assert e1.leading != e2.leading
                await asyncio.sleep(0.1)
            leader = e1 if e1.leading else e2
            spec = await holder(k1)
            assert spec["holderIdentity"] == leader.identity
            assert spec["leaseDurationSeconds"] == 2  # rounded to whole seconds on the wire
            assert spec["renewTime"].endswith("Z") and "." in spec["renewTime"]
        finally:
            for t in tasks:
                await stop(t)


async def test_crashed_leader_is_replaced_within_lease_duration(kubeconfig: Path) -> None:
    async with clients(kubeconfig, 2) as (k1, k2):
        t1, t2 = Tracker(), Tracker()
        e1 = elector(k1, "one", t1, release_on_cancel=False)
        task1 = asyncio.create_task(e1.run())
        await eventually(lambda: e1.leading, what="first leader")
        e2 = elector(k2, "two", t2)
        task2 = asyncio.create_task(e2.run())
        try:
            await asyncio.sleep(0.5)
            assert not e2.leading
            await stop(task1)  # "crash": no release
            assert t1.log == ["started", "stopped"]
            lost_at = time.monotonic()
            await eventually(lambda: e2.leading, timeout=5, what="takeover")
            took = time.monotonic() - lost_at
            assert took <= 2 + 2 * 0.2 * 2.2 + 0.5, f"takeover took {took:.2f}s"
            spec = await holder(k2)
            assert spec["holderIdentity"] == "two" and spec["leaseTransitions"] == 1
            assert t2.log == ["started"]
        finally:
            await stop(task2)


async def test_graceful_release_gives_fast_takeover(kubeconfig: Path) -> None:
    async with clients(kubeconfig, 2) as (k1, k2):
        e1 = elector(k1, "one", lease_duration=10.0, renew_deadline=5.0, retry_period=0.2)
        task1 = asyncio.create_task(e1.run())
        await eventually(lambda: e1.leading, what="first leader")
        e2 = elector(k2, "two", lease_duration=10.0, renew_deadline=5.0, retry_period=0.2)
        task2 = asyncio.create_task(e2.run())
        try:
            await asyncio.sleep(0.5)
            assert not e2.leading
            await stop(task1)
            released = time.monotonic()
            await eventually(lambda: e2.leading, timeout=5, what="takeover after release")
            assert time.monotonic() - released < 2.0, "took a lease duration: the Lease was not released"
        finally:
            await stop(task2)
        spec = await holder(k2)
        assert spec["holderIdentity"] == "", "the second elector released on cancel too"
        assert spec["leaseDurationSeconds"] == 1


async def test_renew_that_cannot_finish_steps_down(kubeconfig: Path, server: ApiServer) -> None:
    async with clients(kubeconfig, 1) as (k1,):
        tracker = Tracker()
        e1 = elector(k1, "one", tracker)
        task = asyncio.create_task(e1.run())
        try:
            await eventually(lambda: e1.leading, what="leader")
            assert not e1.resumed  # a first leadership continues nothing
            server.faults.add(FaultRule(resources=("leases",), latency=5.0))
            hung_at = time.monotonic()
            await eventually(lambda: not e1.leading, timeout=4, what="step down")
            assert time.monotonic() - hung_at <= 1.0 + 0.2 + 0.5
            assert tracker.log == ["started", "stopped"]
            assert not e1.is_leader.is_set()
            server.faults.clear()
            await eventually(lambda: e1.leading, timeout=5, what="re-acquired after recovery")
            assert tracker.log == ["started", "stopped", "started"]
            # Nobody else held the Lease in between: this leadership resumes the previous one.
            assert e1.resumed
        finally:
            await stop(task)


async def test_leadership_after_another_leader_is_not_resumed(kubeconfig: Path, server: ApiServer) -> None:
    """One steps down (renews hang), two takes over and releases; one leads again but does not resume."""
    async with clients(kubeconfig, 2) as (k1, k2):
        e1 = elector(k1, "one", reacquire=False)  # so two can take over; run() returns on the loss
        first = asyncio.create_task(e1.run())
        await eventually(lambda: e1.leading, what="one leads")
        rule = server.faults.add(FaultRule(resources=("leases",), latency=5.0))
        await asyncio.wait_for(first, timeout=4)
        assert not e1.leading
        server.faults.remove(rule)
        e2 = elector(k2, "two")
        t2: asyncio.Task[None] | None = asyncio.create_task(e2.run())
        again: asyncio.Task[None] | None = None
        try:
            await eventually(lambda: e2.leading, timeout=5, what="two takes over")
            assert not e2.resumed
            assert t2 is not None
            await stop(t2)  # releases the Lease
            t2 = None
            again = asyncio.create_task(e1.run())
            await eventually(lambda: e1.leading, timeout=5, what="one leads again")
            assert (await holder(k1))["holderIdentity"] == "one"
            assert e1.transitions == 2
            assert not e1.resumed, "another replica led in between: what one saw then was two's to report"
        finally:
            for t in (t2, again):
                if t is not None:
                    await stop(t)


async def test_lost_race_on_conflict_does_not_lead(kubeconfig: Path) -> None:
    async with clients(kubeconfig, 2) as (k1, k2):
        e1, e2 = elector(k1, "one"), elector(k2, "two")
        assert await e1.try_acquire_or_renew()
        assert not await e2.try_acquire_or_renew()  # held and not expired
        lease = await k1.get_lease("default", "hotplug-agent")
        assert lease is not None
        stale = {**lease, "spec": {**lease["spec"], "holderIdentity": "two"}}
        assert await e1.try_acquire_or_renew()  # moves the resourceVersion
        from agent.kube import ApiError

        with pytest.raises(ApiError) as info:
            await k2.replace_lease("default", "hotplug-agent", stale)
        assert info.value.status == 409


def test_timing_validation() -> None:
    with pytest.raises(ValueError):
        LeaderElector(None, "ns", "l", "me", lease_duration=5, renew_deadline=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        LeaderElector(None, "ns", "l", "me", renew_deadline=2, retry_period=2)  # type: ignore[arg-type]


async def test_leader_steps_down_at_once_when_the_lease_is_taken(kubeconfig: Path) -> None:
    async with clients(kubeconfig, 2) as (k1, k2):
        tracker = Tracker()
        e1 = elector(k1, "one", tracker, lease_duration=10.0, renew_deadline=5.0, retry_period=0.2)
        task = asyncio.create_task(e1.run())
        try:
            await eventually(lambda: e1.leading, what="leader")
            lease = await k2.get_lease("default", "hotplug-agent")
            assert lease is not None
            lease["spec"]["holderIdentity"] = "usurper"  # e.g. an admin, or a split-brain peer
            await k2.replace_lease("default", "hotplug-agent", lease)
            t0 = time.monotonic()
            await eventually(lambda: not e1.leading, timeout=3, what="step down")
            assert time.monotonic() - t0 < 1.0, "waited for the renew deadline instead of stepping down"
            assert tracker.log == ["started", "stopped"]
        finally:
            await stop(task)
