"""The format readers (CSV, XLSX, JSON) and the registry: no database needed.

Every fixture file is generated here (openpyxl writes the workbooks); nothing binary is
committed. The readers hand rows over as text; where a test shows that the validation
service then reports a value with the right row number, it calls ``validate_rows`` with a
small State resolver.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile

import pandas as pd
import pytest
from openpyxl import Workbook

from cbm import contract
from cbm.services.validation import StateResolver, validate_rows
from importers import (
    IMPORTERS,
    Batch,
    CSVImporter,
    ImportFormatError,
    JSONImporter,
    Payload,
    XLSXImporter,
    detect,
    importer_for,
)
from importers.common import kind_from_name, kinds_in_name

ACTIVITY_HEADER = "activity_id,source,state,kind,start_date,end_date,troops,remarks"
STATES = StateResolver(["DEU", "FRA", "POL", "RUS"], {"Germany": "DEU"})


def csv_payload(text: str | bytes, name: str = "activities.csv") -> Payload:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return Payload(name, content=data)


def read(importer, payload: Payload, **kw) -> list[Batch]:
    return list(importer.batches(payload, **kw))


def rows_of(batches: list[Batch]) -> list[dict]:
    return [r for b in batches for r in b.rows.to_dict("records")]


def activity_lines(n: int, start: int = 0) -> list[str]:
    return [
        f"A{i},analyst,DEU,exercise,2024-01-{1 + i % 28:02d},,{1000 + i},r{i}"
        for i in range(start, start + n)
    ]


# --------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------


def test_csv_reads_contract_file_as_text_with_bom_and_normalised_header():
    text = (
        "\ufeff Activity_ID ,SOURCE,state,kind,start_date,troops\r\n"
        "A1,analyst,DEU,exercise,2024-03-01,013000\r\n"
    )
    batches = read(CSVImporter(), csv_payload(text))
    assert [b.kind for b in batches] == ["activities"]
    assert batches[0].first_row_number == 2
    assert rows_of(batches) == [
        {
            "activity_id": "A1",
            "source": "analyst",
            "state": "DEU",
            "kind": "exercise",
            "start_date": "2024-03-01",
            "troops": "013000",  # as read: text, leading zero kept
        }
    ]


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("activities.csv", "activities"),
        ("2024-activities.csv", "activities"),
        ("notifications_export.csv", "notifications"),
        ("Observation Flights 2021.csv", "observation_flights"),
        ("observation-flights.csv", "observation_flights"),
        ("drop/2023/HOLDINGS.csv", "holdings"),
        ("https://example.org/feeds/quotas.csv?x=1", "quotas"),
        ("shareholdings.csv", None),
        ("activities_and_notifications.csv", None),
        ("export.csv", None),
    ],
)
def test_kind_from_file_name(name, kind):
    assert kind_from_name(name) == kind


def test_kinds_in_name_prefers_the_longer_name():
    assert kinds_in_name("observation_flights") == ["observation_flights"]


def test_csv_kind_explicit_overrides_name_and_unknown_kind_is_refused():
    text = "reference,regime,kind,sender,sent_at\nR1,VD,annual_exchange,DEU,2024-01-01T00:00:00Z\n"
    batches = read(CSVImporter(), csv_payload(text, "activities.csv"), kind="notifications")
    assert batches[0].kind == "notifications"
    with pytest.raises(ImportFormatError, match=r"unknown record kind 'exercises'"):
        read(CSVImporter(), csv_payload(text), kind="exercises")


def test_csv_kind_from_header_when_the_name_says_nothing():
    text = "state,as_of,category,source,unit,count\nDEU,2024-01-01,battle_tanks,cfe,,300\n"
    assert read(CSVImporter(), csv_payload(text, "export.csv"))[0].kind == "holdings"
    text = "regime,state,year,kind,counterpart,quota\nOST,DEU,2024,passive,,12\n"
    assert read(CSVImporter(), csv_payload(text, "data.csv"))[0].kind == "quotas"
    # A header missing a required column still points at its kind (the service then
    # reports the missing column).
    text = "activity_id,state,kind,start_date\nA1,DEU,exercise,2024-01-01\n"
    assert read(CSVImporter(), csv_payload(text, "data.csv"))[0].kind == "activities"


def test_csv_kind_ambiguous_or_unknown_asks_for_kind():
    with pytest.raises(ImportFormatError, match=r"several kinds.*--kind"):
        read(CSVImporter(), csv_payload("state,category\nDEU,acv\n", "data.csv"))
    with pytest.raises(ImportFormatError, match=r"cannot tell which kind.*--kind"):
        read(CSVImporter(), csv_payload("foo,bar\n1,2\n", "data.csv"))


def test_csv_latin1_file_is_refused_with_byte_offset_and_line():
    text = (
        ACTIVITY_HEADER
        + "\nA1,analyst,DEU,exercise,2024-01-01,,,ok\nA2,analyst,DEU,exercise,2024-01-01,,,Übung\n"
    )
    data = text.encode("latin-1")
    offset = data.index("Ü".encode("latin-1"))
    with pytest.raises(ImportFormatError) as info:
        read(CSVImporter(), csv_payload(data))
    message = str(info.value)
    assert "not UTF-8" in message
    assert f"byte {offset} (line 3)" in message
    assert "0xDC" in message


def test_csv_non_utf8_is_found_far_into_the_file_before_any_row_is_handed_over():
    lines = activity_lines(30_000)
    data = (ACTIVITY_HEADER + "\n" + "\n".join(lines) + "\n").encode() + b"A,b,\xff\n"
    batches = CSVImporter().batches(csv_payload(data), chunk_size=1000)
    with pytest.raises(ImportFormatError, match=r"line 30002"):
        next(batches)  # the check runs before the first batch


def test_csv_multibyte_character_across_read_blocks_is_fine():
    # 'é' straddles the 1 MiB block boundary of the encoding check.
    filler = "x" * ((1 << 20) - len(ACTIVITY_HEADER) - 2 - 30)
    line = f"A1,analyst,DEU,exercise,2024-01-01,,,{filler}" + "é" * 40
    data = (ACTIVITY_HEADER + "\n" + line[:1000] + "\n").encode()
    importer = CSVImporter(max_line_bytes=4 << 20)
    assert rows_of(read(importer, csv_payload(data)))[0]["remarks"].startswith("x")
    long = (ACTIVITY_HEADER + "\n" + line + "\n").encode()
    assert rows_of(read(importer, csv_payload(long)))[0]["remarks"].endswith("é" * 40)


def test_csv_truncated_file_names_the_row():
    text = (
        ACTIVITY_HEADER
        + "\n"
        + "\n".join(activity_lines(5))
        + '\nA9,analyst,DEU,exercise,2024-01-01,,,"unfinished rem'
    )
    with pytest.raises(ImportFormatError, match=r"ends inside a quoted value that starts in row 7"):
        read(CSVImporter(), csv_payload(text), chunk_size=2)


def test_csv_truncated_in_the_middle_of_a_utf8_character():
    data = (ACTIVITY_HEADER + "\nA1,analyst,DEU,exercise,2024-01-01,,,Ü").encode()[:-1]
    with pytest.raises(ImportFormatError, match=r"middle of a UTF-8 character"):
        read(CSVImporter(), csv_payload(data))


def test_csv_huge_line_is_refused_but_a_large_cell_passes_through():
    big = "y" * 200_000
    text = ACTIVITY_HEADER + f"\nA1,analyst,DEU,exercise,2024-01-01,,,{big}\n"
    assert rows_of(read(CSVImporter(), csv_payload(text)))[0]["remarks"] == big
    with pytest.raises(ImportFormatError, match=r"line 2 is longer than 100,000 bytes"):
        read(CSVImporter(max_line_bytes=100_000), csv_payload(text))
    huge = ACTIVITY_HEADER + "\nA1,a,b,c,d,e,f,g\n" + "z" * (3 << 20) + "\nA2,x\n"
    with pytest.raises(ImportFormatError, match=r"line 3 is longer than 1,048,576 bytes"):
        read(CSVImporter(), csv_payload(huge))


def test_csv_over_long_value_is_left_to_the_service():
    text = ACTIVITY_HEADER + "\n" + "A" * 500 + ",analyst,DEU,exercise,2024-01-01,,,\n"
    batch = read(CSVImporter(), csv_payload(text))[0]
    result = validate_rows(contract.ACTIVITIES, batch.rows, STATES, first_row_number=2)
    assert [str(e) for e in result.errors] == [
        "row 2, column activity_id: is 500 characters long; at most 100 are allowed"
    ]


def test_csv_chunks_number_rows_across_chunks():
    lines = activity_lines(10)
    text = ACTIVITY_HEADER + "\n" + "\n".join(lines) + "\n"
    batches = read(CSVImporter(), csv_payload(text), chunk_size=3)
    assert [b.first_row_number for b in batches] == [2, 5, 8, 11]
    assert [len(b.rows) for b in batches] == [3, 3, 3, 1]
    assert [r["activity_id"] for r in rows_of(batches)] == [f"A{i}" for i in range(10)]


def test_csv_blank_lines_and_multiline_cells_keep_spreadsheet_row_numbers():
    text = (
        ACTIVITY_HEADER + "\n"
        "A0,analyst,DEU,exercise,2024-01-01,,,\n"  # row 2
        "\n"  # row 3: blank, skipped
        ",,,,,,,\n"  # row 4: all cells empty, skipped
        'A1,analyst,DEU,exercise,2024-01-01,,,"two\nlines"\n'  # row 5 (lines 5-6)
        "A2,analyst,DEU,exercise,2024-13-01,,,\n"  # row 6 (line 7)
    )
    batches = read(CSVImporter(), csv_payload(text))
    assert [(b.first_row_number, len(b.rows)) for b in batches] == [(2, 1), (5, 2)]
    assert rows_of(batches)[1]["remarks"] == "two\nlines"
    errors = [
        e
        for b in batches
        for e in validate_rows(
            contract.ACTIVITIES, b.rows, STATES, first_row_number=b.first_row_number
        ).errors
    ]
    assert [(e.row, e.column) for e in errors] == [(6, "start_date")]


def test_csv_rows_reach_the_service_faithfully_with_row_numbers():
    text = (
        "reference,regime,kind,sender,sent_at\n"
        "R1,VD,annual_exchange,DEU,2024-01-01T09:00:00Z\n"
        "R2,VD,annual_exchange,DEU,2024-01-01T09:00:00\n"  # no zone
        "R3,VD,annual_exchange,DEU,01/02/2024\n"  # bad date
        "R1,VD,annual_exchange,DEU,2024-01-02T09:00:00Z\n"  # duplicate key
    )
    (batch,) = read(CSVImporter(), csv_payload(text, "notifications.csv"))
    result = validate_rows(contract.NOTIFICATIONS, batch.rows, STATES, first_row_number=2)
    reasons = {(e.row, e.column): e.reason for e in result.errors}
    assert "has no time zone" in reasons[(3, "sent_at")]
    assert "not an ISO 8601 timestamp" in reasons[(4, "sent_at")]
    assert "duplicate key" in reasons[(2, "reference")]
    assert "duplicate key" in reasons[(5, "reference")]


def test_csv_formula_like_cells_are_data():
    row = "A{},analyst,DEU,exercise,2024-01-01,,,{}"
    cells = ['"=HYPERLINK(""x"")"', "+1", "@SUM(A1)", "-2"]
    text = "\n".join([ACTIVITY_HEADER] + [row.format(i, c) for i, c in enumerate(cells)])
    assert [r["remarks"] for r in rows_of(read(CSVImporter(), csv_payload(text)))] == [
        '=HYPERLINK("x")',
        "+1",
        "@SUM(A1)",
        "-2",
    ]


def test_csv_unknown_and_missing_columns_are_passed_for_the_service_to_report():
    text = "activity_id,source,state,colour\nA1,analyst,DEU,red\n"
    (batch,) = read(CSVImporter(), csv_payload(text))
    assert list(batch.rows.columns) == ["activity_id", "source", "state", "colour"]
    result = validate_rows(contract.ACTIVITIES, batch.rows, STATES)
    assert any("unknown column(s) for activities: colour" in e.reason for e in result.errors)
    assert any("missing" in e.reason for e in result.errors)


def test_csv_row_with_extra_cells_is_refused_with_its_row():
    text = ACTIVITY_HEADER + "\n" + "\n".join(activity_lines(3)) + "\nA9,a,b,c,d,e,f,g,extra\n"
    with pytest.raises(ImportFormatError, match=r"row 5 has 9 cells but the header names 8"):
        read(CSVImporter(), csv_payload(text))
    # Every data row one cell longer than the header (pandas would shift the columns).
    text = "activity_id,source\nA1,analyst,x\nA2,analyst,y\n"
    with pytest.raises(ImportFormatError, match=r"row 2 has 3 cells but the header names 2"):
        read(CSVImporter(), csv_payload(text))


def test_csv_trailing_empty_columns_are_dropped_and_named_ones_reported():
    text = "activity_id,source,\nA1,analyst,\n"
    (batch,) = read(CSVImporter(), csv_payload(text))
    assert list(batch.rows.columns) == ["activity_id", "source"]
    text = "activity_id,source,\nA1,analyst,oops\n"
    (batch,) = read(CSVImporter(), csv_payload(text))
    assert list(batch.rows.columns) == ["activity_id", "source", "(no name, column 3)"]


def test_csv_header_problems():
    with pytest.raises(ImportFormatError, match=r"'state' appears twice"):
        read(CSVImporter(), csv_payload("activity_id,state,State\n"))
    with pytest.raises(ImportFormatError, match=r"separated by semicolons"):
        read(CSVImporter(), csv_payload("activity_id;source;state\nA;b;c\n"))
    with pytest.raises(ImportFormatError, match=r"separated by tabs"):
        read(CSVImporter(), csv_payload("activity_id\tsource\nA\tb\n"), kind="activities")
    with pytest.raises(ImportFormatError, match=r"is empty"):
        read(CSVImporter(), csv_payload(b""))
    with pytest.raises(ImportFormatError, match=r"first line is empty"):
        read(CSVImporter(), csv_payload("\n\nactivity_id\n"))
    assert read(CSVImporter(), csv_payload(ACTIVITY_HEADER + "\n")) == []


def test_csv_reads_from_a_path(tmp_path):
    path = tmp_path / "activities.csv"
    path.write_text(ACTIVITY_HEADER + "\n" + "\n".join(activity_lines(4)) + "\n")
    batches = read(CSVImporter(), Payload("activities.csv", path=path), chunk_size=2)
    assert [b.first_row_number for b in batches] == [2, 4]


def test_csv_chunk_size_must_be_positive():
    with pytest.raises(ValueError):
        read(CSVImporter(), csv_payload(ACTIVITY_HEADER + "\n"), chunk_size=0)


# --------------------------------------------------------------------------------------
# XLSX
# --------------------------------------------------------------------------------------


def workbook_bytes(build) -> bytes:
    wb = Workbook()
    wb.remove(wb.active)
    build(wb)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def rewrite_zip(data: bytes, change) -> bytes:
    """A copy of a zip with members changed by ``change(name, bytes) -> bytes | None``."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            content = change(info.filename, src.read(info))
            if content is not None:
                dst.writestr(info.filename, content)
    return out.getvalue()


