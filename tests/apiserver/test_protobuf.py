"""simulator/apiserver/protobuf.py: the protobuf bodies kubectl sends, and honest 415s for the rest."""

from __future__ import annotations

import pytest

from simulator.apiserver.protobuf import UnreadableProtobuf, decode_object
from tests.conformance.test_kubectl_sandbox import _field, namespace_protobuf

# The bytes kubectl 1.32 sent for `kubectl create namespace xx` (kubectl -v=8).
KUBECTL_CREATE_NAMESPACE = bytes.fromhex(
    "6b 38 73 00 0a 0f 0a 02 76 31 12 09 4e 61 6d 65 73 70 61 63 65 12 1a 0a 12 0a 02 78 78 12 00 1a"
    "00 22 00 2a 00 32 00 38 00 42 00 12 00 1a 02 0a 00 1a 00 22 00"
)


def test_what_kubectl_sends_for_create_namespace() -> None:
    assert decode_object(KUBECTL_CREATE_NAMESPACE) == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "xx"},
    }


def test_labels_and_the_tests_encoder() -> None:
    obj = decode_object(namespace_protobuf("a", {"x": "1", "y": "2"}))
    assert obj["metadata"] == {"name": "a", "labels": {"x": "1", "y": "2"}}


def test_an_unread_field_is_refused_not_dropped() -> None:
    owner = _field(13, _field(1, b"v1"))  # ownerReferences: not read by this server
    body = b"k8s\x00" + _field(1, _field(1, b"v1") + _field(2, b"Namespace")) + _field(2, _field(1, owner))
    with pytest.raises(UnreadableProtobuf, match=r"Namespace.metadata: field 13 is not read"):
        decode_object(body)


def test_other_kinds_and_other_bodies_are_refused() -> None:
    body = b"k8s\x00" + _field(1, _field(1, b"v1") + _field(2, b"ConfigMap")) + _field(2, b"")
    with pytest.raises(
        UnreadableProtobuf, match=r"v1/ConfigMap in protobuf is not read by this server \(only v1/Namespace\)"
    ):
        decode_object(body)
    with pytest.raises(UnreadableProtobuf, match="envelope"):
        decode_object(b'{"kind": "Namespace"}')
    with pytest.raises(UnreadableProtobuf, match="truncated"):
        decode_object(KUBECTL_CREATE_NAMESPACE[:-3])
