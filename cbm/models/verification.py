"""Verification: VD inspections and evaluation visits, CFE inspections, Open Skies flights,
quotas."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from cbm.db import Base, UTCDateTime
from cbm.models.mixins import ProvenanceMixin


class Inspection(ProvenanceMixin, Base):
    __tablename__ = "inspections"
    __table_args__ = (CheckConstraint("team_size >= 0", name="team_size_non_negative"),)

    inspection_id: Mapped[str] = mapped_column(String(100), unique=True)
    regime: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(32), index=True)
    inspecting_state: Mapped[str] = mapped_column(ForeignKey("states.code"), index=True)
    guest_states: Mapped[str | None] = mapped_column(String(400))
    inspected_state: Mapped[str] = mapped_column(ForeignKey("states.code"), index=True)
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    replied_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    reply: Mapped[str | None] = mapped_column(String(20))
    unit: Mapped[str | None] = mapped_column(String(200))
    area: Mapped[str | None] = mapped_column(Text)
    start_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    end_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(20))
    counts_against_quota: Mapped[bool | None] = mapped_column(Boolean)
    team_size: Mapped[int | None] = mapped_column(Integer)
    report_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    concerns_raised: Mapped[bool | None] = mapped_column(Boolean)
    findings: Mapped[str | None] = mapped_column(Text)


class ObservationFlight(ProvenanceMixin, Base):
    __tablename__ = "observation_flights"
    __table_args__ = (
        CheckConstraint("distance_km >= 0", name="distance_km_non_negative"),
        CheckConstraint("max_distance_km >= 0", name="max_distance_km_non_negative"),
    )

    flight_id: Mapped[str] = mapped_column(String(100), unique=True)
    observing_state: Mapped[str] = mapped_column(ForeignKey("states.code"), index=True)
    observed_state: Mapped[str] = mapped_column(ForeignKey("states.code"), index=True)
    notified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    eta_poe: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    arrived_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    point_of_entry: Mapped[str | None] = mapped_column(String(120))
    os_airfield: Mapped[str | None] = mapped_column(String(120))
    mission_plan_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    flight_start_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    flight_end_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    departed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    distance_km: Mapped[int | None] = mapped_column(Integer)
    max_distance_km: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str | None] = mapped_column(String(20))
    curtailment_cause: Mapped[str | None] = mapped_column(Text)
    counts_against_quota: Mapped[bool | None] = mapped_column(Boolean)
    report_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    restrictions: Mapped[str | None] = mapped_column(Text)


class Quota(ProvenanceMixin, Base):
    """A passive or active quota; ``counterpart`` is '' for passive quotas (keys are never NULL)."""

    __tablename__ = "quotas"
    __table_args__ = (
        UniqueConstraint("regime", "state", "year", "kind", "counterpart"),
        CheckConstraint("quota >= 0", name="quota_non_negative"),
    )

    regime: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(ForeignKey("states.code"), index=True)
    year: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(10))
    counterpart: Mapped[str] = mapped_column(String(3), default="")
    quota: Mapped[int] = mapped_column(Integer)
