"""Correctness of the CFE, reduction and GEMI rules at their boundaries: the annual exchange
(15 December) and GEMI (30 April), 10 % holdings changes notified within five working days,
maximum levels for holdings, 36/96 h inspection notice, reduction deadlines, and no findings
for a State whose CFE participation is suspended or ended."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session
from test_rules_support import (
    HOUR,
    at,
    ceiling,
    check,
    holding,
    inspection,
    keys,
    note,
    parties,
    reduction,
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
MINUTE = HOUR / 60


# --- CFE-X1: the annual exchange by 15 December --------------------------------------------------


def test_x1_deadline_and_suspended_states(session: Session) -> None:
    owed = parties(session, "CFE", "2019-12-15")
    assert len(owed) == 29 and "RUS" not in owed  # Russia suspended since 2007-12-12
    ex = "annual_exchange"
    rows = [
        submission(s, "CFE", ex, 2020, "2019-12-01T00:00:00Z")
        for s in owed
        if s not in ("ARM", "AZE", "BLR", "GEO")
    ]
    rows += [
        submission("ARM", "CFE", ex, 2020, "2019-12-15T23:59:59Z"),
        submission("AZE", "CFE", ex, 2020, "2019-12-16T00:00:00Z"),
        submission("BLR", "CFE", ex, 2020, "2019-12-15T22:00:00Z", "2019-12-16T00:59:59+01:00"),
    ]
    store(session, "notifications", *rows)
    found = check(session, "CFE-X1")
    assert keys(found) == [
        ("CFE-X1", "GEO", "", "breach", "2020"),
        ("CFE-X1", "AZE", "CFE-AZE-2020-annual_exchange", "late", "2020"),
    ]
    assert found[0].summary == (
        "GEO has no CFE annual information exchange for 2020 on record; CFE Prot. Info. Exch. "
        "Sec. VII ¶1(C) requires it by 15 December 2019."
    )


def test_x1_after_the_suspensions_only_the_remaining_parties_owe_it(session: Session) -> None:
    """On 2023-12-15 the NATO allies (from 2023-12-07) had suspended the Treaty and Russia had
    left it: nine States still owed the exchange for 2024."""
    owed = parties(session, "CFE", "2023-12-15")
    assert owed == ["ARM", "AZE", "BLR", "CAN", "GEO", "KAZ", "MDA", "TUR", "UKR"]
    rows = [
        submission(s, "CFE", "annual_exchange", 2024, "2023-12-01T00:00:00Z")
        for s in ("ARM", "AZE", "BLR", "CAN", "GEO", "DEU", "FRA")
    ]
    store(session, "notifications", *rows)
    found = check(session, "CFE-X1")
    assert keys(found) == [
        ("CFE-X1", "KAZ", "", "breach", "2024"),
        ("CFE-X1", "MDA", "", "breach", "2024"),
        ("CFE-X1", "TUR", "", "breach", "2024"),
        ("CFE-X1", "UKR", "", "breach", "2024"),
    ]


# --- GEMI-3: by 30 April -----------------------------------------------------------------------


def test_gemi_due_30_april_of_the_year_it_covers(session: Session) -> None:
    owed = parties(session, "GEMI", "2020-04-30")
    special = ("ARM", "AZE", "BLR", "GEO")
    rows = [
        submission(s, "GEMI", "annual_exchange", 2020, "2020-04-01T00:00:00Z")
        for s in owed
        if s not in special
    ]
    rows += [
        submission("ARM", "GEMI", "annual_exchange", 2020, "2020-04-30T23:59:59Z"),
        submission("AZE", "GEMI", "annual_exchange", 2020, "2020-05-01T00:00:00Z"),
        # 01:30 on 1 May at UTC+2: 23:30 UTC on 30 April, on time.
        submission("BLR", "GEMI", "annual_exchange", 2020, "2020-05-01T01:30:00+02:00"),
    ]
    store(session, "notifications", *rows)
    found = check(session, "GEMI-3")
    assert keys(found) == [
        ("GEMI-3", "GEO", "", "breach", "2020"),
        ("GEMI-3", "AZE", "GEMI-AZE-2020-annual_exchange", "late", "2020"),
    ]
    assert found[1].summary == (
        "AZE sent its GEMI submission for 2020 (GEMI-AZE-2020-annual_exchange) on 2020-05-01 "
        "00:00 UTC, 1 day after the deadline; GEMI 1994 requires it by 30 April 2020."
    )
    assert found[0].due_at == at("2020-04-30T23:59:59Z")


def test_gemi_participation_start_and_coverage(session: Session) -> None:
    """Mongolia joined on 2012-11-21: it owed nothing on 2012-04-30. One State's submission
    alone does not report the other 56 missing."""
    owed = parties(session, "GEMI", "2012-04-30")
    assert "MNG" not in owed
    store(
        session,
        "notifications",
        *(
            submission(s, "GEMI", "annual_exchange", 2012, "2012-04-01T00:00:00Z")
            for s in owed
            if s != "ARM"
        ),
        submission("DEU", "GEMI", "annual_exchange", 2013, "2013-04-01T00:00:00Z"),
    )
    result = run(session, "GEMI-3")
    assert keys(check(session, "GEMI-3")) == [("GEMI-3", "ARM", "", "breach", "2012")]
    assert {"period": 2013, "why": "1 of 57 States' submissions in the data"} in result.coverage[
        "GEMI-3"
    ]["skipped"]


# --- CFE-X3: 10 % changes notified within five working days ----------------------------------


def change(state: str, unit: str, before: str, after: str, prev: int, count: int) -> list[dict]:
    return [
        holding(state, before, prev, unit=unit),
        holding(state, after, count, unit=unit),
    ]


def notice(reference: str, state: str, sent: str, unit: str) -> dict:
    return note(
        reference, "holdings_change", state, sent, regime="CFE", remarks=f"Change at unit {unit}."
    )


def test_x3_friday_change_deadline_next_friday(session: Session) -> None:
    store(
        session,
        "holdings",
        *change("UKR", "U-ON", "2020-01-01", "2021-01-08", 100, 90),  # 10 %: a change
        *change("UKR", "U-LATE", "2020-01-01", "2021-01-08", 100, 110),
        *change("UKR", "U-NONE", "2020-01-01", "2021-01-08", 100, 90),
        *change("UKR", "U-SMALL", "2020-01-01", "2021-01-08", 100, 91),  # 9 %: none owed
    )
    store(
        session,
        "notifications",
        notice("N-ON", "UKR", "2021-01-15T23:59:59Z", "U-ON"),
        notice("N-LATE", "UKR", "2021-01-16T00:00:00Z", "U-LATE"),
        notice("N-EARLY", "UKR", "2021-01-07T12:00:00Z", "U-NONE"),  # before the change
    )
    found = check(session, "CFE-X3")
    assert keys(found) == [
        ("CFE-X3", "UKR", "UKR/2021-01-08/battle_tanks/cfe/U-LATE", "late", "2021"),
        ("CFE-X3", "UKR", "UKR/2021-01-08/battle_tanks/cfe/U-NONE", "breach", "2021"),
    ]
    assert found[0].summary == (
        "UKR's unit U-LATE changed its battle_tanks holdings from 100 to 110 on 2021-01-08 "
        "(10%); UKR notified it only on 2021-01-16 (N-LATE); the CFE Protocol on Information "
        "Exchange requires notice within 5 working days (by 2021-01-15)."
    )
    assert found[1].summary.startswith(
        "UKR's unit U-NONE changed its battle_tanks holdings from 100 to 90 on 2021-01-08 "
        "(10%); UKR did not notify;"
    )
    assert found[0].due_at == at("2021-01-15T23:59:59Z")


@pytest.mark.parametrize(
    ("changed", "deadline"),
    [
        ("2021-01-08", "2021-01-15"),  # Friday: the next Friday
        ("2021-01-09", "2021-01-15"),  # Saturday: five working days are Mon-Fri
        ("2021-01-10", "2021-01-15"),  # Sunday
        ("2021-01-11", "2021-01-18"),  # Monday: the next Monday
        ("2024-02-29", "2024-03-07"),  # Thursday 29 February: the next Thursday
        ("2024-02-26", "2024-03-04"),  # Monday; 29 February is a working day
    ],
)
def test_x3_five_working_days(session: Session, changed: str, deadline: str) -> None:
    store(session, "holdings", *change("GEO", "U-1", "2020-01-01", changed, 200, 150))
    store(session, "notifications", notice("N-1", "GEO", f"{deadline}T23:00:00Z", "U-1"))
    assert check(session, "CFE-X3") == []
    store(session, "holdings", *change("GEO", "U-2", "2020-01-01", changed, 200, 150))
    day_after = at(f"{deadline}T00:00:00Z") + 24 * HOUR
    store(session, "notifications", notice("N-2", "GEO", day_after, "U-2"))
    [f] = check(session, "CFE-X3")
    assert f.subject == f"GEO/{changed}/battle_tanks/cfe/U-2" and f.severity == "late"
    assert f.summary.endswith(f"within 5 working days (by {deadline}).")


def test_x3_no_findings_for_suspended_states(session: Session) -> None:
    """The USA suspended the Treaty from 2023-12-07: a change on Monday 27 November was due by
    4 December (a party then); one on Monday 4 December by 11 December (suspended)."""
    store(
        session,
        "holdings",
        *change("USA", "U-1", "2023-01-01", "2023-11-27", 100, 50),
        *change("USA", "U-2", "2023-01-01", "2023-12-04", 100, 50),
        *change("DEU", "U-3", "2024-01-01", "2024-03-04", 100, 50),
        *change("RUS", "U-4", "2010-01-01", "2010-03-04", 100, 50),  # suspended 2007-12-12
    )
    assert keys(check(session, "CFE-X3")) == [
        ("CFE-X3", "USA", "USA/2023-11-27/battle_tanks/cfe/U-1", "breach", "2023")
    ]


@PROPERTY
@given(pairs=st.lists(st.tuples(st.integers(1, 400), st.integers(0, 500)), min_size=1, max_size=8))
def test_x3_property_ten_percent_or_more(session: Session, pairs: list[tuple[int, int]]) -> None:
    with scratch(session):
        store(
            session,
            "holdings",
            *(
                row
                for i, (prev, count) in enumerate(pairs)
                for row in change("KAZ", f"U{i}", "2020-01-01", "2020-06-01", prev, count)
            ),
        )
        expected = {
            f"KAZ/2020-06-01/battle_tanks/cfe/U{i}"
            for i, (prev, count) in enumerate(pairs)
            if abs(count - prev) * 100 >= 10 * prev
        }
        found = check(session, "CFE-X3")
        assert {f.subject for f in found} == expected
        assert all(f.severity == "breach" for f in found)


# --- CFE-VII-1: maximum levels for holdings ------------------------------------------------------


def test_vii1_holdings_above_the_ceiling_in_force(session: Session) -> None:
    store(
        session,
        "ceilings",
        ceiling("UKR", 4080, "1995-11-17", "2019-12-31"),
        ceiling("UKR", 4000, "2020-01-01"),
        ceiling("DEU", 100, "2020-01-01"),
    )
    store(
        session,
        "holdings",
        holding("UKR", "2019-12-31", 4080),  # at the old ceiling
        holding("UKR", "2020-01-01", 4001),  # above the new one
        holding("UKR", "2021-01-01", 4000),
        holding("UKR", "2021-01-01", 9999, unit="1st Corps"),  # units are not totals
        holding("DEU", "2024-01-01", 200),  # suspended from 2023-12-07
        holding("DEU", "2022-01-01", 101),
    )
    found = check(session, "CFE-VII-1")
    assert keys(found) == [
        ("CFE-VII-1", "DEU", "DEU/2022-01-01/battle_tanks/cfe/", "breach", "2022"),
        ("CFE-VII-1", "UKR", "UKR/2020-01-01/battle_tanks/cfe/", "breach", "2020"),
    ]
    assert found[1].summary == (
        "UKR declared 4,001 battle_tanks as of 2020-01-01, above its ceiling of 4,000; CFE Art. "
        "VII requires holdings within the maximum levels."
    )
    assert found[1].evidence["excess"] == 1


# --- CFE-I10: inspection notice 36 h (96 h for reduction and certification) -------------------


def cfe_inspection(ident: str, kind: str, inspecting: str, arrival: str) -> dict:
    arrive = at(arrival)
    return inspection(
        ident,
        inspecting,
        "UKR",
        arrive - 100 * HOUR,
        kind=kind,
        regime="CFE",
        start_at=arrive,
        end_at=arrive + 40 * HOUR,
        report_at=None,
    )


def test_i10_notice_before_arrival(session: Session) -> None:
    arrival = at("2020-03-02T11:30:00Z")
    cases = [
        ("DS-36", "cfe_declared_site", 36 * HOUR),
        ("DS-SHORT", "cfe_declared_site", 36 * HOUR - MINUTE),
        ("CH-36", "cfe_challenge", 36 * HOUR),
        ("RED-96", "cfe_reduction", 96 * HOUR),
        ("RED-95", "cfe_reduction", 95 * HOUR),
        ("CERT-SHORT", "cfe_certification", 96 * HOUR - MINUTE),
    ]
    store(
        session,
        "inspections",
        *(cfe_inspection(i, k, "DEU", arrival.isoformat()) for i, k, _ in cases),
        cfe_inspection("NONE", "cfe_declared_site", "DEU", arrival.isoformat()),
        cfe_inspection("ZONES", "cfe_declared_site", "FRA", arrival.isoformat()),
    )
    store(
        session,
        "notifications",
        *(
            note(
                f"N-{i}", "inspection_notification", "DEU", arrival - lead, regime="CFE", event_id=i
            )
            for i, _, lead in cases
        ),
        # 00:30 on 1 March at UTC+1 is 23:30 UTC on 29 February: 36 hours before arrival.
        note(
            "N-ZONES",
            "inspection_notification",
            "FRA",
            "2020-03-01T00:30:00+01:00",
            regime="CFE",
            event_id="ZONES",
        ),
    )
    found = check(session, "CFE-I10")
    assert keys(found) == [
        ("CFE-I10", "DEU", "CERT-SHORT", "breach", "2020"),
        ("CFE-I10", "DEU", "DS-SHORT", "breach", "2020"),
        ("CFE-I10", "DEU", "NONE", "breach", "2020"),
        ("CFE-I10", "DEU", "RED-95", "breach", "2020"),
    ]
    by_id = {f.subject: f for f in found}
    assert by_id["DS-SHORT"].summary == (
        "DEU gave notice 35 hours 59 minutes before arrival (N-DS-SHORT) for inspection DS-SHORT "
        "in UKR arriving 2020-03-02 11:30 UTC; the CFE Protocol on Inspection requires 36 hours."
    )
    assert by_id["NONE"].summary.startswith("DEU gave no notice on record for inspection NONE")
    assert by_id["RED-95"].summary.endswith("requires 96 hours.")
    assert by_id["DS-SHORT"].due_at == at("2020-02-29T23:30:00Z")


def test_i10_participation_end_date_of_the_inspecting_state(session: Session) -> None:
    """The USA was a CFE party until 2023-12-06: notice due then is owed, from the 7th not."""
    store(
        session,
        "inspections",
        cfe_inspection("IN", "cfe_declared_site", "USA", "2023-12-08T11:59:00Z"),
        cfe_inspection("OUT", "cfe_declared_site", "USA", "2023-12-08T12:00:00Z"),
    )
    assert keys(check(session, "CFE-I10")) == [("CFE-I10", "USA", "IN", "breach", "2023")]


# --- CFE-R2 and RED-1: reductions ----------------------------------------------------------------


def test_r2_treaty_reduction_deadline(session: Session) -> None:
    store(
        session,
        "reductions",
        reduction("ON", "UKR", "1996-02-29", "1996-02-29"),
        reduction("LATE", "UKR", "1996-02-29", "1996-03-01"),
        reduction("OPEN-PAST", "UKR", "1996-05-31", None),
        reduction("OPEN-FUTURE", "UKR", "1996-12-31", None),
        reduction("RUS-LATE", "RUS", "2010-01-01", "2011-01-01"),  # suspended then
    )
    # The data reach 1 June 1996 (the latest message): a later deadline is not judged yet.
    store(session, "notifications", note("LAST", "annual_calendar", "DEU", "1996-06-01T00:00:00Z"))
    found = check(session, "CFE-R2")
    assert keys(found) == [
        ("CFE-R2", "UKR", "LATE", "breach", "1996"),
        ("CFE-R2", "UKR", "OPEN-PAST", "breach", "1996"),
    ]
    assert found[0].summary == (
        "UKR's treaty reduction LATE (100 battle_tanks) was due by 1996-02-29; UKR completed it "
        "on 1996-03-01; CFE Art. VIII requires completion by the deadline."
    )
    assert "UKR has not reported its completion" in found[1].summary
    assert found[0].due_at == at("1996-02-29T23:59:59Z")


def test_red1_unilateral_reductions_late_or_early(session: Session) -> None:
    store(
        session,
        "reductions",
        reduction("EARLY", "RUS", "2003-06-30", "2003-06-29", kind="unilateral"),
        reduction("ON", "RUS", "2003-06-30", "2003-06-30", kind="unilateral"),
        reduction("LATE", "RUS", "2003-06-30", "2003-07-01", kind="withdrawal"),
        reduction("OPEN", "USA", "2024-01-31", None, kind="unilateral"),  # no CFE filter
    )
    store(session, "notifications", note("LAST", "annual_calendar", "DEU", "2024-02-01T00:00:00Z"))
    found = check(session, "RED-1")
    assert keys(found) == [
        ("RED-1", "RUS", "EARLY", "positive", "2003"),
        ("RED-1", "RUS", "LATE", "warning", "2003"),
        ("RED-1", "USA", "OPEN", "warning", "2024"),
    ]
    assert found[0].summary == (
        "RUS completed its announced unilateral EARLY (100 battle_tanks) on 2003-06-29, ahead "
        "of the announced deadline of 2003-06-30."
    )
    assert found[1].summary == (
        "RUS's announced withdrawal LATE (100 battle_tanks): RUS completed it on 2003-07-01, "
        "after the announced deadline of 2003-06-30."
    )
