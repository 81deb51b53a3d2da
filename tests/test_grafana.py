"""The Grafana dashboards and provisioning of deploy/grafana/.

Every panel's SQL and every variable query is read from the dashboard JSON, expanded the way
Grafana expands it (template variables in the front end, then the data source's macros in
the back end), and run against a database the daemon filled with every source from the
simulator: the PostgreSQL dashboard on PostgreSQL (also as the read-only role of
docs/sql.md), the SQLite dashboard on SQLite, opened read-only as the plugin would. Each
query must return the columns its panel expects, and rows; both dashboards must show the
same numbers for the same data. A renamed view or column fails here.
"""

from __future__ import annotations

import importlib
import json
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import DBAPIError

from collector import db, migrate
from collector.assembly import Collector
from collector.config import parse_config
from collector.daemon import Daemon
from collector.sim import Simulator
from collector.store import Store
from tests.helpers import (
    ORGS,
    ROOT,
    T0,
    FakeClock,
    MakeClient,
    config_data,
    postgres_schema,
    postgres_url,
)

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = {"postgresql": GRAFANA / "dashboards" / "collector-postgres.json",
              "sqlite": GRAFANA / "dashboards" / "collector-sqlite.json"}
DATASOURCE_TYPES = {"postgresql": "grafana-postgresql-datasource",
                    "sqlite": "frser-sqlite-datasource"}
#: The public interface of the database (docs/sql.md): panels read nothing else.
PUBLIC = {"session_metrics", "session_metrics_daily", "session_metrics_by_origin",
          "session_metrics_by_size", "session_metrics_daily_by_origin",
          "session_metrics_daily_by_size", "pr_metrics", "pr_metrics_daily", "search_metrics",
          "search_metrics_daily", "active_users", "acu_consumption_daily", "devin_daily",
          "organizations"}
#: What the dashboards read of it: daily views for whatever they chart per day.
READ = PUBLIC - {"session_metrics", "session_metrics_by_origin", "session_metrics_by_size",
                 "pr_metrics", "search_metrics"}
#: Each panel's queries by refId, and the columns each returns, in order.
EXPECTED: dict[str, dict[str, list[str]]] = {
    "Sessions per day, by origin": {"A": ["time", "metric", "sessions"]},
    "ACUs per day": {"A": ["time", "ACUs of sessions created (UTC day)"],
                     "B": ["time", "ACUs billed (billing day, from 08:00 UTC)"]},
    "PRs created and merged per day": {"A": ["time", "created", "merged"]},
    "Merged-PR share by session size": {"A": ["size", "merged_share"]},
    "Active users (DAU / WAU / MAU)": {"A": ["time", "metric", "active_users"]},
    "Searches per day": {"A": ["time", "searches"]},
    "Data quality: complete days": {"A": [
        "org_id", "segment", "source", "days", "complete_days", "first_incomplete_day",
        "last_incomplete_day", "windows_collected", "windows_expected"]},
}
EVERY_SOURCE = {"enabled": ["sessions", "prs", "searches", "active_users", "consumption"]}
SEGMENT = {"name": "team", "user_ids": ["user-1", "user-2"]}
DAY = 86_400
#: The dashboards' time range in the tests: the two days the daemon caught up, and the
#: current (open) window.
NOW = T0 + 600


# -- Grafana's interpolation -------------------------------------------------------------------


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    @classmethod
    def of(cls, start: float, end: float) -> TimeRange:
        return cls(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))


@dataclass(frozen=True)
class Variable:
    """A template variable's current value: one value, several, or All (every option, or
    `all_value` when the variable sets one)."""

    values: tuple[str, ...]
    multi: bool = False
    include_all: bool = False
    all_selected: bool = False
    all_value: str | None = None


