"""Writes and reads of collected windows: the one database seam of the collection path.

`Store.save` writes a batch of outcomes in one transaction: the windows' values, their origin
and size buckets, their ledger entries and the daily rollups of their days
(`collector.rollup`) change together or not at all. Writing a window again replaces its
values (an upsert), so re-collecting never duplicates anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

from sqlalchemy import Connection, Engine, Row, and_, func, not_, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from collector.db import describe_error, reading
from collector.errors import StorageError
from collector.ledger import due_clause, free_clause, newest_failing, of, status_summary
from collector.outcomes import Collected, Failed, Outcome
from collector.planner import Due
from collector.rollup import Rollups
from collector.schema import LEDGER
from collector.store_settings import SettingsStore
from collector.targets import Target
from collector.windows import Window, to_datetime, to_timestamp
from collector.writer import Writer

__all__ = ["Store"]


class Store(SettingsStore):
    """Saves outcomes and reads the ledger, over an engine handed in; the settings and
    organizations it keeps beside them are `SettingsStore`'s."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self._writer = Writer(engine.dialect.name)
        self._rollups = Rollups(engine.dialect.name)

    def save(self, outcomes: Sequence[Outcome], owner: str | None = None) -> None:
        """Write every outcome in one transaction; the claims `owner` holds on them end.
        Raises `StorageError` on failure."""
        if not outcomes:
            return
        collected = [o for o in outcomes if isinstance(o, Collected)]
        failed = [o for o in outcomes if isinstance(o, Failed)]
        if not (collected or failed):
            return  # deferred windows write nothing: they stay due as they were
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
                f"could not write {len(collected) + len(failed)} window(s) to the database: "
                f"{describe_error(exc)}; they stay due"
            ) from None

    def _save_collected(
        self, conn: Connection, items: list[Collected], owner: str | None
    ) -> None:
        w = self._writer
        by_source: dict[str, list[Collected]] = {}
        for item in items:
            by_source.setdefault(item.target.source.name, []).append(item)
        for group in by_source.values():
            source = group[0].target.source
            statements = w.statements(source)
            conn.exec_driver_sql(statements.upsert, w.main_rows(source, group))
            if statements.deletes:
                keys = w.key_rows(group)
                for delete in statements.deletes:
                    conn.exec_driver_sql(delete, keys)
                for insert, rows in zip(
                    statements.inserts, w.child_rows(source, group), strict=True
                ):
                    if rows:
                        conn.exec_driver_sql(insert, rows)
        conn.exec_driver_sql(w.ledger_success, w.ledger_success_rows(items, owner))
        self._rollups.refresh(conn, items)

    def plan_inputs(
        self, target: Target, *, now: float, cutoff: float, since: float, interval: int
    ) -> tuple[list[Due], set[int]]:
        """What the planner needs for one target: the windows due by `cutoff` (the one due
        rule, `due_clause`), and the starts of every window the ledger knows from `since` on."""
        c = LEDGER.c
        due_rule = due_clause(now=now, cutoff=cutoff, interval=interval)
        stmt = select(
            c.window_start, c.window_end, c.next_due_at, c.last_fetched_at, due_rule.label("due")
        ).where(
            *of(target),
            or_(c.window_start >= to_datetime(int(since)), due_rule),
        )
        due: list[Due] = []
        known: set[int] = set()
        try:
            with reading(self.engine) as conn:
                for start, end, next_due, last_fetched, is_due in conn.execute(stmt):
                    window = Window(to_timestamp(start), to_timestamp(end))
                    known.add(window.start)
                    if is_due:
                        since_ts = to_timestamp(next_due) if next_due is not None else int(now)
                        if last_fetched is not None and window.end > now:
                            since_ts = min(since_ts, to_timestamp(last_fetched) + interval)
                        due.append(Due(window, since_ts, repoll=last_fetched is not None))
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
        interval: int,
        force: bool = False,
    ) -> set[int]:
        """Claim `windows` for `owner` until ``now + lease``; returns the starts it got.
        (`claim_or_held` says which of the others another process holds.)

        A window is claimed when its ledger row is new, or is due by `cutoff` (`due_clause`;
        with `force`, settled or not) and not claimed by anyone else (or their claim has
        expired). In one transaction: existing rows that qualify are claimed (one UPDATE
        whose WHERE is the check), rows never seen are created already claimed (``INSERT …
        ON CONFLICT DO NOTHING``), and the rows `owner` now holds are read back, so of
        several processes asking at once exactly one gets each window. Saving the window's
        outcome ends the claim.
        """
        return self.claim_or_held(
            target, windows, owner=owner, now=now, cutoff=cutoff, lease=lease,
            interval=interval, force=force,
        )[0]

    def claim_or_held(
        self,
        target: Target,
        windows: Sequence[Window],
        *,
        owner: str,
        now: float,
        cutoff: float,
        lease: float,
        interval: int,
        force: bool = False,
    ) -> tuple[set[int], set[int]]:
        """`claim`, and the starts of the rest that another process holds a live claim on
        (it may fetch them, or give them back: a daemon's run defers what its deadline does
        not reach), read in the same transaction."""
        if not windows:
            return set(), set()
        c = LEDGER.c
        expires = to_datetime(int(now + lease))
        free = free_clause(now)
        condition = self._takeable(now, cutoff, interval, force)
        mine = (*of(target), _among(windows))
        try:
            with self._transaction() as conn:
                conn.execute(
                    update(LEDGER)
                    .where(*mine, condition)
                    .values(lease_owner=owner, lease_expires_at=expires)
                )
                conn.exec_driver_sql(
                    self._writer.ledger_new,
                    self._writer.ledger_new_rows(target, windows, now, owner, expires),
                )
                # every window has a ledger row now: read the few this process does not hold
                # (none, in a backfill of new windows), not the many it does
                not_mine = conn.execute(
                    select(c.window_start, not_(free).label("held")).where(
                        *mine, or_(free, c.lease_owner.is_(None), c.lease_owner != owner))
                )
                taken = {w.start for w in windows}
                others: set[int] = set()
                for start, held in not_mine:
                    ts = to_timestamp(start)
                    taken.discard(ts)
                    if held:
                        others.add(ts)
                return taken, others
        except SQLAlchemyError as exc:
            raise StorageError(
                f"could not claim windows: {describe_error(exc)}; nothing was fetched for "
                "them, and they stay due"
            ) from None

    def not_due_starts(
        self,
        target: Target,
        start: int,
        end: int,
        *,
        now: float,
        cutoff: float,
        interval: int,
        force: bool = False,
    ) -> set[int]:
        """The starts in ``[start, end)`` that `claim` would not take now (done, not yet due
        again, or claimed by someone else): what a dry run counts as skipped."""
        return self._starts(target, start, end, not_(self._takeable(now, cutoff, interval, force)))

    def count_not_due(
        self,
        target: Target,
        start: int,
        end: int,
        *,
        now: float,
        cutoff: float,
        interval: int,
        force: bool = False,
    ) -> int:
        """How many of `not_due_starts` there are, without reading them."""
        return self._count(target, start, end, not_(self._takeable(now, cutoff, interval, force)))

    @staticmethod
    def _takeable(now: float, cutoff: float, interval: int, force: bool) -> ColumnElement[bool]:
        takeable = free_clause(now)
        if not force:
            takeable = and_(due_clause(now=now, cutoff=cutoff, interval=interval), takeable)
        return takeable

    def _starts(
        self, target: Target, start: int, end: int, *where: ColumnElement[bool]
    ) -> set[int]:
        c = LEDGER.c
        stmt = select(c.window_start).where(*self._within(target, start, end), *where)
        try:
            with reading(self.engine) as conn:
                return {to_timestamp(row[0]) for row in conn.execute(stmt)}
        except SQLAlchemyError as exc:
            raise StorageError(f"could not read the ledger: {describe_error(exc)}") from None

    def _count(self, target: Target, start: int, end: int, *where: ColumnElement[bool]) -> int:
        stmt = select(func.count()).select_from(LEDGER).where(
            *self._within(target, start, end), *where)
        try:
            with reading(self.engine) as conn:
                return int(conn.execute(stmt).scalar_one())
        except SQLAlchemyError as exc:
            raise StorageError(f"could not read the ledger: {describe_error(exc)}") from None

    @staticmethod
    def _within(target: Target, start: int, end: int) -> list[ColumnElement[bool]]:
        c = LEDGER.c
        return [*of(target), c.window_start >= to_datetime(start),
                c.window_start < to_datetime(end)]

    def status_rows(
        self, groups: Sequence[tuple[Sequence[str], int, int]], *, failing_limit: int
    ) -> tuple[list[Row[Any]], list[Row[Any]]]:
        """The ledger's counts per source, org and segment (`ledger.status_summary`), for
        each group of (source names, since, current_start) (sources of one calendar share
        their bounds), and the newest `failing_limit` failing windows of each target
        (`ledger.newest_failing`)."""
        summary: list[Row[Any]] = []
        try:
            with reading(self.engine) as conn:
                for sources, since, current_start in groups:
                    summary += conn.execute(status_summary(
                        since=since, current_start=current_start, sources=sources)).all()
                failures = conn.execute(newest_failing(failing_limit)).all()
        except SQLAlchemyError as exc:
            raise StorageError(f"could not read the ledger: {describe_error(exc)}") from None
        return summary, list(failures)

    def release_orphans(self, now: float, alive: Callable[[str], bool]) -> int:
        """End the claims whose holder is known to be gone (`alive(owner)` is False), such
        as those of a killed backfill on this host; returns how many owners were let go."""
        c = LEDGER.c
        stmt = select(c.lease_owner).distinct().where(
            c.lease_owner.is_not(None), c.lease_expires_at > to_datetime(int(now))
        )
        try:
            with reading(self.engine) as conn:
                owners = [owner for (owner,) in conn.execute(stmt)]
        except SQLAlchemyError as exc:
            raise StorageError(f"could not read the ledger: {describe_error(exc)}") from None
        gone = [owner for owner in owners if not alive(owner)]
        for owner in gone:
            self.release(owner)
        return len(gone)

    def release(self, owner: str) -> None:
        """End every claim `owner` still holds (windows it claimed but did not reach)."""
        c = LEDGER.c
        stmt = update(LEDGER).values(lease_owner=None, lease_expires_at=None)
        stmt = stmt.where(c.lease_owner == owner)
        try:
            with self._transaction() as conn:
                conn.execute(stmt)
        except SQLAlchemyError as exc:
            raise StorageError(f"could not release claims: {describe_error(exc)}") from None



def _among(windows: Sequence[Window]) -> ColumnElement[bool]:
    """The ledger rows of `windows` (of one target): a range when they follow each other
    without a gap (no other window of the target's calendar lies between), else a list."""
    c = LEDGER.c
    if all(b.start == a.end for a, b in pairwise(windows)):
        return and_(c.window_start >= to_datetime(windows[0].start),
                    c.window_start <= to_datetime(windows[-1].start))
    return c.window_start.in_([to_datetime(w.start) for w in windows])
