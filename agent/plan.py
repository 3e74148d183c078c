"""``hotplug-agent plan``: a read-only report of what the agent would do, from one snapshot.

Pure: takes parsed records and settings, returns rows. The plan has no memory of when a change was
first seen, so the settle window and the bridge grace are measured from KubeVirt's own
``MigrationRequired`` condition when it is there and otherwise treated as elapsed; the order is the
agent's (oldest pending first, here approximated by the VMI's creation time).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agent.controller import ControllerSettings
from agent.decide import DecisionContext, Kind, decide, resolve_mode
from agent.detect import detect
from agent.model import Key, KubeVirtRecord, VMIMRecord, VMIRecord, VMRecord, is_final
from agent.slots import choose_slot_model


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


def build_plan(
    vms: Iterable[VMRecord],
    vmis: Iterable[VMIRecord],
    vmims: Iterable[VMIMRecord],
    kubevirt: KubeVirtRecord | None,
    settings: ControllerSettings,
    now: float,
) -> tuple[str, list[PlanRow]]:
    """Rows for every VMI with something pending; returns (effective mode, rows in display order)."""
    vm_by_key: dict[Key, VMRecord] = {v.key: v for v in vms}
    active: dict[Key, VMIMRecord] = {}
    for m in vmims:
        if not is_final(m.phase) and not m.deletion_requested:
            active[(m.namespace, m.vmi_name)] = m
    mode = resolve_mode(settings.mode, kubevirt)
    rows: list[tuple[float, PlanRow]] = []
    for vmi in vmis:
        vm = vm_by_key.get(vmi.key)
        migration = active.get(vmi.key)
        d = detect(vmi, vm, (migration,) if migration is not None else ())
        if not (d.changes or d.waiting_for_kubevirt or d.undeliverable or d.sriov_unplugs or d.attaching):
            continue
        ctx = DecisionContext(
            now=now,
            mode=mode,
            settle_seconds=0.0,
            bridge_grace_seconds=settings.bridge_grace_seconds,
            include_namespaces=settings.include_namespaces,
            exclude_namespaces=settings.exclude_namespaces,
            slot_model=choose_slot_model(settings.slot_model, kubevirt, vmi),
            first_seen={c.iface: now - settings.bridge_grace_seconds for c in d.changes},
            max_attempts=settings.max_attempts,
        )
        decision = decide(vmi, vm, d, ctx)
        pending = ", ".join(f"{c.kind} {c.iface}" for c in d.changes)
        if d.waiting_for_kubevirt:
            pending = ", ".join(filter(None, [pending, "template " + ", ".join(d.waiting_for_kubevirt)]))
        if d.sriov_unplugs:
            pending = ", ".join(filter(None, [pending, "unplug " + ", ".join(d.sriov_unplugs)]))
        reason = ""
        if decision.block_reason is not None:
            reason = f"{decision.block_reason.value}: {decision.message}"
        elif decision.wait_reason is not None:
            reason = f"{decision.wait_reason.value}: {decision.message}"
        elif decision.kind is Kind.OBSERVE:
            reason = f"KubeVirt migrates (agent would: {decision.would})"
        else:
            reason = decision.message
        slots = "-"
        if decision.slots is not None and decision.slots.free is not None:
            cap = decision.slots.capacity if decision.slots.capacity is not None else "?"
            slots = f"{decision.slots.free}/{cap} free ({decision.slots.model})"
        row = PlanRow(
            vmi.namespace, vmi.name, vmi.node, pending or "-", decision.kind.value, reason, slots, None
        )
        rows.append((vmi.creation_ts or 0.0, row))
    migrate = sorted((r for r in rows if r[1].decision == Kind.MIGRATE.value), key=lambda r: r[0])
    others = sorted(
        (r for r in rows if r[1].decision != Kind.MIGRATE.value), key=lambda r: (r[1].decision, r[0])
    )
    ordered = [
        PlanRow(r.namespace, r.name, r.node, r.pending, r.decision, r.reason, r.slots, i + 1)
        for i, (_t, r) in enumerate(migrate)
    ]
    ordered.extend(r for _t, r in others)
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
