"""Trust signals: per State (and region) and year, each 0-100 or "no data", with the
findings and records that made them, computed by a versioned method and stored so that
pages read them instead of recomputing."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cbm.db import Base, UTCDateTime, utcnow


class TrustRun(Base):
    """One computation of every trust signal (after a check, nightly, or on demand)."""

    __tablename__ = "trust_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    method_version: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="running", index=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The check run whose findings it read (plain integer: runs may be pruned).
    check_run_id: Mapped[int | None] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(20), default="")
    seconds: Mapped[float | None] = mapped_column(Float)
    message: Mapped[str | None] = mapped_column(Text)


class TrustScore(Base):
    """One signal (or the composite index) of one State or region in one year.

    ``score`` is None when there is no data (never 0 or 100 by default). ``items`` counts
    what was judged; ``details`` lists the findings and records that moved the score.
    For regions, ``worst`` names the member with the lowest score. ``change`` is the
    difference from the previous year's score of the same signal (None if either is None).
    """

    __tablename__ = "trust_scores"
    __table_args__ = (
        UniqueConstraint("run_id", "level", "subject", "year", "signal"),
        Index("ix_trust_scores_lookup", "run_id", "level", "year", "signal"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("trust_runs.id", ondelete="CASCADE"))
    level: Mapped[str] = mapped_column(String(10))  # state | region | osce
    subject: Mapped[str] = mapped_column(String(40))  # State code, region code, or "OSCE"
    year: Mapped[int] = mapped_column(Integer)
    signal: Mapped[str] = mapped_column(String(30))  # a signal id, or "index"
    score: Mapped[float | None] = mapped_column(Float)
    items: Mapped[int] = mapped_column(Integer, default=0)
    change: Mapped[float | None] = mapped_column(Float)
    worst: Mapped[str | None] = mapped_column(String(3))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
