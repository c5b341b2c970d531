"""Every validation rule of the data contract, for every file, through the upsert services.

Each case puts one bad row between two good ones and checks the error (row number, column,
value, a stable part of the reason), that the bad row was not written (nor audited) and that
the good rows were. Runs on SQLite and PostgreSQL through the ``session`` fixture.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from factories import KINDS, count, key_of, make, rows, stored_keys
from sqlalchemy import select
from sqlalchemy.orm import Session

from cbm import contract, vocab
from cbm.models import Activity, AuditEvent, Inspection, Notification, ObservationFlight
from cbm.services import UpsertResult, upsert_records
from cbm.services.validation import MAX_INT

# --------------------------------------------------------------------------------------
# The rules, as tables. Guards below check these tables against the contract, so a rule
# added to (or dropped from) the contract shows up here.
# --------------------------------------------------------------------------------------

REQUIRED = {
    "activities": ("activity_id", "source", "state", "kind", "start_date"),
    "notifications": ("reference", "regime", "kind", "sender", "sent_at"),
    "inspections": (
        "inspection_id",
        "regime",
        "kind",
        "inspecting_state",
        "inspected_state",
        "requested_at",
    ),
    "observation_flights": ("flight_id", "observing_state", "observed_state"),
    "quotas": ("regime", "state", "year", "kind", "quota"),
    "holdings": ("state", "as_of", "category", "source", "count"),
    "ceilings": ("regime", "state", "category", "valid_from", "ceiling"),
    "reductions": ("reduction_id", "state", "kind", "category", "quantity"),
}

# (file, column): (a value outside the vocabulary, the allowed values in message order)
VOCABULARIES = {
    ("activities", "source"): ("press", vocab.ACTIVITY_SOURCES),
    ("activities", "kind"): ("Exercise", vocab.ACTIVITY_KINDS),
    ("notifications", "regime"): ("vd", vocab.REGIMES),
    ("notifications", "kind"): ("invitation", vocab.ALL_NOTIFICATION_KINDS),
    ("inspections", "regime"): ("OST", ("VD", "CFE")),
    ("inspections", "kind"): ("challenge", vocab.ALL_INSPECTION_KINDS),
    ("inspections", "reply"): ("yes", vocab.INSPECTION_REPLIES),
    ("inspections", "outcome"): ("done", vocab.INSPECTION_OUTCOMES),
    ("observation_flights", "outcome"): ("aborted", vocab.FLIGHT_OUTCOMES),
    ("quotas", "regime"): ("GEMI", ("VD", "OST", "CFE")),
    ("quotas", "kind"): ("both", ("passive", "active")),
    ("holdings", "category"): ("tanks", vocab.HOLDING_CATEGORIES),
    ("holdings", "source"): ("sipri", vocab.HOLDING_SOURCES),
    ("ceilings", "regime"): ("OSCE", vocab.REGIMES),
    ("ceilings", "category"): ("helicopters", vocab.HOLDING_CATEGORIES),
    ("reductions", "kind"): ("voluntary", vocab.REDUCTION_KINDS),
    ("reductions", "category"): ("ships", vocab.HOLDING_CATEGORIES),
    ("reductions", "method"): ("scrapping", vocab.REDUCTION_METHODS),
}

STATE_COLUMNS = {
    "activities": ("state", "host_state"),
    "notifications": ("sender",),
    "inspections": ("inspecting_state", "inspected_state"),
    "observation_flights": ("observing_state", "observed_state"),
    "quotas": ("state", "counterpart"),
    "holdings": ("state",),
    "ceilings": ("state",),
    "reductions": ("state",),
}

TIMESTAMPS = {
    "notifications": ("sent_at", "received_at"),
    "inspections": ("requested_at", "replied_at", "start_at", "end_at", "report_at"),
    "observation_flights": (
        "notified_at",
        "eta_poe",
        "arrived_at",
        "mission_plan_at",
        "flight_start_at",
        "flight_end_at",
        "departed_at",
        "report_at",
    ),
}

DATES = {
    "activities": ("start_date", "end_date"),
    "holdings": ("as_of",),
    "ceilings": ("valid_from", "valid_to"),
    "reductions": ("announced_at", "deadline", "completed_at"),
}

INTEGERS = {
    "activities": (
        "troops",
        "battle_tanks",
        "acv",
        "artillery",
        "air_sorties",
        "airborne_troops",
    ),
    "inspections": ("team_size",),
    "observation_flights": ("distance_km", "max_distance_km"),
    "quotas": ("quota",),
    "holdings": ("count",),
    "ceilings": ("ceiling",),
    "reductions": ("quantity", "reduced"),
}

YEARS = {"notifications": ("covers_year",), "quotas": ("year",)}

BOOLEANS = {
    "notifications": ("nil_report",),
    "inspections": ("counts_against_quota", "concerns_raised"),
    "observation_flights": ("counts_against_quota",),
}

# Plain strings limited in length by their model column.
LIMITED_STRINGS = {
    "activities": ("activity_id", "name"),
    "notifications": ("reference", "activity_id", "event_id", "in_reply_to"),
    "inspections": ("inspection_id", "unit"),
    "observation_flights": ("flight_id", "point_of_entry", "os_airfield"),
    "holdings": ("unit", "zone"),
    "reductions": ("reduction_id", "region_from", "verified_by"),
}
# Reference columns: a value that fits would still need its target stored.
REFERENCES = {("notifications", c) for c in ("activity_id", "event_id", "in_reply_to")} | {
    ("reductions", "verified_by")
}

# (file, earlier, later): overrides for row 2 that put ``later`` before ``earlier``, and the
# message (values as stored: UTC, ISO 8601).
ORDERED = {
    ("activities", "start_date", "end_date"): (
        {"end_date": "2024-03-09"},
        "end_date 2024-03-09 is before start_date 2024-03-10",
    ),
    ("notifications", "sent_at", "received_at"): (
        {"received_at": "2024-01-10T10:00:00+02:00"},
        "received_at 2024-01-10T08:00:00Z is before sent_at 2024-01-10T09:30:00Z",
    ),
    ("inspections", "requested_at", "replied_at"): (
        {"replied_at": "2024-02-29T09:00:00Z"},
        "replied_at 2024-02-29T09:00:00Z is before requested_at 2024-03-01T09:00:00Z",
    ),
    ("inspections", "start_at", "end_at"): (
        {"end_at": "2024-03-04T07:59:59Z"},
        "end_at 2024-03-04T07:59:59Z is before start_at 2024-03-04T08:00:00Z",
    ),
    ("inspections", "requested_at", "start_at"): (
        {"start_at": "2024-03-01T08:00:00Z"},
        "start_at 2024-03-01T08:00:00Z is before requested_at 2024-03-01T09:00:00Z",
    ),
    ("observation_flights", "flight_start_at", "flight_end_at"): (
        {"flight_end_at": "2019-05-06T06:00:00Z"},
        "flight_end_at 2019-05-06T06:00:00Z is before flight_start_at 2019-05-06T07:00:00Z",
    ),
    ("observation_flights", "notified_at", "eta_poe"): (
        {"eta_poe": "2019-04-30T10:00:00Z"},
        "eta_poe 2019-04-30T10:00:00Z is before notified_at 2019-05-01T08:00:00Z",
    ),
    ("ceilings", "valid_from", "valid_to"): (
        {"valid_to": "2001-12-31"},
        "valid_to 2001-12-31 is before valid_from 2002-01-01",
    ),
    ("reductions", "announced_at", "deadline"): (
        {"deadline": "2024-01-14"},
        "deadline 2024-01-14 is before announced_at 2024-01-15",
    ),
    ("reductions", "announced_at", "completed_at"): (
        {"completed_at": "2023-12-31"},
        "completed_at 2023-12-31 is before announced_at 2024-01-15",
    ),
}

UNKNOWN_STATE = "is not a known participating State (use an ISO 3166 alpha-3 code"
NO_ZONE = "has no time zone; add Z (UTC) or an offset such as +01:00"
NOT_ISO = "is not an ISO 8601 timestamp such as 2024-03-01T09:30:00Z"
NOT_WHOLE = "is not a whole number (plain digits, no separators)"


def _fields_of_type(*types: str) -> set[tuple[str, str]]:
    return {(s.name, f.name) for s in contract.FILES.values() for f in s.fields if f.type in types}


def _pairs(table: dict[str, tuple[str, ...]]) -> set[tuple[str, str]]:
    return {(kind, column) for kind, columns in table.items() for column in columns}


def test_rule_tables_cover_the_contract() -> None:
    """Every required, typed, limited or ordered column of the contract has cases below."""
    required = {(s.name, f.name) for s in contract.FILES.values() for f in s.fields if f.required}
    assert _pairs(REQUIRED) == required
    assert set(VOCABULARIES) == _fields_of_type(contract.VOCAB)
    for (kind, column), (_bad, allowed) in VOCABULARIES.items():
        assert contract.get(kind).field(column).choices == allowed
    assert _pairs(STATE_COLUMNS) == _fields_of_type(contract.STATE)
    assert _pairs(TIMESTAMPS) == _fields_of_type(contract.TIMESTAMP)
    assert _pairs(DATES) == _fields_of_type(contract.DATE)
    assert _pairs(INTEGERS) == _fields_of_type(contract.INT)
    assert _pairs(YEARS) == _fields_of_type(contract.YEAR)
    assert _pairs(BOOLEANS) == _fields_of_type(contract.BOOL)
    strings = {
        (k, c) for (k, c) in _fields_of_type(contract.STR) if c in contract.get(k).max_lengths
    }
    assert _pairs(LIMITED_STRINGS) == strings
    assert {(k, a, b) for (k, a, b) in ORDERED} == {
        (s.name, a, b) for s in contract.FILES.values() for a, b in s.ordered
    }
    assert set(KINDS) == set(contract.FILES)


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def upsert(session: Session, kind: str, batch: list[dict[str, Any]], **kw: Any) -> UpsertResult:
    return upsert_records(session, kind, batch, **kw)


def errors_of(result: UpsertResult) -> list[tuple[int | None, str | None]]:
    return [(e.row, e.column) for e in result.errors]


def assert_only_row_2_refused(
    session: Session,
    kind: str,
    overrides: dict[str, Any],
    column: str,
    reason: str,
    *,
    value: Any = ...,
) -> None:
    """Rows 1 and 3 are good, row 2 carries ``overrides``; only row 2 is refused."""
    batch = [make(kind, 1), make(kind, 2, **overrides), make(kind, 3)]
    audits = count(session, AuditEvent)
    result = upsert(session, kind, batch)

    assert errors_of(result) == [(2, column)], [str(e) for e in result.errors]
    error = result.errors[0]
    assert reason in error.reason
    assert reason in str(error) and str(error).startswith(f"row 2, column {column}: ")
    expected_value = str(overrides[column]).strip() if value is ... else value
    assert error.value == expected_value
    assert (result.read, result.inserted, result.updated, result.rejected) == (3, 2, 0, 1)
    assert not result.ok
    # Nothing of row 2 was written or audited; rows 1 and 3 were.
    assert stored_keys(session, kind) == {key_of(kind, batch[0]), key_of(kind, batch[2])}
    assert count(session, AuditEvent) - audits == 2


def _cases(
    table: dict[str, tuple[str, ...]],
    value: str,
    reason: Any,
    tag: str,
) -> list[Any]:
    """One case per (file, column): ``value`` in that column; ``reason`` may depend on both."""
    out = []
    for kind, columns in table.items():
        for column in columns:
            overrides = {column: value}
            if (kind, column) == ("quotas", "counterpart"):
                overrides["kind"] = "active"
            text = reason(kind, column) if callable(reason) else reason
            case_id = f"{kind}-{column}-{tag}"
            out.append(pytest.param(kind, overrides, column, text, id=case_id))
    return out


# --------------------------------------------------------------------------------------
# One bad value per row
# --------------------------------------------------------------------------------------

REQUIRED_CASES = [
    *_cases(REQUIRED, "", lambda _k, c: f"{c} is required", "empty"),
    pytest.param(
        "activities", {"state": "   "}, "state", "state is required", id="whitespace-only"
    ),
]


@pytest.mark.parametrize(("kind", "overrides", "column", "reason"), REQUIRED_CASES)
def test_required_value_empty(
    session: Session, kind: str, overrides: dict, column: str, reason: str
) -> None:
    assert_only_row_2_refused(session, kind, overrides, column, reason, value="")


VOCAB_CASES = [
    pytest.param(
        kind,
        {column: bad},
        column,
        f"'{bad}' is not one of: {', '.join(allowed)}",
        id=f"{kind}-{column}",
    )
    for (kind, column), (bad, allowed) in VOCABULARIES.items()
]


@pytest.mark.parametrize(("kind", "overrides", "column", "reason"), VOCAB_CASES)
def test_unknown_vocabulary_value_lists_allowed_values(
    session: Session, kind: str, overrides: dict, column: str, reason: str
) -> None:
    assert_only_row_2_refused(session, kind, overrides, column, reason)


STATE_CASES = [
    *_cases(
        STATE_COLUMNS,
        "XYZ",
        f"'XYZ' {UNKNOWN_STATE}",
        "unknown",
    ),
    pytest.param(
        "activities", {"state": "Germania"}, "state", f"'Germania' {UNKNOWN_STATE}", id="a-name"
    ),
    pytest.param(
        "inspections",
        {"guest_states": "FRA XYZ"},
        "guest_states",
        "unknown State(s) XYZ; expected alpha-3 codes separated by spaces",
        id="inspections-guest_states-member",
    ),
    pytest.param(
        "inspections",
        {"guest_states": "ALL"},
        "guest_states",
        "unknown State(s) ALL; expected alpha-3 codes",
        id="inspections-guest_states-ALL",
    ),
    pytest.param(
        "notifications",
        {"recipients": "DEU XXX, QQQ"},
        "recipients",
        "unknown State(s) XXX, QQQ; expected ALL or alpha-3 codes separated by spaces",
        id="notifications-recipients-members",
    ),
]


@pytest.mark.parametrize(("kind", "overrides", "column", "reason"), STATE_CASES)
def test_unknown_state(
    session: Session, kind: str, overrides: dict, column: str, reason: str
) -> None:
    assert_only_row_2_refused(session, kind, overrides, column, reason)


TIMESTAMP_CASES = [
    *_cases(
        TIMESTAMPS, "2024-03-01T09:30:00", f"timestamp '2024-03-01T09:30:00' {NO_ZONE}", "nozone"
    ),
    pytest.param(
        "notifications",
        {"sent_at": "2024-01-10"},
        "sent_at",
        f"timestamp '2024-01-10' {NO_ZONE}",
        id="date-only",
    ),
    pytest.param(
        "notifications",
        {"sent_at": "10/01/2024 09:30Z"},
        "sent_at",
        f"'10/01/2024 09:30Z' {NOT_ISO}",
        id="notifications-malformed",
    ),
    pytest.param(
        "inspections",
        {"start_at": "yesterday"},
        "start_at",
        f"'yesterday' {NOT_ISO}",
        id="inspections-malformed",
    ),
    pytest.param(
        "observation_flights",
        {"eta_poe": "2019-05-04T10:00:00 UTC"},
        "eta_poe",
        f"'2019-05-04T10:00:00 UTC' {NOT_ISO}",
        id="flights-malformed",
    ),
    pytest.param(
        "notifications",
        {"sent_at": "2023-02-29T10:00:00Z"},
        "sent_at",
        "'2023-02-29T10:00:00Z' is not a real date and time",
        id="notifications-impossible-day",
    ),
    pytest.param(
        "inspections",
        {"report_at": "2024-03-20T25:00:00Z"},
        "report_at",
        "'2024-03-20T25:00:00Z' is not a real date and time",
        id="inspections-impossible-hour",
    ),
    pytest.param(
        "observation_flights",
        {"report_at": "2019-06-31T00:00:00+02:00"},
        "report_at",
        "'2019-06-31T00:00:00+02:00' is not a real date and time",
        id="flights-impossible-day",
    ),
]


@pytest.mark.parametrize(("kind", "overrides", "column", "reason"), TIMESTAMP_CASES)
def test_bad_timestamp(
    session: Session, kind: str, overrides: dict, column: str, reason: str
) -> None:
    assert_only_row_2_refused(session, kind, overrides, column, reason)


DATE_CASES = [
    *_cases(DATES, "2023-02-29", "'2023-02-29' is not a real calendar date", "feb29-2023"),
    pytest.param(
        "activities",
        {"start_date": "10/03/2024"},
        "start_date",
        "'10/03/2024' is not a date in the form YYYY-MM-DD",
        id="activities-malformed",
    ),
    pytest.param(
        "holdings",
        {"as_of": "2024-3-1"},
        "as_of",
        "'2024-3-1' is not a date in the form YYYY-MM-DD",
        id="holdings-unpadded",
    ),
    pytest.param(
        "ceilings",
        {"valid_from": "2024-01-01T00:00:00Z"},
        "valid_from",
        "'2024-01-01T00:00:00Z' is not a date in the form YYYY-MM-DD",
        id="ceilings-timestamp-for-date",
    ),
    pytest.param(
        "reductions",
        {"deadline": "2025-13-01"},
        "deadline",
        "'2025-13-01' is not a real calendar date",
        id="reductions-month-13",
    ),
]


@pytest.mark.parametrize(("kind", "overrides", "column", "reason"), DATE_CASES)
def test_bad_date(session: Session, kind: str, overrides: dict, column: str, reason: str) -> None:
    assert_only_row_2_refused(session, kind, overrides, column, reason)


# Where 2024-02-29 is valid without disturbing the order of the other columns.
LEAP_DAY_CASES = [
    ("activities", {"start_date": "2024-02-29"}, "start_date"),
    ("activities", {"end_date": "2024-03-10", "start_date": "2024-02-29"}, "end_date"),
    ("holdings", {"as_of": "2024-02-29"}, "as_of"),
    ("ceilings", {"valid_from": "2024-02-29", "valid_to": "2024-12-31"}, "valid_from"),
    ("ceilings", {"valid_to": "2024-02-29"}, "valid_to"),
    ("reductions", {"announced_at": "2024-01-15", "deadline": "2024-02-29"}, "deadline"),
    ("reductions", {"completed_at": "2024-02-29"}, "completed_at"),
    ("reductions", {"announced_at": "2024-02-29", "deadline": ""}, "announced_at"),
]


@pytest.mark.parametrize(("kind", "overrides", "column"), LEAP_DAY_CASES)
def test_leap_day_is_a_valid_date(
    session: Session, kind: str, overrides: dict, column: str
) -> None:
    row = make(kind, 2, **overrides)
    result = upsert(session, kind, [row])
    assert result.errors == [] and result.inserted == 1
    model = contract.get(kind).model
    assert session.scalar(select(getattr(model, column))).isoformat() == overrides[column]


@pytest.mark.parametrize(
    ("kind", "column"),
    [
        ("notifications", "sent_at"),
        ("inspections", "report_at"),
        ("observation_flights", "eta_poe"),
    ],
)
def test_leap_day_is_a_valid_timestamp(session: Session, kind: str, column: str) -> None:
    # Late in the day so that the ordered columns around it stay in order.
    row = make(kind, 1)
    row[column] = row[column][:4] + "-02-29T12:00:00Z"
    if kind == "observation_flights":  # 2019 had no 29 February
        row.update(notified_at="2020-02-28T00:00:00Z", eta_poe="2020-02-29T12:00:00Z")
    if kind == "notifications":
        row["received_at"] = ""
    result = upsert(session, kind, [row])
    assert result.errors == [] and result.inserted == 1
    stored = session.scalar(select(getattr(contract.get(kind).model, column)))
    assert (stored.month, stored.day, stored.hour) == (2, 29, 12)


INT_CASES = [
    *_cases(INTEGERS, "-5", "-5 is negative; counts cannot be negative", "negative"),
    *_cases(INTEGERS, "1,000", f"'1,000' {NOT_WHOLE}", "separator"),
    *_cases(INTEGERS, "12.5", f"'12.5' {NOT_WHOLE}", "decimal"),
    pytest.param("activities", {"troops": "1e3"}, "troops", f"'1e3' {NOT_WHOLE}", id="exponent"),
    pytest.param("holdings", {"count": "+5"}, "count", f"'+5' {NOT_WHOLE}", id="plus-sign"),
    pytest.param(
        "ceilings",
        {"ceiling": str(MAX_INT + 1)},
        "ceiling",
        f"{MAX_INT + 1} is too large (at most 2,147,483,647)",
        id="too-large",
    ),
    pytest.param(
        "reductions",
        {"quantity": "99999999999999999999"},
        "quantity",
        "99999999999999999999 is too large",
        id="far-too-large",
    ),
]


@pytest.mark.parametrize(("kind", "overrides", "column", "reason"), INT_CASES)
def test_bad_count(session: Session, kind: str, overrides: dict, column: str, reason: str) -> None:
    assert_only_row_2_refused(session, kind, overrides, column, reason)


@pytest.mark.parametrize("value", ["١٢", "１２"], ids=["arabic-indic", "fullwidth"])
def test_count_in_non_ascii_digits_is_refused(session: Session, value: str) -> None:
    assert_only_row_2_refused(session, "activities", {"troops": value}, "troops", NOT_WHOLE)


def test_values_are_trimmed(session: Session) -> None:
    row = make("quotas", 1, regime=" OST", state="DEU ", year=" 2001 ", quota="\t12 ")
    result = upsert(session, "quotas", [row])
    assert result.errors == [] and result.inserted == 1
    assert stored_keys(session, "quotas") == {("OST", "DEU", "2001", "passive", "")}


def test_count_limits_are_inclusive(session: Session) -> None:
    row = make("ceilings", 1, ceiling=str(MAX_INT))
    row2 = make("ceilings", 2, ceiling="0")
    result = upsert(session, "ceilings", [row, row2])
    assert result.errors == [] and result.inserted == 2


YEAR_CASES = [
    *_cases(YEARS, "24", "'24' is not a year between 1970 and 2200", "two-digits"),
    *_cases(YEARS, "2024.0", "'2024.0' is not a year between 1970 and 2200", "decimal"),
    pytest.param(
        "quotas", {"year": "1969"}, "year", "'1969' is not a year between 1970 and 2200", id="1969"
    ),
    pytest.param(
        "quotas", {"year": "2201"}, "year", "'2201' is not a year between 1970 and 2200", id="2201"
    ),
]


@pytest.mark.parametrize(("kind", "overrides", "column", "reason"), YEAR_CASES)
def test_bad_year(session: Session, kind: str, overrides: dict, column: str, reason: str) -> None:
    assert_only_row_2_refused(session, kind, overrides, column, reason)


BOOL_CASES = [
    *_cases(BOOLEANS, "yes", "'yes' is not true or false", "yes"),
    *_cases(BOOLEANS, "1", "'1' is not true or false", "one"),
]


@pytest.mark.parametrize(("kind", "overrides", "column", "reason"), BOOL_CASES)
def test_bad_boolean(
    session: Session, kind: str, overrides: dict, column: str, reason: str
) -> None:
    assert_only_row_2_refused(session, kind, overrides, column, reason)


@pytest.mark.parametrize(("value", "stored"), [("TRUE", True), ("False", False), ("", None)])
def test_booleans_are_case_insensitive_and_empty_is_unknown(
    session: Session, value: str, stored: bool | None
) -> None:
    result = upsert(session, "notifications", [make("notifications", 1, nil_report=value)])
    assert result.errors == []
    assert session.scalar(select(Notification.nil_report)) is stored


def _limit(kind: str, column: str) -> int:
    return contract.get(kind).model.__table__.c[column].type.length


LENGTH_CASES = [
    pytest.param(
        kind,
        {column: "x" * (_limit(kind, column) + 1)},
        column,
        f"is {_limit(kind, column) + 1} characters long; at most {_limit(kind, column)} "
        "are allowed",
        id=f"{kind}-{column}",
    )
    for kind, columns in LIMITED_STRINGS.items()
    for column in columns
]


@pytest.mark.parametrize(("kind", "overrides", "column", "reason"), LENGTH_CASES)
def test_over_long_string(
    session: Session, kind: str, overrides: dict, column: str, reason: str
) -> None:
    assert_only_row_2_refused(session, kind, overrides, column, reason)


@pytest.mark.parametrize(
    ("kind", "column"),
    [p for p in sorted(_pairs(LIMITED_STRINGS)) if p not in REFERENCES],
)
def test_string_at_the_length_limit_is_accepted(session: Session, kind: str, column: str) -> None:
    value = "é" * _limit(kind, column)  # characters, not bytes
    result = upsert(session, kind, [make(kind, 1, **{column: value})])
    assert result.errors == [] and result.inserted == 1
    assert session.scalar(select(getattr(contract.get(kind).model, column))) == value


CONTROL_CASES = [
    pytest.param("activities", {"remarks": "a\x00b"}, "remarks", id="activities-nul-in-text"),
    pytest.param("notifications", {"reference": "N\x1b2"}, "reference", id="escape-in-key"),
    pytest.param("holdings", {"zone": "x\x7f"}, "zone", id="holdings-delete-char"),
]


@pytest.mark.parametrize(("kind", "overrides", "column"), CONTROL_CASES)
def test_control_characters(session: Session, kind: str, overrides: dict, column: str) -> None:
    assert_only_row_2_refused(session, kind, overrides, column, "contains control characters")


def test_tabs_and_newlines_in_free_text_are_kept(session: Session) -> None:
    text = "line one\n\tline two\r\nline three"
    result = upsert(session, "activities", [make("activities", 1, remarks=text)])
    assert result.errors == []
    assert session.scalar(select(Activity.remarks)) == text


# --------------------------------------------------------------------------------------
# Rules across columns of one row
# --------------------------------------------------------------------------------------

ORDER_CASES = [
    pytest.param(kind, overrides, later, reason, id=f"{kind}-{earlier}-{later}")
    for (kind, earlier, later), (overrides, reason) in ORDERED.items()
]


@pytest.mark.parametrize(("kind", "overrides", "column", "reason"), ORDER_CASES)
def test_end_before_start(
    session: Session, kind: str, overrides: dict, column: str, reason: str
) -> None:
    assert_only_row_2_refused(session, kind, overrides, column, reason)


@pytest.mark.parametrize(
    ("kind", "earlier", "later"), [pytest.param(*k, id="-".join(k)) for k in ORDERED]
)
def test_end_equal_to_start_is_accepted(
    session: Session, kind: str, earlier: str, later: str
) -> None:
    row = make(kind, 2)
    row[later] = row[earlier]
    if kind == "inspections" and later == "start_at":  # keep end_at after start_at
        row["end_at"] = row["requested_at"]
    result = upsert(session, kind, [row])
    assert result.errors == [] and result.inserted == 1


def test_same_instant_in_another_offset_is_not_before(session: Session) -> None:
    row = make("notifications", 1, received_at="2024-01-10T10:30:00+01:00")  # = sent_at
    assert upsert(session, "notifications", [row]).errors == []


REGIME_KIND_CASES = [
    pytest.param(
        "notifications",
        {"regime": "OST", "kind": "annual_exchange"},
        "kind",
        "kind 'annual_exchange' does not belong to regime OST (allowed: "
        + ", ".join(vocab.NOTIFICATION_KINDS["OST"])
        + ")",
        id="notifications-OST",
    ),
    pytest.param(
        "notifications",
        {"regime": "GEMI", "kind": "prior_notification"},
        "kind",
        "kind 'prior_notification' does not belong to regime GEMI (allowed: annual_exchange)",
        id="notifications-GEMI",
    ),
    pytest.param(
        "notifications",
        {"regime": "VD", "kind": "flight_notification"},
        "kind",
        "kind 'flight_notification' does not belong to regime VD",
        id="notifications-VD",
    ),
    pytest.param(
        "inspections",
        {"regime": "CFE", "kind": "vd_inspection"},
        "kind",
        "kind 'vd_inspection' does not belong to regime CFE (allowed: cfe_declared_site, "
        "cfe_challenge, cfe_reduction, cfe_certification)",
        id="inspections-CFE",
    ),
    pytest.param(
        "inspections",
        {"regime": "VD", "kind": "cfe_challenge"},
        "kind",
        "kind 'cfe_challenge' does not belong to regime VD (allowed: vd_inspection, vd_evaluation)",
        id="inspections-VD",
    ),
]


@pytest.mark.parametrize(("kind", "overrides", "column", "reason"), REGIME_KIND_CASES)
def test_kind_not_of_the_regime(
    session: Session, kind: str, overrides: dict, column: str, reason: str
) -> None:
    assert_only_row_2_refused(session, kind, overrides, column, reason)


@pytest.mark.parametrize(
    ("regime", "kind"),
    [("CFE", "annual_exchange"), ("GEMI", "annual_exchange"), ("OST", "quota_transfer")],
)
def test_kind_shared_or_proper_to_the_regime_is_accepted(
    session: Session, regime: str, kind: str
) -> None:
    row = make("notifications", 1, regime=regime, kind=kind)
    assert upsert(session, "notifications", [row]).errors == []


QUOTA_CASES = [
    pytest.param(
        "quotas",
        {"kind": "active", "counterpart": ""},
        "counterpart",
        "an active quota needs the counterpart State",
        id="active-without-counterpart",
    ),
    pytest.param(
        "quotas",
        {"kind": "passive", "counterpart": "POL"},
        "counterpart",
        "a passive quota has no counterpart; leave it empty",
        id="passive-with-counterpart",
    ),
]


@pytest.mark.parametrize(("kind", "overrides", "column", "reason"), QUOTA_CASES)
def test_quota_counterpart(
    session: Session, kind: str, overrides: dict, column: str, reason: str
) -> None:
    assert_only_row_2_refused(session, kind, overrides, column, reason)


SELF_CASES = [
    pytest.param(
        "observation_flights",
        {"observed_state": "DEU"},
        "observed_state",
        "a State cannot observe itself",
        id="flight-code",
    ),
    pytest.param(
        "observation_flights",
        {"observing_state": "Turkey", "observed_state": "Türkiye"},
        "observed_state",
        "a State cannot observe itself",
        id="flight-aliases",
    ),
    pytest.param(
        "inspections",
        {"inspected_state": "de"},
        "inspected_state",
        "a State cannot inspect itself",
        id="inspection-alias",
    ),
]


@pytest.mark.parametrize(("kind", "overrides", "column", "reason"), SELF_CASES)
def test_state_cannot_observe_or_inspect_itself(
    session: Session, kind: str, overrides: dict, column: str, reason: str
) -> None:
    assert_only_row_2_refused(session, kind, overrides, column, reason)


# --------------------------------------------------------------------------------------
# States: aliases are accepted and stored as codes
# --------------------------------------------------------------------------------------

ALIAS_CASES = [
    ("activities", {"state": "Germany"}, "state", "DEU"),
    ("activities", {"host_state": "Türkiye"}, "host_state", "TUR"),
    ("activities", {"host_state": "turkey"}, "host_state", "TUR"),
    ("activities", {"state": "deu"}, "state", "DEU"),
    ("notifications", {"sender": "Czech Republic"}, "sender", "CZE"),
    ("notifications", {"sender": " czech  republic "}, "sender", "CZE"),
    ("notifications", {"recipients": "de  Turkey fr"}, "recipients", "DEU TUR FRA"),
    ("notifications", {"recipients": "DEU, POL;FRA"}, "recipients", "DEU POL FRA"),
    ("notifications", {"recipients": "all"}, "recipients", "ALL"),
    ("inspections", {"inspecting_state": "United Kingdom"}, "inspecting_state", "GBR"),
    ("inspections", {"inspected_state": "Russia"}, "inspected_state", "RUS"),
    ("inspections", {"guest_states": "de Türkiye DEU"}, "guest_states", "DEU TUR"),
    ("observation_flights", {"observing_state": "U.S.A."}, "observing_state", "USA"),
    ("observation_flights", {"observed_state": "Belarus"}, "observed_state", "BLR"),
    ("quotas", {"state": "Czechia"}, "state", "CZE"),
    ("quotas", {"kind": "active", "counterpart": "de"}, "counterpart", "DEU"),
    ("holdings", {"state": "Germany"}, "state", "DEU"),
    ("ceilings", {"state": "Türkiye"}, "state", "TUR"),
    ("reductions", {"state": "Turkey"}, "state", "TUR"),
]


@pytest.mark.parametrize(
    ("kind", "overrides", "column", "code"),
    [pytest.param(*c, id=f"{c[0]}-{c[1][c[2]].strip()}") for c in ALIAS_CASES],
)
def test_state_aliases_are_stored_as_codes(
    session: Session, kind: str, overrides: dict, column: str, code: str
) -> None:
    result = upsert(session, kind, [make(kind, 1, **overrides)])
    assert result.errors == [] and result.inserted == 1
    assert session.scalar(select(getattr(contract.get(kind).model, column))) == code


# --------------------------------------------------------------------------------------
# Duplicate keys within one batch
# --------------------------------------------------------------------------------------

# The key as the message shows it, for row 1 of each file; the duplicate is written with an
# alias or another non-key value so that only the key makes it a duplicate.
DUPLICATES = {
    "activities": ({"troops": "1"}, "activity_id=A-1, source=notification"),
    "notifications": ({"sender": "Germany"}, "reference=N-1"),
    "inspections": ({"team_size": "9"}, "inspection_id=I-1"),
    "observation_flights": ({"outcome": "curtailed"}, "flight_id=F-1"),
    "quotas": (
        {"state": "Germany", "quota": "3"},
        "regime=OST, state=DEU, year=2001, kind=passive, counterpart=",
    ),
    "holdings": (
        {"state": "de", "count": "7"},
        "state=DEU, as_of=2001-01-01, category=battle_tanks, source=vd_aemi, unit=",
    ),
    "ceilings": (
        {"state": "Germany", "ceiling": "1"},
        "regime=CFE, state=DEU, category=battle_tanks, valid_from=2001-01-01",
    ),
    "reductions": ({"quantity": "5"}, "reduction_id=R-1"),
}


@pytest.mark.parametrize("kind", KINDS)
def test_duplicate_key_in_one_batch_refuses_both_rows(session: Session, kind: str) -> None:
    changes, shown = DUPLICATES[kind]
    batch = [make(kind, 1), make(kind, 1, **changes), make(kind, 3)]
    audits = count(session, AuditEvent)
    result = upsert(session, kind, batch)

    first_key_column = contract.get(kind).key[0]
    assert errors_of(result) == [(1, first_key_column), (2, first_key_column)]
    assert [e.reason for e in result.errors] == [
        f"duplicate key ({shown}) also in row(s) 2",
        f"duplicate key ({shown}) also in row(s) 1",
    ]
    assert (result.inserted, result.rejected) == (1, 2)
    assert stored_keys(session, kind) == {key_of(kind, batch[2])}
    assert count(session, AuditEvent) - audits == 1


def test_duplicate_key_message_names_every_other_row(session: Session) -> None:
    batch = [make("reductions", 1), make("reductions", 2), make("reductions", 1)]
    batch.append(make("reductions", 1))
    result = upsert(session, "reductions", batch, first_row_number=2)
    assert errors_of(result) == [(2, "reduction_id"), (4, "reduction_id"), (5, "reduction_id")]
    assert [e.reason.rsplit(" also in ", 1)[1] for e in result.errors] == [
        "row(s) 4, 5",
        "row(s) 2, 5",
        "row(s) 2, 4",
    ]
    assert stored_keys(session, "reductions") == {("R-2",)}


def test_same_key_with_different_case_is_not_a_duplicate(session: Session) -> None:
    result = upsert(
        session, "activities", [make("activities", 1), make("activities", 1, activity_id="a-1")]
    )
    assert result.errors == [] and result.inserted == 2


def test_duplicate_of_a_refused_row_names_that_row(session: Session) -> None:
    batch = [make("activities", 1, troops="-1"), make("activities", 1)]
    result = upsert(session, "activities", batch)
    assert errors_of(result) == [(1, "troops"), (2, "activity_id")]
    assert result.errors[1].reason.endswith("also in row(s) 1")
    assert count(session, "activities") == 0


def test_refused_key_part_does_not_make_a_valid_row_a_duplicate(session: Session) -> None:
    batch = [make("quotas", 1, counterpart="XYZ"), make("quotas", 1)]
    result = upsert(session, "quotas", batch)
    assert errors_of(result) == [(1, "counterpart")]
    assert result.inserted == 1
    assert stored_keys(session, "quotas") == {("OST", "DEU", "2001", "passive", "")}


# --------------------------------------------------------------------------------------
# File-level errors: the columns
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_column_refuses_the_file(session: Session, kind: str) -> None:
    batch = [{**r, "Comment": "x"} for r in rows(kind, 2)]
    audits = count(session, AuditEvent)
    result = upsert(session, kind, batch)
    assert errors_of(result) == [(None, "comment")]
    columns = ", ".join(contract.get(kind).columns)
    assert result.errors[0].reason == (
        f"unknown column(s) for {kind}: comment; expected: {columns}"
    )
    assert str(result.errors[0]).startswith("file, column comment: unknown column(s)")
    assert (result.read, result.inserted, result.rejected) == (2, 0, 2)
    assert count(session, kind) == 0
    assert count(session, AuditEvent) == audits


@pytest.mark.parametrize(
    ("kind", "column"), [pytest.param(k, c, id=f"{k}-{c}") for k, c in sorted(_pairs(REQUIRED))]
)
def test_missing_required_column_refuses_the_file(session: Session, kind: str, column: str) -> None:
    batch = [make(kind, n, drop=[column]) for n in (1, 2)]
    audits = count(session, AuditEvent)
    result = upsert(session, kind, batch)
    assert errors_of(result) == [(None, column)]
    assert result.errors[0].reason == f"missing required column(s) for {kind}: {column}"
    assert (result.read, result.inserted, result.rejected) == (2, 0, 2)
    assert count(session, kind) == 0
    assert count(session, AuditEvent) == audits


def test_unknown_and_missing_columns_are_both_reported(session: Session) -> None:
    batch = [make("holdings", 1, drop=["count", "as_of"]) | {"total": "1"}]
    result = upsert(session, "holdings", batch)
    assert [(e.row, e.column, e.reason.split(":")[0]) for e in result.errors] == [
        (None, "total", "unknown column(s) for holdings"),
        (None, "as_of, count", "missing required column(s) for holdings"),
    ]
    assert count(session, "holdings") == 0


@pytest.mark.parametrize("kind", KINDS)
def test_optional_columns_may_be_left_out(session: Session, kind: str) -> None:
    spec = contract.get(kind)
    optional = [f.name for f in spec.fields if not f.required]
    if kind == "quotas":
        optional.remove("counterpart")
        optional.append("counterpart")  # passive: leaving it out is the same as empty
    batch = [make(kind, 1, drop=optional)]
    result = upsert(session, kind, batch)
    assert result.errors == [] and result.inserted == 1


def test_headers_are_trimmed_case_folded_and_lose_a_bom(session: Session) -> None:
    row = make("activities", 1)
    row = {("\ufeffActivity_ID " if k == "activity_id" else k.upper()): v for k, v in row.items()}
    result = upsert(session, "activities", [row])
    assert result.errors == [] and result.inserted == 1
    assert stored_keys(session, "activities") == {("A-1", "notification")}


def test_empty_batch_is_not_an_error(session: Session) -> None:
    result = upsert(session, "activities", [])
    assert result.errors == []
    assert (result.read, result.inserted, result.rejected) == (0, 0, 0)


# --------------------------------------------------------------------------------------
# References between records
# --------------------------------------------------------------------------------------

DANGLING_CASES = [
    pytest.param(
        "notifications",
        {"activity_id": "A-404"},
        "activity_id",
        "activity 'A-404' is not stored; import the activity first",
        id="notification-activity",
    ),
    pytest.param(
        "notifications",
        {"in_reply_to": "N-404"},
        "in_reply_to",
        "notification 'N-404' is not stored; import the message it answers first, or in the "
        "same file",
        id="notification-in_reply_to",
    ),
    pytest.param(
        "notifications",
        {"event_id": "E-404"},
        "event_id",
        "event 'E-404' is not stored; import the inspection, evaluation visit or observation "
        "flight first",
        id="notification-event",
    ),
    pytest.param(
        "reductions",
        {"verified_by": "I-404"},
        "verified_by",
        "inspection 'I-404' is not stored; import the inspection first",
        id="reduction-verified_by",
    ),
]


@pytest.mark.parametrize(("kind", "overrides", "column", "reason"), DANGLING_CASES)
def test_dangling_reference(
    session: Session, kind: str, overrides: dict, column: str, reason: str
) -> None:
    assert_only_row_2_refused(session, kind, overrides, column, reason)


def _store_targets(session: Session) -> None:
    """An activity, an inspection, a flight and a message that rows may refer to."""
    for kind, n in (
        ("activities", 7),
        ("inspections", 7),
        ("observation_flights", 7),
        ("notifications", 7),
    ):
        assert upsert(session, kind, [make(kind, n)]).inserted == 1


RESOLVING_CASES = [
    ("notifications", {"activity_id": "A-7"}),
    ("notifications", {"event_id": "I-7"}),
    ("notifications", {"event_id": "F-7"}),
    ("notifications", {"in_reply_to": "N-7"}),
    ("notifications", {"activity_id": "A-7", "event_id": "I-7", "in_reply_to": "N-7"}),
    ("reductions", {"verified_by": "I-7"}),
]


@pytest.mark.parametrize(
    ("kind", "overrides"),
    [pytest.param(k, o, id="-".join(f"{c}={v}" for c, v in o.items())) for k, o in RESOLVING_CASES],
)
def test_reference_to_a_stored_row_resolves(session: Session, kind: str, overrides: dict) -> None:
    _store_targets(session)
    result = upsert(session, kind, [make(kind, 1, **overrides)])
    assert result.errors == [] and result.inserted == 1
    model = contract.get(kind).model
    key = contract.get(kind).key[0]
    for column, value in overrides.items():
        stored = select(getattr(model, column)).where(getattr(model, key) == f"{kind[0].upper()}-1")
        assert session.scalar(stored) == value


@pytest.mark.parametrize(
    ("kind", "overrides", "column"),
    [
        ("notifications", {"event_id": "A-7"}, "event_id"),  # an activity is not an event
        ("notifications", {"activity_id": "I-7"}, "activity_id"),
        ("reductions", {"verified_by": "F-7"}, "verified_by"),  # a flight verifies nothing
        ("reductions", {"verified_by": "i-7"}, "verified_by"),  # references are exact
    ],
)
def test_reference_to_a_row_of_another_kind_does_not_resolve(
    session: Session, kind: str, overrides: dict, column: str
) -> None:
    _store_targets(session)
    result = upsert(session, kind, [make(kind, 1, **overrides)])
    assert errors_of(result) == [(1, column)]
    assert "is not stored" in result.errors[0].reason
    assert count(session, kind) == (1 if kind == "notifications" else 0)


def test_reply_to_a_message_of_the_same_batch_resolves_in_any_order(session: Session) -> None:
    batch = [
        make("notifications", 2, kind="inspection_reply", in_reply_to="N-1"),
        make("notifications", 1, kind="inspection_request"),
        make("notifications", 3, kind="inspection_report", in_reply_to="N-2"),
    ]
    result = upsert(session, "notifications", batch)
    assert result.errors == [] and result.inserted == 3
    replies = dict(session.execute(select(Notification.reference, Notification.in_reply_to)).all())
    assert replies == {"N-1": None, "N-2": "N-1", "N-3": "N-2"}


def test_reply_to_a_refused_message_of_the_same_batch_is_refused(session: Session) -> None:
    batch = [
        make("notifications", 1, sender="XYZ"),
        make("notifications", 2, in_reply_to="N-1"),
    ]
    result = upsert(session, "notifications", batch)
    assert errors_of(result) == [(1, "sender"), (2, "in_reply_to")]
    assert result.errors[1].reason.startswith("notification 'N-1' is not stored")
    assert count(session, "notifications") == 0


def test_reply_to_a_message_refused_for_its_reference_is_refused(session: Session) -> None:
    batch = [
        make("notifications", 1, activity_id="A-404"),
        make("notifications", 2, in_reply_to="N-1"),
    ]
    result = upsert(session, "notifications", batch)
    assert errors_of(result) == [(1, "activity_id"), (2, "in_reply_to")]
    assert count(session, "notifications") == 0


def test_reference_errors_honour_first_row_number(session: Session) -> None:
    batch = [make("reductions", 1), make("reductions", 2, verified_by="I-404")]
    result = upsert(session, "reductions", batch, first_row_number=10)
    assert errors_of(result) == [(11, "verified_by")]
    assert str(result.errors[0]).startswith("row 11, column verified_by: inspection 'I-404'")


def test_reference_resolution_sees_rows_stored_in_the_same_transaction(
    session: Session,
) -> None:
    # The services flush, so an inspection added through the ORM and not yet flushed counts.
    session.add(
        Inspection(
            inspection_id="I-ORM",
            regime="VD",
            kind="vd_inspection",
            inspecting_state="DEU",
            inspected_state="RUS",
            requested_at=dt.datetime(2024, 3, 1, 9, tzinfo=dt.UTC),
        )
    )
    result = upsert(session, "reductions", [make("reductions", 1, verified_by="I-ORM")])
    assert result.errors == [] and result.inserted == 1


def test_event_id_accepts_a_stored_observation_flight_or_inspection(session: Session) -> None:
    _store_targets(session)
    batch = [
        make("notifications", 1, regime="OST", kind="flight_notification", event_id="F-7"),
        make("notifications", 2, kind="inspection_request", event_id="I-7"),
    ]
    result = upsert(session, "notifications", batch)
    assert result.errors == [] and result.inserted == 2
    assert count(session, ObservationFlight) == 1


# --------------------------------------------------------------------------------------
# Row numbers, several errors, all-or-nothing
# --------------------------------------------------------------------------------------


def test_row_numbers_start_at_first_row_number(session: Session) -> None:
    # An importer of a CSV file passes 2: line 1 is the header.
    batch = [
        make("activities", 1),
        make("activities", 2, troops="-1"),
        make("activities", 3),
        make("activities", 3),
    ]
    result = upsert(session, "activities", batch, first_row_number=2)
    assert errors_of(result) == [(3, "troops"), (4, "activity_id"), (5, "activity_id")]
    assert result.errors[1].reason.endswith("also in row(s) 5")
    assert (
        str(result.errors[0]) == "row 3, column troops: -1 is negative; counts cannot be negative"
    )


def test_every_error_of_a_row_is_reported_and_the_row_counted_once(session: Session) -> None:
    bad = make(
        "inspections",
        2,
        regime="OSCE",
        inspected_state="Atlantis",
        team_size="four",
        replied_at="2024-03-01T09:00:00",
    )
    result = upsert(session, "inspections", [make("inspections", 1), bad])
    assert errors_of(result) == [
        (2, "regime"),
        (2, "inspected_state"),
        (2, "replied_at"),
        (2, "team_size"),
    ]
    assert (result.inserted, result.rejected) == (1, 1)
    assert result.as_dict()["errors"][0] == {
        "row": 2,
        "column": "regime",
        "value": "OSCE",
        "reason": "'OSCE' is not one of: VD, CFE",
    }


@pytest.mark.parametrize("kind", KINDS)
def test_all_or_nothing_writes_nothing_when_one_row_is_bad(session: Session, kind: str) -> None:
    required = REQUIRED[kind][-1]
    batch = [make(kind, 1), make(kind, 2, **{required: ""}), make(kind, 3)]
    audits = count(session, AuditEvent)
    result = upsert(session, kind, batch, all_or_nothing=True)
    assert errors_of(result) == [(2, required)]
    assert result.written is False
    assert (result.read, result.inserted, result.updated, result.rejected) == (3, 0, 0, 1)
    assert count(session, kind) == 0
    assert count(session, AuditEvent) == audits


def test_all_or_nothing_writes_nothing_on_a_reference_error(session: Session) -> None:
    batch = [make("notifications", 1), make("notifications", 2, activity_id="A-404")]
    result = upsert(session, "notifications", batch, all_or_nothing=True)
    assert errors_of(result) == [(2, "activity_id")] and result.written is False
    assert count(session, "notifications") == 0


def test_all_or_nothing_does_not_touch_stored_rows(session: Session) -> None:
    assert upsert(session, "holdings", [make("holdings", 1)]).inserted == 1
    batch = [make("holdings", 1, count="999"), make("holdings", 2, count="-1")]
    result = upsert(session, "holdings", batch, all_or_nothing=True)
    assert result.written is False and result.updated == 0
    assert session.execute(select(contract.HOLDINGS.model.count)).scalars().all() == [300]


@pytest.mark.parametrize("kind", KINDS)
def test_all_or_nothing_writes_everything_when_all_rows_are_good(
    session: Session, kind: str
) -> None:
    result = upsert(session, kind, rows(kind, 3), all_or_nothing=True)
    assert result.ok and result.written and result.inserted == 3
    assert count(session, kind) == 3


def test_a_message_cannot_answer_itself(session: Session) -> None:
    batch = [make("notifications", 1, in_reply_to="N-1")]
    result = upsert(session, "notifications", batch)
    assert errors_of(result) == [(1, "in_reply_to")]
    assert result.errors[0].reason == "a message cannot answer itself"
    assert count(session, "notifications") == 0


def test_all_cannot_be_combined_with_states(session: Session) -> None:
    result = upsert(session, "notifications", [make("notifications", 1, recipients="ALL DEU")])
    assert errors_of(result) == [(1, "recipients")]
    assert "ALL stands alone" in result.errors[0].reason
    assert count(session, "notifications") == 0
