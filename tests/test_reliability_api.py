"""Reliability, end to end through the real commands: what the API and the network can do.

Each scenario runs `collector backfill` or `collector collect` (the real CLI, in process)
against the simulator with faults injected, then checks the exit code, the message and the
database. Every output and the whole database are searched for the token afterwards.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from collector.cli import main
from collector.payload import SessionMetrics
from collector.sim import Fault, Simulator, TokenGrant

TOKEN = "cog_reliability_secret_9d8e7f"
OTHER = "cog_no_metrics_permission_5a4b"
SINCE, UNTIL = "2026-10-01T00:00:00Z", "2026-10-01T06:00:00Z"
OCT1 = int(datetime(2026, 10, 1, tzinfo=UTC).timestamp())
WINDOWS = [OCT1 + h * 3600 for h in range(6)]


@dataclass
class World:
    sim: Simulator
    tmp: Path
    outputs: list[str] = field(default_factory=list)

    @property
    def db(self) -> Path:
        return self.tmp / "c.db"

    def config(self, extra: str = "", orgs: str = "") -> Path:
        path = self.tmp / "collector.toml"
        path.write_text(
            f'[database]\nurl = "sqlite:///{self.db}"\nbusy_timeout = "1s"\n'
            f'[api]\nbase_url = "{self.sim.base_url}"\nrate_limit = 1000\nconcurrency = 2\n'
            'max_attempts = 3\nbackoff_base = 0.01\nbackoff_max = 0.05\nretry_after_cap = 5\n'
            'timeout = "1s"\nconnect_timeout = "1s"\n'
            '[windows]\nsize = "1h"\n[sources]\nenabled = ["sessions"]\n'
            + (orgs or '[[orgs]]\nid = "org-alpha"\n')
            + extra
        )
        return path

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        result = CliRunner().invoke(
            main, ["--config", str(self.tmp / "collector.toml"), "-v", *args],
            env={"DEVIN_API_TOKEN": TOKEN, **(env or {})}, catch_exceptions=False,
        )
        self.outputs.append(result.output)
        return result

    def backfill(self, *args: str) -> Result:
        return self.run("backfill", "--since", SINCE, "--until", UNTIL, *args)

    def stored(self) -> dict[tuple[str, int], tuple[object, ...]]:
        with sqlite3.connect(self.db) as conn:
            rows = conn.execute(
                "SELECT org_id, CAST(strftime('%s', window_start) AS INTEGER),"
                " sessions_created_count, sessions_with_merged_prs_count, avg_acus_per_session,"
                " fetched_at FROM metric_windows WHERE segment = 'all'").fetchall()
        return {(r[0], r[1]): tuple(r[2:]) for r in rows}

    def ledger(self, org: str, start: int) -> tuple[object, ...] | None:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(
                "SELECT fetch_count, failure_count, last_error, next_due_at, settled"
                " FROM collection_ledger WHERE org_id = ? AND window_start = ?",
                (org, datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d %H:%M:%S")),
            ).fetchone()

    def dump(self) -> str:
        with sqlite3.connect(self.db) as conn:
            return "\n".join(line for line in conn.iterdump())


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with Simulator(orgs=("org-alpha", "org-beta", "org-gamma"),
                   tokens={TOKEN: TokenGrant(None),
                           OTHER: TokenGrant(None, can_view_metrics=False)}) as sim:
        made = World(sim, tmp_path)
        made.config()
        assert made.run("db", "upgrade").exit_code == 0
        yield made
        dump = made.dump()
        for secret in (TOKEN, OTHER):
            assert secret not in dump
            for output in made.outputs:
                assert secret not in output


def check_truth(world: World, org: str = "org-alpha") -> None:
    stored = world.stored()
    for start in WINDOWS:
        truth = world.sim.truth(org, start, start + 3600)
        assert stored[(org, start)][0] == truth["sessions_created_count"]


# 1. rate limiting ---------------------------------------------------------------------------

@pytest.mark.parametrize("retry_after", ["1", "http-date", None])
def test_429_is_waited_out_and_everything_is_stored(world: World, retry_after: str | None) -> None:
    if retry_after == "http-date":
        # HTTP dates have whole seconds: 2.5 s ahead is at least 1.5 s ahead
        retry_after = format_datetime(datetime.fromtimestamp(time.time() + 2.5, UTC), usegmt=True)
    world.sim.inject(Fault("status", status=429, retry_after=retry_after, count=2))
    started = time.monotonic()
    result = world.backfill()
    assert result.exit_code == 0, result.output
    assert "6 of 6" in result.output
    check_truth(world)
    assert world.sim.count(status=429) == 2
    if retry_after is not None:
        assert time.monotonic() - started >= 0.9  # the server's wish was honoured


def test_retry_after_beyond_the_cap_leaves_windows_due_without_a_tight_loop(
    world: World,
) -> None:
    world.sim.inject(Fault("status", status=429, retry_after="3600", count=-1))
    result = world.backfill()
    assert result.exit_code == 1
    assert "longer than retry_after_cap" in result.output
    # the others did not even ask, and the summary says why
    assert "window(s) deferred, not failed (the first: this token may send again only in" in (
        result.output)
    assert world.sim.count() <= 2  # one request per worker, no loop
    assert world.stored() == {}
    entry = world.ledger("org-alpha", WINDOWS[0])
    assert entry is not None
    assert entry[0] == 0  # never fetched
    assert entry[4] == 0  # not settled: still due
    world.sim.clear_faults()
    assert world.backfill().exit_code == 0
    check_truth(world)


# 2. server errors ---------------------------------------------------------------------------

@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_burst_of_5xx_then_success(world: World, status: int) -> None:
    world.sim.inject(Fault("status", status=status, count=2))
    result = world.backfill()
    assert result.exit_code == 0, result.output
    assert world.sim.count(status=status) == 2  # both were served, and retried
    check_truth(world)


def test_a_burst_longer_than_the_retry_budget_leaves_the_window_unchanged_and_due(
    world: World,
) -> None:
    assert world.backfill().exit_code == 0
    before = world.stored()
    world.sim.inject(Fault("status", status=503, count=3))  # max_attempts = 3
    result = world.run("backfill", "--since", SINCE, "--until", "2026-10-01T01:00:00Z",
                       "--force")
    assert result.exit_code == 1
    assert "failed with 503" in result.output
    # the advice fits a settled window: it is not due, and a run without --force skips it
    assert "running again fetches them" not in result.output
    assert "A window collected before keeps the values stored then" in result.output
    assert "Run it again without --force" in result.output
    assert world.stored() == before  # the database is unchanged for it
    entry = world.ledger("org-alpha", WINDOWS[0])
    assert entry is not None
    # the window was settled: a failed re-fetch leaves it settled with the values of its
    # last success, and never makes it "failing" (nothing would ever fetch it again)
    fetch_count, failure_count, last_error, next_due_at, settled = entry
    assert (fetch_count, failure_count, last_error, next_due_at, settled) == (1, 0, None, None, 1)
    status = world.run("status", "--json")
    assert {(r["org_id"], r["failing"]) for r in json.loads(status.output)} >= {
        ("org-alpha", 0)}
    result = world.run("backfill", "--since", SINCE, "--until", "2026-10-01T01:00:00Z",
                       "--force")
    assert result.exit_code == 0  # forcing again fetches it


def test_a_failed_refetch_of_an_unsettled_window_stays_due_and_is_retried(
    world: World,
) -> None:
    """An open (unsettled) window whose re-fetch fails keeps its values, is failing, and is
    due again at once: the next backfill fetches it and it stops failing."""
    until = "2026-10-01T01:00:00Z"
    assert world.run("backfill", "--since", SINCE, "--until", until).exit_code == 0
    with sqlite3.connect(world.db) as conn:  # a window collected while it was still open
        conn.execute("UPDATE collection_ledger SET settled = 0, next_due_at = last_fetched_at")
    world.sim.inject(Fault("status", status=503, count=3))  # max_attempts = 3
    assert world.run("backfill", "--since", SINCE, "--until", until).exit_code == 1
    entry = world.ledger("org-alpha", WINDOWS[0])
    assert entry is not None
    assert (entry[1], entry[4]) == (1, 0)
    assert "503" in str(entry[2])
    assert world.run("backfill", "--since", SINCE, "--until", until).exit_code == 0
    entry = world.ledger("org-alpha", WINDOWS[0])
    assert entry is not None
    assert (entry[1], entry[2], entry[4]) == (0, None, 1)


# 3. the network ------------------------------------------------------------------------------

def test_read_timeouts_and_resets_are_retried(world: World) -> None:
    world.sim.inject(Fault("slow", delay=1.5), Fault("reset"), Fault("truncate"))
    result = world.backfill()
    assert result.exit_code == 0, result.output
    check_truth(world)


def test_a_stale_keep_alive_connection_is_retried(world: World, tmp_path: Path) -> None:
    """The server restarts between two requests on the same pooled connection."""
    from collector.assembly import credentials
    from collector.client import make_client
    from collector.config import load_config
    from collector.targets import Target
    from collector.windows import Window

    config = load_config(world.config(), {})
    with make_client(config, credentials(config, {"DEVIN_API_TOKEN": TOKEN})) as client:
        client.fetch(Target("org-alpha"), Window(WINDOWS[0], WINDOWS[1]))
        port = int(world.sim.base_url.rsplit(":", 1)[1])
        world.sim.stop()  # closes the kept-alive connection under the client's feet
        world.sim.start(port=port)
        fetched = client.fetch(Target("org-alpha"), Window(WINDOWS[1], WINDOWS[2]))
    assert isinstance(fetched.metrics, SessionMetrics)
    assert fetched.metrics.sessions_created_count == world.sim.truth(
        "org-alpha", WINDOWS[1], WINDOWS[2])["sessions_created_count"]


def test_connect_timeouts_fail_cleanly_and_leave_windows_due(world: World) -> None:
    """A listener whose accept queue is full: the kernel drops new connection attempts."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        path = world.config()
        path.write_text(path.read_text().replace(world.sim.base_url, f"http://127.0.0.1:{port}"))
        result = world.run("backfill", "--since", SINCE, "--until", "2026-10-01T01:00:00Z")
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert result.exit_code == 1
    assert "did not answer in time" in result.output or "network error" in result.output
    entry = world.ledger("org-alpha", WINDOWS[0])
    assert entry is not None
    assert entry[0] == 0
    assert entry[4] == 0


