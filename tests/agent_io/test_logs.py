"""Logs in one format end to end (agent/logs.py), and the informer's failure logging per backoff step."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import structlog

from agent.informer import Informer
from agent.kube import VMS, KubeClient
from agent.logs import configure_logging
from simulator.apiserver import ApiServer
from simulator.apiserver.faults import FaultRule
from simulator.testing import AgentProcess, wait_until
from tests.agent_io.conftest import create_vm, eventually, parse_rec


@pytest.fixture
def restore_logging() -> Any:
    """configure_logging changes process-wide state: put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    config = structlog.get_config()
    hook = sys.excepthook
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)
    sys.excepthook = hook
    logging.captureWarnings(False)


def test_json_renders_ours_and_the_libraries_records(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    structlog.get_logger("agent.app").info("agent_started", mode="active")
    structlog.get_logger("agent.app").debug("not shown at info")
    logging.getLogger("aiohttp.client").warning("Unclosed %s", "session", extra={"peer": "x"})
    logging.getLogger("kubernetes_asyncio.rest").info("library chatter below warning is not shown")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger("agent.app").exception("agent_failed")
    try:
        raise ValueError("nobody caught me")
    except ValueError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    lines = out.getvalue().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert [(r["logger"], r["level"], r["event"].split("\n")[0]) for r in records] == [
        ("agent.app", "info", "agent_started"),
        ("aiohttp.client", "warning", "Unclosed session"),
        ("py.warnings", "warning", records[2]["event"].split("\n")[0]),
        ("agent.app", "error", "agent_failed"),
        ("agent", "critical", "uncaught_exception"),
    ]
    assert "DeprecationWarning: deprecated thing" in records[2]["event"]
    assert records[1]["peer"] == "x" and records[0]["mode"] == "active"
    assert "RuntimeError: boom" in records[3]["exception"]
    assert "ValueError: nobody caught me" in records[4]["exception"]
    assert all(r["timestamp"].endswith("Z") for r in records)


def test_console_renders_the_libraries_records_too(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging("console", "debug", stream=out)
    structlog.get_logger("agent.x").debug("ours", a=1)
    logging.getLogger("aiohttp.access").error("theirs")
    text = out.getvalue()
    assert "ours" in text and "a=1" in text and "[agent.x]" in text
    assert "theirs" in text and "[aiohttp.access]" in text
    assert not text.lstrip().startswith("{")


async def test_informer_warns_once_per_backoff_step(kube: KubeClient, server: ApiServer) -> None:
    """A watch that keeps failing: one warning per backoff step, with the error; never per attempt."""
    await create_vm(kube, "a")
    informer = Informer(kube, VMS, parse_rec, backoff_initial=0.01, backoff_max=0.05)
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(informer.run())
        await informer.wait_synced()
        server.faults.add(FaultRule(verbs=("watch",), resources=("virtualmachines",), error_rate=1.0))
        server.faults.drop_watches("virtualmachines")
        await eventually(lambda: informer.restarts.get("error", 0) >= 5, 10, "five failed watches")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    steps = [e for e in logs if e["event"] == "informer_rewatch" and e["log_level"] == "warning"]
    assert len(steps) >= 4
    assert len(steps) <= informer.restarts["error"]
    assert all(s["reason"] == "error" and s["error"] and "retry_in" in s for s in steps)
    assert any("500" in s["error"] for s in steps), steps[-1]


async def test_the_agent_writes_only_json_lines(server: ApiServer, kubeconfig: Path, tmp_path: Path) -> None:
    """The agent process under API errors and watch drops: every line on stderr is JSON."""
    server.faults.add(FaultRule(error_rate=0.2, error_codes=(500, 503, 429), watch_drop_rate=0.5))
    agent = AgentProcess(
        kubeconfig,
        leader_elect=False,
        args=["--log-level", "debug"],
        log_path=tmp_path / "agent.log",
        env={"PYTHONWARNINGS": "always"},
    )
    await agent.start()
    try:
        await agent.wait_ready(60)

        def restarted() -> bool:
            text = agent.log_path.read_text()
            return "informer_rewatch" in text and "agent_started" in text

        await wait_until(restarted, 30, "a watch restart logged")
    finally:
        code = await agent.terminate()
    assert code == 0, agent.log_tail()
    lines = agent.log_path.read_text().splitlines()
    assert len(lines) > 5
    bad = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        assert {"event", "level", "logger", "timestamp"} <= set(record), line
    assert bad == []
