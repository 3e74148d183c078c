"""PATCH content types: merge patch, JSON patch (with test op), strategic merge, apply."""

from __future__ import annotations

import aiohttp
import pytest
from kubernetes_asyncio.client import ApiClient, CoordinationV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from simulator.apiserver import ApiServer
from simulator.manifests import vm_manifest
from tests.apiserver.conftest import KV, status_of

MERGE = "application/merge-patch+json"


async def test_merge_patch_merges_and_null_deletes(api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    m = vm_manifest(None, "mp", labels={"a": "1", "b": "2"})
    vm = await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", m)
    out = await co.patch_namespaced_custom_object(
        *KV,
        "default",
        "virtualmachines",
        "mp",
        {"metadata": {"labels": {"a": None, "c": "3"}}, "spec": {"runStrategy": "Halted"}},
        _content_type=MERGE,
    )
    assert out["metadata"]["labels"] == {"b": "2", "c": "3"}
    assert out["spec"]["runStrategy"] == "Halted"
    assert out["spec"]["template"] == m["spec"]["template"]  # type: ignore[index]
    assert int(out["metadata"]["resourceVersion"]) > int(vm["metadata"]["resourceVersion"])
    assert out["metadata"]["generation"] == 2


async def test_merge_patch_with_stale_rv_conflicts(api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    vm = await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", vm_manifest(None, "rv"))
    await co.patch_namespaced_custom_object(
        *KV, "default", "virtualmachines", "rv", {"metadata": {"labels": {"x": "1"}}}, _content_type=MERGE
    )
    with pytest.raises(ApiException) as exc:
        await co.patch_namespaced_custom_object(
            *KV,
            "default",
            "virtualmachines",
            "rv",
            {"metadata": {"resourceVersion": vm["metadata"]["resourceVersion"], "labels": {"x": "2"}}},
            _content_type=MERGE,
        )
    assert exc.value.status == 409


async def test_json_patch_ops_and_failed_test_is_422(api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    # With a label: an empty labels map is not stored (ObjectMeta's omitempty), and JSON patch needs the map.
    body = vm_manifest(None, "jp", labels={"seed": "1"})
    await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", body)
    path = "/spec/template/spec/domain/devices/interfaces"
    out = await co.patch_namespaced_custom_object(
        *KV,
        "default",
        "virtualmachines",
        "jp",
        [
            {"op": "test", "path": "/spec/runStrategy", "value": "Always"},
            {"op": "add", "path": f"{path}/-", "value": {"name": "net1", "bridge": {}}},
            {"op": "add", "path": "/metadata/labels/a~1b", "value": "x"},
            {"op": "copy", "from": "/metadata/labels/a~1b", "path": "/metadata/labels/c"},
            {"op": "remove", "path": "/metadata/labels/a~1b"},
        ],
    )  # kubernetes-asyncio picks application/json-patch+json for a list body
    interfaces = out["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"]
    assert [i["name"] for i in interfaces] == ["default", "net1"] and interfaces[-1] == {
        "name": "net1",
        "bridge": {},
    }
    assert out["metadata"]["labels"] == {"seed": "1", "c": "x"}
    before = out["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as exc:
        await co.patch_namespaced_custom_object(
            *KV,
            "default",
            "virtualmachines",
            "jp",
            [
                {"op": "test", "path": "/spec/runStrategy", "value": "Halted"},
                {"op": "replace", "path": "/spec/runStrategy", "value": "Halted"},
            ],
        )
    assert exc.value.status == 422
    assert status_of(exc.value)["reason"] == "Invalid"
    now = await co.get_namespaced_custom_object(*KV, "default", "virtualmachines", "jp")
    assert now["metadata"]["resourceVersion"] == before and now["spec"]["runStrategy"] == "Always"
    with pytest.raises(ApiException) as exc:
        await co.patch_namespaced_custom_object(
            *KV, "default", "virtualmachines", "jp", [{"op": "remove", "path": "/spec/nope"}]
        )
    assert exc.value.status == 422
    with pytest.raises(ApiException) as exc:
        await co.patch_namespaced_custom_object(
            *KV, "default", "virtualmachines", "jp", [{"op": "frobnicate", "path": "/spec"}]
        )
    assert exc.value.status == 400


async def _raw_patch(
    server: ApiServer, path: str, body: bytes, content_type: str
) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as s,
        s.patch(server.url + path, data=body, headers={"Content-Type": content_type}) as r,
    ):
        return r.status, await r.json()


async def test_strategic_merge_is_415_on_custom_resources(server: ApiServer, api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", vm_manifest(None, "smp"))
    code, st = await _raw_patch(
        server,
        "/apis/kubevirt.io/v1/namespaces/default/virtualmachines/smp",
        b'{"spec":{"runStrategy":"Halted"}}',
        "application/strategic-merge-patch+json",
    )
    assert code == 415
    assert st["kind"] == "Status" and st["reason"] == "UnsupportedMediaType" and st["code"] == 415


async def test_server_side_apply_approximation(server: ApiServer) -> None:
    path = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines/ssa"
    manifest = (
        b"apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata:\n  name: ssa\n"
        b"spec:\n  runStrategy: Always\n"
    )
    code, st = await _raw_patch(server, path, manifest, "application/apply-patch+yaml")
    assert code == 422 and st["details"]["causes"][0]["field"] == "fieldManager"  # type: ignore[index]
    code, obj = await _raw_patch(server, path + "?fieldManager=me", manifest, "application/apply-patch+yaml")
    assert code == 201 and obj["spec"] == {"runStrategy": "Always"}
    code, obj = await _raw_patch(
        server,
        path + "?fieldManager=me",
        manifest.replace(b"Always", b"Halted"),
        "application/apply-patch+yaml",
    )
    assert code == 200 and obj["spec"] == {"runStrategy": "Halted"}
    assert [(m["manager"], m["operation"]) for m in obj["metadata"]["managedFields"]] == [("me", "Apply")]  # type: ignore[index]


async def test_strategic_merge_accepted_for_builtins(api: ApiClient) -> None:
    coord = CoordinationV1Api(api)
    await coord.create_namespaced_lease(
        "default", {"metadata": {"name": "l"}, "spec": {"holderIdentity": "a"}}
    )
    out = await coord.patch_namespaced_lease("l", "default", {"spec": {"leaseDurationSeconds": 9}})
    # kubernetes-asyncio sends a dict to typed APIs as strategic merge patch
    assert out.spec.lease_duration_seconds == 9 and out.spec.holder_identity == "a"


async def test_status_patch_on_vm_changes_only_status(api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", vm_manifest(None, "st"))
    out = await co.patch_namespaced_custom_object_status(
        *KV,
        "default",
        "virtualmachines",
        "st",
        {"spec": {"runStrategy": "Halted"}, "metadata": {"labels": {"z": "1"}}, "status": {"ready": True}},
        _content_type=MERGE,
    )
    assert out["status"] == {"ready": True}
    assert out["spec"]["runStrategy"] == "Always"
    assert "labels" not in out["metadata"]
    # ... and a main-resource patch cannot touch status.
    out = await co.patch_namespaced_custom_object(
        *KV, "default", "virtualmachines", "st", {"status": {"ready": False}}, _content_type=MERGE
    )
    assert out["status"] == {"ready": True}
