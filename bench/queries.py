"""Query speed of the Grafana dashboards and of typical reads, on a year of hourly windows.

    .venv/bin/python bench/queries.py [--backend sqlite|postgresql|both] [--orgs 100]
        [--days 365] [--runs 5] [--before 0007] [--before-dashboards REF] [--pg-url URL]

Fills a temporary SQLite file and a temporary PostgreSQL schema ($COLLECTOR_TEST_POSTGRES_URL
or --pg-url) the way the collector's writer leaves them after a year (`query_data.py`):
`--orgs` targets (one org each, segment ``all``) with `--days` days of hourly windows of
sessions (with their origin and size rows), PRs and searches, each with its ledger row
(settled once 7 days old); daily, weekly and monthly active users; billing days of ACU
consumption; the organizations. Rows go in with bulk inserts (``executemany`` on SQLite,
``COPY`` on PostgreSQL). The schema is first migrated to `--before`; then every query below
is timed (median of `--runs` runs, rows fetched); then the remaining migrations are applied
to the filled database (0008 fills the daily rollups from the windows) and every query is
timed again.

Queries: every panel query and variable query of deploy/grafana/dashboards/, expanded as
Grafana expands them (tests/test_grafana.py) for the last 7 and 90 days, for one org and for
all orgs; and three typical reads: a daily series for one org (30 days), sessions by origin
across all orgs (7 days), monthly totals across all orgs (a year). At a revision before
0008, which has no daily rollups, the typical reads aggregate the per-window views, and
the dashboards are those of git revision `--before-dashboards` (the files as they are when
not given), so each round times the queries its schema was shipped with.

`--write-cost N` measures instead what the indexes and rollups cost the writer: the
collector's own `Store.save` writes N sessions windows (each with its 9 origin and 5 size
rows and its ledger row, `--batch` windows a transaction: 50 as a backfill does, or 1 as the
daemon does) into an empty database at `--before` and at the newest revision, then writes
them all again (a re-poll); median of `--runs` rounds, alternating.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from query_data import (  # noqa: E402
    END,
    HOUR,
    ORIGINS,
    SIZES,
    Data,
    fill_postgres,
    fill_sqlite,
    iso,
    vacuum,
)
from sqlalchemy import create_engine, text  # noqa: E402

from collector import db, migrate  # noqa: E402
from tests.test_grafana import (  # noqa: E402
    DASHBOARDS,
    TimeRange,
    Variable,
    dashboard,
    expand,
    panel_targets,
    target_sql,
    template,
    variable_query,
)

#: The first revision with daily rollups, whose typical reads use the daily views.
ROLLUPS = "0008"

# -- the queries -------------------------------------------------------------------------------


def typical(dialect: str, org: str, daily: bool) -> dict[str, str]:
    """The typical reads; with `daily`, sessions by origin and monthly totals from the
    daily views (the same days: the fill ends at a midnight)."""
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
                " FROM session_metrics_daily_by_origin"
                f" WHERE segment = 'all' AND day >= date('{end}', '-7 days')"
                " GROUP BY origin ORDER BY sessions DESC" if daily else
                "SELECT origin, SUM(sessions_created_count) AS sessions"
                " FROM session_metrics_by_origin"
                f" WHERE segment = 'all' AND window_start >= datetime('{end}', '-7 days')"
                " GROUP BY origin ORDER BY sessions DESC",
            "monthly totals, all orgs, a year":
                "SELECT strftime('%Y-%m', day) AS month,"
                " SUM(sessions_created_count) AS sessions, ROUND(SUM(total_acus), 2) AS acus"
                " FROM session_metrics_daily"
                f" WHERE segment = 'all' AND day >= date('{end}', '-1 year')"
                " GROUP BY month ORDER BY month" if daily else
                "SELECT strftime('%Y-%m', window_start) AS month,"
                " SUM(sessions_created_count) AS sessions, ROUND(SUM(total_acus), 2) AS acus"
                " FROM session_metrics"
                f" WHERE segment = 'all' AND window_start >= datetime('{end}', '-1 year')"
                " GROUP BY month ORDER BY month",
        }
    now = f"TIMESTAMPTZ '{end}+00'"
    today = f"({now} AT TIME ZONE 'UTC')::date"
    return {
        "daily series, one org, 30 days":
            "SELECT day, sessions_created_count, total_acus, avg_acus_per_session, complete"
            " FROM session_metrics_daily"
            f" WHERE org_id = '{org}' AND segment = 'all'"
            f" AND day >= {today} - 30 ORDER BY day",
        "by origin, all orgs, 7 days":
            "SELECT origin, SUM(sessions_created_count) AS sessions"
            " FROM session_metrics_daily_by_origin"
            f" WHERE segment = 'all' AND day >= {today} - 7"
            " GROUP BY origin ORDER BY sessions DESC" if daily else
            "SELECT origin, SUM(sessions_created_count) AS sessions"
            " FROM session_metrics_by_origin"
            f" WHERE segment = 'all' AND window_start >= {now} - interval '7 days'"
            " GROUP BY origin ORDER BY sessions DESC",
        "monthly totals, all orgs, a year":
            "SELECT date_trunc('month', day)::date AS month,"
            " SUM(sessions_created_count) AS sessions,"
            " ROUND(CAST(SUM(total_acus) AS NUMERIC), 2) AS acus"
            " FROM session_metrics_daily"
            f" WHERE segment = 'all' AND day >= ({today} - interval '1 year')::date"
            " GROUP BY month ORDER BY month" if daily else
            "SELECT date_trunc('month', window_start AT TIME ZONE 'UTC')::date AS month,"
            " SUM(sessions_created_count) AS sessions,"
            " ROUND(CAST(SUM(total_acus) AS NUMERIC), 2) AS acus"
            " FROM session_metrics"
            f" WHERE segment = 'all' AND window_start >= {now} - interval '1 year'"
            " GROUP BY month ORDER BY month",
    }


def board_at(dialect: str, ref: str | None) -> dict[str, Any]:
    """The dashboard of `dialect` at git revision `ref` (the file as it is, without)."""
    if ref is None:
        return dashboard(dialect)
    path = DASHBOARDS[dialect].relative_to(ROOT).as_posix()
    shown = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=ROOT, check=True,
                           capture_output=True, text=True)
    loaded: dict[str, Any] = json.loads(shown.stdout)
    return loaded


def queries(dialect: str, orgs: list[str], board: dict[str, Any],
            daily: bool) -> dict[str, str]:
    """Every query to time, by name."""
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
    found.update(typical(dialect, orgs[0], daily))
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


def measure(dialect: str, target: str, named: dict[str, str],
            runs: int) -> dict[str, tuple[float, int]]:
    run, close = timer(dialect, target)
    results: dict[str, tuple[float, int]] = {}
    try:
        for name, sql in named.items():
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
    """Milliseconds per window written, first and again, at `--before` and at the head.
    Before 0008 the writer keeps no rollups (there are none): the store writes what the
    writer of that revision wrote."""
    from unittest import mock

    from collector.rollup import Rollups
    from collector.store import Store

    items = sessions_items(args.write_cost, END.timestamp())
    again = sessions_items(args.write_cost, END.timestamp() + 60)
    found: dict[str, list[float]] = {}
    for _ in range(args.runs):
        for revision in (args.before, "head"):
            with tempfile.TemporaryDirectory() as tmp, database(
                    dialect, Path(tmp), args.pg_url) as url:
                engine = db.create_engine_for(url)
                migrate.upgrade(engine, revision)
                store = Store(engine)
                rollups = revision == "head" or revision >= ROLLUPS
                with mock.patch.object(Rollups, "refresh", autospec=True) if not rollups else (
                        contextlib.nullcontext()):
                    for label, batch in (("first", items), ("again", again)):
                        began = time.perf_counter()
                        for i in range(0, len(batch), args.batch):
                            store.save(batch[i:i + args.batch])
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
        migrate.upgrade(engine, args.before)
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
        old = queries(dialect, data.orgs, board_at(dialect, args.before_dashboards),
                      daily=args.before >= ROLLUPS)
        before = measure(dialect, target, old, args.runs)
        engine = db.create_engine_for(url)
        began = time.perf_counter()
        migrate.upgrade(engine)
        migrated = time.perf_counter() - began
        head = db.current_revision(engine)
        if dialect == "postgresql":
            vacuum(engine, "ANALYZE")
        engine.dispose()
        print(f"{dialect}: upgraded to {head} in {migrated:.1f} s:", flush=True)
        new = queries(dialect, data.orgs, dashboard(dialect), daily=True)
        after = measure(dialect, target, new, args.runs)
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
    parser.add_argument("--before", default="0007", help="revision of the first round (0007)")
    parser.add_argument("--before-dashboards", metavar="REF",
                        help="git revision whose dashboards the first round times")
    parser.add_argument("--pg-url", default=os.environ.get("COLLECTOR_TEST_POSTGRES_URL"))
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--write-cost", type=int, default=0, metavar="N",
                        help="measure the writer's cost of N windows instead")
    parser.add_argument("--batch", type=int, default=50,
                        help="windows per transaction of --write-cost (50, as a backfill; the "
                             "daemon writes 1)")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    if args.write_cost:
        print(f"write cost, {args.write_cost} sessions windows, {args.batch} a transaction; "
              f"load {os.getloadavg()[0]:.2f}")
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
