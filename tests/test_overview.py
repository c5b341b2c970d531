"""store_overview: exact counts per kind, regime, region and year, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

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
)
from cbm.queries.overview import KIND_KEYS, REGIME_ORDER, store_overview, utc_year

CENTRAL = "central_europe"  # DEU
EAST = "black_sea_eastern_europe"  # RUS, BLR
NORTH_AMERICA = "north_america"  # USA


def ts(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def d(value: str) -> dt.date:
    return dt.date.fromisoformat(value)


def activity(aid: str, state: str, start: str, host: str | None = None) -> Activity:
    return Activity(
        activity_id=aid,
        source="notification",
        state=state,
        host_state=host or state,
        kind="exercise",
        start_date=d(start),
    )


def notification(ref: str, regime: str, sender: str, sent: str) -> Notification:
    return Notification(
        reference=ref, regime=regime, kind="annual_exchange", sender=sender, sent_at=ts(sent)
    )


def inspection(iid: str, regime: str, kind: str, by: str, of: str, at: str) -> Inspection:
    return Inspection(
        inspection_id=iid,
        regime=regime,
        kind=kind,
        inspecting_state=by,
        inspected_state=of,
        requested_at=ts(at),
    )


def insert_sample(session: Session) -> None:
    """DEU, RUS, USA (and BLR as a host State) across 2023 and 2024, every record kind."""
    session.add_all(
        [
            activity("A1", "DEU", "2023-09-10"),
            activity("A2", "RUS", "2023-09-15", host="BLR"),
            activity("A3", "RUS", "2024-03-01"),
            activity("A4", "USA", "2024-06-01"),
            notification("N1", "VD", "DEU", "2023-12-15T10:00:00Z"),
            notification("N2", "VD", "RUS", "2024-01-10T08:00:00Z"),
            notification("N3", "OST", "USA", "2024-02-01T12:00:00Z"),
            # Half an hour before New Year in UTC: 2024 in Tokyo, still 2023 here.
            notification("N4", "CFE", "RUS", "2023-12-31T23:30:00Z"),
            inspection("I1", "VD", "vd_inspection", "DEU", "RUS", "2023-05-01T09:00:00Z"),
            inspection("I2", "VD", "vd_evaluation", "USA", "DEU", "2024-04-01T09:00:00Z"),
            inspection("I3", "CFE", "cfe_declared_site", "USA", "RUS", "2024-07-01T09:00:00Z"),
            # Flight start wins over the planned arrival (and is 2023 in New York).
            ObservationFlight(
                flight_id="F1",
                observing_state="DEU",
                observed_state="RUS",
                notified_at=ts("2023-12-20T10:00:00Z"),
                eta_poe=ts("2023-12-30T10:00:00Z"),
                flight_start_at=ts("2024-01-01T00:30:00Z"),
            ),
            # No flight start: the planned arrival wins over the notification time.
            ObservationFlight(
                flight_id="F2",
                observing_state="RUS",
                observed_state="USA",
                notified_at=ts("2022-12-28T10:00:00Z"),
                eta_poe=ts("2023-01-02T10:00:00Z"),
            ),
            ObservationFlight(flight_id="F3", observing_state="USA", observed_state="DEU"),
            Quota(regime="OST", state="DEU", year=2024, kind="passive", counterpart="", quota=12),
            Quota(regime="VD", state="RUS", year=2024, kind="passive", counterpart="", quota=3),
            Holding(
                state="DEU",
                as_of=d("2024-01-01"),
                category="battle_tanks",
                source="vd_aemi",
                unit="",
                count=300,
            ),
            Holding(
                state="DEU",
                as_of=d("2024-01-01"),
                category="battle_tanks",
                source="cfe",
                unit="",
                count=310,
            ),
            Holding(
                state="RUS",
                as_of=d("2024-01-01"),
                category="acv",
                source="gemi",
                unit="",
                count=9000,
            ),
            Holding(
                state="USA",
                as_of=d("2024-01-01"),
                category="personnel",
                source="other",
                unit="",
                count=1000,
            ),
            Ceiling(
                regime="CFE",
                state="DEU",
                category="battle_tanks",
                valid_from=d("1992-07-17"),
                ceiling=4166,
            ),
            Reduction(
                reduction_id="R1", state="RUS", kind="treaty", category="artillery", quantity=10
            ),
            Reduction(
                reduction_id="R2", state="USA", kind="withdrawal", category="personnel", quantity=5
            ),
            Reduction(
                reduction_id="R3", state="DEU", kind="unilateral", category="acv", quantity=7
            ),
        ]
    )
    session.flush()


EXPECTED_TOTALS = {
    "activities": 4,
    "notifications": 4,
    "inspections": 3,
    "observation_flights": 3,
    "quotas": 2,
    "holdings": 4,
    "ceilings": 1,
    "reductions": 3,
}
EXPECTED_BY_REGIME = {
    "activities": {"VD": 4},
    "notifications": {"VD": 2, "OST": 1, "CFE": 1},
    "inspections": {"VD": 2, "CFE": 1},
    "observation_flights": {"OST": 3},
    "quotas": {"OST": 1, "VD": 1},
    "holdings": {"VD": 1, "CFE": 1, "GEMI": 1, "other": 1},
    "ceilings": {"CFE": 1},
    "reductions": {"CFE": 1, "unilateral": 2},
}
EXPECTED_BY_REGION = {
    CENTRAL: {
        "activities": 1,
        "notifications": 1,
        "inspections": 1,
        "observation_flights": 1,
        "quotas": 1,
        "holdings": 2,
        "ceilings": 1,
        "reductions": 1,
    },
    EAST: {
        "activities": 2,
        "notifications": 2,
        "inspections": 2,
        "observation_flights": 1,
        "quotas": 1,
        "holdings": 1,
        "reductions": 1,
    },
    NORTH_AMERICA: {
        "activities": 1,
        "notifications": 1,
        "observation_flights": 1,
        "holdings": 1,
        "reductions": 1,
    },
}
EXPECTED_BY_YEAR = {
    2023: {"activities": 2, "notifications": 2, "inspections": 1, "observation_flights": 1},
    2024: {"activities": 2, "notifications": 2, "inspections": 2, "observation_flights": 1},
    None: {"observation_flights": 1},
}


def test_empty_store(session: Session) -> None:
    overview = store_overview(session)
    assert overview.is_empty
    assert overview.total_records == 0
    assert overview.totals == dict.fromkeys(KIND_KEYS, 0)
    assert overview.by_regime == {}
    assert overview.by_region == {}
    assert overview.by_year == {}
    assert overview.years == ()
    assert overview.states_total == 57
    assert overview.states_with_data == 0
    assert overview.last_import is None
    assert overview.regimes == REGIME_ORDER
    # Every region of the reference data is listed, so empty regions show as zeros.
    region_codes = {r.code for r in overview.regions}
    assert region_codes == set(session.scalars(select(Region.code)))


def test_counts_per_kind_regime_region_year(session: Session) -> None:
    insert_sample(session)
    overview = store_overview(session)

    assert overview.totals == EXPECTED_TOTALS
    assert overview.total_records == 24
    assert not overview.is_empty
    assert overview.by_regime == EXPECTED_BY_REGIME
    assert overview.by_region == EXPECTED_BY_REGION
    assert overview.by_year == EXPECTED_BY_YEAR
    assert overview.years == (2023, 2024, None)
    assert overview.states_total == 57
    assert overview.states_with_data == 4  # DEU, RUS, USA and BLR (host State of A2)

    # The getters fill the zeros and the margins.
    assert overview.regime_count("reductions", "CFE") == 1
    assert overview.regime_count("activities", "OST") == 0
    assert overview.regime_total("VD") == 4 + 2 + 2 + 1 + 1
    assert overview.region_count(NORTH_AMERICA, "inspections") == 0
    assert overview.region_total(EAST) == 10
    assert overview.year_total(2024) == 7
    assert overview.year_kind_total("observation_flights") == 3
    assert overview.dated_total == 14


def test_last_import_is_the_latest_started(session: Session) -> None:
    session.add_all(
        [
            ImportRun(
                importer="csv",
                source_name="old.csv",
                status="succeeded",
                started_at=ts("2024-01-01T00:00:00Z"),
            ),
            ImportRun(
                importer="csv",
                source_name="new.csv",
                kind="activities",
                status="failed",
                started_at=ts("2024-05-01T00:00:00Z"),
                rows_read=12,
                rows_rejected=12,
            ),
        ]
    )
    session.flush()
    run = store_overview(session).last_import
    assert run is not None
    assert (run.source_name, run.kind, run.status) == ("new.csv", "activities", "failed")
    assert (run.rows_read, run.rows_rejected) == (12, 12)
    assert run.started_at == ts("2024-05-01T00:00:00Z")


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/New_York"])
def test_years_are_utc_whatever_the_session_time_zone(
    session: Session, backend: str, zone: str
) -> None:
    """EXTRACT on timestamptz follows the PostgreSQL session zone; utc_year must not."""
    if backend != "postgresql":
        pytest.skip("SQLite has no session time zone")
    insert_sample(session)
    session.execute(text(f"SET LOCAL TIME ZONE '{zone}'"))
    assert store_overview(session).by_year == EXPECTED_BY_YEAR


def test_utc_year_on_dates_and_timestamps(session: Session) -> None:
    insert_sample(session)
    years = session.execute(
        select(Notification.reference, utc_year(Notification.sent_at)).order_by(
            Notification.reference
        )
    ).all()
    assert years == [("N1", 2023), ("N2", 2024), ("N3", 2024), ("N4", 2023)]
    dates = session.scalars(
        select(utc_year(Activity.start_date)).order_by(Activity.activity_id)
    ).all()
    assert dates == [2023, 2023, 2024, 2024]
