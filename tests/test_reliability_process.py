"""Reliability, end to end with real processes: kills, a locked or full database, time zones,
and bad input. Commands run as subprocesses; the simulator's clock is frozen so that two runs
made at different moments must store identical values."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from collector.sim import Simulator, TokenGrant
from tests.helpers import sqlite_tables, wait_for

pytestmark = pytest.mark.slow

TOKEN = "cog_process_secret_1c2d3e"
ORGS = ("org-alpha", "org-beta")


@pytest.fixture
def frozen_sim() -> Iterator[Simulator]:
    now = time.time()
    with Simulator(orgs=ORGS, tokens={TOKEN: TokenGrant(None)}, clock=lambda: now,
                   latency=0.01) as sim:
        yield sim


def write_config(folder: Path, base_url: str, extra: str = "") -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "collector.toml"
    path.write_text(
        f'[database]\nurl = "sqlite:///{folder / "c.db"}"\nbusy_timeout = "1s"\n'
        f'[api]\nbase_url = "{base_url}"\nconcurrency = 4\nrate_limit = 500\n'
        'backoff_base = 0.01\nbackoff_max = 0.05\n'
        '[windows]\nsize = "5m"\n'
        '[schedule]\ninterval = "1s"\ncatchup_horizon = "8h"\nrepoll_ages = ["1h"]\n'
        'jitter = "0s"\n'
        + '[sources]\nenabled = ["sessions"]\n'
        + "".join(f'[[orgs]]\nid = "{org}"\n' for org in ORGS) + extra
    )
    return path


def collector(config: Path, *args: str, env: dict[str, str] | None = None,
              preexec_fn: Callable[[], object] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "collector", "--config", str(config), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "DEVIN_API_TOKEN": TOKEN, **(env or {})}, preexec_fn=preexec_fn,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    assert TOKEN not in out + err
    return proc.returncode, out + err


def upgrade(config: Path) -> None:
    code, out = finish(collector(config, "db", "upgrade"))
    assert code == 0, out


# 7. kill -9 during a daemon run, then a re-run --------------------------------------------------

def test_kill_9_during_a_daemon_run_then_a_rerun_equals_an_uninterrupted_run(
    frozen_sim: Simulator, tmp_path: Path
) -> None:
    killed = write_config(tmp_path / "killed", frozen_sim.base_url)
    clean = write_config(tmp_path / "clean", frozen_sim.base_url)
    upgrade(killed)
    upgrade(clean)
    # 2 orgs x 97 windows of catch-up: kill the daemon part-way through its first run
    proc = collector(killed, "run")
    wait_for(lambda: frozen_sim.count(status=200) >= 40)
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    partial = len(sqlite_tables(tmp_path / "killed" / "c.db")["windows"])
    assert 0 < partial < 2 * 97
    # the re-run, and an uninterrupted run beside it, each until all is collected
    for config in (killed, clean):
        proc = collector(config, "run")
        db = config.parent / "c.db"

        def all_stored(db: Path = db) -> bool:
            return len(sqlite_tables(db)["windows"]) >= 2 * 97

        wait_for(all_stored, timeout=90)
        proc.send_signal(signal.SIGTERM)
        code, out = finish(proc)
        assert code == 0, out
    first = sqlite_tables(tmp_path / "killed" / "c.db")
    second = sqlite_tables(tmp_path / "clean" / "c.db")
    common = {row[:3] for row in first["windows"]} & {row[:3] for row in second["windows"]}
    assert len(common) >= 2 * 97
    for name in first:
        assert [r for r in first[name] if r[:3] in common] == (
            [r for r in second[name] if r[:3] in common]), name


def _signal_thread(pid: int, tid: int, signum: int) -> None:
    """Send `signum` to one thread of another process (Linux ``tgkill``)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    sys_tgkill = 234 if os.uname().machine == "x86_64" else 131
    if libc.syscall(sys_tgkill, pid, tid, signum) != 0:
        raise OSError(ctypes.get_errno(), "tgkill failed")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir() or os.uname().machine not in
                    ("x86_64", "aarch64"), reason="needs Linux's per-thread signals")
def test_sigterm_delivered_to_a_worker_thread_stops_the_daemon(
    frozen_sim: Simulator, tmp_path: Path
) -> None:
    """The kernel may hand a process's SIGTERM to any of its threads; the daemon stops anyway."""
    config = write_config(tmp_path / "d", frozen_sim.base_url)
    upgrade(config)
    proc = collector(config, "run")
    try:
        wait_for(lambda: frozen_sim.count(status=200) >= 1)
        others = [int(t) for t in os.listdir(f"/proc/{proc.pid}/task") if int(t) != proc.pid]
        assert others, "the daemon runs its scheduler on threads of its own"
        _signal_thread(proc.pid, others[0], signal.SIGTERM)
        code, out = finish(proc, timeout=20)
    finally:
        proc.kill()
    assert code == 0, out
    assert "received SIGTERM" in out


