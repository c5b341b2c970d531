"""Correctness of the Open Skies rules at their boundaries: 72 h notice, 24 h acknowledgement,
96 h mission window, 7-day report, distance, prohibitions, the 50 % cap (rounded up), the
75 % first-distribution rule of the phasing period (rounded down), groups, and the
withdrawals of the USA (2020-11-22) and Russia (2021-12-18)."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update
from sqlalchemy.orm import Session
from test_rules_support import (
    DAY,
    HOUR,
    at,
    check,
    flight,
    keys,
    note,
    quota,
    run,
    scratch,
    store,
)

from cbm.models import RegimeParticipation

PROPERTY = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MINUTE = HOUR / 60


# --- OS-T1: notified at least 72 hours before the ETA --------------------------------------------


def test_t1_exactly_72_hours_is_enough(session: Session) -> None:
    eta = at("2019-05-04T10:00:00Z")
    store(
        session,
        "observation_flights",
        flight("ON", "DEU", "RUS", eta, notified_at=eta - 72 * HOUR),
        flight("SHORT", "DEU", "RUS", eta + DAY, notified_at=eta + DAY - 72 * HOUR + MINUTE),
        # 00:30 on 1 May at UTC+1 to 00:00 on 4 May at UTC+1: 71 h 30 min.
        flight(
            "ZONES",
            "FRA",
            "RUS",
            "2019-05-04T00:00:00+01:00",
            notified_at="2019-05-01T00:30:00+01:00",
        ),
        # 01:00 on 1 May at UTC+2 is 23:00 UTC on 30 April: exactly 72 hours.
        flight(
            "ZONES-OK",
            "GBR",
            "RUS",
            "2019-05-03T23:00:00Z",
            notified_at="2019-05-01T01:00:00+02:00",
        ),
    )
    found = check(session, "OS-T1")
    assert keys(found) == [
        ("OS-T1", "DEU", "SHORT", "late", "2019"),
        ("OS-T1", "FRA", "ZONES", "late", "2019"),
    ]
    assert found[0].summary == (
        "DEU notified observation flight SHORT over RUS 71 hours 59 minutes before its ETA "
        "(2019-05-05 10:00 UTC); OST Art. VI ¶5 requires 72 hours."
    )
    assert found[0].counterpart == "RUS"
    assert found[0].due_at == at("2019-05-02T10:00:00Z")
    assert "71 hours 30 minutes before its ETA (2019-05-03 23:00 UTC)" in found[1].summary


def test_t1_no_findings_for_a_state_after_its_withdrawal(session: Session) -> None:
    """The USA left on 2020-11-22, Russia on 2021-12-18: notice due after that is not owed."""
    cases = (
        ("USA-IN", "USA", "2020-11-24T23:59:00Z"),  # notice due 2020-11-21 23:59
        ("USA-OUT", "USA", "2020-11-25T00:00:00Z"),  # notice due 2020-11-22 00:00
        ("RUS-IN", "RUS", "2021-12-20T12:00:00Z"),  # notice due 2021-12-17
        ("RUS-OUT", "RUS", "2021-12-21T12:00:00Z"),  # notice due 2021-12-18
    )
    store(
        session,
        "observation_flights",
        *(
            flight(fid, observer, "DEU", eta, notified_at=at(eta) - 10 * HOUR)
            for fid, observer, eta in cases
        ),
    )
    assert keys(check(session, "OS-T1")) == [
        ("OS-T1", "RUS", "RUS-IN", "late", "2021"),
        ("OS-T1", "USA", "USA-IN", "late", "2020"),
    ]


@PROPERTY
@given(leads=st.lists(st.integers(60 * 60, 90 * 60), min_size=1, max_size=8))
def test_t1_property_late_iff_under_72_hours(session: Session, leads: list[int]) -> None:
    eta = at("2019-06-10T12:00:00Z")
    with scratch(session):
        store(
            session,
            "observation_flights",
            *(
                flight(
                    f"F-{i}", "DEU", "UKR", eta + i * DAY, notified_at=eta + i * DAY - m * MINUTE
                )
                for i, m in enumerate(leads)
            ),
        )
        got = {f.subject for f in check(session, "OS-T1")}
        assert got == {f"F-{i}" for i, m in enumerate(leads) if m < 72 * 60}


# --- OS-T2: acknowledged within 24 hours ---------------------------------------------------------


def test_t2_acknowledgement_within_24_hours(session: Session) -> None:
    store(
        session,
        "observation_flights",
        *(flight(f, "DEU", "RUS", "2019-05-10T10:00:00Z") for f in ("ON", "LATE", "NONE")),
    )
    sent = at("2019-05-06T10:00:00Z")
    rows = [
        note(f"N-{f}", "flight_notification", "DEU", sent, regime="OST", event_id=f)
        for f in ("ON", "LATE", "NONE")
    ]
    ack = "flight_acknowledgement"
    rows += [
        note("A-ON", ack, "RUS", sent + 24 * HOUR, regime="OST", event_id="ON"),
        note("A-LATE", ack, "RUS", sent + 24 * HOUR + MINUTE, regime="OST", event_id="LATE"),
        note("LATER", "annual_calendar", "DEU", "2019-06-01T00:00:00Z"),
    ]
    store(session, "notifications", *rows)
    found = check(session, "OS-T2")
    assert keys(found) == [
        ("OS-T2", "RUS", "LATE", "late", "2019"),
        ("OS-T2", "RUS", "NONE", "late", "2019"),
    ]
    assert found[0].summary == (
        "Flight LATE of DEU over RUS: RUS acknowledged it after 24 hours 1 minute; OST Art. VI "
        "¶6 requires an acknowledgement within 24 hours."
    )
    assert found[1].summary == (
        "Flight NONE of DEU over RUS: RUS has no acknowledgement on record; OST Art. VI ¶6 "
        "requires an acknowledgement within 24 hours."
    )
    assert found[0].due_at == sent + 24 * HOUR


def test_t2_without_a_notification_message_the_flights_notification_time_counts(
    session: Session,
) -> None:
    """The observed Party is not blamed for the observing Party's message missing from the
    data: its acknowledgement is timed from the flight's notification time."""
    notified = at("2019-05-06T10:00:00Z")
    store(
        session,
        "observation_flights",
        flight("ON", "DEU", "RUS", "2019-05-10T10:00:00Z", notified_at=notified),
        flight("LATE", "DEU", "RUS", "2019-05-10T10:00:00Z", notified_at=notified),
    )
    ack = "flight_acknowledgement"
    store(
        session,
        "notifications",
        note("A-ON", ack, "RUS", notified + 24 * HOUR, regime="OST", event_id="ON"),
        note("A-LATE", ack, "RUS", notified + 25 * HOUR, regime="OST", event_id="LATE"),
    )
    [f] = check(session, "OS-T2")
    assert f.key == ("OS-T2", "RUS", "LATE", "late", "2019")
    assert "RUS acknowledged it after 25 hours;" in f.summary


