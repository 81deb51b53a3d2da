"""`collector report --serve`: the command run as a process on a database filled from the
simulator, read over HTTP and in headless Chromium. The page served is the page `--out`
writes; each load reads the database afresh; other paths are 404; a database error is a 500
and the server goes on; SIGTERM and SIGINT stop it with exit 0. In-process, with a fixed
clock: a relative `--since` counts back from each load."""

from __future__ import annotations

import re
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser
from sqlalchemy import Engine

from collector import db
from collector.assembly import open_store
from collector.config import load_config
from collector.report import Selection, report_of
from collector.report.serve import listen, serve_until_stopped
from tests.helpers import (
    COLLECTOR,
    FakeClock,
    backfill_from_simulator,
    clean_env,
    invoke,
    rows,
)

ORGS = (("org-platform", "Platform"), ("org-research", "Research"))
SINCE = "20d"
GENERATED = re.compile(r"Generated \d{4}-\d\d-\d\d \d\d:\d\d UTC\.")


@dataclass
class Filled:
    """A SQLite database backfilled from the simulator up to four days ago."""

    folder: Path
    config: Path
    engine: Engine
    now: float  #: the simulator's clock: the same `now` gives the same data
    today: date


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    folder = tmp_path_factory.mktemp("serve")
    now = time.time()
    today = datetime.fromtimestamp(now, UTC).date()
    config = backfill_from_simulator(folder, orgs=ORGS, since=today - timedelta(days=20),
                                     until=today - timedelta(days=4), now=now)
    engine = db.create_engine_for(f"sqlite:///{folder / 'c.db'}")
    yield Filled(folder, config, engine, now, today)
    engine.dispose()


class Served:
    """`collector report --serve 0` as a process: its URL (read from its stdout) and log."""

    def __init__(self, config: Path, *args: str) -> None:
        self.log = config.parent / f"serve-{time.monotonic_ns()}.log"
        with self.log.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "collector", "--config", str(config), "report",
                 "--serve", "0", *args],
                stdout=subprocess.PIPE, stderr=err, text=True, env=clean_env())
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)  # bounded: up to 60 s
        line = self.proc.stdout.readline() if ready else ""
        found = re.fullmatch(r"report: serving (http://127\.0\.0\.1:\d+/)\n", line)
        if found is None:
            self.stop()
            raise AssertionError(f"no URL on stdout: {line!r}; log: {self.log.read_text()}")
        self.url = found.group(1)

    def get(self, path: str = "", method: str = "GET") -> httpx.Response:
        return httpx.request(method, self.url + path, timeout=60)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()


@pytest.fixture(scope="module")
def served(filled: Filled) -> Iterator[Served]:
    server = Served(filled.config, "--since", SINCE)
    yield server
    server.stop()


def summary(html: str) -> tuple[date, date, float]:
    """The summary's seven days and its sessions as the page shows them (`data-value`)."""
    period = re.search(r'<p class="muted">The 7 days (\S+) to (\S+),', html)
    sessions = re.search(r'data-metric="sessions" data-value="([\d.]+)"', html)
    assert period is not None
    assert sessions is not None
    first, last = (date.fromisoformat(d) for d in period.groups())
    return first, last, float(sessions.group(1))


def devin_daily_sessions(engine: Engine, first: date, last: date) -> float:
    (found,) = rows(engine, "SELECT SUM(sessions) AS n FROM devin_daily WHERE day >= :a"
                            " AND day <= :b", a=first.isoformat(), b=last.isoformat())
    return float(found["n"] or 0)


def test_the_served_page_is_the_page_written(served: Served, filled: Filled,
                                             tmp_path: Path) -> None:
    answer = served.get()
    out = tmp_path / "r.html"
    result = invoke(["--config", str(filled.config), "report", "--out", str(out), "--since",
                     SINCE])
    assert result.exit_code == 0, result.output
    assert answer.status_code == 200
    written = out.read_text(encoding="utf-8")
    assert GENERATED.search(answer.text)
    assert GENERATED.sub("", answer.text) == GENERATED.sub("", written)
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert answer.headers["cache-control"] == "no-store"
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert re.search(r"script-src 'sha256-[\w+/=]+'$", policy)  # one script, by its hash
    assert "unsafe-inline" not in policy


def test_each_load_reads_the_database_again(served: Served, filled: Filled) -> None:
    first, last, before = summary(served.get().text)
    assert last == filled.today - timedelta(days=1)  # today is not over
    assert before == devin_daily_sessions(filled.engine, first, last) > 0
    backfill_from_simulator(filled.folder, orgs=ORGS, since=filled.today - timedelta(days=4),
                            now=filled.now)  # the last days, up to now
    again, _, after = summary(served.get().text)
    assert again == first
    assert after == devin_daily_sessions(filled.engine, first, last) > before


@pytest.mark.parametrize("path", ["report.html", "favicon.ico", "api/v3/self"])
def test_any_other_path_is_not_found(served: Served, path: str) -> None:
    answer = served.get(path)
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    assert answer.headers["content-security-policy"].startswith("default-src 'none';")
    assert "the report is at /" in answer.text
    assert served.get(path, "HEAD").status_code == 404


