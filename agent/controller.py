"""The controller loop: informer events in, the lifecycle's actions out. It decides nothing itself.

Why so small: every rule of a hot plug's life is in ``agent.lifecycle`` (a pure ``step``); what the
caches hold is ``agent.mirror``; API calls are ``agent.executor``'s; Events and metrics are
``agent.reporting``'s. What is left here is the plumbing controller-runtime's controller has: informer
callbacks update the mirror and queue the VMI's key (a watch event costs a dict update and a queue
insert; a VMI update that changes nothing the mirror's record holds, a status heartbeat, queues
nothing); one worker takes a key, runs ``step`` for the observations waiting in the key's inbox and
once more for the current view, and performs the actions; a dispatcher picks the ready VMIs within
every limit (``agent.scheduler``), run by the worker itself when its queue empties with a dispatch due
(else by its own loop); wake-ups re-queue keys when a window ends.

Invariants kept here: one key is never stepped concurrently (client-go workqueue); the dispatcher
steps a chosen VMI synchronously, so the next plan already counts it against the caps; only the
leader, in active mode and not draining, creates or deletes migrations.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable
from typing import Final

import structlog

from agent import lifecycle as lc
from agent.aio import wait_event
from agent.config import AgentConfig
from agent.decide import Mode, resolve_mode
from agent.dispatcher import Dispatcher
from agent.events import EventRecorder
from agent.executor import Executor, MigrationApi
from agent.infra import NADRecord, NodeRecord, PodRecord
from agent.mirror import Mirror
from agent.model import Key, KubeVirtRecord, VMIMRecord, VMIRecord, VMRecord
from agent.reporting import Reporter, summary
from agent.scheduler import TokenBucket, WorkQueue
from agent.wakeups import Wakeups
from agent.window import Schedule, WindowState
from metrics.definitions import HotplugMetrics

log = structlog.get_logger(__name__)

_DISPATCH: Final[Key] = ("", "")  # wake-up key of the dispatcher
_WINDOW: Final[Key] = ("", "window")  # wake-up key of the migration window's next change


class Controller:
    def __init__(
        self,
        settings: AgentConfig,
        api: MigrationApi | None,
        metrics: HotplugMetrics,
        events: EventRecorder,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.events = events
        self.clock = clock
        self._rng = rng or random.Random()
        self.mirror = Mirror()
        self.reporter = Reporter(metrics, events)
        self.dispatcher = Dispatcher(
            TokenBucket(settings.creates_per_second, settings.create_burst, clock()), metrics
        )
        self.executor = Executor(api, self.post, on_send=self.dispatcher.create_sent)
        self.tracks: dict[Key, lc.Track] = {}
        self.inbox: dict[Key, list[lc.Observation]] = {}
        self.queue: WorkQueue[Key] = WorkQueue(maxsize=1_000_000)
        self._queue_ready = asyncio.Event()
        self._dispatch_wake = asyncio.Event()
        self._ours_changed = asyncio.Event()
        self.wakeups: Wakeups[Key] = Wakeups(self._on_wakeup, clock=clock)
        self.mode: Mode = "active"
        self.draining = False
        self.schedule = Schedule.parse(settings.migration_window)
        self._window: WindowState | None = None
        #: perf_counter of each tracked key's last watch event (the agent's reaction time starts there)
        self._event_at: dict[Key, float] = {}
        self._apply_mode()

    # ------------------------------------------------------------------ views

    @property
    def caps(self) -> tuple[int, int]:
        return self.mirror.caps(self.settings.max_in_flight, self.settings.max_per_node)

    @property
    def leading(self) -> bool:
        return self.reporter.leading

    @property
    def acting(self) -> bool:
        """True when this replica may create migrations now."""
        return self.leading and self.mode == "active" and not self.draining

    @property
    def expected(self) -> dict[Key, tuple[str, float]]:
        """Our creates the cache has not shown yet: VMI key → (source node, since)."""
        return {
            k: (t.expected_node, t.expected_since)
            for k, t in self.tracks.items()
            if t.phase is lc.Phase.CREATING and t.expected_since is not None
        }

    def ours_in_flight(self) -> int:
        active = self.mirror.active
        ours = sum(1 for m in active.values() if m.initiator == "agent")
        return ours + sum(1 for k in self.expected if k not in active)

    def _apply_mode(self) -> None:
        new = resolve_mode(self.settings.mode, self.mirror.kubevirt)
        changed = new != self.mode
        self.mode = new
        self.metrics.set_mode("dry-run" if self.settings.dry_run and new == "active" else new)
        self.metrics.set_limits(*self.caps)
        if changed:
            log.info("mode_changed", mode=new)
            self._enqueue_all()

    # ------------------------------------------------------------------ informer callbacks (cheap)

    def enqueue(self, key: Key) -> None:
        if not self.queue.add(key):
            log.error("work_queue_full", key=f"{key[0]}/{key[1]}")
            return
        self._queue_ready.set()

    def _enqueue_all(self) -> None:
        for key in list(self.tracks):
            self.enqueue(key)

    def post(self, key: Key, obs: lc.Observation) -> None:
        """An edge for the VMI's lifecycle (a migration ended, an API call's outcome): inbox, then queue."""
        self.inbox.setdefault(key, []).append(obs)
        self._ours_changed.set()
        self.enqueue(key)

    def on_vm(self, event: str, old: VMRecord | None, new: VMRecord | None) -> None:
        self._touched(self.mirror.vm_changed(event, old, new))

    def on_vmi(self, event: str, old: VMIRecord | None, new: VMIRecord | None) -> None:
        self._touched(self.mirror.vmi_changed(event, old, new))

    def _touched(self, key: Key | None) -> None:
        if key is not None:
            self._event_at[key] = time.perf_counter()
            self.enqueue(key)

    def on_kubevirt(self, event: str, old: KubeVirtRecord | None, new: KubeVirtRecord | None) -> None:
        self.mirror.kubevirt = None if event == "DELETED" else new
        self._apply_mode()
        self._dispatch_wake.set()

    def on_vmim(self, event: str, old: VMIMRecord | None, new: VMIMRecord | None) -> None:
        key, edge = self.mirror.vmim_changed(event, old, new)
        if key is None:
            return
        self.reporter.gauges_dirty = True
        self._dispatch_wake.set()  # a finished migration frees its slot at once
        self._ours_changed.set()
        if edge is not None:
            self.post(key, edge)
        else:
            self.enqueue(key)

    def on_nad(self, event: str, old: NADRecord | None, new: NADRecord | None) -> None:
        """A NAD created releases the VMIs blocked on it; one deleted or changed may block VMIs with
        work pending (re-decided: the tracked ones, not every VMI)."""
        released = self.mirror.nad_changed(event, old, new)
        self._release(released)
        if old is not None:
            self._enqueue_all()

    def on_node(self, event: str, old: NodeRecord | None, new: NodeRecord | None) -> None:
        if old == new:
            return
        self._release(self.mirror.node_changed(event, old, new))
        if old is not None and (new is None or not new.target or new.allocatable != old.allocatable):
            self._enqueue_all()  # fewer targets: the pending may have nowhere to go now
        self._dispatch_wake.set()

    def on_pod(self, event: str, old: PodRecord | None, new: PodRecord | None) -> None:
        if old == new:
            return
        self._release(self.mirror.pod_changed(event, old, new))
        self._dispatch_wake.set()  # freed VFs raise the capacity budget

    def _release(self, keys: set[Key]) -> None:
        for key in keys:
            self.enqueue(key)

    def mark_synced(self, *, nads: bool = False, nodes: bool = False) -> None:
        """The initial lists are in: from now on every VMIM we see finish is counted, and the preflight
        reads the NAD cache (``nads``) and the Node and Pod caches (``nodes``) when they are there."""
        m = self.mirror
        m.synced = True
        m.nads_synced, m.nodes_synced = nads, nodes
        if nads or nodes:
            self._enqueue_all()

    # ------------------------------------------------------------------ the migration window

    def window(self, now: float) -> WindowState | None:
        """The migration window now (None: none configured); at each change the tracked VMIs are
        decided again (a wake-up at the change), and the gauges follow."""
        if self.schedule.always:
            return None
        state = self.schedule.state(now)
        if state != self._window:
            self._window = state
            self.metrics.set_window(state.open, None if state.open else state.changes_at)
            self.wakeups.schedule(_WINDOW, state.changes_at)
        return state

    # ------------------------------------------------------------------ the worker

    async def reconcile_loop(self) -> None:
        processed = 0
        while True:
            key = self.queue.get()
            if key is None:
                if self._dispatch_wake.is_set():
                    # A dispatch is due (say the worker just made a VMI ready): run it now rather than
                    # after the event loop's other callbacks (the next watch chunk) and the dispatch
                    # loop's turn; if it queued keys (skipped, abandoned), take them first.
                    self._dispatch_wake.clear()
                    self.dispatch_once()
                    if len(self.queue):
                        continue
                self.reporter.refresh_gauges(*self._gauge_snapshot(), force=False)
                self._queue_ready.clear()
                await self._queue_ready.wait()
                continue
            try:
                self.reconcile(key)
            finally:
                self.queue.done(key)
            processed += 1
            if processed % 256 == 0:
                await asyncio.sleep(0)  # let watches and the dispatcher run during a big sync

    def reconcile(self, key: Key) -> None:
        """The waiting edges of one VMI, then its current view. Synchronous: no I/O here."""
        for obs in [*self.inbox.pop(key, ()), lc.OBSERVED]:
            self._step(key, obs)

    def _step(self, key: Key, obs: lc.Observation) -> None:
        m = self.mirror
        now = self.clock()
        ctx = lc.Context(
            now, self.settings, self.mode, m.kubevirt, self.leading, self.acting, m.synced,
            self._rng.random(), m.infrastructure(), self.window(now),
        )  # fmt: skip
        track, actions = lc.step(self.tracks.get(key), obs, m.view(key), ctx)
        if track is None:
            self.tracks.pop(key, None)
            self._event_at.pop(key, None)
        elif self.tracks.get(key) is not track:
            self.tracks[key] = track
            self.reporter.gauges_dirty = True
        for action in actions:
            self._perform(key, action)

    def _perform(self, key: Key, action: lc.Action) -> None:
        match action:
            case lc.CreateMigration() | lc.CancelMigration() | lc.CheckRestart():
                self._call_api(key, action)
            case lc.Emit() | lc.Count():
                self.reporter.report(action)
            case lc.WakeAt(at):
                self.wakeups.schedule(key, at)
            case lc.Ready(since, priority, needs):
                event_at = self._event_at.get(key, time.perf_counter())
                if self.dispatcher.add(key, since, event_at, priority, needs):
                    self._dispatch_wake.set()
            case lc.Await(triggers):
                self.mirror.set_awaits(key, triggers)
            case lc.Unready():
                self.dispatcher.remove(key)
            case lc.Hotplugged(uid, delta):
                self.mirror.hotplugged[uid] = self.mirror.hotplugged.get(uid, 0) + delta
            case lc.Log(level, event, fields):
                getattr(log, level)(event, **fields)
            case lc.Forget():
                self.mirror.set_awaits(key, frozenset())
                self.dispatcher.remove(key)
                self.wakeups.cancel(key)
                self.reporter.gauges_dirty = True

    def _call_api(self, key: Key, action: lc.CreateMigration | lc.CancelMigration | lc.CheckRestart) -> None:
        """The lifecycle's API actions, through the executor (only an acting replica creates)."""
        match action:
            case lc.CreateMigration():
                if self.acting and self.executor.can_act:
                    self.executor.create(key)
                else:
                    self.post(key, lc.CreateAbandoned())
            case lc.CancelMigration(_, name) if self.executor.can_act:
                self.executor.cancel(key, name)
            case lc.CheckRestart(_, generation):
                kv = self.mirror.kubevirt
                live = kv is not None and kv.vm_rollout_strategy == "LiveUpdate"
                self.executor.check_restart(key, generation, live_update=live)

    def _on_wakeup(self, key: Key) -> None:
        if key == _DISPATCH:
            self._dispatch_wake.set()
        elif key == _WINDOW:
            self.window(self.clock())
            self._enqueue_all()
            self._dispatch_wake.set()
        else:
            self.enqueue(key)

    # ------------------------------------------------------------------ the dispatcher

    async def dispatch_loop(self) -> None:
        while True:
            await self._dispatch_wake.wait()
            self._dispatch_wake.clear()
            self.dispatch_once()
            await asyncio.sleep(0)

    def dispatch_once(self) -> None:
        if not self.dispatcher.ready or not self.acting:
            return
        now = self.clock()
        window = self.window(now)
        if window is not None and not window.open:
            return  # the ready ones are decided again at the change (outside-window)
        active = self.mirror.active_migrations({k: node for k, (node, _) in self.expected.items()})
        budget = self.mirror.vf_budget(self.dispatcher.needs(), active)
        chosen, skipped, wake_at = self.dispatcher.plan(
            now, self.caps, active, self.mirror.node_of, self.mirror.memory_of, budget
        )
        for key in skipped:
            self.enqueue(key)
        for cand in chosen:
            self._step(cand.key, lc.Dispatched(cand.source_node))  # now, so the next plan counts it
        if wake_at is not None:
            self.wakeups.schedule(_DISPATCH, wake_at)

    # ------------------------------------------------------------------ leadership and lifecycle

    def set_leading(self, leading: bool, *, resumed: bool = False) -> None:
        """Leadership changes take effect at once: a lost leader stops creating immediately; a resumed
        leadership reports what it saw while following (``agent.reporting``)."""
        reported = self.reporter.set_leading(leading, resumed=resumed)
        if reported:
            log.info("reported_backlog", actions=reported)
        if leading:
            self._dispatch_wake.set()
            self._enqueue_all()
        else:
            self.executor.abandon_creates()

    async def wait_idle(self, grace_seconds: float) -> bool:
        """Wait until none of our migrations is in flight (drain on shutdown); False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        while self.ours_in_flight():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._ours_changed.clear()
            await wait_event(self._ours_changed, remaining)
        return True

    async def run(self) -> None:
        """Run the worker, dispatcher, wake-ups, Event sender and gauges until cancelled."""
        async with asyncio.TaskGroup() as tg:
            self.executor.bind(tg)
            tg.create_task(self.reconcile_loop(), name="reconcile")
            tg.create_task(self.dispatch_loop(), name="dispatch")
            tg.create_task(self.wakeups.run(), name="wakeups")
            tg.create_task(self.events.run(), name="events")
            tg.create_task(self.reporter.run_gauges(self._gauge_snapshot), name="gauges")

    def _gauge_snapshot(self) -> tuple[Iterable[lc.Track], dict[str, int], float]:
        return self.tracks.values(), self.mirror.in_flight_counts(), self.clock()

    def summary(self) -> dict[str, int]:
        return summary(self.tracks.values())


__all__ = ["Controller", "MigrationApi"]