def test_t2_a_missing_acknowledgement_is_judged_once_the_data_reach_its_deadline(
    session: Session,
) -> None:
    store(session, "observation_flights", flight("F", "DEU", "RUS", "2019-05-10T10:00:00Z"))
    store(
        session,
        "notifications",
        note("N", "flight_notification", "DEU", "2019-05-06T10:00:00Z", regime="OST", event_id="F"),
        note("LAST", "annual_calendar", "DEU", "2019-05-07T10:00:00Z"),  # the deadline itself
    )
    assert check(session, "OS-T2") == []
    store(session, "notifications", note("LATER", "annual_calendar", "FRA", "2019-05-07T10:00:01Z"))
    [f] = check(session, "OS-T2")
    assert f.key == ("OS-T2", "RUS", "F", "late", "2019")
    assert f.due_at == at("2019-05-07T10:00:00Z")


def test_t2_no_finding_for_the_observed_state_after_its_withdrawal(session: Session) -> None:
    store(
        session,
        "observation_flights",
        flight("BEFORE", "DEU", "RUS", "2021-12-20T10:00:00Z"),
        flight("AFTER", "DEU", "RUS", "2021-12-22T10:00:00Z"),
    )
    store(
        session,
        "notifications",
        note(
            "N-1",
            "flight_notification",
            "DEU",
            "2021-12-16T09:00:00Z",  # acknowledgement due 2021-12-17 09:00
            regime="OST",
            event_id="BEFORE",
        ),
        note(
            "N-2",
            "flight_notification",
            "DEU",
            "2021-12-17T00:00:00Z",  # acknowledgement due 2021-12-18 00:00
            regime="OST",
            event_id="AFTER",
        ),
        note("LATER", "annual_calendar", "DEU", "2022-01-10T00:00:00Z"),
    )
    assert keys(check(session, "OS-T2")) == [("OS-T2", "RUS", "BEFORE", "late", "2021")]


