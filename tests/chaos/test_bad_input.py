"""Bad input: hypothesis-generated malformed VM/VMI/VMIM objects created into a running agent's cluster.

Shapes: missing fields, wrong types, unknown bindings, interfaces without networks, huge names and
values, duplicates, garbage timestamps and conditions. They are created through the embedded API
server's in-process store without admission (the embedded server validates little beyond ObjectMeta;
what it refuses, a real API server refuses too, and is skipped). The agent must never crash (the
process stays up, ``/livez`` 200), must count what it cannot parse
(``hotplug_agent_invalid_objects_total``), and must keep serving the valid VMs: a valid hot plug made
after the garbage still completes (judged by the simulator's report).
"""

from __future__ import annotations

import asyncio
import copy
import os
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from agent.kubevirt import VMIMS, VMIS, VMS
from simulator.apiserver import ApiError
from simulator.manifests import vm_manifest
from simulator.testing import SimHarness, check_invariants, wait_until
from tests.chaos.scenario import FAST_AGENT, cluster_config

LONG = os.environ.get("HOTPLUG_CHAOS_LONG") == "1"
NS = "garbage"

# ------------------------------------------------------------------------------------ strategies

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
names = st.from_regex(r"\A[a-z][a-z0-9-]{0,40}[a-z0-9]\Z")
huge_name = st.integers(min_value=200, max_value=253).map(lambda n: ("x" * n)[:n])
garbage_ts = st.sampled_from(["yesterday", "", "2026-13-45T99:99:99Z", "0", "2026-11-28T10:00:00+25:00"])
bindings = st.sampled_from(["bridge", "sriov", "masquerade", "macvtap", "passt", "slirp", "unknownBinding"])


def _vmi_from(vm: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(vm["spec"]["template"]["spec"])
    meta = vm["metadata"]
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": spec,
        "status": {
            "phase": "Running",
            "nodeName": "node-1",
            "conditions": [{"type": "LiveMigratable", "status": "True"}],
            "interfaces": [{"name": "default", "infoSource": "domain, guest-agent"}],
        },
    }


def _vmim_for(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstanceMigration",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"vmiName": name},
        "status": {"phase": "Running", "phaseTransitionTimestamps": []},
    }


#: (path into the object, what to do there)
MUTATION_PATHS: dict[str, list[tuple[str, ...]]] = {
    VMS: [
        ("spec",),
        ("spec", "template"),
        ("spec", "template", "spec"),
        ("spec", "template", "spec", "domain"),
        ("spec", "template", "spec", "domain", "devices"),
        ("spec", "template", "spec", "domain", "devices", "interfaces"),
        ("spec", "template", "spec", "networks"),
        ("spec", "runStrategy"),
        ("metadata", "labels"),
        ("status",),
    ],
    VMIS: [
        ("spec",),
        ("spec", "domain", "devices", "interfaces"),
        ("spec", "networks"),
        ("status",),
        ("status", "interfaces"),
        ("status", "conditions"),
        ("status", "nodeName"),
        ("status", "phase"),
        ("metadata", "annotations"),
    ],
    VMIMS: [
        ("spec",),
        ("spec", "vmiName"),
        ("status",),
        ("status", "phase"),
        ("status", "phaseTransitionTimestamps"),
        ("status", "migrationState"),
    ],
}


def _set(obj: dict[str, Any], path: tuple[str, ...], value: Any, *, delete: bool = False) -> None:
    cur: Any = obj
    for part in path[:-1]:
        if not isinstance(cur, dict):
            return
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[part] = nxt
        cur = nxt
    if isinstance(cur, dict):
        if delete:
            cur.pop(path[-1], None)
        else:
            cur[path[-1]] = value