def two_sheet_book(wb):
    n = wb.create_sheet("Notifications")
    n.append(["reference", "regime", "kind", "sender", "sent_at", "nil_report", "covers_year"])
    n.append(["R1", "VD", "annual_exchange", "DEU", "2024-03-01T09:30:00Z", False, 2025])
    a = wb.create_sheet("activities")
    a.append(["activity_id", "source", "state", "kind", "start_date", "troops"])
    a.append(["A1", "analyst", "DEU", "exercise", dt.date(2024, 3, 1), 13000])
    a.append([None] * 6)  # row 3: blank, skipped
    a.append(["A2", "analyst", "FRA", "exercise", dt.datetime(2024, 3, 2), 12.0])
    wb.create_sheet("Notes")["B2"] = "read me"
    wb.create_sheet("empty")


def test_xlsx_two_sheets_two_kinds_in_load_order_and_unknown_sheet_reported():
    payload = Payload("book.xlsx", content=workbook_bytes(two_sheet_book))
    batches = read(XLSXImporter(), payload)
    assert [(b.kind, b.part, b.first_row_number, len(b.rows)) for b in batches] == [
        ("activities", "activities", 2, 1),
        ("activities", "activities", 4, 1),
        ("notifications", "Notifications", 2, 1),
    ]
    assert rows_of(batches[:2]) == [
        {
            "activity_id": "A1",
            "source": "analyst",
            "state": "DEU",
            "kind": "exercise",
            "start_date": "2024-03-01",
            "troops": "13000",
        },
        {
            "activity_id": "A2",
            "source": "analyst",
            "state": "FRA",
            "kind": "exercise",
            "start_date": "2024-03-02",
            "troops": "12",
        },
    ]
    assert rows_of(batches[2:])[0]["nil_report"] == "false"
    assert rows_of(batches[2:])[0]["covers_year"] == "2025"
    assert len(payload.warnings) == 1
    assert "sheet 'Notes' is not named after a kind" in payload.warnings[0]


