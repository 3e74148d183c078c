"""The ``hotplug-agent`` command: ``run``, ``plan``, ``simulate``, ``cluster``.

Why subcommands share one entry point: the same binary runs in the pod (``run``), on an admin's laptop
(``plan``) and in demos/tests (``simulate``, ``cluster``). Settings of ``run`` come from
:mod:`agent.config` (flag > ``HOTPLUG_AGENT_*`` > default); the simulator modules are imported only
when their subcommand runs, so ``run`` never loads them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from agent.config import SETTINGS, AgentConfig, ConfigError, add_arguments, load_config
from agent.logs import configure_logging

EPILOG = """\
examples:
  hotplug-agent run                                 # in a pod: in-cluster config, Lease election
  hotplug-agent run --kubeconfig ~/.kube/config --mode observe --log-format console
  HOTPLUG_AGENT_NAMESPACES=team-a,team-b hotplug-agent run --dry-run
  hotplug-agent simulate --vms 200 --report report.json
  hotplug-agent cluster --kubeconfig-out /tmp/sim.kubeconfig   # then: kubectl --kubeconfig ... get vmi

Every setting of 'run' is also an environment variable HOTPLUG_AGENT_<NAME> and a Helm chart value;
flags win over the environment. See 'hotplug-agent run --help' and docs/configuration.md.
"""


def _run_epilog() -> str:
    lines = ["settings: flag | environment | chart value | default"]
    for s in SETTINGS:
        lines.append(f"  {s.flag:<32} {s.env:<42} {s.chart:<38} {s.shown_default}")
    return "\n".join(lines) + "\n\n" + EPILOG


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hotplug-agent",
        description=(
            "Live-migrates KubeVirt VMs so that hot plugged / unplugged network interfaces reach the "
            "guest, within the cluster's migration limits."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the agent against a cluster (in-cluster config or --kubeconfig)",
        description="Watch VMs/VMIs/VMIMs and migrate VMs with pending NIC hot plugs/unplugs.",
        epilog=_run_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(run)

    plan = sub.add_parser(
        "plan",
        help="read-only report: pending hot plugs, blocked VMs, what would be migrated",
        description="Read-only report against a cluster (no writes).",
        epilog=_run_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(plan)

    simulate = sub.add_parser(
        "simulate",
        help="simulated cluster + the agent + a scenario of hot plugs; prints a ground-truth summary",
        description="Run a simulated KubeVirt cluster, the agent and a scenario of hot plugs/unplugs.",
    )
    simulate.add_argument(
        "--no-agent",
        action="store_true",
        help="migrate like a manual 'virtctl migrate' operator instead of running the agent",
    )
    simulate.add_argument(
        "--agent-mode",
        choices=("auto", "active", "observe"),
        default="auto",
        help="the agent's --mode (default auto: stands down where KubeVirt migrates by itself)",
    )
    simulate.add_argument(
        "--agent-settle-seconds", type=float, default=0.5, help="the agent's --settle-seconds (default 0.5)"
    )
    cluster = sub.add_parser(
        "cluster",
        help="only the simulated cluster: serve the Kubernetes API on 127.0.0.1 and write a kubeconfig",
        description="Serve a simulated KubeVirt cluster for kubectl and a separate 'hotplug-agent run'.",
    )
    try:
        from simulator import cli_args  # flags only: the simulator itself is imported when run
    except ImportError:
        pass
    else:
        cli_args.add_simulate_arguments(simulate)
        cli_args.add_cluster_arguments(cluster)
    return parser


def _simulate_runner(args: argparse.Namespace) -> Any:
    """The agent as the simulator's ``agent_runner(kubeconfig, stop)``."""
    from agent import app

    async def runner(kubeconfig: str, stop: asyncio.Event) -> None:
        config = AgentConfig(
            kubeconfig=kubeconfig,
            mode=args.agent_mode,
            settle_seconds=args.agent_settle_seconds,
            bridge_grace_seconds=0.0,
            # The simulation runs KubeVirt's clock fast (migrations take ~1 s): scale our waits too.
            backoff_initial_seconds=0.5,
            backoff_max_seconds=3.0,
            verify_timeout_seconds=10.0,
            migration_deadline_seconds=60.0,
            listen_address="127.0.0.1:0",
            leader_elect=False,
            identity="simulate",
        )
        await app.run(config, stop)

    return runner


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command is None:
        parser.print_help()
        return 2
    if args.command in ("run", "plan"):
        try:
            config = load_config(args)
        except ConfigError as exc:
            print(f"hotplug-agent {args.command}: {exc}", file=sys.stderr)
            return 2
        configure_logging(config.log_format, config.log_level)
        if args.command == "plan":
            from agent.plan import run_plan

            return asyncio.run(run_plan(config))
        from agent import app

        try:
            return asyncio.run(app.run(config))
        except KeyboardInterrupt:
            return 130
    try:
        from simulator import cli as sim_cli
    except ImportError as exc:
        print(f"hotplug-agent {args.command}: the simulator is not available ({exc})", file=sys.stderr)
        return 3
    configure_logging("auto", "warning")
    if args.command == "cluster":
        return asyncio.run(sim_cli.run_cluster(args))
    runner = None if args.no_agent else _simulate_runner(args)
    return asyncio.run(sim_cli.run_simulate(args, runner))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
