"""The tables, as typed SQLAlchemy models. Migrations in `collector/migrations/` create them.

Users read the views (created by the migrations, documented in docs/sql.md), not these
tables.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
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


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _range_index() -> Index:
    """A time range across orgs, for one segment (migration 0007): the primary key leads
    with `org_id`, which serves one org only."""
    return Index(None, "segment", "window_start")


class MetricWindow(Base):
    """One response of the API: an org (or segment) over one window."""

    __tablename__ = "metric_windows"
    __table_args__ = (_range_index(),)

    org_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    segment: Mapped[str] = mapped_column(String(128), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    window_seconds: Mapped[int] = mapped_column(Integer)
    sessions_created_count: Mapped[int] = mapped_column(Integer)
    sessions_created_with_playbook_count: Mapped[int] = mapped_column(Integer)
    sessions_created_with_search_count: Mapped[int] = mapped_column(Integer)
    sessions_with_merged_prs_count: Mapped[int] = mapped_column(Integer)
    avg_acus_per_session: Mapped[float] = mapped_column(Float)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)
    raw_body: Mapped[dict[str, Any]] = mapped_column(RawJSON)


def _window_fk() -> ForeignKeyConstraint:
    """Bucket rows belong to their window and go when it goes."""
    return ForeignKeyConstraint(
        ["org_id", "segment", "window_start"],
        [MetricWindow.org_id, MetricWindow.segment, MetricWindow.window_start],
        ondelete="CASCADE",
    )


class MetricWindowOrigin(Base):
    """Sessions created in a window, by origin (one row per origin key the API sent)."""

    __tablename__ = "metric_window_origins"
    __table_args__ = (_window_fk(), _range_index())

    org_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    segment: Mapped[str] = mapped_column(String(128), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    origin: Mapped[str] = mapped_column(String(64), primary_key=True)
    sessions_created_count: Mapped[int] = mapped_column(Integer)


class MetricWindowSize(Base):
    """Sessions created, and with merged PRs, in a window, by size."""

    __tablename__ = "metric_window_sizes"
    __table_args__ = (_window_fk(), _range_index())

    org_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    segment: Mapped[str] = mapped_column(String(128), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    size: Mapped[str] = mapped_column(String(32), primary_key=True)
    sessions_created_count: Mapped[int] = mapped_column(Integer)
    sessions_with_merged_prs_count: Mapped[int] = mapped_column(Integer)


class LedgerEntry(Base):
    """What is known about collecting one (source, org, segment, window): the source of
    truth of what is done."""

    __tablename__ = "collection_ledger"
    __table_args__ = (Index(None, "settled", "next_due_at"),)

    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    segment: Mapped[str] = mapped_column(String(128), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    first_fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    fetch_count: Mapped[int] = mapped_column(Integer, default=0)
    failure_count: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    settled: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The daemon fetching this window now, and until when its claim holds; see `Store.claim`.
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Setting(Base):
    """What the database must remember across configurations (``window_seconds``)."""

    __tablename__ = "collector_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


def _org_time_index() -> Index:
    """Per-org time queries on a table whose `segment` is not fixed (a definition label)."""
    return Index(None, "org_id", "window_start")


class PrWindow(Base):
    """PRs Devin authored, by state as of the fetch: one row per org (or segment) and window,
    like `MetricWindow`."""

    __tablename__ = "pr_windows"
    __table_args__ = (_range_index(),)

    org_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    segment: Mapped[str] = mapped_column(String(128), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    window_seconds: Mapped[int] = mapped_column(Integer)
    prs_created_count: Mapped[int] = mapped_column(Integer)
    prs_opened_count: Mapped[int] = mapped_column(Integer)
    prs_closed_count: Mapped[int] = mapped_column(Integer)
    prs_merged_count: Mapped[int] = mapped_column(Integer)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)
    raw_body: Mapped[dict[str, Any]] = mapped_column(RawJSON)


class SearchWindow(Base):
    """Searches created in a window; `segment` is always ``'all'`` (no user filters)."""

    __tablename__ = "search_windows"
    __table_args__ = (_range_index(),)

    org_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    segment: Mapped[str] = mapped_column(String(128), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    window_seconds: Mapped[int] = mapped_column(Integer)
    searches_created_count: Mapped[int] = mapped_column(Integer)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)
    raw_body: Mapped[dict[str, Any]] = mapped_column(RawJSON)


class _ActiveUsersBucket:
    """Distinct active users in one calendar bucket (``[window_start, window_end)``) under
    one definition: `segment` holds its label (``'min_sessions=1,min_searches=1'``), so
    buckets of different thresholds never collide."""

    org_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    segment: Mapped[str] = mapped_column(String(128), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    window_seconds: Mapped[int] = mapped_column(Integer)
    min_sessions: Mapped[int] = mapped_column(Integer)
    min_searches: Mapped[int] = mapped_column(Integer)
    active_users: Mapped[int] = mapped_column(Integer)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)
    raw_body: Mapped[dict[str, Any]] = mapped_column(RawJSON)


class ActiveUsersDaily(_ActiveUsersBucket, Base):
    """Daily active users: one row per org, definition and UTC day."""

    __tablename__ = "active_users_daily"
    __table_args__ = (_org_time_index(),)


class ActiveUsersWeekly(_ActiveUsersBucket, Base):
    """Weekly active users: one row per org, definition and UTC week (Monday to Monday)."""

    __tablename__ = "active_users_weekly"
    __table_args__ = (_org_time_index(),)


class ActiveUsersMonthly(_ActiveUsersBucket, Base):
    """Monthly active users: one row per org, definition and UTC calendar month."""

    __tablename__ = "active_users_monthly"
    __table_args__ = (_org_time_index(),)


class AcuConsumptionDay(Base):
    """ACUs billed for one billing day: `window_start` is its start (08:00 UTC, midnight in
    PST), `billing_date` its calendar date in PST; `segment` is always ``'all'``."""

    __tablename__ = "acu_consumption_days"
    __table_args__ = (Index(None, "org_id", "billing_date"),)

    org_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    segment: Mapped[str] = mapped_column(String(128), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    window_seconds: Mapped[int] = mapped_column(Integer)
    billing_date: Mapped[str] = mapped_column(String(10))
    acus: Mapped[float] = mapped_column(Float)
    acus_devin: Mapped[float] = mapped_column(Float)
    acus_cascade: Mapped[float] = mapped_column(Float)
    acus_terminal: Mapped[float] = mapped_column(Float)
    acus_review: Mapped[float | None] = mapped_column(Float)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)
    raw_body: Mapped[dict[str, Any]] = mapped_column(RawJSON)


class Organization(Base):
    """An organization the collector knows: named in the configuration, or discovered from
    the API; `removed_at` is set once it is no longer there."""

    __tablename__ = "organizations"

    org_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(256))
    origin: Mapped[str] = mapped_column(String(16))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# -- daily rollups (migration 0008): kept by the writer, read by the daily views --------------


def _day_index() -> Index:
    """A range of days across orgs, for one segment."""
    return Index(None, "segment", "day")


class _DayKey:
    """The key of a rollup row, first: org, segment (as in the windows), UTC day."""

    org_id: Mapped[str] = mapped_column(String(128), primary_key=True, sort_order=-1)
    segment: Mapped[str] = mapped_column(String(128), primary_key=True, sort_order=-1)
    day: Mapped[date | str] = mapped_column(UTCDay, primary_key=True, sort_order=-1)


class _Coverage:
    """What the day's windows cover (`collector.rollup.COVERAGE`), last."""

    windows_collected: Mapped[int] = mapped_column(BigInteger, sort_order=1)
    windows_expected: Mapped[int] = mapped_column(Integer, sort_order=1)
    complete: Mapped[bool] = mapped_column(Boolean, sort_order=1)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime, sort_order=1)


