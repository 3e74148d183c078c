"""Ground truth of a simulated run, computed from the cluster's own state (not the agent's claims).

The :class:`Recorder` is an event observer of the embedded API server: it sees every stored mutation
synchronously, so it can time completions and count concurrent migrations exactly. Per hot-plug
request it decides *completed* the way KubeVirt users check it: a plug is complete when the VMI has a
``status.interfaces`` entry for it with ``domain`` in ``infoSource``; an unplug when the interface is
gone from the VM template (KubeVirt's last cleanup step). Work per event is O(interfaces of that VM).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from agent.kubevirt import (
    ANNOTATION_EVACUATION,
    ANNOTATION_WORKLOAD_UPDATE,
    COND_LIVE_MIGRATABLE,
    COND_RESTART_REQUIRED,
    COND_SYNCHRONIZED,
    INFO_SOURCE_DOMAIN,
    PHASE_SUCCEEDED,
    VMIMS,
    is_final,
    is_running,
)
from agent.names import (
    COMPONENT,
    LABEL_AUTO_MIGRATE,
    LABEL_MANAGED_BY,
    MANAGED_BY_VALUE,
    OPT_OUT_VALUE,
    EventReason,
)
from simulator.kubevirt import pods, rules, scheduling
from simulator.kubevirt.migration import UNSCHEDULABLE_REASON
from simulator.scenario import Request

#: The first release with KubeVirt's network exemption in the RestartRequired rule: the reference for
#: "this VM really needs a restart" whatever release the run simulates.
FIXED_RESTART_RULE = (1, 5, 2)


class ObjectReader(Protocol):
    """What the Recorder reads objects through: the embedded server's ``Store``, or the caches of
    :class:`simulator.watch_recorder.WatchRecorder` (watches of any API server)."""

    def try_get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None: ...


@runtime_checkable
class ObjectLister(Protocol):
    """What the Recorder lists nodes and pods through to judge SR-IOV capacity (the embedded server's
    ``Store``; without one, a hot plug no node has VFs for stays "pending" in the report)."""

    def list(self, resource: str, namespace: str | None = None) -> tuple[list[dict[str, Any]], int]: ...


@dataclass
class RequestOutcome:
    namespace: str
    vm: str
    interface: str
    op: str
    binding: str
    category: str
    accepted: bool
    rejection: str
    completed: bool
    latency_seconds: float | None
    #: Why not completed, from the final state: rejected, not-live-migratable, slots-exhausted,
    #: restart-required, opted-out, network-missing (a NAD its networks name does not exist),
    #: no-target-capacity (no other node has the SR-IOV VFs its target pod needs), pending.
    final_state: str
    #: The reason the agent gave in its Warning Event on the VM (``HotplugBlocked`` and friends), if any.
    agent_block: str = ""


@dataclass
class MigrationStats:
    created: int = 0
    by_creator: dict[str, int] = field(default_factory=lambda: {"agent": 0, "kubevirt": 0, "manual": 0})
    succeeded: int = 0
    failed: int = 0
    unfinished: int = 0
    max_concurrent: int = 0
    max_concurrent_running: int = 0
    max_concurrent_per_vmi: int = 0
    max_running_per_node: int = 0
    for_opted_out: int = 0
    for_not_live_migratable: int = 0
    for_restart_required: int = 0
    #: Migrations that failed (or were cancelled, or are left unfinished) for a cause a preflight could
    #: have known: ``network-missing`` (ended while a NAD its VMI's networks name was missing),
    #: ``no-target-capacity`` (its target pod was unschedulable past KubeVirt's timeout).
    failed_by_cause: dict[str, int] = field(
        default_factory=lambda: {"network-missing": 0, "no-target-capacity": 0}
    )
    #: Of the unfinished ones, those hanging for such a cause (KubeVirt keeps them Pending or unscheduled).
    unfinished_by_cause: dict[str, int] = field(
        default_factory=lambda: {"network-missing": 0, "no-target-capacity": 0}
    )


@dataclass
class Report:
    requested: int
    completed: int
    blocked_at_admission: int
    not_completed: int
    by_final_state: dict[str, int]
    migrations: MigrationStats
    makespan_seconds: float | None
    violations: list[str]
    requests: list[RequestOutcome]
    #: Not completed requests the agent explained with a Kubernetes Event, by the reason it gave.
    blocked_by_agent: dict[str, int] = field(default_factory=dict)
    #: Accepted, not completed, and neither explained by an agent Event: lost (in agent mode).
    unexplained: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    def summary_lines(self) -> list[str]:
        m = self.migrations
        lines = [
            f"hot-plug requests: {self.requested}  completed: {self.completed}  "
            f"blocked at admission: {self.blocked_at_admission}  not completed: {self.not_completed}",
            self._not_completed_line(),
            f"migrations: {m.created} created (agent {m.by_creator['agent']}, kubevirt "
            f"{m.by_creator['kubevirt']}, "
            f"manual {m.by_creator['manual']}), {m.succeeded} succeeded, {m.failed} failed, "
            f"{m.unfinished} unfinished",
            "migrations failed for a cause a preflight knows: "
            + ", ".join(f"{cause} {n}" for cause, n in m.failed_by_cause.items()),
            f"concurrency: max {m.max_concurrent} unfinished, {m.max_concurrent_running} running, "
            f"{m.max_concurrent_per_vmi} per VMI, {m.max_running_per_node} running per source node",
            f"makespan: {self.makespan_seconds:.2f} s"
            if self.makespan_seconds is not None
            else "makespan: n/a",
        ]
        if self.blocked_by_agent:
            lines.insert(
                2,
                "blocked by the agent (Event on the VM): "
                + ", ".join(f"{k}={v}" for k, v in sorted(self.blocked_by_agent.items()))
                + f"; unexplained: {self.unexplained}",
            )
        if self.violations:
            lines.append("VIOLATIONS: " + "; ".join(self.violations))
        return lines

    def _not_completed_line(self) -> str:
        """The accepted requests not completed, by what the cluster shows (sums to ``not_completed``).

        "pending" is what the cluster cannot explain by itself (e.g. a slot shortage the agent predicted
        and so never migrated for): the agent's Event gives the reason, or none did.
        """
        left = [r for r in self.requests if r.accepted and not r.completed]
        by_state = _count(r.final_state for r in left)
        parts = []
        for state, n in sorted(by_state.items(), key=lambda kv: (kv[0] == "pending", kv[0])):
            part = f"{state}={n}"
            if state == "pending":
                said = _count(r.agent_block or "no reason given" for r in left if r.final_state == state)
                part += (
                    " (the agent's Event says " + ", ".join(f"{k}={v}" for k, v in sorted(said.items())) + ")"
                )
            parts.append(part)
        return f"not completed ({len(left)}), by the cluster's state: " + (", ".join(parts) or "none")


class _Track:
    __slots__ = ("completed_at", "request")

    def __init__(self, request: Request) -> None:
        self.request = request
        self.completed_at: float | None = None


class Recorder:
    """Register with ``server.add_event_observer(recorder.observe)``; add requests as they are issued."""

    def __init__(self, store: ObjectReader) -> None:
        self.store = store
        #: The embedded server's store lists too (nodes and pods for the capacity judgement).
        self.lister: ObjectLister | None = store if isinstance(store, ObjectLister) else None
        self._by_vm: dict[tuple[str, str], list[_Track]] = {}
        self.tracks: list[_Track] = []
        self.stats = MigrationStats()
        self._unfinished: dict[tuple[str, str], tuple[str, str]] = {}  # vmim key → vmi key
        self._per_vmi: dict[tuple[str, str], int] = {}
        self._running: dict[tuple[str, str], str] = {}  # vmim key → source node
        self._final_seen: set[tuple[str, str]] = set()
        self.violations: list[str] = []
        #: (namespace, vm) → the block reason of the agent's latest Warning Event about it.
        self.agent_blocks: dict[tuple[str, str], str] = {}

    def add_request(self, req: Request) -> None:
        track = _Track(req)
        self.tracks.append(track)
        if req.accepted:
            self._by_vm.setdefault((req.namespace, req.vm), []).append(track)
            self._check_vm(req.namespace, req.vm, req.t_requested)

    def observe(self, event_type: str, resource: str, obj: dict[str, Any], t: float) -> None:
        import time

        now = time.time()
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        if resource in ("virtualmachineinstances", "virtualmachines"):
            if key in self._by_vm:
                self._check_vm(*key, now)
        elif resource == VMIMS:
            self._on_vmim(event_type, key, obj)
        elif resource == "events" and event_type == "ADDED":
            self._on_event(obj)

    def _on_event(self, obj: dict[str, Any]) -> None:
        """Record the agent's "blocked" Events: the cluster-visible proof that nothing was dropped."""
        if obj.get("reportingComponent") != COMPONENT or obj.get("type") != "Warning":
            return
        involved = obj.get("involvedObject") or {}
        if involved.get("kind") != "VirtualMachine":
            return
        key = (str(involved.get("namespace", "")), str(involved.get("name", "")))
        reason = str(obj.get("reason", ""))
        message = str(obj.get("message", ""))
        if reason == EventReason.GAVE_UP:
            self.agent_blocks[key] = "retries-exhausted"
        elif reason in (EventReason.BLOCKED, EventReason.SLOTS_EXHAUSTED):
            match = _BLOCK_REASON.search(message)
            self.agent_blocks[key] = match.group(1) if match else reason

    def _check_vm(self, ns: str, name: str, now: float) -> None:
        tracks = self._by_vm.get((ns, name))
        if not tracks:
            return
        vmi = self.store.try_get("virtualmachineinstances", ns, name)
        vm = self.store.try_get("virtualmachines", ns, name)
        entries = rules.status_entries((vmi or {}).get("status") or {})
        template = (((vm or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
        in_template = {str(i.get("name")) for i in rules.interfaces(template)}
        for track in tracks:
            if track.completed_at is not None:
                continue
            req = track.request
            if req.op == "plug":
                e = entries.get(req.interface)
                if e is not None and INFO_SOURCE_DOMAIN in rules.info_sources(e):
                    track.completed_at = now
            elif req.interface not in in_template and vm is not None:
                track.completed_at = now

    def _restart_really_required(self, vm: dict[str, Any] | None, vmi: dict[str, Any] | None) -> bool:
        """Whether a VM with ``RestartRequired=True`` really needs a restart: KubeVirt's fixed rule (v1.5.2,
        with its network exemption) applied to the VM spec its VMI started from, when that revision is
        readable; else the condition itself. KubeVirt v1.5.1 and earlier set the condition on every hot
        plug, so the condition alone would call a correct migration a violation there."""
        vmi_status = (vmi or {}).get("status") or {}
        name = vmi_status.get("virtualMachineRevisionName")
        ns = str(((vm or {}).get("metadata") or {}).get("namespace", ""))
        revision = self.store.try_get("controllerrevisions", ns, name) if isinstance(name, str) else None
        start = (((revision or {}).get("data") or {}).get("spec") or {}).get("template") or {}
        if not isinstance(start.get("spec"), dict):
            return True
        kubevirt = self.store.try_get("kubevirts", "kubevirt", "kubevirt") or {}
        strategy = ((kubevirt.get("spec") or {}).get("configuration") or {}).get("vmRolloutStrategy")
        template = (((vm or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
        return rules.restart_required(
            FIXED_RESTART_RULE,
            start["spec"],
            template,
            (vmi or {}).get("spec") or {},
            vmi_migratable=_cond(vmi, COND_LIVE_MIGRATABLE) == "True",
            live_update=strategy in (None, "LiveUpdate"),
        )

    def _on_vmim(self, event_type: str, key: tuple[str, str], obj: dict[str, Any]) -> None:
        st = obj.get("status") or {}
        phase = str(st.get("phase", ""))
        vmi_key = (key[0], str((obj.get("spec") or {}).get("vmiName", "")))
        if event_type == "ADDED":
            self._on_vmim_created(obj.get("metadata") or {}, vmi_key)
        if event_type == "DELETED" or is_final(phase):
            if key in self._unfinished and phase != PHASE_SUCCEEDED:
                cause = self._failure_cause(obj, vmi_key)
                if cause:
                    self.stats.failed_by_cause[cause] += 1
            self._on_vmim_gone(key, vmi_key, phase)
            return
        self._on_vmim_unfinished(key, vmi_key)
        if is_running(phase):
            self._on_vmim_running(key, vmi_key, st, str((obj.get("metadata") or {}).get("uid", "")))

    def _on_vmim_created(self, meta: dict[str, Any], vmi_key: tuple[str, str]) -> None:
        """Count the migration by creator, and what it migrates that the agent must leave alone."""
        self.stats.created += 1
        labels = meta.get("labels") or {}
        annotations = meta.get("annotations") or {}
        if labels.get(LABEL_MANAGED_BY) == MANAGED_BY_VALUE:
            creator = "agent"
        elif ANNOTATION_WORKLOAD_UPDATE in annotations or ANNOTATION_EVACUATION in annotations:
            creator = "kubevirt"
        else:
            creator = "manual"
        self.stats.by_creator[creator] += 1
        vm = self.store.try_get("virtualmachines", *vmi_key)
        vmi = self.store.try_get("virtualmachineinstances", *vmi_key)
        where = f"{vmi_key[0]}/{vmi_key[1]}"
        if vm is not None and _opted_out(vm):
            self.stats.for_opted_out += 1
            if creator == "agent":
                self.violations.append(f"agent migrated opted-out VM {where}")
        if _cond(vmi, COND_LIVE_MIGRATABLE) == "False":
            self.stats.for_not_live_migratable += 1
        if _cond(vm, COND_RESTART_REQUIRED) == "True":
            self.stats.for_restart_required += 1
            if creator == "agent" and self._restart_really_required(vm, vmi):
                self.violations.append(f"agent migrated RestartRequired VM {where}")

    def _on_vmim_gone(self, key: tuple[str, str], vmi_key: tuple[str, str], phase: str) -> None:
        """Deleted or final: no longer unfinished; a final phase counts once."""
        if key in self._unfinished:
            del self._unfinished[key]
            self._per_vmi[vmi_key] -= 1
            if self._per_vmi[vmi_key] <= 0:
                del self._per_vmi[vmi_key]
        self._running.pop(key, None)
        if is_final(phase) and key not in self._final_seen:
            self._final_seen.add(key)
            if phase == PHASE_SUCCEEDED:
                self.stats.succeeded += 1
            else:
                self.stats.failed += 1

    def _on_vmim_unfinished(self, key: tuple[str, str], vmi_key: tuple[str, str]) -> None:
        """A migration not final yet: one per VMI at a time, and the cluster-wide high-water mark."""
        if key in self._unfinished:
            return
        self._unfinished[key] = vmi_key
        n = self._per_vmi.get(vmi_key, 0) + 1
        self._per_vmi[vmi_key] = n
        if n > 1:
            self.violations.append(f"{n} concurrent migrations for VMI {vmi_key[0]}/{vmi_key[1]}")
        self.stats.max_concurrent_per_vmi = max(self.stats.max_concurrent_per_vmi, n)
        self.stats.max_concurrent = max(self.stats.max_concurrent, len(self._unfinished))

    def _on_vmim_running(
        self, key: tuple[str, str], vmi_key: tuple[str, str], st: dict[str, Any], uid: str
    ) -> None:
        """A running migration, by source node: the per-node high-water mark."""
        if key in self._running:
            return  # taken once: the VMI moves to the target before the VMIM's Succeeded arrives
        # KubeVirt copies migrationState into the VMIM only once it is final; while it runs, the source
        # is in the VMI's migrationState (written at the hand-off), else where the VMI is.
        source = str((st.get("migrationState") or {}).get("sourceNode") or "")
        if not source:
            vmi = self.store.try_get("virtualmachineinstances", *vmi_key) or {}
            vmi_status = vmi.get("status") or {}
            state = vmi_status.get("migrationState") or {}
            if state.get("migrationUid") == uid and state.get("sourceNode"):
                source = str(state["sourceNode"])
            else:
                source = str(vmi_status.get("nodeName") or "")
        self._running[key] = source
        self.stats.max_concurrent_running = max(self.stats.max_concurrent_running, len(self._running))
        per_node: dict[str, int] = {}
        for node in self._running.values():
            per_node[node] = per_node.get(node, 0) + 1
        self.stats.max_running_per_node = max(self.stats.max_running_per_node, *per_node.values())

    def _failure_cause(self, vmim: dict[str, Any], vmi_key: tuple[str, str]) -> str:
        """Why an unsuccessful migration ended, when a preflight could have known it beforehand."""
        ms = (vmim.get("status") or {}).get("migrationState") or {}
        vmi = self.store.try_get("virtualmachineinstances", *vmi_key)
        if vmi is not None and self._missing_nads(vmi):
            return "network-missing"
        if ms.get("failureReason") == UNSCHEDULABLE_REASON or (vmi is not None and self._no_target(vmi)):
            return "no-target-capacity"
        return ""

    def _missing_nads(self, vmi: dict[str, Any]) -> list[str]:
        ns = str((vmi.get("metadata") or {}).get("namespace", ""))
        return pods.missing_nads(
            vmi.get("spec") or {}, ns, lambda k: self.store.try_get(pods.NADS, *k) is not None
        )

    def _no_target(self, vmi: dict[str, Any]) -> bool:
        """No other node could take the VMI's target pod because of the SR-IOV VFs it needs."""
        if self.lister is None:
            return False
        ns = str((vmi.get("metadata") or {}).get("namespace", ""))
        needs = pods.vf_requests(vmi.get("spec") or {}, ns, lambda k: self.store.try_get(pods.NADS, *k))
        if not needs:
            return False
        target = pods.launcher_pod(vmi, "", needs, migration_uid="judge")
        nodes, _ = self.lister.list("nodes")
        launchers, _ = self.lister.list("pods")
        return scheduling.choose_node(target, nodes, launchers) is None

    def report(self) -> Report:
        outcomes: list[RequestOutcome] = []
        first = min((t.request.t_requested for t in self.tracks), default=None)
        last: float | None = None
        by_state: dict[str, int] = {}
        for track in self.tracks:
            req = track.request
            done = track.completed_at is not None
            if done:
                assert track.completed_at is not None
                last = track.completed_at if last is None else max(last, track.completed_at)
                state = "completed"
            elif not req.accepted:
                state = "rejected"
            else:
                state = self._why(req)
            if state != "completed":
                by_state[state] = by_state.get(state, 0) + 1
            agent_block = "" if done else self.agent_blocks.get((req.namespace, req.vm), "")
            outcomes.append(
                RequestOutcome(
                    req.namespace,
                    req.vm,
                    req.interface,
                    req.op,
                    req.binding,
                    req.category,
                    req.accepted,
                    req.rejection,
                    done,
                    (track.completed_at - req.t_requested) if track.completed_at is not None else None,
                    state,
                    agent_block,
                )
            )
        self.stats.unfinished = len(self._unfinished)
        stats = dataclasses.replace(
            self.stats,
            failed_by_cause=dict(self.stats.failed_by_cause),
            unfinished_by_cause=dict.fromkeys(self.stats.failed_by_cause, 0),
        )
        for key, vmi_key in self._unfinished.items():  # left hanging counts too
            vmim = self.store.try_get(VMIMS, *key)
            cause = self._failure_cause(vmim, vmi_key) if vmim is not None else ""
            if cause:
                stats.failed_by_cause[cause] += 1
                stats.unfinished_by_cause[cause] += 1
        accepted = [o for o in outcomes if o.accepted]
        for o in accepted:
            # The agent's stated reason must agree with what the cluster shows, where it shows one.
            if o.agent_block and o.final_state not in ("pending", o.agent_block):
                self.violations.append(
                    f"agent blocked {o.namespace}/{o.vm} as {o.agent_block}, the cluster says {o.final_state}"
                )
        return Report(
            requested=len(outcomes),
            completed=sum(1 for o in outcomes if o.completed),
            blocked_at_admission=sum(1 for o in outcomes if not o.accepted),
            not_completed=sum(1 for o in accepted if not o.completed),
            by_final_state=by_state,
            migrations=stats,
            makespan_seconds=(last - first) if first is not None and last is not None else None,
            violations=list(dict.fromkeys(self.violations)),
            requests=outcomes,
            blocked_by_agent=_count(o.agent_block for o in accepted if not o.completed and o.agent_block),
            unexplained=sum(1 for o in accepted if not o.completed and not o.agent_block),
        )

    def _why(self, req: Request) -> str:
        vm = self.store.try_get("virtualmachines", req.namespace, req.vm)
        vmi = self.store.try_get("virtualmachineinstances", req.namespace, req.vm)
        if _cond(vmi, COND_LIVE_MIGRATABLE) == "False":
            return "not-live-migratable"
        sync = _cond_obj(vmi, COND_SYNCHRONIZED)
        if sync is not None and "No more available PCI slots" in str(sync.get("message", "")):
            return "slots-exhausted"
        if _cond(vm, COND_RESTART_REQUIRED) == "True" and self._restart_really_required(vm, vmi):
            return "restart-required"
        if vm is not None and _opted_out(vm):
            return "opted-out"
        if vmi is not None and self._missing_nads(vmi):
            return "network-missing"
        if vmi is not None and self._no_target(vmi):
            return "no-target-capacity"
        return "pending"

    @property
    def completed_count(self) -> int:
        return sum(1 for t in self.tracks if t.completed_at is not None)

    @property
    def resolved_count(self) -> int:
        """Accepted requests completed or explained by an agent Event (ends an agent-mode run)."""
        return sum(
            1
            for t in self.tracks
            if t.request.accepted
            and (t.completed_at is not None or (t.request.namespace, t.request.vm) in self.agent_blocks)
        )

    @property
    def in_flight(self) -> int:
        return len(self._unfinished)


_BLOCK_REASON = re.compile(r"hot plug blocked \(([a-z-]+)\)")


def _count(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _opted_out(vm: dict[str, Any]) -> bool:
    """The agent's opt-out, as a label or an annotation of the VM."""
    meta = vm.get("metadata") or {}
    values = ((meta.get(k) or {}).get(LABEL_AUTO_MIGRATE) for k in ("labels", "annotations"))
    return any(isinstance(v, str) and v.strip().lower() == OPT_OUT_VALUE for v in values)


def _cond_obj(obj: dict[str, Any] | None, ctype: str) -> dict[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == ctype:
            return c
    return None


def _cond(obj: dict[str, Any] | None, ctype: str) -> str | None:
    c = _cond_obj(obj, ctype)
    return str(c.get("status")) if c is not None else None
