"""Several daemons on one database: claims split the work, and each due fetch happens once."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from collector.assembly import Collector
from collector.config import Config
from collector.daemon import Daemon
from collector.sim import Simulator, TokenGrant
from collector.store import Store
from collector.targets import Target
from collector.windows import Window, window_at, windows_between
from tests.helpers import (
    T0,
    TOKEN,
    FakeClock,
    MakeClient,
    collector_process,
    daemon_config_file,
    postgres_schema,
    postgres_url,
    upgrade_folder,
    wait_for,
)


@pytest.fixture
def two_daemons(
    make_config: Callable[..., Config], make_client: MakeClient, engine: Engine, clock: FakeClock
) -> list[Daemon]:
    config = make_config(schedule={"interval": "15m", "repoll_ages": ["1h"],
                                   "catchup_horizon": "12h", "jitter": "0s"},
                         api={"concurrency": 2})
    return [Daemon(Collector(config, Store(engine), make_client()), clock=clock)
            for _ in range(2)]


def run_together(daemons: list[Daemon], org: str = "org-alpha") -> None:
    barrier = threading.Barrier(len(daemons))

    def go(daemon: Daemon) -> None:
        barrier.wait()
        daemon.run_org(org)

    threads = [threading.Thread(target=go, args=(d,)) for d in daemons]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_daemons_running_at_once_fetch_each_window_once(
    sim: Simulator, two_daemons: list[Daemon], clock: FakeClock, engine: Engine
) -> None:
    sim.latency = 0.01  # long enough for both runs to overlap
    clock.now = T0 + 600
    run_together(two_daemons)
    fetched = Counter(r.time_after for r in sim.requests
                      if r.status == 200 and r.time_after is not None)
    horizon = [w.start for w in windows_between(clock.now - 12 * 3600, clock.now, 3600)]
    assert sorted(fetched) == horizon  # the open window and 12h of catch-up, all of them
    assert set(fetched.values()) == {1}  # each by one daemon only
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT COUNT(*) FROM metric_windows")).scalar()
        leases = conn.execute(text(
            "SELECT COUNT(*) FROM collection_ledger WHERE lease_owner IS NOT NULL")).scalar()
    assert stored == len(horizon)
    assert leases == 0  # every claim ended with its save
    # a quarter of an hour later only the open window is due, and one daemon fetches it
    sim.reset_stats()
    clock.advance(900)
    run_together(two_daemons)
    assert [r.time_after for r in sim.requests] == [window_at(clock.now, 3600).start]


def test_claims_of_a_dead_daemon_expire_and_are_taken_over(
    sim: Simulator, two_daemons: list[Daemon], clock: FakeClock, engine: Engine
) -> None:
    first, second = two_daemons
    clock.now = T0 + 600
    store = Store(engine)
    windows = list(windows_between(T0 - 5 * 3600, T0 + 3600, 3600))
    # the first daemon claims six windows and dies before fetching any of them
    held = store.claim(Target("org-alpha"), windows, owner="dead-daemon", now=clock.now,
                       cutoff=clock.now, lease=first.lease, interval=900)
    assert held == {w.start for w in windows}
    second.run_org("org-alpha")
    fetched = {r.time_after for r in sim.requests}
    assert not fetched & held  # claimed by someone else: left alone
    assert fetched  # the rest of the horizon
    clock.advance(first.lease + 1)
    sim.reset_stats()
    second.run_org("org-alpha")
    assert {r.time_after for r in sim.requests} >= held  # expired claims: taken over


def test_a_claim_takes_exactly_the_windows_named(engine: Engine, clock: FakeClock) -> None:
    """Windows that follow each other are claimed as a range, others one by one: either
    way, only the windows named, and those another process holds are reported as held."""
    clock.now = T0 + 600
    store = Store(engine)
    alpha = Target("org-alpha")
    w0, w1, w2, w3 = windows_between(T0 - 4 * 3600, T0, 3600)

    def claim(windows: list[Window], owner: str) -> tuple[set[int], set[int]]:
        return store.claim_or_held(alpha, windows, owner=owner, now=clock.now,
                                   cutoff=clock.now, lease=600, interval=900)

    assert claim([w0, w1, w2, w3], "a") == ({w0.start, w1.start, w2.start, w3.start}, set())
    store.release("a")
    assert claim([w0, w2], "b") == ({w0.start, w2.start}, set())  # a gap: w1 left alone
    assert claim([w1, w2, w3], "c") == ({w1.start, w3.start}, {w2.start})
    with engine.connect() as conn:
        owners = [owner for (owner,) in conn.execute(text(
            "SELECT lease_owner FROM collection_ledger ORDER BY window_start"))]
    assert owners == ["b", "c", "b", "c"]


def test_an_outcome_ends_only_its_own_writers_claim(
    sim: Simulator, two_daemons: list[Daemon], clock: FakeClock, engine: Engine
) -> None:
    """A writer whose claim expired (or who held none) leaves the current holder's claim."""
    from collector.collection import Policy, run_collection

    clock.now = T0 + 600
    store = Store(engine)
    window = windows_between(T0 - 3600, T0, 3600)
    (only,) = list(window)
    assert store.claim(Target("org-alpha"), [only], owner="holder", now=clock.now,
                       cutoff=clock.now, lease=600, interval=900) == {only.start}
    report = run_collection(two_daemons[0].collector.client, store, [(Target("org-alpha"), only)],
                            policy=Policy(), clock=clock, owner="someone-else")
    assert report.ok
    with engine.connect() as conn:
        assert conn.execute(text("SELECT lease_owner FROM collection_ledger")).scalar() == (
            "holder")
    run_collection(two_daemons[0].collector.client, store, [(Target("org-alpha"), only)],
                   policy=Policy(), clock=clock, owner="holder")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT lease_owner FROM collection_ledger")).scalar() is None


