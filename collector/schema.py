"""The tables, as SQLAlchemy Core `Table`s of one `METADATA` (not ORM models: importing
`sqlalchemy.orm` would cost every command memory and start-up). Migrations in
`collector/migrations/` create them.

Users read the views (created by the migrations, documented in docs/sql.md), not these
tables.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.types import TypeEngine, UserDefinedType

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: SQLite keeps timestamps as text in the same shape its own datetime() returns, so that
#: plain SQL such as ``window_start >= datetime('now', '-1 day')`` compares correctly.
_SQLITE_DATETIME = sqlite.DATETIME(  # type: ignore[no-untyped-call]
    storage_format="%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d",
    regexp=r"(\d+)-(\d+)-(\d+) (\d+):(\d+):(\d+)",
)


@lru_cache(maxsize=4096)
def sqlite_timestamp(value: datetime) -> str:
    """An aware datetime as SQLite stores it: UTC text, ``YYYY-MM-DD HH:MM:SS``."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given where UTC is required")
    v = value.astimezone(UTC)
    return f"{v.year:04d}-{v.month:02d}-{v.day:02d} {v.hour:02d}:{v.minute:02d}:{v.second:02d}"


def timestamp_binder(dialect: str) -> Callable[[datetime], Any]:
    """How raw SQL of `dialect` binds an aware datetime: SQLite's UTC text, or the datetime
    itself (PostgreSQL's driver converts it)."""
    return sqlite_timestamp if dialect == "sqlite" else _as_is


def _as_is(value: datetime) -> datetime:
    return value


def _sqlite_bind(value: datetime | None) -> str | None:
    return None if value is None else sqlite_timestamp(value)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime: ``timestamptz`` on PostgreSQL, ISO text on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_SQLITE_DATETIME)
        return dialect.type_descriptor(DateTime(timezone=True))

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        # The same text `_SQLITE_DATETIME` would write, in one cached step: a batch binds
        # each window's timestamps once per bucket row, so this is the store's hot path.
        if dialect.name == "sqlite":
            return _sqlite_bind
        return super().bind_processor(dialect)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        # PostgreSQL only: SQLite binds through `bind_processor` above
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where UTC is required")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


RawJSON = JSON().with_variant(postgresql.JSONB(), "postgresql")


class _Untyped(UserDefinedType[str]):
    """A SQLite column declared without a type: values are kept as given."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return ""


#: A UTC date: ``date`` on PostgreSQL; on SQLite the text ``YYYY-MM-DD`` that its own
#: ``date()`` returns, in a column without a declared type, so that a view reading it has
#: the type (none) and the comparisons of a ``date()`` expression.
UTCDay = Date().with_variant(_Untyped(), "sqlite")


#: Every table below, and the names its constraints and indexes get (Alembic's env and the
#: drift check in tests/test_migrations.py compare a migrated database against it).
METADATA = MetaData(naming_convention=NAMING_CONVENTION)


def _col(name: str, type_: Any, *, nullable: bool = False, **kw: Any) -> Column[Any]:
    """A column, ``NOT NULL`` unless `nullable` says otherwise."""
    return Column(name, type_, nullable=nullable, **kw)


def _window_key() -> tuple[Column[Any], ...]:
    """The key of a window row, first: org, segment, start of the window."""
    return (
        _col("org_id", String(128), primary_key=True),
        _col("segment", String(128), primary_key=True),
        _col("window_start", UTCDateTime, primary_key=True),
    )


def _window_span() -> tuple[Column[Any], ...]:
    """After the key of a response's row: where its window ends, and its length."""
    return _col("window_end", UTCDateTime), _col("window_seconds", Integer)


def _fetched() -> tuple[Column[Any], ...]:
    """Last in a response's row: when it was fetched, and the body as the API sent it."""
    return _col("fetched_at", UTCDateTime), _col("raw_body", RawJSON)


def _range_index() -> Index:
    """A time range across orgs, for one segment (migration 0007): the primary key leads
    with `org_id`, which serves one org only."""
    return Index(None, "segment", "window_start")