#: Grafana's template variable syntax (public/app/features/templating/template_srv.ts):
#: ``$name``, ``[[name]]`` or ``[[name:format]]``, ``${name}`` or ``${name:format}``.
VARIABLE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}")
#: A macro call as Grafana's SQL data sources and the SQLite plugin find it.
MACRO = re.compile(r"\$(__[_a-zA-Z0-9]+)\(([^)]*)\)")
INTERVAL_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": DAY, "w": 7 * DAY, "y": 365 * DAY}


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _format(values: Sequence[str], fmt: str | None, variable: Variable, dialect: str) -> str:
    """A variable's values in the format `fmt` (Grafana's formatters), or as the data
    source formats a variable without one: the PostgreSQL data source quotes the values
    of a multi-value or All variable; the SQLite plugin leaves Grafana's default, which
    writes several values as a glob (``{a,b}``)."""
    if fmt == "sqlstring":
        return ",".join(_quote(v) for v in values)
    if fmt in ("csv", "raw"):
        return ",".join(values)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    if fmt == "pipe":
        return "|".join(values)
    if fmt is not None:
        raise AssertionError(f"format {fmt!r} is not expanded by this test")
    if dialect == "postgresql" and (variable.multi or variable.include_all):
        return ",".join(_quote(v) for v in values)
    if len(values) == 1:
        return values[0]
    return "{" + ",".join(values) + "}"


def _builtin(name: str, fmt: str | None, time_range: TimeRange) -> str | None:
    """Grafana's global variables of the time range, or None for another name."""
    moments = {"__from": time_range.start, "__to": time_range.end}
    if name not in moments:
        return None
    moment = moments[name]
    if fmt is None:
        return str(int(moment.timestamp() * 1000))
    if fmt == "date:seconds":
        return str(int(moment.timestamp()))
    if fmt in ("date", "date:iso"):
        return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    raise AssertionError(f"format {fmt!r} of ${name} is not expanded by this test")


def interpolate(sql: str, variables: Mapping[str, Variable], time_range: TimeRange,
                dialect: str) -> str:
    """The front end's pass (``templateSrv.replace``): template variables and the time
    range's global variables. Names that are no variable (macros) stay as they are."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(6)
        builtin = _builtin(name, fmt, time_range)
        if builtin is not None:
            return builtin
        variable = variables.get(name)
        if variable is None:
            return match.group(0)
        if variable.all_selected and variable.all_value is not None:
            return variable.all_value
        return _format(variable.values, fmt, variable, dialect)

    return VARIABLE.sub(replace, sql)


def _seconds(interval: str) -> float:
    found = re.fullmatch(r"(\d+)(ms|s|m|h|d|w|y)", interval.strip().strip("'"))
    if found is None:
        raise AssertionError(f"cannot parse the interval {interval!r}")
    return int(found.group(1)) * INTERVAL_UNITS[found.group(2)]


def _number(value: float) -> str:
    """A float as Go's ``%v`` prints it (``86400``, ``0.5``)."""
    return str(int(value)) if value == int(value) else repr(value)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def postgres_macros(sql: str, time_range: TimeRange) -> str:
    """The back end's pass of Grafana's PostgreSQL data source (pkg/tsdb/
    grafana-postgresql-datasource/macros.go, and sqleng's interpolation before it)."""
    start, end = time_range.start, time_range.end
    sql = sql.replace("$__unixEpochFrom()", str(int(start.timestamp())))
    sql = sql.replace("$__unixEpochTo()", str(int(end.timestamp())))

    def group(args: list[str]) -> str:
        if len(args) < 2:
            raise AssertionError(f"$__timeGroup needs a column and an interval: {args}")
        step = _number(_seconds(args[1]))
        return f"floor(extract(epoch from {args[0]})/{step})*{step}"

    def epoch_group(args: list[str]) -> str:
        step = _number(_seconds(args[1]))
        return f"floor(({args[0]})/{step})*{step}"

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        args = [a.strip() for a in match.group(2).split(",")]
        after = sql[match.end():match.end() + 1]
        if name == "__timeGroup" and after == ",":
            name = "__timeGroupAlias"  # Grafana's pre-5.3 compatibility
        frm, to = _rfc3339(start), _rfc3339(end)
        unix_from, unix_to = int(start.timestamp()), int(end.timestamp())
        macros: dict[str, Callable[[], str]] = {
            "__time": lambda: f'{args[0]} AS "time"',
            "__timeEpoch": lambda: f'extract(epoch from {args[0]}) as "time"',
            "__timeFilter": lambda: f"{args[0]} BETWEEN '{frm}' AND '{to}'",
            "__timeFrom": lambda: f"'{frm}'",
            "__timeTo": lambda: f"'{to}'",
            "__timeGroup": lambda: group(args),
            "__timeGroupAlias": lambda: group(args) + ' AS "time"',
            "__unixEpochFilter": lambda: (
                f"{args[0]} >= {unix_from} AND {args[0]} <= {unix_to}"),
            "__unixEpochGroup": lambda: epoch_group(args),
            "__unixEpochGroupAlias": lambda: epoch_group(args) + ' AS "time"',
        }
        if name not in macros:
            raise AssertionError(f"unknown macro ${name} (Grafana fails the query)")
        if name not in ("__timeFrom", "__timeTo") and not args[0]:
            raise AssertionError(f"missing time column argument for macro ${name}")
        return macros[name]()

    return MACRO.sub(replace, sql)


