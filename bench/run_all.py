"""``make bench``: every benchmark in turn, each printing its table and writing ``bench/results/``.

Each benchmark runs in a fresh interpreter, as it would alone. In one process, the drain that followed
the 10,000-VM scale and reaction runs saw the simulated cluster stall (a fixed 1.2 s migration took up
to 6.8 s, 1.32 s on average) and read 1.22 x ideal, against 1.08-1.15 when run alone.

``--quick`` runs the benchmarks of the simulated cluster only, at small sizes (a one-minute smoke run
of the harness); the real-tier ones (``scale_real``, ``drain_real``) have their own ``--quick``.

python -m bench.run_all [--quick] [--only scale,reaction,drain,drain_realistic,economy,scale_real,drain_real]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from bench.common import RESULTS_DIR

#: Run in this order, each as ``python -m bench.<name>`` with its own defaults.
BENCHMARKS = (
    "scale", "reaction", "drain", "drain_realistic", "economy", "fairness", "scale_real", "drain_real",
)  # fmt: skip
#: On the real control plane / real KubeVirt: not part of ``--quick``.
REAL_TIER = ("scale_real", "drain_real")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run of the harness")
    p.add_argument("--only", default="", help="comma list of benchmarks to run")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or [
        b for b in BENCHMARKS if not (args.quick and b in REAL_TIER)
    ]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    missed: list[str] = []
    total = time.monotonic()
    for name in names:
        started = time.monotonic()
        command = [sys.executable, "-m", f"bench.{name}", *(["--quick"] if args.quick else [])]
        code = subprocess.run(command, check=False).returncode
        print(f"  ({name}: {time.monotonic() - started:.0f} s)", flush=True)
        if code != 0:
            missed.append(f"{name}: exited with status {code}")
            continue
        latest = json.loads((RESULTS_DIR / f"{name}-latest.json").read_text())
        missed += [f"{name}: {f['name']}" for f in latest["figures"] if f.get("ok") is False]
    print(f"\n== summary ({time.monotonic() - total:.0f} s in all)")
    print("  every target met" if not missed else "  targets missed:\n    " + "\n    ".join(missed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
