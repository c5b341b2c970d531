"""The record queries: list filters per kind, sorting, pagination, links and history."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from factories import KINDS, make
from sqlalchemy import event
from sqlalchemy.orm import Session

from cbm import contract
from cbm.models import ImportRun, User
from cbm.queries.records import (
    LISTS,
    ListPage,
    ListParams,
    key_parts,
    key_values,
    list_records,
    parse_list_args,
    record_counts,
    record_history,
    related_records,
)
from cbm.services import Actor, delete_record, upsert_records


def seed(session: Session, kind: str, rows: list[dict[str, Any]], actor: Actor = Actor()) -> None:
    result = upsert_records(session, kind, rows, actor=actor)
    assert result.ok, result.errors
    session.flush()


def ids(session: Session, file: str, first_key: str = "", /, **args: str) -> list[str]:
    """The first key part of each listed record, in list order."""
    spec = contract.get(file)
    params, errors = parse_list_args(session, spec, args)
    assert not errors, errors
    page = list_records(session, spec, params)
    column = first_key or spec.key[0]
    return [str(r[column]) for r in page.rows]


@pytest.fixture()
def user(session: Session) -> User:
    u = User(username="dora", role="analyst")
    session.add(u)
    session.flush()
    return u


@pytest.fixture()
def run(session: Session) -> ImportRun:
    r = ImportRun(source_name="feed.csv", importer="csv")
    session.add(r)
    session.flush()
    return r


@contextmanager
def statements(session: Session) -> Iterator[list[str]]:
    """Collect the SQL statements the session runs."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        seen.append(sql)

    engine = session.get_bind()
    target = engine.engine if hasattr(engine, "engine") else engine
    event.listen(target, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(target, "before_cursor_execute", record)


# --------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_key_parts_and_values_round_trip(kind: str) -> None:
    spec = contract.get(kind)
    row = make(kind, 3)
    parts = key_parts(spec, row)
    typed = key_values(spec, parts)
    assert key_parts(spec, typed) == parts


@pytest.mark.parametrize(
    ("kind", "parts"),
    [
        ("quotas", ("OST", "DEU", "2024", "passive")),
        ("quotas", ("OST", "DEU", "２０２４", "passive", "")),
        ("holdings", ("DEU", "2024-W01-1", "acv", "cfe", "")),
        ("activities", ("", "notification")),
    ],
)
def test_impossible_keys_are_refused(kind: str, parts: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        key_values(contract.get(kind), parts)


# --------------------------------------------------------------------------------------
# Filters per kind
# --------------------------------------------------------------------------------------


def test_regime_filter_per_kind(session: Session) -> None:
    seed(session, "activities", [make("activities", 1)])
    seed(session, "observation_flights", [make("observation_flights", 1)])
    seed(
        session,
        "holdings",
        [
            make("holdings", 1, source="vd_aemi"),
            make("holdings", 2, source="cfe"),
            make("holdings", 3, source="other"),
        ],
    )
    seed(
        session,
        "reductions",
        [make("reductions", 1, kind="treaty"), make("reductions", 2, kind="unilateral")],
    )
    seed(
        session,
        "notifications",
        [make("notifications", 1), make("notifications", 2, regime="GEMI", kind="annual_exchange")],
    )
    assert ids(session, "activities", regime="VD") == ["A-1"]
    assert ids(session, "activities", regime="CFE") == []
    assert ids(session, "observation_flights", regime="OST") == ["F-1"]
    assert ids(session, "observation_flights", regime="VD") == []
    assert ids(session, "holdings", "as_of", regime="CFE") == ["2002-01-01"]
    assert ids(session, "holdings", "as_of", regime="VD") == ["2001-01-01"]
    assert ids(session, "reductions", regime="CFE") == ["R-1"]
    assert ids(session, "notifications", regime="GEMI") == ["N-2"]


def test_state_filter_matches_any_state_column_and_state_lists(session: Session) -> None:
    seed(
        session,
        "inspections",
        [
            make("inspections", 1, inspecting_state="DEU", inspected_state="RUS", guest_states=""),
            make("inspections", 2, inspecting_state="FRA", inspected_state="BLR", guest_states=""),
            make(
                "inspections",
                3,
                inspecting_state="USA",
                inspected_state="RUS",
                guest_states="NOR POL",
            ),
        ],
    )
    assert sorted(ids(session, "inspections", state="RUS")) == ["I-1", "I-3"]
    assert sorted(ids(session, "inspections", state="France")) == ["I-2"]
    assert ids(session, "inspections", state="POL") == ["I-3"]  # a guest, last in the list
    assert ids(session, "inspections", state="NOR") == ["I-3"]  # first in the list
    assert ids(session, "inspections", state="GBR") == []


def test_quota_counterpart_is_a_state_column(session: Session) -> None:
    seed(
        session,
        "quotas",
        [make("quotas", 1), make("quotas", 2, kind="active", counterpart="RUS")],
    )
    assert ids(session, "quotas", "year", state="RUS") == ["2002"]


def test_region_filter_uses_the_states_region(session: Session) -> None:
    seed(
        session,
        "ceilings",
        [make("ceilings", 1, state="USA"), make("ceilings", 2, state="CAN"), make("ceilings", 3)],
    )
    assert sorted(ids(session, "ceilings", "state", region="north_america")) == ["CAN", "USA"]
    assert ids(session, "ceilings", "state", region="central_europe") == ["DEU"]


YEAR_CASES: list[tuple[str, list[dict[str, Any]], dict[str, list[str]]]] = [
    (
        "observation_flights",
        [
            make("observation_flights", 1),  # flight start 2019
            make(
                "observation_flights",
                2,
                flight_start_at="",
                flight_end_at="",
                notified_at="2020-12-30T08:00:00Z",
                eta_poe="2021-01-02T10:00:00Z",
            ),
            make(
                "observation_flights",
                3,
                flight_start_at="",
                flight_end_at="",
                eta_poe="",
                notified_at="2020-06-01T08:00:00Z",
            ),
        ],
        {"2019": ["F-1"], "2021": ["F-2"], "2020": ["F-3"]},
    ),
    (
        "reductions",
        [
            make("reductions", 1, deadline="2026-01-01"),
            make("reductions", 2, deadline="", announced_at="2023-04-01"),
        ],
        {"2026": ["R-1"], "2024": [], "2023": ["R-2"]},
    ),
    ("quotas", [make("quotas", 24)], {"2024": ["OST"], "2023": []}),
    ("holdings", [make("holdings", 5)], {"2005": ["DEU"], "2006": []}),
    ("ceilings", [make("ceilings", 5)], {"2005": ["CFE"], "2004": []}),
    (
        "inspections",
        [
            make(
                "inspections",
                1,
                requested_at="2023-12-31T23:30:00-01:00",  # 2024-01-01 00:30 UTC
                replied_at="",
            )
        ],
        {"2024": ["I-1"], "2023": []},
    ),
    ("activities", [make("activities", 1)], {"2024": ["A-1"], "2025": []}),
]


@pytest.mark.parametrize(("kind", "rows", "years"), YEAR_CASES, ids=[c[0] for c in YEAR_CASES])
def test_year_filter_reads_each_kinds_date(
    session: Session, kind: str, rows: list[dict[str, Any]], years: dict[str, list[str]]
) -> None:
    seed(session, kind, rows)
    for year, wanted in years.items():
        assert sorted(ids(session, kind, year=year)) == wanted, year


def test_kind_filter_reads_kind_or_category(session: Session) -> None:
    seed(
        session,
        "holdings",
        [make("holdings", 1), make("holdings", 2, category="artillery")],
    )
    seed(session, "reductions", [make("reductions", 1, kind="withdrawal", category="acv")])
    assert ids(session, "holdings", "category", kind="artillery") == ["artillery"]
    assert ids(session, "reductions", kind="withdrawal") == ["R-1"]
    _params, errors = parse_list_args(session, contract.get("reductions"), {"kind": "acv"})
    assert "kind" in errors  # reductions are filtered by their kind, not their category


def test_free_text_escapes_wildcards_and_searches_keys(session: Session) -> None:
    seed(
        session,
        "activities",
        [
            make("activities", 1, name="100% ready"),
            make("activities", 2, name="1_st"),
            make("activities", 3, name="back\\slash"),
            make("activities", 4, name="plain", start_date="2021-07-01", end_date=""),
        ],
    )
    assert ids(session, "activities", q="%") == ["A-1"]
    assert ids(session, "activities", q="_") == ["A-2"]
    assert ids(session, "activities", q="\\") == ["A-3"]
    assert ids(session, "activities", q="PLAIN") == ["A-4"]  # case-insensitive
    assert ids(session, "activities", q="2021-07") == []  # dates are not text...
    seed(session, "holdings", [make("holdings", 5), make("holdings", 6)])
    assert ids(session, "holdings", "as_of", q="2005-01") == ["2005-01-01"]  # ...but keys are
    assert ids(session, "activities", q="' OR 1=1 --") == []
    assert sorted(ids(session, "activities", q="A-")) == ["A-1", "A-2", "A-3", "A-4"]


# --------------------------------------------------------------------------------------
# Sorting and pagination
# --------------------------------------------------------------------------------------


def test_empty_values_sort_last_both_ways(session: Session) -> None:
    seed(
        session,
        "activities",
        [
            make("activities", 1, troops=""),
            make("activities", 2, troops="5"),
            make("activities", 3, troops="7"),
        ],
    )
    assert ids(session, "activities", sort="troops", order="asc") == ["A-2", "A-3", "A-1"]
    assert ids(session, "activities", sort="troops", order="desc") == ["A-3", "A-2", "A-1"]


def test_every_column_of_every_kind_sorts(session: Session) -> None:
    for kind in KINDS:
        seed(session, kind, [make(kind, 1), make(kind, 2)])
        for column in contract.get(kind).columns:
            for order in ("asc", "desc"):
                assert len(ids(session, kind, sort=column, order=order)) == 2


def test_pages_and_counts(session: Session) -> None:
    seed(session, "holdings", [make("holdings", n) for n in range(1, 54)])
    spec = contract.get("holdings")
    pages = []
    for p in (1, 2, 3):
        params = ListParams(sort="as_of", order="asc", page=p, per_page=25)
        page = list_records(session, spec, params)
        assert page.total == 53 and page.pages == 3
        pages.append([r["as_of"] for r in page.rows])
    assert [len(p) for p in pages] == [25, 25, 3]
    flat = [d for p in pages for d in p]
    assert flat == sorted(flat) and len(set(flat)) == 53
    beyond = list_records(session, spec, ListParams(sort="as_of", page=4, per_page=25))
    assert beyond.out_of_range and beyond.rows == []


def test_page_window() -> None:
    page = ListPage(rows=[], total=1000, page=10, per_page=25)
    assert page.window() == [1, None, 8, 9, 10, 11, 12, None, 40]
    assert ListPage(rows=[], total=3, page=1, per_page=25).window() == [1]


@pytest.mark.parametrize("n", [3, 60])
def test_a_list_is_two_statements_whatever_its_size(session: Session, n: int) -> None:
    seed(session, "notifications", [make("notifications", i) for i in range(1, n + 1)])
    spec = contract.get("notifications")
    params = ListParams(sort="sent_at", state="DEU", region="central_europe", year=2024, q="N-")
    with statements(session) as seen:
        page = list_records(session, spec, params)
    assert page.total == n
    assert len(seen) == 2, seen  # the COUNT and the page: no query per row


def test_record_counts(session: Session) -> None:
    seed(session, "activities", [make("activities", 1), make("activities", 2)])
    seed(session, "quotas", [make("quotas", 1)])
    with statements(session) as seen:
        counts = record_counts(session)
    assert len(seen) == 1
    assert counts["activities"] == 2 and counts["quotas"] == 1 and counts["reductions"] == 0
    assert set(counts) == set(contract.FILES)


def test_parse_list_args_defaults_and_resolution(session: Session) -> None:
    spec = contract.get("notifications")
    params, errors = parse_list_args(session, spec, {})
    assert not errors and params.sort == LISTS["notifications"].sort and params.per_page == 50
    assert not params.filtered
    params, errors = parse_list_args(session, spec, {"state": "DEU — Germany", "year": " 2024 "})
    assert not errors and params.state == "DEU" and params.year == 2024 and params.filtered
    params, errors = parse_list_args(session, spec, {"q": "x" * 500})
    assert len(params.q or "") == 200


# --------------------------------------------------------------------------------------
# Links between records
# --------------------------------------------------------------------------------------


def test_related_records_for_an_inspection(session: Session) -> None:
    seed(session, "inspections", [make("inspections", 1)])
    seed(
        session,
        "notifications",
        [
            make("notifications", 1, kind="inspection_request", event_id="I-1"),
            make("notifications", 2, kind="inspection_reply", event_id="I-1", in_reply_to="N-1"),
            make("notifications", 3),
        ],
    )
    seed(session, "reductions", [make("reductions", 1, verified_by="I-1")])
    spec = contract.get("inspections")
    row = {"id": 0, **{"inspection_id": "I-1"}}
    groups = {(g.kind, g.column): g for g in related_records(session, spec, row)}
    assert sorted(r["reference"] for r in groups["notifications", "event_id"].rows) == [
        "N-1",
        "N-2",
    ]
    assert groups["notifications", "event_id"].total == 2
    assert [r["reduction_id"] for r in groups["reductions", "verified_by"].rows] == ["R-1"]


# --------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------


def key_of(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    spec = contract.get(kind)
    return key_values(spec, key_parts(spec, row))


def test_history_of_a_users_record(session: Session, user: User) -> None:
    row = make("ceilings", 1)
    actor = Actor(user_id=user.id)
    seed(session, "ceilings", [row], actor=actor)
    seed(session, "ceilings", [{**row, "ceiling": "4000", "basis": ""}], actor=actor)
    history = record_history(session, contract.get("ceilings"), key_of("ceilings", row))
    assert [(e.action, e.actor_label) for e in history.entries] == [
        ("update", "dora"),
        ("create", "dora"),
    ]
    update = history.entries[0]
    assert [(c.field, c.before, c.after) for c in update.changes] == [
        ("ceiling", 4166, 4000),
        ("basis", "CFE maximum level for holdings", None),
    ]
    assert not any(e.synthetic for e in history.entries)
    assert history.deleted is None


def test_history_of_an_imported_then_deleted_record(
    session: Session, user: User, run: ImportRun
) -> None:
    row = make("activities", 1)
    spec = contract.get("activities")
    key = key_of("activities", row)
    seed(session, "activities", [row], actor=Actor(run_id=run.id))

    history = record_history(session, spec, key)
    (created,) = history.entries
    assert created.synthetic and created.action == "create"
    assert created.actor_label == f"import run {run.id}" and created.run_source == "feed.csv"
    assert created.occurred_at is not None

    seed(session, "activities", [{**row, "troops": "1"}], actor=Actor(user_id=user.id))
    seed(session, "activities", [{**row, "troops": "2"}], actor=Actor(run_id=run.id))
    history = record_history(session, spec, key)
    assert [(e.action, e.actor_label) for e in history.entries] == [
        ("update", f"import run {run.id}"),
        ("update", "dora"),
        ("create", f"import run {run.id}"),
    ]
    created = history.entries[-1]
    assert {c.field: c.after for c in created.changes}["troops"] == 13000  # as imported

    delete_record(session, spec, key, actor=Actor(user_id=user.id))
    history = record_history(session, spec, key)
    assert history.deleted is not None and history.deleted.actor_label == "dora"
    assert history.last_values["troops"] == 2
    assert [e.action for e in history.entries] == ["delete", "update", "update", "create"]
    assert history.entries[-1].actor_label == "an import run or the system"
    assert {c.field: c.after for c in history.entries[-1].changes}["troops"] == 13000


def test_history_of_a_system_record(session: Session) -> None:
    row = make("quotas", 1)
    seed(session, "quotas", [row])
    history = record_history(session, contract.get("quotas"), key_of("quotas", row))
    assert [(e.action, e.actor_label, e.synthetic) for e in history.entries] == [
        ("create", "the system", False)
    ]


def test_history_is_a_fixed_number_of_statements(session: Session, user: User) -> None:
    row = make("holdings", 1)
    actor = Actor(user_id=user.id)
    seed(session, "holdings", [row], actor=actor)
    spec = contract.get("holdings")
    key = key_of("holdings", row)
    with statements(session) as seen:
        record_history(session, spec, key)
    few = len(seen)
    for n in range(2, 12):
        seed(session, "holdings", [{**row, "count": str(n)}], actor=actor)
    with statements(session) as seen:
        history = record_history(session, spec, key)
    assert len(history.entries) == 11
    assert len(seen) == few <= 4


def test_history_keeps_timestamps_in_utc(session: Session, user: User) -> None:
    row = make("notifications", 1, received_at="")
    seed(session, "notifications", [row], actor=Actor(user_id=user.id))
    seed(
        session,
        "notifications",
        [{**row, "sent_at": "2024-01-10T10:30:00+01:00", "remarks": "same instant"}],
        actor=Actor(user_id=user.id),
    )
    history = record_history(session, contract.get("notifications"), key_of("notifications", row))
    update = history.entries[0]
    assert [c.field for c in update.changes] == ["remarks"]  # 10:30+01:00 is 09:30Z
    assert all(
        e.occurred_at is not None and e.occurred_at.utcoffset() == dt.timedelta(0)
        for e in history.entries
    )
