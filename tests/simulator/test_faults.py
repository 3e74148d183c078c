"""The simulated KubeVirt converges under API errors and watch drops (it is a client like any other)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes_asyncio.client import CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import new_client_from_config

from simulator.apiserver import FaultRule
from simulator.cluster import SimulatedCluster
from simulator.manifests import vm_manifest
from tests.simulator.conftest import entry, fast_config, get, migrate, plug, set_state, wait_for


async def _retry(fn: Any, *args: Any) -> Any:
    for _ in range(50):
        try:
            return await fn(*args)
        except ApiException as exc:
            if exc.status < 500:
                raise
    raise AssertionError("kept failing")


async def test_converges_under_faults(tmp_path: Path) -> None:
    async with SimulatedCluster(fast_config(), kubeconfig_path=tmp_path / "kc") as cluster:
        await cluster.seed([vm_manifest("default", f"f{i}", [("a", "bridge")]) for i in range(6)])
        cluster.server.faults.add(
            FaultRule(
                verbs=("create", "update", "patch", "get"),
                resources=("virtualmachineinstances", "virtualmachineinstancemigrations", "virtualmachines"),
                error_rate=0.2,
                error_codes=(500, 503),
                watch_drop_rate=0.5,
            )
        )
        client = await new_client_from_config(config_file=str(cluster.kubeconfig_path))
        api = CustomObjectsApi(client)
        try:
            for i in range(3):
                await _retry(plug, api, f"f{i}", "b")
            for i in range(3, 6):
                await _retry(set_state, api, f"f{i}", "a", "absent")

            async def propagated() -> bool:
                for i in range(6):
                    v = await _retry(get, api, "virtualmachineinstances", f"f{i}")
                    names = {x["name"]: x for x in v["spec"]["domain"]["devices"]["interfaces"]}
                    if i < 3 and "b" not in names:
                        return False
                    if i >= 3 and names["a"].get("state") != "absent":
                        return False
                return True

            await wait_for(propagated, timeout=20)
            for i in range(6):
                await _retry(migrate, api, f"f{i}")

            async def converged() -> bool:
                for i in range(6):
                    v = await _retry(get, api, "virtualmachineinstances", f"f{i}")
                    vmx = await _retry(get, api, "virtualmachines", f"f{i}")
                    if i < 3:
                        e = entry(v, "b")
                        if not e or "domain" not in e["infoSource"]:
                            return False
                    else:
                        names = [
                            x["name"]
                            for x in vmx["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"]
                        ]
                        if "a" in names:
                            return False
                return True

            await wait_for(converged, timeout=30, what="all plugs attached and unplugs cleaned up")
            cluster.check()
        finally:
            await client.close()


async def test_controller_bug_is_not_silent(tmp_path: Path) -> None:
    import asyncio

    import pytest

    async with SimulatedCluster(fast_config(), kubeconfig_path=tmp_path / "kc") as cluster:
        assert cluster.vmi_controller is not None

        async def broken(key: tuple[str, str]) -> None:
            raise KeyError("bug")

        cluster.vmi_controller.sync = broken  # type: ignore[method-assign]
        await cluster.seed([vm_manifest("default", "boom")])
        for _ in range(100):
            await asyncio.sleep(0.02)
            try:
                cluster.check()
            except BaseException as exc:  # the TaskGroup's ExceptionGroup
                assert "bug" in repr(exc)
                return
        pytest.fail("a crashed controller went unnoticed")
