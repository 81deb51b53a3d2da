"""The write statements of the store, as SQL text for one dialect, and the rows they take.

A window becomes about fifteen rows (its source's main row, its bucket rows, its ledger
entry), and a backfill writes hundreds of windows a second, so the rows go to the driver's
``executemany`` as plain tuples, without a per-row pass through SQLAlchemy's parameter
machinery. The statements are the same on SQLite and PostgreSQL (``INSERT … ON CONFLICT DO
UPDATE``); only the placeholders and the encoding of timestamps and JSON differ. Statements
are built from each source's description (`collector.sources`) and checked against the table
models, so the text cannot name a column the schema lacks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Table

from collector.outcomes import Collected, Failed
from collector.schema import LEDGER, METADATA, timestamp_binder
from collector.sources import Source
from collector.targets import Target
from collector.windows import Window, to_datetime

KEY = ("org_id", "segment", "window_start")
LEDGER_KEY = ("source", *KEY)

Row = tuple[Any, ...]

_LEDGER_COLUMNS = (*LEDGER_KEY, "window_end", "first_fetched_at", "last_fetched_at",
                   "fetch_count", "failure_count", "last_error", "last_error_at", "next_due_at",
                   "settled", "lease_owner", "lease_expires_at")


@dataclass(frozen=True, slots=True)
class SourceStatements:
    """The statements that write one source's tables."""

    upsert: str
    deletes: tuple[str, ...]
    inserts: tuple[str, ...]


