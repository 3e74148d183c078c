"""Alert rules: promtool validity, unit tests that fire and stay quiet, and that those tests bite."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from metrics.definitions import all_sample_names
from tests.observability.promql_names import metric_names
from tests.observability.promtool import RULES_FILE, RULES_TESTS, check_rules, run_rule_tests
from tests.observability.rules_files import (
    ALERTS_DOC,
    RUNBOOK_URL_BASE,
    RUNBOOKS,
    alerting_rules,
    load_rule_tests,
    load_rules,
)

ALERT_NAMES = [rule["alert"] for rule in alerting_rules()]
EXTERNAL_METRICS = {"up"}  # scraped by Prometheus itself, not exported by the agent


def _output(proc: Any) -> str:
    return str((proc.stdout + proc.stderr).decode(errors="replace"))


# ------------------------------------------------------------------ structure (no promtool needed)


def test_rules_file_is_a_prometheusrule_spec() -> None:
    data = load_rules()
    assert list(data) == ["groups"]
    names = [group["name"] for group in data["groups"]]
    assert len(names) == len(set(names))
    assert len(ALERT_NAMES) == len(set(ALERT_NAMES))
    assert len(ALERT_NAMES) >= 8


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda rule: rule["alert"])
def test_alert_conventions(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert re.fullmatch(r"HotplugAgent[A-Z][A-Za-z]+", name)
    labels = rule["labels"]
    assert labels["severity"] in {"critical", "warning", "info"}
    assert labels["operator_health_impact"] in {"critical", "warning", "none"}
    assert labels["kubernetes_operator_component"] == "hotplug-agent"
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}
    assert annotations["runbook_url"] == f"{RUNBOOK_URL_BASE}{name}.md"
    assert "for" in rule, "every alert needs a `for` so a single bad scrape does not page"


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_every_alert_has_a_runbook_and_index_entry(name: str) -> None:
    runbook = RUNBOOKS / f"{name}.md"
    assert runbook.is_file(), runbook
    text = runbook.read_text()
    assert text.startswith(f"# {name}\n")
    for section in ("## Meaning", "## Impact", "## Diagnosis", "## Mitigation"):
        assert section in text, f"{runbook}: missing {section}"
    assert f"runbooks/{name}.md" in ALERTS_DOC.read_text()


def test_no_orphan_runbooks() -> None:
    assert {path.stem for path in RUNBOOKS.glob("*.md")} == set(ALERT_NAMES)


def test_rules_use_only_defined_metrics() -> None:
    known = all_sample_names() | EXTERNAL_METRICS
    used: set[str] = set()
    for rule in alerting_rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        used |= names
    assert used - known == set()
    # And the parser is not vacuous: it sees the metrics we know are there.
    assert {"up", "hotplug_agent_leader", "hotplug_agent_migration_failures_total"} <= used


def _alert_tests(alert: str) -> tuple[int, int]:
    firing = quiet = 0
    for _path, data in load_rule_tests():
        for case in data["tests"]:
            for check in case.get("alert_rule_test", []):
                if check["alertname"] == alert:
                    if check.get("exp_alerts"):
                        firing += 1
                    else:
                        quiet += 1
    return firing, quiet


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_every_alert_has_firing_and_quiet_unit_tests(name: str) -> None:
    firing, quiet = _alert_tests(name)
    assert firing >= 1, f"{name}: no unit test makes it fire"
    assert quiet >= 1, f"{name}: no unit test checks it stays quiet"


# ------------------------------------------------------------------ promtool


@pytest.mark.tools
def test_promtool_check_rules() -> None:
    proc = check_rules(RULES_FILE)
    assert proc.returncode == 0, _output(proc)
    assert f"SUCCESS: {len(alerting_rules())} rules found" in _output(proc)


@pytest.mark.tools
def test_promtool_rule_unit_tests_pass() -> None:
    assert RULES_TESTS
    proc = run_rule_tests(*RULES_TESTS)
    assert proc.returncode == 0, _output(proc)
    assert "SUCCESS" in _output(proc)


def _mutated_run(tmp_path: Path, alert: str, expr: str, keep_firing: bool) -> Any:
    """Run only the firing (or only the quiet) checks of ``alert`` against rules where its expr is
    replaced by ``expr``; returns the promtool result."""
    rules = copy.deepcopy(load_rules())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                rule["expr"] = expr
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(yaml.safe_dump(rules, sort_keys=False))
    cases = []
    for _path, data in load_rule_tests():
        for case in data["tests"]:
            checks = [
                check
                for check in case.get("alert_rule_test", [])
                if check["alertname"] == alert and bool(check.get("exp_alerts")) == keep_firing
            ]
            if checks:
                trimmed = {key: value for key, value in case.items() if key != "promql_expr_test"}
                trimmed["alert_rule_test"] = checks
                cases.append(trimmed)
    assert cases
    test_file = tmp_path / "rules_test.yaml"
    test_file.write_text(
        yaml.safe_dump({"rule_files": [str(rules_path)], "evaluation_interval": "1m", "tests": cases})
    )
    return run_rule_tests(test_file)


@pytest.mark.tools
@pytest.mark.parametrize("name", ALERT_NAMES)
def test_firing_cases_fail_if_the_alert_never_fires(tmp_path: Path, name: str) -> None:
    proc = _mutated_run(tmp_path, name, "vector(1) == 0", keep_firing=True)
    assert proc.returncode != 0, _output(proc)


@pytest.mark.tools
@pytest.mark.parametrize("name", ALERT_NAMES)
def test_quiet_cases_fail_if_the_alert_always_fires(tmp_path: Path, name: str) -> None:
    proc = _mutated_run(tmp_path, name, "vector(1)", keep_firing=False)
    assert proc.returncode != 0, _output(proc)


@pytest.mark.tools
def test_trimmed_unit_tests_pass_unmutated(tmp_path: Path) -> None:
    """Control for the mutation tests: the trimming itself must not break the tests."""
    rule = next(rule for rule in alerting_rules() if rule["alert"] == "HotplugAgentNoLeader")
    for keep_firing in (True, False):
        proc = _mutated_run(tmp_path, rule["alert"], rule["expr"], keep_firing=keep_firing)
        assert proc.returncode == 0, _output(proc)
