"""Built-in resources the simulation uses: events (both groups), nodes, namespaces."""

from __future__ import annotations

import pytest
from kubernetes_asyncio.client import ApiClient, CoreV1Api, CustomObjectsApi, EventsV1Api
from kubernetes_asyncio.client.exceptions import ApiException

from simulator.apiserver import AdmissionRequest, ApiServer
from simulator.manifests import vm_manifest
from tests.apiserver.conftest import KV, status_of


async def test_core_and_events_k8s_io_events_are_separate_resources(api: ApiClient) -> None:
    core = CoreV1Api(api)
    ev = EventsV1Api(api)
    await core.create_namespaced_event(
        "default",
        {
            "metadata": {"generateName": "vm1."},
            "involvedObject": {"kind": "VirtualMachine", "name": "vm1", "namespace": "default"},
            "reason": "Migrating",
            "message": "hot plug",
            "type": "Normal",
        },
    )
    await ev.create_namespaced_event(
        "default",
        {
            "metadata": {"name": "e2"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "hotplug-agent",
            "reportingInstance": "x",
            "action": "Migrate",
            "reason": "Started",
            "type": "Normal",
            "regarding": {"kind": "VirtualMachine", "name": "vm1", "namespace": "default"},
        },
    )
    core_events = (
        await core.list_namespaced_event("default", field_selector="involvedObject.name=vm1")
    ).items
    assert [e.reason for e in core_events] == ["Migrating"]
    assert core_events[0].metadata.name.startswith("vm1.")
    new_events = (await ev.list_namespaced_event("default")).items
    assert [e.metadata.name for e in new_events] == ["e2"]


async def test_nodes_are_cluster_scoped_and_keep_status_on_create(api: ApiClient) -> None:
    core = CoreV1Api(api)
    node = await core.create_node(
        {
            "metadata": {"name": "node01", "labels": {"kubevirt.io/schedulable": "true"}},
            "status": {"allocatable": {"cpu": "8"}},
        }
    )
    assert node.metadata.namespace is None and node.status.allocatable == {"cpu": "8"}
    nodes = await core.list_node(label_selector="kubevirt.io/schedulable=true")
    assert [n.metadata.name for n in nodes.items] == ["node01"]


async def test_namespace_delete_removes_contents(server: ApiServer, api: ApiClient) -> None:
    core = CoreV1Api(api)
    co = CustomObjectsApi(api)
    await core.create_namespace({"metadata": {"name": "gone"}})
    await co.create_namespaced_custom_object(*KV, "gone", "virtualmachines", vm_manifest(None, "v"))
    await core.delete_namespace("gone")
    with pytest.raises(ApiException) as exc:
        await co.get_namespaced_custom_object(*KV, "gone", "virtualmachines", "v")
    assert exc.value.status == 404
    assert server.store.try_get("namespaces", None, "gone") is None


async def test_crashing_hook_is_500_not_a_dead_server(server: ApiServer, api: ApiClient) -> None:
    async def broken(req: AdmissionRequest) -> None:
        raise RuntimeError("boom")

    server.add_admission(broken)
    co = CustomObjectsApi(api)
    with pytest.raises(ApiException) as exc:
        await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", vm_manifest(None, "x"))
    assert exc.value.status == 500
    assert "boom" in str(status_of(exc.value)["message"])
    assert server.store.try_get("vm", "default", "x") is None


async def test_in_process_create_copies_input(server: ApiServer) -> None:
    body = vm_manifest(None, "copy")
    stored = await server.store.create("vm", body, "default")
    body["spec"] = {"mutated": True}
    assert server.store.get("vm", "default", "copy")["spec"] == stored["spec"] != {"mutated": True}


async def test_event_validation_rules(api: ApiClient) -> None:
    core = CoreV1Api(api)
    with pytest.raises(ApiException) as exc:
        await core.create_namespaced_event(
            "default",
            {
                "metadata": {"name": "x"},
                "involvedObject": {"kind": "VirtualMachine", "name": "v", "namespace": "other"},
            },
        )
    assert exc.value.status == 422 and "involvedObject.namespace" in str(status_of(exc.value)["message"])
    ev = EventsV1Api(api)
    with pytest.raises(ApiException) as exc:
        await ev.create_namespaced_event(
            "default", {"metadata": {"name": "n"}, "reason": "R", "type": "Normal", "note": "no eventTime"}
        )
    assert exc.value.status == 422


async def test_unknown_dry_run_value_is_422_and_stores_nothing(server: ApiServer, api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    with pytest.raises(ApiException) as exc:
        await co.create_namespaced_custom_object(
            *KV, "default", "virtualmachines", vm_manifest(None, "d"), dry_run="Bogus"
        )
    assert exc.value.status == 422
    assert status_of(exc.value)["details"]["causes"][0]["field"] == "dryRun"  # type: ignore[index]
    assert server.store.try_get("vm", "default", "d") is None