# --- OS-T4: ETA to end of the flight within 96 hours ---------------------------------------------


def test_t4_mission_window_96_hours(session: Session) -> None:
    eta = at("2019-07-01T06:00:00Z")
    store(
        session,
        "observation_flights",
        flight(
            "ON", "UKR", "RUS", eta, flight_end_at=eta + 96 * HOUR, departed_at=eta + 100 * HOUR
        ),
        flight(
            "OVER",
            "UKR",
            "RUS",
            eta + 10 * DAY,
            flight_end_at=eta + 10 * DAY + 96 * HOUR + MINUTE,
            departed_at=eta + 10 * DAY + 100 * HOUR,
        ),
    )
    [f] = check(session, "OS-T4")
    assert f.key == ("OS-T4", "UKR", "OVER", "breach", "2019")
    assert f.summary == (
        "UKR's observation flight OVER over RUS ended 96 hours 1 minute after its ETA; OST "
        "Art. VI ¶9 allows 96 hours."
    )


# --- OS-T13: mission report within 7 days after departure ----------------------------------------


def test_t13_report_within_seven_days(session: Session) -> None:
    eta = at("2020-02-25T08:00:00Z")
    departed = eta + 50 * HOUR  # 27 February 10:00; seven days later is 5 March (leap year)
    store(
        session,
        "observation_flights",
        flight("ON", "SWE", "RUS", eta, report_at=at("2020-03-05T10:00:00Z")),
        flight("LATE", "SWE", "RUS", eta, report_at=at("2020-03-05T10:01:00Z")),
        flight("NONE", "SWE", "RUS", eta, report_at=None),
    )
    assert departed == at("2020-02-27T10:00:00Z")
    # A message after the deadline: the data speak for the days after it.
    store(session, "notifications", note("LATER", "annual_calendar", "DEU", "2020-04-01T00:00:00Z"))
    found = check(session, "OS-T13")
    assert keys(found) == [
        ("OS-T13", "SWE", "LATE", "late", "2020"),
        ("OS-T13", "SWE", "NONE", "breach", "2020"),
    ]
    assert found[0].summary == (
        "SWE provided the mission report 7 days 1 minute after departure for flight LATE over "
        "RUS; OST Art. VI ¶21 requires it within 7 days."
    )
    assert found[1].summary == (
        "SWE has provided no mission report for flight NONE over RUS; OST Art. VI ¶21 requires "
        "it within 7 days."
    )


def test_t13_a_missing_report_is_not_judged_before_the_data_reach_its_deadline(
    session: Session,
) -> None:
    store(
        session,
        "observation_flights",
        flight("NONE", "SWE", "RUS", "2020-02-25T08:00:00Z", report_at=None),
    )
    store(session, "notifications", note("LAST", "annual_calendar", "DEU", "2020-03-05T09:59:59Z"))
    assert check(session, "OS-T13") == []


def test_t13_no_finding_when_the_report_fell_due_after_the_withdrawal(session: Session) -> None:
    store(
        session,
        "observation_flights",
        flight(
            "DUE-21",
            "USA",
            "DEU",
            "2020-11-10T10:00:00Z",
            departed_at=at("2020-11-14T12:00:00Z"),
            report_at=at("2020-12-01T00:00:00Z"),
        ),
        flight(
            "DUE-22",
            "USA",
            "DEU",
            "2020-11-11T10:00:00Z",
            departed_at=at("2020-11-15T00:00:00Z"),
            report_at=at("2020-12-01T00:00:00Z"),
        ),
    )
    assert keys(check(session, "OS-T13")) == [("OS-T13", "USA", "DUE-21", "late", "2020")]