def test_xlsx_cells_become_contract_text_and_zoneless_timestamps_are_refused_by_the_service():
    def build(wb):
        s = wb.create_sheet("inspections")
        s.append(
            [
                "inspection_id",
                "regime",
                "kind",
                "inspecting_state",
                "inspected_state",
                "requested_at",
                "team_size",
                "counts_against_quota",
                "findings",
            ]
        )
        s.append(
            ["I1", "VD", "vd_inspection", "DEU", "POL", dt.datetime(2024, 3, 1, 9, 30), 4.0, True]
        )
        s.append(["I2", "VD", "vd_inspection", "DEU", "POL", "2024-03-01T09:30:00+01:00", 1.5])
        s.append(["I3", "VD", "vd_inspection", "DEU", "POL", "2024-03-01T09:30:00Z", "=1+1"])
        cell = s.cell(4, 9, "=cmd|' /C calc'!A0")
        cell.data_type = "s"  # text that looks like a formula
        s.cell(5, 1, "I4")
        s.cell(5, 9, "+49 30 1234")
        s.cell(5, 9).data_type = "s"

    data = workbook_bytes(build)
    # Give the formula a cached value, as Excel would have saved it.
    data = rewrite_zip(
        data,
        lambda name, content: (
            content.replace(b"<f>1+1</f><v />", b"<f>1+1</f><v>2</v>")
            if name.endswith("sheet1.xml")
            else content
        ),
    )
    (batch,) = read(XLSXImporter(), Payload("x.xlsx", content=data))
    rows = batch.rows.to_dict("records")
    assert rows[0]["requested_at"] == "2024-03-01T09:30:00"  # no zone: as the cell has none
    assert rows[0]["team_size"] == "4"
    assert rows[0]["counts_against_quota"] == "true"
    assert rows[1]["team_size"] == "1.5"
    assert rows[1]["requested_at"] == "2024-03-01T09:30:00+01:00"
    assert rows[2]["team_size"] == "2"  # the cached value; never evaluated
    assert rows[2]["findings"] == "=cmd|' /C calc'!A0"
    assert rows[3]["findings"] == "+49 30 1234"
    result = validate_rows(contract.INSPECTIONS, batch.rows, STATES, first_row_number=2)
    reasons = {(e.row, e.column): e.reason for e in result.errors}
    assert "has no time zone" in reasons[(2, "requested_at")]
    assert "not a whole number" in reasons[(3, "team_size")]
    assert (4, "team_size") not in reasons


