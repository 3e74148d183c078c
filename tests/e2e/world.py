"""The e2e world: a simulated cluster and the real agent (``agent.app.run``) in one event loop.

Why in-process: the agent's composition is exercised exactly as ``hotplug-agent run`` builds it
(informers, controller, leader election, HTTP server) and talks to the simulated API server over HTTP,
while the test reads the cluster's own state synchronously (the API server's store and an event
observer that sees every stored mutation). Subprocess variants live in ``tests/chaos``.

Every wait polls the cluster with a deadline that is only a safety net: no test asserts on timings.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from prometheus_client import generate_latest

from agent import app
from agent.config import AgentConfig, validate
from agent.kubevirt import ANNOTATION_EVACUATION, ANNOTATION_WORKLOAD_UPDATE, VMIMS, VMIS, VMS, is_final
from agent.names import LABEL_MANAGED_BY, MANAGED_BY_VALUE
from metrics.definitions import HotplugMetrics
from simulator.cluster import ClusterConfig, SimulatedCluster
from simulator.manifests import plug_patch
from simulator.report import Recorder
from simulator.scenario import Request
from simulator.testing import Metrics, free_port, wait_until

NS = "e2e"
#: The usual test VM's secondary interface: one bridge NIC on ``net-a``.
NET_A = [("net-a", "bridge")]
#: Safety net for any single wait (never a timing assertion).
SAFETY = 60.0

#: Fast agent settings: KubeVirt's clock in the simulator runs in ~1 s migrations.
FAST: dict[str, Any] = {
    "mode": "auto",
    "settle_seconds": 0.2,
    "bridge_grace_seconds": 0.3,
    "backoff_initial_seconds": 0.2,
    "backoff_max_seconds": 0.5,
    "verify_timeout_seconds": 10.0,
    "migration_deadline_seconds": 60.0,
    "leader_elect": False,
    "shutdown_grace_seconds": 0.0,
    "log_level": "warning",
}


def cluster_config(**overrides: Any) -> ClusterConfig:
    """Short, fixed-length migrations unless a test says otherwise."""
    base: dict[str, Any] = {
        "nodes": 4,
        "migration_mean_seconds": 0.4,
        "migration_distribution": "fixed",
        "time_scale": 0.05,
    }
    base.update(overrides)
    return ClusterConfig(**base)


@dataclass
class VMIMSeen:
    """One VMIM as first stored, with its creator and the number of unfinished VMIMs at that moment."""

    namespace: str
    name: str
    vmi: str
    creator: str
    source_node: str
    unfinished_before: int


@dataclass
class Observer:
    """Event observer of the API server: VMIMs per VMI over the whole run and unfinished concurrency
    overall and per source node (the node of the VMI when its VMIM was created)."""

    store: Any
    created: list[VMIMSeen] = field(default_factory=list)
    unfinished: dict[tuple[str, str], tuple[tuple[str, str], str]] = field(default_factory=dict)
    max_unfinished: int = 0
    max_unfinished_per_vmi: int = 0
    max_unfinished_per_node: int = 0
    phases: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def observe(self, event_type: str, resource: str, obj: dict[str, Any], t: float) -> None:
        if resource != VMIMS:
            return
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        vmi_key = (key[0], str((obj.get("spec") or {}).get("vmiName", "")))
        phase = str((obj.get("status") or {}).get("phase", ""))
        if event_type == "ADDED":
            vmi = self.store.try_get(VMIS, *vmi_key) or {}
            node = str((vmi.get("status") or {}).get("nodeName", ""))
            self.created.append(
                VMIMSeen(key[0], key[1], vmi_key[1], creator_of(obj), node, len(self.unfinished))
            )
        seen = self.phases.setdefault(key, [])
        if phase and (not seen or seen[-1] != phase):
            seen.append(phase)
        if event_type == "DELETED" or is_final(phase):
            self.unfinished.pop(key, None)
            return
        if key not in self.unfinished:
            creation = next((c for c in reversed(self.created) if (c.namespace, c.name) == key), None)
            self.unfinished[key] = (vmi_key, creation.source_node if creation else "")
            per_vmi = Counter(v for v, _ in self.unfinished.values())
            per_node = Counter(n for _, n in self.unfinished.values())
            self.max_unfinished = max(self.max_unfinished, len(self.unfinished))
            self.max_unfinished_per_vmi = max(self.max_unfinished_per_vmi, *per_vmi.values())
            self.max_unfinished_per_node = max(self.max_unfinished_per_node, *per_node.values())

    def for_vmi(self, name: str, creator: str | None = None) -> list[VMIMSeen]:
        return [c for c in self.created if c.vmi == name and (creator is None or c.creator == creator)]

    def by_creator(self) -> Counter[str]:
        return Counter(c.creator for c in self.created)


def creator_of(vmim: Mapping[str, Any]) -> str:
    meta = vmim.get("metadata") or {}
    if (meta.get("labels") or {}).get(LABEL_MANAGED_BY) == MANAGED_BY_VALUE:
        return "agent"
    annotations = meta.get("annotations") or {}
    if ANNOTATION_WORKLOAD_UPDATE in annotations or ANNOTATION_EVACUATION in annotations:
        return "kubevirt"
    return "manual"


@dataclass
class RunningAgent:
    """``agent.app.run`` as a task with its own ``stop`` event and metrics registry."""

    config: AgentConfig
    metrics: HotplugMetrics
    stop: asyncio.Event
    task: asyncio.Task[int]
    port: int

    @property
    def identity(self) -> str:
        return self.config.identity

    def sample(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else float(value)

    def text(self) -> str:
        return generate_latest(self.metrics.registry).decode()

    def parsed(self) -> Metrics:
        return Metrics.parse(self.text())

    @property
    def leading(self) -> bool:
        return self.sample("hotplug_agent_leader") == 1.0

    @property
    def synced(self) -> bool:
        return self.sample("hotplug_agent_cache_synced") == 1.0

    def check(self) -> None:
        """Fail loudly if the agent ended on its own (it only ends when told to)."""
        if self.task.done():
            raise AssertionError(f"agent {self.identity} exited: {self.task.result()!r}")

    async def scrape(self) -> str:
        """The real ``/metrics`` body over HTTP (text format, as Prometheus 2 negotiates)."""
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(f"http://127.0.0.1:{self.port}/metrics", headers={"Accept": "text/plain"}) as r,
        ):
            assert r.status == 200, r.status
            return await r.text()

    async def shutdown(self) -> int:
        """Graceful: set ``stop`` (drain, release the Lease) and wait for the exit code."""
        self.stop.set()
        return await asyncio.wait_for(self.task, SAFETY)

    async def kill(self) -> None:
        """Abrupt: cancel the task mid-work (no drain, no Lease release), like a crash."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class World:
    """A started simulated cluster, its recorder (ground truth), an observer, and agents."""

    def __init__(self, cluster: SimulatedCluster) -> None:
        self.cluster = cluster
        self.store = cluster.server.store
        self.recorder = Recorder(self.store)
        self.observer = Observer(self.store)
        cluster.server.add_event_observer(self.recorder.observe)
        cluster.server.add_event_observer(self.observer.observe)
        self.agents: list[RunningAgent] = []
        self.plans: list[Any] = []

    # -- agents ------------------------------------------------------------------------------------

    async def start_agent(
        self, *, identity: str = "e2e", http: bool = False, wait: bool = True, **overrides: Any
    ) -> RunningAgent:
        """Run the real agent against this cluster; ``http=True`` binds /metrics on a known port."""
        port = free_port() if http else 0
        settings = {**FAST, **overrides}
        config = AgentConfig(
            kubeconfig=str(self.cluster.kubeconfig_path),
            listen_address=f"127.0.0.1:{port}",
            identity=identity,
            **settings,
        )
        validate(config)
        metrics = HotplugMetrics()
        stop = asyncio.Event()
        task = asyncio.create_task(
            app.run(config, stop, metrics=metrics, install_signals=False), name=f"agent-{identity}"
        )
        agent = RunningAgent(config, metrics, stop, task, port)
        self.agents.append(agent)
        if wait:

            def ready() -> bool:
                agent.check()
                return agent.synced

            await self.wait(ready, f"agent {identity} caches synced")
        return agent

    async def stop_agents(self) -> None:
        for agent in self.agents:
            if not agent.task.done():
                await agent.kill()

    # -- the user ----------------------------------------------------------------------------------

    async def seed(self, *vms: dict[str, Any]) -> None:
        await self.cluster.seed(list(vms))

    async def seed_scenario(self, scen: Any) -> list[Any]:
        """Seed the VMs of a :class:`~simulator.scenario.ScenarioConfig` (run it with ``run_scenario``)."""
        from simulator.scenario import build_plan, plan_networks

        self.plans = build_plan(scen)
        await self.cluster.seed([p.body for p in self.plans])
        await self.cluster.ensure_nads(plan_networks(self.plans))
        return self.plans

    async def plug(
        self, name: str, iface: str = "hp-bridge", binding: str = "bridge", ns: str = NS, *, nad: bool = True
    ) -> None:
        """The user's merge patch adding an interface to the VM template (recorded as a request); its
        NetworkAttachmentDefinition ``<ns>/<iface>`` is created first unless ``nad=False``."""
        if nad:
            await self.cluster.ensure_nads([((ns, iface), binding)])
        vm = self.store.get(VMS, ns, name)
        t = time.time()
        await self.store.patch(VMS, ns, name, plug_patch(vm, iface, binding))
        self.recorder.add_request(Request(ns, name, iface, "plug", binding, "plug", t))

    async def unplug(self, name: str, iface: str, ns: str = NS) -> None:
        """The user's merge patch setting ``state: absent`` on a template interface."""
        vm = self.store.get(VMS, ns, name)
        spec = vm["spec"]["template"]["spec"]
        ifaces = [
            {**i, "state": "absent"} if i["name"] == iface else i
            for i in spec["domain"]["devices"]["interfaces"]
        ]
        t = time.time()
        patch = {"spec": {"template": {"spec": {"domain": {"devices": {"interfaces": ifaces}}}}}}
        await self.store.patch(VMS, ns, name, patch)
        self.recorder.add_request(Request(ns, name, iface, "unplug", "bridge", "unplug", t))

    async def edit_template(
        self, name: str, ifaces: list[dict[str, Any]], nets: list[dict[str, Any]]
    ) -> None:
        patch = {
            "spec": {"template": {"spec": {"domain": {"devices": {"interfaces": ifaces}}, "networks": nets}}}
        }
        await self.store.patch(VMS, NS, name, patch)

    # -- reading the cluster -----------------------------------------------------------------------

    def vm(self, name: str, ns: str = NS) -> dict[str, Any] | None:
        return self.store.try_get(VMS, ns, name)

    def vmi(self, name: str, ns: str = NS) -> dict[str, Any] | None:
        return self.store.try_get(VMIS, ns, name)

    def vmims(self, vmi: str | None = None, ns: str = NS) -> list[dict[str, Any]]:
        items, _ = self.store.list(VMIMS, ns)
        return [m for m in items if vmi is None or m["spec"]["vmiName"] == vmi]

    def events(
        self, vm: str | None = None, *, reason: str | None = None, ns: str = NS
    ) -> list[dict[str, Any]]:
        """The agent's Events (``reportingComponent: hotplug-agent``) on VMs, oldest first."""
        items, _ = self.store.list("events", ns)
        out = [
            e
            for e in items
            if e.get("reportingComponent") == "hotplug-agent"
            and (e.get("involvedObject") or {}).get("kind") == "VirtualMachine"
            and (vm is None or e["involvedObject"]["name"] == vm)
            and (reason is None or e.get("reason") == reason)
        ]
        return sorted(out, key=lambda e: int(e["metadata"]["resourceVersion"]))

    def info_source(self, vmi: str, iface: str) -> str | None:
        obj = self.vmi(vmi) or {}
        for entry in (obj.get("status") or {}).get("interfaces") or []:
            if entry.get("name") == iface:
                return str(entry.get("infoSource", ""))
        return None

    def attached(self, vmi: str, iface: str) -> bool:
        source = self.info_source(vmi, iface)
        return source is not None and "domain" in [s.strip() for s in source.split(",")]

    def condition(self, obj: Mapping[str, Any] | None, ctype: str) -> dict[str, Any] | None:
        for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
            if cond.get("type") == ctype:
                return dict(cond)
        return None

    async def wait(self, predicate: Any, what: str, timeout: float = SAFETY) -> Any:  # noqa: ASYNC109
        """Poll ``predicate`` with a safety deadline; also fail at once if the cluster or an agent died."""

        def checked() -> Any:
            self.cluster.check()
            for agent in self.agents:
                if agent.task.done() and not agent.stop.is_set() and not agent.task.cancelled():
                    agent.check()
            return predicate()

        try:
            return await wait_until(checked, timeout, what, interval=0.05)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.describe()}") from None

    async def wait_event(self, vm: str, reason: str, timeout: float = SAFETY) -> dict[str, Any]:  # noqa: ASYNC109
        events: list[dict[str, Any]] = await self.wait(
            lambda: self.events(vm, reason=reason), f"Event {reason} on VM {vm}", timeout
        )
        return events[0]

    def describe(self) -> str:
        """What the cluster looked like (for failure messages)."""
        lines = [f"VMIMs: {[(c.vmi, c.name, c.creator) for c in self.observer.created]}"]
        lines += [
            f"event {e['involvedObject']['name']}: {e['reason']}: {e['message']}" for e in self.events()
        ]
        return "\n".join(lines)