# 4. bad 200s ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["truncate", "html", "empty", "nonjson"])
def test_unreadable_200s_store_nothing(world: World, kind: str) -> None:
    world.sim.inject(Fault(kind, count=-1))
    result = world.backfill()
    assert result.exit_code == 1
    assert world.stored() == {}
    assert "6 window(s) failed" in result.output
    assert len(max(result.output.splitlines(), key=len)) < 400  # short errors


def test_json_of_the_wrong_shape_stores_nothing(world: World) -> None:
    world.sim.inject(Fault("body", body=["not", "an", "object"], count=-1))
    result = world.backfill()
    assert result.exit_code == 1
    assert "not an object" in result.output
    assert world.stored() == {}


# 5. schema drift -----------------------------------------------------------------------------

def test_new_keys_are_stored_and_missing_buckets_are_zero(world: World) -> None:
    truth = world.sim.truth("org-alpha", WINDOWS[0], WINDOWS[1])
    origins = {k: v for k, v in truth["sessions_created_by_origin"].items() if k != "jira"}
    world.sim.inject(Fault("body", patch={
        "sessions_created_by_origin": {**origins, "voice": 2},
        "sessions_created_by_size": {**truth["sessions_created_by_size"], "xxl": 1},
    }))
    assert world.run("backfill", "--since", SINCE, "--until", "2026-10-01T01:00:00Z",
                     "--concurrency", "1").exit_code == 0
    with sqlite3.connect(world.db) as conn:
        by_origin = dict(conn.execute(
            "SELECT origin, sessions_created_count FROM session_metrics_by_origin").fetchall())
        sizes = dict(conn.execute(
            "SELECT size, sessions_created_count FROM session_metrics_by_size").fetchall())
    assert by_origin["voice"] == 2
    assert by_origin["jira"] == 0
    assert sizes["xxl"] == 1


