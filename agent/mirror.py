"""The agent's view of the cluster, kept from informer events: VMs, VMIs, the KubeVirt CR and every
unfinished migration by VMI — and the edges the lifecycle needs (a migration that just ended).

Why its own module: the controller's loop only routes; what the caches hold, how an unfinished VMIM
is found for a VMI, which finished VMIM is *news* (to count and to act on) and which is history from
the initial list — that is this module's one job. Pure (no I/O): informer callbacks call it
synchronously, so a watch event costs a dict update.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.kubevirt import (
    DEFAULT_PARALLEL_MIGRATIONS_PER_CLUSTER,
    DEFAULT_PARALLEL_OUTBOUND_MIGRATIONS_PER_NODE,
    PHASE_SUCCEEDED,
    is_final,
)
from agent.lifecycle import MigrationEnded, Observation, SucceededBeforeStart, View
from agent.model import Key, KubeVirtRecord, VMIMRecord, VMIRecord, VMRecord
from agent.scheduler import ActiveMigration


@dataclass
class Mirror:
    vms: dict[Key, VMRecord] = field(default_factory=dict)
    vmis: dict[Key, VMIRecord] = field(default_factory=dict)
    kubevirt: KubeVirtRecord | None = None
    #: unfinished VMIMs by VMI key (any initiator); KubeVirt allows one per VMI
    active: dict[Key, VMIMRecord] = field(default_factory=dict)
    #: unfinished VMIMs by initiator (the in-flight gauge)
    in_flight: Counter[str] = field(default_factory=Counter)
    #: hot plugs minus unplugs the agent saw complete, per VMI uid (the v2 slot bound)
    hotplugged: dict[str, int] = field(default_factory=dict)
    #: the informers' initial lists are in: from now on every VMIM seen finishing is news
    synced: bool = False

    def vm_changed(self, event: str, old: VMRecord | None, new: VMRecord | None) -> Key | None:
        rec = new or old
        if rec is None:
            return None
        if event == "DELETED" or new is None:
            self.vms.pop(rec.key, None)
        else:
            self.vms[rec.key] = new
        return rec.key

    def vmi_changed(self, event: str, old: VMIRecord | None, new: VMIRecord | None) -> Key | None:
        rec = new or old
        if rec is None:
            return None
        if event == "DELETED" or new is None:
            self.vmis.pop(rec.key, None)
            self.hotplugged.pop(rec.uid, None)
        else:
            self.vmis[rec.key] = new
        return rec.key

    def vmim_changed(
        self, event: str, old: VMIMRecord | None, new: VMIMRecord | None
    ) -> tuple[Key | None, Observation | None]:
        """Update the unfinished-migration index; return the VMI's key and the edge to tell its
        lifecycle, if any: :class:`MigrationEnded` when a VMIM is seen to finish (a VMIM already final
        in the initial list is history — counting it again after every restart would be wrong — but
        one that appears final later, created and finished during a watch gap, is news), or
        :class:`SucceededBeforeStart` for our migration that succeeded just before a restart."""
        rec = new or old
        if rec is None:
            return None, None
        gone = event == "DELETED" or new is None
        current = self.active.get(rec.vmi_key)
        if not (gone or is_final(rec.phase)):
            if current is None or current.uid == rec.uid:
                if current is None:
                    self.in_flight[rec.initiator] += 1
                self.active[rec.vmi_key] = rec
            return rec.vmi_key, None
        if current is not None and current.uid == rec.uid:
            del self.active[rec.vmi_key]
            self.in_flight[current.initiator] -= 1
        was_final = old is not None and is_final(old.phase)
        news = self.synced or not (event == "ADDED" and is_final(rec.phase))
        if not was_final and news:
            return rec.vmi_key, MigrationEnded(rec, deleted=gone and not is_final(rec.phase))
        if not news and rec.initiator == "agent" and rec.phase == PHASE_SUCCEEDED:
            return rec.vmi_key, SucceededBeforeStart(rec)
        return rec.vmi_key, None

    def view(self, key: Key) -> View:
        """One VMI as the lifecycle sees it: its records, its unfinished migration, its hot-plug count."""
        vmi = self.vmis.get(key)
        hotplugged = self.hotplugged.get(vmi.uid, 0) if vmi is not None else 0
        return View(key, vmi, self.vms.get(key), self.active.get(key), hotplugged)

    def node_of(self, key: Key) -> str | None:
        vmi = self.vmis.get(key)
        return vmi.node if vmi is not None and vmi.node else None

    def source_node(self, key: Key) -> str | None:
        """Where an unfinished migration of this VMI runs from: the VMIM's ``sourceNode`` (KubeVirt fills
        it only once final), else the VMI's ``migrationState.sourceNode`` (from the hand-off), else the
        VMI's node (before the hand-off it is the source)."""
        m = self.active.get(key)
        vmi = self.vmis.get(key)
        from_vmi = vmi.migration_source if vmi is not None else ""
        return (m.source_node if m is not None else None) or from_vmi or self.node_of(key)

    def memory_of(self, key: Key) -> float:
        """A VMI's guest memory in bytes (0 unknown): what its live migration copies."""
        vmi = self.vmis.get(key)
        return float(vmi.memory_bytes or 0) if vmi is not None else 0.0

    def caps(self, max_in_flight: int, max_per_node: int) -> tuple[int, int]:
        """(cluster, per node): the agent's settings where set (> 0), else the KubeVirt CR's limits (and
        KubeVirt's defaults when the CR does not say)."""
        kv = self.kubevirt
        cluster = kv.parallel_per_cluster if kv is not None else DEFAULT_PARALLEL_MIGRATIONS_PER_CLUSTER
        node = kv.parallel_per_node if kv is not None else DEFAULT_PARALLEL_OUTBOUND_MIGRATIONS_PER_NODE
        return (max_in_flight or cluster, max_per_node or node)

    def active_migrations(self, creating: Mapping[Key, str]) -> list[ActiveMigration]:
        """What the caps count: every unfinished migration (anyone's), plus our creates the cache has not
        shown yet (``creating``: VMI key → source node)."""
        result = [ActiveMigration(k, self.source_node(k)) for k in self.active]
        result.extend(ActiveMigration(k, node) for k, node in creating.items() if k not in self.active)
        return result

    def in_flight_counts(self) -> dict[str, int]:
        return {k: v for k, v in self.in_flight.items() if v > 0}


__all__ = ["Mirror"]
