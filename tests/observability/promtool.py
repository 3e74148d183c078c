"""Thin wrappers around Debian's ``promtool`` (Prometheus 2.42) for tests.

Reusable by other test suites: the agent's end-to-end test feeds the running agent's ``/metrics``
body to :func:`check_metrics_with_promtool`.  Each wrapper calls ``require_tool("promtool")`` so a
missing binary skips locally and fails under ``CI=true`` (policy lives in ``tests/tooling.py``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.tooling import require_tool

REPO = Path(__file__).resolve().parents[2]
RULES_FILE = REPO / "charts" / "hotplug-agent" / "files" / "prometheus-rules.yaml"
RULES_TESTS = sorted(Path(__file__).resolve().parent.glob("rules_test*.yaml"))


def promtool_path() -> str:
    """Path of promtool, or skip/fail the calling test as ``tests/tooling.py`` decides."""
    return require_tool("promtool")


def _run(args: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [promtool_path(), *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )


def check_metrics_with_promtool(text: str | bytes) -> list[str]:
    """Lint a Prometheus **text-format** exposition with ``promtool check metrics``.

    Returns promtool's complaints, one per line (empty list = clean).  promtool 2.42 parses only the
    classic text format, so do not pass OpenMetrics (it would report every counter as lacking HELP).
    Raises ``AssertionError`` if promtool fails without saying why, so a broken tool is never read as
    "clean".
    """
    data = text.encode() if isinstance(text, str) else text
    proc = _run(["check", "metrics"], stdin=data)
    output = (proc.stdout + proc.stderr).decode(errors="replace")
    problems = [line.strip() for line in output.splitlines() if line.strip()]
    if proc.returncode != 0 and not problems:
        raise AssertionError(f"promtool check metrics exited {proc.returncode} without output")
    return problems


def check_rules(*files: Path) -> subprocess.CompletedProcess[bytes]:
    """``promtool check rules --lint=all`` on rule files (plain rule groups, not PrometheusRule CRs)."""
    return _run(["check", "rules", "--lint=all", "--lint-fatal", *map(str, files)])


def run_rule_tests(*files: Path) -> subprocess.CompletedProcess[bytes]:
    """``promtool test rules`` on unit-test files; ``rule_files`` paths resolve from each file's dir."""
    return _run(["test", "rules", *map(str, files)])