def test_head_answers_the_page_headers_without_the_page(served: Served) -> None:
    head = served.get("", "HEAD")
    page = served.get("?any=query")
    assert head.status_code == page.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(page.content))
    assert head.headers["content-type"] == "text/html; charset=utf-8"
    assert served.get("", "POST").status_code == 501


def test_the_page_in_chromium_runs_under_its_policy(served: Served, browser: Browser,
                                                    tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(served.url)
    assert page.locator("svg[data-chart]").count() == 22
    figure = page.locator("figure#org-platform-prs")
    figure.get_by_role("button", name="Show table").click()  # the script runs
    assert figure.locator(".tbl tr").count() > 1
    with page.expect_download() as download:
        figure.get_by_role("button", name="Download CSV").click()
    download.value.save_as(tmp_path / "prs.csv")
    assert (tmp_path / "prs.csv").read_text().startswith("day,created,merged\n")
    colours = page.locator("figure#org-platform-prs .legend i").evaluate_all(
        "is => is.map(i => getComputedStyle(i).backgroundColor)")  # the style attributes
    assert colours == ["rgb(160, 203, 232)", "rgb(78, 121, 167)"]
    assert page.locator(".cards").evaluate("e => getComputedStyle(e).display") == "grid"
    assert errors == []
    assert [u for u in requests if not u.startswith("blob:")] == [served.url]
    # and the policy holds: a script the page did not bring does not run
    page.evaluate("""() => { const s = document.createElement('script');
        s.textContent = 'window.injected = true'; document.body.append(s); }""")
    assert page.evaluate("window.injected") is None
    assert any("Content Security Policy" in e for e in errors)
    context.close()


def test_a_database_error_is_a_500_and_the_server_goes_on(filled: Filled,
                                                          tmp_path: Path) -> None:
    shutil.copy(filled.folder / "c.db", tmp_path / "c.db")
    config = tmp_path / "collector.toml"
    config.write_text(filled.config.read_text().replace(str(filled.folder / "c.db"),
                                                        str(tmp_path / "c.db")))
    server = Served(config, "--since", SINCE)
    try:
        assert server.get().status_code == 200
        with sqlite3.connect(tmp_path / "c.db") as conn:
            (view,) = conn.execute("SELECT sql FROM sqlite_master WHERE name ="
                                   " 'search_metrics_daily'").fetchone()
            conn.execute("DROP VIEW search_metrics_daily")
        broken = server.get()
        assert broken.status_code == 500
        assert broken.headers["content-type"] == "text/plain; charset=utf-8"
        assert broken.text == ("The report cannot be drawn: the database could not be read "
                               "(the collector's log says why). Try again later.\n")
        with sqlite3.connect(tmp_path / "c.db") as conn:
            conn.execute(view)
        assert server.get().status_code == 200
    finally:
        assert server.stop() == 0
    log = server.log.read_text()
    assert re.search(r"report: GET / 500: could not read the views: .*no such table: "
                     r"search_metrics_daily", log)
    assert len(re.findall(r"report: GET / 200 \(\d+ KB: 2 org\(s\), 22 charts", log)) == 2


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_it_with_exit_0(filled: Filled, signum: int) -> None:
    server = Served(filled.config)
    assert server.get().status_code == 200
    started = time.monotonic()
    assert server.stop(signum) == 0
    assert time.monotonic() - started < 5
    assert "Traceback" not in server.log.read_text()
    with pytest.raises(httpx.ConnectError):
        server.get()


def test_out_and_serve_together_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run([COLLECTOR, "report", "--out", str(tmp_path / "x"), "--serve", "0"],
                            capture_output=True, text=True, env=clean_env(), cwd=tmp_path,
                            timeout=60)
    assert result.returncode == 2
    assert "--out and --serve exclude each other" in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "x").exists()
    alone = invoke(["report", "--host", "0.0.0.0"])  # noqa: S104 - refused, never bound
    assert alone.exit_code == 2
    assert "--host is the address of --serve" in alone.output


def test_a_port_taken_or_an_unknown_org_exits_2(filled: Filled) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke(["--config", str(filled.config), "report", "--serve", str(port)])
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}: the port is already in use" in result.output
    result = invoke(["--config", str(filled.config), "report", "--serve", "0", "--org",
                     "org-nope"])
    assert result.exit_code == 2
    assert "org-nope" in result.output
    assert "serving" not in result.output


def test_a_relative_since_counts_back_from_each_load(filled: Filled) -> None:
    config = load_config(filled.config, {})
    clock = FakeClock(filled.now)
    stop = threading.Event()
    with open_store(config, writable=False) as store:
        server = listen("127.0.0.1", 0,
                        lambda now: report_of(config, store, Selection("7d"), now), clock)
        thread = threading.Thread(target=serve_until_stopped, args=(server, stop))
        thread.start()
        try:
            pages = []
            for _ in range(2):
                pages.append(httpx.get(server.url, timeout=60).text)
                clock.advance(86_400)
        finally:
            stop.set()
            thread.join(timeout=10)
    assert not thread.is_alive()
    for i, html in enumerate(pages):
        today = filled.today + timedelta(days=i)
        assert f"{today - timedelta(days=6)} to {today} (7 UTC days)" in html
        moment = datetime.fromtimestamp(filled.now + i * 86_400, UTC)
        assert f"Generated {moment:%Y-%m-%d %H:%M} UTC." in html
