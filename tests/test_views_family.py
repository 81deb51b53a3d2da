"""The PR, search, active-user and consumption tables and views of migration 0006, and
`devin_daily`, on both backends: rows go into the tables and the ledger, the views give
exact values."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, bindparam, insert, inspect, text

from collector import db, migrate
from collector.rollup import Rollups
from collector.schema import LEDGER, METADATA, METRIC_WINDOWS
from tests.helpers import postgres_schema, postgres_url
from tests.test_views import doc_queries

SIX_HOURS = 6 * 3600
LABEL_11 = "min_sessions=1,min_searches=1"
LABEL_20 = "min_sessions=2,min_searches=0"
LABEL_31 = "min_sessions=3,min_searches=1"

#: Each new table's columns, in the order the writer inserts them.
COLUMNS = {
    "pr_windows": ["prs_created_count", "prs_opened_count", "prs_closed_count",
                   "prs_merged_count"],
    "search_windows": ["searches_created_count"],
    "active_users_daily": ["min_sessions", "min_searches", "active_users"],
    "active_users_weekly": ["min_sessions", "min_searches", "active_users"],
    "active_users_monthly": ["min_sessions", "min_searches", "active_users"],
    "acu_consumption_days": ["billing_date", "acus", "acus_devin", "acus_cascade",
                             "acus_terminal", "acus_review"],
}
NEW_VIEWS = {"pr_metrics", "pr_metrics_daily", "search_metrics", "search_metrics_daily",
             "active_users", "acu_consumption_daily", "devin_daily"}
NEW_TABLES = {*COLUMNS, "organizations"}
#: What migration 0008 adds after them: the daily rollups and their views.
ROLLUP_TABLES = {"metric_days", "metric_day_origins", "metric_day_sizes", "pr_days",
                 "search_days"}
ROLLUP_VIEWS = {"session_metrics_daily_by_origin", "session_metrics_daily_by_size"}


def at(text_: str) -> datetime:
    """``'2026-11-20 06:00'`` as an aware UTC datetime."""
    return datetime.fromisoformat(text_).replace(tzinfo=UTC)


def put(conn: Connection, table: str, *values: tuple[Any, ...]) -> None:
    """Rows inserted positionally (``INSERT INTO t VALUES (...)``), as the writer does, each
    value bound with its column's type."""
    columns = list(METADATA.tables[table].columns)
    statement = text(
        f"INSERT INTO {table} VALUES ({', '.join(f':c{i}' for i in range(len(columns)))})"
    ).bindparams(*(bindparam(f"c{i}", type_=c.type) for i, c in enumerate(columns)))
    for row in values:
        assert len(row) == len(columns), table
        conn.execute(statement, {f"c{i}": v for i, v in enumerate(row)})


def window(conn: Connection, table: str, org: str, segment: str, start: datetime,
           seconds: int, *values: Any, fetched: datetime) -> None:
    put(conn, table, (org, segment, start, start + timedelta(seconds=seconds), seconds,
                      *values, fetched, {"source": table}))


def rolled_up(conn: Connection) -> None:
    """The daily rollups of the rows inserted, as the writer keeps them (`Store.save`)."""
    Rollups(conn.dialect.name).rebuild(conn)


def ledger(conn: Connection, source: str, org: str, segment: str, start: datetime,
           end: datetime, *, settled: bool) -> None:
    conn.execute(insert(LEDGER), [{
        "source": source, "org_id": org, "segment": segment, "window_start": start,
        "window_end": end, "fetch_count": 1, "failure_count": 0, "settled": settled,
    }])


def session_window(conn: Connection, org: str, segment: str, start: datetime, count: int,
                   avg: float) -> None:
    conn.execute(insert(METRIC_WINDOWS), [{
        "org_id": org, "segment": segment, "window_start": start,
        "window_end": start + timedelta(seconds=SIX_HOURS), "window_seconds": SIX_HOURS,
        "sessions_created_count": count, "sessions_created_with_playbook_count": 0,
        "sessions_created_with_search_count": 0, "sessions_with_merged_prs_count": 0,
        "avg_acus_per_session": avg, "fetched_at": start + timedelta(days=1), "raw_body": {},
    }])


