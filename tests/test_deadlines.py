"""Upcoming deadlines (who owes what on fixed dates, from the reference data) and the
iCalendar text they are published as."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from factories import make
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cbm.compliance import deadlines as dl
from cbm.compliance.deadlines import Deadline, fold, ical_escape, to_ical, upcoming
from cbm.models import RegimeParticipation, RuleParameter, User
from cbm.services.records import upsert_records

D = dt.date


def store(session: Session, kind: str, *rows: dict[str, Any]) -> None:
    result = upsert_records(session, kind, list(rows))
    assert result.ok, result.errors
    session.flush()


def on(session: Session, day: dt.date, days: int = 0, **kw: Any) -> list[Deadline]:
    return upcoming(session, start=day, days=days, **kw)


def owed(items: list[Deadline], regime: str, fragment: str = "") -> dict[str, Deadline]:
    return {d.state: d for d in items if d.regime == regime and fragment in d.what}


# --------------------------------------------------------------------------------------
# annual submissions
# --------------------------------------------------------------------------------------


def test_vd_annual_exchange_and_calendar(session: Session) -> None:
    items = on(session, D(2024, 12, 15))
    exchange = owed(items, "VD", "exchange")
    assert len(exchange) == 57  # every OSCE participating State
    d = exchange["DEU"]
    assert d.what == "Annual exchange of military information for 2025"
    assert d.due_at == dt.datetime(2024, 12, 15, 23, 59, 59, tzinfo=dt.UTC)
    assert d.all_day and d.citation == "VD 2011 ¶10" and d.rule_id == "VD-I-3"
    assert d.status == "outstanding" and d.subject_type == "notification" and d.subject_id == ""
    calendar = owed(on(session, D(2024, 11, 15)), "VD", "calendar")
    assert len(calendar) == 57
    assert calendar["FRA"].what == "Annual calendar of notifiable activities for 2025"
    assert calendar["FRA"].citation == "VD 2011 ¶61"


def test_the_month_day_comes_from_the_rule_parameters(session: Session) -> None:
    session.execute(
        update(RuleParameter)
        .where(RuleParameter.regime == "VD", RuleParameter.key == "annual_calendar.due_month_day")
        .values(value="11-20")
    )
    assert not owed(on(session, D(2024, 11, 15)), "VD", "calendar")
    assert len(owed(on(session, D(2024, 11, 20)), "VD", "calendar")) == 57


def test_cfe_exchange_only_from_parties(session: Session) -> None:
    # RUS suspended CFE in 2007 and withdrew in 2023; the USA and Germany suspended on
    # 2023-12-07, Canada on 2024-02-07.
    in_2022 = owed(on(session, D(2022, 12, 15)), "CFE")
    assert "RUS" not in in_2022 and "USA" in in_2022 and "DEU" in in_2022
    assert in_2022["DEU"].citation.startswith("CFE")
    in_2023 = owed(on(session, D(2023, 12, 15)), "CFE")
    assert "USA" not in in_2023 and "RUS" not in in_2023 and "DEU" not in in_2023
    assert "CAN" in in_2023 and "CAN" not in owed(on(session, D(2024, 12, 15)), "CFE")
    # Not a CFE State at all.
    assert "AUT" not in in_2022


def test_open_skies_planning_follows_withdrawals(session: Session) -> None:
    # The USA left on 2020-11-22, Russia on 2021-12-18.
    in_2020 = owed(on(session, D(2020, 11, 1)), "OST")
    assert {"USA", "RUS"} <= set(in_2020)
    assert in_2020["USA"].citation == "OST Annex H ¶1"
    assert "flights planned for 2021" in in_2020["USA"].what
    in_2021 = owed(on(session, D(2021, 11, 1)), "OST")
    assert "USA" not in in_2021 and "RUS" in in_2021
    assert "RUS" not in owed(on(session, D(2022, 11, 1)), "OST")


def test_participation_end_date_is_inclusive(session: Session) -> None:
    def set_end(day: dt.date) -> None:
        session.execute(
            update(RegimeParticipation)
            .where(RegimeParticipation.state_code == "DEU", RegimeParticipation.regime == "GEMI")
            .values(valid_to=day)
        )

    set_end(D(2025, 4, 30))
    assert "DEU" in owed(on(session, D(2025, 4, 30)), "GEMI")
    set_end(D(2025, 4, 29))
    assert "DEU" not in owed(on(session, D(2025, 4, 30)), "GEMI")


def test_submitted_versus_outstanding(session: Session) -> None:
    store(
        session,
        "notifications",
        make(
            "notifications",
            1,
            reference="VD-DEU-2025-AEMI",
            kind="annual_exchange",
            sent_at="2024-12-01T10:00:00Z",
            received_at="",
            covers_year="2025",
        ),
        # Covers the wrong year: does not count for the 2025 exchange.
        make(
            "notifications",
            2,
            sender="FRA",
            kind="annual_exchange",
            sent_at="2023-12-01T10:00:00Z",
            received_at="",
            covers_year="2024",
        ),
        make(
            "notifications",
            3,
            regime="GEMI",
            kind="annual_exchange",
            sender="POL",
            sent_at="2025-04-01T10:00:00Z",
            received_at="",
            covers_year="2025",
        ),
    )
    exchange = owed(on(session, D(2024, 12, 15)), "VD", "exchange")
    assert exchange["DEU"].status == "submitted"
    assert exchange["DEU"].subject_id == "VD-DEU-2025-AEMI"
    assert exchange["FRA"].status == "outstanding"
    gemi = owed(on(session, D(2025, 4, 30)), "GEMI")
    assert gemi["POL"].status == "submitted"  # GEMI covers the year it is due in
    assert gemi["POL"].what == "Global Exchange of Military Information for 2025"
    assert gemi["DEU"].status == "outstanding"


@pytest.mark.parametrize(
    ("start", "days", "listed"),
    [
        (D(2024, 12, 15), 0, True),  # the first day of the window
        (D(2024, 12, 16), 30, False),  # a day late
        (D(2024, 11, 15), 30, True),  # the last day of the window
        (D(2024, 11, 15), 29, False),  # a day short
    ],
)
def test_window_edges_are_inclusive(
    session: Session, start: dt.date, days: int, listed: bool
) -> None:
    items = on(session, start, days)
    assert ("DEU" in owed(items, "VD", "exchange")) is listed


def test_states_filter_and_days_limit(session: Session) -> None:
    items = on(session, D(2024, 11, 1), 60, states=["DEU"])
    assert items and {d.state for d in items} == {"DEU"}
    assert [d.due_at for d in items] == sorted(d.due_at for d in items)
    with pytest.raises(dl.DeadlineError):
        on(session, D(2024, 1, 1), 367)


# --------------------------------------------------------------------------------------
# reductions and inspection replies
# --------------------------------------------------------------------------------------


def test_reduction_deadlines(session: Session) -> None:
    store(
        session,
        "reductions",
        make("reductions", 1, state="UKR", deadline="2025-01-15"),
        make(
            "reductions",
            2,
            state="UKR",
            deadline="2025-01-16",
            completed_at="2025-01-10",
            reduced="100",
        ),
        make("reductions", 3, kind="unilateral", deadline="2025-01-20"),
        make("reductions", 4, state="UKR", deadline="2025-03-15"),
        # Germany suspended CFE on 2023-12-07: no treaty deadline while suspended.
        make("reductions", 5, deadline="2025-01-15"),
    )
    items = [d for d in on(session, D(2025, 1, 1), 30) if d.subject_type == "reduction"]
    by_id = {d.subject_id: d for d in items}
    assert set(by_id) == {"R-1", "R-3"}
    assert by_id["R-1"].state == "UKR" and by_id["R-3"].state == "DEU"
    assert by_id["R-1"].regime == "CFE" and by_id["R-1"].rule_id == "CFE-R2"
    assert by_id["R-1"].due_at == dt.datetime(2025, 1, 15, 23, 59, 59, tzinfo=dt.UTC)
    assert "100 battle_tanks" in by_id["R-1"].what and "40 done" in by_id["R-1"].what
    assert by_id["R-3"].regime == "RED" and by_id["R-3"].rule_id == "RED-1"


def test_open_inspection_replies(session: Session) -> None:
    base = {
        "replied_at": "",
        "reply": "",
        "start_at": "",
        "end_at": "",
        "outcome": "",
        "counts_against_quota": "",
        "report_at": "",
    }
    store(
        session,
        "inspections",
        make("inspections", 1, requested_at="2025-03-01T09:00:00Z", **base),
        make(
            "inspections",
            2,
            kind="vd_evaluation",
            unit="1st Brigade",
            area="",
            requested_at="2025-03-01T09:00:00Z",
            **base,
        ),
        make(  # replied
            "inspections",
            3,
            requested_at="2025-03-01T10:00:00Z",
            replied_at="2025-03-01T12:00:00Z",
            **{k: v for k, v in base.items() if k not in ("replied_at", "reply")},
            reply="accepted",
        ),
    )

    def replies(day: dt.date, days: int = 0) -> dict[str, Deadline]:
        return {d.subject_id: d for d in on(session, day, days) if d.subject_type == "inspection"}

    first = replies(D(2025, 3, 2))
    assert set(first) == {"I-1"}
    d = first["I-1"]
    assert d.due_at == dt.datetime(2025, 3, 2, 9, 0, tzinfo=dt.UTC)  # 24 h after the request
    assert not d.all_day and d.state == "RUS" and d.counterpart == "DEU"
    assert d.citation == "VD 2011 ¶85" and d.rule_id == "VD-IX-I4"
    assert set(replies(D(2025, 3, 3))) == {"I-2"}  # evaluation visits: 48 h
    assert set(replies(D(2025, 2, 1), 28)) == set()  # due after the window
    assert set(replies(D(2025, 3, 1), 5)) == {"I-1", "I-2"}


# --------------------------------------------------------------------------------------
# iCalendar
# --------------------------------------------------------------------------------------


def sample(**overrides: Any) -> Deadline:
    values: dict[str, Any] = {
        "state": "DEU",
        "regime": "VD",
        "what": "Annual exchange of military information for 2025",
        "due_at": dt.datetime(2024, 12, 15, 23, 59, 59, tzinfo=dt.UTC),
        "citation": "VD 2011 ¶10",
        "status": "outstanding",
        "subject_type": "notification",
        "subject_id": "",
        "uid": "VD.annual_exchange.DEU.2025",
    }
    values.update(overrides)
    return Deadline(**values)


def unfold(text: str) -> list[str]:
    return text.replace("\r\n ", "").split("\r\n")


NOW = dt.datetime(2024, 12, 1, 12, 0, 0, tzinfo=dt.UTC)


def test_ical_structure() -> None:
    text = to_ical(
        [
            sample(),
            sample(
                what="Reply to inspection request I-1 from DEU",
                due_at=dt.datetime(2025, 3, 2, 9, 0, tzinfo=dt.UTC),
                all_day=False,
                uid="reply.I-1",
                state="RUS",
            ),
        ],
        calendar_name="cbm deadlines",
        now=NOW,
    )
    assert text.endswith("\r\n")
    assert "\n" not in text.replace("\r\n", "")  # CRLF only, no bare LF or CR
    lines = unfold(text)
    assert lines[:4] == [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{dl.PRODID}",
        "CALSCALE:GREGORIAN",
    ]
    assert lines[-2:] == ["END:VCALENDAR", ""]
    assert lines.count("BEGIN:VEVENT") == lines.count("END:VEVENT") == 2
    assert "DTSTAMP:20241201T120000Z" in lines
    assert "DTSTART;VALUE=DATE:20241215" in lines and "DTEND;VALUE=DATE:20241216" in lines
    assert "DTSTART:20250302T090000Z" in lines
    summary = next(line for line in lines if line.startswith("SUMMARY:"))
    assert summary == "SUMMARY:DEU · VD: Annual exchange of military information for 2025"
    description = next(line for line in lines if line.startswith("DESCRIPTION:"))
    assert "Citation: VD 2011 ¶10." in description and "\\n" in description
    assert len([line for line in lines if line.startswith("UID:")]) == 2


def test_ical_lines_fold_at_75_octets() -> None:
    long = sample(what="Ärger " * 40 + "end")  # multi-byte characters near every edge
    text = to_ical([long], calendar_name="x", now=NOW)
    for line in text.split("\r\n"):
        assert len(line.encode("utf-8")) <= 75, line
    unfolded = unfold(text)
    summary = next(line for line in unfolded if line.startswith("SUMMARY:"))
    assert summary == f"SUMMARY:DEU · VD: {'Ärger ' * 40}end"


def test_fold_never_splits_a_character() -> None:
    line = "SUMMARY:" + "€" * 60  # 3 octets each
    folded = fold(line)
    parts = folded.split("\r\n")
    assert all(len(p.encode("utf-8")) <= 75 for p in parts)
    assert all(p.startswith(" ") for p in parts[1:])
    assert folded.replace("\r\n ", "") == line
    assert fold("short") == "short"
    exactly = "X" * 75
    assert fold(exactly) == exactly
    assert fold(exactly + "Y") == exactly + "\r\n Y"


def test_ical_text_escaping() -> None:
    assert ical_escape("a,b;c\\d\ne\r\nf") == "a\\,b\\;c\\\\d\\ne\\nf"
    text = to_ical(
        [sample(what="Reduce tanks, ACV; artillery\\other\nnext line")],
        calendar_name="Deadlines, DEU; all",
        now=NOW,
    )
    lines = unfold(text)
    assert "X-WR-CALNAME:Deadlines\\, DEU\\; all" in lines
    summary = next(line for line in lines if line.startswith("SUMMARY:"))
    assert summary.endswith("Reduce tanks\\, ACV\\; artillery\\\\other\\nnext line")


def test_ical_uids_are_stable() -> None:
    first = to_ical([sample(), sample(uid="other")], calendar_name="x", now=NOW)
    later = to_ical(
        [sample(uid="other"), sample(status="submitted", subject_id="VD-DEU-2025")],
        calendar_name="x",
        now=NOW + dt.timedelta(days=3),
    )

    def uids(text: str) -> set[str]:
        return set(re.findall(r"^UID:(.+)$", text.replace("\r\n ", ""), re.M))

    assert uids(first) == uids(later)
    assert len(uids(first)) == 2
    assert "(submitted)" in later.replace("\r\n ", "")


def test_ical_of_real_deadlines(session: Session) -> None:
    items = on(session, D(2024, 11, 1), 60)
    text = to_ical(items, calendar_name="cbm", now=NOW)
    assert text.count("BEGIN:VEVENT") == len(items)
    again = to_ical(on(session, D(2024, 11, 1), 60), calendar_name="cbm", now=NOW)
    assert again == text  # same data, same time: same bytes


# --------------------------------------------------------------------------------------
# feed tokens
# --------------------------------------------------------------------------------------


def test_feed_tokens(session: Session, make_user) -> None:
    user = make_user("viewer", "feed-viewer")
    token = dl.ensure_feed_token(session, user.id)
    assert len(token) >= 40 and dl.ensure_feed_token(session, user.id) == token
    assert dl.user_for_feed_token(session, token).id == user.id
    renewed = dl.renew_feed_token(session, user.id)
    assert renewed != token
    assert dl.user_for_feed_token(session, token) is None
    assert dl.user_for_feed_token(session, renewed).id == user.id
    assert dl.user_for_feed_token(session, "") is None
    assert dl.user_for_feed_token(session, None) is None
    assert dl.user_for_feed_token(session, "x" * 500) is None
    session.execute(update(User).where(User.id == user.id).values(active=False))
    session.expire_all()
    assert dl.user_for_feed_token(session, renewed) is None
    assert session.scalar(select(User.feed_token).where(User.id == user.id)) == renewed
