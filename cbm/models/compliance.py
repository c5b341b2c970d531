"""Compliance findings: what a rule found, about whom, with the evidence."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cbm.db import Base, UTCDateTime, utcnow


class Finding(Base):
    """One finding. ``finding_key`` (rule plus subject) is stable, so re-checks update it."""

    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    finding_key: Mapped[str] = mapped_column(String(400), unique=True)
    rule_id: Mapped[str] = mapped_column(String(40), index=True)
    regime: Mapped[str] = mapped_column(String(8), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    state: Mapped[str] = mapped_column(ForeignKey("states.code"), index=True)
    counterpart: Mapped[str | None] = mapped_column(String(3))
    subject_type: Mapped[str | None] = mapped_column(String(40))
    subject_id: Mapped[str | None] = mapped_column(String(200))
    period: Mapped[str | None] = mapped_column(String(20))
    due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    first_detected_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_detected_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    summary: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    comment: Mapped[str | None] = mapped_column(Text)
    comment_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
