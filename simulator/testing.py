"""The test harness: a simulated cluster judged by its own report, and the agent as a subprocess.

In the simulator package (not under ``tests/``) because the benchmarks in ``bench/`` use it as much as
the e2e and chaos tiers do.

Why a subprocess: the agent's memory, CPU and crashes must be its own (RSS from ``/proc``, SIGKILL,
leader failover between two real processes), and a subprocess talks to the simulated API server over
the same HTTP the agent uses in production. The simulator side (API server observers, the ground-truth
:class:`~simulator.report.Recorder`) stays in this process, so request and event timestamps share one
clock (``time.perf_counter``).

Pieces (each usable alone by benchmarks, chaos tests and other e2e tests):

- :class:`SimHarness` — ``async with SimHarness(ClusterConfig(...)) as h``: a started
  :class:`~simulator.cluster.SimulatedCluster` with a :class:`~simulator.report.Recorder` and a request
  log attached; helpers to seed VMs, run the default scenario, and hot plug in-process.
- :class:`AgentProcess` — ``hotplug-agent run --kubeconfig K --listen-address 127.0.0.1:PORT ...`` with
  ``wait_ready()``, ``scrape()``, ``rss_bytes()``, ``cpu_seconds()``, ``kill()``, ``terminate()``.
- :class:`CountingProxy` — an HTTP proxy in front of the API server that attributes requests to one
  client (the embedded server's observers cannot tell the agent from the simulated controllers).
- :class:`Metrics` — a parsed ``/metrics`` scrape.
- :func:`check_invariants` — the reliability bars over a :class:`~simulator.report.Report`: no hot plug
  lost, one migration per VMI at a time, the caps held, nothing created in observe mode.
- :func:`wait_until` — poll with a deadline (a safety net, never a timing assertion).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import structlog
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from agent.kubevirt import VMIMS, VMS
from simulator.apiserver import RequestRecord
from simulator.cluster import ClusterConfig, SimulatedCluster
from simulator.manifests import plug_patch
from simulator.real.controlplane import free_port
from simulator.report import Recorder, Report
from simulator.scenario import (
    Request,
    ScenarioConfig,
    ScenarioDriver,
    VMPlan,
    build_plan,
)

# ----------------------------------------------------------------------------------------- basics


def quiet_logs(level: int = logging.WARNING) -> None:
    """Keep the simulator's structlog output (debug per watch) out of benchmark tables."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def wait_until(
    predicate: Callable[[], Awaitable[Any] | Any],
    timeout: float,  # noqa: ASYNC109 - a safety net, not a timing assertion
    what: str = "condition",
    interval: float = 0.05,
) -> Any:
    """Poll ``predicate`` (sync or async) until truthy; ``TimeoutError`` naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        value = predicate()
        last = await value if asyncio.iscoroutine(value) else value
        if last:
            return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; last={last!r}")
        await asyncio.sleep(interval)


def agent_available() -> bool:
    """Whether the benchmarks run the agent: yes unless ``HOTPLUG_AGENT_HARNESS=0`` (simulator-only
    figures). The agent runs as a subprocess (:func:`agent_command`), so nothing of it is imported."""
    return os.environ.get("HOTPLUG_AGENT_HARNESS") != "0"


def agent_command() -> list[str]:
    """The ``hotplug-agent`` console script next to this interpreter, else ``python -m agent.cli``."""
    script = Path(sys.executable).with_name("hotplug-agent")
    if script.exists():
        return [str(script)]
    found = shutil.which("hotplug-agent")
    return [found] if found else [sys.executable, "-m", "agent.cli"]


# ----------------------------------------------------------------------------------------- metrics


@dataclass
class Metrics:
    """One ``/metrics`` scrape: ``{(sample name, sorted label pairs): value}``."""

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]

    @classmethod
    def parse(cls, text: str) -> Metrics:
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
        return cls(samples)

    def get(self, name: str, default: float | None = None, **labels: str) -> float | None:
        """The sample with exactly these labels."""
        return self.samples.get((name, tuple(sorted(labels.items()))), default)

    def sum(self, name: str, **labels: str) -> float:
        """Sum over every sample of ``name`` whose labels include ``labels``."""
        total = 0.0
        for (n, lbls), v in self.samples.items():
            if n == name and all(dict(lbls).get(k) == val for k, val in labels.items()):
                total += v
        return total

    def by_label(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for (n, lbls), v in self.samples.items():
            if n == name:
                key = dict(lbls).get(label, "")
                out[key] = out.get(key, 0.0) + v
        return out


# ----------------------------------------------------------------------------------------- agent process


def _proc_status_kb(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` from ``/proc/<pid>/stat``."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


class AgentProcess:
    """``hotplug-agent run`` as a subprocess against a kubeconfig, metrics on 127.0.0.1:``port``.

    ``args`` are extra flags (``--settle-seconds 0`` ...); ``identity`` sets ``--identity``; leader
    election is on unless ``leader_elect=False``. Output goes to ``log_path`` (a temp file by default)
    so a chatty agent never blocks on a full pipe; :meth:`log_tail` shows it when a test fails.
    """

    def __init__(
        self,
        kubeconfig: Path | str,
        *,
        args: Sequence[str] = (),
        identity: str | None = None,
        leader_elect: bool = True,
        port: int | None = None,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        command: Sequence[str] | None = None,
    ) -> None:
        self.kubeconfig = str(kubeconfig)
        self.port = port or free_port()
        self.identity = identity
        self.args = list(args)
        self.leader_elect = leader_elect
        self.command = list(command) if command is not None else agent_command()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if log_path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hotplug-agent-log-")
            log_path = Path(self._tmp.name) / "agent.log"
        self.log_path = log_path
        self.env = dict(env or {})
        self.proc: asyncio.subprocess.Process | None = None
        self.started_at = 0.0
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "start() first"
        return self.proc.pid

    def argv(self) -> list[str]:
        argv = [
            *self.command,
            "run",
            "--kubeconfig",
            self.kubeconfig,
            "--listen-address",
            f"127.0.0.1:{self.port}",
            "--log-format",
            "json",
        ]
        if self.identity:
            argv += ["--identity", self.identity]
        if not self.leader_elect:
            argv.append("--no-leader-elect")
        return argv + self.args

    async def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with self.log_path.open("ab") as log:
            self.started_at = time.perf_counter()
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv(), stdout=log, stderr=asyncio.subprocess.STDOUT, env=env
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self._session

    async def get(self, path: str) -> tuple[int, str]:
        """``(status, body)`` of GET ``path`` on the agent's HTTP server; ``(0, "")`` when unreachable."""
        try:
            async with self._http().get(self.url + path) as resp:
                return resp.status, await resp.text()
        except (aiohttp.ClientError, OSError, TimeoutError):
            return 0, ""

    async def ready(self) -> bool:
        status, _ = await self.get("/readyz")
        return status == 200

    async def wait_ready(self, timeout: float = 60.0) -> float:  # noqa: ASYNC109
        """Wait for ``/readyz`` 200; returns seconds since start. Fails early if the process died."""

        async def check() -> bool:
            if not self.alive:
                raise RuntimeError(f"agent exited ({self.returncode()}):\n{self.log_tail()}")
            return await self.ready()

        await wait_until(check, timeout, f"agent {self.identity or ''} /readyz", interval=0.02)
        return time.perf_counter() - self.started_at

    async def scrape(self) -> Metrics:
        status, body = await self.get("/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return Metrics.parse(body)

    async def is_leader(self) -> bool:
        """``hotplug_agent_leader`` is 1 on this replica's ``/metrics``."""
        status, body = await self.get("/metrics")
        if status != 200:
            return False
        return Metrics.parse(body).get("hotplug_agent_leader") == 1.0

    def rss_bytes(self) -> int:
        return _proc_status_kb(self.pid, "VmRSS") * 1024

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: no cleanup, no lease release (what a node failure or OOM kill looks like)."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)

    async def terminate(self, timeout: float = 30.0) -> int | None:  # noqa: ASYNC109
        """SIGTERM and wait (SIGKILL after ``timeout``); returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode

    async def wait_exit(self) -> int:
        assert self.proc is not None
        return await self.proc.wait()

    async def close(self) -> None:
        await self.terminate()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_about(self, needle: str, lines: int = 25) -> str:
        """The last ``lines`` log lines that mention ``needle`` (a VM's ``namespace/name``)."""
        return "\n".join([ln for ln in self.log_text().splitlines() if needle in ln][-lines:])

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def __aenter__(self) -> AgentProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# ----------------------------------------------------------------------------------------- counting proxy


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    verb: str
    resource: str
    namespace: str
    name: str
    status: int
    t: float


def classify(method: str, path: str, query: str) -> tuple[str, str, str, str]:
    """``(verb, resource, namespace, name)`` of a Kubernetes API request, as the API server names them."""
    parts = [p for p in path.split("/") if p]
    q = parse_qs(query)
    if parts[:1] == ["api"]:
        rest = parts[2:]
    elif parts[:1] == ["apis"]:
        rest = parts[3:]
    else:
        return ("other", "", "", "")
    namespace = ""
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) != 2:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) > 1 else ""
    watch = q.get("watch", ["false"])[0].lower() in ("1", "true")
    verb = {
        "GET": "watch" if watch else ("get" if name else "list"),
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if name else "deletecollection",
    }.get(method, method.lower())
    return verb, resource, namespace, name


