"""Writes and reads of collected windows: the one database seam of the collection path.

`Store.save` writes a batch of outcomes in one transaction: the windows' values, their origin
and size buckets and their ledger entries change together or not at all. Writing a window
again replaces its values (an upsert), so re-collecting never duplicates anything.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext

from sqlalchemy import Connection, Engine, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from collector.db import describe_error, reading
from collector.errors import StorageError
from collector.planner import Due
from collector.records import Collected, Failed, Outcome
from collector.targets import Target
from collector.windows import Window, to_datetime, to_timestamp
from collector.writer import LEDGER, Writer

__all__ = ["LEDGER", "Store"]


class Store:
    """Saves outcomes and reads the ledger, over an engine handed in."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = Writer(engine.dialect.name)
        # SQLite has one writer at a time. Threads of this process queue here, in order,
        # rather than in SQLite's busy handler, which sleeps in growing steps.
        self._write_lock: AbstractContextManager[object] = (
            threading.Lock() if engine.dialect.name == "sqlite" else nullcontext()
        )

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A write transaction (committed on success), taken in turn on SQLite."""
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    def save(self, outcomes: Sequence[Outcome], owner: str | None = None) -> None:
        """Write every outcome in one transaction; the claims `owner` holds on them end.
        Raises `StorageError` on failure."""
        if not outcomes:
            return
        collected = [o for o in outcomes if isinstance(o, Collected)]
        failed = [o for o in outcomes if isinstance(o, Failed)]
        try:
            with self._transaction() as conn:
                if collected:
                    self._save_collected(conn, collected, owner)
                if failed:
                    conn.exec_driver_sql(
                        self._writer.ledger_failure,
                        self._writer.ledger_failure_rows(failed, owner),
                    )
        except SQLAlchemyError as exc:
            raise StorageError(
                f"could not write {len(outcomes)} window(s) to the database: "
                f"{describe_error(exc)}; they stay due"
            ) from None

    def _save_collected(
        self, conn: Connection, items: list[Collected], owner: str | None
    ) -> None:
        w = self._writer
        keys = w.key_rows(items)
        conn.exec_driver_sql(w.upsert_windows, w.window_rows(items))
        conn.exec_driver_sql(w.delete_origins, keys)
        conn.exec_driver_sql(w.delete_sizes, keys)
        conn.exec_driver_sql(w.insert_origins, w.origin_rows(items))
        conn.exec_driver_sql(w.insert_sizes, w.size_rows(items))
        conn.exec_driver_sql(w.ledger_success, w.ledger_success_rows(items, owner))

    def plan_inputs(
        self, target: Target, cutoff: float, since: float
    ) -> tuple[list[Due], set[int]]:
        """What the planner needs for one target: the windows the ledger holds as due by
        `cutoff`, and the starts of every window it knows from `since` on."""
        cutoff = int(cutoff)  # due times are whole seconds
        c = LEDGER.c
        stmt = select(c.window_start, c.window_end, c.next_due_at, c.settled).where(
            c.org_id == target.org_id,
            c.segment == target.segment,
            or_(
                c.window_start >= to_datetime(int(since)),
                and_(c.settled.is_(False), c.next_due_at <= to_datetime(int(cutoff))),
            ),
        )
        due: list[Due] = []
        known: set[int] = set()
        try:
            with reading(self.engine) as conn:
                for start, end, next_due, settled in conn.execute(stmt):
                    window = Window(to_timestamp(start), to_timestamp(end))
                    known.add(window.start)
                    if not settled and next_due is not None and to_timestamp(next_due) <= cutoff:
                        due.append(Due(window, to_timestamp(next_due)))
        except SQLAlchemyError as exc:
            raise StorageError(f"could not read the ledger: {describe_error(exc)}") from None
        return due, known

    def claim(
        self,
        target: Target,
        windows: Sequence[Window],
        *,
        owner: str,
        now: float,
        cutoff: float,
        lease: float,
    ) -> set[int]:
        """Claim `windows` for `owner` until ``now + lease``; returns the starts it got.

        A window is claimed when its ledger row is new, or is still due by `cutoff`, unsettled,
        and not claimed by anyone else (or their claim has expired). The check and the claim
        are one statement, so of several daemons asking at once exactly one gets each window.
        Saving the window's outcome ends the claim.
        """
        if not windows:
            return set()
        c = LEDGER.c
        expires = to_datetime(int(now + lease))
        rows = [
            {
                "org_id": target.org_id,
                "segment": target.segment,
                "window_start": to_datetime(w.start),
                "window_end": to_datetime(w.end),
                "fetch_count": 0,
                "failure_count": 0,
                "next_due_at": to_datetime(int(now)),
                "settled": False,
                "lease_owner": owner,
                "lease_expires_at": expires,
            }
            for w in windows
        ]
        insert = sqlite.insert if self.engine.dialect.name == "sqlite" else postgresql.insert
        claimed: set[int] = set()
        try:
            with self._transaction() as conn:
                for chunk in range(0, len(rows), 500):
                    values = insert(LEDGER).values(rows[chunk : chunk + 500])
                    stmt = values.on_conflict_do_update(
                        index_elements=[c.org_id, c.segment, c.window_start],
                        set_={"lease_owner": owner, "lease_expires_at": expires},
                        where=and_(
                            c.settled.is_(False),
                            or_(c.next_due_at.is_(None),
                                c.next_due_at <= to_datetime(int(cutoff))),
                            or_(c.lease_expires_at.is_(None),
                                c.lease_expires_at <= to_datetime(int(now))),
                        ),
                    ).returning(c.window_start)
                    claimed.update(to_timestamp(start) for (start,) in conn.execute(stmt))
        except SQLAlchemyError as exc:
            raise StorageError(f"could not claim windows: {describe_error(exc)}") from None
        return claimed

    def release(self, owner: str | None) -> None:
        """End every claim `owner` still holds (windows it claimed but did not reach); with
        None, every claim of anyone (for a daemon that knows it is the only one)."""
        c = LEDGER.c
        stmt = update(LEDGER).values(lease_owner=None, lease_expires_at=None)
        stmt = stmt.where(c.lease_owner.is_not(None) if owner is None else c.lease_owner == owner)
        try:
            with self._transaction() as conn:
                conn.execute(stmt)
        except SQLAlchemyError as exc:
            raise StorageError(f"could not release claims: {describe_error(exc)}") from None
