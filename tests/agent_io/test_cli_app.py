"""The ``hotplug-agent`` command line and the ``run`` wiring against the embedded API server."""

from __future__ import annotations

import ast
import asyncio
import re
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from agent import app
from agent.cli import SIMULATOR_MISSING, build_parser, main
from agent.config import AgentConfig, agent_version, settings_of
from simulator.apiserver import ApiServer
from simulator.mix import DEFAULT_MIX

BIN = Path(sys.executable).parent / "hotplug-agent"
ROOT = Path(__file__).resolve().parents[2]


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "agent.cli"]
    return subprocess.run([*cmd, *argv], capture_output=True, text=True, timeout=60, check=False)


def test_top_level_help() -> None:
    res = _cli("--help")
    assert res.returncode == 0, res.stderr
    for word in ("run", "plan", "simulate", "cluster", "examples:"):
        assert word in res.stdout


def test_run_help_documents_every_flag_with_env_and_default() -> None:
    for command in ("run", "plan"):
        res = _cli(command, "--help")
        assert res.returncode == 0, res.stderr
        text = " ".join(res.stdout.split())  # argparse wraps lines
        for s in settings_of(command):
            assert s.flag in text, s.flag
            assert f"env {s.env}; default {s.shown_default}" in text, s.flag


def test_version() -> None:
    res = _cli("--version")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"hotplug-agent {agent_version()}" and agent_version() != "unknown"


def test_simulate_and_cluster_help_show_a_default_for_every_flag() -> None:
    for sub in ("simulate", "cluster"):
        parser = build_parser()
        command = parser._subparsers._group_actions[0].choices[sub]  # type: ignore[union-attr]
        flags = [a for a in command._actions if a.option_strings and a.dest != "help"]
        assert len(flags) >= 15
        for action in flags:
            assert action.help and re.search(r"\[default [^]]+\]$", action.help), action.option_strings
        res = _cli(sub, "--help")
        assert res.returncode == 0, res.stderr
        assert "--kubevirt-version VERSION" in res.stdout
        # what --vms N creates: every category of the default mix with its share
        for category, share in DEFAULT_MIX.items():
            assert re.search(rf"{share:.0%}\s+{category}\s", res.stdout), category


def test_agent_package_never_imports_the_simulator() -> None:
    """The commands come through the entry-point group, never through an import in agent/."""
    for path in (ROOT / "agent").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not [n for n in names if n.split(".")[0] == "simulator"], f"{path.name} imports {names}"


SIMULATOR_BLOCKED = (
    "import sys; sys.modules['simulator'] = None; from agent.cli import main; sys.exit(main(sys.argv[1:]))"
)


def test_without_the_simulator_the_commands_say_how_to_get_them() -> None:
    """`simulator` not importable (as in an image without it): --help still lists simulate/cluster,
    running one says how to install it, run and plan are untouched."""

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", SIMULATOR_BLOCKED, *argv],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    top = cli("--help")
    assert top.returncode == 0, top.stderr
    text = " ".join(top.stdout.split())
    for sub in ("simulate", "cluster"):
        assert re.search(rf"{sub} \(not installed here: .*kubevirt-hotplug-agent\[simulator\]", text), text
        res = cli(sub, "--vms", "3")
        assert res.returncode == 3
        assert res.stderr.strip() == f"hotplug-agent {sub}: {SIMULATOR_MISSING}"
    assert cli("run", "--help").returncode == 0
    assert cli("plan", "--help").returncode == 0


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
