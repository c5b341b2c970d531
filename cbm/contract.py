"""Data contract v1: the interchange files, their columns, keys and types, declared once.

Forms, importers, exports and the API all read these specs (see ``docs/data-contract.md``).
Maximum string lengths come from the model columns, so the database and the validation
never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy import String

from cbm import vocab
from cbm.db import Base
from cbm.models import (
    Activity,
    Ceiling,
    Holding,
    Inspection,
    Notification,
    ObservationFlight,
    Quota,
    Reduction,
)

# Field types understood by the validator.
STR, TEXT, INT, BOOL, DATE, TIMESTAMP, STATE, STATES, RECIPIENTS, VOCAB, YEAR = (
    "str",
    "text",
    "int",
    "bool",
    "date",
    "timestamp",
    "state",
    "states",
    "recipients",
    "vocab",
    "year",
)


@dataclass(frozen=True)
class Field:
    """One column of a contract file."""

    name: str
    type: str = STR
    required: bool = False
    key: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""


@dataclass(frozen=True)
class ContractFile:
    """One interchange file: its name, model, columns (export order) and natural key."""

    name: str
    model: type[Base]
    fields: tuple[Field, ...]
    title: str
    # Pairs (earlier, later) whose order is checked: the later one may not come before.
    ordered: tuple[tuple[str, str], ...] = ()
    max_lengths: dict[str, int] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        table = self.model.__table__
        for f in self.fields:
            column = table.columns[f.name]
            if isinstance(column.type, String) and column.type.length:
                self.max_lengths[f.name] = column.type.length

    @cached_property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @cached_property
    def key(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.key)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


def _figures() -> tuple[Field, ...]:
    return tuple(
        Field(n, INT)
        for n in ("troops", "battle_tanks", "acv", "artillery", "air_sorties", "airborne_troops")
    )


ACTIVITIES = ContractFile(
    name="activities",
    model=Activity,
    title="Military activities",
    fields=(
        Field("activity_id", STR, required=True, key=True),
        Field("source", VOCAB, required=True, key=True, choices=vocab.ACTIVITY_SOURCES),
        Field("state", STATE, required=True),
        Field("host_state", STATE, help="defaults to state"),
        Field("name", STR),
        Field("kind", VOCAB, required=True, choices=vocab.ACTIVITY_KINDS),
        Field("start_date", DATE, required=True),
        Field("end_date", DATE),
        *_figures(),
        Field("area", TEXT),
        Field("remarks", TEXT),
    ),
    ordered=(("start_date", "end_date"),),
)

NOTIFICATIONS = ContractFile(
    name="notifications",
    model=Notification,
    title="Notifications",
    fields=(
        Field("reference", STR, required=True, key=True),
        Field("regime", VOCAB, required=True, choices=vocab.REGIMES),
        Field("kind", VOCAB, required=True, choices=vocab.ALL_NOTIFICATION_KINDS),
        Field("sender", STATE, required=True),
        Field("recipients", RECIPIENTS),
        Field("sent_at", TIMESTAMP, required=True),
        Field("received_at", TIMESTAMP),
        Field("covers_year", YEAR),
        Field("activity_id", STR),
        Field("event_id", STR),
        Field("in_reply_to", STR),
        Field("nil_report", BOOL),
        Field("remarks", TEXT),
    ),
    ordered=(("sent_at", "received_at"),),
)

INSPECTIONS = ContractFile(
    name="inspections",
    model=Inspection,
    title="Inspections and evaluation visits",
    fields=(
        Field("inspection_id", STR, required=True, key=True),
        Field("regime", VOCAB, required=True, choices=vocab.INSPECTION_REGIMES),
        Field("kind", VOCAB, required=True, choices=vocab.ALL_INSPECTION_KINDS),
        Field("inspecting_state", STATE, required=True),
        Field("guest_states", STATES),
        Field("inspected_state", STATE, required=True),
        Field("requested_at", TIMESTAMP, required=True),
        Field("replied_at", TIMESTAMP),
        Field("reply", VOCAB, choices=vocab.INSPECTION_REPLIES),
        Field("unit", STR),
        Field("area", TEXT),
        Field("start_at", TIMESTAMP),
        Field("end_at", TIMESTAMP),
        Field("outcome", VOCAB, choices=vocab.INSPECTION_OUTCOMES),
        Field("counts_against_quota", BOOL),
        Field("team_size", INT),
        Field("report_at", TIMESTAMP),
        Field("concerns_raised", BOOL),
        Field("findings", TEXT),
    ),
    ordered=(
        ("requested_at", "replied_at"),
        ("start_at", "end_at"),
        ("requested_at", "start_at"),
    ),
)

OBSERVATION_FLIGHTS = ContractFile(
    name="observation_flights",
    model=ObservationFlight,
    title="Open Skies observation flights",
    fields=(
        Field("flight_id", STR, required=True, key=True),
        Field("observing_state", STATE, required=True),
        Field("observed_state", STATE, required=True),
        Field("notified_at", TIMESTAMP),
        Field("eta_poe", TIMESTAMP),
        Field("arrived_at", TIMESTAMP),
        Field("point_of_entry", STR),
        Field("os_airfield", STR),
        Field("mission_plan_at", TIMESTAMP),
        Field("flight_start_at", TIMESTAMP),
        Field("flight_end_at", TIMESTAMP),
        Field("departed_at", TIMESTAMP),
        Field("distance_km", INT),
        Field("max_distance_km", INT),
        Field("outcome", VOCAB, choices=vocab.FLIGHT_OUTCOMES),
        Field("curtailment_cause", TEXT),
        Field("counts_against_quota", BOOL),
        Field("report_at", TIMESTAMP),
        Field("restrictions", TEXT),
    ),
    ordered=(("flight_start_at", "flight_end_at"), ("notified_at", "eta_poe")),
)

QUOTAS = ContractFile(
    name="quotas",
    model=Quota,
    title="Quotas",
    fields=(
        Field("regime", VOCAB, required=True, key=True, choices=vocab.QUOTA_REGIMES),
        Field("state", STATE, required=True, key=True),
        Field("year", YEAR, required=True, key=True),
        Field("kind", VOCAB, required=True, key=True, choices=vocab.QUOTA_KINDS),
        Field("counterpart", STATE, key=True, help="required for active quotas, empty for passive"),
        Field("quota", INT, required=True),
    ),
)

HOLDINGS = ContractFile(
    name="holdings",
    model=Holding,
    title="Holdings",
    fields=(
        Field("state", STATE, required=True, key=True),
        Field("as_of", DATE, required=True, key=True),
        Field("category", VOCAB, required=True, key=True, choices=vocab.HOLDING_CATEGORIES),
        Field("source", VOCAB, required=True, key=True, choices=vocab.HOLDING_SOURCES),
        Field("unit", STR, key=True, help="empty for national totals"),
        Field("count", INT, required=True),
        Field("zone", STR),
    ),
)

CEILINGS = ContractFile(
    name="ceilings",
    model=Ceiling,
    title="Ceilings",
    fields=(
        Field("regime", VOCAB, required=True, key=True, choices=vocab.REGIMES),
        Field("state", STATE, required=True, key=True),
        Field("category", VOCAB, required=True, key=True, choices=vocab.HOLDING_CATEGORIES),
        Field("valid_from", DATE, required=True, key=True),
        Field("ceiling", INT, required=True),
        Field("valid_to", DATE),
        Field("basis", TEXT),
    ),
    ordered=(("valid_from", "valid_to"),),
)

REDUCTIONS = ContractFile(
    name="reductions",
    model=Reduction,
    title="Reductions and withdrawals",
    fields=(
        Field("reduction_id", STR, required=True, key=True),
        Field("state", STATE, required=True),
        Field("kind", VOCAB, required=True, choices=vocab.REDUCTION_KINDS),
        Field("category", VOCAB, required=True, choices=vocab.HOLDING_CATEGORIES),
        Field("quantity", INT, required=True),
        Field("announced_at", DATE),
        Field("deadline", DATE),
        Field("reduced", INT),
        Field("completed_at", DATE),
        Field("method", VOCAB, choices=vocab.REDUCTION_METHODS),
        Field("region_from", STR),
        Field("verified_by", STR),
        Field("remarks", TEXT),
    ),
    ordered=(("announced_at", "deadline"), ("announced_at", "completed_at")),
)

FILES: dict[str, ContractFile] = {
    spec.name: spec
    for spec in (
        ACTIVITIES,
        NOTIFICATIONS,
        INSPECTIONS,
        OBSERVATION_FLIGHTS,
        QUOTAS,
        HOLDINGS,
        CEILINGS,
        REDUCTIONS,
    )
}
# The order in which files must be loaded so that references resolve.
LOAD_ORDER = (
    "activities",
    "inspections",
    "observation_flights",
    "notifications",
    "quotas",
    "holdings",
    "ceilings",
    "reductions",
)


def get(name: str) -> ContractFile:
    """The spec of a contract file by name; a clear error for an unknown one."""
    try:
        return FILES[name]
    except KeyError:
        raise KeyError(
            f"unknown record kind {name!r}; expected one of: {', '.join(FILES)}"
        ) from None