@contextlib.asynccontextmanager
async def world(config: ClusterConfig | None = None) -> AsyncIterator[World]:
    cluster = SimulatedCluster(config or cluster_config())
    await cluster.start()
    w = World(cluster)
    try:
        yield w
    finally:
        # Bounded teardown: a wedged agent or cluster must fail the test, not eat the CI budget.
        try:
            await asyncio.wait_for(w.stop_agents(), SAFETY / 2)
        finally:
            await asyncio.wait_for(cluster.stop(), SAFETY / 2)


def agent_vmims(w: World, vmi: str) -> list[VMIMSeen]:
    return w.observer.for_vmi(vmi, "agent")


def reasons(events: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(e.get("reason")) for e in events]


__all__ = [
    "FAST",
    "NS",
    "SAFETY",
    "Observer",
    "RunningAgent",
    "World",
    "agent_vmims",
    "cluster_config",
    "creator_of",
    "reasons",
    "world",
]


# ----------------------------------------------------------------------------------------- scenario runs


async def run_scenario(w: World, scen: Any) -> Any:
    """The default scenario's user edits over HTTP (VMs seeded first), like ``hotplug-agent simulate``;
    returns the :class:`~simulator.scenario.ScenarioDriver` once every edit was sent."""
    from kubernetes_asyncio.client import CustomObjectsApi
    from kubernetes_asyncio.config import new_client_from_config

    from simulator.scenario import ScenarioDriver

    client = await new_client_from_config(config_file=str(w.cluster.kubeconfig_path))
    try:
        driver = ScenarioDriver(CustomObjectsApi(client), w.plans, scen, on_request=w.recorder.add_request)
        await driver.run()
    finally:
        await client.close()
    return driver


def resolved(w: World, driver: Any) -> bool:
    """As ``simulate`` ends a run: every accepted request completed or explained by an agent Event,
    and no migration unfinished."""
    accepted = sum(1 for r in driver.requests if r.accepted)
    return bool(w.recorder.resolved_count >= accepted and w.recorder.in_flight == 0)
