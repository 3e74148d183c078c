"""The ground-truth Recorder's per-source-node count of running migrations, fed the way real KubeVirt
writes: no ``migrationState`` in the VMIM until it is final, the VMI's ``migrationState`` (with the
source) from the hand-off, and the VMI moved to the target before the VMIM's ``Succeeded`` arrives."""

from __future__ import annotations

from typing import Any

from simulator.report import Recorder

NS = "ns"


class Objects:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}

    def try_get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.objects.get((resource, namespace or "", name))

    def put_vmi(self, name: str, node: str, migration: dict[str, Any] | None = None) -> None:
        status: dict[str, Any] = {"phase": "Running", "nodeName": node}
        if migration is not None:
            status["migrationState"] = migration
        self.objects[("virtualmachineinstances", NS, name)] = {
            "metadata": {"namespace": NS, "name": name}, "status": status,
        }  # fmt: skip


def vmim(name: str, vmi: str, phase: str) -> dict[str, Any]:
    return {"metadata": {"namespace": NS, "name": name, "uid": f"uid-{name}"},
            "spec": {"vmiName": vmi}, "status": {"phase": phase}}  # fmt: skip


def test_a_migration_counts_against_its_source_node_until_it_ends() -> None:
    objects = Objects()
    recorder = Recorder(objects)
    # two migrations out of node-a, one out of node-b (whose VMI will land on node-a)
    for name, vmi, source in (("m1", "v1", "node-a"), ("m2", "v2", "node-a"), ("m3", "v3", "node-b")):
        objects.put_vmi(vmi, source, {"migrationUid": f"uid-{name}", "sourceNode": source})
        recorder.observe("ADDED", "virtualmachineinstancemigrations", vmim(name, vmi, "Pending"), 0.0)
        recorder.observe("MODIFIED", "virtualmachineinstancemigrations", vmim(name, vmi, "Running"), 0.0)
    # m3's VMI has moved to node-a; its VMIM is still Running when the next event about it arrives
    objects.put_vmi("v3", "node-a", {"migrationUid": "uid-m3", "sourceNode": "node-b", "completed": True})
    recorder.observe("MODIFIED", "virtualmachineinstancemigrations", vmim("m3", "v3", "Running"), 0.0)
    assert recorder.stats.max_running_per_node == 2
    assert recorder.stats.max_concurrent_running == 3


def test_without_a_migration_state_the_source_is_where_the_vmi_is() -> None:
    objects = Objects()
    recorder = Recorder(objects)
    objects.put_vmi("v1", "node-a")
    recorder.observe("ADDED", "virtualmachineinstancemigrations", vmim("m1", "v1", "Scheduling"), 0.0)
    objects.put_vmi("v2", "node-a", {"migrationUid": "another", "sourceNode": "node-z"})
    recorder.observe("ADDED", "virtualmachineinstancemigrations", vmim("m2", "v2", "Scheduling"), 0.0)
    assert recorder.stats.max_running_per_node == 2
