"""Fixtures for the chart tests: the helm CLI and the chart rendered per values variant.

Variants: the chart's defaults plus every ``charts/hotplug-agent/ci/*-values.yaml`` (the chart-testing
convention). Rendering is cached per session: each variant is rendered once.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.chart.helm import CHART, INSTALL_HELM, Helm, Rendered, find_helm

CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
VARIANTS: dict[str, tuple[Path, ...]] = {"default": ()} | {
    f.name.removesuffix("-values.yaml"): (f,) for f in CI_VALUES
}


def pytest_collection_finish(session: pytest.Session) -> None:
    """When chart tests are selected and helm is not built yet, build it now, with its output shown,
    outside any test's timeout (a cold build takes minutes). Failures are left to the fixture."""
    if os.environ.get("HELM") or not any(
        Path(str(item.path)).is_relative_to(Path(__file__).parent) and item.get_closest_marker("tools")
        for item in session.items
    ):
        return
    capman = session.config.pluginmanager.get_plugin("capturemanager")
    if capman is None:
        subprocess.run([str(INSTALL_HELM)], check=False, capture_output=True)
        return
    with capman.global_and_fixture_disabled():
        subprocess.run([str(INSTALL_HELM)], check=False)


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