def sqlite_macros(sql: str, time_range: TimeRange) -> str:
    """The back end's pass of the SQLite plugin (frser-sqlite-datasource, pkg/plugin/
    macros.go): ``$__unixEpochGroupSeconds`` and ``$__timeFilter``; any other macro is
    left in the SQL, where SQLite rejects it."""
    unix_from, unix_to = int(time_range.start.timestamp()), int(time_range.end.timestamp())

    def replace(match: re.Match[str]) -> str:
        args = match.group(2).split(",")
        if match.group(1) == "__unixEpochGroupSeconds" and len(args) in (2, 3):
            step = int(args[1].strip())
            return f"cast(({args[0]} / {step}) as int) * {step}"
        if match.group(1) == "__timeFilter" and len(args) == 1:
            column = args[0]
            return (f"CAST(CASE WHEN typeof({column}) = 'integer' THEN {column} ELSE "
                    f"strftime(\"%s\", {column}) END AS INTEGER) BETWEEN {unix_from} AND {unix_to}")
        return match.group(0)

    return MACRO.sub(replace, sql)


def expand(sql: str, dialect: str, time_range: TimeRange,
           variables: Mapping[str, Variable]) -> str:
    """`sql` as the database receives it from Grafana."""
    sql = interpolate(sql, variables, time_range, dialect)
    if dialect == "postgresql":
        return postgres_macros(sql, time_range)
    return sqlite_macros(sql, time_range)


# -- the dashboards ----------------------------------------------------------------------------


def dashboard(dialect: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARDS[dialect].read_text())
    return loaded


def target_sql(target: Mapping[str, Any]) -> str:
    """A query's SQL: ``rawSql`` (PostgreSQL) or ``rawQueryText`` (the SQLite plugin)."""
    sql = target.get("rawSql", target.get("rawQueryText"))
    assert isinstance(sql, str), target
    return sql


def panel_targets(board: Mapping[str, Any]) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """(panel title, refId, target) of every panel query."""
    for panel in board["panels"]:
        for target in panel["targets"]:
            yield panel["title"], target["refId"], target


def template(board: Mapping[str, Any], name: str) -> dict[str, Any]:
    (found,) = [v for v in board["templating"]["list"] if v["name"] == name]
    return found


def variable_query(board: Mapping[str, Any], name: str) -> str:
    query = template(board, name)["query"]
    return query if isinstance(query, str) else query["rawSql"]


