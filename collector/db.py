"""Engines and migrations: the one place that knows how to open and upgrade a database.

SQLite runs in WAL mode with a busy timeout and takes its write lock when a transaction
begins (``BEGIN IMMEDIATE``), so two processes writing at once wait for each other instead of
failing with "database is locked". PostgreSQL pings pooled connections before use, so a
restarted server costs one failed run, not a restart of the collector.
"""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from collector.errors import ConfigError, SchemaOutOfDateError, StorageError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

#: The newest migration. Commands check the database against it without importing Alembic
#: (which costs a third of a second at every start); a test keeps it equal to Alembic's head.
SCHEMA_HEAD = "0002"


def create_engine_for(url: str, *, busy_timeout: float = 30.0, **kwargs: Any) -> Engine:
    """An engine for `url`, tuned for the collector's access pattern."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            "[database].url is not a database URL; write sqlite:///path/to/file.db or "
            "postgresql+psycopg://user@host/dbname"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
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
    raise ConfigError(
        f"[database].url uses {backend!r}; the collector supports sqlite and postgresql"
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


def alembic_config(engine: Engine | None = None) -> AlembicConfig:
    """Alembic's configuration, pointing at the bundled migrations."""
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    with as_file(files("collector.migrations")) as path:
        cfg.set_main_option("script_location", str(path))
    if engine is not None:
        cfg.set_main_option(
            "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
        )
    return cfg


def head_revision() -> str:
    """The newest migration, as Alembic reads it from the bundled scripts."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise StorageError("no migrations are bundled with this installation")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for a database without the schema."""
    try:
        with reading(engine) as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read the database: {describe_error(exc)}") from None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to `revision` on `engine`'s database."""
    from alembic import command

    _run(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    _run(engine, command.downgrade, revision)


def _run(engine: Engine, action: Any, revision: str) -> None:
    cfg = alembic_config(engine)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            action(cfg, revision)
    except SQLAlchemyError as exc:
        raise StorageError(f"migration failed: {describe_error(exc)}") from None


def require_current_schema(engine: Engine) -> None:
    """Raise `SchemaOutOfDateError` unless the database is at the newest migration."""
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and not Path(database).exists():
        raise SchemaOutOfDateError(
            f"the database file {database} does not exist: run `collector db upgrade` first"
        )
    current = current_revision(engine)
    head = SCHEMA_HEAD
    if current != head:
        state = "has no collector schema" if current is None else f"is at revision {current}"
        raise SchemaOutOfDateError(
            f"the database {engine.url.render_as_string(hide_password=True)} {state}, "
            f"this collector needs {head}: run `collector db upgrade` first"
        )


def describe_error(exc: BaseException) -> str:
    """A one-line description of a database error for logs and reports."""
    text = str(getattr(exc, "orig", None) or exc)
    return " ".join(text.split())[:300]
