"""Chart.yaml's Artifact Hub metadata (https://artifacthub.io/docs/topics/annotations/helm/) agrees with
the chart: the image is the values' repository at appVersion, links and maintainers have a contact, the
changes use Artifact Hub's kinds, and the icon is a file of the chart."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.chart.helm import CHART

CHART_YAML = yaml.safe_load((CHART / "Chart.yaml").read_text())
ANNOTATIONS: dict[str, str] = CHART_YAML["annotations"]
CHANGE_KINDS = {"added", "changed", "deprecated", "removed", "fixed", "security"}
CATEGORIES = {
    "ai-machine-learning", "database", "integration-delivery", "monitoring-logging", "networking",
    "security", "storage", "streaming-messaging",
}  # fmt: skip


def listed(key: str) -> list[dict[str, Any]]:
    value = yaml.safe_load(ANNOTATIONS[f"artifacthub.io/{key}"])
    assert isinstance(value, list) and value, key
    return value


def test_images_are_the_chart_image() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    (image,) = listed("images")
    assert image["image"] == f"{values['image']['repository']}:{CHART_YAML['appVersion']}"


def test_links_maintainers_and_icon() -> None:
    for link in listed("links"):
        assert link["name"] and re.match(r"https://", link["url"]), link
    for maintainer in CHART_YAML["maintainers"]:
        assert maintainer["name"] and (maintainer.get("email") or maintainer.get("url")), maintainer
    icon = CHART_YAML["icon"]
    assert icon.startswith("https://") and icon.endswith("/charts/hotplug-agent/icon.svg")
    assert (CHART / "icon.svg").read_text().lstrip().startswith("<svg")


def test_changes_prerelease_license_category() -> None:
    for change in listed("changes"):
        assert change["kind"] in CHANGE_KINDS and change["description"], change
    assert ANNOTATIONS["artifacthub.io/prerelease"] == (
        "true" if CHART_YAML["version"].startswith("0.") else "false"
    )
    assert ANNOTATIONS["artifacthub.io/license"] == "Apache-2.0"
    assert ANNOTATIONS["artifacthub.io/category"] in CATEGORIES
    assert ANNOTATIONS["artifacthub.io/operator"] in ("true", "false")
