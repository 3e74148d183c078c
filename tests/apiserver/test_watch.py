"""Watch semantics through kubernetes_asyncio.watch.Watch."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from kubernetes_asyncio import watch
from kubernetes_asyncio.client import ApiClient, CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from simulator.apiserver import ApiServer
from simulator.manifests import vm_manifest
from tests.apiserver.conftest import KV


async def _collect(co: CustomObjectsApi, n: int, within: float = 5.0, **kw: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    w = watch.Watch()
    async with asyncio.timeout(within):
        async with w.stream(co.list_namespaced_custom_object, *KV, "default", "virtualmachines", **kw) as st:
            async for ev in st:
                events.append(ev)
                if len(events) >= n:
                    break
    return events


async def test_watch_from_rv_replays_history_then_streams_live(api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", vm_manifest(None, "before"))
    lst = await co.list_namespaced_custom_object(*KV, "default", "virtualmachines")
    rv = lst["metadata"]["resourceVersion"]
    await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", vm_manifest(None, "a"))
    await co.patch_namespaced_custom_object(
        *KV,
        "default",
        "virtualmachines",
        "a",
        {"metadata": {"labels": {"x": "1"}}},
        _content_type="application/merge-patch+json",
    )

    async def later() -> None:
        await asyncio.sleep(0.2)
        await co.delete_namespaced_custom_object(*KV, "default", "virtualmachines", "a")

    task = asyncio.create_task(later())
    events = await _collect(co, 3, resource_version=rv)
    await task
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"),
        ("MODIFIED", "a"),
        ("DELETED", "a"),
    ]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(rv)


async def test_watch_without_rv_starts_with_synthetic_added(api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    for n in ("x", "y"):
        await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", vm_manifest(None, n))
    events = await _collect(co, 2)
    assert sorted((e["type"], e["object"]["metadata"]["name"]) for e in events) == [
        ("ADDED", "x"),
        ("ADDED", "y"),
    ]


async def test_watch_timeout_seconds_ends_stream_cleanly(api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    t0 = time.monotonic()
    events = await _collect(co, 100, within=10, timeout_seconds=1, resource_version="1")
    elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 3
    assert [e["type"] for e in events] == []


async def test_bookmarks_carry_current_rv(server: ApiServer, api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", vm_manifest(None, "b"))
    w = watch.Watch()
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(5):
        async with w.stream(
            co.list_namespaced_custom_object,
            *KV,
            "default",
            "virtualmachines",
            resource_version=str(server.store.resource_version),
            allow_watch_bookmarks=True,
            timeout_seconds=3,
        ) as st:
            async for ev in st:
                got.append(ev)
                if ev["type"] == "BOOKMARK":
                    break
    bm = got[-1]
    assert bm["type"] == "BOOKMARK"
    assert bm["raw_object"]["kind"] == "VirtualMachine"
    assert bm["raw_object"]["apiVersion"] == "kubevirt.io/v1"
    assert bm["raw_object"]["metadata"]["resourceVersion"] == str(server.store.resource_version)
    assert w.resource_version == str(server.store.resource_version)


async def test_no_bookmarks_unless_asked(server: ApiServer, api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    events = await _collect(co, 100, timeout_seconds=1, resource_version=str(server.store.resource_version))
    assert events == []


async def test_compacted_rv_is_410_expired(server: ApiServer, api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", vm_manifest(None, "old"))
    old_rv = "1"
    server.compact()
    with pytest.raises(ApiException) as exc:
        await _collect(co, 1, resource_version=old_rv)
    assert exc.value.status == 410
    assert "Expired: too old resource version: 1" in str(exc.value.reason)


async def test_history_ring_buffer_overflow_expires_old_rvs(api: ApiClient, server: ApiServer) -> None:
    co = CustomObjectsApi(api)
    start = server.store.resource_version
    for i in range(1005):  # history_size=1000 in the fixture
        await server.store.create("vm", vm_manifest(None, f"vm{i}"), "default")
    with pytest.raises(ApiException) as exc:
        await _collect(co, 1, resource_version=str(start))
    assert exc.value.status == 410
    # Still-kept RVs resume fine.
    recent = str(server.store.resource_version - 3)
    events = await _collect(co, 3, resource_version=recent)
    assert [e["object"]["metadata"]["name"] for e in events] == ["vm1002", "vm1003", "vm1004"]


async def test_watch_label_selector_and_leaving_selector_is_deleted(
    api: ApiClient, server: ApiServer
) -> None:
    co = CustomObjectsApi(api)
    rv = str(server.store.resource_version)
    await co.create_namespaced_custom_object(
        *KV, "default", "virtualmachines", vm_manifest(None, "m", labels={"app": "web"})
    )
    await co.create_namespaced_custom_object(
        *KV, "default", "virtualmachines", vm_manifest(None, "n", labels={"app": "db"})
    )
    await co.patch_namespaced_custom_object(
        *KV,
        "default",
        "virtualmachines",
        "m",
        {"metadata": {"labels": {"app": "other"}}},
        _content_type="application/merge-patch+json",
    )
    events = await _collect(co, 2, resource_version=rv, label_selector="app=web")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "m"),
        ("DELETED", "m"),
    ]


async def test_watch_core_typed_namespaces(api: ApiClient) -> None:
    core = CoreV1Api(api)
    w = watch.Watch()
    names = []
    async with asyncio.timeout(5):
        async with w.stream(core.list_namespace, timeout_seconds=2) as st:
            async for ev in st:
                names.append(ev["object"].metadata.name)
                if len(names) == 2:
                    break
    assert sorted(names) == ["default", "kube-system"]


async def test_stop_closes_open_watches_promptly(kubeconfig: Any) -> None:
    from kubernetes_asyncio.config import new_client_from_config

    srv = ApiServer()
    await srv.start()
    path = srv.write_kubeconfig(kubeconfig.parent / "kc2")
    client = await new_client_from_config(config_file=str(path))
    co = CustomObjectsApi(client)
    w = watch.Watch()

    async def consume() -> None:
        async with w.stream(
            co.list_namespaced_custom_object, *KV, "default", "virtualmachines", timeout_seconds=60
        ) as st:
            async for _ in st:
                pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.2)
    t0 = time.monotonic()
    await srv.stop()
    async with asyncio.timeout(3):
        await task
    assert time.monotonic() - t0 < 2
    await client.close()


async def test_idle_watch_of_departed_client_is_unregistered(server: ApiServer) -> None:
    import aiohttp

    url = server.url + "/apis/kubevirt.io/v1/virtualmachines?watch=true&resourceVersion=1"
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.status == 200
        await asyncio.sleep(0.1)
        assert len(server.store.watchers()) == 1
    for _ in range(30):
        if not server.store.watchers():
            break
        await asyncio.sleep(0.1)
    assert server.store.watchers() == []