# --- OS-DIST and OS-PROHIBIT ---------------------------------------------------------------------


def test_dist_maximum_of_the_flight_or_of_its_airfield(session: Session) -> None:
    store(
        session,
        "observation_flights",
        flight("AT", "DEU", "RUS", "2019-05-01T10:00:00Z", distance_km=5500, max_distance_km=5500),
        flight(
            "OVER", "DEU", "RUS", "2019-05-10T10:00:00Z", distance_km=5501, max_distance_km=5500
        ),
        # No maximum on the flight: the Annex A figure of the airfield (Kubinka 5,000 km).
        flight(
            "KUBINKA",
            "FRA",
            "RUS",
            "2019-06-01T10:00:00Z",
            os_airfield="Kubinka",
            distance_km=5001,
            max_distance_km=None,
        ),
        flight(
            "KUBINKA-AT",
            "FRA",
            "RUS",
            "2019-06-10T10:00:00Z",
            os_airfield="Kubinka",
            distance_km=5000,
            max_distance_km=None,
        ),
    )
    found = check(session, "OS-DIST")
    assert keys(found) == [
        ("OS-DIST", "FRA", "KUBINKA", "breach", "2019"),
        ("OS-DIST", "DEU", "OVER", "breach", "2019"),
    ]
    assert found[0].summary == (
        "FRA's flight KUBINKA over RUS from Kubinka covered 5,001 km; OST Annex A allows "
        "5,000 km from that airfield."
    )


def test_prohibit_needs_a_recorded_ground(session: Session) -> None:
    store(
        session,
        "observation_flights",
        flight(
            "BARE",
            "DEU",
            "RUS",
            "2019-05-01T10:00:00Z",
            outcome="prohibited",
            counts_against_quota=False,
        ),
        flight(
            "GROUND",
            "DEU",
            "RUS",
            "2019-05-10T10:00:00Z",
            outcome="prohibited",
            counts_against_quota=False,
            curtailment_cause="Arrived more than 24 hours after the notified ETA (Art. VIII ¶2).",
        ),
        flight(
            "RESTRICTED",
            "DEU",
            "RUS",
            "2019-05-20T10:00:00Z",
            outcome="prohibited",
            counts_against_quota=False,
            restrictions="Flight plan through a hazardous airspace.",
        ),
    )
    [f] = check(session, "OS-PROHIBIT")
    assert f.key == ("OS-PROHIBIT", "RUS", "BARE", "breach", "2019")
    assert f.counterpart == "DEU"
    assert f.summary == (
        "RUS prohibited DEU's observation flight BARE with no treaty ground on record; OST "
        "Art. VIII allows a prohibition only on its stated grounds."
    )


# --- OS-Q6: the 50 % cap, rounded up --------------------------------------------------------------


def flights_over(observer: str, observed: str, n: int, eta: str, prefix: str = "F") -> list[dict]:
    start = at(eta)
    return [flight(f"{prefix}-{i + 1}", observer, observed, start + i * 5 * DAY) for i in range(n)]


def test_q6_odd_quotas_round_up(session: Session) -> None:
    """DEU's total active quota is 3 (2 over RUS, 1 over UKR): the cap over RUS is
    ceil(50 % of min(3, 12)) = 2, so the third flight breaks it."""
    store(
        session,
        "quotas",
        quota("OST", "DEU", 2019, "active", 2, "RUS"),
        quota("OST", "DEU", 2019, "active", 1, "UKR"),
        quota("OST", "RUS", 2019, "passive", 12),
    )
    store(session, "observation_flights", *flights_over("DEU", "RUS", 3, "2019-03-01T10:00:00Z"))
    [f] = check(session, "OS-Q6")
    assert f.key == ("OS-Q6", "DEU", "F-3", "breach", "2019")
    assert f.counterpart == "RUS"
    assert f.summary == (
        "F-3 was DEU's flight no. 3 over RUS in 2019; OST Art. III ¶10 caps it at 2 (50 % of "
        "min(active 3, passive 12), rounded up)."
    )


