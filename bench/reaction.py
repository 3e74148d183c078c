"""Reaction: from the watch event that makes a VMI actionable to the agent's VMIM create request.

10,000 VMs with VMIs; the agent (subprocess) with settle windows at 0 (``--settle-seconds 0
--bridge-grace-seconds 0``); the simulator emits a steady stream of irrelevant VMI status updates
(1,000/s) and, among them, every ``--interval`` seconds, a user hot plugs an SR-IOV interface into one
*marker* VM (one per namespace ``react-NNN``, so each create request is attributed by its namespace).
The simulated VM controller propagates it to the VMI: that VMI event is the one that makes the VMI
actionable. Both timestamps are taken in this process on one clock: the API server's event observer
(``t_emitted``, when the mutation is stored and fanned out) and its request observer (``t_received``,
when the VMIM create request arrives). This process also generates the update stream and serves the
agent's watches, so its own event-loop delay (sampled every 5 ms while the markers run) is printed
beside: it is inside the reaction figure, on the event's way out and on the request's way in.

Beside this outside view, the agent's own figure: its ``/metrics`` scraped before the first marker and
after the last create, the increase of ``hotplug_agent_reaction_seconds`` between the two (from the
decoded watch event that made the VMI ready to the create request being sent, both ends in the agent
process), p50 and p99 estimated from its buckets as Prometheus's ``histogram_quantile`` does. It leaves
out the simulator's loop, the socket and the watch chunk's decoding, so outside minus agent-side is
roughly the harness's and the transport's share.

    python -m bench.reaction [--vms 10000 --rate 1000 --markers 200 --interval 0.1] [--quick]
    python -m bench.reaction --rates 250,500,1000,2000 [--vms 2000 --markers 100]

``--rates`` runs one marker phase per rate in one cluster and one agent process (the stream restarted
at each rate) and prints per rate the achieved rate, the agent's CPU share, both p99s and the loop lag:
where the outside p99 grows while the agent-side p99 stays flat, the simulator saturates first.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agent.kubevirt import VMIMS, VMIS
from bench.common import (
    GC_FREEZE_SECONDS,
    Figure,
    at_most,
    base_parser,
    histogram_buckets,
    histogram_quantile,
    percentile,
    print_table,
    run_cli,
    vfs_for,
    write_results,
)
from bench.scale import profiled_command
from bench.workload import status_stream
from metrics.definitions import REACTION
from simulator.apiserver import RequestRecord
from simulator.cluster import ClusterConfig
from simulator.manifests import vm_manifest
from simulator.testing import AgentProcess, SimHarness, agent_available, wait_until

MARKER_IFACE = "hp-sriov"
#: A histogram's cumulative buckets: (upper bound, count), ascending, the last one +Inf.
Buckets = list[tuple[float, float]]
FLAGS = [
    *("--settle-seconds", "0", "--bridge-grace-seconds", "0"),
    *("--creates-per-second", "1000", "--create-burst", "100"),
    *("--log-level", "warning", "--no-leader-elect"),
]


async def loop_lag(stop: asyncio.Event, period: float = 0.005) -> list[float]:
    """How late this event loop wakes a ``period`` sleep, sampled until ``stop``: its queueing delay."""
    lags: list[float] = []
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(period)
        lags.append(max(0.0, time.perf_counter() - t - period))
    return lags


async def reaction_buckets(agent: AgentProcess) -> Buckets:
    """The agent's ``hotplug_agent_reaction_seconds`` buckets, scraped from its ``/metrics`` now."""
    status, body = await agent.get("/metrics")
    if status != 200:
        raise RuntimeError(f"agent /metrics answered {status or 'nothing'}")
    return histogram_buckets(body, REACTION.name)


def increase(after: Buckets, before: Buckets) -> Buckets:
    """What a histogram's cumulative buckets counted between two scrapes of one process."""
    was = dict(before)
    return [(le, n - was.get(le, 0.0)) for le, n in after]


def agent_side(buckets: Buckets) -> dict[str, Any]:
    """Count, p50 and p99 (seconds, bucket estimates) of the agent's reactions, and the buckets."""
    return {
        "count": buckets[-1][1] if buckets else 0.0,
        "p50": histogram_quantile(0.5, buckets),
        "p99": histogram_quantile(0.99, buckets),
        "buckets": {f"{le:g}": n for le, n in buckets},  # "inf": the +Inf bucket
    }


