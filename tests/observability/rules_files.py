"""Loading the alert rules and their promtool unit tests (shared by several test modules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.observability.promtool import RULES_FILE, RULES_TESTS

REPO = Path(__file__).resolve().parents[2]
RUNBOOKS = REPO / "docs" / "runbooks"
ALERTS_DOC = REPO / "docs" / "alerts.md"
RUNBOOK_URL_BASE = "https://github.com/hotplug-agent/hotplug-agent/blob/main/docs/runbooks/"


def load_rules() -> dict[str, Any]:
    data = yaml.safe_load(RULES_FILE.read_text())
    assert isinstance(data, dict)
    return data


def alerting_rules() -> list[dict[str, Any]]:
    return [rule for group in load_rules()["groups"] for rule in group["rules"] if "alert" in rule]


def load_rule_tests() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, yaml.safe_load(path.read_text())) for path in RULES_TESTS]
