"""HotplugMetrics: naming conventions, pre-initialisation and helper behaviour."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from metrics import definitions as d
from metrics.definitions import RUNTIME_SERIES, SERIES, HotplugMetrics, normalise_api_code
from metrics.exposition import render


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
            assert spec.buckets == tuple(sorted(set(spec.buckets))), spec.name
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
        "hotplug_agent_rest_client_requests_total",
        "hotplug_agent_rest_client_request_duration_seconds",
        "hotplug_agent_queue_wait_seconds",
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


@pytest.mark.skipif(sys.platform != "linux", reason="the process collector reads /proc")
def test_every_registered_family_is_declared_and_vice_versa() -> None:
    m = HotplugMetrics()
    exposed = {fam.name for fam in m.registry.collect()}
    declared = {spec.name.removesuffix("_total") for spec in (*SERIES, *RUNTIME_SERIES)}
    assert exposed == declared
    # And the runtime families' declared help and type are the collectors' own.
    by_name = {fam.name: fam for fam in m.registry.collect()}
    for spec in RUNTIME_SERIES:
        family = by_name[spec.name.removesuffix("_total")]
        assert (family.documentation, family.type) == (spec.help, spec.kind), spec.name


def test_no_created_series() -> None:
    """Only the samples of each family's own type: no ``*_created`` (they double the scrape)."""
    m = HotplugMetrics()
    m.observe_migration("succeeded", "agent", 1.0)
    m.observe_api_request("list", "virtualmachines", 200, 0.01)
    body, _ = render(m.registry, None)
    text = body.decode()
    assert "_created" not in text
    assert "hotplug_agent_migrations_total{" in text


def test_runtime_collectors_report_this_process() -> None:
    m = HotplugMetrics()
    if sys.platform == "linux":
        assert (value(m, "process_resident_memory_bytes") or 0) > 0
        assert (value(m, "process_open_fds") or 0) > 0
    assert value(m, "python_gc_collections_total", generation="0") is not None


def test_api_requests_by_verb_resource_and_code() -> None:
    m = HotplugMetrics()
    # Not pre-initialised: the combinations in use depend on the code path.
    requests = "hotplug_agent_rest_client_requests_total"
    assert value(m, requests, verb="list", resource="leases", code="200") is None
    m.observe_api_request("list", "virtualmachines", 200, 0.02)
    m.observe_api_request("create", "virtualmachineinstancemigrations", 201, 0.2)
    m.observe_api_request("create", "virtualmachineinstancemigrations", 422, 0.1)
    m.observe_api_request("watch", "kubevirts", 0, 10.0)
    m.observe_api_request("get", "secrets", 418, 0.01)
    assert value(m, requests, verb="list", resource="virtualmachines", code="200") == 1.0
    assert value(m, requests, verb="create", resource="virtualmachineinstancemigrations", code="201") == 1.0
    assert value(m, requests, verb="create", resource="virtualmachineinstancemigrations", code="422") == 1.0
    assert value(m, requests, verb="watch", resource="kubevirts", code="network") == 1.0
    assert value(m, requests, verb="get", resource="other", code="other") == 1.0
    duration = "hotplug_agent_rest_client_request_duration_seconds"
    assert value(m, f"{duration}_count", verb="create") == 2.0
    assert value(m, f"{duration}_bucket", verb="create", le="0.1") == 1.0
    assert value(m, f"{duration}_bucket", verb="create", le="0.25") == 2.0
    assert value(m, f"{duration}_count", verb="delete") == 0.0  # by verb: pre-initialised
    with pytest.raises(ValueError):
        m.observe_api_request("proxy", "pods", 200, 0.1)


