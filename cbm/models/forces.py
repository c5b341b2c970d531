"""Forces: declared holdings, ceilings on them, and reductions and withdrawals."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cbm.db import Base
from cbm.models.mixins import ProvenanceMixin


class Holding(ProvenanceMixin, Base):
    """Declared holdings; ``unit`` is '' for national totals (keys are never NULL)."""

    __tablename__ = "holdings"
    __table_args__ = (
        UniqueConstraint("state", "as_of", "category", "source", "unit"),
        CheckConstraint("count >= 0", name="count_non_negative"),
    )

    state: Mapped[str] = mapped_column(ForeignKey("states.code"), index=True)
    as_of: Mapped[dt.date] = mapped_column(Date)
    category: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16))
    unit: Mapped[str] = mapped_column(String(200), default="")
    count: Mapped[int] = mapped_column(Integer)
    zone: Mapped[str | None] = mapped_column(String(60))


class Ceiling(ProvenanceMixin, Base):
    __tablename__ = "ceilings"
    __table_args__ = (
        UniqueConstraint("regime", "state", "category", "valid_from"),
        CheckConstraint("ceiling >= 0", name="ceiling_non_negative"),
    )

    regime: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(ForeignKey("states.code"), index=True)
    category: Mapped[str] = mapped_column(String(32))
    valid_from: Mapped[dt.date] = mapped_column(Date)
    ceiling: Mapped[int] = mapped_column(Integer)
    valid_to: Mapped[dt.date | None] = mapped_column(Date)
    basis: Mapped[str | None] = mapped_column(Text)


class Reduction(ProvenanceMixin, Base):
    __tablename__ = "reductions"
    __table_args__ = (
        CheckConstraint("quantity >= 0", name="quantity_non_negative"),
        CheckConstraint("reduced >= 0", name="reduced_non_negative"),
    )

    reduction_id: Mapped[str] = mapped_column(String(100), unique=True)
    state: Mapped[str] = mapped_column(ForeignKey("states.code"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(32))
    quantity: Mapped[int] = mapped_column(Integer)
    announced_at: Mapped[dt.date | None] = mapped_column(Date)
    deadline: Mapped[dt.date | None] = mapped_column(Date)
    reduced: Mapped[int | None] = mapped_column(Integer)
    completed_at: Mapped[dt.date | None] = mapped_column(Date)
    method: Mapped[str | None] = mapped_column(String(20))
    region_from: Mapped[str | None] = mapped_column(String(120))
    verified_by: Mapped[str | None] = mapped_column(String(100))
    remarks: Mapped[str | None] = mapped_column(Text)