@dataclass
class Run:
    """A dashboard run against one database: variables resolved as Grafana resolves them
    (query variables by their queries, in order), then every panel query."""

    dialect: str
    execute: Callable[[str], tuple[list[str], list[tuple[Any, ...]]]]
    time_range: TimeRange
    choose: Mapping[str, Sequence[str]] = field(default_factory=dict)
    variables: dict[str, Variable] = field(default_factory=dict)
    options: dict[str, list[str]] = field(default_factory=dict)

    def resolve(self) -> None:
        board = dashboard(self.dialect)
        for spec in board["templating"]["list"]:
            name = spec["name"]
            if spec["type"] == "datasource":
                continue
            if spec["type"] == "custom":
                options = [o.strip() for o in spec["query"].split(",")]
            else:
                sql = expand(variable_query(board, name), self.dialect, self.time_range,
                             self.variables)
                columns, rows = self.execute(sql)
                value = columns.index("__value") if "__value" in columns else 0
                options = [str(row[value]) for row in rows]
            self.options[name] = options
            chosen = self.choose.get(name)
            multi, include_all = spec.get("multi", False), spec.get("includeAll", False)
            if chosen is None:  # the dashboard's saved default
                current = spec["current"]["value"]
                chosen = current if isinstance(current, list) else [current]
            all_selected = list(chosen) == ["$__all"]
            values = tuple(options if all_selected else chosen)
            self.variables[name] = Variable(values, multi, include_all, all_selected,
                                            spec.get("allValue") or None)

    def panels(self) -> dict[tuple[str, str], tuple[list[str], list[tuple[Any, ...]]]]:
        board = dashboard(self.dialect)
        return {(title, ref): self.execute(expand(target_sql(target), self.dialect,
                                                  self.time_range, self.variables))
                for title, ref, target in panel_targets(board)}


