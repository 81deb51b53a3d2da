"""Exits a user should never see as tracebacks or silent data loss: a downgrade that drops
tables, a malformed database URL, a PostgreSQL URL without its driver installed, a migration
target that does not exist or is already reached, a port already taken, a database in a
missing directory or that this user may not write, dates out of range, and migrations read
after their temporary copy is gone."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import tomllib
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from collector import db, migrate
from collector.sim import Simulator
from tests.helpers import (
    COLLECTOR,
    ROOT,
    TOKEN,
    clean_env,
    config_file,
    invoke,
    postgres_schema,
    postgres_url,
    run_on_terminal,
)

#: The API's real address: the commands tested here fail before they would reach it.
REAL_API = "https://api.devin.ai"


def run(args: list[str], *, prefix: tuple[str, ...] = (), cwd: Path | None = None,
        **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, COLLECTOR, *args], capture_output=True, text=True, env=clean_env(**env),
        cwd=cwd, timeout=120, check=False,
    )


def tables(db_url: str) -> set[str]:
    engine = create_engine(db_url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


# -- 10: a downgrade deletes data: it asks, or needs --yes ------------------------------------


def test_downgrade_without_a_terminal_needs_yes(tmp_path: Path, db_url: str) -> None:
    config = config_file(tmp_path / "c.toml", REAL_API, db_url)
    assert invoke(["--config", str(config), "db", "upgrade"]).exit_code == 0
    before = tables(db_url)
    assert "metric_windows" in before
    refused = invoke(["--config", str(config), "db", "downgrade", "base"])
    assert refused.exit_code == 2
    assert "drops every table of the collector and all the data in them" in refused.output
    assert "pass --yes" in refused.output
    assert tables(db_url) == before
    done = invoke(["--config", str(config), "db", "downgrade", "base", "--yes"])
    assert done.exit_code == 0, done.output
    assert done.output.endswith("database at revision base\n")
    assert tables(db_url) == set()


def test_downgrade_on_a_terminal_asks_first(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'c.db'}"
    config = config_file(tmp_path / "c.toml", REAL_API, db_url)
    assert invoke(["--config", str(config), "db", "upgrade"]).exit_code == 0
    before = tables(db_url)
    code, output, _ = run_on_terminal(
        ["--config", str(config), "db", "downgrade", "base"], clean_env(), answer="n\n"
    )
    assert code == 1
    assert f"Downgrade sqlite:///{tmp_path / 'c.db'} from {db.SCHEMA_HEAD} to base?" in output
    assert "[y/N]" in output
    assert "nothing changed" in output
    assert tables(db_url) == before
    code, output, _ = run_on_terminal(
        ["--config", str(config), "db", "downgrade", "base"], clean_env(), answer="y\n"
    )
    assert code == 0, output
    assert "database at revision base" in output
    assert tables(db_url) == set()


# -- 11: messages, not tracebacks --------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("sqlite://x.db", "'sqlite://x.db' cannot be used"),
        ("sqlite:/x.db", "is not a database URL"),
        ("postgresql://u@h:port/db", "is not a database URL"),
        ("postgresql+nodriver://h/db", "'postgresql+nodriver://h/db' cannot be used"),
    ],
)
def test_malformed_database_url_exits_2_with_a_message(
    tmp_path: Path, url: str, says: str
) -> None:
    config = config_file(tmp_path / "c.toml", REAL_API, "sqlite:///unused.db")
    proc = run(["--config", str(config), "db", "upgrade"], COLLECTOR_DATABASE_URL=url, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert says in proc.stderr
    assert "sqlite:////absolute/file.db" in proc.stderr
    assert not (tmp_path / "x.db").exists()


def test_simulate_on_a_taken_port_exits_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run(["simulate", "--port", str(port)], cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"cannot listen on 127.0.0.1:{port}: the port is already in use" in proc.stderr
    assert "--port" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("command", [["db", "upgrade"], ["db", "current"], ["collect"],
                                     ["status"]])
def test_database_in_a_missing_directory_is_named(
    live_sim: Simulator, tmp_path: Path, command: list[str]
) -> None:
    path = tmp_path / "nope" / "dir" / "x.db"
    config = config_file(tmp_path / "c.toml", live_sim.base_url, f"sqlite:///{path}")
    proc = run(["--config", str(config), *command], DEVIN_API_TOKEN=TOKEN)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert (
        f"the database file {path} cannot be opened: its directory {path.parent} does not exist"
        in proc.stderr
    )
    assert "db upgrade" not in proc.stderr
    assert "cannot read the database" not in proc.stderr
    assert not path.parent.exists()
    assert live_sim.count() == 0


# -- 11: a database this user may not write is found before anything is fetched ---------------

UNPRIVILEGED = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory outside pytest's private tmp (0700) that `nobody` can reach."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the collector as an unprivileged user")
    probe = subprocess.run([*UNPRIVILEGED, COLLECTOR, "--version"], capture_output=True,
                           text=True, cwd="/", timeout=60, check=False)
    if probe.returncode != 0:  # e.g. a checkout under a directory only root may enter
        pytest.skip(f"this checkout cannot be run by an unprivileged user: {probe.stderr[-200:]}")
    path = Path(tempfile.mkdtemp(prefix="collector-ro-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    path.chmod(0o755)
    shutil.rmtree(path)


def prepared(shared_dir: Path, base_url: str, dir_mode: int, file_mode: int) -> Path:
    data = shared_dir / "data"
    data.mkdir()
    database = data / "c.db"
    config = config_file(shared_dir / "c.toml", base_url, f"sqlite:///{database}")
    config.chmod(0o644)
    assert invoke(["--config", str(config), "db", "upgrade"]).exit_code == 0
    assert not (data / "c.db-wal").exists()
    database.chmod(file_mode)
    data.chmod(dir_mode)
    return config


def test_unprivileged_user_collects_when_it_may_write(
    live_sim: Simulator, shared_dir: Path
) -> None:
    """The control for the two tests below: the same set-up, writable, works."""
    config = prepared(shared_dir, live_sim.base_url, 0o777, 0o666)
    proc = run(["--config", str(config), "collect"], prefix=UNPRIVILEGED, cwd=shared_dir,
               DEVIN_API_TOKEN=TOKEN)
    assert proc.returncode == 0, proc.stderr
    assert "collect: 2 of 2 window(s) collected" in proc.stdout
    assert live_sim.count(status=200) == 2


def test_read_only_database_file_is_refused_before_fetching(
    live_sim: Simulator, shared_dir: Path
) -> None:
    config = prepared(shared_dir, live_sim.base_url, 0o777, 0o644)
    proc = run(["--config", str(config), "collect"], prefix=UNPRIVILEGED, cwd=shared_dir,
               DEVIN_API_TOKEN=TOKEN)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    database = shared_dir / "data" / "c.db"
    assert f"the database file {database} is read-only for this user (nobody)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert live_sim.count() == 0
    upgrade = run(["--config", str(config), "db", "upgrade"], prefix=UNPRIVILEGED, cwd=shared_dir)
    assert upgrade.returncode == 2, upgrade.stdout + upgrade.stderr
    assert f"the database file {database} is read-only for this user (nobody)" in upgrade.stderr


def test_read_only_database_directory_is_refused_before_fetching(
    live_sim: Simulator, shared_dir: Path
) -> None:
    config = prepared(shared_dir, live_sim.base_url, 0o755, 0o666)
    proc = run(["--config", str(config), "collect"], prefix=UNPRIVILEGED, cwd=shared_dir,
               DEVIN_API_TOKEN=TOKEN)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    data = shared_dir / "data"
    assert f"the directory {data} of the database file {data / 'c.db'} is read-only" in (
        proc.stderr
    )
    assert "c.db-wal" in proc.stderr
    assert live_sim.count() == 0


def test_postgres_user_without_write_privileges_is_refused_before_fetching(
    live_sim: Simulator, tmp_path: Path
) -> None:
    base = postgres_url()
    role = f"ro_{uuid.uuid4().hex[:10]}"
    with postgres_schema(base) as owner_url:
        schema = owner_url.rsplit("%3D", 1)[1]
        admin = create_engine(base)
        config = config_file(tmp_path / "c.toml", live_sim.base_url, owner_url)
        assert invoke(["--config", str(config), "db", "upgrade"]).exit_code == 0
        with admin.begin() as conn:
            conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
            conn.execute(text(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"'))
            conn.execute(text(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"'))
        try:
            reader_url = make_url(owner_url).set(username=role).render_as_string(
                hide_password=False
            )
            config = config_file(tmp_path / "r.toml", live_sim.base_url, reader_url)
            result = invoke(["--config", str(config), "collect"], {"DEVIN_API_TOKEN": TOKEN})
            assert result.exit_code == 2, result.output
            assert f"the database user {role} may not write to" in result.output
            assert "it lacks INSERT, UPDATE, DELETE on metric_windows" in result.output
            assert live_sim.count() == 0
        finally:
            with admin.begin() as conn:
                conn.execute(text(f'REVOKE ALL ON ALL TABLES IN SCHEMA "{schema}" FROM "{role}"'))
                conn.execute(text(f'REVOKE USAGE ON SCHEMA "{schema}" FROM "{role}"'))
                conn.execute(text(f'DROP ROLE "{role}"'))
            admin.dispose()


# -- migrations read from a copy that outlives the call ----------------------------------------


def test_migrations_from_a_zip_stay_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "collector.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for file in (ROOT / "collector" / "migrations").rglob("*"):
            if file.is_file() and "__pycache__" not in file.parts:
                bundle.write(file, file.relative_to(ROOT).as_posix())
    expected = migrate.head_revision()
    monkeypatch.setattr(
        migrate, "files", lambda _package: zipfile.Path(archive, "collector/migrations/")
    )
    monkeypatch.setattr(migrate, "_extracted", None, raising=False)
    location = Path(migrate.alembic_config().get_main_option("script_location") or "")
    assert location.is_dir()
    assert (location / "env.py").is_file()
    assert (location / "versions" / "0001_initial.py").is_file()
    assert migrate.head_revision() == expected  # Alembic reads the scripts after the call
    engine = db.create_engine_for(f"sqlite:///{tmp_path / 'z.db'}")
    try:
        migrate.upgrade(engine)
        assert db.current_revision(engine) == expected
    finally:
        engine.dispose()


# -- PostgreSQL without its driver: install the extra, not a ModuleNotFoundError --------------


def test_pyproject_extra_named_in_the_message_installs_psycopg() -> None:
    """The message below tells people to install the `postgres` extra: it must exist."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(dep.startswith("psycopg") for dep in extras["postgres"])


