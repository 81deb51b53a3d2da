"""`collector backfill`: values, skipping, resuming after kill -9, beside a daemon."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text

from collector import backfill as bf
from collector.cli import main
from collector.cli_backfill import Reporter
from collector.simulator import Simulator, TokenGrant
from collector.store import Store
from collector.targets import Target
from collector.windows import DAY, windows_between
from tests.conftest import TOKEN, sqlite_tables
from tests.test_collect import ts

SINCE, UNTIL = "2026-10-01", "2026-10-03"
OCT1 = bf.parse_when(SINCE)
ENV = {"DEVIN_API_TOKEN": TOKEN}


@pytest.fixture
def live_sim() -> Iterator[Simulator]:
    with Simulator(orgs=("org-alpha", "org-beta"), tokens={TOKEN: TokenGrant(None)}) as sim:
        yield sim


def write_config(tmp_path: Path, base_url: str, db_url: str, extra: str = "") -> Path:
    path = tmp_path / "collector.toml"
    path.write_text(
        f'[database]\nurl = "{db_url}"\n'
        f'[api]\nbase_url = "{base_url}"\nrate_limit = 2000\nconcurrency = 8\n'
        'backoff_base = 0.01\nbackoff_max = 0.02\n'
        '[windows]\nsize = "1h"\n'
        '[[orgs]]\nid = "org-alpha"\n'
        '[[orgs.segments]]\nname = "team"\nuser_ids = ["user-2"]\n'
        '[[orgs]]\nid = "org-beta"\n' + extra
    )
    return path


def cli(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args], env=ENV,
                              catch_exceptions=False)


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
    assert "3 target(s) x 60 windows = 180 windows; 24 already done; 156 request(s)" in (
        result.output)
    assert "about 39s at 4 request(s)/s per token" in result.output  # 156 / 4
    assert live_sim.count() == 24


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
    from collector.simulator import Fault

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

    targets = [Target(f"org-{i}") for i in range(100)]
    span = bf.Range.snapped(OCT1 - 5 * 365 * DAY, OCT1, 300)
    assert span.windows_per_target * len(targets) > 50_000_000
    tracemalloc.start()
    first = list(islice(bf.plan(NoLedger(), targets, span, now=OCT1, force=True), 100_000))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(first) == 100_000
    assert first[0] == (targets[0], next(windows_between(span.since, span.until, 300)))
    assert first[288] == (targets[1], first[0][1])  # targets take turns, a day at a time
    assert peak < 40_000_000  # the 100,000 pairs kept by this test, not 52 million


def test_reporter_logs_progress_when_not_interactive(caplog: pytest.LogCaptureFixture) -> None:
    reporter = Reporter(100, interactive=False, every=0.0)
    with caplog.at_level(logging.WARNING, logger="collector.backfill"):
        reporter.advance(40)
        reporter.advance(10)
    reporter.close()
    assert "backfill: 40/100 windows" in caplog.text
    assert "backfill: 50/100 windows" in caplog.text
    assert "ETA" in caplog.text


def _backfill_process(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "collector", "--config", str(config), "backfill",
         "--since", SINCE, "--until", "2026-10-05"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **ENV},
    )


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
        while sim.count(status=200) < 120 and time.monotonic() < deadline:
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
def test_backfill_beside_a_running_daemon_on_sqlite(tmp_path: Path) -> None:
    with Simulator(orgs=("org-alpha", "org-beta"), tokens={TOKEN: TokenGrant(None)},
                   latency=0.005) as sim:
        db_file = tmp_path / "shared.db"
        config = migrated(
            tmp_path, sim, f"sqlite:///{db_file}",
            '[schedule]\ninterval = "1s"\ncatchup_horizon = "6h"\njitter = "0s"\n',
        )
        env = {**os.environ, **ENV}
        daemon = subprocess.Popen(
            [sys.executable, "-m", "collector", "--config", str(config), "run"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        try:
            since = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 8 * DAY))
            backfill = subprocess.run(
                [sys.executable, "-m", "collector", "--config", str(config), "backfill",
                 "--since", since, "--concurrency", "8"],
                capture_output=True, text=True, env=env, timeout=300, check=False,
            )
        finally:
            daemon.send_signal(signal.SIGTERM)
            _, daemon_err = daemon.communicate(timeout=60)
    assert backfill.returncode == 0, backfill.stderr
    assert daemon.returncode == 0, daemon_err
    assert "locked" not in backfill.stderr + daemon_err
    assert "run org=org-alpha" in daemon_err
    with sqlite3.connect(db_file) as conn:
        per_target = conn.execute(
            "SELECT org_id, segment, COUNT(*), COUNT(DISTINCT window_start) FROM metric_windows"
            " GROUP BY 1, 2").fetchall()
        ledger = conn.execute("SELECT COUNT(*) FROM collection_ledger WHERE fetch_count = 0"
                              ).fetchone()[0]
    assert ledger == 0
    for _org, _segment, count, distinct in per_target:
        assert count == distinct
        assert count >= 8 * 24
