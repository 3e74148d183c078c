"""The agent on KubeVirt releases whose VM controller sets RestartRequired for every hot plug.

KubeVirt v1.2.0 to v1.4.0, v1.5.0 and v1.5.1 compare the VM template with the one its VMI started from,
interfaces included, so a hot plug sets ``RestartRequired`` while still reaching the VMI spec. The
simulated KubeVirt models that per release (the same steps run on real virt-controller v1.5.1 in
tests/kubevirt/test_releases.py); the agent must deliver the hot plug there and still refuse a change
that really needs a restart.
"""

from __future__ import annotations

from simulator.manifests import vm_manifest
from tests.e2e.test_blocked import assert_blocked
from tests.e2e.world import NET_A, NS, VMS, cluster_config, world


async def test_v151_flags_a_hot_plug_and_the_agent_still_delivers_it() -> None:
    async with world(cluster_config(kubevirt_version="v1.5.1")) as w:
        await w.seed(vm_manifest(NS, "vm-rr", NET_A))
        agent = await w.start_agent()
        await w.plug("vm-rr")
        await w.wait(lambda: w.attached("vm-rr", "hp-bridge"), "hp-bridge attached")
        cond = w.condition(w.vm("vm-rr"), "RestartRequired")
        assert cond is not None and cond["status"] == "True", "v1.5.1 flags the hot plug itself"
        assert len(w.observer.for_vmi("vm-rr", "agent")) == 1
        assert agent.sample("hotplug_agent_blocked_vms", reason="restart-required") == 0
        assert not w.recorder.report().violations


async def test_v151_a_real_restart_required_change_is_still_refused() -> None:
    async with world(cluster_config(kubevirt_version="v1.5.1")) as w:
        await w.seed(vm_manifest(NS, "vm-cores", NET_A))
        await w.start_agent()
        await w.store.patch(
            VMS, NS, "vm-cores", {"spec": {"template": {"spec": {"domain": {"cpu": {"cores": 4}}}}}}
        )
        await w.plug("vm-cores")
        ev = await assert_blocked(w, "vm-cores", "restart-required")
        assert "domain.cpu" in ev["message"], ev["message"]
        assert w.observer.created == []


async def test_v152_does_not_flag_a_hot_plug() -> None:
    async with world(cluster_config(kubevirt_version="v1.5.2")) as w:
        await w.seed(vm_manifest(NS, "vm-fixed", NET_A))
        await w.start_agent()
        await w.plug("vm-fixed")
        await w.wait(lambda: w.attached("vm-fixed", "hp-bridge"), "hp-bridge attached")
        assert w.condition(w.vm("vm-fixed"), "RestartRequired") is None
