"""Run Debian's ``prometheus`` binary against a target, for integration tests.

Why a real Prometheus: unit checks (promtool, parsing the exposition) cannot prove that a scraper
negotiates our format, ingests every series, keeps exemplars, and that the dashboard's queries and the
alert rules evaluate on real data.  This starts ``prometheus`` on a free 127.0.0.1 port with a
generated config (``scrape_interval`` 1 s), a private TSDB directory, and gives a ``query`` function
over the HTTP API.

Two flavours with the same options:

* :func:`prometheus_server` — a sync context manager yielding :class:`PrometheusServer`;
* :func:`async_prometheus_server` — an async context manager yielding :class:`AsyncPrometheusServer`,
  for tests whose scrape target runs in the same event loop (sync polling would block it).

Both call ``require_tool("prometheus")``: skip locally, fail under ``CI=true`` when it is missing.
Only the process started here is ever stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.tooling import require_tool

Result = list[dict[str, Any]]


class PrometheusError(RuntimeError):
    """Prometheus did not start, or a query failed."""


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the usual bind-to-0 trick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class ScrapeTarget:
    """One scrape job: ``address`` is ``host:port``; ``labels`` are added to every scraped series
    (e.g. ``namespace``/``pod``, which alert rules aggregate by)."""

    address: str
    job: str = "hotplug-agent"
    metrics_path: str = "/metrics"
    labels: Mapping[str, str] = field(default_factory=dict)


def build_config(
    targets: Sequence[ScrapeTarget],
    rule_files: Sequence[Path] = (),
    scrape_interval: str = "1s",
    alertmanagers: Sequence[str] = (),
) -> dict[str, Any]:
    """The prometheus.yml for ``targets`` (jobs grouped by name), sending alerts to ``alertmanagers``
    (``host:port``) when given."""
    jobs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for target in targets:
        jobs.setdefault((target.job, target.metrics_path), []).append(
            {"targets": [target.address], "labels": dict(target.labels)}
        )
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": scrape_interval,
        },
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {"job_name": job, "metrics_path": path, "static_configs": static}
            for (job, path), static in jobs.items()
        ],
    }
    if alertmanagers:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]}
    return config


def _as_targets(targets: str | ScrapeTarget | Sequence[str | ScrapeTarget]) -> list[ScrapeTarget]:
    if isinstance(targets, str | ScrapeTarget):
        targets = [targets]
    return [t if isinstance(t, ScrapeTarget) else ScrapeTarget(address=t) for t in targets]


def _decode(payload: dict[str, Any], what: str) -> Any:
    if payload.get("status") != "success":
        raise PrometheusError(f"{what}: {payload.get('errorType')}: {payload.get('error')}")
    return payload["data"]


@dataclass
class _Process:
    """The running binary and where it writes; shared by the sync and async flavours."""

    url: str
    port: int
    workdir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise PrometheusError(f"prometheus exited with {self.process.returncode}:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _launch(
    targets: Sequence[ScrapeTarget],
    workdir: Path,
    rule_files: Sequence[Path],
    scrape_interval: str,
    enable_exemplars: bool,
    port: int,
    alertmanagers: Sequence[str] = (),
) -> _Process:
    binary = require_tool("prometheus")
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(build_config(targets, rule_files, scrape_interval, alertmanagers)))
    log_path = workdir / "prometheus.log"
    args = [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=info",
    ]
    if enable_exemplars:
        args.append("--enable-feature=exemplar-storage")
    if alertmanagers:
        # Re-send firing alerts every second instead of every minute (tests wait on Alertmanager).
        args.append("--rules.alert.resend-delay=1s")
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return _Process(f"http://127.0.0.1:{port}", port, workdir, process, log_path)


def _ready_once(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


# --------------------------------------------------------------------------------------------------
# sync
# --------------------------------------------------------------------------------------------------


class PrometheusServer:
    """A started Prometheus; ``query`` blocks (use the async flavour inside an event loop)."""

    def __init__(self, proc: _Process) -> None:
        self._proc = proc
        self.url = proc.url
        self.port = proc.port
        self.workdir = proc.workdir

    def log_tail(self, lines: int = 40) -> str:
        return self._proc.log_tail(lines)

    def _get(self, path: str, params: Mapping[str, str]) -> Any:
        self._proc.check_alive()
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as error:  # 4xx/5xx carry a JSON error body
            payload = json.loads(error.read() or b"{}")
        return _decode(payload, f"GET {path} {dict(params)}")

    def query(self, promql: str, at: float | None = None) -> Result:
        """Instant query; returns ``data.result`` (a list of ``{metric, value}`` for vectors)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = str(at)
        data = self._get("/api/v1/query", params)
        result = data["result"]
        return result if isinstance(result, list) else [{"metric": {}, "value": result}]

    def targets(self) -> Result:
        targets: Result = self._get("/api/v1/targets", {})["activeTargets"]
        return targets

    def rules(self) -> Result:
        groups: Result = self._get("/api/v1/rules", {})["groups"]
        return groups

    def query_exemplars(self, promql: str, start: float, end: float) -> Result:
        data: Result = self._get(
            "/api/v1/query_exemplars", {"query": promql, "start": str(start), "end": str(end)}
        )
        return data

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[Result], bool] = bool,
        wait_seconds: float = 30.0,
        interval: float = 0.25,
    ) -> Result:
        """Poll ``promql`` until ``predicate(result)`` holds; raise with the last result otherwise."""
        deadline = time.monotonic() + wait_seconds
        result: Result = []
        while True:
            result = self.query(promql)
            if predicate(result):
                return result
            if time.monotonic() > deadline:
                raise PrometheusError(f"timed out waiting for {promql!r}; last result {result!r}")
            time.sleep(interval)


