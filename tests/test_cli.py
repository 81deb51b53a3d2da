"""The command line: exit codes, messages, and the demo as a real subprocess."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text

from collector.cli import main
from collector.db import SCHEMA_HEAD
from collector.simulator import Simulator, TokenGrant
from collector.windows import due_now
from tests.conftest import TOKEN

ENV_TOKEN = "DEVIN_API_TOKEN"


@pytest.fixture
def live_sim() -> Iterator[Simulator]:
    """A simulator on the real clock: the CLI collects the windows that are due now."""
    with Simulator(orgs=("org-alpha", "org-beta"), tokens={TOKEN: TokenGrant(None)}) as sim:
        yield sim


def write_config(path: Path, base_url: str, db_url: str, extra: str = "") -> Path:
    path.write_text(
        f'[database]\nurl = "{db_url}"\n'
        f'[api]\nbase_url = "{base_url}"\nbackoff_base = 0.01\nbackoff_max = 0.05\n'
        '[windows]\nsize = "1h"\n'
        '[[orgs]]\nid = "org-alpha"\n'
        '[[orgs.segments]]\nname = "team"\nuser_ids = ["user-1", "user-2"]\n'
        '[[orgs]]\nid = "org-beta"\ntoken_env = "BETA_TOKEN"\n' + extra
    )
    return path


def run(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def test_collect_end_to_end(live_sim: Simulator, tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path / "c.toml", live_sim.base_url, db_url)
    env = {ENV_TOKEN: TOKEN, "BETA_TOKEN": TOKEN}
    before = run(["--config", str(config), "collect"], env)
    assert before.exit_code == 2
    assert "collector db upgrade" in before.output
    upgraded = run(["--config", str(config), "db", "upgrade"], env)
    assert upgraded.exit_code == 0, upgraded.output
    assert "upgraded from empty to" in upgraded.output
    assert run(["--config", str(config), "db", "upgrade"], env).output.endswith(
        f"database already at revision {SCHEMA_HEAD}\n"
    )
    result = run(["--config", str(config), "-v", "collect"], env)
    assert result.exit_code == 0, result.output
    assert "6 of 6 window(s) collected" in result.output
    assert TOKEN not in result.output
    windows = {w.start for w in due_now(time.time(), 3600)}
    engine = create_engine(db_url)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT org_id, segment, window_start FROM metric_windows"))
        assert len(stored.all()) == 6
        seen = {(r.org_id, r.segment) for r in conn.execute(
            text("SELECT org_id, segment FROM session_metrics"))}
    engine.dispose()
    assert seen == {("org-alpha", "all"), ("org-alpha", "team"), ("org-beta", "all")}
    assert len(windows) == 2
    assert live_sim.count(status=200) == 6


def test_collect_partial_failure_exits_1_and_lists_failures(
    live_sim: Simulator, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'c.db'}"
    config = write_config(tmp_path / "c.toml", live_sim.base_url, db_url)
    env = {ENV_TOKEN: TOKEN, "BETA_TOKEN": "cog_expired_token_123"}
    assert run(["--config", str(config), "db", "upgrade"], env).exit_code == 0
    result = run(["--config", str(config), "collect"], env)
    assert result.exit_code == 1
    assert "4 of 6 window(s) collected" in result.output
    assert "2 window(s) failed" in result.output
    assert "org-beta" in result.output
    assert "401" in result.output
    assert "stay due" in result.output
    assert "cog_expired_token_123" not in result.output


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
    result = run(["--config", str(config), "collect"], env)
    assert result.exit_code == 2
    assert message in result.output
    assert live_sim.count() == 0
    assert not db_file.exists() or db_file.stat().st_size == 0


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = run(["--config", str(tmp_path / "none.toml"), "collect"], {})
    assert result.exit_code == 2
    assert "configuration file not found" in result.output
    result = run(["collect", "--bogus"], {})
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
    # 2 days of hourly windows, snapped to the hour: 48 or 49 per target, 3 targets
    assert windows in (3 * 48, 3 * 49)
    assert days >= 6
    assert sessions > 0
    assert f"{windows} windows" in proc.stdout or f"collected {windows} windows" in proc.stdout
