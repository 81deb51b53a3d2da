"""`collector run` as a real process: scheduled runs, signals, and a schema check at start."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.sim import Simulator, TokenGrant
from tests.helpers import (
    TOKEN,
    collector_process,
    daemon_config_file,
    run_daemon_until,
    upgrade_folder,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def slow_sim() -> Iterator[Simulator]:
    """The real clock, and 150 ms per request so that a run is still going when signalled."""
    with Simulator(orgs=("org-alpha", "org-beta"), tokens={TOKEN: TokenGrant(None)},
                   latency=0.15) as sim:
        yield sim


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_run_exits_0_and_commits_nothing_partial(
    slow_sim: Simulator, tmp_path: Path, signum: int
) -> None:
    daemon_config_file(tmp_path, slow_sim.base_url)
    upgrade_folder(tmp_path)
    proc = collector_process(tmp_path, "--log-format", "json", "run")
    try:
        wait_for(lambda: slow_sim.count(status=200) >= 6)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert any("stopping" in line["event"] for line in lines)
    assert TOKEN not in stderr
    answered = {(r.org_id, r.time_after) for r in slow_sim.requests if r.status == 200}
    with sqlite3.connect(tmp_path / "c.db") as conn:
        stored = set(conn.execute("SELECT org_id, CAST(strftime('%s', window_start) AS INTEGER)"
                                  " FROM metric_windows"))
        origins = conn.execute("SELECT org_id, window_start, COUNT(*) FROM"
                               " metric_window_origins GROUP BY 1, 2").fetchall()
        sizes = conn.execute("SELECT org_id, window_start, COUNT(*) FROM metric_window_sizes"
                             " GROUP BY 1, 2").fetchall()
        ledger = conn.execute("SELECT COUNT(*) FROM collection_ledger WHERE fetch_count > 0"
                              ).fetchone()[0]
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
    assert check == "ok"
    # every answer that reached the collector was stored whole, and nothing else was
    assert stored == answered
    assert ledger == len(stored)
    assert {n for _, _, n in origins} == {9}
    assert {n for _, _, n in sizes} == {5}
    assert len(origins) == len(sizes) == len(stored)
    # and the signal came mid-run: windows were still left to fetch
    assert len(stored) < 2 * 37


def test_runs_repeat_on_the_interval_with_one_log_line_per_org(
    tmp_path: Path,
) -> None:
    with Simulator(orgs=("org-alpha", "org-beta"), tokens={TOKEN: TokenGrant(None)}) as sim:
        daemon_config_file(tmp_path, sim.base_url)
        upgrade_folder(tmp_path)
        # the first run catches up 3h of 5-minute windows; later runs fetch the open one
        code, stderr = run_daemon_until(
            tmp_path, lambda: sim.count(org_id="org-alpha", status=200) >= 37 + 2,
            "--log-format", "json")
    assert code == 0, stderr
    events = [json.loads(line) for line in stderr.splitlines()]
    # each run is one event whose counts are fields, not words inside the message
    runs = [e for e in events if e["event"] == "run" and e.get("org") == "org-alpha"]
    assert len(runs) >= 3
    fields = ("due", "collected", "failed", "deferred")
    assert [runs[0][f] for f in fields] == [37, 37, 0, 0]
    assert [runs[-1][f] for f in fields] == [1, 1, 0, 0]
    assert all(e["level"] == "info" and isinstance(e["duration_s"], float) for e in runs)
    status = subprocess.run(
        [sys.executable, "-m", "collector", "--config", str(tmp_path / "collector.toml"),
         "status", "--json", "--max-age", "1h"],
        capture_output=True, text=True, env={**os.environ, "DEVIN_API_TOKEN": TOKEN},
        timeout=60, check=False,
    )
    assert status.returncode == 0, status.stdout
    report = json.loads(status.stdout)
    assert {r["org_id"] for r in report} == {"org-alpha", "org-beta"}
    assert all(r["collected"] >= 37 for r in report)
    assert all(r["failing"] == 0 for r in report)
    assert all(r["stale"] is False for r in report)
    # at most the oldest window, which slid into the horizon after the last run
    assert all(r["missing"] <= 1 for r in report)


def test_a_backlog_beyond_the_rate_limit_is_deferred_not_failed(tmp_path: Path) -> None:
    """A first start whose catch-up (2 x 37 windows on one token) takes longer than a run
    at 20 requests a second: each run takes what it can start in time and defers the rest,
    at INFO, never failing a window; later runs take the rest. With a 2-second interval and
    no jitter key (the default jitter follows the interval)."""
    with Simulator(orgs=("org-alpha", "org-beta"), tokens={TOKEN: TokenGrant(None)}) as sim:
        config = daemon_config_file(tmp_path, sim.base_url)
        config.write_text(config.read_text().replace("rate_limit = 100", "rate_limit = 20")
                          .replace('jitter = "0s"\n', ""))
        upgrade_folder(tmp_path)
        code, stderr = run_daemon_until(
            tmp_path, lambda: sim.count(status=200) >= 2 * 37 + 2, "--log-format", "json",
            timeout=60)
    assert code == 0, stderr
    events = [json.loads(line) for line in stderr.splitlines()]
    runs = [e for e in events if e["event"] == "run"]
    assert sum(e["deferred"] for e in runs) > 0
    assert all(e["failed"] == 0 for e in runs)
    assert [e for e in events if e["level"] in ("warning", "error", "critical")] == []
    assert sim.count() == sim.count(status=200)  # no request was refused or failed
    status = subprocess.run(
        [sys.executable, "-m", "collector", "--config", str(config), "status", "--json"],
        capture_output=True, text=True, env={**os.environ, "DEVIN_API_TOKEN": TOKEN},
        timeout=60, check=False,
    )
    assert all(r["failing"] == 0 for r in json.loads(status.stdout))


def test_daemon_refuses_a_database_without_the_current_schema(
    slow_sim: Simulator, tmp_path: Path
) -> None:
    daemon_config_file(tmp_path, slow_sim.base_url)
    proc = collector_process(tmp_path, "run")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "run `collector db upgrade` first" in stderr
    assert slow_sim.count() == 0
