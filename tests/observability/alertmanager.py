"""Debian's ``prometheus-alertmanager`` and ``amtool`` for tests, and the example route of docs/alerts.md.

:func:`async_alertmanager` starts Alertmanager on a free 127.0.0.1 port with a given configuration,
clustering off, a private storage directory; only the process started here is ever stopped. Both tools
go through ``require_tool``: skip locally, fail under ``CI=true`` when missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.observability.prometheus_server import free_port
from tests.tooling import require_tool

REPO = Path(__file__).resolve().parents[2]
ALERTS_DOC = REPO / "docs" / "alerts.md"
ROUTE_HEADING = "## Routing in Alertmanager"


def docs_route_config() -> dict[str, Any]:
    """The ``alertmanager.yml`` example under docs/alerts.md's routing heading (its first yaml block)."""
    section = ALERTS_DOC.read_text().split(f"\n{ROUTE_HEADING}\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = yaml.safe_load(block)
    assert isinstance(config, dict)
    return config


def amtool_check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("amtool"), "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _launch(config: dict[str, Any], workdir: Path, address: str) -> subprocess.Popen[bytes]:
    binary = require_tool("prometheus-alertmanager")
    config_path = workdir / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    with (workdir / "alertmanager.log").open("wb") as log:
        return subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address={address}",
                "--cluster.listen-address=",  # no gossip: one instance, no extra ports
                "--log.level=info",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


@contextlib.asynccontextmanager
async def async_alertmanager(config: dict[str, Any], startup_timeout: float = 30.0) -> AsyncIterator[str]:
    """Run Alertmanager with ``config``; yields its ``host:port``."""
    with tempfile.TemporaryDirectory(prefix="alertmanager-") as tmp:
        workdir = Path(tmp)
        log_path = workdir / "alertmanager.log"
        address = f"127.0.0.1:{free_port()}"
        process = _launch(config, workdir, address)
        try:
            deadline = time.monotonic() + startup_timeout
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
                while True:
                    if process.poll() is not None:
                        raise AssertionError(f"alertmanager exited:\n{log_path.read_text()[-3000:]}")
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with session.get(f"http://{address}/-/ready") as response:
                            if response.status == 200:
                                break
                    if time.monotonic() > deadline:
                        raise AssertionError(f"alertmanager not ready:\n{log_path.read_text()[-3000:]}")
                    await asyncio.sleep(0.1)
            yield address
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
