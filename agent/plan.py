"""``hotplug-agent plan``: a read-only report of what the agent would do, from one snapshot.

:func:`build_plan` is pure: it takes parsed records and settings and returns rows; :func:`run_plan`
reads the cluster once (after the same discovery check as ``run``) and prints a table, JSON or YAML.
The plan has no memory of when a change was first seen, so the settle window and the bridge grace
are measured from KubeVirt's own ``MigrationRequired`` condition when it is there and otherwise
treated as elapsed; the order is the agent's (``agent.scheduler.fair_order``: priority first, the
namespaces in turn, then the size-aware order within a namespace; "oldest" is approximated by the VMI's
creation time). The preflight reads the same NADs, Nodes and Pods the agent watches (listed once), and
the migration window (``--migration-window``) is evaluated now: outside it the header and every row that
would migrate say when the next window opens.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import yaml

from agent.decide import DecisionContext, Kind, decide, resolve_mode
from agent.detect import detect
from agent.infra import NADRecord, NodeRecord, PodRecord, parse_nad, parse_node, parse_pod
from agent.kube import KUBEVIRTS, NADS, NODES, PODS, VMIMS, VMIS, VMS, ApiError, KubeClient, Resource
from agent.kubevirt import is_final
from agent.model import (
    InvalidObject,
    Key,
    KubeVirtRecord,
    VMIMRecord,
    VMIRecord,
    VMRecord,
    parse_kubevirt,
    parse_vm,
    parse_vmi,
    parse_vmim,
)
from agent.preflight import NO_FACTS, Infrastructure, facts
from agent.scheduler import DEFAULT_ORDER, Candidate, fair_order
from agent.slots import choose_slot_model
from agent.startup import StartupError, connect, discover, forbidden_hint
from agent.window import Schedule, WindowState

if TYPE_CHECKING:
    from agent.config import AgentConfig

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PlanRow:
    namespace: str
    name: str
    node: str
    pending: str
    decision: str
    reason: str
    slots: str
    order: int | None


def infrastructure(
    nads: Iterable[NADRecord] | None,
    nodes: Iterable[NodeRecord] | None,
    pods: Iterable[PodRecord],
    nad_namespaces: Iterable[str] = (),
) -> Infrastructure:
    """The preflight's view of one snapshot (``None``: that API was not read — its checks are skipped)."""
    by_name = {n.name: n for n in nodes} if nodes is not None else None
    usage: dict[str, dict[str, int]] = {}
    for pod in pods:
        held = usage.setdefault(pod.node, {})
        for resource, count in pod.requests:
            held[resource] = held.get(resource, 0) + count
    return Infrastructure(
        nads={n.key: n for n in nads} if nads is not None else None,
        nad_namespaces=frozenset(nad_namespaces) or None,
        nodes=by_name,
        targets={n.name for n in (by_name or {}).values() if n.target},
        usage=usage,
    )


