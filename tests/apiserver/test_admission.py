"""Admission hooks: mutate and deny, in registration order, after defaulting."""

from __future__ import annotations

import pytest
from kubernetes_asyncio.client import ApiClient, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from simulator.apiserver import AdmissionDenied, AdmissionRequest, ApiServer
from simulator.manifests import vm_manifest
from tests.apiserver.conftest import KV, status_of


async def test_mutating_and_denying_hooks(server: ApiServer, api: ApiClient) -> None:
    seen: list[tuple[str, str, str, str]] = []

    async def mutate(req: AdmissionRequest) -> None:
        seen.append((req.operation, req.resource, req.name, req.subresource))
        if req.resource == "virtualmachineinstancemigrations" and req.operation == "CREATE":
            req.object["metadata"].setdefault("labels", {})["kubevirt.io/vmi-name"] = req.object["spec"][
                "vmiName"
            ]

    async def deny(req: AdmissionRequest) -> None:
        if req.resource != "virtualmachineinstancemigrations" or req.operation != "CREATE":
            return
        assert req.old_object is None
        existing, _ = req.server.list(
            req.resource,
            req.namespace,
            label_selector=f"kubevirt.io/vmi-name={req.object['spec']['vmiName']}",
        )
        if existing:
            raise AdmissionDenied(
                409,
                f"in-flight migration detected. Active migration job ({existing[0]['metadata']['uid']}) is "
                f"currently already in progress for VMI {req.object['spec']['vmiName']}.",
                webhook_name="migration-create-validator.kubevirt.io",
            )

    server.add_admission(mutate)
    server.add_admission(deny)
    co = CustomObjectsApi(api)
    body = {"metadata": {"generateName": "hotplug-vm1-"}, "spec": {"vmiName": "vm1"}}
    first = await co.create_namespaced_custom_object(*KV, "default", "virtualmachineinstancemigrations", body)
    assert first["metadata"]["labels"] == {"kubevirt.io/vmi-name": "vm1"}
    assert seen[-1][2] == first["metadata"]["name"]  # hook saw the resolved generateName
    with pytest.raises(ApiException) as exc:
        await co.create_namespaced_custom_object(*KV, "default", "virtualmachineinstancemigrations", body)
    st = status_of(exc.value)
    assert exc.value.status == 409 and st["code"] == 409
    assert st["message"] == (
        'admission webhook "migration-create-validator.kubevirt.io" denied the request: in-flight migration '
        f"detected. Active migration job ({first['metadata']['uid']}) is currently already in progress "
        "for VMI vm1."
    )
    items, _ = server.store.list("virtualmachineinstancemigrations", "default")
    assert len(items) == 1  # the denied create stored nothing

    await co.patch_namespaced_custom_object_status(
        *KV,
        "default",
        "virtualmachineinstancemigrations",
        first["metadata"]["name"],
        {"status": {"phase": "Pending"}},
        _content_type="application/merge-patch+json",
    )
    await co.delete_namespaced_custom_object(
        *KV, "default", "virtualmachineinstancemigrations", first["metadata"]["name"]
    )
    ops = [(op, sub) for op, _r, _n, sub in seen]
    assert ops[-2:] == [("UPDATE", "status"), ("DELETE", "")]


async def test_hook_can_deny_update_and_store_bypass(server: ApiServer, api: ApiClient) -> None:
    async def no_halt(req: AdmissionRequest) -> None:
        if req.operation == "UPDATE" and req.object.get("spec", {}).get("runStrategy") == "Halted":
            raise AdmissionDenied(
                422, "halting is forbidden", webhook_name="virtualmachine-validator.kubevirt.io"
            )

    server.add_admission(no_halt)
    co = CustomObjectsApi(api)
    await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", vm_manifest(None, "h"))
    with pytest.raises(ApiException) as exc:
        await co.patch_namespaced_custom_object(
            *KV,
            "default",
            "virtualmachines",
            "h",
            {"spec": {"runStrategy": "Halted"}},
            _content_type="application/merge-patch+json",
        )
    assert exc.value.status == 422
    assert status_of(exc.value)["reason"] == "Invalid"
    # In-process writes may skip admission explicitly.
    out = await server.store.patch("vm", "default", "h", {"spec": {"runStrategy": "Halted"}}, admission=False)
    assert out["spec"]["runStrategy"] == "Halted"
