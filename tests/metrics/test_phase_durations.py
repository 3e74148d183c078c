"""Phase durations come from the VMIM's own phaseTransitionTimestamps (parsed to ``(epoch, phase)``
points by the agent at the boundary); these pin the rules down."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from metrics.definitions import PHASES, phase_durations

T0 = 1_714_557_600.0  # 2024-05-01T10:00:00Z


def _t(phase: str, second: float) -> tuple[float, str]:
    return (T0 + second, phase)


FULL = [
    _t("Pending", 1),
    _t("Scheduling", 2),
    _t("Scheduled", 5),
    _t("PreparingTarget", 6),
    _t("TargetReady", 10),
    _t("Running", 11),
    _t("Succeeded", 31),
]


def test_each_phase_lasts_until_the_next_transition() -> None:
    assert phase_durations(FULL, T0) == [
        ("Pending", 1.0),
        ("Scheduling", 3.0),
        ("Scheduled", 1.0),
        ("PreparingTarget", 4.0),
        ("TargetReady", 1.0),
        ("Running", 20.0),
    ]


def test_unset_interval_before_first_transition_is_not_reported() -> None:
    # Created at :00, Pending recorded at :01 -> the 1 s "Unset" gap is not attributed to any phase.
    durations = dict(phase_durations(FULL, T0))
    assert durations["Pending"] == 1.0
    assert set(durations) == set(PHASES)


def test_missing_pending_is_measured_from_creation() -> None:
    transitions = [_t("Scheduling", 4), _t("Scheduled", 6), _t("Failed", 9)]
    assert phase_durations(transitions, T0) == [("Pending", 4.0), ("Scheduling", 2.0), ("Scheduled", 3.0)]
    # Without a creation timestamp there is nothing to measure Pending from.
    assert phase_durations(transitions, None) == [("Scheduling", 2.0), ("Scheduled", 3.0)]


def test_terminal_and_current_phase_have_no_duration() -> None:
    running = [_t("Pending", 0), _t("Scheduling", 3)]
    assert phase_durations(running, None) == [("Pending", 3.0)]
    assert phase_durations([_t("Pending", 0)], None) == []
    assert phase_durations([], T0) == []


def test_order_comes_from_timestamps_not_list_position() -> None:
    shuffled = [FULL[3], FULL[0], FULL[6], FULL[1], FULL[5], FULL[2], FULL[4]]
    assert phase_durations(shuffled, None) == phase_durations(FULL, None)


def test_unknown_phases_bound_their_predecessor_but_are_not_reported() -> None:
    transitions = [_t("Running", 0), _t("WaitingForSync", 7), _t("Succeeded", 9)]
    assert phase_durations(transitions, None) == [("Running", 7.0)]


def test_fractional_seconds() -> None:
    [(phase, seconds)] = phase_durations([_t("Pending", 0.25), _t("Scheduling", 1.0)], None)
    assert (phase, seconds) == ("Pending", 0.75)


def test_creation_after_first_transition_is_ignored() -> None:
    # Clock skew: a creation stamp later than the first transition must not produce a negative Pending.
    transitions = [_t("Scheduling", 2), _t("Scheduled", 4)]
    assert phase_durations(transitions, T0 + 3) == [("Scheduling", 2.0)]


@given(
    steps=st.lists(
        st.tuples(st.sampled_from(PHASES), st.integers(min_value=0, max_value=3600)), min_size=1, max_size=12
    ),
    end_gap=st.integers(min_value=0, max_value=3600),
)
def test_durations_partition_the_timeline(steps: list[tuple[str, int]], end_gap: int) -> None:
    """Whatever the phases (repeats included), each known phase gets one non-negative duration and
    together they cover exactly first transition -> terminal transition."""
    clock = 0
    transitions = []
    for index, (phase, gap) in enumerate(steps):
        clock += gap if index else 0
        transitions.append(_t(phase, clock))
    transitions.append(_t("Succeeded", clock + end_gap))
    durations = phase_durations(transitions, None)
    assert [phase for phase, _seconds in durations] == [phase for phase, _gap in steps]
    assert all(seconds >= 0 for _phase, seconds in durations)
    assert sum(seconds for _phase, seconds in durations) == clock + end_gap
