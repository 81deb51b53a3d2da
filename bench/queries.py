"""Query speed of the Grafana dashboards and of typical reads, on a year of hourly windows.

    .venv/bin/python bench/queries.py [--backend sqlite|postgresql|both] [--orgs 100]
        [--days 365] [--runs 5] [--before 0006] [--pg-url URL]

Fills a temporary SQLite file and a temporary PostgreSQL schema ($COLLECTOR_TEST_POSTGRES_URL
or --pg-url) the way the collector's writer leaves them after a year: `--orgs` targets (one
org each, segment ``all``) with `--days` days of hourly windows of sessions (with their
origin and size rows), PRs and searches, each with its ledger row (settled once 7 days old);
daily, weekly and monthly active users; billing days of ACU consumption; the organizations.
Rows go in with bulk inserts (``executemany`` on SQLite, ``COPY`` on PostgreSQL). The schema
is first migrated to `--before`; then every query below is timed (median of `--runs` runs,
rows fetched); then the remaining migrations are applied to the filled database and every
query is timed again.

Queries: every panel query and variable query of deploy/grafana/dashboards/, expanded as
Grafana expands them (tests/test_grafana.py) for the last 7 and 90 days, for one org and for
all orgs; and three typical reads: a daily series for one org (30 days), sessions by origin
across all orgs (7 days), monthly totals across all orgs (a year).

`--write-cost N` measures instead what the indexes cost the writer: the collector's own
`Store.save` writes N sessions windows (each with its 9 origin and 5 size rows and its
ledger row, 50 windows a transaction, as a backfill does) into an empty database at
`--before` and at the newest revision, then writes them all again (a re-poll); median of
`--runs` rounds, alternating.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from collector import db  # noqa: E402
from collector.schema import Base  # noqa: E402
from tests.test_grafana import (  # noqa: E402
    TimeRange,
    Variable,
    dashboard,
    expand,
    panel_targets,
    target_sql,
    template,
    variable_query,
)

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
    return [c.name for c in Base.metadata.tables[table].columns]


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
    """`command` (VACUUM ANALYZE, ANALYZE) on the collector's tables of this schema only, as
    autovacuum leaves a table that has taken a year of inserts."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in Base.metadata.tables:
            conn.execute(text(f"{command} {table}"))


# -- the queries -------------------------------------------------------------------------------


def typical(dialect: str, org: str) -> dict[str, str]:
    end = iso(END)
    if dialect == "sqlite":
        return {
            "daily series, one org, 30 days":
                "SELECT day, sessions_created_count, total_acus, avg_acus_per_session, complete"
                " FROM session_metrics_daily"
                f" WHERE org_id = '{org}' AND segment = 'all'"
                f" AND day >= date('{end}', '-30 days') ORDER BY day",
            "by origin, all orgs, 7 days":
                "SELECT origin, SUM(sessions_created_count) AS sessions"
                " FROM session_metrics_by_origin"
                f" WHERE segment = 'all' AND window_start >= datetime('{end}', '-7 days')"
                " GROUP BY origin ORDER BY sessions DESC",
            "monthly totals, all orgs, a year":
                "SELECT strftime('%Y-%m', window_start) AS month,"
                " SUM(sessions_created_count) AS sessions, ROUND(SUM(total_acus), 2) AS acus"
                " FROM session_metrics"
                f" WHERE segment = 'all' AND window_start >= datetime('{end}', '-1 year')"
                " GROUP BY month ORDER BY month",
        }
    now = f"TIMESTAMPTZ '{end}+00'"
    return {
        "daily series, one org, 30 days":
            "SELECT day, sessions_created_count, total_acus, avg_acus_per_session, complete"
            " FROM session_metrics_daily"
            f" WHERE org_id = '{org}' AND segment = 'all'"
            f" AND day >= ({now} AT TIME ZONE 'UTC')::date - 30 ORDER BY day",
        "by origin, all orgs, 7 days":
            "SELECT origin, SUM(sessions_created_count) AS sessions"
            " FROM session_metrics_by_origin"
            f" WHERE segment = 'all' AND window_start >= {now} - interval '7 days'"
            " GROUP BY origin ORDER BY sessions DESC",
        "monthly totals, all orgs, a year":
            "SELECT date_trunc('month', window_start AT TIME ZONE 'UTC')::date AS month,"
            " SUM(sessions_created_count) AS sessions,"
            " ROUND(CAST(SUM(total_acus) AS NUMERIC), 2) AS acus"
            " FROM session_metrics"
            f" WHERE segment = 'all' AND window_start >= {now} - interval '1 year'"
            " GROUP BY month ORDER BY month",
    }