@pytest.mark.parametrize("command", [["db", "upgrade"], ["db", "current"], ["status"],
                                     ["collect"]])
@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "postgresql"])
def test_postgres_url_without_psycopg_says_to_install_the_extra(
    tmp_path: Path, command: list[str], scheme: str
) -> None:
    # psycopg as a plain `pip install .` leaves it: importing it fails (nothing uninstalled;
    # the module is shadowed in this process only)
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "psycopg.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n"
    )
    config = config_file(tmp_path / "c.toml", REAL_API, "sqlite:///unused.db")
    url = f"{scheme}://collector:hunter2@127.0.0.1:1/metrics"
    proc = run(["--config", str(config), *command], cwd=tmp_path, PYTHONPATH=str(blocked),
               COLLECTOR_DATABASE_URL=url, DEVIN_API_TOKEN=TOKEN)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "needs the PostgreSQL driver psycopg, which is not installed" in proc.stderr
    assert "pip install '.[postgres]'" in proc.stderr
    assert f"'{scheme}://collector:***@127.0.0.1:1/metrics'" in proc.stderr
    assert "hunter2" not in proc.stderr


# -- migration targets: unknown ones are named, no-ops do nothing, only data loss asks ---------


@pytest.mark.parametrize("args", [["upgrade", "--revision", "garbage"],
                                  ["downgrade", "garbage", "--yes"]])
