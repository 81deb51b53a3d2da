"""When a window is due again, when it is settled, what a run fetches. Pure: Unix seconds.

A window is fetched on every run while it is open (every `interval`), then once at each repoll
age after it closes (merged-PR counts keep changing for days), and is settled after the last
one. A window first fetched after its last repoll age is settled at once.

Runs drift by their jitter, so a fetch up to half an interval early counts for its due time,
and a run takes every window due within half an interval from now. That slack is also what
lets several daemons share the work: a window fetched by one of them is not due again for the
others until its next due time. Due times are whole seconds, rounded so that a window is never
due sooner than its interval allows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass

from collector.calendars import Calendar
from collector.windows import Window


def slack(interval: int) -> float:
    """How early a fetch may come and still count for its due time."""
    return interval / 2


def after_success(
    window: Window, fetched_at: float, repoll_ages: Sequence[int], interval: int = 0
) -> tuple[int | None, bool]:
    """``(next_due_at, settled)`` for a window fetched successfully at `fetched_at`.

    With an `interval`, a window that will still be open at the next run is due again then;
    every command passes the configured one, so an open window fetched by `collect` or
    `backfill` is due again at the daemon's next run. With 0, nothing is due before it closes.
    """
    if interval and fetched_at + interval < window.end:
        return math.ceil(fetched_at + interval), False
    effective = fetched_at + slack(interval)
    for age in repoll_ages:
        due = window.end + age
        if due > effective:
            return due, False
    if fetched_at < window.end:
        return window.end, False
    return None, True


@dataclass(frozen=True, slots=True)
class Due:
    """A window the ledger holds as due, since when, and whether it was ever collected
    (a re-poll) or not (a gap: never fetched, or only failed)."""

    window: Window
    since: int
    repoll: bool = True


def plan(
    now: float,
    calendar: Calendar,
    due: Iterable[Due],
    known: Set[int],
    horizon: int,
) -> list[Window]:
    """The windows one run fetches for one target (cut by `calendar`), each once, in the
    order people need them:

    1. the open window (fetched on every run while it is open);
    2. re-polls of windows already collected, most overdue first, so late data settles on
       time even while a backlog is being caught up;
    3. gaps, newest first: windows never collected (failed ones from the ledger, and every
       window from the catch-up `horizon` to now that the ledger has never seen, as given
       by `known`, the starts it has seen). People look at yesterday before last week.
    """
    current = calendar.at(now)
    chosen: dict[int, Due] = {}
    for item in due:
        chosen.setdefault(item.window.start, item)
    for window in calendar.between(now - horizon, current.end):
        if window.start not in known and window.start not in chosen:
            chosen[window.start] = Due(window, min(window.end, int(now)), repoll=False)

    def order(d: Due) -> tuple[int, int, int]:
        if d.window.start == current.start:
            return (0, 0, 0)
        if d.repoll:
            return (1, d.since, d.window.start)
        return (2, -d.window.start, 0)

    return [d.window for d in sorted(chosen.values(), key=order)]
