"""What a check reads: the stored facts as pandas frames, the parameters, participation.

Facts are read once per check with plain driver-level SQL (no ORM objects) and converted
column-wise: timestamps become naive UTC ``datetime64`` so that rule arithmetic is
vectorised. Frames are loaded lazily, so a check of one regime reads only what it needs.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from cbm.compliance.registry import EDITIONS
from cbm.models import (
    Activity,
    Ceiling,
    Holding,
    Inspection,
    Notification,
    ObservationFlight,
    OSAirfield,
    OSQuotaHolder,
    Quota,
    Reduction,
    RegimeParticipation,
    RuleParameter,
)

UTC = dt.UTC
FIGURES = ("troops", "battle_tanks", "acv", "artillery", "air_sorties", "airborne_troops")
# Parameter names of thresholds -> activity columns.
THRESHOLD_COLUMNS = {
    "troops": "troops",
    "tanks": "battle_tanks",
    "acv": "acv",
    "artillery": "artillery",
    "air_sorties": "air_sorties",
    "amphibious_airborne_troops": "airborne_troops",
}

_TABLES: dict[str, Any] = {
    "activities": Activity,
    "notifications": Notification,
    "inspections": Inspection,
    "observation_flights": ObservationFlight,
    "quotas": Quota,
    "holdings": Holding,
    "ceilings": Ceiling,
    "reductions": Reduction,
    "participation": RegimeParticipation,
    "os_holders": OSQuotaHolder,
    "os_airfields": OSAirfield,
}
# Columns the rules read (provenance and free text stay in the database).
_COLUMNS: dict[str, tuple[str, ...]] = {
    "activities": ("activity_id", "source", "state", "kind", "start_date", "end_date", *FIGURES),
    "notifications": (
        "reference",
        "regime",
        "kind",
        "sender",
        "recipients",
        "sent_at",
        "received_at",
        "covers_year",
        "activity_id",
        "event_id",
        "in_reply_to",
        "nil_report",
        "remarks",
    ),
    "inspections": (
        "inspection_id",
        "regime",
        "kind",
        "inspecting_state",
        "inspected_state",
        "requested_at",
        "replied_at",
        "reply",
        "unit",
        "start_at",
        "end_at",
        "outcome",
        "counts_against_quota",
        "report_at",
    ),
    "observation_flights": (
        "flight_id",
        "observing_state",
        "observed_state",
        "notified_at",
        "eta_poe",
        "os_airfield",
        "flight_end_at",
        "departed_at",
        "distance_km",
        "max_distance_km",
        "outcome",
        "curtailment_cause",
        "counts_against_quota",
        "report_at",
        "restrictions",
    ),
    "quotas": ("regime", "state", "year", "kind", "counterpart", "quota"),
    "holdings": ("state", "as_of", "category", "source", "unit", "count", "zone"),
    "ceilings": ("regime", "state", "category", "valid_from", "ceiling", "valid_to"),
    "reductions": (
        "reduction_id",
        "state",
        "kind",
        "category",
        "quantity",
        "announced_at",
        "deadline",
        "reduced",
        "completed_at",
    ),
    "participation": ("state_code", "regime", "status", "valid_from", "valid_to", "group"),
    "os_holders": ("holder", "members", "passive_quota"),
    "os_airfields": ("holder", "airfield", "max_distance_km"),
}


def _kind_of(column: Any) -> str:
    name = type(column.type).__name__
    if name == "UTCDateTime":
        return "timestamp"
    if name == "Date":
        return "date"
    return "other"


def to_timestamp(values: Any) -> pd.Series:
    """Naive UTC ``datetime64[ns]`` from strings, aware datetimes or dates (vectorised)."""
    series = pd.Series(values)
    if series.empty:
        return pd.Series(pd.NaT, index=series.index, dtype="datetime64[ns]")
    out = pd.to_datetime(series, utc=True, format="ISO8601" if series.dtype == object else None)
    return out.dt.tz_convert(None).astype("datetime64[ns]")


def aware(value: Any) -> dt.datetime | None:
    """A pandas/numpy timestamp (naive UTC) as an aware ``datetime`` for storage."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return pd.Timestamp(value).to_pydatetime().replace(tzinfo=UTC)


def end_of_day(day: Any) -> pd.Timestamp:
    """The last second of a day: a day-based deadline ends at 23:59:59 UTC."""
    return pd.Timestamp(day).normalize() + pd.Timedelta(hours=23, minutes=59, seconds=59)