class Writer:
    """SQL text and row builders for one dialect (``sqlite`` or ``postgresql``)."""

    def __init__(self, dialect: str) -> None:
        _check(LEDGER, _LEDGER_COLUMNS)
        sqlite = dialect == "sqlite"
        self._ph = "?" if sqlite else "%s"
        self._json_ph = "?" if sqlite else "%s::jsonb"
        self._ts = timestamp_binder(dialect)
        # A window's start, end and fetch time are bound in several rows of one batch (its
        # main row, each bucket row, its ledger row): each is converted once.
        self._stamp: Callable[[int], Any] = lru_cache(maxsize=1024)(
            lambda ts: self._ts(to_datetime(ts)))
        self._sources: dict[str, SourceStatements] = {}
        # A claim ends with the outcome of its holder only: a writer whose own claim expired
        # (or who held none) leaves the current holder's claim alone.
        release = {
            "lease_owner": f"CASE WHEN collection_ledger.lease_owner = {self._ph} THEN NULL "
            "ELSE collection_ledger.lease_owner END",
            "lease_expires_at": f"CASE WHEN collection_ledger.lease_owner = {self._ph} "
            "THEN NULL ELSE collection_ledger.lease_expires_at END",
        }
        self.ledger_success = self._upsert(
            LEDGER,
            LEDGER_KEY,
            first_fetched_at="COALESCE(collection_ledger.first_fetched_at, "
            "excluded.first_fetched_at)",
            fetch_count="collection_ledger.fetch_count + 1",
            **release,
        )
        # A failure never overwrites a newer success, nor touches a settled window: its
        # values stay what the last success stored, and it is not failing.
        superseded = (
            "(collection_ledger.settled OR (collection_ledger.last_fetched_at IS NOT NULL "
            "AND collection_ledger.last_fetched_at > excluded.last_error_at))"
        )

        def unless_superseded(column: str, value: str) -> str:
            return f"CASE WHEN {superseded} THEN collection_ledger.{column} ELSE {value} END"

        self.ledger_failure = self._upsert(
            LEDGER,
            LEDGER_KEY,
            first_fetched_at="collection_ledger.first_fetched_at",
            last_fetched_at="collection_ledger.last_fetched_at",
            fetch_count="collection_ledger.fetch_count",
            failure_count=unless_superseded(
                "failure_count", "collection_ledger.failure_count + 1"
            ),
            last_error=unless_superseded("last_error", "excluded.last_error"),
            last_error_at=unless_superseded("last_error_at", "excluded.last_error_at"),
            next_due_at=unless_superseded("next_due_at", "excluded.next_due_at"),
            settled="collection_ledger.settled",
            **release,
        )

        # Rows of windows never seen, created already claimed (see `Store.claim`).
        self.ledger_new = (
            f"{self._insert(LEDGER)} ON CONFLICT ({', '.join(LEDGER_KEY)}) DO NOTHING"
        )

    def statements(self, source: Source) -> SourceStatements:
        """The statements of `source`, built (and checked against the schema) once."""
        found = self._sources.get(source.name)
        if found is None:
            main = _table(source.table)
            _check(main, (*KEY, "window_end", "window_seconds", *source.definition,
                          *source.columns, "fetched_at", "raw_body"))
            children = [_table(child.name) for child in source.children]
            for table, child in zip(children, source.children, strict=True):
                _check(table, (*KEY, *child.columns))
            found = SourceStatements(
                self._upsert(main, KEY),
                tuple(self._delete(table) for table in children),
                tuple(self._insert(table) for table in children),
            )
            self._sources[source.name] = found
        return found

    # -- statements ------------------------------------------------------------------------

    def _placeholders(self, table: Table) -> str:
        return ", ".join(
            self._json_ph if c.name == "raw_body" else self._ph for c in table.columns
        )

    def _insert(self, table: Table) -> str:
        columns = ", ".join(c.name for c in table.columns)
        return f"INSERT INTO {table.name} ({columns}) VALUES ({self._placeholders(table)})"

    def _upsert(self, table: Table, key: tuple[str, ...], **expressions: str) -> str:
        updates = ", ".join(
            f"{c.name} = {expressions.get(c.name, f'excluded.{c.name}')}"
            for c in table.columns
            if c.name not in key
        )
        return f"{self._insert(table)} ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"

    def _delete(self, table: Table) -> str:
        where = " AND ".join(f"{name} = {self._ph}" for name in KEY)
        return f"DELETE FROM {table.name} WHERE {where}"

    # -- rows, in table column order -------------------------------------------------------

    def _key(self, item: Collected | Failed) -> Row:
        return (item.target.org_id, item.target.segment, self._stamp(item.window.start))

    def key_rows(self, items: Sequence[Collected]) -> list[Row]:
        return [self._key(item) for item in items]

    def main_rows(self, source: Source, items: Sequence[Collected]) -> list[Row]:
        values = source.values
        return [
            (
                *self._key(item),
                self._stamp(item.window.end),
                item.window.seconds,
                *item.target.definition,
                *values(item.fetched.metrics),
                self._stamp(int(item.fetched.fetched_at)),
                item.fetched.body,
            )
            for item in items
        ]

    def child_rows(self, source: Source, items: Sequence[Collected]) -> list[list[Row]]:
        """Per child table of `source`, the rows of every item."""
        result: list[list[Row]] = []
        for child in source.children:
            rows: list[Row] = []
            for item in items:
                key = self._key(item)
                rows += [(*key, *row) for row in child.rows(item.fetched.metrics)]
            result.append(rows)
        return result

    def _ledger_key(self, item: Collected | Failed) -> Row:
        return (item.target.source.name, *self._key(item))

    def ledger_success_rows(self, items: Sequence[Collected], owner: str | None) -> list[Row]:
        rows = []
        for item in items:
            fetched_at = self._stamp(int(item.fetched.fetched_at))
            rows.append((
                *self._ledger_key(item),
                self._stamp(item.window.end),
                fetched_at,  # first_fetched_at (kept if already set)
                fetched_at,  # last_fetched_at
                1,  # fetch_count (incremented if the row exists)
                0,  # failure_count
                None,  # last_error
                None,  # last_error_at
                self._due(item.next_due_at),
                item.settled,
                None,  # lease_owner of a new row: no claim
                None,  # lease_expires_at
                owner,  # whose claim the upsert ends (see `release` above)
                owner,
            ))
        return rows

    def ledger_failure_rows(self, items: Sequence[Failed], owner: str | None) -> list[Row]:
        return [
            (
                *self._ledger_key(item),
                self._stamp(item.window.end),
                None,  # first_fetched_at (kept)
                None,  # last_fetched_at (kept)
                0,  # fetch_count (kept)
                1,  # failure_count (incremented if the row exists)
                item.error[:2000],
                self._ts(to_datetime(int(item.at))),
                self._due(item.next_due_at),
                False,  # settled (kept)
                None,  # lease_owner of a new row: no claim
                None,  # lease_expires_at
                owner,  # whose claim the upsert ends (see `release` above)
                owner,
            )
            for item in items
        ]

    def ledger_new_rows(
        self, target: Target, windows: Sequence[Window], now: float, owner: str,
        expires: datetime,
    ) -> list[Row]:
        due, until = self._ts(to_datetime(int(now))), self._ts(expires)
        key = (target.source.name, target.org_id, target.segment)
        return [
            (*key, self._stamp(w.start), self._stamp(w.end),
             None, None, 0, 0, None, None, due, False, owner, until)
            for w in windows
        ]

    def _due(self, ts: int | None) -> Any:
        return None if ts is None else self._stamp(ts)


def _table(name: str) -> Table:
    return METADATA.tables[name]


def _check(table: Table, names: tuple[str, ...]) -> None:
    if tuple(c.name for c in table.columns) != names:
        raise RuntimeError(f"the row builders of {table.name} no longer match its columns")
