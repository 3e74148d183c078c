"""Every setting of the agent, declared once: flags, then ``HOTPLUG_AGENT_*``, then defaults.

Why one table (:data:`SETTINGS`): the flag, the environment variable, the chart value, the type, the
default, the bounds and the help text of a setting are one fact. Everything else is derived from it:
the command line of ``run`` and ``plan`` (:func:`add_arguments`), the :class:`AgentConfig` defaults
(:data:`DEFAULTS`, usable without a cluster), the validation (:func:`load_config`), the table in
``docs/configuration.md`` (:func:`markdown_table`; ``python -m agent.config`` prints it) and — checked
by ``tests/agent_io/test_config.py`` — the chart's ``values.yaml`` defaults and ``values.schema.json``
types, enums and bounds. Flags override the environment, which overrides defaults; errors name the
setting the way the user wrote it, all of them at once.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Final

from agent.window import WindowError, parse_windows

DISTRIBUTION: Final = "kubevirt-hotplug-agent"
ENV_PREFIX: Final = "HOTPLUG_AGENT_"
MODES: Final = ("auto", "active", "observe")
SLOT_MODELS: Final = ("auto", "v1", "v2", "none")
LOG_FORMATS: Final = ("auto", "json", "console")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")

RUN: Final = frozenset({"run"})
RUN_AND_PLAN: Final = frozenset({"run", "plan"})


class ConfigError(ValueError):
    """A setting has an invalid value; the message names the flag and the environment variable."""


def agent_version() -> str:
    """The installed distribution's version (``--version``, the start-up log line)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


_SAME: Final[Any] = object()


@dataclass(frozen=True)
class Setting:
    """One setting. ``kind`` is ``str``, ``int``, ``float``, ``bool`` or ``list`` (comma-separated).

    ``chart`` is the dotted ``values.yaml`` path, or ``None`` when the chart does not expose the setting
    as a value (``chart_text`` then says why, e.g. the chart fills it from the release namespace).
    ``at_least`` / ``above`` are inclusive / exclusive lower bounds, checked here and against the chart's
    schema. ``commands`` are the subcommands that take the setting as a flag.
    """

    attr: str
    flag: str
    kind: str
    default: Any
    help: str
    chart: str | None = None
    chart_text: str = "-"
    choices: tuple[str, ...] = ()
    default_text: str = ""
    at_least: float | None = None
    above: float | None = None
    commands: frozenset[str] = RUN
    #: The default as the chart writes it, when its value has another shape (``metrics.port``).
    chart_default: Any = _SAME
    metavar: str = ""

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.attr.upper()

    @property
    def chart_shown(self) -> str:
        return self.chart if self.chart is not None else self.chart_text

    @property
    def shown_default(self) -> str:
        if self.default_text:
            return self.default_text
        if self.kind == "bool":
            return "true" if self.default else "false"
        if self.kind == "list":
            return ",".join(self.default) or "none"
        return str(self.default)

    @property
    def expected_chart_default(self) -> Any:
        if self.chart_default is not _SAME:
            return self.chart_default
        return list(self.default) if self.kind == "list" else self.default


def _default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