def jsonable(value: Any) -> Any:
    """Evidence values as plain JSON (numpy scalars, timestamps, NaN)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if value is None:
        return None
    if isinstance(value, pd.Timestamp | np.datetime64 | dt.datetime):
        if pd.isna(value):
            return None
        ts = pd.Timestamp(value)
        if ts.tzinfo is not None:
            ts = ts.tz_convert(None)
        return ts.isoformat() + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def day_iso(value: Any) -> str | None:
    """A date-valued timestamp as ``YYYY-MM-DD`` (for evidence and summaries)."""
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).date().isoformat()


def when_iso(value: Any) -> str | None:
    """A timestamp as ``YYYY-MM-DD HH:MM UTC`` (for summaries)."""
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M UTC")


def num(value: Any) -> str:
    """A figure for a sentence: 12,800."""
    if value is None or pd.isna(value):
        return "?"
    return f"{int(value):,}"


@dataclass(frozen=True)
class Parameter:
    regime: str
    key: str
    value: Any
    raw: str
    unit: str
    paragraph: str
    status: str


def _parse(raw: str, unit: str) -> Any:
    if unit == "month_day":
        month, day = raw.split("-")
        return int(month), int(day)
    if unit in ("comparator", "rounding"):
        return raw
    number = float(raw)
    return int(number) if number.is_integer() and unit not in ("ratio",) else number


class ParameterMissing(LookupError):
    """A rule asked for a parameter the reference data lacks (a data error, not a code one)."""


@dataclass
class CheckContext:
    """The facts, parameters and clock of one check run."""

    session: Session
    as_of: pd.Timestamp  # naive UTC: "now" for the check
    _frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    _params: dict[tuple[str, str], Parameter] | None = None
    coverage: dict[str, dict[str, Any]] = field(default_factory=dict)
    _cache: dict[str, Any] = field(default_factory=dict)

    # --- facts --------------------------------------------------------------------------

    def frame(self, name: str) -> pd.DataFrame:
        """A fact table as a frame (read once per check)."""
        if name not in self._frames:
            self._frames[name] = self._load(name)
        return self._frames[name]

    def notifications(self, *kinds: str) -> pd.DataFrame:
        """The notifications of the given kinds (read with ``WHERE kind IN``: a check never
        needs the bulk of prior notifications of small activities)."""
        key = f"notifications:{','.join(sorted(kinds))}"
        if key not in self._frames:
            table = Notification.__table__
            self._frames[key] = self._load("notifications", table.c.kind.in_(sorted(kinds)))
        return self._frames[key]

    def relevant_activities(self) -> pd.DataFrame:
        """Every source row of the activities that any activity rule can be about.

        An activity matters only if some figure of some source reaches the lowest threshold
        of any level, less the near-threshold band. The rest (the great majority: small
        exercises) are left in the database; the filter runs there, set-based.
        """
        key = "activities:relevant"
        if key not in self._frames:
            self._frames[key] = self._load("activities", self._relevance())
        return self._frames[key]

    def linked_notifications(self, kind: str) -> pd.DataFrame:
        """Notifications of ``kind`` that name a relevant activity."""
        key = f"linked:{kind}"
        if key not in self._frames:
            table = Notification.__table__
            ids = select(Activity.__table__.c.activity_id).where(self._relevance())
            where = (table.c.kind == kind) & table.c.activity_id.in_(ids)
            self._frames[key] = self._load("notifications", where)
        return self._frames[key]

    def _relevance(self) -> Any:
        from sqlalchemy import or_

        band = float(self.param("VD", "analytics.near_threshold_band_percent")) / 100
        floors: dict[str, float] = {}
        for (regime, key), p in self._load_params().items():
            if regime == "VD" and ".threshold." in key:
                column = THRESHOLD_COLUMNS.get(key.rsplit(".", 1)[1])
                if column:
                    floor = float(p.value) * (1 - band)
                    floors[column] = min(floors.get(column, floor), floor)
        table = Activity.__table__
        hit = or_(*(table.c[c] >= math.floor(v) for c, v in sorted(floors.items())))
        ids = select(table.c.activity_id).where(hit)
        return table.c.activity_id.in_(ids)

    def _load(self, name: str, where: Any = None) -> pd.DataFrame:
        model = _TABLES[name]
        table = model.__table__
        columns = _COLUMNS[name]
        query = select(*(table.c[c] for c in columns))
        if where is not None:
            query = query.where(where)
        conn = self.session.connection()
        # Read straight from the DB-API cursor: no per-value type processing (conversions
        # below are vectorised).
        result = conn.execute(query)
        # Plain DB-API tuples, column-wise: no Row objects for a million rows.
        records = result.cursor.fetchall() if result.cursor is not None else []
        result.close()
        data = list(zip(*records, strict=True)) if records else [()] * len(columns)
        frame = pd.DataFrame(
            {c: pd.Series(v, dtype=object) for c, v in zip(columns, data, strict=True)}
        )
        for column in columns:
            kind = _kind_of(table.c[column])
            if kind in ("timestamp", "date"):
                frame[column] = to_timestamp(frame[column])
        for column in columns:
            if str(type(table.c[column].type).__name__) == "Integer":
                frame[column] = pd.to_numeric(frame[column]).astype("Int64")
        return frame

    def horizon(self) -> pd.Timestamp:
        """The last moment the stored data speak for: the latest message sent (or ``as_of``).

        Absence checks about events (a reduction never completed, a report never sent) are
        evaluated only for deadlines before it, so a data set that stops in 2025 is not read
        as "nothing happened since".
        """
        if "horizon" not in self._cache:
            from sqlalchemy import func

            latest = self.session.scalar(select(func.max(Notification.sent_at)))
            latest = pd.NaT if latest is None else pd.Timestamp(latest).tz_convert(None)
            self._cache["horizon"] = self.as_of if pd.isna(latest) else min(self.as_of, latest)
        return self._cache["horizon"]

    # --- parameters ---------------------------------------------------------------------

    def _load_params(self) -> dict[tuple[str, str], Parameter]:
        if self._params is None:
            rows = self.session.execute(
                select(
                    RuleParameter.regime,
                    RuleParameter.edition,
                    RuleParameter.key,
                    RuleParameter.value,
                    RuleParameter.unit,
                    RuleParameter.paragraph,
                    RuleParameter.status,
                )
            ).all()
            self._params = {
                (r.regime, r.key): Parameter(
                    r.regime, r.key, _parse(r.value, r.unit), r.value, r.unit, r.paragraph, r.status
                )
                for r in rows
                if EDITIONS.get(r.regime) == r.edition
            }
        return self._params

    def parameter(self, regime: str, key: str) -> Parameter:
        try:
            return self._load_params()[(regime, key)]
        except KeyError:
            raise ParameterMissing(
                f"rule parameter {regime} {EDITIONS.get(regime)} {key!r} is missing from the "
                "reference data (cbm/reference/data/rule_parameters.csv; run `cbm reference load`)"
            ) from None

    def param(self, regime: str, key: str) -> Any:
        return self.parameter(regime, key).value

    def thresholds(self, regime: str, prefix: str) -> tuple[dict[str, int], bool]:
        """``{activity column: threshold}`` and whether the comparison is strict (``gt``)."""
        params = self._load_params()
        found = {}
        for (reg, key), p in params.items():
            if reg == regime and key.startswith(f"{prefix}.threshold."):
                found[THRESHOLD_COLUMNS[key.rsplit(".", 1)[1]]] = p.value
        if not found:
            raise ParameterMissing(f"no {regime} thresholds {prefix}.threshold.*")
        comparator = self.param(regime, f"{prefix}.comparator")
        return found, comparator == "gt"

    def parameters_of(self, regime: str, keys: Iterable[str]) -> dict[str, Any]:
        """Parameter values by key, for a finding's evidence."""
        return {k: self.parameter(regime, k).raw for k in keys}

    # --- participation ------------------------------------------------------------------

    def party(self, states: Sequence[str] | pd.Series, regime: str, when: Any) -> np.ndarray:
        """Per row, whether the State was a party (not suspended, not withdrawn) at ``when``.

        ``when`` is a series of naive UTC timestamps (or one value for every row).
        """
        states = pd.Series(states).reset_index(drop=True)
        n = len(states)
        if n == 0:
            return np.zeros(0, dtype=bool)
        days = when if isinstance(when, pd.Series) else pd.Series([when] * n)
        days = pd.Series(pd.to_datetime(days).to_numpy()).dt.normalize()
        frame = pd.DataFrame(
            {"state_code": states.to_numpy(), "day": days.to_numpy(), "i": range(n)}
        )
        part = self.frame("participation")
        part = part[(part["regime"] == regime) & (part["status"] == "party")]
        merged = frame.merge(part[["state_code", "valid_from", "valid_to"]], on="state_code")
        inside = (merged["valid_from"] <= merged["day"]) & (
            merged["valid_to"].isna() | (merged["day"] <= merged["valid_to"])
        )
        hits = merged.loc[inside, "i"].unique()
        out = np.zeros(n, dtype=bool)
        out[hits] = True
        return out

    def party_states(self, regime: str, day: Any) -> list[str]:
        """The States party to ``regime`` on ``day``."""
        part = self.frame("participation")
        part = part[(part["regime"] == regime) & (part["status"] == "party")]
        day = pd.Timestamp(day).normalize()
        inside = (part["valid_from"] <= day) & (part["valid_to"].isna() | (day <= part["valid_to"]))
        return sorted(part.loc[inside, "state_code"].unique())

    def record_coverage(self, rule_id: str, **info: Any) -> None:
        self.coverage[rule_id] = jsonable(info)


def reaches(frame: pd.DataFrame, thresholds: dict[str, int], strict: bool) -> pd.Series:
    """Rows where any figure reaches its threshold (``>`` when strict, else ``>=``)."""
    out = pd.Series(False, index=frame.index)
    for column, limit in thresholds.items():
        values = frame[column]
        hit = values > limit if strict else values >= limit
        out |= hit.fillna(False).astype(bool)
    return out


def first_reached(
    row: Any, thresholds: dict[str, int], strict: bool
) -> tuple[str, int, int] | None:
    """The first (figure, value, threshold) a row reaches, for a finding's sentence."""
    for column, limit in thresholds.items():
        value = getattr(row, column, None) if not isinstance(row, dict) else row.get(column)
        if value is None or pd.isna(value):
            continue
        if value > limit or (not strict and value == limit):
            return column, int(value), int(limit)
    return None


FIGURE_WORDS = {
    "troops": "troops",
    "battle_tanks": "battle tanks",
    "acv": "ACV",
    "artillery": "artillery pieces",
    "air_sorties": "air sorties",
    "airborne_troops": "airborne/amphibious troops",
}
