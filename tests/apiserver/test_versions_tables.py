"""kubevirt.io/v1alpha3 (served, not stored) and server-side Tables from the CRDs' printer columns."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from kubernetes_asyncio import watch
from kubernetes_asyncio.client import ApiClient, CustomObjectsApi

from simulator.apiserver import ApiServer
from simulator.apiserver.table import json_path
from simulator.manifests import vm_manifest
from tests.apiserver.conftest import KV

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


async def test_v1alpha3_shares_storage_with_v1(server: ApiServer, api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    rv = str(server.store.resource_version)
    old = await co.create_namespaced_custom_object(
        "kubevirt.io",
        "v1alpha3",
        "default",
        "virtualmachines",
        {**vm_manifest(None, "legacy"), "apiVersion": "kubevirt.io/v1alpha3"},
    )
    assert old["apiVersion"] == "kubevirt.io/v1alpha3"
    new = await co.get_namespaced_custom_object(*KV, "default", "virtualmachines", "legacy")
    assert new["apiVersion"] == "kubevirt.io/v1"
    assert server.store.get("vm", "default", "legacy")["apiVersion"] == "kubevirt.io/v1"  # stored as v1
    patched = await co.patch_namespaced_custom_object(
        "kubevirt.io",
        "v1alpha3",
        "default",
        "virtualmachines",
        "legacy",
        {"metadata": {"labels": {"x": "1"}}},
        _content_type="application/merge-patch+json",
    )
    assert patched["apiVersion"] == "kubevirt.io/v1alpha3" and patched["metadata"]["labels"]["x"] == "1"
    listed = await co.list_namespaced_custom_object("kubevirt.io", "v1alpha3", "default", "virtualmachines")
    assert listed["apiVersion"] == "kubevirt.io/v1alpha3"
    assert [o["apiVersion"] for o in listed["items"]] == ["kubevirt.io/v1alpha3"]

    async def collect(version: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        w = watch.Watch()
        async with asyncio.timeout(5):
            async with w.stream(
                co.list_namespaced_custom_object,
                "kubevirt.io",
                version,
                "default",
                "virtualmachines",
                resource_version=rv,
                timeout_seconds=1,
            ) as st:
                async for ev in st:
                    out.append((ev["type"], ev["raw_object"]["apiVersion"]))
        return out

    assert await collect("v1alpha3") == [
        ("ADDED", "kubevirt.io/v1alpha3"),
        ("MODIFIED", "kubevirt.io/v1alpha3"),
    ]
    assert await collect("v1") == [("ADDED", "kubevirt.io/v1"), ("MODIFIED", "kubevirt.io/v1")]


async def test_discovery_lists_both_versions(server: ApiServer) -> None:
    async with aiohttp.ClientSession() as s, s.get(server.url + "/apis/kubevirt.io") as r:
        group = await r.json()
    assert [v["version"] for v in group["versions"]] == ["v1", "v1alpha3"]
    assert group["preferredVersion"]["version"] == "v1"


async def test_table_cells_follow_printer_columns(server: ApiServer) -> None:
    await server.store.create(
        "vmi",
        {
            "metadata": {"name": "t"},
            "spec": {},
            "status": {
                "phase": "Running",
                "nodeName": "node01",
                "interfaces": [{"ipAddress": "10.0.0.7"}],
                "conditions": [
                    {"type": "LiveMigratable", "status": "True"},
                    {"type": "Ready", "status": "True"},
                ],
            },
        },
        "default",
    )
    async with (
        aiohttp.ClientSession() as s,
        s.get(
            server.url + "/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances",
            headers={"Accept": TABLE},
        ) as r,
    ):
        table: dict[str, Any] = await r.json()
    names = [c["name"] for c in table["columnDefinitions"]]
    cells = dict(zip(names, table["rows"][0]["cells"], strict=True))
    assert cells["Name"] == "t" and cells["Phase"] == "Running" and cells["IP"] == "10.0.0.7"
    assert cells["NodeName"] == "node01" and cells["Ready"] == "True" and cells["Live-Migratable"] == "True"
    assert cells["Paused"] is None
    assert cells["Age"].endswith("s")


def test_json_path_subset() -> None:
    obj = {"a": {"b": [{"t": "x", "v": 1}, {"t": "y", "v": 2}]}}
    assert json_path(obj, ".a.b[1].v") == 2
    assert json_path(obj, ".a.b[?(@.t=='y')].v") == 2
    assert json_path(obj, ".a.b[*].t") == "x"
    assert json_path(obj, ".a.c") is None
    assert json_path(obj, ".a.b[5]") is None
