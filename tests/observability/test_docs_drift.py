"""Docs and code name the same things: every metric, hot-plug reason and Event reason the docs mention
exists in the code, and every one the code has is documented.

Scanned: README.md, docs/**/*.md and the chart's README. Reasons are found where the docs name them as
reasons: "reason `x`", "blocked: x" / "blocked (x)", decisions.md's "BLOCKED x".
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from metrics import definitions
from metrics.definitions import SERIES, all_sample_names

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted(
    [REPO / "README.md", REPO / "charts" / "hotplug-agent" / "README.md", *(REPO / "docs").rglob("*.md")]
)
#: Reasons the agent reports, each in a closed label set of metrics/definitions.py.
REASONS = {
    *definitions.BLOCKED_REASONS,
    *definitions.FAILURE_REASONS,
    *definitions.PENDING_STATES,
    *definitions.WATCH_RESTART_REASONS,
}
_REASON_MENTIONS = (
    re.compile(r"reason `([a-z]+(?:-[a-z]+)*)`"),
    re.compile(r"\bblocked(?::| \(| with reason) ?`?([a-z]+(?:-[a-z]+)+)"),
    re.compile(r"\bBLOCKED ([a-z]+(?:-[a-z]+)+)"),
)
_METRIC = re.compile(r"\bhotplug_agent_[a-z0-9_]*[a-z0-9]\b")
_EVENT_REASON = re.compile(r"`(Hotplug(?!Agent)[A-Z][A-Za-z]+)`")
#: `Hotplug…` names in the docs that are not Event reasons of ours.
NOT_EVENT_REASONS = {
    "HotplugNICs": "KubeVirt's feature gate",
    "HotplugNetworkInterfacesEnabled": "KubeVirt's feature-gate check (docs/compatibility.md)",
    "HotplugMetrics": "the metrics class (metrics/definitions.py)",
}


def _doc_id(path: Path) -> str:
    return str(path.relative_to(REPO))


def code_event_reasons() -> set[str]:
    """Event reasons the agent writes: its ``"Hotplug…"`` string constants (alert names excepted)."""
    found: set[str] = set()
    for source in (REPO / "agent").rglob("*.py"):
        found |= set(re.findall(r'"(Hotplug(?!Agent)[A-Z][A-Za-z]+)"', source.read_text()))
    return found


@pytest.mark.parametrize("doc", DOCS, ids=_doc_id)
def test_metric_names_in_docs_exist(doc: Path) -> None:
    known = all_sample_names() | {spec.name for spec in SERIES}
    assert set(_METRIC.findall(doc.read_text())) - known == set()


@pytest.mark.parametrize("doc", DOCS, ids=_doc_id)
def test_reasons_in_docs_exist(doc: Path) -> None:
    text = doc.read_text()
    mentioned = {m for pattern in _REASON_MENTIONS for m in pattern.findall(text)}
    assert mentioned - REASONS == set()


def test_every_blocked_and_failure_reason_is_documented() -> None:
    """Each blocked reason has its entry in the blocked-VMs runbook, each failure reason in the failure
    runbook, and both in metrics.md (checked label by label in test_metrics_doc.py)."""
    blocked = (REPO / "docs" / "runbooks" / "HotplugAgentVMsBlocked.md").read_text()
    assert [r for r in definitions.BLOCKED_REASONS if f"`{r}`" not in blocked] == []
    failures = (REPO / "docs" / "runbooks" / "HotplugAgentMigrationFailureRatioHigh.md").read_text()
    assert [r for r in definitions.FAILURE_REASONS if f"`{r}`" not in failures] == []


def test_event_reasons_match_the_code() -> None:
    in_code = code_event_reasons()
    assert len(in_code) >= 5, in_code  # the scan is not vacuous
    documented = {m for doc in DOCS for m in _EVENT_REASON.findall(doc.read_text())} - set(NOT_EVENT_REASONS)
    assert {
        "documented, not in the code": documented - in_code,
        "in the code, undocumented": in_code - documented,
    } == {
        "documented, not in the code": set(),
        "in the code, undocumented": set(),
    }


def test_the_scan_catches_drift() -> None:
    """Controls: the patterns see a wrong reason and a wrong metric name."""
    text = "VMs blocked: gave-up; see reason `stuck-forever` and hotplug_agent_migrations_created_total"
    assert {m for p in _REASON_MENTIONS for m in p.findall(text)} - REASONS == {"gave-up", "stuck-forever"}
    assert set(_METRIC.findall(text)) - all_sample_names() == {"hotplug_agent_migrations_created_total"}
