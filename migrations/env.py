"""Alembic environment for cbm.

Imports every model so autogenerate sees the whole schema, compares types and server
defaults, drops empty autogenerate revisions, and uses batch mode only on SQLite. The URL
comes from cbm.config (CBM_DATABASE_URL), the same setting the app uses, unless a caller
passes an engine in ``config.attributes["engine"]``.
"""

from __future__ import annotations

from alembic import context

import cbm.models  # noqa: F401  (registers every table on Base.metadata)
from cbm.db import Base, ensure_sqlite_dir, make_engine

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from cbm.config import load_settings

    return load_settings().database_url


def _skip_empty(context_, revision, directives) -> None:
    if config.cmd_opts is not None and getattr(config.cmd_opts, "autogenerate", False):
        script = directives[0]
        if script.upgrade_ops.is_empty():
            directives[:] = []
            print("No changes in the schema: no revision written.")


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
        render_as_batch=connection.dialect.name == "sqlite",
        process_revision_directives=_skip_empty,
    )


def run_migrations_offline() -> None:
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        compare_type=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    owned = engine is None
    if owned:
        url = _url()
        ensure_sqlite_dir(url)
        engine = make_engine(url)
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
    finally:
        if owned:
            engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
