"""Content negotiation: OpenMetrics (with exemplars) only when the scraper asks for it."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from metrics.definitions import HotplugMetrics
from metrics.exposition import render, wants_openmetrics

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, False),
        ("", False),
        ("*/*", False),
        ("text/plain", False),
        (PROMETHEUS_ACCEPT, True),
        ("Application/OpenMetrics-Text; version=1.0.0", True),
        ("application/openmetrics-text;q=0", False),
        ("application/openmetrics-text;q=bogus", False),
        ("text/plain;q=1, application/openmetrics-text;q=0.2", True),
    ],
)
def test_wants_openmetrics(accept: str | None, expected: bool) -> None:
    assert wants_openmetrics(accept) is expected


def _populated() -> HotplugMetrics:
    m = HotplugMetrics(version="0.0.0-test")
    m.observe_migration("succeeded", "agent", 42.0, vmi="default/vm-1")
    return m


def test_openmetrics_carries_exemplars() -> None:
    body, content_type = render(_populated().registry, PROMETHEUS_ACCEPT)
    assert content_type.startswith("application/openmetrics-text")
    text = body.decode()
    assert text.rstrip().endswith("# EOF")
    assert '# {vmi="default/vm-1"} 42.0' in text


def test_plain_text_by_default_and_parseable() -> None:
    body, content_type = render(_populated().registry, None)
    assert content_type.startswith("text/plain")
    assert "version=0.0.4" in content_type
    text = body.decode()
    assert "vmi=" not in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    migrations = families["hotplug_agent_migrations"]
    samples = {
        (s.labels["result"], s.labels["initiator"]): s.value
        for s in migrations.samples
        if s.name == "hotplug_agent_migrations_total"
    }
    assert samples[("succeeded", "agent")] == 1.0
    assert samples[("failed", "kubevirt")] == 0.0
