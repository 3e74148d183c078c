"""Bulk loader: running VMs and their VMIs written straight into the etcd of a real kube-apiserver.

Why not through the API: a VMI's status is a subresource, so each VM costs three writes (VM, VMI,
VMI status), and kube-apiserver validates each against KubeVirt's large structural schemas: about
300,000 requests for 100,000 VMs, minutes on this machine. The API server keeps custom resources in
etcd as plain JSON under ``/registry/<group>/<plural>/<namespace>/<name>`` and serves them from its
watch cache, which follows etcd's watch; so objects written there in etcd transactions (128 puts each,
etcd's default ``--max-txn-ops``) over several connections are exactly what the API server would have
stored, and every client (the agent) reads them through the API server as usual. What they hold is
what the simulator seeds (:func:`simulator.kubevirt.world.vmi_from_vm`: a Running VMI with the status
virt-handler writes), with ``uid`` and ``creationTimestamp`` the API server would have set.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

import aiohttp

from simulator.kubevirt import status
from simulator.kubevirt.world import vmi_from_vm

#: etcd's default ``--max-txn-ops``.
TXN_OPS = 128


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def registry_key(plural: str, namespace: str, name: str, group: str = "kubevirt.io") -> str:
    return f"/registry/{group}/{plural}/{namespace}/{name}"


def stored(obj: dict[str, Any], now: float) -> dict[str, Any]:
    """``obj`` as the API server stores it: uid, creationTimestamp, generation; no resourceVersion
    (the API server reads it from etcd's revision)."""
    meta = dict(obj.get("metadata") or {})
    meta.setdefault("uid", str(uuid.uuid4()))
    meta.setdefault("creationTimestamp", status.rfc3339_seconds(now))
    meta.setdefault("generation", 1)
    meta.pop("resourceVersion", None)
    return {**obj, "metadata": meta}


def vm_and_vmi(
    vm: dict[str, Any], node: str, version: str, now: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A running VM (with the status virt-controller writes) and its Running VMI."""
    vm = stored(vm, now)
    vmi = vmi_from_vm(vm, node, version, now)
    vmi = stored(vmi, now)
    ready = {"type": "Ready", "status": "True", "lastProbeTime": None,
             "lastTransitionTime": status.rfc3339_seconds(now)}  # fmt: skip
    vm["status"] = {"printableStatus": "Running", "ready": True, "created": True, "conditions": [ready]}
    return vm, vmi


class Templates:
    """The stored JSON of one VM and its VMI with placeholders, so each further VM costs a few string
    replacements instead of building both objects (~0.7 ms each on this machine)."""

    MARKS = ("@@NS@@", "@@NAME@@", "@@VMUID@@", "@@VMIUID@@", "@@NODE@@")

    def __init__(self, vm: dict[str, Any], version: str, now: float) -> None:
        proto = json.loads(json.dumps(vm))
        proto["metadata"].update(namespace="@@NS@@", name="@@NAME@@", uid="@@VMUID@@")
        proto["spec"]["template"]["metadata"]["labels"]["kubevirt.io/vm"] = "@@NAME@@"
        pvm, pvmi = vm_and_vmi(proto, "@@NODE@@", version, now)
        pvmi["metadata"]["uid"] = "@@VMIUID@@"
        self.vm = json.dumps(pvm)
        self.vmi = json.dumps(pvmi)

    def render(self, namespace: str, name: str, node: str) -> tuple[str, str]:
        values = (namespace, name, str(uuid.uuid4()), str(uuid.uuid4()), node)
        vm, vmi = self.vm, self.vmi
        for mark, value in zip(self.MARKS, values, strict=True):
            vm = vm.replace(mark, value)
            vmi = vmi.replace(mark, value)
        return vm, vmi


def txn_put(plural: str, namespace: str, name: str, body: str) -> dict[str, Any]:
    key = registry_key(plural, namespace, name)
    return {"requestPut": {"key": _b64(key.encode()), "value": _b64(body.encode())}}


async def load(
    etcd_url: str,
    keys: Sequence[tuple[str, str]],
    prototype: dict[str, Any],
    nodes: Sequence[str],
    version: str,
    *,
    connections: int = 8,
) -> float:
    """Write a running VM shaped like ``prototype`` and its VMI (on ``nodes``, round robin) for each
    (namespace, name) of ``keys`` into etcd; returns the seconds taken."""
    t0 = time.perf_counter()
    now = time.time()
    queue: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue(maxsize=4 * connections)

    async def produce() -> None:
        tpl = Templates(prototype, version, now)
        batch: list[dict[str, Any]] = []
        for i, (ns, name) in enumerate(keys):
            vm, vmi = tpl.render(ns, name, nodes[i % len(nodes)])
            batch += [
                txn_put("virtualmachines", ns, name, vm),
                txn_put("virtualmachineinstances", ns, name, vmi),
            ]
            if len(batch) >= TXN_OPS:
                await queue.put(batch)
                batch = []
        if batch:
            await queue.put(batch)
        for _ in range(connections):
            await queue.put(None)

    async def consume(session: aiohttp.ClientSession) -> None:
        while (batch := await queue.get()) is not None:
            async with session.post(f"{etcd_url}/v3/kv/txn", json={"success": batch}) as resp:
                body = await resp.text()
                if resp.status != 200 or '"succeeded":true' not in body.replace(" ", ""):
                    raise RuntimeError(f"etcd txn failed ({resp.status}): {body[:300]}")

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session, asyncio.TaskGroup() as tg:
        tg.create_task(produce())
        for _ in range(connections):
            tg.create_task(consume(session))
    return time.perf_counter() - t0
