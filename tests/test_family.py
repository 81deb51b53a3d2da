"""The metrics family end to end, on SQLite and PostgreSQL: every source collected by the
daemon, re-polled until settled, backfilled in few requests, and equal in its view to what
the simulator answers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from collector import db
from collector.assembly import Collector
from collector.calendars import BILLING_DAYS, DAYS, MONTHS, WEEKS
from collector.config import Config
from collector.daemon import Daemon
from collector.sim import Fault, Simulator, TokenGrant
from collector.status import target_status
from collector.store import Store
from collector.targets import targets_from_config
from collector.windows import DAY
from tests.helpers import T0, TOKEN, FakeClock, MakeClient, invoke, rows, ts

EVERY = {"enabled": ["sessions", "prs", "searches", "active_users", "consumption"]}
SEGMENT = {"name": "team", "user_ids": ["user-1", "user-2"]}
PERIODS = {"day": DAYS, "week": WEEKS, "month": MONTHS}


@pytest.fixture
def family_daemon(
    make_config: Callable[..., Config], make_client: MakeClient, engine: Engine, clock: FakeClock
) -> Callable[..., Daemon]:
    def build(tokens: dict[str, str] | None = None, interval: str = "1h",
              **sources: Any) -> Daemon:
        config = make_config(
            schedule={"interval": interval, "repoll_ages": ["1h", "1d", "7d"],
                      "catchup_horizon": "2d", "jitter": "0s", "access_error_backoff": "6h"},
            sources={**EVERY, **sources},
            orgs=[{"id": "org-alpha", "segments": [SEGMENT]}],
        )
        client = make_client(tokens=tokens, rate_limit=1e6)
        return Daemon(Collector(config, Store(engine), client), clock=clock)

    return build


def requests_by_endpoint(sim: Simulator) -> Counter[str]:
    return Counter(r.endpoint for r in sim.requests if r.status == 200)


def check_against_truth(sim: Simulator, engine: Engine, *, settled_only: bool) -> Counter[str]:
    """Every stored row of every source equals the simulator's answer for its window or
    bucket now; returns how many rows were checked, by view."""
    checked: Counter[str] = Counter()
    settled = " WHERE settled" if settled_only else ""
    for row in rows(engine, f"SELECT * FROM pr_metrics{settled}"):
        users = SEGMENT["user_ids"] if row["segment"] == "team" else None
        truth = sim.truth_prs(row["org_id"], ts(row["window_start"]), ts(row["window_end"]),
                              user_ids=users)
        for name in ("prs_created_count", "prs_opened_count", "prs_closed_count",
                     "prs_merged_count"):
            assert row[name] == truth[name], (row, truth)
        checked["pr_metrics"] += 1
    for row in rows(engine, f"SELECT * FROM search_metrics{settled}"):
        assert row["segment"] == "all"
        truth = sim.truth_searches(row["org_id"], ts(row["window_start"]), ts(row["window_end"]))
        assert row["searches_created_count"] == truth["searches_created_count"]
        checked["search_metrics"] += 1
    final = " WHERE final" if settled_only else ""
    for row in rows(engine, f"SELECT * FROM active_users{final}"):
        start, end = ts(row["period_start"]), ts(row["period_end"])
        assert PERIODS[row["period"]].at(start).end == end  # whole buckets, exclusive ends
        (truth,) = sim.truth_active_users(row["org_id"], row["period"], start, end,
                                          row["min_sessions"], row["min_searches"])
        assert row["active_users"] == truth["active_users"], (row, truth)
        checked["active_users"] += 1
    for row in rows(engine, f"SELECT * FROM acu_consumption_daily{final}"):
        start, end = ts(row["day_start"]), ts(row["day_end"])
        assert BILLING_DAYS.at(start).end == end
        assert start % DAY == 8 * 3600
        (truth,) = sim.truth_consumption(row["org_id"], start, end)["consumption_by_date"]
        assert row["acus"] == pytest.approx(truth["acus"])
        assert row["acus_devin"] == pytest.approx(truth["acus_by_product"]["devin"])
        assert row["acus_cascade"] == pytest.approx(truth["acus_by_product"]["cascade"])
        checked["acu_consumption_daily"] += 1
    return checked


def test_the_daemon_collects_every_source_and_settles_it_at_the_truth(
    sim: Simulator, family_daemon: Callable[..., Daemon], clock: FakeClock, engine: Engine
) -> None:
    clock.now = T0 + 600
    daemon = family_daemon()
    sim.reset_stats()
    daemon.run_org("org-alpha")
    first = requests_by_endpoint(sim)
    # catch-up of 2 days: hourly windows for sessions and PRs (org and segment) and
    # searches (org only); the day, week and month buckets in one request each; the
    # billing days in one request
    assert first["prs"] == 2 * (2 * 24 + 1)
    assert first["searches"] == first["prs"] // 2
    assert first["active_users"] == 3
    assert first["consumption"] == 1
    check_against_truth(sim, engine, settled_only=False)
    # nine days later every closed window and bucket has been re-polled to the end of
    # its ladder: settled, and still equal to the truth (late merges and closes included)
    while clock.now < T0 + 9 * DAY:
        clock.advance(6 * 3600)  # runs may be far apart: what is due waits for the next
        daemon.run_org("org-alpha")
    checked = check_against_truth(sim, engine, settled_only=True)
    assert checked["pr_metrics"] >= 2 * 24 * 2
    assert checked["search_metrics"] >= 24 * 2
    assert checked["active_users"] >= 3 + 1  # days, and a closed week
    assert checked["acu_consumption_daily"] >= 3
    # the open day, week and month and billing day are refreshed on every run (1h)
    sim.reset_stats()
    for _ in range(4):
        clock.advance(3600)
        daemon.run_org("org-alpha")
    calls = requests_by_endpoint(sim)
    assert 3 * 4 <= calls["active_users"] <= 3 * 4 + 3  # (+ a bucket that just closed)
    assert 4 <= calls["consumption"] <= 4 + 1
    assert calls["searches"] >= 4
    # status knows every source, with its own calendar
    statuses = target_status(Store(engine), targets_from_config(daemon.config), now=clock.now,
                             horizon=2 * DAY)
    by_source = {s.source: s for s in statuses if s.segment in ("all", "team")
                 or s.source.startswith("active_users")}
    assert set(by_source) == {"sessions", "prs", "searches", "active_users.day",
                              "active_users.week", "active_users.month", "consumption"}
    assert all(s.flag == "ok" and s.missing == 0 for s in statuses), statuses


def test_daily_view_joins_every_source_for_an_org_and_day(
    sim: Simulator, family_daemon: Callable[..., Daemon], clock: FakeClock, engine: Engine
) -> None:
    clock.now = T0 + 600
    family_daemon().run_org("org-alpha")
    day = T0 - DAY
    (row,) = rows(engine, "SELECT * FROM devin_daily WHERE org_id = 'org-alpha' AND day = :d",
                  d=DAYS.at(day).start_dt.date() if engine.dialect.name == "postgresql"
                  else DAYS.at(day).start_dt.strftime("%Y-%m-%d"))
    sessions = sim.truth("org-alpha", day, day + DAY)
    prs = sim.truth_prs("org-alpha", day, day + DAY)
    (dau,) = sim.truth_active_users("org-alpha", "day", day, day + DAY)
    assert row["sessions"] == sessions["sessions_created_count"]
    assert row["prs_created"] == prs["prs_created_count"]
    assert row["prs_merged"] == prs["prs_merged_count"]
    assert row["searches"] == sim.truth_searches("org-alpha", day, day + DAY)[
        "searches_created_count"]
    assert row["daily_active_users"] == dau["active_users"]


def test_thresholds_are_stored_with_each_row_and_never_mixed(
    sim: Simulator, family_daemon: Callable[..., Daemon], clock: FakeClock, engine: Engine
) -> None:
    clock.now = T0 + 600
    family_daemon().run_org("org-alpha")
    family_daemon(active_users={"min_sessions": 3, "min_searches": 2}).run_org("org-alpha")
    got = rows(engine, "SELECT min_sessions, min_searches, COUNT(*) AS n FROM active_users"
                       " WHERE period = 'day' GROUP BY min_sessions, min_searches"
                       " ORDER BY min_sessions")
    assert [(r["min_sessions"], r["min_searches"]) for r in got] == [(1, 1), (3, 2)]
    assert got[0]["n"] == got[1]["n"]
    check_against_truth(sim, engine, settled_only=False)


def test_a_missing_billing_permission_rests_consumption_only(
    sim: Simulator, family_daemon: Callable[..., Daemon], clock: FakeClock, engine: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    no_billing = "cog_no_billing_token_7a1"
    sim.add_token(no_billing, TokenGrant(None, denied=frozenset({"consumption"})))
    clock.now = T0 + 600
    daemon = family_daemon(tokens={"org-alpha": no_billing})
    with caplog.at_level("ERROR"):
        daemon.run_org("org-alpha")
        clock.advance(3600)
        sim.reset_stats()
        daemon.run_org("org-alpha")
    # the second run does not ask for consumption again (it rests), the others go on
    calls = Counter(r.endpoint for r in sim.requests)
    assert calls["consumption"] == 0
    assert calls["sessions"] > 0
    assert rows(engine, "SELECT COUNT(*) AS n FROM acu_consumption_daily")[0]["n"] == 0
    assert rows(engine, "SELECT COUNT(*) AS n FROM pr_metrics")[0]["n"] > 0
    errors = [r.getMessage() for r in caplog.records if "consumption" in r.getMessage()]
    assert len(errors) == 1  # once per run, not once per window
    assert "ManageBilling" in errors[0]
    assert "ViewOrgConsumption" in errors[0]
    assert no_billing not in caplog.text
    (consumption,) = [s for s in target_status(
        Store(engine), targets_from_config(daemon.config), now=clock.now, horizon=3 * DAY)
        if s.source == "consumption"]
    assert consumption.failing > 0
    assert "ManageBilling" in consumption.failing_windows[0].error


def test_a_backfill_of_every_source_takes_few_requests_and_stores_the_truth(
    tmp_path: Path, backend: str, db_url: str
) -> None:
    import time

    now = time.time()
    with Simulator(orgs=("org-alpha",), tokens={TOKEN: TokenGrant(None)},
                   clock=lambda: now) as frozen:
        config = tmp_path / "c.toml"
        config.write_text(
            f'[database]\nurl = "{db_url}"\n'
            f'[api]\nbase_url = "{frozen.base_url}"\nrate_limit = 2000\nconcurrency = 8\n'
            '[windows]\nsize = "1d"\n'
            '[[orgs]]\nid = "org-alpha"\n'
        )
        env = {"DEVIN_API_TOKEN": TOKEN}
        assert invoke(["--config", str(config), "db", "upgrade"], env).exit_code == 0
        since = now - 70 * DAY
        args = ["--config", str(config)]
        result = invoke([*args, "backfill", "--since",
                         DAYS.at(since).start_dt.strftime("%Y-%m-%d")], env)
        assert result.exit_code == 0, result.output
        calls = requests_by_endpoint(frozen)
        start = DAYS.at(since).start

        def requests(calendar: Any, per_call: int) -> int:
            return -(-calendar.count(start, now) // per_call)

        # defaults: a month of days, a quarter of weeks, a year of months, 31 billing days
        assert calls["active_users"] == (requests(DAYS, 31) + requests(WEEKS, 13)
                                         + requests(MONTHS, 12))
        assert calls["consumption"] == requests(BILLING_DAYS, 31)
        assert calls["prs"] == calls["searches"] == DAYS.count(start, now)
        engine = db.create_engine_for(db_url)
        try:
            checked = check_against_truth(frozen, engine, settled_only=False)
        finally:
            engine.dispose()
        assert checked["active_users"] == (DAYS.count(start, now) + WEEKS.count(start, now)
                                           + MONTHS.count(start, now))
        assert checked["acu_consumption_daily"] == BILLING_DAYS.count(start, now)
        # done: a second backfill asks for nothing
        frozen.reset_stats()
        again = invoke([*args, "backfill", "--since",
                        DAYS.at(since).start_dt.strftime("%Y-%m-%d")], env)
        assert again.exit_code == 0, again.output
        assert frozen.count() == 0
        # the organizations table follows the configuration; a removed org keeps its data
        config.write_text(config.read_text().replace('id = "org-alpha"', 'id = "org-beta"'))
        invoke([*args, "collect"], env)
        engine = db.create_engine_for(db_url)
        try:
            orgs = rows(engine, "SELECT org_id, origin, removed_at FROM organizations"
                                " ORDER BY org_id")
            kept = rows(engine, "SELECT COUNT(*) AS n FROM pr_metrics"
                                " WHERE org_id = 'org-alpha'")[0]["n"]
        finally:
            engine.dispose()
        assert [(o["org_id"], o["origin"], o["removed_at"] is None) for o in orgs] == [
            ("org-alpha", "config", False), ("org-beta", "config", True)]
        assert kept == DAYS.count(start, now)


def test_discovery_adds_and_removes_orgs_while_the_daemon_runs(
    sim: Simulator, make_config: Callable[..., Config], make_client: MakeClient,
    engine: Engine, clock: FakeClock,
) -> None:
    from collector.assembly import known_orgs
    from collector.credentials import ANY_ORG, ENTERPRISE

    sim.set_orgs(("org-alpha", "org-beta", "org-sandbox-1"),
                 names={"org-beta": "Beta", "org-sandbox-1": "Sandbox"})
    config = make_config(
        schedule={"interval": "1h", "catchup_horizon": "1d", "jitter": "0s"},
        sources={"enabled": ["sessions", "searches"]},
        discovery={"token_env": "ENTERPRISE_TOKEN", "exclude": ["Sandbox"]},
        orgs=[{"id": "org-alpha", "segments": [SEGMENT], "sources": ["sessions"]}],
    )
    client = make_client(tokens={"org-alpha": TOKEN, ENTERPRISE: TOKEN, ANY_ORG: TOKEN})
    clock.now = T0 + 600
    daemon = Daemon(Collector(config, Store(engine), client), clock=clock)
    scheduler = daemon.scheduler()
    assert {job.id for job in scheduler.get_jobs()} == {"org-alpha", "@discovery"}
    # found at start: org-beta (the sandbox is excluded by name; org-alpha keeps its own
    # settings: its segment, sessions only)
    assert daemon.sync_orgs(scheduler) == (["org-beta"], [])
    assert {job.id for job in scheduler.get_jobs()} == {"org-alpha", "org-beta", "@discovery"}
    assert {(t.org_id, t.segment, t.source.name) for t in daemon.targets("org-alpha")} == {
        ("org-alpha", "all", "sessions"), ("org-alpha", "team", "sessions")}
    sim.reset_stats()
    daemon.run_org("org-beta")  # a new org is caught up over the horizon by itself
    beta = Counter(r.endpoint for r in sim.requests if r.org_id == "org-beta")
    assert beta == {"sessions": 25, "searches": 25}
    check_against_truth(sim, engine, settled_only=False)
    orgs = {r["org_id"]: r for r in rows(engine, "SELECT * FROM organizations")}
    assert {k: (v["origin"], v["name"], v["removed_at"]) for k, v in orgs.items()} == {
        "org-alpha": ("config", None, None), "org-beta": ("discovered", "Beta", None)}
    # org-beta disappears: no more job, its data stays, and it shows as removed
    sim.set_orgs(("org-alpha", "org-sandbox-1"))
    clock.advance(3600)
    assert daemon.sync_orgs(scheduler) == ([], ["org-beta"])
    assert {job.id for job in scheduler.get_jobs()} == {"org-alpha", "@discovery"}
    assert daemon.targets("org-beta") == []
    (gone,) = rows(engine, "SELECT removed_at FROM organizations WHERE org_id = 'org-beta'")
    assert gone["removed_at"] is not None
    assert rows(engine, "SELECT COUNT(*) AS n FROM search_metrics"
                        " WHERE org_id = 'org-beta'")[0]["n"] == 25
    assert [o.id for o in known_orgs(config, Store(engine))] == ["org-alpha"]
    # the API cannot list the orgs for a while: the daemon keeps the ones it knows
    sim.set_orgs(("org-alpha", "org-beta"))
    daemon.sync_orgs(scheduler)
    sim.inject(Fault("status", status=403, endpoint="organizations", count=10))
    assert daemon.sync_orgs(scheduler) == ([], [])
    assert "org-beta" in {job.id for job in scheduler.get_jobs()}


def test_a_source_with_a_longer_interval_is_fetched_on_its_own_interval(
    sim: Simulator, family_daemon: Callable[..., Daemon], clock: FakeClock
) -> None:
    """Runs every 15 minutes fetch the open day, week, month and billing day once an hour
    (their interval), not every half hour."""
    clock.now = T0 + 600
    daemon = family_daemon(interval="15m")
    daemon.run_org("org-alpha")
    clock.advance(DAY)  # past the catch-up: only the open buckets and re-polls remain
    daemon.run_org("org-alpha")
    sim.reset_stats()
    for _ in range(4 * 6):  # six hours of runs
        clock.advance(900)
        daemon.run_org("org-alpha")
    calls = requests_by_endpoint(sim)
    assert calls["searches"] >= 24  # the open window, every run
    assert 6 <= calls["consumption"] <= 6 + 1  # hourly (+ the billing day that closed)
    assert 3 * 6 <= calls["active_users"] <= 3 * 6 + 3
