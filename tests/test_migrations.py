"""The schema comes from migrations only, and they agree with `collector.schema` (both backends)."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from collector import db, migrate
from collector.errors import SchemaOutOfDateError
from collector.schema import METADATA

VIEWS = {"session_metrics", "session_metrics_by_origin", "session_metrics_by_size",
         "session_metrics_daily", "pr_metrics", "pr_metrics_daily", "search_metrics",
         "search_metrics_daily", "active_users", "acu_consumption_daily", "devin_daily",
         "session_metrics_daily_by_origin", "session_metrics_daily_by_size"}
START, END = "2026-11-20 00:00:00", "2026-11-20 01:00:00"
TABLES = {"metric_windows", "metric_window_origins", "metric_window_sizes",
          "collection_ledger", "collector_settings", "alembic_version", "pr_windows",
          "search_windows", "active_users_daily", "active_users_weekly", "active_users_monthly",
          "acu_consumption_days", "organizations", "metric_days", "metric_day_origins",
          "metric_day_sizes", "pr_days", "search_days"}


def test_schema_head_constant_is_alembics_head() -> None:
    assert migrate.head_revision() == db.SCHEMA_HEAD


def test_models_and_migrations_do_not_drift(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, METADATA)
    assert diff == []


def test_upgrade_creates_tables_and_views_and_downgrade_removes_them(db_url: str) -> None:
    engine = db.create_engine_for(db_url)
    try:
        assert db.current_revision(engine) is None
        with pytest.raises(SchemaOutOfDateError, match="collector db upgrade"):
            db.require_current_schema(engine)
        migrate.upgrade(engine)
        db.require_current_schema(engine)
        assert db.current_revision(engine) == migrate.head_revision()
        inspector = inspect(engine)
        assert set(inspector.get_table_names()) == TABLES
        assert set(inspector.get_view_names()) == VIEWS
        migrate.upgrade(engine)  # idempotent
        migrate.downgrade(engine, "base")
        inspector = inspect(engine)
        assert set(inspector.get_table_names()) <= {"alembic_version"}
        assert set(inspector.get_view_names()) == set()
        migrate.upgrade(engine)
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


def test_existing_ledger_rows_move_to_the_sessions_source(db_url: str) -> None:
    engine = db.create_engine_for(db_url)
    try:
        migrate.upgrade(engine, "0004")
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO metric_windows VALUES ('org-a', 'all', :start, :end, 3600, 2, 0, 0,"
                " 1, 1.5, :end, :body)"), {"start": START, "end": END, "body": "{}"})
            conn.execute(text(
                "INSERT INTO collection_ledger (org_id, segment, window_start, window_end,"
                " fetch_count, failure_count, settled) VALUES"
                " ('org-a', 'all', :start, :end, 1, 0, TRUE)"), {"start": START, "end": END})
        migrate.upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(text(
                "SELECT source, org_id, fetch_count FROM collection_ledger")).all() == [
                ("sessions", "org-a", 1)]
            assert conn.execute(text(
                "SELECT total_acus, settled FROM session_metrics")).one() == (3.0, True)
        migrate.downgrade(engine, "0004")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT org_id FROM collection_ledger")).all() == [
                ("org-a",)]
    finally:
        engine.dispose()
