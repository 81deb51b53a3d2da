"""Helpers the test modules share: constants, clocks, configurations, databases, the command
line and processes. Fixtures live in conftest.py; test modules import helpers from here,
never from each other."""

from __future__ import annotations

import functools
import os
import pty
import select
import shutil
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, create_engine, text

from collector.cli import main
from collector.client import DevinClient
from collector.sim import Simulator, SyntheticData, TokenGrant
from collector.sim.server import DEFAULT_TOKEN
from collector.targets import Target

# -- constants ---------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
#: The installed console script, next to the interpreter running the tests.
COLLECTOR = str(Path(sys.executable).parent / "collector")
TOKEN = "cog_test_secret_token_4f2a9c"
OTHER_TOKEN = "cog_other_secret_token_77b1"
ORGS = ("org-alpha", "org-beta")
#: 2026-11-20 00:00:00 UTC: tests pin the simulator's and the collector's clocks here.
T0 = 1_795_132_800
PG_ENV = "COLLECTOR_TEST_POSTGRES_URL"

#: The `make_client` fixture: builds a client against the simulator.
MakeClient = Callable[..., DevinClient]


# -- clocks and waiting ------------------------------------------------------------------------


@functools.cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


def sim_http(
    base_url: str, token: str | None = DEFAULT_TOKEN, **headers: str
) -> httpx.Client:
    """A loopback client of the simulator (its default token unless told otherwise); one
    shared TLS context saves ~50 ms per client."""
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=base_url, headers=headers, timeout=5.0, verify=_tls())


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


def wait_for(condition: Callable[[], object], timeout: float = 30.0) -> None:
    """Poll `condition` on the real clock until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


# -- configurations ----------------------------------------------------------------------------


def config_data(base_url: str, database_url: str, **overrides: Any) -> dict[str, Any]:
    """A configuration for `parse_config` with a fast retry profile; `overrides` merge into
    its sections (a dict) or replace them (anything else)."""
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
        "sources": {"enabled": ["sessions"]},
        "orgs": [{"id": org} for org in ORGS],
    }
    for section, values in overrides.items():
        if isinstance(values, dict):
            data[section] = {**data.get(section, {}), **values}
        else:
            data[section] = values
    return data


def config_file(path: Path, base_url: str, db_url: str, extra: str = "", org: str = "") -> Path:
    """A minimal configuration file for org-alpha; `extra` goes after [api], `org` after
    the org's id."""
    path.write_text(
        f'[database]\nurl = "{db_url}"\n'
        f'[api]\nbase_url = "{base_url}"\nbackoff_base = 0.01\nbackoff_max = 0.05\n{extra}'
        '[sources]\nenabled = ["sessions"]\n'
        f'[[orgs]]\nid = "org-alpha"\n{org}'
    )
    return path


def daemon_config_file(folder: Path, base_url: str) -> Path:
    """`folder`/collector.toml for a daemon process: 5-minute windows, runs every 2 s,
    a SQLite file in `folder`, org-alpha and org-beta."""
    path = folder / "collector.toml"
    path.write_text(
        f'[database]\nurl = "sqlite:///{folder / "c.db"}"\n'
        f'[api]\nbase_url = "{base_url}"\nconcurrency = 2\nrate_limit = 100\n'
        '[windows]\nsize = "5m"\n'
        '[schedule]\ninterval = "2s"\ncatchup_horizon = "3h"\nrepoll_ages = ["5m"]\n'
        'jitter = "0s"\nshutdown_grace = "20s"\n'
        '[sources]\nenabled = ["sessions"]\n'
        '[[orgs]]\nid = "org-alpha"\n[[orgs]]\nid = "org-beta"\n'
    )
    return path


# -- databases ---------------------------------------------------------------------------------


def postgres_url() -> str:
    """The test server's URL; without it the calling test is skipped, saying why."""
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (the CI script sets it)")
    return url


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


def sqlite_tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
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


def rows(engine: Engine, sql: str, **params: Any) -> list[dict[str, Any]]:
    """The rows of a query, as dicts."""
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(sql), params).mappings()]


def ts(value: datetime | str) -> int:
    """A stored timestamp as Unix seconds, whether the backend returns text or datetimes."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp())


def by_window(engine: Engine, view: str, target: Target) -> dict[int, dict[str, Any]]:
    """A view's rows for `target`, keyed by window start (Unix seconds)."""
    found = rows(engine, f"SELECT * FROM {view} WHERE org_id = :o AND segment = :s",
                 o=target.org_id, s=target.segment)
    return {ts(r["window_start"]): r for r in found}


# -- the command line and processes -------------------------------------------------------------


