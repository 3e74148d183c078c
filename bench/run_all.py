"""``make bench``: every benchmark in turn, each printing its table and writing ``bench/results/``.

Each benchmark runs in a fresh interpreter, as it would alone. In one process, the drain that followed
the 10,000-VM scale and reaction runs saw the simulated cluster stall (a fixed 1.2 s migration took up
to 6.8 s, 1.32 s on average) and read 1.22 x ideal, against 1.08-1.15 when run alone.

python -m bench.run_all [--quick] [--only scale,reaction,drain,economy]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from types import SimpleNamespace
from typing import Any

from bench import drain, economy, reaction, scale
from bench.common import RESULTS_DIR, Figure
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
    p.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)  # one benchmark, here
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    if args.in_process:
        quiet_logs()
        for name in names:
            runner, defaults = BENCHMARKS[name]
            asyncio.run(runner(SimpleNamespace(quick=args.quick, profile=None, **defaults)))
        return 0
    missed: list[str] = []
    for name in names:
        started = time.monotonic()
        command = [sys.executable, "-m", "bench.run_all", "--in-process", "--only", name]
        code = subprocess.run([*command, *(["--quick"] if args.quick else [])], check=False).returncode
        print(f"  ({name}: {time.monotonic() - started:.0f} s)", flush=True)
        if code != 0:
            missed.append(f"{name}: exited with status {code}")
            continue
        latest = json.loads((RESULTS_DIR / f"{name}-latest.json").read_text())
        missed += [f"{name}: {f['name']}" for f in latest["figures"] if f.get("ok") is False]
    print("\n== summary")
    print("  every target met" if not missed else "  targets missed:\n    " + "\n    ".join(missed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
