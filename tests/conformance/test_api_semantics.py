"""API semantics the agent and the simulated KubeVirt controllers rely on, checked on both backends.

Each test runs against the real kube-apiserver (``[real]``, the reference) and the embedded server
(``[embedded]``); the embedded server's known differences are xfail'd in conftest.EMBEDDED_DIFFERENCES.
Resources: KubeVirt VMs (a custom resource WITH a status subresource) and VMIs (WITHOUT one).
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
from collections.abc import Callable
from typing import Any

from simulator.manifests import vm_manifest
from tests.conformance.backends import (
    JSON_PATCH,
    STRATEGIC_MERGE_PATCH,
    Backend,
    KubeHttp,
)

GV = "/apis/kubevirt.io/v1"


def vms(ns: str, name: str = "", sub: str = "") -> str:
    return f"{GV}/namespaces/{ns}/virtualmachines" + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


def vmis(ns: str, name: str = "", sub: str = "") -> str:
    return (
        f"{GV}/namespaces/{ns}/virtualmachineinstances"
        + (f"/{name}" if name else "")
        + (f"/{sub}" if sub else "")
    )


def vm(name: str = "", labels: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    """The shared test VM with these labels and other metadata (``generateName``, finalizers …)."""
    return vm_manifest(None, name or None, labels=labels, metadata=meta)


def rv(obj: dict[str, Any]) -> int:
    """resourceVersion as an integer: opaque in the API contract, etcd revisions on kube-apiserver and
    integers on the embedded server; the suite relies on that to check ordering."""
    return int(obj["metadata"]["resourceVersion"])


def names(listing: dict[str, Any]) -> list[str]:
    return sorted(item["metadata"]["name"] for item in listing["items"])


async def collect(
    kube: KubeHttp,
    path: str,
    until: Callable[[list[dict[str, Any]]], bool] = lambda _e: False,
    seconds: float = 3.0,
    **params: str,
) -> list[dict[str, Any]]:
    """Events of a watch until ``until(events)`` holds or ``seconds`` pass."""
    status, events, close = await kube.watch(path, seconds=seconds + 2, **params)
    out: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(seconds):
            async for event in events:
                if event["type"] == "BOOKMARK":
                    continue
                out.append(event)
                if until(out):
                    break
    except TimeoutError:
        pass
    finally:
        await close()
    assert status == 200 or out, f"watch answered HTTP {status}"
    return out


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"]["name"]) for e in events]


# ------------------------------------------------------------------------------- resourceVersion


async def test_resource_version_increases_on_every_write(kube: KubeHttp, ns: str) -> None:
    a = (await kube.post(vms(ns), vm("a"))).ok()
    b = (await kube.post(vms(ns), vm("b"))).ok()
    a2 = (await kube.patch(vms(ns, "a"), {"metadata": {"labels": {"k": "v"}}})).ok()
    deleted = await kube.delete(vms(ns, "b"))
    assert deleted.status == 200
    c = (await kube.post(vms(ns), vm("c"))).ok()
    assert rv(a) < rv(b) < rv(a2) < rv(c)
    listing = (await kube.get(vms(ns))).ok()
    assert rv(listing) >= max(rv(i) for i in listing["items"])
    assert names(listing) == ["a", "c"]


async def test_noop_writes_keep_resource_version(kube: KubeHttp, ns: str) -> None:
    a = (await kube.post(vms(ns), vm("a", {"k": "v"}))).ok()
    same = (await kube.patch(vms(ns, "a"), {"metadata": {"labels": {"k": "v"}}})).ok()
    assert rv(same) == rv(a)
    put = (await kube.put(vms(ns, "a"), same)).ok()
    assert rv(put) == rv(a)


async def test_managed_fields_present(kube: KubeHttp, ns: str) -> None:
    a = (await kube.post(vms(ns), vm("a"))).ok()
    fields = a["metadata"].get("managedFields")
    assert fields, "managedFields missing"
    assert fields[0]["operation"] == "Update"
    assert fields[0]["fieldsType"] == "FieldsV1"


# ----------------------------------------------------------------------------------------- watch


async def test_watch_resumes_after_resource_version(kube: KubeHttp, ns: str) -> None:
    a = (await kube.post(vms(ns), vm("a"))).ok()
    a1 = (await kube.patch(vms(ns, "a"), {"metadata": {"labels": {"step": "1"}}})).ok()
    a2 = (await kube.patch(vms(ns, "a"), {"metadata": {"labels": {"step": "2"}}})).ok()
    b = (await kube.post(vms(ns), vm("b"))).ok()
    events = await collect(kube, vms(ns), until=lambda e: len(e) >= 3, resourceVersion=str(rv(a)))
    assert summary(events) == [("MODIFIED", "a"), ("MODIFIED", "a"), ("ADDED", "b")]
    assert [rv(e["object"]) for e in events] == [rv(a1), rv(a2), rv(b)]
    assert events[1]["object"]["metadata"]["labels"] == {"step": "2"}
    # resuming from the last one sees nothing old, then the next change
    status, stream, close = await kube.watch(vms(ns), seconds=10, resourceVersion=str(rv(b)))
    assert status == 200
    try:
        await kube.patch(vms(ns, "b"), {"metadata": {"labels": {"next": "1"}}})
        async with asyncio.timeout(8):
            first = await anext(e async for e in stream if e["type"] != "BOOKMARK")
    finally:
        await close()
    assert (first["type"], first["object"]["metadata"]["name"]) == ("MODIFIED", "b")
    assert rv(first["object"]) > rv(b)


async def test_watch_without_resource_version_starts_with_current_state(kube: KubeHttp, ns: str) -> None:
    await kube.post(vms(ns), vm("a"))
    await kube.post(vms(ns), vm("b"))
    await kube.delete(vms(ns, "b"))
    events = await collect(kube, vms(ns), until=lambda e: len(e) >= 1, seconds=2)
    assert summary(events) == [("ADDED", "a")]


async def test_watch_from_list_resource_version(kube: KubeHttp, ns: str) -> None:
    await kube.post(vms(ns), vm("a"))
    listing = (await kube.get(vms(ns))).ok()
    status, stream, close = await kube.watch(vms(ns), seconds=10, resourceVersion=str(rv(listing)))
    assert status == 200
    try:
        await kube.post(vms(ns), vm("b"))
        async with asyncio.timeout(8):
            first = await anext(e async for e in stream if e["type"] != "BOOKMARK")
    finally:
        await close()
    assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "b")


async def test_watch_from_compacted_resource_version_is_410(
    backend: Backend, kube: KubeHttp, ns: str
) -> None:
    a = (await kube.post(vms(ns), vm("a"))).ok()
    await kube.patch(vms(ns, "a"), {"metadata": {"labels": {"k": "1"}}})
    await kube.patch(vms(ns, "a"), {"metadata": {"labels": {"k": "2"}}})
    compacted = await backend.compact()
    assert compacted > rv(a)
    await kube.reconnect()
    events = await collect(kube, vms(ns), until=lambda e: len(e) >= 1, resourceVersion=str(rv(a)))
    # Both servers answer 200 and send one ERROR event carrying a 410 Expired Status.
    assert len(events) == 1, events
    assert events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
    assert re.fullmatch(r"too old resource version: \d+ \(\d+\)", status["message"]), status["message"]
    # a relist gives a resourceVersion the watch can resume from
    listing = (await kube.get(vms(ns))).ok()
    assert rv(listing) >= rv(a)
    status_code, _stream, close = await kube.watch(vms(ns), seconds=1, resourceVersion=str(rv(listing)))
    await close()
    assert status_code == 200


async def test_list_exact_compacted_resource_version_is_410(
    backend: Backend, kube: KubeHttp, ns: str
) -> None:
    a = (await kube.post(vms(ns), vm("a"))).ok()
    await kube.patch(vms(ns, "a"), {"metadata": {"labels": {"k": "1"}}})
    await backend.compact()
    await kube.reconnect()
    res = await kube.get(vms(ns), resourceVersion=str(rv(a)), resourceVersionMatch="Exact")
    assert (res.status, res.reason) == (410, "Expired"), res.body
    assert res.message == "The resourceVersion for the provided list is too old."


async def test_watch_label_selector(kube: KubeHttp, ns: str) -> None:
    listing = (await kube.get(vms(ns))).ok()
    await kube.post(vms(ns), vm("in", {"app": "x"}))
    await kube.post(vms(ns), vm("out", {"app": "y"}))
    await kube.patch(vms(ns, "out"), {"metadata": {"labels": {"app": "x"}}})  # enters the selection
    events = await collect(
        kube, vms(ns), until=lambda e: len(e) >= 2, resourceVersion=str(rv(listing)), labelSelector="app=x"
    )
    assert summary(events) == [("ADDED", "in"), ("ADDED", "out")]


async def test_watch_selector_leaving_object_deleted_with_old_state(kube: KubeHttp, ns: str) -> None:
    await kube.post(vms(ns), vm("a", {"app": "x"}))
    listing = (await kube.get(vms(ns))).ok()
    await kube.patch(vms(ns, "a"), {"metadata": {"labels": {"app": "y"}}})  # leaves the selection
    events = await collect(
        kube, vms(ns), until=lambda e: len(e) >= 1, resourceVersion=str(rv(listing)), labelSelector="app=x"
    )
    assert summary(events) == [("DELETED", "a")]
    assert events[0]["object"]["metadata"]["labels"] == {"app": "x"}


async def test_watch_field_selector_on_name(kube: KubeHttp, ns: str) -> None:
    listing = (await kube.get(vms(ns))).ok()
    await kube.post(vms(ns), vm("a"))
    await kube.post(vms(ns), vm("b"))
    events = await collect(
        kube,
        vms(ns),
        until=lambda e: len(e) >= 1,
        resourceVersion=str(rv(listing)),
        fieldSelector="metadata.name=b",
    )
    assert summary(events) == [("ADDED", "b")]


# ------------------------------------------------------------------------------ update conflicts


async def test_stale_update_is_409_conflict(kube: KubeHttp, ns: str) -> None:
    stale = (await kube.post(vms(ns), vm("a"))).ok()
    (await kube.patch(vms(ns, "a"), {"metadata": {"labels": {"k": "v"}}})).ok()
    changed = copy.deepcopy(stale)
    changed["spec"]["runStrategy"] = "Halted"
    res = await kube.put(vms(ns, "a"), changed)
    assert (res.status, res.reason) == (409, "Conflict")
    assert res.message == (
        'Operation cannot be fulfilled on virtualmachines.kubevirt.io "a": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    assert res.body["details"]["name"] == "a"
    # the same for a merge patch carrying the stale resourceVersion, and for the status subresource
    res = await kube.patch(vms(ns, "a"), {"metadata": {"resourceVersion": str(rv(stale))}, "spec": {"x": 1}})
    assert (res.status, res.reason) == (409, "Conflict")
    res = await kube.put(vms(ns, "a", "status"), {**stale, "status": {"ready": True}})
    assert (res.status, res.reason) == (409, "Conflict")


async def test_update_without_resource_version_is_rejected(kube: KubeHttp, ns: str) -> None:
    obj = (await kube.post(vms(ns), vm("a"))).ok()
    del obj["metadata"]["resourceVersion"]
    obj["spec"]["runStrategy"] = "Halted"
    res = await kube.put(vms(ns, "a"), obj)
    assert (res.status, res.reason) == (422, "Invalid")
    assert res.body["details"]["causes"][0]["field"] == "metadata.resourceVersion"


async def test_update_with_changed_uid_conflicts(kube: KubeHttp, ns: str) -> None:
    obj = (await kube.post(vms(ns), vm("a"))).ok()
    obj["metadata"]["uid"] = "00000000-0000-0000-0000-000000000000"
    res = await kube.put(vms(ns, "a"), obj)
    assert (res.status, res.reason) == (409, "Conflict")


async def test_immutable_metadata_is_kept(kube: KubeHttp, ns: str) -> None:
    obj = (await kube.post(vms(ns), vm("a"))).ok()
    changed = copy.deepcopy(obj)
    changed["metadata"]["creationTimestamp"] = "2000-01-01T00:00:00Z"
    changed["metadata"]["labels"] = {"k": "v"}
    updated = (await kube.put(vms(ns, "a"), changed)).ok()
    assert updated["metadata"]["creationTimestamp"] == obj["metadata"]["creationTimestamp"]
    assert updated["metadata"]["uid"] == obj["metadata"]["uid"]
    assert updated["metadata"]["labels"] == {"k": "v"}


# ----------------------------------------------------------------------------------------- patch


async def test_merge_patch(kube: KubeHttp, ns: str) -> None:
    body = vm("a", {"keep": "1", "drop": "1"})
    body["spec"]["list"] = [1, 2, 3]
    created = (await kube.post(vms(ns), body)).ok()
    patched = (
        await kube.patch(
            vms(ns, "a"),
            {
                "metadata": {"labels": {"drop": None, "new": "1"}},
                "spec": {"list": [9], "template": {"extra": True}},
            },
        )
    ).ok()
    assert patched["metadata"]["labels"] == {"keep": "1", "new": "1"}
    assert patched["spec"]["list"] == [9], "lists are replaced whole"
    assert patched["spec"]["template"] == {**created["spec"]["template"], "extra": True}, "maps are merged"
    assert patched["spec"]["runStrategy"] == "Always"
    assert rv(patched) > rv(created)
    assert patched["metadata"]["generation"] == created["metadata"]["generation"] + 1
    labels_only = (await kube.patch(vms(ns, "a"), {"metadata": {"labels": {"more": "1"}}})).ok()
    assert labels_only["metadata"]["generation"] == patched["metadata"]["generation"]


async def test_json_patch(kube: KubeHttp, ns: str) -> None:
    (await kube.post(vms(ns), vm("a", {"k": "v"}))).ok()
    ops = [
        {"op": "test", "path": "/spec/runStrategy", "value": "Always"},
        {"op": "replace", "path": "/spec/runStrategy", "value": "Halted"},
        {"op": "add", "path": "/metadata/labels/new", "value": "1"},
        {"op": "remove", "path": "/metadata/labels/k"},
        {"op": "add", "path": "/spec/list", "value": [1]},
        {"op": "add", "path": "/spec/list/-", "value": 2},
    ]
    patched = (await kube.patch(vms(ns, "a"), ops, JSON_PATCH)).ok()
    assert patched["spec"]["runStrategy"] == "Halted"
    assert patched["metadata"]["labels"] == {"new": "1"}
    assert patched["spec"]["list"] == [1, 2]


async def test_json_patch_failures_are_422_and_change_nothing(kube: KubeHttp, ns: str) -> None:
    created = (await kube.post(vms(ns), vm("a"))).ok()
    failed_test = [
        {"op": "replace", "path": "/spec/runStrategy", "value": "Halted"},
        {"op": "test", "path": "/spec/runStrategy", "value": "Always"},
    ]
    res = await kube.patch(vms(ns, "a"), failed_test, JSON_PATCH)
    assert (res.status, res.reason) == (422, "Invalid")
    res = await kube.patch(vms(ns, "a"), [{"op": "remove", "path": "/spec/missing"}], JSON_PATCH)
    assert (res.status, res.reason) == (422, "Invalid")
    now = (await kube.get(vms(ns, "a"))).ok()
    assert rv(now) == rv(created)
    assert now["spec"]["runStrategy"] == "Always"


async def test_json_patch_content_type_with_object_body_is_400(kube: KubeHttp, ns: str) -> None:
    """kubernetes-asyncio sends application/json-patch+json for a dict body unless told otherwise."""
    (await kube.post(vms(ns), vm("a"))).ok()
    res = await kube.patch(vms(ns, "a"), {"metadata": {"labels": {"k": "v"}}}, JSON_PATCH)
    assert (res.status, res.reason) == (400, "BadRequest")


async def test_strategic_merge_patch_on_custom_resource_is_415(kube: KubeHttp, ns: str) -> None:
    (await kube.post(vms(ns), vm("a"))).ok()
    res = await kube.patch(vms(ns, "a"), {"metadata": {"labels": {"k": "v"}}}, STRATEGIC_MERGE_PATCH)
    assert (res.status, res.reason) == (415, "UnsupportedMediaType")
    assert "application/merge-patch+json" in res.message
    assert "application/json-patch+json" in res.message
    res = await kube.request("PATCH", vms(ns, "a"), b"{}", "text/plain")
    assert (res.status, res.reason) == (415, "UnsupportedMediaType")
    # built-in kinds accept it
    ns_obj = (
        await kube.patch(
            f"/api/v1/namespaces/{ns}", {"metadata": {"labels": {"k": "v"}}}, STRATEGIC_MERGE_PATCH
        )
    ).ok()
    assert ns_obj["metadata"]["labels"]["k"] == "v"


async def test_patch_missing_object_is_404(kube: KubeHttp, ns: str) -> None:
    res = await kube.patch(vms(ns, "missing"), {"metadata": {"labels": {"k": "v"}}})
    assert (res.status, res.reason) == (404, "NotFound")
    assert res.message == 'virtualmachines.kubevirt.io "missing" not found'


# ---------------------------------------------------------------------------- status subresource


async def test_empty_labels_and_annotations_are_not_stored(kube: KubeHttp, ns: str) -> None:
    """``ObjectMeta`` marshals its maps ``omitempty``: an empty or null map is gone from the answer."""
    created = (await kube.post(vms(ns), vm("a", {}, annotations={}))).ok()
    assert "labels" not in created["metadata"] and "annotations" not in created["metadata"]
    labelled = (await kube.patch(vms(ns, "a"), {"metadata": {"labels": {"k": "v"}}})).ok()
    assert labelled["metadata"]["labels"] == {"k": "v"}
    emptied = (await kube.patch(vms(ns, "a"), {"metadata": {"labels": {"k": None}}})).ok()
    assert "labels" not in emptied["metadata"]


async def test_status_subresource(kube: KubeHttp, ns: str) -> None:
    created = (await kube.post(vms(ns), {**vm("a"), "status": {"printableStatus": "Running"}})).ok()
    assert "status" not in created, "status is dropped on create"
    created["status"] = {"printableStatus": "Running"}
    replaced = (await kube.put(vms(ns, "a"), created)).ok()
    assert "status" not in replaced, "the main resource ignores status"
    merged = (await kube.patch(vms(ns, "a"), {"status": {"printableStatus": "Running"}})).ok()
    assert "status" not in merged
    # the status subresource changes status only: spec and labels in the body are ignored
    body = copy.deepcopy(merged)
    body["status"] = {"printableStatus": "Stopped"}
    body["spec"]["runStrategy"] = "Halted"
    body["metadata"]["labels"] = {"via": "status"}
    status = (await kube.put(vms(ns, "a", "status"), body)).ok()
    assert status["status"] == {"printableStatus": "Stopped"}
    assert status["spec"]["runStrategy"] == "Always"
    assert "labels" not in status["metadata"]
    assert status["metadata"]["generation"] == created["metadata"]["generation"]
    assert rv(status) > rv(merged)
    patched = (await kube.patch(vms(ns, "a", "status"), {"status": {"ready": True}})).ok()
    assert patched["status"] == {"printableStatus": "Stopped", "ready": True}
    got = (await kube.get(vms(ns, "a", "status"))).ok()
    assert got["status"] == patched["status"]
    res = await kube.delete(vms(ns, "a", "status"))
    assert (res.status, res.reason) == (405, "MethodNotAllowed")


async def test_no_status_subresource_on_vmi(kube: KubeHttp, ns: str) -> None:
    body = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "v"},
        "spec": {"domain": {"devices": {}}},
        "status": {"phase": "Pending"},
    }
    created = (await kube.post(vmis(ns), body)).ok()
    assert created["status"] == {"phase": "Pending"}
    patched = (await kube.patch(vmis(ns, "v"), {"status": {"phase": "Running"}})).ok()
    assert patched["status"] == {"phase": "Running"}
    # without a status subresource, generation counts every change but metadata
    assert patched["metadata"]["generation"] == created["metadata"]["generation"] + 1
    labelled = (await kube.patch(vmis(ns, "v"), {"metadata": {"labels": {"k": "v"}}})).ok()
    assert labelled["metadata"]["generation"] == patched["metadata"]["generation"]
    for method, payload in (("GET", None), ("PATCH", {"status": {"phase": "Failed"}}), ("PUT", labelled)):
        res = await kube.request(method, vmis(ns, "v", "status"), payload, "application/merge-patch+json")
        assert (res.status, res.reason) == (404, "NotFound"), method


# ------------------------------------------------------------------------ finalizers and delete


async def test_finalizers_and_deletion_timestamp(kube: KubeHttp, ns: str) -> None:
    created = (await kube.post(vms(ns), vm("a", finalizers=["example.com/hold"]))).ok()
    status, stream, close = await kube.watch(vms(ns), seconds=15, resourceVersion=str(rv(created)))
    assert status == 200
    try:
        deleting = (await kube.delete(vms(ns, "a"))).ok()
        assert deleting["metadata"]["deletionTimestamp"]
        assert deleting["metadata"]["deletionGracePeriodSeconds"] == 0
        assert deleting["metadata"]["finalizers"] == ["example.com/hold"]
        still = (await kube.get(vms(ns, "a"))).ok()
        assert still["metadata"]["deletionTimestamp"] == deleting["metadata"]["deletionTimestamp"]
        again = (await kube.delete(vms(ns, "a"))).ok()
        assert rv(again) == rv(deleting), "a second delete changes nothing"
        res = await kube.patch(
            vms(ns, "a"), {"metadata": {"finalizers": ["example.com/hold", "example.com/new"]}}
        )
        assert (res.status, res.reason) == (422, "Invalid")
        assert "no new finalizers can be added if the object is being deleted" in res.message
        spec_change = await kube.patch(vms(ns, "a"), {"spec": {"runStrategy": "Halted"}})
        assert spec_change.status == 200, "other updates are still allowed"
        (await kube.patch(vms(ns, "a"), {"metadata": {"finalizers": None}})).ok()
        gone = await kube.get(vms(ns, "a"))
        assert (gone.status, gone.reason) == (404, "NotFound")
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(8):
            async for event in stream:
                if event["type"] != "BOOKMARK":
                    seen.append(event)
                if seen and seen[-1]["type"] == "DELETED":
                    break
    finally:
        await close()
    assert [e["type"] for e in seen] == ["MODIFIED", "MODIFIED", "DELETED"]
    assert seen[0]["object"]["metadata"]["deletionTimestamp"]


async def test_deletion_timestamp_bumps_generation(kube: KubeHttp, ns: str) -> None:
    created = (await kube.post(vms(ns), vm("a", finalizers=["example.com/hold"]))).ok()
    deleting = (await kube.delete(vms(ns, "a"))).ok()
    assert deleting["metadata"]["generation"] == created["metadata"]["generation"] + 1
    (await kube.patch(vms(ns, "a"), {"metadata": {"finalizers": None}})).ok()


async def test_delete_without_finalizers_returns_status(kube: KubeHttp, ns: str) -> None:
    created = (await kube.post(vms(ns), vm("a"))).ok()
    res = await kube.delete(vms(ns, "a"))
    assert res.status == 200
    assert res.body["kind"] == "Status"
    assert res.body["status"] == "Success"
    assert res.body["details"]["uid"] == created["metadata"]["uid"]
    again = await kube.delete(vms(ns, "a"))
    assert (again.status, again.reason) == (404, "NotFound")


async def test_delete_preconditions(kube: KubeHttp, ns: str) -> None:
    created = (await kube.post(vms(ns), vm("a"))).ok()
    options = {"kind": "DeleteOptions", "apiVersion": "v1"}
    res = await kube.delete(vms(ns, "a"), {**options, "preconditions": {"uid": "0000-wrong"}})
    assert (res.status, res.reason) == (409, "Conflict")
    res = await kube.delete(vms(ns, "a"), {**options, "preconditions": {"resourceVersion": "1"}})
    assert (res.status, res.reason) == (409, "Conflict")
    res = await kube.delete(
        vms(ns, "a"),
        {
            **options,
            "preconditions": {"uid": created["metadata"]["uid"], "resourceVersion": str(rv(created))},
        },
    )
    assert res.status == 200
    assert (await kube.get(vms(ns, "a"))).status == 404


async def test_delete_collection(kube: KubeHttp, ns: str) -> None:
    for name, app in (("a", "x"), ("b", "x"), ("c", "y")):
        (await kube.post(vms(ns), vm(name, {"app": app}))).ok()
    res = await kube.request("DELETE", vms(ns), params={"labelSelector": "app=x"})
    assert res.status == 200
    assert names((await kube.get(vms(ns))).ok()) == ["c"]


# ------------------------------------------------------------------------------------ selectors


async def test_label_selectors(kube: KubeHttp, ns: str) -> None:
    for name, labels in (("a", {"app": "x", "tier": "1"}), ("b", {"app": "y"}), ("c", {})):
        (await kube.post(vms(ns), vm(name, labels or None))).ok()
    cases = {
        "app=x": ["a"],
        "app==x": ["a"],
        "app!=x": ["b", "c"],
        "app in (x,y)": ["a", "b"],
        "app notin (x)": ["b", "c"],
        "app": ["a", "b"],
        "!app": ["c"],
        "app=x,tier=1": ["a"],
        "app=x,tier=2": [],
    }
    for selector, expected in cases.items():
        listing = (await kube.get(vms(ns), labelSelector=selector)).ok()
        assert names(listing) == expected, selector
    res = await kube.get(vms(ns), labelSelector="app = = x")
    assert (res.status, res.reason) == (400, "BadRequest")


async def test_field_selectors(kube: KubeHttp, ns: str) -> None:
    for name in ("a", "b"):
        (await kube.post(vms(ns), vm(name))).ok()
    assert names((await kube.get(vms(ns), fieldSelector="metadata.name=a")).ok()) == ["a"]
    assert names((await kube.get(vms(ns), fieldSelector="metadata.name!=a")).ok()) == ["b"]
    assert names((await kube.get(vms(ns), fieldSelector=f"metadata.namespace={ns}")).ok()) == ["a", "b"]
    everywhere = (await kube.get(f"{GV}/virtualmachines", fieldSelector=f"metadata.namespace={ns}")).ok()
    assert names(everywhere) == ["a", "b"]
    # excluding namespaces (the agent's --exclude-namespaces) across all namespaces
    elsewhere = (await kube.get(f"{GV}/virtualmachines", fieldSelector=f"metadata.namespace!={ns}")).ok()
    assert not {i["metadata"]["namespace"] for i in elsewhere["items"]} & {ns}


async def test_unsupported_field_selector_is_400(kube: KubeHttp, ns: str) -> None:
    (await kube.post(vms(ns), vm("a"))).ok()
    res = await kube.get(vms(ns), fieldSelector="spec.runStrategy=Always")
    assert (res.status, res.reason) == (400, "BadRequest")
    assert res.message == "field label not supported: spec.runStrategy"


async def test_list_pagination(kube: KubeHttp, ns: str) -> None:
    for name in ("a", "b", "c"):
        (await kube.post(vms(ns), vm(name))).ok()
    first = (await kube.get(vms(ns), limit="2")).ok()
    assert names(first) == ["a", "b"]
    assert first["metadata"]["continue"]
    assert first["metadata"]["remainingItemCount"] == 1
    rest = (await kube.get(vms(ns), limit="2", **{"continue": first["metadata"]["continue"]})).ok()
    assert names(rest) == ["c"]
    assert not rest["metadata"].get("continue")


# --------------------------------------------------------------------------- create and naming


GENERATED_SUFFIX = re.compile(r"[bcdfghjklmnpqrstvwxz2456789]{5}")


async def test_generate_name(kube: KubeHttp, ns: str) -> None:
    made = [(await kube.post(vms(ns), vm(generateName="hotplug-vmi-"))).ok() for _ in range(3)]
    generated = [m["metadata"]["name"] for m in made]
    assert len(set(generated)) == 3
    for m in made:
        name = m["metadata"]["name"]
        assert name.startswith("hotplug-vmi-")
        assert GENERATED_SUFFIX.fullmatch(name.removeprefix("hotplug-vmi-")), name
        assert m["metadata"]["generateName"] == "hotplug-vmi-"
    # an explicit name wins over generateName
    named = (await kube.post(vms(ns), vm("explicit", generateName="hotplug-vmi-"))).ok()
    assert named["metadata"]["name"] == "explicit"
    res = await kube.post(vms(ns), vm())
    assert (res.status, res.reason) == (422, "Invalid")
    assert "name or generateName is required" in res.message


async def test_create_existing_is_409_already_exists(kube: KubeHttp, ns: str) -> None:
    (await kube.post(vms(ns), vm("a"))).ok()
    res = await kube.post(vms(ns), vm("a"))
    assert (res.status, res.reason) == (409, "AlreadyExists")
    assert res.message == 'virtualmachines.kubevirt.io "a" already exists'
    assert res.body["details"] == {"name": "a", "group": "kubevirt.io", "kind": "virtualmachines"}


async def test_get_missing_is_404_not_found(kube: KubeHttp, ns: str) -> None:
    res = await kube.get(vms(ns, "nope"))
    assert (res.status, res.reason) == (404, "NotFound")
    assert res.body["details"] == {"name": "nope", "group": "kubevirt.io", "kind": "virtualmachines"}


async def test_create_in_missing_namespace_is_404(kube: KubeHttp) -> None:
    res = await kube.post(vms("no-such-namespace"), vm("a"))
    assert (res.status, res.reason) == (404, "NotFound")
    assert res.message == 'namespaces "no-such-namespace" not found'


async def test_namespace_mismatch_is_400(kube: KubeHttp, ns: str) -> None:
    res = await kube.post(vms(ns), vm("a", namespace="other"))
    assert (res.status, res.reason) == (400, "BadRequest")
    assert (
        res.message == "the namespace of the provided object does not match the namespace sent on the request"
    )


async def test_kind_mismatch_is_invalid(kube: KubeHttp, ns: str) -> None:
    res = await kube.post(vms(ns), {**vm("a"), "kind": "VirtualMachineInstance"})
    assert (res.status, res.reason) == (422, "Invalid")


async def test_server_fills_metadata(kube: KubeHttp, ns: str) -> None:
    created = (await kube.post(vms(ns), vm("a"))).ok()
    meta = created["metadata"]
    assert meta["namespace"] == ns
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", meta["uid"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    assert meta["generation"] == 1
    assert created["apiVersion"] == "kubevirt.io/v1"
    assert created["kind"] == "VirtualMachine"
    listing = (await kube.get(vms(ns))).ok()
    assert listing["kind"] == "VirtualMachineList"
    assert listing["apiVersion"] == "kubevirt.io/v1"


# ------------------------------------------------------------------------------------ discovery

KUBEVIRT_KINDS = {
    "virtualmachines": ("VirtualMachine", ["vm", "vms"], True),
    "virtualmachineinstances": ("VirtualMachineInstance", ["vmi", "vmis"], False),
    "virtualmachineinstancemigrations": ("VirtualMachineInstanceMigration", ["vmim", "vmims"], True),
    "kubevirts": ("KubeVirt", ["kv", "kvs"], True),
}


async def test_discovery_of_kubevirt_resources(kube: KubeHttp) -> None:
    resources = {r["name"]: r for r in (await kube.get(GV)).ok()["resources"]}
    for plural, (kind, short_names, status) in KUBEVIRT_KINDS.items():
        res = resources[plural]
        assert res["kind"] == kind
        assert res["namespaced"] is True
        assert res["singularName"] == plural[:-1]
        assert res["shortNames"] == short_names
        assert res["categories"] == ["all"], plural
        assert set(res["verbs"]) == {
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        }
        assert (f"{plural}/status" in resources) is status, plural
        if status:
            assert set(resources[f"{plural}/status"]["verbs"]) == {"get", "patch", "update"}


async def test_v1alpha3_is_served(kube: KubeHttp) -> None:
    group = (await kube.get("/apis/kubevirt.io")).ok()
    assert group["preferredVersion"]["version"] == "v1"
    assert [v["version"] for v in group["versions"]] == ["v1", "v1alpha3"]
    old = (await kube.get("/apis/kubevirt.io/v1alpha3")).ok()
    assert "virtualmachineinstances" in {r["name"] for r in old["resources"]}


TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
# kubectl get columns: Name + the CRDs' additionalPrinterColumns (simulator/crds/*.yaml)
TABLE_COLUMNS = {
    "virtualmachines": [
        ("Name", "string", 0),
        ("Age", "date", 0),
        ("Status", "string", 0),
        ("Ready", "string", 0),
    ],
    "virtualmachineinstances": [
        ("Name", "string", 0),
        ("Age", "date", 0),
        ("Phase", "string", 0),
        ("IP", "string", 0),
        ("NodeName", "string", 0),
        ("Ready", "string", 0),
        ("Live-Migratable", "string", 1),
        ("Paused", "string", 1),
    ],
    "virtualmachineinstancemigrations": [("Name", "string", 0), ("Phase", "string", 0), ("VMI", "string", 0)],
    "kubevirts": [("Name", "string", 0), ("Age", "date", 0), ("Phase", "string", 0)],
}


async def test_table_columns_match_kubevirt(kube: KubeHttp, ns: str) -> None:
    kube.headers["Accept"] = TABLE
    try:
        for plural, expected in TABLE_COLUMNS.items():
            table = (await kube.get(f"{GV}/namespaces/{ns}/{plural}")).ok()
            assert table["kind"] == "Table"
            got = [(c["name"], c["type"], c.get("priority", 0)) for c in table["columnDefinitions"]]
            assert got == expected, plural
    finally:
        kube.headers["Accept"] = "application/json"


# ------------------------------------------------------------------------------- validation etc.


async def test_invalid_name_is_422(kube: KubeHttp, ns: str) -> None:
    res = await kube.post(vms(ns), vm("Bad_Name"))
    assert (res.status, res.reason) == (422, "Invalid")
    assert res.body["details"]["causes"][0]["field"] == "metadata.name"


async def test_invalid_labels_and_annotations_are_rejected(kube: KubeHttp, ns: str) -> None:
    res = await kube.post(vms(ns), vm("a", {"bad key!": "v"}))
    assert (res.status, res.reason) == (422, "Invalid")
    res = await kube.post(vms(ns), vm("b", {"k": "bad value!"}))
    assert (res.status, res.reason) == (422, "Invalid")
    res = await kube.post(vms(ns), vm("c", annotations={"a": 1}))
    assert (res.status, res.reason) == (400, "BadRequest")


async def test_server_side_apply(kube: KubeHttp, ns: str) -> None:
    body = json.dumps(
        {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "a"}}
    ).encode()
    apply = "application/apply-patch+yaml"
    res = await kube.request("PATCH", vms(ns, "a"), body, apply, params={"fieldManager": "conformance"})
    assert res.status == 201, res.body
    res = await kube.request("PATCH", vms(ns, "a"), body, apply)
    assert (res.status, res.reason) == (422, "Invalid"), "fieldManager is required for apply"


LEASES = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"


def lease(name: str, renew: str = "2026-01-01T00:00:00.000000Z") -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name},
        "spec": {
            "holderIdentity": "a",
            "leaseDurationSeconds": 15,
            "renewTime": renew,
            "leaseTransitions": 0,
        },
    }


async def test_lease_optimistic_concurrency(kube: KubeHttp, ns: str) -> None:
    """Leader election's compare-and-swap: the loser of a concurrent renew gets 409."""
    path = LEASES.format(ns=ns)
    created = (await kube.post(path, lease("leader"))).ok()
    mine = copy.deepcopy(created)
    theirs = copy.deepcopy(created)
    mine["spec"]["renewTime"] = "2026-01-01T00:00:05.000000Z"
    theirs["spec"]["holderIdentity"] = "b"
    (await kube.put(f"{path}/leader", mine)).ok()
    res = await kube.put(f"{path}/leader", theirs)
    assert (res.status, res.reason) == (409, "Conflict")
    assert res.message.startswith('Operation cannot be fulfilled on leases.coordination.k8s.io "leader"')


