"""The views' computed ACU columns agree across backends, to 6 decimal places (migration 0003)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, inspect, text

from collector import db, migrate
from collector.rollup import Rollups
from collector.schema import (
    ACU_CONSUMPTION_DAYS,
    LEDGER,
    METRIC_WINDOW_ORIGINS,
    METRIC_WINDOW_SIZES,
    METRIC_WINDOWS,
)
from tests.helpers import ROOT, T0, postgres_schema, postgres_url

HOUR = 3600
#: (avg_acus_per_session, sessions_created_count): every product is float noise in binary
#: (1.1 * 3 == 3.3000000000000003), and so is their sum.
NOISY = [(1.1, 3), (2.675, 7), (0.1, 3), (12.336666666666666, 3), (7.03, 9)]
#: The exact decimal products, rounded to 6 places.
TOTALS = [3.3, 18.725, 0.3, 37.01, 63.27]
DAY_TOTAL = 122.605  # sum of TOTALS
DAY_AVG = 4.9042  # 122.605 / 25 sessions


def fill(engine: Engine) -> None:
    """NOISY as the first hours of 2026-11-20, and one window without sessions the next day."""
    rows: list[dict[str, Any]] = []
    for i, (avg, count) in enumerate([*NOISY, (0.0, 0)]):
        start = T0 + i * HOUR if i < len(NOISY) else T0 + 86400
        rows.append({
            "org_id": "org-alpha", "segment": "all",
            "window_start": datetime.fromtimestamp(start, UTC),
            "window_end": datetime.fromtimestamp(start + HOUR, UTC),
            "window_seconds": HOUR,
            "sessions_created_count": count,
            "sessions_created_with_playbook_count": 0,
            "sessions_created_with_search_count": 0,
            "sessions_with_merged_prs_count": 0,
            "avg_acus_per_session": avg,
            "fetched_at": datetime.fromtimestamp(start + 2 * HOUR, UTC),
            "raw_body": {},
        })
    with engine.begin() as conn:
        conn.execute(insert(METRIC_WINDOWS), rows)
        Rollups(engine.dialect.name).rebuild(conn)  # as the writer keeps them


def acus(engine: Engine) -> dict[str, list[tuple[float, ...]]]:
    with engine.connect() as conn:
        return {
            "windows": [tuple(r) for r in conn.execute(text(
                "SELECT avg_acus_per_session, total_acus FROM session_metrics "
                "ORDER BY window_start"))],
            "days": [tuple(r) for r in conn.execute(text(
                "SELECT avg_acus_per_session, total_acus FROM session_metrics_daily "
                "ORDER BY day"))],
        }


EXPECTED = {
    "windows": [(avg, total) for (avg, _), total in zip(NOISY, TOTALS, strict=True)]
    + [(0.0, 0.0)],
    "days": [(DAY_AVG, DAY_TOTAL), (0.0, 0.0)],
}


def test_computed_acus_are_the_rounded_exact_values(engine: Engine) -> None:
    fill(engine)
    got = acus(engine)
    assert got == EXPECTED
    assert all(isinstance(v, float) for rows in got.values() for row in rows for v in row)


@pytest.fixture
def both(tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """A migrated SQLite and a migrated PostgreSQL database."""
    with postgres_schema(postgres_url()) as pg_url:
        engines = (db.create_engine_for(f"sqlite:///{tmp_path / 'v.db'}"),
                   db.create_engine_for(pg_url))
        try:
            for eng in engines:
                migrate.upgrade(eng)
            yield engines
        finally:
            for eng in engines:
                eng.dispose()


def test_sqlite_and_postgresql_views_agree(both: tuple[Engine, Engine]) -> None:
    sqlite, pg = both
    for eng in both:
        fill(eng)
    assert acus(sqlite) == acus(pg) == EXPECTED


def test_downgrade_restores_the_unrounded_views_with_the_same_columns(engine: Engine) -> None:
    fill(engine)

    def columns() -> dict[str, list[tuple[str, str]]]:
        inspector = inspect(engine)
        return {view: [(c["name"], str(c["type"])) for c in inspector.get_columns(view)]
                for view in ("session_metrics", "session_metrics_daily")}

    rounded = columns()
    migrate.downgrade(engine, "0002")
    assert columns() == rounded
    # the 0002 views: the binary products, noise included
    assert [t for _, t in acus(engine)["windows"]] == [a * n for a, n in NOISY] + [0.0]
    assert acus(engine)["windows"][0][1] == 3.3000000000000003
    migrate.upgrade(engine)
    assert columns() == rounded
    assert acus(engine) == EXPECTED


# The queries of docs/sql.md run on their backend and agree across backends ------------------


def doc_queries(
    doc: str = "docs/sql.md", *, start: str | None = None, end: str | None = None
) -> dict[str, dict[str, str]]:
    """Each example of `doc` (from the heading `start` to the heading `end`, when given) by
    its title: {"sqlite": sql, "postgresql": sql}."""
    body = (ROOT / doc).read_text()
    if start is not None:
        body = body.split(start)[1]
    if end is not None:
        body = body.split(end)[0]
    blocks = body.split("```sql\n")[1:]
    found: dict[str, dict[str, str]] = {}
    title = ""
    for block in blocks:
        for statement in re.split(r";\s*$", block.split("```")[0], flags=re.MULTILINE):
            lines = [line for line in statement.strip().splitlines() if line.strip()]
            if not lines:
                continue
            backends = ["sqlite", "postgresql"]
            for line in (x for x in lines if x.startswith("--")):
                marker = line[2:].strip()
                if marker.split(" (")[0] in ("SQLite", "PostgreSQL"):
                    backends = ["sqlite" if marker.startswith("SQLite") else "postgresql"]
                else:
                    title = marker
            sql = "\n".join(x for x in lines if not x.startswith("--"))
            for backend in backends:
                found.setdefault(title, {})[backend] = sql
    return found


def fill_recent(engine: Engine) -> None:
    """NOISY as the hours just before now, for an org and a segment, with origins and sizes."""
    now = int(datetime.now(UTC).timestamp()) // HOUR * HOUR
    windows, origins, sizes = [], [], []
    for segment, share in (("all", 1), ("backend-team", 3)):
        for i, (avg, count) in enumerate(NOISY):
            start = now - (i + 2) * HOUR
            key = {"org_id": "org-abc123", "segment": segment,
                   "window_start": datetime.fromtimestamp(start, UTC)}
            windows.append({
                **key, "window_end": datetime.fromtimestamp(start + HOUR, UTC),
                "window_seconds": HOUR, "sessions_created_count": count // share,
                "sessions_created_with_playbook_count": 0,
                "sessions_created_with_search_count": 0,
                "sessions_with_merged_prs_count": count // 3, "avg_acus_per_session": avg,
                "fetched_at": datetime.fromtimestamp(start + HOUR, UTC), "raw_body": {},
            })
            origins += [{**key, "origin": "webapp", "sessions_created_count": count - 1},
                        {**key, "origin": "slack", "sessions_created_count": 1}]
            sizes += [{**key, "size": "s", "sessions_created_count": count - 2,
                       "sessions_with_merged_prs_count": 0},
                      {**key, "size": "m", "sessions_created_count": 2,
                       "sessions_with_merged_prs_count": count // 3}]
    with engine.begin() as conn:
        conn.execute(insert(METRIC_WINDOWS), windows)
        conn.execute(insert(METRIC_WINDOW_ORIGINS), origins)
        conn.execute(insert(METRIC_WINDOW_SIZES), sizes)
        Rollups(engine.dialect.name).rebuild(conn)  # as the writer keeps them


#: Two values whose binary sum is noise, in any order: 0.1 + 0.2 == 0.30000000000000004.
SUMMANDS = (0.1, 0.2)


def fill_sums(engine: Engine) -> None:
    """SUMMANDS as the ACUs of two days of org-sums in the week of Monday 2026-11-16, and as
    those billed to org-abc123 on the current billing day and the next (ahead of the
    clock, so that both are in this billing month whatever the date), both final."""
    day = 86400
    monday = T0 - 4 * day  # 2026-11-16
    billing_day = (int(datetime.now(UTC).timestamp()) - 8 * HOUR) // day * day + 8 * HOUR
    windows, billed, settled = [], [], []
    for i, acus in enumerate(SUMMANDS):
        start = monday + i * day
        windows.append({
            "org_id": "org-sums", "segment": "all",
            "window_start": datetime.fromtimestamp(start, UTC),
            "window_end": datetime.fromtimestamp(start + HOUR, UTC), "window_seconds": HOUR,
            "sessions_created_count": 1, "sessions_created_with_playbook_count": 0,
            "sessions_created_with_search_count": 0, "sessions_with_merged_prs_count": 0,
            "avg_acus_per_session": acus,
            "fetched_at": datetime.fromtimestamp(start + HOUR, UTC), "raw_body": {},
        })
        start = billing_day + i * day
        billed.append({
            "org_id": "org-abc123", "segment": "all",
            "window_start": datetime.fromtimestamp(start, UTC),
            "window_end": datetime.fromtimestamp(start + day, UTC), "window_seconds": day,
            "billing_date": datetime.fromtimestamp(start - 8 * HOUR, UTC).date().isoformat(),
            "acus": acus, "acus_devin": acus, "acus_cascade": 0.0, "acus_terminal": 0.0,
            "acus_review": None, "fetched_at": datetime.fromtimestamp(start, UTC),
            "raw_body": {},
        })
        settled.append({
            "source": "consumption", "org_id": "org-abc123", "segment": "all",
            "window_start": datetime.fromtimestamp(start, UTC),
            "window_end": datetime.fromtimestamp(start + day, UTC), "settled": True,
        })
    with engine.begin() as conn:
        conn.execute(insert(METRIC_WINDOWS), windows)
        conn.execute(insert(ACU_CONSUMPTION_DAYS), billed)
        conn.execute(insert(LEDGER), settled)
        Rollups(engine.dialect.name).rebuild(conn)


def noise(keys: Any, rows: Any) -> list[tuple[str, float]]:
    """The values of ACU columns that are not a number of at most 6 decimal places (a sum
    of floats left unrounded: 0.30000000000000004)."""
    return [(key, v) for row in rows for key, v in zip(keys, row, strict=True)
            if "acu" in key.lower() and v is not None and float(v) != round(float(v), 6)]


def plain(rows: Any) -> list[tuple[Any, ...]]:
    """Rows with dates as ISO text, numbers as floats rounded to 9 places, in a stable order."""
    out = []
    for row in rows:
        values: list[Any] = []
        for v in row:
            if isinstance(v, datetime):
                v = v.date().isoformat() if v.hour == 0 and v.minute == 0 else v.isoformat()
            elif isinstance(v, date):
                v = v.isoformat()
            elif isinstance(v, bool):
                v = int(v)
            elif isinstance(v, int | float | Decimal):
                v = round(float(v), 9)
            values.append(v)
        out.append(tuple(values))
    return sorted(out, key=repr)


def test_every_docs_query_has_both_forms_and_they_agree(both: tuple[Engine, Engine]) -> None:
    queries = doc_queries()
    readme = {"Sessions and ACUs per day for one org, last 30 days",
              "Which origins drive usage this week",
              "Share of sessions that led to a merged PR, by size"}
    assert readme <= set(queries)
    # the README shows the SQLite forms, word for word
    readme_queries = {title.split(" (SQLite")[0]: forms["sqlite"]
                      for title, forms in doc_queries("README.md").items()}
    assert set(readme_queries) == readme
    assert {t: queries[t]["sqlite"] for t in readme} == readme_queries
    results: dict[str, list[list[tuple[Any, ...]]]] = {}
    for eng in both:
        fill_recent(eng)
        fill_sums(eng)
        with eng.connect() as conn:
            for title, forms in queries.items():
                if "$__" in forms.get(eng.dialect.name, ""):
                    continue  # Grafana's macro
                assert set(forms) == {"sqlite", "postgresql"}, title
                result = conn.execute(text(forms[eng.dialect.name]))
                keys, raw = list(result.keys()), result.fetchall()
                # ACUs summed by a query are rounded as the views round theirs
                assert not noise(keys, raw), (eng.dialect.name, title, noise(keys, raw))
                results.setdefault(title, []).append(plain(raw))
    for title, (on_sqlite, on_pg) in results.items():
        assert on_sqlite == on_pg, title
        assert on_sqlite, f"{title}: no rows"
    day_totals = sum(r[2] for r in results[
        "Sessions and ACUs per day for one org, last 30 days"][0])
    assert day_totals == pytest.approx(DAY_TOTAL)
    origins = results["Which origins drive usage this week"][0]
    assert sorted(origins) == [("slack", 5.0), ("webapp", 20.0)]
    # the sums the noise check is about are there
    weekly = results["Weekly ACUs per org (weeks start on Monday), additive across days"][0]
    assert ("org-sums", "2026-11-16", 0.3) in weekly
    ((billed, final, days),) = results[
        "ACUs billed to one org this billing month, and how much of it is final"][0]
    assert (billed, final, days) == (0.3, 0.3, 2.0)
