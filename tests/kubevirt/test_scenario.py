"""A burst of hot plugs of every kind the real tier can host, with the agent, on real KubeVirt under
tight migration limits; judged by the ground-truth recorder fed from the API server's watches."""

from __future__ import annotations

import asyncio

import pytest

from agent.kubevirt import VMS
from simulator.real.kubevirt import KubeVirtSettings
from simulator.scenario import ScenarioConfig, ScenarioDriver, build_plan
from simulator.watch_recorder import WatchRecorder
from tests.kubevirt.helpers import Env, wait_for

pytestmark = pytest.mark.kubevirt

#: The scenario's categories that need nothing the tier lacks (host devices need a device plugin and
#: KubeVirt's permittedHostDevices, RWO disks and hot-plugged volumes need storage: not emulated).
REAL_MIX = {
    "bridge-plug": 0.40,
    "sriov-plug": 0.15,
    "bridge-unplug": 0.15,
    "sriov-unplug": 0.05,
    "not-migratable-interface": 0.05,
    "opted-out": 0.05,
    "restart-required": 0.05,
    "slots-predictable": 0.05,
    "idle": 0.05,
}
VMS_IN_BURST = 24
CLUSTER_CAP, NODE_CAP = 4, 2
SRIOV_NETS = {"hp-sriov", "sriov-a"}


async def test_burst_under_the_migration_limits(env: Env) -> None:
    env.tier.set_kubevirt(KubeVirtSettings(parallel_migrations_per_cluster=CLUSTER_CAP,
                                           parallel_outbound_migrations_per_node=NODE_CAP))  # fmt: skip
    watcher = WatchRecorder(env.tier.cluster.kubeconfig, [env.ns])
    try:
        cfg = ScenarioConfig(vms=VMS_IN_BURST, namespaces=(env.ns,), seed=3, mix=dict(REAL_MIX),
                             request_window_seconds=1.0, kubevirt_version=env.tier.version)  # fmt: skip
        plans = build_plan(cfg)
        nets = {n["multus"]["networkName"].split("/")[1] for p in plans
                for n in p.body["spec"]["template"]["spec"]["networks"] if "multus" in n}  # fmt: skip
        nets |= {a.interface for p in plans for a in p.actions}
        for net in sorted(nets):
            await env.create_nad(net, sriov=net in SRIOV_NETS)
        for plan in plans:
            await env.custom.create_namespaced_custom_object("kubevirt.io", "v1", env.ns, VMS, plan.body)
            env.vm_names.append(plan.name)
        await asyncio.gather(*(env.wait_vmi_running(p.name, 120) for p in plans))
        await watcher.start()
        recorder = watcher.recorder
        async with env.agent():
            driver = ScenarioDriver(env.custom, plans, cfg, on_request=recorder.add_request)
            await driver.run()
            accepted = sum(1 for r in driver.requests if r.accepted)

            async def settled() -> bool:
                watcher.check()
                env.side.check()
                return recorder.resolved_count >= accepted and recorder.in_flight == 0

            await wait_for(settled, "every accepted request completed or blocked by the agent", 180)
        report = recorder.report()
    finally:
        await watcher.stop()
        env.tier.set_kubevirt(KubeVirtSettings())
    lines = "\n".join(report.summary_lines())
    print(lines)
    m = report.migrations
    assert not report.violations, lines
    assert report.unexplained == 0, lines
    assert m.max_concurrent_per_vmi == 1, lines
    assert m.max_concurrent_running <= CLUSTER_CAP and m.max_running_per_node <= NODE_CAP, lines
    assert m.by_creator["agent"] >= 1 and m.by_creator["kubevirt"] == 0 and m.unfinished == 0, lines
    assert m.for_opted_out == 0 and m.for_not_live_migratable == 0 and m.for_restart_required == 0, lines
    for r in report.requests:
        if r.category in ("bridge-plug", "sriov-plug", "bridge-unplug") and r.accepted:
            assert r.completed, (r, lines)
        if r.category == "sriov-unplug":
            assert not r.accepted and "absent" in r.rejection, (r, lines)
        if r.category in ("opted-out", "not-migratable-interface", "restart-required"):
            assert not r.completed and r.agent_block, (r, lines)
