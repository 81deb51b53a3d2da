"""`collector backfill`: values, skipping, resuming after kill -9, beside a daemon."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import tracemalloc
from collections import Counter
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
from click import _termui_impl as click_termui
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text

from collector import backfill as bf
from collector.calendars import DAYS, windows
from collector.cli import main
from collector.cli.backfill import Reporter
from collector.config import load_config
from collector.sim import Fault, Simulator, TokenGrant
from collector.store import Store
from collector.targets import Target, Timing, targets_from_config
from collector.windows import DAY, windows_between
from tests.helpers import TOKEN, clean_env, invoke, run_on_terminal, sqlite_tables, ts

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

SINCE, UNTIL = "2026-10-01", "2026-10-03"
OCT1 = int(bf.parse_when(SINCE))
ENV = {"DEVIN_API_TOKEN": TOKEN}


def write_config(tmp_path: Path, base_url: str, db_url: str, extra: str = "") -> Path:
    path = tmp_path / "collector.toml"
    path.write_text(
        f'[database]\nurl = "{db_url}"\n'
        f'[api]\nbase_url = "{base_url}"\nrate_limit = 2000\nconcurrency = 8\n'
        'backoff_base = 0.01\nbackoff_max = 0.02\n'
        '[windows]\nsize = "1h"\n'
        '[sources]\nenabled = ["sessions"]\n'
        '[[orgs]]\nid = "org-alpha"\n'
        '[[orgs.segments]]\nname = "team"\nuser_ids = ["user-2"]\n'
        '[[orgs]]\nid = "org-beta"\n' + extra
    )
    return path


def cli(config: Path, *args: str) -> Result:
    return invoke(["--config", str(config), *args], ENV)


def migrated(tmp_path: Path, sim: Simulator, db_url: str, extra: str = "") -> Path:
    config = write_config(tmp_path, sim.base_url, db_url, extra)
    assert cli(config, "db", "upgrade").exit_code == 0
    return config


def test_backfill_stores_the_simulators_truth(
    live_sim: Simulator, tmp_path: Path, db_url: str
) -> None:
    config = migrated(tmp_path, live_sim, db_url)
    result = cli(config, "backfill", "--since", SINCE, "--until", UNTIL)
    assert result.exit_code == 0, result.output
    assert "backfill: 144 of 144 window(s) collected" in result.output
    engine = create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT org_id, segment, window_start, sessions_created_count,"
            " sessions_with_merged_prs_count, settled FROM session_metrics")).all()
        daily = conn.execute(text(
            "SELECT org_id, segment, day, sessions_created_count, complete"
            " FROM session_metrics_daily")).all()
    engine.dispose()
    assert len(rows) == 3 * 48
    for org, segment, start, created, merged, settled in rows:
        truth = live_sim.truth(org, ts(start), ts(start) + 3600,
                               user_ids=["user-2"] if segment == "team" else None)
        assert created == truth["sessions_created_count"]
        assert merged == truth["sessions_with_merged_prs_count"]
        assert bool(settled) is True  # weeks old: settled on first fetch
    assert len(daily) == 6
    for _org, segment, _day, created, complete in daily:
        assert bool(complete) is True
        assert created > 0 or segment == "team"
    assert {(o, s) for o, s, *_ in daily} == {
        ("org-alpha", "all"), ("org-alpha", "team"), ("org-beta", "all")}
    assert live_sim.count(status=200) == 144

    # a second run skips every settled window; --force fetches them again
    live_sim.reset_stats()
    again = cli(config, "backfill", "--since", SINCE, "--until", UNTIL)
    assert again.exit_code == 0
    assert live_sim.count() == 0
    forced = cli(config, "backfill", "--since", SINCE, "--until", UNTIL, "--force",
                 "--org", "org-beta")
    assert forced.exit_code == 0
    assert "48 of 48" in forced.output
    assert live_sim.count(org_id="org-beta") == 48
    assert live_sim.count(org_id="org-alpha") == 0


def test_dry_run_counts_and_estimates_without_requests(
    live_sim: Simulator, tmp_path: Path
) -> None:
    config = migrated(tmp_path, live_sim, f"sqlite:///{tmp_path / 'c.db'}")
    cli(config, "backfill", "--since", SINCE, "--until", "2026-10-02", "--segment", "all",
        "--org", "org-alpha")
    config.write_text(config.read_text().replace("rate_limit = 2000", "rate_limit = 4"))
    result = cli(config, "backfill", "--since", SINCE, "--until", "2026-10-03T12:00:00Z",
                 "--dry-run")
    assert result.exit_code == 0, result.output
    # 60 hourly windows for each of 3 targets; org-alpha/all has its first 24 already
    assert "3 target(s): 180 windows; 24 already done; 156 to fetch in 156 request(s)" in (
        result.output)
    assert "about 39s at 4 request(s)/s per token" in result.output  # 156 / 4
    assert live_sim.count() == 24


@pytest.mark.parametrize(
    ("beta_token", "seconds"), [(TOKEN, "36s"), ("cog_beta_token", "24s")]
)
def test_dry_run_shares_the_rate_limit_of_one_token_held_in_two_variables(
    live_sim: Simulator, tmp_path: Path, beta_token: str, seconds: str
) -> None:
    """org-beta's token is in a variable of its own; when it holds the same token as
    org-alpha's, the two share one rate limit: 72 requests at 2/s, not 48 and 24 apart."""
    config = migrated(tmp_path, live_sim, f"sqlite:///{tmp_path / 'c.db'}")
    text = config.read_text().replace("rate_limit = 2000", "rate_limit = 2")
    config.write_text(text.replace('id = "org-beta"\n', 'id = "org-beta"\ntoken_env = "BETA"\n'))
    result = CliRunner().invoke(
        main, ["--config", str(config), "backfill", "--since", SINCE, "--until", "2026-10-02",
               "--dry-run"], env={**ENV, "BETA": beta_token}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "72 to fetch in 72 request(s)" in result.output
    assert f"about {seconds} at 2 request(s)/s per token" in result.output


def test_dry_run_uses_the_rate_learned_for_one_token_held_in_two_variables(
    live_sim: Simulator, tmp_path: Path
) -> None:
    """A run learned 1/s for the token under $DEVIN_API_TOKEN; org-beta's $BETA holds the
    same token: both orgs' 72 requests go at the learned 1/s, not at the ceiling of 2/s."""
    db_url = f"sqlite:///{tmp_path / 'c.db'}"
    config = migrated(tmp_path, live_sim, db_url)
    text = config.read_text().replace("rate_limit = 2000", "rate_limit = 2")
    config.write_text(text.replace('id = "org-beta"\n', 'id = "org-beta"\ntoken_env = "BETA"\n'))
    engine = create_engine(db_url)
    Store(engine).save_rates({"$DEVIN_API_TOKEN": 1.0}, at=time.time())
    engine.dispose()
    result = CliRunner().invoke(
        main, ["--config", str(config), "backfill", "--since", SINCE, "--until", "2026-10-02",
               "--dry-run"], env={**ENV, "BETA": TOKEN}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "72 to fetch in 72 request(s), about 1m 12s at 1 request(s)/s per token" in (
        result.output)
    assert "learned by the last run" in result.output


def test_the_dry_run_counts_what_the_plan_would_fetch(
    live_sim: Simulator, tmp_path: Path
) -> None:
    """The estimate counts a windowed source's due windows in the ledger and walks only the
    buckets of the others: the same requests and windows as walking the whole plan, with
    windows done, failed, settled and held by another process in the range."""
    db_url = f"sqlite:///{tmp_path / 'c.db'}"
    config = migrated(tmp_path, live_sim, db_url)
    config.write_text(config.read_text().replace(
        'enabled = ["sessions"]',
        'enabled = ["sessions", "prs", "searches", "active_users", "consumption"]'))
    assert cli(config, "backfill", "--since", SINCE, "--until", "2026-10-02").exit_code == 0
    live_sim.inject(Fault("status", status=403, count=-1, org_id="org-beta", endpoint="prs"))
    assert cli(config, "backfill", "--since", "2026-10-02", "--until", "2026-10-03T06:00:00Z",
               ).exit_code == 1
    engine = create_engine(db_url)
    store = Store(engine)
    loaded = load_config(config, ENV)
    targets = targets_from_config(loaded)
    now = time.time()
    alpha = next(t for t in targets if t.org_id == "org-alpha" and t.source.name == "sessions"
                 and t.segment == "all")
    held = list(windows_between(OCT1 + 2 * DAY + 6 * 3600, OCT1 + 2 * DAY + 12 * 3600, 3600))
    assert store.claim(alpha, held, owner="elsewhere", now=now, cutoff=now, lease=3600,
                       interval=alpha.timing.interval) == {w.start for w in held}
    span = bf.Range(OCT1 - DAY, OCT1 + 4 * DAY, now=now)
    try:
        for force in (False, True):
            found = bf.estimate(store, targets, span, now=now, force=force, tokens={}, rates={})
            walked = list(bf.plan(store, targets, span, clock=lambda: now, claims=None,
                                  force=force))
            assert found.requests == len(walked), force
            assert found.todo == sum(t.calendar.count(w.start, w.end) for t, w in walked)
            assert 0 < found.todo < found.windows
            # both ways of counting are in it: windows counted, buckets walked
            assert any(not t.source.bucketed for t, _ in walked)
            assert any(t.source.bucketed for t, _ in walked)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "2026-10-03", "--until", "2026-10-01"], "wrong way round"),
        (["--since", "yesterday"], "is not a date"),
        (["--since", SINCE, "--org", "org-zeta"], "org-zeta: not in the configuration"),
        (["--since", SINCE, "--segment", "nope"], "no such segment"),
        (["--since", SINCE, "--concurrency", "0"], "0"),
    ],
)
def test_usage_errors_exit_2_and_fetch_nothing(
    live_sim: Simulator, tmp_path: Path, args: list[str], message: str
) -> None:
    config = migrated(tmp_path, live_sim, f"sqlite:///{tmp_path / 'c.db'}")
    result = cli(config, "backfill", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert live_sim.count() == 0


def test_failures_exit_1_and_say_rerun_resumes(live_sim: Simulator, tmp_path: Path) -> None:
    from collector.sim import Fault

    config = migrated(tmp_path, live_sim, f"sqlite:///{tmp_path / 'c.db'}")
    live_sim.inject(Fault("status", status=503, count=-1, org_id="org-beta"))
    result = cli(config, "backfill", "--since", SINCE, "--until", UNTIL)
    assert result.exit_code == 1
    assert "96 of 144" in result.output
    assert "48 window(s) failed" in result.output
    assert "... and 28 more" in result.output
    assert "again to resume" in result.output
    live_sim.clear_faults()
    live_sim.reset_stats()
    result = cli(config, "backfill", "--since", SINCE, "--until", UNTIL)
    assert result.exit_code == 0
    assert live_sim.count() == 48  # only the failed ones
    assert live_sim.count(org_id="org-beta") == 48


def test_the_plan_is_streamed() -> None:
    """Five years of 5-minute windows for 100 targets is 52 million pairs; the plan must
    hand out the first ones without building the rest."""

    class NoLedger(Store):
        def __init__(self) -> None:
            pass

        def not_due_starts(self, *args: object, **kwargs: object) -> set[int]:
            return set()

    targets = [Target(f"org-{i}", timing=Timing(calendar=windows(300))) for i in range(100)]
    span = bf.Range(OCT1 - 5 * 365 * DAY, OCT1, now=OCT1)
    assert sum(span.windows_of(t) for t in targets) > 50_000_000
    tracemalloc.start()
    plan = bf.plan(NoLedger(), targets, span, clock=lambda: OCT1, claims=None, force=True)
    first = list(islice(plan, 100_000))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(first) == 100_000
    assert first[0] == (targets[0], next(windows_between(span.since, span.until, 300)))
    assert first[1] == (targets[1], first[0][1])  # targets take turns
    # targets taking turns window by window: the windows never go back in time
    starts = [window.start for _, window in first]
    assert starts == sorted(starts)
    assert first[100] == (targets[0], next(islice(windows_between(span.since, span.until, 300),
                                                  1, None)))
    assert peak < 40_000_000  # the 100,000 pairs kept by this test, not 52 million


def test_reporter_logs_progress_when_not_interactive(caplog: pytest.LogCaptureFixture) -> None:
    reporter = Reporter(100, interactive=False, every=0.0)
    with caplog.at_level(logging.INFO, logger="collector.backfill"):
        reporter.advance(40)
        reporter.advance(10)
    reporter.close()
    assert "backfill: 40/100 windows" in caplog.text
    assert "backfill: 50/100 windows" in caplog.text
    assert "ETA" in caplog.text
    assert {r.levelname for r in caplog.records} == {"INFO"}  # progress is not a warning


def test_a_terminal_shows_a_progress_bar(live_sim: Simulator, tmp_path: Path) -> None:
    config = migrated(tmp_path, live_sim, f"sqlite:///{tmp_path / 'c.db'}")
    code, output, _ = run_on_terminal(
        ["--config", str(config), "backfill", "--since", SINCE, "--until", UNTIL],
        clean_env(DEVIN_API_TOKEN=TOKEN, COLUMNS="100"),
    )
    assert code == 0, output
    frames = [f.strip() for f in re.split(r"[\r\n]", ANSI.sub("", output)) if f.strip()]
    bars = [f for f in frames if f.startswith("backfill  [")]
    assert bars, output
    assert re.fullmatch(r"backfill  \[#+\]  144/144  100%  [\d,]+ windows/s", bars[-1])
    assert all(len(f) <= 100 for f in bars)
    assert any(f.startswith("backfill: 144 of 144 window(s) collected") for f in frames)
    assert "windows (" not in output  # the log lines are for logs, not terminals


def test_reporter_counts_every_advance_and_draws_one_thread_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The workers' skips and the writer's batches advance one reporter from several
    threads: every count is kept, and click's bar (not thread-safe) is never updated by two
    threads at once, so it ends exactly at the count."""
    in_bar = 0
    overlaps = 0
    update = click_termui.ProgressBar.update

    def slow_update(bar: Any, steps: int, current_item: Any = None) -> None:
        nonlocal in_bar, overlaps
        in_bar += 1
        overlaps += in_bar > 1
        time.sleep(0.0005)
        update(bar, steps, current_item)
        in_bar -= 1

    monkeypatch.setattr(click_termui.ProgressBar, "update", slow_update)
    total = 8 * 100
    reporter = Reporter(total, interactive=True, every=3600.0)
    reporter.REDRAW = 0.0  # draw on every advance

    def advance_100_times() -> None:
        for _ in range(100):
            reporter.advance(1)

    threads = [threading.Thread(target=advance_100_times) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert reporter.done == total
    assert overlaps == 0
    assert reporter._bar is not None
    assert reporter._bar.pos == total
    reporter.close()


def _backfill_process(config: Path) -> subprocess.Popen[str]:
    # two workers: about three seconds for the range, so a kill lands after the first
    # transaction (at most a second in) and well before the last
    return subprocess.Popen(
        [sys.executable, "-m", "collector", "--config", str(config), "backfill",
         "--since", SINCE, "--until", "2026-10-05", "--concurrency", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **ENV},
    )


def _stored_windows(path: Path) -> int:
    """Windows the backfill has committed so far (0 before its first transaction)."""
    try:
        with sqlite3.connect(path) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM metric_windows").fetchone()[0])
    except sqlite3.OperationalError:  # the writer holds the file a moment
        return 0


@pytest.mark.slow
def test_kill_9_then_rerun_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    with Simulator(orgs=("org-alpha", "org-beta"), tokens={TOKEN: TokenGrant(None)},
                   latency=0.02) as sim:
        killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
        killed_dir.mkdir()
        clean_dir.mkdir()
        killed = migrated(killed_dir, sim, f"sqlite:///{killed_dir / 'c.db'}")
        clean = migrated(clean_dir, sim, f"sqlite:///{clean_dir / 'c.db'}")

        proc = _backfill_process(killed)
        deadline = time.monotonic() + 60
        while not _stored_windows(killed_dir / "c.db") and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        stored = sqlite_tables(killed_dir / "c.db")["windows"]
        after_kill = {(r[0], r[1], r[2]) for r in stored}
        assert 0 < len(after_kill) < 3 * 96

        sim.reset_stats()
        proc = _backfill_process(killed)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        second = {(r.org_id, "team" if r.user_ids else "all", r.time_after)
                  for r in sim.requests}
        # the second run fetched only what the first had not stored
        stored_first = {(org, seg, ts(start)) for org, seg, start in after_kill}
        assert not second & stored_first
        everything = {(org, seg, start) for org in ("org-alpha", "org-beta")
                      for seg in ("all", "team") if (org, seg) != ("org-beta", "team")
                      for start in range(OCT1, OCT1 + 4 * DAY, 3600)}
        assert second == everything - stored_first

        proc = _backfill_process(clean)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert sqlite_tables(killed_dir / "c.db") == sqlite_tables(clean_dir / "c.db")


@pytest.mark.slow
def test_backfills_beside_a_running_daemon_fetch_each_window_once(tmp_path: Path) -> None:
    """A daemon catching up over eight days (newest first) and two backfills of the same
    eight days (oldest first, in the same order) at once, on one SQLite file: they all
    claim before they fetch, so every window of the history is fetched by one of them."""
    with Simulator(orgs=("org-alpha", "org-beta"), tokens={TOKEN: TokenGrant(None)},
                   latency=0.005) as sim:
        db_file = tmp_path / "shared.db"
        config = migrated(
            tmp_path, sim, f"sqlite:///{db_file}",
            '[schedule]\ninterval = "1s"\ncatchup_horizon = "9d"\njitter = "0s"\n',
        )
        env = {**os.environ, **ENV}
        started = time.time()
        daemon = subprocess.Popen(
            [sys.executable, "-m", "collector", "--config", str(config), "run"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        try:
            since = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 8 * DAY))
            command = [sys.executable, "-m", "collector", "--config", str(config), "backfill",
                       "--since", since, "--concurrency", "8"]
            other = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
            backfill = subprocess.run(command, capture_output=True, text=True, env=env,
                                      timeout=300, check=False)
            _, other_err = other.communicate(timeout=300)
        finally:
            daemon.send_signal(signal.SIGTERM)
            _, daemon_err = daemon.communicate(timeout=60)
        requests = [r for r in sim.requests if r.status == 200]
    assert other.returncode == 0, other_err
    assert backfill.returncode == 0, backfill.stderr
    # both take claims, so history is fetched once: windows closed an hour before the test
    # began are due for no re-poll during it, and each is fetched by one of the two
    history = Counter(
        (r.org_id, r.user_ids, r.time_after) for r in requests
        if r.time_before is not None and r.time_before <= started - 3600
    )
    assert len(history) >= 2 * 8 * 24 + 8 * 24  # three targets, eight days
    assert sum(history.values()) / len(history) <= 1.05
    assert max(history.values()) == 1
    assert daemon.returncode == 0, daemon_err
    assert "locked" not in backfill.stderr + other_err + daemon_err
    assert "run org=org-alpha" in daemon_err
    with sqlite3.connect(db_file) as conn:
        per_target = conn.execute(
            "SELECT org_id, segment, COUNT(*), COUNT(DISTINCT window_start) FROM metric_windows"
            " GROUP BY 1, 2").fetchall()
        # the backfills' range is whole (the daemon, stopped, may leave claimed windows of
        # its ninth day unfetched)
        ledger = conn.execute("SELECT COUNT(*) FROM collection_ledger WHERE fetch_count = 0"
                              " AND window_start >= ?", (since,)).fetchone()[0]
    assert ledger == 0
    for _org, _segment, count, distinct in per_target:
        assert count == distinct
        assert count >= 8 * 24


def test_backfill_never_stores_a_window_that_has_not_started(
    live_sim: Simulator, tmp_path: Path
) -> None:
    db_file = tmp_path / "f.db"
    config = migrated(tmp_path, live_sim, f"sqlite:///{db_file}")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    ahead = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 2 * DAY))
    result = cli(config, "backfill", "--since", today, "--until", ahead)
    now = time.time()
    assert result.exit_code == 0, result.output
    assert f"--until {ahead} is in the future" in result.output
    open_window = int(now // 3600) * 3600
    with sqlite3.connect(db_file) as conn:
        starts = {row[0] for row in conn.execute(
            "SELECT CAST(strftime('%s', window_start) AS INTEGER) FROM collection_ledger")}
        days = {row[0] for row in conn.execute("SELECT day FROM session_metrics_daily")}
    midnight = int(now // DAY) * DAY
    # every window of today up to the open one, none after it
    assert starts == set(range(midnight, open_window + 1, 3600))
    assert days == {today}
    # a window that had not started, stored by an older version, is never the newest
    with sqlite3.connect(db_file) as conn:
        conn.execute(
            "INSERT INTO collection_ledger (source, org_id, segment, window_start, window_end,"
            " fetch_count, failure_count, settled, last_fetched_at)"
            " SELECT source, org_id, segment, datetime(window_start, '+1 day'),"
            " datetime(window_end, '+1 day'), fetch_count, 0, 1, last_fetched_at"
            " FROM collection_ledger WHERE source = 'sessions' AND segment = 'all'"
            " AND window_start = (SELECT MAX(window_start) FROM collection_ledger)")
    status = cli(config, "status", "--json")
    assert {r["newest_window"] for r in json.loads(status.output)
            if r["source"] == "sessions"} == {
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(open_window))}
    # a range that starts in the future is a usage error, and fetches nothing
    live_sim.reset_stats()
    result = cli(config, "backfill", "--since", ahead)
    assert result.exit_code == 2
    assert "--since is in the future" in result.output
    assert live_sim.count() == 0


def test_until_in_the_first_second_of_a_window_includes_it_in_the_run_and_the_dry_run(
    live_sim: Simulator, tmp_path: Path
) -> None:
    """One rounding rule: an end inside a window (even half a second into it) includes it."""
    span = bf.Range(OCT1, OCT1 + 5 * 3600 + 0.5, now=OCT1 + 30 * DAY)
    assert span.bounds(windows(3600)) == (OCT1, OCT1 + 6 * 3600)
    assert span.windows_of(Target("org-alpha")) == 6
    # up to now, in the very instant the open window starts: it is in the range, as the
    # daemon takes it (and a day's bucket that started is in a daily source's range)
    now = OCT1 + 5 * 3600
    span, clamped = bf.Range.up_to_now(OCT1, now, 3600, now)
    assert not clamped
    assert span.bounds(windows(3600)) == (OCT1, OCT1 + 6 * 3600)
    assert span.bounds(DAYS) == (OCT1, OCT1 + DAY)
    config = migrated(tmp_path, live_sim, f"sqlite:///{tmp_path / 'r.db'}")
    until = "2026-10-01T05:00:00.500000+00:00"
    dry = cli(config, "backfill", "--since", SINCE, "--until", until, "--dry-run")
    assert "3 target(s): 18 windows; 0 already done; 18 to fetch in 18 request(s)" in dry.output
    result = cli(config, "backfill", "--since", SINCE, "--until", until)
    assert "18 of 18 window(s) collected" in result.output
    assert live_sim.count() == 18