def plain(value: Any) -> Any:
    """A value as both backends can be compared on: timestamps as UTC text, dates as ISO
    text, decimals as floats (booleans stay: True == 1 and False == 0)."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def query(engine: Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(plain(v) for v in row) for row in conn.execute(text(sql), params)]


def columns(engine: Engine, name: str) -> list[str]:
    return [c["name"] for c in inspect(engine).get_columns(name)]


# -- the tables ------------------------------------------------------------------------------


def test_tables_have_the_writers_column_order_and_views_the_documented_columns(
    engine: Engine,
) -> None:
    for table, values in COLUMNS.items():
        assert columns(engine, table) == ["org_id", "segment", "window_start", "window_end",
                                          "window_seconds", *values, "fetched_at", "raw_body"]
    assert columns(engine, "organizations") == [
        "org_id", "name", "origin", "first_seen_at", "last_seen_at", "removed_at"]
    expected = {
        "pr_metrics": ["org_id", "segment", "window_start", "window_end", "prs_created_count",
                       "prs_opened_count", "prs_closed_count", "prs_merged_count",
                       "fetched_at", "settled"],
        "pr_metrics_daily": ["org_id", "segment", "day", "prs_created_count",
                             "prs_opened_count", "prs_closed_count", "prs_merged_count",
                             "windows_collected", "windows_expected", "complete"],
        "search_metrics": ["org_id", "segment", "window_start", "window_end",
                           "searches_created_count", "fetched_at", "settled"],
        "search_metrics_daily": ["org_id", "segment", "day", "searches_created_count",
                                 "windows_collected", "windows_expected", "complete"],
        "active_users": ["org_id", "period", "period_start", "period_end", "active_users",
                         "min_sessions", "min_searches", "fetched_at", "final"],
        "acu_consumption_daily": ["org_id", "billing_date", "day_start", "day_end", "acus",
                                  "acus_devin", "acus_cascade", "acus_terminal",
                                  "acus_review", "fetched_at", "final"],
        "devin_daily": ["org_id", "day", "sessions", "total_acus", "prs_created",
                        "prs_merged", "searches", "daily_active_users"],
    }
    assert {view: columns(engine, view) for view in NEW_VIEWS} == expected
    indexes = {table: [tuple(i["column_names"]) for i in inspect(engine).get_indexes(table)]
               for table in COLUMNS}
    assert indexes["active_users_daily"] == [("org_id", "window_start")]
    assert indexes["acu_consumption_days"] == [("org_id", "billing_date")]


def test_organizations_table(engine: Engine) -> None:
    with engine.begin() as conn:
        put(conn, "organizations",
            ("org-a", "Alpha", "config", at("2026-11-20 00:00"), at("2026-11-22 00:00"), None),
            ("org-b", None, "discovered", at("2026-11-21 00:00"), at("2026-11-21 12:00"),
             at("2026-11-22 00:00")))
    assert query(engine, "SELECT * FROM organizations ORDER BY org_id") == [
        ("org-a", "Alpha", "config", "2026-11-20 00:00:00", "2026-11-22 00:00:00", None),
        ("org-b", None, "discovered", "2026-11-21 00:00:00", "2026-11-21 12:00:00",
         "2026-11-22 00:00:00"),
    ]


# -- PRs and searches --------------------------------------------------------------------------

DAY1, DAY2 = at("2026-11-20 00:00"), at("2026-11-21 00:00")


def fill_prs(conn: Connection, *, with_ledger: bool = True) -> None:
    """org-a, whole org: 2026-11-20 in four 6-hour windows, all fetched after they closed;
    2026-11-21 in two, the second fetched while open. A segment on 2026-11-20 and on
    2026-11-25 (a day without whole-org data). With `with_ledger`, ledger rows: the first
    window settled, the second not, and a sessions row on the third's key."""
    for i in range(4):
        start = DAY1 + timedelta(seconds=i * SIX_HOURS)
        window(conn, "pr_windows", "org-a", "all", start, SIX_HOURS,
               i + 1, 1, i, i * 2, fetched=start + timedelta(days=1))
    window(conn, "pr_windows", "org-a", "all", DAY2, SIX_HOURS, 5, 5, 0, 0,
           fetched=DAY2 + timedelta(hours=7))
    second = DAY2 + timedelta(seconds=SIX_HOURS)
    window(conn, "pr_windows", "org-a", "all", second, SIX_HOURS, 2, 2, 0, 1,
           fetched=second + timedelta(hours=1))
    window(conn, "pr_windows", "org-a", "team", DAY1, SIX_HOURS, 3, 1, 1, 1,
           fetched=DAY1 + timedelta(days=1))
    window(conn, "pr_windows", "org-a", "team", at("2026-11-25 00:00"), SIX_HOURS, 1, 1, 0, 0,
           fetched=at("2026-11-26 00:00"))
    rolled_up(conn)
    if not with_ledger:
        return
    end0 = DAY1 + timedelta(seconds=SIX_HOURS)
    ledger(conn, "prs", "org-a", "all", DAY1, end0, settled=True)
    ledger(conn, "prs", "org-a", "all", end0, end0 + timedelta(seconds=SIX_HOURS),
           settled=False)
    # another source's row for the third window: not the PR window's
    third = DAY1 + timedelta(seconds=2 * SIX_HOURS)
    ledger(conn, "sessions", "org-a", "all", third, third + timedelta(seconds=SIX_HOURS),
           settled=True)


