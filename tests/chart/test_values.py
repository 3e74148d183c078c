"""Every chart value is named as the contract says, schema-checked, and documented by a comment in
values.yaml that starts with its name, from which helm-docs generates the chart README's values table
(tests/chart/test_readme.py)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from tests.chart.helm import CHART

REPO = Path(__file__).resolve().parents[2]
VALUES_TEXT = (CHART / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
README = CHART / "README.md"


# Values shaped like a Kubernetes type (probe fields), documented as a whole like securityContext.
KUBERNETES_SHAPED = {"livenessProbe", "readinessProbe", "startupProbe"}


def leaves(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the values a user sets: descend where the schema lists the chart's own fields."""
    out = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        node = schema["properties"][key]
        if isinstance(value, dict) and "properties" in node and path not in KUBERNETES_SHAPED:
            out += leaves(value, node, f"{path}.")
        else:
            out.append(path)
    return out


LEAVES = leaves(VALUES, SCHEMA)


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "hotplug-agent"
    assert chart["appVersion"] == project["version"] == "0.1.0"


def test_values_are_camel_case() -> None:
    for path in LEAVES:
        for part in path.split("."):
            assert re.fullmatch(r"[a-z][a-zA-Z0-9]*", part), path


def test_schema_covers_every_value_and_no_more() -> None:
    assert SCHEMA["additionalProperties"] is False
    assert set(SCHEMA["properties"]) - {"global"} == set(VALUES)


def test_every_value_is_commented_in_values_yaml() -> None:
    documented = set(re.findall(r"^\s*# ([A-Za-z.]+) -- \S", VALUES_TEXT, flags=re.MULTILINE))
    assert [p for p in LEAVES if p not in documented] == []
    parents = {p.rsplit(".", 1)[0] for p in LEAVES if "." in p}
    assert documented - set(LEAVES) - parents == set(), "comments for values that do not exist"


def test_every_value_is_in_the_readme_values_table() -> None:
    text = README.read_text().split("\n## Values\n", 1)[1]
    rows = set(re.findall(r"^\| ([A-Za-z.]+) \| [a-z]+ \|", text, flags=re.MULTILINE))
    assert [p for p in LEAVES if p not in rows] == []
    parents = {p.rsplit(".", 1)[0] for p in LEAVES if "." in p}
    assert rows - set(LEAVES) - parents == set(), "the chart README documents values that do not exist"


def test_contract_chart_values_exist() -> None:
    contract = (REPO / "docs" / "architecture.md").read_text()
    named = re.findall(r"^\|[^|]+\|[^|]+\| `([A-Za-z.]+)` \|", contract, flags=re.MULTILINE)
    assert len(named) >= 20
    assert [n for n in named if n not in LEAVES] == []


def test_values_comments_name_the_right_env_var() -> None:
    """A value's comment names its HOTPLUG_AGENT_* variable, and it is the one the contract assigns."""
    comments: dict[str, str] = {}
    current = ""
    for line in VALUES_TEXT.splitlines():
        match = re.match(r"^\s*# ([A-Za-z.]+) -- (.*)$", line)
        if match:
            current = match.group(1)
            comments[current] = match.group(2)
        elif current and (cont := re.match(r"^\s*# (.*)$", line)):
            comments[current] += " " + cont.group(1)
        else:
            current = ""
    contract = (REPO / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\|[^|]+\| `(HOTPLUG_AGENT_\w+)` \| `([A-Za-z.]+)` \|", contract, flags=re.MULTILINE)
    assert len(rows) >= 20
    for env, path in rows:
        assert env in comments[path], (path, env)
    for path, text in comments.items():
        for env in re.findall(r"HOTPLUG_AGENT_\w+", text):
            assert (env, path) in rows, f"values.yaml comment of {path} names {env}"
