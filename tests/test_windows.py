from __future__ import annotations

import itertools

import pytest

from collector.planner import after_success
from collector.windows import (
    DAY,
    WINDOW_SIZES,
    Window,
    count_windows,
    due_now,
    for_people,
    format_duration,
    parse_duration,
    parse_window_size,
    window_at,
    windows_between,
)
from tests.helpers import T0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("6h", 21_600), ("7d", 604_800), (" 2h ", 7200)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "15", "m", "1.5h", "-1h", "0m", "1w", "1 hour"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|longer than zero"):
        parse_duration(text)


def test_every_allowed_window_size_tiles_a_day() -> None:
    for size in WINDOW_SIZES:
        seconds = parse_window_size(size)
        day = list(windows_between(T0, T0 + DAY, seconds))
        assert len(day) == DAY // seconds
        assert day[0].start == T0
        assert day[-1].end == T0 + DAY
        assert all(a.end == b.start for a, b in itertools.pairwise(day))


@pytest.mark.parametrize("size", ["7m", "25m", "5h", "2d", "90s"])
def test_window_sizes_that_do_not_divide_a_day_are_refused(size: str) -> None:
    with pytest.raises(ValueError, match="does not divide a day"):
        parse_window_size(size)


def test_windows_between_snaps_to_boundaries_and_counts() -> None:
    windows = list(windows_between(T0 + 1800, T0 + 3 * 3600 + 1, 3600))
    assert windows == [Window(T0 + h * 3600, T0 + (h + 1) * 3600) for h in range(4)]
    assert count_windows(T0 + 1800, T0 + 3 * 3600 + 1, 3600) == 4
    assert count_windows(T0, T0 + 3600, 3600) == 1
    assert count_windows(T0, T0, 3600) == 0
    assert list(windows_between(T0, T0, 3600)) == []


def test_window_at_and_due_now() -> None:
    assert window_at(T0 + 3599, 3600) == Window(T0, T0 + 3600)
    assert window_at(T0 + 3600, 3600) == Window(T0 + 3600, T0 + 7200)
    assert due_now(T0 + 4000, 3600) == [Window(T0, T0 + 3600), Window(T0 + 3600, T0 + 7200)]
    assert str(Window(T0, T0 + 3600)) == "2026-11-20 00:00..01:00Z"
    assert str(Window(T0 - 3600, T0)) == "2026-11-19 23:00..00:00Z"
    # a day's or a week's bucket names its end's date: never "00:00..00:00Z"
    assert str(Window(T0, T0 + DAY)) == "2026-11-20 00:00..2026-11-21 00:00Z"
    assert str(Window(T0 + 8 * 3600, T0 + 8 * 3600 + 7 * DAY)) == (
        "2026-11-20 08:00..2026-11-27 08:00Z")


def test_planner_repolls_at_ages_then_settles() -> None:
    ages = [3600, 6 * 3600, DAY]
    w = Window(T0, T0 + 3600)
    assert after_success(w, T0 + 100, ages) == (w.end + 3600, False)  # open: first age
    assert after_success(w, w.end + 3600, ages) == (w.end + 6 * 3600, False)
    assert after_success(w, w.end + 7 * 3600, ages) == (w.end + DAY, False)
    assert after_success(w, w.end + DAY, ages) == (None, True)
    assert after_success(w, w.end + 30 * DAY, ages) == (None, True)  # first seen late
    assert after_success(w, T0 + 100, []) == (w.end, False)
    assert after_success(w, w.end, []) == (None, True)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (-5, "0s"), (42, "42s"), (60, "1m"), (72, "1m 12s"), (3_725, "1h 2m"),
     (626_171, "7d 5h"), (86_400, "1d")],
)
def test_a_duration_for_people_keeps_its_two_largest_units(seconds: int, text: str) -> None:
    assert for_people(seconds) == text
