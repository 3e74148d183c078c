"""docs/metrics.md must describe every series, label and label value of metrics/definitions.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from metrics.definitions import RUNTIME_SERIES, SERIES, SeriesSpec, all_sample_names
from tests.observability.promql_names import metric_names

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


@pytest.mark.parametrize("spec", SERIES, ids=lambda spec: spec.name)
def test_series_documented(spec: SeriesSpec) -> None:
    text = DOC.read_text()
    heading = f"\n### {spec.name}\n"
    assert heading in text, spec.name
    section = text.split(heading, 1)[1].split("\n### ", 1)[0]
    assert f"**{spec.kind}**" in section
    assert spec.help in section
    for label, values in spec.labels:
        assert f"`{label}`" in section, (spec.name, label)
        for value in values:
            assert f"`{value}`" in section, (spec.name, label, value)
    assert "```promql" in section


def test_promql_examples_use_defined_metrics() -> None:
    known = all_sample_names()
    blocks = DOC.read_text().split("```promql\n")[1:]
    assert len(blocks) >= len(SERIES)
    for block in blocks:
        for line in block.split("```", 1)[0].splitlines():
            expr = line.split("#", 1)[0].strip()
            if expr:
                names = metric_names(expr)
                assert names and names <= known, (expr, names - known)


@pytest.mark.parametrize("spec", RUNTIME_SERIES, ids=lambda spec: spec.name)
def test_runtime_series_documented(spec: SeriesSpec) -> None:
    section = DOC.read_text().split("\n## Process and Python runtime\n", 1)[1].split("\n## ", 1)[0]
    assert f"| `{spec.name}` | {spec.kind} | {spec.help} |" in section