def postgres_executor(engine: Engine,
                      role: str | None = None) -> Callable[[str], tuple[list[str], list[Any]]]:
    def execute(sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        with engine.connect() as conn:
            if role is not None:
                conn.execute(text(f'SET ROLE "{role}"'))
            result = conn.exec_driver_sql(sql)
            return list(result.keys()), [tuple(row) for row in result]

    return execute


def sqlite_executor(path: Path) -> Callable[[str], tuple[list[str], list[tuple[Any, ...]]]]:
    """Queries on a read-only connection to the file, as the SQLite plugin opens it
    (``file:<path>?mode=ro``)."""

    def execute(sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            cursor = conn.execute(sql)
            return [d[0] for d in cursor.description], cursor.fetchall()
        finally:
            conn.close()

    return execute


# -- a database of every source ----------------------------------------------------------------


def collect_everything(url: str, sim: Simulator, clock: FakeClock,
                       make_client: MakeClient) -> None:
    """The daemon's first run at NOW for org-alpha (with a segment) and org-beta: two days
    of hourly windows of sessions, PRs and searches, the day, week and month of active
    users, the billing days; and the organizations table."""
    engine = db.create_engine_for(url)
    try:
        migrate.upgrade(engine)
        config = parse_config(config_data(
            sim.base_url, url,
            schedule={"interval": "1h", "repoll_ages": ["1h", "1d", "7d"],
                      "catchup_horizon": "2d", "jitter": "0s"},
            sources=EVERY_SOURCE,
            orgs=[{"id": "org-alpha", "name": "Alpha", "segments": [SEGMENT]},
                  {"id": "org-beta"}],
        ), {}, source="test")
        store = Store(engine)
        clock.now = NOW
        daemon = Daemon(Collector(config, store, make_client(rate_limit=1e6)), clock=clock)
        for org in ORGS:
            daemon.run_org(org)
        store.record_orgs([("org-alpha", "Alpha"), ("org-beta", None)], NOW)
    finally:
        engine.dispose()


def plain(value: Any) -> Any:
    """A value as both backends can be compared on: time as Unix seconds, dates as ISO
    text, numbers as floats rounded to 6 places (sums of floats differ in the last bit)."""
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float | Decimal):
        return round(float(value), 6)
    return value


def check_panels(results: Mapping[tuple[str, str], tuple[list[str], list[tuple[Any, ...]]]],
                 dialect: str, time_range: TimeRange) -> None:
    """Each query returns its columns and rows; a time series has its time first, in or
    before the range (a week or month bucket starts before it), and numbers after it."""
    board = dashboard(dialect)
    formats = {(title, ref): target.get("format", target.get("queryType"))
               for title, ref, target in panel_targets(board)}
    assert {title: sorted(ref for t, ref in results if t == title) for title, _ in results} == {
        title: sorted(refs) for title, refs in EXPECTED.items()}
    for (title, ref), (columns, rows) in results.items():
        assert columns == EXPECTED[title][ref], (dialect, title, ref)
        assert rows, f"{dialect}: {title} ({ref}) returned no rows"
        if formats[title, ref] not in ("time_series", "time series"):
            continue
        for row in rows:
            moment = plain(row[0])
            assert isinstance(moment, float | int), (title, row)
            assert moment <= time_range.end.timestamp(), (title, row)
            assert moment > time_range.start.timestamp() - 31 * DAY, (title, row)
            for name, value in zip(columns[1:], row[1:], strict=True):
                if name == "metric":
                    assert isinstance(value, str), (title, row)
                else:
                    assert isinstance(plain(value), float), (title, name, row)


# -- tests: provisioning -----------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    yaml = importlib.import_module("yaml")  # PyYAML (dev dependency), untyped
    return yaml.safe_load(path.read_text())


def test_provisioning_files_parse_and_name_both_data_sources() -> None:
    sources = load_yaml(GRAFANA / "provisioning" / "datasources" / "collector.yaml")
    assert sources["apiVersion"] == 1
    by_type = {s["type"]: s for s in sources["datasources"]}
    assert set(by_type) == set(DATASOURCE_TYPES.values())
    pg = by_type["grafana-postgresql-datasource"]
    assert pg["user"] == "collector_reader"
    # the password comes from the environment, through Grafana's interpolation
    assert pg["secureJsonData"]["password"] == "$COLLECTOR_READER_PASSWORD"
    assert "password" not in pg
    assert "password" not in pg.get("jsonData", {})
    lite = by_type["frser-sqlite-datasource"]
    assert lite["jsonData"]["path"].endswith(".db")
    assert lite["jsonData"]["pathOptions"] == "mode=ro"
    for dialect in DASHBOARDS:
        default = template(dashboard(dialect), "datasource")
        assert default["query"] == DATASOURCE_TYPES[dialect]
        (named,) = [s for s in sources["datasources"] if s["type"] == default["query"]]
        assert default["current"]["value"] == named["uid"]
        assert default["current"]["text"] == named["name"]
    providers = load_yaml(GRAFANA / "provisioning" / "dashboards" / "collector.yaml")
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert Path(provider["options"]["path"]).is_absolute()
    assert sorted(p.name for p in (GRAFANA / "dashboards").iterdir()) == sorted(
        p.name for p in DASHBOARDS.values())


def test_both_dashboards_show_the_same_panels_over_public_views_only() -> None:
    boards = {dialect: dashboard(dialect) for dialect in DASHBOARDS}
    pg, lite = boards["postgresql"], boards["sqlite"]
    assert pg["uid"] != lite["uid"]

    def layout(board: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        return [(p["id"], p["type"], p["title"], json.dumps(p["gridPos"], sort_keys=True),
                 [t["refId"] for t in p["targets"]]) for p in board["panels"]]

    assert layout(pg) == layout(lite)
    assert [p["title"] for p in pg["panels"]] == list(EXPECTED)
    assert [v["name"] for v in pg["templating"]["list"]] == [
        v["name"] for v in lite["templating"]["list"]] == ["datasource", "org", "segment",
                                                           "source"]
    for dialect, board in boards.items():
        sqls = [target_sql(t) for _, _, t in panel_targets(board)]
        sqls += [variable_query(board, name) for name in ("org", "segment")]
        for panel in board["panels"]:
            assert panel["datasource"] == {"type": DATASOURCE_TYPES[dialect],
                                           "uid": "${datasource}"}
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"]
        read: set[str] = set()
        for sql in sqls:
            bare = re.sub(r"'[^']*'|\"[^\"]*\"", "", sql)  # no literals, no quoted names
            read |= {name.lower() for name in re.findall(r"\b(?:FROM|JOIN)\s+(\w+)", bare,
                                                          flags=re.IGNORECASE)}
        assert read <= PUBLIC, (dialect, read - PUBLIC)
        assert read == READ, (dialect, read ^ READ)
        used = {m for sql in sqls for m in re.findall(r"\$(__\w+)\(", sql)}
        if dialect == "sqlite":
            assert used == set(), "the SQLite plugin has no macros of these panels"
        else:
            assert used == {"__timeFilter", "__time", "__timeFrom", "__timeTo"}


# -- tests: the expansion ----------------------------------------------------------------------


RANGE = TimeRange.of(T0 - 2 * DAY, T0 + 90)


def test_postgres_macros_expand_as_grafana_documents_them() -> None:
    def pg(sql: str) -> str:
        return postgres_macros(sql, RANGE)

    assert pg("$__timeFilter(window_start)") == (
        "window_start BETWEEN '2026-11-18T00:00:00Z' AND '2026-11-20T00:01:30Z'")
    assert pg("$__timeFrom() $__timeTo()") == (
        "'2026-11-18T00:00:00Z' '2026-11-20T00:01:30Z'")
    assert pg("$__timeGroupAlias(window_start, '1d')") == (
        'floor(extract(epoch from window_start)/86400)*86400 AS "time"')
    assert pg("$__timeGroup(t,'5m') AS x") == "floor(extract(epoch from t)/300)*300 AS x"
    assert pg("SELECT $__timeGroup(t, 1h), v") == (
        'SELECT floor(extract(epoch from t)/3600)*3600 AS "time", v')
    assert pg("$__time(day_start)") == 'day_start AS "time"'
    assert pg("$__timeEpoch(t)") == 'extract(epoch from t) as "time"'
    assert pg("$__unixEpochFilter(ts)") == "ts >= 1794960000 AND ts <= 1795132890"
    assert pg("$__unixEpochFrom() $__unixEpochTo()") == "1794960000 1795132890"
    assert pg("$__unixEpochGroupAlias(ts, '1h')") == 'floor((ts)/3600)*3600 AS "time"'
    with pytest.raises(AssertionError, match="unknown macro"):
        pg("$__timeFilterr(t)")


def test_variables_expand_as_grafana_formats_them() -> None:
    orgs = Variable(("org-a", "o'b"), multi=True, include_all=True)
    one = Variable(("org-a",), multi=True, include_all=True)
    segment = Variable(("all",))
    everything = Variable(("org-a", "org-b"), multi=True, include_all=True,
                          all_selected=True, all_value=".*")
    variables = {"org": orgs, "one": one, "segment": segment, "every": everything}

    def go(sql: str, dialect: str = "postgresql") -> str:
        return interpolate(sql, variables, RANGE, dialect)

    assert go("IN (${org:sqlstring})") == "IN ('org-a','o''b')"
    assert go("IN ($org)") == "IN ('org-a','o''b')"  # the PostgreSQL data source quotes
    assert go("IN ($one)") == "IN ('org-a')"
    assert go("IN ($org)", "sqlite") == "IN ({org-a,o'b})"  # Grafana's default: a glob
    assert go("= ${segment:sqlstring} AND s = '$segment'") == "= 'all' AND s = 'all'"
    assert go("[[segment]] ${org:csv} ${org:pipe}") == "all org-a,o'b org-a|o'b"
    assert go("${every:sqlstring}") == ".*"  # a custom all value goes in as it is
    assert go("$__from $__to") == "1794960000000 1795132890000"
    assert go("${__from:date:seconds}-${__to:date:seconds}") == "1794960000-1795132890"
    assert go("${__from:date:iso}") == "2026-11-18T00:00:00.000Z"
    assert go("$__timeFilter(t) AND $unknown") == "$__timeFilter(t) AND $unknown"


def test_sqlite_plugin_macros() -> None:
    assert sqlite_macros("$__unixEpochGroupSeconds(ts, 86400)", RANGE) == (
        "cast((ts / 86400) as int) * 86400")
    assert sqlite_macros("$__timeFilter(t)", RANGE) == (
        "CAST(CASE WHEN typeof(t) = 'integer' THEN t ELSE strftime(\"%s\", t) END AS INTEGER)"
        " BETWEEN 1794960000 AND 1795132890")
    assert sqlite_macros("$__timeGroup(t, 1h)", RANGE) == "$__timeGroup(t, 1h)"


# -- tests: the dashboards on filled databases -------------------------------------------------


PANEL_RANGE = TimeRange.of(T0 - 2 * DAY, NOW)


def run_both(runs: Mapping[str, Run]) -> dict[str, dict[tuple[str, str], Any]]:
    results = {}
    for dialect, run in runs.items():
        run.resolve()
        results[dialect] = run.panels()
    return results


@pytest.fixture
def filled(sim: Simulator, clock: FakeClock, make_client: MakeClient,
           tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A SQLite file and a PostgreSQL schema, each filled by the daemon from the same
    simulator at the same instant."""
    path = tmp_path / "collector.db"
    with postgres_schema(postgres_url()) as pg_url:
        collect_everything(f"sqlite:///{path}", sim, clock, make_client)
        collect_everything(pg_url, sim, clock, make_client)
        engine = db.create_engine_for(pg_url)
        try:
            yield {"sqlite": path, "postgresql": engine, "postgresql_url": pg_url}
        finally:
            engine.dispose()


def test_every_panel_returns_its_columns_and_both_backends_agree(
    filled: dict[str, Any],
) -> None:
    runs = {"postgresql": Run("postgresql", postgres_executor(filled["postgresql"]),
                              PANEL_RANGE),
            "sqlite": Run("sqlite", sqlite_executor(filled["sqlite"]), PANEL_RANGE)}
    results = run_both(runs)
    for dialect, run in runs.items():
        assert run.options["org"] == ["org-alpha", "org-beta"], dialect
        assert run.options["segment"] == ["all", "team"], dialect
        assert run.options["source"] == ["sessions", "prs", "searches"], dialect
        check_panels(results[dialect], dialect, PANEL_RANGE)

    def rows(dialect: str, of: Mapping[str, Any] = results) -> dict[tuple[str, str], Any]:
        """Each query's rows, comparable across backends (in a stable order: PostgreSQL
        sorts text by its collation, SQLite by bytes)."""
        return {key: sorted((tuple(plain(v) for v in row) for row in found), key=repr)
                for key, (_, found) in of[dialect].items()}

    assert rows("postgresql") == rows("sqlite")
    by_origin = rows("sqlite")["Sessions per day, by origin", "A"]
    assert {r[0] for r in by_origin} == {T0 - 2 * DAY, T0 - DAY, T0}  # UTC days
    quality = rows("sqlite")["Data quality: complete days", "A"]
    assert {(r[0], r[2]) for r in quality} == {
        (org, source) for org in ORGS for source in ("sessions", "prs", "searches")}
    # the day still open is the one incomplete day of every source
    assert {(r[3], r[4], r[5]) for r in quality} == {(3, 2, "2026-11-20")}

    # one org and a segment: the segment's rows, fewer sessions than the whole org
    for run in runs.values():
        run.choose = {"org": ["org-alpha"], "segment": ["team"]}
        run.variables.clear()
    segment = run_both(runs)
    assert rows("postgresql", segment) == rows("sqlite", segment)
    team = segment["sqlite"]
    whole = results["sqlite"]
    assert 0 < sum(r[2] for r in team["Sessions per day, by origin", "A"][1]) < sum(
        r[2] for r in whole["Sessions per day, by origin", "A"][1])
    assert {r[1] for r in team["Data quality: complete days", "A"][1]} == {"team"}

    # a database no command has written since migration 0006: no organizations, so the
    # org variable lists the orgs of devin_daily in the range
    with filled["postgresql"].begin() as conn:
        conn.execute(text("DELETE FROM organizations"))
    writer = sqlite3.connect(filled["sqlite"])
    try:
        writer.execute("DELETE FROM organizations")
        writer.commit()
    finally:
        writer.close()
    for run in runs.values():
        run.choose = {}
        run.variables.clear()
        run.resolve()
        assert run.options["org"] == ["org-alpha", "org-beta"], run.dialect


def test_a_renamed_view_fails_its_panel(filled: dict[str, Any]) -> None:
    engine: Engine = filled["postgresql"]
    with engine.begin() as conn:
        conn.execute(text("ALTER VIEW search_metrics_daily RENAME TO search_metrics_old"))
    run = Run("postgresql", postgres_executor(engine), PANEL_RANGE)
    run.resolve()
    with pytest.raises(DBAPIError, match='relation "search_metrics_daily" does not exist'):
        run.panels()


def role_sql(role: str, schema: str, owner: str, database: str) -> list[str]:
    """The statements of docs/sql.md that create the read-only role, for `role` on `schema`."""
    section = (ROOT / "docs" / "sql.md").read_text().split("## Grafana and a read-only role")[1]
    block = section.split("```postgresql\n")[1].split("```")[0]
    block = re.sub(r"\bcollector_reader\b", role, block)
    block = re.sub(r"\bSCHEMA public\b", f'SCHEMA "{schema}"', block)
    block = re.sub(r"\bFOR ROLE collector\b", f'FOR ROLE "{owner}"', block)
    block = re.sub(r"\bDATABASE collector\b", f'DATABASE "{database}"', block)
    code = "\n".join(line for line in block.splitlines() if not line.startswith("--"))
    return [s.strip() for s in code.split(";") if s.strip()]


def test_the_postgres_dashboard_runs_as_the_read_only_role_of_the_docs(
    filled: dict[str, Any],
) -> None:
    """The role of docs/sql.md, logged in as Grafana logs in: every panel and variable
    works; nothing else can be read, and nothing written."""
    engine: Engine = filled["postgresql"]
    role = f"reader_{uuid.uuid4().hex[:10]}"
    with engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        owner = conn.execute(text("SELECT current_user")).scalar_one()
        database = conn.execute(text("SELECT current_database()")).scalar_one()
    statements = role_sql(role, schema, owner, database)
    assert any(s.startswith("ALTER DEFAULT PRIVILEGES") for s in statements)
    admin = create_engine(postgres_url())
    reader = create_engine(make_url(filled["postgresql_url"]).set(
        username=role, password="change-me"))
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
            # a view a later migration creates stays readable (default privileges)
            conn.execute(text("CREATE VIEW later_view AS SELECT 1 AS x"))
        run = Run("postgresql", postgres_executor(reader), PANEL_RANGE)
        run.resolve()
        assert run.options["org"] == ["org-alpha", "org-beta"]
        check_panels(run.panels(), "postgresql", PANEL_RANGE)
        with reader.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar_one() == role
            assert conn.execute(text("SELECT x FROM later_view")).scalar_one() == 1
            assert conn.execute(text("SHOW transaction_read_only")).scalar_one() == "on"
        for statement in ("DELETE FROM organizations",
                          "SELECT raw_body FROM metric_windows LIMIT 1",
                          "SELECT * FROM collection_ledger LIMIT 1",
                          "CREATE TABLE mine (x int)"):
            with reader.connect() as conn, pytest.raises(
                    DBAPIError, match=r"permission denied|read-only transaction"):
                conn.exec_driver_sql(statement)
    finally:
        reader.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))
            conn.execute(text(f'DROP ROLE "{role}"'))
        admin.dispose()
