"""Writes and reads of collected windows: the one database seam of the collection path.

`Store.save` writes a batch of outcomes in one transaction: the windows' values, their origin
and size buckets and their ledger entries change together or not at all. Writing a window
again replaces its values (an upsert), so re-collecting never duplicates anything.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, Engine, and_, or_, select
from sqlalchemy.exc import SQLAlchemyError

from collector.db import describe_error
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
                    conn.exec_driver_sql(
                        self._writer.ledger_failure, self._writer.ledger_failure_rows(failed)
                    )
        except SQLAlchemyError as exc:
            raise StorageError(
                f"could not write {len(outcomes)} window(s) to the database: "
                f"{describe_error(exc)}; they stay due"
            ) from None

    def _save_collected(self, conn: Connection, items: list[Collected]) -> None:
        w = self._writer
        keys = w.key_rows(items)
        conn.exec_driver_sql(w.upsert_windows, w.window_rows(items))
        conn.exec_driver_sql(w.delete_origins, keys)
        conn.exec_driver_sql(w.delete_sizes, keys)
        conn.exec_driver_sql(w.insert_origins, w.origin_rows(items))
        conn.exec_driver_sql(w.insert_sizes, w.size_rows(items))
        conn.exec_driver_sql(w.ledger_success, w.ledger_success_rows(items))

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
