"""AgentConfig: flag > environment > default, validation messages, and one declaration per setting
(agent/config.py ``SETTINGS``) that the docs, the contract table and the chart's values agree with."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.cli import build_parser
from agent.config import (
    DEFAULTS,
    SETTINGS,
    AgentConfig,
    ConfigError,
    load_config,
    markdown_table,
    settings_of,
    split_address,
)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "hotplug-agent"


def parse(*argv: str, env: dict[str, str] | None = None, command: str = "run") -> AgentConfig:
    args = build_parser().parse_args([command, *argv])
    return load_config(args, env or {}, command=command)


def test_defaults() -> None:
    cfg = parse(env={"POD_NAME": "agent-0"})
    assert cfg.mode == "auto" and not cfg.dry_run and cfg.leader_elect
    assert (cfg.max_in_flight, cfg.max_per_node, cfg.create_burst) == (0, 0, 10)
    assert (cfg.settle_seconds, cfg.bridge_grace_seconds, cfg.backoff_max_seconds) == (5.0, 15.0, 300.0)
    assert cfg.listen_address == "0.0.0.0:8080" and (cfg.listen_host, cfg.listen_port) == ("0.0.0.0", 8080)
    assert cfg.lease_namespace == "default" and cfg.identity == "agent-0"
    assert cfg.namespaces == () and cfg.kubeconfig is None
    assert cfg.log_format == "auto" and cfg.log_level == "info"


def test_identity_and_lease_namespace_fallbacks() -> None:
    cfg = parse(env={"POD_NAMESPACE": "ops"})
    assert cfg.lease_namespace == "ops"
    assert re.fullmatch(r".+-\d+", cfg.identity)


def test_env_then_flags_override() -> None:
    env = {
        "HOTPLUG_AGENT_MODE": "observe",
        "HOTPLUG_AGENT_DRY_RUN": "true",
        "HOTPLUG_AGENT_MAX_IN_FLIGHT": "7",
        "HOTPLUG_AGENT_NAMESPACES": "team-a, team-b,,team-a",
        "HOTPLUG_AGENT_LEADER_ELECT": "false",
        "HOTPLUG_AGENT_SETTLE_SECONDS": "0.5",
        "HOTPLUG_AGENT_LEASE_NAMESPACE": "from-env",
        "POD_NAMESPACE": "pod-ns",
    }
    cfg = parse(env=env)
    assert (cfg.mode, cfg.dry_run, cfg.max_in_flight) == ("observe", True, 7)
    assert cfg.namespaces == ("team-a", "team-b") and not cfg.leader_elect
    assert cfg.settle_seconds == 0.5 and cfg.lease_namespace == "from-env"
    cfg = parse(
        "--mode",
        "active",
        "--no-dry-run",
        "--max-in-flight",
        "2",
        "--leader-elect",
        "--namespaces",
        "x",
        env=env,
    )
    assert (cfg.mode, cfg.dry_run, cfg.max_in_flight, cfg.leader_elect) == ("active", False, 2, True)
    assert cfg.namespaces == ("x",)


def test_empty_env_means_default() -> None:
    cfg = parse(env={"HOTPLUG_AGENT_NAMESPACES": "", "HOTPLUG_AGENT_MODE": ""})
    assert cfg.namespaces == () and cfg.mode == "auto"


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        (["--mode", "yolo"], {}, "--mode / HOTPLUG_AGENT_MODE"),
        ([], {"HOTPLUG_AGENT_SETTLE_SECONDS": "-1"}, "--settle-seconds"),
        ([], {"HOTPLUG_AGENT_MAX_ATTEMPTS": "three"}, "not an integer"),
        (["--creates-per-second", "0"], {}, "--creates-per-second"),
        (["--creates-per-second", "nan"], {}, "finite"),
        (["--listen-address", "8080"], {}, "not host:port"),
        (["--listen-address", "::1:80"], {}, "[addr]:port"),
        (["--listen-address", "0.0.0.0:99999"], {}, "out of range"),
        ([], {"HOTPLUG_AGENT_DRY_RUN": "maybe"}, "not a boolean"),
        (["--backoff-initial-seconds", "10", "--backoff-max-seconds", "5"], {}, "--backoff-max-seconds"),
        (["--renew-deadline-seconds", "20"], {}, "--lease-duration-seconds"),
        (["--retry-period-seconds", "9"], {}, "--renew-deadline-seconds"),
        (["--namespaces", "a,b", "--exclude-namespaces", "b"], {}, "both watched and excluded"),
        (["--slot-model", "v3"], {}, "--slot-model"),
    ],
)
def test_validation_errors_name_the_setting(argv: list[str], env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(*argv, env=env)
    assert needle in str(info.value)


def test_leader_timings_not_checked_without_election() -> None:
    cfg = parse("--no-leader-elect", "--renew-deadline-seconds", "20")
    assert not cfg.leader_elect


def test_ipv6_listen_address() -> None:
    assert split_address("[::1]:9090") == ("::1", 9090)
    assert split_address(":8080") == ("", 8080)


def test_table_matches_architecture_contract() -> None:
    """Every row of docs/architecture.md's configuration table is a setting with the same names/default."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| `(--[a-z-]+)`[^|]*\| `(HOTPLUG_AGENT_[A-Z_]+)` \|", text, re.MULTILINE)
    assert len(rows) == len(SETTINGS)
    by_flag = {s.flag: s for s in SETTINGS}
    for flag, env in rows:
        assert flag in by_flag, flag
        assert by_flag[flag].env == env


