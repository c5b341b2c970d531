"""Job runs: every scheduled or on-demand job writes one row (and holds a lock while running)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cbm.db import Base, UTCDateTime, utcnow


class JobRun(Base):
    __tablename__ = "job_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(String(120), index=True)
    status: Mapped[str] = mapped_column(String(20), default="running")
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    host: Mapped[str] = mapped_column(String(200), default="")
    pid: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str | None] = mapped_column(Text)


class SchedulerHeartbeat(Base):
    """A running scheduler process says it is alive; the UI warns when this goes stale."""

    __tablename__ = "scheduler_heartbeats"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scheduler_id: Mapped[str] = mapped_column(String(200), unique=True)
    host: Mapped[str] = mapped_column(String(200), default="")
    pid: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
