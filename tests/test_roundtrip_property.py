"""Property: an export re-imports into an empty database as the same data (issue #4).

Hypothesis generates valid records for every contract file — States spelled as codes or
shipped aliases, every vocabulary, references between files (notifications to activities,
events and other notifications; reductions to inspections), ordered timestamps in assorted
offsets, awkward text (commas, quotes, line breaks, formula-like cells, any Unicode) — and
stores them in a *source* database through the write service (``upsert_records``). Every
file is exported with :mod:`cbm.services.exports` into a folder and imported into a
*target* database, freshly migrated and with the reference data loaded, the way
``cbm import FOLDER`` does (``open_location`` + ``run_import``). Then:

* every contract column of every record is the same in both databases;
* the target exports to the same bytes as the source;
* importing the export again changes nothing (0 inserted, 0 updated).

The same holds for the other export formats: one XLSX workbook of every file, and one
JSON file per kind, each imported into an empty database, export to the same CSV bytes
(``test_a_workbook_or_json_export_reimports_as_the_same_csv_bytes``).

Both databases are throwaway ones made for this module (an SQLite file, or a database on the
PostgreSQL server of ``CBM_TEST_DATABASE_URL``); each example runs in a transaction of each
that is rolled back, so every example starts from empty tables.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from cbm import contract, vocab
from cbm.db import make_engine
from cbm.migrate import upgrade
from cbm.reference.loader import load_reference, read_csv
from cbm.services.exports import write_contract_folder
from cbm.services.imports import run_import
from cbm.services.records import upsert_records
from cbm.services.validation import MAX_INT, StateResolver, alias_key
from importers.locations import open_location

# --------------------------------------------------------------------------------------
# reference data: the shipped files the migration loads into every database
# --------------------------------------------------------------------------------------

CODES = sorted(r["code"] for r in read_csv("states.csv"))
_ALIASES = {r["alias"]: r["state"] for r in read_csv("state_aliases.csv")}
_RESOLVER = StateResolver(CODES, _ALIASES)
# Every spelling that resolves to a code: the code, lower case, and the aliases (an alias
# that is another State's code resolves to that code, so it is filed under it).
SPELLINGS: dict[str, list[str]] = {c: [c, c.lower()] for c in CODES}
for _alias in _ALIASES:
    _code = _RESOLVER.resolve(_alias)
    if _code is not None and alias_key(_alias) != alias_key(_code):
        SPELLINGS[_code].append(_alias)
# In lists of States, spaces, commas and semicolons separate entries.
LIST_SPELLINGS = {
    c: [s for s in spellings if not any(ch.isspace() or ch in ",;" for ch in s)]
    for c, spellings in SPELLINGS.items()
}

# --------------------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------------------

# What the validator refuses in text: C0 controls except tab, LF and CR, and DEL.
CONTROL = [chr(c) for c in (*range(9), 11, 12, *range(14, 32), 127)]
CHARS = st.characters(exclude_categories=("Cs",), exclude_characters=CONTROL)
AWKWARD = (
    "=1+1",
    '=HYPERLINK("http://x.invalid")',
    "+49 30 1234",
    "-5",
    "@SUM(A1)",
    "'already quoted",
    'say "no", twice',
    "a,b",
    "line\nbreak",
    "crlf\r\nbreak",
    "cr\ronly",
    "tab\there",
    "NA",
    "null",
    "#comment",
    "Запад — 西部 🛩️",
    "\u2028inner\x85",
)
OFFSETS = [dt.UTC] + [
    dt.timezone(dt.timedelta(minutes=m)) for m in (-720, -330, -60, 60, 120, 345, 840)
]
T_MIN, T_MAX = dt.datetime(1971, 1, 1), dt.datetime(2199, 1, 1)
D_MIN, D_MAX = dt.date(1970, 1, 1), dt.date(2199, 1, 1)
GAP = st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=400))
DAYS = st.integers(min_value=0, max_value=400).map(lambda d: dt.timedelta(days=d))


def texts(max_length: int | None = None, *, required: bool = False) -> st.SearchStrategy[Any]:
    """Text as the validator stores it (trimmed); None for an empty optional cell. Never
    longer than ``max_length`` (the AWKWARD samples are shorter than any column)."""
    size = min(max_length or 60, 60)
    choices = [st.text(CHARS, max_size=size), st.sampled_from(AWKWARD)]
    if max_length:
        # Exactly as long as the column allows.
        choices.append(st.text(st.sampled_from("xyzäß€"), min_size=max_length, max_size=max_length))
    # The validator trims; text that trims to nothing is an empty cell (or, required, "x":
    # mapped rather than filtered, so Hypothesis never gives up on it).
    strategy = st.one_of(choices).map(str.strip)
    if required:
        return strategy.map(lambda s: s or "x")
    return strategy.map(lambda s: s or None)


def key_text(max_length: int) -> st.SearchStrategy[str]:
    """A key part: mostly short readable ids (so lists of them collide and share
    prefixes), sometimes anything."""
    readable = st.text("AB-09aäZ_", min_size=1, max_size=6)
    return st.one_of(readable, readable, texts(max_length, required=True))


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


codes = st.sampled_from(CODES)
counts = st.one_of(st.integers(0, 100_000), st.sampled_from([0, MAX_INT]))
years = st.integers(1970, 2200)
dates = st.dates(D_MIN, D_MAX)
timestamps = st.datetimes(T_MIN, T_MAX, timezones=st.sampled_from(OFFSETS))


@st.composite
def spelled(draw: st.DrawFn, code: str, *, in_list: bool = False) -> str:
    """A State as a file may spell it (code, lower case, a known name or alias)."""
    return draw(st.sampled_from((LIST_SPELLINGS if in_list else SPELLINGS)[code]))


@st.composite
def state_list(draw: st.DrawFn, *, allow_all: bool) -> str | None:
    if allow_all and draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(["ALL", "all", " All "]))
    chosen = draw(st.lists(codes, max_size=5))
    if not chosen:
        return None
    sep = draw(st.sampled_from([" ", ", ", ";", "  "]))
    return sep.join(draw(spelled(c, in_list=True)) for c in chosen)


def later(draw: st.DrawFn, start: Any, strategy: st.SearchStrategy[Any], gap: Any) -> Any:
    """An optional value not before ``start`` (any value when ``start`` is None)."""
    if not draw(st.booleans()):
        return None
    if start is None:
        return draw(strategy)
    value = start + draw(gap)
    if isinstance(value, dt.datetime):
        value = value.astimezone(draw(st.sampled_from(OFFSETS)))
    return value


def max_len(kind: str, column: str) -> int:
    return contract.get(kind).max_lengths[column]


# --------------------------------------------------------------------------------------
# records per contract file
# --------------------------------------------------------------------------------------


@st.composite
def activity(draw: st.DrawFn) -> dict[str, Any]:
    start = draw(dates)
    return {
        "activity_id": draw(key_text(max_len("activities", "activity_id"))),
        "source": draw(st.sampled_from(vocab.ACTIVITY_SOURCES)),
        "state": draw(spelled(draw(codes))),
        "host_state": draw(optional(codes.flatmap(spelled))),
        "name": draw(texts(max_len("activities", "name"))),
        "kind": draw(st.sampled_from(vocab.ACTIVITY_KINDS)),
        "start_date": start,
        "end_date": later(draw, start, dates, DAYS),
        **{f: draw(optional(counts)) for f in contract.get("activities").columns[8:14]},
        "area": draw(texts()),
        "remarks": draw(texts()),
    }


@st.composite
def inspection(draw: st.DrawFn) -> dict[str, Any]:
    regime = draw(st.sampled_from(vocab.INSPECTION_REGIMES))
    inspecting, inspected = draw(st.lists(codes, min_size=2, max_size=2, unique=True))
    requested = draw(timestamps)
    start = later(draw, requested, timestamps, GAP)
    return {
        "inspection_id": draw(key_text(max_len("inspections", "inspection_id"))),
        "regime": regime,
        "kind": draw(st.sampled_from(vocab.INSPECTION_KINDS[regime])),
        "inspecting_state": draw(spelled(inspecting)),
        "guest_states": draw(state_list(allow_all=False)),
        "inspected_state": draw(spelled(inspected)),
        "requested_at": requested,
        "replied_at": later(draw, requested, timestamps, GAP),
        "reply": draw(optional(st.sampled_from(vocab.INSPECTION_REPLIES))),
        "unit": draw(texts(max_len("inspections", "unit"))),
        "area": draw(texts()),
        "start_at": start,
        "end_at": later(draw, start, timestamps, GAP),
        "outcome": draw(optional(st.sampled_from(vocab.INSPECTION_OUTCOMES))),
        "counts_against_quota": draw(optional(st.booleans())),
        "team_size": draw(optional(counts)),
        "report_at": draw(optional(timestamps)),
        "concerns_raised": draw(optional(st.booleans())),
        "findings": draw(texts()),
    }


@st.composite
def observation_flight(draw: st.DrawFn) -> dict[str, Any]:
    observing, observed = draw(st.lists(codes, min_size=2, max_size=2, unique=True))
    notified = draw(optional(timestamps))
    flight_start = draw(optional(timestamps))
    return {
        "flight_id": draw(key_text(max_len("observation_flights", "flight_id"))),
        "observing_state": draw(spelled(observing)),
        "observed_state": draw(spelled(observed)),
        "notified_at": notified,
        "eta_poe": later(draw, notified, timestamps, GAP),
        "arrived_at": draw(optional(timestamps)),
        "point_of_entry": draw(texts(max_len("observation_flights", "point_of_entry"))),
        "os_airfield": draw(texts(max_len("observation_flights", "os_airfield"))),
        "mission_plan_at": draw(optional(timestamps)),
        "flight_start_at": flight_start,
        "flight_end_at": later(draw, flight_start, timestamps, GAP),
        "departed_at": draw(optional(timestamps)),
        "distance_km": draw(optional(counts)),
        "max_distance_km": draw(optional(counts)),
        "outcome": draw(optional(st.sampled_from(vocab.FLIGHT_OUTCOMES))),
        "curtailment_cause": draw(texts()),
        "counts_against_quota": draw(optional(st.booleans())),
        "report_at": draw(optional(timestamps)),
        "restrictions": draw(texts()),
    }


@st.composite
def notification(draw: st.DrawFn, activity_ids: list[str], event_ids: list[str]) -> dict[str, Any]:
    regime = draw(st.sampled_from(vocab.REGIMES))
    sent = draw(timestamps)
    return {
        "reference": draw(key_text(max_len("notifications", "reference"))),
        "regime": regime,
        "kind": draw(st.sampled_from(vocab.NOTIFICATION_KINDS[regime])),
        "sender": draw(codes.flatmap(spelled)),
        "recipients": draw(state_list(allow_all=True)),
        "sent_at": sent,
        "received_at": later(draw, sent, timestamps, GAP),
        "covers_year": draw(optional(years)),
        "activity_id": draw(optional(st.sampled_from(activity_ids))) if activity_ids else None,
        "event_id": draw(optional(st.sampled_from(event_ids))) if event_ids else None,
        "in_reply_to": None,  # set below, once every reference of the file is known
        "nil_report": draw(optional(st.booleans())),
        "remarks": draw(texts()),
    }


@st.composite
def quota(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(vocab.QUOTA_KINDS))
    return {
        "regime": draw(st.sampled_from(vocab.QUOTA_REGIMES)),
        "state": draw(codes.flatmap(spelled)),
        "year": draw(years),
        "kind": kind,
        "counterpart": draw(codes.flatmap(spelled)) if kind == "active" else None,
        "quota": draw(counts),
    }


@st.composite
def holding(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "state": draw(codes.flatmap(spelled)),
        "as_of": draw(dates),
        "category": draw(st.sampled_from(vocab.HOLDING_CATEGORIES)),
        "source": draw(st.sampled_from(vocab.HOLDING_SOURCES)),
        "unit": draw(st.one_of(st.none(), key_text(max_len("holdings", "unit")))),
        "count": draw(counts),
        "zone": draw(texts(max_len("holdings", "zone"))),
    }


@st.composite
def ceiling(draw: st.DrawFn) -> dict[str, Any]:
    valid_from = draw(dates)
    return {
        "regime": draw(st.sampled_from(vocab.REGIMES)),
        "state": draw(codes.flatmap(spelled)),
        "category": draw(st.sampled_from(vocab.HOLDING_CATEGORIES)),
        "valid_from": valid_from,
        "ceiling": draw(counts),
        "valid_to": later(draw, valid_from, dates, DAYS),
        "basis": draw(texts()),
    }


@st.composite
def reduction(draw: st.DrawFn, inspection_ids: list[str]) -> dict[str, Any]:
    announced = draw(optional(dates))
    return {
        "reduction_id": draw(key_text(max_len("reductions", "reduction_id"))),
        "state": draw(codes.flatmap(spelled)),
        "kind": draw(st.sampled_from(vocab.REDUCTION_KINDS)),
        "category": draw(st.sampled_from(vocab.HOLDING_CATEGORIES)),
        "quantity": draw(counts),
        "announced_at": announced,
        "deadline": later(draw, announced, dates, DAYS),
        "reduced": draw(optional(counts)),
        "completed_at": later(draw, announced, dates, DAYS),
        "method": draw(optional(st.sampled_from(vocab.REDUCTION_METHODS))),
        "region_from": draw(texts(max_len("reductions", "region_from"))),
        "verified_by": (
            draw(optional(st.sampled_from(inspection_ids))) if inspection_ids else None
        ),
        "remarks": draw(texts()),
    }


def canonical_key(kind: str) -> Callable[[dict[str, Any]], tuple]:
    """A generated record's natural key as it is stored (States as codes, '' for none)."""
    spec = contract.get(kind)

    def key(row: dict[str, Any]) -> tuple:
        parts = []
        for name in spec.key:
            value = row[name]
            if spec.field(name).type == contract.STATE and value is not None:
                value = _RESOLVER.resolve(value)
            parts.append("" if value is None else value)
        return tuple(parts)

    return key