def queries(dialect: str, orgs: list[str]) -> dict[str, str]:
    """Every query to time, by name."""
    board = dashboard(dialect)
    found: dict[str, str] = {}
    for days in (7, 90):
        window = TimeRange(END - timedelta(days=days), END)
        for label, chosen in (("one org", orgs[:1]), ("all orgs", orgs)):
            variables = {
                "org": Variable(tuple(chosen), multi=True, include_all=True,
                                all_selected=len(chosen) > 1),
                "segment": Variable(("all",)),
                "source": Variable(("sessions", "prs", "searches"), multi=True,
                                   include_all=True, all_selected=True),
            }
            for name in ("org", "segment"):
                if name == "segment" or label == "one org":
                    spec = template(board, name)
                    found[f"variable {spec['name']}, {days}d, {label}"] = expand(
                        variable_query(board, name), dialect, window, variables)
            for title, ref, target in panel_targets(board):
                found[f"{title} [{ref}], {days}d, {label}"] = expand(
                    target_sql(target), dialect, window, variables)
    found.update(typical(dialect, orgs[0]))
    return found


def timer(dialect: str, target: str) -> tuple[Callable[[str], int], Callable[[], None]]:
    """(run a query and return its row count, close)."""
    if dialect == "sqlite":
        conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True)

        def run_sqlite(sql: str) -> int:
            return len(conn.execute(sql).fetchall())

        return run_sqlite, conn.close
    engine = create_engine(target)
    raw = engine.raw_connection()
    raw.autocommit = True  # type: ignore[attr-defined]
    cursor = raw.cursor()

    def run_pg(sql: str) -> int:
        cursor.execute(sql)
        return len(cursor.fetchall())

    def close() -> None:
        raw.close()
        engine.dispose()

    return run_pg, close


def measure(dialect: str, target: str, orgs: list[str], runs: int) -> dict[str, tuple[float, int]]:
    run, close = timer(dialect, target)
    results: dict[str, tuple[float, int]] = {}
    try:
        for name, sql in queries(dialect, orgs).items():
            times = []
            count = 0
            for _ in range(runs):
                began = time.perf_counter()
                count = run(sql)
                times.append((time.perf_counter() - began) * 1000)
            results[name] = (statistics.median(times), count)
            print(f"  {results[name][0]:9.1f} ms  {count:6d} rows  {name}", flush=True)
    finally:
        close()
    return results


# -- the writer's cost -------------------------------------------------------------------------


