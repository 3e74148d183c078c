"""``AgentConfig``: every setting of ``hotplug-agent run``: flags, then ``HOTPLUG_AGENT_*``, then defaults.

Why one table (:data:`SETTINGS`): the flag, the environment variable, the chart value, the default
and the help text of a setting are one fact; the CLI (argparse), the validation and
``docs/configuration.md`` read it from here, so they cannot drift apart (docs/architecture.md holds
the contract). Flags override the environment, which overrides defaults; validation errors name the
setting the way the user wrote it.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from agent.controller import ControllerSettings

ENV_PREFIX: Final = "HOTPLUG_AGENT_"
MODES: Final = ("auto", "active", "observe")
SLOT_MODELS: Final = ("auto", "v1", "v2", "none")
LOG_FORMATS: Final = ("auto", "json", "console")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")


class ConfigError(ValueError):
    """A setting has an invalid value; the message names the flag and the environment variable."""


@dataclass(frozen=True)
class Setting:
    attr: str
    flag: str
    kind: str  # str | int | float | bool | list
    default: Any
    chart: str
    help: str
    choices: tuple[str, ...] = ()
    default_text: str = ""

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.attr.upper()

    @property
    def shown_default(self) -> str:
        if self.default_text:
            return self.default_text
        if self.kind == "bool":
            return "true" if self.default else "false"
        if self.kind == "list":
            return ",".join(self.default) or "none"
        return str(self.default)


def _default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


SETTINGS: Final[tuple[Setting, ...]] = (
    Setting(
        "kubeconfig",
        "--kubeconfig",
        "str",
        None,
        "-",
        "kubeconfig file; without it the in-cluster service account is used when running in a pod, "
        "else ~/.kube/config",
        default_text="in-cluster, else ~/.kube/config",
    ),
    Setting(
        "namespaces",
        "--namespaces",
        "list",
        (),
        "watchNamespaces",
        "comma-separated namespaces to watch (one watch per namespace); empty = all namespaces",
        default_text="all",
    ),
    Setting(
        "exclude_namespaces",
        "--exclude-namespaces",
        "list",
        (),
        "excludeNamespaces",
        "comma-separated namespaces whose VMs are never migrated (blocked: namespace-not-selected)",
    ),
    Setting(
        "mode",
        "--mode",
        "str",
        "auto",
        "mode",
        "auto: stand down (observe) where KubeVirt migrates by itself (1.6+ with LiveMigrate), else "
        "active; active: always migrate; observe: never migrate, metrics and events only",
        choices=MODES,
    ),
    Setting(
        "dry_run",
        "--dry-run",
        "bool",
        False,
        "dryRun",
        "decide and report (logs, metrics, events) but create no migrations",
    ),
    Setting(
        "max_in_flight",
        "--max-in-flight",
        "int",
        0,
        "maxInFlight",
        "cluster-wide cap of unfinished migrations; 0 = KubeVirt CR parallelMigrationsPerCluster (5)",
    ),
    Setting(
        "max_per_node",
        "--max-per-node",
        "int",
        0,
        "maxPerNode",
        "cap of outbound migrations per source node; 0 = KubeVirt CR parallelOutboundMigrationsPerNode (2)",
    ),
    Setting(
        "creates_per_second",
        "--creates-per-second",
        "float",
        10.0,
        "createsPerSecond",
        "token-bucket rate of migration creates",
    ),
    Setting(
        "create_burst", "--create-burst", "int", 10, "createBurst", "token-bucket burst of migration creates"
    ),
    Setting(
        "settle_seconds",
        "--settle-seconds",
        "float",
        5.0,
        "settleSeconds",
        "wait this long after the last interface change of a VM before migrating it (coalesces edits)",
    ),
    Setting(
        "bridge_grace_seconds",
        "--bridge-grace-seconds",
        "float",
        15.0,
        "bridgeGraceSeconds",
        "grace for the dynamic networks controller to hot plug a bridge interface in place",
    ),
    Setting(
        "max_attempts",
        "--max-attempts",
        "int",
        3,
        "maxAttempts",
        "migration attempts per hot plug before giving up (blocked: gave-up)",
    ),
    Setting(
        "backoff_initial_seconds",
        "--backoff-initial-seconds",
        "float",
        5.0,
        "backoffInitialSeconds",
        "first retry delay after a failed migration (exponential, jittered)",
    ),
    Setting(
        "backoff_max_seconds",
        "--backoff-max-seconds",
        "float",
        300.0,
        "backoffMaxSeconds",
        "longest retry delay",
    ),
    Setting(
        "migration_deadline_seconds",
        "--migration-deadline-seconds",
        "float",
        900.0,
        "migrationDeadlineSeconds",
        "cancel (delete) our migration if unfinished after this long; also how long a VMI status that "
        "says 'migrating' with no migration object is waited on",
    ),
    Setting(
        "verify_timeout_seconds",
        "--verify-timeout-seconds",
        "float",
        60.0,
        "verifyTimeoutSeconds",
        "after a successful migration, how long to wait for the interface to show up in (or leave) "
        "the VMI status",
    ),
    Setting(
        "slot_model",
        "--slot-model",
        "str",
        "auto",
        "slotModel",
        "PCI hot-plug slot model: auto (by KubeVirt version), v1 (<=1.5), v2 (1.6+), none (no prediction)",
        choices=SLOT_MODELS,
    ),
    Setting(
        "listen_address",
        "--listen-address",
        "str",
        "0.0.0.0:8080",
        "metrics.port",
        "host:port of the HTTP server (/metrics, /livez, /readyz)",
    ),
    Setting(
        "leader_elect",
        "--leader-elect",
        "bool",
        True,
        "leaderElection.enabled",
        "elect a leader through a Lease (only the leader migrates); --no-leader-elect to disable",
    ),
    Setting(
        "lease_name",
        "--lease-name",
        "str",
        "hotplug-agent",
        "leaderElection.leaseName",
        "name of the leader-election Lease",
    ),
    Setting(
        "lease_namespace",
        "--lease-namespace",
        "str",
        None,
        "(release namespace)",
        "namespace of the Lease",
        default_text="$POD_NAMESPACE, else default",
    ),
    Setting(
        "lease_duration_seconds",
        "--lease-duration-seconds",
        "float",
        15.0,
        "leaderElection.leaseDurationSeconds",
        "how long a Lease is valid without renewal",
    ),
    Setting(
        "renew_deadline_seconds",
        "--renew-deadline-seconds",
        "float",
        10.0,
        "leaderElection.renewDeadlineSeconds",
        "the leader steps down if it cannot renew within this",
    ),
    Setting(
        "retry_period_seconds",
        "--retry-period-seconds",
        "float",
        2.0,
        "leaderElection.retryPeriodSeconds",
        "interval between acquire/renew attempts",
    ),
    Setting(
        "shutdown_grace_seconds",
        "--shutdown-grace-seconds",
        "float",
        30.0,
        "shutdownGraceSeconds",
        "on SIGTERM, how long in-flight work may take before the agent exits",
    ),
    Setting(
        "log_format",
        "--log-format",
        "str",
        "auto",
        "logFormat",
        "auto (JSON when stderr is not a terminal), json or console",
        choices=LOG_FORMATS,
    ),
    Setting(
        "log_level",
        "--log-level",
        "str",
        "info",
        "logLevel",
        "debug, info, warning or error",
        choices=LOG_LEVELS,
    ),
    Setting(
        "identity",
        "--identity",
        "str",
        None,
        "(pod name)",
        "leader-election identity",
        default_text="$POD_NAME, else hostname-pid",
    ),
)
SETTINGS_BY_ATTR: Final = {s.attr: s for s in SETTINGS}


@dataclass(frozen=True)
class AgentConfig:
    """Every setting of the agent (times in seconds); build with :func:`load_config`."""

    kubeconfig: str | None = None
    namespaces: tuple[str, ...] = ()
    exclude_namespaces: tuple[str, ...] = ()
    mode: str = "auto"
    dry_run: bool = False
    max_in_flight: int = 0
    max_per_node: int = 0
    creates_per_second: float = 10.0
    create_burst: int = 10
    settle_seconds: float = 5.0
    bridge_grace_seconds: float = 15.0
    max_attempts: int = 3
    backoff_initial_seconds: float = 5.0
    backoff_max_seconds: float = 300.0
    migration_deadline_seconds: float = 900.0
    verify_timeout_seconds: float = 60.0
    slot_model: str = "auto"
    listen_address: str = "0.0.0.0:8080"
    leader_elect: bool = True
    lease_name: str = "hotplug-agent"
    lease_namespace: str = "default"
    lease_duration_seconds: float = 15.0
    renew_deadline_seconds: float = 10.0
    retry_period_seconds: float = 2.0
    shutdown_grace_seconds: float = 30.0
    log_format: str = "auto"
    log_level: str = "info"
    identity: str = ""

    @property
    def listen_host(self) -> str:
        return split_address(self.listen_address)[0]

    @property
    def listen_port(self) -> int:
        return split_address(self.listen_address)[1]

    def controller_settings(self) -> ControllerSettings:
        """The subset the reconcile loop uses."""
        from agent.controller import ControllerSettings

        return ControllerSettings(
            mode=self.mode,
            dry_run=self.dry_run,
            max_in_flight=self.max_in_flight,
            max_per_node=self.max_per_node,
            creates_per_second=self.creates_per_second,
            create_burst=self.create_burst,
            settle_seconds=self.settle_seconds,
            bridge_grace_seconds=self.bridge_grace_seconds,
            max_attempts=self.max_attempts,
            backoff_initial_seconds=self.backoff_initial_seconds,
            backoff_max_seconds=self.backoff_max_seconds,
            migration_deadline_seconds=self.migration_deadline_seconds,
            verify_timeout_seconds=self.verify_timeout_seconds,
            slot_model=self.slot_model,
            include_namespaces=frozenset(self.namespaces) if self.namespaces else None,
            exclude_namespaces=frozenset(self.exclude_namespaces),
        )


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


def load_config(
    flags: argparse.Namespace | Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> AgentConfig:
    """Flags (non-``None`` attributes named like the dataclass fields) > ``HOTPLUG_AGENT_*`` > defaults."""
    env = os.environ if env is None else env
    given = vars(flags) if isinstance(flags, argparse.Namespace) else dict(flags or {})
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        flag_value = given.get(setting.attr)
        if flag_value is not None:
            values[setting.attr] = _convert(setting, flag_value, "flag")
        elif env.get(setting.env, "") != "" or (setting.kind == "list" and setting.env in env):
            values[setting.attr] = _convert(setting, env[setting.env], "environment")
    if values.get("lease_namespace") is None:
        values["lease_namespace"] = env.get("POD_NAMESPACE") or "default"
    if values.get("identity") is None:
        values["identity"] = env.get("POD_NAME") or _default_identity()
    known = {f.name for f in fields(AgentConfig)}
    config = AgentConfig(**{k: v for k, v in values.items() if k in known})
    validate(config)
    return config


def validate(config: AgentConfig) -> None:
    """Raise :class:`ConfigError` listing every problem (not just the first)."""
    problems: list[str] = []

    def need(ok: bool, attr: str, what: str) -> None:
        if not ok:
            s = SETTINGS_BY_ATTR[attr]
            problems.append(f"{s.flag} / {s.env} = {getattr(config, attr)!r}: {what}")

    for attr in ("max_in_flight", "max_per_node"):
        need(getattr(config, attr) >= 0, attr, "must be >= 0 (0 = from the KubeVirt CR)")
    need(config.creates_per_second > 0, "creates_per_second", "must be > 0")
    need(config.create_burst >= 1, "create_burst", "must be >= 1")
    for attr in (
        "settle_seconds",
        "bridge_grace_seconds",
        "verify_timeout_seconds",
        "shutdown_grace_seconds",
    ):
        need(getattr(config, attr) >= 0, attr, "must be >= 0")
    need(config.max_attempts >= 1, "max_attempts", "must be >= 1")
    need(config.backoff_initial_seconds > 0, "backoff_initial_seconds", "must be > 0")
    need(
        config.backoff_max_seconds >= config.backoff_initial_seconds,
        "backoff_max_seconds",
        "must be >= --backoff-initial-seconds",
    )
    need(config.migration_deadline_seconds > 0, "migration_deadline_seconds", "must be > 0")
    need(config.mode in MODES, "mode", f"must be one of {', '.join(MODES)}")
    need(config.slot_model in SLOT_MODELS, "slot_model", f"must be one of {', '.join(SLOT_MODELS)}")
    need(config.log_format in LOG_FORMATS, "log_format", f"must be one of {', '.join(LOG_FORMATS)}")
    need(config.log_level in LOG_LEVELS, "log_level", f"must be one of {', '.join(LOG_LEVELS)}")
    try:
        split_address(config.listen_address)
    except ConfigError as exc:
        problems.append(f"--listen-address / {ENV_PREFIX}LISTEN_ADDRESS: {exc}")
    need(bool(config.lease_name), "lease_name", "must not be empty")
    need(bool(config.lease_namespace), "lease_namespace", "must not be empty")
    need(bool(config.identity), "identity", "must not be empty")
    if config.leader_elect:
        need(config.retry_period_seconds > 0, "retry_period_seconds", "must be > 0")
        need(
            config.renew_deadline_seconds > 1.2 * config.retry_period_seconds,
            "renew_deadline_seconds",
            "must be > 1.2 x --retry-period-seconds (client-go rule)",
        )
        need(
            config.lease_duration_seconds > config.renew_deadline_seconds,
            "lease_duration_seconds",
            "must be > --renew-deadline-seconds",
        )
    overlap = set(config.namespaces) & set(config.exclude_namespaces)
    if overlap:
        problems.append(f"namespaces both watched and excluded: {', '.join(sorted(overlap))}")
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting; defaults are ``None`` so :func:`load_config` can tell "not given"."""
    group = parser.add_argument_group("agent settings (flag > environment > default)")
    for s in SETTINGS:
        text = f"{s.help} [env {s.env}; default {s.shown_default}]"
        if s.kind == "bool":
            group.add_argument(
                s.flag, dest=s.attr, action=argparse.BooleanOptionalAction, default=None, help=text
            )
            continue
        metavar = {
            "int": "N",
            "float": "SECONDS" if s.attr.endswith("seconds") else "N",
            "list": "NS,...",
        }.get(s.kind, "VALUE")
        group.add_argument(
            s.flag,
            dest=s.attr,
            default=None,
            metavar="{" + ",".join(s.choices) + "}" if s.choices else metavar,
            help=text,
        )
