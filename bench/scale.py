"""Scale: the agent (a subprocess, so its memory is its own) against 1,000 and 10,000 VMs with VMIs.

Per size: the VMs and VMIs are seeded in-process (fast), then ``hotplug-agent run`` starts against the
cluster. Measured:

- memory above the idle baseline per VM: (RSS at N VMs - RSS against an empty cluster) / N, both read
  from ``/proc/<pid>/status`` 2 s after ``/readyz`` turned 200;
- time until the caches are synced: process spawn → ``/readyz`` 200 (includes interpreter start and
  imports; the baseline's figure, an empty cluster, is printed beside it);
- CPU seconds per 1,000 watch events: ``/proc/<pid>/stat`` utime+stime while the simulator emits a known
  number of irrelevant VMI status updates at 1,000/s, until the agent's CPU is back to its idle rate,
  minus that idle rate.

    python -m bench.scale [--sizes 1000,10000] [--events 5000] [--quick] [--profile FILE]
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from bench.common import GC_FREEZE_SECONDS, Figure, at_most, base_parser, print_table, run_cli, write_results
from bench.workload import status_stream
from simulator.cluster import ClusterConfig
from simulator.manifests import vm_manifest
from simulator.testing import AgentProcess, SimHarness, agent_command

FLAGS = [
    "--settle-seconds",
    "0",
    "--bridge-grace-seconds",
    "0",
    "--log-level",
    "warning",
    "--no-leader-elect",
]


def profiled_command(profile: Path | None) -> list[str] | None:
    if profile is None:
        return None
    cmd = agent_command()
    return [str(Path(cmd[0]).with_name("pyinstrument")), "-r", "text", "--show-all", "-o", str(profile), *cmd]


async def settle_cpu(agent: AgentProcess, idle_rate: float, *, interval: float = 0.25) -> float:
    """Wait until the agent's CPU rate is back near idle for two intervals; returns the CPU seconds."""
    quiet = 0
    last = agent.cpu_seconds()
    deadline = time.monotonic() + 120
    while quiet < 2 and time.monotonic() < deadline:
        await asyncio.sleep(interval)
        now = agent.cpu_seconds()
        quiet = quiet + 1 if now - last <= idle_rate * interval + 0.02 else 0
        last = now
    return last


def record_bytes_per_vm(vms: list[dict[str, Any]], vmis: list[dict[str, Any]]) -> float:
    """tracemalloc: bytes the agent's parsed records (``parse_vm`` + ``parse_vmi``) retain per VM.

    Each object is decoded from its JSON inside the traced window and the raw dict dropped, as the
    informer does, so what remains is what the records keep (not the decoder's transient peak).
    """
    import gc
    import json
    import tracemalloc

    from agent.model import parse_vm, parse_vmi

    blobs = [json.dumps(o).encode() for o in (*vms, *vmis)]
    parsers = [parse_vm] * len(vms) + [parse_vmi] * len(vmis)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    kept = [parse(json.loads(blob)) for parse, blob in zip(parsers, blobs, strict=True)]
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del kept
    return retained / max(1, len(vms))


def infra_bytes_per_vm(pods: list[dict[str, Any]], nads: list[dict[str, Any]], n: int) -> float:
    """tracemalloc: bytes the preflight's caches (agent/infra.py) retain per VM — a parsed record, its
    cache key and resourceVersion per Pod and NAD, as the informer keeps them (a pod holding no extended
    resource shares one record)."""
    import gc
    import json
    import tracemalloc

    from agent.infra import parse_nad, parse_pod

    blobs = [(json.dumps(o).encode(), parse_pod) for o in pods] + [
        (json.dumps(o).encode(), parse_nad) for o in nads
    ]
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    cache: dict[tuple[str, str], Any] = {}
    rvs: dict[tuple[str, str], str] = {}
    for blob, parse in blobs:
        raw = json.loads(blob)
        key = (raw["metadata"]["namespace"], raw["metadata"]["name"])
        cache[key] = parse(raw)
        rvs[key] = raw["metadata"]["resourceVersion"]
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del cache, rvs
    return retained / max(1, n)


def list_peak_bytes_per_vm(vms: list[dict[str, Any]], vmis: list[dict[str, Any]]) -> float:
    """tracemalloc peak of decoding each whole list body at once and then parsing it (what an informer
    that collects every page before parsing holds at its high-water mark), per VM."""
    import gc
    import json
    import tracemalloc

    from agent.model import parse_vm, parse_vmi

    bodies = [json.dumps({"items": vms}).encode(), json.dumps({"items": vmis}).encode()]
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    kept: list[Any] = []
    for body, parse in zip(bodies, (parse_vm, parse_vmi), strict=True):
        doc = json.loads(body)
        kept.extend(parse(o) for o in doc["items"])
        del doc
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    del kept
    return peak / max(1, len(vms))


