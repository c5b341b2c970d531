"""The contract CSV writer (cbm.services.exports): header, order, notation, quoting, chunks.

Records are stored through the write service (``upsert_records``) in the rolled-back test
transaction, exported, and the text is read back with the csv module and, where the
round trip matters, with the real import path (``run_import``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest
from factories import KINDS, make
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cbm import contract
from cbm.models import Activity, Notification, Quota
from cbm.services.exports import (
    export_file_name,
    format_timestamp,
    format_value,
    iter_contract_csv,
    iter_contract_rows,
    write_contract_csv,
    write_contract_folder,
)
from cbm.services.imports import run_import
from cbm.services.records import upsert_records
from importers.base import Payload
from importers.locations import open_location


def store(session: Session, kind: str, rows: list[dict[str, Any]]) -> None:
    result = upsert_records(session, kind, rows)
    assert result.errors == [], result.errors
    session.commit()


def export_text(session: Session, kind: str, **kw: Any) -> str:
    return "".join(iter_contract_csv(session, kind, **kw))


def parsed(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def header_line(kind: str) -> str:
    return ",".join(contract.get(kind).columns) + "\r\n"


# --------------------------------------------------------------------------------------
# header and empty tables
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_an_empty_table_exports_the_header_alone(session: Session, kind: str) -> None:
    assert list(iter_contract_csv(session, kind)) == [header_line(kind)]
    out = io.StringIO(newline="")
    assert write_contract_csv(session, kind, out) == 0
    assert out.getvalue() == header_line(kind)


@pytest.mark.parametrize("kind", KINDS)
def test_every_column_in_contract_order_and_the_factory_row_comes_back(
    session: Session, kind: str
) -> None:
    # Notifications and reductions refer to other records; the factory rows do not.
    store(session, kind, [make(kind, 1)])
    table = parsed(export_text(session, kind))
    assert table[0] == list(contract.get(kind).columns)
    assert len(table) == 2
    row = dict(zip(table[0], table[1], strict=True))
    expected = make(kind, 1)
    if kind == "notifications":
        expected["received_at"] = "2024-01-10T10:00:00Z"  # +01:00 written in UTC
    assert row == expected


def test_unknown_kind_is_a_clear_error(session: Session) -> None:
    with pytest.raises(KeyError, match="unknown record kind"):
        list(iter_contract_csv(session, "activity"))


# --------------------------------------------------------------------------------------
# order
# --------------------------------------------------------------------------------------


def test_rows_come_in_natural_key_order_by_code_point(session: Session) -> None:
    ids = ["b", "B", "a", "Ä", "A-10", "A-9", "ä", "z", "Z", "ß", "日本", "0"]
    rows = [make("activities", i, activity_id=v) for i, v in enumerate(ids)]
    rows += [make("activities", 99, activity_id="b", source="analyst")]
    store(session, "activities", rows[::-1])
    table = parsed(export_text(session, "activities"))[1:]
    keys = [(r[0], r[1]) for r in table]
    # Code-point order on both backends, whatever the database's collation.
    assert keys == sorted(keys)
    assert keys[:3] == [("0", "notification"), ("A-10", "notification"), ("A-9", "notification")]
    assert ("b", "analyst") in keys and keys.index(("b", "analyst")) + 1 == keys.index(
        ("b", "notification")
    )


def test_composite_keys_order_with_empty_parts_first(session: Session) -> None:
    rows = [
        make("quotas", 5, kind="active", counterpart="RUS"),
        make("quotas", 5),
        make("quotas", 5, kind="active", counterpart="BLR"),
        make("quotas", 3, state="AUT"),
        make("quotas", 1, regime="CFE"),
    ]
    store(session, "quotas", rows)
    table = parsed(export_text(session, "quotas"))[1:]
    assert [tuple(r[:5]) for r in table] == [
        ("CFE", "DEU", "2001", "passive", ""),
        ("OST", "AUT", "2003", "passive", ""),
        ("OST", "DEU", "2005", "active", "BLR"),
        ("OST", "DEU", "2005", "active", "RUS"),
        ("OST", "DEU", "2005", "passive", ""),
    ]


def test_dates_and_years_order_as_values_not_text(session: Session) -> None:
    rows = [
        make("holdings", 1, as_of="2024-10-01"),
        make("holdings", 1, as_of="2024-09-30"),
        make("holdings", 1, as_of="2024-09-30", unit="1st Panzer Division"),
    ]
    store(session, "holdings", rows)
    table = parsed(export_text(session, "holdings"))[1:]
    assert [(r[1], r[4]) for r in table] == [
        ("2024-09-30", ""),
        ("2024-09-30", "1st Panzer Division"),
        ("2024-10-01", ""),
    ]


# --------------------------------------------------------------------------------------
# notation of every field type
# --------------------------------------------------------------------------------------


def test_each_field_type_is_written_in_contract_notation(session: Session) -> None:
    store(
        session,
        "activities",
        [make("activities", 1, state="Germany", host_state="", end_date="", troops="0")],
    )
    store(session, "inspections", [make("inspections", 1)])
    notification = make(
        "notifications",
        1,
        sender="germany",  # an alias: stored and exported as the code
        recipients="fra, Poland  FRA",
        sent_at="2024-01-10T09:30:00.123456789+02:00",  # floored to microseconds, in UTC
        received_at="2024-01-10 23:00+01",
        covers_year="2025",
        activity_id="A-1",
        event_id="I-1",
        nil_report="TRUE",
        remarks="",
    )
    store(session, "notifications", [notification])
    row = dict(zip(*parsed(export_text(session, "notifications")), strict=True))
    assert row["sender"] == "DEU"
    assert row["recipients"] == "FRA POL"
    assert row["sent_at"] == "2024-01-10T07:30:00.123456Z"
    assert row["received_at"] == "2024-01-10T22:00:00Z"
    assert row["covers_year"] == "2025"
    assert row["nil_report"] == "true"
    assert row["remarks"] == "" and row["in_reply_to"] == ""

    activity = dict(zip(*parsed(export_text(session, "activities")), strict=True))
    assert activity["state"] == activity["host_state"] == "DEU"  # host defaults to state
    assert activity["end_date"] == "" and activity["start_date"] == "2024-03-10"
    assert activity["troops"] == "0" and activity["battle_tanks"] == "300"

    inspection = dict(zip(*parsed(export_text(session, "inspections")), strict=True))
    assert inspection["counts_against_quota"] == "true"
    assert inspection["concerns_raised"] == "false"
    assert inspection["guest_states"] == "FRA POL"
    assert inspection["requested_at"] == "2024-03-01T09:00:00Z"


def test_format_value_per_type() -> None:
    spec = contract.get("inspections")
    utc_plus_2 = dt.timezone(dt.timedelta(hours=2))
    assert format_value(spec.field("requested_at"), dt.datetime(1999, 12, 31, 23, 0, 0)
                        .replace(tzinfo=dt.UTC)) == "1999-12-31T23:00:00Z"  # fmt: skip
    assert (
        format_value(spec.field("start_at"), dt.datetime(2000, 1, 1, 1, 0, 0, 5, utc_plus_2))
        == "1999-12-31T23:00:00.000005Z"
    )
    assert format_value(spec.field("team_size"), 0) == "0"
    assert format_value(spec.field("counts_against_quota"), False) == "false"
    assert format_value(spec.field("findings"), None) == ""
    assert format_value(contract.get("holdings").field("unit"), "") == ""
    assert format_value(contract.get("holdings").field("as_of"), dt.date(1970, 1, 2)) == (
        "1970-01-02"
    )
    with pytest.raises(ValueError, match="no time zone"):
        format_timestamp(dt.datetime(2024, 1, 1, 12, 0))
    with pytest.raises(TypeError):
        format_value(contract.get("holdings").field("as_of"), dt.datetime(2024, 1, 1))


# --------------------------------------------------------------------------------------
# quoting: commas, quotes, line breaks, unicode, formula-like cells
# --------------------------------------------------------------------------------------

AWKWARD = [
    'He said "no", twice',
    "line one\nline two\r\nline three\rend",
    "Zapad-2021 — Запад, 西部 🛩️",
    '=HYPERLINK("http://example.invalid","x")',
    "+49 30 1234",
    "-5 km",
    "@SUM(A1)",
    "'quoted already",
    "tab\tinside",
    "NEL\x85 and \u2028 separator inside",
]


def test_awkward_text_is_quoted_and_reads_back_exactly(session: Session) -> None:
    rows = [
        make("activities", i, name=None, area=v, remarks=f"{v},{v}") for i, v in enumerate(AWKWARD)
    ]
    store(session, "activities", rows)
    text = export_text(session, "activities")
    assert text.endswith("\r\n")
    assert '"He said ""no"", twice"' in text
    table = {r[0]: dict(zip(contract.get("activities").columns, r, strict=True))
             for r in parsed(text)[1:]}  # fmt: skip
    for i, v in enumerate(AWKWARD):
        assert table[f"A-{i}"]["area"] == v
        assert table[f"A-{i}"]["remarks"] == f"{v},{v}"
    # Formula-like cells are written as stored: no protective quote is added.
    assert "\r\n=HYPERLINK" not in text  # (it is inside a quoted cell, not a row start)
    assert ',"=HYPERLINK(""http://example.invalid"",""x"")",' in text
    assert ",+49 30 1234," in text and ",-5 km," in text and ",@SUM(A1)," in text


def test_awkward_text_reimports_unchanged_through_the_csv_importer(
    session: Session, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    rows = [make("activities", i, area=v, remarks=v) for i, v in enumerate(AWKWARD)]
    store(session, "activities", rows)
    before = session.execute(select(Activity.activity_id, Activity.area, Activity.remarks)).all()
    path = tmp_path / "activities.csv"
    with path.open("wb") as handle:
        assert write_contract_csv(session, "activities", handle) == len(AWKWARD)
    result = run_import(session_factory, [Payload(name=path.name, path=path)])
    run = result.runs[0]
    assert (run.status, run.read, run.inserted, run.updated, run.unchanged, run.rejected) == (
        "succeeded",
        len(AWKWARD),
        0,
        0,
        len(AWKWARD),
        0,
    )
    session.expire_all()
    after = session.execute(select(Activity.activity_id, Activity.area, Activity.remarks)).all()
    assert sorted(after) == sorted(before)


# --------------------------------------------------------------------------------------
# chunks, streams, filters, file names
# --------------------------------------------------------------------------------------


def test_chunks_hold_at_most_chunk_size_rows_and_join_to_the_same_text(session: Session) -> None:
    store(session, "reductions", [make("reductions", i) for i in range(1, 8)])
    whole = export_text(session, "reductions")
    pieces = list(iter_contract_csv(session, "reductions", chunk_size=3))
    assert pieces[0] == header_line("reductions")
    assert [len(parsed(p)) for p in pieces[1:]] == [3, 3, 1]
    assert "".join(pieces) == whole
    assert [len(part) for part in iter_contract_rows(session, "reductions", chunk_size=5)] == [5, 2]
    with pytest.raises(ValueError, match="chunk_size"):
        list(iter_contract_csv(session, "reductions", chunk_size=0))


def test_write_to_text_or_binary_streams_with_an_optional_bom(session: Session) -> None:
    store(session, "ceilings", [make("ceilings", i) for i in (2, 1)])
    text_out = io.StringIO(newline="")
    binary_out = io.BytesIO()
    assert write_contract_csv(session, "ceilings", text_out, chunk_size=1) == 2
    assert write_contract_csv(session, "ceilings", binary_out) == 2
    assert binary_out.getvalue().decode("utf-8") == text_out.getvalue()
    assert text_out.getvalue() == export_text(session, "ceilings")
    with_bom = io.BytesIO()
    write_contract_csv(session, "ceilings", with_bom, bom=True)
    assert with_bom.getvalue() == b"\xef\xbb\xbf" + binary_out.getvalue()
    assert export_text(session, "ceilings", bom=True) == "\ufeff" + text_out.getvalue()


def test_where_filters_rows(session: Session) -> None:
    store(
        session,
        "notifications",
        [make("notifications", 1), make("notifications", 2, regime="OST", kind="mission_report")],
    )
    table = parsed(export_text(session, "notifications", where=Notification.regime == "OST"))
    assert [r[0] for r in table[1:]] == ["N-2"]
    both = [Notification.regime == "VD", Notification.sender == "DEU"]
    assert [r[0] for r in parsed(export_text(session, "notifications", where=both))[1:]] == ["N-1"]
    out = io.BytesIO()
    assert write_contract_csv(session, "quotas", out, where=Quota.year == 1) == 0


def test_file_names_sort_in_load_order_and_name_their_kind() -> None:
    names = [export_file_name(k) for k in contract.FILES]
    assert [n.split("-", 1)[1][:-4] for n in sorted(names)] == list(contract.LOAD_ORDER)
    assert export_file_name("activities") == "01-activities.csv"


def test_a_folder_export_imports_back_with_cbm_import_folder(
    session: Session, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    store(session, "observation_flights", [make("observation_flights", 1)])
    store(session, "notifications", [make("notifications", 1, event_id="F-1")])
    counts = write_contract_folder(session, tmp_path / "out")
    assert counts == {k: int(k in ("observation_flights", "notifications")) for k in counts}
    assert list(counts) == list(contract.LOAD_ORDER)
    # The same folder as `cbm import FOLDER` reads it: in name order, one run per file.
    result = run_import(session_factory, open_location(str(tmp_path / "out")))
    assert [r.status for r in result.runs] == ["succeeded"] * len(contract.LOAD_ORDER)
    assert (result.read, result.unchanged, result.inserted, result.updated) == (2, 2, 0, 0)


# --------------------------------------------------------------------------------------
# re-importing exports: replies after their messages, folders in load order
# --------------------------------------------------------------------------------------


def test_a_reply_sorted_before_its_message_reimports_in_small_batches(
    session: Session, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    store(
        session,
        "notifications",
        [make("notifications", 1, in_reply_to="N-2"), make("notifications", 2)],
    )
    path = tmp_path / "notifications.csv"
    with path.open("wb") as handle:
        write_contract_csv(session, "notifications", handle)
    session.execute(Notification.__table__.delete())
    session.commit()
    result = run_import(session_factory, [Payload(name=path.name, path=path)], chunk_size=1)
    assert (result.inserted, result.rejected) == (2, 0), result.runs[0]


def test_a_folder_of_plain_kind_names_imports_in_load_order(
    session: Session, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    store(session, "observation_flights", [make("observation_flights", 1)])
    store(session, "notifications", [make("notifications", 1, event_id="F-1")])
    for kind in ("observation_flights", "notifications"):
        with (tmp_path / f"{kind}.csv").open("wb") as handle:
            write_contract_csv(session, kind, handle)
    session.execute(Notification.__table__.delete())
    session.execute(contract.get("observation_flights").model.__table__.delete())
    session.commit()
    result = run_import(session_factory, open_location(str(tmp_path)))
    assert (result.inserted, result.rejected) == (2, 0), result.runs


# --------------------------------------------------------------------------------------
# XLSX and JSON writers (cbm.services.export_formats)
# --------------------------------------------------------------------------------------


def test_xlsx_cells_keep_awkward_text_and_numbers(session: Session) -> None:
    """Escapes that readers decode (``_xHHHH_``), carriage returns and markup come back as
    written; whole numbers are numbers; openpyxl reads the workbook too."""
    import openpyxl
    import python_calamine

    from cbm.services.export_formats import column_letter, iter_xlsx
    from cbm.services.export_lists import build_job

    remarks = "_x0041_ & <b>\r\nline_x005F_"
    row = make("activities", 1, remarks=remarks)
    assert upsert_records(session, "activities", [row]).inserted == 1
    data = b"".join(iter_xlsx(session, [build_job(session, "activities", {})]))
    book = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
    assert book.sheet_names == ["activities"]
    header, values = list(book.get_sheet_by_name("activities").iter_rows())
    got = dict(zip(header, values, strict=True))
    assert got["remarks"] == remarks
    assert got["troops"] == 13000 and got["activity_id"] == "A-1"
    sheet = openpyxl.load_workbook(io.BytesIO(data), read_only=True)["activities"]
    assert [c.value for c in next(sheet.iter_rows())] == list(contract.get("activities").columns)
    assert [column_letter(i) for i in (0, 25, 26, 701, 702)] == ["A", "Z", "AA", "ZZ", "AAA"]


def test_xlsx_refuses_what_xml_cannot_hold(session: Session) -> None:
    from cbm.services.export_formats import XLSXCellError, iter_xlsx
    from cbm.services.export_lists import build_job

    assert upsert_records(session, "activities", [make("activities", 1, remarks="a\ufffeb")]).ok
    with pytest.raises(XLSXCellError, match="U\\+FFFE"):
        b"".join(iter_xlsx(session, [build_job(session, "activities", {})]))


def test_json_is_the_feed_shape_with_typed_values(session: Session) -> None:
    from cbm.services.export_formats import iter_json
    from cbm.services.export_lists import build_job

    assert upsert_records(session, "notifications", [make("notifications", 1)]).ok
    doc = json.loads(b"".join(iter_json(session, build_job(session, "notifications", {}))))
    assert list(doc) == ["kind", "items", "next"] and doc["next"] is None
    (item,) = doc["items"]
    assert list(item) == list(contract.get("notifications").columns)
    assert item["covers_year"] == 2024 and item["nil_report"] is False
    assert item["activity_id"] is None and item["sent_at"] == "2024-01-10T09:30:00Z"
    empty = json.loads(b"".join(iter_json(session, build_job(session, "quotas", {}))))
    assert empty == {"kind": "quotas", "items": [], "next": None}
