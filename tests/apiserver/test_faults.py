"""Fault injection (Python API and /sim admin endpoints) and observers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import watch
from kubernetes_asyncio.client import ApiClient, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from simulator.apiserver import ApiServer, FaultRule, RequestRecord
from simulator.manifests import vm_manifest
from tests.apiserver.conftest import KV, status_of


async def test_429_with_retry_after(server: ApiServer, api: ApiClient) -> None:
    server.faults.add(
        FaultRule(
            verbs=("list",), resources=("virtualmachines",), error_rate=1.0, error_codes=(429,), retry_after=7
        )
    )
    co = CustomObjectsApi(api)
    with pytest.raises(ApiException) as exc:
        await co.list_namespaced_custom_object(*KV, "default", "virtualmachines")
    assert exc.value.status == 429
    assert exc.value.headers["Retry-After"] == "7"
    st = status_of(exc.value)
    assert st["reason"] == "TooManyRequests" and st["details"] == {"retryAfterSeconds": 7}
    # other verbs and resources are untouched
    await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", vm_manifest(None, "ok"))
    await co.list_namespaced_custom_object(*KV, "default", "virtualmachineinstances")


async def test_error_rate_is_seeded_and_counted(server: ApiServer, api: ApiClient) -> None:
    rule_id = server.faults.add(FaultRule(verbs=("get",), error_rate=0.5, error_codes=(500, 503)))
    co = CustomObjectsApi(api)
    await server.store.create("vm", vm_manifest(None, "e"), "default")
    codes: list[int] = []
    for _ in range(60):
        try:
            await co.get_namespaced_custom_object(*KV, "default", "virtualmachines", "e")
            codes.append(200)
        except ApiException as exc:
            codes.append(exc.status)
            assert status_of(exc)["reason"] in ("InternalError", "ServiceUnavailable")
    assert 10 < codes.count(200) < 50
    assert codes.count(500) > 0 and codes.count(503) > 0
    assert server.request_counts[("get", "virtualmachines")] == 60
    assert server.faults.remove(rule_id)
    await co.get_namespaced_custom_object(*KV, "default", "virtualmachines", "e")


async def test_remaining_limits_injected_errors(server: ApiServer, api: ApiClient) -> None:
    server.faults.add(FaultRule(verbs=("create",), error_rate=1.0, error_codes=(503,), remaining=2))
    co = CustomObjectsApi(api)
    statuses = []
    for i in range(4):
        try:
            await co.create_namespaced_custom_object(
                *KV, "default", "virtualmachines", vm_manifest(None, f"r{i}")
            )
            statuses.append(201)
        except ApiException as exc:
            statuses.append(exc.status)
    assert statuses == [503, 503, 201, 201]


async def test_latency_with_jitter(server: ApiServer, api: ApiClient) -> None:
    server.faults.add(FaultRule(verbs=("list",), latency=0.3, jitter=0.1))
    co = CustomObjectsApi(api)
    t0 = time.perf_counter()
    await co.list_namespaced_custom_object(*KV, "default", "virtualmachines")
    assert 0.3 <= time.perf_counter() - t0 < 1.0
    t0 = time.perf_counter()
    await co.list_namespaced_custom_object(*KV, "default", "virtualmachineinstances")
    assert time.perf_counter() - t0 >= 0.3  # resources unset = every resource
    server.faults.clear()
    t0 = time.perf_counter()
    await co.list_namespaced_custom_object(*KV, "default", "virtualmachines")
    assert time.perf_counter() - t0 < 0.25


async def _open_watch(co: CustomObjectsApi, events: list[Any], rv: str) -> None:
    w = watch.Watch()
    async with w.stream(
        co.list_namespaced_custom_object,
        *KV,
        "default",
        "virtualmachines",
        resource_version=rv,
        timeout_seconds=30,
    ) as st:
        async for ev in st:
            events.append(ev)


async def test_watch_drop_abort_and_eof(server: ApiServer, api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    rv = str(server.store.resource_version)
    events: list[Any] = []
    task = asyncio.create_task(_open_watch(co, events, rv))
    await asyncio.sleep(0.2)
    assert server.faults.drop_watches("virtualmachines", mode="abort") == 1
    with pytest.raises(aiohttp.ClientError):
        await asyncio.wait_for(task, 3)
    task = asyncio.create_task(_open_watch(co, events, rv))
    await asyncio.sleep(0.2)
    assert server.faults.drop_watches(mode="eof") == 1
    await asyncio.wait_for(task, 3)  # clean end of stream: the iterator just stops
    await asyncio.sleep(0.05)
    assert server.store.watchers() == []


async def test_watch_drop_rate(server: ApiServer, api: ApiClient) -> None:
    server.faults.add(FaultRule(resources=("virtualmachines",), watch_drop_rate=5.0, drop_mode="eof"))
    co = CustomObjectsApi(api)
    t0 = time.perf_counter()
    await asyncio.wait_for(_open_watch(co, [], str(server.store.resource_version)), 5)
    assert time.perf_counter() - t0 < 4


async def test_forced_410_for_next_watch(server: ApiServer, api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    server.faults.force_expired("virtualmachines", count=1)
    rv = str(server.store.resource_version)
    with pytest.raises(ApiException) as exc:
        # with timeout_seconds the client does not retry the 410 itself
        w = watch.Watch()
        async with w.stream(
            co.list_namespaced_custom_object,
            *KV,
            "default",
            "virtualmachines",
            resource_version=rv,
            timeout_seconds=1,
        ) as st:
            async for _ in st:
                pass
    assert exc.value.status == 410
    w = watch.Watch()  # the next one works again
    async with w.stream(
        co.list_namespaced_custom_object,
        *KV,
        "default",
        "virtualmachines",
        resource_version=rv,
        timeout_seconds=1,
    ) as st:
        async for _ in st:
            pass


async def test_admin_http_endpoints(server: ApiServer, api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    async with aiohttp.ClientSession() as s:
        async with s.post(
            server.url + "/sim/faults", json={"verbs": ["get"], "error_rate": 1.0, "error_codes": [503]}
        ) as r:
            assert r.status == 201
            rule_id = (await r.json())["id"]
        async with s.get(server.url + "/sim/faults") as r:
            assert [x["id"] for x in (await r.json())["rules"]] == [rule_id]
        with pytest.raises(ApiException) as exc:
            await co.get_namespaced_custom_object(*KV, "default", "virtualmachines", "x")
        assert exc.value.status == 503
        async with s.delete(server.url + f"/sim/faults/{rule_id}") as r:
            assert r.status == 200
        with pytest.raises(ApiException) as exc:
            await co.get_namespaced_custom_object(*KV, "default", "virtualmachines", "x")
        assert exc.value.status == 404
        async with s.post(server.url + "/sim/faults", json={"bogus": 1}) as r:
            assert r.status == 400
        await server.store.create("vm", vm_manifest(None, "c1"), "default")
        async with s.post(server.url + "/sim/compact") as r:
            compacted = int((await r.json())["resourceVersion"])
        assert compacted == server.store.resource_version
        with pytest.raises(ApiException) as exc:
            await _open_watch(co, [], "1")
        assert exc.value.status == 410
        async with s.post(server.url + "/sim/watches/expire", json={"resource": "virtualmachines"}) as r:
            assert r.status == 200
        with pytest.raises(ApiException) as exc:
            await _open_watch(co, [], str(compacted))
        assert exc.value.status == 410
        task = asyncio.create_task(_open_watch(co, [], str(compacted)))
        await asyncio.sleep(0.2)
        async with s.post(server.url + "/sim/watches/drop", json={"mode": "eof"}) as r:
            assert (await r.json())["dropped"] == 1
        await asyncio.wait_for(task, 3)
        async with s.get(server.url + "/sim/requests") as r:
            counts = {(c["verb"], c["resource"]): c["count"] for c in (await r.json())["counts"]}
        assert counts[("get", "virtualmachines")] == 2


async def test_observers(server: ApiServer, api: ApiClient) -> None:
    records: list[RequestRecord] = []
    emitted: list[tuple[str, str, str, float]] = []
    server.add_request_observer(records.append)
    server.add_event_observer(lambda t, r, o, ts: emitted.append((t, r, o["metadata"]["name"], ts)))
    co = CustomObjectsApi(api)
    t0 = time.perf_counter()
    await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", vm_manifest(None, "o"))
    await co.patch_namespaced_custom_object_status(
        *KV,
        "default",
        "virtualmachines",
        "o",
        {"status": {"ready": True}},
        _content_type="application/merge-patch+json",
    )
    await co.delete_namespaced_custom_object(*KV, "default", "virtualmachines", "o")
    assert [(e[0], e[1], e[2]) for e in emitted] == [
        ("ADDED", "virtualmachines", "o"),
        ("MODIFIED", "virtualmachines", "o"),
        ("DELETED", "virtualmachines", "o"),
    ]
    assert all(e[3] >= t0 for e in emitted)
    assert [
        (r.method, r.verb, r.resource, r.namespace, r.name, r.subresource, r.status) for r in records
    ] == [
        ("POST", "create", "virtualmachines", "default", "", "", 201),
        ("PATCH", "patch", "virtualmachines", "default", "o", "status", 200),
        ("DELETE", "delete", "virtualmachines", "default", "o", "", 200),
    ]
    assert records[0].group == "kubevirt.io" and records[0].t_received >= t0


async def test_slow_watcher_is_disconnected_not_buffered() -> None:
    srv = ApiServer(watch_queue_size=10)
    await srv.start()
    try:
        host, port = srv.url.removeprefix("http://").split(":")
        _reader, writer = await asyncio.open_connection(host, int(port))
        path = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines?watch=true&resourceVersion=1"
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        for _ in range(50):
            if srv.store.watchers():
                break
            await asyncio.sleep(0.02)
        (watcher,) = srv.store.watchers()
        # A client that never reads: kernel buffers fill, then the queue, then the server cuts it off.
        big = "x" * 4000
        for i in range(3000):
            m = vm_manifest(None, f"s{i}")
            m["metadata"]["annotations"] = {"pad": big}  # type: ignore[index]
            await srv.store.create("vm", m, "default")
            if watcher.closed is not None:
                break
        assert watcher.overflowed
        await asyncio.sleep(0.1)
        assert srv.store.watchers() == []
        writer.close()
    finally:
        await srv.stop()


async def test_in_process_burst_does_not_overflow_a_reading_watcher(server: ApiServer) -> None:
    srv = ApiServer(watch_queue_size=50)
    await srv.start()
    try:
        url = srv.url + "/apis/kubevirt.io/v1/namespaces/default/virtualmachines?watch=true&resourceVersion=1"
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            for _ in range(50):
                if srv.store.watchers():
                    break
                await asyncio.sleep(0.02)
            for i in range(2000):  # a seeding loop: 40x the queue size, no explicit awaits
                await srv.store.create("vm", vm_manifest(None, f"b{i}"), "default")
            lines = 0
            async with asyncio.timeout(10):
                async for _ in r.content:
                    lines += 1
                    if lines == 2000:
                        break
            assert lines == 2000
    finally:
        await srv.stop()
