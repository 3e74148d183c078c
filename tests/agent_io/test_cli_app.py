"""The ``hotplug-agent`` command line and the ``run`` wiring against the embedded API server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from agent import app
from agent.cli import main
from agent.config import SETTINGS, AgentConfig
from simulator.apiserver import ApiServer

BIN = Path(sys.executable).parent / "hotplug-agent"


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "agent.cli"]
    return subprocess.run([*cmd, *argv], capture_output=True, text=True, timeout=60, check=False)


def test_top_level_help() -> None:
    res = _cli("--help")
    assert res.returncode == 0, res.stderr
    for word in ("run", "plan", "simulate", "cluster", "examples:"):
        assert word in res.stdout


def test_run_help_documents_every_flag_with_env_and_default() -> None:
    res = _cli("run", "--help")
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stdout.split())  # argparse wraps lines
    for s in SETTINGS:
        assert s.flag in text, s.flag
        assert f"env {s.env}; default {s.shown_default}" in text, s.flag


def test_simulate_and_cluster_help() -> None:
    for sub in ("simulate", "cluster"):
        res = _cli(sub, "--help")
        assert res.returncode == 0, res.stderr
        assert "--kubevirt-version" in res.stdout


def test_invalid_config_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--mode", "nope"]) == 2
    assert "HOTPLUG_AGENT_MODE" in capsys.readouterr().err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: hotplug-agent" in capsys.readouterr().out


async def test_run_syncs_leads_serves_and_releases(server: ApiServer, kubeconfig: Path) -> None:
    config = AgentConfig(
        kubeconfig=str(kubeconfig),
        listen_address="127.0.0.1:0",
        identity="agent-test",
        lease_name="hotplug-agent",
        lease_namespace="default",
        lease_duration_seconds=3,
        renew_deadline_seconds=2,
        retry_period_seconds=0.2,
    )
    # Find the port the stub binds: it is created inside run(); use a fixed free port instead.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = AgentConfig(**{**config.__dict__, "listen_address": f"127.0.0.1:{port}"})
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(config, stop))
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:

            async def status(path: str) -> int:
                try:
                    async with http.get(base + path) as resp:
                        return resp.status
                except aiohttp.ClientError:
                    return 0

            ready = False
            for _ in range(200):
                if await status("/readyz") == 200:
                    ready = True
                    break
                await asyncio.sleep(0.05)
            assert ready
            assert await status("/livez") == 200

            async def leader_metric() -> bool:
                async with http.get(base + "/metrics") as resp:
                    text = await resp.text()
                return "hotplug_agent_leader 1.0" in text and "hotplug_agent_cache_synced 1.0" in text

            for _ in range(100):
                if await leader_metric():
                    break
                await asyncio.sleep(0.05)
            assert await leader_metric()
        lease = server.store.try_get("leases", "default", "hotplug-agent")
        assert lease is not None
    finally:
        stop.set()
        code = await asyncio.wait_for(task, 10)
    assert code == 0
    lease = server.store.try_get("leases", "default", "hotplug-agent")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "", "released on graceful stop"


async def test_run_with_unusable_kubeconfig_exits_1(tmp_path: Path) -> None:
    config = AgentConfig(kubeconfig=str(tmp_path / "missing"), listen_address="127.0.0.1:0", identity="x")
    assert await asyncio.wait_for(app.run(config, asyncio.Event()), 10) == 1


async def test_run_exits_1_when_the_http_port_is_taken(kubeconfig: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        config = AgentConfig(
            kubeconfig=str(kubeconfig), listen_address=f"127.0.0.1:{port}", identity="x", leader_elect=False
        )
        assert await asyncio.wait_for(app.run(config, asyncio.Event()), 10) == 1
