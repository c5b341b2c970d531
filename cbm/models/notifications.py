"""Messages exchanged under the regimes (annual exchanges, notifications, requests, replies)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cbm.db import Base, UTCDateTime
from cbm.models.mixins import ProvenanceMixin


class Notification(ProvenanceMixin, Base):
    __tablename__ = "notifications"

    reference: Mapped[str] = mapped_column(String(100), unique=True)
    regime: Mapped[str] = mapped_column(String(8), index=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    sender: Mapped[str] = mapped_column(ForeignKey("states.code"), index=True)
    # "ALL" or space-separated alpha-3 codes, as in the contract.
    recipients: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    received_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    covers_year: Mapped[int | None] = mapped_column(Integer)
    activity_id: Mapped[str | None] = mapped_column(String(100), index=True)
    event_id: Mapped[str | None] = mapped_column(String(100), index=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(100), index=True)
    nil_report: Mapped[bool | None] = mapped_column(Boolean)
    remarks: Mapped[str | None] = mapped_column(Text)
