"""Valid rows for each contract file, as dicts of strings (what a CSV importer hands over).

``make(kind, n, **overrides)`` builds row ``n`` of a file: every column of the contract, in
export order, with values that pass validation on their own (no references to other
records, every ordered pair in order). Different ``n`` give different natural keys (``n``
from 1 to 200 for quotas, whose year is 2000 + n; any ``n`` for the others). Overrides
replace values; ``drop`` removes columns.

``stored_keys`` and ``count`` read a contract table back for assertions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cbm import contract

Row = dict[str, str]


def activity(n: int = 1) -> Row:
    return {
        "activity_id": f"A-{n}",
        "source": "notification",
        "state": "DEU",
        "host_state": "POL",
        "name": f"Exercise {n}",
        "kind": "exercise",
        "start_date": "2024-03-10",
        "end_date": "2024-03-20",
        "troops": "13000",
        "battle_tanks": "300",
        "acv": "500",
        "artillery": "200",
        "air_sorties": "0",
        "airborne_troops": "3000",
        "area": "Grafenwöhr training area",
        "remarks": "",
    }


def notification(n: int = 1) -> Row:
    return {
        "reference": f"N-{n}",
        "regime": "VD",
        "kind": "prior_notification",
        "sender": "DEU",
        "recipients": "ALL",
        "sent_at": "2024-01-10T09:30:00Z",
        "received_at": "2024-01-10T11:00:00+01:00",
        "covers_year": "2024",
        "activity_id": "",
        "event_id": "",
        "in_reply_to": "",
        "nil_report": "false",
        "remarks": "",
    }


def inspection(n: int = 1) -> Row:
    return {
        "inspection_id": f"I-{n}",
        "regime": "VD",
        "kind": "vd_inspection",
        "inspecting_state": "DEU",
        "guest_states": "FRA POL",
        "inspected_state": "RUS",
        "requested_at": "2024-03-01T09:00:00Z",
        "replied_at": "2024-03-02T09:00:00Z",
        "reply": "accepted",
        "unit": "",
        "area": "Kaliningrad oblast",
        "start_at": "2024-03-04T08:00:00Z",
        "end_at": "2024-03-06T18:00:00Z",
        "outcome": "completed",
        "counts_against_quota": "true",
        "team_size": "4",
        "report_at": "2024-03-20T12:00:00Z",
        "concerns_raised": "false",
        "findings": "",
    }


def observation_flight(n: int = 1) -> Row:
    return {
        "flight_id": f"F-{n}",
        "observing_state": "DEU",
        "observed_state": "RUS",
        "notified_at": "2019-05-01T08:00:00Z",
        "eta_poe": "2019-05-04T10:00:00Z",
        "arrived_at": "2019-05-04T10:15:00Z",
        "point_of_entry": "Kubinka",
        "os_airfield": "Kubinka",
        "mission_plan_at": "2019-05-05T08:00:00Z",
        "flight_start_at": "2019-05-06T07:00:00Z",
        "flight_end_at": "2019-05-06T15:00:00Z",
        "departed_at": "2019-05-08T09:00:00Z",
        "distance_km": "5000",
        "max_distance_km": "5500",
        "outcome": "completed",
        "curtailment_cause": "",
        "counts_against_quota": "true",
        "report_at": "2019-06-01T00:00:00Z",
        "restrictions": "",
    }


def quota(n: int = 1) -> Row:
    return {
        "regime": "OST",
        "state": "DEU",
        "year": str(2000 + n),
        "kind": "passive",
        "counterpart": "",
        "quota": "12",
    }


def holding(n: int = 1) -> Row:
    return {
        "state": "DEU",
        "as_of": f"{2000 + n}-01-01",
        "category": "battle_tanks",
        "source": "vd_aemi",
        "unit": "",
        "count": "300",
        "zone": "",
    }


def ceiling(n: int = 1) -> Row:
    return {
        "regime": "CFE",
        "state": "DEU",
        "category": "battle_tanks",
        "valid_from": f"{2000 + n}-01-01",
        "ceiling": "4166",
        "valid_to": f"{2000 + n}-12-31",
        "basis": "CFE maximum level for holdings",
    }


def reduction(n: int = 1) -> Row:
    return {
        "reduction_id": f"R-{n}",
        "state": "DEU",
        "kind": "treaty",
        "category": "battle_tanks",
        "quantity": "100",
        "announced_at": "2024-01-15",
        "deadline": "2025-01-15",
        "reduced": "40",
        "completed_at": "",
        "method": "destruction",
        "region_from": "",
        "verified_by": "",
        "remarks": "",
    }


FACTORIES: dict[str, Callable[[int], Row]] = {
    "activities": activity,
    "notifications": notification,
    "inspections": inspection,
    "observation_flights": observation_flight,
    "quotas": quota,
    "holdings": holding,
    "ceilings": ceiling,
    "reductions": reduction,
}
KINDS = tuple(FACTORIES)


def make(file: str, n: int = 1, /, *, drop: Iterable[str] = (), **overrides: Any) -> dict[str, Any]:
    """Row ``n`` of contract file ``file`` with ``overrides`` applied and ``drop`` removed."""
    row: dict[str, Any] = dict(FACTORIES[file](n))
    unknown = set(overrides) - set(row)
    if unknown:
        raise KeyError(f"not a column of {file}: {', '.join(sorted(unknown))}")
    row.update(overrides)
    for name in drop:
        del row[name]
    return row


def rows(kind: str, count: int, start: int = 1) -> list[dict[str, Any]]:
    """``count`` valid rows with distinct keys."""
    return [make(kind, n) for n in range(start, start + count)]


def key_text(value: Any) -> str:
    """A stored key part in contract notation, to compare with the strings of a row."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def key_of(kind: str, row: dict[str, Any]) -> tuple[str, ...]:
    """The natural key of a (valid, canonical) factory row as strings."""
    return tuple(str(row.get(k, "")) for k in contract.get(kind).key)


def stored_keys(session: Session, kind: str) -> set[tuple[str, ...]]:
    """The natural keys stored in the table of contract file ``kind``, as strings."""
    spec = contract.get(kind)
    cols = [getattr(spec.model, k) for k in spec.key]
    return {tuple(key_text(v) for v in rec) for rec in session.execute(select(*cols)).all()}


def count(session: Session, kind_or_model: Any) -> int:
    """Number of rows in a contract table (by file name) or any model's table."""
    model = contract.get(kind_or_model).model if isinstance(kind_or_model, str) else kind_or_model
    return session.scalar(select(func.count()).select_from(model)) or 0