class Stopwatch:
    """Event and request observers: when each marker VMI became actionable, when its create arrived."""

    def __init__(self) -> None:
        self.actionable: dict[str, float] = {}
        self.created: dict[str, float] = {}

    def on_event(self, event_type: str, resource: str, obj: dict[str, Any], t: float) -> None:
        if resource != VMIS:
            return
        ns = str((obj.get("metadata") or {}).get("namespace", ""))
        if not ns.startswith("react-") or ns in self.actionable:
            return
        ifaces = (((obj.get("spec") or {}).get("domain") or {}).get("devices") or {}).get("interfaces") or []
        if any(isinstance(i, dict) and i.get("name") == MARKER_IFACE for i in ifaces):
            self.actionable[ns] = t

    def on_request(self, rec: RequestRecord) -> None:
        if rec.verb == "create" and rec.resource == VMIMS and rec.namespace.startswith("react-"):
            self.created.setdefault(rec.namespace, rec.t_received)

    def latencies(self, namespaces: set[str]) -> list[float]:
        """Actionable → create received of the markers in ``namespaces``."""
        done = namespaces & self.created.keys()
        return [self.created[ns] - t for ns, t in self.actionable.items() if ns in done]


async def phase(
    h: SimHarness,
    agent: AgentProcess | None,
    watch: Stopwatch,
    keys: list[tuple[str, str]],
    marker_keys: list[tuple[str, str]],
    rate: float,
    interval: float,
) -> dict[str, Any]:
    """The update stream at ``rate``, and among it one hot plug every ``interval`` into each marker VM."""
    out: dict[str, Any] = {"rate": rate}
    names = {ns for ns, _ in marker_keys}
    stop = asyncio.Event()
    stream = asyncio.create_task(status_stream(h, keys, rate=rate, stop=stop))
    await asyncio.sleep(1.0)  # the stream is steady before the first marker
    before = await reaction_buckets(agent) if agent is not None else []
    cpu0 = agent.cpu_seconds() if agent is not None else 0.0
    lag_stop = asyncio.Event()
    lag = asyncio.create_task(loop_lag(lag_stop))
    t0 = time.perf_counter()
    for i, (ns, name) in enumerate(marker_keys):
        await asyncio.sleep(max(0.0, t0 + i * interval - time.perf_counter()))
        await h.plug(ns, name, MARKER_IFACE, "sriov")
    if agent is not None:
        try:
            await wait_until(lambda: names <= watch.created.keys(), 60, "a create per marker")
        except TimeoutError as exc:
            out["timeout"] = str(exc)
        out["agent_reaction_seconds"] = agent_side(increase(await reaction_buckets(agent), before))
        out["agent_cpu_share"] = (agent.cpu_seconds() - cpu0) / (time.perf_counter() - t0)
    else:
        await wait_until(lambda: names <= watch.actionable.keys(), 60, "marker VMIs actionable")
    lag_stop.set()
    lags = await lag
    stop.set()
    sent, seconds = await stream
    out["stream_events"] = sent
    out["stream_rate"] = sent / seconds if seconds else None
    out["actionable"] = len(names & watch.actionable.keys())
    out["created"] = len(names & watch.created.keys())
    out["latencies_seconds"] = sorted(watch.latencies(names))
    out["loop_lag_seconds"] = {
        "p50": percentile(lags, 50),
        "p99": percentile(lags, 99),
        "max": max(lags, default=None),
        "samples": len(lags),
    }
    return out


async def run(args: Any) -> list[Figure]:
    n = 1000 if args.quick else args.vms
    markers = 30 if args.quick else args.markers
    rates = [float(r) for r in args.rates.split(",")] if args.rates else [args.rate]
    cfg = ClusterConfig(
        nodes=10,
        history_size=max(200_000, 4 * n),
        migration_mean_seconds=0.5,
        migration_distribution="fixed",
        parallel_migrations_per_cluster=10_000,
        parallel_outbound_migrations_per_node=10_000,
        seed=5,
        gc_freeze_seconds=GC_FREEZE_SECONDS,
        # Each marker's migration keeps a VF of its target node: with the default 16 per node on 10
        # nodes, markers past the 160th wait for capacity (blocked, or held for tens of seconds), which
        # is not reaction. As many per node as there are markers.
        sriov_resources=vfs_for(markers * len(rates)),
    )
    data: dict[str, Any] = {"vms": n, "markers": markers, "interval": args.interval}
    phases: list[dict[str, Any]] = []
    watch = Stopwatch()
    async with SimHarness(cfg) as h:
        h.record_requests = False
        keys = [(f"scale-{i % 50:02d}", f"vm-{i:05d}") for i in range(n)]
        # One marker VM per namespace and phase (a VM's hot plug makes it actionable once).
        marker_keys = [(f"react-{i:03d}", "marker") for i in range(markers * len(rates))]
        await h.seed([vm_manifest(ns, name, [("net-a", "bridge")]) for ns, name in keys + marker_keys])
        import gc

        gc.collect()
        gc.freeze()
        h.server.add_event_observer(watch.on_event)
        h.server.add_request_observer(watch.on_request)
        have_agent = agent_available()
        agent = None
        if have_agent:
            agent = h.agent(*FLAGS, command=profiled_command(args.profile))
            await agent.start()
            data["ready_seconds"] = await agent.wait_ready(300)
            await asyncio.sleep(1.0)
        for k, rate in enumerate(rates):
            mine = marker_keys[k * markers : (k + 1) * markers]
            phases.append(await phase(h, agent, watch, keys, mine, rate, args.interval))
        if agent is not None:
            data["agent_cpu_seconds"] = agent.cpu_seconds()
            await agent.terminate()
        h.check()
    if args.rates:
        data["rates"] = phases
        figures = [
            f
            for ph in phases
            for f in phase_figures(ph, n, markers, have_agent, prefix=f"{ph['rate']:,.0f}/s: ", brief=True)
        ]
    else:
        data.update(phases[0])
        figures = phase_figures(phases[0], n, markers, have_agent)
    print_table("reaction", figures)
    write_results("reaction", data, figures)
    return figures


