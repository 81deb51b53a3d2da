"""Engines: the one place that knows how to open a database, check its schema and whether
this process may write it (`collector.migrate` upgrades it).

SQLite runs in WAL mode with a busy timeout and takes its write lock when a transaction
begins (``BEGIN IMMEDIATE``), so two processes writing at once wait for each other instead of
failing with "database is locked". PostgreSQL pings pooled connections before use, so a
restarted server costs one failed run, not a restart of the collector.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from collector.errors import ConfigError, SchemaOutOfDateError, StorageError

#: The newest migration. Commands check the database against it without importing Alembic
#: (which costs a third of a second at every start); a test keeps it equal to Alembic's head.
SCHEMA_HEAD = "0008"


_URL_KEY = "[database].url (or $COLLECTOR_DATABASE_URL)"
_URL_FORMS = (
    "sqlite:///relative/file.db, sqlite:////absolute/file.db or "
    "postgresql+psycopg://user@host/dbname"
)


def create_engine_for(url: str, *, busy_timeout: float = 30.0, **kwargs: Any) -> Engine:
    """An engine for `url`, tuned for the collector's access pattern.

    A URL that cannot work (malformed, or a SQLite file in a missing directory) raises
    `ConfigError` here, before anything connects, so every command says the same thing.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigError(f"{_URL_KEY} is not a database URL; write {_URL_FORMS}") from None
    backend = parsed.get_backend_name()
    shown = parsed.render_as_string(hide_password=True)
    try:
        if backend == "sqlite":
            _require_sqlite_directory(parsed.database)
            engine = create_engine(
                parsed,
                connect_args={"timeout": busy_timeout, "check_same_thread": False},
                **kwargs,
            )
            _tune_sqlite(engine, busy_timeout)
            return engine
        if backend == "postgresql":
            if parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg")
            return create_engine(parsed, pool_pre_ping=True, **kwargs)
    except ArgumentError as exc:
        # sqlite://x.db (a host where the path belongs), a driver that is not installed...
        reason = " ".join(str(exc).split("\n")[0].split())
        raise ConfigError(
            f"{_URL_KEY} {shown!r} cannot be used ({reason}); write {_URL_FORMS}"
        ) from None
    except ImportError as exc:
        # SQLAlchemy imports the driver's module when the engine is created: psycopg is
        # left out by a plain `pip install .`, and other drivers are not installed at all.
        raise ConfigError(_missing_driver(parsed.drivername, shown, exc)) from None
    raise ConfigError(
        f"[database].url uses {backend!r}; the collector supports sqlite and postgresql"
    )


#: How to install psycopg, the PostgreSQL driver: pyproject.toml's `postgres` extra.
_INSTALL_PSYCOPG = (
    "pip install '.[postgres]' in the collector's checkout (or pip install 'psycopg[binary]')"
)


def _missing_driver(drivername: str, shown: str, exc: ImportError) -> str:
    """What to say when the module of `drivername` cannot be imported."""
    if drivername == "postgresql+psycopg":
        return (
            f"{_URL_KEY} {shown!r} needs the PostgreSQL driver psycopg, which is not "
            f"installed: install the collector with its postgres extra, {_INSTALL_PSYCOPG}"
        )
    module = exc.name or drivername
    if drivername.startswith("postgresql+"):
        return (
            f"{_URL_KEY} {shown!r} needs the Python module {module}, which is not installed: "
            "write postgresql+psycopg://user@host/dbname (the driver the collector uses) and "
            f"install it, {_INSTALL_PSYCOPG}"
        )
    return f"{_URL_KEY} {shown!r} needs the Python module {module}, which is not installed"