def test_docs_configuration_lists_every_setting() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    for s in SETTINGS:
        assert f"`{s.flag}`" in text and f"`{s.env}`" in text, s.flag


def test_config_object_is_declared_by_the_settings() -> None:
    """AgentConfig has exactly one field per setting, and its defaults are the declared ones."""
    assert [f.name for f in dataclasses.fields(AgentConfig)] == [s.attr for s in SETTINGS]
    for s in SETTINGS:
        assert getattr(DEFAULTS, s.attr) == s.default, s.attr
        assert getattr(AgentConfig(), s.attr) == s.default, s.attr


def test_docs_table_is_generated_from_the_settings() -> None:
    """docs/configuration.md carries `python -m agent.config`'s output verbatim."""
    assert markdown_table() in (ROOT / "docs" / "configuration.md").read_text()


def _chart_value(path: str, tree: dict[str, Any]) -> Any:
    node: Any = tree
    for part in path.split("."):
        node = node[part]
    return node


def _schema_of(path: str, schema: dict[str, Any]) -> dict[str, Any]:
    node = schema
    for part in path.split("."):
        node = node["properties"][part]
    return node


SCHEMA_TYPES = {"int": {"integer"}, "float": {"number", "integer"}, "bool": {"boolean"}, "list": {"array"}}


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.chart is not None], ids=lambda s: s.attr)
def test_chart_values_and_schema_agree_with_the_setting(setting: Any) -> None:
    """values.yaml holds the agent's default; the schema's type, choices and bounds accept nothing the
    agent refuses (the chart may be stricter, e.g. whole seconds where it does arithmetic)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert setting.chart is not None
    assert _chart_value(setting.chart, values) == setting.expected_chart_default
    node = _schema_of(setting.chart, schema)
    # metrics.port: the chart holds the port, the agent the whole address
    kind = (
        "int" if isinstance(setting.expected_chart_default, int) and setting.kind == "str" else setting.kind
    )
    assert node["type"] in SCHEMA_TYPES.get(kind, {"string"})
    assert tuple(node.get("enum", ())) == setting.choices
    if setting.above is not None:
        assert node.get("exclusiveMinimum", -1) >= setting.above or node.get("minimum", -1) > setting.above
    if setting.at_least is not None:
        floor = max(node.get("minimum", float("-inf")), node.get("exclusiveMinimum", float("-inf")))
        assert floor >= setting.at_least
    assert setting.env in node.get("description", "") + json.dumps(node), "schema description names the env"


def test_plan_has_its_own_flag_set() -> None:
    """plan takes the settings that change its answer, not the lease, listen or shutdown flags."""
    plan = {s.flag for s in settings_of("plan")}
    assert {"--kubeconfig", "--context", "--namespaces", "--mode", "--slot-model"} <= plan
    assert not plan & {"--lease-name", "--listen-address", "--shutdown-grace-seconds", "--leader-elect"}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["plan", "--lease-name", "x"])
    # run-only variables are not read by plan: a bad one cannot stop it
    cfg = parse(env={"HOTPLUG_AGENT_LEADER_ELECT": "maybe", "HOTPLUG_AGENT_MODE": "observe"}, command="plan")
    assert cfg.mode == "observe" and cfg.leader_elect is DEFAULTS.leader_elect


def test_every_unreadable_and_invalid_value_is_listed_at_once() -> None:
    env = {
        "HOTPLUG_AGENT_MAX_ATTEMPTS": "three",
        "HOTPLUG_AGENT_DRY_RUN": "maybe",
        "HOTPLUG_AGENT_BACKOFF_INITIAL_SECONDS": "soon",
        "HOTPLUG_AGENT_SETTLE_SECONDS": "-1",
    }
    with pytest.raises(ConfigError) as info:
        parse("--mode", "yolo", "--creates-per-second", "0", env=env)
    text = str(info.value)
    for needle in (
        "--max-attempts / HOTPLUG_AGENT_MAX_ATTEMPTS (environment): 'three' is not an integer",
        "--dry-run / HOTPLUG_AGENT_DRY_RUN (environment): 'maybe' is not a boolean",
        "--backoff-initial-seconds / HOTPLUG_AGENT_BACKOFF_INITIAL_SECONDS (environment): 'soon'",
        "--mode / HOTPLUG_AGENT_MODE (flag): 'yolo' is not one of auto, active, observe",
        "--creates-per-second / HOTPLUG_AGENT_CREATES_PER_SECOND = 0.0: must be > 0",
        "--settle-seconds / HOTPLUG_AGENT_SETTLE_SECONDS = -1.0: must be >= 0",
    ):
        assert needle in text
    # a rule reading an unreadable value is not checked against a substituted default
    assert "--backoff-max-seconds" not in text