SETTINGS: Final[tuple[Setting, ...]] = (
    Setting(
        "kubeconfig",
        "--kubeconfig",
        "str",
        None,
        "kubeconfig file; without it the in-cluster service account is used when running in a pod, "
        "else $KUBECONFIG or ~/.kube/config",
        chart_text="- (in-cluster)",
        default_text="in-cluster, else ~/.kube/config",
        commands=RUN_AND_PLAN,
        metavar="FILE",
    ),
    Setting(
        "context",
        "--context",
        "str",
        None,
        "kubeconfig context to use",
        chart_text="- (in-cluster)",
        default_text="the kubeconfig's current-context",
        commands=RUN_AND_PLAN,
        metavar="NAME",
    ),
    Setting(
        "namespaces",
        "--namespaces",
        "list",
        (),
        "comma-separated namespaces to watch (one watch per namespace); empty = all namespaces",
        chart="watchNamespaces",
        default_text="all",
        commands=RUN_AND_PLAN,
    ),
    Setting(
        "exclude_namespaces",
        "--exclude-namespaces",
        "list",
        (),
        "comma-separated namespaces whose VMs are never migrated (blocked: namespace-not-selected)",
        chart="excludeNamespaces",
        commands=RUN_AND_PLAN,
    ),
    Setting(
        "mode",
        "--mode",
        "str",
        "auto",
        "auto: stand down (observe) where KubeVirt migrates by itself (1.6+ with LiveMigrate), else "
        "active; active: always migrate; observe: never migrate, metrics and events only",
        chart="mode",
        choices=MODES,
        commands=RUN_AND_PLAN,
    ),
    Setting(
        "dry_run",
        "--dry-run",
        "bool",
        False,
        "decide and report (logs, metrics, events) but create no migrations",
        chart="dryRun",
    ),
    Setting(
        "max_in_flight",
        "--max-in-flight",
        "int",
        0,
        "cluster-wide cap of unfinished migrations; 0 = KubeVirt CR parallelMigrationsPerCluster (5)",
        chart="maxInFlight",
        at_least=0,
    ),
    Setting(
        "max_per_node",
        "--max-per-node",
        "int",
        0,
        "cap of outbound migrations per source node; 0 = KubeVirt CR parallelOutboundMigrationsPerNode (2)",
        chart="maxPerNode",
        at_least=0,
    ),
    Setting(
        "creates_per_second",
        "--creates-per-second",
        "float",
        10.0,
        "token-bucket rate of migration creates",
        chart="createsPerSecond",
        above=0,
    ),
    Setting(
        "create_burst",
        "--create-burst",
        "int",
        10,
        "token-bucket burst of migration creates",
        chart="createBurst",
        at_least=1,
    ),
    Setting(
        "migration_window",
        "--migration-window",
        "str",
        "",
        "when migrations may start, e.g. 'Mon-Fri 22:00-06:00 Europe/Berlin' or a cron start and a "
        "length, '0 22 * * 1-5 8h'; several joined with ';'; outside every window pending hot plugs "
        "wait (outside-window) and running migrations finish; empty = always",
        chart="migrationWindow",
        default_text="always",
        commands=RUN_AND_PLAN,
        metavar="WINDOW",
    ),
    Setting(
        "settle_seconds",
        "--settle-seconds",
        "float",
        5.0,
        "wait this long after the last interface change of a VM before migrating it (coalesces edits)",
        chart="settleSeconds",
        at_least=0,
    ),
    Setting(
        "bridge_grace_seconds",
        "--bridge-grace-seconds",
        "float",
        15.0,
        "grace for the dynamic networks controller to hot plug a bridge interface in place "
        "(KubeVirt's DynamicNetworkControllerGracePeriod)",
        chart="bridgeGraceSeconds",
        at_least=0,
    ),
    Setting(
        "max_attempts",
        "--max-attempts",
        "int",
        3,
        "migration attempts per hot plug before giving up (blocked: retries-exhausted)",
        chart="maxAttempts",
        at_least=1,
    ),
    Setting(
        "backoff_initial_seconds",
        "--backoff-initial-seconds",
        "float",
        5.0,
        "first retry delay after a failed migration (exponential, jittered)",
        chart="backoffInitialSeconds",
        above=0,
    ),
    Setting(
        "backoff_max_seconds",
        "--backoff-max-seconds",
        "float",
        300.0,
        "longest retry delay",
        chart="backoffMaxSeconds",
        at_least=0,
    ),
    Setting(
        "migration_deadline_seconds",
        "--migration-deadline-seconds",
        "float",
        900.0,
        "cancel (delete) our migration if unfinished after this long; also how long a VMI status that "
        "says 'migrating' with no migration object is waited on",
        chart="migrationDeadlineSeconds",
        above=0,
    ),
    Setting(
        "verify_timeout_seconds",
        "--verify-timeout-seconds",
        "float",
        60.0,
        "after a successful migration, how long to wait for the interface to show up in (or leave) "
        "the VMI status",
        chart="verifyTimeoutSeconds",
        at_least=0,
    ),
    Setting(
        "slot_model",
        "--slot-model",
        "str",
        "auto",
        "PCI hot-plug slot model: auto (by KubeVirt version), v1 (<=1.5), v2 (1.6+), none (no prediction)",
        chart="slotModel",
        choices=SLOT_MODELS,
        commands=RUN_AND_PLAN,
    ),
    Setting(
        "listen_address",
        "--listen-address",
        "str",
        "0.0.0.0:8080",
        "host:port of the HTTP server (/metrics, /livez, /readyz)",
        chart="metrics.port",
        chart_default=8080,
        metavar="HOST:PORT",
    ),
    Setting(
        "leader_elect",
        "--leader-elect",
        "bool",
        True,
        "elect a leader through a Lease (only the leader migrates); --no-leader-elect to disable",
        chart="leaderElection.enabled",
    ),
    Setting(
        "lease_name",
        "--lease-name",
        "str",
        "hotplug-agent",
        "name of the leader-election Lease",
        chart="leaderElection.leaseName",
        metavar="NAME",
    ),
    Setting(
        "lease_namespace",
        "--lease-namespace",
        "str",
        "default",
        "namespace of the Lease",
        chart_text="(release namespace)",
        default_text="$POD_NAMESPACE, else default",
        metavar="NAMESPACE",
    ),
    Setting(
        "lease_duration_seconds",
        "--lease-duration-seconds",
        "float",
        15.0,
        "how long a Lease is valid without renewal",
        chart="leaderElection.leaseDurationSeconds",
    ),
    Setting(
        "renew_deadline_seconds",
        "--renew-deadline-seconds",
        "float",
        10.0,
        "the leader steps down if it cannot renew within this",
        chart="leaderElection.renewDeadlineSeconds",
    ),
    Setting(
        "retry_period_seconds",
        "--retry-period-seconds",
        "float",
        2.0,
        "interval between acquire/renew attempts",
        chart="leaderElection.retryPeriodSeconds",
    ),
    Setting(
        "shutdown_grace_seconds",
        "--shutdown-grace-seconds",
        "float",
        30.0,
        "on SIGTERM, how long in-flight work may take before the agent exits",
        chart="shutdownGraceSeconds",
        at_least=0,
    ),
    Setting(
        "log_format",
        "--log-format",
        "str",
        "auto",
        "auto (JSON when stderr is not a terminal), json or console",
        chart="logFormat",
        choices=LOG_FORMATS,
        commands=RUN_AND_PLAN,
    ),
    Setting(
        "log_level",
        "--log-level",
        "str",
        "info",
        "debug, info, warning or error",
        chart="logLevel",
        choices=LOG_LEVELS,
        commands=RUN_AND_PLAN,
    ),
    Setting(
        "identity",
        "--identity",
        "str",
        "",
        "leader-election identity",
        chart_text="(pod name)",
        default_text="$POD_NAME, else hostname-pid",
        metavar="NAME",
    ),
)
SETTINGS_BY_ATTR: Final = {s.attr: s for s in SETTINGS}