# 8. a locked database, a full disk --------------------------------------------------------------

def test_sqlite_locked_longer_than_the_busy_timeout(frozen_sim: Simulator, tmp_path: Path) -> None:
    config = write_config(tmp_path / "x", frozen_sim.base_url)
    upgrade(config)
    db = tmp_path / "x" / "c.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer, holding the lock
    try:
        code, out = finish(collector(config, "backfill", "--since", "2026-10-01",
                                     "--until", "2026-10-01T01:00:00Z"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 1
    assert "database is locked" in out
    assert "stay due" in out
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM metric_windows").fetchone()[0] == 0
    code, out = finish(collector(config, "backfill", "--since", "2026-10-01",
                                 "--until", "2026-10-01T01:00:00Z"))
    assert code == 0, out
    assert "24 of 24" in out


def _limit_file_size(limit: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of dying
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_full_disk_is_a_clear_error_and_corrupts_nothing(
    frozen_sim: Simulator, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "x", frozen_sim.base_url)
    upgrade(config)
    db = tmp_path / "x" / "c.db"
    limit = db.stat().st_size + 64 * 1024
    proc = collector(config, "backfill", "--since", "2026-09-01", "--until", "2026-09-03",
                     preexec_fn=lambda: _limit_file_size(limit))
    code, out = finish(proc)
    assert code == 1
    assert "disk is full" in out or "disk I/O error" in out
    assert "stay due" in out
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = conn.execute("SELECT COUNT(*) FROM metric_windows").fetchone()[0]
    assert stored < 2 * 2 * 288
    # with room again, a re-run completes what was left
    code, out = finish(collector(config, "backfill", "--since", "2026-09-01",
                                 "--until", "2026-09-03"))
    assert code == 0, out
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM metric_windows").fetchone()[0] == 2 * 2 * 288


# 9. the host's time zone ---------------------------------------------------------------------

def test_a_dst_change_on_the_host_changes_nothing(frozen_sim: Simulator, tmp_path: Path) -> None:
    """America/New_York leaves daylight saving time on 2026-11-01 at 06:00 UTC."""
    config = write_config(tmp_path / "x", frozen_sim.base_url).parent / "collector.toml"
    config.write_text(config.read_text().replace('size = "5m"', 'size = "1h"'))
    upgrade(config)
    code, out = finish(collector(config, "backfill", "--since", "2026-10-31",
                                 "--until", "2026-11-03", env={"TZ": "America/New_York"}))
    assert code == 0, out
    requests = [(r.org_id, r.time_after, r.time_before) for r in frozen_sim.requests]
    assert len(requests) == len(set(requests)) == 2 * 72
    for _, after, before in requests:
        assert after is not None
        assert before == after + 3600
        assert after % 3600 == 0
    with sqlite3.connect(tmp_path / "x" / "c.db") as conn:
        days = conn.execute("SELECT day, windows_collected, complete FROM"
                            " session_metrics_daily WHERE org_id = 'org-alpha'").fetchall()
    assert days == [("2026-10-31", 24, 1), ("2026-11-01", 24, 1), ("2026-11-02", 24, 1)]


# 10. bad configuration and bad command lines ----------------------------------------------------

@pytest.mark.parametrize(
    ("edit", "args", "says"),
    [
        (("[windows]", "[windows]\nstride = 3"), ("collect",), "windows.stride: unknown key"),
        (('size = "5m"', 'size = "7m"'), ("collect",), "does not divide a day"),
        (('id = "org-alpha"', 'id = "org/alpha"'), ("collect",), "not an organization id"),
        (('id = "org-alpha"', 'id = "../../etc"'), ("collect",), "not an organization id"),
        (("base_url = \"http://127.0.0.1", "base_url = \"http://metrics.example.com"),
         ("collect",), "travel in clear"),
        (None, ("backfill", "--since", "2026-10-05", "--until", "2026-10-01"),
         "wrong way round"),
        (None, ("backfill", "--since", "someday"), "is not a date"),
        (None, ("status", "--max-age", "soon"), "--max-age"),
        (None, ("collect", "--now"), "No such option"),
    ],
)
def test_bad_input_exits_2_names_the_problem_and_writes_nothing(
    frozen_sim: Simulator, tmp_path: Path, edit: tuple[str, str] | None,
    args: tuple[str, ...], says: str,
) -> None:
    config = write_config(tmp_path / "x", frozen_sim.base_url)
    upgrade(config)
    db = tmp_path / "x" / "c.db"
    before = db.read_bytes()
    if edit is not None:
        config.write_text(config.read_text().replace(*edit, 1))
    code, out = finish(collector(config, *args))
    assert code == 2, out
    assert says in out
    assert db.read_bytes() == before
    assert frozen_sim.count() == 0