class MetricDay(_DayKey, _Coverage, Base):
    """Sessions of one org (or segment) and UTC day: `metric_windows` summed; `acus` is the
    unrounded sum of each window's average times its sessions."""

    __tablename__ = "metric_days"
    __table_args__ = (_day_index(),)

    sessions_created_count: Mapped[int] = mapped_column(BigInteger)
    sessions_created_with_playbook_count: Mapped[int] = mapped_column(BigInteger)
    sessions_created_with_search_count: Mapped[int] = mapped_column(BigInteger)
    sessions_with_merged_prs_count: Mapped[int] = mapped_column(BigInteger)
    acus: Mapped[float] = mapped_column(Float)

class MetricDayOrigin(_DayKey, Base):
    """Sessions of one org (or segment) and UTC day by origin: `metric_window_origins`
    summed."""

    __tablename__ = "metric_day_origins"
    __table_args__ = (_day_index(),)

    origin: Mapped[str] = mapped_column(String(64), primary_key=True)
    sessions_created_count: Mapped[int] = mapped_column(BigInteger)


class MetricDaySize(_DayKey, Base):
    """Sessions, and with merged PRs, of one org (or segment) and UTC day by size:
    `metric_window_sizes` summed."""

    __tablename__ = "metric_day_sizes"
    __table_args__ = (_day_index(),)

    size: Mapped[str] = mapped_column(String(32), primary_key=True)
    sessions_created_count: Mapped[int] = mapped_column(BigInteger)
    sessions_with_merged_prs_count: Mapped[int] = mapped_column(BigInteger)


class PrDay(_DayKey, _Coverage, Base):
    """PRs of one org (or segment) and UTC day: `pr_windows` summed."""

    __tablename__ = "pr_days"
    __table_args__ = (_day_index(),)

    prs_created_count: Mapped[int] = mapped_column(BigInteger)
    prs_opened_count: Mapped[int] = mapped_column(BigInteger)
    prs_closed_count: Mapped[int] = mapped_column(BigInteger)
    prs_merged_count: Mapped[int] = mapped_column(BigInteger)


class SearchDay(_DayKey, _Coverage, Base):
    """Searches of one org and UTC day: `search_windows` summed."""

    __tablename__ = "search_days"
    __table_args__ = (_day_index(),)

    searches_created_count: Mapped[int] = mapped_column(BigInteger)
