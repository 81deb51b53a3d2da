"""Shared fixtures: a simulator on loopback, migrated databases on both backends, clocks,
headless Chromium."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy import Engine

from collector import db, migrate
from collector.client import DevinClient
from collector.config import Config, parse_config
from collector.connections import make_http_client
from collector.credentials import Credentials
from collector.logs import reset_logging
from collector.sim import Simulator, TokenGrant
from collector.throttle import RetryPolicy
from tests.helpers import (
    ORGS,
    OTHER_TOKEN,
    TOKEN,
    FakeClock,
    MakeClient,
    SleepRecorder,
    chromium_path,
    config_data,
    postgres_schema,
    postgres_url,
    sim_http,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser


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


@pytest.fixture
def live_sim() -> Iterator[Simulator]:
    """A simulator on the real clock for org-alpha and org-beta, accepting TOKEN: commands
    run as the CLI collect the windows that are due now."""
    with Simulator(orgs=ORGS, tokens={TOKEN: TokenGrant(None)}) as simulator:
        yield simulator


@pytest.fixture
def make_config(sim: Simulator, db_url: str) -> Callable[..., Config]:
    def build(**overrides: Any) -> Config:
        return parse_config(config_data(sim.base_url, db_url, **overrides), {}, source="test")

    return build


@pytest.fixture
def make_client(sim: Simulator, clock: FakeClock) -> Iterator[MakeClient]:
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


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated database."""
    eng = db.create_engine_for(db_url)
    migrate.upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def client(sim: Simulator) -> Iterator[httpx.Client]:
    """A loopback HTTP client of the test's simulator, with its default token."""
    with sim_http(sim.base_url) as c:
        yield c


@pytest.fixture
def make_sim() -> Iterator[Callable[..., Simulator]]:
    """Start simulators of any configuration; all are stopped at the end of the test."""
    started: list[Simulator] = []

    def make(**kwargs: Any) -> Simulator:
        s = Simulator(**kwargs)
        s.start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (imported here only: most tests
    need no browser)."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()