def test_q6_the_passive_quota_when_it_is_the_smaller(session: Session) -> None:
    store(
        session,
        "quotas",
        quota("OST", "FRA", 2019, "active", 10, "POL"),
        quota("OST", "POL", 2019, "passive", 5),
    )
    store(session, "observation_flights", *flights_over("FRA", "POL", 4, "2019-03-01T10:00:00Z"))
    [f] = check(session, "OS-Q6")
    assert f.key == ("OS-Q6", "FRA", "F-4", "breach", "2019")
    assert "caps it at 3 (50 % of min(active 10, passive 5), rounded up)" in f.summary


def test_q6_a_group_member_without_its_own_row_has_the_groups_quota(session: Session) -> None:
    """Belarus has no passive row: the BY-RU group's Annex A quota (42) applies."""
    store(session, "quotas", quota("OST", "GBR", 2019, "active", 6, "BLR"))
    store(session, "observation_flights", *flights_over("GBR", "BLR", 4, "2019-03-01T10:00:00Z"))
    [f] = check(session, "OS-Q6")
    assert f.key == ("OS-Q6", "GBR", "F-4", "breach", "2019")
    assert f.evidence["quota_holder"] == "BY-RU" and f.evidence["passive_quota"] == 42
    assert "caps it at 3 (50 % of min(active 6, passive 42), rounded up)" in f.summary


def test_q6_evaluated_only_where_the_observer_has_active_quota_rows(session: Session) -> None:
    store(session, "quotas", quota("OST", "RUS", 2019, "passive", 2))
    store(
        session,
        "observation_flights",
        *flights_over("ITA", "RUS", 5, "2019-03-01T10:00:00Z", "ITA"),
        # Finland has no passive quota on record (not in Annex A): not evaluated either.
        *flights_over("DEU", "FIN", 5, "2019-03-01T10:00:00Z", "FIN"),
    )
    store(session, "quotas", quota("OST", "DEU", 2019, "active", 1, "FIN"))
    result = run(session, "OS-Q6", "OS-OVERQUOTA")
    assert result.by_rule["OS-Q6"]["detected"] == 0
    skipped = {s["period"]: s["why"] for s in result.coverage["OS-Q6"]["skipped"]}
    assert skipped == {
        "ITA 2019": "no active quota on record",
        "FIN 2019": "no passive quota on record",
    }
    # Nor is FIN "over its quota" of nothing; RUS is over its quota of 2.
    assert result.by_rule["OS-OVERQUOTA"]["detected"] == 3


def test_q6_flights_not_counting_against_the_quota_are_not_counted(session: Session) -> None:
    store(
        session,
        "quotas",
        quota("OST", "DEU", 2019, "active", 4, "RUS"),  # the cap is 2
        quota("OST", "RUS", 2019, "passive", 12),
    )
    rows = flights_over("DEU", "RUS", 3, "2019-03-01T10:00:00Z")
    rows[0].update(outcome="declined", counts_against_quota=False)
    store(session, "observation_flights", *rows)
    assert check(session, "OS-Q6") == []


def test_q6_no_findings_for_the_usa_after_its_withdrawal(session: Session) -> None:
    store(
        session,
        "quotas",
        quota("OST", "USA", 2020, "active", 2, "RUS"),
        quota("OST", "RUS", 2020, "passive", 12),
    )
    store(
        session,
        "observation_flights",
        flight("F-1", "USA", "RUS", "2020-09-01T10:00:00Z"),
        flight("F-2", "USA", "RUS", "2020-11-21T10:00:00Z"),  # the cap is 1: a breach
        flight("F-3", "USA", "RUS", "2020-11-22T10:00:00Z"),  # the USA has left
    )
    assert keys(check(session, "OS-Q6")) == [("OS-Q6", "USA", "F-2", "breach", "2020")]


