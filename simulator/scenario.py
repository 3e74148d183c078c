"""The scenario driver: hot plugs and unplugs the way a user does, by editing VirtualMachines.

Why through the VM: that is the only hot-plug API KubeVirt has (since v1.1): a merge patch of
``spec.template.spec.domain.devices.interfaces`` and ``spec.template.spec.networks``; unplug = set the
interface's ``state: absent``. Everything else (propagation, migration, attach) is the cluster's and the
agent's job; the report judges the outcome from the cluster's own state.

The default scenario (~200 VMs in a few namespaces, deterministic from a seed) mixes categories, each
exercising one rule: bridge plugs, SR-IOV plugs, bridge unplugs, SR-IOV unplug attempts (rejected by
admission: recorded as blocked at the user level), non-migratable VMs (one per ``LiveMigratable`` reason
the simulator models), slot-exhausted VMs (*predictable*: booted with 4 interfaces on the v1 topology,
then plugged; *observed only*: hot-plugged disks took the free ports), opted-out VMs (label
``hotplug-agent.io/auto-migrate: "false"``), RestartRequired VMs (an interface removed instead of set
absent, plus a plug), a plug whose NetworkAttachmentDefinition was never created (``missing-nad``), an
SR-IOV plug on a device resource no node has a free VF of (``sriov-exhausted``), and idle VMs. The
networks the plugs name are created before the edits (:func:`plan_networks`), as an admin provides them,
except the ``missing-nad`` one.

Manual mode (no agent): :class:`ManualOperator` migrates each VM it edited like ``virtctl migrate``
(VMIM ``generateName: kubevirt-migrate-vm-``) once the request reached the VMI, retrying failures and
``in-flight`` rejections, giving up on ``Cannot migrate VMI``, skipping opted-out and RestartRequired VMs.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from kubernetes_asyncio.client import CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from agent.aio import wait_event
from agent.kubevirt import VIRTCTL_MIGRATE_PREFIX
from agent.names import LABEL_AUTO_MIGRATE, OPT_OUT_VALUE
from simulator.kubevirt import pci, rules
from simulator.kubevirt.pods import (
    NAD_GROUP,
    NAD_VERSION,
    NADS,
    SCARCE_PREFIX,
    nad_body,
    network_resource,
    networks_of,
)
from simulator.kubevirt.rules import ALLOW_POD_BRIDGE_ANNOTATION
from simulator.manifests import hotplug_volumes, nad_name, vm_manifest
from simulator.mix import DEFAULT_MIX

log = structlog.get_logger("simulator.scenario")

Op = Literal["plug", "unplug"]
G, V = "kubevirt.io", "v1"
MERGE = "application/merge-patch+json"
MERGE_KW: dict[str, Any] = {"_content_type": MERGE}


@dataclass
class ScenarioConfig:
    vms: int = 200
    namespaces: tuple[str, ...] = ("team-a", "team-b", "team-c", "team-d")
    seed: int = 0
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    #: User edits are spread over this many seconds.
    request_window_seconds: float = 2.0
    kubevirt_version: str = "v1.5.2"


@dataclass
class Action:
    op: Op
    interface: str
    binding: str


@dataclass
class VMPlan:
    namespace: str
    name: str
    category: str
    body: dict[str, Any]
    actions: list[Action]
    remove: list[str] = field(default_factory=list)


@dataclass
class Request:
    """One user hot-plug/unplug request, as issued."""

    namespace: str
    vm: str
    interface: str
    op: Op
    binding: str
    category: str
    t_requested: float
    accepted: bool = True
    rejection: str = ""


def _free_ports(body: dict[str, Any], version: str) -> int:
    spec = body["spec"]["template"]["spec"]
    free, _ = pci.free_ports_for_new_domain(
        spec, body["spec"]["template"]["metadata"].get("annotations") or {}, version
    )
    return free


_A = [("net-a", "bridge")]
_AB = [("net-a", "bridge"), ("net-b", "bridge")]
_PLUG_BRIDGE: tuple[Op, str, str] = ("plug", "hp-bridge", "bridge")
#: Category → (secondary interfaces, other ``vm_manifest`` arguments, the user's actions, interfaces the
#: user removes instead of setting them absent). ``not-migratable-disk`` and ``slots-observed`` depend on
#: the VM's name and KubeVirt version: :func:`_category_vm`.
#: The network the ``missing-nad`` category plugs: its NetworkAttachmentDefinition is never created.
MISSING_NETWORK = "hp-unprovisioned"
_CATEGORIES: dict[str, tuple[list[tuple[str, str]], dict[str, Any], list[tuple[Op, str, str]], list[str]]] = {
    "bridge-plug": (_A, {}, [_PLUG_BRIDGE], []),
    "sriov-plug": (_A, {}, [("plug", "hp-sriov", "sriov")], []),
    "bridge-unplug": (_AB, {}, [("unplug", "net-b", "bridge")], []),
    "sriov-unplug": ([("sriov-a", "sriov")], {}, [("unplug", "sriov-a", "sriov")], []),
    "not-migratable-interface": (_A, {"pod_binding": "bridge"}, [_PLUG_BRIDGE], []),
    "not-migratable-hostdevice": (_A, {"host_devices": True}, [_PLUG_BRIDGE], []),
    "slots-predictable": ([*_AB, ("net-c", "bridge")], {}, [_PLUG_BRIDGE], []),
    "opted-out": (_A, {"labels": {LABEL_AUTO_MIGRATE: OPT_OUT_VALUE}}, [_PLUG_BRIDGE], []),
    "restart-required": (_AB, {}, [_PLUG_BRIDGE], ["net-b"]),
    # a NetworkAttachmentDefinition the user never created (see MISSING_NETWORK)
    "missing-nad": (_A, {}, [("plug", MISSING_NETWORK, "bridge")], []),
    # an SR-IOV resource whose VFs are all taken (see simulator.kubevirt.pods.SCARCE_PREFIX)
    "sriov-exhausted": ([(f"{SCARCE_PREFIX}a", "sriov")], {}, [("plug", f"{SCARCE_PREFIX}b", "sriov")], []),
}


def _category_vm(cat: str, ns: str, name: str, version: str) -> VMPlan:
    """The VM of category ``cat`` and what its user does to it."""
    if cat == "not-migratable-disk":
        vol = {"name": "data", "persistentVolumeClaim": {"claimName": f"{name}-data-rwo"}}
        return VMPlan(ns, name, cat, vm_manifest(ns, name, _A, volumes=[vol]), [Action(*_PLUG_BRIDGE)])
    if cat == "slots-observed":
        # As many hot-plugged disks as the new domain has free ports: the NIC then finds none.
        n_hot = _free_ports(vm_manifest(ns, name, _A), version)
        body = vm_manifest(ns, name, _A, volumes=hotplug_volumes(name, n_hot))
        return VMPlan(ns, name, cat, body, [Action(*_PLUG_BRIDGE)])
    secondary, kwargs, actions, remove = _CATEGORIES.get(cat, (_A, {}, [], []))
    body = vm_manifest(ns, name, secondary, **kwargs)
    return VMPlan(ns, name, cat, body, [Action(*a) for a in actions], list(remove))


def build_plan(cfg: ScenarioConfig) -> list[VMPlan]:
    """Deterministic VMs and their user actions for ``cfg.seed``."""
    rng = random.Random(cfg.seed)
    cats = list(cfg.mix)
    weights = [cfg.mix[c] for c in cats]
    # Guarantee at least one VM per category when there is room, then draw the rest.
    chosen = cats[: min(len(cats), cfg.vms)] + rng.choices(cats, weights, k=max(0, cfg.vms - len(cats)))
    rng.shuffle(chosen)
    return [
        _category_vm(cat, cfg.namespaces[i % len(cfg.namespaces)], f"vm-{i:05d}", cfg.kubevirt_version)
        for i, cat in enumerate(chosen)
    ]


def plan_networks(plans: list[VMPlan]) -> list[tuple[tuple[str, str], str]]:
    """The NADs ``((namespace, name), binding)`` the VMs' templates and the plans' plugs name, as an
    admin creates them before users plug (the ``missing-nad`` category's plug excepted: that is the
    point of it). The embedded cluster's seeding creates the templates' ones too; another API server
    (the real tiers) gets them here."""
    out: dict[tuple[str, str], str] = {}
    for plan in plans:
        for key, binding in networks_of(plan.body["spec"]["template"]["spec"], plan.namespace):
            out.setdefault(key, binding)
        for a in plan.actions:
            if a.op == "plug" and a.interface != MISSING_NETWORK:
                out.setdefault((plan.namespace, a.interface), a.binding)
    return list(out.items())


def edit_body(current: dict[str, Any], plan: VMPlan) -> dict[str, Any]:
    """The user's merge patch: the template's interfaces and networks with the plan's actions applied."""
    spec = current["spec"]["template"]["spec"]
    ifaces = [
        copy.deepcopy(i) for i in spec["domain"]["devices"]["interfaces"] if i["name"] not in plan.remove
    ]
    nets = [copy.deepcopy(n) for n in spec["networks"] if n["name"] not in plan.remove]
    for action in plan.actions:
        if action.op == "plug":
            ifaces.append({"name": action.interface, action.binding: {}})
            multus = {"networkName": nad_name(plan.namespace, action.interface)}
            nets.append({"name": action.interface, "multus": multus})
        else:
            for iface in ifaces:
                if iface["name"] == action.interface:
                    iface["state"] = "absent"
    return {"spec": {"template": {"spec": {"domain": {"devices": {"interfaces": ifaces}}, "networks": nets}}}}