def records(strategy: st.SearchStrategy[dict], kind: str) -> st.SearchStrategy[list[dict]]:
    return st.lists(strategy, max_size=5, unique_by=canonical_key(kind))


@st.composite
def datasets(draw: st.DrawFn) -> dict[str, list[dict[str, Any]]]:
    """Valid records for every contract file, with resolvable references between them."""
    data: dict[str, list[dict[str, Any]]] = {
        "activities": draw(records(activity(), "activities")),
        "inspections": draw(records(inspection(), "inspections")),
        "observation_flights": draw(records(observation_flight(), "observation_flights")),
    }
    activity_ids = sorted({r["activity_id"] for r in data["activities"]})
    event_ids = sorted(
        {r["inspection_id"] for r in data["inspections"]}
        | {r["flight_id"] for r in data["observation_flights"]}
    )
    inspection_ids = sorted(r["inspection_id"] for r in data["inspections"])
    notes = draw(records(notification(activity_ids, event_ids), "notifications"))
    references = [n["reference"] for n in notes]
    for n in notes:
        others = [r for r in references if r != n["reference"]]
        if others:
            n["in_reply_to"] = draw(optional(st.sampled_from(others)))
    data["notifications"] = notes
    data["quotas"] = draw(records(quota(), "quotas"))
    data["holdings"] = draw(records(holding(), "holdings"))
    data["ceilings"] = draw(records(ceiling(), "ceilings"))
    data["reductions"] = draw(records(reduction(inspection_ids), "reductions"))
    return {kind: data[kind] for kind in contract.LOAD_ORDER}


