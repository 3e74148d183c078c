"""``hotplug-agent cluster`` and ``hotplug-agent simulate``: argument definitions and runners.

:mod:`simulator.cli_args` registers the commands and dispatches here. ``simulate`` runs a simulated
cluster, the scenario driver and either the agent (``agent_runner``) or, without one, a manual operator
who migrates like ``virtctl migrate``; it prints live progress and a ground-truth summary, and
``--report FILE`` writes the JSON report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TextIO, cast

import structlog
from kubernetes_asyncio.client import CustomObjectsApi
from kubernetes_asyncio.config import new_client_from_config

from agent.aio import wait_event
from simulator.cli_args import CLUSTER_VMS, SIMULATE_VMS, add_cluster_arguments, add_simulate_arguments
from simulator.cluster import ClusterConfig, SimulatedCluster
from simulator.report import Recorder, Report
from simulator.scenario import ManualOperator, ScenarioConfig, ScenarioDriver, build_plan

log = structlog.get_logger("simulator.cli")

AgentRunner = Callable[[str, asyncio.Event], Awaitable[None]]


def _cluster_config(
    args: argparse.Namespace, default_failure: float, default_mean: float = 2.0
) -> ClusterConfig:
    methods = tuple(m.strip() for m in str(args.workload_update_methods).split(",") if m.strip())
    return ClusterConfig(
        kubevirt_version=args.kubevirt_version,
        workload_update_methods=methods,
        nodes=args.nodes,
        migration_mean_seconds=default_mean
        if args.migration_mean_seconds is None
        else args.migration_mean_seconds,
        migration_distribution=args.migration_distribution,
        failure_rate=default_failure if args.failure_rate is None else args.failure_rate,
        stuck_rate=args.stuck_rate,
        dnc_enabled=args.dnc,
        parallel_migrations_per_cluster=args.parallel_migrations_per_cluster,
        parallel_outbound_migrations_per_node=args.parallel_outbound_migrations_per_node,
        seed=args.seed,
        time_scale=args.time_scale,
        port=args.port,
    )


def _scenario_config(args: argparse.Namespace, vms: int) -> ScenarioConfig:
    return ScenarioConfig(
        vms=vms,
        namespaces=tuple(n.strip() for n in str(args.namespaces).split(",") if n.strip()),
        seed=args.seed,
        request_window_seconds=getattr(args, "request_window_seconds", 2.0),
        kubevirt_version=args.kubevirt_version,
    )


async def run_cluster(args: argparse.Namespace, stop: asyncio.Event | None = None) -> int:
    """Serve a simulated cluster on 127.0.0.1 until SIGINT/SIGTERM (or ``stop`` is set)."""
    cfg = _cluster_config(args, default_failure=0.0)
    cluster = SimulatedCluster(cfg, kubeconfig_path=args.kubeconfig_out)
    await cluster.start()
    if stop is None:
        stop = asyncio.Event()
        _install_signals(stop)
    try:
        n = CLUSTER_VMS if args.vms is None else args.vms
        if n:
            await cluster.seed([p.body for p in build_plan(_scenario_config(args, n))])
        print(f"simulated KubeVirt {cfg.kubevirt_version} cluster at {cluster.url}", flush=True)
        print(f"kubeconfig: {cluster.kubeconfig_path}", flush=True)
        print(f"{n} VMs on {cfg.nodes} nodes; Ctrl-C to stop", flush=True)
        while not stop.is_set():
            cluster.check()
            await wait_event(stop, 1.0)
    finally:
        await cluster.stop()
    return 0


def _install_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def run_simulate(args: argparse.Namespace, agent_runner: AgentRunner | None = None) -> int:
    """Cluster + scenario (+ the agent, or a manual operator); progress, summary, ``--report``.

    Returns 0 when the report shows no violation, 1 otherwise.
    """
    report = await simulate(args, agent_runner)
    for line in report.summary_lines():
        print(line, flush=True)
    if args.report is not None:
        report.write(args.report)
        print(f"report: {args.report}", flush=True)
    return 1 if report.violations else 0


async def simulate(args: argparse.Namespace, agent_runner: AgentRunner | None = None) -> Report:
    cfg = _cluster_config(args, default_failure=0.05, default_mean=1.0)
    scen = _scenario_config(args, SIMULATE_VMS if args.vms is None else args.vms)
    cluster = SimulatedCluster(cfg, kubeconfig_path=args.kubeconfig_out)
    await cluster.start()
    recorder = Recorder(cluster.server.store)
    cluster.server.add_event_observer(recorder.observe)
    stop = asyncio.Event()
    _install_signals(stop)
    client = None
    try:
        plans = build_plan(scen)
        await cluster.seed([p.body for p in plans])
        client = await new_client_from_config(config_file=str(cluster.kubeconfig_path))
        api = CustomObjectsApi(client)
        driver = ScenarioDriver(api, plans, scen, on_request=recorder.add_request)
        mode = "agent" if agent_runner is not None else "manual (virtctl migrate)"
        print(f"simulating {len(plans)} VMs, KubeVirt {cfg.kubevirt_version}, mode: {mode}", flush=True)
        async with asyncio.TaskGroup() as tg:
            if agent_runner is not None:
                tg.create_task(_run_agent(agent_runner, str(cluster.kubeconfig_path), stop), name="agent")
            else:
                tg.create_task(ManualOperator(api, driver).run(stop), name="manual-operator")
            tg.create_task(driver.run(), name="scenario")
            tg.create_task(
                _progress(cluster, driver, recorder, stop, args, agent_mode=agent_runner is not None),
                name="progress",
            )
    finally:
        stop.set()
        if client is not None:
            await client.close()
        await cluster.stop()
    return recorder.report()


async def _run_agent(runner: AgentRunner, kubeconfig: str, stop: asyncio.Event) -> None:
    await runner(kubeconfig, stop)


class StatusLine:
    """One live status line on a terminal that log lines never land on.

    The line is redrawn in place (``\\r``) and cut to the terminal's width, so it never wraps. While
    it is shown, :meth:`guard` wraps a stream (stderr, where logs go) so that any write first clears
    the line; the next tick draws it again below the log line.
    """

    CLEAR = "\r\x1b[K"

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = False

    def show(self, text: str) -> None:
        width = max(20, shutil.get_terminal_size((120, 24)).columns - 1)
        if len(text) > width:
            text = text[: width - 1] + "…"
        self.out.write(self.CLEAR + text)
        self.out.flush()
        self.live = True

    def clear(self) -> None:
        if self.live:
            self.out.write(self.CLEAR)
            self.out.flush()
            self.live = False

    def finish(self, text: str) -> None:
        """The final tick: the last figures stay on screen, on a line of their own."""
        self.show(text)
        self.out.write("\n")
        self.out.flush()
        self.live = False

    def guard(self, stream: TextIO) -> TextIO:
        return cast(TextIO, _ClearingStream(stream, self))


class _ClearingStream:
    """A text stream that clears the live status line before every write."""

    def __init__(self, inner: TextIO, status: StatusLine) -> None:
        self._inner = inner
        self._status = status

    def write(self, text: str) -> int:
        self._status.clear()
        return self._inner.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def _progress(
    cluster: SimulatedCluster,
    driver: ScenarioDriver,
    recorder: Recorder,
    stop: asyncio.Event,
    args: argparse.Namespace,
    *,
    agent_mode: bool = False,
) -> None:
    tty = sys.stdout.isatty()
    status = StatusLine(sys.stdout)
    stderr = sys.stderr
    if tty:
        sys.stderr = status.guard(stderr)  # logs (agent/logs.py writes to the current sys.stderr)
    start = time.monotonic()
    last_change = start
    last_done = -1
    last_print = 0.0

    def line(now: float) -> str:
        accepted = sum(1 for r in driver.requests if r.accepted)
        stats = recorder.stats
        return (
            f"[{now - start:5.1f}s] hot plugs {len(driver.requests)}: {recorder.completed_count} done, "
            f"{len(driver.requests) - accepted} rejected, {len(recorder.agent_blocks)} blocked | "
            f"migrations {stats.created}: {recorder.in_flight} in flight, {stats.succeeded} ok, "
            f"{stats.failed} failed"
        )

    try:
        while not stop.is_set():
            cluster.check()
            now = time.monotonic()
            accepted = sum(1 for r in driver.requests if r.accepted)
            done = recorder.completed_count
            # With the agent, a run is over when every accepted request completed or was explained by
            # an agent Event; without it (manual), when everything possible completed.
            resolved = recorder.resolved_count if agent_mode else done
            if done != last_done or recorder.in_flight or not driver.done.is_set():
                last_change = now
                last_done = done
            if tty:
                status.show(line(now))
            elif now - last_print >= 1.0:
                print(line(now), flush=True)
                last_print = now
            if driver.done.is_set() and (
                resolved >= accepted or now - last_change >= args.quiet_seconds or now - start >= args.timeout
            ):
                break
            if now - start >= args.timeout:
                break
            await asyncio.sleep(0.1)
    finally:
        if tty:
            sys.stderr = stderr
            status.finish(line(time.monotonic()))
        else:
            print(line(time.monotonic()), flush=True)
        stop.set()


def main(argv: list[str] | None = None) -> int:
    """``python -m simulator [cluster] ...``: simulate (manual mode) by default, for development."""
    parser = argparse.ArgumentParser(prog="python -m simulator")
    sub = parser.add_subparsers(dest="command")
    add_simulate_arguments(sub.add_parser("simulate", help="cluster + scenario (manual mode)"))
    add_cluster_arguments(sub.add_parser("cluster", help="serve the simulated cluster"))
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("simulate", "cluster", "-h", "--help"):
        argv = ["simulate", *argv]
    args = parser.parse_args(argv)
    # Progress lines are the output; logs only for trouble (agent/cli.py configures its own logging).
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if args.command == "cluster":
        return asyncio.run(run_cluster(args))
    return asyncio.run(run_simulate(args))
