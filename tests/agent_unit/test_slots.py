"""Slot models: choice, examples per model, observation, and soundness of 'certain' (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import slots
from agent.model import KubeVirtRecord, VMIRecord
from agent.slots import assess, choose_slot_model, predict
from tests.agent_unit.builders import MAX_EXAMPLES, iface, net, vmi


def kv(version: tuple[int, int, int] | None) -> KubeVirtRecord:
    return KubeVirtRecord(key=("kubevirt", "kubevirt"), version=version)


def with_ifaces(plugged: int, pending: int, absent: int = 0, **kw: object) -> VMIRecord:
    """default (pod) + ``plugged`` attached + ``pending`` pending plugs + ``absent`` unplugged."""
    extra = [(iface(f"p{i}"), net(f"p{i}")) for i in range(plugged)]
    extra += [(iface(f"n{i}"), net(f"n{i}")) for i in range(pending)]
    extra += [(iface(f"a{i}", state="absent"), net(f"a{i}")) for i in range(absent)]
    statuses = {f"p{i}": "domain, multus-status" for i in range(plugged)}
    return vmi(extra, statuses, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("configured", "record", "expected"),
    [
        ("auto", kv((1, 5, 2)), "v1"),
        ("auto", kv((1, 4, 0)), "v1"),
        ("auto", kv((1, 6, 0)), "v2"),
        ("auto", kv((1, 9, 0)), "v2"),
        ("auto", kv(None), "none"),
        ("auto", None, "none"),
        ("v1", kv((1, 9, 0)), "v1"),
        ("v2", None, "v2"),
        ("none", kv((1, 5, 0)), "none"),
        ("bogus", kv((1, 5, 0)), "none"),
    ],
)
def test_choose_slot_model(configured: str, record: KubeVirtRecord | None, expected: str) -> None:
    assert choose_slot_model(configured, record) == expected


def test_choose_slot_model_vmi_annotations_win_in_auto() -> None:
    annotated = vmi([], annotations={"kubevirt.io/pci-interface-slot-count": "6"})
    assert choose_slot_model("auto", kv((1, 5, 0)), annotated) == "annotation"
    topo = vmi([], annotations={"kubevirt.io/pci-topology-version": "v3"})
    assert choose_slot_model("auto", kv((1, 5, 0)), topo) == "v2"
    assert choose_slot_model("v1", kv((1, 9, 0)), annotated) == "v1"


def test_v1_fits_up_to_four() -> None:
    p = predict(with_ifaces(2, 1), "v1", plugs=1)
    assert not p.exhausted and p.certain and (p.capacity, p.used, p.free) == (4, 4, 0)


def test_v1_exhausted_above_four() -> None:
    p = predict(with_ifaces(3, 1), "v1", plugs=1)
    assert p.exhausted and p.certain and "restart the VM" in p.explanation


def test_v1_unplug_history_makes_it_uncertain() -> None:
    p = predict(with_ifaces(3, 1, absent=1), "v1", plugs=1)
    assert p.exhausted and not p.certain


def test_v1_root_complex_means_no_hotplug() -> None:
    the_vmi = with_ifaces(0, 1, annotations={"kubevirt.io/placePCIDevicesOnRootComplex": "true"})
    p = predict(the_vmi, "v1", plugs=1)
    assert p.exhausted and p.certain and p.capacity == 0


def test_v1_booted_without_interfaces() -> None:
    # Only the pending plug: the pod interface is absent too (no default network).
    from agent.model import parse_vmi

    raw = {
        "metadata": {"name": "v", "namespace": "n"},
        "spec": {
            "domain": {"devices": {"interfaces": [iface("br1")]}},
            "networks": [net("br1")],
        },
        "status": {"phase": "Running", "nodeName": "a"},
    }
    p = predict(parse_vmi(raw), "v1", plugs=1)
    assert p.exhausted and p.certain


def test_v1_hotplugged_volumes_make_fit_uncertain() -> None:
    p = predict(with_ifaces(1, 1, hotplug_volumes=1), "v1", plugs=1)
    assert not p.exhausted and not p.certain


def test_v2_small_memory_certain_only_beyond_both_bounds() -> None:
    # 1 GiB: T=8, M=3. 9 NICs after the plug and 4 known hot plugs → certain.
    the_vmi = with_ifaces(7, 1, memory="1Gi")
    p = predict(the_vmi, "v2", plugs=1, known_hotplugged=3)
    assert p.exhausted and p.certain
    # Same VMI without the agent's memory of earlier hot plugs: not certain → not predicted.
    p = predict(the_vmi, "v2", plugs=1, known_hotplugged=0)
    assert not p.exhausted


def test_v2_large_memory_uses_16_and_6() -> None:
    the_vmi = with_ifaces(7, 1, memory="4Gi")
    assert not predict(the_vmi, "v2", plugs=1, known_hotplugged=3).exhausted
    big = with_ifaces(16, 1, memory="4Gi")
    assert predict(big, "v2", plugs=1, known_hotplugged=6).exhausted


def test_v2_unknown_memory_is_conservative() -> None:
    the_vmi = with_ifaces(7, 1, memory=None)
    assert not predict(the_vmi, "v2", plugs=1, known_hotplugged=3).exhausted


def test_annotation_model() -> None:
    the_vmi = with_ifaces(1, 1, annotations={"kubevirt.io/pci-interface-slot-count": "2"})
    p = predict(the_vmi, "annotation", plugs=1)
    assert p.exhausted and not p.certain and p.capacity == 2
    fits = with_ifaces(1, 1, annotations={"kubevirt.io/pci-interface-slot-count": "4"})
    assert not predict(fits, "annotation", plugs=1).exhausted


def test_none_never_predicts_and_no_plug_needs_no_slot() -> None:
    assert not predict(with_ifaces(9, 1), "none", plugs=1).exhausted
    p = predict(with_ifaces(9, 0), "v1", plugs=0)
    assert not p.exhausted


def test_observation_wins() -> None:
    the_vmi = with_ifaces(0, 1, sync_pci=True)
    p = assess(the_vmi, "none", plugs=1)
    assert p.model == "observed" and p.exhausted and p.certain
    assert not assess(the_vmi, "none", plugs=0).exhausted
    assert slots.observed(with_ifaces(0, 1)) is None


@settings(max_examples=MAX_EXAMPLES)
@given(
    plugged=st.integers(0, 20),
    pending=st.integers(1, 4),
    known=st.integers(0, 10),
    large=st.booleans(),
)
def test_v2_certain_exhaustion_is_sound(plugged: int, pending: int, known: int, large: bool) -> None:
    """Whenever v2 says 'certainly exhausted', every world consistent with what we know is exhausted.

    World: U ports used at boot, h hot plugs since boot (no unplugs), with h ≥ known + pending and
    U + h ≥ n (every non-absent NIC takes a port). Exhausted iff h > max(T - U, M).
    """
    the_vmi = with_ifaces(plugged, pending, memory="4Gi" if large else "1Gi")
    p = predict(the_vmi, "v2", plugs=pending, known_hotplugged=known)
    if not (p.exhausted and p.certain):
        return
    total, min_free = (16, 6) if large else (8, 3)
    n = plugged + pending + 1
    for h in range(known + pending, n + 1):
        for used in range(max(0, n - h), 40):
            assert h > max(total - used, min_free), (h, used)


@settings(max_examples=MAX_EXAMPLES)
@given(plugged=st.integers(0, 8), pending=st.integers(1, 4), absent=st.integers(0, 2))
def test_v1_certain_exhaustion_is_sound(plugged: int, pending: int, absent: int) -> None:
    """v1 world: N boot interfaces (no unplugs when certain), capacity max(4, N) if N > 0 else 0."""
    the_vmi = with_ifaces(plugged, pending, absent=absent)
    p = predict(the_vmi, "v1", plugs=pending)
    if not (p.exhausted and p.certain):
        return
    n_after = plugged + pending + 1
    for boot in range(0, n_after - pending + 1):  # boot-time interfaces still present
        capacity = max(4, boot) if boot > 0 else 0
        assert n_after > capacity
