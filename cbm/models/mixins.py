"""Columns shared by every contract table: a surrogate id and the row's provenance."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer
from sqlalchemy.orm import Mapped, mapped_column

from cbm.db import UTCDateTime, utcnow


class ProvenanceMixin:
    """Who or what created the row and who or what last set it.

    Exactly one of ``set_by_run_id`` / ``set_by_user_id`` is filled for rows written through
    the services (an import run or an analyst); both are empty for system writes such as
    the demo loader run without a user.
    """

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("import_runs.id", ondelete="SET NULL"), index=True
    )
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    set_by_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("import_runs.id", ondelete="SET NULL"), index=True
    )
    set_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