# --------------------------------------------------------------------------------------
# two throwaway databases per backend
# --------------------------------------------------------------------------------------


def _fresh(url: str) -> Engine:
    """A database migrated to head with the reference data loaded, as `cbm db upgrade`."""
    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as session:
        load_reference(session)
        session.commit()
    return engine


@pytest.fixture(scope="module")
def databases(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Engine, Engine]]:
    """(source, target): two fresh databases on the backend under test."""
    if backend == "sqlite":
        folder = tmp_path_factory.mktemp("roundtrip")
        engines = [_fresh(f"sqlite:///{folder / name}.sqlite3") for name in ("source", "target")]
        yield engines[0], engines[1]
        for engine in engines:
            engine.dispose()
        return
    server = make_url(request.getfixturevalue("pg_server_url"))  # skips without a server
    # Connected to the session's throwaway database: CREATE DATABASE works from any.
    admin = make_engine(server.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    names = [f"cbm_roundtrip_{uuid.uuid4().hex[:8]}_{n}" for n in ("source", "target")]
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    engines = []
    try:
        for name in names:
            engines.append(_fresh(server.set(database=name).render_as_string(hide_password=False)))
        yield engines[0], engines[1]
    finally:
        for engine in engines:
            engine.dispose()
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def rolled_back(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """Sessions whose commits are SAVEPOINT releases in one transaction, rolled back at the
    end (as the conftest does per test): each example starts from empty tables."""
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            yield sessionmaker(
                bind=conn, expire_on_commit=False, join_transaction_mode="create_savepoint"
            )
        finally:
            trans.rollback()


def stored(factory: sessionmaker[Session], kind: str) -> dict[tuple, tuple]:
    """Every record of a contract file: natural key -> all contract columns."""
    spec = contract.get(kind)
    table = spec.model.__table__
    with factory() as session:
        rows = session.execute(select(*(table.c[c] for c in spec.columns))).mappings().all()
    out = {tuple(r[k] for k in spec.key): tuple(r[c] for c in spec.columns) for r in rows}
    assert len(out) == len(rows)
    return out


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# --------------------------------------------------------------------------------------
# the property
# --------------------------------------------------------------------------------------


@settings(
    max_examples=int(os.environ.get("CBM_ROUNDTRIP_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=datasets())
def test_an_export_reimports_into_an_empty_database_as_the_same_data(
    databases: tuple[Engine, Engine], data: dict[str, list[dict[str, Any]]]
) -> None:
    source_engine, target_engine = databases
    with (
        rolled_back(source_engine) as source,
        rolled_back(target_engine) as target,
        tempfile.TemporaryDirectory() as tmp,
    ):
        with source() as session:
            for kind, rows in data.items():
                result = upsert_records(session, kind, rows)
                assert result.errors == [], (kind, result.errors)
                assert result.inserted == len(rows)
            session.commit()
        before = {kind: stored(source, kind) for kind in data}
        assert {k: len(v) for k, v in before.items()} == {k: len(v) for k, v in data.items()}

        exported = Path(tmp) / "export"
        with source() as session:
            counts = write_contract_folder(session, exported)
        assert counts == {k: len(v) for k, v in data.items()}

        # As `cbm import FOLDER`: one run per file, in file-name order.
        first = run_import(target, open_location(str(exported)))
        problems = [(r.name, r.status, r.message) for r in first.runs if r.status != "succeeded"]
        assert problems == []
        assert (first.inserted, first.updated, first.rejected) == (sum(counts.values()), 0, 0)

        after = {kind: stored(target, kind) for kind in data}
        for kind in data:
            assert after[kind] == before[kind], kind

        again = Path(tmp) / "again"
        with target() as session:
            write_contract_folder(session, again)
        assert folder_bytes(again) == folder_bytes(exported)

        second = run_import(target, open_location(str(exported)))
        assert [r.status for r in second.runs] == ["succeeded"] * len(contract.LOAD_ORDER)
        assert (second.inserted, second.updated, second.rejected) == (0, 0, 0)
        assert second.unchanged == sum(counts.values())
        assert {kind: stored(target, kind) for kind in data} == after


# --------------------------------------------------------------------------------------
# the same promise for the XLSX workbook and the JSON files (issue #7)
# --------------------------------------------------------------------------------------

_NOT_IN_XML = ("\ufffe", "\uffff")


def _xml_can_hold(data: dict[str, list[dict[str, Any]]]) -> bool:
    """XML (so XLSX) cannot hold U+FFFE and U+FFFF; such a workbook export is refused."""
    return not any(
        isinstance(v, str) and any(c in v for c in _NOT_IN_XML)
        for rows in data.values()
        for row in rows
        for v in row.values()
    )


@pytest.mark.parametrize("fmt", ["xlsx", "json"])
@settings(
    max_examples=int(os.environ.get("CBM_ROUNDTRIP_FORMAT_EXAMPLES", "6")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=datasets())
def test_a_workbook_or_json_export_reimports_as_the_same_csv_bytes(
    databases: tuple[Engine, Engine], fmt: str, data: dict[str, list[dict[str, Any]]]
) -> None:
    """Export everything as one XLSX workbook (or one JSON file per kind), import it into
    an empty database, export CSV again: the bytes are those of the first CSV export."""
    from hypothesis import assume

    from cbm.services.export_formats import iter_json, iter_xlsx
    from cbm.services.export_lists import build_job
    from cbm.services.exports import export_file_name

    if fmt == "xlsx":
        assume(_xml_can_hold(data))
    source_engine, target_engine = databases
    with (
        rolled_back(source_engine) as source,
        rolled_back(target_engine) as target,
        tempfile.TemporaryDirectory() as tmp,
    ):
        with source() as session:
            for kind, rows in data.items():
                result = upsert_records(session, kind, rows)
                assert result.errors == [], (kind, result.errors)
            session.commit()
        original = Path(tmp) / "csv"
        with source() as session:
            write_contract_folder(session, original)
            jobs = [build_job(session, kind, {}) for kind in contract.LOAD_ORDER]
            if fmt == "xlsx":
                location = Path(tmp) / "all.xlsx"
                location.write_bytes(b"".join(iter_xlsx(session, jobs)))
                # The same data, the same bytes.
                assert b"".join(iter_xlsx(session, jobs)) == location.read_bytes()
            else:
                location = Path(tmp) / "json"
                location.mkdir()
                for job in jobs:
                    name = export_file_name(job.kind).removesuffix(".csv") + ".json"
                    (location / name).write_bytes(b"".join(iter_json(session, job)))
        imported = run_import(target, open_location(str(location)))
        problems = [
            (r.name, r.status, r.message) for r in imported.runs if r.status not in ("succeeded",)
        ]
        assert problems == []
        assert imported.rejected == 0
        assert imported.inserted == sum(len(rows) for rows in data.values())
        again = Path(tmp) / "again"
        with target() as session:
            write_contract_folder(session, again)
        assert folder_bytes(again) == folder_bytes(original)