def test_unknown_revision_exits_2_listing_the_known_ones(
    tmp_path: Path, db_url: str, args: list[str]
) -> None:
    config = config_file(tmp_path / "c.toml", REAL_API, db_url)
    assert invoke(["--config", str(config), "db", "upgrade"]).exit_code == 0
    before = tables(db_url)
    result = invoke(["--config", str(config), "db", *args])
    assert result.exit_code == 2, result.output
    assert f"there is no revision 'garbage' to {args[0]} to" in result.output
    assert (f"the known revisions are base (no schema), 0001, 0002, 0003, 0004, 0005, 0006, "
            f"0007, {db.SCHEMA_HEAD} and head (= {db.SCHEMA_HEAD})") in result.output
    assert tables(db_url) == before


@pytest.mark.parametrize("revision", [db.SCHEMA_HEAD, "head"])
def test_downgrade_to_where_the_database_is_does_nothing(
    tmp_path: Path, db_url: str, revision: str
) -> None:
    config = config_file(tmp_path / "c.toml", REAL_API, db_url)
    assert invoke(["--config", str(config), "db", "upgrade"]).exit_code == 0
    before = tables(db_url)
    result = invoke(["--config", str(config), "db", "downgrade", revision])  # no terminal
    assert result.exit_code == 0, result.output
    assert result.output == (f"database already at revision {db.SCHEMA_HEAD}: nothing to "
                             "downgrade\n")
    assert tables(db_url) == before


