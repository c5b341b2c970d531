"""Shared helpers of the rule correctness tests (``test_rules_vd``, ``test_rules_open_skies``,
``test_rules_cfe``); this module holds no tests itself.

Facts are stored through the real import path (:func:`upsert_records`) in the test's
rolled-back transaction, the check runs through :func:`run_check` for the rules named, and
the findings are read back from the ``findings`` table as small tuples.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from factories import make
from sqlalchemy import select
from sqlalchemy.orm import Session

from cbm.compliance.engine import CheckResult, Scope, run_check
from cbm.models import Finding
from cbm.services.records import upsert_records

UTC = dt.UTC
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
FIGURES = ("troops", "battle_tanks", "acv", "artillery", "air_sorties", "airborne_troops")


class Found(NamedTuple):
    rule: str
    state: str
    subject: str
    severity: str
    period: str
    summary: str
    counterpart: str | None
    due_at: dt.datetime | None
    evidence: dict[str, Any]

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.rule, self.state, self.subject, self.severity, self.period)


def at(text: str) -> dt.datetime:
    """An aware datetime from ISO text (``Z`` or an offset)."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def store(session: Session, kind: str, *rows: dict[str, Any]) -> None:
    """Write rows through the import service; every row must be accepted."""
    result = upsert_records(session, kind, list(rows))
    assert not result.errors, [str(e) for e in result.errors]
    session.flush()


def check(session: Session, *rule_ids: str, as_of: dt.datetime | None = None) -> list[Found]:
    """Run the rules and return their open findings, sorted by rule, subject and State."""
    run(session, *rule_ids, as_of=as_of)
    return findings(session, *rule_ids)


def run(session: Session, *rule_ids: str, as_of: dt.datetime | None = None) -> CheckResult:
    return run_check(session, Scope(rule_ids=tuple(rule_ids)), trigger="test", as_of=as_of)


def findings(session: Session, *rule_ids: str) -> list[Found]:
    query = select(Finding).where(Finding.status != "resolved")
    if rule_ids:
        query = query.where(Finding.rule_id.in_(rule_ids))
    out = [
        Found(
            f.rule_id,
            f.state,
            f.subject_id or "",
            f.severity,
            f.period or "",
            f.summary,
            f.counterpart,
            f.due_at,
            f.evidence or {},
        )
        for f in session.scalars(query)
    ]
    return sorted(out, key=lambda f: (f.rule, f.subject, f.state, f.period))


def keys(found: list[Found]) -> list[tuple[str, str, str, str, str]]:
    """(rule, state, subject, severity, period) of each finding, in order."""
    return [f.key for f in found]


@contextmanager
def scratch(session: Session) -> Iterator[None]:
    """A savepoint rolled back afterwards: one property-test example leaves nothing behind."""
    nested = session.begin_nested()
    try:
        yield
    finally:
        nested.rollback()
        session.expire_all()


# --- rows ------------------------------------------------------------------------------------


def activity(
    activity_id: str,
    state: str,
    start: str | dt.date,
    end: str | dt.date | None = None,
    *,
    source: str = "notification",
    kind: str = "exercise",
    **figures: int | None,
) -> dict[str, Any]:
    """An activity row with only the figures given (the others empty)."""
    unknown = set(figures) - set(FIGURES)
    assert not unknown, unknown
    start_day = day(start) if isinstance(start, str) else start
    end_day = start_day if end is None else (day(end) if isinstance(end, str) else end)
    return make(
        "activities",
        activity_id=activity_id,
        source=source,
        state=state,
        host_state=state,
        kind=kind,
        start_date=start_day,
        end_date=end_day,
        **{f: figures.get(f) for f in FIGURES},
    )


def note(
    reference: str,
    kind: str,
    sender: str,
    sent_at: str | dt.datetime,
    *,
    regime: str = "VD",
    **overrides: Any,
) -> dict[str, Any]:
    """A notification row; links (activity, event, reply) only where given."""
    row = make(
        "notifications",
        reference=reference,
        regime=regime,
        kind=kind,
        sender=sender,
        recipients="ALL",
        sent_at=sent_at,
        received_at=None,
        covers_year=None,
        activity_id=None,
        event_id=None,
        in_reply_to=None,
        nil_report=None,
        remarks=None,
    )
    row.update(overrides)
    return row


