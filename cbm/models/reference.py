"""Reference data: States, their aliases and regions, regime participation, rule parameters.

Shipped as files in ``cbm/reference/data`` and loaded idempotently; correctable without code.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cbm.db import Base


class Region(Base):
    __tablename__ = "regions"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")

    states: Mapped[list[State]] = relationship(back_populates="region", order_by="State.code")


class State(Base):
    """An OSCE participating State, keyed by its ISO 3166-1 alpha-3 code."""

    __tablename__ = "states"

    code: Mapped[str] = mapped_column(String(3), primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    tags: Mapped[str] = mapped_column(String(200), default="")
    osce_since: Mapped[dt.date | None] = mapped_column(Date)
    note: Mapped[str] = mapped_column(Text, default="")

    region: Mapped[Region] = relationship(back_populates="states")


class StateAlias(Base):
    """A name or code accepted on import for a State; matched case-insensitively."""

    __tablename__ = "state_aliases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alias: Mapped[str] = mapped_column(String(120))
    alias_key: Mapped[str] = mapped_column(String(120), unique=True)
    state_code: Mapped[str] = mapped_column(ForeignKey("states.code", ondelete="CASCADE"))
    note: Mapped[str] = mapped_column(Text, default="")


class RegimeParticipation(Base):
    """An interval during which a State is a party to, suspended from or withdrawn from a regime.

    ``valid_to`` is inclusive; empty means open-ended.
    """

    __tablename__ = "regime_participation"
    __table_args__ = (UniqueConstraint("state_code", "regime", "valid_from"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state_code: Mapped[str] = mapped_column(ForeignKey("states.code"), index=True)
    regime: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_to: Mapped[dt.date | None] = mapped_column(Date)
    group: Mapped[str] = mapped_column(String(40), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(Text, default="")
    source_status: Mapped[str] = mapped_column(String(16), default="unverified")


class RuleParameter(Base):
    """One number of one regime edition, with the paragraph it comes from and its status."""

    __tablename__ = "rule_parameters"
    __table_args__ = (UniqueConstraint("regime", "edition", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    regime: Mapped[str] = mapped_column(String(8))
    edition: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(120))
    value: Mapped[str] = mapped_column(String(60))
    unit: Mapped[str] = mapped_column(String(40), default="")
    paragraph: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")


class OSQuotaHolder(Base):
    """An Open Skies passive-quota holder of Annex A (a State or a group such as BY-RU)."""

    __tablename__ = "os_quota_holders"

    holder: Mapped[str] = mapped_column(String(20), primary_key=True)
    members: Mapped[str] = mapped_column(String(200))
    passive_quota: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")
    citation: Mapped[str] = mapped_column(String(200), default="")
    source_status: Mapped[str] = mapped_column(String(16), default="primary")


class OSAirfield(Base):
    """An Open Skies airfield and the maximum flight distance from it (Annex A Sec. III)."""

    __tablename__ = "os_airfields"
    __table_args__ = (UniqueConstraint("holder", "airfield"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str] = mapped_column(ForeignKey("os_quota_holders.holder"))
    airfield: Mapped[str] = mapped_column(String(120))
    max_distance_km: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")
    citation: Mapped[str] = mapped_column(String(200), default="")
    source_status: Mapped[str] = mapped_column(String(16), default="primary")