def test_xlsx_formula_without_cached_value_is_empty():
    def build(wb):
        s = wb.create_sheet("activities")
        s.append(["activity_id", "troops"])
        s.append(["A1", "=1+1"])

    (batch,) = read(XLSXImporter(), Payload("x.xlsx", content=workbook_bytes(build)))
    assert batch.rows.to_dict("records") == [{"activity_id": "A1", "troops": ""}]


def test_xlsx_header_below_title_rows_keeps_sheet_row_numbers():
    def build(wb):
        s = wb.create_sheet("Sheet1")
        s["C4"] = "reduction_id"
        s["D4"] = "state"
        s["C5"] = "X1"
        s["D5"] = "DEU"

    (batch,) = read(XLSXImporter(), Payload("reductions.xlsx", content=workbook_bytes(build)))
    assert batch.kind == "reductions"  # from the file name: the only sheet is "Sheet1"
    assert batch.first_row_number == 5
    assert batch.rows.to_dict("records") == [{"reduction_id": "X1", "state": "DEU"}]


def test_xlsx_explicit_kind_and_unnamed_sheets():
    data = workbook_bytes(two_sheet_book)
    payload = Payload("book.xlsx", content=data)
    batches = read(XLSXImporter(), payload, kind="notifications")
    assert {b.kind for b in batches} == {"notifications"}
    assert any("sheet 'activities' skipped (only notifications" in w for w in payload.warnings)

    def single(wb):
        s = wb.create_sheet("Sheet1")
        s.append(["state", "as_of", "category", "source", "unit", "count"])
        s.append(["DEU", "2024-01-01", "battle_tanks", "cfe", "", 10])

    data = workbook_bytes(single)
    assert read(XLSXImporter(), Payload("x.xlsx", content=data), kind="holdings")[0].kind == (
        "holdings"
    )
    assert read(XLSXImporter(), Payload("x.xlsx", content=data))[0].kind == "holdings"

    def two_unnamed(wb):
        wb.create_sheet("Sheet1")["A1"] = "x"
        wb.create_sheet("Sheet2")["A1"] = "y"

    with pytest.raises(ImportFormatError, match=r"no sheet is named after a kind.*'Sheet1'"):
        read(XLSXImporter(), Payload("x.xlsx", content=workbook_bytes(two_unnamed)))
    with pytest.raises(ImportFormatError, match=r"no sheet is named 'quotas'"):
        read(XLSXImporter(), Payload("x.xlsx", content=workbook_bytes(two_unnamed)), kind="quotas")


