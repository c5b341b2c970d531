"""Schema migrations: a thin layer over Alembic used by `cbm db …`, /healthz and the tests.

Migrations run as their own step (`cbm db upgrade`), never on import or in web workers.
"""

from __future__ import annotations

from dataclasses import dataclass

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from cbm.config import PROJECT_ROOT

MIGRATIONS_DIR = PROJECT_ROOT / "migrations"


def alembic_config(url: str, engine: Engine | None = None) -> Config:
    """An Alembic config pointing at our migrations; ``engine`` lets callers reuse a connection."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


@dataclass(frozen=True)
class MigrationStatus:
    current: str | None
    head: str

    @property
    def is_current(self) -> bool:
        return self.current == self.head


def head_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    if head is None:  # pragma: no cover - the repository always has a migration
        raise RuntimeError("no Alembic revision found in migrations/versions")
    return head


def migration_status(engine: Engine) -> MigrationStatus:
    """Where the database stands against the newest migration (raises if unreachable)."""
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return MigrationStatus(current=current, head=head_revision())


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(str(engine.url), engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    command.downgrade(alembic_config(str(engine.url), engine), revision)
