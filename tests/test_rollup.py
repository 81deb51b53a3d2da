"""The daily rollups (migration 0008) equal what the per-window views computed, row for row,
on both backends: after the daemon and backfills wrote the simulator's data (re-polls, late
merges, a re-poll that lowers a value, failures, a forced backfill), for every window size
kind, with two writers on one day at once, and across the upgrade from 0007.

The oracle is the SQL of the daily views as they were at 0007: aggregates of the windows,
computed at every read. A rollup-backed view must return exactly its rows."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine

from collector import backfill as bf
from collector.assembly import Collector
from collector.config import Config
from collector.daemon import Daemon
from collector.outcomes import Collected
from collector.payload import Fetched, SessionMetrics
from collector.sim import Fault, Simulator
from collector.store import Store
from collector.targets import Target, targets_from_config
from collector.windows import DAY, Window
from tests.helpers import T0, FakeClock, MakeClient

SEGMENT = {"name": "team", "user_ids": ["user-1", "user-2"]}
SESSIONS = ("sessions_created_count", "sessions_created_with_playbook_count",
            "sessions_created_with_search_count", "sessions_with_merged_prs_count")
PRS = ("prs_created_count", "prs_opened_count", "prs_closed_count", "prs_merged_count")
#: Each rollup-backed view, and how many columns lead its key.
VIEWS = {"session_metrics_daily": 3, "pr_metrics_daily": 3, "search_metrics_daily": 3,
         "session_metrics_daily_by_origin": 4, "session_metrics_daily_by_size": 4}

Rows = dict[str, list[tuple[Any, ...]]]


# -- the oracle: the daily views of 0007 ------------------------------------------------------


def oracle(dialect: str) -> dict[str, str]:
    """Each view's rows computed from the windows, as 0003, 0006 and 0007 defined them."""
    if dialect == "sqlite":
        day = "date(w.window_start)"

        def r6(x: str) -> str:
            return f"ROUND({x}, 6)"
    else:
        day = "(w.window_start AT TIME ZONE 'UTC')::date"

        def r6(x: str) -> str:
            return f"CAST(ROUND(CAST({x} AS NUMERIC), 6) AS DOUBLE PRECISION)"

    acus = "SUM(w.avg_acus_per_session * w.sessions_created_count)"
    covered = ("COUNT(CASE WHEN w.fetched_at >= w.window_end THEN 1 END),"
               " 86400 / MIN(w.window_seconds),"
               " SUM(CASE WHEN w.fetched_at >= w.window_end THEN w.window_seconds ELSE 0 END)"
               " >= 86400")

    def sums(columns: tuple[str, ...]) -> str:
        return ", ".join(f"SUM(w.{c})" for c in columns)

    def grouped(table: str, values: str, by: str = "") -> str:
        return (f"SELECT w.org_id, w.segment, {day}{by}, {values} FROM {table} w"
                f" GROUP BY w.org_id, w.segment, {day}{by}")

    return {
        "session_metrics_daily": grouped("metric_windows", (
            f"{sums(SESSIONS)}, CASE WHEN SUM(w.sessions_created_count) > 0"
            f" THEN {r6(f'{acus} / SUM(w.sessions_created_count)')} ELSE 0.0 END,"
            f" {r6(acus)}, {covered}, MAX(w.fetched_at)")),
        "pr_metrics_daily": grouped("pr_windows", f"{sums(PRS)}, {covered}"),
        "search_metrics_daily": grouped("search_windows",
                                        f"{sums(('searches_created_count',))}, {covered}"),
        "session_metrics_daily_by_origin": grouped(
            "metric_window_origins", sums(("sessions_created_count",)), ", w.origin"),
        "session_metrics_daily_by_size": grouped(
            "metric_window_sizes",
            sums(("sessions_created_count", "sessions_with_merged_prs_count")), ", w.size"),
    }