def test_xlsx_two_sheets_of_one_kind_are_refused():
    def build(wb):
        wb.create_sheet("activities")["A1"] = "activity_id"
        wb.create_sheet("2024 Activities")["A1"] = "activity_id"

    with pytest.raises(ImportFormatError, match=r"both hold activities"):
        read(XLSXImporter(), Payload("x.xlsx", content=workbook_bytes(build)))


def zip_bomb_workbook(size: int = 50 * 2**20) -> bytes:
    """A workbook whose sheet is ``size`` bytes of one repeated byte (>1000:1 deflated)."""
    base = workbook_bytes(lambda wb: wb.create_sheet("activities").append(["activity_id"]))
    head = b'<?xml version="1.0"?><worksheet xmlns="x"><sheetData>'
    padding = b" " * (size - len(head))

    def change(name, content):
        return head + padding if name == "xl/worksheets/sheet1.xml" else content

    return rewrite_zip(base, change)


def test_xlsx_zip_bomb_is_refused():
    data = zip_bomb_workbook()
    assert len(data) < 200_000  # 50 MiB of sheet in well under 200 KB
    with pytest.raises(
        ImportFormatError, match=r"sheet1.xml inflates more than 100 times.*zip bomb"
    ):
        read(XLSXImporter(), Payload("bomb.xlsx", content=data))