def fill_searches(conn: Connection) -> None:
    """org-a: 2026-11-20 in four 6-hour windows fetched after they closed (3, 0, 4, 1)."""
    for i, count in enumerate((3, 0, 4, 1)):
        start = DAY1 + timedelta(seconds=i * SIX_HOURS)
        window(conn, "search_windows", "org-a", "all", start, SIX_HOURS, count,
               fetched=start + timedelta(seconds=SIX_HOURS))
    rolled_up(conn)
    ledger(conn, "searches", "org-a", "all", DAY1, DAY1 + timedelta(seconds=SIX_HOURS),
           settled=True)
    second = DAY1 + timedelta(seconds=SIX_HOURS)
    ledger(conn, "sessions", "org-a", "all", second, second + timedelta(seconds=SIX_HOURS),
           settled=True)


def test_pr_metrics_are_the_windows_settled_from_their_own_ledger_rows(engine: Engine) -> None:
    with engine.begin() as conn:
        fill_prs(conn)
    assert query(engine, "SELECT * FROM pr_metrics WHERE segment = 'all' "
                         "ORDER BY window_start") == [
        ("org-a", "all", "2026-11-20 00:00:00", "2026-11-20 06:00:00", 1, 1, 0, 0,
         "2026-11-21 00:00:00", True),
        ("org-a", "all", "2026-11-20 06:00:00", "2026-11-20 12:00:00", 2, 1, 1, 2,
         "2026-11-21 06:00:00", False),
        ("org-a", "all", "2026-11-20 12:00:00", "2026-11-20 18:00:00", 3, 1, 2, 4,
         "2026-11-21 12:00:00", False),
        ("org-a", "all", "2026-11-20 18:00:00", "2026-11-21 00:00:00", 4, 1, 3, 6,
         "2026-11-21 18:00:00", False),
        ("org-a", "all", "2026-11-21 00:00:00", "2026-11-21 06:00:00", 5, 5, 0, 0,
         "2026-11-21 07:00:00", False),
        ("org-a", "all", "2026-11-21 06:00:00", "2026-11-21 12:00:00", 2, 2, 0, 1,
         "2026-11-21 07:00:00", False),
    ]


