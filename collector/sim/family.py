"""The rest of the metrics family, computed from :class:`~collector.sim.data.SyntheticData`.

Pure: no I/O, stdlib only. Every function answers "what the simulated endpoint answers as of
``now``" for its arguments; the simulator (:mod:`collector.sim`) serves them and exposes
them as ``Simulator.truth_*``.

- PRs (``metrics/prs``): one PR per session that opened one, counted in the window of its
  session's ``created_at`` (only sessions created before ``now`` exist). State as of
  ``now``: merged when ``merged_at <= now``, closed when ``closed_at <= now``, else open.
  ``prs_created_count = open + merged + closed``; the ``prs_taken_over_*`` fields are 0.
  Segment filters work as on the sessions endpoint.
- Searches (``metrics/searches``): searches created in ``[time_after, min(time_before, now))``.
- Active users (``metrics/dau|wau|mau``): one item per UTC day, Monday-based UTC week or UTC
  calendar month overlapping ``[time_after, time_before)``. Buckets are always whole, even
  when the query is not aligned (the first bucket may start before ``time_after``, the last
  end after ``time_before``); ``start_time``/``end_time`` are Unix seconds, ``end_time``
  exclusive (the next bucket's start). Buckets that start at or after ``now`` are omitted;
  the current bucket counts activity up to ``now``. A user is active in a bucket when they
  created ``>= min_sessions`` sessions (by ``user_id``: service-user sessions count for
  their user) or ran ``>= min_searches`` searches in it. A threshold of 0 is met by
  everybody, so every user of the org's pool (``user-1 .. user-N``) counts.
  ``metrics/active-users`` is one such object over the window itself
  (``start_time = time_after``, ``end_time = time_before``, not widened).
- Consumption (``consumption/daily``): billing days start at 08:00 UTC; one entry per
  billing day overlapping the range that has started (start < ``now``), whole days even
  when the query is not aligned; ``date`` is the day's 08:00 UTC instant. ``devin`` is the
  ACUs of the sessions created in the day before ``now``; ``cascade``, ``terminal`` and
  ``review`` are per-org-per-day shares of ``devin`` (10-30 %, 1-5 %, 2-8 %) drawn from
  ``f"{seed}:{org_id}:{billing_day}:products"``, so the current day grows with the clock.
  Values are rounded to 2 decimals; ``acus`` is the rounded sum of the products and
  ``total_acus`` the rounded sum of the entries. Without bounds the window is the last 30
  billing days up to ``now`` (the current one included); see :func:`consumption_window`.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from collector.sim.data import DAY, HOUR, SyntheticData

__all__ = [
    "BILLING_DAY_OFFSET",
    "DEFAULT_CONSUMPTION_DAYS",
    "PERIODS",
    "active_users",
    "active_users_window",
    "billing_day_start",
    "bucket_start",
    "buckets",
    "consumption",
    "consumption_window",
    "next_bucket_start",
    "pr_metrics",
    "search_metrics",
]

#: Bucket periods of ``metrics/dau``, ``/wau`` and ``/mau``.
PERIODS: tuple[str, ...] = ("day", "week", "month")
#: Billing days start at midnight PST, 08:00 UTC.
BILLING_DAY_OFFSET = 8 * HOUR
#: Billing days ``consumption/daily`` covers when ``time_after`` is omitted.
DEFAULT_CONSUMPTION_DAYS = 30


# -- buckets -----------------------------------------------------------------------------


def bucket_start(period: str, t: int) -> int:
    """Start (Unix seconds) of the UTC day, Monday-based week or calendar month holding ``t``."""
    if period == "day":
        return t // DAY * DAY
    if period == "week":
        day = t // DAY
        return (day - (day + 3) % 7) * DAY  # 1970-01-01 was a Thursday: +3 makes Monday 0
    if period == "month":
        d = datetime.fromtimestamp(t, UTC)
        return int(datetime(d.year, d.month, 1, tzinfo=UTC).timestamp())
    raise ValueError(f"unknown period {period!r}; one of {PERIODS}")


def next_bucket_start(period: str, start: int) -> int:
    """Start of the bucket after the one starting at ``start``."""
    if period == "day":
        return start + DAY
    if period == "week":
        return start + 7 * DAY
    if period == "month":
        d = datetime.fromtimestamp(start, UTC)
        year, month = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
        return int(datetime(year, month, 1, tzinfo=UTC).timestamp())
    raise ValueError(f"unknown period {period!r}; one of {PERIODS}")


def buckets(period: str, time_after: int, time_before: int) -> list[tuple[int, int]]:
    """The whole ``(start, end)`` buckets overlapping ``[time_after, time_before)``."""
    out: list[tuple[int, int]] = []
    start = bucket_start(period, time_after)
    while start < time_before:
        end = next_bucket_start(period, start)
        out.append((start, end))
        start = end
    return out


def billing_day_start(t: int) -> int:
    """The 08:00 UTC instant starting the billing day that holds ``t``."""
    return (t - BILLING_DAY_OFFSET) // DAY * DAY + BILLING_DAY_OFFSET


# -- PRs and searches --------------------------------------------------------------------


def pr_metrics(
    data: SyntheticData,
    org_id: str,
    time_after: int,
    time_before: int,
    now: int,
    user_ids: Collection[str] | None = None,
    service_user_ids: Collection[str] | None = None,
    playbook_id: str | None = None,
) -> dict[str, Any]:
    """The ``PrMetricsResponse`` body for ``[time_after, time_before)`` as of ``now``.

    Filters as :meth:`SyntheticData.metrics`: empty lists mean "no filter"; with both lists
    a PR matches when either matches.
    """
    users = frozenset(user_ids) if user_ids else None
    svcs = frozenset(service_user_ids) if service_user_ids else None
    states: Counter[str] = Counter()
    for pr in data.prs(org_id, time_after, min(time_before, now)):
        if (users is not None or svcs is not None) and not (
            (users is not None and pr.user_id in users)
            or (svcs is not None and pr.service_user_id in svcs)
        ):
            continue
        if playbook_id is not None and pr.playbook_id != playbook_id:
            continue
        states[pr.state(now)] += 1
    return {
        "prs_created_count": states["open"] + states["merged"] + states["closed"],
        "prs_opened_count": states["open"],
        "prs_closed_count": states["closed"],
        "prs_merged_count": states["merged"],
        "prs_taken_over_count": 0,
        "prs_taken_over_opened_count": 0,
        "prs_taken_over_closed_count": 0,
        "prs_taken_over_merged_count": 0,
    }


def search_metrics(
    data: SyntheticData, org_id: str, time_after: int, time_before: int, now: int
) -> dict[str, Any]:
    """The ``SearchMetricsResponse`` body for ``[time_after, time_before)`` as of ``now``."""
    n = sum(1 for _ in data.searches(org_id, time_after, min(time_before, now)))
    return {"searches_created_count": n}


# -- active users ------------------------------------------------------------------------


def _active_count(
    data: SyntheticData, org_id: str, start: int, end: int, min_sessions: int, min_searches: int
) -> int:
    """Distinct users active in ``[start, end)`` (see the module docstring)."""
    if min_sessions <= 0 or min_searches <= 0:
        return data.users_per_org
    sessions = Counter(s.user_id for s in data.sessions(org_id, start, end))
    searches = Counter(s.user_id for s in data.searches(org_id, start, end))
    return sum(
        1
        for user in sessions.keys() | searches.keys()
        if sessions[user] >= min_sessions or searches[user] >= min_searches
    )


def active_users(
    data: SyntheticData,
    org_id: str,
    period: str,
    time_after: int,
    time_before: int,
    now: int,
    min_sessions: int = 1,
    min_searches: int = 1,
) -> list[dict[str, Any]]:
    """The ``metrics/dau|wau|mau`` body (``period`` ``day``/``week``/``month``) as of ``now``."""
    return [
        {
            "start_time": start,
            "end_time": end,
            "active_users": _active_count(
                data, org_id, start, min(end, now), min_sessions, min_searches
            ),
        }
        for start, end in buckets(period, time_after, time_before)
        if start < now
    ]


def active_users_window(
    data: SyntheticData,
    org_id: str,
    time_after: int,
    time_before: int,
    now: int,
    min_sessions: int = 1,
    min_searches: int = 1,
) -> dict[str, Any]:
    """The ``metrics/active-users`` body: one distinct count over the window itself."""
    n = _active_count(data, org_id, time_after, min(time_before, now), min_sessions, min_searches)
    return {"start_time": time_after, "end_time": time_before, "active_users": n}


# -- consumption -------------------------------------------------------------------------


def consumption_window(
    time_after: int | None, time_before: int | None, now: int
) -> tuple[int, int]:
    """The window ``consumption/daily`` covers for optional bounds.

    ``time_before`` defaults to ``now``; ``time_after`` to the start of the billing day
    ``DEFAULT_CONSUMPTION_DAYS - 1`` days before the one holding ``time_before - 1`` (so no
    bounds means the last 30 billing days, the current one included).
    """
    before = now if time_before is None else time_before
    if time_after is None:
        time_after = billing_day_start(before - 1) - (DEFAULT_CONSUMPTION_DAYS - 1) * DAY
    return time_after, before


def _product_shares(data: SyntheticData, org_id: str, day_start: int) -> tuple[float, ...]:
    rng = random.Random(f"{data.seed}:{org_id}:{day_start // DAY}:products")
    return (0.10 + 0.20 * rng.random(), 0.01 + 0.04 * rng.random(), 0.02 + 0.06 * rng.random())


def consumption(
    data: SyntheticData, org_id: str, time_after: int, time_before: int, now: int
) -> dict[str, Any]:
    """The ``ConsumptionResponse`` body for ``[time_after, time_before)`` as of ``now``
    (resolve omitted bounds with :func:`consumption_window` first)."""
    entries: list[dict[str, Any]] = []
    start = billing_day_start(time_after)
    while start < time_before and start < now:
        end = min(start + DAY, now)
        devin = round(sum(s.acus for s in data.sessions(org_id, start, end)), 2)
        cascade, terminal, review = (
            round(devin * share, 2) for share in _product_shares(data, org_id, start)
        )
        entries.append(
            {
                "date": start,
                "acus": round(devin + cascade + terminal + review, 2),
                "acus_by_product": {
                    "devin": devin,
                    "cascade": cascade,
                    "terminal": terminal,
                    "review": review,
                },
            }
        )
        start += DAY
    total = round(sum(e["acus"] for e in entries), 2)
    return {"total_acus": total, "consumption_by_date": entries}
