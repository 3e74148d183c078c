"""Start-up diagnostics against a real kube-apiserver: discovery's answers for a group that is and one
that is not served, and RBAC's 403 turned into the missing verb/resource and the chart's RBAC.

The embedded server has no RBAC and serves every group it knows; these are the answers only the real
server can give (tests/agent_io/test_startup.py covers the rest).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from agent import app
from agent.config import AgentConfig
from agent.plan import run_plan
from agent.startup import connect, discover, discovery_document
from simulator.real.controlplane import ControlPlane as RealControlPlane
from tests.agent_io.conftest import eventually
from tests.controlplane.cluster import ControlPlane, ensure_binaries

pytestmark = pytest.mark.controlplane


async def test_discovery_on_the_real_server(controlplane: ControlPlane) -> None:
    kube = await connect(str(controlplane.kubeconfig))
    try:
        apis = await discover(kube)
        assert apis.kubevirt and apis.kubevirt_missing == () and apis.network_attachment_definitions
        assert await discovery_document(kube, "not-installed.example.com/v1") is None  # the real 404
    finally:
        await kube.close()


async def test_plan_names_the_missing_permission(
    controlplane: ControlPlane, capsys: pytest.CaptureFixture[str]
) -> None:
    nobody = controlplane.make_user("hotplug-nobody")  # authenticated, no RBAC: discovery only
    assert await run_plan(AgentConfig(kubeconfig=str(nobody), identity="plan")) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "hotplug-agent plan: forbidden: the agent may not list virtualmachines.kubevirt.io cluster-wide"
    ), err
    assert 'User "hotplug-nobody" cannot list resource "virtualmachines"' in err
    assert "charts/hotplug-agent/templates/clusterrole.yaml" in err


async def test_run_logs_the_missing_permission_per_namespace(controlplane: ControlPlane) -> None:
    nobody = controlplane.make_user("hotplug-nobody-ns")
    config = AgentConfig(
        kubeconfig=str(nobody),
        namespaces=("team-x",),
        listen_address="127.0.0.1:0",
        identity="x",
        leader_elect=False,
    )
    stop = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(app.run(config, stop, install_signals=False))

        def forbidden() -> list[str]:
            return [e["error"] for e in logs if e["event"] == "informer_list_failed"]

        await eventually(lambda: len(forbidden()) >= 4, 30, "the informers' list failures")
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
    texts = forbidden()
    assert any(
        t.startswith(
            "forbidden: the agent may not list virtualmachineinstances.kubevirt.io in namespace team-x"
        )
        for t in texts
    ), texts
    assert all("chart's RBAC" in t for t in texts)


@pytest.fixture(scope="module")
def no_kubevirt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealControlPlane]:
    """A second real control plane with no CRDs at all: a cluster where KubeVirt is not installed."""
    cluster = RealControlPlane(ensure_binaries(), tmp_path_factory.mktemp("no-kubevirt"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


async def test_without_kubevirt_plan_exits_1_and_run_stays_unready(
    no_kubevirt: RealControlPlane, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig: Path = no_kubevirt.kubeconfig
    assert await run_plan(AgentConfig(kubeconfig=str(kubeconfig), identity="plan")) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        f"hotplug-agent plan: kubevirt.io/v1 is not served by the API server at {no_kubevirt.url}: "
        "is KubeVirt installed?"
    ), err
    kube = await connect(str(kubeconfig))
    try:
        apis = await discover(kube)
    finally:
        await kube.close()
    assert not apis.kubevirt and not apis.network_attachment_definitions

    monkeypatch.setattr(app, "DISCOVERY_RETRY_SECONDS", 0.1)
    config = AgentConfig(
        kubeconfig=str(kubeconfig), listen_address="127.0.0.1:0", identity="x", leader_elect=False
    )
    stop = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(app.run(config, stop, install_signals=False))
        await eventually(lambda: any(e["event"] == "kubevirt_api_unavailable" for e in logs), 20, "the error")
        await asyncio.sleep(0.5)  # several more discovery rounds: still one error line
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
    assert [e["event"] for e in logs].count("kubevirt_api_unavailable") == 1
    assert not any(e["event"] in ("agent_started", "informer_list_failed") for e in logs)
