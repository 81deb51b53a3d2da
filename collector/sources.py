"""Sources: each endpoint the collector reads, described once. Pure.

A source states where its endpoint is, whether a target's user filters apply to it, how it
cuts time (its calendar), the model a 200 body must match, and the tables its answers fill
with the rows each answer becomes. The client, the collection step, the writer, the ledger
(keyed by source), the planner, backfill, status and the Prometheus labels all work from this
description, so adding an endpoint means describing it here, creating its tables in a
migration, and adding its views (see docs/architecture.md, "Adding an endpoint").

A windowed source may also keep daily rollups (`Rollup`): tables of UTC-day totals of its
main table or of a child table, which the writer recomputes for every day it writes
(`collector.rollup`) and the daily views read.

Two time policies exist. A *windowed* source (sessions, PRs, searches) answers one aggregate
per call, for a window of the configured size. A *bucketed* source (active users by day,
week and month; ACU consumption by billing day) answers a list of buckets of its own
calendar, so one call covers many of them; each bucket is then stored, and tracked in the
ledger, like a window.

Every source's main table has one row per target and window (or bucket): the key
(``org_id``, ``segment``, ``window_start``), ``window_end`` and ``window_seconds``, the values
of the target's `definition` parameters, the source's value columns, then ``fetched_at`` and
``raw_body`` (the JSON as the API sent it, so fields the API adds later are kept). A child
table holds buckets of a window (by origin, by size): the key, then its own columns; it is
replaced whole each time the window is written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from collector.calendars import BILLING_DAYS, DAYS, MONTHS, WEEKS, Calendar
from collector.payload import (
    ActiveUsers,
    ActiveUsersList,
    AcusByProduct,
    Consumption,
    ConsumptionDay,
    PrMetrics,
    SearchMetrics,
    SessionMetrics,
)
from collector.windows import DAY, Window

Row = tuple[Any, ...]

#: The permission the metrics endpoints need, by both names the docs use.
METRICS_PERMISSION = "ViewOrgMetrics (some pages call it ViewAccountMetrics)"
BILLING_PERMISSION = "ManageBilling (some pages call it ViewOrgConsumption)"


@dataclass(frozen=True, slots=True)
class ChildTable:
    """Buckets of one window: `rows` turns a validated answer into rows of `columns`."""

    name: str
    columns: tuple[str, ...]
    rows: Callable[[Any], list[Row]]


@dataclass(frozen=True, slots=True)
class Rollup:
    """A table of UTC-day totals of one of a source's tables, `of` (its main table or a
    child table): one row per org, segment, day and value of the `by` columns, holding each
    of `sums` summed over the day's rows, then each of `computed` (a column name and an
    aggregate over the rows, aliased ``w``). A rollup of the main table then holds what the
    day's windows cover (`collector.rollup.COVERAGE`)."""

    table: str
    of: str
    sums: tuple[str, ...]
    by: tuple[str, ...] = ()
    computed: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Item:
    """One bucket of a bucketed answer: an instant inside it (the calendar finds the
    bucket), the bucket's values, and its JSON as the API sent it."""

    instant: int
    values: Any
    body: str


@dataclass(frozen=True, slots=True, eq=False)
class Source:
    """One endpoint. `values` turns a validated answer (or, for a bucketed source, one
    `Item.values`) into the main table's `columns`.

    `calendar` None means windows of the configured size, fetched while open on every run
    and re-polled on the age ladder after they close, then settled. A bucketed source has
    a calendar of its own and `items`, which splits an answer into its buckets. `family`
    is the name configuration and ``--source`` use (the three active-user sources share
    one). `definition` names query parameters that change what a value means (active-user
    thresholds): their values are stored in columns of the same names, ahead of `columns`.
    """

    name: str
    path: str
    segmented: bool
    model: type[BaseModel]
    table: str
    columns: tuple[str, ...]
    values: Callable[[Any], Row]
    children: tuple[ChildTable, ...] = ()
    calendar: Calendar | None = None
    items: Callable[[Any], list[Item]] | None = None
    #: The values of a bucket the answer leaves out (stored as zero, with no raw body).
    empty: Callable[[Window], Any] | None = None
    family: str = ""
    definition: tuple[str, ...] = ()
    permission: str = METRICS_PERMISSION
    #: The option of `[sources.<family>]` that caps the buckets of one request.
    per_call: str = ""
    #: Daily rollups of a windowed source's tables, kept by the writer.
    daily: tuple[Rollup, ...] = ()

    @property
    def config_name(self) -> str:
        return self.family or self.name

    @property
    def bucketed(self) -> bool:
        return self.items is not None

    def url(self, org_id: str) -> str:
        return self.path.format(org_id=org_id)

    def __str__(self) -> str:
        return self.name


# -- sessions ------------------------------------------------------------------------------

def _session_values(m: SessionMetrics) -> Row:
    return (
        m.sessions_created_count,
        m.sessions_created_with_playbook_count,
        m.sessions_created_with_search_count,
        m.sessions_with_merged_prs_count,
        m.avg_acus_per_session,
    )


def _origin_rows(m: SessionMetrics) -> list[Row]:
    return list(m.sessions_created_by_origin.items())


def _size_rows(m: SessionMetrics) -> list[Row]:
    created, merged = m.sessions_created_by_size, m.sessions_with_merged_prs_by_size
    return [(size, created.get(size, 0), merged.get(size, 0)) for size in {**created, **merged}]


SESSION_COUNTS = (
    "sessions_created_count",
    "sessions_created_with_playbook_count",
    "sessions_created_with_search_count",
    "sessions_with_merged_prs_count",
)
BY_SIZE = ("sessions_created_count", "sessions_with_merged_prs_count")

