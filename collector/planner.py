"""When a window is due again, and when it is settled. Pure: times are Unix seconds.

A window is fetched while it is open, then again once at each repoll age after it closes
(merged-PR counts keep changing for days), and is settled after the last one. A window first
fetched after its last repoll age is settled at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from collector.windows import Window


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