def build_plan(
    vms: Iterable[VMRecord],
    vmis: Iterable[VMIRecord],
    vmims: Iterable[VMIMRecord],
    kubevirt: KubeVirtRecord | None,
    settings: AgentConfig,
    now: float,
    infra: Infrastructure | None = None,
    window: WindowState | None = None,
) -> tuple[str, list[PlanRow]]:
    """Rows for every VMI with something pending; returns (effective mode, rows in display order)."""
    vm_by_key: dict[Key, VMRecord] = {v.key: v for v in vms}
    active: dict[Key, VMIMRecord] = {}
    for m in vmims:
        if not is_final(m.phase) and not m.deletion_requested:
            active[(m.namespace, m.vmi_name)] = m
    mode = resolve_mode(settings.mode, kubevirt)
    rows: list[tuple[Candidate, PlanRow]] = []
    for vmi in vmis:
        vm = vm_by_key.get(vmi.key)
        migration = active.get(vmi.key)
        d = detect(vmi, vm, (migration,) if migration is not None else ())
        if not d.anything_pending:
            continue
        ctx = DecisionContext(
            now=now,
            mode=mode,
            settle_seconds=0.0,
            bridge_grace_seconds=settings.bridge_grace_seconds,
            include_namespaces=settings.namespaces or None,
            exclude_namespaces=settings.exclude_namespaces,
            slot_model=choose_slot_model(settings.slot_model, kubevirt, vmi),
            first_seen={c.iface: now - settings.bridge_grace_seconds for c in d.changes},
            max_attempts=settings.max_attempts,
            facts=facts(vmi, infra) if infra is not None and d.changes else NO_FACTS,
            window=window,
        )
        decision = decide(vmi, vm, d, ctx)
        pending = ", ".join(f"{c.kind} {c.iface}" for c in d.changes)
        if d.waiting_for_kubevirt:
            pending = ", ".join(filter(None, [pending, "template " + ", ".join(d.waiting_for_kubevirt)]))
        if d.sriov_unplugs:
            pending = ", ".join(filter(None, [pending, "unplug " + ", ".join(d.sriov_unplugs)]))
        reason = decision.message
        why = decision.block_reason or decision.wait_reason
        if decision.kind is Kind.OBSERVE and decision.would is not None:
            would = decision.would.value + (f" ({why.value})" if why is not None else "")
            reason = f"KubeVirt migrates (agent would: {would})"
        elif why is not None:
            reason = f"{why.value}: {decision.message}"
        slots = "-"
        if decision.slots is not None and decision.slots.free is not None:
            cap = decision.slots.capacity if decision.slots.capacity is not None else "?"
            slots = f"{decision.slots.free}/{cap} free ({decision.slots.model})"
        row = PlanRow(
            vmi.namespace, vmi.name, vmi.node, pending or "-", decision.kind.value, reason, slots, None
        )
        priority = vm.priority if vm is not None else 0
        size = float(vmi.memory_bytes or 0)
        rows.append((Candidate(vmi.key, vmi.node, vmi.creation_ts or 0.0, size, priority), row))
    slots_cap = settings.max_in_flight or (kubevirt.parallel_per_cluster if kubevirt is not None else 5)
    by_key = {c.key: r for c, r in rows}
    migrate = fair_order([c for c, r in rows if r.decision == Kind.MIGRATE.value], DEFAULT_ORDER, slots_cap)
    others = sorted(
        ((c, r) for c, r in rows if r.decision != Kind.MIGRATE.value),
        key=lambda cr: (cr[1].decision, cr[0].ready_since),
    )
    ordered = [
        PlanRow(r.namespace, r.name, r.node, r.pending, r.decision, r.reason, r.slots, i + 1)
        for i, r in enumerate(by_key[c.key] for c in migrate)
    ]
    ordered.extend(r for _c, r in others)
    return mode, ordered


