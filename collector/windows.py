"""Window arithmetic: durations, UTC-aligned windows and the ranges they tile. Pure.

A window is the half-open interval ``[start, end)`` in Unix seconds. Windows of one size are
aligned to the UTC epoch, and because every allowed size divides a day, they are aligned to
UTC midnight too: a day holds a whole number of them, and no two windows overlap.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

DAY = 86_400

#: Window sizes that divide a day, in the spelling the configuration uses.
WINDOW_SIZES: tuple[str, ...] = (
    "5m", "10m", "15m", "20m", "30m", "1h", "2h", "3h", "4h", "6h", "8h", "12h", "1d",
)

_UNITS = {"s": 1, "m": 60, "h": 3_600, "d": DAY}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")


def parse_duration(text: str, *, allow_zero: bool = False) -> int:
    """Parse ``"90s"``, ``"15m"``, ``"6h"`` or ``"7d"`` into whole seconds (> 0 unless
    `allow_zero`)."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration: write a whole number and a unit, like 30s, 15m, 6h, 7d"
        )
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"{text!r} must be longer than zero")
    return seconds


def format_duration(seconds: int) -> str:
    """The shortest exact spelling of a duration: 3600 -> ``"1h"``, 90 -> ``"90s"``."""
    for unit, size in (("d", DAY), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def for_people(seconds: int) -> str:
    """A duration for people, to its two largest units: ``0s``, ``42s``, ``5m 3s``,
    ``2h 10m``, ``3d 4h`` (not exact: for status, progress and estimates)."""
    parts: list[str] = []
    rest = max(0, seconds)
    for unit, size in (("d", DAY), ("h", 3_600), ("m", 60), ("s", 1)):
        if rest >= size or (unit == "s" and not parts):
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return " ".join(parts[:2])


def parse_window_size(text: str) -> int:
    """Parse a window size; it must be one of `WINDOW_SIZES` (a divisor of a day)."""
    seconds = parse_duration(text)
    if DAY % seconds != 0 or seconds < 300:
        allowed = " ".join(WINDOW_SIZES)
        raise ValueError(f"window size {text!r} does not divide a day; use one of: {allowed}")
    return seconds


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """The half-open interval ``[start, end)`` in Unix seconds, UTC."""

    start: int
    end: int

    @property
    def seconds(self) -> int:
        return self.end - self.start

    @property
    def start_dt(self) -> datetime:
        return datetime.fromtimestamp(self.start, UTC)

    @property
    def end_dt(self) -> datetime:
        return datetime.fromtimestamp(self.end, UTC)

    def __str__(self) -> str:
        """``2026-11-21 14:00..15:00Z``; a bucket of a day or more names its end's date too
        (``2026-11-16 00:00..2026-11-23 00:00Z``), so it never reads as no time at all."""
        end = f"{self.end_dt:%H:%M}" if self.seconds < DAY else f"{self.end_dt:%Y-%m-%d %H:%M}"
        return f"{self.start_dt:%Y-%m-%d %H:%M}..{end}Z"


def floor_to(ts: float, size: int) -> int:
    """The start of the window of `size` seconds that contains `ts`."""
    return int(ts // size) * size


def ceil_to(ts: float, size: int) -> int:
    """The first window boundary at or after `ts`: the end of the last window of `size`
    seconds that overlaps ``[..., ts)``. The one rounding rule for range ends."""
    return -int(-ts // size) * size


def window_at(ts: float, size: int) -> Window:
    """The window of `size` seconds that contains the instant `ts`."""
    start = floor_to(ts, size)
    return Window(start, start + size)


def windows_between(start: float, end: float, size: int) -> Iterator[Window]:
    """Every window overlapping ``[start, end)``, oldest first, lazily.

    `start` is snapped down and `end` up to window boundaries, so the windows tile the range
    exactly. A range of five years yields its windows one by one; nothing is built in memory.
    """
    cursor = floor_to(start, size)
    while cursor < end:
        yield Window(cursor, cursor + size)
        cursor += size


def count_windows(start: float, end: float, size: int) -> int:
    """How many windows `windows_between(start, end, size)` yields, without yielding them."""
    first = floor_to(start, size)
    if end <= first:
        return 0
    return (ceil_to(end, size) - first) // size


def due_now(now: float, size: int) -> list[Window]:
    """The windows a one-off ``collect`` fetches: the open window and the one before it."""
    current = window_at(now, size)
    return [Window(current.start - size, current.start), current]


def to_datetime(ts: int) -> datetime:
    """Unix seconds to an aware UTC datetime."""
    return datetime.fromtimestamp(ts, UTC)


def to_timestamp(value: datetime) -> int:
    """An aware datetime (naive is taken as UTC) to whole Unix seconds."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp())