def test_upgrade_to_a_revision_the_database_is_past_says_so(tmp_path: Path, db_url: str) -> None:
    config = config_file(tmp_path / "c.toml", REAL_API, db_url)
    assert invoke(["--config", str(config), "db", "upgrade", "--revision", "0006"]).exit_code == 0
    before = tables(db_url)
    result = invoke(["--config", str(config), "db", "upgrade", "--revision", "0004"])
    assert result.exit_code == 0, result.output
    assert result.output == ("database at revision 0006, already past 0004: nothing to upgrade "
                             "(`collector db downgrade 0004` goes back)\n")
    assert tables(db_url) == before
    again = invoke(["--config", str(config), "db", "upgrade", "--revision", "0006"])
    assert again.output == "database already at revision 0006\n"
    # named the ways Alembic allows: at the head, none of these is behind the database
    assert invoke(["--config", str(config), "db", "upgrade", "--revision", "0004@head"]
                  ).output == f"database upgraded from 0006 to {db.SCHEMA_HEAD}\n"
    for at in ("head", "heads", f"{db.SCHEMA_HEAD}@head", "0004@head"):
        again = invoke(["--config", str(config), "db", "upgrade", "--revision", at])
        assert again.output == f"database already at revision {db.SCHEMA_HEAD}\n", at


def test_upgrade_of_an_empty_database_to_base_changes_nothing(tmp_path: Path,
                                                              db_url: str) -> None:
    config = config_file(tmp_path / "c.toml", REAL_API, db_url)
    result = invoke(["--config", str(config), "db", "upgrade", "--revision", "base"])
    assert result.exit_code == 0, result.output
    assert result.output == "database already at revision base\n"
    for command in (["db", "upgrade", "--revision", " "], ["db", "downgrade", "", "--yes"]):
        empty = invoke(["--config", str(config), *command])
        assert empty.exit_code == 2, empty.output
        assert "the revision is empty" in empty.output


