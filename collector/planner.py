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

from collector.windows import Window, window_at, windows_between


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
    """A window a run should fetch, and since when it has been due (for ordering)."""

    window: Window
    since: int


def plan(
    now: float,
    size: int,
    due: Iterable[Due],
    known: Set[int],
    horizon: int,
) -> list[Window]:
    """The windows one run fetches for one target, in order.

    - every window the ledger says is due (`due`: from earlier fetches or failures);
    - every window from the catch-up `horizon` up to the open one that the ledger has never
      seen (`known` holds the starts of the windows it has seen), as due since it closed.

    The open window comes first when it is due; the rest follow oldest due first, each once.
    """
    current = window_at(now, size)
    chosen: dict[int, Due] = {}
    for item in due:
        chosen.setdefault(item.window.start, item)
    for window in windows_between(now - horizon, current.end, size):
        if window.start not in known and window.start not in chosen:
            chosen[window.start] = Due(window, min(window.end, int(now)))
    ordered = sorted(
        chosen.values(),
        key=lambda d: (d.window.start != current.start, d.since, d.window.start),
    )
    return [d.window for d in ordered]
