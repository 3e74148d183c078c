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
import signal
import sys
import time
from collections.abc import Awaitable, Callable

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
    start = time.monotonic()
    last_change = start
    last_done = -1
    last_print = 0.0
    try:
        while not stop.is_set():
            cluster.check()
            now = time.monotonic()
            accepted = sum(1 for r in driver.requests if r.accepted)
            blocked = len(driver.requests) - accepted
            done = recorder.completed_count
            # With the agent, a run is over when every accepted request completed or was explained by
            # an agent Event; without it (manual), when everything possible completed.
            resolved = recorder.resolved_count if agent_mode else done
            if done != last_done or recorder.in_flight or not driver.done.is_set():
                last_change = now
                last_done = done
            line = (
                f"[{now - start:6.1f}s] requested {len(driver.requests)}  completed {done}  "
                f"rejected {blocked}  blocked by agent {len(recorder.agent_blocks)}  "
                f"in-flight migrations {recorder.in_flight}  "
                f"migrations {recorder.stats.created} (ok {recorder.stats.succeeded}, failed "
                f"{recorder.stats.failed})"
            )
            if tty:
                print("\r" + line, end="", flush=True)
            elif now - last_print >= 1.0:
                print(line, flush=True)
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
            print(flush=True)
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