@PROPERTY
@given(
    active=st.integers(1, 9),
    passive=st.integers(1, 9),
    flown=st.integers(0, 7),
)
def test_q6_property_cap_is_ceil_half_of_the_smaller_quota(
    session: Session, active: int, passive: int, flown: int
) -> None:
    with scratch(session):
        store(
            session,
            "quotas",
            quota("OST", "DEU", 2019, "active", active, "UKR"),
            quota("OST", "UKR", 2019, "passive", passive),
        )
        if flown:
            store(
                session,
                "observation_flights",
                *flights_over("DEU", "UKR", flown, "2019-01-10T10:00:00Z"),
            )
        cap = math.ceil(min(active, passive) / 2)
        found = check(session, "OS-Q6")
        assert {f.subject for f in found} == {f"F-{i}" for i in range(cap + 1, flown + 1)}


# --- the 75 % first-distribution rule in the phasing period (to 31 Dec 2005) ----------------------


def test_q6_in_the_phasing_period_the_passive_quota_is_75_percent_rounded_down(
    session: Session,
) -> None:
    """Norway's Annex A quota is 7: in 2004 it need accept floor(75 % of 7) = 5 flights, so
    DEU's cap over it is ceil(5 / 2) = 3; from 2006 it is ceil(7 / 2) = 4."""
    store(
        session,
        "quotas",
        quota("OST", "DEU", 2004, "active", 12, "NOR"),
        quota("OST", "DEU", 2006, "active", 12, "NOR"),
    )
    store(
        session,
        "observation_flights",
        *flights_over("DEU", "NOR", 4, "2004-03-01T10:00:00Z", "P"),
        *flights_over("DEU", "NOR", 4, "2006-03-01T10:00:00Z", "Q"),
    )
    [f] = check(session, "OS-Q6")
    assert f.key == ("OS-Q6", "DEU", "P-4", "breach", "2004")
    assert f.summary == (
        "P-4 was DEU's flight no. 4 over NOR in 2004; OST Art. III ¶10 caps it at 3 (50 % of "
        "min(active 12, passive 5: 75 % of 7, rounded down, in the phasing period), rounded up)."
    )
    assert f.evidence["passive_quota"] == 5 and f.evidence["passive_quota_distributed"] == 7


def test_overquota_beyond_the_passive_quota_is_positive(session: Session) -> None:
    store(session, "quotas", quota("OST", "RUS", 2019, "passive", 2))
    store(
        session,
        "observation_flights",
        flight("F-1", "DEU", "RUS", "2019-02-01T10:00:00Z"),
        flight("F-2", "FRA", "RUS", "2019-03-01T10:00:00Z"),
        flight("F-3", "GBR", "RUS", "2019-04-01T10:00:00Z"),
        flight("NC", "ITA", "RUS", "2019-03-15T10:00:00Z", counts_against_quota=False),
    )
    [f] = check(session, "OS-OVERQUOTA")
    assert f.key == ("OS-OVERQUOTA", "RUS", "F-3", "positive", "2019")
    assert f.counterpart == "GBR"
    assert f.summary == (
        "RUS accepted F-3 from GBR as flight no. 3 in 2019 over RUS, beyond its passive quota "
        "of 2: openness beyond what the Treaty requires."
    )


def test_overquota_a_group_counts_flights_over_all_its_members(session: Session) -> None:
    """Benelux holds one passive quota (6) for BEL, NLD and LUX."""
    members = ["BEL", "NLD", "LUX", "BEL", "NLD", "LUX", "BEL"]
    store(
        session,
        "observation_flights",
        *(
            flight(f"B-{i + 1}", "RUS", m, at("2019-01-10T10:00:00Z") + i * 7 * DAY)
            for i, m in enumerate(members)
        ),
    )
    [f] = check(session, "OS-OVERQUOTA")
    assert f.key == ("OS-OVERQUOTA", "BEL", "B-7", "positive", "2019")
    assert "as flight no. 7 in 2019 over Benelux, beyond its passive quota of 6" in f.summary