def test_queue_wait() -> None:
    m = HotplugMetrics()
    assert value(m, "hotplug_agent_queue_wait_seconds_count") == 0.0
    m.observe_queue_wait(0.003, vmi="ns/vm")
    m.observe_queue_wait(75.0)
    m.observe_queue_wait(-1.0)  # clock skew: clamped
    assert value(m, "hotplug_agent_queue_wait_seconds_count") == 3.0
    assert value(m, "hotplug_agent_queue_wait_seconds_bucket", le="0.005") == 2.0
    assert value(m, "hotplug_agent_queue_wait_seconds_bucket", le="60.0") == 2.0
    assert value(m, "hotplug_agent_queue_wait_seconds_bucket", le="120.0") == 3.0


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
        if spec is d.BUILD_INFO or not spec.labels or not spec.preinitialise:
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
        lambda: m.record_watch_restart("secrets", "gone"),
        lambda: m.record_watch_restart("kubevirts", "eof"),
        lambda: m.record_api_error("proxy", 500),
        lambda: m.record_invalid_object("secrets"),
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


T0 = 1_714_557_600.0  # 2024-05-01T10:00:00Z, the VMIM's creationTimestamp


def _finished(m: HotplugMetrics, uid: str, phase: str, stamps: list[tuple[str, int]], **kw: object) -> bool:
    points = [(T0 + second, p) for p, second in stamps]
    initiator = str(kw.pop("initiator", "agent"))
    return m.observe_finished_points(uid, phase, points, T0, initiator, **kw)  # type: ignore[arg-type]


def test_observe_finished_points_records_once() -> None:
    m = HotplugMetrics()
    stamps = [("Pending", 0), ("Scheduling", 2), ("Running", 10), ("Succeeded", 70)]
    assert _finished(m, "u1", "Succeeded", stamps, vmi="ns/vm") is True
    assert _finished(m, "u1", "Succeeded", stamps) is False  # re-delivered watch event
    labels = {"result": "succeeded", "initiator": "agent"}
    assert value(m, "hotplug_agent_migrations_total", **labels) == 1.0
    assert value(m, "hotplug_agent_migration_duration_seconds_sum", **labels) == 70.0
    phase = "hotplug_agent_migration_phase_duration_seconds"
    assert value(m, f"{phase}_sum", phase="Scheduling", initiator="agent") == 8.0
    assert value(m, f"{phase}_count", phase="Running", initiator="agent") == 1.0
    assert value(m, f"{phase}_sum", phase="Running", initiator="agent") == 60.0
    assert value(m, f"{phase}_bucket", phase="Running", initiator="agent", le="50.0") == 0.0
    assert value(m, f"{phase}_bucket", phase="Running", initiator="agent", le="60.0") == 1.0


def test_observe_finished_points_failed_cancelled_and_running() -> None:
    m = HotplugMetrics()
    assert _finished(m, "r", "Running", [("Pending", 0), ("Running", 5)], initiator="other") is False
    assert value(m, "hotplug_agent_migrations_total", result="failed", initiator="other") == 0.0
    assert _finished(m, "f", "Failed", [("Pending", 0), ("Failed", 30)], initiator="kubevirt") is True
    assert value(m, "hotplug_agent_migrations_total", result="failed", initiator="kubevirt") == 1.0
    stuck = [("Pending", 0), ("Scheduling", 1)]
    assert _finished(m, "c", "Scheduling", stuck, cancelled=True, now=T0 + 900) is True
    labels = {"result": "cancelled", "initiator": "agent"}
    assert value(m, "hotplug_agent_migrations_total", **labels) == 1.0
    assert value(m, "hotplug_agent_migration_duration_seconds_sum", **labels) == 900.0
    assert _finished(m, "", "Succeeded", [("Succeeded", 1)]) is False  # no uid
    with pytest.raises(ValueError):
        _finished(m, "v", "Failed", [("Failed", 1)], initiator="virtctl")


def test_observe_finished_points_memory_is_bounded() -> None:
    m = HotplugMetrics()
    m._observed_vmims_limit = 3
    for uid in "abcd":
        assert _finished(m, uid, "Succeeded", [("Succeeded", 1)])
    assert list(m._observed_vmims) == ["b", "c", "d"]
    assert _finished(m, "d", "Succeeded", [("Succeeded", 1)]) is False
