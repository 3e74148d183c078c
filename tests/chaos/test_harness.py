"""The harness itself: proxy attribution, metrics parsing, and replica lifecycle with leader failover.

These need only the agent's I/O layer (``hotplug-agent run`` with informers, probes and leader
election), not its controller.
"""

from __future__ import annotations

from kubernetes_asyncio.client import CustomObjectsApi
from kubernetes_asyncio.config import new_client_from_config

from simulator.testing import Metrics, SimHarness, classify, wait_until
from tests.chaos.scenario import FAST_AGENT, cluster_config, leader_of


def test_classify_names_requests_like_the_api_server() -> None:
    assert classify("GET", "/apis/kubevirt.io/v1/virtualmachineinstances", "watch=true") == (
        "watch",
        "virtualmachineinstances",
        "",
        "",
    )
    assert classify("GET", "/apis/kubevirt.io/v1/namespaces/a/virtualmachines", "limit=500")[0] == "list"
    assert classify("POST", "/apis/kubevirt.io/v1/namespaces/a/virtualmachineinstancemigrations", "") == (
        "create",
        "virtualmachineinstancemigrations",
        "a",
        "",
    )
    assert classify("PUT", "/apis/coordination.k8s.io/v1/namespaces/d/leases/l", "")[:2] == (
        "update",
        "leases",
    )
    assert classify("GET", "/api/v1/namespaces/x", "") == ("get", "namespaces", "", "x")
    assert classify("GET", "/api/v1/namespaces", "")[0] == "list"


def test_metrics_parse_sums_and_labels() -> None:
    m = Metrics.parse(
        "# TYPE hotplug_agent_blocked_vms gauge\n"
        'hotplug_agent_blocked_vms{reason="opted-out"} 2\n'
        'hotplug_agent_blocked_vms{reason="slots-exhausted"} 1\n'
        "# TYPE hotplug_agent_leader gauge\nhotplug_agent_leader 1\n"
    )
    assert m.sum("hotplug_agent_blocked_vms") == 3
    assert m.get("hotplug_agent_blocked_vms", reason="opted-out") == 2
    assert m.by_label("hotplug_agent_blocked_vms", "reason")["slots-exhausted"] == 1
    assert m.get("hotplug_agent_leader") == 1


async def test_proxy_attributes_one_clients_requests() -> None:
    async with SimHarness(cluster_config()) as h:
        await h.seed(3)
        proxy = await h.proxy()
        kc = proxy.write_kubeconfig(h.workdir / "proxy.kubeconfig")
        client = await new_client_from_config(config_file=str(kc))
        try:
            api = CustomObjectsApi(client)
            out = await api.list_cluster_custom_object("kubevirt.io", "v1", "virtualmachines")
            assert len(out["items"]) == 3
        finally:
            await client.close()
        assert proxy.counts()[("list", "virtualmachines")] == 1
        assert sum(proxy.counts().values()) == 1  # the simulated controllers' traffic is not counted


async def test_sigkilled_leader_fails_over_to_the_other_replica() -> None:
    """Two replicas on one Lease: one leads; SIGKILL it; the other takes over; a restart follows."""
    async with SimHarness(cluster_config()) as h:
        await h.seed(5)
        replicas = [h.agent(*FAST_AGENT, identity=n) for n in ("replica-a", "replica-b")]
        for r in replicas:
            await r.start()
        for r in replicas:
            await r.wait_ready(120)
        first = await wait_until(lambda: leader_of(replicas), 60, "a leader")
        other = next(r for r in replicas if r is not first)
        assert not await other.is_leader()
        first.kill()
        assert await first.wait_exit() != 0
        await wait_until(other.is_leader, 60, "the other replica to take the Lease")
        restarted = h.agent(*FAST_AGENT, identity=first.identity)
        await restarted.start()
        await restarted.wait_ready(120)
        assert not await restarted.is_leader()  # the survivor keeps the Lease
        assert await other.terminate() == 0
        await wait_until(restarted.is_leader, 60, "the restarted replica to lead after a clean exit")
