"""kubectl against the embedded server: get, get -w, apply, patch --type=merge, delete."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from simulator.apiserver import ApiServer
from simulator.manifests import vm_manifest
from tests.tooling import require_tool

pytestmark = pytest.mark.tools

VM_YAML = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: applied
  labels: {app: demo}
spec:
  runStrategy: STRATEGY
  template:
    spec:
      domain:
        devices:
          interfaces: [{name: default, masquerade: {}}]
"""


async def _kubectl(kubeconfig: Path, *args: str, check: bool = True) -> tuple[int, str, str]:
    kubectl = require_tool("kubectl")
    proc = await asyncio.create_subprocess_exec(
        kubectl,
        "--kubeconfig",
        str(kubeconfig),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    if check:
        assert proc.returncode == 0, f"kubectl {' '.join(args)} failed: {err.decode()}"
    return proc.returncode, out.decode(), err.decode()


async def test_kubectl_get_apply_patch_delete(server: ApiServer, kubeconfig: Path, tmp_path: Path) -> None:
    require_tool("kubectl")
    await server.store.create("vm", vm_manifest(None, "seeded"), "default")
    await server.store.create("namespaces", {"metadata": {"name": "tenant"}})
    await server.store.create("vm", vm_manifest(None, "other"), "tenant")
    _, out, _ = await _kubectl(kubeconfig, "get", "vm", "-A")
    lines = out.strip().splitlines()
    assert lines[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert {tuple(line.split()[:2]) for line in lines[1:]} == {("default", "seeded"), ("tenant", "other")}

    manifest = tmp_path / "vm.yaml"
    manifest.write_text(VM_YAML.replace("STRATEGY", "Always"))
    _, out, _ = await _kubectl(kubeconfig, "apply", "-f", str(manifest))
    assert "virtualmachine.kubevirt.io/applied created" in out
    manifest.write_text(VM_YAML.replace("STRATEGY", "Halted"))
    _, out, _ = await _kubectl(kubeconfig, "apply", "-f", str(manifest))
    assert "configured" in out
    vm = server.store.get("vm", "default", "applied")
    assert vm["spec"]["runStrategy"] == "Halted" and vm["metadata"]["generation"] == 2

    await _kubectl(
        kubeconfig, "patch", "vm", "applied", "--type=merge", "-p", '{"spec":{"runStrategy":"Manual"}}'
    )
    assert server.store.get("vm", "default", "applied")["spec"]["runStrategy"] == "Manual"
    # kubectl's default patch type for a custom resource is strategic merge: refused like the real server.
    code, _, err = await _kubectl(kubeconfig, "patch", "vm", "applied", "-p", '{"spec":{}}', check=False)
    assert code != 0 and "application/strategic-merge-patch+json is not supported" in err

    _, out, _ = await _kubectl(kubeconfig, "get", "vm", "applied", "-o", "json")
    assert json.loads(out)["metadata"]["name"] == "applied"

    _, out, _ = await _kubectl(kubeconfig, "delete", "vm", "applied")
    assert 'virtualmachine.kubevirt.io "applied" deleted' in out
    assert server.store.try_get("vm", "default", "applied") is None


async def test_kubectl_get_watch_sees_a_change(server: ApiServer, kubeconfig: Path) -> None:
    kubectl = require_tool("kubectl")
    proc = await asyncio.create_subprocess_exec(
        kubectl,
        "--kubeconfig",
        str(kubeconfig),
        "get",
        "vmi",
        "-w",
        "--request-timeout=5s",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await asyncio.sleep(1.0)
        await server.store.create(
            "vmi",
            {"metadata": {"name": "watched-vmi"}, "spec": {}, "status": {"phase": "Running"}},
            "default",
        )
        assert proc.stdout is not None
        seen = b""
        async with asyncio.timeout(8):
            while b"watched-vmi" not in seen:
                chunk = await proc.stdout.readline()
                if not chunk:
                    break
                seen += chunk
        assert b"watched-vmi" in seen
        # kubectl asked for server-side Tables: the header carries KubeVirt's VMI printer columns
        # (from simulator/crds; priority-1 columns only with -o wide).
        assert seen.split(b"\n")[0].split() == [b"NAME", b"AGE", b"PHASE", b"IP", b"NODENAME", b"READY"]
        row = seen.split(b"\n")[1].split()
        assert row[0] == b"watched-vmi" and row[2] == b"Running"
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_kubectl_create_namespace_and_get_events(server: ApiServer, kubeconfig: Path) -> None:
    """The sandbox tour: kubectl's protobuf create of a built-in kind, and the Events table's columns."""
    require_tool("kubectl")
    _, out, _ = await _kubectl(kubeconfig, "create", "namespace", "sandbox")
    assert out.strip() == "namespace/sandbox created"
    assert server.store.get("namespaces", None, "sandbox")["status"]["phase"] == "Active"
    await server.store.create(
        "events",
        {
            "metadata": {"name": "vm-1.started"},
            "involvedObject": {"kind": "VirtualMachine", "name": "vm-1", "namespace": "sandbox"},
            "reason": "HotplugMigrationStarted",
            "message": "migrating to attach hp1",
            "type": "Normal",
            "source": {"component": "hotplug-agent"},
        },
        "sandbox",
    )
    _, out, _ = await _kubectl(kubeconfig, "-n", "sandbox", "get", "events")
    header, row = out.strip().splitlines()
    assert header.split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert row.split()[1:] == [
        "Normal",
        "HotplugMigrationStarted",
        "virtualmachine/vm-1",
        "migrating",
        "to",
        "attach",
        "hp1",
    ]
    _, out, _ = await _kubectl(kubeconfig, "-n", "sandbox", "get", "events", "-o", "wide")
    assert out.split()[:8] == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE"]
    _, out, _ = await _kubectl(kubeconfig, "delete", "namespace", "sandbox")
    assert out.strip() == 'namespace "sandbox" deleted'