def _default(attr: str) -> Any:
    return SETTINGS_BY_ATTR[attr].default


@dataclass(frozen=True)
class AgentConfig:
    """Every setting of the agent (times in seconds); defaults from :data:`SETTINGS`.

    Build it with :func:`load_config` (flags, environment, validation); ``AgentConfig(**overrides)`` is
    for programs that embed the agent (they call :func:`validate` themselves).
    """

    kubeconfig: str | None = _default("kubeconfig")
    context: str | None = _default("context")
    namespaces: tuple[str, ...] = _default("namespaces")
    exclude_namespaces: tuple[str, ...] = _default("exclude_namespaces")
    mode: str = _default("mode")
    dry_run: bool = _default("dry_run")
    max_in_flight: int = _default("max_in_flight")
    max_per_node: int = _default("max_per_node")
    creates_per_second: float = _default("creates_per_second")
    create_burst: int = _default("create_burst")
    migration_window: str = _default("migration_window")
    settle_seconds: float = _default("settle_seconds")
    bridge_grace_seconds: float = _default("bridge_grace_seconds")
    max_attempts: int = _default("max_attempts")
    backoff_initial_seconds: float = _default("backoff_initial_seconds")
    backoff_max_seconds: float = _default("backoff_max_seconds")
    migration_deadline_seconds: float = _default("migration_deadline_seconds")
    verify_timeout_seconds: float = _default("verify_timeout_seconds")
    slot_model: str = _default("slot_model")
    listen_address: str = _default("listen_address")
    leader_elect: bool = _default("leader_elect")
    lease_name: str = _default("lease_name")
    lease_namespace: str = _default("lease_namespace")
    lease_duration_seconds: float = _default("lease_duration_seconds")
    renew_deadline_seconds: float = _default("renew_deadline_seconds")
    retry_period_seconds: float = _default("retry_period_seconds")
    shutdown_grace_seconds: float = _default("shutdown_grace_seconds")
    log_format: str = _default("log_format")
    log_level: str = _default("log_level")
    identity: str = _default("identity")

    @property
    def listen_host(self) -> str:
        return split_address(self.listen_address)[0]

    @property
    def listen_port(self) -> int:
        return split_address(self.listen_address)[1]