class ScenarioDriver:
    """Issues the plan's edits over the API, spread over the request window, and records the requests."""

    def __init__(
        self,
        api: CustomObjectsApi,
        plans: list[VMPlan],
        cfg: ScenarioConfig,
        on_request: Callable[[Request], None] | None = None,
    ) -> None:
        self.api = api
        self.plans = plans
        self.cfg = cfg
        self.requests: list[Request] = []
        self.edited: list[VMPlan] = []
        self._on_request = on_request
        self.done = asyncio.Event()

    async def create_networks(self) -> None:
        """The NADs the plans' plugs name (:func:`plan_networks`), over the API; existing ones are kept."""
        for (ns, name), binding in plan_networks(self.plans):
            body = nad_body(ns, name, network_resource(name, binding))
            for _ in range(20):
                try:
                    await self.api.create_namespaced_custom_object(NAD_GROUP, NAD_VERSION, ns, NADS, body)
                except ApiException as exc:
                    if exc.status == 429 or exc.status >= 500:  # an admin retries, as for the edits
                        await asyncio.sleep(0.05)
                        continue
                    if exc.status != 409:
                        raise
                break

    async def run(self) -> None:
        await self.create_networks()
        rng = random.Random(self.cfg.seed + 7)
        actionable = [p for p in self.plans if p.actions or p.remove]
        schedule = sorted(
            (rng.uniform(0, self.cfg.request_window_seconds), i) for i in range(len(actionable))
        )
        start = time.monotonic()
        sem = asyncio.Semaphore(32)

        async def one(at: float, plan: VMPlan) -> None:
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            async with sem:
                await self._edit(plan)

        async with asyncio.TaskGroup() as tg:
            for at, i in schedule:
                tg.create_task(one(at, actionable[i]))
        self.done.set()

    async def _edit(self, plan: VMPlan) -> None:
        for _ in range(20):
            try:
                current = await self.api.get_namespaced_custom_object(
                    G, V, plan.namespace, "virtualmachines", plan.name
                )
            except ApiException as exc:
                if exc.status == 429 or exc.status >= 500:
                    await asyncio.sleep(0.05)
                    continue
                raise
            body = edit_body(current, plan)
            body["metadata"] = {"resourceVersion": current["metadata"]["resourceVersion"]}
            t = time.time()
            try:
                await self.api.patch_namespaced_custom_object(
                    G, V, plan.namespace, "virtualmachines", plan.name, body, **MERGE_KW
                )
            except ApiException as exc:
                if exc.status in (409, 429) or exc.status >= 500:
                    await asyncio.sleep(0.05)
                    continue
                message = _message(exc)
                for a in plan.actions:
                    self._record(
                        Request(
                            plan.namespace,
                            plan.name,
                            a.interface,
                            a.op,
                            a.binding,
                            plan.category,
                            t,
                            accepted=False,
                            rejection=message,
                        )
                    )
                return
            self.edited.append(plan)
            for a in plan.actions:
                self._record(
                    Request(plan.namespace, plan.name, a.interface, a.op, a.binding, plan.category, t)
                )
            return

    def _record(self, req: Request) -> None:
        self.requests.append(req)
        if self._on_request is not None:
            self._on_request(req)


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or b"{}").get("message", ""))
    except (ValueError, TypeError, AttributeError):
        return str(exc.reason)


