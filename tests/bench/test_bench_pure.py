"""The benchmarks' pure parts: the drain model's lower bound and its two sides on hand-made work, the
bulk loader's stored objects, the growth exponent, quantiles from histogram buckets. (The benchmarks
themselves are run by ``bench.run_all``, not by tests: tests never judge timing.)"""

from __future__ import annotations

import json
import math
import time

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from agent.model import parse_vm, parse_vmi
from bench.bulkload import TXN_OPS, Templates, registry_key, txn_put
from bench.common import histogram_buckets, histogram_quantile
from bench.drain_model import Job, KubeVirtTiming, lower_bound, run_agent, run_peer
from bench.scale_real import exponent
from simulator.manifests import vm_manifest


def job(name: str, node: str, *attempts: float, size: float = 1.0) -> Job:
    return Job(("ns", name), node, size, tuple(attempts))


def test_lower_bound_takes_the_largest_of_its_parts() -> None:
    jobs = [job("a", "n1", 10), job("b", "n1", 10), job("c", "n1", 10), job("d", "n2", 3, 4)]
    b = lower_bound(jobs, cap=4, node_cap=2)
    assert b["cluster"] == pytest.approx(37 / 4)
    assert b["node"] == 20  # n1: 30 s over 2 slots, and its 2nd + 3rd longest back to back
    assert b["chain"] == 10 and b["bound"] == 20
    # Of the C + 1 = 3 longest attempts two share a slot: 10 + 10.
    assert lower_bound(jobs, cap=2, node_cap=9)["pair"] == 20


def test_agent_side_respects_the_limits_and_meets_the_bound_on_easy_work() -> None:
    jobs = [job(f"v{i}", f"n{i % 4}", 5.0) for i in range(8)]
    out = run_agent(jobs, cap=4, node_cap=1, order="balanced")
    assert len(out.attached) == 8 and out.attempts == 8
    # 4 nodes, one slot each, two 5 s migrations per node, 0.1 s overhead per dispatch.
    assert out.makespan == pytest.approx(10.2)


def test_agent_side_retries_after_its_backoff() -> None:
    out = run_agent([job("v", "n", 2.0, 3.0)], cap=1, node_cap=1, order="fifo")
    assert out.attempts == 2
    assert out.attached[("ns", "v")] == pytest.approx(0.1 + 2.0 + 5.0 + 0.1 + 3.0)


def test_peer_side_waits_for_its_first_pass_and_the_pending_recheck() -> None:
    # Two VMs on one node with one outbound slot: the updater's first pass comes 5 s after the hot
    # plug and creates both (its budget ignores Pending VMIMs); the second stays Pending over the node
    # limit and is re-checked every 5 s, so it starts at 5.1 + 5 + 5 = 15.1 s, not when the first ends.
    jobs = [job("a", "n", 6.0), job("b", "n", 6.0)]
    out = run_peer(jobs, cap=4, node_cap=1, timing=KubeVirtTiming())
    ends = sorted(out.attached.values())
    assert ends[0] == pytest.approx(5.1 + 6.0)
    assert ends[1] == pytest.approx(5.1 + 10.0 + 6.0)
    # With the MigrationPriorityQueue gate, the end of the first re-checks the second at once.
    gated = run_peer(jobs, cap=4, node_cap=1, timing=KubeVirtTiming(priority_gate=True))
    assert sorted(gated.attached.values())[1] == pytest.approx(5.1 + 6.0 + 6.0)


def test_peer_side_backs_off_after_a_failed_attempt() -> None:
    out = run_peer([job("v", "n", 2.0, 3.0)], cap=1, node_cap=1, timing=KubeVirtTiming())
    # Pass at 5 s, admitted at 5.1 s, fails at 7.1 s; the next VMIM waits 20 s after that failure.
    assert out.attached[("ns", "v")] == pytest.approx(7.1 + 20.0 + 3.0)