#: One response of the API: an org (or segment) over one window.
METRIC_WINDOWS = Table(
    "metric_windows",
    METADATA,
    *_window_key(),
    *_window_span(),
    _col("sessions_created_count", Integer),
    _col("sessions_created_with_playbook_count", Integer),
    _col("sessions_created_with_search_count", Integer),
    _col("sessions_with_merged_prs_count", Integer),
    _col("avg_acus_per_session", Float),
    *_fetched(),
    _range_index(),
)


def _window_fk() -> ForeignKeyConstraint:
    """Bucket rows belong to their window and go when it goes."""
    w = METRIC_WINDOWS.c
    return ForeignKeyConstraint(
        ["org_id", "segment", "window_start"],
        [w.org_id, w.segment, w.window_start],
        ondelete="CASCADE",
    )


#: Sessions created in a window, by origin (one row per origin key the API sent).
METRIC_WINDOW_ORIGINS = Table(
    "metric_window_origins",
    METADATA,
    *_window_key(),
    _col("origin", String(64), primary_key=True),
    _col("sessions_created_count", Integer),
    _window_fk(),
    _range_index(),
)

#: Sessions created, and with merged PRs, in a window, by size.
METRIC_WINDOW_SIZES = Table(
    "metric_window_sizes",
    METADATA,
    *_window_key(),
    _col("size", String(32), primary_key=True),
    _col("sessions_created_count", Integer),
    _col("sessions_with_merged_prs_count", Integer),
    _window_fk(),
    _range_index(),
)

#: What is known about collecting one (source, org, segment, window): the source of truth
#: of what is done.
LEDGER = Table(
    "collection_ledger",
    METADATA,
    _col("source", String(32), primary_key=True),
    *_window_key(),
    _col("window_end", UTCDateTime),
    _col("first_fetched_at", UTCDateTime, nullable=True),
    _col("last_fetched_at", UTCDateTime, nullable=True),
    _col("fetch_count", Integer, default=0),
    _col("failure_count", Integer, default=0),
    _col("last_error", Text, nullable=True),
    _col("last_error_at", UTCDateTime, nullable=True),
    _col("next_due_at", UTCDateTime, nullable=True),
    _col("settled", Boolean, default=False),
    # The daemon fetching this window now, and until when its claim holds; see `Store.claim`.
    _col("lease_owner", String(128), nullable=True),
    _col("lease_expires_at", UTCDateTime, nullable=True),
    Index(None, "settled", "next_due_at"),
)

#: What the database must remember across configurations (``window_seconds``).
SETTINGS = Table(
    "collector_settings",
    METADATA,
    _col("key", String(64), primary_key=True),
    _col("value", Text),
)


def _org_time_index() -> Index:
    """Per-org time queries on a table whose `segment` is not fixed (a definition label)."""
    return Index(None, "org_id", "window_start")


#: PRs Devin authored, by state as of the fetch: one row per org (or segment) and window,
#: like `METRIC_WINDOWS`.
PR_WINDOWS = Table(
    "pr_windows",
    METADATA,
    *_window_key(),
    *_window_span(),
    _col("prs_created_count", Integer),
    _col("prs_opened_count", Integer),
    _col("prs_closed_count", Integer),
    _col("prs_merged_count", Integer),
    *_fetched(),
    _range_index(),
)

#: Searches created in a window; `segment` is always ``'all'`` (no user filters).
SEARCH_WINDOWS = Table(
    "search_windows",
    METADATA,
    *_window_key(),
    *_window_span(),
    _col("searches_created_count", Integer),
    *_fetched(),
    _range_index(),
)


def _active_users(name: str) -> Table:
    """Distinct active users in one calendar bucket (``[window_start, window_end)``) under
    one definition: `segment` holds its label (``'min_sessions=1,min_searches=1'``), so
    buckets of different thresholds never collide."""
    return Table(
        name,
        METADATA,
        *_window_key(),
        *_window_span(),
        _col("min_sessions", Integer),
        _col("min_searches", Integer),
        _col("active_users", Integer),
        *_fetched(),
        _org_time_index(),
    )