def format_table(rows: list[PlanRow]) -> str:
    headers = ("ORDER", "NAMESPACE", "VM", "NODE", "PENDING", "DECISION", "SLOTS", "REASON")
    table = [
        (
            str(r.order) if r.order is not None else "-",
            r.namespace,
            r.name,
            r.node or "-",
            r.pending,
            r.decision,
            r.slots,
            r.reason,
        )
        for r in rows
    ]
    widths = [
        max(len(h), *(len(row[i]) for row in table)) if table else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.extend("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table)
    return "\n".join(lines)


def plan_document(
    kubevirt_version: str | None,
    configured: str,
    mode: str,
    rows: list[PlanRow],
    window: WindowState | None = None,
) -> dict[str, Any]:
    """The plan as data (``-o json`` / ``-o yaml``)."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.decision] = counts.get(row.decision, 0) + 1
    return {
        "kubevirtVersion": kubevirt_version,
        "mode": {"configured": configured, "effective": mode},
        "migrationWindow": None
        if window is None
        else {"open": window.open, "nextOpen": window.next_open or None},
        "counts": dict(sorted(counts.items())),
        "vms": [asdict(r) for r in rows],
    }


def render(document: dict[str, Any], rows: list[PlanRow], output: str) -> str:
    if output == "json":
        return json.dumps(document, indent=2)
    if output == "yaml":
        return yaml.safe_dump(document, sort_keys=False).rstrip()
    version = document["kubevirtVersion"] or "unknown"
    mode = document["mode"]
    lines = [f"KubeVirt {version}; agent mode {mode['configured']} → {mode['effective']}"]
    win = document.get("migrationWindow")
    if win is not None:
        lines.append(
            "migration window: open now"
            if win["open"]
            else f"migration window: closed; the next one opens {win['nextOpen']}"
        )
    if not rows:
        return "\n".join([*lines, "no pending hot plugs"])
    lines.append(format_table(rows))
    lines.append("\n" + ", ".join(f"{k}: {v}" for k, v in document["counts"].items()))
    return "\n".join(lines)


@dataclass
class _Listed:
    """The raw objects ``plan`` reads, once: NADs are None when their API is not served."""

    vms: list[dict[str, Any]] = field(default_factory=list)
    vmis: list[dict[str, Any]] = field(default_factory=list)
    vmims: list[dict[str, Any]] = field(default_factory=list)
    kubevirts: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    pods: list[dict[str, Any]] = field(default_factory=list)
    nads: list[dict[str, Any]] | None = None


def _parse_all(items: list[dict[str, Any]], parse: Callable[[dict[str, Any]], T]) -> list[T]:
    records: list[T] = []
    for item in items:
        try:
            records.append(parse(item))
        except InvalidObject as exc:
            print(f"skipping malformed object: {exc}", file=sys.stderr)
    return records


async def _list_all(kube: KubeClient, resource: Resource, scope: str | None) -> list[dict[str, Any]]:
    try:
        items, _ = await kube.list_objects(resource, scope)
    except ApiError as exc:
        if exc.status == 403:
            raise StartupError(forbidden_hint(exc, resource, scope)) from None
        raise StartupError(f"listing {resource.plural} failed: {exc}") from None
    return items


async def _read(kube: KubeClient, config: AgentConfig) -> _Listed:
    """Discovery, then every list (per watched namespace where the agent watches per namespace);
    a StartupError says what the cluster lacks or the agent may not read."""
    apis = await discover(kube)
    if apis.kubevirt_problem():
        raise StartupError(apis.kubevirt_problem())
    scopes: list[str | None] = list(config.namespaces) or [None]
    out = _Listed()
    for scope in scopes:
        listed = await asyncio.gather(
            _list_all(kube, VMS, scope), _list_all(kube, VMIS, scope), _list_all(kube, VMIMS, scope),
            return_exceptions=True,
        )  # fmt: skip
        for failed in listed:  # the first failure in this order, whichever answered first
            if isinstance(failed, BaseException):
                raise failed
        vm_items, vmi_items, vmim_items = (x for x in listed if not isinstance(x, BaseException))
        out.vms += vm_items
        out.vmis += vmi_items
        out.vmims += vmim_items
    out.kubevirts = await _list_all(kube, KUBEVIRTS, None)
    out.nodes = await _list_all(kube, NODES, None)
    out.pods = await _list_all(kube, PODS, None)
    if apis.network_attachment_definitions:
        out.nads = [item for scope in scopes for item in await _list_all(kube, NADS, scope)]
    return out


async def run_plan(config: AgentConfig, out: TextIO | None = None, *, output: str = "table") -> int:
    """List the resources once (read-only), decide for each VMI, print the plan.

    Returns 1, with the reason on stderr, when the cluster cannot be read: no kubeconfig, KubeVirt not
    installed, a permission missing.
    """
    try:
        kube = await connect(config.kubeconfig, config.context, identity=config.identity)
        try:
            listed = await _read(kube, config)
        finally:
            await kube.close()
    except StartupError as exc:
        print(f"hotplug-agent plan: {exc}", file=sys.stderr)
        return 1
    kubevirts = _parse_all(listed.kubevirts, parse_kubevirt)
    kv = kubevirts[0] if kubevirts else None
    now = time.time()
    infra = infrastructure(
        _parse_all(listed.nads, parse_nad) if listed.nads is not None else None,
        _parse_all(listed.nodes, parse_node),
        _parse_all(listed.pods, parse_pod),
        config.namespaces,
    )
    schedule = Schedule.parse(config.migration_window)
    window = None if schedule.always else schedule.state(now)
    vms, vmis = _parse_all(listed.vms, parse_vm), _parse_all(listed.vmis, parse_vmi)
    mode, rows = build_plan(vms, vmis, _parse_all(listed.vmims, parse_vmim), kv, config, now, infra, window)
    version = ".".join(map(str, kv.version)) if kv is not None and kv.version else None
    document = plan_document(version, config.mode, mode, rows, window)
    print(render(document, rows, output), file=out or sys.stdout)
    return 0