def test_bulk_loader_stores_what_the_agent_parses() -> None:
    tpl = Templates(vm_manifest("scale-00", "proto", [("net-a", "bridge")]), "v1.7.0", time.time())
    vm_text, vmi_text = tpl.render("scale-07", "vm-000042", "node-3")
    vm, vmi = json.loads(vm_text), json.loads(vmi_text)
    assert (vm["metadata"]["namespace"], vm["metadata"]["name"]) == ("scale-07", "vm-000042")
    assert "resourceVersion" not in vm["metadata"] and vm["metadata"]["uid"] != vmi["metadata"]["uid"]
    assert vmi["status"]["phase"] == "Running" and vmi["status"]["nodeName"] == "node-3"
    assert vmi["metadata"]["ownerReferences"][0]["name"] == "vm-000042"
    for obj in (vm, vmi):
        obj["metadata"]["resourceVersion"] = "7"  # what the API server adds when it serves them
    assert parse_vm(vm).key == parse_vmi(vmi).key == ("scale-07", "vm-000042")
    put = txn_put("virtualmachines", "scale-07", "vm-000042", vm_text)["requestPut"]
    assert (
        registry_key("virtualmachines", "scale-07", "vm-000042")
        == "/registry/kubevirt.io/virtualmachines/scale-07/vm-000042"
    )
    assert put["key"] and put["value"] and TXN_OPS == 128


def test_growth_exponent() -> None:
    assert exponent([1000, 10_000, 100_000], [1.0, 10.0, 100.0]) == pytest.approx(1.0)
    assert exponent([1000, 100_000], [4.0, 40.0]) == pytest.approx(0.5)
    assert exponent([1000], [1.0]) is None


#: 100 observations: 10 up to 1 ms, 40 in (1, 2] ms, 40 in (2, 5] ms, 9 in (5, 10] ms, 1 above 10 ms.
BUCKETS = [(0.001, 10.0), (0.002, 50.0), (0.005, 90.0), (0.01, 99.0), (math.inf, 100.0)]


def test_histogram_quantile_interpolates_within_the_bucket_as_prometheus_does() -> None:
    assert histogram_quantile(0.05, BUCKETS) == pytest.approx(0.0005)  # the lowest bucket starts at 0
    assert histogram_quantile(0.25, BUCKETS) == pytest.approx(0.001 + 0.001 * 15 / 40)
    assert histogram_quantile(0.5, BUCKETS) == pytest.approx(0.002)  # a rank on a bound: that bound
    assert histogram_quantile(0.95, BUCKETS) == pytest.approx(0.005 + 0.005 * 5 / 9)
    assert histogram_quantile(0.99, BUCKETS) == pytest.approx(0.01)
    # In the +Inf bucket: the largest finite bound, as Prometheus answers.
    assert histogram_quantile(0.995, BUCKETS) == 0.01
    assert histogram_quantile(1.0, BUCKETS) == 0.01
    assert histogram_quantile(0.0, BUCKETS) == 0.0
    assert histogram_quantile(0.25, list(reversed(BUCKETS))) == histogram_quantile(0.25, BUCKETS)


def test_histogram_quantile_without_observations_or_without_inf_is_none() -> None:
    assert histogram_quantile(0.99, [(0.001, 0.0), (math.inf, 0.0)]) is None
    assert histogram_quantile(0.99, BUCKETS[:-1]) is None
    assert histogram_quantile(0.99, [(math.inf, 3.0)]) is None
    assert histogram_quantile(0.0, [(0.001, 0.0), (0.002, 2.0), (math.inf, 2.0)]) == 0.0
    with pytest.raises(ValueError):
        histogram_quantile(99, BUCKETS)


def test_histogram_buckets_from_an_exposition() -> None:
    reg = CollectorRegistry()
    plain = Histogram("x_seconds", "x", buckets=(0.001, 0.01), registry=reg)
    by_kind = Histogram("y_seconds", "y", ["kind"], buckets=(0.001, 0.01), registry=reg)
    for v in (0.0005, 0.005, 0.005, 2.0):
        plain.observe(v)
    by_kind.labels("a").observe(0.0005)
    by_kind.labels("b").observe(0.005)
    text = generate_latest(reg).decode()
    assert histogram_buckets(text, "x_seconds") == [(0.001, 1.0), (0.01, 3.0), (math.inf, 4.0)]
    assert histogram_buckets(text, "y_seconds") == [(0.001, 1.0), (0.01, 2.0), (math.inf, 2.0)]
    assert histogram_buckets(text, "z_seconds") == []
