"""The seed's manual workflow with the real ``virtctl``: ``virtctl migrate <vm>`` and
``virtctl migrate-cancel <vm>``, against real virt-api (through the aggregated API) and against the
simulated cluster, which serves the same ``subresources.kubevirt.io`` calls."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from agent.kubevirt import VMIMS
from tests.kubevirt.cluster import DEFAULT_VERSION, ensure_build
from tests.kubevirt.helpers import Env, wait_for

pytestmark = pytest.mark.kubevirt


async def virtctl(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    binary = ensure_build(DEFAULT_VERSION).binary("virtctl")
    cmd = [str(binary), "--kubeconfig", str(env.backend.kubeconfig), "-n", env.ns, *args]
    return await asyncio.to_thread(
        subprocess.run, cmd, capture_output=True, text=True, timeout=60, check=False
    )


async def test_virtctl_migrate_and_migrate_cancel(kv_env: Env) -> None:
    env = kv_env
    await env.create_vm("manual")
    out = await virtctl(env, "migrate", "manual")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "VM manual was scheduled to migrate"

    async def succeeded() -> list[dict]:
        done = [m for m in await env.list(VMIMS) if (m.get("status") or {}).get("phase") == "Succeeded"]
        return done

    first = (await wait_for(succeeded, "virtctl's migration Succeeded", 60))[0]
    assert first["metadata"]["name"].startswith("kubevirt-migrate-vm-")
    assert first["metadata"]["labels"]["kubevirt.io/vmi-name"] == "manual"

    env.backend.timing.stuck_rate = (
        1.0  # until cancelled: the node side draws a migration's fate at its start
    )
    try:
        async with env.history(VMIMS) as seen:
            out = await virtctl(env, "migrate", "manual")
            assert out.returncode == 0, out.stderr
            again = await virtctl(env, "migrate", "manual")
            assert again.returncode == 1
            assert "Error migrating VirtualMachine Internal error occurred: admission webhook" in again.stderr
            assert "in-flight migration detected" in again.stderr

            async def running() -> str | None:
                for m in await env.list(VMIMS):
                    if (m.get("status") or {}).get("phase") == "Running":
                        return str(m["metadata"]["name"])
                return None

            second = await wait_for(running, "the second migration Running", 60)
            cancel = await virtctl(env, "migrate-cancel", "manual")
            assert cancel.returncode == 0, cancel.stderr
            assert cancel.stdout.strip() == "VM manual was scheduled to migrate-cancel"
            # cancelled after the hand-off: aborted, Failed, then gone (its finalizer drops once final)
            await env.wait_gone(VMIMS, second)
            assert seen.phase(second) == "Failed"
    finally:
        env.backend.timing.stuck_rate = 0.0
    assert [m["metadata"]["name"] for m in await env.list(VMIMS)] == [first["metadata"]["name"]]
    missing = await virtctl(env, "migrate", "nosuch")
    assert missing.returncode == 1
    assert 'virtualmachine.kubevirt.io "nosuch" not found' in missing.stderr
    nothing = await virtctl(env, "migrate-cancel", "nosuch")
    assert nothing.returncode == 1 and "Found no migration to cancel for nosuch" in nothing.stderr


async def test_virtctl_version_reads_the_server(kv_env: Env) -> None:
    out = await virtctl(kv_env, "version")
    assert out.returncode == 0, out.stderr
    assert f'GitVersion:"{kv_env.backend.version}"' in out.stdout.splitlines()[1]
