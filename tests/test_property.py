"""Property: whatever sequence of backfills, daemon runs, faults, restarts and passing time,
what is stored equals the simulator's truth at the moment it was fetched, no window or bucket
is stored twice, the ledger agrees with the tables, and nothing asked for is lost."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector import backfill as bf
from collector import db, migrate
from collector.assembly import Collector
from collector.client import DevinClient
from collector.collection import Policy, run_collection
from collector.config import Config, parse_config
from collector.connections import make_http_client
from collector.credentials import Credentials
from collector.daemon import Daemon
from collector.sim import Fault, Simulator, TokenGrant
from collector.store import Store
from collector.targets import Target
from collector.throttle import RetryPolicy
from tests.helpers import T0, TOKEN, FakeClock, config_data

HOUR = 3600
ALPHA = Target("org-alpha")

backfills = st.tuples(
    st.just("backfill"), st.integers(0, 60), st.integers(1, 12), st.booleans()
)
faults = st.tuples(
    st.just("fault"),
    st.sampled_from(["500", "429", "reset", "truncate", "html", "negative", "drift"]),
    st.integers(1, 4),
)
steps = st.one_of(
    backfills,
    faults,
    st.tuples(st.just("daemon")),
    st.tuples(st.just("advance"), st.integers(1, 8 * 60)),
    st.tuples(st.just("restart")),
)


@dataclass
class Rig:
    sim: Simulator
    clock: FakeClock
    config: Config
    url: str

    @contextmanager
    def parts(self) -> Iterator[tuple[DevinClient, Store, Daemon]]:
        engine = db.create_engine_for(self.url)
        client = DevinClient(
            make_http_client(self.config), Credentials({"org-alpha": TOKEN}),
            policy=RetryPolicy(max_attempts=2, backoff_base=0.001, backoff_max=0.002,
                               retry_after_cap=1),
            rate_limit=1e6, clock=self.clock,
        )
        store = Store(engine)
        try:
            yield client, store, Daemon(Collector(self.config, store, client), clock=self.clock)
        finally:
            client.close()
            engine.dispose()


def inject(sim: Simulator, kind: str, count: int) -> None:
    if kind in ("500", "429"):
        sim.inject(Fault("status", status=int(kind), count=count, retry_after="0"))
    elif kind == "negative":
        sim.inject(Fault("body", patch={"sessions_created_count": -1}, count=count))
    elif kind == "drift":
        sim.inject(Fault("body", patch={"brand_new": 1}, count=count))
    else:
        sim.inject(Fault(kind, count=count))


def check(rig: Rig, path: Path, asked: set[int]) -> None:
    with sqlite3.connect(path) as conn:
        windows = conn.execute(
            "SELECT CAST(strftime('%s', window_start) AS INTEGER), window_seconds,"
            " sessions_created_count, sessions_with_merged_prs_count,"
            " sessions_created_with_search_count, avg_acus_per_session,"
            " CAST(strftime('%s', fetched_at) AS INTEGER) FROM metric_windows").fetchall()
        buckets = conn.execute(
            "SELECT CAST(strftime('%s', window_start) AS INTEGER), COUNT(*), COUNT(DISTINCT"
            " origin) FROM metric_window_origins GROUP BY window_start").fetchall()
        sizes = conn.execute("SELECT COUNT(*), COUNT(DISTINCT window_start || size)"
                             " FROM metric_window_sizes").fetchone()
        ledger = dict(conn.execute(
            "SELECT CAST(strftime('%s', window_start) AS INTEGER),"
            " CAST(strftime('%s', last_fetched_at) AS INTEGER) FROM collection_ledger"
            " WHERE fetch_count > 0").fetchall())
    starts = [w[0] for w in windows]
    assert len(starts) == len(set(starts))
    assert all(start <= fetched_at for start, *_, fetched_at in windows)  # never a future one
    assert all(n == distinct >= 9 for _, n, distinct in buckets)
    assert sizes[0] == sizes[1] == 5 * len(windows)
    assert ledger == {start: fetched for start, *_, fetched in windows}
    now = rig.clock.now
    try:
        for start, seconds, created, merged, search, avg, fetched_at in windows:
            rig.clock.now = fetched_at
            truth = rig.sim.truth("org-alpha", start, start + seconds)
            assert (created, merged, search) == (
                truth["sessions_created_count"], truth["sessions_with_merged_prs_count"],
                truth["sessions_created_with_search_count"])
            assert abs(avg - truth["avg_acus_per_session"]) < 1e-9
    finally:
        rig.clock.now = now
    assert asked <= set(starts)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(steps, min_size=1, max_size=10))
def test_any_sequence_of_runs_faults_and_restarts_stores_the_truth(
    sequence: list[tuple[Any, ...]],
) -> None:
    clock = FakeClock(T0)
    with tempfile.TemporaryDirectory() as tmp, Simulator(
        orgs=("org-alpha",), tokens={TOKEN: TokenGrant(None)}, clock=clock
    ) as sim:
        path = Path(tmp) / "p.db"
        url = f"sqlite:///{path}"
        config = parse_config(
            config_data(sim.base_url, url, orgs=[{"id": "org-alpha"}],
                        schedule={"interval": "15m", "repoll_ages": ["1h", "1d"],
                                  "catchup_horizon": "6h", "jitter": "0s"}),
            {}, source="property",
        )
        engine = db.create_engine_for(url)
        migrate.upgrade(engine)
        engine.dispose()
        rig = Rig(sim, clock, config, url)
        asked: set[int] = set()
        parts = rig.parts()
        client, store, daemon = parts.__enter__()
        try:
            for step in sequence:
                if step[0] == "backfill":
                    _, back, length, force = step
                    start = T0 - back * HOUR
                    span, _ = bf.Range.up_to_now(start, start + length * HOUR, HOUR, clock.now)
                    run_collection(client, store,
                                   bf.plan(store, [ALPHA], span, clock=clock, claims=None,
                                           force=force),
                                   policy=Policy.from_config(config), clock=clock)
                elif step[0] == "fault":
                    inject(sim, step[1], step[2])
                elif step[0] == "daemon":
                    daemon.run_org("org-alpha")
                elif step[0] == "advance":
                    clock.advance(step[1] * 60)
                else:  # restart: everything in memory is gone
                    parts.__exit__(None, None, None)
                    parts = rig.parts()
                    client, store, daemon = parts.__enter__()
            # whatever happened, a clean backfill of everything asked completes it
            sim.clear_faults()
            for step in sequence:
                if step[0] == "backfill":
                    start = T0 - step[1] * HOUR
                    span, _ = bf.Range.up_to_now(
                        start, start + step[2] * HOUR, HOUR, clock.now)
                    asked.update(range(*span.bounds(ALPHA.calendar), HOUR))
                    report = run_collection(
                        client, store,
                        bf.plan(store, [ALPHA], span, clock=clock, claims=None),
                        policy=Policy.from_config(config), clock=clock)
                    assert report.ok
        finally:
            parts.__exit__(None, None, None)
        check(rig, path, asked)
