"""What the dashboards read, as set-based statements.

Every function takes the session first and runs a handful of grouped statements whatever
the size of the store: the trust pages read the stored scores of the latest finished
trust run (computed after each check, see :mod:`cbm.models.trust`), and the State page
groups records by year in SQL (``GROUP BY``), so a page costs the same with a thousand or
a million activities. No statement runs per row.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select, union_all
from sqlalchemy.orm import Session

from cbm.models import (
    Activity,
    Ceiling,
    Finding,
    Holding,
    Inspection,
    Notification,
    ObservationFlight,
    OSQuotaHolder,
    Quota,
    Reduction,
    Region,
    State,
    TrustRun,
    TrustScore,
)
from cbm.queries.overview import utc_year

#: Signals in display order; the composite index first. Titles are used when the method
#: module does not give its own.
SIGNALS: tuple[str, ...] = (
    "index",
    "timeliness",
    "notification",
    "verification",
    "transparency",
    "restraint",
    "reductions",
    "participation",
)
SIGNAL_TITLES: dict[str, str] = {
    "index": "Trust index",
    "timeliness": "Timeliness",
    "notification": "Notification compliance",
    "verification": "Verification openness",
    "transparency": "Transparency beyond obligation",
    "restraint": "Restraint",
    "reductions": "Reductions and withdrawals",
    "participation": "Regime participation",
}
#: Trust runs a page may read: successful ones (as :func:`cbm.trust.store.latest_run`; a
#: running or failed run is never shown).
FINISHED = ("succeeded",)
SEVERITIES = ("breach", "late", "warning", "info", "positive")


@dataclass(frozen=True)
class Place:
    code: str
    name: str
    region: str | None = None


@dataclass(frozen=True)
class Score:
    subject: str
    year: int
    signal: str
    score: float | None
    items: int
    change: float | None
    worst: str | None
    details: dict[str, Any] | None


def count_by_year(year: Any, where: Sequence[Any], *keys: Any) -> Any:
    """``SELECT year, keys…, count(*) … GROUP BY year, keys…`` through a subquery, so the
    year expression (with its bound ``'UTC'`` on PostgreSQL) is written once."""
    inner = (
        select(year.label("year"), *(k.label(f"k{i}") for i, k in enumerate(keys)))
        .where(*where)
        .subquery()
    )
    cols = [inner.c.year, *(inner.c[f"k{i}"] for i in range(len(keys)))]
    return select(*cols, func.count()).group_by(*cols)


# --------------------------------------------------------------------------------------
# reference
# --------------------------------------------------------------------------------------


def regions(session: Session) -> list[Place]:
    rows = session.execute(select(Region.code, Region.name).order_by(Region.name))
    return [Place(code, name) for code, name in rows]


def states(session: Session) -> dict[str, Place]:
    rows = session.execute(select(State.code, State.name, State.region_code).order_by(State.code))
    return {code: Place(code, name, region) for code, name, region in rows}


# --------------------------------------------------------------------------------------
# trust scores
# --------------------------------------------------------------------------------------


def latest_run(session: Session) -> TrustRun | None:
    """The newest finished trust run (its scores are complete)."""
    return session.scalar(
        select(TrustRun).where(TrustRun.status.in_(FINISHED)).order_by(TrustRun.id.desc()).limit(1)
    )


def run_years(session: Session, run_id: int) -> list[int]:
    rows = session.scalars(
        select(TrustScore.year)
        .where(
            TrustScore.run_id == run_id,
            TrustScore.level.in_(("osce", "region")),
            TrustScore.signal == "index",
        )
        .distinct()
        .order_by(TrustScore.year)
    )
    return list(rows)


def scores(
    session: Session,
    run_id: int,
    level: str,
    *,
    year: int | None = None,
    subjects: Sequence[str] | None = None,
    signal: str | None = None,
    details: bool = False,
    details_year: int | None = None,
) -> list[Score]:
    """Stored scores of one run and level; ``details`` (JSON) only when asked for, and
    with ``details_year`` only those of that year (the others are None: not decoded)."""
    columns = [
        TrustScore.subject,
        TrustScore.year,
        TrustScore.signal,
        TrustScore.score,
        TrustScore.items,
        TrustScore.change,
        TrustScore.worst,
    ]
    if details and details_year is not None:
        columns.append(case((TrustScore.year == details_year, TrustScore.details), else_=None))
    elif details:
        columns.append(TrustScore.details)
    stmt = select(*columns).where(TrustScore.run_id == run_id, TrustScore.level == level)
    if year is not None:
        stmt = stmt.where(TrustScore.year == year)
    if subjects is not None:
        stmt = stmt.where(TrustScore.subject.in_(list(subjects)))
    if signal is not None:
        stmt = stmt.where(TrustScore.signal == signal)
    out = []
    for row in session.execute(stmt):
        out.append(
            Score(
                row[0],
                row[1],
                row[2],
                row[3],
                row[4] or 0,
                row[5],
                row[6],
                row[7] if details else None,
            )
        )
    out.sort(key=lambda s: (s.subject, s.year, s.signal))
    return out


# --------------------------------------------------------------------------------------
# findings
# --------------------------------------------------------------------------------------


def _finding_year():  # type: ignore[no-untyped-def]
    return utc_year(func.coalesce(Finding.due_at, Finding.first_detected_at))


def latest_findings(
    session: Session,
    *,
    limit: int = 10,
    states: Sequence[str] | None = None,
    year: int | None = None,
) -> list[Finding]:
    stmt = select(Finding).order_by(Finding.first_detected_at.desc(), Finding.id.desc())
    if states is not None:
        stmt = stmt.where(Finding.state.in_(list(states)))
    if year is not None:
        start = dt.datetime(year, 1, 1, tzinfo=dt.UTC)
        end = dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC)
        stmt = stmt.where(Finding.due_at >= start, Finding.due_at < end)
        stmt = stmt.order_by(None).order_by(Finding.due_at.desc(), Finding.id.desc())
    return list(session.scalars(stmt.limit(limit)))


def count_findings(session: Session, states: Sequence[str], year: int | None) -> int:
    stmt = select(func.count()).select_from(Finding).where(Finding.state.in_(list(states)))
    if year is not None:
        start = dt.datetime(year, 1, 1, tzinfo=dt.UTC)
        end = dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC)
        stmt = stmt.where(Finding.due_at >= start, Finding.due_at < end)
    return session.scalar(stmt) or 0


def findings_by_year(session: Session, state: str) -> dict[int, dict[str, int]]:
    stmt = count_by_year(_finding_year(), [Finding.state == state], Finding.severity)
    out: dict[int, dict[str, int]] = defaultdict(dict)
    for y, severity, n in session.execute(stmt):
        if y is not None:
            out[int(y)][severity] = n
    return dict(out)


def any_findings(session: Session) -> bool:
    return session.scalar(select(Finding.id).limit(1)) is not None


# --------------------------------------------------------------------------------------
# activities
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivityPoint:
    activity_id: str
    source: str
    state: str
    name: str | None
    kind: str
    start_date: dt.date
    end_date: dt.date | None
    troops: int | None


def activities_in_year(
    session: Session, members: Sequence[str], year: int, limit: int
) -> tuple[list[ActivityPoint], int]:
    """The ``limit`` largest activities (by troops) of ``members`` starting in ``year``,
    oldest first, and how many there are in all (``count(*) OVER ()``: one statement,
    one range scan of ``ix_activities_state_start_date``)."""
    start, end = dt.date(year, 1, 1), dt.date(year, 12, 31)
    where = and_(
        Activity.state.in_(list(members)),
        Activity.start_date >= start,
        Activity.start_date <= end,
    )
    troops_order = func.coalesce(Activity.troops, -1).desc()
    stmt = (
        select(
            Activity.activity_id,
            Activity.source,
            Activity.state,
            Activity.name,
            Activity.kind,
            Activity.start_date,
            Activity.end_date,
            Activity.troops,
            func.count().over().label("total"),
        )
        .where(where)
        .order_by(troops_order, Activity.start_date, Activity.activity_id)
        .limit(limit)
    )
    rows = session.execute(stmt).all()
    total = rows[0][-1] if rows else 0
    points = [ActivityPoint(*row[:-1]) for row in rows]
    points.sort(key=lambda p: (p.start_date, p.state, p.activity_id))
    return points, total


# --------------------------------------------------------------------------------------
# verification: inspections and flights received and conducted, quotas
# --------------------------------------------------------------------------------------


def _inspection_year():  # type: ignore[no-untyped-def]
    return utc_year(Inspection.requested_at)


def _flight_year():  # type: ignore[no-untyped-def]
    return utc_year(
        func.coalesce(
            ObservationFlight.flight_start_at,
            ObservationFlight.eta_poe,
            ObservationFlight.notified_at,
        )
    )


def verification_by_year(session: Session, state: str) -> dict[int, dict[str, int]]:
    """Per year: inspections and evaluation visits received / conducted, observation
    flights received / conducted (four grouped statements in one ``UNION ALL``)."""
    out: dict[int, dict[str, int]] = defaultdict(dict)
    queries = (
        ("inspections_received", _inspection_year, Inspection.inspected_state),
        ("inspections_conducted", _inspection_year, Inspection.inspecting_state),
        ("flights_received", _flight_year, ObservationFlight.observed_state),
        ("flights_conducted", _flight_year, ObservationFlight.observing_state),
    )
    parts = []
    for key, year, column in queries:
        counted = count_by_year(year(), [column == state]).subquery()
        year_col, count_col = list(counted.c)
        parts.append(select(literal(key).label("key"), year_col, count_col))
    for key, y, n in session.execute(union_all(*parts)):
        if y is not None:
            out[int(y)][key] = n
    return dict(out)


#: Inspection kinds that use a regime's passive quota (evaluation visits have their own).
QUOTA_INSPECTION_KINDS = {"VD": ("vd_inspection",), "CFE": None}


@dataclass
class QuotaRow:
    year: int
    regime: str
    kind: str  # passive | active
    counterpart: str  # '' for passive
    holder: str  # the Open Skies quota holder (a group's name for a shared quota)
    quota: int | None
    used: int

    @property
    def remaining(self) -> int | None:
        return None if self.quota is None else self.quota - self.used


def open_skies_holder(session: Session, state: str) -> OSQuotaHolder | None:
    for holder in session.scalars(select(OSQuotaHolder)):
        if state in holder.members.split():
            return holder
    return None


def quotas(session: Session, state: str) -> list[QuotaRow]:
    """Passive and active quotas per year with what was used (counted against the quota).

    Passive: VD inspections and CFE inspections received, Open Skies flights received; an
    Open Skies group (``os_quota_holders``, e.g. BY-RU) shares one passive quota, so its
    flights over any member count and its quota is the holder's. Active: Open Skies flights
    conducted over each counterpart.
    """
    holder = open_skies_holder(session, state)
    group = holder.members.split() if holder else [state]
    rows: dict[tuple[int, str, str, str], QuotaRow] = {}
    stmt = select(Quota.year, Quota.regime, Quota.kind, Quota.counterpart, Quota.quota).where(
        Quota.state == state
    )
    for year, regime, kind, counterpart, quota in session.execute(stmt):
        rows[(year, regime, kind, counterpart or "")] = QuotaRow(
            year, regime, kind, counterpart or "", "", quota, 0
        )
    # Passive inspections (VD, CFE) counted against the quota.
    counted = Inspection.counts_against_quota.is_(True)
    stmt = count_by_year(
        _inspection_year(),
        [Inspection.inspected_state == state, counted],
        Inspection.regime,
        Inspection.kind,
    )
    for year, regime, kind, n in session.execute(stmt):
        kinds = QUOTA_INSPECTION_KINDS.get(regime)
        if year is None or (kinds is not None and kind not in kinds):
            continue
        row = rows.get((int(year), regime, "passive", ""))
        if row is None:
            row = rows[(int(year), regime, "passive", "")] = QuotaRow(
                int(year), regime, "passive", "", "", None, 0
            )
        row.used += n
    # Open Skies: flights received by the quota holder (all members), conducted by State.
    fcount = ObservationFlight.counts_against_quota.is_(True)
    stmt = count_by_year(_flight_year(), [ObservationFlight.observed_state.in_(group), fcount])
    passive_used = {int(y): n for y, n in session.execute(stmt) if y is not None}
    years = {y for (y, regime, kind, _) in rows if regime == "OST"} | set(passive_used)
    for year in sorted(years):
        key = (year, "OST", "passive", "")
        row = rows.get(key)
        if row is None and holder is not None:
            row = rows[key] = QuotaRow(year, "OST", "passive", "", "", holder.passive_quota, 0)
        elif row is None:
            row = rows[key] = QuotaRow(year, "OST", "passive", "", "", None, 0)
        if holder is not None and len(group) > 1:
            row.holder = holder.holder
        row.used = passive_used.get(year, 0)
    stmt = count_by_year(
        _flight_year(),
        [ObservationFlight.observing_state == state, fcount],
        ObservationFlight.observed_state,
    )
    for year, observed, n in session.execute(stmt):
        if year is None:
            continue
        key = (int(year), "OST", "active", observed)
        row = rows.get(key)
        if row is None:
            row = rows[key] = QuotaRow(int(year), "OST", "active", observed, "", None, 0)
        row.used += n
    return sorted(
        rows.values(), key=lambda r: (r.year, r.regime, r.kind != "passive", r.counterpart)
    )


# --------------------------------------------------------------------------------------
# forces: holdings against ceilings, reductions
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HoldingRow:
    category: str
    source: str
    as_of: dt.date | None
    count: int | None
    regime: str | None
    ceiling: int | None


def holdings_and_ceilings(session: Session, state: str, year: int) -> list[HoldingRow]:
    """National totals (``unit`` empty) as of the latest date in or before ``year``, per
    category and source, beside the ceiling in force on that date (or on 31 December)."""
    end = dt.date(year, 12, 31)
    latest = (
        select(Holding.category, Holding.source, func.max(Holding.as_of).label("as_of"))
        .where(Holding.state == state, Holding.unit == "", Holding.as_of <= end)
        .group_by(Holding.category, Holding.source)
        .subquery()
    )
    stmt = (
        select(Holding.category, Holding.source, Holding.as_of, Holding.count)
        .join(
            latest,
            and_(
                Holding.category == latest.c.category,
                Holding.source == latest.c.source,
                Holding.as_of == latest.c.as_of,
            ),
        )
        .where(Holding.state == state, Holding.unit == "")
    )
    holdings = list(session.execute(stmt))
    ceilings: dict[str, tuple[str, int]] = {}
    cstmt = (
        select(Ceiling.category, Ceiling.regime, Ceiling.ceiling, Ceiling.valid_from)
        .where(
            Ceiling.state == state,
            Ceiling.valid_from <= end,
            or_(Ceiling.valid_to.is_(None), Ceiling.valid_to >= dt.date(year, 1, 1)),
        )
        .order_by(Ceiling.valid_from)
    )
    for category, regime, ceiling, _ in session.execute(cstmt):
        ceilings[category] = (regime, ceiling)  # the latest in force wins
    out = []
    seen = set()
    for category, source, as_of, count in sorted(holdings, key=lambda r: (r[0], r[1])):
        regime, ceiling = ceilings.get(category, (None, None))
        out.append(HoldingRow(category, source, as_of, count, regime, ceiling))
        seen.add(category)
    for category, (regime, ceiling) in sorted(ceilings.items()):
        if category not in seen:
            out.append(HoldingRow(category, "", None, None, regime, ceiling))
    return out


def reductions(session: Session, state: str) -> list[Reduction]:
    stmt = (
        select(Reduction)
        .where(Reduction.state == state)
        .order_by(Reduction.deadline.is_(None), Reduction.deadline, Reduction.reduction_id)
    )
    return list(session.scalars(stmt))


# --------------------------------------------------------------------------------------
# annual submissions
# --------------------------------------------------------------------------------------


def submissions(
    session: Session, state: str, obligations: Sequence[Any]
) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Per (regime, kind, covers_year): the first submission's reference and time, and
    the finding of the obligation's rule (late / breach) for that period, if any."""
    kinds = {(o.regime, o.kind) for o in obligations}
    out: dict[tuple[str, str, int], dict[str, Any]] = {}
    got = func.coalesce(Notification.received_at, Notification.sent_at)
    stmt = (
        select(
            Notification.regime,
            Notification.kind,
            Notification.covers_year,
            func.min(got),
            func.min(Notification.reference),
        )
        .where(
            Notification.sender == state,
            Notification.covers_year.is_not(None),
            Notification.kind.in_({k for _, k in kinds}),
        )
        .group_by(Notification.regime, Notification.kind, Notification.covers_year)
    )
    for regime, kind, year, first, reference in session.execute(stmt):
        if (regime, kind) in kinds:
            out[(regime, kind, int(year))] = {"received": first, "reference": reference}
    rules = {o.rule_id: (o.regime, o.kind) for o in obligations if o.rule_id}
    fstmt = select(Finding.id, Finding.rule_id, Finding.period, Finding.severity).where(
        Finding.state == state, Finding.rule_id.in_(list(rules)), Finding.status != "resolved"
    )
    for fid, rule_id, period, severity in session.execute(fstmt):
        if not (period or "").isdigit():
            continue
        regime, kind = rules[rule_id]
        entry = out.setdefault((regime, kind, int(period)), {})
        entry["finding"] = {"id": fid, "severity": severity}
    return out
