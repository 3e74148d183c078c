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
    m.observe_phase_durations(
        [
            {"phase": "Pending", "phaseTransitionTimestamp": "2024-05-01T10:00:00Z"},
            {"phase": "Running", "phaseTransitionTimestamp": "2024-05-01T10:00:05Z"},
            {"phase": "Succeeded", "phaseTransitionTimestamp": "2024-05-01T10:00:35Z"},
        ],
        "2024-05-01T10:00:00Z",
        "agent",
    )
    m.observe_migration("succeeded", "agent", 35.0, vmi="ns/vm")
    m.observe_hotplug_completed("plug", 47.0, vmi="ns/vm")
    m.record_failure("migration-failed")
    m.record_retry()
    m.record_migration_created()
    m.record_slot_exhaustion("predicted")
    m.record_rate_limited("node")
    m.record_watch_restart("virtualmachineinstances", "gone")
    m.record_api_error("create", 409)
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
