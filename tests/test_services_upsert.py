"""Upsert by natural key: insert, unchanged, update with history, provenance, UTC, audit log.

Runs on SQLite and PostgreSQL through the ``session`` fixture.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from factories import KINDS, count, key_of, key_text, make, rows, stored_keys
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable

from cbm import contract
from cbm.models import (
    Activity,
    AuditEvent,
    Holding,
    ImportRun,
    Inspection,
    Notification,
    Quota,
    User,
)
from cbm.services import (
    Actor,
    UpsertResult,
    upsert_activities,
    upsert_ceilings,
    upsert_holdings,
    upsert_inspections,
    upsert_notifications,
    upsert_observation_flights,
    upsert_quotas,
    upsert_records,
    upsert_reductions,
)

UTC = dt.UTC
UPSERTS = {
    "activities": upsert_activities,
    "notifications": upsert_notifications,
    "inspections": upsert_inspections,
    "observation_flights": upsert_observation_flights,
    "quotas": upsert_quotas,
    "holdings": upsert_holdings,
    "ceilings": upsert_ceilings,
    "reductions": upsert_reductions,
}


def counts(result: UpsertResult) -> tuple[int, int, int, int]:
    return (result.inserted, result.updated, result.unchanged, result.rejected)


def audit_events(session: Session, after: int = 0) -> list[AuditEvent]:
    """Audit events with an id above ``after``, oldest first."""
    query = select(AuditEvent).where(AuditEvent.id > after).order_by(AuditEvent.id)
    return list(session.scalars(query))


def last_audit_id(session: Session) -> int:
    return max(session.scalars(select(AuditEvent.id)).all(), default=0)


def row_of(session: Session, kind: str, key: tuple[str, ...]) -> Any:
    """The stored ORM object of a contract file by its key (as ``key_of`` gives it), fresh."""
    spec = contract.get(kind)
    session.expire_all()  # the services write below the ORM
    for obj in session.scalars(select(spec.model)):
        if tuple(key_text(getattr(obj, k)) for k in spec.key) == key:
            return obj
    raise AssertionError(f"{kind} {key} is not stored")


@pytest.fixture()
def user(session: Session) -> User:
    u = User(username="analyst1", display_name="Analyst One", role="analyst")
    session.add(u)
    session.flush()
    return u


@pytest.fixture()
def run(session: Session) -> ImportRun:
    r = ImportRun(source_name="test.csv", importer="csv")
    session.add(r)
    session.flush()
    return r


# --------------------------------------------------------------------------------------
# Insert, unchanged, update
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_per_file_function_names_and_writes_its_file(session: Session, kind: str) -> None:
    upsert = UPSERTS[kind]
    assert upsert.__name__ == f"upsert_{kind}"
    result = upsert(session, rows(kind, 2))
    assert result.kind == kind and result.ok and result.written
    assert (result.read, *counts(result)) == (2, 2, 0, 0, 0)
    assert stored_keys(session, kind) == {key_of(kind, r) for r in rows(kind, 2)}


@pytest.mark.parametrize("kind", KINDS)
def test_reupserting_the_same_rows_changes_nothing(session: Session, kind: str) -> None:
    upsert = UPSERTS[kind]
    batch = rows(kind, 3)
    assert counts(upsert(session, batch)) == (3, 0, 0, 0)
    ids = set(session.scalars(select(contract.get(kind).model.id)))
    audit = last_audit_id(session)

    again = upsert(session, batch)
    assert counts(again) == (0, 0, 3, 0) and again.ok
    assert audit_events(session, audit) == []
    assert set(session.scalars(select(contract.get(kind).model.id))) == ids


# The same rows in another notation: aliases, offsets, case, spacing, natives.
EQUIVALENT = {
    "activities": {"state": "Germany", "host_state": "pl", "troops": 13000},
    "notifications": {
        "sender": "Federal Republic of Germany",
        "sent_at": "2024-01-10T10:30:00+01:00",
        "received_at": dt.datetime(2024, 1, 10, 10, tzinfo=UTC),
        "nil_report": "FALSE",
        "covers_year": 2024,
    },
    "inspections": {
        "guest_states": "France Poland FRA",
        "requested_at": "2024-03-01 09:00Z",
        "counts_against_quota": True,
        "team_size": "004",
    },
    "observation_flights": {
        "observed_state": "Russian Federation",
        "flight_start_at": "2019-05-06T03:00:00-04:00",
        "distance_km": 5000,
    },
    "quotas": {"state": "DE", "year": 2001, "quota": 12},
    "holdings": {"state": "germany", "as_of": dt.date(2001, 1, 1), "count": "300"},
    "ceilings": {"valid_from": dt.date(2001, 1, 1), "valid_to": dt.date(2001, 12, 31)},
    "reductions": {"state": "Germany", "deadline": dt.date(2025, 1, 15), "reduced": 40},
}


@pytest.mark.parametrize("kind", KINDS)
def test_same_values_in_another_notation_are_unchanged(session: Session, kind: str) -> None:
    assert counts(upsert_records(session, kind, [make(kind, 1)])) == (1, 0, 0, 0)
    audit = last_audit_id(session)
    result = upsert_records(session, kind, [make(kind, 1, **EQUIVALENT[kind])])
    assert result.errors == [] and counts(result) == (0, 0, 1, 0)
    assert audit_events(session, audit) == []


# (file, column, new value, [before, after] as the audit log records them)
CHANGES = [
    ("activities", "troops", "14000", [13000, 14000]),
    ("activities", "end_date", "2024-03-21", ["2024-03-20", "2024-03-21"]),
    ("activities", "remarks", "scaled up", [None, "scaled up"]),
    (
        "notifications",
        "received_at",
        "2024-01-10T12:00:00+01:00",
        ["2024-01-10T10:00:00Z", "2024-01-10T11:00:00Z"],
    ),
    ("notifications", "nil_report", "true", [False, True]),
    ("notifications", "recipients", "Germany POL", ["ALL", "DEU POL"]),
    ("inspections", "guest_states", "", ["FRA POL", None]),
    ("inspections", "outcome", "not_carried_out", ["completed", "not_carried_out"]),
    ("observation_flights", "outcome", "curtailed", ["completed", "curtailed"]),
    ("observation_flights", "distance_km", "", [5000, None]),
    ("quotas", "quota", "16", [12, 16]),
    ("holdings", "count", "310", [300, 310]),
    ("holdings", "zone", "ATTU", [None, "ATTU"]),
    ("ceilings", "valid_to", "", ["2001-12-31", None]),
    ("reductions", "completed_at", "2024-06-01", [None, "2024-06-01"]),
]


@pytest.mark.parametrize(
    ("kind", "column", "value", "change"),
    [pytest.param(*c, id=f"{c[0]}-{c[1]}") for c in CHANGES],
)
def test_changing_one_value_updates_the_row_and_records_it(
    session: Session, kind: str, column: str, value: str, change: list
) -> None:
    batch = rows(kind, 2)
    assert counts(upsert_records(session, kind, batch)) == (2, 0, 0, 0)
    before = row_of(session, kind, key_of(kind, batch[0]))
    row_id, created_at = before.id, before.created_at
    audit = last_audit_id(session)

    batch[0] = make(kind, 1, **{column: value})
    result = upsert_records(session, kind, batch)
    assert counts(result) == (0, 1, 1, 0) and result.ok

    after = row_of(session, kind, key_of(kind, batch[0]))
    assert after.id == row_id and after.created_at == created_at
    assert after.updated_at >= created_at
    assert count(session, kind) == 2
    events = audit_events(session, audit)
    assert len(events) == 1
    event = events[0]
    assert (event.action, event.entity_type, event.entity_id) == ("update", kind, row_id)
    assert event.entity_key == " / ".join(key_of(kind, batch[0]))
    assert event.actor_type == "system" and event.user_id is None and event.run_id is None
    assert event.changes == {column: change}


def test_several_changes_are_recorded_in_one_event(session: Session) -> None:
    upsert_activities(session, [make("activities", 1)])
    audit = last_audit_id(session)
    changed = make("activities", 1, troops="9000", kind="alert", host_state="Germany")
    assert counts(upsert_activities(session, [changed])) == (0, 1, 0, 0)
    (event,) = audit_events(session, audit)
    assert event.changes == {
        "host_state": ["POL", "DEU"],
        "kind": ["exercise", "alert"],
        "troops": [13000, 9000],
    }


def test_insert_update_and_unchanged_in_one_batch(session: Session) -> None:
    upsert_holdings(session, rows("holdings", 2))
    batch = [make("holdings", 1), make("holdings", 2, count="1"), make("holdings", 3)]
    result = upsert_holdings(session, batch)
    assert (result.read, *counts(result)) == (3, 1, 1, 1, 0)
    assert result.as_dict() == {
        "kind": "holdings",
        "read": 3,
        "inserted": 1,
        "updated": 1,
        "unchanged": 1,
        "rejected": 0,
        "errors": [],
    }
    assert count(session, Holding) == 3


def test_a_refused_row_leaves_the_stored_row_as_it_was(session: Session) -> None:
    upsert_activities(session, [make("activities", 1)])
    audit = last_audit_id(session)
    result = upsert_activities(session, [make("activities", 1, troops="-5", remarks="new")])
    assert [(e.row, e.column) for e in result.errors] == [(1, "troops")]
    assert counts(result) == (0, 0, 0, 1)
    stored = row_of(session, "activities", ("A-1", "notification"))
    assert (stored.troops, stored.remarks) == (13000, None)
    assert audit_events(session, audit) == []


def test_upserts_by_key_across_many_chunks(session: Session, run: ImportRun) -> None:
    # More keys than one lookup chunk (500), with a composite key (tuple IN) on both backends.
    batch = [make("holdings", n, unit=f"unit {n % 7}") for n in range(1, 1201)]
    actor = Actor(run_id=run.id)
    assert counts(upsert_holdings(session, batch, actor=actor)) == (1200, 0, 0, 0)
    batch[1100]["count"] = "1"
    assert counts(upsert_holdings(session, batch, actor=actor)) == (0, 1, 1199, 0)
    assert count(session, Holding) == 1200


# --------------------------------------------------------------------------------------
# Provenance and the audit events of inserts
# --------------------------------------------------------------------------------------


def provenance(obj: Any) -> tuple[int | None, int | None, int | None, int | None]:
    return (obj.created_by_id, obj.created_run_id, obj.set_by_user_id, obj.set_by_run_id)


@pytest.mark.parametrize("kind", KINDS)
def test_a_user_creates_rows_with_one_audit_event_each(
    session: Session, user: User, kind: str
) -> None:
    audit = last_audit_id(session)
    batch = rows(kind, 2)
    result = upsert_records(session, kind, batch, actor=Actor(user_id=user.id))
    assert counts(result) == (2, 0, 0, 0)
    stored = [row_of(session, kind, key_of(kind, r)) for r in batch]
    assert [provenance(s) for s in stored] == [(user.id, None, user.id, None)] * 2

    events = audit_events(session, audit)
    assert [(e.action, e.actor_type, e.user_id, e.run_id) for e in events] == [
        ("create", "user", user.id, None)
    ] * 2
    assert sorted(e.entity_id for e in events) == sorted(s.id for s in stored)
    by_id = {e.entity_id: e for e in events}
    first = by_id[stored[0].id]
    assert first.entity_type == kind
    assert first.entity_key == " / ".join(key_of(kind, batch[0]))
    # Every value given is in the event as [None, value]; empty values are left out.
    spec = contract.get(kind)
    given = {c for c in spec.columns if batch[0][c] != ""}
    if kind == "activities":
        given.add("host_state")
    assert set(first.changes) == given
    assert all(before is None for before, _after in first.changes.values())


def test_create_event_holds_the_stored_values(session: Session, user: User) -> None:
    audit = last_audit_id(session)
    upsert_notifications(session, [make("notifications", 1)], actor=Actor(user_id=user.id))
    (event,) = audit_events(session, audit)
    assert event.changes == {
        "reference": [None, "N-1"],
        "regime": [None, "VD"],
        "kind": [None, "prior_notification"],
        "sender": [None, "DEU"],
        "recipients": [None, "ALL"],
        "sent_at": [None, "2024-01-10T09:30:00Z"],
        "received_at": [None, "2024-01-10T10:00:00Z"],
        "covers_year": [None, 2024],
        "nil_report": [None, False],
    }


@pytest.mark.parametrize("kind", KINDS)
def test_an_import_run_creates_rows_with_one_summary_event(
    session: Session, run: ImportRun, kind: str
) -> None:
    audit = last_audit_id(session)
    batch = rows(kind, 3)
    result = upsert_records(session, kind, batch, actor=Actor(run_id=run.id))
    assert counts(result) == (3, 0, 0, 0)
    stored = [row_of(session, kind, key_of(kind, r)) for r in batch]
    assert [provenance(s) for s in stored] == [(None, run.id, None, run.id)] * 3

    (event,) = audit_events(session, audit)
    assert (event.action, event.actor_type, event.run_id, event.user_id) == (
        "import",
        "import_run",
        run.id,
        None,
    )
    assert (event.entity_type, event.entity_id) == (kind, None)
    assert event.entity_key == f"import run {run.id}"
    assert event.changes == {"inserted": 3}


def test_system_writes_carry_no_actor(session: Session) -> None:
    audit = last_audit_id(session)
    upsert_quotas(session, [make("quotas", 1)])
    stored = row_of(session, "quotas", key_of("quotas", make("quotas", 1)))
    assert provenance(stored) == (None, None, None, None)
    (event,) = audit_events(session, audit)
    assert (event.action, event.actor_type, event.user_id, event.run_id) == (
        "create",
        "system",
        None,
        None,
    )


def test_a_user_correcting_an_imported_row_takes_over_set_by(
    session: Session, user: User, run: ImportRun
) -> None:
    key = ("I-1",)
    upsert_inspections(session, [make("inspections", 1)], actor=Actor(run_id=run.id))
    assert provenance(row_of(session, "inspections", key)) == (None, run.id, None, run.id)

    # The same values again, by the analyst: nothing changes, not even who set the row.
    audit = last_audit_id(session)
    unchanged = upsert_inspections(session, [make("inspections", 1)], actor=Actor(user_id=user.id))
    assert counts(unchanged) == (0, 0, 1, 0)
    assert provenance(row_of(session, "inspections", key)) == (None, run.id, None, run.id)
    assert audit_events(session, audit) == []

    corrected = make("inspections", 1, team_size="5", concerns_raised="true")
    result = upsert_inspections(session, [corrected], actor=Actor(user_id=user.id))
    assert counts(result) == (0, 1, 0, 0)
    stored = row_of(session, "inspections", key)
    assert provenance(stored) == (None, run.id, user.id, None)
    (event,) = audit_events(session, audit)
    assert (event.action, event.actor_type, event.user_id, event.run_id) == (
        "update",
        "user",
        user.id,
        None,
    )
    assert event.entity_id == stored.id
    assert event.changes == {"team_size": [4, 5], "concerns_raised": [False, True]}


def test_a_later_import_run_takes_over_from_a_user(session: Session, user: User) -> None:
    first = ImportRun(importer="csv")
    second = ImportRun(importer="csv")
    session.add_all([first, second])
    session.flush()
    key = key_of("holdings", make("holdings", 1))
    upsert_holdings(session, [make("holdings", 1)], actor=Actor(user_id=user.id))
    audit = last_audit_id(session)
    upsert_holdings(session, [make("holdings", 1, count="1")], actor=Actor(run_id=second.id))
    assert provenance(row_of(session, "holdings", key)) == (user.id, None, None, second.id)
    (event,) = audit_events(session, audit)
    assert (event.action, event.actor_type, event.run_id) == ("update", "import_run", second.id)
    assert event.changes == {"count": [300, 1]}


# --------------------------------------------------------------------------------------
# Timestamps are stored in UTC
# --------------------------------------------------------------------------------------

INSTANT = dt.datetime(2024, 2, 29, 23, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "2024-03-01T01:30:00+02:00",
        "2024-03-01T01:30+0200",
        "2024-03-01 01:30:00+02",
        "2024-02-29T18:30:00-05:00",
        "2024-02-29T23:30:00Z",
        "2024-02-29T23:30:00.000Z",
        "2024-02-29T23:30:00z",
        dt.datetime(2024, 3, 1, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        pd.Timestamp("2024-03-01T08:30:00", tz="Asia/Tokyo"),
    ],
    ids=str,
)
def test_timestamps_with_offsets_are_stored_in_utc(session: Session, value: Any) -> None:
    row = make("notifications", 1, sent_at=value, received_at="")
    assert counts(upsert_notifications(session, [row])) == (1, 0, 0, 0)
    session.expire_all()
    stored = session.scalar(select(Notification.sent_at))
    assert stored == INSTANT
    assert stored.utcoffset() == dt.timedelta(0)
    assert (stored.year, stored.month, stored.day, stored.hour) == (2024, 2, 29, 23)
    # The instant can be found by a query on either backend.
    found = select(Notification.reference).where(Notification.sent_at == INSTANT)
    assert session.scalar(found) == "N-1"


def test_every_timestamp_form_in_one_column_is_parsed_on_its_own(session: Session) -> None:
    forms = [
        "2024-03-01T01:30:00+02:00",
        "2024-02-29T23:30Z",
        "2024-03-01 01:30+0200",
        "2024-02-29T18:30:00.000000-05:00",
        "2024-03-01T01:30:00+02",
    ]
    batch = [make("notifications", n, sent_at=v, received_at="") for n, v in enumerate(forms)]
    assert counts(upsert_notifications(session, batch)) == (5, 0, 0, 0)
    assert set(session.scalars(select(Notification.sent_at))) == {INSTANT}


def test_timestamps_of_every_timestamp_column_are_utc(session: Session) -> None:
    row = make(
        "inspections",
        1,
        requested_at="2024-03-01T10:00:00+01:00",
        replied_at="2024-03-01T05:00:00-05:00",
        start_at="2024-03-04T11:00:00+03:00",
        end_at="2024-03-06T18:00:00Z",
        report_at="2024-03-20T12:00:00+00:00",
    )
    upsert_inspections(session, [row])
    session.expire_all()
    stored = session.scalar(select(Inspection))
    values = [stored.requested_at, stored.replied_at, stored.start_at, stored.end_at]
    assert [v.isoformat() for v in values] == [
        "2024-03-01T09:00:00+00:00",
        "2024-03-01T10:00:00+00:00",
        "2024-03-04T08:00:00+00:00",
        "2024-03-06T18:00:00+00:00",
    ]
    assert stored.report_at == dt.datetime(2024, 3, 20, 12, tzinfo=UTC)


def test_naive_datetime_is_refused_with_the_no_time_zone_message(session: Session) -> None:
    row = make("notifications", 1, sent_at=dt.datetime(2024, 3, 1, 9, 30), received_at=None)
    result = upsert_notifications(session, [row, make("notifications", 2)])
    assert [(e.row, e.column) for e in result.errors] == [(1, "sent_at")]
    assert result.errors[0].reason == (
        "timestamp '2024-03-01T09:30:00' has no time zone; add Z (UTC) or an offset such as +01:00"
    )
    assert stored_keys(session, "notifications") == {("N-2",)}


# --------------------------------------------------------------------------------------
# Defaults and optional key parts
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "overrides", "column"),
    [
        ("quotas", {"kind": "passive", "counterpart": ""}, "counterpart"),
        ("holdings", {"unit": ""}, "unit"),
    ],
)
def test_empty_optional_key_part_is_stored_as_empty_string(
    session: Session, kind: str, overrides: dict, column: str
) -> None:
    model = contract.get(kind).model
    row = make(kind, 1, **overrides)
    assert counts(upsert_records(session, kind, [row])) == (1, 0, 0, 0)
    assert session.scalars(select(getattr(model, column))).all() == [""]
    assert session.scalar(select(model.id).where(getattr(model, column).is_(None))) is None

    audit = last_audit_id(session)
    for again in (row, make(kind, 1, drop=[column]), make(kind, 1, **{column: None})):
        assert counts(upsert_records(session, kind, [again])) == (0, 0, 1, 0)
    assert count(session, kind) == 1
    assert audit_events(session, audit) == []


def test_unit_rows_and_the_national_total_are_different_keys(session: Session) -> None:
    batch = [make("holdings", 1), make("holdings", 1, unit="1st Armoured Division", count="44")]
    assert counts(upsert_holdings(session, batch)) == (2, 0, 0, 0)
    units = dict(session.execute(select(Holding.unit, Holding.count)).all())
    assert units == {"": 300, "1st Armoured Division": 44}


def test_active_quotas_per_counterpart_are_different_keys(session: Session) -> None:
    batch = [
        make("quotas", 1),
        make("quotas", 1, kind="active", counterpart="RUS", quota="2"),
        make("quotas", 1, kind="active", counterpart="Belarus", quota="1"),
    ]
    assert counts(upsert_quotas(session, batch)) == (3, 0, 0, 0)
    stored = set(session.execute(select(Quota.kind, Quota.counterpart, Quota.quota)).all())
    assert stored == {("passive", "", 12), ("active", "RUS", 2), ("active", "BLR", 1)}


def test_host_state_defaults_to_state(session: Session) -> None:
    batch = [
        make("activities", 1, state="Russia", host_state=""),
        make("activities", 2, state="RUS", drop=["host_state"]),
        make("activities", 3, state="RUS", host_state="Belarus"),
    ]
    assert counts(upsert_activities(session, batch)) == (3, 0, 0, 0)
    hosts = dict(session.execute(select(Activity.activity_id, Activity.host_state)).all())
    assert hosts == {"A-1": "RUS", "A-2": "RUS", "A-3": "BLR"}
    # Re-sent with the default spelled out (or still empty), nothing changes.
    again = [make("activities", 1, state="RUS", host_state="RUS"), batch[1]]
    assert counts(upsert_activities(session, again)) == (0, 0, 2, 0)


def test_empty_value_clears_a_stored_value(session: Session) -> None:
    upsert_reductions(session, [make("reductions", 1, remarks="announced in Vienna")])
    audit = last_audit_id(session)
    result = upsert_reductions(session, [make("reductions", 1, remarks="", reduced="")])
    assert counts(result) == (0, 1, 0, 0)
    stored = row_of(session, "reductions", ("R-1",))
    assert (stored.remarks, stored.reduced) == (None, None)
    (event,) = audit_events(session, audit)
    assert event.changes == {"reduced": [40, None], "remarks": ["announced in Vienna", None]}


# --------------------------------------------------------------------------------------
# Entry points: Python values and DataFrames
# --------------------------------------------------------------------------------------


def test_python_values_are_accepted(session: Session) -> None:
    activity = make(
        "activities",
        1,
        start_date=dt.date(2024, 2, 29),
        end_date=None,
        troops=13000,
        battle_tanks=0,
        acv=None,
    )
    inspection = make(
        "inspections",
        1,
        requested_at=dt.datetime(2024, 3, 1, 10, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        replied_at=None,
        counts_against_quota=False,
        concerns_raised=True,
        team_size=4,
    )
    quota = make("quotas", 1, year=2024, quota=0)
    assert upsert_activities(session, [activity]).ok
    assert upsert_inspections(session, [inspection]).ok
    assert upsert_quotas(session, [quota]).ok
    session.expire_all()
    a = session.scalar(select(Activity))
    assert (a.start_date, a.end_date, a.troops, a.battle_tanks, a.acv) == (
        dt.date(2024, 2, 29),
        None,
        13000,
        0,
        None,
    )
    i = session.scalar(select(Inspection))
    assert i.requested_at == dt.datetime(2024, 3, 1, 9, tzinfo=UTC)
    assert (i.counts_against_quota, i.concerns_raised, i.team_size) == (False, True, 4)
    assert session.execute(select(Quota.year, Quota.quota)).one() == (2024, 0)

    # The same values as strings are the same record.
    as_text = make("quotas", 1, year="2024", quota="0")
    assert counts(upsert_quotas(session, [as_text])) == (0, 0, 1, 0)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (-3, "-3 is negative; counts cannot be negative"),
        (12.5, "'12.5' is not a whole number"),
        (dt.date(2024, 3, 1), "'2024-03-01' is not a whole number"),
    ],
    ids=["negative-int", "float", "date"],
)
def test_python_values_are_judged_like_text(session: Session, value: Any, reason: str) -> None:
    result = upsert_holdings(session, [make("holdings", 1, count=value)])
    assert [(e.row, e.column) for e in result.errors] == [(1, "count")]
    assert reason in result.errors[0].reason
    assert count(session, Holding) == 0


def test_a_dataframe_read_from_csv_is_accepted(session: Session) -> None:
    text = (
        "\ufeffactivity_id,source,state,kind,start_date,troops,remarks\n"
        "A-1,notification,Germany,exercise,2024-03-01,,\n"
        'A-2,analyst,DEU,exercise,2024-03-02,12,"quoted, with a comma"\n'
    )
    frame = pd.read_csv(io.StringIO(text))  # NaN for empty cells, ints as floats
    result = upsert_activities(session, frame, first_row_number=2)
    assert result.ok and counts(result) == (2, 0, 0, 0)
    stored = session.execute(
        select(Activity.activity_id, Activity.state, Activity.troops, Activity.remarks).order_by(
            Activity.activity_id
        )
    ).all()
    assert stored == [("A-1", "DEU", None, None), ("A-2", "DEU", 12, "quoted, with a comma")]
    as_text = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    assert counts(upsert_activities(session, as_text)) == (0, 0, 2, 0)


# --------------------------------------------------------------------------------------
# The audit log is append-only
# --------------------------------------------------------------------------------------


@pytest.fixture()
def an_event(session: Session) -> int:
    audit = last_audit_id(session)
    upsert_ceilings(session, [make("ceilings", 1)])
    (event,) = audit_events(session, audit)
    return event.id


@pytest.mark.parametrize(
    "statement",
    [
        lambda event_id: (
            update(AuditEvent).where(AuditEvent.id == event_id).values(note="rewritten")
        ),
        lambda event_id: update(AuditEvent).values(changes=None),
        lambda event_id: delete(AuditEvent).where(AuditEvent.id == event_id),
        lambda event_id: delete(AuditEvent),
    ],
    ids=["update-one", "update-all", "delete-one", "delete-all"],
)
def test_audit_log_refuses_update_and_delete(
    session: Session, an_event: int, statement: Callable[[int], Executable]
) -> None:
    total = count(session, AuditEvent)
    with pytest.raises(DBAPIError, match="append-only"), session.begin_nested():
        session.execute(statement(an_event))
    # The test's transaction survives, and the event is as it was.
    assert count(session, AuditEvent) == total
    event = session.get(AuditEvent, an_event, populate_existing=True)
    assert event is not None and event.note is None and event.changes is not None


def test_audit_log_refuses_orm_delete(session: Session, an_event: int) -> None:
    event = session.get(AuditEvent, an_event)
    with pytest.raises(DBAPIError, match="append-only"), session.begin_nested():
        session.delete(event)
        session.flush()
    assert session.scalar(select(AuditEvent.id).where(AuditEvent.id == an_event)) == an_event