def test_xlsx_bomb_with_lying_sizes_is_refused_while_streaming():
    data = bytearray(zip_bomb_workbook(8 * 2**20))
    archive = zipfile.ZipFile(io.BytesIO(bytes(data)))
    info = archive.getinfo("xl/worksheets/sheet1.xml")
    # Claim in the central directory that the member unpacks to its compressed size.
    cd = bytes(data).rfind(b"PK\x01\x02", 0, bytes(data).rfind(b"xl/worksheets/sheet1.xml") + 1)
    data[cd + 24 : cd + 28] = info.compress_size.to_bytes(4, "little")
    with pytest.raises(ImportFormatError, match=r"zip bomb|damaged"):
        read(XLSXImporter(), Payload("liar.xlsx", content=bytes(data)))


def test_xlsx_size_and_entry_limits():
    data = workbook_bytes(two_sheet_book)
    with pytest.raises(ImportFormatError, match=r"unpacks to .* bytes; at most 1,000 are accepted"):
        read(XLSXImporter(max_uncompressed=1000), Payload("x.xlsx", content=data))
    with pytest.raises(ImportFormatError, match=r"holds \d+ files; at most 3"):
        read(XLSXImporter(max_entries=3), Payload("x.xlsx", content=data))


@pytest.mark.parametrize(
    "declaration",
    [
        b'<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>',
        b'<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
    ],
    ids=["billion-laughs", "xxe"],
)
def test_xlsx_doctype_or_entity_is_refused(declaration):
    base = workbook_bytes(two_sheet_book)

    def change(name, content):
        if name != "xl/workbook.xml":
            return content
        if content.startswith(b"<?xml"):
            end = content.index(b"?>") + 2
            return content[:end] + declaration + content[end:]
        return declaration + content

    with pytest.raises(ImportFormatError, match=r"workbook.xml declares a DOCTYPE or ENTITY"):
        read(XLSXImporter(), Payload("evil.xlsx", content=rewrite_zip(base, change)))


def test_xlsx_utf16_doctype_is_refused_too():
    base = workbook_bytes(two_sheet_book)
    evil = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY a "b">]><x/>'

    def change(name, content):
        return evil.encode("utf-16-le") if name == "docProps/app.xml" else content

    with pytest.raises(ImportFormatError, match=r"DOCTYPE or ENTITY"):
        read(XLSXImporter(), Payload("evil.xlsx", content=rewrite_zip(base, change)))