class CountingProxy:
    """A streaming HTTP proxy on 127.0.0.1 in front of the API server that logs every request.

    Point one client's kubeconfig at it (:meth:`write_kubeconfig`) to count *that client's* requests by
    verb and resource — the API economy of the agent, separated from the simulated controllers' traffic.
    Watches are streamed chunk by chunk; a dropped upstream watch is passed on as a dropped stream.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.requests: list[ProxiedRequest] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handle_signals=False)
        await self._runner.setup()
        port = free_port()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None), auto_decompress=False
        )
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def write_kubeconfig(self, path: Path, token: str | None = None) -> Path:
        user: dict[str, Any] = {"token": token} if token else {}
        import yaml

        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "proxy", "cluster": {"server": self.url}}],
            "users": [{"name": "proxy", "user": user}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
            "current-context": "proxy",
        }
        path.write_text(yaml.safe_dump(doc))
        return path

    def counts(self, since: float = 0.0) -> Counter[tuple[str, str]]:
        """``Counter[(verb, resource)]`` of requests at or after ``since`` (perf_counter)."""
        return Counter((r.verb, r.resource) for r in self.requests if r.t >= since)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        t = time.perf_counter()
        verb, resource, namespace, name = classify(request.method, request.path, request.query_string)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        url = self.upstream + request.path_qs
        try:
            upstream = await self._session.request(request.method, url, data=body or None, headers=headers)
        except aiohttp.ClientError:
            self.requests.append(ProxiedRequest(request.method, verb, resource, namespace, name, 502, t))
            return web.Response(status=502)
        self.requests.append(
            ProxiedRequest(request.method, verb, resource, namespace, name, upstream.status, t)
        )
        async with upstream:
            resp = web.StreamResponse(status=upstream.status)
            for k, v in upstream.headers.items():
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                    resp.headers[k] = v
            try:
                await resp.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await resp.write(chunk)
            except (aiohttp.ClientError, ConnectionResetError):
                # Upstream dropped the stream (watch drop): drop ours too.
                if request.transport is not None:
                    request.transport.close()
                return resp
            await resp.write_eof()
            return resp


# ----------------------------------------------------------------------------------------- cluster


class SimHarness:
    """A simulated cluster with a ground-truth recorder and a request log, as an async context manager."""

    def __init__(self, config: ClusterConfig | None = None, *, workdir: Path | None = None) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hotplug-harness-")
            workdir = Path(self._tmp.name)
        self.workdir = workdir
        self.cluster = SimulatedCluster(config or ClusterConfig(), kubeconfig_path=workdir / "kubeconfig")
        self.recorder = Recorder(self.cluster.server.store)
        self.requests: list[RequestRecord] = []
        self.record_requests = True
        self.agents: list[AgentProcess] = []
        self.proxies: list[CountingProxy] = []

    @property
    def server(self) -> Any:
        return self.cluster.server

    @property
    def store(self) -> Any:
        return self.cluster.server.store

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig_path

    async def start(self) -> SimHarness:
        await self.cluster.start()
        self.cluster.server.add_event_observer(self._on_event)
        self.cluster.server.add_request_observer(self._on_request)
        return self

    def _on_event(self, event_type: str, resource: str, obj: dict[str, Any], t: float) -> None:
        self.recorder.observe(event_type, resource, obj, t)  # late-bound: shield_simulator wraps it

    def _on_request(self, rec: RequestRecord) -> None:
        if self.record_requests:
            self.requests.append(rec)

    async def stop(self) -> None:
        for agent in self.agents:
            with contextlib.suppress(Exception):
                await agent.close()
            agent.cleanup()
        for proxy in self.proxies:
            with contextlib.suppress(Exception):
                await proxy.stop()
        await self.cluster.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    async def __aenter__(self) -> SimHarness:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- agents -------------------------------------------------------------------------------------

    async def proxy(self) -> CountingProxy:
        """A :class:`CountingProxy` in front of this cluster (stopped with the harness)."""
        p = CountingProxy(self.cluster.url)
        await p.start()
        self.proxies.append(p)
        return p

    def agent(self, *args: str, kubeconfig: Path | None = None, **kw: Any) -> AgentProcess:
        """An (unstarted) agent subprocess for this cluster; stopped with the harness."""
        a = AgentProcess(kubeconfig or self.kubeconfig, args=args, **kw)
        self.agents.append(a)
        return a

    # -- workload -----------------------------------------------------------------------------------

    async def seed(self, vms: int | Sequence[dict[str, Any]]) -> None:
        """VM bodies, or a count (the scenario's VM mix), with their VMIs, in-process."""
        await self.cluster.seed(vms)

    def scenario(self, cfg: ScenarioConfig) -> list[VMPlan]:
        return build_plan(cfg)

    async def run_scenario(self, plans: list[VMPlan], cfg: ScenarioConfig) -> ScenarioDriver:
        """The default scenario's user edits over HTTP, recorded as requests (VMs must be seeded)."""
        from kubernetes_asyncio.client import CustomObjectsApi
        from kubernetes_asyncio.config import new_client_from_config

        client = await new_client_from_config(config_file=str(self.kubeconfig))
        try:
            driver = ScenarioDriver(
                CustomObjectsApi(client), plans, cfg, on_request=self.recorder.add_request
            )
            await driver.run()
        finally:
            await client.close()
        return driver

    async def plug(self, namespace: str, name: str, iface: str, binding: str = "bridge") -> None:
        """Hot plug in-process (the user's merge patch of the VM, its NAD created first), recorded as a
        request."""
        await self.cluster.ensure_nads([((namespace, iface), binding)])
        vm = self.store.get(VMS, namespace, name)
        t = time.time()
        await self.store.patch(VMS, namespace, name, plug_patch(vm, iface, binding))
        self.recorder.add_request(Request(namespace, name, iface, "plug", binding, "plug", t))

    def report(self) -> Report:
        return self.recorder.report()

    def shield_simulator(self, namespace: str) -> None:
        """Make the simulated KubeVirt and the recorder ignore ``namespace`` (bad-input tests).

        The simulator models KubeVirt, whose API server would refuse wrongly typed objects by the CRDs'
        structural schemas; the embedded server's CRDs are open, and the simulated controllers assume
        well-formed objects. Garbage meant for the agent goes into ``namespace``, which only the agent
        watches then. Wraps the simulator's informers per instance; its modules are untouched.
        """
        world = self.cluster.world
        assert world is not None, "start() first"

        def keep(obj: Any) -> bool:
            meta = obj.get("metadata") if isinstance(obj, dict) else None
            return not (isinstance(meta, dict) and meta.get("namespace") == namespace)

        for inf in world.informers:
            apply, dispatch = inf._apply, inf._dispatch

            async def _apply(type_: str, obj: Any, _apply: Any = apply) -> None:
                if keep(obj):
                    await _apply(type_, obj)

            async def _dispatch(type_: str, obj: Any, old: Any, _dispatch: Any = dispatch) -> None:
                if keep(obj):
                    await _dispatch(type_, obj, old)

            inf._apply = _apply  # type: ignore[method-assign]
            inf._dispatch = _dispatch  # type: ignore[method-assign]
        observe = self.recorder.observe

        def _observe(event_type: str, resource: str, obj: dict[str, Any], t: float) -> None:
            if keep(obj):
                observe(event_type, resource, obj, t)

        self.recorder.observe = _observe  # type: ignore[method-assign]

    def vmims(self) -> list[dict[str, Any]]:
        items, _ = self.store.list(VMIMS)
        return list(items)

    def check(self) -> None:
        self.cluster.check()


# ----------------------------------------------------------------------------------------- invariants


@dataclass
class Caps:
    cluster: int
    node: int


#: Final states that count as "blocked with a reason" (a hot plug that will not complete, explained).
BLOCKED_STATES = frozenset(
    {"rejected", "not-live-migratable", "slots-exhausted", "restart-required", "opted-out"}
)


def check_invariants(
    report: Report,
    caps: Caps | None = None,
    *,
    observe_only: bool = False,
    agent_only: bool = False,
    agent_gave_up: int = 0,
    allow_pending: Iterable[str] = (),
) -> list[str]:
    """The reliability bars, judged from the simulator's report; returns the violations.

    - every hot plug completed or blocked with a reason: a final state the cluster shows (not live
      migratable, slots exhausted, ...), or a Warning Event of the agent on the VM giving the reason
      (``RequestOutcome.agent_block``, e.g. ``retries-exhausted``), or up to ``agent_gave_up`` others,
      or an ``allow_pending`` category;
    - never two concurrent migrations for one VMI; none for opted-out or RestartRequired VMs by the
      agent (the report's own violations), none for not-live-migratable VMIs by the agent;
    - in observe mode, no migration created by the agent at all;
    - the caps never exceeded: unfinished migrations ≤ cluster cap, running per source node ≤ node cap
      (in observe mode the migrations are KubeVirt's, whose limit counts running ones only: its workload
      updater keeps creating while some hang ``Pending``, e.g. on a missing NAD).
    """
    out = list(report.violations)
    allowed = set(allow_pending)
    unexplained = [
        r
        for r in report.requests
        if not r.completed
        and r.final_state not in BLOCKED_STATES
        and not r.agent_block
        and r.category not in allowed
    ]
    if len(unexplained) > agent_gave_up:
        for r in unexplained:
            out.append(f"hot plug lost: {r.namespace}/{r.vm} {r.op} {r.interface} ({r.final_state})")
    m = report.migrations
    if agent_only:
        for what, n in (
            ("opted-out", m.for_opted_out),
            ("not-live-migratable", m.for_not_live_migratable),
            ("RestartRequired", m.for_restart_required),
        ):
            if n:
                out.append(f"{n} migrations created for {what} VMs")
    if m.max_concurrent_per_vmi > 1:
        out.append(f"{m.max_concurrent_per_vmi} concurrent migrations for one VMI")
    if observe_only and m.by_creator.get("agent", 0):
        out.append(f"agent created {m.by_creator['agent']} migrations in observe mode")
    if caps is not None:
        # KubeVirt's workload updater budgets running migrations only, so its Pending VMIMs pile up past
        # the cap (as on a real cluster); the unfinished bound is the agent's promise when it alone creates.
        only_agent = m.by_creator.get("kubevirt", 0) == 0 and m.by_creator.get("manual", 0) == 0
        if only_agent and m.max_concurrent > caps.cluster:
            out.append(f"cluster cap exceeded: {m.max_concurrent} unfinished > {caps.cluster}")
        if m.max_concurrent_running > caps.cluster:
            out.append(f"cluster cap exceeded: {m.max_concurrent_running} running > {caps.cluster}")
        if m.max_running_per_node > caps.node:
            out.append(f"node cap exceeded: {m.max_running_per_node} running on a node > {caps.node}")
    return list(dict.fromkeys(out))


def metrics_disagreements(report: Report, metrics: Metrics, *, full_history: bool) -> list[str]:
    """Where the agent's ``/metrics`` disagree with the ground truth at the end of a settled run.

    Gauges are checked always (they are the leader's current view): nothing pending, nothing in flight,
    blocked VMs by reason equal to the report's not-completed requests by final state (or, where only
    the agent can know, by the reason of its Event on the VM). Counters only
    when ``full_history`` (one agent process saw the whole run; a SIGKILL resets them): migrations
    created, finished by result, hot plugs completed.
    """
    out: list[str] = []
    pending = metrics.sum("hotplug_agent_pending_hotplugs")
    if pending:
        out.append(f"agent reports {pending:.0f} pending hot plugs after the run settled")
    in_flight = metrics.sum("hotplug_agent_migrations_in_flight")
    if in_flight != report.migrations.unfinished:
        out.append(f"in flight: agent {in_flight:.0f}, cluster {report.migrations.unfinished}")
    blocked = metrics.by_label("hotplug_agent_blocked_vms", "reason")
    truth: Counter[str] = Counter()
    for r in report.requests:
        if not r.accepted or r.completed:
            continue
        if r.final_state in BLOCKED_STATES:
            truth[r.final_state] += 1  # the cluster shows why
        elif r.agent_block:
            # Only the agent can know (predicted slot exhaustion, retries exhausted): its Event is the
            # evidence, which the report already checks against whatever the cluster does show.
            truth[r.agent_block] += 1
    # The report counts requests; one request per VM in the scenarios this harness runs.
    for reason in sorted(set(truth) | {k for k, v in blocked.items() if v}):
        if int(blocked.get(reason, 0)) != truth.get(reason, 0):
            out.append(
                f"blocked[{reason}]: agent {blocked.get(reason, 0):.0f}, cluster {truth.get(reason, 0)}"
            )
    if full_history:
        out += _counter_disagreements(report, metrics)
    return out


def _counter_disagreements(report: Report, metrics: Metrics) -> list[str]:
    """The counters against the ground truth: migrations created and succeeded, hot plugs completed."""
    out: list[str] = []
    m = report.migrations
    creates = metrics.sum("hotplug_agent_migration_creates_total")
    if int(creates) != m.by_creator.get("agent", 0):
        out.append(f"creates: agent {creates:.0f}, cluster {m.by_creator.get('agent', 0)}")
    ok = metrics.sum("hotplug_agent_migrations_total", result="succeeded", initiator="agent")
    finished_truth = m.succeeded
    if int(ok) != finished_truth:
        out.append(f"succeeded migrations: agent {ok:.0f}, cluster {finished_truth}")
    done = metrics.by_label("hotplug_agent_hotplugs_completed_total", "operation")
    for op in ("plug", "unplug"):
        cluster_n = sum(1 for r in report.requests if r.completed and r.op == op)
        if int(done.get(op, 0)) != cluster_n:
            out.append(f"hot plugs completed[{op}]: agent {done.get(op, 0):.0f}, cluster {cluster_n}")
    return out


__all__ = [
    "BLOCKED_STATES",
    "AgentProcess",
    "Caps",
    "CountingProxy",
    "Metrics",
    "ProxiedRequest",
    "SimHarness",
    "agent_available",
    "agent_command",
    "check_invariants",
    "classify",
    "free_port",
    "metrics_disagreements",
    "proc_cpu_seconds",
    "quiet_logs",
    "wait_until",
]
