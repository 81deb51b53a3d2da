"""The command line: exit codes, messages, and the demo as a real subprocess."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from collector.db import SCHEMA_HEAD
from collector.sim import Fault, Simulator
from tests.helpers import TOKEN, invoke, ts

ENV_TOKEN = "DEVIN_API_TOKEN"


def write_config(path: Path, base_url: str, db_url: str, extra: str = "") -> Path:
    path.write_text(
        f'[database]\nurl = "{db_url}"\n'
        f'[api]\nbase_url = "{base_url}"\nbackoff_base = 0.01\nbackoff_max = 0.05\n'
        '[windows]\nsize = "1h"\n'
        '[sources]\nenabled = ["sessions"]\n'
        '[[orgs]]\nid = "org-alpha"\n'
        '[[orgs.segments]]\nname = "team"\nuser_ids = ["user-1", "user-2"]\n'
        '[[orgs]]\nid = "org-beta"\ntoken_env = "BETA_TOKEN"\n' + extra
    )
    return path


def test_collect_end_to_end(live_sim: Simulator, tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path / "c.toml", live_sim.base_url, db_url)
    env = {ENV_TOKEN: TOKEN, "BETA_TOKEN": TOKEN}
    before = invoke(["--config", str(config), "collect"], env)
    assert before.exit_code == 2
    assert "collector db upgrade" in before.output
    upgraded = invoke(["--config", str(config), "db", "upgrade"], env)
    assert upgraded.exit_code == 0, upgraded.output
    assert "upgraded from empty to" in upgraded.output
    assert invoke(["--config", str(config), "db", "upgrade"], env).output.endswith(
        f"database already at revision {SCHEMA_HEAD}\n"
    )
    hour_before = int(time.time()) // 3600 * 3600  # the open window's start
    result = invoke(["--config", str(config), "-v", "collect"], env)
    hour_after = int(time.time()) // 3600 * 3600
    assert result.exit_code == 0, result.output
    assert "6 of 6 window(s) collected" in result.output
    assert TOKEN not in result.output
    engine = create_engine(db_url)
    with engine.connect() as conn:
        stored = sorted((r.org_id, r.segment, ts(r.window_start)) for r in conn.execute(
            text("SELECT org_id, segment, window_start FROM session_metrics")))
    engine.dispose()
    # the previous and the open window of every target (the hour may turn meanwhile)
    targets = [("org-alpha", "all"), ("org-alpha", "team"), ("org-beta", "all")]
    assert stored in (
        [(o, s, w) for o, s in targets for w in (hour_before - 3600, hour_before)],
        [(o, s, w) for o, s in targets for w in (hour_after - 3600, hour_after)],
    )
    assert live_sim.count(status=200) == 6


def test_collect_partial_failure_exits_1_and_lists_failures(
    live_sim: Simulator, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'c.db'}"
    config = write_config(tmp_path / "c.toml", live_sim.base_url, db_url)
    env = {ENV_TOKEN: TOKEN, "BETA_TOKEN": "cog_expired_token_123"}
    assert invoke(["--config", str(config), "db", "upgrade"], env).exit_code == 0
    result = invoke(["--config", str(config), "collect"], env)
    assert result.exit_code == 1
    assert "4 of 6 window(s) collected" in result.output
    assert "2 window(s) failed" in result.output
    assert "org-beta" in result.output
    assert "401" in result.output
    # an access error is said once per org, with advice that fits it: no promise that
    # running again fetches them
    assert result.output.count("the API rejected the token") == 1
    assert "(2 window(s))" in result.output
    assert "Fix the token, permission or org id" in result.output
    assert "stay due" not in result.output
    assert "cog_expired_token_123" not in result.output


def test_transient_failures_name_each_window_once_and_say_rerun(
    live_sim: Simulator, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'c.db'}"
    config = write_config(tmp_path / "c.toml", live_sim.base_url, db_url)
    env = {ENV_TOKEN: TOKEN, "BETA_TOKEN": TOKEN}
    assert invoke(["--config", str(config), "db", "upgrade"], env).exit_code == 0
    live_sim.inject(Fault("status", status=503, count=1000, org_id="org-beta"))
    result = invoke(["--config", str(config), "collect"], env)
    assert result.exit_code == 1
    failures = [line for line in result.output.splitlines() if "503" in line]
    assert len(failures) == 2
    for line in failures:
        label = line.split(": ", 1)[0].strip()  # "org-beta 2026-11-26 10:00..11:00Z"
        assert label.startswith("org-beta ")
        assert line.count(label) == 1  # the window is named once, not twice
    assert "These failures are transient: those windows stay due, and running again fetches" \
        " them" in result.output
    assert "other failures" not in result.output  # there are no others


@pytest.mark.parametrize(
    ("extra", "env", "message"),
    [
        ('[windows]\nsize = "7m"\n', {}, "does not divide a day"),
        ("", {ENV_TOKEN: TOKEN}, "BETA_TOKEN"),
        ('bogus = 1\n', {}, "unknown key"),
    ],
)
def test_usage_and_config_errors_exit_2(
    live_sim: Simulator, tmp_path: Path, extra: str, env: dict[str, str], message: str
) -> None:
    db_file = tmp_path / "c.db"
    config = tmp_path / "c.toml"
    write_config(config, live_sim.base_url, f"sqlite:///{db_file}")
    if extra.startswith("[windows]"):
        config.write_text(config.read_text().replace('size = "1h"', 'size = "7m"'))
    elif extra:
        config.write_text(extra + config.read_text())
    result = invoke(["--config", str(config), "collect"], env)
    assert result.exit_code == 2
    assert message in result.output
    assert live_sim.count() == 0
    assert not db_file.exists() or db_file.stat().st_size == 0


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = invoke(["--config", str(tmp_path / "none.toml"), "collect"], {})
    assert result.exit_code == 2
    assert "configuration file not found" in result.output
    result = invoke(["collect", "--bogus"], {})
    assert result.exit_code == 2


def test_demo_shows_real_rows(tmp_path: Path) -> None:
    database = tmp_path / "demo.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVIN")}
    proc = subprocess.run(
        [sys.executable, "-m", "collector", "demo", "--database", str(database), "--days", "2"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "session_metrics_daily" in proc.stdout
    assert "org-platform" in proc.stdout
    assert "org-research" in proc.stdout
    with sqlite3.connect(database) as conn:
        windows = conn.execute("SELECT COUNT(*) FROM metric_windows").fetchone()[0]
        days = conn.execute("SELECT COUNT(*) FROM session_metrics_daily").fetchone()[0]
        sessions = conn.execute("SELECT SUM(sessions_created_count) FROM session_metrics"
                                " WHERE segment = 'all'").fetchone()[0]
        every = conn.execute("SELECT COUNT(*), SUM(prs_created), SUM(searches),"
                             " MIN(daily_active_users) FROM devin_daily").fetchone()
        consumption = conn.execute("SELECT COUNT(*) FROM acu_consumption_daily").fetchone()[0]
    # 2 days of hourly windows, snapped to the hour: 48 or 49 per target, 3 targets
    assert windows in (3 * 48, 3 * 49)
    assert days >= 6
    assert sessions > 0
    # every source: a row per org and day with PRs, searches and active users
    rows_, prs, searches, dau = every
    assert rows_ >= 4
    assert prs > 0
    assert searches > 0
    assert dau is not None
    assert consumption >= 4
    assert "devin_daily" in proc.stdout
    assert " 0 failed" in proc.stdout


def test_a_different_window_size_is_refused_and_nothing_is_counted_twice(
    live_sim: Simulator, tmp_path: Path
) -> None:
    db_file = tmp_path / "c.db"
    db_url = f"sqlite:///{db_file}"
    config = write_config(tmp_path / "c.toml", live_sim.base_url, db_url)
    env = {ENV_TOKEN: TOKEN, "BETA_TOKEN": TOKEN}
    assert invoke(["--config", str(config), "db", "upgrade"], env).exit_code == 0
    assert invoke(["--config", str(config), "collect"], env).exit_code == 0

    def daily() -> list[tuple[object, ...]]:
        with sqlite3.connect(db_file) as conn:
            return conn.execute("SELECT org_id, segment, day, sessions_created_count"
                                " FROM session_metrics_daily ORDER BY 1, 2, 3").fetchall()

    before = daily()
    live_sim.reset_stats()
    text = config.read_text().replace('size = "1h"', 'size = "1d"')
    config.write_text(text)
    for command in (["collect"], ["backfill", "--since", "2026-11-01"], ["run"], ["status"],
                    ["backfill", "--since", "2026-11-01", "--dry-run"],
                    ["report", "--out", str(tmp_path / "r.html")]):
        result = invoke(["--config", str(config), *command], env)
        assert result.exit_code == 2, (command, result.output)
        assert "the database holds 1h windows, but [windows].size is 1d" in result.output
        assert 'Set [windows].size = "1h" again' in result.output
    assert live_sim.count() == 0
    assert daily() == before


def test_verbose_shows_a_debug_line_per_window(live_sim: Simulator, tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'c.db'}"
    config = write_config(tmp_path / "c.toml", live_sim.base_url, db_url)
    env = {ENV_TOKEN: TOKEN, "BETA_TOKEN": TOKEN}
    assert invoke(["--config", str(config), "db", "upgrade"], env).exit_code == 0
    quiet = invoke(["--config", str(config), "collect"], env)
    assert "window collected" not in quiet.output
    loud = invoke(["--config", str(config), "-v", "--log-format", "json", "collect"], env)
    assert loud.exit_code == 0
    lines = [json.loads(line) for line in loud.output.splitlines() if line.startswith("{")]
    per_window = [e for e in lines if e["event"] == "window collected"]
    assert len(per_window) == 6  # three targets, two windows each
    assert {e["target"] for e in per_window} == {"org-alpha", "org-alpha/team", "org-beta"}
    assert all(e["level"] == "debug" for e in per_window)
