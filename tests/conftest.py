"""Shared fixtures: a simulator on loopback, migrated databases on both backends, clocks."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from collector import db
from collector.client import Credentials, DevinClient, make_http_client
from collector.config import Config, parse_config
from collector.logs import reset_logging
from collector.simulator import Simulator, TokenGrant
from collector.throttle import RetryPolicy

TOKEN = "cog_test_secret_token_4f2a9c"
OTHER_TOKEN = "cog_other_secret_token_77b1"
ORGS = ("org-alpha", "org-beta")
#: 2026-11-20 00:00:00 UTC: tests pin the simulator's and the collector's clocks here.
T0 = 1_795_132_800
PG_ENV = "COLLECTOR_TEST_POSTGRES_URL"


class FakeClock:
    """A settable clock: simulator, client and planner read the same instant."""

    def __init__(self, now: float = T0) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class SleepRecorder:
    """Stands in for time.sleep: records each wait and advances the fake clock instead."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.calls: list[float] = []
        self.clock = clock

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.clock is not None:
            self.clock.advance(seconds)


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Each test starts with the logging it found: commands configure the root logger."""
    yield
    reset_logging()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[Simulator]:
    simulator = Simulator(
        orgs=(*ORGS, "org-gamma"),
        tokens={
            TOKEN: TokenGrant(None),
            OTHER_TOKEN: TokenGrant(frozenset({"org-alpha"}), can_view_metrics=False),
        },
        clock=clock,
    )
    simulator.start()
    yield simulator
    simulator.stop()


def config_data(base_url: str, database_url: str, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "database": {"url": database_url},
        "api": {
            "base_url": base_url,
            "rate_limit": 1000.0,
            "concurrency": 4,
            "max_attempts": 4,
            "backoff_base": 0.001,
            "backoff_max": 0.01,
        },
        "windows": {"size": "1h"},
        "orgs": [{"id": org} for org in ORGS],
    }
    for section, values in overrides.items():
        if isinstance(values, dict):
            data[section] = {**data.get(section, {}), **values}
        else:
            data[section] = values
    return data


@pytest.fixture
def make_config(sim: Simulator, db_url: str) -> Callable[..., Config]:
    def build(**overrides: Any) -> Config:
        return parse_config(config_data(sim.base_url, db_url, **overrides), {}, source="test")

    return build


@pytest.fixture
def make_client(sim: Simulator, clock: FakeClock) -> Iterator[Callable[..., DevinClient]]:
    """Clients against the simulator with a fast retry profile and a recorded sleep."""
    made: list[DevinClient] = []

    def build(
        tokens: dict[str, str] | None = None,
        policy: RetryPolicy | None = None,
        sleep: SleepRecorder | None = None,
        **kwargs: Any,
    ) -> DevinClient:
        config = parse_config(config_data(sim.base_url, "sqlite://"), {}, source="test")
        client = DevinClient(
            make_http_client(config),
            Credentials(tokens or {org: TOKEN for org in (*ORGS, "org-gamma", "org-nope")}),
            policy=policy or RetryPolicy(max_attempts=4, backoff_base=0.001, backoff_max=0.01),
            rate_limit=kwargs.pop("rate_limit", 1e6),
            clock=clock,
            sleep=sleep or SleepRecorder(),
            **kwargs,
        )
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()


def postgres_url() -> str:
    """The test server's URL; without it the calling test is skipped, saying why."""
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (the CI script sets it)")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        postgres_url()
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of `backend`: a SQLite file, or a PostgreSQL schema of its own."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'collector.db'}"
        return
    with postgres_schema(postgres_url()) as url:
        yield url


@contextmanager
def postgres_schema(base: str) -> Iterator[str]:
    """A URL for a schema of its own on the PostgreSQL server at `base`, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def sqlite_tables(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every stored value of a SQLite database (not fetch times), in a stable order."""
    with sqlite3.connect(path) as conn:
        return {
            "windows": conn.execute(
                "SELECT org_id, segment, window_start, window_end, sessions_created_count,"
                " sessions_created_with_playbook_count, sessions_created_with_search_count,"
                " sessions_with_merged_prs_count, avg_acus_per_session, raw_body"
                " FROM metric_windows ORDER BY 1, 2, 3").fetchall(),
            "origins": conn.execute(
                "SELECT * FROM metric_window_origins ORDER BY 1, 2, 3, 4").fetchall(),
            "sizes": conn.execute(
                "SELECT * FROM metric_window_sizes ORDER BY 1, 2, 3, 4").fetchall(),
        }


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated database."""
    eng = db.create_engine_for(db_url)
    db.upgrade(eng)
    yield eng
    eng.dispose()
