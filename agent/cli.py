"""The ``hotplug-agent`` command: ``run`` and ``plan``, plus the commands other packages register.

Why one entry point: the same binary runs in the pod (``run``), on an admin's laptop (``plan``) and in
demos and tests (``simulate``, ``cluster``). Settings of ``run`` and ``plan`` come from
:mod:`agent.config` (flag > ``HOTPLUG_AGENT_*`` > default).

The agent never imports the simulator: ``simulate`` and ``cluster`` are registered by the simulator
under the entry-point group :data:`COMMANDS_GROUP` (``pyproject.toml``) and loaded by name when the
command line is built. A registered command is an object with ``help``, ``description``,
``add_arguments(parser)`` and ``run(args, agent) -> int``; ``agent`` (:data:`AgentRunner`) runs this
agent against a kubeconfig until an event is set, so the simulator needs nothing of the agent's
insides. When the simulator is not installed the commands are still listed, with how to get them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any, Protocol

from agent.config import ConfigError, add_arguments, agent_version, load_config, settings_of
from agent.logs import configure_logging

COMMANDS_GROUP = "hotplug_agent.commands"
#: The commands the simulator registers, and what ``--help`` says about them when it is missing.
OPTIONAL_COMMANDS = {
    "simulate": "simulated cluster + the agent + a scenario of hot plugs; prints a ground-truth summary",
    "cluster": "only the simulated cluster: serve the Kubernetes API on 127.0.0.1 and write a kubeconfig",
}
SIMULATOR_MISSING = (
    "not installed here: it comes with the simulator, installed with "
    "pip install 'kubevirt-hotplug-agent[simulator]' (from a source checkout: pip install -e .)"
)
PLAN_OUTPUTS = ("table", "json", "yaml")

#: ``agent(kubeconfig, stop, overrides)``: run the agent with settings ``overrides`` until ``stop``.
AgentRunner = Callable[[str, asyncio.Event, Mapping[str, Any]], Awaitable[int]]


class Command(Protocol):
    """What a package registers under :data:`COMMANDS_GROUP`."""

    help: str
    description: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace, agent: AgentRunner) -> int: ...


EPILOG = """\
examples:
  hotplug-agent run                                 # in a pod: in-cluster config, Lease election
  hotplug-agent run --kubeconfig ~/.kube/config --context prod --mode observe --log-format console
  HOTPLUG_AGENT_NAMESPACES=team-a,team-b hotplug-agent run --dry-run
  hotplug-agent plan --kubeconfig ~/.kube/config -o json
  hotplug-agent simulate --vms 200 --report report.json
  hotplug-agent cluster --kubeconfig-out /tmp/sim.kubeconfig   # then: kubectl --kubeconfig ... get vmi

Every setting of 'run' is also an environment variable HOTPLUG_AGENT_<NAME> and a Helm chart value;
flags win over the environment. See 'hotplug-agent run --help' and docs/configuration.md.
"""


def _settings_epilog(command: str) -> str:
    lines = ["settings: flag | environment | chart value | default"]
    for s in settings_of(command):
        lines.append(f"  {s.flag:<32} {s.env:<42} {s.chart_shown:<38} {s.shown_default}")
    return "\n".join(lines) + "\n\n" + EPILOG


def registered_commands() -> tuple[dict[str, Command], dict[str, str]]:
    """(commands loaded from :data:`COMMANDS_GROUP`, name → why not for the expected ones missing)."""
    found = {ep.name: ep for ep in entry_points(group=COMMANDS_GROUP)}
    loaded: dict[str, Command] = {}
    missing: dict[str, str] = {}
    for name in [*OPTIONAL_COMMANDS, *sorted(set(found) - set(OPTIONAL_COMMANDS))]:
        ep = found.get(name)
        if ep is None:
            missing[name] = "no package registers it"
            continue
        try:
            loaded[name] = ep.load()
        except ImportError as exc:
            missing[name] = str(exc)
    return loaded, missing


def build_parser(
    registered: tuple[dict[str, Command], dict[str, str]] | None = None,
) -> argparse.ArgumentParser:
    """The whole command line; ``registered`` defaults to :func:`registered_commands`."""
    parser = argparse.ArgumentParser(
        prog="hotplug-agent",
        description=(
            "Live-migrates KubeVirt VMs so that hot plugged / unplugged network interfaces reach the "
            "guest, within the cluster's migration limits."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hotplug-agent {agent_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the agent against a cluster (in-cluster config or --kubeconfig)",
        description="Watch VMs/VMIs/VMIMs and migrate VMs with pending NIC hot plugs/unplugs.",
        epilog=_settings_epilog("run"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(run, "run")

    plan = sub.add_parser(
        "plan",
        help="read-only report: pending hot plugs, blocked VMs, what would be migrated",
        description=(
            "Read-only report against a cluster (no writes): every VM with a pending hot plug, what the "
            "agent would decide and why, and the order it would migrate in. Exits 1 when the cluster "
            "cannot be read (no KubeVirt, no permission)."
        ),
        epilog=_settings_epilog("plan"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plan.add_argument(
        "-o",
        "--output",
        choices=PLAN_OUTPUTS,
        default="table",
        help="output format [default table]",
    )
    add_arguments(plan, "plan")

    commands, missing = registered if registered is not None else registered_commands()
    for name, command in commands.items():
        p = sub.add_parser(
            name,
            help=command.help,
            description=command.description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(p)
    for name in missing:
        sub.add_parser(
            name,
            help=f"({SIMULATOR_MISSING}) {OPTIONAL_COMMANDS.get(name, '')}".rstrip(),
            description=f"hotplug-agent {name}: {SIMULATOR_MISSING}",
        )
    return parser


async def run_embedded_agent(kubeconfig: str, stop: asyncio.Event, overrides: Mapping[str, Any]) -> int:
    """The :data:`AgentRunner` given to registered commands: the agent in their event loop."""
    from agent import app

    given = {
        "kubeconfig": kubeconfig,
        "listen_address": "127.0.0.1:0",
        "leader_elect": False,
        "identity": "embedded",
        **overrides,
    }
    config = load_config(given, env={})
    return await app.run_agent(config, stop=stop)


def main(argv: Sequence[str] | None = None) -> int:
    registered = registered_commands()
    commands, missing = registered
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in missing:
        print(f"hotplug-agent {argv[0]}: {SIMULATOR_MISSING}", file=sys.stderr)
        return 3
    parser = build_parser(registered)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command in ("run", "plan"):
        try:
            config = load_config(args, command=args.command)
        except ConfigError as exc:
            print(f"hotplug-agent {args.command}: {exc}", file=sys.stderr)
            return 2
        configure_logging(config.log_format, config.log_level)
        if args.command == "plan":
            from agent.plan import run_plan

            return asyncio.run(run_plan(config, output=args.output))
        from agent import app

        try:
            return asyncio.run(app.run(config))
        except KeyboardInterrupt:
            return 130
    command = commands[args.command]
    configure_logging("auto", "warning")
    return command.run(args, run_embedded_agent)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
