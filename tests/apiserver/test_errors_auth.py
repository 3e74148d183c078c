"""Status-shaped errors, discovery, bearer-token auth and the kubeconfig."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
import yaml
from kubernetes_asyncio.client import ApiClient, CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import new_client_from_config

from simulator.apiserver import ApiServer
from tests.apiserver.conftest import KV, status_of


async def test_not_found_is_status_shaped(api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    with pytest.raises(ApiException) as exc:
        await co.get_namespaced_custom_object(*KV, "default", "virtualmachineinstances", "ghost")
    st = status_of(exc.value)
    assert st == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'virtualmachineinstances.kubevirt.io "ghost" not found',
        "reason": "NotFound",
        "details": {"name": "ghost", "group": "kubevirt.io", "kind": "virtualmachineinstances"},
        "code": 404,
    }
    assert exc.value.headers["Content-Type"].startswith("application/json")


async def test_unknown_resource_and_bad_bodies(server: ApiServer) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(server.url + "/apis/kubevirt.io/v1/namespaces/default/widgets") as r:
            assert r.status == 404 and (await r.json())["kind"] == "Status"
        async with s.post(
            server.url + "/apis/kubevirt.io/v1/namespaces/default/virtualmachines",
            data=b"{not json",
            headers={"Content-Type": "application/json"},
        ) as r:
            st = await r.json()
            assert r.status == 400 and st["reason"] == "BadRequest"
        async with s.post(
            server.url + "/apis/kubevirt.io/v1/namespaces/default/virtualmachines",
            json={
                "kind": "VirtualMachineInstance",
                "apiVersion": "kubevirt.io/v1",
                "metadata": {"name": "x"},
            },
        ) as r:
            st = await r.json()
            assert r.status == 422  # custom resources: validation error, as on kube-apiserver
            assert st["details"]["causes"][0]["field"] == "kind"
        async with s.post(
            server.url + "/apis/coordination.k8s.io/v1/namespaces/default/leases",
            json={"kind": "Pod", "apiVersion": "coordination.k8s.io/v1", "metadata": {"name": "x"}},
        ) as r:
            assert r.status == 400  # built-ins: the decoder refuses it
        async with s.post(
            server.url + "/apis/kubevirt.io/v1/namespaces/default/virtualmachines",
            json={"metadata": {"name": "Bad_Name"}},
        ) as r:
            st = await r.json()
            assert r.status == 422 and st["reason"] == "Invalid"
        async with s.post(
            server.url + "/apis/kubevirt.io/v1/namespaces/default/virtualmachines", json={"metadata": {}}
        ) as r:
            assert r.status == 422
        async with s.put(
            server.url + "/apis/kubevirt.io/v1/namespaces/default/virtualmachines/a",
            json={"metadata": {"name": "b"}},
        ) as r:
            assert r.status == 400


async def test_discovery_documents(server: ApiServer) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(server.url + "/apis/kubevirt.io/v1") as r:
            doc = await r.json()
        async with s.get(server.url + "/apis") as r:
            groups = {g["name"] for g in (await r.json())["groups"]}
        async with s.get(server.url + "/api") as r:
            assert (await r.json())["versions"] == ["v1"]
        async with s.get(server.url + "/version") as r:
            assert (await r.json())["major"] == "1"
        async with s.get(server.url + "/openapi/v3") as r:
            root = await r.json()
    assert {"kubevirt.io", "coordination.k8s.io", "events.k8s.io"} <= groups
    by_name = {r["name"]: r for r in doc["resources"]}
    assert by_name["virtualmachines"]["shortNames"] == ["vm", "vms"]
    assert by_name["virtualmachineinstances"]["shortNames"] == ["vmi", "vmis"]
    assert by_name["virtualmachineinstancemigrations"]["shortNames"] == ["vmim", "vmims"]
    assert by_name["virtualmachines"]["categories"] == ["all"]
    assert by_name["kubevirts"]["shortNames"] == ["kv", "kvs"]
    assert "watch" in by_name["virtualmachines"]["verbs"]
    assert "virtualmachines/status" in by_name and "virtualmachineinstancemigrations/status" in by_name
    assert "virtualmachineinstances/status" not in by_name
    assert "apis/kubevirt.io/v1" in root["paths"]


async def test_bearer_token_required_when_configured(tmp_path: Path) -> None:
    srv = ApiServer(token="s3cret")
    await srv.start()
    try:
        async with aiohttp.ClientSession() as s, s.get(srv.url + "/api/v1/namespaces") as r:
            st = await r.json()
            assert r.status == 401 and st["reason"] == "Unauthorized" and st["kind"] == "Status"
        bad = srv.write_kubeconfig(tmp_path / "bad", token="wrong")
        client = await new_client_from_config(config_file=str(bad))
        with pytest.raises(ApiException) as exc:
            await CoreV1Api(client).list_namespace()
        assert exc.value.status == 401
        await client.close()
        good = srv.write_kubeconfig(tmp_path / "good")  # the server's own token
        cfg = yaml.safe_load(good.read_text())
        assert cfg["users"][0]["user"]["token"] == "s3cret"
        assert (good.stat().st_mode & 0o777) == 0o600
        client = await new_client_from_config(config_file=str(good))
        names = [n.metadata.name for n in (await CoreV1Api(client).list_namespace()).items]
        assert names == ["default", "kube-system"]
        await client.close()
    finally:
        await srv.stop()


async def test_metadata_and_timestamp_validation(api: ApiClient) -> None:
    co = CustomObjectsApi(api)
    bad_key = {"metadata": {"name": "a", "labels": {"bad key!": "v"}}}
    with pytest.raises(ApiException) as exc:
        await co.create_namespaced_custom_object(*KV, "default", "virtualmachines", bad_key)
    assert exc.value.status == 422
    with pytest.raises(ApiException) as exc:
        await co.create_namespaced_custom_object(
            *KV, "default", "virtualmachines", {"metadata": {"name": "b", "labels": {"k": "bad value!"}}}
        )
    assert exc.value.status == 422
    with pytest.raises(ApiException) as exc:
        await co.create_namespaced_custom_object(
            *KV, "default", "virtualmachines", {"metadata": {"name": "c", "annotations": {"a": 1}}}
        )
    assert exc.value.status == 400
    await co.create_namespaced_custom_object(
        *KV,
        "default",
        "virtualmachines",
        {"metadata": {"name": "ok", "labels": {"kubevirt.io/vmi-name": "vm1", "empty": ""}}},
    )
    from kubernetes_asyncio.client import CoordinationV1Api

    coord = CoordinationV1Api(api)
    with pytest.raises(ApiException) as exc:
        await coord.create_namespaced_lease(
            "default", {"metadata": {"name": "l"}, "spec": {"renewTime": "2026-01-01T00:00:00Z"}}
        )
    assert exc.value.status == 400  # MicroTime needs six fractional digits
    lease = await coord.create_namespaced_lease(
        "default", {"metadata": {"name": "l"}, "spec": {"renewTime": "2026-01-01T00:00:00.000000Z"}}
    )
    assert lease.spec.renew_time.year == 2026


async def test_tls_with_token_for_kubectl_and_client(tmp_path: Path) -> None:
    """kubectl never sends a token over plain HTTP; with tls=True both kubectl and the client work."""
    import asyncio

    from tests.tooling import require_tool

    srv = ApiServer(token="s3cret", tls=True)
    await srv.start()
    try:
        assert srv.url.startswith("https://127.0.0.1:")
        kc = srv.write_kubeconfig(tmp_path / "kc")
        assert "certificate-authority-data" in kc.read_text()
        client = await new_client_from_config(config_file=str(kc))
        names = [n.metadata.name for n in (await CoreV1Api(client).list_namespace()).items]
        assert names == ["default", "kube-system"]
        await client.close()
        assert srv.serving_cert is not None
        async with (
            aiohttp.ClientSession() as s,
            s.get(srv.url + "/api/v1/namespaces", ssl=srv.serving_cert.client_context()) as r,
        ):
            assert r.status == 401  # no token
        kubectl = require_tool("kubectl")
        proc = await asyncio.create_subprocess_exec(
            kubectl,
            "--kubeconfig",
            str(kc),
            "get",
            "ns",
            "-o",
            "name",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        assert out.decode().split() == ["namespace/default", "namespace/kube-system"]
    finally:
        await srv.stop()


async def test_kubeconfig_loads_with_load_kube_config(server: ApiServer, kubeconfig: Path) -> None:
    from kubernetes_asyncio.client import Configuration
    from kubernetes_asyncio.config import load_kube_config

    cfg = Configuration()
    await load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    assert cfg.host == server.url
    async with ApiClient(configuration=cfg) as client:
        namespaces = await CoreV1Api(client).list_namespace()
    assert {n.metadata.name for n in namespaces.items} == {"default", "kube-system"}
