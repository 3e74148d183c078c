"""Migration windows: when the agent may *start* migrations (``--migration-window``).

Why: a live migration copies a VM's memory over the network and briefly pauses it; operators run them
when the business can take it ("weeknights from 22:00 to 06:00"). Outside every window the agent still
watches, decides and reports (pending hot plugs wait with reason ``outside-window`` and the next
window's start), but creates nothing; migrations already running finish. An empty setting is no window:
always open.

The setting is one or more windows separated by ``;``, each in one of two forms, optionally followed
by an IANA time zone (default UTC):

* ``[DAYS] HH:MM-HH:MM [ZONE]`` — e.g. ``Mon-Fri 22:00-06:00 Europe/Berlin``, ``Sat,Sun 00:00-24:00``,
  ``01:00-05:00`` (every day); DAYS is a cron day-of-week field; an end at or before the start
  crosses midnight;
* ``MIN HOUR DOM MONTH DOW DURATION [ZONE]`` — a cron expression for the window's start and how long it
  stays open, e.g. ``0 22 * * 1-5 8h`` or ``30 1 1 * * 2h30m`` (the first of each month).

The calendar — day-of-week and month names and ranges, month lengths, daylight-saving changes — is
croniter's (a cron library kept by the Pallets community); this module only splits the setting and adds
a window's length to its start. Pure: the clock is passed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

_CLOCK: Final = re.compile(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})")
_DURATION: Final = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?")
#: get_prev is strict: ask from just after ``now`` so a window that opens at ``now`` is open.
_EPSILON: Final = timedelta(milliseconds=1)


class WindowError(ValueError):
    """The migration window setting cannot be read; the message says which part and why."""


@dataclass(frozen=True, slots=True)
class Window:
    """One window: a cron expression for its starts, how long it stays open, the zone it reads in."""

    cron: str
    length: timedelta
    zone: tzinfo
    text: str


@dataclass(frozen=True, slots=True)
class WindowState:
    """Open or not at the time asked, and when that changes (epoch seconds; the next window's start
    when closed). ``next_open`` says that start in the window's own zone, for people."""

    open: bool
    changes_at: float
    next_open: str = ""


def parse_windows(setting: str) -> tuple[Window, ...]:
    """The windows of a ``--migration-window`` value (empty: none). Raises :class:`WindowError`."""
    return tuple(_parse_one(part.strip()) for part in setting.split(";") if part.strip())


def _zone(token: str) -> tzinfo | None:
    if token.upper() == "UTC":
        return UTC
    if "/" not in token:
        return None
    try:
        return ZoneInfo(token)
    except (ZoneInfoNotFoundError, ValueError):
        raise WindowError(f"unknown time zone {token!r} (an IANA name such as Europe/Berlin)") from None


def _parse_one(text: str) -> Window:
    tokens = text.split()
    zone = _zone(tokens[-1]) if tokens else None
    if zone is not None:
        tokens = tokens[:-1]
    zone = zone or UTC
    if len(tokens) in (1, 2) and (clock := _CLOCK.fullmatch(tokens[-1])) is not None:
        days = tokens[0] if len(tokens) == 2 else "*"
        h1, m1, h2, m2 = (int(g) for g in clock.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
            raise WindowError(f"window {text!r}: {tokens[-1]} is not a time range HH:MM-HH:MM")
        length = timedelta(hours=h2, minutes=m2) - timedelta(hours=h1, minutes=m1)
        if length <= timedelta(0):
            length += timedelta(days=1)
        cron = f"{m1} {h1} * * {days}"
    elif len(tokens) == 6:
        cron = " ".join(tokens[:5])
        match = _DURATION.fullmatch(tokens[5])
        if match is None or not any(match.groups()):
            raise WindowError(f"window {text!r}: {tokens[5]!r} is not a duration such as 8h or 1h30m")
        d, h, m = (int(g or 0) for g in match.groups())
        length = timedelta(days=d, hours=h, minutes=m)
    else:
        raise WindowError(
            f"window {text!r}: expected '[DAYS] HH:MM-HH:MM [ZONE]' or "
            "'MIN HOUR DOM MONTH DOW DURATION [ZONE]'"
        )
    if not croniter.is_valid(cron):
        raise WindowError(f"window {text!r}: {cron!r} is not a valid cron schedule")
    return Window(cron, length, zone, text)


class Schedule:
    """The windows of one setting; :meth:`state` answers "open now?" (remembered until it changes, so
    asking for every decision costs a comparison)."""

    def __init__(self, windows: tuple[Window, ...]) -> None:
        self.windows = windows
        self._cached: tuple[float, WindowState] | None = None

    @classmethod
    def parse(cls, setting: str) -> Schedule:
        return cls(parse_windows(setting))

    @property
    def always(self) -> bool:
        return not self.windows

    def state(self, now: float) -> WindowState:
        if self._cached is not None and self._cached[0] <= now < self._cached[1].changes_at:
            return self._cached[1]
        state = self._compute(now)
        self._cached = (now, state)
        return state

    def _compute(self, now: float) -> WindowState:
        if not self.windows:
            return WindowState(True, float("inf"))
        ends: list[float] = []
        starts: list[tuple[float, Window, datetime]] = []
        for w in self.windows:
            at = datetime.fromtimestamp(now, w.zone)
            start: datetime = croniter(w.cron, at + _EPSILON).get_prev(datetime)
            end = start.timestamp() + w.length.total_seconds()
            if now < end:
                ends.append(end)
            nxt: datetime = croniter(w.cron, at).get_next(datetime)
            starts.append((nxt.timestamp(), w, nxt))
        if ends:
            return WindowState(True, max(ends))
        at_ts, _w, at_dt = min(starts, key=lambda s: s[0])
        return WindowState(False, at_ts, at_dt.strftime("%Y-%m-%d %H:%M %Z"))


__all__ = ["Schedule", "Window", "WindowError", "WindowState", "parse_windows"]
