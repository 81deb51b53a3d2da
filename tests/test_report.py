"""`collector report` on SQLite and PostgreSQL: a database filled by the daemon from the
simulator (every source, two orgs, a segment, a token without the billing permission),
rendered; every figure of the page equals the public views, and the command line asks
nothing of the API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from collector import db, migrate
from collector.assembly import Collector
from collector.client import DevinClient
from collector.config import Config, parse_config
from collector.connections import make_http_client
from collector.credentials import Credentials
from collector.daemon import Daemon
from collector.errors import ConfigError
from collector.report import Selection, build_report, report_of
from collector.sim import Simulator, SyntheticData, TokenGrant
from collector.status import target_status
from collector.store import Store
from collector.targets import targets_from_config
from collector.throttle import RetryPolicy
from collector.windows import DAY
from tests.helpers import (
    T0,
    TOKEN,
    FakeClock,
    SleepRecorder,
    config_data,
    invoke,
    postgres_schema,
    postgres_url,
    rows,
)

EVERY = ["sessions", "prs", "searches", "active_users", "consumption"]
NO_BILLING = "cog_report_no_billing_51c"
FIRST, LAST = date(2026, 11, 4), date(2026, 11, 20)  # T0 is 2026-11-20 00:00 UTC
NOW = T0 + 6 * 3600 + 600


class Filled:
    """A database the daemon filled: its URL, engine, configuration and clock."""

    def __init__(self, url: str, engine: Engine, config: Config, clock: FakeClock) -> None:
        self.url, self.engine, self.config, self.clock = url, engine, config, clock

    def day(self, value: date) -> Any:
        """A day as the views compare it on this backend."""
        return value.isoformat() if self.engine.dialect.name == "sqlite" else value

    def build(self, **kwargs: Any) -> str:
        statuses = target_status(Store(self.engine), targets_from_config(self.config),
                                 now=self.clock.now, horizon=16 * DAY)
        options = {"first_day": FIRST, "last_day": LAST, "now": self.clock.now,
                   "statuses": statuses, **kwargs}
        return build_report(self.engine, **options).html


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def filled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Filled]:
    """Sixteen days of 6-hour windows of every source for org-alpha (and its segment
    `team`) and org-beta, whose token may not read consumption; the clock then at
    2026-11-20 06:10 UTC."""
    if request.param == "sqlite":
        yield from _fill(f"sqlite:///{tmp_path_factory.mktemp('report') / 'c.db'}")
        return
    with postgres_schema(postgres_url()) as url:
        yield from _fill(url)


def _fill(url: str) -> Iterator[Filled]:
    clock = FakeClock(T0 + 600)
    tokens = {TOKEN: TokenGrant(None), NO_BILLING: TokenGrant(None, denied=frozenset(
        {"consumption"}))}
    with Simulator(data=SyntheticData(seed=0, users_per_org=40), orgs=("org-alpha", "org-beta"),
                   tokens=tokens, clock=clock) as sim:
        config = parse_config(config_data(
            sim.base_url, url,
            schedule={"interval": "1h", "repoll_ages": ["1h", "1d"], "catchup_horizon": "16d",
                      "jitter": "0s"},
            sources={"enabled": EVERY},
            windows={"size": "6h"},  # four a day: days still sum several windows
            orgs=[{"id": "org-alpha", "name": "Alpha",
                   "segments": [{"name": "team", "user_ids": ["user-1", "user-2"]}]},
                  {"id": "org-beta"}],
        ), {}, source="test")
        engine = db.create_engine_for(url)
        migrate.upgrade(engine)
        client = DevinClient(
            make_http_client(config),
            Credentials({"org-alpha": TOKEN, "org-beta": NO_BILLING}),
            policy=RetryPolicy(max_attempts=2, backoff_base=0.001, backoff_max=0.01),
            rate_limit=1e6, clock=clock, sleep=SleepRecorder(),
        )
        try:
            daemon = Daemon(Collector(config, Store(engine), client), clock=clock)
            for _ in range(2):  # the catch-up, then six hours later
                for org in ("org-alpha", "org-beta"):
                    daemon.run_org(org)
                clock.advance(6 * 3600)
            clock.now = NOW
            yield Filled(url, engine, config, clock)
        finally:
            client.close()
            engine.dispose()


# -- reading the page ----------------------------------------------------------------------


class Page(HTMLParser):
    """What a test needs of the page: summary cards, charts (series -> [(x, value)]),
    sections, quality cells."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.cards: dict[str, dict[str, str]] = {}
        self.charts: dict[str, dict[str, list[tuple[str, float]]]] = {}
        self.labels: dict[str, dict[str, str]] = {}
        self.sections: list[str] = []
        self.quality: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
        self._chart = self._series = ""
        self._xs: list[str] = []
        self._row: tuple[str, str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "div" and "data-metric" in a:
            self.cards[a["data-metric"]] = a
        elif tag == "section" and "data-scope" in a:
            self.sections.append(a["data-scope"])
        elif tag == "svg" and "data-chart" in a:
            self._chart = a["data-chart"]
            self.charts[self._chart], self.labels[self._chart] = {}, {}
            if "data-x" in a:
                self._xs = a["data-x"].split(",")
            else:
                start = date.fromisoformat(a["data-start"])
                self._xs = [(start + timedelta(days=i)).isoformat()
                            for i in range(int(a["data-n"]))]
        elif tag == "g" and "data-series" in a:
            self._series = a["data-series"]
            self.charts[self._chart][self._series] = []
            self.labels[self._chart][self._series] = a["data-label"]
        elif tag == "path" and "data-value" in a:
            points = self.charts[self._chart][self._series]
            points.append((a.get("data-x") or self._xs[len(points)], float(a["data-value"])))
        elif tag == "tr" and "data-org" in a:
            self._row = (a["data-org"], a["data-segment"])
            self.quality[self._row] = {}
        elif tag == "td" and "data-source" in a and self._row is not None:
            self.quality[self._row][a["data-source"]] = a


def series(page: Page, chart: str) -> dict[str, dict[str, float]]:
    return {key: dict(points) for key, points in page.charts[chart].items()}


def by_day(found: list[dict[str, Any]], column: str) -> dict[str, float]:
    return {str(r["day"])[:10]: float(r[column]) for r in found}


# -- the figures equal the views -------------------------------------------------------------


def test_the_summary_equals_devin_daily(filled: Filled) -> None:
    page = Page(filled.build())
    # today (2026-11-20) is not over: the last seven full days end the day before
    for attribute, first, last in (("data-value", date(2026, 11, 13), date(2026, 11, 19)),
                                   ("data-previous", date(2026, 11, 6), date(2026, 11, 12))):
        (sums,) = rows(filled.engine, "SELECT SUM(sessions) AS sessions, SUM(prs_merged) AS"
                       " merged, SUM(total_acus) AS acus, SUM(daily_active_users) AS dau,"
                       " COUNT(DISTINCT day) AS days FROM devin_daily"
                       " WHERE day >= :a AND day <= :b", a=filled.day(first), b=filled.day(last))
        assert float(page.cards["sessions"][attribute]) == sums["sessions"] > 0
        assert float(page.cards["prs_merged"][attribute]) == sums["merged"]
        assert float(page.cards["acus"][attribute]) == pytest.approx(float(sums["acus"]))
        assert float(page.cards["dau"][attribute]) == pytest.approx(sums["dau"] / sums["days"])
    html = filled.build()
    sessions = int(float(page.cards["sessions"]["data-value"]))
    assert f"<b>{sessions:,}</b>" in html  # shown for people: 1,234


def test_every_chart_equals_its_view(filled: Filled) -> None:
    page = Page(filled.build())
    engine, span = filled.engine, {"a": filled.day(FIRST), "b": filled.day(LAST)}
    daily = rows(engine, "SELECT * FROM session_metrics_daily WHERE org_id = 'org-alpha'"
                         " AND segment = 'all' AND day >= :a AND day <= :b", **span)
    sessions = series(page, "org-alpha-sessions")
    days = by_day(daily, "sessions_created_count")
    assert len(days) == (LAST - FIRST).days + 1
    for day, total in days.items():  # the stack of each day is the day's sessions
        assert sum(s.get(day, 0) for s in sessions.values()) == total
    day_sql = ("date(window_start)" if engine.dialect.name == "sqlite"
               else "(window_start AT TIME ZONE 'UTC')::date")
    origins = rows(engine, f"SELECT origin, {day_sql} AS day, SUM(sessions_created_count) AS n"
                           " FROM session_metrics_by_origin WHERE org_id = 'org-alpha'"
                           " AND segment = 'all' AND window_start >= :a AND window_start < :b"
                           f" GROUP BY origin, {day_sql}",
                   a=_ts(filled, FIRST), b=_ts(filled, LAST + timedelta(days=1)))
    shown = {o for o in {r["origin"] for r in origins}
             if sum(r["n"] for r in origins if r["origin"] == o)}
    assert set(sessions) == shown | {"other"}  # legacy origins make the rest
    for r in origins:
        if r["origin"] in shown:
            assert sessions[r["origin"]][str(r["day"])[:10]] == r["n"]
    acus = series(page, "org-alpha-acus")
    assert acus["sessions"] == pytest.approx(by_day(daily, "total_acus"))
    billed = rows(engine, "SELECT billing_date AS day, acus FROM acu_consumption_daily"
                          " WHERE org_id = 'org-alpha' AND billing_date >= :a"
                          " AND billing_date <= :b", **span)
    assert billed
    assert acus["billed"] == pytest.approx(by_day(billed, "acus"))
    assert "billed" not in series(page, "org-beta-acus")  # beta may not read consumption
    prs = rows(engine, "SELECT * FROM pr_metrics_daily WHERE org_id = 'org-alpha'"
                       " AND segment = 'team' AND day >= :a AND day <= :b", **span)
    team = series(page, "org-alpha--team-prs")
    assert team["created"] == by_day(prs, "prs_created_count")
    assert team["merged"] == by_day(prs, "prs_merged_count")
    searches = rows(engine, "SELECT * FROM search_metrics_daily WHERE org_id = 'org-beta'"
                            " AND day >= :a AND day <= :b", **span)
    assert series(page, "org-beta-searches")["searches"] == by_day(
        searches, "searches_created_count")
    sizes = rows(engine, "SELECT size, SUM(sessions_with_merged_prs_count) AS merged,"
                         " SUM(sessions_created_count) AS n FROM session_metrics_by_size"
                         " WHERE org_id = 'org-alpha' AND segment = 'all'"
                         " AND window_start >= :a AND window_start < :b GROUP BY size",
                 a=_ts(filled, FIRST), b=_ts(filled, LAST + timedelta(days=1)))
    assert series(page, "org-alpha-sizes")["merged_share"] == pytest.approx(
        {r["size"]: 100 * r["merged"] / r["n"] for r in sizes}, abs=0.01)
    active = series(page, "org-alpha-active")
    for period in ("day", "week", "month"):
        found = rows(engine, "SELECT period_start, active_users FROM active_users"
                             " WHERE org_id = 'org-alpha' AND period = :p AND period_end > :a"
                             " AND period_start < :b", p=period, a=_ts(filled, FIRST),
                     b=_ts(filled, LAST + timedelta(days=1)))
        assert active[period] == {str(r["period_start"])[:10]: r["active_users"]
                                  for r in found}
    # all orgs together: each day the sum of the orgs'
    both = by_day(rows(engine, "SELECT day, SUM(sessions_created_count) AS n"
                               " FROM session_metrics_daily WHERE segment = 'all'"
                               " AND day >= :a AND day <= :b GROUP BY day", **span), "n")
    together = series(page, "all-sessions")
    assert {d: sum(s.get(d, 0) for s in together.values()) for d in both} == both


def test_data_quality_counts_days_and_failing_windows(filled: Filled) -> None:
    page = Page(filled.build())
    alpha = page.quality[("org-alpha", "all")]
    # 17 days up to today: 16 complete, today partial (its windows are still open)
    assert (alpha["sessions"]["data-complete"], alpha["sessions"]["data-partial"],
            alpha["sessions"]["data-missing"]) == ("16", "1", "0")
    assert alpha["consumption"]["data-failing"] == "0"
    assert ("org-alpha", "team") in page.quality
    beta = page.quality[("org-beta", "all")]
    assert int(beta["consumption"]["data-failing"]) > 0  # the token lacks ManageBilling
    assert beta["consumption"]["data-complete"] == "0"
    html = filled.build()
    assert "ManageBilling" in html  # the newest failure, with its error


def test_org_and_segment_narrow_the_report(filled: Filled) -> None:
    whole = Page(filled.build())
    assert whole.sections == ["all", "org-alpha", "org-alpha--team", "org-beta"]
    beta = Page(filled.build(orgs=["org-beta"]))
    assert beta.sections == ["org-beta"]
    assert not any(c.startswith(("org-alpha", "all-")) for c in beta.charts)
    assert set(beta.quality) == {("org-beta", "all")}
    team = Page(filled.build(segments=["team"]))
    assert team.sections == ["org-alpha--team"]
    assert set(team.charts) == {f"org-alpha--team-{c}" for c in ("sessions", "acus", "prs",
                                                                   "sizes")}
    assert "dau" not in team.cards  # active users are per organization
    (week,) = rows(filled.engine, "SELECT SUM(sessions_created_count) AS n"
                   " FROM session_metrics_daily WHERE segment = 'team' AND day >= :a"
                   " AND day <= :b", a=filled.day(date(2026, 11, 13)),
                   b=filled.day(date(2026, 11, 19)))
    assert float(team.cards["sessions"]["data-value"]) == week["n"]
    both = Page(filled.build(segments=["all", "team"], orgs=["org-alpha"]))
    assert both.sections == ["org-alpha", "org-alpha--team"]
    with pytest.raises(ConfigError, match="org-nope"):
        filled.build(orgs=["org-nope"])
    with pytest.raises(ConfigError, match="segments with data: team"):
        filled.build(segments=["nope"])


def test_the_page_is_small_and_fetches_nothing(filled: Filled) -> None:
    html = filled.build()
    assert len(html.encode()) < 200_000  # 2 orgs, a segment, 17 days
    assert not re.search(r"""(src|href)=["']?(https?:)?//|@import|url\(|<link|<img""", html)
    assert "http://" not in html
    assert "https://" not in html
    assert html.count("<script>") == 1
    assert html.count("<style>") == 1


def test_an_empty_database_gives_a_clear_page(engine: Engine) -> None:
    report = build_report(engine, first_day=FIRST, last_day=LAST, now=NOW)
    assert report.empty
    assert report.charts == 0
    assert 'id="empty"' in report.html
    assert "No data between 2026-11-04 and 2026-11-20" in report.html
    assert "collector backfill" in report.html


# -- the command line ------------------------------------------------------------------------


def _config_file(path: Path, db_url: str) -> Path:
    """A configuration of both orgs whose API cannot be reached (nothing listens there)."""
    path.write_text(
        f'[database]\nurl = "{db_url}"\n[api]\nbase_url = "http://127.0.0.1:9"\n'
        '[windows]\nsize = "6h"\n'
        '[[orgs]]\nid = "org-alpha"\n[[orgs.segments]]\nname = "team"\n'
        'user_ids = ["user-1", "user-2"]\n[[orgs]]\nid = "org-beta"\n')
    return path


def test_the_default_range_starts_where_the_data_does(filled: Filled) -> None:
    """Sixteen days of data: without --since the page shows those days (and the billing day
    before them), not 74 empty ones before; --since 90d still shows 90; once there is more
    than 90 days of history, the default is 90 days."""
    store = Store(filled.engine)
    now = filled.clock.now

    def days(selection: Selection, at: float = now) -> tuple[date, date]:
        found = report_of(filled.config, store, selection, at)
        return found.first_day, found.last_day

    # org-alpha's first billing day began at 08:00 UTC the day before its first UTC day;
    # org-beta's token may not read consumption
    billed = FIRST - timedelta(days=1)
    assert days(Selection()) == (billed, LAST)
    assert days(Selection(orgs=("org-alpha",))) == (billed, LAST)
    assert days(Selection(orgs=("org-beta",))) == (FIRST, LAST)
    assert days(Selection("90d")) == (LAST - timedelta(days=89), LAST)
    assert days(Selection(until="2026-11-10")) == (billed, date(2026, 11, 10))
    later = LAST + timedelta(days=200)
    assert days(Selection(), now + 200 * DAY) == (later - timedelta(days=89), later)


def test_the_command_writes_the_page_without_the_api(
    filled: Filled, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_client(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the report opened an API client")

    monkeypatch.setattr("collector.client.DevinClient.__init__", no_client)
    monkeypatch.setattr("collector.connections.make_http_client", no_client)
    monkeypatch.setattr("collector.client.make_http_client", no_client)
    monkeypatch.setattr("httpx.Client.send", no_client)
    config = _config_file(tmp_path / "c.toml", filled.url)
    out = tmp_path / "r.html"
    result = invoke(["--config", str(config), "report", "--out", str(out), "--since",
                     "2026-11-04", "--until", "2026-11-20"])  # no token in the environment
    assert result.exit_code == 0, result.output
    assert re.match(r"report: wrote .*r\.html \(\d+ KB: 2 org\(s\), 22 charts, 2026-11-04 to "
                    r"2026-11-20\) in \d+\.\d\ds", result.output)
    page = Page(out.read_text())
    assert page.sections == ["all", "org-alpha", "org-alpha--team", "org-beta"]
    assert int(page.quality[("org-beta", "all")]["consumption"]["data-failing"]) > 0


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "yesterday"], "--since: 'yesterday' is neither a duration"),
    (["--until", "2026-13-01"], "--until"),
    (["--since", "2026-11-21", "--until", "2026-11-20"], "comes after"),
    (["--org", "org-nope"], "org-nope"),
    (["--segment", "nope"], "--segment"),
])
def test_bad_arguments_exit_2(engine: Engine, db_url: str, tmp_path: Path, args: list[str],
                              message: str) -> None:
    config = _config_file(tmp_path / "c.toml", db_url)
    result = invoke(["--config", str(config), "report", "--out", str(tmp_path / "r.html"),
                     *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "r.html").exists()


def test_an_empty_database_exits_0_and_says_so(engine: Engine, db_url: str,
                                               tmp_path: Path) -> None:
    config = _config_file(tmp_path / "c.toml", db_url)
    out = tmp_path / "r.html"
    result = invoke(["--config", str(config), "report", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "holds no data" in result.output
    assert 'id="empty"' in out.read_text()


def test_a_database_not_upgraded_exits_2(db_url: str, tmp_path: Path) -> None:
    config = _config_file(tmp_path / "c.toml", db_url)
    result = invoke(["--config", str(config), "report", "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 2, result.output
    assert "db upgrade" in result.output


def _ts(filled: Filled, day: date) -> Any:
    """Midnight UTC of `day` as the views' timestamps compare on this backend."""
    moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
    if filled.engine.dialect.name == "sqlite":
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment


