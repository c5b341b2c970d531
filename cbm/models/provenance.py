"""Provenance: import runs, the rows they rejected, and the append-only audit log."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cbm.db import Base, UTCDateTime, utcnow


class ImportRun(Base):
    """One import (a file, a feed, the demo loader): its source, counts and outcome."""

    __tablename__ = "import_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_name: Mapped[str] = mapped_column(String(200), default="")
    location: Mapped[str] = mapped_column(Text, default="")
    importer: Mapped[str] = mapped_column(String(60))
    importer_version: Mapped[str] = mapped_column(String(40), default="")
    kind: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), default="running", index=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    checksum: Mapped[str | None] = mapped_column(String(64))
    all_or_nothing: Mapped[bool] = mapped_column(Boolean, default=False)
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    rows_inserted: Mapped[int] = mapped_column(Integer, default=0)
    rows_updated: Mapped[int] = mapped_column(Integer, default=0)
    rows_unchanged: Mapped[int] = mapped_column(Integer, default=0)
    rows_rejected: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # Added after the first release. Plain integers, not foreign keys: on SQLite adding a
    # foreign key means rebuilding this table, which the audit log (append-only) refers to.
    # The services keep them consistent (sources are disabled, not deleted, once used).
    source_id: Mapped[int | None] = mapped_column(Integer, index=True)
    # Liveness of a running import: a run whose heartbeat is stale was killed.
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    reverted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    reverted_by_id: Mapped[int | None] = mapped_column(Integer)


class ImportRejection(Base):
    """A row an import refused: where it was, which column, the value and why."""

    __tablename__ = "import_rejections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(
        ForeignKey("import_runs.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str | None] = mapped_column(String(40))
    row_number: Mapped[int | None] = mapped_column(Integer)
    column: Mapped[str | None] = mapped_column(String(100))
    value: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)


class AuditEvent(Base):
    """An append-only record of one change to one row, with its actor and before/after values.

    ``changes`` maps each changed field to ``[before, after]`` (JSON-ready values). On
    PostgreSQL and SQLite a trigger refuses UPDATE and DELETE on this table.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        # A record's history page and the audit-log filters look events up by these.
        Index("ix_audit_events_entity", "entity_type", "entity_key"),
        Index("ix_audit_events_user_id", "user_id"),
        Index("ix_audit_events_action", "action"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor_type: Mapped[str] = mapped_column(String(16))
    # No ON DELETE actions here: the log is append-only, so users and runs it names stay.
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("import_runs.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    entity_type: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[int | None] = mapped_column(Integer)
    entity_key: Mapped[str] = mapped_column(String(400))
    changes: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)
