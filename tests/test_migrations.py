"""Migrations: the models and the migrations must describe the same schema on both backends."""

from __future__ import annotations

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from cbm.db import Base, make_engine
from cbm.migrate import downgrade, head_revision, migration_status, upgrade


def test_models_and_migrations_do_not_drift(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models differ from migrations; write a migration: {diff}"


def test_migrated_database_is_at_head(engine: Engine) -> None:
    status = migration_status(engine)
    assert status.current == head_revision() and status.is_current


def test_downgrade_to_base_and_upgrade_again(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'cycle.sqlite3'}")
    upgrade(engine)
    assert "activities" in inspect(engine).get_table_names()
    downgrade(engine, "base")
    assert migration_status(engine).current is None
    leftover = set(inspect(engine).get_table_names()) - {"alembic_version"}
    assert leftover == set()
    upgrade(engine)
    assert migration_status(engine).is_current
    engine.dispose()


@pytest.mark.postgres
def test_downgrade_and_upgrade_on_postgresql(pg_server_url: str) -> None:
    # A separate database, so the shared test schema stays intact.
    # Named per run, so that parallel test workers never share it.
    name = f"cbm_cycle_{uuid.uuid4().hex[:10]}"
    admin = make_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    from sqlalchemy.engine import make_url

    url = make_url(pg_server_url).set(database=name)
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        upgrade(engine)
        downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade(engine)
        assert migration_status(engine).is_current
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
