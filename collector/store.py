"""Writes and reads of collected windows: the one SQLAlchemy seam of the collection path.

`Store.save` writes a batch of outcomes in one transaction: the window's values, its origin
and size buckets and its ledger entry change together or not at all. Writing a window again
replaces its values (an upsert), so re-collecting never duplicates anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from collector.db import describe_error
from collector.errors import StorageError
from collector.planner import Due
from collector.records import Collected, Failed, Outcome, key, origin_rows, size_rows, window_row
from collector.schema import LedgerEntry, MetricWindow, MetricWindowOrigin, MetricWindowSize
from collector.targets import Target
from collector.windows import Window, to_datetime, to_timestamp

WINDOWS: Table = MetricWindow.__table__  # type: ignore[assignment]
ORIGINS: Table = MetricWindowOrigin.__table__  # type: ignore[assignment]
SIZES: Table = MetricWindowSize.__table__  # type: ignore[assignment]
LEDGER: Table = LedgerEntry.__table__  # type: ignore[assignment]
_KEY = ("org_id", "segment", "window_start")


@dataclass(frozen=True, slots=True)
class LedgerState:
    """A ledger row as the planner and `status` read it (times in Unix seconds)."""

    org_id: str
    segment: str
    window: Window
    last_fetched_at: int | None
    fetch_count: int
    failure_count: int
    last_error: str | None
    next_due_at: int | None
    settled: bool


def _ts(value: datetime | None) -> int | None:
    return None if value is None else to_timestamp(value)


class Store:
    """Saves outcomes and reads the ledger, over an engine handed in."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._dialect = engine.dialect.name

    def save(self, outcomes: Sequence[Outcome]) -> None:
        """Write every outcome in one transaction. Raises `StorageError` on failure."""
        if not outcomes:
            return
        collected = [o for o in outcomes if isinstance(o, Collected)]
        failed = [o for o in outcomes if isinstance(o, Failed)]
        try:
            with self.engine.begin() as conn:
                if collected:
                    self._save_collected(conn, collected)
                if failed:
                    self._save_failed(conn, failed)
        except SQLAlchemyError as exc:
            raise StorageError(
                f"could not write {len(outcomes)} window(s) to the database: "
                f"{describe_error(exc)}; they stay due"
            ) from None

    def _upsert(self, table: Table, rows: list[dict[str, Any]], **set_: Any) -> Any:
        insert_fn = sqlite.insert if self._dialect == "sqlite" else postgresql.insert
        stmt = insert_fn(table)
        updates = {
            c.name: stmt.excluded[c.name] for c in table.columns if c.name not in _KEY
        } | {name: value(stmt.excluded) for name, value in set_.items()}
        return stmt.on_conflict_do_update(index_elements=list(_KEY), set_=updates), rows

    def _save_collected(self, conn: Connection, items: list[Collected]) -> None:
        conn.execute(*self._upsert(WINDOWS, [window_row(i) for i in items]))
        keys = [{f"k_{k}": v for k, v in key(i.target, i.window).items()} for i in items]
        for table in (ORIGINS, SIZES):
            conn.execute(
                delete(table).where(and_(*(table.c[k] == bindparam(f"k_{k}") for k in _KEY))),
                keys,
            )
        origins = [row for i in items for row in origin_rows(i)]
        sizes = [row for i in items for row in size_rows(i)]
        if origins:
            conn.execute(insert(ORIGINS), origins)
        if sizes:
            conn.execute(insert(SIZES), sizes)
        ledger_rows = [
            {
                **key(i.target, i.window),
                "window_end": to_datetime(i.window.end),
                "first_fetched_at": to_datetime(int(i.fetched.fetched_at)),
                "last_fetched_at": to_datetime(int(i.fetched.fetched_at)),
                "fetch_count": 1,
                "failure_count": 0,
                "last_error": None,
                "last_error_at": None,
                "next_due_at": None if i.next_due_at is None else to_datetime(i.next_due_at),
                "settled": i.settled,
            }
            for i in items
        ]
        conn.execute(
            *self._upsert(
                LEDGER,
                ledger_rows,
                first_fetched_at=lambda ex: func.coalesce(
                    LEDGER.c.first_fetched_at, ex.first_fetched_at
                ),
                fetch_count=lambda ex: LEDGER.c.fetch_count + 1,
            )
        )

    def _save_failed(self, conn: Connection, items: list[Failed]) -> None:
        rows = [
            {
                **key(i.target, i.window),
                "window_end": to_datetime(i.window.end),
                "first_fetched_at": None,
                "last_fetched_at": None,
                "fetch_count": 0,
                "failure_count": 1,
                "last_error": i.error[:2000],
                "last_error_at": to_datetime(int(i.at)),
                "next_due_at": None if i.next_due_at is None else to_datetime(i.next_due_at),
                "settled": False,
            }
            for i in items
        ]
        conn.execute(
            *self._upsert(
                LEDGER,
                rows,
                first_fetched_at=lambda ex: LEDGER.c.first_fetched_at,
                last_fetched_at=lambda ex: LEDGER.c.last_fetched_at,
                fetch_count=lambda ex: LEDGER.c.fetch_count,
                failure_count=lambda ex: LEDGER.c.failure_count + 1,
                settled=lambda ex: LEDGER.c.settled,
            )
        )

    def plan_inputs(self, target: Target, now: float, since: float) -> tuple[list[Due], set[int]]:
        """What the planner needs for one target: the ledger's due windows, and the starts
        of every window it knows from `since` on."""
        c = LEDGER.c
        stmt = select(c.window_start, c.window_end, c.next_due_at, c.settled).where(
            c.org_id == target.org_id,
            c.segment == target.segment,
            or_(
                c.window_start >= to_datetime(int(since)),
                and_(c.settled.is_(False), c.next_due_at <= to_datetime(int(now))),
            ),
        )
        due: list[Due] = []
        known: set[int] = set()
        try:
            with self.engine.connect() as conn:
                for start, end, next_due, settled in conn.execute(stmt):
                    window = Window(to_timestamp(start), to_timestamp(end))
                    known.add(window.start)
                    if not settled and next_due is not None and to_timestamp(next_due) <= now:
                        due.append(Due(window, to_timestamp(next_due)))
        except SQLAlchemyError as exc:
            raise StorageError(f"could not read the ledger: {describe_error(exc)}") from None
        return due, known

    def ledger(self, targets: Iterable[Target] = ()) -> list[LedgerState]:
        """Ledger rows, optionally only those of `targets`, oldest window first."""
        stmt = select(LEDGER).order_by(LEDGER.c.org_id, LEDGER.c.segment, LEDGER.c.window_start)
        wanted = {(t.org_id, t.segment) for t in targets}
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(stmt).mappings().all()
        except SQLAlchemyError as exc:
            raise StorageError(f"could not read the ledger: {describe_error(exc)}") from None
        return [
            LedgerState(
                org_id=r["org_id"],
                segment=r["segment"],
                window=Window(to_timestamp(r["window_start"]), to_timestamp(r["window_end"])),
                last_fetched_at=_ts(r["last_fetched_at"]),
                fetch_count=r["fetch_count"],
                failure_count=r["failure_count"],
                last_error=r["last_error"],
                next_due_at=_ts(r["next_due_at"]),
                settled=bool(r["settled"]),
            )
            for r in rows
            if not wanted or (r["org_id"], r["segment"]) in wanted
        ]