def read(engine: Engine, live: bool = False) -> Rows:
    """Every row of each view (or of its oracle, `live`), in key order, as the driver
    returns them (types included)."""
    found: Rows = {}
    queries = oracle(engine.dialect.name)
    with engine.connect() as conn:
        for view, key in VIEWS.items():
            source = f"({queries[view]}) x" if live else view
            order = ", ".join(str(i + 1) for i in range(key))
            found[view] = [tuple(row) for row in conn.exec_driver_sql(
                f"SELECT * FROM {source} ORDER BY {order}")]
    return found


def assert_exact(engine: Engine) -> Rows:
    """The rollup-backed views equal their oracle, row for row; and `devin_daily`, which
    reads them, holds the whole org's values of each. Returns the rows."""
    rows, live = read(engine), read(engine, live=True)
    for view in VIEWS:
        assert rows[view] == live[view], view
        assert [tuple(map(type, r)) for r in rows[view]] == [
            tuple(map(type, r)) for r in live[view]], view
    with engine.connect() as conn:
        glance = {(r[0], str(r[1])): r[2:] for r in conn.exec_driver_sql(
            "SELECT org_id, day, sessions, total_acus, prs_created, prs_merged, searches"
            " FROM devin_daily")}
    whole: dict[tuple[str, str], list[Any]] = {}
    for view, columns, slot in (("session_metrics_daily", (3, 8), 0),
                                ("pr_metrics_daily", (3, 6), 2),
                                ("search_metrics_daily", (3,), 4)):
        for row in live[view]:
            if row[1] == "all":
                values = whole.setdefault((row[0], str(row[2])), [None] * 5)
                for offset, column in enumerate(columns):
                    values[slot + offset] = row[column]
    assert {k: tuple(v) for k, v in glance.items()} == {k: tuple(v) for k, v in whole.items()}
    return rows


# -- the writers --------------------------------------------------------------------------------


def build_daemon(sim: Simulator, make_config: Callable[..., Config], make_client: MakeClient,
                 engine: Engine, clock: FakeClock, size: str = "1h",
                 horizon: str = "2d") -> Daemon:
    config = make_config(
        windows={"size": size},
        schedule={"interval": "1h", "repoll_ages": ["1h", "6h", "1d", "3d"],
                  "catchup_horizon": horizon, "jitter": "0s"},
        sources={"enabled": ["sessions", "prs", "searches"]},
        orgs=[{"id": "org-alpha", "segments": [SEGMENT]}, {"id": "org-beta"}],
    )
    return Daemon(Collector(config, Store(engine), make_client(rate_limit=1e6)), clock=clock)


def run(daemon: Daemon, clock: FakeClock, until: float, step: int) -> None:
    while clock.now < until:
        for org in ("org-alpha", "org-beta"):
            daemon.run_org(org)
        clock.advance(step)


def force_backfill(daemon: Daemon, clock: FakeClock, since: float, org: str) -> None:
    """`collector backfill --since … --force --org org` up to now, in this process."""
    collector = daemon.collector
    targets = targets_from_config(collector.config, (org,))
    span, _ = bf.Range.up_to_now(since, clock.now, collector.config.windows.size, clock.now)
    claims = bf.Claims("test:backfill", 3600.0)
    collector.collect(bf.plan(collector.store, targets, span, clock=clock, claims=claims,
                              force=True), clock=clock, owner=claims.owner)
    collector.store.release(claims.owner)


def sessions(rows: Rows, org: str, column: int) -> dict[str, Any]:
    return {str(r[2]): r[column] for r in rows["session_metrics_daily"]
            if r[0] == org and r[1] == "all"}


# -- tests ------------------------------------------------------------------------------------


