"""HotplugMetrics: naming conventions, pre-initialisation and helper behaviour."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from metrics import definitions as d
from metrics.definitions import SERIES, HotplugMetrics, normalise_api_code


def value(m: HotplugMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_names_follow_conventions() -> None:
    names = [spec.name for spec in SERIES]
    assert len(names) == len(set(names))
    for spec in SERIES:
        assert re.fullmatch(r"hotplug_agent_[a-z0-9_]+", spec.name), spec.name
        assert spec.help and len(spec.help) > 30, spec.name
        if spec.kind == "counter":
            assert spec.name.endswith("_total"), spec.name
        else:
            assert not spec.name.endswith("_total"), spec.name
        if spec.kind == "histogram":
            assert spec.name.endswith("_seconds"), spec.name
            assert spec.buckets[-1] >= 3600
            # No per-VM identity on histograms.
            assert not {"vmi", "vm", "name", "namespace", "vmim"} & set(spec.label_names)


def test_contract_names_exist() -> None:
    """Names other engineers, the dashboard and the rules code against."""
    expected = {
        "hotplug_agent_migration_phase_duration_seconds",
        "hotplug_agent_migration_duration_seconds",
        "hotplug_agent_hotplug_latency_seconds",
        "hotplug_agent_migrations_total",
        "hotplug_agent_migration_failures_total",
        "hotplug_agent_migration_retries_total",
        "hotplug_agent_migration_creates_total",
        "hotplug_agent_migrations_in_flight",
        "hotplug_agent_migration_limit",
        "hotplug_agent_hotplugs_completed_total",
        "hotplug_agent_pending_hotplugs",
        "hotplug_agent_oldest_pending_hotplug_timestamp_seconds",
        "hotplug_agent_blocked_vms",
        "hotplug_agent_slot_exhaustion_total",
        "hotplug_agent_slot_exhausted_vms",
        "hotplug_agent_rate_limited_dispatches_total",
        "hotplug_agent_leader",
        "hotplug_agent_mode",
        "hotplug_agent_watch_restarts_total",
        "hotplug_agent_api_errors_total",
        "hotplug_agent_invalid_objects_total",
        "hotplug_agent_cache_synced",
        "hotplug_agent_build_info",
    }
    assert expected <= {spec.name for spec in SERIES}


def test_each_instance_has_its_own_registry() -> None:
    a, b = HotplugMetrics(), HotplugMetrics()
    a.record_retry()
    assert value(a, "hotplug_agent_migration_retries_total") == 1.0
    assert value(b, "hotplug_agent_migration_retries_total") == 0.0
    reg = CollectorRegistry()
    c = HotplugMetrics(reg)
    assert c.registry is reg


def test_every_registered_family_is_declared_and_vice_versa() -> None:
    m = HotplugMetrics()
    exposed = {fam.name for fam in m.registry.collect()}
    declared = {spec.name.removesuffix("_total") for spec in SERIES}
    assert exposed == declared


def test_all_known_label_combinations_start_at_zero() -> None:
    m = HotplugMetrics()
    for phase in d.PHASES:
        for initiator in d.INITIATORS:
            name = "hotplug_agent_migration_phase_duration_seconds_count"
            assert value(m, name, phase=phase, initiator=initiator) == 0.0
    for verb in d.API_VERBS:
        for code in d.API_ERROR_CODES:
            assert value(m, "hotplug_agent_api_errors_total", verb=verb, code=code) == 0.0
    for state in d.PENDING_STATES:
        assert value(m, "hotplug_agent_pending_hotplugs", state=state) == 0.0
    for reason in d.BLOCKED_REASONS:
        assert value(m, "hotplug_agent_blocked_vms", reason=reason) == 0.0
    for resource in d.RESOURCES:
        for reason in d.WATCH_RESTART_REASONS:
            assert value(m, "hotplug_agent_watch_restarts_total", resource=resource, reason=reason) == 0.0
    for mode in d.MODES:
        assert value(m, "hotplug_agent_mode", mode=mode) == 0.0
    # Count samples per family: exactly the cross product of the declared label values.
    for spec in SERIES:
        if spec is d.BUILD_INFO or not spec.labels:
            continue
        expected = 1
        for _label, values in spec.labels:
            expected *= len(values)
        family = next(f for f in m.registry.collect() if f.name == spec.name.removesuffix("_total"))
        suffix = "_count" if spec.kind == "histogram" else ("_total" if spec.kind == "counter" else "")
        samples = [s for s in family.samples if s.name == family.name + suffix]
        assert len(samples) == expected, spec.name


def test_build_info_has_one_series() -> None:
    m = HotplugMetrics(version="1.2.3")
    fam = next(f for f in m.registry.collect() if f.name == "hotplug_agent_build_info")
    assert len(fam.samples) == 1
    assert fam.samples[0].labels["version"] == "1.2.3"
    assert fam.samples[0].value == 1.0
    m.set_build_info("2.0.0", "3.11.9")
    fam = next(f for f in m.registry.collect() if f.name == "hotplug_agent_build_info")
    expected = [({"version": "2.0.0", "python_version": "3.11.9"}, 1.0)]
    assert [(s.labels, s.value) for s in fam.samples] == expected


def test_set_mode_is_exclusive() -> None:
    m = HotplugMetrics()
    m.set_mode("active")
    m.set_mode("observe")
    assert value(m, "hotplug_agent_mode", mode="observe") == 1.0
    assert value(m, "hotplug_agent_mode", mode="active") == 0.0
    assert value(m, "hotplug_agent_mode", mode="dry-run") == 0.0
    with pytest.raises(ValueError):
        m.set_mode("auto")


def test_leader_and_cache_synced() -> None:
    m = HotplugMetrics()
    assert value(m, "hotplug_agent_leader") == 0.0
    m.set_leader(True)
    assert value(m, "hotplug_agent_leader") == 1.0
    m.set_leader(False)
    assert value(m, "hotplug_agent_leader") == 0.0
    m.set_cache_synced(True)
    assert value(m, "hotplug_agent_cache_synced") == 1.0


def test_snapshots_replace_previous_values() -> None:
    m = HotplugMetrics()
    m.set_pending({"settling": 3, "queued": 2})
    m.set_pending({"queued": 1})
    assert value(m, "hotplug_agent_pending_hotplugs", state="settling") == 0.0
    assert value(m, "hotplug_agent_pending_hotplugs", state="queued") == 1.0
    m.set_blocked({"slots-exhausted": 4})
    assert value(m, "hotplug_agent_blocked_vms", reason="slots-exhausted") == 4.0
    m.set_in_flight({"agent": 2, "kubevirt": 1})
    assert value(m, "hotplug_agent_migrations_in_flight", initiator="kubevirt") == 1.0
    m.set_slot_exhausted({"observed": 1})
    assert value(m, "hotplug_agent_slot_exhausted_vms", kind="observed") == 1.0
    m.set_oldest_pending(1_700_000_000.5)
    assert value(m, "hotplug_agent_oldest_pending_hotplug_timestamp_seconds") == 1_700_000_000.5
    m.set_oldest_pending(None)
    assert value(m, "hotplug_agent_oldest_pending_hotplug_timestamp_seconds") == 0.0
    m.set_limits(cluster=5, node=2)
    assert value(m, "hotplug_agent_migration_limit", scope="node") == 2.0
    with pytest.raises(ValueError):
        m.set_pending({"bogus": 1})
    # A rejected snapshot must not have half-applied.
    assert value(m, "hotplug_agent_pending_hotplugs", state="queued") == 1.0


def test_observe_phase_durations_records_into_histogram() -> None:
    m = HotplugMetrics()
    recorded = m.observe_phase_durations(
        [
            {"phase": "Pending", "phaseTransitionTimestamp": "2024-05-01T10:00:00Z"},
            {"phase": "Scheduling", "phaseTransitionTimestamp": "2024-05-01T10:00:45Z"},
            {"phase": "Failed", "phaseTransitionTimestamp": "2024-05-01T10:01:00Z"},
        ],
        "2024-05-01T10:00:00Z",
        "kubevirt",
    )
    assert recorded == [("Pending", 45.0), ("Scheduling", 15.0)]
    name = "hotplug_agent_migration_phase_duration_seconds"
    assert value(m, f"{name}_sum", phase="Pending", initiator="kubevirt") == 45.0
    assert value(m, f"{name}_bucket", phase="Pending", initiator="kubevirt", le="40.0") == 0.0
    assert value(m, f"{name}_bucket", phase="Pending", initiator="kubevirt", le="50.0") == 1.0
    assert value(m, f"{name}_count", phase="Pending", initiator="agent") == 0.0
    with pytest.raises(ValueError):
        m.observe_phase_durations([], None, "virtctl")


def test_observe_migration_and_hotplug() -> None:
    m = HotplugMetrics()
    m.observe_migration("succeeded", "agent", 75.0, vmi="ns/vm1")
    m.observe_migration("failed", "agent", -1.0)
    assert value(m, "hotplug_agent_migrations_total", result="succeeded", initiator="agent") == 1.0
    assert value(m, "hotplug_agent_migrations_total", result="failed", initiator="agent") == 1.0
    assert value(m, "hotplug_agent_migration_duration_seconds_sum", result="failed", initiator="agent") == 0.0
    m.observe_hotplug_completed("plug", 130.0, vmi="ns/vm1")
    assert value(m, "hotplug_agent_hotplugs_completed_total", operation="plug") == 1.0
    assert value(m, "hotplug_agent_hotplug_latency_seconds_bucket", operation="plug", le="120.0") == 0.0
    assert value(m, "hotplug_agent_hotplug_latency_seconds_bucket", operation="plug", le="180.0") == 1.0
    with pytest.raises(ValueError):
        m.observe_migration("aborted", "agent", 1.0)
    with pytest.raises(ValueError):
        m.observe_hotplug_completed("replug", 1.0)


def test_counters_helpers() -> None:
    m = HotplugMetrics()
    m.record_failure("deadline-exceeded")
    m.record_migration_created()
    m.record_slot_exhaustion("predicted")
    m.record_rate_limited("token-bucket")
    m.record_watch_restart("virtualmachineinstances", "gone")
    m.record_invalid_object("kubevirts")
    m.record_api_error("create", 429)
    m.record_api_error("create", 418)
    m.record_api_error("watch", None)
    assert value(m, "hotplug_agent_migration_failures_total", reason="deadline-exceeded") == 1.0
    assert value(m, "hotplug_agent_migration_creates_total") == 1.0
    assert value(m, "hotplug_agent_slot_exhaustion_total", kind="predicted") == 1.0
    assert value(m, "hotplug_agent_rate_limited_dispatches_total", limit="token-bucket") == 1.0
    assert (
        value(m, "hotplug_agent_watch_restarts_total", resource="virtualmachineinstances", reason="gone")
        == 1.0
    )
    assert value(m, "hotplug_agent_invalid_objects_total", resource="kubevirts") == 1.0
    assert value(m, "hotplug_agent_api_errors_total", verb="create", code="429") == 1.0
    assert value(m, "hotplug_agent_api_errors_total", verb="create", code="other") == 1.0
    assert value(m, "hotplug_agent_api_errors_total", verb="watch", code="network") == 1.0
    bad_calls: list[Callable[[], None]] = [
        lambda: m.record_failure("oops"),
        lambda: m.record_slot_exhaustion("maybe"),
        lambda: m.record_rate_limited("global"),
        lambda: m.record_watch_restart("pods", "gone"),
        lambda: m.record_watch_restart("kubevirts", "eof"),
        lambda: m.record_api_error("proxy", 500),
        lambda: m.record_invalid_object("pods"),
    ]
    for bad in bad_calls:
        with pytest.raises(ValueError):
            bad()


@pytest.mark.parametrize(
    ("status", "code"),
    [(None, "network"), (0, "network"), (404, "404"), ("503", "503"), (418, "other"), (599, "other")],
)
def test_normalise_api_code(status: int | str | None, code: str) -> None:
    assert normalise_api_code(status) == code


def _vmim(uid: str, phase: str | None, stamps: list[tuple[str, int]]) -> dict[str, object]:
    status: dict[str, object] = {
        "phaseTransitionTimestamps": [
            {"phase": p, "phaseTransitionTimestamp": f"2024-05-01T10:{s // 60:02d}:{s % 60:02d}Z"}
            for p, s in stamps
        ]
    }
    if phase is not None:
        status["phase"] = phase
    return {
        "metadata": {
            "uid": uid,
            "namespace": "ns",
            "name": f"hotplug-vm-{uid}",
            "creationTimestamp": "2024-05-01T10:00:00Z",
        },
        "spec": {"vmiName": "vm"},
        "status": status,
    }


def test_observe_finished_vmim_records_once() -> None:
    m = HotplugMetrics()
    vmim = _vmim("u1", "Succeeded", [("Pending", 0), ("Scheduling", 2), ("Running", 10), ("Succeeded", 70)])
    assert m.observe_finished_vmim(vmim, "agent") is True
    assert m.observe_finished_vmim(vmim, "agent") is False  # re-delivered watch event
    labels = {"result": "succeeded", "initiator": "agent"}
    assert value(m, "hotplug_agent_migrations_total", **labels) == 1.0
    assert value(m, "hotplug_agent_migration_duration_seconds_sum", **labels) == 70.0
    phase = "hotplug_agent_migration_phase_duration_seconds"
    assert value(m, f"{phase}_sum", phase="Scheduling", initiator="agent") == 8.0
    assert value(m, f"{phase}_count", phase="Running", initiator="agent") == 1.0
    assert value(m, f"{phase}_sum", phase="Running", initiator="agent") == 60.0


def test_observe_finished_vmim_failed_cancelled_and_running() -> None:
    m = HotplugMetrics()
    assert m.observe_finished_vmim(_vmim("r", "Running", [("Pending", 0), ("Running", 5)]), "other") is False
    assert value(m, "hotplug_agent_migrations_total", result="failed", initiator="other") == 0.0
    failed = _vmim("f", "Failed", [("Pending", 0), ("Failed", 30)])
    assert m.observe_finished_vmim(failed, "kubevirt") is True
    assert value(m, "hotplug_agent_migrations_total", result="failed", initiator="kubevirt") == 1.0
    stuck = _vmim("c", "Scheduling", [("Pending", 0), ("Scheduling", 1)])
    created = 1714557600.0  # 2024-05-01T10:00:00Z
    assert m.observe_finished_vmim(stuck, "agent", cancelled=True, now=created + 900) is True
    labels = {"result": "cancelled", "initiator": "agent"}
    assert value(m, "hotplug_agent_migrations_total", **labels) == 1.0
    assert value(m, "hotplug_agent_migration_duration_seconds_sum", **labels) == 900.0
    assert m.observe_finished_vmim({"status": {"phase": "Succeeded"}}, "agent") is False  # no uid
    with pytest.raises(ValueError):
        m.observe_finished_vmim(failed, "virtctl")


def test_observe_finished_vmim_memory_is_bounded() -> None:
    m = HotplugMetrics()
    m._observed_vmims_limit = 3
    for uid in "abcd":
        assert m.observe_finished_vmim(_vmim(uid, "Succeeded", [("Succeeded", 1)]), "agent")
    assert list(m._observed_vmims) == ["b", "c", "d"]
    assert m.observe_finished_vmim(_vmim("d", "Succeeded", [("Succeeded", 1)]), "agent") is False
