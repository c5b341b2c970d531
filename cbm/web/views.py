"""The pages of the core app. For now: the overview of what is stored."""

from __future__ import annotations

from flask import Blueprint, render_template

from cbm.queries.overview import RECORD_KINDS, YEAR_KINDS, store_overview
from cbm.web.database import db_session

bp = Blueprint("main", __name__)

#: Labels of the regime columns; a regime not listed here is shown as stored.
REGIME_LABELS: dict[str, tuple[str, str]] = {
    "VD": ("VD", "Vienna Document 2011"),
    "OST": ("OST", "Treaty on Open Skies"),
    "CFE": ("CFE", "Treaty on Conventional Armed Forces in Europe"),
    "GEMI": ("GEMI", "Global Exchange of Military Information"),
    "unilateral": ("Unilateral", "Unilateral reductions and withdrawals"),
    "other": ("Other", "Holdings declared from other sources"),
}


@bp.get("/")
def overview() -> str:
    """The first page: what the tracker holds, so an analyst knows what the figures rest on."""
    data = store_overview(db_session())
    return render_template(
        "overview.html",
        overview=data,
        kinds=RECORD_KINDS,
        year_kinds=[k for k in RECORD_KINDS if k.key in YEAR_KINDS],
        regime_labels=REGIME_LABELS,
    )
