"""When a window is due again, and when it is settled. Pure: times are Unix seconds.

A window is fetched while it is open, then again once at each repoll age after it closes
(merged-PR counts keep changing for days), and is settled after the last one. A window first
fetched after its last repoll age is settled at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass

from collector.windows import Window, window_at, windows_between


def after_success(
    window: Window, fetched_at: float, repoll_ages: Sequence[int]
) -> tuple[int | None, bool]:
    """``(next_due_at, settled)`` for a window fetched successfully at `fetched_at`."""
    for age in repoll_ages:
        due = window.end + age
        if due > fetched_at:
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

    - the open window, first, every run;
    - every window the ledger says is due (`due`, from earlier fetches or failures);
    - every window inside the catch-up `horizon` that the ledger has never seen (`known`
      holds the starts of windows it has seen), as due since it closed.

    After the open window, the rest come oldest due first, each once.
    """
    current = window_at(now, size)
    chosen: dict[int, Due] = {}
    for item in due:
        if item.window.start != current.start:
            chosen.setdefault(item.window.start, item)
    for window in windows_between(now - horizon, current.start, size):
        if window.start not in known and window.start not in chosen:
            chosen[window.start] = Due(window, window.end)
    rest = sorted(chosen.values(), key=lambda d: (d.since, d.window.start))
    return [current, *(d.window for d in rest)]
