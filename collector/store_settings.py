"""What the store keeps beside the collected windows: the window size the database was
collected at, the rate each token learned, and the organizations collected; and the write
transaction every part of the store takes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from sqlalchemy import Connection, Engine, Row, bindparam, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from collector.db import describe_error, reading
from collector.errors import ConfigError, StorageError
from collector.schema import LEDGER, METRIC_WINDOWS, ORGANIZATIONS, SETTINGS
from collector.windows import format_duration, to_datetime, to_timestamp

WINDOW_SECONDS = "window_seconds"
RATE_PREFIX = "learned_rate:"


class SettingsStore:
    """The settings and organizations of a database, over an engine handed in."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
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


def _put_setting(conn: Connection, key: str, value: str, *, replace: bool) -> None:
    """Set `key` in one statement, so processes writing it at once never conflict: the
    last writer wins (`replace`), or the first one does."""
    action = "DO UPDATE SET value = excluded.value" if replace else "DO NOTHING"
    conn.execute(
        text(f"INSERT INTO {SETTINGS.name} (key, value) VALUES (:key, :value) "
             f"ON CONFLICT (key) {action}"),
        {"key": key, "value": value},
    )
