"""``make bench``: every benchmark in turn, each printing its table and writing ``bench/results/``.

python -m bench.run_all [--quick] [--only scale,reaction,drain,economy]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Coroutine
from types import SimpleNamespace
from typing import Any

from bench import drain, economy, reaction, scale
from bench.common import Figure
from tests.harness import quiet_logs

Runner = Callable[[Any], Coroutine[Any, Any, list[Figure]]]

#: name → (runner, default arguments as its own CLI would give them)
BENCHMARKS: dict[str, tuple[Runner, dict[str, Any]]] = {
    "scale": (scale.run, {"sizes": "1000,10000", "events": 5000, "rate": 1000.0}),
    "reaction": (reaction.run, {"vms": 10_000, "rate": 1000.0, "markers": 200, "interval": 0.1}),
    "drain": (
        drain.run,
        {
            "vms": 1000,
            "cap": 20,
            "duration": 1.2,
            "real_migration_seconds": 10.0,
            "nodes": 10,
            "no_peer": False,
            "no_agent": False,
            "count_requests": False,
        },
    ),
    "economy": (economy.run, {"vms": 200, "failure_rate": 0.05}),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run of the harness")
    p.add_argument("--only", default="", help="comma list of benchmarks to run")
    args = p.parse_args(argv)
    quiet_logs()
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    missed: list[str] = []
    for name in names:
        runner, defaults = BENCHMARKS[name]
        started = time.monotonic()
        figures = asyncio.run(runner(SimpleNamespace(quick=args.quick, profile=None, **defaults)))
        print(f"  ({name}: {time.monotonic() - started:.0f} s)")
        missed += [f"{name}: {f.name}" for f in figures if f.ok is False]
    print("\n== summary")
    print("  every target met" if not missed else "  targets missed:\n    " + "\n    ".join(missed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
