"""The schema comes from migrations only, and they agree with the models (both backends)."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from collector import db
from collector.errors import SchemaOutOfDateError
from collector.schema import Base

VIEWS = {"session_metrics", "session_metrics_by_origin", "session_metrics_by_size",
         "session_metrics_daily"}
TABLES = {"metric_windows", "metric_window_origins", "metric_window_sizes",
          "collection_ledger", "collector_settings", "alembic_version"}


def test_schema_head_constant_is_alembics_head() -> None:
    assert db.head_revision() == db.SCHEMA_HEAD


def test_models_and_migrations_do_not_drift(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_upgrade_creates_tables_and_views_and_downgrade_removes_them(db_url: str) -> None:
    engine = db.create_engine_for(db_url)
    try:
        assert db.current_revision(engine) is None
        with pytest.raises(SchemaOutOfDateError, match="collector db upgrade"):
            db.require_current_schema(engine)
        db.upgrade(engine)
        db.require_current_schema(engine)
        assert db.current_revision(engine) == db.head_revision()
        inspector = inspect(engine)
        assert set(inspector.get_table_names()) == TABLES
        assert set(inspector.get_view_names()) == VIEWS
        db.upgrade(engine)  # idempotent
        db.downgrade(engine, "base")
        inspector = inspect(engine)
        assert set(inspector.get_table_names()) <= {"alembic_version"}
        assert set(inspector.get_view_names()) == set()
        db.upgrade(engine)
        assert set(inspect(engine).get_view_names()) == VIEWS
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path: object) -> None:
    engine = db.create_engine_for(f"sqlite:///{tmp_path}/x.db", busy_timeout=5)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()
