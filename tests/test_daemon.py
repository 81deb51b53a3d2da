"""The daemon's runs, driven by an injected clock: what is fetched, when, and how often."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from collector.assembly import Collector
from collector.config import Config
from collector.daemon import Daemon
from collector.prometheus import Metrics
from collector.sim import Fault, Simulator
from collector.status import target_status
from collector.store import Store
from collector.targets import targets_from_config
from collector.windows import DAY, Window, window_at, windows_between
from tests.helpers import T0, TOKEN, FakeClock, MakeClient, by_window, rows, ts

AGES = ["1h", "6h", "1d"]


@pytest.fixture
def daemon_for(
    make_config: Callable[..., Config], make_client: MakeClient, engine: Engine, clock: FakeClock
) -> Callable[..., Daemon]:
    def build(tokens: dict[str, str] | None = None, metrics: Metrics | None = None,
              concurrency: int = 4, rate_limit: float = 1e6, **schedule: Any) -> Daemon:
        config = make_config(schedule={"interval": "15m", "repoll_ages": AGES,
                                       "catchup_horizon": "1d", "jitter": "0s", **schedule},
                             api={"concurrency": concurrency})
        client = make_client(tokens=tokens, on_attempt=metrics.attempt if metrics else None,
                             rate_limit=rate_limit)
        return Daemon(Collector(config, Store(engine), client), clock=clock, metrics=metrics)

    return build


def fetches(sim: Simulator, org: str = "org-alpha") -> Counter[int]:
    """How many successful requests each window start got."""
    return Counter(r.time_after for r in sim.requests if r.org_id == org and r.status == 200
                   and r.time_after is not None)


def run_every(daemon: Daemon, clock: FakeClock, until: float, step: int = 900) -> None:
    while clock.now < until:
        daemon.run_org("org-alpha")
        clock.advance(step)


def test_steady_state_fetches_each_window_4_plus_ages_times(
    sim: Simulator, daemon_for: Callable[..., Daemon], clock: FakeClock, engine: Engine
) -> None:
    clock.now = T0
    daemon = daemon_for(catchup_horizon="1h")
    run_every(daemon, clock, T0 + 2 * DAY + 3600)
    counts = fetches(sim)
    # windows whose whole life (open + every repoll age) lies inside the simulated time
    complete = [T0 + h * 3600 for h in range(2, 24)]
    assert {counts[start] for start in complete} == {4 + len(AGES)}
    settled = by_window(engine, "session_metrics", daemon._targets["org-alpha"][0])
    for start in complete:
        assert bool(settled[start]["settled"]) is True
    # what is stored is what the API said at the last fetch (the 1d repoll)
    final = clock.now
    for start in complete[:3]:
        clock.now = start + 3600 + DAY
        truth = sim.truth("org-alpha", start, start + 3600)
        assert settled[start]["sessions_with_merged_prs_count"] == truth[
            "sessions_with_merged_prs_count"]
        assert settled[start]["sessions_created_count"] == truth["sessions_created_count"]
    clock.now = final


def test_late_merges_are_followed_until_settled(
    sim: Simulator, daemon_for: Callable[..., Daemon], clock: FakeClock, engine: Engine
) -> None:
    daemon = daemon_for(catchup_horizon="1h", repoll_ages=["1h", "3d"])
    target = daemon._targets["org-alpha"][0]

    def merged(start: int, at: float) -> int:
        clock.now = at
        return int(sim.truth("org-alpha", start, start + 3600)["sessions_with_merged_prs_count"])

    # an hour of the simulated day whose merged-PR count grows between the two repolls
    start = next(s for s in range(T0, T0 + DAY, 3600)
                 if merged(s, s + 3 * DAY) > merged(s, s + 2 * 3600))
    window = Window(start, start + 3600)
    clock.now = start + 3000
    daemon.run_org("org-alpha")  # open
    clock.now = start + 2 * 3600 + 60
    daemon.run_org("org-alpha")  # first repoll age
    early = by_window(engine, "session_metrics", target)[start]
    clock.now = start + 3600 + 3 * DAY + 60
    daemon.run_org("org-alpha")  # last repoll age: settles
    late = by_window(engine, "session_metrics", target)[start]
    truth = sim.truth("org-alpha", window.start, window.end)
    assert late["sessions_with_merged_prs_count"] == truth["sessions_with_merged_prs_count"]
    assert late["sessions_with_merged_prs_count"] > early["sessions_with_merged_prs_count"]
    assert bool(late["settled"]) is True
    assert bool(early["settled"]) is False
    before = fetches(sim)[start]
    clock.advance(30 * DAY)
    daemon.run_org("org-alpha")
    assert fetches(sim)[start] == before  # settled windows are never fetched again


def test_restart_resumes_without_skipping_or_refetching(
    sim: Simulator, daemon_for: Callable[..., Daemon], clock: FakeClock
) -> None:
    clock.now = T0
    run_every(daemon_for(catchup_horizon="1h"), clock, T0 + DAY + 6 * 3600)
    # a new process: nothing in memory, everything from the ledger
    run_every(daemon_for(catchup_horizon="1h"), clock, T0 + 2 * DAY + 3600)
    counts = fetches(sim)
    assert {counts[T0 + h * 3600] for h in range(2, 24)} == {4 + len(AGES)}


def test_downtime_is_caught_up_newest_gap_first_within_the_horizon(
    sim: Simulator, daemon_for: Callable[..., Daemon], clock: FakeClock, engine: Engine
) -> None:
    clock.now = T0 + 600
    # one request at a time, so the simulator sees them in the planned order
    daemon = daemon_for(catchup_horizon="12h", repoll_ages=["1h"], concurrency=1)
    daemon.run_org("org-alpha")
    sim.reset_stats()
    clock.now = T0 + 2 * DAY + 600  # two days down
    report = daemon.run_org("org-alpha")
    assert report is not None
    assert report.ok
    starts = [r.time_after for r in sim.requests]
    current = window_at(clock.now, 3600).start
    missed = list(range(current - 12 * 3600, current, 3600))
    assert starts[0] == current  # the open window first
    # then the re-polls of windows collected before, most overdue first: the window that
    # was open before the downtime (due a quarter of an hour later), the one that had just
    # closed (due at its first repoll age) ...
    assert starts[1:3] == [T0, T0 - 3600]
    # ... then the gaps inside the horizon, newest first: yesterday before last week
    assert starts[3:] == missed[::-1]
    assert len(set(starts)) == len(starts)
    # the next run fetches only the open window: nothing else is due yet
    sim.reset_stats()
    clock.advance(900)
    daemon.run_org("org-alpha")
    assert [r.time_after for r in sim.requests] == [current]


@pytest.mark.parametrize("error", ["401", "404"])
def test_one_org_failing_does_not_stop_the_others_and_rests(
    sim: Simulator, daemon_for: Callable[..., Daemon], clock: FakeClock, engine: Engine,
    error: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """A revoked token (401) or an org the API does not know (404): the org rests, and the
    run says so once, not once per window."""
    clock.now = T0 + 600
    beta_token = "cog_revoked_x" if error == "401" else TOKEN
    if error == "404":
        sim.inject(Fault("status", status=404, count=-1, org_id="org-beta"))
    daemon = daemon_for(tokens={"org-alpha": TOKEN, "org-beta": beta_token},
                        access_error_backoff="1h")
    daemon.run_org("org-alpha")
    with caplog.at_level(logging.INFO, logger="collector"):
        daemon.run_org("org-beta")
    (said,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "org-beta" in said.getMessage()
    assert "the org rests" in said.getMessage()
    assert not [r for r in caplog.records if r.getMessage().startswith("window failed")]
    first = sim.count(org_id="org-beta")
    # at most the requests already in flight when the first 401 came back
    assert 1 <= first <= daemon.config.api.concurrency
    for _ in range(3):
        clock.advance(900)
        daemon.run_org("org-alpha")
        daemon.run_org("org-beta")
    assert sim.count(org_id="org-beta") == first  # resting: not hammered every run
    assert sim.count(org_id="org-alpha", status=200) > 3
    clock.advance(3600)
    daemon.run_org("org-alpha")
    daemon.run_org("org-beta")
    again = sim.count(org_id="org-beta")
    assert first < again <= first + daemon.config.api.concurrency  # tried after the backoff
    statuses = {(s.org_id, s.segment): s for s in target_status(
        Store(engine), targets_from_config(daemon.config), now=clock.now, horizon=DAY,
        max_age=3 * 900)}
    beta = statuses[("org-beta", "all")]
    assert beta.failing > 0
    assert error in beta.failing_windows[0].error
    assert beta.stale is True
    assert beta.last_success is None
    alpha = statuses[("org-alpha", "all")]
    assert alpha.stale is False
    assert alpha.failing == 0
    assert alpha.collected > 0


def test_status_counts(
    sim: Simulator, daemon_for: Callable[..., Daemon], clock: FakeClock, engine: Engine
) -> None:
    clock.now = T0 + 600
    daemon = daemon_for(catchup_horizon="6h", repoll_ages=["1h"])
    daemon.run_org("org-alpha")
    ((alpha, _),) = [(s, 0) for s in target_status(
        Store(engine), targets_from_config(daemon.config)[:1], now=clock.now,
        horizon=DAY, max_age=1800)]
    assert alpha.collected == 7  # open window + 6h of catch-up
    assert alpha.missing == 24 - 6  # the horizon of `status` is a day
    assert alpha.newest_window == T0
    assert alpha.unsettled == 2  # the open window and the one that closed under an hour ago
    assert alpha.staleness == 0
    assert alpha.stale is False
    assert ts(rows(engine, "SELECT MAX(window_start) AS m FROM session_metrics")[0]["m"]) == T0


def test_prometheus_metrics(
    sim: Simulator, daemon_for: Callable[..., Daemon], clock: FakeClock
) -> None:
    metrics = Metrics()
    clock.now = T0 + 600
    daemon = daemon_for(metrics=metrics, catchup_horizon="2h")
    daemon.run_org("org-alpha")
    metrics.serve("127.0.0.1", 0)
    try:
        text = httpx.get(f"http://127.0.0.1:{metrics.port}/metrics").text
    finally:
        metrics.close()
    labels = 'org_id="org-alpha",outcome="200",source="sessions"'
    assert f"collector_requests_total{{{labels}}} 3.0" in text
    labels = 'org_id="org-alpha",result="collected",source="sessions"'
    assert f"collector_windows_total{{{labels}}} 3.0" in text
    assert 'collector_run_duration_seconds_count{org_id="org-alpha"} 1.0' in text
    (last,) = [line for line in text.splitlines()
               if line.startswith(
                   'collector_last_success_timestamp_seconds{org_id="org-alpha",source="sessions"}')]
    assert float(last.split()[-1]) == T0 + 600


def test_retries_count_every_request_after_the_first_of_each_window(
    sim: Simulator, daemon_for: Callable[..., Daemon], clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`collector_retries_total` counts the requests beyond one per window, also for a
    window that ends in an error that is not retried."""
    metrics = Metrics()
    clock.now = T0 + 600
    sim.inject(Fault("status", status=500, count=2))
    sim.inject(Fault("status", status=422))
    # one window at a time: the first window is answered 500, 500, then 422
    with caplog.at_level(logging.INFO, logger="collector"):
        report = daemon_for(metrics=metrics, catchup_horizon="2h", concurrency=1).run_org(
            "org-alpha")
    assert report is not None
    assert report.failed_count == 1
    # the failure is logged once, its window a field, not repeated in the text
    (failure,) = report.failed
    (logged,) = [r for r in caplog.records if r.getMessage().startswith("window failed")]
    assert logged.window == str(failure.window)  # type: ignore[attr-defined]
    assert str(failure.window) not in logged.getMessage()
    windows = report.collected + report.failed_count
    assert windows == 3
    retries = metrics.retries.labels("org-alpha", "sessions")._value.get()
    assert retries == sim.count() - windows == 2


