"""KubeClient against the embedded API server: operations, error mapping, retries, Retry-After."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent.kube import EVENTS, VMIMS, VMIS, VMS, ApiError, KubeClient, error_from_response
from agent.kubevirt import LABEL_VMI_NAME
from agent.names import LABEL_MANAGED_BY
from simulator.apiserver import ApiServer, FaultRule
from tests.agent_io.conftest import create_vm


def errors(kube: KubeClient) -> list[tuple[str, int]]:
    return kube.errors  # type: ignore[attr-defined,no-any-return]


async def test_create_vmim_shape(kube: KubeClient, server: ApiServer) -> None:
    vmim = await kube.create_vmim("default", "vm-1")
    meta = vmim["metadata"]
    assert meta["name"].startswith("hotplug-vm-1-") and len(meta["name"]) > len("hotplug-vm-1-")
    assert meta["labels"] == {LABEL_MANAGED_BY: "hotplug-agent", LABEL_VMI_NAME: "vm-1"}
    assert vmim["spec"] == {"vmiName": "vm-1"}
    ours, _ = await kube.list_objects(VMIMS, label_selector=f"{LABEL_MANAGED_BY}=hotplug-agent")
    assert [v["metadata"]["name"] for v in ours] == [meta["name"]]
    others, _ = await kube.list_objects(VMIMS, label_selector=f"{LABEL_MANAGED_BY}=someone-else")
    assert others == []
    await kube.delete_vmim("default", meta["name"])
    await kube.delete_vmim("default", meta["name"])  # already gone: not an error
    assert (await kube.list_objects(VMIMS))[0] == []


async def test_get_vmi_missing_is_none(kube: KubeClient) -> None:
    assert await kube.get(VMIS, "default", "nope") is None
    body = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "there", "namespace": "default"},
        "spec": {"domain": {"devices": {}}},
    }
    await kube.create(VMIS, "default", body)
    got = await kube.get(VMIS, "default", "there")
    assert got is not None and got["metadata"]["name"] == "there"


async def test_error_mapping_conflict_and_not_found(kube: KubeClient) -> None:
    created = await create_vm(kube, "a")
    stale = dict(created)
    await kube.merge_patch(VMS, "default", "a", {"metadata": {"labels": {"x": "1"}}})
    with pytest.raises(ApiError) as info:
        await kube.replace(VMS, "default", "a", stale)
    err = info.value
    assert (err.status, err.reason, err.verb, err.resource) == (409, "Conflict", "update", "virtualmachines")
    assert err.message and err.retry_after is None and not err.retryable
    with pytest.raises(ApiError) as info:
        await kube.merge_patch(VMS, "default", "missing", {"metadata": {"labels": {"x": "1"}}})
    assert (info.value.status, info.value.reason, info.value.verb) == (404, "NotFound", "patch")
    with pytest.raises(ApiError) as info:
        await kube.create(VMS, "default", created)
    assert info.value.status == 409 and info.value.reason == "AlreadyExists"
    assert (
        ("update", 409) in errors(kube) and ("patch", 404) in errors(kube) and ("create", 409) in errors(kube)
    )


async def test_merge_patch_sends_merge_content_type(kube: KubeClient, server: ApiServer) -> None:
    await create_vm(kube, "a", color="blue", keep="yes")
    patched = await kube.merge_patch(VMS, "default", "a", {"metadata": {"labels": {"color": "red"}}})
    assert patched["metadata"]["labels"] == {"color": "red", "keep": "yes"}


async def test_429_retry_after_is_honoured(kube: KubeClient, server: ApiServer) -> None:
    await create_vm(kube, "a")
    server.faults.add(
        FaultRule(
            verbs=("get",),
            resources=("virtualmachines",),
            error_rate=1.0,
            error_codes=(429,),
            retry_after=1,
            remaining=1,
        )
    )
    t0 = time.monotonic()
    got = await kube.get(VMS, "default", "a")
    elapsed = time.monotonic() - t0
    assert got is not None
    assert elapsed >= 0.95, f"retried after {elapsed:.2f}s, before Retry-After (1 s)"
    assert errors(kube) == [("get", 429)]


async def test_429_surfaces_retry_after_when_attempts_run_out(kube: KubeClient, server: ApiServer) -> None:
    kube.retry_attempts = 1
    server.faults.add(FaultRule(verbs=("list",), error_rate=1.0, error_codes=(429,), retry_after=7))
    with pytest.raises(ApiError) as info:
        await kube.list_objects(VMS)
    assert info.value.status == 429 and info.value.retry_after == 7.0 and info.value.nothing_done


async def test_5xx_retried_for_idempotent_verbs(kube: KubeClient, server: ApiServer) -> None:
    server.faults.add(FaultRule(verbs=("list",), error_rate=1.0, error_codes=(500, 503), remaining=3))
    items, rv = await kube.list_objects(VMS)
    assert items == [] and rv
    assert [e for e in errors(kube)] == [("list", errors(kube)[i][1]) for i in range(3)]


async def test_create_not_retried_on_500_but_on_503_and_429(kube: KubeClient, server: ApiServer) -> None:
    rule = server.faults.add(
        FaultRule(
            verbs=("create",), resources=("virtualmachineinstancemigrations",), error_rate=1.0, remaining=1
        )
    )
    with pytest.raises(ApiError) as info:
        await kube.create_vmim("default", "vm-1")
    assert info.value.status == 500 and info.value.verb == "create"
    assert server.request_counts[("create", "virtualmachineinstancemigrations")] == 1
    server.faults.remove(rule)
    server.faults.add(
        FaultRule(
            verbs=("create",),
            resources=("virtualmachineinstancemigrations",),
            error_rate=1.0,
            error_codes=(503,),
            remaining=1,
        )
    )
    await kube.create_vmim("default", "vm-1")
    assert server.request_counts[("create", "virtualmachineinstancemigrations")] == 3
    assert errors(kube) == [("create", 500), ("create", 503)]


async def test_client_timeout_becomes_status_0(kube: KubeClient, server: ApiServer) -> None:
    kube.request_timeout = 0.2
    kube.retry_attempts = 2
    server.faults.add(FaultRule(verbs=("get",), latency=1.0))
    t0 = time.monotonic()
    with pytest.raises(ApiError) as info:
        await kube.get(VMS, "default", "a")
    assert info.value.status == 0 and info.value.reason == "Timeout" and info.value.retryable
    assert time.monotonic() - t0 < 1.0
    assert errors(kube) == [("get", 0), ("get", 0)]


async def test_connection_refused_is_status_0(kube: KubeClient, server: ApiServer) -> None:
    kube.retry_attempts = 1
    await server.stop()
    with pytest.raises(ApiError) as info:
        await kube.list_objects(VMS)
    assert info.value.status == 0 and info.value.retryable


async def test_create_event_on_vm(kube: KubeClient, server: ApiServer) -> None:
    vm = await create_vm(kube, "web")
    uid = vm["metadata"]["uid"]
    await kube.create_event(
        ("VirtualMachine", "default", "web", uid), "Warning", "HotplugBlocked", "x" * 5000
    )
    items, _ = await kube.list_objects(EVENTS, "default")
    assert len(items) == 1
    ev = items[0]
    assert ev["metadata"]["name"].startswith("web.")
    assert ev["involvedObject"] == {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "namespace": "default",
        "name": "web",
        "uid": uid,
    }
    assert (ev["type"], ev["reason"], ev["count"]) == ("Warning", "HotplugBlocked", 1)
    assert len(ev["message"]) == 1024
    assert ev["source"] == {"component": "hotplug-agent"} and ev["reportingComponent"] == "hotplug-agent"


def test_error_from_status_body_and_headers() -> None:
    body = (
        b'{"kind":"Status","status":"Failure","reason":"TooManyRequests","message":"slow down",'
        b'"details":{"retryAfterSeconds":3},"code":429}'
    )
    err = error_from_response(429, body, {}, "create", "virtualmachineinstancemigrations")
    assert (err.status, err.reason, err.message, err.retry_after) == (
        429,
        "TooManyRequests",
        "slow down",
        3.0,
    )
    err = error_from_response(503, b"<html>oops", {"Retry-After": "2"}, "get", "leases")
    assert (err.reason, err.retry_after, err.nothing_done) == ("ServiceUnavailable", 2.0, True)
    assert "oops" in err.message


async def test_watch_http_410_raises_api_error(kube: KubeClient, server: ApiServer) -> None:
    server.faults.force_expired("virtualmachines", count=1)
    await create_vm(kube, "a")
    with pytest.raises(ApiError) as info:
        async with kube.watch(VMS, None, "1", timeout_seconds=5, inactivity_timeout=5) as events:
            async for event in events:
                if event["type"] == "ERROR":
                    raise ApiError(
                        event["object"]["code"], "from event", "", None, "watch", "virtualmachines"
                    )
    assert info.value.status == 410


async def test_vmims_resource_path() -> None:
    assert VMIMS.path("ns", "x") == "/apis/kubevirt.io/v1/namespaces/ns/virtualmachineinstancemigrations/x"
    assert EVENTS.path("ns") == "/api/v1/namespaces/ns/events"
    assert VMS.path(None) == "/apis/kubevirt.io/v1/virtualmachines"
    await asyncio.sleep(0)


async def test_list_pages_share_one_resource_version(kube: KubeClient, server: ApiServer) -> None:
    for i in range(5):
        await create_vm(kube, f"vm-{i}")
    pages = [(len(items), rv) async for items, rv in kube.list_pages(VMS, "default", page_size=2)]
    assert [n for n, _ in pages] == [2, 2, 1]
    assert len({rv for _, rv in pages}) == 1
    assert server.request_counts[("list", "virtualmachines")] == 3
    items, rv = await kube.list_objects(VMS, None, page_size=2)
    assert sorted(i["metadata"]["name"] for i in items) == [f"vm-{i}" for i in range(5)] and rv
