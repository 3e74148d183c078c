"""What kubectl needs from a cluster beyond JSON CRUD, on both API servers: protobuf bodies for
built-in kinds (``kubectl create namespace``) and the server-side Table of Events (``kubectl get
events``). The embedded server must answer like kube-apiserver so the sandbox behaves like a cluster.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conformance.backends import KubeHttp

PROTOBUF = "application/vnd.kubernetes.protobuf"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def namespace_protobuf(name: str, labels: dict[str, str]) -> bytes:
    """A Namespace as kubectl's typed client encodes it (every optional field present, empty)."""
    meta = _field(1, name.encode()) + b"".join(
        _field(11, _field(1, k.encode()) + _field(2, v.encode())) for k, v in labels.items()
    )
    meta += _field(2, b"") + _field(3, b"") + b"\x38\x00" + _field(8, b"")  # generateName, ns, generation, ts
    namespace = _field(1, meta) + _field(2, b"") + _field(3, _field(1, b""))
    unknown = _field(1, _field(1, b"v1") + _field(2, b"Namespace")) + _field(2, namespace)
    unknown += _field(3, b"") + _field(4, b"")
    return b"k8s\x00" + unknown


async def test_namespace_created_from_protobuf(kube: KubeHttp) -> None:
    name = f"proto-{uuid.uuid4().hex[:8]}"
    res = await kube.request(
        "POST", "/api/v1/namespaces", namespace_protobuf(name, {"team": "a"}), content_type=PROTOBUF
    )
    try:
        assert res.status == 201, res.body
        created = res.ok()
        assert created["metadata"]["name"] == name
        assert created["metadata"]["labels"] == {"team": "a", "kubernetes.io/metadata.name": name}
        assert created["status"]["phase"] == "Active"
        assert (await kube.get(f"/api/v1/namespaces/{name}")).ok()["metadata"]["uid"]
    finally:
        await kube.delete(f"/api/v1/namespaces/{name}")


def _ts(delta: timedelta) -> str:
    return (datetime.now(UTC) - delta).strftime("%Y-%m-%dT%H:%M:%SZ")


EVENT_COLUMNS = [
    ("Last Seen", "string", 0, ""),
    ("Type", "string", 0, ""),
    ("Reason", "string", 0, ""),
    ("Object", "string", 0, ""),
    ("Subobject", "string", 1, ""),
    ("Source", "string", 1, ""),
    ("Message", "string", 0, ""),
    ("First Seen", "string", 1, ""),
    ("Count", "string", 1, ""),
    ("Name", "string", 1, "name"),
]


async def test_events_table_has_the_event_printer_columns(kube: KubeHttp, ns: str) -> None:
    event: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "vm-1.blocked"},
        "involvedObject": {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "name": "vm-1",
            "namespace": ns,
        },
        "reason": "HotplugBlocked",
        "message": "  not live-migratable  ",
        "type": "Warning",
        "firstTimestamp": _ts(timedelta(days=3)),
        "lastTimestamp": _ts(timedelta(days=2)),
        "count": 4,
        "source": {"component": "hotplug-agent"},
    }
    (await kube.post(f"/api/v1/namespaces/{ns}/events", event)).ok()
    kube.headers["Accept"] = TABLE
    try:
        table = (await kube.get(f"/api/v1/namespaces/{ns}/events")).ok()
    finally:
        kube.headers["Accept"] = "application/json"
    assert table["kind"] == "Table"
    got = [
        (c["name"], c["type"], c.get("priority", 0), c.get("format", "")) for c in table["columnDefinitions"]
    ]
    assert got == EVENT_COLUMNS
    assert [r["cells"] for r in table["rows"]] == [
        [
            "2d",
            "Warning",
            "HotplugBlocked",
            "virtualmachine/vm-1",
            "",
            "hotplug-agent",
            "not live-migratable",
            "3d",
            4,
            "vm-1.blocked",
        ]
    ]