def phase_figures(
    ph: dict[str, Any], n: int, markers: int, have_agent: bool, *, prefix: str = "", brief: bool = False
) -> list[Figure]:
    """A phase's rows: the stream achieved, the outside view, the agent side, the simulator's loop lag;
    ``brief``: only the p99s."""
    judged = n >= 10_000 and ph["rate"] == 1000
    cpu = ph.get("agent_cpu_share")
    figures = [
        Figure(
            prefix + "VMI update stream",
            ph["stream_rate"],
            "events/s",
            note=f"{n:,} VMs, {ph['stream_events']} events"
            + (f"; agent CPU {cpu:.0%} of the marker phase" if cpu is not None else ""),
        )
    ]
    lat = ph["latencies_seconds"]
    if not lat:
        figures.append(
            Figure(prefix + "reaction p99", None, note="none" if have_agent else "agent not available")
        )
    else:
        p50, p99 = percentile(lat, 50), percentile(lat, 99)
        if not brief:
            figures.append(
                Figure(
                    prefix + "reaction p50",
                    p50 * 1000 if p50 is not None else None,
                    "ms",
                    note="outside view: simulator event out → create request in",
                )
            )
        figures.append(
            Figure(
                prefix + "reaction p99",
                p99 * 1000 if p99 is not None else None,
                "ms",
                "≤ 50 ms at 10,000 VMs, 1,000 events/s",
                at_most(p99 * 1000, 50.0) if p99 is not None and judged else None,
                note="outside view" if brief else "",
            )
        )
        if not brief:
            top = Figure(prefix + "reaction max", max(lat) * 1000, "ms", note=f"{len(lat)}/{markers} markers")
            figures.append(top)
    figures += agent_figures(
        ph.get("agent_reaction_seconds"), markers, judged=judged, prefix=prefix, brief=brief
    )
    ll = ph["loop_lag_seconds"]
    if ll["p99"] is not None:
        figures.append(
            Figure(
                prefix + "simulator event-loop lag p99",
                ll["p99"] * 1000,
                "ms",
                note=f"p50 {ll['p50'] * 1000:.1f} max {ll['max'] * 1000:.1f} ms; inside the reaction "
                "figure (event out, request in)",
            )
        )
    return figures


def agent_figures(
    side: dict[str, Any] | None, markers: int, *, judged: bool, prefix: str = "", brief: bool = False
) -> list[Figure]:
    """The agent-side p50 and p99 rows (n/a without an agent or without observations)."""
    if side is None:
        return [Figure(prefix + "agent-side reaction p99", None, note="agent not available")]
    p50, p99 = side["p50"], side["p99"]
    top = max((float(le) for le in side["buckets"] if le != "inf"), default=0.0)
    beyond = p99 is not None and p99 >= top
    p50_row = [
        Figure(
            prefix + "agent-side reaction p50",
            p50 * 1000 if p50 is not None else None,
            "ms",
            note=f"{side['count']:.0f} observations for {markers} markers; in the agent: event decoded "
            "→ create sent",
        ),
    ]
    return ([] if brief else p50_row) + [
        Figure(
            prefix + "agent-side reaction p99",
            p99 * 1000 if p99 is not None else None,
            "ms",
            "≤ 5 ms at 10,000 VMs, 1,000 events/s",
            at_most(p99 * 1000, 5.0) if p99 is not None and judged else None,
            note="above the largest bucket: at least this" if beyond else "estimated from the buckets",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    p = base_parser("python -m bench.reaction", __doc__ or "")
    p.add_argument("--vms", type=int, default=10_000)
    p.add_argument("--rate", type=float, default=1000.0, help="irrelevant VMI updates per second")
    p.add_argument("--markers", type=int, default=200, help="hot plugs that make a VMI actionable")
    p.add_argument("--interval", type=float, default=0.1, help="seconds between marker hot plugs")
    p.add_argument(
        "--rates",
        default="",
        help="comma-separated update rates (e.g. 250,500,1000,2000): one marker phase per rate, "
        "--markers each, the p99s per rate (the saturation point); replaces --rate",
    )
    return run_cli(p, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