def test_xlsx_truncated_damaged_or_not_a_workbook():
    data = workbook_bytes(two_sheet_book)
    with pytest.raises(ImportFormatError, match=r"damaged or truncated"):
        read(XLSXImporter(), Payload("cut.xlsx", content=data[: len(data) // 2]))
    with pytest.raises(ImportFormatError, match=r"not an XLSX workbook \(not a zip"):
        read(XLSXImporter(), Payload("x.xlsx", content=b"activity_id\nA1\n"))
    with pytest.raises(ImportFormatError, match=r"old Excel 97"):
        read(
            XLSXImporter(),
            Payload("x.xls", content=b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600),
        )
    plain_zip = io.BytesIO()
    with zipfile.ZipFile(plain_zip, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(ImportFormatError, match=r"zip file but not an XLSX"):
        read(XLSXImporter(), Payload("x.xlsx", content=plain_zip.getvalue()))


def damaged_deflate(data: bytes) -> bytes:
    """The zip with its first member's compressed bytes replaced by an invalid deflate
    stream (0xFF: a final block of the reserved type), sizes and CRC left as they were."""
    assert data[:4] == b"PK\x03\x04"
    start = 30 + int.from_bytes(data[26:28], "little") + int.from_bytes(data[28:30], "little")
    return data[:start] + b"\xff" * 8 + data[start + 8 :]


def test_xlsx_damaged_compressed_member_is_a_format_error_not_a_crash():
    """Found by tests/test_fuzz_importers.py: zlib.error escaped the container check and
    the run failed with "unexpected error: error: Error -3 while decompressing data"."""
    data = damaged_deflate(workbook_bytes(two_sheet_book))
    with pytest.raises(ImportFormatError, match=r"^x\.xlsx: the workbook is damaged or trunc"):
        read(XLSXImporter(), Payload("x.xlsx", content=data))


# --------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------


def json_payload(doc, name: str = "activities.json") -> Payload:
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return Payload(name, content=data, media_type="application/json")


RECORD = {
    "activity_id": "A1",
    "source": "analyst",
    "state": "DEU",
    "kind": "exercise",
    "start_date": "2024-03-01",
    "troops": 13000,
    "airborne_troops": 12.0,
    "artillery": None,
    "remarks": True,
}


def test_json_list_of_records_kind_from_name():
    (batch,) = read(JSONImporter(), json_payload([RECORD, {**RECORD, "activity_id": "A2"}]))
    assert batch.kind == "activities"
    assert batch.first_row_number == 1
    first = batch.rows.to_dict("records")[0]
    assert first["troops"] == "13000"
    assert first["airborne_troops"] == "12"
    assert first["artillery"] == ""
    assert first["remarks"] == "true"


def test_json_tagged_object_and_api_page():
    doc = {"kind": "activities", "records": [RECORD]}
    assert read(JSONImporter(), json_payload(doc, "feed.json"))[0].kind == "activities"
    page = {"kind": "activities", "items": [RECORD] * 5, "next": "?page=2", "count": 12}
    batches = read(JSONImporter(), json_payload(page, "https://cbm.example/api/x"), chunk_size=2)
    assert [b.first_row_number for b in batches] == [1, 3, 5]
    with pytest.raises(ImportFormatError, match=r"holds activities \(its 'kind'\), not quotas"):
        read(JSONImporter(), json_payload(doc), kind="quotas")
    # Found by tests/test_fuzz_importers.py: the message did not name the file.
    with pytest.raises(
        ImportFormatError, match=r"^activities\.json: its 'kind': unknown record kind 'things'"
    ):
        read(JSONImporter(), json_payload({"kind": "things", "records": []}))


def test_json_kind_from_keys_and_keys_normalised():
    rec = {"State": "DEU", "as_of": "2024-01-01", "category": "acv", "source": "cfe", "count": 3}
    (batch,) = read(JSONImporter(), json_payload([rec, {"state": "FRA"}], "export.json"))
    assert batch.kind == "holdings"
    assert batch.rows.to_dict("records")[1] == {
        "state": "FRA",
        "as_of": "",
        "category": "",
        "source": "",
        "count": "",
    }


def test_json_empty_list_gives_nothing():
    assert read(JSONImporter(), json_payload([])) == []


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("just text", r"top level is str"),
        (42, r"top level is int"),
        ({"data": []}, r"must hold its records under 'records'"),
        ({"records": {"a": 1}}, r"'records' must be a list"),
        ({"records": [], "items": []}, r"both 'records' and 'items'"),
        ([RECORD, [1, 2]], r"record 2 is list, not an object"),
        ([{**RECORD, "state": {"code": "DEU"}}], r"record 1, key 'state': a nested object"),
        ([{**RECORD, "state": ["DEU"]}], r"record 1, key 'state': a nested list"),
        ({"kind": "activities", "items": [], "next": 3}, r"'next' must be a URL or null"),
    ],
)
def test_json_shapes_refused(doc, message):
    with pytest.raises(ImportFormatError, match=message):
        read(JSONImporter(), json_payload(doc))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'[{"activity_id": "A1", "activity_id": "A2"}]', r"'activity_id' appears twice"),
        (b'[{"state": "DEU", "State ": "FRA"}]', r"'State ' appears twice"),
        (b'[{"troops": NaN}]', r"NaN is not a value JSON allows"),
        (b'[{"troops": 1,}]', r"not valid JSON: .* at line 1, column"),
        (b'[{"a": 1}', r"not valid JSON"),
        (b"\xff\xfe[]", r"not UTF-8: byte 0"),
        (b"   ", r"is empty"),
        (b"[" * 100_000 + b"]" * 100_000, r"nested too deeply|not valid JSON"),
    ],
)
def test_json_malformed_refused(raw, message):
    with pytest.raises(ImportFormatError, match=message) as caught:
        read(JSONImporter(), json_payload(raw))
    # Found by tests/test_fuzz_importers.py: the NaN message did not name the file.
    assert str(caught.value).startswith("activities.json"), caught.value