async def measure(n: int, events: int, rate: float, profile: Path | None = None) -> dict[str, Any]:
    cfg = ClusterConfig(
        nodes=10, history_size=max(100_000, 4 * n + 2 * events), seed=3, gc_freeze_seconds=GC_FREEZE_SECONDS
    )
    out: dict[str, Any] = {"vms": n}
    async with SimHarness(cfg) as h:
        h.record_requests = False
        t = time.perf_counter()
        keys = [(f"scale-{i % 50:02d}", f"vm-{i:05d}") for i in range(n)]
        if n:
            await h.seed([vm_manifest(ns, name, [("net-a", "bridge")]) for ns, name in keys])
        out["seed_seconds"] = time.perf_counter() - t
        if n:
            vms_raw, _ = h.store.list("virtualmachines")
            vmis_raw, _ = h.store.list("virtualmachineinstances")
            out["record_bytes_per_vm"] = record_bytes_per_vm(list(vms_raw), list(vmis_raw))
            out["list_peak_bytes_per_vm"] = list_peak_bytes_per_vm(list(vms_raw), list(vmis_raw))
            pods_raw, _ = h.store.list("pods")
            nads_raw, _ = h.store.list("network-attachment-definitions")
            out["infra_bytes_per_vm"] = infra_bytes_per_vm(list(pods_raw), list(nads_raw), n)
            out["json_bytes_per_vm"] = sum(
                len(json.dumps(o)) for o in (*vms_raw[:200], *vmis_raw[:200])
            ) / min(200, n)
        agent = h.agent(*FLAGS, command=profiled_command(profile))
        await agent.start()
        out["ready_seconds"] = await agent.wait_ready(300)
        await asyncio.sleep(2.0)
        out["rss_bytes"] = agent.rss_bytes()
        metrics = await agent.scrape()
        out["cache_synced_metric"] = metrics.get("hotplug_agent_cache_synced")
        c0 = agent.cpu_seconds()
        await asyncio.sleep(2.0)
        idle_rate = (agent.cpu_seconds() - c0) / 2.0
        out["idle_cpu_per_second"] = idle_rate
        if n and events:
            c1 = agent.cpu_seconds()
            t1 = time.perf_counter()
            sent, emit_seconds = await status_stream(h, keys, rate=rate, count=events)
            c2 = await settle_cpu(agent, idle_rate)
            elapsed = time.perf_counter() - t1
            out["events"] = sent
            out["emit_seconds"] = emit_seconds
            out["event_rate"] = sent / emit_seconds if emit_seconds else None
            busy = max(0.0, (c2 - c1) - idle_rate * elapsed)
            out["cpu_seconds_events"] = busy
            out["cpu_seconds_per_1000_events"] = busy / sent * 1000 if sent else None
            out["rss_after_events_bytes"] = agent.rss_bytes()
        out["invalid_objects"] = (await agent.scrape()).sum("hotplug_agent_invalid_objects_total")
        await agent.terminate()
        h.check()
    return out


async def run(args: Any) -> list[Figure]:
    sizes = [1000] if args.quick else [int(s) for s in args.sizes.split(",")]
    events = 500 if args.quick else args.events
    baseline = await measure(0, 0, args.rate)
    data: dict[str, Any] = {"baseline": baseline, "sizes": {}}
    figures = [
        Figure("idle agent RSS (empty cluster)", baseline["rss_bytes"] / 2**20, "MiB"),
        Figure("idle agent spawn → ready", baseline["ready_seconds"], "s", note="interpreter + imports"),
    ]
    for n in sizes:
        m = await measure(n, events, args.rate, args.profile if n == max(sizes) else None)
        data["sizes"][str(n)] = m
        per_vm = (m["rss_bytes"] - baseline["rss_bytes"]) / n / 1024
        target_size = n >= 10_000
        figures.append(
            Figure(
                f"{n:,} VMs: memory per VM above idle",
                per_vm,
                "KiB",
                "≤ 8 KiB at 10,000" if target_size else "",
                at_most(per_vm, 8.0) if target_size else None,
                f"RSS {m['rss_bytes'] / 2**20:.0f} MiB",
            )
        )
        figures.append(
            Figure(
                f"{n:,} VMs: spawn → caches synced",
                m["ready_seconds"],
                "s",
                "≤ 5 s at 10,000" if target_size else "",
                at_most(m["ready_seconds"], 5.0) if target_size else None,
                f"{m['ready_seconds'] - baseline['ready_seconds']:.2f} s above the idle start",
            )
        )
        figures.append(
            Figure(
                f"{n:,} VMs: parsed records per VM (tracemalloc)",
                m["record_bytes_per_vm"] / 1024,
                "KiB",
                note=f"VM+VMI JSON {m['json_bytes_per_vm'] / 1024:.1f} KiB",
            )
        )
        figures.append(
            Figure(
                f"{n:,} VMs: preflight caches per VM (Pods, NADs; tracemalloc)",
                m["infra_bytes_per_vm"] / 1024,
                "KiB",
                note="record + cache key + resourceVersion; included in the RSS figure",
            )
        )
        figures.append(
            Figure(
                f"{n:,} VMs: whole-list decode+parse peak per VM",
                m["list_peak_bytes_per_vm"] / 1024,
                "KiB",
                note="tracemalloc high-water mark",
            )
        )
        if m.get("cpu_seconds_per_1000_events") is not None:
            figures.append(
                Figure(
                    f"{n:,} VMs: CPU per 1,000 watch events",
                    m["cpu_seconds_per_1000_events"],
                    "s",
                    note=f"{m['events']} VMI updates at {m['event_rate']:.0f}/s",
                )
            )
    print_table("scale", figures)
    write_results("scale", data, figures)
    return figures


def main(argv: list[str] | None = None) -> int:
    p = base_parser("python -m bench.scale", __doc__ or "")
    p.add_argument("--sizes", default="1000,10000")
    p.add_argument("--events", type=int, default=5000, help="VMI updates emitted for the CPU figure")
    p.add_argument("--rate", type=float, default=1000.0, help="VMI updates per second")
    return run_cli(p, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
