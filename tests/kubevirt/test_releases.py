"""The agent on each KubeVirt release it claims, run on that release's real code.

KubeVirt v1.2.0 to v1.4.0, v1.5.0 and v1.5.1 set the VM's ``RestartRequired`` on every interface edit of the
template, hot plugs and ``state: absent`` included, and keep it until a restart (fixed in v1.4.1,
v1.5.2, v1.6.0); the hot plug still reaches the VMI spec, so a migration delivers it. The agent must
deliver it there too, and still refuse a change that really needs a restart.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from agent.kubevirt import VMIMS, VMIS, VMS
from tests.kubevirt.cluster import TierPool
from tests.kubevirt.helpers import (
    Env,
    condition,
    info_sources,
    real_backend,
    sample,
    wait_for,
)

RESTART_ON_HOTPLUG = "v1.5.1"
FIXED = ("v1.5.2", "v1.6.0")


@pytest.fixture
async def env_151(kubevirt_pool: TierPool) -> AsyncIterator[Env]:
    async with real_backend(kubevirt_pool.get(RESTART_ON_HOTPLUG)) as backend, Env.open(backend) as e:
        yield e


@contextlib.asynccontextmanager
async def env_of(pool: TierPool, version: str) -> AsyncIterator[Env]:
    async with real_backend(pool.get(version)) as backend, Env.open(backend) as e:
        yield e


async def restart_required(env: Env, vm: str) -> dict | None:
    return condition(await env.get(VMS, vm), "RestartRequired")


@pytest.mark.kubevirt(version=RESTART_ON_HOTPLUG)
async def test_v151_sets_restart_required_on_a_hot_plug_and_the_agent_still_delivers_it(env_151: Env) -> None:
    env = env_151
    await env.create_vm("rr", [("net-a", "bridge")])
    async with env.agent() as metrics:
        await env.plug("rr", "hp1")

        async def flagged() -> dict | None:
            cond = await restart_required(env, "rr")
            return cond if cond and cond["status"] == "True" else None

        cond = await wait_for(flagged, "KubeVirt v1.5.1 setting RestartRequired on the hot plug", 30)
        assert cond["message"] == "a non-live-updatable field was changed in the template spec"
        vmi = await env.get(VMIS, "rr")
        assert "hp1" in [i["name"] for i in vmi["spec"]["domain"]["devices"]["interfaces"]]

        async def attached() -> bool:
            return "domain" in info_sources(await env.get(VMIS, "rr"), "hp1")

        await wait_for(attached, "hp1 attached to the guest", 90)
        assert sample(metrics, "hotplug_agent_blocked_vms", reason="restart-required") == 0
        ours = [m for m in await env.list(VMIMS) if m["metadata"]["name"].startswith("hotplug-rr-")]
        assert len(ours) == 1
        # KubeVirt v1.5.1 keeps the condition until a restart: the condition was the only thing wrong.
        cond = await restart_required(env, "rr")
        assert cond is not None and cond["status"] == "True"


@pytest.mark.kubevirt(version=RESTART_ON_HOTPLUG)
async def test_v151_the_agent_still_refuses_a_change_that_really_needs_a_restart(env_151: Env) -> None:
    env = env_151
    await env.create_vm("cores", [("net-a", "bridge")])
    async with env.agent() as metrics:
        await env.merge_vm("cores", {"spec": {"template": {"spec": {"domain": {"cpu": {"cores": 2}}}}}})
        await env.plug("cores", "hp1")

        async def blocked() -> bool:
            return sample(metrics, "hotplug_agent_blocked_vms", reason="restart-required") == 1

        await wait_for(blocked, "the agent blocking the VM as restart-required", 60)
        events = await env.client_core().list_namespaced_event(env.ns)
        texts = [e.message for e in events.items if e.reason == "HotplugBlocked"]
        assert any("domain.cpu.cores changed since the VM started" in t for t in texts), texts
        assert [m for m in await env.list(VMIMS) if m["metadata"]["name"].startswith("hotplug-")] == []


@pytest.mark.parametrize("version", [pytest.param(v, marks=pytest.mark.kubevirt(version=v)) for v in FIXED])
async def test_fixed_releases_do_not_flag_a_hot_plug(kubevirt_pool: TierPool, version: str) -> None:
    async with env_of(kubevirt_pool, version) as env:
        await env.create_vm("fixed", [("net-a", "bridge")])
        async with env.agent():
            await env.plug("fixed", "hp1")

            async def attached() -> bool:
                return "domain" in info_sources(await env.get(VMIS, "fixed"), "hp1")

            await wait_for(attached, f"hp1 attached to the guest on {version}", 90)
            assert await restart_required(env, "fixed") is None