def test_rollups_stay_exact_through_repolls_late_merges_failures_and_a_forced_backfill(
    sim: Simulator, make_config: Callable[..., Config], make_client: MakeClient,
    engine: Engine, clock: FakeClock,
) -> None:
    clock.now = T0 + 600
    daemon = build_daemon(sim, make_config, make_client, engine, clock)
    # org-alpha's first session answers are inflated (a later re-poll lowers them), and
    # org-beta's PR windows fail for a while
    sim.inject(Fault("body", count=30, org_id="org-alpha", endpoint="sessions",
                     patch={"sessions_created_count": 500}),
               Fault("status", status=500, count=40, org_id="org-beta", endpoint="prs"))
    run(daemon, clock, T0 + 3600, 3600)
    first = assert_exact(engine)
    with engine.connect() as conn:
        failing = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM collection_ledger WHERE failure_count > 0").scalar()
    assert failing
    run(daemon, clock, T0 + 2 * DAY, 3 * 3600)
    assert_exact(engine)
    sim.inject(Fault("status", status=503, count=20, org_id="org-alpha", endpoint="searches"))
    force_backfill(daemon, clock, T0 - 2 * DAY, "org-alpha")
    assert_exact(engine)
    run(daemon, clock, T0 + 4 * DAY, 6 * 3600)
    last = assert_exact(engine)
    # what the scenario was for: a day lowered by a re-poll, merged counts that grew late,
    # days still incomplete and days complete, on every source
    before, after = sessions(first, "org-alpha", 3), sessions(last, "org-alpha", 3)
    assert any(after[day] < before[day] for day in before)
    merged_before, merged_after = sessions(first, "org-beta", 6), sessions(last, "org-beta", 6)
    assert any(merged_after[day] > merged_before[day] for day in merged_before)
    for view in ("session_metrics_daily", "pr_metrics_daily", "search_metrics_daily"):
        complete = [bool(r[-2 if view == "session_metrics_daily" else -1])
                    for r in last[view]]
        assert set(complete) == {True, False}, view
    origins = last["session_metrics_daily_by_origin"]
    assert {r[3] for r in origins} >= {"webapp", "slack"}
    assert sum(r[4] for r in origins if r[1] == "team") > 0


@pytest.mark.parametrize("size", ["5m", "6h", "1d"])
def test_windows_of_every_size_belong_to_the_day_of_their_start(
    size: str, sim: Simulator, make_config: Callable[..., Config], make_client: MakeClient,
    engine: Engine, clock: FakeClock,
) -> None:
    clock.now = T0 + 600  # just after midnight: the catch-up crosses it
    daemon = build_daemon(sim, make_config, make_client, engine, clock, size, horizon="3h")
    run(daemon, clock, clock.now + 1, 3600)
    assert_exact(engine)
    clock.advance(DAY + 7 * 3600)  # the open window closed and late merges came in
    run(daemon, clock, clock.now + 1, 3600)
    force_backfill(daemon, clock, clock.now - 8 * 3600, "org-beta")  # across a midnight
    rows = assert_exact(engine)
    per_day = {"5m": 288, "6h": 4, "1d": 1}[size]
    for view in ("session_metrics_daily", "pr_metrics_daily", "search_metrics_daily"):
        expected = -3 if view == "session_metrics_daily" else -2
        assert {r[expected] for r in rows[view]} == {per_day}, view  # windows_expected
        assert len({r[2] for r in rows[view]}) >= 3, view  # the days around two midnights
        assert any(r[expected - 1] for r in rows[view]), view  # windows fetched after close


def session_window(org: str, start: int, count: int, fetched_at: float) -> Collected:
    body = json.dumps({
        "sessions_created_count": count, "sessions_created_with_playbook_count": count // 2,
        "sessions_created_with_search_count": count // 3,
        "sessions_with_merged_prs_count": count // 4,
        "sessions_created_by_origin": {"webapp": count - 1, "slack": 1},
        "sessions_created_by_size": {"s": count}, "sessions_with_merged_prs_by_size": {},
        "avg_acus_per_session": 1.1})
    window = Window(start, start + 3600)
    fetched = Fetched(SessionMetrics.model_validate_json(body), body, fetched_at, 1)
    return Collected(Target(org), window, fetched, None, False)