def test_windows_a_run_cannot_reach_are_deferred_not_failed(
    sim: Simulator, daemon_for: Callable[..., Daemon], clock: FakeClock, engine: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A catch-up backlog larger than the rate limit allows before the run's deadline: the
    run stops taking windows it cannot start in time, and those are deferred: not written,
    not failing, counted apart, logged at INFO; the next runs take them."""
    metrics = Metrics()
    clock.now = T0 + 600
    # 20 requests a second, a 1-second deadline: about 20 of the 49 due windows fit
    daemon = daemon_for(metrics=metrics, catchup_horizon="2d", run_deadline="1s",
                        rate_limit=20.0)
    with caplog.at_level(logging.INFO, logger="collector"):
        report = daemon.run_org("org-alpha")
    assert report is not None
    assert report.failed_count == 0
    assert 10 <= report.collected <= 25
    assert sim.count() == report.collected  # a deferred window costs no request
    (run,) = [r for r in caplog.records if r.getMessage() == "run"]
    assert run.levelno == logging.INFO
    assert (run.due, run.collected, run.failed, run.deferred) == (  # type: ignore[attr-defined]
        49, report.collected, 0, 49 - report.collected)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert rows(engine, "SELECT COUNT(*) AS n FROM collection_ledger"
                        " WHERE last_error IS NOT NULL OR failure_count > 0")[0]["n"] == 0
    (alpha,) = target_status(Store(engine), targets_from_config(daemon.config)[:1],
                             now=clock.now, horizon=2 * DAY, max_age=1800)
    assert alpha.failing == 0
    assert alpha.collected == report.collected
    deferred = metrics.windows.labels("org-alpha", "sessions", "deferred")._value.get()
    assert deferred == 49 - report.collected
    assert metrics.windows.labels("org-alpha", "sessions", "failed")._value.get() == 0
    # the next run (here with room for all) takes the rest: nothing was lost
    clock.advance(60)
    daemon_for(catchup_horizon="2d").run_org("org-alpha")
    assert set(by_window(engine, "session_metrics", targets_from_config(daemon.config)[0])) == {
        w.start for w in windows_between(T0 + 600 - 2 * DAY, T0 + 600, 3600)}


def test_a_shorter_interval_takes_effect_at_once(
    sim: Simulator, daemon_for: Callable[..., Daemon], clock: FakeClock
) -> None:
    """Due times computed under a 15-minute interval must not hold the open window back
    once the interval is 20 seconds: every run fetches it."""
    clock.now = T0 + 600
    daemon_for(interval="15m", catchup_horizon="1h").run_org("org-alpha")
    fast = daemon_for(interval="20s", catchup_horizon="1h", jitter="0s")
    current = window_at(clock.now, 3600).start
    for _ in range(3):
        clock.advance(20)
        sim.reset_stats()
        fast.run_org("org-alpha")
        assert [r.time_after for r in sim.requests] == [current]
    # and the old interval, restored, fetches it no more often than every 15 minutes again
    slow = daemon_for(interval="15m", catchup_horizon="1h")
    clock.advance(20)
    slow.run_org("org-alpha")  # due at the time the 20s interval set: fetched once more
    for _ in range(3):
        sim.reset_stats()
        clock.advance(60)
        slow.run_org("org-alpha")
        assert sim.requests == []
