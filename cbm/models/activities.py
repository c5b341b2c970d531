"""Military activities: one row per activity and per source of its figures."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from cbm.db import Base
from cbm.models.mixins import ProvenanceMixin

ACTIVITY_FIGURES = ("troops", "battle_tanks", "acv", "artillery", "air_sorties", "airborne_troops")


class Activity(ProvenanceMixin, Base):
    __tablename__ = "activities"
    __table_args__ = (
        UniqueConstraint("activity_id", "source"),
        # A State's (or a region's) activities in a date range: the region dashboard's
        # timeline; it serves lookups by State alone too (migration 0006).
        Index("ix_activities_state_start_date", "state", "start_date"),
        *(CheckConstraint(f"{c} >= 0", name=f"{c}_non_negative") for c in ACTIVITY_FIGURES),
    )

    activity_id: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(ForeignKey("states.code"))
    host_state: Mapped[str] = mapped_column(ForeignKey("states.code"))
    name: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    start_date: Mapped[dt.date] = mapped_column(Date, index=True)
    end_date: Mapped[dt.date | None] = mapped_column(Date)
    troops: Mapped[int | None] = mapped_column(Integer)
    battle_tanks: Mapped[int | None] = mapped_column(Integer)
    acv: Mapped[int | None] = mapped_column(Integer)
    artillery: Mapped[int | None] = mapped_column(Integer)
    air_sorties: Mapped[int | None] = mapped_column(Integer)
    airborne_troops: Mapped[int | None] = mapped_column(Integer)
    area: Mapped[str | None] = mapped_column(Text)
    remarks: Mapped[str | None] = mapped_column(Text)
