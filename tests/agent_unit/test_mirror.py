"""agent.mirror: the unfinished migrations by VMI, the edges it reports, what the caps count."""

from __future__ import annotations

import dataclasses

from agent.lifecycle import MigrationEnded, SucceededBeforeStart
from agent.mirror import Mirror
from tests.agent_unit.builders import NAME, NS, vmi, vmim

KEY = (NS, NAME)


def test_an_unfinished_vmim_is_indexed_by_its_vmi_and_its_end_is_an_edge() -> None:
    m = Mirror(synced=True)
    running = vmim("Running")
    assert m.vmim_changed("ADDED", None, running) == (KEY, None)
    assert m.active[KEY] is running and m.in_flight_counts() == {"agent": 1}
    done = dataclasses.replace(running, phase="Succeeded")
    key, edge = m.vmim_changed("MODIFIED", running, done)
    assert key == KEY and edge == MigrationEnded(done, deleted=False)
    assert KEY not in m.active and m.in_flight_counts() == {}


def test_a_vmim_already_final_in_the_initial_list_is_history_unless_it_is_ours_just_done() -> None:
    m = Mirror(synced=False)
    theirs = vmim("Failed", ours=False, name="other")
    assert m.vmim_changed("ADDED", None, theirs) == (KEY, None)
    ours = vmim("Succeeded")
    assert m.vmim_changed("ADDED", None, ours) == (KEY, SucceededBeforeStart(ours))


def test_the_source_node_of_a_migration_whose_vmi_already_moved() -> None:
    """Real KubeVirt fills the VMIM's sourceNode only once final; the VMI moves to the target first.
    The caps must keep counting the migration against the node it leaves."""
    m = Mirror()
    moved = dataclasses.replace(vmi(node="node-b", migrating=True), migration_source="node-a")
    m.vmi_changed("ADDED", None, moved)
    m.vmim_changed("ADDED", None, dataclasses.replace(vmim("Running"), source_node=None))
    assert m.source_node(KEY) == "node-a"
    (counted,) = m.active_migrations({})
    assert counted.source_node == "node-a"


def test_caps_come_from_the_settings_else_the_kubevirt_cr_else_kubevirts_defaults() -> None:
    m = Mirror()
    assert m.caps(0, 0) == (5, 2)
    assert m.caps(7, 3) == (7, 3)


def test_a_vmi_update_that_changes_nothing_the_record_holds_is_no_news() -> None:
    """A status heartbeat (guest OS info, IPs: a new resourceVersion, the same record otherwise) keeps
    the cache current but has nothing to decide on: no key to queue."""
    m = Mirror(synced=True)
    first = vmi()
    assert m.vmi_changed("ADDED", None, first) == KEY
    heartbeat = dataclasses.replace(first, resource_version="2")
    assert heartbeat == first
    assert m.vmi_changed("MODIFIED", first, heartbeat) is None
    assert m.vmis[KEY] is heartbeat
    moved = dataclasses.replace(heartbeat, resource_version="3", node="node-b")
    assert m.vmi_changed("MODIFIED", heartbeat, moved) == KEY
    assert m.vmi_changed("DELETED", moved, None) == KEY and KEY not in m.vmis
