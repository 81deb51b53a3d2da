"""A year of every source for `bench/queries.py`: the rows the collector's writer leaves,
and bulk loads of them into SQLite (``executemany``) and PostgreSQL (``COPY``)."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, text

from collector.schema import METADATA

END = datetime(2026, 11, 20, tzinfo=UTC)  # the fill ends here: "now" of every query
HOUR = 3600
DAY = 86_400
ORIGINS = (("api", 10), ("automation", 8), ("code_scan", 4), ("desktop", 6), ("jira", 6),
           ("linear", 5), ("slack", 20), ("teams", 4), ("webapp", 27))
SIZES = (("xs", 30), ("s", 30), ("m", 20), ("l", 12), ("xl", 8))
LABEL = "min_sessions=1,min_searches=1"
SETTLE = 7 * DAY

Row = tuple[Any, ...]


# -- the data ----------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


class Data:
    """A year of every source, as rows in each table's column order, timestamps as UTC text
    (SQLite's form; PostgreSQL reads it as UTC), booleans and NULLs as Python values."""

    def __init__(self, orgs: int, days: int) -> None:
        self.orgs = [f"org-{i:03d}" for i in range(orgs)]
        self.start = END - timedelta(days=days)
        self.hours = [self.start + timedelta(hours=h) for h in range(days * 24)]
        self.text = [iso(h) for h in self.hours]
        self.end_text = iso(END)

    def fetched(self, window_end: datetime) -> tuple[str, bool, str | None]:
        """(fetched_at, settled, next_due_at) of a window ending at `window_end`."""
        age = (END - window_end).total_seconds()
        if age >= SETTLE:
            return iso(window_end + timedelta(seconds=SETTLE)), True, None
        return self.end_text, False, iso(END + timedelta(hours=1))

    def windows(self, org_index: int) -> Iterator[tuple[str, int, str, str, bool, str | None,
                                                         random.Random]]:
        rng = random.Random(org_index)
        scale = 0.5 + org_index % 7 / 3
        for i, start in enumerate(self.hours):
            end = start + timedelta(hours=1)
            fetched, settled, due = self.fetched(end)
            busy = 1.0 if 8 <= start.hour < 19 and start.weekday() < 5 else 0.15
            count = int(rng.random() * 12 * busy * scale)
            yield self.text[i], count, iso(end), fetched, settled, due, rng

    def ledger(self, source: str, org: str, segment: str, start: str, end: str, fetched: str,
               settled: bool, due: str | None, fetches: int) -> Row:
        return (source, org, segment, start, end, fetched, fetched, fetches, 0, None, None,
                due, settled, None, None)

    def org_rows(self, index: int) -> dict[str, list[Row]]:
        org = self.orgs[index]
        out: dict[str, list[Row]] = {t: [] for t in (
            "metric_windows", "metric_window_origins", "metric_window_sizes", "pr_windows",
            "search_windows", "collection_ledger")}
        mw, mo, ms = out["metric_windows"], out["metric_window_origins"], out[
            "metric_window_sizes"]
        prs, searches, ledger = out["pr_windows"], out["search_windows"], out[
            "collection_ledger"]
        fetches = 6
        for start, count, end, fetched, settled, due, rng in self.windows(index):
            by_origin = {o: count * w // 100 for o, w in ORIGINS}
            by_size = {s: count * w // 100 for s, w in SIZES}
            merged_by_size = {s: n // 2 for s, n in by_size.items()}
            merged = sum(merged_by_size.values())
            avg = round(rng.random() * 8, 4) if count else 0.0
            playbook, search = count // 3, count // 4
            body = json.dumps({
                "sessions_created_count": count, "sessions_created_by_size": by_size,
                "sessions_created_by_origin": by_origin,
                "sessions_created_with_playbook_count": playbook,
                "sessions_created_with_search_count": search,
                "sessions_with_merged_prs_count": merged,
                "sessions_with_merged_prs_by_size": merged_by_size,
                "avg_acus_per_session": avg})
            mw.append((org, "all", start, end, HOUR, count, playbook, search, merged, avg,
                       fetched, body))
            mo.extend((org, "all", start, o, n) for o, n in by_origin.items())
            ms.extend((org, "all", start, s, n, merged_by_size[s]) for s, n in by_size.items())
            created = count // 2
            pr_merged, pr_closed = created // 2, created // 6
            pr_open = created - pr_merged - pr_closed
            prs.append((org, "all", start, end, HOUR, created, pr_open, pr_closed, pr_merged,
                        fetched, json.dumps({
                            "prs_created_count": created, "prs_opened_count": pr_open,
                            "prs_closed_count": pr_closed, "prs_merged_count": pr_merged})))
            found = count * 2 + int(rng.random() * 3)
            searches.append((org, "all", start, end, HOUR, found, fetched,
                             json.dumps({"searches_created_count": found})))
            for source in ("sessions", "prs", "searches"):
                ledger.append(self.ledger(source, org, "all", start, end, fetched, settled, due,
                                          fetches))
        return out

    def buckets(self) -> dict[str, list[Row]]:
        """Active users by day, week and month, billing days, their ledger rows, the orgs."""
        out: dict[str, list[Row]] = {t: [] for t in (
            "active_users_daily", "active_users_weekly", "active_users_monthly",
            "acu_consumption_days", "collection_ledger", "organizations")}
        first = self.start
        days = [first + timedelta(days=d) for d in range((END - first).days + 1)]
        weeks = sorted({d - timedelta(days=d.weekday()) for d in days})
        months = sorted({d.replace(day=1) for d in days})

        def next_month(m: datetime) -> datetime:
            return (m + timedelta(days=32)).replace(day=1)

        periods = (("active_users_daily", "day", [(d, d + timedelta(days=1)) for d in days]),
                   ("active_users_weekly", "week", [(w, w + timedelta(days=7)) for w in weeks]),
                   ("active_users_monthly", "month", [(m, next_month(m)) for m in months]))
        for index, org in enumerate(self.orgs):
            rng = random.Random(10_000 + index)
            people = 20 + index % 50
            for table, period, buckets in periods:
                for start, end in buckets:
                    fetched, settled, due = self.fetched(end)
                    active = int(people * (0.3 + rng.random() * 0.2) * (
                        1 if period == "day" else 1.6 if period == "week" else 2.0))
                    out[table].append((org, LABEL, iso(start), iso(end),
                                       int((end - start).total_seconds()), 1, 1, active, fetched,
                                       json.dumps({"active_users": active})))
                    out["collection_ledger"].append(self.ledger(
                        f"active_users.{period}", org, LABEL, iso(start), iso(end), fetched,
                        settled, due, 3))
            for day in days:
                start = day + timedelta(hours=8)
                end = start + timedelta(days=1)
                if end > END + timedelta(days=1):
                    continue
                fetched, settled, due = self.fetched(end)
                acus = round(rng.random() * 300, 3)
                out["acu_consumption_days"].append((
                    org, "all", iso(start), iso(end), DAY, day.strftime("%Y-%m-%d"), acus,
                    round(acus * 0.8, 3), round(acus * 0.1, 3), round(acus * 0.1, 3), None,
                    fetched, json.dumps({"date": day.strftime("%Y-%m-%d"), "acus": acus})))
                out["collection_ledger"].append(self.ledger(
                    "consumption", org, "all", iso(start), iso(end), fetched, settled, due, 3))
            out["organizations"].append((org, f"Org {index}", "config", iso(self.start),
                                         self.end_text, None))
        return out


def columns(table: str) -> list[str]:
    return [c.name for c in METADATA.tables[table].columns]


# -- filling -----------------------------------------------------------------------------------


def fill_sqlite(path: Path, data: Data) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")

    def put(table: str, rows: list[Row]) -> None:
        if rows:
            names = columns(table)
            marks = ", ".join("?" for _ in names)
            conn.executemany(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", rows)

    for index in range(len(data.orgs)):
        for table, rows in data.org_rows(index).items():
            put(table, rows)
    for table, rows in data.buckets().items():
        put(table, rows)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value)


def fill_postgres(url: str, data: Data) -> None:
    engine = create_engine(url)
    try:
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("SET TIME ZONE 'UTC'")

            def put(table: str, rows: list[Row]) -> None:
                if not rows:
                    return
                names = ", ".join(columns(table))
                with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                    buffer = "".join(
                        "\t".join(_copy_value(v) for v in row) + "\n" for row in rows)
                    copy.write(buffer)

            for index in range(len(data.orgs)):
                for table, rows in data.org_rows(index).items():
                    put(table, rows)
            for table, rows in data.buckets().items():
                put(table, rows)
            raw.commit()
        finally:
            raw.close()
        vacuum(engine, "VACUUM ANALYZE")
    finally:
        engine.dispose()


def vacuum(engine: Any, command: str) -> None:
    """`command` (VACUUM ANALYZE, ANALYZE) on the collector's tables of this schema only (those
    its revision has), as autovacuum leaves a table that has taken a year of inserts."""
    present = set(inspect(engine).get_table_names())
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in METADATA.tables:
            if table in present:
                conn.execute(text(f"{command} {table}"))