class ManualOperator:
    """A person following the documented workflow: edit, ``virtctl migrate``, watch, retry on failure;
    a migration still unfinished after ``stuck_seconds`` is cancelled (deleted) and counts as a failed
    attempt (a Pending one waiting for a NetworkAttachmentDefinition would wait forever)."""

    def __init__(
        self,
        api: CustomObjectsApi,
        driver: ScenarioDriver,
        *,
        max_attempts: int = 3,
        poll: float = 0.2,
        stuck_seconds: float = 5.0,
    ):
        self.api = api
        self.driver = driver
        self.max_attempts = max_attempts
        self.poll = poll
        self.stuck_seconds = stuck_seconds
        self.attempts: dict[tuple[str, str], int] = {}
        self.given_up: dict[tuple[str, str], str] = {}
        self.active: dict[tuple[str, str], str] = {}
        self._since: dict[tuple[str, str], float] = {}

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._round()
            except ApiException as exc:  # a user retries on API errors
                log.info("manual operator: API error, retrying", status=exc.status)
            await wait_event(stop, self.poll)

    async def _round(self) -> None:
        for plan in list(self.driver.edited):
            key = (plan.namespace, plan.name)
            if key in self.given_up or plan.category in ("opted-out", "restart-required"):
                continue
            if key in self.active:
                vmim = await self._get("virtualmachineinstancemigrations", plan.namespace, self.active[key])
                phase = ((vmim or {}).get("status") or {}).get("phase", "")
                if vmim is not None and phase not in ("Succeeded", "Failed"):
                    if time.monotonic() - self._since.get(key, time.monotonic()) > self.stuck_seconds:
                        await self.api.delete_namespaced_custom_object(
                            G, V, plan.namespace, "virtualmachineinstancemigrations", self.active[key]
                        )
                    continue
                del self.active[key]
            vmi = await self._get("virtualmachineinstances", plan.namespace, plan.name)
            if vmi is None or not _needs_migration(vmi, plan):
                continue
            n = self.attempts.get(key, 0)
            if n >= self.max_attempts:
                self.given_up[key] = "max attempts"
                continue
            body = {
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachineInstanceMigration",
                "metadata": {"generateName": VIRTCTL_MIGRATE_PREFIX},
                "spec": {"vmiName": plan.name},
            }
            try:
                out = await self.api.create_namespaced_custom_object(
                    G, V, plan.namespace, "virtualmachineinstancemigrations", body
                )
            except ApiException as exc:
                msg = _message(exc)
                if "Cannot migrate VMI" in msg:
                    self.given_up[key] = msg
                continue
            self.attempts[key] = n + 1
            self.active[key] = out["metadata"]["name"]
            self._since[key] = time.monotonic()

    async def _get(self, plural: str, ns: str, name: str) -> dict[str, Any] | None:
        try:
            out: dict[str, Any] = await self.api.get_namespaced_custom_object(G, V, ns, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return out


def _needs_migration(vmi: dict[str, Any], plan: VMPlan) -> bool:
    """KubeVirt's evaluator says so (a plug without status entry, an unplug in the pod only)."""
    spec = vmi.get("spec") or {}
    names = {str(i.get("name")) for i in rules.interfaces(spec)}
    if any(a.op == "plug" and a.interface not in names for a in plan.actions):
        return False  # not propagated yet
    return rules.migration_urgency(spec, vmi.get("status") or {}) is not None


__all__ = [
    "ALLOW_POD_BRIDGE_ANNOTATION",
    "DEFAULT_MIX",
    "Action",
    "ManualOperator",
    "Request",
    "ScenarioConfig",
    "ScenarioDriver",
    "VMPlan",
    "build_plan",
    "edit_body",
    "plan_networks",
]