@st.composite
def malformed(draw: st.DrawFn, index: int = 0) -> tuple[str, dict[str, Any]]:
    """One malformed object of a random kind, with one to three mutations."""
    resource = draw(st.sampled_from([VMS, VMIS, VMIMS]))
    name = draw(st.one_of(names, huge_name)) + f"-{index}"
    name = name[-253:].lstrip("-") or f"g-{index}"
    vm = vm_manifest(NS, name, [("net-a", draw(bindings))])
    obj = {VMS: vm, VMIS: _vmi_from(vm), VMIMS: _vmim_for(name)}[resource]
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        kind = draw(
            st.sampled_from(
                ["delete", "wrong-type", "unbacked-iface", "duplicate", "huge-value", "bad-timestamp"]
            )
        )
        path = draw(st.sampled_from(MUTATION_PATHS[resource]))
        if kind == "delete":
            _set(obj, path, None, delete=True)
        elif kind == "wrong-type":
            _set(obj, path, draw(junk))
        elif kind == "unbacked-iface":
            iface = {"name": draw(st.text(min_size=1, max_size=30)), draw(bindings): {}}
            # Earlier mutations may have turned any of these into junk: follow objects only.
            spec = obj.get("spec")
            if resource == VMS:
                template = spec.get("template") if isinstance(spec, dict) else None
                spec = template.get("spec") if isinstance(template, dict) else None
            domain = spec.get("domain") if isinstance(spec, dict) else None
            devices = domain.get("devices") if isinstance(domain, dict) else None
            if isinstance(devices, dict) and isinstance(devices.get("interfaces"), list):
                devices["interfaces"].append(iface)
        elif kind == "duplicate":
            target: Any = obj
            for part in path:
                target = target.get(part) if isinstance(target, dict) else None
            if isinstance(target, list) and target:
                target.extend(copy.deepcopy(target))
            elif resource != VMIMS:
                st_ifaces = [{"name": "net-a", "infoSource": "multus-status"}] * 2
                _set(obj, ("status", "interfaces"), st_ifaces)
        elif kind == "huge-value":
            _set(obj, path, "y" * draw(st.integers(min_value=1000, max_value=100_000)))
        else:
            if resource == VMIMS:
                stamps = [{"phase": "Running", "phaseTransitionTimestamp": draw(garbage_ts)}]
                _set(obj, ("status", "phaseTransitionTimestamps"), stamps)
            else:
                cond = {"type": "LiveMigratable", "status": "True", "lastTransitionTime": draw(garbage_ts)}
                _set(obj, ("status", "conditions"), [cond, {"status": 3}])
    return resource, obj


def sure_invalid() -> list[tuple[str, dict[str, Any]]]:
    """One object per kind that no parser can accept (spec is a list), so each counter must move."""
    out: list[tuple[str, dict[str, Any]]] = []
    for resource, kind in ((VMS, "VirtualMachine"), (VMIS, "VirtualMachineInstance")):
        out.append(
            (
                resource,
                {
                    "apiVersion": "kubevirt.io/v1",
                    "kind": kind,
                    "metadata": {"name": f"sure-{kind.lower()}", "namespace": NS},
                    "spec": ["not", "a", "spec"],
                },
            )
        )
    return out


# ------------------------------------------------------------------------------------ the run


async def _garbage_run(batch: list[tuple[str, dict[str, Any]]]) -> None:
    async with SimHarness(cluster_config(migration_mean_seconds=0.3)) as h:
        await h.seed([vm_manifest("valid", f"vm-{i}", [("net-a", "bridge")]) for i in range(4)])
        await h.cluster.ensure_namespaces([NS])
        h.shield_simulator(NS)
        # Garbage VMIMs in a non-final phase count as others' migrations against the agent's caps, and
        # nothing finishes them (the simulator ignores their namespace): caps high, so the simulated
        # KubeVirt's own limits (5 / 2) are the ones that apply to the valid hot plug.
        caps = ("--max-in-flight", "1000", "--max-per-node", "1000")
        agent = h.agent(*FAST_AGENT, *caps, identity="bad-input", leader_elect=False)
        await agent.start()
        await agent.wait_ready(120)
        created = {VMS: 0, VMIS: 0, VMIMS: 0}
        for resource, obj in [*sure_invalid(), *batch]:
            try:
                await h.store.create(resource, obj, admission=False)
            except ApiError:
                continue  # the API server refused it (invalid name, duplicate): never reaches a watcher
            created[resource] += 1
        # A valid hot plug after the garbage still completes.
        await h.plug("valid", "vm-1", "hp-sriov", "sriov")
        try:
            await wait_until(lambda: h.recorder.completed_count >= 1, 120, "the valid hot plug")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{agent.log_tail(40)}") from None
        assert agent.alive, agent.log_tail(40)
        status, _ = await agent.get("/livez")
        assert status == 200
        metrics = await agent.scrape()
        invalid = metrics.by_label("hotplug_agent_invalid_objects_total", "resource")
        assert invalid.get(VMS, 0) >= 1, invalid
        assert invalid.get(VMIS, 0) >= 1, invalid
        report = h.report()
        assert not check_invariants(report, agent_only=True)
        await agent.terminate()
        assert agent.returncode() == 0, agent.log_tail(40)


@st.composite
def batches(draw: st.DrawFn) -> list[tuple[str, dict[str, Any]]]:
    n = draw(st.integers(min_value=20, max_value=40))
    return [draw(malformed(index=i)) for i in range(n)]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@settings(
    max_examples=12 if LONG else 3,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(batch=batches())
def test_malformed_objects_never_crash_the_agent(batch: list[tuple[str, dict[str, Any]]]) -> None:
    asyncio.run(_garbage_run(batch))