def test_overquota_phasing_period_ends_on_31_december_2005(session: Session) -> None:
    """Norway (7, i.e. 5 in the phasing period): the 6th flight of 2005 is beyond it; in 2006
    only the 8th would be. An ETA at 00:30 on 1 January 2006 in Oslo is still 2005 in UTC."""
    rows = [
        flight(f"P-{i + 1}", "DEU", "NOR", at("2005-06-01T10:00:00Z") + i * 10 * DAY)
        for i in range(5)
    ]
    rows.append(flight("P-6", "DEU", "NOR", "2006-01-01T00:30:00+01:00"))
    rows += [
        flight(f"Q-{i + 1}", "DEU", "NOR", at("2006-01-01T00:00:00Z") + i * 10 * DAY)
        for i in range(7)
    ]
    store(session, "observation_flights", *rows)
    [f] = check(session, "OS-OVERQUOTA")
    assert f.key == ("OS-OVERQUOTA", "NOR", "P-6", "positive", "2005")
    assert f.summary == (
        "NOR accepted P-6 from DEU as flight no. 6 in 2005 over NOR, beyond its passive quota "
        "of 5: 75 % of 7, rounded down, in the phasing period: openness beyond what the Treaty "
        "requires."
    )


@PROPERTY
@given(passive=st.integers(1, 12), flown=st.integers(1, 12))
def test_overquota_property_75_percent_rounded_down(
    session: Session, passive: int, flown: int
) -> None:
    with scratch(session):
        store(session, "quotas", quota("OST", "UKR", 2003, "passive", passive))
        store(
            session,
            "observation_flights",
            *flights_over("DEU", "UKR", flown, "2003-01-05T10:00:00Z"),
        )
        limit = passive * 3 // 4
        found = check(session, "OS-OVERQUOTA")
        assert {f.subject for f in found} == {f"F-{i}" for i in range(limit + 1, flown + 1)}
        assert all(f.evidence["passive_quota"] == limit for f in found)


@pytest.mark.parametrize(
    ("distributed", "accepted"), [(1, 0), (2, 1), (4, 3), (6, 4), (7, 5), (12, 9)]
)
def test_overquota_first_distribution_rounding(
    session: Session, distributed: int, accepted: int
) -> None:
    store(session, "quotas", quota("OST", "UKR", 2004, "passive", distributed))
    store(
        session,
        "observation_flights",
        *flights_over("DEU", "UKR", accepted + 1, "2004-01-05T10:00:00Z"),
    )
    [f] = check(session, "OS-OVERQUOTA")
    assert f.subject == f"F-{accepted + 1}"
    assert (f.evidence["passive_quota"], f.evidence["passive_quota_distributed"]) == (
        accepted,
        distributed,
    )


def test_the_phasing_period_follows_entry_into_force_in_the_participation_data(
    session: Session,
) -> None:
    """Were entry into force 2003 (every OST participation from 2003-01-01), the phasing
    period would run to 31 December 2006."""
    session.execute(
        update(RegimeParticipation)
        .where(
            RegimeParticipation.regime == "OST",
            RegimeParticipation.valid_from < dt.date(2003, 1, 1),
        )
        .values(valid_from=dt.date(2003, 1, 1))
    )
    session.flush()
    store(session, "quotas", quota("OST", "UKR", 2006, "passive", 4))
    store(session, "observation_flights", *flights_over("DEU", "UKR", 4, "2006-01-05T10:00:00Z"))
    [f] = check(session, "OS-OVERQUOTA")
    assert f.subject == "F-4" and f.evidence["phasing_period"] is True


def test_overquota_no_finding_for_a_withdrawn_observed_state(session: Session) -> None:
    store(session, "quotas", quota("OST", "RUS", 2021, "passive", 1))
    store(
        session,
        "observation_flights",
        flight("F-1", "DEU", "RUS", "2021-11-01T10:00:00Z"),
        flight("F-2", "FRA", "RUS", "2021-12-17T10:00:00Z"),
        flight("F-3", "GBR", "RUS", "2021-12-18T10:00:00Z"),
    )
    assert keys(check(session, "OS-OVERQUOTA")) == [
        ("OS-OVERQUOTA", "RUS", "F-2", "positive", "2021")
    ]
