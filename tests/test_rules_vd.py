"""Correctness of the Vienna Document rules at their boundaries.

Each test stores the few facts a case needs through the import service, runs the check for
one rule and asserts the exact findings: rule, State, subject, severity, period, and the
sentence that names the figures and the paragraph. Per rule: a breach, the compliant case
exactly at the boundary, and one unit past it; time zones, leap years and participation
where they matter.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session
from test_rules_support import (
    DAY,
    activity,
    at,
    check,
    day,
    findings,
    holding,
    inspection,
    keys,
    note,
    parties,
    quota,
    run,
    scratch,
    store,
    submission,
)

PROPERTY = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def pn(reference: str, sender: str, sent_at: str, activity_id: str) -> dict:
    return note(reference, "prior_notification", sender, sent_at, activity_id=activity_id)


# --- VD-V-3: prior notification 42 days before the start --------------------------------------


def test_v3_late_notification_names_the_figures_and_the_paragraph(session: Session) -> None:
    store(session, "activities", activity("Z-21", "RUS", "2020-09-01", "2020-09-10", troops=12800))
    store(session, "notifications", pn("PN-1", "RUS", "2020-08-02T09:00:00Z", "Z-21"))
    [f] = check(session, "VD-V-3")
    assert f.key == ("VD-V-3", "RUS", "Z-21", "late", "2020")
    assert f.summary == (
        "RUS notified activity Z-21 (12,800 troops) 30 days before its start; "
        "VD 2011 ¶38 requires 42."
    )
    assert f.due_at == at("2020-07-21T23:59:59Z")
    assert (f.evidence["days_before_start"], f.evidence["required_days"]) == (30, 42)


@pytest.mark.parametrize(
    ("figure", "threshold", "words"),
    [
        ("troops", 9000, "troops"),
        ("battle_tanks", 250, "battle tanks"),
        ("acv", 500, "ACV"),
        ("artillery", 250, "artillery pieces"),
        ("air_sorties", 200, "air sorties"),
        ("airborne_troops", 3000, "airborne/amphibious troops"),
    ],
)
def test_v3_any_one_figure_at_its_threshold_needs_notification(
    session: Session, figure: str, threshold: int, words: str
) -> None:
    store(
        session,
        "activities",
        activity("AT", "POL", "2021-05-10", **{figure: threshold}),
        activity("BELOW", "POL", "2021-05-10", **{figure: threshold - 1}),
    )
    [f] = check(session, "VD-V-3")
    assert f.key == ("VD-V-3", "POL", "AT", "breach", "2021")
    assert f.summary == (
        f"POL did not notify activity AT ({threshold:,} {words}), which started on 2021-05-10; "
        "VD 2011 ¶38 requires 42 days' prior notification."
    )


def test_v3_exactly_42_days_is_on_time_41_is_late(session: Session) -> None:
    store(
        session,
        "activities",
        *(activity(f"A-{n}", "DEU", "2021-06-30", troops=9000) for n in (41, 42, 43)),
    )
    start = day("2021-06-30")
    store(
        session,
        "notifications",
        *(pn(f"PN-{n}", "DEU", f"{start - n * DAY}T12:00:00Z", f"A-{n}") for n in (41, 42, 43)),
    )
    [f] = check(session, "VD-V-3")
    assert f.key == ("VD-V-3", "DEU", "A-41", "late", "2021")
    assert f.summary.endswith("41 days before its start; VD 2011 ¶38 requires 42.")


def test_v3_the_day_of_sending_is_the_utc_day(session: Session) -> None:
    """00:30 in Vienna on 22 July is still 21 July in UTC: 42 days before 1 September."""
    store(
        session,
        "activities",
        activity("EAST", "RUS", "2020-09-01", troops=9500),
        activity("WEST", "CAN", "2020-09-01", troops=9500),
    )
    store(
        session,
        "notifications",
        pn("PN-EAST", "RUS", "2020-07-22T00:30:00+01:00", "EAST"),  # 21 Jul 23:30 UTC
        pn("PN-WEST", "CAN", "2020-07-21T23:30:00-01:00", "WEST"),  # 22 Jul 00:30 UTC
    )
    [f] = check(session, "VD-V-3")
    assert f.key == ("VD-V-3", "CAN", "WEST", "late", "2020")
    assert "41 days before its start" in f.summary


def test_v3_forty_two_days_across_29_february(session: Session) -> None:
    """15 March 2020 minus 42 days is 2 February (29 February lies between); in 2021 it is
    1 February, so a notification on 2 February is on time in 2020 and late in 2021."""
    store(
        session,
        "activities",
        activity("LEAP-OK", "FRA", "2020-03-15", troops=9000),
        activity("LEAP-LATE", "FRA", "2020-03-15", troops=9000),
        activity("PLAIN-LATE", "FRA", "2021-03-15", troops=9000),
    )
    store(
        session,
        "notifications",
        pn("PN-1", "FRA", "2020-02-02T23:59:59Z", "LEAP-OK"),
        pn("PN-2", "FRA", "2020-02-03T00:00:00Z", "LEAP-LATE"),
        pn("PN-3", "FRA", "2021-02-02T00:00:00Z", "PLAIN-LATE"),
    )
    found = check(session, "VD-V-3")
    assert keys(found) == [
        ("VD-V-3", "FRA", "LEAP-LATE", "late", "2020"),
        ("VD-V-3", "FRA", "PLAIN-LATE", "late", "2021"),
    ]
    assert found[0].due_at == at("2020-02-02T23:59:59Z")
    assert all("41 days before its start" in f.summary for f in found)


def test_v3_alert_activities_are_notified_when_they_start(session: Session) -> None:
    store(
        session,
        "activities",
        *(
            activity(a, "RUS", "2021-06-01", kind="alert", troops=30000)
            for a in ("ON-DAY", "NEXT-DAY", "NEVER")
        ),
    )
    store(
        session,
        "notifications",
        pn("PN-1", "RUS", "2021-06-01T23:59:59Z", "ON-DAY"),
        pn("PN-2", "RUS", "2021-06-02T00:00:00Z", "NEXT-DAY"),
    )
    found = check(session, "VD-V-3")
    assert keys(found) == [
        ("VD-V-3", "RUS", "NEVER", "breach", "2021"),
        ("VD-V-3", "RUS", "NEXT-DAY", "late", "2021"),
    ]
    assert found[0].summary == (
        "RUS did not notify activity NEVER (30,000 troops), which started on 2021-06-01; "
        "VD 2011 ¶41 requires an alert activity to be notified when it starts."
    )
    assert found[1].summary == (
        "RUS notified alert activity NEXT-DAY (30,000 troops) on 2021-06-02, after its start "
        "on 2021-06-01; VD 2011 ¶41 requires an alert activity to be notified when it starts."
    )


def test_v3_uses_the_largest_figure_of_any_source_and_the_earliest_notification(
    session: Session,
) -> None:
    store(
        session,
        "activities",
        activity("A", "BLR", "2021-09-10", troops=8000),  # as notified: below
        activity("A", "BLR", "2021-09-09", source="open_source", troops=9500),
        activity("B", "BLR", "2021-09-10", troops=12000),
    )
    store(
        session,
        "notifications",
        pn("PN-A", "BLR", "2021-08-01T00:00:00Z", "A"),  # 39 days before 9 Sep
        pn("PN-B1", "BLR", "2021-07-01T00:00:00Z", "B"),  # on time
        pn("PN-B2", "BLR", "2021-09-01T00:00:00Z", "B"),  # a later update does not matter
    )
    [f] = check(session, "VD-V-3")
    assert f.key == ("VD-V-3", "BLR", "A", "late", "2021")
    assert f.summary == (
        "BLR notified activity A (9,500 troops) 39 days before its start; VD 2011 ¶38 requires 42."
    )


def test_v3_no_finding_for_a_state_not_yet_participating_when_notice_was_due(
    session: Session,
) -> None:
    """Mongolia joined on 2012-11-21: notice for a start on 2012-12-20 was due on 2012-11-08
    (before it joined); for a start on 2013-01-05 it was due on 2012-11-24."""
    store(
        session,
        "activities",
        activity("MNG-1", "MNG", "2012-12-20", troops=10000),
        activity("MNG-2", "MNG", "2013-01-05", troops=10000),
    )
    assert keys(check(session, "VD-V-3")) == [("VD-V-3", "MNG", "MNG-2", "breach", "2013")]


@PROPERTY
@given(
    cases=st.lists(st.tuples(st.integers(8900, 9100), st.integers(0, 60)), min_size=1, max_size=8)
)
def test_v3_property_finding_iff_at_threshold_and_under_42_days(
    session: Session, cases: list[tuple[int, int]]
) -> None:
    start = day("2022-05-01")
    with scratch(session):
        store(
            session,
            "activities",
            *(activity(f"P-{i}", "ITA", start, troops=t) for i, (t, _) in enumerate(cases)),
        )
        store(
            session,
            "notifications",
            *(
                pn(f"PN-{i}", "ITA", f"{start - lead * DAY}T06:00:00Z", f"P-{i}")
                for i, (_, lead) in enumerate(cases)
            ),
        )
        got = {f.subject: f for f in check(session, "VD-V-3")}
        expected = {f"P-{i}" for i, (t, lead) in enumerate(cases) if t >= 9000 and lead < 42}
        assert set(got) == expected
        for i, (_, lead) in enumerate(cases):
            if f"P-{i}" in got:
                assert got[f"P-{i}"].severity == "late"
                assert f"{lead} days before its start" in got[f"P-{i}"].summary


# --- VD-VII-3: notifiable activities in the annual calendar ------------------------------------


def test_vii3_notifiable_activity_missing_from_the_calendar(session: Session) -> None:
    store(
        session,
        "activities",
        activity("AT", "TUR", "2021-05-10", troops=9000),
        activity("BELOW", "TUR", "2021-05-10", troops=8999),
        activity("LISTED", "TUR", "2021-05-10", troops=20000),
        activity("LISTED", "TUR", "2021-05-10", source="calendar", troops=15000),
        activity("ALERT", "TUR", "2021-05-10", kind="alert", troops=20000),
        activity("AIR", "TUR", "2021-05-10", kind="air", air_sorties=200),
    )
    found = check(session, "VD-VII-3")
    assert keys(found) == [
        ("VD-VII-3", "TUR", "AIR", "warning", "2021"),
        ("VD-VII-3", "TUR", "AT", "warning", "2021"),
    ]
    assert found[1].summary == (
        "TUR's notifiable activity AT (9,000 troops, starting 2021-05-10) is not in its annual "
        "calendar for 2021; VD 2011 ¶61 requires notifiable activities to be listed in the "
        "calendar."
    )


# --- VD-VI-1: observation invitation -------------------------------------------------------------


def test_vi1_observation_thresholds(session: Session) -> None:
    store(
        session,
        "activities",
        activity("AT", "RUS", "2021-09-10", troops=13000),
        activity("BELOW", "RUS", "2021-09-10", troops=12999),
        activity("INVITED", "RUS", "2021-09-10", troops=50000),
        activity("AIRBORNE", "RUS", "2021-09-10", kind="airborne", airborne_troops=3500),
        activity("AIRBORNE-BELOW", "RUS", "2021-09-10", kind="airborne", airborne_troops=3499),
    )
    store(
        session,
        "notifications",
        note(
            "OI-1", "observation_invitation", "RUS", "2021-07-01T00:00:00Z", activity_id="INVITED"
        ),
    )
    found = check(session, "VD-VI-1")
    assert keys(found) == [
        ("VD-VI-1", "RUS", "AIRBORNE", "breach", "2021"),
        ("VD-VI-1", "RUS", "AT", "breach", "2021"),
    ]
    assert found[1].summary == (
        "RUS invited no observers to activity AT (13,000 troops, starting 2021-09-10); "
        "VD 2011 ¶47.4 requires an invitation at or above the observation thresholds."
    )


# --- VD-VIII-4: large activities forecast by 15 November of year -2 ------------------------------


def test_viii4_more_than_40000_troops_must_be_forecast_by_15_november_two_years_ahead(
    session: Session,
) -> None:
    store(
        session,
        "activities",
        activity("AT-40000", "RUS", "2020-09-01", troops=40000),  # "more than": not large
        activity("NEVER", "RUS", "2020-09-01", troops=40001),
        activity("ON-TIME", "RUS", "2020-09-01", troops=60000),
        activity("VIENNA", "RUS", "2020-09-01", troops=60000),
        activity("LATE", "RUS", "2020-09-01", battle_tanks=901),
        activity("TANKS-900", "RUS", "2020-09-01", battle_tanks=900),
    )
    forecast = "forecast_two_year"
    store(
        session,
        "notifications",
        note("F-1", forecast, "RUS", "2018-11-15T23:59:59Z", activity_id="ON-TIME"),
        note("F-2", forecast, "RUS", "2018-11-16T00:30:00+01:00", activity_id="VIENNA"),
        note("F-3", forecast, "RUS", "2018-11-16T00:00:00Z", activity_id="LATE"),
    )
    found = check(session, "VD-VIII-4")
    assert keys(found) == [
        ("VD-VIII-4", "RUS", "LATE", "breach", "2020"),
        ("VD-VIII-4", "RUS", "NEVER", "breach", "2020"),
    ]
    assert found[0].summary == (
        "RUS announced it only on 2018-11-16 for activity LATE (901 battle tanks, starting "
        "2020-09-01); VD 2011 ¶68 requires an announcement by 2018-11-15."
    )
    assert found[1].summary.startswith("RUS never announced it for activity NEVER (40,001 troops")
    assert found[0].due_at == at("2018-11-15T23:59:59Z")


# --- VD-VIII-1: at most three simultaneous activities --------------------------------------------


def test_viii1_a_fourth_simultaneous_activity_above_13000(session: Session) -> None:
    store(
        session,
        "activities",
        activity("S-1", "RUS", "2021-09-01", "2021-09-20", troops=13001),
        activity("S-2", "RUS", "2021-09-02", "2021-09-20", battle_tanks=301),
        activity("S-3", "RUS", "2021-09-03", "2021-09-10", artillery=301),
        activity("S-4", "RUS", "2021-09-10", "2021-09-10", acv=501),  # S-3 ends that day
        # Not counted: exactly at the thresholds ("more than"), or ended the day before.
        activity("N-1", "RUS", "2021-09-01", "2021-09-20", troops=13000),
        activity("N-2", "RUS", "2021-09-05", "2021-09-20", artillery=300),
        activity("N-3", "RUS", "2021-09-11", "2021-09-12", troops=20000),  # S-3, S-4 over
        activity("OTHER", "BLR", "2021-09-10", "2021-09-20", troops=20000),
    )
    found = check(session, "VD-VIII-1")
    assert keys(found) == [("VD-VIII-1", "RUS", "S-4", "breach", "2021")]
    assert found[0].summary == (
        "When S-4 started on 2021-09-10, RUS had 4 activities above the ¶67.3 thresholds "
        "running at once; VD 2011 ¶67.3 allows 3."
    )
    assert found[0].evidence["running"] == ["S-1", "S-2", "S-3", "S-4"]


# --- VD-VIII-5: frequency limits ---------------------------------------------------------------


def test_viii5_seventh_activity_above_13000_in_a_year(session: Session) -> None:
    rows = [
        activity(f"Y-{n}", "RUS", dt.date(2021, n, 1), troops=13001 if n != 3 else 13000)
        for n in range(1, 9)
    ]
    store(session, "activities", *rows)
    found = check(session, "VD-VIII-5")
    # Y-3 is exactly 13,000 ("more than" does not count it): Y-8 is the 7th.
    assert keys(found) == [("VD-VIII-5", "RUS", "Y-8", "breach", "2021")]
    assert found[0].summary == (
        "Y-8 (starting 2021-08-01) was RUS's 7th activity in 2021 above the ¶67.2 thresholds "
        "(13,000 troops, 300 battle tanks); VD 2011 ¶67.2 allows 6 per calendar year."
    )


def test_viii5_fourth_activity_above_25000_in_a_year(session: Session) -> None:
    store(
        session,
        "activities",
        activity("L-1", "RUS", "2021-01-10", troops=25001),
        activity("L-2", "RUS", "2021-03-10", battle_tanks=401),
        activity("L-3", "RUS", "2021-05-10", troops=30000),
        activity("L-X", "RUS", "2021-06-10", troops=25000, battle_tanks=400),  # not above
        activity("L-4", "RUS", "2021-07-10", troops=26000),
        activity("NEXT", "RUS", "2022-01-10", troops=26000),  # a new year
    )
    found = check(session, "VD-VIII-5")
    assert keys(found) == [("VD-VIII-5", "RUS", "L-4", "breach", "2021")]
    assert "RUS's 4th activity in 2021 above the ¶67.2.1 thresholds" in found[0].summary
    assert found[0].summary.endswith("VD 2011 ¶67.2.1 allows 3 per calendar year.")


def test_viii5_one_activity_above_40000_in_three_calendar_years(session: Session) -> None:
    store(
        session,
        "activities",
        activity("BIG-2017", "RUS", "2017-09-14", troops=40001),
        activity("BIG-2020", "RUS", "2020-09-14", troops=40001),  # 2017 is 3 years back
        activity("BIG-2022", "RUS", "2022-01-10", battle_tanks=901),  # 2020 is within 3
        activity("AT-2021", "RUS", "2021-09-14", troops=40000),  # exactly: not counted
    )
    found = check(session, "VD-VIII-5")
    assert keys(found) == [("VD-VIII-5", "RUS", "BIG-2022", "breach", "2022")]
    assert found[0].summary == (
        "RUS carried out BIG-2022 (starting 2022-01-10) within 3 calendar years of BIG-2020, "
        "all above the ¶67.1 thresholds; VD 2011 ¶67.1 allows 1 such activity in 3 years."
    )


# --- VD-NEAR: the near-threshold signal ----------------------------------------------------------


def test_near_threshold_signal_for_declared_figures_within_10_percent(session: Session) -> None:
    store(
        session,
        "activities",
        activity("LOW-EDGE", "BLR", "2021-09-10", troops=8100),  # 90 % of 9,000
        activity("UNDER", "BLR", "2021-09-10", troops=8099),
        activity("AT", "BLR", "2021-09-10", troops=9000),
        activity("ZAPAD", "BLR", "2021-09-10", source="calendar", troops=12800),
        activity("ABOVE", "BLR", "2021-09-10", troops=9001),
        activity("SEEN", "BLR", "2021-09-10", source="open_source", troops=8500),
    )
    found = check(session, "VD-NEAR")
    assert keys(found) == [
        ("VD-NEAR", "BLR", "AT", "info", "2021"),
        ("VD-NEAR", "BLR", "LOW-EDGE", "info", "2021"),
        ("VD-NEAR", "BLR", "ZAPAD", "info", "2021"),
    ]
    assert found[2].summary == (
        "BLR declared 12,800 troops for ZAPAD, within 10% below the 13,000 threshold "
        "(observation); a signal for analysts, not a breach."
    )


# --- VD-IX-I2: inspections within the passive quota ----------------------------------------------


def test_i2_refusal_within_the_quota_is_a_breach(session: Session) -> None:
    store(
        session,
        "inspections",
        inspection("I-1", "FRA", "RUS", "2020-02-01T09:00:00Z"),
        inspection("I-2", "GBR", "RUS", "2020-03-01T09:00:00Z"),
        inspection("I-3", "DEU", "RUS", "2020-05-01T09:00:00Z", "refused"),
    )
    [f] = check(session, "VD-IX-I2")
    assert f.key == ("VD-IX-I2", "RUS", "I-3", "breach", "2020")
    assert f.counterpart == "DEU"
    assert f.summary == (
        "RUS refused inspection request I-3 from DEU (2020-05-01 09:00 UTC) having accepted 2 "
        "of its 3 inspections that year; VD 2011 ¶75-77 requires acceptance within the quota."
    )


def test_i2_no_breach_once_three_were_accepted(session: Session) -> None:
    store(
        session,
        "inspections",
        inspection("I-1", "FRA", "RUS", "2020-02-01T09:00:00Z"),
        inspection("I-2", "GBR", "RUS", "2020-03-01T09:00:00Z"),
        inspection("I-3", "POL", "RUS", "2020-04-01T09:00:00Z"),
        inspection("I-4", "DEU", "RUS", "2020-05-01T09:00:00Z", "refused"),
    )
    assert check(session, "VD-IX-I2") == []


def test_i2_one_per_year_from_the_same_state(session: Session) -> None:
    store(
        session,
        "inspections",
        inspection("I-1", "DEU", "RUS", "2020-02-01T09:00:00Z"),
        inspection("I-2", "DEU", "RUS", "2020-05-01T09:00:00Z", "refused"),
        inspection("I-3", "DEU", "RUS", "2021-01-05T09:00:00Z", "no_reply"),  # a new year
    )
    [f] = check(session, "VD-IX-I2")
    assert f.key == ("VD-IX-I2", "RUS", "I-3", "breach", "2021")
    assert f.summary.startswith("RUS did not answer inspection request I-3 from DEU")


def test_i2_force_majeure_is_not_a_refusal_nor_does_it_use_the_quota(session: Session) -> None:
    store(
        session,
        "inspections",
        inspection("I-1", "FRA", "ARM", "2020-02-01T09:00:00Z"),
        inspection("I-2", "GBR", "ARM", "2020-03-01T09:00:00Z"),
        # Accepted, then not carried out because of force majeure: not counted.
        inspection(
            "I-3",
            "POL",
            "ARM",
            "2020-03-10T09:00:00Z",
            outcome="not_carried_out",
            counts_against_quota=False,
            start_at=None,
            end_at=None,
            report_at=None,
        ),
        inspection("I-4", "ITA", "ARM", "2020-03-20T09:00:00Z", "force_majeure"),
        inspection("I-5", "DEU", "ARM", "2020-04-01T09:00:00Z", "refused"),
    )
    [f] = check(session, "VD-IX-I2")
    assert f.key == ("VD-IX-I2", "ARM", "I-5", "breach", "2020")
    assert "having accepted 2 of its 3 inspections" in f.summary


def test_i2_a_refusal_is_judged_against_the_acceptances_before_it(session: Session) -> None:
    store(
        session,
        "inspections",
        inspection("I-1", "DEU", "RUS", "2020-01-15T09:00:00Z", "refused"),
        inspection("I-2", "FRA", "RUS", "2020-02-01T09:00:00Z"),
        inspection("I-3", "GBR", "RUS", "2020-03-01T09:00:00Z"),
        inspection("I-4", "POL", "RUS", "2020-04-01T09:00:00Z"),
    )
    [f] = check(session, "VD-IX-I2")
    assert f.key == ("VD-IX-I2", "RUS", "I-1", "breach", "2020")
    assert "having accepted 0 of its 3" in f.summary


def test_i2_the_year_of_a_request_is_its_utc_year(session: Session) -> None:
    """Requested at 00:30 on 1 January in Vienna, i.e. 23:30 UTC on 31 December: it counts
    against the previous year, so in 2020 only two were accepted before the refusal."""
    store(
        session,
        "inspections",
        inspection("I-0", "POL", "RUS", "2020-01-01T00:30:00+01:00"),
        inspection("I-1", "FRA", "RUS", "2020-02-01T09:00:00Z"),
        inspection("I-2", "GBR", "RUS", "2020-03-01T09:00:00Z"),
        inspection("I-3", "DEU", "RUS", "2020-05-01T09:00:00Z", "refused"),
    )
    [f] = check(session, "VD-IX-I2")
    assert f.key == ("VD-IX-I2", "RUS", "I-3", "breach", "2020")
    assert "having accepted 2 of its 3" in f.summary


@PROPERTY
@given(
    requests=st.lists(
        st.tuples(
            st.sampled_from(["DEU", "FRA", "GBR", "POL"]),
            st.sampled_from(["accepted", "refused", "no_reply", "force_majeure"]),
        ),
        min_size=1,
        max_size=7,
    )
)
def test_i2_property_refusals_are_breaches_only_within_the_quota(
    session: Session, requests: list[tuple[str, str]]
) -> None:
    start = at("2020-01-06T09:00:00Z")
    expected, accepted = set(), []
    for i, (requester, reply) in enumerate(requests):
        if reply in ("refused", "no_reply") and len(accepted) < 3 and requester not in accepted:
            expected.add(f"I-{i}")
        if reply == "accepted":
            accepted.append(requester)
    with scratch(session):
        store(
            session,
            "inspections",
            *(
                inspection(f"I-{i}", requester, "RUS", start + i * DAY, reply)
                for i, (requester, reply) in enumerate(requests)
            ),
        )
        assert {f.subject for f in check(session, "VD-IX-I2")} == expected


# --- VD-IX-I4: reply within 24 hours -------------------------------------------------------------


def test_i4_exactly_24_hours_is_on_time(session: Session) -> None:
    store(
        session,
        "inspections",
        inspection("ON", "DEU", "RUS", "2020-03-01T09:00:00Z", replied_at="2020-03-02T09:00:00Z"),
        inspection("OVER", "FRA", "RUS", "2020-03-05T09:00:00Z", replied_at="2020-03-06T09:01:00Z"),
        # 23:30 on 1 March at UTC-1 to 01:30 on 3 March at UTC+1: exactly 24 hours.
        inspection(
            "ZONES",
            "GBR",
            "RUS",
            "2020-03-01T23:30:00-01:00",
            replied_at="2020-03-03T01:30:00+01:00",
        ),
    )
    [f] = check(session, "VD-IX-I4")
    assert f.key == ("VD-IX-I4", "RUS", "OVER", "late", "2020")
    assert f.summary == (
        "RUS answered inspection request OVER from FRA 24 hours 1 minute after it was made; "
        "VD 2011 ¶85 requires a reply within 24 hours."
    )
    assert f.due_at == at("2020-03-06T09:00:00Z")


# --- VD-IX-I6: report within 14 days -------------------------------------------------------------


def test_i6_report_within_14_days_across_29_february(session: Session) -> None:
    base = dict(start_at="2020-02-18T12:00:00Z", end_at="2020-02-20T12:00:00Z")
    store(
        session,
        "inspections",
        inspection(
            "ON", "DEU", "RUS", "2020-02-17T09:00:00Z", report_at="2020-03-05T12:00:00Z", **base
        ),
        inspection(
            "OVER", "FRA", "RUS", "2020-02-17T10:00:00Z", report_at="2020-03-05T12:01:00Z", **base
        ),
    )
    [f] = check(session, "VD-IX-I6")
    assert f.key == ("VD-IX-I6", "FRA", "OVER", "late", "2020")
    assert f.summary == (
        "FRA circulated the report of inspection OVER in RUS 14 days 1 minute after it ended; "
        "VD 2011 ¶100 requires it within 14 days."
    )


# --- VD-IX-E2: evaluation visits within the passive evaluation quota -----------------------------


def evaluation(ident: str, requester: str, receiver: str, when: str, reply: str = "accepted", **kw):
    return inspection(ident, requester, receiver, when, reply, kind="vd_evaluation", **kw)


def test_e2_refusal_within_the_quota_table(session: Session) -> None:
    store(
        session,
        "quotas",
        quota("VD", "RUS", 2020, "passive", 2),
        quota("VD", "BLR", 2020, "passive", 1),
    )
    store(
        session,
        "inspections",
        evaluation("E-1", "FRA", "RUS", "2020-02-01T09:00:00Z"),
        evaluation("E-2", "DEU", "RUS", "2020-03-01T09:00:00Z", "refused"),
        evaluation("E-3", "FRA", "BLR", "2020-02-01T09:00:00Z"),
        evaluation("E-4", "DEU", "BLR", "2020-03-01T09:00:00Z", "refused"),  # quota used up
        evaluation("E-5", "FRA", "RUS", "2020-04-01T09:00:00Z", "force_majeure"),
    )
    [f] = check(session, "VD-IX-E2")
    assert f.key == ("VD-IX-E2", "RUS", "E-2", "breach", "2020")
    assert f.summary == (
        "RUS refused evaluation visit E-2 from DEU having accepted 1 of its quota of 2 that "
        "year (0 from DEU); VD 2011 ¶107 requires acceptance within the quota."
    )


@pytest.mark.parametrize(
    ("units", "expected"),
    [(1, 1), (60, 1), (61, 2), (120, 2), (121, 3), (899, 15), (900, 15), (901, 15)],
)
def test_e2_quota_from_reported_units_is_min_15_ceil_units_over_60(
    session: Session, units: int, expected: int
) -> None:
    store(
        session,
        "holdings",
        *(
            holding("KAZ", "2020-01-01", 1, category="personnel", source="vd_aemi", unit=f"U{n}")
            for n in range(units)
        ),
        holding("KAZ", "2020-01-01", 50000, category="personnel", source="vd_aemi"),  # total
    )
    store(
        session, "inspections", evaluation("E-1", "DEU", "KAZ", "2020-03-01T09:00:00Z", "refused")
    )
    [f] = check(session, "VD-IX-E2")
    assert f.key == ("VD-IX-E2", "KAZ", "E-1", "breach", "2020")
    assert f.evidence["quota"] == expected
    assert f"of its quota of {expected} that year" in f.summary


def test_e2_a_quota_of_one_from_60_units_is_used_up_by_one_visit(session: Session) -> None:
    store(
        session,
        "holdings",
        *(
            holding("KAZ", "2020-01-01", 1, category="personnel", source="vd_aemi", unit=f"U{n}")
            for n in range(60)
        ),
        *(
            holding("UZB", "2020-01-01", 1, category="personnel", source="vd_aemi", unit=f"U{n}")
            for n in range(61)
        ),
        # Units of another year do not count for 2020.
        *(
            holding("UZB", "2019-01-01", 1, category="personnel", source="vd_aemi", unit=f"X{n}")
            for n in range(100)
        ),
    )
    store(
        session,
        "inspections",
        evaluation("K-1", "FRA", "KAZ", "2020-02-01T09:00:00Z"),
        evaluation("K-2", "DEU", "KAZ", "2020-03-01T09:00:00Z", "refused"),
        evaluation("U-1", "FRA", "UZB", "2020-02-01T09:00:00Z"),
        evaluation("U-2", "DEU", "UZB", "2020-03-01T09:00:00Z", "refused"),
    )
    assert keys(check(session, "VD-IX-E2")) == [("VD-IX-E2", "UZB", "U-2", "breach", "2020")]


def test_e2_the_quota_is_capped_at_15(session: Session) -> None:
    requesters = [
        "AUT",
        "BEL",
        "BGR",
        "CAN",
        "CHE",
        "CZE",
        "DEU",
        "DNK",
        "ESP",
        "EST",
        "FIN",
        "FRA",
        "GBR",
        "GRC",
    ]
    store(
        session,
        "holdings",
        *(
            holding("RUS", "2020-01-01", 1, category="personnel", source="vd_aemi", unit=f"U{n}")
            for n in range(1000)
        ),
    )
    store(
        session,
        "inspections",
        *(
            evaluation(f"E-{i:02d}", s, "RUS", f"2020-01-{i + 2:02d}T09:00:00Z")
            for i, s in enumerate(requesters)
        ),
        evaluation("E-15", "HUN", "RUS", "2020-02-01T09:00:00Z", "refused"),  # 14 accepted
        evaluation("E-16", "ITA", "RUS", "2020-02-02T09:00:00Z"),  # the 15th
        evaluation("E-17", "IRL", "RUS", "2020-02-03T09:00:00Z", "refused"),  # quota filled
    )
    [f] = check(session, "VD-IX-E2")
    assert f.key == ("VD-IX-E2", "RUS", "E-15", "breach", "2020")
    assert "having accepted 14 of its quota of 15" in f.summary


@pytest.mark.parametrize(
    ("quota_value", "accepted_from_deu", "breach"),
    [
        (4, 1, False),  # quota below 5: one per requester
        (5, 1, False),  # one fifth of 5 = 1
        (9, 1, False),  # one fifth of 9 = 1.8, rounded down: 1
        (10, 1, True),  # one fifth of 10 = 2
        (10, 2, False),
    ],
)
def test_e2_per_requester_one_fifth_rounded_down(
    session: Session, quota_value: int, accepted_from_deu: int, breach: bool
) -> None:
    store(session, "quotas", quota("VD", "UKR", 2021, "passive", quota_value))
    store(
        session,
        "inspections",
        *(
            evaluation(f"E-{n}", "DEU", "UKR", f"2021-02-0{n + 1}T09:00:00Z")
            for n in range(accepted_from_deu)
        ),
        evaluation("E-X", "DEU", "UKR", "2021-03-01T09:00:00Z", "refused"),
    )
    found = check(session, "VD-IX-E2")
    assert keys(found) == ([("VD-IX-E2", "UKR", "E-X", "breach", "2021")] if breach else [])
    if breach:
        assert found[0].evidence["per_requester_limit"] == 2


def test_e2_per_unit_limits(session: Session) -> None:
    store(session, "quotas", quota("VD", "UKR", 2021, "passive", 10))
    store(
        session,
        "inspections",
        evaluation("A-1", "FRA", "UKR", "2021-02-01T09:00:00Z", unit="1st Brigade"),
        evaluation("A-2", "GBR", "UKR", "2021-02-02T09:00:00Z", unit="1st Brigade"),
        evaluation("A-3", "DEU", "UKR", "2021-02-03T09:00:00Z", unit="2nd Brigade"),
        # 1st Brigade was evaluated twice this year: no obligation.
        evaluation("R-1", "POL", "UKR", "2021-03-01T09:00:00Z", "refused", unit="1st Brigade"),
        # 2nd Brigade was evaluated by DEU already: not again by DEU, but by POL.
        evaluation("R-2", "DEU", "UKR", "2021-03-02T09:00:00Z", "refused", unit="2nd Brigade"),
        evaluation("R-3", "POL", "UKR", "2021-03-03T09:00:00Z", "refused", unit="2nd Brigade"),
    )
    assert keys(check(session, "VD-IX-E2")) == [("VD-IX-E2", "UKR", "R-3", "breach", "2021")]


# --- VD-III-1: unusual military activity, reply within 48 hours ----------------------------------


def test_iii1_reply_within_48_hours(session: Session) -> None:
    ask = "unusual_activity_request"
    store(
        session,
        "notifications",
        note("R-ON", ask, "UKR", "2022-02-11T10:00:00Z", recipients="RUS"),
        note("R-LATE", ask, "UKR", "2022-02-11T11:00:00Z", recipients="RUS"),
        note("R-TWO", ask, "LTU", "2022-02-10T08:00:00Z", recipients="RUS BLR"),
    )
    reply = "unusual_activity_reply"
    store(
        session,
        "notifications",
        note("A-ON", reply, "RUS", "2022-02-13T10:00:00Z", in_reply_to="R-ON"),
        note("A-LATE", reply, "RUS", "2022-02-13T11:00:01Z", in_reply_to="R-LATE"),
        note("A-TWO", reply, "RUS", "2022-02-11T08:00:00Z", in_reply_to="R-TWO"),
        # A later message: the data speak for the days after BLR's deadline.
        note("LATER", "annual_calendar", "DEU", "2022-03-01T00:00:00Z", covers_year=2023),
    )
    found = check(session, "VD-III-1")
    assert keys(found) == [
        ("VD-III-1", "RUS", "R-LATE", "late", "2022"),
        ("VD-III-1", "BLR", "R-TWO", "breach", "2022"),
    ]
    assert found[0].summary == (
        "RUS replied to UKR's request R-LATE 48 hours 1 second after it was sent; VD 2011 "
        "Chapter III requires a reply within 48 hours."
    )
    assert found[1].summary == (
        "BLR has not replied to LTU's request R-TWO about an unusual military activity "
        "(2022-02-10 08:00 UTC); VD 2011 Chapter III requires a reply within 48 hours."
    )
    assert found[1].due_at == at("2022-02-12T08:00:00Z")


def test_iii1_a_missing_reply_is_not_judged_before_the_data_reach_its_deadline(
    session: Session,
) -> None:
    store(
        session,
        "notifications",
        note("R-1", "unusual_activity_request", "UKR", "2022-02-11T10:00:00Z", recipients="RUS"),
        note("LATER", "annual_calendar", "DEU", "2022-02-13T09:59:59Z", covers_year=2023),
    )
    assert check(session, "VD-III-1") == []
    store(
        session,
        "notifications",
        note("LATEST", "annual_calendar", "FRA", "2022-02-13T10:00:01Z", covers_year=2023),
    )
    assert keys(check(session, "VD-III-1")) == [("VD-III-1", "RUS", "R-1", "breach", "2022")]


# --- VD-I-3 and VD-VII-1: annual exchange and calendar -------------------------------------------


def everyone_on_time(
    session: Session, kind: str, covers_year: int, sent_at: str, *, but: tuple[str, ...] = ()
) -> list[dict]:
    due = f"{covers_year - 1}-12-15" if kind == "annual_exchange" else f"{covers_year - 1}-11-15"
    return [
        submission(s, "VD", kind, covers_year, sent_at)
        for s in parties(session, "VD", due)
        if s not in but
    ]


def test_i3_deadline_is_15_december_23_59_59_utc(session: Session) -> None:
    special = ("ARM", "AZE", "BLR", "GEO", "KAZ", "KGZ", "MDA")
    rows = everyone_on_time(session, "annual_exchange", 2020, "2019-12-01T09:00:00Z", but=special)
    ex = "annual_exchange"
    rows += [
        submission("ARM", "VD", ex, 2020, "2019-12-15T23:59:59Z"),
        submission("AZE", "VD", ex, 2020, "2019-12-15T23:00:00Z", "2019-12-16T00:00:00Z"),
        # Received at 00:30 on 16 December in Vienna: 23:30 UTC on the 15th, on time.
        submission("BLR", "VD", ex, 2020, "2019-12-15T22:00:00Z", "2019-12-16T00:30:00+01:00"),
        # GEO: nothing on record.
        submission("KAZ", "VD", ex, 2020, "2019-12-10T00:00:00Z", nil_report=True),
        submission("KGZ", "VD", ex, 2020, "2020-01-05T00:00:00Z", nil_report=True),
        submission("MDA", "VD", ex, 2020, "2020-03-05T12:00:00Z"),
    ]
    store(session, "notifications", *rows)
    found = check(session, "VD-I-3")
    assert keys(found) == [
        ("VD-I-3", "GEO", "", "breach", "2020"),
        ("VD-I-3", "AZE", "VD-AZE-2020-annual_exchange", "late", "2020"),
        ("VD-I-3", "KGZ", "VD-KGZ-2020-annual_exchange", "late", "2020"),
        ("VD-I-3", "MDA", "VD-MDA-2020-annual_exchange", "late", "2020"),
    ]
    by_state = {f.state: f for f in found}
    assert by_state["GEO"].summary == (
        "GEO has no annual exchange of military information for 2020 on record; VD 2011 ¶10 "
        "requires it by 15 December 2019."
    )
    assert by_state["AZE"].summary == (
        "AZE sent its annual exchange of military information for 2020 "
        "(VD-AZE-2020-annual_exchange) on 2019-12-16 00:00 UTC, 1 day after the deadline; "
        "VD 2011 ¶10 requires it by 15 December 2019."
    )
    assert by_state["KGZ"].evidence["nil_report"] is True
    assert "81 days after the deadline" in by_state["MDA"].summary
    assert all(f.due_at == at("2019-12-15T23:59:59Z") for f in found)


def test_i3_not_judged_before_the_deadline_has_passed(session: Session) -> None:
    rows = everyone_on_time(session, "annual_exchange", 2020, "2019-12-01T09:00:00Z", but=("GEO",))
    store(session, "notifications", *rows)
    assert check(session, "VD-I-3", as_of=at("2019-12-15T23:59:59Z")) == []
    assert keys(check(session, "VD-I-3", as_of=at("2019-12-16T00:00:00Z"))) == [
        ("VD-I-3", "GEO", "", "breach", "2020")
    ]


def test_i3_no_finding_for_a_state_not_participating_on_the_due_date(session: Session) -> None:
    """Mongolia joined on 2012-11-21: nothing was due from it on 2011-12-15 (for 2012); the
    exchange for 2013 was due on 2012-12-15."""
    rows = everyone_on_time(session, "annual_exchange", 2012, "2011-12-01T09:00:00Z")
    rows += everyone_on_time(session, "annual_exchange", 2013, "2012-12-01T09:00:00Z", but=("MNG",))
    assert not any(r["sender"] == "MNG" for r in rows)
    store(session, "notifications", *rows)
    assert keys(check(session, "VD-I-3")) == [("VD-I-3", "MNG", "", "breach", "2013")]


def test_i3_absence_is_judged_only_for_periods_the_data_cover(session: Session) -> None:
    """57 States owe the 2020 exchange; missing ones are reported once at least half (29) of
    them are in the data: with 28 nothing is reported, with 29 the other 28 are."""
    owed = parties(session, "VD", "2019-12-15")
    assert len(owed) == 57
    rows = [submission(s, "VD", "annual_exchange", 2020, "2019-12-01T00:00:00Z") for s in owed]
    store(session, "notifications", *rows[:28])
    result = run(session, "VD-I-3")
    assert result.detected == 0
    assert {"period": 2020, "why": "28 of 57 States' submissions in the data"} in result.coverage[
        "VD-I-3"
    ]["skipped"]
    store(session, "notifications", rows[28])
    result = run(session, "VD-I-3")
    assert 2020 in result.coverage["VD-I-3"]["evaluated"]
    found = findings(session, "VD-I-3")
    assert len(found) == 28
    assert {f.state for f in found} == set(owed) - {r["sender"] for r in rows[:29]}
    assert all(f.severity == "breach" for f in found)


def test_i3_a_single_states_submission_does_not_report_the_others_missing(session: Session) -> None:
    store(
        session,
        "notifications",
        submission("DEU", "VD", "annual_exchange", 2020, "2019-12-20T00:00:00Z"),
    )
    assert check(session, "VD-I-3") == []


def test_vii1_calendar_due_15_november(session: Session) -> None:
    cal = "annual_calendar"
    rows = everyone_on_time(session, cal, 2020, "2019-11-01T00:00:00Z", but=("ARM", "AZE", "GEO"))
    rows += [
        submission("ARM", "VD", cal, 2020, "2019-11-15T23:59:59Z"),
        submission("AZE", "VD", cal, 2020, "2019-11-16T00:00:00Z"),
    ]
    store(session, "notifications", *rows)
    found = check(session, "VD-VII-1")
    assert keys(found) == [
        ("VD-VII-1", "GEO", "", "breach", "2020"),
        ("VD-VII-1", "AZE", "VD-AZE-2020-annual_calendar", "late", "2020"),
    ]
    assert found[1].summary == (
        "AZE sent its annual calendar for 2020 (VD-AZE-2020-annual_calendar) on 2019-11-16 "
        "00:00 UTC, 1 day after the deadline; VD 2011 ¶61 requires it by 15 November 2019."
    )


def test_i3_a_late_submission_is_late_not_missing_and_the_first_one_counts(
    session: Session,
) -> None:
    rows = everyone_on_time(session, "annual_exchange", 2020, "2019-12-01T00:00:00Z", but=("ARM",))
    rows += [
        submission("ARM", "VD", "annual_exchange", 2020, "2020-02-01T00:00:00Z", reference="ARM-1"),
        submission("ARM", "VD", "annual_exchange", 2020, "2020-03-01T00:00:00Z", reference="ARM-2"),
    ]
    store(session, "notifications", *rows)
    [f] = check(session, "VD-I-3")
    assert f.key == ("VD-I-3", "ARM", "ARM-1", "late", "2020")
    assert "48 days after the deadline" in f.summary


# --- the whole catalogue on compliant facts ------------------------------------------------------


def test_every_rule_is_quiet_on_compliant_facts(session: Session) -> None:
    """One compliant record of each kind: no rule finds anything, and none trips over a frame
    that its filters leave empty (a rule once reported phantom rows in that case)."""
    from test_rules_support import flight, reduction

    from cbm.compliance.registry import all_rules

    store(session, "activities", activity("A-1", "DEU", "2020-06-01", troops=5000))
    store(session, "inspections", inspection("I-1", "FRA", "DEU", "2020-03-01T09:00:00Z"))
    store(
        session,
        "observation_flights",
        flight("F-1", "FRA", "DEU", "2020-05-04T10:00:00Z", counts_against_quota=False),
        flight("F-2", "FRA", "DEU", None, notified_at=None, counts_against_quota=False),
    )
    store(
        session,
        "notifications",
        pn("PN-1", "DEU", "2020-03-01T00:00:00Z", "A-1"),
        note(
            "N-F",
            "flight_notification",
            "FRA",
            "2020-04-30T10:00:00Z",
            regime="OST",
            event_id="F-1",
        ),
        note(
            "A-F",
            "flight_acknowledgement",
            "DEU",
            "2020-05-01T09:00:00Z",
            regime="OST",
            event_id="F-1",
        ),
        note(
            "N-F2",
            "flight_notification",
            "FRA",
            "2020-04-30T10:00:00Z",
            regime="OST",
            event_id="F-2",
        ),
        note(
            "A-F2",
            "flight_acknowledgement",
            "DEU",
            "2020-05-01T09:00:00Z",
            regime="OST",
            event_id="F-2",
        ),
    )
    store(
        session,
        "holdings",
        holding("UKR", "2020-01-01", 100, unit="U-1"),
        holding("UKR", "2021-01-01", 95, unit="U-1"),
    )
    store(session, "reductions", reduction("R-1", "UKR", "1995-11-16", "1995-11-01"))
    rules = sorted(all_rules())
    result = run(session, *rules)
    assert result.rules == len(rules) and result.detected == 0
