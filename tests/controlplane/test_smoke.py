"""Smoke test of the controlplane tier: the real kube-apiserver answers, the KubeVirt CRDs are served
with KubeVirt's subresources, kubernetes-asyncio works against it, and RBAC is enforced."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.rest import ApiException

from simulator.manifests import vm_manifest
from tests.controlplane.cluster import REPO, ControlPlane

pytestmark = pytest.mark.controlplane

GROUP, VERSION, NS = "kubevirt.io", "v1", "default"
# kubernetes-asyncio sends application/json-patch+json for a dict body unless told otherwise (its
# select_header_content_type falls back to the first listed type), so merge patches must say so.
MERGE: dict[str, Any] = {"_content_type": "application/merge-patch+json"}


def pinned_kubernetes_version() -> str:
    env = (REPO / "hack" / "controlplane" / "versions.env").read_text()
    return next(
        line.split("=", 1)[1].strip() for line in env.splitlines() if line.startswith("KUBERNETES_VERSION=")
    )


async def api_client(kubeconfig: Path) -> client.ApiClient:
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    return client.ApiClient(configuration=cfg)


@pytest.fixture
async def admin(controlplane: ControlPlane) -> AsyncIterator[client.ApiClient]:
    api = await api_client(controlplane.kubeconfig)
    async with api:
        yield api


def smoke_vm(name: str) -> dict[str, Any]:
    return vm_manifest(None, name, labels={"app": "smoke"})


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_server_answers(admin: client.ApiClient) -> None:
    info = await client.VersionApi(admin).get_code()
    assert info.git_version == pinned_kubernetes_version()
    text, status, _headers = await admin.call_api(
        "/readyz",
        "GET",
        response_types_map={200: "str"},
        auth_settings=["BearerToken"],
        _return_http_data_only=False,
    )
    assert status == 200
    assert text == "ok"


async def test_kubevirt_crds_served_with_kubevirt_subresources(admin: client.ApiClient) -> None:
    resources = await client.CustomObjectsApi(admin).get_api_resources(GROUP, VERSION)
    by_name = {r.name: r for r in resources.resources}
    assert {
        "virtualmachines",
        "virtualmachineinstances",
        "virtualmachineinstancemigrations",
        "kubevirts",
    } <= set(by_name)
    assert by_name["virtualmachines"].short_names == ["vm", "vms"]
    assert by_name["virtualmachineinstancemigrations"].short_names == ["vmim", "vmims"]
    assert by_name["virtualmachines"].categories == ["all"]
    assert "virtualmachines/status" in by_name
    assert "virtualmachineinstancemigrations/status" in by_name
    assert "kubevirts/status" in by_name
    assert "virtualmachineinstances/status" not in by_name  # as in KubeVirt
    # v1alpha3 is served too (deprecated)
    old = await client.CustomObjectsApi(admin).get_api_resources(GROUP, "v1alpha3")
    assert "virtualmachineinstances" in {r.name for r in old.resources}


async def test_create_vm_with_custom_objects_api(admin: client.ApiClient) -> None:
    api = client.CustomObjectsApi(admin)
    name = unique("smoke-vm")
    created = await api.create_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachines", smoke_vm(name))
    assert created["metadata"]["name"] == name
    assert created["metadata"]["uid"]
    assert int(created["metadata"]["resourceVersion"]) > 0
    assert created["metadata"]["generation"] == 1
    got = await api.get_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachines", name)
    assert got["spec"] == smoke_vm(name)["spec"]
    listed = await api.list_namespaced_custom_object(
        GROUP, VERSION, NS, "virtualmachines", label_selector="app=smoke"
    )
    assert name in {item["metadata"]["name"] for item in listed["items"]}
    await api.delete_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachines", name)
    with pytest.raises(ApiException) as err:
        await api.get_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachines", name)
    assert err.value.status == 404


async def test_vm_status_subresource(admin: client.ApiClient) -> None:
    api = client.CustomObjectsApi(admin)
    name = unique("smoke-status")
    created = await api.create_namespaced_custom_object(
        GROUP, VERSION, NS, "virtualmachines", {**smoke_vm(name), "status": {"printableStatus": "Running"}}
    )
    assert "status" not in created, "status is dropped on create when the status subresource exists"
    # a PUT of the main resource ignores status
    created["status"] = {"printableStatus": "Running"}
    replaced = await api.replace_namespaced_custom_object(
        GROUP, VERSION, NS, "virtualmachines", name, created
    )
    assert "status" not in replaced
    # the status subresource writes status and ignores spec; generation follows spec only
    patched = await api.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        NS,
        "virtualmachines",
        name,
        {"status": {"printableStatus": "Running"}, "spec": {"runStrategy": "Halted"}},
        **MERGE,
    )
    assert patched["status"] == {"printableStatus": "Running"}
    assert patched["spec"]["runStrategy"] == "Always"
    assert patched["metadata"]["generation"] == 1
    spec_patched = await api.patch_namespaced_custom_object(
        GROUP, VERSION, NS, "virtualmachines", name, {"spec": {"runStrategy": "Halted"}}, **MERGE
    )
    assert spec_patched["metadata"]["generation"] == 2
    assert spec_patched["status"] == {"printableStatus": "Running"}
    await api.delete_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachines", name)


async def test_vmi_has_no_status_subresource(admin: client.ApiClient) -> None:
    api = client.CustomObjectsApi(admin)
    name = unique("smoke-vmi")
    body = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": name},
        "spec": {"domain": {"devices": {}}},
        "status": {"phase": "Running", "nodeName": "node-1"},
    }
    created = await api.create_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachineinstances", body)
    assert created["status"] == {"phase": "Running", "nodeName": "node-1"}, (
        "VMI status is written with the object"
    )
    patched = await api.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        "virtualmachineinstances",
        name,
        {"status": {"phase": "Succeeded"}},
        **MERGE,
    )
    assert patched["status"]["phase"] == "Succeeded"
    with pytest.raises(ApiException) as err:
        await api.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            NS,
            "virtualmachineinstances",
            name,
            {"status": {"phase": "Failed"}},
            **MERGE,
        )
    assert err.value.status == 404
    await api.delete_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachineinstances", name)


async def test_user_without_rbac_is_forbidden_until_granted(controlplane: ControlPlane) -> None:
    user = unique("nobody")
    kubeconfig = controlplane.make_user(user, ["hotplug-testers"])
    async with await api_client(kubeconfig) as api:
        objects = client.CustomObjectsApi(api)
        with pytest.raises(ApiException) as err:
            await objects.list_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachineinstances")
        assert err.value.status == 403
        status = json.loads(err.value.body or b"{}")
        assert status["reason"] == "Forbidden"
        assert f'User "{user}" cannot list resource "virtualmachineinstances"' in status["message"]

        # The same user, once granted a Role, is allowed: authentication worked, RBAC decided.
        async with await api_client(controlplane.kubeconfig) as admin_api:
            rbac = client.RbacAuthorizationV1Api(admin_api)
            role = unique("vmi-reader")
            role_body: Any = {
                "metadata": {"name": role},
                "rules": [
                    {"apiGroups": [GROUP], "resources": ["virtualmachineinstances"], "verbs": ["list"]}
                ],
            }
            binding_body: Any = {
                "metadata": {"name": role},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "hotplug-testers"}
                ],
            }
            await rbac.create_namespaced_role(NS, role_body)
            await rbac.create_namespaced_role_binding(NS, binding_body)
        listed = await objects.list_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachineinstances")
        assert listed["kind"] == "VirtualMachineInstanceList"
        with pytest.raises(ApiException) as err:
            await objects.list_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachines")
        assert err.value.status == 403
