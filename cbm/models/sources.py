"""Import sources: where scheduled imports read from, and what they have already read."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cbm.db import Base, UTCDateTime, utcnow


class Source(Base):
    """A configured source: a file, a drop folder or glob, or an HTTP(S) URL, on a schedule.

    ``schedule`` is empty (run on demand only), ``every 15m`` style intervals, or a
    five-field cron expression, always in UTC. ``etag``, ``last_modified`` and
    ``last_checksum`` let an unchanged feed be skipped without re-importing it.
    """

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    importer: Mapped[str] = mapped_column(String(20), default="auto")
    kind: Mapped[str | None] = mapped_column(String(40))
    location: Mapped[str] = mapped_column(Text)
    schedule: Mapped[str] = mapped_column(String(100), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    all_or_nothing: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    etag: Mapped[str | None] = mapped_column(String(400))
    last_modified: Mapped[str | None] = mapped_column(String(100))
    last_checksum: Mapped[str | None] = mapped_column(String(64))
    last_success_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


class SourceFile(Base):
    """A file of a drop folder that was imported, by path and content checksum.

    A file is imported again only when its content changes; a file already imported is
    skipped even if it is touched or copied back.
    """

    __tablename__ = "source_files"
    __table_args__ = (UniqueConstraint("source_id", "path", "checksum"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    checksum: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("import_runs.id", ondelete="SET NULL"))
    imported_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
