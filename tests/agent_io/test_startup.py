"""Start-up that explains itself (agent/startup.py, agent/app.py, agent/plan.py) against the embedded
API server: which kubeconfig, is KubeVirt served, what the agent says when it starts.

The same questions against a real kube-apiserver (discovery's 404, RBAC's 403) are asked in
tests/controlplane/test_startup_real.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
import yaml

from agent import app
from agent.config import AgentConfig, agent_version
from agent.kube import KUBEVIRTS, ApiError, KubeClient
from agent.plan import run_plan
from agent.startup import StartupError, connect, discover, forbidden_hint
from simulator.apiserver import ApiServer
from simulator.apiserver.registry import BUILTINS, Registry
from simulator.real.controlplane import free_port
from tests.agent_io.conftest import eventually


@pytest.fixture
async def bare_server() -> AsyncIterator[ApiServer]:
    """An API server without KubeVirt (and without Multus): only the built-in kinds."""
    srv = ApiServer(registry=Registry(BUILTINS))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


# ------------------------------------------------------------------ which cluster


async def test_missing_kubeconfig_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "nope.kubeconfig"
    with pytest.raises(StartupError) as info:
        await connect(str(missing))
    assert str(info.value) == f"kubeconfig {missing}: no such file"


async def test_default_kubeconfig_missing_outside_a_pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(
        StartupError, match=r"absent: no such file \(and not running in a pod: pass --kubeconfig"
    ):
        await connect(None)


async def test_context_is_chosen_and_a_wrong_one_named(kubeconfig: Path) -> None:
    doc = yaml.safe_load(await asyncio.to_thread(kubeconfig.read_text))
    current = doc["current-context"]
    kube = await connect(str(kubeconfig), current)
    await kube.close()
    with pytest.raises(StartupError) as info:
        await connect(str(kubeconfig), "prod")
    assert str(info.value) == f"kubeconfig {kubeconfig}: no context 'prod' (contexts: {current})"
    doc.pop("current-context")
    await asyncio.to_thread(kubeconfig.write_text, yaml.safe_dump(doc))
    with pytest.raises(StartupError, match="no current-context; pass --context"):
        await connect(str(kubeconfig))


async def test_run_exits_1_naming_the_missing_kubeconfig(tmp_path: Path) -> None:
    config = AgentConfig(kubeconfig=str(tmp_path / "missing"), listen_address="127.0.0.1:0", identity="x")
    with structlog.testing.capture_logs() as logs:
        assert await asyncio.wait_for(app.run(config, asyncio.Event()), 10) == 1
    failed = [e for e in logs if e["event"] == "kube_config_failed"]
    assert failed and failed[0]["error"] == f"kubeconfig {tmp_path / 'missing'}: no such file"


# ------------------------------------------------------------------ is KubeVirt there


async def test_discovery_sees_kubevirt_and_multus(kube: KubeClient) -> None:
    apis = await discover(kube)
    assert apis.kubevirt and apis.kubevirt_missing == () and apis.network_attachment_definitions
    assert apis.kubevirt_problem() == ""


async def test_discovery_without_kubevirt(bare_server: ApiServer, tmp_path: Path) -> None:
    kube = await connect(str(bare_server.write_kubeconfig(tmp_path / "kc")))
    try:
        apis = await discover(kube)
    finally:
        await kube.close()
    assert not apis.kubevirt and not apis.network_attachment_definitions
    assert apis.kubevirt_problem() == (
        f"kubevirt.io/v1 is not served by the API server at {bare_server.url}: is KubeVirt installed?"
    )


async def _get(url: str) -> tuple[int, str]:
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            return resp.status, await resp.text()
    except aiohttp.ClientError:
        return 0, ""


async def test_run_without_kubevirt_stays_unready_and_says_why(
    bare_server: ApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One clear error (not one per retry), /readyz 503 with the reason, no informer started."""
    monkeypatch.setattr(app, "DISCOVERY_RETRY_SECONDS", 0.05)
    port = free_port()
    config = AgentConfig(
        kubeconfig=str(bare_server.write_kubeconfig(tmp_path / "kc")),
        listen_address=f"127.0.0.1:{port}",
        identity="x",
        leader_elect=False,
    )
    stop = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(app.run(config, stop, install_signals=False))
        answers: list[tuple[int, str]] = []

        async def probe() -> bool:
            answers.append(await _get(f"http://127.0.0.1:{port}/readyz"))
            return answers[-1][0] == 503 and "KubeVirt" in answers[-1][1]

        for _ in range(200):
            if await probe():
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # several discovery retries
        assert (await _get(f"http://127.0.0.1:{port}/readyz"))[0] == 503
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0
    status, text = answers[-1]
    assert status == 503 and text.strip().endswith("is KubeVirt installed?"), answers[-1]
    errors = [e for e in logs if e["event"] == "kubevirt_api_unavailable"]
    assert len(errors) == 1 and errors[0]["log_level"] == "error"
    assert "is KubeVirt installed?" in errors[0]["error"]
    assert not [e for e in logs if e["event"].startswith("informer_")], "no informer may run without KubeVirt"


