"""Fixtures for the chart tests: the helm CLI and the chart rendered per values variant.

Variants: the chart's defaults plus every ``charts/hotplug-agent/ci/*-values.yaml`` (the chart-testing
convention). Rendering is cached per session: each variant is rendered once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chart.helm import CHART, Helm, Rendered, find_helm

CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
VARIANTS: dict[str, tuple[Path, ...]] = {"default": ()} | {
    f.name.removesuffix("-values.yaml"): (f,) for f in CI_VALUES
}


@pytest.fixture(scope="session")
def helm() -> Helm:
    return Helm(find_helm())


_cache: dict[str, Rendered] = {}


def render_variant(helm: Helm, variant: str) -> Rendered:
    if variant not in _cache:
        _cache[variant] = helm.render(VARIANTS[variant])
    return _cache[variant]


@pytest.fixture(params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def rendered(helm: Helm, variant: str) -> Rendered:
    return render_variant(helm, variant)


@pytest.fixture
def default(helm: Helm) -> Rendered:
    return render_variant(helm, "default")
