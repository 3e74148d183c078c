"""``hotplug-agent simulate`` and ``hotplug-agent cluster``: the commands the simulator registers.

The agent's command line loads :data:`SIMULATE` and :data:`CLUSTER` through the entry-point group
``hotplug_agent.commands`` (``pyproject.toml``); the agent package never imports the simulator. This
module stays free of the simulator's heavy imports (kubernetes-asyncio's client alone takes ~2 s) so
that building the command line, ``--help`` included, stays fast; :mod:`simulator.cli` is imported only
when a command runs.

Every flag's help ends with its default, the way ``run --help`` shows them.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.mix import describe_mix

#: ``agent(kubeconfig, stop, overrides)``: the caller's agent, run until ``stop`` with ``overrides``.
AgentRunner = Callable[[str, asyncio.Event, Mapping[str, Any]], Awaitable[int]]

DEFAULT_KUBEVIRT_VERSION = "v1.5.2"
CLUSTER_VMS = 20
SIMULATE_VMS = 200
#: The simulation runs KubeVirt's clock fast (migrations take ~1 s): the agent's waits are scaled too.
FAST_AGENT: Mapping[str, Any] = {
    "bridge_grace_seconds": 0.0,
    "backoff_initial_seconds": 0.5,
    "backoff_max_seconds": 3.0,
    "verify_timeout_seconds": 10.0,
    "migration_deadline_seconds": 60.0,
}


def _opt(group: Any, flag: str, text: str, default: Any, shown: str | None = None, **kw: Any) -> None:
    """A flag whose help ends with its default (``shown`` when the value alone would not say it)."""
    if shown is None:
        shown = "off" if default is False else str(default)
    group.add_argument(flag, default=default, help=f"{text} [default {shown}]", **kw)


def _add_common(parser: argparse.ArgumentParser, *, vms: int, failure: str, mean: str) -> None:
    g = parser.add_argument_group("simulated cluster")
    _opt(g, "--kubevirt-version", "KubeVirt version to simulate", DEFAULT_KUBEVIRT_VERSION, metavar="VERSION")
    _opt(
        g,
        "--workload-update-methods",
        "KubeVirt CR workloadUpdateMethods, comma list (e.g. LiveMigrate)",
        "",
        shown="none",
        metavar="METHODS",
    )
    _opt(g, "--nodes", "number of nodes", 4, type=int, metavar="N")
    _opt(
        g,
        "--vms",
        "number of VMs: one of each category of the mix below first, the rest drawn by share",
        None,
        shown=str(vms),
        type=int,
        metavar="N",
    )
    _opt(
        g,
        "--namespaces",
        "namespaces the VMs are spread over, comma list",
        "team-a,team-b,team-c,team-d",
        metavar="NS,...",
    )
    _opt(
        g,
        "--migration-mean-seconds",
        "mean migration duration",
        None,
        shown=mean,
        type=float,
        metavar="SECONDS",
    )
    _opt(
        g,
        "--migration-distribution",
        "distribution of migration durations",
        "lognormal",
        choices=["fixed", "uniform", "exponential", "lognormal"],
    )
    _opt(
        g, "--failure-rate", "share of migrations that fail", None, shown=failure, type=float, metavar="SHARE"
    )
    _opt(g, "--stuck-rate", "share of migrations that stay Running", 0.0, type=float, metavar="SHARE")
    _opt(
        g, "--dnc", "run the Multus dynamic networks controller (in-place bridge)", False, action="store_true"
    )
    _opt(
        g,
        "--parallel-migrations-per-cluster",
        "KubeVirt CR parallelMigrationsPerCluster",
        None,
        shown="5, KubeVirt's",
        type=int,
        metavar="N",
    )
    _opt(
        g,
        "--parallel-outbound-migrations-per-node",
        "KubeVirt CR parallelOutboundMigrationsPerNode",
        None,
        shown="2, KubeVirt's",
        type=int,
        metavar="N",
    )
    _opt(g, "--seed", "random seed (scenario and cluster)", 0, type=int, metavar="N")
    _opt(
        g,
        "--time-scale",
        "scale of KubeVirt's own periods (15 s grace, 5 s updater)",
        0.1,
        type=float,
        metavar="FACTOR",
    )
    _opt(
        g,
        "--kubeconfig-out",
        "write the cluster's kubeconfig here",
        None,
        shown="a temporary file",
        type=Path,
        metavar="FILE",
    )
    _opt(g, "--port", "API server port on 127.0.0.1", 0, shown="any free port", type=int, metavar="PORT")


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``hotplug-agent cluster``."""
    _add_common(parser, vms=CLUSTER_VMS, failure="0", mean="2")


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``hotplug-agent simulate``."""
    _add_common(parser, vms=SIMULATE_VMS, failure="0.05", mean="1")
    g = parser.add_argument_group("scenario")
    _opt(
        g,
        "--report",
        "write the JSON ground-truth report here",
        None,
        shown="none",
        type=Path,
        metavar="FILE",
    )
    _opt(g, "--timeout", "give up after this many seconds", 120.0, type=float, metavar="SECONDS")
    _opt(
        g,
        "--quiet-seconds",
        "end when nothing completed and no migration was in flight for this long",
        5.0,
        type=float,
        metavar="SECONDS",
    )
    _opt(
        g,
        "--request-window-seconds",
        "spread user edits over this window",
        2.0,
        type=float,
        metavar="SECONDS",
    )
    a = parser.add_argument_group("the agent")
    _opt(
        a,
        "--no-agent",
        "migrate like a manual 'virtctl migrate' operator instead of running the agent",
        False,
        action="store_true",
    )
    _opt(
        a,
        "--agent-mode",
        "the agent's --mode (auto stands down where KubeVirt migrates by itself)",
        "auto",
        choices=("auto", "active", "observe"),
    )
    _opt(a, "--agent-settle-seconds", "the agent's --settle-seconds", 0.5, type=float, metavar="SECONDS")


MIX_EPILOG = "The VMs (--vms N), by share of the default mix:\n" + describe_mix()


@dataclass(frozen=True)
class _Simulate:
    help: str = "simulated cluster + the agent + a scenario of hot plugs; prints a ground-truth summary"
    description: str = (
        "Run a simulated KubeVirt cluster, the agent and a scenario of hot plugs/unplugs made the way a "
        "user makes them (editing VMs), with live progress and a summary judged from the cluster's own "
        "state.\n\n" + MIX_EPILOG
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_simulate_arguments(parser)

    def run(self, args: argparse.Namespace, agent: AgentRunner) -> int:
        from simulator import cli

        overrides = {**FAST_AGENT, "mode": args.agent_mode, "settle_seconds": args.agent_settle_seconds}

        async def runner(kubeconfig: str, stop: asyncio.Event) -> None:
            await agent(kubeconfig, stop, overrides)

        return asyncio.run(cli.run_simulate(args, None if args.no_agent else runner))


@dataclass(frozen=True)
class _Cluster:
    help: str = "only the simulated cluster: serve the Kubernetes API on 127.0.0.1 and write a kubeconfig"
    description: str = (
        "Serve a simulated KubeVirt cluster for kubectl and a separate 'hotplug-agent run'. The VMs are "
        "created in their starting state (running, nothing pending); hot plug one by editing it, as the "
        "README's tour does.\n\n" + MIX_EPILOG
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_cluster_arguments(parser)

    def run(self, args: argparse.Namespace, agent: AgentRunner) -> int:
        from simulator import cli

        return asyncio.run(cli.run_cluster(args))


SIMULATE = _Simulate()
CLUSTER = _Cluster()
