"""Calendars: how a source cuts time into buckets. Pure: Unix seconds, UTC.

A calendar says which bucket holds an instant and where the next bucket starts. Sessions,
PRs and searches use windows of the configured size (aligned to UTC midnight); daily, weekly
and monthly active users use UTC days, Monday-based UTC weeks and UTC calendar months; ACU
consumption uses billing days, which start at 08:00 UTC (midnight PST). Every bucket is the
half-open interval ``[start, end)``; the planner, backfill and status work from this
description alone, so they treat a month like a five-minute window.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from collector.windows import DAY, Window, format_duration

WEEK = 7 * DAY
#: 1970-01-05, the first Monday after the epoch: weeks are aligned to it.
_MONDAY = 4 * DAY
#: Billing days start at midnight PST, 08:00 UTC.
BILLING_OFFSET = 8 * 3600


class Calendar(ABC):
    """Buckets of time. Subclasses give `floor` and `following`; the rest derives."""

    name: str

    @abstractmethod
    def floor(self, ts: float) -> int:
        """The start of the bucket that contains `ts`."""

    @abstractmethod
    def following(self, start: int) -> int:
        """The start of the bucket after the one starting at `start`."""

    def ceil(self, ts: float) -> int:
        """The first bucket boundary at or after `ts`."""
        start = self.floor(ts)
        return start if start == ts else self.following(start)

    def at(self, ts: float) -> Window:
        """The bucket that contains `ts`."""
        start = self.floor(ts)
        return Window(start, self.following(start))

    def between(self, start: float, end: float) -> Iterator[Window]:
        """Every bucket overlapping ``[start, end)``, oldest first, lazily."""
        cursor = self.floor(start)
        while cursor < end:
            following = self.following(cursor)
            yield Window(cursor, following)
            cursor = following

    def count(self, start: float, end: float) -> int:
        """How many buckets `between(start, end)` yields."""
        return sum(1 for _ in self.between(start, end))

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Fixed(Calendar):
    """Buckets of `size` seconds, starting `offset` seconds after each multiple of `size`
    since the epoch."""

    size: int
    offset: int = 0
    name: str = ""

    def floor(self, ts: float) -> int:
        return int((ts - self.offset) // self.size) * self.size + self.offset

    def following(self, start: int) -> int:
        return start + self.size

    def count(self, start: float, end: float) -> int:
        first = self.floor(start)
        if end <= first:
            return 0
        return (self.ceil(end) - first) // self.size

    def __str__(self) -> str:
        return self.name or f"{format_duration(self.size)} windows"


@dataclass(frozen=True, slots=True)
class Months(Calendar):
    """UTC calendar months."""

    name: str = "months"

    def floor(self, ts: float) -> int:
        moment = datetime.fromtimestamp(ts, UTC)
        return int(datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp())

    def following(self, start: int) -> int:
        moment = datetime.fromtimestamp(start, UTC)
        year, month = divmod(moment.year * 12 + moment.month, 12)  # the next month, 0-based
        return int(datetime(year, month + 1, 1, tzinfo=UTC).timestamp())


def windows(size: int) -> Fixed:
    """Windows of the configured `size` (a divisor of a day), aligned to UTC midnight."""
    return Fixed(size)


DAYS = Fixed(DAY, name="days")
WEEKS = Fixed(WEEK, _MONDAY, name="weeks")
MONTHS = Months()
BILLING_DAYS = Fixed(DAY, BILLING_OFFSET, name="billing days")