async def _kubevirt_cr(kube: KubeClient, version: str = "v1.6.1") -> None:
    body: dict[str, Any] = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "KubeVirt",
        "metadata": {"name": "kubevirt", "namespace": "kubevirt"},
        "spec": {
            "configuration": {"migrations": {"parallelMigrationsPerCluster": 7}},
            "workloadUpdateStrategy": {"workloadUpdateMethods": ["LiveMigrate"]},
        },
    }
    try:
        await kube.create(KUBEVIRTS, "kubevirt", body)
    except ApiError as exc:
        if exc.status != 404:
            raise
        await kube.request(
            "create", KUBEVIRTS, "POST", "/api/v1/namespaces", body={"metadata": {"name": "kubevirt"}}
        )
        await kube.create(KUBEVIRTS, "kubevirt", body)
    current = await kube.get(KUBEVIRTS, "kubevirt", "kubevirt")
    assert current is not None
    current["status"] = {"observedKubeVirtVersion": version, "phase": "Deployed"}
    path = KUBEVIRTS.path("kubevirt", "kubevirt", "status")
    await kube.request("update", KUBEVIRTS, "PUT", path, body=current)


async def test_start_up_line_says_what_the_agent_does(kube: KubeClient, kubeconfig: Path) -> None:
    await _kubevirt_cr(kube)
    config = AgentConfig(
        kubeconfig=str(kubeconfig),
        listen_address="127.0.0.1:0",
        identity="agent-a",
        namespaces=("team-a", "team-b"),
        max_per_node=3,
        leader_elect=False,
    )
    stop = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(app.run(config, stop, install_signals=False))
        await eventually(lambda: any(e["event"] == "agent_started" for e in logs), 10, "agent_started")
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0
    started = next(e for e in logs if e["event"] == "agent_started")
    assert started["version"] == agent_version()
    assert started["kubevirt_version"] == "1.6.1"
    assert (started["mode"], started["effective_mode"]) == ("auto", "observe")  # 1.6 + LiveMigrate
    assert started["namespaces"] == "team-a,team-b"
    assert started["max_in_flight"] == "7 (KubeVirt CR)" and started["max_per_node"] == "3"
    assert started["leader_election"] == "off"
    starting = next(e for e in logs if e["event"] == "agent_starting")
    assert starting["version"] == agent_version()


# ------------------------------------------------------------------ plan


async def test_plan_json_and_yaml(
    kubeconfig: Path, kube: KubeClient, capsys: pytest.CaptureFixture[str]
) -> None:
    await _kubevirt_cr(kube, "v1.5.2")
    config = AgentConfig(kubeconfig=str(kubeconfig), identity="plan")
    assert await run_plan(config, output="json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kubevirtVersion"] == "1.5.2" and doc["mode"] == {"configured": "auto", "effective": "active"}
    assert doc["vms"] == [] and doc["counts"] == {}
    assert await run_plan(config, output="yaml") == 0
    assert yaml.safe_load(capsys.readouterr().out) == doc


async def test_plan_without_kubevirt_exits_1(
    bare_server: ApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = AgentConfig(kubeconfig=str(bare_server.write_kubeconfig(tmp_path / "kc")), identity="plan")
    assert await run_plan(config) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("hotplug-agent plan: kubevirt.io/v1 is not served") and "is KubeVirt installed?" in err
    )


async def test_plan_with_missing_kubeconfig_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_plan(AgentConfig(kubeconfig=str(tmp_path / "x"), identity="plan")) == 1
    assert capsys.readouterr().err.strip() == f"hotplug-agent plan: kubeconfig {tmp_path / 'x'}: no such file"


# ------------------------------------------------------------------ are we allowed


def test_forbidden_hint_names_verb_resource_scope_and_the_chart() -> None:
    from agent.kube import VMS

    exc = ApiError(403, "Forbidden", 'User "x" cannot list resource "virtualmachines"', verb="list")
    text = forbidden_hint(exc, VMS, "team-a")
    assert text.startswith(
        "forbidden: the agent may not list virtualmachines.kubevirt.io in namespace team-a"
    )
    assert "charts/hotplug-agent/templates/clusterrole.yaml" in text and "watchNamespaces" in text
    assert "cluster-wide" in forbidden_hint(exc, VMS, None)
