"""The tier itself: KubeVirt's real components answer as on a cluster (smoke tests)."""

from __future__ import annotations

import subprocess

import pytest

from agent.kubevirt import VMS
from tests.kubevirt.cluster import Tier
from tests.kubevirt.helpers import Env, condition

pytestmark = pytest.mark.kubevirt


def test_virtctl_and_virt_api_report_the_pinned_release(kubevirt_tier: Tier) -> None:
    """``virtctl version`` reads the client's stamp and virt-api's through the aggregated
    ``subresources.kubevirt.io`` API (kube-apiserver → APIService → ExternalName → virt-api)."""
    out = subprocess.run(
        [str(kubevirt_tier.virtctl()), "--kubeconfig", str(kubevirt_tier.cluster.kubeconfig), "version"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    client, server = out.stdout.splitlines()[:2]
    assert f'GitVersion:"{kubevirt_tier.version}"' in client
    assert server.startswith("Server Version") and f'GitVersion:"{kubevirt_tier.version}"' in server


async def test_a_vm_boots_through_the_real_webhooks_and_controller(env: Env) -> None:
    """virt-api's mutating webhook defaults the VM (firmware UUID, machine type), virt-controller creates
    the VMI and its launcher pod, the node side runs it: Running with LiveMigratable."""
    vmi = await env.create_vm("boot")
    vm = await env.get(VMS, "boot")
    assert vm is not None
    template = vm["spec"]["template"]["spec"]["domain"]
    assert template["firmware"]["uuid"] and template["machine"]["type"] == "q35"
    assert vmi["status"]["nodeName"].startswith("node")
    live = condition(vmi, "LiveMigratable")
    assert live is not None and live["status"] == "True"
    pods = [p for p in env.side.pods.cache.values() if p["metadata"]["namespace"] == env.ns]
    assert len(pods) == 1 and pods[0]["metadata"]["name"].startswith("virt-launcher-boot-")
