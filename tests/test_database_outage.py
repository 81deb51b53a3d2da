"""The daemon against a PostgreSQL server that goes away and comes back.

The server is a throw-away cluster this test starts itself (initdb into a temporary folder,
as the postgres user, on a spare port), so the shared server stays up.
"""

from __future__ import annotations

import glob
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from collector import db, migrate
from collector.assembly import Collector
from collector.client import DevinClient
from collector.config import parse_config
from collector.daemon import Daemon
from collector.outcomes import Outcome
from collector.sim import Simulator
from collector.store import Store
from collector.windows import windows_between
from tests.helpers import T0, FakeClock, config_data, postgres_url

pytestmark = pytest.mark.slow


@dataclass
class Cluster:
    url: str
    data: Path
    port: int
    bindir: Path

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bindir / "pg_ctl"), "-D",
             str(self.data), "-w", "-t", "60", *args],
            check=True, capture_output=True, timeout=90,
        )

    def start(self) -> None:
        self._ctl("-l", str(self.data / "log"), "-o",
                  f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1", "start")

    def stop(self) -> None:
        self._ctl("-m", "immediate", "stop")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    postgres_url()  # skipped, saying why, where the PostgreSQL tests are
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    assert found, "PostgreSQL server binaries (initdb) are not installed"
    assert shutil.which("runuser"), "runuser is needed to start a cluster as postgres"
    bindir = Path(found[-1]).parent
    data = Path(tempfile.mkdtemp(prefix="collector-pg-"))
    shutil.chown(data, "postgres", "postgres")
    subprocess.run(
        ["runuser", "-u", "postgres", "--", str(bindir / "initdb"), "-D", str(data / "db"),
         "-A", "trust", "-U", "postgres"],
        check=True, capture_output=True, timeout=120,
    )
    port = _free_port()
    made = Cluster(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres",
                   data / "db", port, bindir)
    made.start()
    try:
        yield made
    finally:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(bindir / "pg_ctl"), "-D", str(made.data),
             "-m", "immediate", "stop"],
            check=False, capture_output=True, timeout=90,
        )
        shutil.rmtree(data, ignore_errors=True)


class StopsTheDatabaseOnFirstSave(Store):
    """A store whose database goes away just as the first batch is about to be written."""

    def __init__(self, cluster: Cluster, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.cluster = cluster
        self.tripped = False

    def save(self, outcomes: Sequence[Outcome], owner: str | None = None) -> None:
        if not self.tripped:
            self.tripped = True
            self.cluster.stop()
        super().save(outcomes, owner)


def test_runs_fail_cleanly_while_the_database_is_down_and_recover_without_restart(
    cluster: Cluster, sim: Simulator, make_client: Callable[..., DevinClient],
    clock: FakeClock, caplog: pytest.LogCaptureFixture,
) -> None:
    engine = db.create_engine_for(cluster.url)
    migrate.upgrade(engine)
    config = parse_config(
        config_data(sim.base_url, cluster.url, schedule={
            "interval": "15m", "catchup_horizon": "6h", "repoll_ages": ["1h"], "jitter": "0s"}),
        {}, source="test",
    )
    store = StopsTheDatabaseOnFirstSave(cluster, engine)
    daemon = Daemon(Collector(config, store, make_client()), clock=clock)
    clock.now = T0 + 600

    # the database goes away mid-run, after the fetches, before the first write
    report = daemon.run_org("org-alpha")
    assert report is not None
    assert report.collected == 0
    assert report.failed_count == 7  # the open window and 6h of catch-up: nothing stored
    assert "could not write" in report.failed[0].error

    # while it is down, runs fail cleanly (logged, no exception, nothing fetched)
    clock.advance(900)
    sim.reset_stats()
    assert daemon.run_org("org-alpha") is None
    assert "could not read the ledger" in caplog.text
    assert sim.count() == 0

    # it comes back: the same daemon and engine recover, and nothing is lost
    cluster.start()
    clock.advance(900)
    report = daemon.run_org("org-alpha")
    assert report is not None
    assert report.ok
    with engine.connect() as conn:
        stored = {int(r[0]): r[1] for r in conn.execute(text(
            "SELECT EXTRACT(EPOCH FROM window_start)::bigint, sessions_created_count"
            " FROM metric_windows WHERE org_id = 'org-alpha'"))}
    engine.dispose()
    expected = [w.start for w in windows_between(clock.now - 6 * 3600, clock.now, 3600)]
    assert sorted(stored) == sorted({*expected, T0 - 6 * 3600})
    for start in expected:
        truth = sim.truth("org-alpha", start, start + 3600)
        assert stored[start] == truth["sessions_created_count"]