SESSIONS = Source(
    name="sessions",
    path="/v3/organizations/{org_id}/metrics/sessions",
    segmented=True,
    model=SessionMetrics,
    table="metric_windows",
    columns=(*SESSION_COUNTS, "avg_acus_per_session"),
    values=_session_values,
    children=(
        ChildTable("metric_window_origins", ("origin", "sessions_created_count"), _origin_rows),
        ChildTable("metric_window_sizes", ("size", *BY_SIZE), _size_rows),
    ),
    daily=(
        # `acus` unrounded: the views round it, as they round the per-window products
        Rollup("metric_days", "metric_windows", SESSION_COUNTS, computed=(
            ("acus", "SUM(w.avg_acus_per_session * w.sessions_created_count)"),)),
        Rollup("metric_day_origins", "metric_window_origins", ("sessions_created_count",),
               by=("origin",)),
        Rollup("metric_day_sizes", "metric_window_sizes", BY_SIZE, by=("size",)),
    ),
)

# -- PRs and searches ---------------------------------------------------------------------

PR_COUNTS = ("prs_created_count", "prs_opened_count", "prs_closed_count", "prs_merged_count")

PRS = Source(
    name="prs",
    path="/v3/organizations/{org_id}/metrics/prs",
    segmented=True,
    model=PrMetrics,
    table="pr_windows",
    columns=PR_COUNTS,
    values=lambda m: (m.prs_created_count, m.prs_opened_count, m.prs_closed_count,
                      m.prs_merged_count),
    daily=(Rollup("pr_days", "pr_windows", PR_COUNTS),),
)

SEARCHES = Source(
    name="searches",
    path="/v3/organizations/{org_id}/metrics/searches",
    segmented=False,
    model=SearchMetrics,
    table="search_windows",
    columns=("searches_created_count",),
    values=lambda m: (m.searches_created_count,),
    daily=(Rollup("search_days", "search_windows", ("searches_created_count",)),),
)


# -- active users ----------------------------------------------------------------------------

def _active_user_items(answer: ActiveUsersList) -> list[Item]:
    return [Item(_seconds(b.start_time), b, json.dumps(b.model_dump(mode="json")))
            for b in answer.root]


def _active_users(period: str, path: str, calendar: Calendar, table: str, unit: str) -> Source:
    return Source(
        name=f"active_users.{period}",
        path=f"/v3/organizations/{{org_id}}/metrics/{path}",
        segmented=False,
        model=ActiveUsersList,
        table=table,
        columns=("active_users",),
        values=lambda b: (b.active_users,),
        calendar=calendar,
        items=_active_user_items,
        empty=lambda w: ActiveUsers(start_time=w.start, end_time=w.end, active_users=0),
        family="active_users",
        definition=("min_sessions", "min_searches"),
        per_call=f"{unit}_per_call",
    )


ACTIVE_DAILY = _active_users("day", "dau", DAYS, "active_users_daily", "days")
ACTIVE_WEEKLY = _active_users("week", "wau", WEEKS, "active_users_weekly", "weeks")
ACTIVE_MONTHLY = _active_users("month", "mau", MONTHS, "active_users_monthly", "months")


# -- ACU consumption -------------------------------------------------------------------------

def billing_instant(date: int) -> int:
    """An instant inside the billing day that `date` names. The docs do not say what
    instant `date` holds: a UTC midnight is read as that calendar date (whose billing day
    starts at 08:00 UTC), any other instant as itself (normally the day's 08:00 UTC start)."""
    date = _seconds(date)
    return date + BILLING_DAYS.offset if date % DAY == 0 else date


def _consumption_items(answer: Consumption) -> list[Item]:
    return [Item(billing_instant(day.date), day, json.dumps(day.model_dump(mode="json")))
            for day in answer.consumption_by_date]


def _consumption_values(day: Any) -> Row:
    products = day.acus_by_product
    start = BILLING_DAYS.floor(billing_instant(day.date))
    billing_date = datetime.fromtimestamp(start - BILLING_DAYS.offset, UTC).date().isoformat()
    return (billing_date, day.acus, products.devin, products.cascade, products.terminal,
            products.review)


CONSUMPTION = Source(
    name="consumption",
    path="/v3/organizations/{org_id}/consumption/daily",
    segmented=False,
    model=Consumption,
    table="acu_consumption_days",
    columns=("billing_date", "acus", "acus_devin", "acus_cascade", "acus_terminal",
             "acus_review"),
    values=_consumption_values,
    calendar=BILLING_DAYS,
    items=_consumption_items,
    empty=lambda w: ConsumptionDay(date=w.start, acus=0.0, acus_by_product=AcusByProduct()),
    permission=BILLING_PERMISSION,
    per_call="days_per_call",
)


def _seconds(instant: int) -> int:
    """Unix seconds; an instant given in milliseconds (past the year 5000 as seconds) is
    converted."""
    return instant // 1000 if instant > 100_000_000_000 else instant


#: Every source, by name (the ledger's and the metrics' label).
SOURCES: dict[str, Source] = {
    source.name: source
    for source in (SESSIONS, PRS, SEARCHES, ACTIVE_DAILY, ACTIVE_WEEKLY, ACTIVE_MONTHLY,
                   CONSUMPTION)
}

#: What `[sources]` and ``--source`` may name: a family, and the sources it stands for.
FAMILIES: dict[str, tuple[Source, ...]] = {
    family: tuple(s for s in SOURCES.values() if s.config_name == family)
    for family in dict.fromkeys(s.config_name for s in SOURCES.values())
}