@pytest.mark.parametrize(
    ("patch", "remove", "says"),
    [
        ({}, ("sessions_with_merged_prs_count",), "Field required"),
        ({"sessions_created_count": None}, (), "valid integer"),
        ({"sessions_created_with_search_count": -1}, (), "greater than or equal to 0"),
        ({"sessions_created_count": "7"}, (), "valid integer"),
        ({"sessions_created_with_playbook_count": True}, (), "valid integer"),
        ({"sessions_created_count": 2.5}, (), "valid integer"),
        ({"avg_acus_per_session": None}, (), "valid number"),
    ],
)
def test_broken_counts_are_rejected_whole(
    world: World, patch: dict[str, object], remove: tuple[str, ...], says: str
) -> None:
    world.sim.inject(Fault("body", patch=patch, remove=remove, count=-1))
    result = world.backfill()
    assert result.exit_code == 1
    assert says in result.output
    assert "nothing was stored" in result.output
    assert world.stored() == {}


# 6. access errors for one org among several ----------------------------------------------------

ORGS = (
    '[[orgs]]\nid = "org-alpha"\n'
    '[[orgs]]\nid = "org-beta"\ntoken_env = "BETA_TOKEN"\n'
    '[[orgs]]\nid = "org-gamma"\ntoken_env = "GAMMA_TOKEN"\n'
    '[[orgs]]\nid = "org-missing"\n'
)


