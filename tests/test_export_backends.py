"""The same records give the same export bytes from SQLite and from PostgreSQL.

PostgreSQL writes contract CSV on the server (``COPY … (FORMAT csv)``, see
:func:`cbm.services.exports.iter_contract_csv_text`), SQLite through ``csv.writer``: two
writers of one notation, held to each other here. Both databases get the same records
(through the write service, in rolled-back transactions), with keys whose order differs
between code-point order and a linguistic collation (case, accents, punctuation, CJK),
awkward text (quotes, CR/LF inside cells, empty strings), timestamps with and without
microseconds and booleans; every export path is compared byte for byte.
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import _migrated_engine
from factories import KINDS, make
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from cbm import contract
from cbm.models import Activity
from cbm.services.export_lists import build_job, iter_bytes
from cbm.services.exports import (
    _copy_statement,
    iter_contract_csv,
    iter_contract_rows,
    write_contract_csv,
)
from cbm.services.records import upsert_records

pytestmark = pytest.mark.postgres

#: Keys that a linguistic collation (en_US, ICU) orders otherwise than code points.
KEYS = [
    "b", "B", "a", "A", "Ä", "ä", "á", "É", "e", "é", "E", "ß", "ss", "Straße", "STRASSE",
    "A-10", "A-9", "A10", "a-1", "a.b", "a b", "a,b", 'a"b', "a_b", "a~b", "_x", "~", "0",
    "9", "日本", "中国", "Ω", "İ", "ı", "ǅ", "z", "Z", "ø", "Œ", "\u00a0nbsp",
]  # fmt: skip

AWKWARD = [
    'He said "no", twice',
    "line one\nline two\r\nline three\rend",
    '"\n"',
    "trailing newline\n",
    "Zapad-2021 — Запад, 西部 🛩️",
    '=HYPERLINK("http://example.invalid","x")',
    "'quoted already",
    "tab\tinside",
    "NEL\x85 and \u2028 separator inside",
    " leading and trailing spaces ",
    "\\N",
    "\\.",
    "",
]


@pytest.fixture()
def sessions(sqlite_url: str, pg_server_url: str) -> Iterator[dict[str, Session]]:
    """A session on each backend, each in a transaction rolled back at the end."""
    out: dict[str, Session] = {}
    with contextlib.ExitStack() as stack:
        for name, url in (("sqlite", sqlite_url), ("postgresql", pg_server_url)):
            connection = stack.enter_context(_migrated_engine(url).connect())
            stack.callback(connection.begin().rollback)
            session = Session(
                bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
            )
            stack.callback(session.close)
            out[name] = session
        yield out


def store_everywhere(sessions: dict[str, Session], kind: str, rows: list[dict[str, Any]]) -> None:
    for session in sessions.values():
        result = upsert_records(session, kind, rows)
        assert result.errors == [], result.errors
        session.commit()


def awkward_records(sessions: dict[str, Session]) -> None:
    activities = [
        make("activities", i, activity_id=key, source=source, name=None, area=text, remarks=text)
        for i, (key, text) in enumerate(zip(KEYS, AWKWARD * 4, strict=False))
        for source in ("notification", "analyst")
    ]
    store_everywhere(sessions, "activities", activities[::-1])
    notifications = [
        make(
            "notifications",
            i,
            reference=key,
            sent_at=f"2024-01-10T09:30:{i % 60:02d}{'.000001' if i % 3 == 0 else ''}+02:00",
            received_at="" if i % 2 else f"2024-01-11T00:00:00.{i:06d}Z",
            nil_report="true" if i % 2 else "false",
            remarks=AWKWARD[i % len(AWKWARD)],
        )
        for i, key in enumerate(KEYS)
    ]
    # A reply sorts after the messages (its message is the first one).
    notifications[1]["in_reply_to"] = notifications[0]["reference"]
    store_everywhere(sessions, "notifications", notifications)
    for kind in KINDS:
        if kind not in ("activities", "notifications"):
            store_everywhere(sessions, kind, [make(kind, 1), make(kind, 2)])


def by_backend(sessions: dict[str, Session], export) -> dict[str, bytes]:
    return {name: export(session) for name, session in sessions.items()}


@pytest.mark.parametrize("kind", KINDS)
def test_contract_csv_is_the_same_bytes_on_both_backends(
    sessions: dict[str, Session], kind: str
) -> None:
    awkward_records(sessions)

    def contract_csv(session: Session) -> bytes:
        return "".join(iter_contract_csv(session, kind)).encode("utf-8")

    def small_chunks(session: Session) -> bytes:
        return "".join(iter_contract_csv(session, kind, chunk_size=3)).encode("utf-8")

    def written(session: Session) -> bytes:
        out = io.BytesIO()
        count = write_contract_csv(session, kind, out, bom=True)
        return f"{count}:".encode() + out.getvalue()

    def list_export(session: Session) -> bytes:
        return b"".join(iter_bytes(session, build_job(session, kind, {}), "csv"))

    def excel_safe(session: Session) -> bytes:
        job = build_job(session, kind, {})
        return b"".join(iter_bytes(session, job, "csv", excel_safe=True))

    def python_rows(session: Session) -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(contract.get(kind).columns)
        for rows in iter_contract_rows(session, kind):
            writer.writerows(rows)
        return buffer.getvalue().encode("utf-8")

    outputs = {}
    for export in (contract_csv, small_chunks, written, list_export, excel_safe, python_rows):
        out = by_backend(sessions, export)
        assert out["postgresql"] == out["sqlite"], f"{export.__name__} differs"
        outputs[export.__name__] = out["sqlite"]
    # The server-written CSV is csv.writer's text of the same cells, in any chunking.
    text = outputs["contract_csv"]
    assert outputs["small_chunks"] == outputs["list_export"] == outputs["python_rows"] == text
    records = len(list(csv.reader(io.StringIO(text.decode("utf-8"), newline="")))) - 1
    assert records >= 2
    assert outputs["written"] == f"{records}:\ufeff".encode() + text


def test_keys_come_in_code_point_order_on_both_backends(sessions: dict[str, Session]) -> None:
    awkward_records(sessions)
    for session in sessions.values():
        text = "".join(iter_contract_csv(session, "activities"))
        keys = [(r[0], r[1]) for r in list(csv.reader(io.StringIO(text, newline="")))[1:]]
        assert keys == sorted(keys)  # Python compares str by code point
        assert len(keys) == 2 * len(KEYS)
        cells = list(csv.reader(io.StringIO(text, newline="")))
        stored = {area or "" for area in session.scalars(select(Activity.area))}
        assert {r[14] for r in cells[1:]} == stored  # area reads back as stored
        assert {'He said "no", twice', '"\n"', "line one\nline two\r\nline three\rend"} < stored


def test_a_linguistic_collation_on_postgresql_changes_no_byte(
    sessions: dict[str, Session],
) -> None:
    # The test server's databases may well be C.UTF-8 (code-point order already): give the
    # key columns ICU's root collation, in this transaction only (rolled back).
    pg = sessions["postgresql"]
    for table, column, length in (
        ("activities", "activity_id", 100),
        ("activities", "source", 32),
        ("notifications", "reference", 100),
    ):
        icu = f'varchar({length}) COLLATE "und-x-icu"'
        pg.execute(text(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {icu}"))
    awkward_records(sessions)
    linguistic = list(pg.scalars(text("SELECT DISTINCT activity_id FROM activities ORDER BY 1")))
    assert linguistic != sorted(linguistic), "the collation orders as code points: no test"
    for kind in ("activities", "notifications"):
        out = by_backend(sessions, lambda s, k=kind: "".join(iter_contract_csv(s, k)).encode())
        assert out["postgresql"] == out["sqlite"], kind
        out = by_backend(sessions, lambda s, k=kind: b"".join(iter_bytes(s, build_job(s, k, {}))))
        assert out["postgresql"] == out["sqlite"], kind


def test_filtered_exports_are_the_same_bytes_on_both_backends(
    sessions: dict[str, Session],
) -> None:
    awkward_records(sessions)
    filters = [
        ("activities", {"state": "DEU", "year": "2024"}),
        ("activities", {"q": "a-1"}),
        ("activities", {"q": "no match at all"}),
        ("notifications", {"year": "2024", "kind": "prior_notification"}),
        ("notifications", {"q": "'; DROP TABLE notifications; --"}),
        ("inspections", {"regime": "VD", "state": "FRA"}),
    ]
    for kind, args in filters:
        out = by_backend(
            sessions, lambda s, k=kind, a=args: b"".join(iter_bytes(s, build_job(s, k, a), "csv"))
        )
        assert out["postgresql"] == out["sqlite"], (kind, args)
    assert (
        b"a-1"
        in by_backend(
            sessions, lambda s: b"".join(iter_bytes(s, build_job(s, "activities", {"q": "a-1"})))
        )["postgresql"]
    )


def test_every_contract_kind_is_written_by_the_server_on_postgresql(
    sessions: dict[str, Session],
) -> None:
    session = sessions["postgresql"]
    for kind in KINDS:
        copy = _copy_statement(session, session.connection(), contract.get(kind), None)
        assert copy is not None, f"{kind}: a column has no SQL rule, written in Python"
        assert copy[0].startswith("COPY (SELECT ")


def test_an_export_closed_early_leaves_its_session_usable_after_a_rollback(
    sessions: dict[str, Session],
) -> None:
    rows = [make("activities", i) for i in range(30)]
    store_everywhere(sessions, "activities", rows)
    session = sessions["postgresql"]
    pieces = iter_contract_csv(session, "activities", chunk_size=5)
    assert next(pieces).startswith("activity_id,")
    assert next(pieces).count("\r\n") == 5
    pieces.close()
    session.rollback()
    text = "".join(iter_contract_csv(session, "activities"))
    assert text.count("\r\n") == 31
