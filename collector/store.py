"""Writes and reads of collected windows: the one database seam of the collection path.

`Store.save` writes a batch of outcomes in one transaction: the windows' values, their origin
and size buckets, their ledger entries and the daily rollups of their days
(`collector.rollup`) change together or not at all. Writing a window again replaces its
values (an upsert), so re-collecting never duplicates anything.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    and_,
    bindparam,
    not_,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from collector.db import describe_error, reading
from collector.errors import ConfigError, StorageError
from collector.ledger import due_clause, free_clause, newest_failing, of, status_summary
from collector.outcomes import Collected, Failed, Outcome
from collector.planner import Due
from collector.rollup import Rollups
from collector.schema import LEDGER, METRIC_WINDOWS, ORGANIZATIONS, SETTINGS
from collector.targets import Target
from collector.windows import Window, format_duration, to_datetime, to_timestamp
from collector.writer import Writer

__all__ = ["Store"]

WINDOW_SECONDS = "window_seconds"
RATE_PREFIX = "learned_rate:"


class Store:
    """Saves outcomes and reads the ledger, over an engine handed in."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = Writer(engine.dialect.name)
        self._rollups = Rollups(engine.dialect.name)
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
        starts = [to_datetime(w.start) for w in windows]
        condition = free_clause(now)
        if not force:
            condition = and_(due_clause(now=now, cutoff=cutoff, interval=interval), condition)
        mine = (*of(target), c.window_start.in_(starts))
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
                held = conn.execute(
                    select(c.window_start, c.lease_owner).where(*mine, not_(free_clause(now)))
                )
                taken: set[int] = set()
                others: set[int] = set()
                for start, holder in held:
                    (taken if holder == owner else others).add(to_timestamp(start))
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
        takeable = free_clause(now)
        if not force:
            takeable = and_(due_clause(now=now, cutoff=cutoff, interval=interval), takeable)
        return self._starts(target, start, end, not_(takeable))

    def _starts(
        self, target: Target, start: int, end: int, *where: ColumnElement[bool]
    ) -> set[int]:
        c = LEDGER.c
        stmt = select(c.window_start).where(
            *of(target), c.window_start >= to_datetime(start), c.window_start < to_datetime(end),
            *where,
        )
        try:
            with reading(self.engine) as conn:
                return {to_timestamp(row[0]) for row in conn.execute(stmt)}
        except SQLAlchemyError as exc:
            raise StorageError(f"could not read the ledger: {describe_error(exc)}") from None

    def check_window_size(self, size: int, *, record: bool = True) -> None:
        """Refuse a window size other than the one the database was collected at: windows of
        two sizes overlap, and every total over them would count sessions twice. The first
        command that writes records the size (`record`). Raises `ConfigError`."""
        try:
            with reading(self.engine) as conn:
                stored = self._stored_window_size(conn, size)
            if stored is None and record:
                with self._transaction() as conn:  # the first writer records it
                    stored = self._stored_window_size(conn, size)
                    if stored is None:
                        # processes starting together race here: the first insert wins
                        # and the others read its value back
                        _put_setting(conn, WINDOW_SECONDS, str(size), replace=False)
                        stored = self._stored_window_size(conn, size)
        except SQLAlchemyError as exc:
            raise StorageError(
                f"could not check the window size the database was collected at: "
                f"{describe_error(exc)}. Nothing was fetched; the windows stay due"
            ) from None
        if stored is not None and stored != size:
            old, new = format_duration(stored), format_duration(size)
            raise ConfigError(
                f"the database holds {old} windows, but [windows].size is {new}: windows of two "
                "sizes overlap, and every daily total would count sessions twice. Set "
                f'[windows].size = "{old}" again, or point [database].url at a new database '
                f"for {new} windows (the old one keeps its data)"
            )

    @staticmethod
    def _stored_window_size(conn: Connection, size: int) -> int | None:
        """The recorded window size; else the size of any stored window that is not `size`
        (a database from before the size was recorded); else None."""
        s, w, c = SETTINGS.c, METRIC_WINDOWS.c, LEDGER.c
        value = conn.execute(select(s.value).where(s.key == WINDOW_SECONDS)).scalar()
        if value is not None:
            return int(value)
        other = conn.execute(
            select(w.window_seconds).where(w.window_seconds != size).limit(1)
        ).scalar()
        if other is not None:
            return int(other)
        row = conn.execute(select(c.window_start, c.window_end).limit(1)).first()
        if row is not None and to_timestamp(row[1]) - to_timestamp(row[0]) != size:
            return to_timestamp(row[1]) - to_timestamp(row[0])
        return None

    def save_rates(self, rates: Mapping[str, float], at: float) -> None:
        """Remember the rate each token ran at (by its variable's name, never the token),
        for dry-run estimates and `status` in other processes."""
        if not rates:
            return
        try:
            with self._transaction() as conn:
                for label, rate in rates.items():
                    key = f"{RATE_PREFIX}{label}"
                    value = json.dumps({"rate": round(rate, 3), "at": int(at)})
                    _put_setting(conn, key, value, replace=True)
        except SQLAlchemyError as exc:
            raise StorageError(f"could not save the learned rates: {describe_error(exc)}") from None

    def record_orgs(
        self, orgs: Sequence[tuple[str, str | None]], now: float, origin: str = "config"
    ) -> None:
        """Keep the `organizations` table in step: each of `orgs` (id, name) is present and
        seen now, found by `origin` (``config`` or ``discovered``); an org of that origin
        no longer among them is removed (its data stays)."""
        o = ORGANIZATIONS.c
        at = to_datetime(int(now))
        ids = [org_id for org_id, _ in orgs]
        try:
            with self._transaction() as conn:
                for org_id, name in orgs:
                    conn.execute(
                        text("INSERT INTO organizations (org_id, name, origin, first_seen_at,"
                             " last_seen_at, removed_at) VALUES (:id, :name, :origin, :at,"
                             " :at, NULL) ON CONFLICT (org_id) DO UPDATE SET"
                             " name = excluded.name, origin = excluded.origin,"
                             " last_seen_at = excluded.last_seen_at, removed_at = NULL")
                        .bindparams(bindparam("at", type_=ORGANIZATIONS.c.first_seen_at.type)),
                        {"id": org_id, "name": name, "origin": origin, "at": at},
                    )
                conn.execute(
                    update(ORGANIZATIONS)
                    .where(o.origin == origin, o.removed_at.is_(None), o.org_id.not_in(ids))
                    .values(removed_at=at)
                )
        except SQLAlchemyError as exc:
            raise StorageError(
                f"could not record the organizations: {describe_error(exc)}") from None

    def organizations(self) -> list[Row[Any]]:
        """The `organizations` table: org_id, name, origin, first/last seen, removed_at."""
        o = ORGANIZATIONS.c
        try:
            with reading(self.engine) as conn:
                return list(conn.execute(select(ORGANIZATIONS).order_by(o.org_id)))
        except SQLAlchemyError as exc:
            raise StorageError(f"could not read the organizations: {describe_error(exc)}") from None

    def learned_rates(self) -> dict[str, tuple[float, int]]:
        """The rates `save_rates` remembered: variable name -> (requests/s, when)."""
        s = SETTINGS.c
        try:
            with reading(self.engine) as conn:
                rows = conn.execute(
                    select(s.key, s.value).where(s.key.startswith(RATE_PREFIX))
                ).all()
        except SQLAlchemyError as exc:
            raise StorageError(f"could not read the learned rates: {describe_error(exc)}") from None
        result = {}
        for key, value in rows:
            data = json.loads(value)
            result[key.removeprefix(RATE_PREFIX)] = (float(data["rate"]), int(data["at"]))
        return result

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


def _put_setting(conn: Connection, key: str, value: str, *, replace: bool) -> None:
    """Set `key` in one statement, so processes writing it at once never conflict: the
    last writer wins (`replace`), or the first one does."""
    action = "DO UPDATE SET value = excluded.value" if replace else "DO NOTHING"
    conn.execute(
        text(f"INSERT INTO {SETTINGS.name} (key, value) VALUES (:key, :value) "
             f"ON CONFLICT (key) {action}"),
        {"key": key, "value": value},
    )