def invoke(args: list[str], env: dict[str, str] | None = None) -> Result:
    """The CLI in this process, exceptions propagating."""
    return CliRunner().invoke(main, args, env=env or {}, catch_exceptions=False)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the API's, the collector's and the simulator's variables,
    plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DEVIN", "COLLECTOR_", "SIMULATOR"))}
    return {**env, **extra}


def collector_process(folder: Path, *args: str) -> subprocess.Popen[str]:
    """`python -m collector` on `folder`/collector.toml with $DEVIN_API_TOKEN set to TOKEN,
    its output piped."""
    env = {**os.environ, "DEVIN_API_TOKEN": TOKEN}
    return subprocess.Popen(
        [sys.executable, "-m", "collector", "--config", str(folder / "collector.toml"), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def run_daemon_until(
    folder: Path, condition: Callable[[], object], *args: str, timeout: float = 30.0
) -> tuple[int, str]:
    """`collector [args] run` on `folder`/collector.toml until `condition` holds, then
    SIGTERM: its exit code and stderr."""
    proc = collector_process(folder, *args, "run")
    try:
        wait_for(condition, timeout=timeout)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    return proc.returncode, stderr


def upgrade_folder(folder: Path) -> None:
    """`collector db upgrade` on `folder`/collector.toml, in a process of its own."""
    proc = collector_process(folder, "db", "upgrade")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err


class TerminalRun(NamedTuple):
    returncode: int
    output: str  #: what was written on the terminal, CRLF as LF
    stderr: str  #: the captured stderr; "" when it went to the terminal too


def run_on_terminal(
    args: list[str], env: dict[str, str], *, answer: str = "", stderr_apart: bool = False
) -> TerminalRun:
    """Run the collector with a pseudo-terminal as stdin and stdout (and stderr, unless
    `stderr_apart`), typing `answer`, until it closes the terminal or is silent for 30 s."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [COLLECTOR, *args], stdin=slave, stdout=slave,
        stderr=subprocess.PIPE if stderr_apart else slave, env=env,
    )
    os.close(slave)
    if answer:
        os.write(master, answer.encode())
    chunks = []
    errors = ""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            errors = proc.stderr.read().decode()
            proc.stderr.close()
    output = b"".join(chunks).decode().replace("\r\n", "\n")
    return TerminalRun(proc.returncode, output, errors)


# -- the report ----------------------------------------------------------------------------------

#: A segment for `backfill_from_simulator`'s first org.
REPORT_SEGMENT = 'name = "backend"\nuser_ids = ["user-1", "user-2", "user-3"]\n'


def backfill_from_simulator(folder: Path, *, orgs: tuple[tuple[str, str], ...], since: date,
                            until: date | None = None, size: str = "6h", users: int = 60,
                            now: float) -> Path:
    """`collector backfill --since` (and `--until`) of every source for `orgs` (id, name;
    the first with the segment `backend`) into `folder`/c.db, from a simulator whose clock
    stands at `now`; the same `now` gives the same data. Returns `folder`/collector.toml."""
    with Simulator(data=SyntheticData(seed=3, users_per_org=users), orgs=[o for o, _ in orgs],
                   tokens={TOKEN: TokenGrant(None)}, clock=lambda: now) as sim:
        config = folder / "collector.toml"
        text = (f'[database]\nurl = "sqlite:///{folder / "c.db"}"\n[api]\n'
                f'base_url = "{sim.base_url}"\nrate_limit = 5000\nconcurrency = 8\n'
                f'[windows]\nsize = "{size}"\n')
        for i, (org, name) in enumerate(orgs):
            text += f'[[orgs]]\nid = "{org}"\nname = "{name}"\n'
            text += "" if i else f"[[orgs.segments]]\n{REPORT_SEGMENT}"
        config.write_text(text)
        span = ["--since", since.isoformat()]
        span += [] if until is None else ["--until", until.isoformat()]
        for args in (["db", "upgrade"], ["backfill", *span]):
            result = invoke(["--config", str(config), *args], {"DEVIN_API_TOKEN": TOKEN})
            assert result.exit_code == 0, result.output
    return config


def chromium_path() -> str:
    """Debian's Chromium, which the browser tests drive; without it they fail, saying how
    to install it, rather than skip."""
    found = shutil.which("chromium") or ("/usr/bin/chromium"
                                         if os.path.exists("/usr/bin/chromium") else None)
    if found is None:
        pytest.fail("Chromium is missing: these tests drive Debian's Chromium through "
                    "Playwright (apt-get install chromium; CI installs it). Do not use "
                    "`playwright install`.")
    return found
