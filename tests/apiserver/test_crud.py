"""CRUD semantics through the real kubernetes-asyncio client over HTTP."""

from __future__ import annotations

import re

import pytest
from kubernetes_asyncio.client import ApiClient, CoordinationV1Api, CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from simulator.apiserver import ApiServer
from simulator.manifests import vm_manifest
from tests.apiserver.conftest import KV, status_of


async def test_create_get_assigns_metadata_and_monotonic_rv(api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    a = await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", vm_manifest(None, "a"))
    b = await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", vm_manifest(None, "b"))
    rv_a, rv_b = int(a["metadata"]["resourceVersion"]), int(b["metadata"]["resourceVersion"])
    assert rv_b > rv_a > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", a["metadata"]["creationTimestamp"])
    assert a["metadata"]["uid"] != b["metadata"]["uid"]
    assert a["metadata"]["generation"] == 1
    got = await co.get_namespaced_custom_object(*KV, "default", "virtualmachines", "a")
    assert got == a
    # A cluster-scoped write elsewhere also advances the one cluster-wide RV.
    core = CoreV1Api(api)
    ns = await core.create_namespace({"metadata": {"name": "other"}})
    assert int(ns.metadata.resource_version) > rv_b


async def test_generate_name_gets_random_suffix(api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    names = set()
    for _ in range(5):
        obj = await co.create_namespaced_custom_object(
            *KV,
            "default",
            "virtualmachineinstancemigrations",
            {"metadata": {"generateName": "hotplug-vm1-"}, "spec": {"vmiName": "vm1"}},
        )
        names.add(obj["metadata"]["name"])
    assert len(names) == 5
    for n in names:
        assert re.fullmatch(r"hotplug-vm1-[bcdfghjklmnpqrstvwxz2456789]{5}", n)


async def test_create_duplicate_is_409_already_exists(api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", vm_manifest(None, "dup"))
    with pytest.raises(ApiException) as exc:
        await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", vm_manifest(None, "dup"))
    assert exc.value.status == 409
    assert status_of(exc.value)["reason"] == "AlreadyExists"


async def test_create_in_missing_namespace_is_404(api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    with pytest.raises(ApiException) as exc:
        await co.create_namespaced_custom_object(*KV, "nope", "virtualmachines", vm_manifest(None, "x"))
    assert exc.value.status == 404
    assert status_of(exc.value)["message"] == 'namespaces "nope" not found'


async def test_generation_bumps_on_spec_change_only(api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    vm = await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", vm_manifest(None, "g"))
    vm["metadata"]["labels"] = {"x": "y"}
    vm = await co.replace_namespaced_custom_object(*KV, "default", "virtualmachines", "g", vm)
    assert vm["metadata"]["generation"] == 1  # metadata change
    vm["spec"]["runStrategy"] = "Halted"
    vm = await co.replace_namespaced_custom_object(*KV, "default", "virtualmachines", "g", vm)
    assert vm["metadata"]["generation"] == 2
    vm = await co.replace_namespaced_custom_object_status(
        *KV, "default", "virtualmachines", "g", {**vm, "status": {"ready": True}}
    )
    assert vm["metadata"]["generation"] == 2  # status change through the subresource


async def test_vmi_without_status_subresource_bumps_generation_on_status(api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    vmi = await co.create_namespaced_custom_object(
        *KV,
        "default",
        "virtualmachineinstances",
        {"metadata": {"name": "i"}, "spec": {}, "status": {"phase": "Pending"}},
    )
    assert vmi["status"] == {"phase": "Pending"}  # kept on create: no status subresource
    vmi["status"]["phase"] = "Running"
    vmi = await co.replace_namespaced_custom_object(*KV, "default", "virtualmachineinstances", "i", vmi)
    assert vmi["status"]["phase"] == "Running"
    assert vmi["metadata"]["generation"] == 2


async def test_stale_put_is_409_and_missing_rv_is_422_for_custom_resources(api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    vm = await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", vm_manifest(None, "c"))
    stale = dict(vm)
    vm["spec"]["runStrategy"] = "Halted"
    await co.replace_namespaced_custom_object(*KV, "default", "virtualmachines", "c", vm)
    with pytest.raises(ApiException) as exc:
        await co.replace_namespaced_custom_object(*KV, "default", "virtualmachines", "c", stale)
    assert exc.value.status == 409
    st = status_of(exc.value)
    assert st["reason"] == "Conflict"
    assert st["message"] == (
        'Operation cannot be fulfilled on virtualmachines.kubevirt.io "c": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    unconditional = {
        **stale,
        "metadata": {k: v for k, v in stale["metadata"].items() if k != "resourceVersion"},
    }
    unconditional["spec"] = {"runStrategy": "Manual"}
    # Custom resources do not allow unconditional updates (kube-apiserver: 422 on metadata.resourceVersion).
    with pytest.raises(ApiException) as exc:
        await co.replace_namespaced_custom_object(*KV, "default", "virtualmachines", "c", unconditional)
    assert exc.value.status == 422
    assert status_of(exc.value)["details"]["causes"][0]["field"] == "metadata.resourceVersion"  # type: ignore[index]
    # ... and a uid in the body is a precondition.
    fresh = await co.get_namespaced_custom_object(*KV, "default", "virtualmachines", "c")
    fresh["metadata"]["uid"] = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(ApiException) as exc:
        await co.replace_namespaced_custom_object(*KV, "default", "virtualmachines", "c", fresh)
    assert exc.value.status == 409
    assert "Precondition failed: UID in precondition" in str(status_of(exc.value)["message"])


async def test_builtin_put_without_rv_is_unconditional(api: ApiClient) -> None:
    coord = CoordinationV1Api(api)
    await coord.create_namespaced_lease(
        "default", {"metadata": {"name": "u"}, "spec": {"holderIdentity": "a"}}
    )
    out = await coord.replace_namespaced_lease(
        "u", "default", {"metadata": {"name": "u"}, "spec": {"holderIdentity": "b"}}
    )
    assert out.spec.holder_identity == "b"


async def test_noop_update_keeps_resource_version(api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    vm = await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", vm_manifest(None, "n"))
    again = await co.replace_namespaced_custom_object(*KV, "default", "virtualmachines", "n", vm)
    assert again["metadata"]["resourceVersion"] == vm["metadata"]["resourceVersion"]


async def test_list_cluster_wide_with_label_and_field_selectors(api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    core = CoreV1Api(api)
    await core.create_namespace({"metadata": {"name": "ns2"}})
    await co.create_namespaced_custom_object(
        *KV, "default", "virtualmachines", vm_manifest(None, "a", labels={"app": "web", "tier": "1"})
    )
    await co.create_namespaced_custom_object(
        *KV, "default", "virtualmachines", vm_manifest(None, "b", labels={"app": "db"})
    )
    await co.create_namespaced_custom_object(
        *KV, "ns2", "virtualmachines", vm_manifest(None, "c", labels={"app": "web"})
    )
    await co.create_namespaced_custom_object(*KV, "ns2", "virtualmachines", vm_manifest(None, "d"))

    async def names(**kw: str) -> list[str]:
        out = await co.list_cluster_custom_object(*KV, "virtualmachines", **kw)
        assert int(out["metadata"]["resourceVersion"]) > 0
        return [o["metadata"]["name"] for o in out["items"]]

    assert await names() == ["a", "b", "c", "d"]
    assert await names(label_selector="app=web") == ["a", "c"]
    assert await names(label_selector="app==web,tier=1") == ["a"]
    assert await names(label_selector="app!=web") == ["b", "d"]
    assert await names(label_selector="app in (db, web)") == ["a", "b", "c"]
    assert await names(label_selector="app notin (web)") == ["b", "d"]
    assert await names(label_selector="app") == ["a", "b", "c"]
    assert await names(label_selector="!app") == ["d"]
    assert await names(field_selector="metadata.namespace=ns2") == ["c", "d"]
    assert await names(field_selector="metadata.name=b") == ["b"]
    assert await names(field_selector="metadata.name!=b,metadata.namespace=default") == ["a"]
    page1 = await co.list_cluster_custom_object(*KV, "virtualmachines", limit=3)
    assert [o["metadata"]["name"] for o in page1["items"]] == ["a", "b", "c"]
    assert page1["metadata"]["remainingItemCount"] == 1
    page2 = await co.list_cluster_custom_object(
        *KV, "virtualmachines", limit=3, _continue=page1["metadata"]["continue"]
    )
    assert [o["metadata"]["name"] for o in page2["items"]] == ["d"]
    assert "continue" not in page2["metadata"]
    assert page2["metadata"]["resourceVersion"] == page1["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as exc:
        await co.list_cluster_custom_object(*KV, "virtualmachines", field_selector="spec.runStrategy=Always")
    assert exc.value.status == 400
    assert status_of(exc.value)["message"] == "field label not supported: spec.runStrategy"


async def test_list_exact_resource_version_rebuilds_history(server: ApiServer, api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    a = await co.create_namespaced_custom_object(
        *KV, "default", "virtualmachines", vm_manifest(None, "a", labels={"v": "1"})
    )
    at = a["metadata"]["resourceVersion"]
    await co.patch_namespaced_custom_object(
        *KV,
        "default",
        "virtualmachines",
        "a",
        {"metadata": {"labels": {"v": "2"}}},
        _content_type="application/merge-patch+json",
    )
    await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", vm_manifest(None, "b"))
    old = await co.list_namespaced_custom_object(
        *KV, "default", "virtualmachines", resource_version=at, resource_version_match="Exact"
    )
    assert [(o["metadata"]["name"], o["metadata"]["labels"]) for o in old["items"]] == [("a", {"v": "1"})]
    assert old["metadata"]["resourceVersion"] == at
    server.compact()
    with pytest.raises(ApiException) as exc:
        await co.list_namespaced_custom_object(
            *KV, "default", "virtualmachines", resource_version=at, resource_version_match="Exact"
        )
    assert exc.value.status == 410
    assert status_of(exc.value)["message"] == "The resourceVersion for the provided list is too old."


async def test_delete_collection_with_selector(server: ApiServer, api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    for name, app in (("a", "x"), ("b", "x"), ("c", "y")):
        await co.create_namespaced_custom_object(
            *KV, "default", "virtualmachines", vm_manifest(None, name, labels={"app": app})
        )
    out = await co.delete_collection_namespaced_custom_object(
        *KV, "default", "virtualmachines", label_selector="app=x"
    )
    assert sorted(o["metadata"]["name"] for o in out["items"]) == ["a", "b"]
    items, _ = server.store.list("vm", "default")
    assert [o["metadata"]["name"] for o in items] == ["c"]


async def test_bad_label_selector_is_400(api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    with pytest.raises(ApiException) as exc:
        await co.list_cluster_custom_object(*KV, "virtualmachines", label_selector="a in (")
    assert exc.value.status == 400


async def test_delete_without_finalizers_is_immediate(api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", vm_manifest(None, "d"))
    st = await co.delete_namespaced_custom_object(*KV, "default", "virtualmachines", "d")
    # Removed at once: a success Status, like the real registry (not the object).
    assert st["kind"] == "Status" and st["status"] == "Success" and st["details"]["name"] == "d"
    with pytest.raises(ApiException) as exc:
        await co.get_namespaced_custom_object(*KV, "default", "virtualmachines", "d")
    assert exc.value.status == 404


async def test_delete_with_finalizers_sets_deletion_timestamp_until_removed(api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    m = vm_manifest(None, "f")
    m["metadata"]["finalizers"] = ["kubevirt.io/foo"]  # type: ignore[index]
    await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", m)
    await co.delete_namespaced_custom_object(*KV, "default", "virtualmachines", "f")
    obj = await co.get_namespaced_custom_object(*KV, "default", "virtualmachines", "f")
    assert obj["metadata"]["deletionTimestamp"]
    assert obj["metadata"]["generation"] == 2  # starting a finalizer deletion bumps generation
    # New finalizers cannot be added to an object being deleted.
    obj["metadata"]["finalizers"].append("x/y")
    with pytest.raises(ApiException) as exc:
        await co.replace_namespaced_custom_object(*KV, "default", "virtualmachines", "f", obj)
    assert exc.value.status == 422
    await co.patch_namespaced_custom_object(
        *KV,
        "default",
        "virtualmachines",
        "f",
        {"metadata": {"finalizers": None}},
        _content_type="application/merge-patch+json",
    )
    with pytest.raises(ApiException) as exc:
        await co.get_namespaced_custom_object(*KV, "default", "virtualmachines", "f")
    assert exc.value.status == 404


async def test_delete_preconditions(api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    vm = await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", vm_manifest(None, "p"))
    with pytest.raises(ApiException) as exc:
        await co.delete_namespaced_custom_object(
            *KV, "default", "virtualmachines", "p", body={"preconditions": {"uid": "not-the-uid"}}
        )
    assert exc.value.status == 409
    with pytest.raises(ApiException) as exc:
        await co.delete_namespaced_custom_object(
            *KV, "default", "virtualmachines", "p", body={"preconditions": {"resourceVersion": "1"}}
        )
    assert exc.value.status == 409
    await co.delete_namespaced_custom_object(
        *KV, "default", "virtualmachines", "p", body={"preconditions": {"uid": vm["metadata"]["uid"]}}
    )


async def test_status_subresource_vm_and_vmim(api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    for plural, body in (
        ("virtualmachines", vm_manifest(None, "s")),
        ("virtualmachineinstancemigrations", {"metadata": {"name": "s"}, "spec": {"vmiName": "x"}}),
    ):
        obj = await co.create_namespaced_custom_object(*KV, "default", plural, {**body, "status": {"x": 1}})
        assert "status" not in obj  # status dropped on create with a status subresource
        obj["status"] = {"phase": "Running"}
        obj = await co.replace_namespaced_custom_object(*KV, "default", plural, "s", obj)
        assert "status" not in obj  # main resource ignores status
        obj["spec"]["extra"] = "ignored-by-status"
        obj["status"] = {"phase": "Running"}
        obj = await co.replace_namespaced_custom_object_status(*KV, "default", plural, "s", obj)
        assert obj["status"] == {"phase": "Running"}
        assert "extra" not in obj["spec"]  # status write changes only status
        obj = await co.patch_namespaced_custom_object_status(
            *KV,
            "default",
            plural,
            "s",
            {"status": {"phase": "Succeeded"}},
            _content_type="application/merge-patch+json",
        )
        assert obj["status"] == {"phase": "Succeeded"}


async def test_vmi_has_no_status_subresource(api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    await co.create_namespaced_custom_object(
        *KV, "default", "virtualmachineinstances", {"metadata": {"name": "v"}}
    )
    with pytest.raises(ApiException) as exc:
        await co.patch_namespaced_custom_object_status(
            *KV,
            "default",
            "virtualmachineinstances",
            "v",
            {"status": {"phase": "Running"}},
            _content_type="application/merge-patch+json",
        )
    assert exc.value.status == 404


async def test_lease_crud_with_typed_client(api: ApiClient) -> None:
    coord = CoordinationV1Api(api)
    lease = await coord.create_namespaced_lease(
        "kube-system",
        {"metadata": {"name": "hotplug-agent"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}},
    )
    assert lease.spec.holder_identity == "a"
    lease.spec.holder_identity = "b"
    lease = await coord.replace_namespaced_lease("hotplug-agent", "kube-system", lease)
    assert lease.spec.holder_identity == "b"
    stale = lease
    stale.metadata.resource_version = "1"
    with pytest.raises(ApiException) as exc:
        await coord.replace_namespaced_lease("hotplug-agent", "kube-system", stale)
    assert exc.value.status == 409


async def test_in_process_store_goes_through_same_path(server: ApiServer, api: ApiClient) -> None:
    created = await server.store.create("vm", vm_manifest(None, "inproc"), "default")
    co = CustomObjectsApi(api)
    got = await co.get_namespaced_custom_object(*KV, "default", "virtualmachines", "inproc")
    assert got["metadata"]["uid"] == created["metadata"]["uid"]
    items, rv = server.store.list("virtualmachines", "default")
    assert [o["metadata"]["name"] for o in items] == ["inproc"]
    assert rv == int(created["metadata"]["resourceVersion"])


async def test_dry_run_stores_nothing(server: ApiServer, api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    rv = server.store.resource_version
    out = await co.create_namespaced_custom_object(
        *KV, "default", "virtualmachines", vm_manifest(None, "dry"), dry_run="All"
    )
    assert out["metadata"]["name"] == "dry"
    assert server.store.try_get("vm", "default", "dry") is None
    await server.store.create("vm", vm_manifest(None, "wet"), "default")
    rv = server.store.resource_version
    await co.patch_namespaced_custom_object(
        *KV,
        "default",
        "virtualmachines",
        "wet",
        {"spec": {"runStrategy": "Halted"}},
        dry_run="All",
        _content_type="application/merge-patch+json",
    )
    await co.delete_namespaced_custom_object(*KV, "default", "virtualmachines", "wet", dry_run="All")
    assert server.store.resource_version == rv
    assert server.store.get("vm", "default", "wet")["spec"]["runStrategy"] == "Always"


async def test_paged_list_is_a_consistent_snapshot(server: ApiServer, api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    for n in ("a", "b", "c", "d"):
        await server.store.create("vm", vm_manifest(None, n), "default")
    first = await co.list_namespaced_custom_object(*KV, "default", "virtualmachines", limit=2)
    # Changes between pages are not seen by the later pages.
    await server.store.delete("vm", "default", "c")
    await server.store.create("vm", vm_manifest(None, "cc"), "default")
    await server.store.patch("vm", "default", "d", {"metadata": {"labels": {"changed": "yes"}}})
    rest = await co.list_namespaced_custom_object(
        *KV, "default", "virtualmachines", limit=10, _continue=first["metadata"]["continue"]
    )
    assert [o["metadata"]["name"] for o in rest["items"]] == ["c", "d"]
    assert "changed" not in rest["items"][1]["metadata"].get("labels", {})
    assert rest["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    server.compact()
    with pytest.raises(ApiException) as exc:
        await co.list_namespaced_custom_object(
            *KV, "default", "virtualmachines", limit=2, _continue=first["metadata"]["continue"]
        )
    assert exc.value.status == 410
