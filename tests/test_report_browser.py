"""The report in a real browser (Debian's Chromium through Playwright), opened from a file:
no console error, no request but the file itself, every chart drawn with the series and
points of its view, the table toggle, the CSV download, a phone's width and print.

The database is filled by `collector backfill` against the simulator (frozen at the real
now, so `collector report` sees it as current). Chromium is required: without it these
tests fail, saying how to install it, rather than skip.

    .venv/bin/python -m tests.test_report_browser docs/report.png

writes the documentation's screenshot: three orgs, thirty days of hourly windows.
"""

from __future__ import annotations

import csv
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy import Engine

from collector import db
from tests.helpers import backfill_from_simulator, chromium_path, invoke, rows

ORGS = (("org-platform", "Platform"), ("org-research", "Research"))


@dataclass
class Rendered:
    path: Path
    engine: Engine
    first: date
    last: date


def render(folder: Path, *, orgs: tuple[tuple[str, str], ...], days: int, size: str,
           users: int = 60) -> Path:
    """Backfill `days` days of every source for `orgs` (the first with a segment) into a
    SQLite file in `folder`, then write the report of those days; returns the page."""
    now = time.time()
    first = datetime.fromtimestamp(now - days * 86_400, UTC).date()
    config = backfill_from_simulator(folder, orgs=orgs, since=first, size=size, users=users,
                                     now=now)
    out = folder / "report.html"
    result = invoke(["--config", str(config), "report", "--out", str(out), "--since",
                     first.isoformat()])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rendered]:
    folder = tmp_path_factory.mktemp("browser")
    path = render(folder, orgs=ORGS, days=20, size="6h")
    engine = db.create_engine_for(f"sqlite:///{folder / 'c.db'}")
    text = path.read_text()
    found = re.search(r"(\d{4}-\d\d-\d\d) to (\d{4}-\d\d-\d\d) \(", text)
    assert found is not None
    first, last = found.groups()
    yield Rendered(path, engine, date.fromisoformat(first), date.fromisoformat(last))
    engine.dispose()


@dataclass
class Opened:
    page: Page
    requests: list[str]
    errors: list[str]


@pytest.fixture
def opened(browser: Browser, rendered: Rendered) -> Iterator[Opened]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    found = Opened(page, [], [])
    page.on("request", lambda r: found.requests.append(r.url))
    page.on("console", lambda m: found.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: found.errors.append(str(e)))
    page.goto(rendered.path.as_uri())
    yield found
    context.close()


def expected_charts(engine: Engine, first: date, last: date) -> dict[str, dict[str, int]]:
    """Per chart id, the series and their point counts the views' rows call for."""
    span = {"a": first.isoformat(), "b": last.isoformat(),
            "ta": f"{first} 00:00:00", "tb": f"{last + timedelta(days=1)} 00:00:00"}
    orgs = [o for o, _ in ORGS]
    scopes: list[tuple[str, list[str], str]] = [("all", orgs, "all")]
    scopes += [(o, [o], "all") for o in orgs] + [(f"{orgs[0]}--backend", orgs[:1], "backend")]
    found: dict[str, dict[str, int]] = {}

    def one(sql: str, who: list[str], segment: str) -> Any:
        inside = ",".join(f"'{o}'" for o in who)
        (row,) = rows(engine, sql.replace("ORGS", inside), s=segment, **span)
        return next(iter(row.values()))

    for key, who, segment in scopes:
        days = one("SELECT COUNT(DISTINCT day) FROM session_metrics_daily WHERE org_id IN"
                   " (ORGS) AND segment = :s AND day >= :a AND day <= :b", who, segment)
        origins = rows(engine, "SELECT origin, SUM(sessions_created_count) AS n FROM"
                       f" session_metrics_by_origin WHERE org_id IN ({','.join(map(repr, who))})"
                       " AND segment = :s AND window_start >= :ta AND window_start < :tb"
                       " GROUP BY origin", s=segment, **span)
        total = one("SELECT SUM(sessions_created_count) FROM session_metrics_daily WHERE"
                    " org_id IN (ORGS) AND segment = :s AND day >= :a AND day <= :b",
                    who, segment)
        sessions = {r["origin"]: days for r in origins if r["n"]}
        if total > sum(r["n"] for r in origins):
            sessions["other"] = days
        found[f"{key}-sessions"] = sessions
        found[f"{key}-acus"] = {"sessions": days}
        found[f"{key}-prs"] = dict.fromkeys(("created", "merged"), one(
            "SELECT COUNT(DISTINCT day) FROM pr_metrics_daily WHERE org_id IN (ORGS) AND"
            " segment = :s AND day >= :a AND day <= :b", who, segment))
        found[f"{key}-sizes"] = {"merged_share": one(
            "SELECT COUNT(DISTINCT size) FROM session_metrics_by_size WHERE org_id IN (ORGS)"
            " AND segment = :s AND sessions_created_count > 0 AND window_start >= :ta"
            " AND window_start < :tb", who, segment)}
        if segment != "all":
            continue
        billed = one("SELECT COUNT(DISTINCT billing_date) FROM acu_consumption_daily WHERE"
                     " org_id IN (ORGS) AND billing_date >= :a AND billing_date <= :b"
                     " AND :s = 'all'", who, segment)
        if billed:
            found[f"{key}-acus"]["billed"] = billed
        found[f"{key}-active"] = {p: one(
            "SELECT COUNT(DISTINCT period_start) FROM active_users WHERE org_id IN (ORGS)"
            f" AND period = '{p}' AND period_end > :ta AND period_start < :tb AND :s = 'all'",
            who, segment) for p in ("day", "week", "month")}
        found[f"{key}-searches"] = {"searches": one(
            "SELECT COUNT(DISTINCT day) FROM search_metrics_daily WHERE org_id IN (ORGS)"
            " AND segment = :s AND day >= :a AND day <= :b", who, segment)}
    return found


