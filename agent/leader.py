"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics.

Why not kubernetes-asyncio's ``leaderelection``: its calls have no timeout (a hung renew keeps an old
leader acting while others take over — split brain), it cannot release the Lease on shutdown and it
writes local time with a ``Z`` suffix. This one:

- judges expiry on the *local monotonic* time at which it last saw the Lease record change plus the
  record's ``leaseDurationSeconds`` (tolerant of clock skew between nodes, like client-go);
- writes with PUT carrying the read ``resourceVersion`` (optimistic concurrency: 409 = lost the race);
- renews every ``retry_period``; each attempt runs under ``asyncio.timeout`` bounded by the renew
  deadline, and when no renew succeeded within ``renew_deadline`` it steps down at once;
- on losing (or giving up) leadership clears ``is_leader`` and calls ``on_stopped_leading``
  synchronously, before anything else runs, so the controller stops creating migrations immediately;
- tells whether a new leadership *resumes* this process's previous one (the Lease still named us, so
  no other replica led in between): the controller then reports what it saw while following;
- on cancellation (graceful shutdown) releases the Lease (empty holder, ``leaseDurationSeconds: 1``,
  client-go's ``ReleaseOnCancel``) so a standby takes over within a retry period, not a lease duration.

No fencing is possible with Leases (client-go says the same): two leaders may overlap for up to the
renew deadline, so the agent's side effects must stay idempotent (the controller's expectations and
KubeVirt's in-flight admission check do that).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from typing import Any

import structlog

from agent.kube import ApiError, KubeClient, rfc3339_micro

log = structlog.get_logger(__name__)

Callback = Callable[[], None]
#: Fields of the Lease spec whose change counts as "the record moved" (client-go compares them all).
_RECORD_FIELDS = ("holderIdentity", "leaseDurationSeconds", "acquireTime", "renewTime", "leaseTransitions")


class LeaderElector:
    """Campaigns for ``namespace/name`` as ``identity`` until cancelled (see module docstring).

    After losing leadership it campaigns again (``reacquire=True``), so a follower keeps warm caches
    and a takeover is immediate; pass ``reacquire=False`` to return from :meth:`run` instead.
    """

    def __init__(
        self,
        kube: KubeClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        on_started_leading: Callback | None = None,
        on_stopped_leading: Callback | None = None,
        release_on_cancel: bool = True,
        reacquire: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not lease_duration > renew_deadline > 0:
            raise ValueError("lease duration must be greater than the renew deadline (> 0)")
        if not renew_deadline > 1.2 * retry_period > 0:
            raise ValueError("renew deadline must be greater than 1.2 x retry period (> 0)")
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self.release_on_cancel = release_on_cancel
        self.reacquire = reacquire
        self.clock = clock
        self.is_leader = asyncio.Event()
        self.transitions = 0  # times this elector became leader
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        #: holderIdentity of the last Lease record read ("" when free or not read yet).
        self.observed_holder = ""
        #: the holder the Lease named when this elector last acquired it
        self._acquired_from = ""
        #: True when the current leadership continues this process's previous one: the Lease still
        #: named us, so nobody else led in between (what we saw meanwhile nobody else reported).
        self.resumed = False

    # ------------------------------------------------------------------ public

    @property
    def leading(self) -> bool:
        return self.is_leader.is_set()

    async def run(self) -> None:
        """Campaign, lead, renew; until cancelled (then release) or, with ``reacquire=False``, lost."""
        try:
            while True:
                await self._acquire()
                self._became_leader()
                await self._renew_until_lost()
                self._lost_leadership("renew deadline exceeded")
                if not self.reacquire:
                    return
                await asyncio.sleep(self._jittered_retry())
        finally:
            if self.leading:
                self._lost_leadership("shutting down")
                if self.release_on_cancel:
                    await self._release_shielded()

    async def release(self) -> bool:
        """Give the Lease up now if we hold it (empty holder, 1 s duration); ``True`` when released."""
        try:
            async with asyncio.timeout(self.renew_deadline):
                lease = await self.kube.get_lease(self.namespace, self.name)
                if lease is None:
                    return False
                spec = lease.setdefault("spec", {})
                if spec.get("holderIdentity") != self.identity:
                    return False
                now = rfc3339_micro()
                spec.update(
                    {"holderIdentity": "", "leaseDurationSeconds": 1, "acquireTime": now, "renewTime": now}
                )
                await self.kube.replace_lease(self.namespace, self.name, lease)
        except (ApiError, TimeoutError) as exc:
            log.warning("lease_release_failed", lease=self.name, error=str(exc))
            return False
        log.info("lease_released", lease=self.name, identity=self.identity)
        return True

    # ------------------------------------------------------------------ internals

    def _jittered_retry(self) -> float:
        return self.retry_period * (1.0 + random.uniform(0.0, 1.2))

    def _became_leader(self) -> None:
        self.resumed = self.transitions > 0 and self._acquired_from == self.identity
        self.transitions += 1
        self.is_leader.set()
        log.info("leader_elected", lease=self.name, identity=self.identity)
        if self.on_started_leading is not None:
            self.on_started_leading()

    def _lost_leadership(self, why: str) -> None:
        if not self.is_leader.is_set():
            return
        self.is_leader.clear()
        log.warning("leader_lost", lease=self.name, identity=self.identity, why=why)
        if self.on_stopped_leading is not None:
            self.on_stopped_leading()

    async def _release_shielded(self) -> None:
        # Runs during cancellation: shield it so the release PUT is not cancelled half-way.
        task = asyncio.ensure_future(self.release())
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)

    async def _acquire(self) -> None:
        self._acquired_from = ""
        while True:
            try:
                async with asyncio.timeout(self.renew_deadline):
                    if await self.try_acquire_or_renew():
                        return
            except (ApiError, TimeoutError) as exc:
                log.info("lease_acquire_failed", lease=self.name, error=str(exc))
            await asyncio.sleep(self._jittered_retry())

    async def _renew_until_lost(self) -> None:
        last_renew = self.clock()
        while True:
            await asyncio.sleep(self.retry_period)
            while True:
                remaining = last_renew + self.renew_deadline - self.clock()
                if remaining <= 0:
                    return
                try:
                    async with asyncio.timeout(remaining):
                        ok = await self.try_acquire_or_renew()
                except (ApiError, TimeoutError) as exc:
                    log.info("lease_renew_failed", lease=self.name, error=str(exc))
                    ok = False
                if ok:
                    last_renew = self.clock()
                    break
                if self.observed_holder not in ("", self.identity):
                    return  # someone else holds a live Lease now: we lost, step down at once
                await asyncio.sleep(
                    min(self.retry_period, max(0.0, last_renew + self.renew_deadline - self.clock()))
                )

    def _observe(self, spec: dict[str, Any]) -> None:
        record = tuple(spec.get(f) for f in _RECORD_FIELDS)
        if record != self._observed:
            self._observed = record
            self._observed_at = self.clock()

    async def try_acquire_or_renew(self) -> bool:
        """One attempt (client-go ``tryAcquireOrRenew``); ``True`` when we hold the Lease afterwards."""
        now = rfc3339_micro()
        lease = await self.kube.get_lease(self.namespace, self.name)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": max(1, round(self.lease_duration)),
                    "acquireTime": now,
                    "renewTime": now,
                    "leaseTransitions": 0,
                },
            }
            try:
                created = await self.kube.create_lease(self.namespace, body)
            except ApiError as exc:
                if exc.status == 409:
                    return False
                raise
            self._observe(created.get("spec") or {})
            self._acquired_from = ""
            self.observed_holder = self.identity
            return True

        spec = lease.get("spec")
        if not isinstance(spec, dict):
            spec = {}
            lease["spec"] = spec
        self._observe(spec)
        holder = spec.get("holderIdentity") or ""
        self.observed_holder = holder
        duration = spec.get("leaseDurationSeconds")
        duration = (
            float(duration) if isinstance(duration, int | float) and duration > 0 else self.lease_duration
        )
        valid = self._observed_at + duration > self.clock()
        if holder and holder != self.identity and valid:
            return False  # someone else holds a live Lease

        transitions = spec.get("leaseTransitions")
        transitions = transitions if isinstance(transitions, int) else 0
        new_spec = dict(spec)
        new_spec["holderIdentity"] = self.identity
        new_spec["leaseDurationSeconds"] = max(1, round(self.lease_duration))
        new_spec["renewTime"] = now
        if holder != self.identity or not spec.get("acquireTime"):
            new_spec["acquireTime"] = now
            # client-go counts every change of holder, including taking over a released Lease.
            new_spec["leaseTransitions"] = transitions + (1 if holder != self.identity else 0)
        lease["spec"] = new_spec
        try:
            updated = await self.kube.replace_lease(self.namespace, self.name, lease)
        except ApiError as exc:
            if exc.status == 409:
                return False  # someone wrote first; look again next period
            raise
        self._observe(updated.get("spec") or {})
        if not self.leading:
            self._acquired_from = holder
        self.observed_holder = self.identity
        return True
