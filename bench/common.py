"""Shared by the benchmarks: figures with their targets, the printed table, the JSON results."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import platform
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from simulator.kubevirt.config import DEFAULT_SRIOV_RESOURCES, SRIOV_RESOURCE
from simulator.testing import quiet_logs

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: The simulated cluster's ``gc_freeze_seconds`` in every benchmark: without it the benchmark process's
#: cyclic GC walks the store's history and stalls the simulated side (measured at 10,000 VMs and 1,000
#: updates/s: event-loop stalls of 0.5-1.4 s, reaction p50 14-25 ms; with it p50 3.4 ms).
GC_FREEZE_SECONDS = 0.5


@dataclass
class Figure:
    """One measured number, with its target (docs/performance.md) beside it when there is one."""

    name: str
    value: float | None
    unit: str = ""
    target: str = ""
    ok: bool | None = None
    note: str = ""

    def cells(self) -> list[str]:
        if self.value is None:
            shown = "n/a"
        elif isinstance(self.value, float) and not self.value.is_integer():
            if not self.unit and abs(self.value) < 10:
                shown = f"{self.value:.3f}"  # a ratio: 1.049 and 1.051 differ against a 1.05 target
            else:
                shown = f"{self.value:.3g}" if abs(self.value) < 100 else f"{self.value:,.1f}"
        else:
            shown = f"{self.value:,.0f}"
        verdict = "" if self.ok is None else ("ok" if self.ok else "MISSED")
        return [self.name, f"{shown} {self.unit}".strip(), self.target, verdict, self.note]


def at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def print_table(title: str, figures: Sequence[Figure]) -> None:
    rows = [["figure", "value", "target", "", "note"], *[f.cells() for f in figures]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"\n== {title}")
    for n, row in enumerate(rows):
        print("  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))
    sys.stdout.flush()


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def histogram_buckets(exposition: str, name: str) -> list[tuple[float, float]]:
    """The cumulative buckets ``(upper bound, count)`` of histogram ``name`` in a Prometheus text
    exposition (``/metrics``), ascending, summed over any other labels (``sum by (le)``)."""
    by_le: dict[float, float] = {}
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            if s.name == name + "_bucket":
                le = float(s.labels["le"])
                by_le[le] = by_le.get(le, 0.0) + float(s.value)
    return sorted(by_le.items())


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The ``q``-quantile (0..1) of a histogram given by its cumulative buckets ``(upper bound, count)``,
    estimated as Prometheus's ``histogram_quantile`` does: the bucket the rank ``q * count`` falls in,
    linear interpolation within it (the lowest bucket starts at 0); a rank in the ``+Inf`` bucket gives
    the largest finite bound. None without observations or without a ``+Inf`` bucket (Prometheus: NaN).

    An estimate: exact only at bucket bounds (p99 ≤ 5 ms holds iff 99 % of observations fell in the
    buckets up to 5 ms), and it assumes observations spread evenly within a bucket."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} outside 0..1")
    ordered = sorted(buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]) or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    start, below = 0.0, 0.0
    for i, (bound, count) in enumerate(ordered[:-1]):
        if count >= rank:
            if i == 0 and bound <= 0:
                return bound
            inside = count - below  # 0 only for q = 0 over an empty lowest bucket
            return start if inside <= 0 else start + (bound - start) * (rank - below) / inside
        start, below = bound, count
    return ordered[-2][0]  # the rank is in the +Inf bucket


def write_results(name: str, data: dict[str, Any], figures: Sequence[Figure]) -> Path:
    """``bench/results/<name>-<UTC time>.json`` and ``<name>-latest.json``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    doc = {
        "benchmark": name,
        "time": stamp,
        "python": sys.version.split()[0],
        "machine": {"platform": platform.platform(), "cpus": _cpus()},
        "figures": [asdict(f) for f in figures],
        "data": data,
    }
    text = json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n"
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.write_text(text)
    (RESULTS_DIR / f"{name}-latest.json").write_text(text)
    print(f"  results: {path.relative_to(RESULTS_DIR.parent.parent)}")
    return path


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run of the harness)")
    p.add_argument("--profile", type=Path, default=None, help="write a pyinstrument profile (agent side)")
    return p


def run_cli(
    parser: argparse.ArgumentParser, run: Callable[[Any], Awaitable[object]], argv: list[str] | None
) -> int:
    """A benchmark's ``main``: parse, quiet the harness's logs, run."""
    args = parser.parse_args(argv)
    quiet_logs()
    asyncio.run(run(args))
    return 0


def vfs_for(hotplugs: int) -> dict[str, int]:
    """SR-IOV VFs per simulated node for a benchmark of ``hotplugs`` SR-IOV hot plugs: enough that any
    one node could hold every VF (a running VM's and its migration target's), so VF capacity never
    holds a migration back; the benchmarks measure ordering and reaction, not capacity."""
    default = DEFAULT_SRIOV_RESOURCES[SRIOV_RESOURCE]
    return {**DEFAULT_SRIOV_RESOURCES, SRIOV_RESOURCE: max(default, 2 * hotplugs)}