def inspection(
    inspection_id: str,
    inspecting: str,
    inspected: str,
    requested_at: str | dt.datetime,
    reply: str = "accepted",
    *,
    kind: str = "vd_inspection",
    regime: str = "VD",
    **overrides: Any,
) -> dict[str, Any]:
    """An inspection or evaluation visit: replied 2 h after the request, on time and done."""
    requested = at(requested_at) if isinstance(requested_at, str) else requested_at
    accepted = reply == "accepted"
    row = make(
        "inspections",
        inspection_id=inspection_id,
        regime=regime,
        kind=kind,
        inspecting_state=inspecting,
        guest_states=None,
        inspected_state=inspected,
        requested_at=requested,
        replied_at=None if reply == "no_reply" else requested + 2 * HOUR,
        reply=reply,
        unit=None,
        area=None,
        start_at=requested + 30 * HOUR if accepted else None,
        end_at=requested + 70 * HOUR if accepted else None,
        outcome="completed" if accepted else "not_carried_out",
        counts_against_quota=accepted,
        team_size=None,
        report_at=requested + 10 * DAY if accepted else None,
        concerns_raised=None,
        findings=None,
    )
    row.update(overrides)
    return row


def flight(
    flight_id: str,
    observing: str,
    observed: str,
    eta: str | dt.datetime | None,
    **overrides: Any,
) -> dict[str, Any]:
    """A compliant observation flight around its ETA at the point of entry (with no ETA, no
    times at all)."""
    if eta is None:
        times = [
            "notified_at",
            "eta_poe",
            "arrived_at",
            "mission_plan_at",
            "flight_start_at",
            "flight_end_at",
            "departed_at",
            "report_at",
        ]
        return flight(
            flight_id,
            observing,
            observed,
            "2000-01-01T00:00:00Z",
            **{**dict.fromkeys(times), **overrides},
        )
    eta_at = at(eta) if isinstance(eta, str) else eta
    row = make(
        "observation_flights",
        flight_id=flight_id,
        observing_state=observing,
        observed_state=observed,
        notified_at=eta_at - 96 * HOUR,
        eta_poe=eta_at,
        arrived_at=eta_at,
        point_of_entry=None,
        os_airfield=None,
        mission_plan_at=eta_at + 2 * HOUR,
        flight_start_at=eta_at + 26 * HOUR,
        flight_end_at=eta_at + 34 * HOUR,
        departed_at=eta_at + 50 * HOUR,
        distance_km=1000,
        max_distance_km=5000,
        outcome="completed",
        curtailment_cause=None,
        counts_against_quota=True,
        report_at=eta_at + 50 * HOUR + 3 * DAY,
        restrictions=None,
    )
    row.update(overrides)
    return row


def quota(regime: str, state: str, year: int, kind: str, value: int, counterpart: str = "") -> dict:
    return make(
        "quotas",
        regime=regime,
        state=state,
        year=year,
        kind=kind,
        counterpart=counterpart or None,
        quota=value,
    )


def holding(
    state: str,
    as_of: str | dt.date,
    count: int,
    *,
    category: str = "battle_tanks",
    source: str = "cfe",
    unit: str = "",
) -> dict[str, Any]:
    return make(
        "holdings",
        state=state,
        as_of=day(as_of) if isinstance(as_of, str) else as_of,
        category=category,
        source=source,
        unit=unit or None,
        count=count,
        zone=None,
    )


def ceiling(
    state: str,
    value: int,
    valid_from: str,
    valid_to: str | None = None,
    *,
    category: str = "battle_tanks",
) -> dict[str, Any]:
    return make(
        "ceilings",
        regime="CFE",
        state=state,
        category=category,
        valid_from=day(valid_from),
        ceiling=value,
        valid_to=day(valid_to) if valid_to else None,
        basis=None,
    )


def reduction(
    reduction_id: str,
    state: str,
    deadline: str,
    completed: str | None,
    *,
    kind: str = "treaty",
    quantity: int = 100,
) -> dict[str, Any]:
    return make(
        "reductions",
        reduction_id=reduction_id,
        state=state,
        kind=kind,
        category="battle_tanks",
        quantity=quantity,
        announced_at=day("1990-11-19"),
        deadline=day(deadline),
        reduced=quantity if completed else 0,
        completed_at=day(completed) if completed else None,
        method="destruction",
        region_from=None,
        verified_by=None,
        remarks=None,
    )


def parties(session: Session, regime: str, when: str) -> list[str]:
    """The States party to ``regime`` on day ``when``, from the reference participation data."""
    import pandas as pd

    from cbm.compliance.context import CheckContext

    return CheckContext(session, pd.Timestamp("2100-01-01")).party_states(regime, when)


def submission(
    state: str,
    regime: str,
    kind: str,
    covers_year: int,
    sent_at: str | dt.datetime,
    received_at: str | dt.datetime | None = None,
    *,
    nil_report: bool | None = None,
    reference: str | None = None,
) -> dict[str, Any]:
    """An annual submission (exchange, calendar, GEMI) of ``state`` for ``covers_year``."""
    return note(
        reference or f"{regime}-{state}-{covers_year}-{kind}",
        kind,
        state,
        sent_at,
        regime=regime,
        received_at=received_at,
        covers_year=covers_year,
        nil_report=nil_report,
    )