@contextlib.contextmanager
def prometheus_server(
    targets: str | ScrapeTarget | Sequence[str | ScrapeTarget],
    *,
    rule_files: Sequence[Path] = (),
    scrape_interval: str = "1s",
    enable_exemplars: bool = False,
    workdir: Path | None = None,
    startup_timeout: float = 30.0,
) -> Iterator[PrometheusServer]:
    """Start Prometheus scraping ``targets`` (``host:port`` strings or :class:`ScrapeTarget`)."""
    with contextlib.ExitStack() as stack:
        base = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="prometheus-")))
        proc = _start_sync(
            _as_targets(targets), base, rule_files, scrape_interval, enable_exemplars, startup_timeout
        )
        stack.callback(proc.stop)
        yield PrometheusServer(proc)


def _start_sync(
    targets: Sequence[ScrapeTarget],
    workdir: Path,
    rule_files: Sequence[Path],
    scrape_interval: str,
    enable_exemplars: bool,
    startup_timeout: float,
) -> _Process:
    last_error: PrometheusError | None = None
    for _attempt in range(3):  # the free port can be taken between probing and binding
        proc = _launch(targets, workdir, rule_files, scrape_interval, enable_exemplars, free_port())
        deadline = time.monotonic() + startup_timeout
        try:
            while not _ready_once(proc.url):
                proc.check_alive()
                if time.monotonic() > deadline:
                    raise PrometheusError(
                        f"prometheus not ready after {startup_timeout}s:\n{proc.log_tail()}"
                    )
                time.sleep(0.1)
            return proc
        except PrometheusError as error:
            proc.stop()
            last_error = error
            if "address already in use" not in str(error):
                raise
        except BaseException:
            proc.stop()
            raise
    assert last_error is not None
    raise last_error


# --------------------------------------------------------------------------------------------------
# async
# --------------------------------------------------------------------------------------------------


