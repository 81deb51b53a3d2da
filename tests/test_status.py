"""`collector status`: flags, JSON timestamps, the backfill hint, and failing windows read
with bounded SQL (both backends)."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import Result
from sqlalchemy import Engine, create_engine, event, insert, text

from collector.schema import LEDGER
from collector.sim import Fault, Simulator
from collector.status import target_status
from collector.store import Store
from collector.targets import Target
from collector.windows import floor_to, window_at
from tests.helpers import T0, TOKEN, invoke

HOUR = 3600

REVOKED = "cog_revoked_token_9d1e"


def write_config(path: Path, base_url: str, db_url: str) -> Path:
    path.write_text(
        f'[database]\nurl = "{db_url}"\n'
        f'[api]\nbase_url = "{base_url}"\nbackoff_base = 0.01\nbackoff_max = 0.02\n'
        "max_attempts = 2\nconcurrency = 1\n"
        '[windows]\nsize = "1h"\n'
        '[schedule]\ncatchup_horizon = "6h"\n'
        '[sources]\nenabled = ["sessions"]\n'
        '[[orgs]]\nid = "org-alpha"\n'
        '[[orgs.segments]]\nname = "team"\nuser_ids = ["user-1", "user-2"]\n'
        '[[orgs]]\nid = "org-beta"\ntoken_env = "BETA_TOKEN"\n'
    )
    return path


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def clear_of_the_hour() -> None:
    """Wait out the last seconds of an hour, so collect and status see the same windows."""
    left = HOUR - time.time() % HOUR
    if left < 30:
        time.sleep(left + 1)


class Cli:
    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.config, self.env = config, env

    def __call__(self, *args: str) -> Result:
        return invoke(["--config", str(self.config), *args], self.env)


def test_status_after_a_first_collect(live_sim: Simulator, tmp_path: Path, db_url: str) -> None:
    cli = Cli(write_config(tmp_path / "c.toml", live_sim.base_url, db_url),
              {"DEVIN_API_TOKEN": TOKEN, "BETA_TOKEN": REVOKED})
    assert cli("db", "upgrade").exit_code == 0
    clear_of_the_hour()
    # org-alpha's first window fails on both attempts; its other windows succeed
    live_sim.inject(Fault("status", status=503, count=2, org_id="org-alpha", detail="down"))
    assert cli("collect").exit_code == 1
    now = time.time()
    current = window_at(now, HOUR)
    previous = current.start - HOUR
    horizon = floor_to(now - 6 * HOUR, HOUR)

    result = cli("status")
    assert result.exit_code == 1  # org-beta has never succeeded: stale
    lines = [re.sub(r"last success \d+s ago", "last success Ns ago", line)
             for line in result.output.splitlines()]
    newest = datetime.fromtimestamp(current.start, UTC).strftime("%Y-%m-%d %H:%MZ")
    assert lines[0] == (
        f"WARN  org-alpha/all: newest window {newest}, last success Ns ago; "
        "1 collected, 1 unsettled, 6 missing, 1 failing"
    )
    assert lines[1] == (
        f"      {datetime.fromtimestamp(previous, UTC):%Y-%m-%d %H:%M}Z: "
        "the API failed with 503: down (1x)"
    )
    assert lines[2] == (
        f"ok    org-alpha/team: newest window {newest}, last success Ns ago; "
        "2 collected, 2 unsettled, 5 missing, 0 failing"
    )
    assert lines[3] == (
        "STALE org-beta/all: newest window none, last success never (max age 45m); "
        "0 collected, 0 unsettled, 6 missing, 2 failing"
    )
    assert lines[-1] == (
        "17 window(s) inside the catch-up horizon were never collected; "
        f"fetch them with: collector backfill --since {iso(horizon)}"
    )
    assert REVOKED not in result.output

    as_json = cli("status", "--json")
    assert as_json.exit_code == 1
    report = {(r["org_id"], r["segment"]): r for r in json.loads(as_json.stdout)}
    alpha, team, beta = report["org-alpha", "all"], report["org-alpha", "team"], report[
        "org-beta", "all"]
    assert alpha["newest_window"] == team["newest_window"] == iso(current.start)
    assert beta["newest_window"] is None
    assert beta["last_success"] is None
    last = datetime.fromisoformat(alpha["last_success"])
    assert alpha["last_success"].endswith("Z")
    assert last.tzinfo is not None
    assert abs(last.timestamp() - now) < 10
    assert isinstance(alpha["staleness"], int)
    assert 0 <= alpha["staleness"] < 10
    assert beta["staleness"] is None
    assert [(f["window_start"], f["window_end"], f["failures"]) for f in
            alpha["failing_windows"]] == [(iso(previous), iso(current.start), 1)]
    assert [f["window_start"] for f in beta["failing_windows"]] == [
        iso(current.start), iso(previous)]
    assert "401" in beta["failing_windows"][0]["error"]
    assert [(r["flag"], r["stale"], r["failing"], r["missing"]) for r in report.values()] == [
        ("WARN", False, 1, 6), ("ok", False, 0, 5), ("STALE", True, 2, 6)]
    assert {r["horizon_start"] for r in report.values()} == {iso(horizon)}
    assert {r["backfill_since"] for r in report.values()} == {iso(horizon)}

    # the hint works: the suggested backfill leaves nothing missing, and nothing failing
    cli.env["BETA_TOKEN"] = TOKEN
    filled = cli("backfill", "--since", iso(horizon))
    assert filled.exit_code == 0, filled.output
    after = cli("status")
    assert after.exit_code == 0, after.output
    assert [line.split()[0] for line in after.output.splitlines()] == ["ok", "ok", "ok"]
    assert all("0 missing, 0 failing" in line for line in after.output.splitlines())
    assert "backfill" not in after.output
    assert all(r["backfill_since"] is None and r["failing_windows"] == []
               for r in json.loads(cli("status", "--json").stdout))


def test_a_settled_window_never_counts_as_failing(
    live_sim: Simulator, tmp_path: Path, db_url: str
) -> None:
    cli = Cli(write_config(tmp_path / "c.toml", live_sim.base_url, db_url),
              {"DEVIN_API_TOKEN": TOKEN, "BETA_TOKEN": TOKEN})
    assert cli("db", "upgrade").exit_code == 0
    clear_of_the_hour()
    assert cli("collect").exit_code == 0
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:  # as a writer before the fix left them
            conn.execute(text("UPDATE collection_ledger SET settled = TRUE, "
                              "last_error = 'late 500', failure_count = 1 "
                              "WHERE org_id = 'org-alpha'"))
    finally:
        engine.dispose()
    result = cli("status")
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.output.splitlines()[:3]] == ["ok", "ok", "ok"]
    assert result.output.count(" 0 failing") == 3
    assert "late 500" not in result.output
    report = json.loads(cli("status", "--json").stdout)
    assert [(r["failing"], r["failing_windows"], r["unsettled"]) for r in report] == [
        (0, [], 0), (0, [], 0), (0, [], 2)]


# failing windows: at most `failing_limit` per target, ranked in SQL ---------------------------

ALPHA, TEAM, BETA = Target("org-alpha"), Target("org-alpha", "team"), Target("org-beta")


def ledger_row(target: Target, start: int, *, error: str | None, settled: bool = False,
               fetched: bool = False) -> dict[str, Any]:
    at = datetime.fromtimestamp(start, UTC)
    return {
        "source": target.source.name, "org_id": target.org_id, "segment": target.segment,
        "window_start": at,
        "window_end": at + timedelta(hours=1),
        "first_fetched_at": at + timedelta(hours=1) if fetched else None,
        "last_fetched_at": at + timedelta(hours=1) if fetched else None,
        "fetch_count": int(fetched), "failure_count": 0 if error is None else 3,
        "last_error": error, "last_error_at": at + timedelta(hours=2) if error else None,
        "next_due_at": None, "settled": settled,
    }


def test_failing_windows_are_the_newest_few_per_target(engine: Engine) -> None:
    now = T0 + 400 * HOUR
    rows = [ledger_row(ALPHA, T0 + i * HOUR, error=f"alpha {i}") for i in range(300)]
    # the newest alpha windows are settled: a settled window is never failing
    rows += [ledger_row(ALPHA, T0 + i * HOUR, error=f"old {i}", settled=True, fetched=True)
             for i in range(300, 310)]
    rows += [ledger_row(BETA, T0 + i * HOUR, error=f"beta {i}") for i in range(0, 400, 2)]
    rows += [ledger_row(BETA, T0 + i * HOUR, error=None, fetched=True) for i in range(1, 400, 2)]
    rows += [ledger_row(TEAM, T0 + i * HOUR, error=f"team {i}") for i in (7, 3)]
    # an org no longer configured: its rows are ranked too, but never shown
    rows += [ledger_row(Target("org-gone"), T0 + i * HOUR, error="gone") for i in range(50)]
    with engine.begin() as conn:
        conn.execute(insert(LEDGER), rows)

    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        got = target_status(Store(engine), [ALPHA, TEAM, BETA], now=now,
                            horizon=24 * HOUR, max_age=100 * HOUR, failing_limit=4)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    alpha, team, beta = got
    assert (alpha.failing, team.failing, beta.failing) == (300, 2, 200)
    assert [f.error for f in alpha.failing_windows] == [f"alpha {i}" for i in (299, 298, 297,
                                                                               296)]
    assert [f.window_start for f in alpha.failing_windows] == [
        T0 + i * HOUR for i in (299, 298, 297, 296)]
    assert [(f.window_end - f.window_start, f.failures) for f in alpha.failing_windows] == [
        (HOUR, 3)] * 4
    assert [f.error for f in team.failing_windows] == ["team 7", "team 3"]
    assert [f.error for f in beta.failing_windows] == [f"beta {i}" for i in (398, 396, 394,
                                                                             392)]
    assert alpha.flag == "WARN"
    assert beta.flag == "WARN"
    assert team.flag == "STALE"
    # the database hands back at most `failing_limit` failing rows per target
    (ranked,) = [(s, p) for s, p in statements if "row_number" in s.lower()]
    with engine.connect() as conn:
        fetched = conn.exec_driver_sql(*ranked).all()
    assert len(fetched) == 4 + 2 + 4 + 4  # alpha, team, beta and the unconfigured org


def test_status_json_lists_the_newest_failing_windows_of_many(
    live_sim: Simulator, tmp_path: Path, db_url: str
) -> None:
    cli = Cli(write_config(tmp_path / "c.toml", live_sim.base_url, db_url),
              {"DEVIN_API_TOKEN": TOKEN, "BETA_TOKEN": REVOKED})
    assert cli("db", "upgrade").exit_code == 0
    clear_of_the_hour()
    start = floor_to(time.time(), HOUR) - 2000 * HOUR  # a long backfill with a revoked token
    filled = cli("backfill", "--org", "org-beta", "--since", iso(start))
    assert filled.exit_code == 1
    report = {r["org_id"]: r for r in json.loads(cli("status", "--json").stdout)}
    beta = report["org-beta"]
    assert beta["failing"] == 2000 + 1  # every window up to the open one
    newest = floor_to(time.time(), HOUR)
    assert [f["window_start"] for f in beta["failing_windows"]] == [
        iso(newest - i * HOUR) for i in range(5)]
    assert all("401" in f["error"] for f in beta["failing_windows"])
