"""The API request metrics, measured where every request passes (``KubeClient._send``), against the
embedded API server over real HTTP: each attempt is counted once by verb, resource and code (retries
included, watches too), and its latency lands in the histogram by verb."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.kube import EVENTS, LEASES, VMIMS, VMS, ApiError, KubeClient
from agent.startup import connect
from metrics.definitions import HotplugMetrics
from simulator.apiserver import ApiServer, FaultRule
from tests.apiserver_fixtures import kubeconfig, server  # noqa: F401 - fixtures

REQUESTS = "hotplug_agent_rest_client_requests_total"
DURATION = "hotplug_agent_rest_client_request_duration_seconds"


def requests(m: HotplugMetrics) -> dict[tuple[str, str, str], float]:
    """Every non-zero (verb, resource, code) count."""
    out = {}
    for family in m.registry.collect():
        for sample in family.samples:
            if sample.name == REQUESTS and sample.value:
                labels = sample.labels
                out[(labels["verb"], labels["resource"], labels["code"])] = sample.value
    return out


@pytest.fixture
async def measured(kubeconfig: Path) -> AsyncIterator[tuple[KubeClient, HotplugMetrics]]:  # noqa: F811
    metrics = HotplugMetrics()
    client = await connect(
        str(kubeconfig),
        request_timeout=5.0,
        retry_initial=0.01,
        retry_max=0.05,
        on_api_error=metrics.record_api_error,
        on_request=metrics.observe_api_request,
    )
    try:
        yield client, metrics
    finally:
        await client.close()


async def test_each_request_counted_by_verb_resource_and_code(
    measured: tuple[KubeClient, HotplugMetrics],
    server: ApiServer,  # noqa: F811
) -> None:
    kube, m = measured
    await kube.list_objects(VMS, "default")
    vmim = await kube.create_vmim("default", "vm-1")
    await kube.delete_vmim("default", vmim["metadata"]["name"])
    await kube.delete_vmim("default", vmim["metadata"]["name"])  # 404: already gone
    assert await kube.get_lease("default", "nope") is None
    await kube.create_event(("VirtualMachine", "default", "vm-1", "uid-1"), "Normal", "Test", "hello")
    async with kube.watch(VMS, "default", "", timeout_seconds=1, inactivity_timeout=5) as events:
        async for _event in events:
            break
    assert requests(m) == {
        ("list", VMS.plural, "200"): 1,
        ("create", VMIMS.plural, "201"): 1,
        ("delete", VMIMS.plural, "200"): 1,
        ("delete", VMIMS.plural, "404"): 1,
        ("get", LEASES.plural, "404"): 1,
        ("create", EVENTS.plural, "201"): 1,
        ("watch", VMS.plural, "200"): 1,
    }
    value = m.registry.get_sample_value
    assert value(f"{DURATION}_count", {"verb": "delete"}) == 2
    assert value(f"{DURATION}_count", {"verb": "update"}) == 0
    assert (value(f"{DURATION}_sum", {"verb": "list"}) or 0) > 0
    # The error counter beside it sees only the failures.
    assert value("hotplug_agent_api_errors_total", {"verb": "delete", "code": "404"}) == 1


async def test_every_retry_is_a_request(
    measured: tuple[KubeClient, HotplugMetrics],
    server: ApiServer,  # noqa: F811
) -> None:
    kube, m = measured
    server.faults.add(FaultRule(verbs=("list",), error_rate=1.0, error_codes=(503,), remaining=2))
    await kube.list_objects(VMS, "default")
    assert requests(m) == {("list", VMS.plural, "503"): 2, ("list", VMS.plural, "200"): 1}


async def test_no_answer_is_code_network(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    srv = ApiServer()
    await srv.start()
    path = srv.write_kubeconfig(tmp_path / "kubeconfig")
    await srv.stop()
    text = path.read_text()
    path.write_text(text.replace(srv.url, f"http://127.0.0.1:{port}"))
    m = HotplugMetrics()
    kube = await connect(
        str(path), request_timeout=2.0, retry_attempts=2, retry_initial=0.01, on_request=m.observe_api_request
    )
    try:
        with pytest.raises(ApiError) as info:
            await kube.list_objects(VMS, "default")
        assert info.value.status == 0
    finally:
        await kube.close()
    assert requests(m) == {("list", VMS.plural, "network"): 2}
