"""Migration windows (agent/window.py): both forms, time zones, midnight, the next start."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from agent.config import ConfigError, load_config
from agent.window import Schedule, WindowError, parse_windows

BERLIN = ZoneInfo("Europe/Berlin")


def at(*args: int) -> float:
    return datetime(*args, tzinfo=BERLIN).timestamp()  # type: ignore[misc]


def test_weeknight_window_across_midnight_in_its_zone() -> None:
    s = Schedule.parse("Mon-Fri 22:00-06:00 Europe/Berlin")
    monday_evening = s.state(at(2026, 3, 2, 21, 0))
    assert not monday_evening.open and monday_evening.changes_at == at(2026, 3, 2, 22, 0)
    assert monday_evening.next_open == "2026-03-02 22:00 CET"
    assert s.state(at(2026, 3, 2, 22, 0)).open  # opens on the minute
    tuesday_morning = s.state(at(2026, 3, 3, 5, 59))
    assert tuesday_morning.open and tuesday_morning.changes_at == at(2026, 3, 3, 6, 0)
    assert s.state(at(2026, 3, 7, 1, 0)).open  # Friday night's window runs into Saturday
    weekend = s.state(at(2026, 3, 7, 12, 0))
    assert not weekend.open and weekend.changes_at == at(2026, 3, 9, 22, 0)


def test_cron_form_and_several_windows() -> None:
    s = Schedule.parse("0 22 * * 1-5 8h; Sat,Sun 00:00-24:00 Europe/Berlin")
    assert s.state(at(2026, 3, 7, 12, 0)).open  # the weekend window
    first_of_month = Schedule.parse("30 1 1 * * 2h UTC")
    state = first_of_month.state(datetime(2026, 3, 15, tzinfo=ZoneInfo("UTC")).timestamp())
    assert not state.open and state.next_open == "2026-04-01 01:30 UTC"


def test_daylight_saving_is_the_calendars() -> None:
    s = Schedule.parse("02:30-03:30 Europe/Berlin")  # 2026-03-29: 02:00 → 03:00, no 02:30 that day
    state = s.state(at(2026, 3, 28, 12, 0))
    assert not state.open and state.changes_at > at(2026, 3, 28, 12, 0)


def test_no_window_is_always_open() -> None:
    assert Schedule.parse("").always and Schedule.parse("").state(0.0).open


@pytest.mark.parametrize(
    "bad",
    [
        "Mon-Fri 25:00-06:00",
        "Funday 22:00-06:00",
        "22:00-06:00 Mars/Olympus",
        "0 22 * * 1-5 eight",
        "nonsense",
    ],
)
def test_a_bad_window_is_named(bad: str) -> None:
    with pytest.raises(WindowError):
        parse_windows(bad)
    with pytest.raises(ConfigError, match="--migration-window"):
        load_config({"migration_window": bad}, env={})