#: The defaults as a config object, needing no cluster and no environment: the single place other
#: modules take a default from (``DEFAULTS.settle_seconds``), never a literal of their own.
DEFAULTS: Final = AgentConfig()


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6; empty host = all interfaces) → (host, port)."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ConfigError(f"listen address {address!r} is not host:port")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ConfigError(f"listen address {address!r}: port out of range")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise ConfigError(f"listen address {address!r}: {exc}") from exc
    elif ":" in host:
        raise ConfigError(f"listen address {address!r}: write IPv6 hosts as [addr]:port")
    return host, port


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(setting: Setting, value: Any, source: str) -> Any:
    where = f"{setting.flag} / {setting.env} ({source})"
    if setting.kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"{where}: {value!r} is not a boolean (true/false)")
    if setting.kind == "list":
        if isinstance(value, tuple | list):
            items = [str(v).strip() for v in value]
        else:
            items = [v.strip() for v in str(value).split(",")]
        return tuple(dict.fromkeys(v for v in items if v))
    if setting.kind in ("int", "float"):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: {value!r} is not a number")
        conv: Callable[[str], Any] = int if setting.kind == "int" else float
        try:
            number = conv(str(value).strip())
        except ValueError:
            raise ConfigError(
                f"{where}: {value!r} is not a{'n integer' if setting.kind == 'int' else ' number'}"
            ) from None
        if isinstance(number, float) and not math.isfinite(number):
            raise ConfigError(f"{where}: {value!r} is not a finite number")
        return number
    text = str(value).strip()
    if setting.choices and text not in setting.choices:
        raise ConfigError(f"{where}: {text!r} is not one of {', '.join(setting.choices)}")
    return text


def settings_of(command: str) -> tuple[Setting, ...]:
    """The settings ``command`` (``run`` or ``plan``) takes as flags and environment variables."""
    return tuple(s for s in SETTINGS if command in s.commands)


def load_config(
    flags: argparse.Namespace | Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    command: str = "run",
) -> AgentConfig:
    """Flags (non-``None`` attributes named like the fields) > ``HOTPLUG_AGENT_*`` > defaults.

    Only the settings of ``command`` are read; the others keep their defaults. Raises one
    :class:`ConfigError` that lists every unreadable and every invalid value.
    """
    env = os.environ if env is None else env
    given = vars(flags) if isinstance(flags, argparse.Namespace) else dict(flags or {})
    values: dict[str, Any] = {}
    problems: list[str] = []
    unreadable: set[str] = set()
    for setting in settings_of(command):
        flag_value = given.get(setting.attr)
        try:
            if flag_value is not None:
                values[setting.attr] = _convert(setting, flag_value, "flag")
            elif env.get(setting.env, "") != "" or (setting.kind == "list" and setting.env in env):
                values[setting.attr] = _convert(setting, env[setting.env], "environment")
        except ConfigError as exc:
            problems.append(str(exc))
            unreadable.add(setting.attr)
    if "lease_namespace" not in values:
        values["lease_namespace"] = env.get("POD_NAMESPACE") or DEFAULTS.lease_namespace
    if "identity" not in values:
        values["identity"] = env.get("POD_NAME") or _default_identity()
    config = AgentConfig(**values)
    problems += _problems(config, skip=unreadable)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return config