def _sqlite_file(database: str | None) -> Path | None:
    """The file of a SQLite database, or None for an in-memory or URI-named one."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _require_sqlite_directory(database: str | None) -> None:
    path = _sqlite_file(database)
    if path is None:
        return
    directory = path.absolute().parent
    if not directory.is_dir():
        problem = "is not a directory" if directory.exists() else "does not exist"
        raise ConfigError(
            f"the database file {path} cannot be opened: its directory {directory} {problem}. "
            f"Create the directory, or point {_URL_KEY} elsewhere"
        )


def _tune_sqlite(engine: Engine, busy_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see "begin").
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front, so two of them queue on the busy timeout
        # instead of failing on a lock upgrade; readers never wait for writers (WAL).
        reading = conn.get_execution_options().get(_READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")


_READ_ONLY = "collector_read_only"


def reading(engine: Engine) -> Connection:
    """A connection for reads only: on SQLite it never waits for a writer's lock."""
    return engine.connect().execution_options(**{_READ_ONLY: True})


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for a database without the schema."""
    try:
        with reading(engine) as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read the database: {describe_error(exc)}") from None


def require_current_schema(engine: Engine, *, writable: bool = True) -> None:
    """Raise `SchemaOutOfDateError` unless the database is at the newest migration, and
    (with `writable`, for every command that fetches) `ConfigError` unless this process may
    write to it: a read-only database is found before anything is fetched, not after."""
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and not Path(database).exists():
        raise SchemaOutOfDateError(
            f"the database file {database} does not exist: run `collector db upgrade` first"
        )
    if writable and engine.dialect.name == "sqlite":
        require_writable(engine)
    current = current_revision(engine)
    head = SCHEMA_HEAD
    if current != head:
        state = "has no collector schema" if current is None else f"is at revision {current}"
        raise SchemaOutOfDateError(
            f"the database {engine.url.render_as_string(hide_password=True)} {state}, "
            f"this collector needs {head}: run `collector db upgrade` first"
        )
    if writable and engine.dialect.name != "sqlite":
        require_writable(engine)


#: Tables every fetching command writes, and the privileges it needs on them.
_WRITTEN_TABLES = ("metric_windows", "metric_window_origins", "metric_window_sizes",
                   "pr_windows", "search_windows", "active_users_daily", "active_users_weekly",
                   "active_users_monthly", "acu_consumption_days", "organizations",
                   "collection_ledger", "collector_settings")
_WRITE_PRIVILEGES = ("INSERT", "UPDATE", "DELETE")


def require_writable(engine: Engine) -> None:
    """Raise `ConfigError` naming the file or the tables this process may not write.

    SQLite: the file must be writable, and so must its directory (SQLite creates its -wal
    and -shm files there). PostgreSQL: the session must not be read-only (a standby) and
    the user needs INSERT, UPDATE and DELETE on the collector's tables.
    """
    if engine.dialect.name == "sqlite":
        path = _sqlite_file(engine.url.database)
        if path is not None and path.exists():
            _require_writable_file(path)
        return
    shown = engine.url.render_as_string(hide_password=True)
    lacking: dict[str, list[str]] = {}
    try:
        with reading(engine) as conn:
            user = conn.execute(text("SELECT current_user")).scalar()
            read_only = conn.execute(text("SELECT current_setting('transaction_read_only')"))
            if read_only.scalar() == "on":
                raise ConfigError(
                    f"the database {shown} accepts only reads (a standby, or "
                    "default_transaction_read_only is on): nothing can be stored. Point "
                    f"{_URL_KEY} at the primary server"
                )
            for table in _WRITTEN_TABLES:
                exists = conn.execute(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": table})
                if not exists.scalar():
                    continue
                missing = [
                    privilege
                    for privilege in _WRITE_PRIVILEGES
                    if not conn.execute(
                        text("SELECT has_table_privilege(:t, :p)"), {"t": table, "p": privilege}
                    ).scalar()
                ]
                if missing:
                    lacking.setdefault(", ".join(missing), []).append(table)
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read the database: {describe_error(exc)}") from None
    if lacking:
        what = "; ".join(f"{p} on {', '.join(t)}" for p, t in lacking.items())
        raise ConfigError(
            f"the database user {user} may not write to {shown}: it lacks {what}. "
            "Grant these privileges, or connect as the user that owns the tables"
        )


def _require_writable_file(path: Path) -> None:
    try:
        with path.open("r+b"):  # opened for writing, nothing written
            pass
    except PermissionError:
        raise ConfigError(
            f"the database file {path} is read-only for this user ({_user()}): nothing can be "
            "stored. Make it writable (chmod/chown), or run the collector as its owner"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"the database file {path} cannot be opened for writing: {exc.strerror}"
        ) from None
    directory = path.absolute().parent
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(
            f"the directory {directory} of the database file {path} is read-only for this "
            f"user ({_user()}): SQLite creates its journal files ({path.name}-wal, "
            f"{path.name}-shm) there. Make the directory writable, or move the database"
        )


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError, AttributeError):
        return "the current user"


def describe_error(exc: BaseException) -> str:
    """A one-line description of a database error for logs and reports."""
    text = str(getattr(exc, "orig", None) or exc)
    return " ".join(text.split())[:300]
