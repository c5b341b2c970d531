"""Fuzzing the importers through the real paths: ``run_import`` and the web upload.

Hypothesis draws hostile payloads (:mod:`fuzz_payloads`: damaged contract CSV, XLSX built
with openpyxl then corrupted, JSON of wrong shapes and depths, raw garbage) and imports
each one into a database that already holds records. The property, for every payload:

* ``run_import`` returns (never raises), with a run that *succeeded*, is *partial* (good
  rows stored, bad rows listed), *rejected* (nothing stored) or *failed* with a readable
  message naming the file — never "unexpected error" (an exception the importer or the
  service did not anticipate, logged as a traceback);
* every stored rejection gives a reason, and a row number within the payload when it has one;
* the run's row in the database says what the outcome says;
* nothing stored before is lost: no record disappears; a record changes only if the run
  set it; the run's counts of inserted and updated rows are exactly what changed; a
  *rejected* or all-or-nothing refused payload leaves every table as it was.

The web upload (``POST /runs/upload``) gets the same payloads: never a 500, always the run's
page (303) or the form's explanation (422), and the same "nothing lost" check.

Examples per fuzzer: ``CBM_FUZZ_EXAMPLES`` (default 60; the web fuzzer a quarter of it).
A long run: ``CBM_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/test_fuzz_importers.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from conftest import csrf_token_from
from factories import FACTORIES
from fuzz_payloads import (
    KINDS,
    Drawn,
    any_payload,
    csv_payloads,
    garbage_payloads,
    json_payloads,
    xlsx_payloads,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, select
from sqlalchemy.orm import Session, sessionmaker

from cbm import contract
from cbm.models import ImportRejection, ImportRun
from cbm.services.imports import (
    FAILED,
    REJECTED,
    SUCCEEDED,
    SUCCEEDED_WITH_REJECTIONS,
    run_import,
)
from cbm.services.records import upsert_records
from importers.base import Payload

EXAMPLES = int(os.environ.get("CBM_FUZZ_EXAMPLES", "60"))
#: Function-scoped fixtures are shared by the examples on purpose: each example runs in a
#: SAVEPOINT that is rolled back (or, for the web, compares before and after itself).
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
WEB_FUZZ = settings(FUZZ, max_examples=max(EXAMPLES // 4, 5))
OUTCOMES = {SUCCEEDED, SUCCEEDED_WITH_REJECTIONS, REJECTED, FAILED}
#: Rows stored before every example: keys 1–3 of each fuzzed kind (payloads draw keys from
#: 1 to 56, so some of their rows meet these).
SEED = {kind: [FACTORIES[kind](n) for n in (1, 2, 3)] for kind in KINDS}

Snapshot = dict[str, dict[tuple, tuple]]


# --------------------------------------------------------------------------------------
# the database side
# --------------------------------------------------------------------------------------


@pytest.fixture()
def seeded(engine: Engine) -> Iterator[tuple[Connection, Snapshot]]:
    """A connection whose transaction holds the seed rows (rolled back at the end), and
    their snapshot. Each example runs in a SAVEPOINT of it (:func:`example`)."""
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            factory = _factory(conn)
            seed(factory)
            yield conn, snapshot(factory)
        finally:
            trans.rollback()


def _factory(conn: Connection) -> sessionmaker[Session]:
    return sessionmaker(bind=conn, expire_on_commit=False, join_transaction_mode="create_savepoint")


@contextmanager
def example(conn: Connection) -> Iterator[sessionmaker[Session]]:
    """One example in a SAVEPOINT that is rolled back: each starts from the seed rows."""
    savepoint = conn.begin_nested()
    try:
        yield _factory(conn)
    finally:
        savepoint.rollback()


def seed(factory: sessionmaker[Session]) -> None:
    with factory() as session:
        for kind, data in SEED.items():
            result = upsert_records(session, kind, data)
            assert result.ok, (kind, result.errors)
        session.commit()


def snapshot(factory: sessionmaker[Session]) -> Snapshot:
    """Every record of the fuzzed kinds: natural key -> (contract columns, set_by_run_id)."""
    out: Snapshot = {}
    with factory() as session:
        for kind in KINDS:
            spec = contract.get(kind)
            table = spec.model.__table__
            cols = [table.c[c] for c in spec.columns] + [table.c.set_by_run_id]
            rows = session.execute(select(*cols)).all()
            names = list(spec.columns)
            out[kind] = {tuple(r[names.index(k)] for k in spec.key): tuple(r) for r in rows}
    return out


def check_outcome(
    factory: sessionmaker[Session], drawn: Drawn, outcome: Any, before: Snapshot, aon: bool
) -> None:
    """The property of the module documentation, for one run."""
    where = f"{drawn!r}: {outcome.status}: {outcome.message}"
    event(f"status {outcome.status}")
    assert outcome.status in OUTCOMES, where
    if outcome.status == FAILED:
        message = outcome.message or ""
        assert message and not message.startswith("unexpected error"), where
        assert drawn.name in message, f"the message does not name the file: {where}"
    after = snapshot(factory)
    with factory() as session:
        run = session.get(ImportRun, outcome.run_id)
        assert run is not None, where
        stored = (run.status, run.rows_read, run.rows_inserted, run.rows_updated)
        assert stored == (outcome.status, outcome.read, outcome.inserted, outcome.updated), where
        assert run.rows_rejected == outcome.rejected, where
        rejections = session.scalars(
            select(ImportRejection).where(ImportRejection.run_id == outcome.run_id)
        ).all()
    for r in rejections:
        assert r.reason and r.reason.strip(), where
        assert "Traceback" not in r.reason, where
        if r.row_number is not None:
            assert 1 <= r.row_number <= 1_000_000, (where, r.row_number)
    if outcome.rejected:
        assert rejections, f"{outcome.rejected} rows rejected but none listed: {where}"
    if outcome.status == REJECTED or (aon and outcome.status != SUCCEEDED):
        assert after == before, f"a refused payload changed stored rows: {where}"
        return
    inserted = updated = 0
    for kind in KINDS:
        old, new = before[kind], after[kind]
        lost = set(old) - set(new)
        assert not lost, f"{kind} rows lost: {sorted(lost)[:3]}: {where}"
        inserted += len(set(new) - set(old))
        for key, values in old.items():
            if new[key] != values:
                assert new[key][-1] == outcome.run_id, f"{kind} {key} changed by another: {where}"
                updated += 1
    assert (inserted, updated) == (outcome.inserted, outcome.updated), where


def import_and_check(
    seeded: tuple[Connection, Snapshot], drawn: Drawn, importer: str | None, aon: bool
) -> None:
    conn, before = seeded
    with example(conn) as factory:
        result = run_import(
            factory,
            [Payload(name=drawn.name, content=drawn.content)],
            importer=importer,
            all_or_nothing=aon,
            source_name="fuzz",
        )
        assert len(result.runs) == 1
        check_outcome(factory, drawn, result.runs[0], before, aon)


# --------------------------------------------------------------------------------------
# run_import: what `cbm import` does
# --------------------------------------------------------------------------------------


@FUZZ
@given(drawn=csv_payloads(), aon=st.booleans(), named=st.booleans())
def test_fuzz_csv_through_run_import(
    seeded: tuple[Connection, Snapshot], drawn: Drawn, aon: bool, named: bool
) -> None:
    import_and_check(seeded, drawn, "csv" if named else None, aon)


@pytest.mark.parametrize("aon", [False, True])
def test_a_nul_in_a_header_cell_is_a_stored_rejection(
    seeded: tuple[Connection, Snapshot], aon: bool
) -> None:
    """Found by the fuzzer: a NUL spliced into the header made the rejection rows
    unstorable on PostgreSQL (text holds no NUL) and the run "unexpected error"."""
    rows = FACTORIES["activities"](1)
    header = ",".join(rows)
    body = ",".join(str(v) for v in rows.values())
    drawn = Drawn(
        name="activities.csv",
        content=f"\x00{header}\r\n{body}\r\n".encode(),
        fmt="csv",
        kind="activities",
        recipe=["activities x1", "bytes:splice@0"],
    )
    conn, before = seeded
    with example(conn) as factory:
        payload = Payload(name=drawn.name, content=drawn.content)
        outcome = run_import(factory, [payload], all_or_nothing=aon).runs[0]
        message = outcome.message or ""
        assert not message.startswith("unexpected error"), message
        # No row is usable (its header names no known column): refused, nothing changed.
        assert outcome.status == REJECTED, (outcome.status, message)
        assert snapshot(factory) == before
        with factory() as session:
            reasons = session.scalars(
                select(ImportRejection.reason).where(ImportRejection.run_id == outcome.run_id)
            ).all()
    assert any("\\x00activity_id" in r for r in reasons), reasons


@FUZZ
@given(drawn=xlsx_payloads(), aon=st.booleans(), named=st.booleans())
def test_fuzz_xlsx_through_run_import(
    seeded: tuple[Connection, Snapshot], drawn: Drawn, aon: bool, named: bool
) -> None:
    import_and_check(seeded, drawn, "xlsx" if named else None, aon)


@FUZZ
@given(drawn=json_payloads(), aon=st.booleans(), named=st.booleans())
def test_fuzz_json_through_run_import(
    seeded: tuple[Connection, Snapshot], drawn: Drawn, aon: bool, named: bool
) -> None:
    import_and_check(seeded, drawn, "json" if named else None, aon)


@FUZZ
@given(drawn=garbage_payloads(), aon=st.booleans(), named=st.booleans())
def test_fuzz_raw_bytes_through_run_import(
    seeded: tuple[Connection, Snapshot], drawn: Drawn, aon: bool, named: bool
) -> None:
    import_and_check(seeded, drawn, drawn.fmt if named else None, aon)


# --------------------------------------------------------------------------------------
# the web upload: never a 500
# --------------------------------------------------------------------------------------


@pytest.fixture()
def analyst_client(app, make_user, session_factory):
    from conftest import login

    make_user("analyst", "fuzz-analyst")
    seed(session_factory)
    client = app.test_client()
    assert login(client, "fuzz-analyst").status_code == 302
    return client


@WEB_FUZZ
@given(drawn=any_payload(), aon=st.booleans(), kind=st.sampled_from(["", "", *KINDS, "bogus"]))
def test_fuzz_web_upload_never_500(
    analyst_client, session_factory, drawn: Drawn, aon: bool, kind: str
) -> None:
    import io

    client = analyst_client
    token = csrf_token_from(client.get("/runs/upload").get_data(as_text=True))
    before = snapshot(session_factory)
    form: dict[str, Any] = {
        "csrf_token": token,
        "kind": kind,
        "file": (io.BytesIO(drawn.content), drawn.name),
    }
    if aon:
        form["all_or_nothing"] = "1"
    response = client.post("/runs/upload", data=form, content_type="multipart/form-data")
    where = f"{drawn!r} kind={kind!r}: {response.status_code}"
    assert response.status_code in (303, 422), where
    if response.status_code == 422:
        assert kind == "bogus" or not drawn.name.endswith((".csv", ".xlsx", ".json")), where
        assert snapshot(session_factory) == before, where
        return
    page = client.get(response.location)
    assert page.status_code == 200, where
    run_id = int(response.location.rstrip("/").rsplit("/", 1)[-1])
    with session_factory() as session:
        run = session.get(ImportRun, run_id)
        assert run is not None
        outcome = _Outcome(run)
    if kind:
        drawn = Drawn(drawn.name, drawn.content, drawn.fmt, kind, drawn.recipe)
    check_outcome(session_factory, drawn, outcome, before, aon)


class _Outcome:
    """A stored run read back as the attributes of a RunOutcome."""

    def __init__(self, run: ImportRun) -> None:
        self.run_id = run.id
        self.status = run.status
        self.message = run.message
        self.read = run.rows_read
        self.inserted = run.rows_inserted
        self.updated = run.rows_updated
        self.rejected = run.rows_rejected
