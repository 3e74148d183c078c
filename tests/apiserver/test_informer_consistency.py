"""The guarantee informers rely on: LIST + WATCH from the list RV reconstructs the store exactly,
also across watch breaks resumed from the last seen RV (incl. bookmarks)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from kubernetes_asyncio import watch
from kubernetes_asyncio.client import ApiClient, CustomObjectsApi

from simulator.apiserver import ApiServer
from simulator.manifests import vm_manifest
from tests.apiserver.conftest import KV


async def _random_ops(server: ApiServer, rng: random.Random, n: int) -> None:
    names = [f"vm{i}" for i in range(15)]
    for _ in range(n):
        name = rng.choice(names)
        cur = server.store.try_get("vm", "default", name)
        op = rng.random()
        if cur is None:
            m = vm_manifest(None, name, labels={"app": rng.choice(["a", "b"])})
            if rng.random() < 0.3:
                m["metadata"]["finalizers"] = ["test/f"]  # type: ignore[index]
            await server.store.create("vm", m, "default")
        elif cur["metadata"].get("deletionTimestamp"):
            await server.store.patch("vm", "default", name, {"metadata": {"finalizers": None}})
        elif op < 0.4:
            await server.store.patch("vm", "default", name, {"spec": {"n": rng.randint(0, 5)}})
        elif op < 0.6:
            await server.store.patch(
                "vm", "default", name, {"status": {"s": rng.randint(0, 5)}}, subresource="status"
            )
        else:
            await server.store.delete("vm", "default", name)
        if rng.random() < 0.2:
            await asyncio.sleep(0.01)


async def test_list_then_watch_with_breaks_reconstructs_state(server: ApiServer, api: ApiClient) -> None:
    rng = random.Random(7)
    co = CustomObjectsApi(api)
    await _random_ops(server, rng, 50)
    lst = await co.list_namespaced_custom_object(*KV, "default", "virtualmachines")
    cache: dict[str, dict[str, Any]] = {o["metadata"]["name"]: o for o in lst["items"]}
    rv = lst["metadata"]["resourceVersion"]
    writer = asyncio.create_task(_random_ops(server, rng, 400))
    breaks = 0
    while True:
        w = watch.Watch()
        async with w.stream(
            co.list_namespaced_custom_object,
            *KV,
            "default",
            "virtualmachines",
            resource_version=rv,
            allow_watch_bookmarks=True,
            timeout_seconds=1,
        ) as st:
            async for ev in st:
                obj = ev["raw_object"]
                if ev["type"] == "BOOKMARK":
                    rv = obj["metadata"]["resourceVersion"]
                    continue
                assert int(obj["metadata"]["resourceVersion"]) > int(rv)
                rv = obj["metadata"]["resourceVersion"]
                if ev["type"] == "DELETED":
                    cache.pop(obj["metadata"]["name"])
                else:
                    cache[obj["metadata"]["name"]] = obj
                if rng.random() < 0.02:
                    break  # client-side break: resume from the last RV
        breaks += 1
        if writer.done() and int(rv) >= server.store.resource_version:
            break
    await writer
    expected, _ = server.store.list("vm", "default")
    assert {n: o for n, o in cache.items()} == {o["metadata"]["name"]: o for o in expected}
    assert breaks > 1