def test_downgrade_that_keeps_the_data_needs_no_yes(tmp_path: Path, db_url: str) -> None:
    """0007's downgrade only drops indexes and replaces views: nothing is lost, so nothing is
    asked; going back further (0006 drops tables) still needs --yes."""
    config = config_file(tmp_path / "c.toml", REAL_API, db_url)
    assert invoke(["--config", str(config), "db", "upgrade", "--revision", "0007"]).exit_code == 0
    before = tables(db_url)
    result = invoke(["--config", str(config), "db", "downgrade", "0006"])
    assert result.exit_code == 0, result.output
    assert result.output == "database at revision 0006\n"
    assert tables(db_url) == before
    refused = invoke(["--config", str(config), "db", "downgrade", "0005"])
    assert refused.exit_code == 2
    assert "pass --yes" in refused.output


def test_downgrade_to_a_newer_revision_exits_2(tmp_path: Path, db_url: str) -> None:
    config = config_file(tmp_path / "c.toml", REAL_API, db_url)
    assert invoke(["--config", str(config), "db", "upgrade", "--revision", "0006"]).exit_code == 0
    result = invoke(["--config", str(config), "db", "downgrade", db.SCHEMA_HEAD, "--yes"])
    assert result.exit_code == 2, result.output
    assert f"cannot downgrade to {db.SCHEMA_HEAD}: the database is at revision 0006" in (
        result.output
    )
    assert f"`collector db upgrade --revision {db.SCHEMA_HEAD}` goes forward" in result.output
    assert invoke(["--config", str(config), "db", "current"]).output.startswith(
        "database: 0006;"
    )


def test_downgrade_of_a_read_only_database_file_names_it(shared_dir: Path) -> None:
    config = prepared(shared_dir, REAL_API, 0o777, 0o644)
    proc = run(["--config", str(config), "db", "downgrade", "base", "--yes"],
               prefix=UNPRIVILEGED, cwd=shared_dir)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    database = shared_dir / "data" / "c.db"
    assert f"the database file {database} is read-only for this user (nobody)" in proc.stderr
    assert "migration failed" not in proc.stderr
    current = invoke(["--config", str(config), "db", "current"])
    assert current.output.startswith(f"database: {db.SCHEMA_HEAD};")


# -- dates out of range: refused with a message before anything is read ----------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--since", "99999999d"], "--since 99999999d reaches back before 2000-01-01"),
        (["--since", "3000000d"], "--since 3000000d reaches back before 2000-01-01"),
        (["--since", "0001-01-01"], "--since: '0001-01-01' is before 2000-01-01 UTC"),
        (["--since", "1d", "--until", "1999-12-31"], "--until: '1999-12-31' is before"),
        (["--since", "1d", "--until", "9999-12-31"], "the last day of the calendar"),
    ],
)
def test_report_dates_out_of_range_exit_2(tmp_path: Path, args: list[str], says: str) -> None:
    config = config_file(tmp_path / "c.toml", REAL_API, f"sqlite:///{tmp_path / 'none.db'}")
    out = tmp_path / "r.html"
    result = invoke(["--config", str(config), "report", *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--since", "0001-01-01"], "--since: '0001-01-01' is before 2000-01-01 UTC"),
        (["--since", "1999-12-31T23:59:59Z"], "--since: '1999-12-31T23:59:59Z' is before"),
        (["--since", "2026-11-01", "--until", "0001-01-01"], "--until: '0001-01-01' is before"),
    ],
)
def test_backfill_dates_before_2000_exit_2(tmp_path: Path, args: list[str], says: str) -> None:
    # consumption: the source whose plan reached "year 0 is out of range" at once (the
    # others spent minutes planning two thousand years of windows first)
    database = tmp_path / "c.db"
    config = config_file(tmp_path / "c.toml", REAL_API, f"sqlite:///{database}")
    config.write_text(config.read_text().replace('["sessions"]', '["consumption"]'))
    assert invoke(["--config", str(config), "db", "upgrade"]).exit_code == 0
    result = invoke(["--config", str(config), "backfill", *args, "--dry-run"],
                    {"DEVIN_API_TOKEN": TOKEN})
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "the earliest date the collector accepts" in result.output