async def test_lease_micro_time_format_is_enforced(kube: KubeHttp, ns: str) -> None:
    """renewTime/acquireTime are MicroTime: six fractional digits; RFC 3339 seconds are refused."""
    res = await kube.post(LEASES.format(ns=ns), lease("l", renew="2026-01-01T00:00:00Z"))
    assert (res.status, res.reason) == (400, "BadRequest")


async def test_watch_timeout_ends_stream(kube: KubeHttp, ns: str) -> None:
    (await kube.post(vms(ns), vm("a"))).ok()
    loop = asyncio.get_running_loop()
    start = loop.time()
    status, stream, close = await kube.watch(vms(ns), seconds=1)
    try:
        async with asyncio.timeout(10):
            events = [e async for e in stream if e["type"] != "BOOKMARK"]
    finally:
        await close()
    assert status == 200
    assert summary(events) == [("ADDED", "a")]
    assert 0.5 <= loop.time() - start < 5


# ---------------------------------------------------------------------------------------- events


def core_event(
    name: str, ns: str, involved_ns: str, reason: str = "HotplugMigrationCreated"
) -> dict[str, Any]:
    """A core/v1 Event as client-go's (and kubernetes-asyncio users') event recorders send it."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "namespace": involved_ns,
            "name": "vm1",
            "uid": "00000000-0000-0000-0000-000000000001",
        },
        "reason": reason,
        "message": "created migration hotplug-vm1-abcde",
        "type": "Normal",
        "source": {"component": "hotplug-agent"},
        "firstTimestamp": "2026-01-01T00:00:00Z",
        "lastTimestamp": "2026-01-01T00:00:00Z",
        "count": 1,
    }


async def test_core_events_and_their_field_selectors(kube: KubeHttp, ns: str) -> None:
    path = f"/api/v1/namespaces/{ns}/events"
    (await kube.post(path, core_event("e1", ns, ns))).ok()
    (await kube.post(path, core_event("e2", ns, ns, reason="Other"))).ok()
    by_object = (
        await kube.get(path, fieldSelector="involvedObject.kind=VirtualMachine,involvedObject.name=vm1")
    ).ok()
    assert names(by_object) == ["e1", "e2"]
    assert names((await kube.get(path, fieldSelector="reason=Other")).ok()) == ["e2"]
    # a repeated event is a patch of count and lastTimestamp (strategic merge on a built-in kind)
    patched = (
        await kube.patch(
            f"{path}/e1", {"count": 2, "lastTimestamp": "2026-01-01T00:00:05Z"}, STRATEGIC_MERGE_PATCH
        )
    ).ok()
    assert patched["count"] == 2


async def test_event_validation(kube: KubeHttp, ns: str) -> None:
    res = await kube.post(f"/api/v1/namespaces/{ns}/events", core_event("e1", ns, "another-namespace"))
    assert (res.status, res.reason) == (422, "Invalid")
    assert "involvedObject.namespace" in res.message
    new_style = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "n1"},
        "regarding": {"kind": "VirtualMachine", "namespace": ns, "name": "vm1"},
        "reason": "HotplugMigrationCreated",
        "note": "created",
        "type": "Normal",
    }
    res = await kube.post(f"/apis/events.k8s.io/v1/namespaces/{ns}/events", new_style)
    assert (res.status, res.reason) == (422, "Invalid"), "eventTime is required"
    new_style |= {
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "action": "Migrate",
        "reportingController": "hotplug-agent",
        "reportingInstance": "hotplug-agent-0",
    }
    assert (await kube.post(f"/apis/events.k8s.io/v1/namespaces/{ns}/events", new_style)).status == 201


async def test_dry_run_create_is_not_persisted(kube: KubeHttp, ns: str) -> None:
    res = await kube.request("POST", vms(ns), vm(generateName="dry-"), params={"dryRun": "All"})
    assert res.status == 201, res.body
    assert res.body["metadata"]["name"].startswith("dry-")
    assert (await kube.get(vms(ns))).ok()["items"] == []


async def test_dry_run_unknown_value_is_422(kube: KubeHttp, ns: str) -> None:
    res = await kube.request("POST", vms(ns), vm("a"), params={"dryRun": "Bogus"})
    assert (res.status, res.reason) == (422, "Invalid")
    assert res.body["details"]["causes"][0]["field"] == "dryRun"
    assert (await kube.get(vms(ns))).ok()["items"] == []