def test_pr_metrics_daily_sums_a_utc_day_and_says_whether_it_is_complete(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        fill_prs(conn)
    assert query(engine, "SELECT * FROM pr_metrics_daily ORDER BY segment, day") == [
        ("org-a", "all", "2026-11-20", 10, 4, 6, 12, 4, 4, True),
        ("org-a", "all", "2026-11-21", 7, 7, 0, 1, 1, 4, False),
        ("org-a", "team", "2026-11-20", 3, 1, 1, 1, 1, 4, False),
        ("org-a", "team", "2026-11-25", 1, 1, 0, 0, 1, 4, False),
    ]


def test_search_metrics_and_daily(engine: Engine) -> None:
    with engine.begin() as conn:
        fill_searches(conn)
    assert query(engine, "SELECT * FROM search_metrics ORDER BY window_start") == [
        ("org-a", "all", "2026-11-20 00:00:00", "2026-11-20 06:00:00", 3,
         "2026-11-20 06:00:00", True),
        # the sessions ledger row for this key does not settle the search window
        ("org-a", "all", "2026-11-20 06:00:00", "2026-11-20 12:00:00", 0,
         "2026-11-20 12:00:00", False),
        ("org-a", "all", "2026-11-20 12:00:00", "2026-11-20 18:00:00", 4,
         "2026-11-20 18:00:00", False),
        ("org-a", "all", "2026-11-20 18:00:00", "2026-11-21 00:00:00", 1,
         "2026-11-21 00:00:00", False),
    ]
    assert query(engine, "SELECT * FROM search_metrics_daily") == [
        ("org-a", "all", "2026-11-20", 8, 4, 4, True)]


# -- active users ------------------------------------------------------------------------------


def fill_active_users(conn: Connection) -> None:
    """org-a: 2026-11-20 under two definitions, (1, 1) fetched first; 2026-11-21 under two
    definitions other than (1, 1), (3, 1) fetched last; the week of Monday 2026-11-16 and
    November 2026 under (1, 1). org-c: only 2026-11-23 under (1, 1)."""
    day = 86400
    window(conn, "active_users_daily", "org-a", LABEL_11, DAY1, day, 1, 1, 7,
           fetched=at("2026-11-21 01:00"))
    window(conn, "active_users_daily", "org-a", LABEL_20, DAY1, day, 2, 0, 4,
           fetched=at("2026-11-21 02:00"))
    window(conn, "active_users_daily", "org-a", LABEL_20, DAY2, day, 2, 0, 3,
           fetched=at("2026-11-22 00:00"))
    window(conn, "active_users_daily", "org-a", LABEL_31, DAY2, day, 3, 1, 2,
           fetched=at("2026-11-22 05:00"))
    window(conn, "active_users_daily", "org-c", LABEL_11, at("2026-11-23 00:00"), day, 1, 1,
           9, fetched=at("2026-11-24 00:00"))
    week = at("2026-11-16 00:00")
    window(conn, "active_users_weekly", "org-a", LABEL_11, week, 7 * day, 1, 1, 12,
           fetched=at("2026-11-23 03:00"))
    month = at("2026-11-01 00:00")
    window(conn, "active_users_monthly", "org-a", LABEL_11, month, 30 * day, 1, 1, 30,
           fetched=at("2026-11-22 03:00"))
    ledger(conn, "active_users.day", "org-a", LABEL_11, DAY1, DAY2, settled=True)
    # a weekly ledger row on a daily bucket's key: not the daily bucket's
    ledger(conn, "active_users.week", "org-a", LABEL_20, DAY1, DAY2, settled=True)
    ledger(conn, "active_users.week", "org-a", LABEL_11, week, week + timedelta(days=7),
           settled=True)
    ledger(conn, "active_users.month", "org-a", LABEL_11, month, at("2026-12-01 00:00"),
           settled=False)


def test_active_users_is_the_union_of_the_periods_with_thresholds_and_final(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        fill_active_users(conn)
    assert query(engine, "SELECT * FROM active_users WHERE org_id = 'org-a' "
                         "ORDER BY period, period_start, min_sessions") == [
        ("org-a", "day", "2026-11-20 00:00:00", "2026-11-21 00:00:00", 7, 1, 1,
         "2026-11-21 01:00:00", True),
        ("org-a", "day", "2026-11-20 00:00:00", "2026-11-21 00:00:00", 4, 2, 0,
         "2026-11-21 02:00:00", False),
        ("org-a", "day", "2026-11-21 00:00:00", "2026-11-22 00:00:00", 3, 2, 0,
         "2026-11-22 00:00:00", False),
        ("org-a", "day", "2026-11-21 00:00:00", "2026-11-22 00:00:00", 2, 3, 1,
         "2026-11-22 05:00:00", False),
        ("org-a", "month", "2026-11-01 00:00:00", "2026-12-01 00:00:00", 30, 1, 1,
         "2026-11-22 03:00:00", False),
        ("org-a", "week", "2026-11-16 00:00:00", "2026-11-23 00:00:00", 12, 1, 1,
         "2026-11-23 03:00:00", True),
    ]
    assert query(engine, "SELECT period, COUNT(*) FROM active_users GROUP BY period "
                         "ORDER BY period") == [("day", 5), ("month", 1), ("week", 1)]


# -- ACU consumption ---------------------------------------------------------------------------


def fill_consumption(conn: Connection) -> None:
    """org-d: the billing days 2026-11-20 (final) and 2026-11-21 (review not reported)."""
    first, second = at("2026-11-20 08:00"), at("2026-11-21 08:00")
    window(conn, "acu_consumption_days", "org-d", "all", first, 86400,
           "2026-11-20", 10.5, 8.0, 1.5, 0.5, 0.5, fetched=at("2026-11-21 09:00"))
    window(conn, "acu_consumption_days", "org-d", "all", second, 86400,
           "2026-11-21", 3.25, 3.25, 0.0, 0.0, None, fetched=at("2026-11-22 01:00"))
    ledger(conn, "consumption", "org-d", "all", first, second, settled=True)
    ledger(conn, "sessions", "org-d", "all", second, second + timedelta(days=1),
           settled=True)


def test_acu_consumption_daily_has_the_pst_billing_date_and_final(engine: Engine) -> None:
    with engine.begin() as conn:
        fill_consumption(conn)
    got = query(engine, "SELECT * FROM acu_consumption_daily ORDER BY billing_date")
    assert got == [
        ("org-d", "2026-11-20", "2026-11-20 08:00:00", "2026-11-21 08:00:00",
         10.5, 8.0, 1.5, 0.5, 0.5, "2026-11-21 09:00:00", True),
        ("org-d", "2026-11-21", "2026-11-21 08:00:00", "2026-11-22 08:00:00",
         3.25, 3.25, 0.0, 0.0, None, "2026-11-22 01:00:00", False),
    ]
    for row in got:  # billing_date is the date of day_start - 8 hours
        assert row[1] == (datetime.fromisoformat(row[2]) - timedelta(hours=8)).date().isoformat()
    # billing_date compares with a date on both backends
    assert query(engine, "SELECT COUNT(*) FROM acu_consumption_daily "
                         "WHERE billing_date >= '2026-11-21'") == [(1,)]


# -- devin_daily -------------------------------------------------------------------------------


def fill_sessions(conn: Connection) -> None:
    """org-a, whole org, 2026-11-20: 5 sessions, 9.0 ACUs; a segment the same day; org-b,
    2026-11-22: 4 sessions, 2.2 ACUs."""
    session_window(conn, "org-a", "all", DAY1, 2, 1.5)
    session_window(conn, "org-a", "all", DAY1 + timedelta(seconds=SIX_HOURS), 3, 2.0)
    session_window(conn, "org-a", "team", DAY1, 50, 1.0)
    session_window(conn, "org-b", "all", at("2026-11-22 00:00"), 4, 0.55)
    rolled_up(conn)


def test_devin_daily_joins_every_source_with_nulls_for_missing_ones(engine: Engine) -> None:
    with engine.begin() as conn:
        fill_sessions(conn)
        fill_prs(conn)
        fill_searches(conn)
        fill_active_users(conn)
        fill_consumption(conn)
    assert query(engine, "SELECT * FROM devin_daily ORDER BY org_id, day") == [
        # every source; daily active users: the (1, 1) definition, though fetched first
        ("org-a", "2026-11-20", 5, 9.0, 10, 12, 8, 7),
        # PRs and active users only: the most recently fetched definition (3, 1)
        ("org-a", "2026-11-21", None, None, 7, 1, None, 2),
        ("org-b", "2026-11-22", 4, 2.2, None, None, None, None),
        ("org-c", "2026-11-23", None, None, None, None, None, 9),
        # no org-a row for 2026-11-25 (segment data only), no org-d (consumption only)
    ]


def test_devin_daily_on_an_empty_database(engine: Engine) -> None:
    assert query(engine, "SELECT * FROM devin_daily") == []


# -- migration 0006 down and up again ------------------------------------------------------------


def test_downgrade_to_0005_removes_everything_0006_added_and_upgrade_restores_it(
    db_url: str,
) -> None:
    engine = db.create_engine_for(db_url)
    try:
        migrate.upgrade(engine, "0005")
        before = inspect(engine)
        tables_0005, views_0005 = set(before.get_table_names()), set(before.get_view_names())
        ledger_0005 = [c["name"] for c in before.get_columns("collection_ledger")]
        migrate.upgrade(engine)
        assert db.current_revision(engine) == db.SCHEMA_HEAD
        after = inspect(engine)
        assert set(after.get_table_names()) == tables_0005 | NEW_TABLES | ROLLUP_TABLES
        assert set(after.get_view_names()) == views_0005 | NEW_VIEWS | ROLLUP_VIEWS
        with engine.begin() as conn:
            fill_sessions(conn)
            fill_prs(conn)
            fill_active_users(conn)
            fill_consumption(conn)
        migrate.downgrade(engine, "0005")
        assert db.current_revision(engine) == "0005"
        down = inspect(engine)
        assert set(down.get_table_names()) == tables_0005
        assert set(down.get_view_names()) == views_0005
        assert [c["name"] for c in down.get_columns("collection_ledger")] == ledger_0005
        # the new sources' ledger rows go with their tables; the sessions rows stay
        assert query(engine, "SELECT source, org_id, COUNT(*) FROM collection_ledger "
                             "GROUP BY source, org_id ORDER BY org_id") == [
            ("sessions", "org-a", 1), ("sessions", "org-d", 1)]
        assert query(engine, "SELECT SUM(sessions_created_count) FROM session_metrics "
                             "WHERE segment = 'all'") == [(9,)]
        migrate.upgrade(engine)
        assert db.current_revision(engine) == db.SCHEMA_HEAD
        assert set(inspect(engine).get_view_names()) == views_0005 | NEW_VIEWS | ROLLUP_VIEWS
        assert query(engine, "SELECT * FROM pr_metrics") == []
        with engine.begin() as conn:
            fill_prs(conn, with_ledger=False)
        assert query(engine, "SELECT org_id, day, sessions, prs_created FROM devin_daily "
                             "ORDER BY org_id, day") == [
            ("org-a", "2026-11-20", 5, 10), ("org-a", "2026-11-21", None, 7),
            ("org-b", "2026-11-22", 4, None)]
    finally:
        engine.dispose()


# -- the examples of docs/sql.md for these views ----------------------------------------------


def family_examples() -> dict[str, dict[str, str]]:
    """The examples of docs/sql.md from its "Other metrics" section on, by title:
    {"sqlite": sql, "postgresql": sql}."""
    return doc_queries(start="## Other metrics", end="## Tables (not part of the contract)")


@pytest.fixture
def both(tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """A migrated SQLite and a migrated PostgreSQL database."""
    with postgres_schema(postgres_url()) as pg_url:
        engines = (db.create_engine_for(f"sqlite:///{tmp_path / 'f.db'}"),
                   db.create_engine_for(pg_url))
        try:
            for eng in engines:
                migrate.upgrade(eng)
            yield engines
        finally:
            for eng in engines:
                eng.dispose()


def fill_recent(conn: Connection, now: datetime) -> None:
    """org-abc123 (named "ABC"), around `now`: sessions, PRs and searches in the two hours
    before the current one; daily active users yesterday and today, this week's and this
    month's; the current billing day's ACUs (final) and the one before."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    org = "org-abc123"
    put(conn, "organizations", (org, "ABC", "config", hour, hour, None))
    for i in (1, 2):
        start = hour - timedelta(hours=i)
        session_window(conn, org, "all", start, 3 * i, 1.5)
        window(conn, "pr_windows", org, "all", start, 3600, 4 * i, 1, 0, i,
               fetched=start + timedelta(hours=1))
        window(conn, "search_windows", org, "all", start, 3600, 5 * i,
               fetched=start + timedelta(hours=1))
    rolled_up(conn)
    today = hour.replace(hour=0)
    for days, users in ((1, 11), (0, 6)):
        start = today - timedelta(days=days)
        window(conn, "active_users_daily", org, LABEL_11, start, 86400, 1, 1, users,
               fetched=hour)
        window(conn, "active_users_daily", org, LABEL_20, start, 86400, 2, 0, 1,
               fetched=hour)
    monday = today - timedelta(days=today.weekday())
    window(conn, "active_users_weekly", org, LABEL_11, monday, 7 * 86400, 1, 1, 20,
           fetched=hour)
    first = today.replace(day=1)
    window(conn, "active_users_monthly", org, LABEL_11, first, 31 * 86400, 1, 1, 40,
           fetched=hour)
    billing = (hour - timedelta(hours=8)).replace(hour=8)
    window(conn, "acu_consumption_days", org, "all", billing, 86400,
           (billing - timedelta(hours=8)).date().isoformat(), 7.5, 7.0, 0.5, 0.0, None,
           fetched=hour)
    ledger(conn, "consumption", org, "all", billing, billing + timedelta(days=1),
           settled=True)
    earlier = billing - timedelta(days=1)
    window(conn, "acu_consumption_days", org, "all", earlier, 86400,
           (earlier - timedelta(hours=8)).date().isoformat(), 2.5, 2.5, 0.0, 0.0, 0.0,
           fetched=hour)


def test_the_docs_examples_run_on_both_backends_and_agree(
    both: tuple[Engine, Engine],
) -> None:
    examples = family_examples()
    assert {"PRs created and merged for one org, last 30 days",
            "Searches for one org, last 7 days",
            "Latest daily, weekly and monthly active users for one org",
            "ACUs billed to one org this billing month, and how much of it is final",
            "Devin at a glance for one org, last 30 days",
            "Sessions and PRs per organization name, last 7 days"} <= set(examples)
    now = datetime.now(UTC)
    results: dict[str, list[list[tuple[Any, ...]]]] = {}
    for eng in both:
        with eng.begin() as conn:
            fill_recent(conn, now)
        for title, forms in examples.items():
            assert set(forms) == {"sqlite", "postgresql"}, title
            found = query(eng, forms[eng.dialect.name])
            results.setdefault(title, []).append(sorted(found, key=repr))
    for title, (on_sqlite, on_pg) in results.items():
        assert on_sqlite == on_pg, title
        assert on_sqlite, f"{title}: no rows"
    one = {title: got[0][0] for title, got in results.items() if len(got[0]) == 1}
    assert one["PRs created and merged for one org, last 30 days"] == (12, 3)
    assert one["Searches for one org, last 7 days"] == (15,)
    assert one["Latest daily, weekly and monthly active users for one org"] == (6, 20, 40)
    billed = one["ACUs billed to one org this billing month, and how much of it is final"]
    # the earlier billing day is in this billing month unless today's is its first
    first_day = (now - timedelta(hours=8)).day == 1
    assert billed == ((7.5, 7.5, 1) if first_day else (10.0, 7.5, 2))
    assert one["Sessions and PRs per organization name, last 7 days"] == ("ABC", 9, 3)
