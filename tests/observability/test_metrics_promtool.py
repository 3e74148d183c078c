"""``promtool check metrics`` on the exposition of a populated HotplugMetrics registry."""

from __future__ import annotations

import pytest

from metrics.definitions import HotplugMetrics
from metrics.exposition import render
from tests.observability.promtool import check_metrics_with_promtool

pytestmark = pytest.mark.tools


def populated() -> HotplugMetrics:
    """Every helper exercised once, so the exposition holds non-trivial values everywhere."""
    m = HotplugMetrics(version="0.1.0")
    m.set_mode("active")
    m.set_leader(True)
    m.set_cache_synced(True)
    m.set_limits(cluster=5, node=2)
    m.set_pending({"queued": 3, "in-progress": 2})
    m.set_blocked({"slots-exhausted": 1})
    m.set_in_flight({"agent": 2, "other": 1})
    m.set_slot_exhausted({"predicted": 1})
    m.set_oldest_pending(1_700_000_000.0)
    t0 = 1_714_557_600.0
    points = [(t0, "Pending"), (t0 + 5, "Running"), (t0 + 35, "Succeeded")]
    m.observe_finished_points("uid-1", "Succeeded", points, t0, "agent", vmi="ns/vm")
    m.observe_hotplug_completed("plug", 47.0, vmi="ns/vm")
    m.record_failure("migration-failed")
    m.record_retry()
    m.record_migration_created()
    m.record_slot_exhaustion("predicted")
    m.record_rate_limited("node")
    m.record_watch_restart("virtualmachineinstances", "gone")
    m.record_api_error("create", 409)
    m.observe_api_request("create", "virtualmachineinstancemigrations", 409, 0.05)
    m.observe_api_request("watch", "virtualmachines", 200, 0.01)
    m.observe_queue_wait(2.5, vmi="ns/vm")
    m.record_invalid_object("virtualmachines")
    return m


def test_populated_registry_passes_promtool() -> None:
    body, _content_type = render(populated().registry, None)
    assert check_metrics_with_promtool(body) == []


def test_fresh_registry_passes_promtool() -> None:
    body, _content_type = render(HotplugMetrics().registry, "text/plain")
    assert check_metrics_with_promtool(body.decode()) == []


def test_helper_reports_problems() -> None:
    """Negative control: the helper must not call a bad exposition clean."""
    bad = "# TYPE hotplug_agent_things counter\nhotplug_agent_things 1\n"
    problems = check_metrics_with_promtool(bad)
    assert any("_total" in problem for problem in problems), problems
    assert any("no help text" in problem for problem in problems), problems