class AsyncPrometheusServer:
    """A started Prometheus with coroutine queries, safe to use next to an in-loop scrape target."""

    def __init__(self, proc: _Process, session: aiohttp.ClientSession) -> None:
        self._proc = proc
        self._session = session
        self.url = proc.url
        self.port = proc.port
        self.workdir = proc.workdir

    def log_tail(self, lines: int = 40) -> str:
        return self._proc.log_tail(lines)

    async def _get(self, path: str, params: Mapping[str, str]) -> Any:
        self._proc.check_alive()
        async with self._session.get(f"{self.url}{path}", params=dict(params)) as response:
            payload = await response.json(content_type=None)
        return _decode(payload, f"GET {path} {dict(params)}")

    async def query(self, promql: str, at: float | None = None) -> Result:
        params = {"query": promql}
        if at is not None:
            params["time"] = str(at)
        data = await self._get("/api/v1/query", params)
        result = data["result"]
        return result if isinstance(result, list) else [{"metric": {}, "value": result}]

    async def targets(self) -> Result:
        targets: Result = (await self._get("/api/v1/targets", {}))["activeTargets"]
        return targets

    async def rules(self) -> Result:
        groups: Result = (await self._get("/api/v1/rules", {}))["groups"]
        return groups

    async def query_exemplars(self, promql: str, start: float, end: float) -> Result:
        data: Result = await self._get(
            "/api/v1/query_exemplars", {"query": promql, "start": str(start), "end": str(end)}
        )
        return data

    async def wait_for(
        self,
        promql: str,
        predicate: Callable[[Result], bool] = bool,
        wait_seconds: float = 30.0,
        interval: float = 0.25,
    ) -> Result:
        deadline = time.monotonic() + wait_seconds
        result: Result = []
        while True:
            result = await self.query(promql)
            if predicate(result):
                return result
            if time.monotonic() > deadline:
                raise PrometheusError(f"timed out waiting for {promql!r}; last result {result!r}")
            await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def async_prometheus_server(
    targets: str | ScrapeTarget | Sequence[str | ScrapeTarget],
    *,
    rule_files: Sequence[Path] = (),
    scrape_interval: str = "1s",
    enable_exemplars: bool = False,
    workdir: Path | None = None,
    startup_timeout: float = 30.0,
    alertmanagers: Sequence[str] = (),
) -> AsyncIterator[AsyncPrometheusServer]:
    """Async twin of :func:`prometheus_server`; readiness is awaited without blocking the loop."""
    async with contextlib.AsyncExitStack() as stack:
        base = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="prometheus-")))
        session = await stack.enter_async_context(
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        )
        proc = await _start_async(
            _as_targets(targets),
            base,
            rule_files,
            scrape_interval,
            enable_exemplars,
            startup_timeout,
            session,
            alertmanagers,
        )
        stack.callback(proc.stop)
        yield AsyncPrometheusServer(proc, session)


async def _start_async(
    targets: Sequence[ScrapeTarget],
    workdir: Path,
    rule_files: Sequence[Path],
    scrape_interval: str,
    enable_exemplars: bool,
    startup_timeout: float,
    session: aiohttp.ClientSession,
    alertmanagers: Sequence[str] = (),
) -> _Process:
    last_error: PrometheusError | None = None
    for _attempt in range(3):
        proc = _launch(
            targets, workdir, rule_files, scrape_interval, enable_exemplars, free_port(), alertmanagers
        )
        deadline = time.monotonic() + startup_timeout
        try:
            while True:
                proc.check_alive()
                try:
                    async with session.get(f"{proc.url}/-/ready") as response:
                        if response.status == 200:
                            return proc
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise PrometheusError(
                        f"prometheus not ready after {startup_timeout}s:\n{proc.log_tail()}"
                    )
                await asyncio.sleep(0.1)
        except PrometheusError as error:
            proc.stop()
            last_error = error
            if "address already in use" not in str(error):
                raise
        except BaseException:
            proc.stop()
            raise
    assert last_error is not None
    raise last_error