#: Daily active users: one row per org, definition and UTC day.
ACTIVE_USERS_DAILY = _active_users("active_users_daily")
#: Weekly active users: one row per org, definition and UTC week (Monday to Monday).
ACTIVE_USERS_WEEKLY = _active_users("active_users_weekly")
#: Monthly active users: one row per org, definition and UTC calendar month.
ACTIVE_USERS_MONTHLY = _active_users("active_users_monthly")

#: ACUs billed for one billing day: `window_start` is its start (08:00 UTC, midnight in
#: PST), `billing_date` its calendar date in PST; `segment` is always ``'all'``.
ACU_CONSUMPTION_DAYS = Table(
    "acu_consumption_days",
    METADATA,
    *_window_key(),
    *_window_span(),
    _col("billing_date", String(10)),
    _col("acus", Float),
    _col("acus_devin", Float),
    _col("acus_cascade", Float),
    _col("acus_terminal", Float),
    _col("acus_review", Float, nullable=True),
    *_fetched(),
    Index(None, "org_id", "billing_date"),
)

#: An organization the collector knows: named in the configuration, or discovered from the
#: API; `removed_at` is set once it is no longer there.
ORGANIZATIONS = Table(
    "organizations",
    METADATA,
    _col("org_id", String(128), primary_key=True),
    _col("name", String(256), nullable=True),
    _col("origin", String(16)),
    _col("first_seen_at", UTCDateTime),
    _col("last_seen_at", UTCDateTime),
    _col("removed_at", UTCDateTime, nullable=True),
)


# -- daily rollups (migration 0008): kept by the writer, read by the daily views --------------


def _rollup(name: str, *columns: Column[Any], coverage: bool = True) -> Table:
    """A rollup table: its key first (org, segment as in the windows, UTC day), then
    `columns`, then what the day's windows cover (`collector.rollup.COVERAGE`) unless
    `coverage` is false; indexed for a range of days across orgs, for one segment."""
    covered = (
        _col("windows_collected", BigInteger),
        _col("windows_expected", Integer),
        _col("complete", Boolean),
        _col("fetched_at", UTCDateTime),
    )
    return Table(
        name,
        METADATA,
        _col("org_id", String(128), primary_key=True),
        _col("segment", String(128), primary_key=True),
        _col("day", UTCDay, primary_key=True),
        *columns,
        *(covered if coverage else ()),
        Index(None, "segment", "day"),
    )


#: Sessions of one org (or segment) and UTC day: `metric_windows` summed; `acus` is the
#: unrounded sum of each window's average times its sessions.
METRIC_DAYS = _rollup(
    "metric_days",
    _col("sessions_created_count", BigInteger),
    _col("sessions_created_with_playbook_count", BigInteger),
    _col("sessions_created_with_search_count", BigInteger),
    _col("sessions_with_merged_prs_count", BigInteger),
    _col("acus", Float),
)

#: Sessions of one org (or segment) and UTC day by origin: `metric_window_origins` summed.
METRIC_DAY_ORIGINS = _rollup(
    "metric_day_origins",
    _col("origin", String(64), primary_key=True),
    _col("sessions_created_count", BigInteger),
    coverage=False,
)

#: Sessions, and with merged PRs, of one org (or segment) and UTC day by size:
#: `metric_window_sizes` summed.
METRIC_DAY_SIZES = _rollup(
    "metric_day_sizes",
    _col("size", String(32), primary_key=True),
    _col("sessions_created_count", BigInteger),
    _col("sessions_with_merged_prs_count", BigInteger),
    coverage=False,
)

#: PRs of one org (or segment) and UTC day: `pr_windows` summed.
PR_DAYS = _rollup(
    "pr_days",
    _col("prs_created_count", BigInteger),
    _col("prs_opened_count", BigInteger),
    _col("prs_closed_count", BigInteger),
    _col("prs_merged_count", BigInteger),
)

#: Searches of one org and UTC day: `search_windows` summed.
SEARCH_DAYS = _rollup("search_days", _col("searches_created_count", BigInteger))