def validate(config: AgentConfig) -> None:
    """Raise :class:`ConfigError` listing every problem (not just the first)."""
    problems = _problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def _problems(config: AgentConfig, skip: Iterable[str] = ()) -> list[str]:
    """Every invalid value; a rule is not checked when a value it reads could not be read at all."""
    skipped = set(skip)
    problems: list[str] = []

    def need(ok: bool, attr: str, what: str, *reads: str) -> None:
        if ok or skipped & {attr, *reads}:
            return
        s = SETTINGS_BY_ATTR[attr]
        problems.append(f"{s.flag} / {s.env} = {getattr(config, attr)!r}: {what}")

    for s in SETTINGS:
        value = getattr(config, s.attr)
        if s.at_least is not None:
            need(value >= s.at_least, s.attr, f"must be >= {s.at_least:g}")
        if s.above is not None:
            need(value > s.above, s.attr, f"must be > {s.above:g}")
        if s.choices:
            need(value in s.choices, s.attr, f"must be one of {', '.join(s.choices)}")
    need(
        config.backoff_max_seconds >= config.backoff_initial_seconds,
        "backoff_max_seconds",
        "must be >= --backoff-initial-seconds",
        "backoff_initial_seconds",
    )
    problems.extend(_parsed_problems(config, skipped))
    need(bool(config.lease_name), "lease_name", "must not be empty")
    need(bool(config.lease_namespace), "lease_namespace", "must not be empty")
    need(bool(config.identity), "identity", "must not be empty")
    if config.leader_elect:
        need(config.retry_period_seconds > 0, "retry_period_seconds", "must be > 0")
        need(
            config.renew_deadline_seconds > 1.2 * config.retry_period_seconds,
            "renew_deadline_seconds",
            "must be > 1.2 x --retry-period-seconds (client-go rule)",
            "retry_period_seconds",
        )
        need(
            config.lease_duration_seconds > config.renew_deadline_seconds,
            "lease_duration_seconds",
            "must be > --renew-deadline-seconds",
            "renew_deadline_seconds",
        )
    overlap = set(config.namespaces) & set(config.exclude_namespaces)
    if overlap:
        problems.append(f"namespaces both watched and excluded: {', '.join(sorted(overlap))}")
    return problems


def _parsed_problems(config: AgentConfig, skipped: set[str]) -> list[str]:
    """The values that must parse: the listen address, the migration window."""
    problems: list[str] = []
    if "listen_address" not in skipped:
        try:
            split_address(config.listen_address)
        except ConfigError as exc:
            problems.append(f"--listen-address / {ENV_PREFIX}LISTEN_ADDRESS: {exc}")
    if "migration_window" not in skipped:
        try:
            parse_windows(config.migration_window)
        except WindowError as exc:
            problems.append(f"--migration-window / {ENV_PREFIX}MIGRATION_WINDOW: {exc}")
    return problems


def flag_help(s: Setting) -> str:
    return f"{s.help} [env {s.env}; default {s.shown_default}]"


def add_arguments(parser: argparse.ArgumentParser, command: str = "run") -> None:
    """One flag per setting of ``command``; defaults are ``None`` so :func:`load_config` sees "not given"."""
    group = parser.add_argument_group("settings (flag > environment > default)")
    for s in settings_of(command):
        if s.kind == "bool":
            group.add_argument(
                s.flag, dest=s.attr, action=argparse.BooleanOptionalAction, default=None, help=flag_help(s)
            )
            continue
        metavar = s.metavar or {
            "int": "N",
            "float": "SECONDS" if s.attr.endswith("seconds") else "N",
            "list": "NS,...",
        }.get(s.kind, "VALUE")
        group.add_argument(
            s.flag,
            dest=s.attr,
            default=None,
            metavar="{" + ",".join(s.choices) + "}" if s.choices else metavar,
            help=flag_help(s),
        )


def _sentence(text: str) -> str:
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def markdown_table() -> str:
    """The settings table of ``docs/configuration.md`` (a test keeps the page equal to this)."""
    lines = [
        "| flag | environment | chart value | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        flag = f"`{s.flag}` / `--no-{s.flag[2:]}`" if s.kind == "bool" else f"`{s.flag}`"
        chart = f"`{s.chart}`" if s.chart is not None else s.chart_text
        meaning = _sentence(s.help)
        if s.choices:
            meaning += " One of: " + ", ".join(f"`{c}`" for c in s.choices) + "."
        if s.commands != RUN:
            meaning += " Also for `plan`."
        lines.append(f"| {flag} | `{s.env}` | {chart} | {s.shown_default} | {meaning} |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - `python -m agent.config` regenerates the docs table
    print(markdown_table())
