"""What is stored: record counts per kind, regime, region and year (the overview page).

All figures come from four set-based statements: one ``UNION ALL`` of every record table
grouped by (kind, regime, region, year), the list of regions, the State counts and the
last import run. The small grouped result is rolled up in Python; no query runs per row.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    DateTime,
    Integer,
    String,
    case,
    cast,
    extract,
    func,
    literal,
    null,
    select,
    union,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import Select
from sqlalchemy.types import TypeDecorator

from cbm.models import (
    Activity,
    Ceiling,
    Holding,
    ImportRun,
    Inspection,
    Notification,
    ObservationFlight,
    Quota,
    Reduction,
    Region,
    State,
)

# --------------------------------------------------------------------------------------
# Record kinds and the regime each one is counted under
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordKind:
    """One table of the data contract as the overview names it."""

    key: str
    label: str


RECORD_KINDS: tuple[RecordKind, ...] = (
    RecordKind("activities", "Activities"),
    RecordKind("notifications", "Notifications"),
    RecordKind("inspections", "Inspections & evaluation visits"),
    RecordKind("observation_flights", "Observation flights"),
    RecordKind("quotas", "Quotas"),
    RecordKind("holdings", "Holdings"),
    RecordKind("ceilings", "Ceilings"),
    RecordKind("reductions", "Reductions"),
)
KIND_KEYS: tuple[str, ...] = tuple(k.key for k in RECORD_KINDS)

#: Kinds that carry a date the per-year table counts by (the others have no single event date).
YEAR_KINDS: tuple[str, ...] = ("activities", "notifications", "inspections", "observation_flights")

#: Regime columns in display order; values outside this list are appended as found.
REGIME_ORDER: tuple[str, ...] = ("VD", "OST", "CFE", "GEMI", "unilateral", "other")

#: Holdings have no regime column: their source says which exchange declared them.
HOLDING_SOURCE_REGIME: dict[str, str] = {"vd_aemi": "VD", "cfe": "CFE", "gemi": "GEMI"}


# --------------------------------------------------------------------------------------
# The year of a date or a UTC timestamp, on SQLite and PostgreSQL alike
# --------------------------------------------------------------------------------------


class utc_year(FunctionElement[int]):  # lower case: it reads like the SQL function it is
    """The calendar year (an integer) of a DATE or a UTC timestamp, the same on every backend.

    ``EXTRACT(YEAR FROM timestamptz)`` on PostgreSQL uses the *session* time zone, so an
    event at 2023-12-31 23:30 UTC would count for 2024 on a server set to Europe/Berlin.
    For time-zone-aware columns this construct converts to UTC first; on SQLite (naive UTC
    text) and for DATE columns it is a plain ``EXTRACT``, cast to an integer because
    PostgreSQL returns ``numeric``.
    """

    type = Integer()
    inherit_cache = True
    name = "utc_year"


def _is_aware_timestamp(type_: Any) -> bool:
    impl = type_.impl_instance if isinstance(type_, TypeDecorator) else type_
    return isinstance(impl, DateTime) and bool(impl.timezone)


@compiles(utc_year)
def _compile_utc_year(element: utc_year, compiler: Any, **kw: Any) -> str:
    (arg,) = element.clauses
    return compiler.process(cast(extract("year", arg), Integer), **kw)


@compiles(utc_year, "sqlite")
def _compile_utc_year_sqlite(element: utc_year, compiler: Any, **kw: Any) -> str:
    # SQLite renders EXTRACT as CAST(STRFTIME('%Y', …) AS INTEGER) already; timestamps are
    # stored as naive UTC text by UTCDateTime, so no conversion is needed.
    (arg,) = element.clauses
    return compiler.process(extract("year", arg), **kw)


@compiles(utc_year, "postgresql")
def _compile_utc_year_pg(element: utc_year, compiler: Any, **kw: Any) -> str:
    (arg,) = element.clauses
    if _is_aware_timestamp(arg.type):
        arg = func.timezone("UTC", arg)
    return compiler.process(cast(extract("year", arg), Integer), **kw)


# --------------------------------------------------------------------------------------
# Result dataclasses
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegionRef:
    code: str | None
    name: str


@dataclass(frozen=True)
class ImportSummary:
    """The last import run, as the overview shows it."""

    id: int
    source_name: str
    importer: str
    kind: str | None
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    rows_read: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_rejected: int
    message: str | None


@dataclass(frozen=True)
class Overview:
    """Counts of what is stored. Cross tables hold only non-zero cells; use the getters.

    ``by_region`` is keyed by region code (``None`` for a State without a region) and
    attributes each record to one State: the conducting State (activities), the sender
    (notifications), the inspected State (inspections), the observed State (flights) and
    the State concerned (quotas, holdings, ceilings, reductions). ``by_year`` is keyed by
    year (``None`` for a flight with no date at all) and covers :data:`YEAR_KINDS` only.
    """

    totals: dict[str, int]
    by_regime: dict[str, dict[str, int]]
    by_region: dict[str | None, dict[str, int]]
    by_year: dict[int | None, dict[str, int]]
    regions: tuple[RegionRef, ...]
    states_total: int
    states_with_data: int
    last_import: ImportSummary | None
    regimes: tuple[str, ...] = field(default=REGIME_ORDER)

    @property
    def total_records(self) -> int:
        return sum(self.totals.values())

    @property
    def is_empty(self) -> bool:
        return self.total_records == 0

    @property
    def years(self) -> tuple[int | None, ...]:
        """Years with data, oldest first, the undated bucket (``None``) last."""
        dated = sorted(y for y in self.by_year if y is not None)
        return (*dated, None) if None in self.by_year else tuple(dated)

    def regime_count(self, kind: str, regime: str) -> int:
        return self.by_regime.get(kind, {}).get(regime, 0)

    def regime_total(self, regime: str) -> int:
        return sum(cells.get(regime, 0) for cells in self.by_regime.values())

    def region_count(self, region: str | None, kind: str) -> int:
        return self.by_region.get(region, {}).get(kind, 0)

    def region_total(self, region: str | None) -> int:
        return sum(self.by_region.get(region, {}).values())

    def year_count(self, year: int | None, kind: str) -> int:
        return self.by_year.get(year, {}).get(kind, 0)

    def year_total(self, year: int | None) -> int:
        return sum(self.by_year.get(year, {}).values())

    def year_kind_total(self, kind: str) -> int:
        return sum(cells.get(kind, 0) for cells in self.by_year.values())

    @property
    def dated_total(self) -> int:
        """Records in the per-year table (all of :data:`YEAR_KINDS`, undated flights included)."""
        return sum(sum(cells.values()) for cells in self.by_year.values())


# --------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------


def _const(value: str) -> ColumnElement[str]:
    # Typed (rendered as %(p)s::VARCHAR on PostgreSQL), so the UNION's column types resolve.
    return literal(value, String)


def _no_year() -> ColumnElement[int]:
    return cast(null(), Integer)


def _facts() -> Select[Any]:
    """One row per stored record: (kind, regime, state, year)."""
    a, n, i, f = Activity, Notification, Inspection, ObservationFlight
    q, h, c, r = Quota, Holding, Ceiling, Reduction
    holding_regime = case(
        *((h.source == source, regime) for source, regime in HOLDING_SOURCE_REGIME.items()),
        else_="other",
    )
    reduction_regime = case((r.kind == "treaty", "CFE"), else_="unilateral")
    flight_when = func.coalesce(f.flight_start_at, f.eta_poe, f.notified_at)

    def row(kind: str, regime: Any, state: Any, year: Any) -> Select[Any]:
        return select(
            _const(kind).label("kind"),
            regime.label("regime"),
            state.label("state"),
            year.label("year"),
        )

    return union_all(
        row("activities", _const("VD"), a.state, utc_year(a.start_date)),
        row("notifications", n.regime, n.sender, utc_year(n.sent_at)),
        row("inspections", i.regime, i.inspected_state, utc_year(i.requested_at)),
        row("observation_flights", _const("OST"), f.observed_state, utc_year(flight_when)),
        row("quotas", q.regime, q.state, _no_year()),
        row("holdings", holding_regime, h.state, _no_year()),
        row("ceilings", c.regime, c.state, _no_year()),
        row("reductions", reduction_regime, r.state, _no_year()),
    )


def _states_named() -> Any:
    """Every State code named by any record, in any role (list columns such as
    ``recipients`` and ``guest_states`` are free text and not counted)."""
    a, n, i, f = Activity, Notification, Inspection, ObservationFlight
    return union(
        select(a.state),
        select(a.host_state),
        select(n.sender),
        select(i.inspecting_state),
        select(i.inspected_state),
        select(f.observing_state),
        select(f.observed_state),
        select(Quota.state),
        select(Holding.state),
        select(Ceiling.state),
        select(Reduction.state),
    )


def store_overview(session: Session) -> Overview:
    """Count everything stored, per kind, regime, region and year, in four statements.

    The overview is the first page an analyst sees; it answers "what does this tracker
    hold?" before any compliance question, so the figures must be exact and cheap.
    """
    facts = _facts().subquery("facts")
    grouped = (
        select(
            facts.c.kind,
            facts.c.regime,
            State.region_code,
            facts.c.year,
            func.count().label("n"),
        )
        .select_from(facts)
        .outerjoin(State, State.code == facts.c.state)
        .group_by(facts.c.kind, facts.c.regime, State.region_code, facts.c.year)
    )

    totals: dict[str, int] = dict.fromkeys(KIND_KEYS, 0)
    by_regime: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_region: dict[str | None, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_year: dict[int | None, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for kind, regime, region, year, count in session.execute(grouped):
        totals[kind] += count
        by_regime[kind][regime] += count
        by_region[region][kind] += count
        if kind in YEAR_KINDS:
            by_year[None if year is None else int(year)][kind] += count

    region_rows = session.execute(select(Region.code, Region.name).order_by(Region.name)).all()
    regions = [RegionRef(code, name) for code, name in region_rows]
    known = {code for code, _ in region_rows}
    regions += [RegionRef(code, code or "No region") for code in by_region if code not in known]

    named = _states_named().subquery("named")
    states_total, states_with_data = session.execute(
        select(
            func.count(State.code),
            func.coalesce(
                func.sum(case((State.code.in_(select(named.c[0])), 1), else_=0)),
                0,
            ),
        )
    ).one()

    run = session.scalars(
        select(ImportRun).order_by(ImportRun.started_at.desc(), ImportRun.id.desc()).limit(1)
    ).first()

    present = {regime for cells in by_regime.values() for regime in cells}
    regimes = REGIME_ORDER + tuple(sorted(present - set(REGIME_ORDER)))

    return Overview(
        totals=totals,
        by_regime=_plain(by_regime),
        by_region=_plain(by_region),
        by_year=_plain(by_year),
        regions=tuple(regions),
        states_total=int(states_total),
        states_with_data=int(states_with_data),
        last_import=_import_summary(run) if run is not None else None,
        regimes=regimes,
    )


def _plain(nested: dict[Any, dict[str, int]]) -> dict[Any, dict[str, int]]:
    return {key: dict(cells) for key, cells in nested.items()}


def _import_summary(run: ImportRun) -> ImportSummary:
    return ImportSummary(
        id=run.id,
        source_name=run.source_name,
        importer=run.importer,
        kind=run.kind,
        status=run.status,
        started_at=run.started_at,
        finished_at=run.finished_at,
        rows_read=run.rows_read,
        rows_inserted=run.rows_inserted,
        rows_updated=run.rows_updated,
        rows_unchanged=run.rows_unchanged,
        rows_rejected=run.rows_rejected,
        message=run.message,
    )