def test_a_second_daemon_on_one_sqlite_file_refuses_to_start(tmp_path: Path) -> None:
    with Simulator(orgs=("org-alpha", "org-beta"), tokens={TOKEN: TokenGrant(None)}) as sim:
        daemon_config_file(tmp_path, sim.base_url)
        upgrade_folder(tmp_path)
        first = collector_process(tmp_path, "run")
        try:
            wait_for(lambda: sim.count(status=200) > 0)
            second = collector_process(tmp_path, "run")
            _, err = second.communicate(timeout=60)
            assert second.returncode == 2
            assert "already using" in err
            assert f"pid {first.pid}" in err
            assert "PostgreSQL" in err
        finally:
            first.send_signal(signal.SIGTERM)
            first.communicate(timeout=60)
    assert first.returncode == 0


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A schema of its own on the shared PostgreSQL server."""
    with postgres_schema(postgres_url()) as url:
        yield url


def _config(tmp_path: Path, base_url: str, db_url: str) -> Path:
    path = tmp_path / "collector.toml"
    path.write_text(
        f'[database]\nurl = "{db_url}"\n'
        f'[api]\nbase_url = "{base_url}"\nconcurrency = 2\nrate_limit = 200\ntimeout = "2s"\n'
        '[windows]\nsize = "5m"\n'
        '[schedule]\ninterval = "2s"\ncatchup_horizon = "4h"\nrepoll_ages = ["1h"]\n'
        'jitter = "0s"\nshutdown_grace = "10s"\n'
        '[sources]\nenabled = ["sessions"]\n'
        '[[orgs]]\nid = "org-alpha"\n[[orgs]]\nid = "org-beta"\n'
    )
    return path


@pytest.mark.slow
def test_three_daemons_share_postgresql_and_survive_a_kill(
    tmp_path: Path, pg_url: str
) -> None:
    with Simulator(orgs=("org-alpha", "org-beta"), tokens={TOKEN: TokenGrant(None)},
                   latency=0.05) as sim:
        config = _config(tmp_path, sim.base_url, pg_url)
        env = {**os.environ, "DEVIN_API_TOKEN": TOKEN}
        cli = [sys.executable, "-m", "collector", "--config", str(config)]
        subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
        procs = [subprocess.Popen([*cli, "run"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
        try:
            # 2 orgs x 49 windows of catch-up at 20 requests/s per daemon: kill one midway
            wait_for(lambda: sim.count(status=200) >= 30, timeout=60)
            procs[0].send_signal(signal.SIGKILL)
            killed_at = time.time()
            wait_for(lambda: _stored(pg_url) >= 2 * 49, timeout=90)
            time.sleep(4)  # a few more runs of the open window by the survivors
        finally:
            for proc in procs[1:]:
                proc.send_signal(signal.SIGTERM)
            outputs = [proc.communicate(timeout=60) for proc in procs]
        requests = [r for r in sim.requests if r.status == 200]
    assert procs[0].returncode == -signal.SIGKILL
    logs = [err for _, err in outputs]
    assert [p.returncode for p in procs[1:]] == [0, 0], logs[1:]
    assert all("run org=" in err for err in logs[1:])
    # nothing duplicated, nothing missing
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT org_id, EXTRACT(EPOCH FROM window_start)::bigint FROM metric_windows")).all()
    engine.dispose()
    assert len(rows) == len(set(rows))
    newest = window_at(killed_at, 300).start
    for org in ("org-alpha", "org-beta"):
        starts = {start for o, start in rows if o == org}
        expected = set(range(newest - 48 * 300, newest + 1, 300))
        assert expected <= starts, sorted(expected - starts)
    # each due fetch happened once: closed windows once each (apart from what the killed
    # daemon had in flight), open windows no more than once per half interval
    per_window: dict[tuple[str | None, int | None], list[float]] = {}
    for r in requests:
        per_window.setdefault((r.org_id, r.time_after), []).append(r.at)
    doubled = 0
    for (_, start), times in per_window.items():
        assert start is not None
        closed_fetches = [t for t in times if t >= start + 300]
        doubled += max(0, len(closed_fetches) - 1)
        open_fetches = sorted(t for t in times if t < start + 300)
        gaps = [b - a for a, b in itertools.pairwise(open_fetches)]
        doubled += sum(1 for gap in gaps if gap < 1.0)
    detail = {k: [round(t - (k[1] or 0), 2) for t in sorted(v)] for k, v in per_window.items()
              if len(v) > 1}
    # What the killed daemon had fetched but not committed is fetched again once its claims
    # expire: its requests in flight (concurrency 2) and each org run's answers waiting for
    # their commit (2 workers x 2 orgs). Without claims, three daemons would fetch each of the
    # ~100 windows about three times.
    assert doubled <= 2 + 2 * 2, (killed_at, detail)


def _stored(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT COUNT(*) FROM metric_windows")).scalar() or 0)
    finally:
        engine.dispose()

