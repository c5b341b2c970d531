"""Controlled vocabularies of the data contract (v1), declared once.

Forms, importers, the API and the documentation all read these tuples; an unknown value is
a rejected row, never a silent default.
"""

from __future__ import annotations

REGIMES = ("VD", "OST", "CFE", "GEMI")
PARTICIPATION_STATUSES = ("party", "suspended", "withdrawn")
SOURCE_STATUSES = ("primary", "secondary", "unverified")
PARAMETER_STATUSES = ("verified", "commonly_cited")

ACTIVITY_SOURCES = (
    "notification",
    "calendar",
    "inspection",
    "evaluation",
    "observation_flight",
    "open_source",
    "analyst",
)
ACTIVITY_KINDS = ("exercise", "transfer", "concentration", "alert", "amphibious", "airborne", "air")

NOTIFICATION_KINDS: dict[str, tuple[str, ...]] = {
    "VD": (
        "annual_exchange",
        "defence_planning",
        "annual_calendar",
        "forecast_two_year",
        "prior_notification",
        "observation_invitation",
        "unusual_activity_request",
        "unusual_activity_reply",
        "inspection_request",
        "inspection_reply",
        "evaluation_request",
        "evaluation_reply",
        "inspection_report",
        "evaluation_report",
        "quota_filled",
    ),
    "OST": (
        "flight_notification",
        "flight_acknowledgement",
        "mission_report",
        "quota_transfer",
        "planning_notification",
    ),
    "CFE": (
        "annual_exchange",
        "holdings_change",
        "reduction_notification",
        "inspection_notification",
    ),
    "GEMI": ("annual_exchange",),
}
ALL_NOTIFICATION_KINDS = tuple(sorted({k for kinds in NOTIFICATION_KINDS.values() for k in kinds}))

INSPECTION_KINDS: dict[str, tuple[str, ...]] = {
    "VD": ("vd_inspection", "vd_evaluation"),
    "CFE": ("cfe_declared_site", "cfe_challenge", "cfe_reduction", "cfe_certification"),
}
ALL_INSPECTION_KINDS = tuple(k for kinds in INSPECTION_KINDS.values() for k in kinds)
INSPECTION_REGIMES = tuple(INSPECTION_KINDS)
INSPECTION_REPLIES = ("accepted", "refused", "force_majeure", "no_reply")
INSPECTION_OUTCOMES = ("completed", "refused", "cancelled", "not_carried_out")

FLIGHT_OUTCOMES = ("completed", "prohibited", "declined", "curtailed", "cancelled")

QUOTA_REGIMES = ("VD", "OST", "CFE")
QUOTA_KINDS = ("passive", "active")

HOLDING_CATEGORIES = (
    "personnel",
    "battle_tanks",
    "acv",
    "artillery",
    "combat_aircraft",
    "attack_helicopters",
)
HOLDING_SOURCES = ("vd_aemi", "cfe", "gemi", "other")

REDUCTION_KINDS = ("treaty", "unilateral", "withdrawal")
REDUCTION_METHODS = (
    "destruction",
    "conversion",
    "static_display",
    "ground_target",
    "withdrawal",
    "other",
)

ROLES = ("viewer", "analyst", "admin")
