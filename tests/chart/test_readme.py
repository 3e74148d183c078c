"""The chart README is helm-docs' output for README.md.gotmpl and values.yaml, exactly: regenerated here
with the pinned helm-docs (built from its Go module by hack/tools/install-helm-docs.sh, or $HELM_DOCS)
and compared byte for byte, so the values table never drifts from values.yaml."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.chart.helm import CHART, REPO
from tests.tooling import require_tool

pytestmark = pytest.mark.tools

INSTALL = REPO / "hack" / "tools" / "install-helm-docs.sh"


def find_helm_docs() -> str:
    env = os.environ.get("HELM_DOCS")
    if env:
        return env
    proc = subprocess.run(
        [str(INSTALL), "--print-path"], capture_output=True, text=True, timeout=1200, check=False
    )
    if proc.returncode == 0 and proc.stdout.strip():
        return proc.stdout.strip().splitlines()[-1]
    if proc.returncode != 2:  # 2 = no Go toolchain: fall back to PATH
        raise AssertionError(f"install-helm-docs.sh failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return require_tool("helm-docs")


def generate(helm_docs: str, chart: Path) -> str:
    """helm-docs on a copy of ``chart`` (it writes README.md in place); returns the new README."""
    proc = subprocess.run(
        [helm_docs, "--chart-search-root", str(chart.parent), "--template-files", "README.md.gotmpl",
         "--sort-values-order", "file", "--log-level", "warning"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return (chart / "README.md").read_text()


@pytest.fixture(scope="module")
def helm_docs() -> str:
    return find_helm_docs()


def test_readme_is_helm_docs_output(helm_docs: str, tmp_path: Path) -> None:
    chart = tmp_path / "charts" / CHART.name
    shutil.copytree(CHART, chart)
    assert generate(helm_docs, chart) == (CHART / "README.md").read_text(), (
        "charts/hotplug-agent/README.md is stale: run `helm-docs --chart-search-root charts "
        "--sort-values-order file` (hack/tools/install-helm-docs.sh builds it)"
    )


def test_a_new_value_changes_the_readme(helm_docs: str, tmp_path: Path) -> None:
    """Control: the comparison above can fail."""
    chart = tmp_path / "charts" / CHART.name
    shutil.copytree(CHART, chart)
    values = chart / "values.yaml"
    values.write_text(
        values.read_text() + "\n# brandNewValue -- a value added without the README.\nbrandNewValue: 1\n"
    )
    readme = generate(helm_docs, chart)
    assert "| brandNewValue | int | `1` | a value added without the README. |" in readme
    assert readme != (CHART / "README.md").read_text()