def sessions_items(count: int, fetched_at: float) -> list[Any]:
    """`count` hourly sessions windows of 10 orgs, as the collector's `Collected` outcomes."""
    from collector.outcomes import Collected
    from collector.payload import Fetched, SessionMetrics
    from collector.targets import Target
    from collector.windows import Window

    start = int((END - timedelta(days=365)).timestamp())
    items = []
    for i in range(count):
        org, hour = i % 10, i // 10
        sessions = (i * 7) % 13
        body = json.dumps({
            "sessions_created_count": sessions,
            "sessions_created_by_size": {s: sessions * w // 100 for s, w in SIZES},
            "sessions_created_by_origin": {o: sessions * w // 100 for o, w in ORIGINS},
            "sessions_created_with_playbook_count": sessions // 3,
            "sessions_created_with_search_count": sessions // 4,
            "sessions_with_merged_prs_count": sessions // 2,
            "sessions_with_merged_prs_by_size": {s: sessions * w // 200 for s, w in SIZES},
            "avg_acus_per_session": 2.5 if sessions else 0.0})
        window = Window(start + hour * HOUR, start + (hour + 1) * HOUR)
        fetched = Fetched(SessionMetrics.model_validate_json(body), body, fetched_at, 1)
        items.append(Collected(Target(f"org-{org:03d}"), window, fetched, None, True))
    return items


def write_cost(dialect: str, args: argparse.Namespace) -> dict[str, list[float]]:
    """Seconds per 1,000 windows written, first and again, at `--before` and at the head."""
    from collector.store import Store

    items = sessions_items(args.write_cost, END.timestamp())
    again = sessions_items(args.write_cost, END.timestamp() + 60)
    found: dict[str, list[float]] = {}
    for _ in range(args.runs):
        for revision in (args.before, "head"):
            with tempfile.TemporaryDirectory() as tmp, database(
                    dialect, Path(tmp), args.pg_url) as url:
                engine = db.create_engine_for(url)
                db.upgrade(engine, revision)
                store = Store(engine)
                for label, batch in (("first", items), ("again", again)):
                    began = time.perf_counter()
                    for i in range(0, len(batch), 50):
                        store.save(batch[i:i + 50])
                    per = (time.perf_counter() - began) / len(batch) * 1000
                    found.setdefault(f"{revision} {label}", []).append(per)
                engine.dispose()
    for key, values in found.items():
        print(f"  {dialect} {key}: {statistics.median(values):.3f} ms per window "
              f"({', '.join(f'{v:.3f}' for v in values)})", flush=True)
    return found


# -- the run -----------------------------------------------------------------------------------


@contextmanager
def database(dialect: str, tmp: Path, pg_url: str | None) -> Iterator[str]:
    """A URL for an empty database of `dialect`, removed afterwards."""
    if dialect == "sqlite":
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    if not pg_url:
        raise SystemExit("PostgreSQL: give --pg-url or set $COLLECTOR_TEST_POSTGRES_URL")
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        separator = "&" if "?" in pg_url else "?"
        yield f"{pg_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def bench(dialect: str, args: argparse.Namespace, data: Data) -> dict[str, dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp, database(dialect, Path(tmp), args.pg_url) as url:
        engine = db.create_engine_for(url)
        db.upgrade(engine, args.before)
        engine.dispose()
        began = time.perf_counter()
        if dialect == "sqlite":
            target = url.removeprefix("sqlite:///")
            fill_sqlite(Path(target), data)
        else:
            target = url
            fill_postgres(url, data)
        fill = time.perf_counter() - began
        print(f"{dialect}: filled in {fill:.0f} s; at {args.before}:", flush=True)
        before = measure(dialect, target, data.orgs, args.runs)
        engine = db.create_engine_for(url)
        began = time.perf_counter()
        db.upgrade(engine)
        migrated = time.perf_counter() - began
        head = db.current_revision(engine)
        if dialect == "postgresql":
            vacuum(engine, "ANALYZE")
        engine.dispose()
        print(f"{dialect}: upgraded to {head} in {migrated:.1f} s:", flush=True)
        after = measure(dialect, target, data.orgs, args.runs)
        return {"fill_s": fill, "upgrade_s": migrated, "head": head, "before": before,
                "after": after}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--orgs", type=int, default=100, help="targets (default 100)")
    parser.add_argument("--days", type=int, default=365, help="days of windows (default 365)")
    parser.add_argument("--runs", type=int, default=5, help="runs per query (default 5)")
    parser.add_argument("--before", default="0006", help="revision of the first round (0006)")
    parser.add_argument("--pg-url", default=os.environ.get("COLLECTOR_TEST_POSTGRES_URL"))
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--write-cost", type=int, default=0, metavar="N",
                        help="measure the writer's cost of N windows instead")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    if args.write_cost:
        print(f"write cost, {args.write_cost} sessions windows; load {os.getloadavg()[0]:.2f}")
        for dialect in backends:
            write_cost(dialect, args)
        print(f"load at the end {os.getloadavg()[0]:.2f}")
        return
    data = Data(args.orgs, args.days)
    print(f"{len(data.orgs)} orgs x {len(data.hours)} hourly windows = "
          f"{len(data.orgs) * len(data.hours):,} windows per windowed source; load "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    results = {dialect: bench(dialect, args, data) for dialect in backends}
    print(f"load at the end {os.getloadavg()[0]:.2f}")
    print("\n| query | " + " | ".join(f"{d} before | {d} after" for d in backends) + " |")
    print("|---|" + "---|---|" * len(backends))
    names = list(results[backends[0]]["before"])
    for name in names:
        cells = []
        for dialect in backends:
            for stage in ("before", "after"):
                ms, _ = results[dialect][stage][name]
                cells.append(f"**{ms:.0f}**" if ms >= 100 else f"{ms:.0f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
