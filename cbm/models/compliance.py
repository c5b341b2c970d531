"""Compliance: check runs, the findings they keep up to date, and each finding's history."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cbm.db import Base, UTCDateTime, utcnow


class Finding(Base):
    """One finding. ``finding_key`` (rule plus subject) is stable, so re-checks update it."""

    __tablename__ = "findings"
    # The newest findings first (the dashboards' latest findings; migration 0006).
    __table_args__ = (Index("ix_findings_first_detected_at_id", "first_detected_at", "id"),)

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
    # Added by migration 0004 (plain integer: findings outlive pruned check runs).
    last_check_run_id: Mapped[int | None] = mapped_column(Integer)


class CheckRun(Base):
    """One evaluation of the rule catalogue (on demand, after an import, or nightly)."""

    __tablename__ = "check_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trigger: Mapped[str] = mapped_column(String(20))  # cli | web | after-import | nightly | api
    status: Mapped[str] = mapped_column(String(20), default="running", index=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # The scope asked for: {"regimes": [...], "states": [...], "from": ..., "to": ...}.
    scope: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    as_of: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    rules_evaluated: Mapped[int] = mapped_column(Integer, default=0)
    findings_detected: Mapped[int] = mapped_column(Integer, default=0)
    findings_new: Mapped[int] = mapped_column(Integer, default=0)
    findings_updated: Mapped[int] = mapped_column(Integer, default=0)
    findings_reopened: Mapped[int] = mapped_column(Integer, default=0)
    findings_resolved: Mapped[int] = mapped_column(Integer, default=0)
    # Per rule: the periods an absence rule evaluated, and the ones it skipped for want of data.
    coverage: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    seconds: Mapped[float | None] = mapped_column()
    message: Mapped[str | None] = mapped_column(Text)


class FindingEvent(Base):
    """One step in a finding's life: detected, changed, resolved, reopened, acknowledged ..."""

    __tablename__ = "finding_events"
    __table_args__ = (Index("ix_finding_events_finding_id_at", "finding_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    finding_id: Mapped[int] = mapped_column(ForeignKey("findings.id", ondelete="CASCADE"))
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    action: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(16))  # the status after this event
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    check_run_id: Mapped[int | None] = mapped_column(Integer, index=True)
    comment: Mapped[str | None] = mapped_column(Text)
    changes: Mapped[dict[str, Any] | None] = mapped_column(JSON)