DRAWN = """() => Object.fromEntries([...document.querySelectorAll('svg[data-chart]')].map(svg =>
  [svg.dataset.chart, {height: svg.getBoundingClientRect().height,
   series: Object.fromEntries([...svg.querySelectorAll('g[data-series]')].map(g =>
     [g.dataset.series, g.querySelectorAll('[data-value]').length]))}]))"""


def test_every_chart_is_drawn_with_its_views_series_and_points(
    opened: Opened, rendered: Rendered
) -> None:
    drawn = opened.page.evaluate(DRAWN)
    expected = expected_charts(rendered.engine, rendered.first, rendered.last)
    assert len(drawn) == len(expected) == 22
    for chart, series in expected.items():
        assert drawn[chart]["series"] == series, chart
        assert drawn[chart]["height"] > 100, chart
    assert opened.errors == []
    assert opened.requests == [rendered.path.as_uri()]  # nothing but the file itself


def test_a_figure_shown_equals_its_view(opened: Opened, rendered: Rendered) -> None:
    page = opened.page
    period = page.locator("#summary p.muted").first.inner_text()
    found = re.search(r"(\d{4}-\d\d-\d\d) to (\d{4}-\d\d-\d\d)", period)
    assert found is not None
    first, last = found.groups()
    (week,) = rows(rendered.engine, "SELECT SUM(sessions) AS n FROM devin_daily"
                   " WHERE day >= :a AND day <= :b", a=first, b=last)
    shown = page.locator('[data-metric="sessions"] b').inner_text()
    assert re.fullmatch(r"\d{1,3}(,\d{3})*", shown)
    assert int(shown.replace(",", "")) == week["n"] > 0


def test_the_table_toggle_and_the_csv_download(opened: Opened, rendered: Rendered,
                                               tmp_path: Path) -> None:
    page = opened.page
    figure = page.locator("figure#org-platform-prs")
    table = figure.locator(".tbl")
    assert table.is_hidden()
    figure.get_by_role("button", name="Show table").click()
    assert table.is_visible()
    cells = table.locator("tr").evaluate_all(
        "trs => trs.map(tr => [...tr.children].map(c => c.tagName === 'TH' ? c.textContent"
        " : c.dataset.value))")
    assert cells[0] == ["day", "created", "merged"]
    days = (rendered.last - rendered.first).days + 1
    assert len(cells) == 1 + days
    (prs,) = rows(rendered.engine, "SELECT SUM(prs_created_count) AS n FROM pr_metrics_daily"
                  " WHERE org_id = 'org-platform' AND segment = 'all' AND day >= :a"
                  " AND day <= :b", a=rendered.first.isoformat(), b=rendered.last.isoformat())
    assert sum(int(r[1] or 0) for r in cells[1:]) == prs["n"]
    with page.expect_download() as download:
        figure.get_by_role("button", name="Download CSV").click()
    assert download.value.suggested_filename == "org-platform-prs.csv"
    saved = tmp_path / "prs.csv"
    download.value.save_as(saved)
    with saved.open(newline="") as f:
        assert list(csv.reader(f)) == cells
    figure.get_by_role("button", name="Hide table").click()
    assert table.is_hidden()
    assert opened.errors == []
    assert all(u == rendered.path.as_uri() or u.startswith("blob:") for u in opened.requests)


def test_readable_on_a_phone_and_printed(opened: Opened, rendered: Rendered) -> None:
    page = opened.page
    page.set_viewport_size({"width": 390, "height": 844})
    page.locator("figure#all-sessions").get_by_role("button", name="Show table").click()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    width = page.locator("svg[data-chart='all-sessions']").evaluate(
        "s => s.getBoundingClientRect().width")
    assert 300 < width <= 390  # the chart scales down with its viewBox
    page.screenshot(path=str(rendered.path.parent / "phone.png"), full_page=True)
    page.emulate_media(media="print")
    assert page.locator(".tools").first.evaluate("e => getComputedStyle(e).display") == "none"
    assert opened.errors == []


def screenshot(out: Path) -> None:
    """The documentation's screenshot: three orgs, thirty days of hourly windows."""
    orgs = (*ORGS, ("org-mobile", "Mobile"))
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        path = render(Path(tmp), orgs=orgs, days=30, size="1h", users=120)
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True,
                                    args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(path.as_uri())
        page.screenshot(path=str(out), full_page=True)
        browser.close()
        print(f"{out}: {len(path.read_bytes()) / 1024:,.0f} KB page")


if __name__ == "__main__":
    screenshot(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/report.png"))