def test_json_bom_accepted_and_size_limit():
    raw = b"\xef\xbb\xbf" + json.dumps([RECORD]).encode()
    assert len(read(JSONImporter(), json_payload(raw))) == 1
    big = json.dumps([RECORD] * 100).encode()
    with pytest.raises(ImportFormatError, match=r"at most 1,000 bytes"):
        read(JSONImporter(max_bytes=1000), json_payload(big))


# --------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------


def test_registry_by_name():
    payload = csv_payload(ACTIVITY_HEADER + "\n")
    assert isinstance(importer_for(payload, "CSV"), CSVImporter)
    assert isinstance(importer_for(payload, "json"), JSONImporter)
    assert isinstance(importer_for(payload, "auto"), CSVImporter)
    with pytest.raises(ImportFormatError, match=r"unknown importer 'xml'"):
        importer_for(payload, "xml")
    assert set(IMPORTERS) == {"csv", "xlsx", "json"}
    for name, cls in IMPORTERS.items():
        assert cls.name == name
        assert cls.version


def test_registry_detection():
    book = workbook_bytes(two_sheet_book)
    assert detect(Payload("a.csv", content=b"x,y\n")) == "csv"
    assert detect(Payload("a.JSON", content=b"x,y\n")) == "json"  # the extension decides
    assert detect(Payload("a.xlsx", content=book)) == "xlsx"
    assert detect(Payload("a.csv", content=book)) == "xlsx"  # a zip is a workbook
    assert detect(Payload("https://h/feed?x.csv", content=b"[]")) == "json"  # path, not query
    assert detect(Payload("https://h/feed", content=b"a,b", media_type="text/csv")) == "csv"
    assert (
        detect(Payload("https://h/feed", content=b"a", media_type="application/vnd.api+json"))
        == "json"
    )
    assert detect(Payload("feed", content=b'\xef\xbb\xbf  {"items": []}')) == "json"
    assert detect(Payload("feed", content=b"activity_id\nA1\n")) == "csv"
    with pytest.raises(ImportFormatError, match=r"old Excel 97"):
        detect(Payload("a.xls", content=b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\0\0"))


def test_registry_reads_what_it_detects():
    book = workbook_bytes(two_sheet_book)
    for payload, kinds in [
        (Payload("book.xlsx", content=book), {"activities", "notifications"}),
        (json_payload([RECORD]), {"activities"}),
        (csv_payload(ACTIVITY_HEADER + "\n" + activity_lines(1)[0]), {"activities"}),
    ]:
        batches = list(importer_for(payload).batches(payload))
        assert {b.kind for b in batches} == kinds
        assert all(isinstance(b.rows, pd.DataFrame) for b in batches)
