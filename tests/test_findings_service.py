"""The findings service: filters and their validation, lists and counts, the CSV, and the
analyst's lifecycle actions (on SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cbm.models import Finding, FindingEvent
from cbm.services import findings as svc
from cbm.services.findings import (
    FINDINGS_CSV_COLUMNS,
    FilterError,
    FindingActionError,
    FindingFilters,
    FindingNotFound,
)

_keys = itertools.count(1)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def add_finding(session: Session, **values: Any) -> Finding:
    """A stored finding (as the engine would write it), with overridable values."""
    n = next(_keys)
    row: dict[str, Any] = {
        "finding_key": f"TEST|{n}",
        "rule_id": "VD-I-3",
        "regime": "VD",
        "severity": "late",
        "status": "open",
        "state": "DEU",
        "counterpart": None,
        "subject_type": "notification",
        "subject_id": f"N-{n}",
        "period": "2024",
        "due_at": utc(2023, 12, 15, 23, 59, 59),
        "first_detected_at": utc(2024, 6, 1, 8, 0, 0),
        "last_detected_at": utc(2024, 6, 2, 8, 0, 0),
        "summary": f"DEU sent its annual exchange late (finding {n}).",
        "evidence": {"days_late": 3},
    }
    row.update(values)
    finding = Finding(**row)
    session.add(finding)
    session.flush()
    return finding


def ids(session: Session, filters: FindingFilters) -> list[int]:
    return [f.id for f in session.scalars(svc.query_findings(filters))]


# --------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------


def test_empty_mapping_means_no_filter(session: Session) -> None:
    filters = FindingFilters.from_mapping(session, {"page": "3", "rule_id": "", "q": "  "})
    assert filters == FindingFilters()
    assert not filters.filtered
    assert filters.as_query_args() == {}


def test_values_are_normalised(session: Session) -> None:
    filters = FindingFilters.from_mapping(
        session,
        {
            "rule_id": "vd-i-3",
            "regime": "os",
            "severity": "BREACH",
            "status": "Open",
            "state": "germany",
            "counterpart": "rus",
            "period": " 2024 ",
            "due_from": "2024-01-01",
            "due_to": "2024-12-31",
            "q": "  late   exchange ",
        },
    )
    assert filters == FindingFilters(
        rule_id="VD-I-3",
        regime="OST",
        severity="breach",
        status="open",
        state="DEU",
        counterpart="RUS",
        period="2024",
        due_from=dt.date(2024, 1, 1),
        due_to=dt.date(2024, 12, 31),
        q="late exchange",
    )
    args = filters.as_query_args()
    assert args["due_from"] == "2024-01-01" and args["state"] == "DEU"
    # The query args read back as the same filters (links keep the filters).
    assert FindingFilters.from_mapping(session, args) == filters


def test_aliases_and_dates_as_objects(session: Session) -> None:
    filters = FindingFilters.from_mapping(
        session, {"rule": "GEMI-3", "from": dt.date(2024, 1, 1), "to": "2024-02-01"}
    )
    assert filters.rule_id == "GEMI-3"
    assert filters.due_from == dt.date(2024, 1, 1)
    assert filters.due_to == dt.date(2024, 2, 1)


@pytest.mark.parametrize(
    ("args", "field", "words"),
    [
        ({"rule_id": "VD-XX"}, "rule_id", "not a rule"),
        ({"regime": "NATO"}, "regime", "not a regime"),
        ({"severity": "terrible"}, "severity", "breach, late, warning, info, positive"),
        ({"status": "closed"}, "status", "open, acknowledged, disputed, resolved"),
        ({"state": "Atlantis"}, "state", "not a State"),
        ({"counterpart": "XXX"}, "counterpart", "not a State"),
        ({"due_from": "2024-13-01"}, "due_from", "not a date"),
        ({"due_to": "yesterday"}, "due_to", "not a date"),
        ({"due_from": "2024-02-01", "due_to": "2024-01-01"}, "due_to", "before"),
        ({"period": "x" * 21}, "period", "at most 20"),
        ({"q": "x" * 201}, "q", "at most 200"),
    ],
)
def test_bad_values_name_their_field(
    session: Session, args: dict[str, str], field: str, words: str
) -> None:
    with pytest.raises(FilterError) as caught:
        FindingFilters.from_mapping(session, args)
    assert caught.value.field == field
    assert words in caught.value.message
    assert field in str(caught.value)


def test_every_bad_value_is_reported(session: Session) -> None:
    with pytest.raises(FilterError) as caught:
        FindingFilters.from_mapping(
            session, {"severity": "x", "state": "Nowhere", "due_to": "soon"}
        )
    assert set(caught.value.errors) == {"severity", "state", "due_to"}


# --------------------------------------------------------------------------------------
# Queries and counts
# --------------------------------------------------------------------------------------


def test_each_filter_selects(session: Session) -> None:
    a = add_finding(session, severity="breach", state="DEU", period="2023")
    b = add_finding(
        session,
        rule_id="OS-T1",
        regime="OST",
        severity="late",
        state="POL",
        counterpart="RUS",
        subject_type="observation_flight",
        subject_id="F-77",
        due_at=utc(2024, 5, 4, 10, 0, 0),
        summary="POL notified flight F-77 too late.",
    )
    c = add_finding(session, status="resolved", state="FRA", due_at=None, subject_id="")

    def pick(**kw: Any) -> set[int]:
        return set(ids(session, FindingFilters(**kw))) & {a.id, b.id, c.id}

    assert pick() == {a.id, b.id, c.id}
    assert pick(rule_id="OS-T1") == {b.id}
    assert pick(regime="VD") == {a.id, c.id}
    assert pick(severity="breach") == {a.id}
    assert pick(status="resolved") == {c.id}
    assert pick(state="POL") == {b.id}
    assert pick(counterpart="RUS") == {b.id}
    assert pick(period="2023") == {a.id}
    assert pick(q="f-77") == {b.id}  # the subject key, any case
    assert pick(q="too late") == {b.id}  # the summary


def test_due_window_includes_both_days(session: Session) -> None:
    first = add_finding(session, due_at=utc(2024, 5, 1, 0, 0, 0))
    last = add_finding(session, due_at=utc(2024, 5, 31, 23, 59, 59))
    after = add_finding(session, due_at=utc(2024, 6, 1, 0, 0, 0))
    before = add_finding(session, due_at=utc(2024, 4, 30, 23, 59, 59))
    got = ids(session, FindingFilters(due_from=dt.date(2024, 5, 1), due_to=dt.date(2024, 5, 31)))
    assert set(got) & {first.id, last.id, after.id, before.id} == {first.id, last.id}


def test_search_treats_wildcards_as_text(session: Session) -> None:
    percent = add_finding(session, summary="Holdings 10% above the ceiling.")
    plain = add_finding(session, summary="Holdings 10 above the ceiling.")
    got = set(ids(session, FindingFilters(q="10%")))
    assert percent.id in got and plain.id not in got
    under = add_finding(session, subject_id="A_1")
    other = add_finding(session, subject_id="AB1")
    got = set(ids(session, FindingFilters(q="A_1")))
    assert under.id in got and other.id not in got


def test_order_is_due_date_newest_first_then_id(session: Session) -> None:
    old = add_finding(session, due_at=utc(2020, 1, 1))
    none = add_finding(session, due_at=None)
    new1 = add_finding(session, due_at=utc(2024, 1, 1))
    new2 = add_finding(session, due_at=utc(2024, 1, 1))
    got = [i for i in ids(session, FindingFilters()) if i in {old.id, none.id, new1.id, new2.id}]
    assert got == [new1.id, new2.id, old.id, none.id]


def test_counts_and_pages(session: Session) -> None:
    for severity, n in (("breach", 3), ("late", 2), ("info", 1)):
        for _ in range(n):
            add_finding(session, severity=severity, state="EST")
    add_finding(session, severity="breach", state="EST", status="resolved")
    est = FindingFilters(state="EST")
    assert svc.count_findings(session, est) == 7
    assert svc.count_by(session, est, Finding.severity) == {"breach": 4, "late": 2, "info": 1}
    pairs = svc.count_by(session, est, Finding.severity, Finding.status)
    assert pairs[("breach", "open")] == 3 and pairs[("breach", "resolved")] == 1
    page = svc.page_findings(session, est, page=2, per_page=5)
    assert (page.total, page.pages, len(page.rows), page.first_index) == (7, 2, 2, 6)
    assert svc.page_findings(session, est, page=3, per_page=5).out_of_range
    with pytest.raises(ValueError):
        svc.count_by(session, est)


# --------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------


def read_csv(session: Session, filters: FindingFilters, **kw: Any) -> tuple[str, list[dict]]:
    text = "".join(svc.iter_findings_csv(session, filters, **kw))
    return text, list(csv.DictReader(io.StringIO(text, newline="")))


def test_csv_columns_order_and_values(session: Session) -> None:
    first = add_finding(
        session,
        state="LVA",
        counterpart="RUS",
        due_at=utc(2024, 12, 15, 23, 59, 59),
        resolved_at=utc(2025, 1, 2, 3, 4, 5, 678),
        status="resolved",
    )
    second = add_finding(session, state="LVA", due_at=utc(2023, 12, 15, 23, 59, 59))
    text, rows = read_csv(session, FindingFilters(state="LVA"))
    assert text.startswith(",".join(FINDINGS_CSV_COLUMNS) + "\r\n")
    assert FINDINGS_CSV_COLUMNS[:13] == (
        "finding_id",
        "rule_id",
        "regime",
        "severity",
        "status",
        "state",
        "counterpart",
        "subject_type",
        "subject_id",
        "period",
        "due_at",
        "detected_at",
        "summary",
    )
    assert "\n" not in text.replace("\r\n", "")
    assert [r["finding_id"] for r in rows] == [str(first.id), str(second.id)]
    row = rows[0]
    assert row["rule_id"] == "VD-I-3" and row["state"] == "LVA" and row["counterpart"] == "RUS"
    assert row["due_at"] == "2024-12-15T23:59:59Z"
    assert row["detected_at"] == "2024-06-01T08:00:00Z"
    assert row["last_detected_at"] == "2024-06-02T08:00:00Z"
    assert row["resolved_at"] == "2025-01-02T03:04:05Z"
    assert row["citation"] == "VD 2011 ¶10"
    assert rows[1]["resolved_at"] == "" and rows[1]["counterpart"] == ""


def test_csv_neutralises_formulas_and_quotes(session: Session) -> None:
    add_finding(
        session,
        state="LTU",
        summary='=HYPERLINK("http://x") says "hello", twice',
        subject_id="+1-555",
    )
    text, rows = read_csv(session, FindingFilters(state="LTU"))
    assert rows[0]["summary"] == '\'=HYPERLINK("http://x") says "hello", twice'
    assert rows[0]["subject_id"] == "'+1-555"
    assert '"\'=HYPERLINK(""http://x"") says ""hello"", twice"' in text


def test_csv_streams_in_chunks(session: Session) -> None:
    for _ in range(5):
        add_finding(session, state="SVK")
    pieces = list(svc.iter_findings_csv(session, FindingFilters(state="SVK"), chunk=2))
    assert pieces[0] == ",".join(FINDINGS_CSV_COLUMNS) + "\r\n"
    assert len(pieces) == 4  # header, then 2 + 2 + 1 rows
    assert sum(p.count("\r\n") for p in pieces[1:]) == 5


def test_csv_of_nothing_is_the_header(session: Session) -> None:
    text, rows = read_csv(session, FindingFilters(state="AND"))
    assert text == ",".join(FINDINGS_CSV_COLUMNS) + "\r\n" and rows == []


# --------------------------------------------------------------------------------------
# Lifecycle
# --------------------------------------------------------------------------------------


def events_of(session: Session, finding: Finding) -> list[FindingEvent]:
    return list(
        session.scalars(
            select(FindingEvent)
            .where(FindingEvent.finding_id == finding.id)
            .order_by(FindingEvent.id)
        )
    )


def test_acknowledge_dispute_reopen(session: Session, make_user) -> None:
    ana = make_user("analyst", "ana-lifecycle")
    f = add_finding(session)
    svc.acknowledge(session, f.id, ana.id, "  Confirmed by the State's note.  ")
    assert f.status == "acknowledged"
    assert f.comment == "Confirmed by the State's note." and f.comment_by_id == ana.id
    svc.dispute(session, f.id, ana.id, "The note was withdrawn.")
    assert f.status == "disputed"
    svc.acknowledge(session, f.id, ana.id, "Back to acknowledged.")
    assert f.status == "acknowledged"
    svc.dispute(session, f.id, ana.id, "Disputed again.")
    svc.reopen(session, f.id, ana.id, "")
    assert f.status == "open" and f.comment is None and f.comment_by_id == ana.id
    svc.dispute(session, f.id, ana.id, "From open straight to disputed.")
    assert f.status == "disputed"
    events = events_of(session, f)
    assert [(e.action, e.status) for e in events] == [
        ("acknowledged", "acknowledged"),
        ("disputed", "disputed"),
        ("acknowledged", "acknowledged"),
        ("disputed", "disputed"),
        ("reopened_by_analyst", "open"),
        ("disputed", "disputed"),
    ]
    assert {e.user_id for e in events} == {ana.id}
    assert events[0].comment == "Confirmed by the State's note."
    assert events[4].comment is None
    assert all(e.check_run_id is None for e in events)


@pytest.mark.parametrize(
    ("status", "action", "words"),
    [
        ("resolved", "acknowledge", "resolved"),
        ("resolved", "dispute", "resolved"),
        ("resolved", "reopen", "resolved"),
        ("acknowledged", "acknowledge", "already acknowledged"),
        ("disputed", "dispute", "already disputed"),
        ("open", "reopen", "already open"),
    ],
)
def test_refused_transitions(
    session: Session, make_user, status: str, action: str, words: str
) -> None:
    ana = make_user("analyst", f"ana-{status}-{action}")
    f = add_finding(session, status=status)
    with pytest.raises(FindingActionError, match=words):
        svc.ACTIONS[action](session, f.id, ana.id, "A comment.")
    assert f.status == status
    assert events_of(session, f) == []


@pytest.mark.parametrize("comment", ["", "   \n  ", None])
@pytest.mark.parametrize("action", ["acknowledge", "dispute"])
def test_comment_required(session: Session, make_user, action: str, comment: Any) -> None:
    ana = make_user("analyst", f"ana-c-{action}")
    f = add_finding(session)
    with pytest.raises(FindingActionError, match="comment"):
        svc.ACTIONS[action](session, f.id, ana.id, comment)
    assert f.status == "open"


def test_comment_length_limit(session: Session, make_user) -> None:
    ana = make_user("analyst", "ana-long")
    f = add_finding(session)
    with pytest.raises(FindingActionError, match="4,000"):
        svc.dispute(session, f.id, ana.id, "x" * 4001)
    svc.dispute(session, f.id, ana.id, "x" * 4000)
    assert f.status == "disputed" and len(f.comment or "") == 4000


def test_unknown_finding(session: Session, make_user) -> None:
    ana = make_user("analyst", "ana-missing")
    with pytest.raises(FindingNotFound):
        svc.acknowledge(session, 987_654_321, ana.id, "Nothing there.")


def test_allowed_actions() -> None:
    assert svc.allowed_actions("open") == ["acknowledge", "dispute"]
    assert svc.allowed_actions("acknowledged") == ["dispute", "reopen"]
    assert svc.allowed_actions("disputed") == ["acknowledge", "reopen"]
    assert svc.allowed_actions("resolved") == []