@pytest.mark.parametrize("command", ["backfill", "collect"])
def test_401_403_404_for_some_orgs_leave_the_others_complete(world: World, command: str) -> None:
    world.config(orgs=ORGS)
    env = {"BETA_TOKEN": "cog_expired_token_0000", "GAMMA_TOKEN": OTHER}
    if command == "backfill":
        result = world.run("backfill", "--since", SINCE, "--until", UNTIL, env=env)
    else:
        result = world.run("collect", env=env)
    assert result.exit_code == 1
    assert "valid, unexpired service-user token" in result.output  # org-beta: 401
    assert "ViewOrgMetrics" in result.output  # org-gamma: 403
    assert "Check the org id" in result.output  # org-missing: 404
    # each org's access error is said once, for all its windows, with the advice that fits
    # it: not "stay due" (running again without a fix fails again)
    for org in ("org-beta", "org-gamma", "org-missing"):
        (line,) = [line for line in result.output.splitlines()
                   if org in line and line.startswith("  ")]  # the summary, not the log
        assert "window(s))" in line
        assert "stay due" not in line
    assert "transient" not in result.output
    assert "Fix the token, permission or org id named above, then run again." in result.output
    stored = world.stored()
    alpha = {start for org, start in stored if org == "org-alpha"}
    assert alpha
    assert {org for org, _ in stored} == {"org-alpha"}
    if command == "backfill":
        check_truth(world)
    assert "cog_expired_token_0000" not in result.output


# 11. the token in status output and in reprs ---------------------------------------------------

def test_status_and_reprs_never_show_the_token(world: World) -> None:
    from collector.assembly import open_collector
    from collector.config import load_config

    world.sim.inject(Fault("status", status=500, count=-1, detail=f"echo {TOKEN}"))
    world.backfill()
    result = world.run("status", "--json")
    assert "failing" in result.output
    assert "echo ***" in result.output
    with open_collector(load_config(world.config(), {}), {"DEVIN_API_TOKEN": TOKEN}) as collector:
        assert TOKEN not in repr(collector)
        assert TOKEN not in repr(collector.client)
        assert TOKEN not in repr(collector.client.__dict__)
