"""The agent's view of the cluster, kept from informer events: VMs, VMIs, the KubeVirt CR and every
unfinished migration by VMI — and the edges the lifecycle needs (a migration that just ended); the
infrastructure the preflight reads (NADs, Nodes, the extended resources pods hold per node) and which
blocked or waiting VMIs a change of it could release.

Why its own module: the controller's loop only routes; what the caches hold, how an unfinished VMIM
is found for a VMI, which finished VMIM is *news* (to count and to act on) and which is history from
the initial list, which VMIs a new NAD or a freed VF concerns — that is this module's one job. Pure
(no I/O): informer callbacks call it synchronously, so a watch event costs a dict update.

The release index: a VMI blocked or waiting because of the infrastructure registers the changes that
could end it (:class:`~agent.preflight.Trigger`, from the lifecycle's ``Await`` action); a NAD created,
a node changed or VFs freed then return exactly the VMIs registered for it, so a NAD appearing re-queues
the VMIs that named it, not every VMI of the cluster.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.infra import NADRecord, NodeRecord, PodRecord, Resources
from agent.kubevirt import (
    DEFAULT_PARALLEL_MIGRATIONS_PER_CLUSTER,
    DEFAULT_PARALLEL_OUTBOUND_MIGRATIONS_PER_NODE,
    PHASE_SUCCEEDED,
    is_final,
)
from agent.lifecycle import MigrationEnded, Observation, SucceededBeforeStart, View
from agent.model import Key, KubeVirtRecord, VMIMRecord, VMIRecord, VMRecord
from agent.preflight import Infrastructure, Trigger, TriggerKind, nad_name, sriov_nads, vf_needs
from agent.scheduler import ActiveMigration


@dataclass(frozen=True, slots=True)
class _Needs:
    """What a VMI's migration needs of the VF budget, and what that was computed from."""

    vmi: VMIRecord
    scope: tuple[bool, frozenset[str] | None]
    #: the NADs its SR-IOV interfaces name, as they were then (None: not in the cache)
    nads: tuple[tuple[Key, NADRecord | None], ...]
    needs: Resources


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
    #: NADs; read by the preflight only once their informer synced (never without the NAD API)
    nads: dict[Key, NADRecord] = field(default_factory=dict)
    nads_synced: bool = False
    #: the namespaces whose NADs are watched (None: all)
    nad_namespaces: frozenset[str] | None = None
    #: Nodes by name, the ones that could take a new pod, and the extended resources pods hold per
    #: node; read once the Node and Pod informers synced
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    nodes_synced: bool = False
    targets: set[str] = field(default_factory=set)
    usage: dict[str, Counter[str]] = field(default_factory=dict)
    #: the release index (module docstring): VMI → its triggers, trigger → its VMIs
    awaiting: dict[Key, frozenset[Trigger]] = field(default_factory=dict)
    waiters: dict[Trigger, set[Key]] = field(default_factory=dict)
    #: the SR-IOV VFs each unfinished migration's VMI needs, as the last VF budget computed them, with
    #: what they were computed from (the VMI's record, the NAD cache's scope, the NADs its SR-IOV
    #: interfaces name): the next budget computes them again only where one of those changed
    _needs: dict[Key, _Needs] = field(default_factory=dict, init=False, repr=False)

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
        """Keep the VMI cache; the VMI's key when its view changed, None for an update that changes
        nothing the record holds (``VMIRecord`` equality: a status heartbeat), which has nothing new
        to decide on."""
        rec = new or old
        if rec is None:
            return None
        if event == "DELETED" or new is None:
            self.vmis.pop(rec.key, None)
            self.hotplugged.pop(rec.uid, None)
            return rec.key
        self.vmis[rec.key] = new
        return None if new == old else rec.key

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

    def vf_budget(self, resources: set[str], active: list[ActiveMigration]) -> dict[str, int] | None:
        """Free VFs per device resource a ready VMI needs, less what unfinished migrations of VMIs that
        need them will take (their target pods may not be in the Pod cache yet: counted again when they
        are, which only errs towards fewer migrations at once). None without a Node cache."""
        if not self.nodes_synced or not resources:
            return None
        infra = self.infrastructure()
        budget = {r: infra.free_total(r) for r in resources}
        scope = (self.nads_synced, self.nad_namespaces)
        nads = self.nads
        known, self._needs = self._needs, {}  # kept for the unfinished migrations of now only
        for m in active:
            vmi = self.vmis.get(m.vmi_key)
            if vmi is None:
                continue
            was = known.get(m.vmi_key)
            if (
                was is not None
                and was.vmi is vmi
                and was.scope == scope
                and all(nads.get(k) is nad for k, nad in was.nads)
            ):
                needs = was.needs
                self._needs[m.vmi_key] = was
            else:
                needs = vf_needs(vmi, infra)
                read = tuple((k, nads.get(k)) for k in sriov_nads(vmi))
                self._needs[m.vmi_key] = _Needs(vmi, scope, read, needs)
            for r, k in needs:
                if r in budget:
                    budget[r] -= k
        return budget

    def in_flight_counts(self) -> dict[str, int]:
        return {k: v for k, v in self.in_flight.items() if v > 0}

    # ------------------------------------------------------------------ the infrastructure

    def infrastructure(self) -> Infrastructure:
        """What the preflight reads (the live caches, not a copy: read within one synchronous step)."""
        return Infrastructure(
            self.nads if self.nads_synced else None,
            self.nad_namespaces,
            self.nodes if self.nodes_synced else None,
            self.targets,
            self.usage,
        )

    def nad_changed(self, event: str, old: NADRecord | None, new: NADRecord | None) -> set[Key]:
        """Keep the NAD cache; a NAD that appears releases the VMIs waiting for it."""
        rec = new or old
        if rec is None:
            return set()
        if event == "DELETED" or new is None:
            self.nads.pop(rec.key, None)
            return set()
        self.nads[rec.key] = new
        return self._waiting_for(Trigger(TriggerKind.NAD, nad_name(rec.key))) if old is None else set()

    def node_changed(self, event: str, old: NodeRecord | None, new: NodeRecord | None) -> set[Key]:
        """Keep the Node cache and the target set; a changed node may release VMIs waiting for a node
        or for its resources."""
        rec = new or old
        if rec is None or old == new:
            return set()
        if event == "DELETED" or new is None:
            self.nodes.pop(rec.name, None)
            self.targets.discard(rec.name)
        else:
            self.nodes[rec.name] = new
            if new.target:
                self.targets.add(rec.name)
            else:
                self.targets.discard(rec.name)
        resources = {r for n in (old, new) if n is not None for r, _ in n.allocatable}
        return self._waiting_for(
            Trigger(TriggerKind.NODES), *(Trigger(TriggerKind.RESOURCE, r) for r in resources)
        )

    def pod_changed(self, event: str, old: PodRecord | None, new: PodRecord | None) -> set[Key]:
        """Keep what pods hold per node; resources a pod gave back may release VMIs waiting for them."""
        delta: Counter[tuple[str, str]] = Counter()
        if old is not None:
            for resource, count in old.requests:
                delta[(old.node, resource)] -= count
        if new is not None and event != "DELETED":
            for resource, count in new.requests:
                delta[(new.node, resource)] += count
        freed: set[str] = set()
        for (node, resource), change in delta.items():
            if change:
                held = self.usage.setdefault(node, Counter())
                held[resource] += change
                if change < 0:
                    freed.add(resource)
        return self._waiting_for(*(Trigger(TriggerKind.RESOURCE, r) for r in freed))

    def set_awaits(self, key: Key, triggers: frozenset[Trigger]) -> None:
        """Register the changes that could release ``key`` (replacing its previous ones)."""
        for trigger in self.awaiting.pop(key, frozenset()) - triggers:
            keys = self.waiters.get(trigger)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.waiters[trigger]
        if triggers:
            self.awaiting[key] = triggers
            for trigger in triggers:
                self.waiters.setdefault(trigger, set()).add(key)

    def _waiting_for(self, *triggers: Trigger) -> set[Key]:
        out: set[Key] = set()
        for trigger in triggers:
            out.update(self.waiters.get(trigger, ()))
        return out


__all__ = ["Mirror"]