def test_two_writers_of_one_day_at_once_leave_it_exact(db_url: str) -> None:
    """A daemon and a backfill (two engines) save windows of the same day, each in its own
    transaction, at the same moment, round after round: each round's end leaves the day's
    rollup rows equal to its windows (neither recompute lost the other's window)."""
    engines = [Store(create(db_url, migrate=i == 0)) for i in range(2)]
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def writer(index: int, store: Store) -> None:
        try:
            for round_ in range(40):
                barrier.wait()
                start = T0 + (2 * (round_ % 12) + index) * 3600
                store.save([session_window("org-a", start, round_ + index + 2,
                                           start + 7200 + round_)])
                barrier.wait()
        except threading.BrokenBarrierError:
            return  # the test stopped
        except BaseException as exc:  # noqa: BLE001 (asserted in the test's thread)
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=writer, args=(i, s)) for i, s in enumerate(engines)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(40):
            barrier.wait()
            barrier.wait()
            assert_exact(engines[0].engine)
        rows = read(engines[0].engine)
    finally:
        barrier.abort()  # writers still waiting stop
        for thread in threads:
            thread.join(timeout=30)
        for store in engines:
            store.engine.dispose()
    assert not errors, errors
    assert [(r[0], str(r[2])) for r in rows["session_metrics_daily"]] == [
        ("org-a", datetime.fromtimestamp(T0, UTC).date().isoformat())]
    assert rows["session_metrics_daily"][0][-4:-2] == (24, 24)  # every window, collected


def create(url: str, *, migrate: bool) -> Engine:
    from collector import db
    from collector.migrate import upgrade

    engine = db.create_engine_for(url)
    if migrate:
        upgrade(engine)
    return engine


#: The daily views a database had at 0007.
DAILY_0007 = ("session_metrics_daily", "pr_metrics_daily", "search_metrics_daily", "devin_daily")


def daily_rows(engine: Engine) -> Rows:
    with engine.connect() as conn:
        return {view: [tuple(r) for r in conn.exec_driver_sql(
            f"SELECT * FROM {view} ORDER BY 1, 2{', 3' if view != 'devin_daily' else ''}")]
            for view in DAILY_0007}


def described(engine: Engine) -> dict[str, Any]:
    """Each daily view's columns and their types (PostgreSQL's, or SQLite's declared ones),
    and its definition, whitespace aside."""
    found: dict[str, Any] = {}
    with engine.connect() as conn:
        for view in DAILY_0007:
            if engine.dialect.name == "sqlite":
                columns = [(r[1], r[2]) for r in conn.exec_driver_sql(
                    f"PRAGMA table_info({view})")]
                sql = conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE name = ?", (view,)).scalar()
            else:
                columns = [tuple(r) for r in conn.exec_driver_sql(
                    "SELECT column_name, data_type FROM information_schema.columns"
                    " WHERE table_schema = current_schema() AND table_name = %s"
                    " ORDER BY ordinal_position", (view,))]
                sql = conn.exec_driver_sql("SELECT pg_get_viewdef(%s::regclass)",
                                           (view,)).scalar()
            found[view] = (columns, " ".join(str(sql).split()))
    return found


def test_a_database_filled_at_0007_shows_the_same_daily_rows_at_0008_and_back(
    sim: Simulator, make_config: Callable[..., Config], make_client: MakeClient,
    db_url: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from collector import db, migrate
    from collector.rollup import Rollups

    engine = db.create_engine_for(db_url)
    try:
        migrate.upgrade(engine, "0007")
        fresh = described(engine)
        # the writer as it was at 0007: the same rows, no rollups
        monkeypatch.setattr(Rollups, "refresh", lambda self, conn, items: None)
        clock.now = T0 + 600
        daemon = build_daemon(sim, make_config, make_client, engine, clock)
        sim.inject(Fault("status", status=500, count=40, org_id="org-beta", endpoint="prs"))
        run(daemon, clock, T0 + DAY + 3600, 5 * 3600)
        monkeypatch.undo()
        before = daily_rows(engine)
        assert all(before.values())
        migrate.upgrade(engine)
        assert db.current_revision(engine) == "0008"
        after = described(engine)
        assert {v: c for v, (c, _) in after.items()} == {v: c for v, (c, _) in fresh.items()}
        assert daily_rows(engine) == before
        assert_exact(engine)
        # and back: 0007's views, the same rows
        migrate.downgrade(engine, "0007")
        assert described(engine) == fresh
        assert daily_rows(engine) == before
    finally:
        engine.dispose()
