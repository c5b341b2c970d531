"""Hypothesis strategies for hostile import payloads: CSV, XLSX and JSON files.

Each strategy draws a *valid-looking* contract file (rows from :mod:`factories`) and then
damages it the way real files are damaged: cells of the wrong type, numbers too large for
any column, unknown States, odd Unicode, NULs and other controls, byte-order marks, mixed
line ends, ragged rows, duplicated or missing header names, other encodings, truncation,
flipped bytes; workbooks built with openpyxl and then corrupted inside their zip; JSON of
the wrong shape or nested thousands of levels deep. Raw byte garbage is drawn too.

A strategy yields a :class:`Drawn`: the file's name, its bytes and what was done to it
(for the failure message, so a shrunk example reads as a recipe).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any

from factories import FACTORIES
from hypothesis import strategies as st

from cbm import contract

#: The kinds fuzzed: every field type of the contract occurs in one of them.
KINDS = ("activities", "notifications", "inspections", "quotas", "holdings", "reductions")


@dataclass
class Drawn:
    """One hostile payload: name, bytes, and the recipe that made it."""

    name: str
    content: bytes
    fmt: str  # the importer the name suggests: csv, xlsx or json
    kind: str | None = None  # the kind the rows were drawn for (None: garbage)
    recipe: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"Drawn({self.name!r}, {len(self.content)} bytes, recipe={self.recipe})"


# --------------------------------------------------------------------------------------
# cells
# --------------------------------------------------------------------------------------

HOSTILE_TEXT = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ufeff",
    "\ufeffDEU",
    "\u202eUED",  # right-to-left override
    "e\u0301\u0301\u0301",  # stacked combining marks
    "🛩️🇩🇪",
    "\ud7ff\ue000\U0010ffff",
    "\u2028\u2029\x85",
    "\x1b[31mred",
    "\x7f\x01\x02",
    "\r",
    "\n",
    "\r\n",
    '"',
    '""',
    '"unclosed',
    ",",
    "=cmd|' /C calc'!A0",
    "@SUM(1+1)",
    "' OR 1=1 --",
    "NULL",
    "NaN",
    "None",
    "true",
    "x" * 5000,
    "Ж" * 300,
)
HOSTILE_NUMBERS = (
    "9" * 40,
    "2147483648",
    "-2147483649",
    "9223372036854775808",
    "-0",
    "1e308",
    "1e309",
    "inf",
    "-Infinity",
    "NaN",
    "1.5",
    "1,000",
    "0x10",
    "١٢٣",  # Arabic-Indic digits
    "１２",  # full-width digits
    " 12 ",
    "+12",
)
HOSTILE_DATES = (
    "2024-02-30",
    "2024-13-01",
    "0000-01-01",
    "9999-12-31",
    "10000-01-01",
    "2024-03-10T25:00:00Z",
    "2024-03-10T09:00:00+99:00",
    "2024-03-10T09:00:00",
    "2024-03-10 09:00:00Z",
    "1969-12-31T23:59:59Z",
    "2038-01-19T03:14:08Z",
    "2024-W10-1",
    "10/03/2024",
    "today",
)
HOSTILE_STATES = ("XXX", "Atlantis", "deu", "DEU,FRA", "DEU FRA", "ALL", "Россия", "SU", "ZZ")

ODD_CHARS = st.characters(exclude_categories=("Cs",))


def hostile_cell() -> st.SearchStrategy[str]:
    """A cell value a contract file should never hold (or only just)."""
    return st.one_of(
        st.sampled_from(HOSTILE_TEXT + HOSTILE_NUMBERS + HOSTILE_DATES + HOSTILE_STATES),
        st.text(ODD_CHARS, max_size=30),
        st.integers(min_value=-(10**30), max_value=10**30).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
    )


@st.composite
def table(draw: st.DrawFn) -> tuple[str, list[str], list[list[str]], list[str]]:
    """(kind, header, rows, recipe): a contract file's cells with some of them damaged."""
    kind = draw(st.sampled_from(KINDS))
    n = draw(st.integers(min_value=0, max_value=6))
    start = draw(st.integers(min_value=1, max_value=50))
    records = [FACTORIES[kind](i) for i in range(start, start + n)]
    header = list(contract.FILES[kind].columns)
    cells = [[r[c] for c in header] for r in records]
    recipe: list[str] = [f"{kind} x{n}"]
    if n and draw(st.booleans()):
        # The same key twice.
        cells.append(list(cells[0]))
        recipe.append("duplicate row")
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        if not cells:
            break
        r = draw(st.integers(min_value=0, max_value=len(cells) - 1))
        c = draw(st.integers(min_value=0, max_value=len(header) - 1))
        value = draw(hostile_cell())
        cells[r][c] = value
        recipe.append(f"cell[{r}][{header[c]}]={value[:40]!r}")
    header, cells = draw(_header_damage(header, cells, recipe))
    return kind, header, cells, recipe


@st.composite
def _header_damage(
    draw: st.DrawFn, header: list[str], cells: list[list[str]], recipe: list[str]
) -> tuple[list[str], list[list[str]]]:
    header = list(header)
    choice = draw(
        st.sampled_from(
            ("none",) * 6 + ("duplicate", "drop", "unknown", "case", "blank", "bom", "reorder")
        )
    )
    if choice == "none":
        return header, cells
    recipe.append(f"header:{choice}")
    i = draw(st.integers(min_value=0, max_value=len(header) - 1))
    if choice == "duplicate":
        header[i] = header[(i + 1) % len(header)]
    elif choice == "drop":
        header.pop(i)
        cells = [row[:i] + row[i + 1 :] for row in cells]
    elif choice == "unknown":
        header.append(draw(st.sampled_from(("extra", "password_hash", "id", "", " ", "\x00"))))
        cells = [[*row, "surplus"] for row in cells]
    elif choice == "case":
        header = [f"  {h.upper()} " for h in header]
    elif choice == "blank":
        header[i] = ""
    elif choice == "bom":
        header[0] = "\ufeff" + header[0]
    else:
        order = draw(st.permutations(range(len(header))))
        header = [header[j] for j in order]
        cells = [[row[j] for j in order] for row in cells]
    return header, cells


# --------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------

ENCODINGS = ("utf-8",) * 6 + ("utf-8-sig", "utf-16", "latin-1", "cp1252", "utf-32")
NEWLINES = ("\n", "\r\n", "\r")


def _encode(text: str, encoding: str) -> bytes:
    return text.encode(
        encoding, errors="replace" if encoding in ("latin-1", "cp1252") else "strict"
    )


@st.composite
def csv_payloads(draw: st.DrawFn) -> Drawn:
    """A contract CSV file, damaged in its cells, header, layout, encoding or bytes."""
    kind, header, cells, recipe = draw(table())
    buffer = io.StringIO()
    mixed = draw(st.booleans())
    newline = draw(st.sampled_from(NEWLINES))
    writer = csv.writer(buffer, lineterminator=newline)
    writer.writerow(header)
    for row in cells:
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            cut = draw(st.integers(min_value=0, max_value=len(row) + 2))
            row = row[:cut] if cut <= len(row) else [*row, "", "extra"]
            recipe.append(f"ragged row ({len(row)} cells)")
        if mixed:
            writer = csv.writer(buffer, lineterminator=draw(st.sampled_from(NEWLINES)))
        writer.writerow(row)
    if mixed:
        recipe.append("mixed newlines")
    text = buffer.getvalue()
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        text = text.replace(",", draw(st.sampled_from((";", "\t"))))
        recipe.append("other separator")
    encoding = draw(st.sampled_from(ENCODINGS))
    if encoding != "utf-8":
        recipe.append(f"encoding {encoding}")
    data = _encode(text, encoding)
    data = draw(_byte_damage(data, recipe))
    name = draw(st.sampled_from((f"{kind}.csv", f"2024-{kind}.csv", "upload.csv")))
    return Drawn(name, data, "csv", kind, recipe)


@st.composite
def _byte_damage(draw: st.DrawFn, data: bytes, recipe: list[str]) -> bytes:
    """Sometimes: truncate, flip bytes, or splice in a NUL, a BOM or a lone surrogate."""
    choice = draw(st.sampled_from(("none",) * 6 + ("truncate", "flip", "splice")))
    if choice == "none" or not data:
        return data
    at = draw(st.integers(min_value=0, max_value=len(data) - 1))
    recipe.append(f"bytes:{choice}@{at}")
    if choice == "truncate":
        return data[:at]
    if choice == "flip":
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    piece = draw(st.sampled_from((b"\x00", b"\xef\xbb\xbf", b"\xed\xa0\x80", b"\xff\xfe", b"\r")))
    return data[:at] + piece + data[at:]


# --------------------------------------------------------------------------------------
# raw garbage
# --------------------------------------------------------------------------------------


@st.composite
def garbage_payloads(draw: st.DrawFn) -> Drawn:
    """Random bytes under a contract file name (any of the three formats)."""
    fmt = draw(st.sampled_from(("csv", "xlsx", "json")))
    prefix = draw(st.sampled_from((b"", b"", b"PK\x03\x04", b"\xef\xbb\xbf", b"[", b"{")))
    data = prefix + draw(st.binary(max_size=600))
    name = draw(st.sampled_from((f"activities.{fmt}", f"data.{fmt}")))
    return Drawn(name, data, fmt, None, [f"garbage {fmt}, prefix {prefix!r}"])


# --------------------------------------------------------------------------------------
# XLSX
# --------------------------------------------------------------------------------------

_ILLEGAL_XML = {chr(c) for c in (*range(9), 11, 12, *range(14, 32))} | {"\ufffe", "\uffff"}


def _typed(value: str, draw: st.DrawFn) -> Any:
    """A cell as a spreadsheet would type it: numbers, booleans, dates, or the text."""
    if any(ch in _ILLEGAL_XML for ch in value):
        return "".join(ch for ch in value if ch not in _ILLEGAL_XML)  # openpyxl refuses them
    if not draw(st.booleans()):
        return value
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        pass
    return {"true": True, "false": False}.get(value, value)


def workbook_bytes(sheets: list[tuple[str, list[list[Any]]]]) -> bytes:
    """An XLSX file with these sheets, written by openpyxl."""
    from openpyxl import Workbook

    wb = Workbook()
    wb.remove(wb.active)
    for title, rows in sheets:
        ws = wb.create_sheet(title)
        for row in rows:
            ws.append(row)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def rewrite_members(data: bytes, change: dict[str, bytes | None]) -> bytes:
    """The zip with members replaced (bytes), removed (None) or added."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename in change:
                continue
            dst.writestr(info, src.read(info))
        for name, content in change.items():
            if content is not None:
                dst.writestr(name, content)
    return out.getvalue()


XLSX_MEMBERS = (
    "[Content_Types].xml",
    "xl/workbook.xml",
    "xl/worksheets/sheet1.xml",
    "xl/styles.xml",
    "xl/_rels/workbook.xml.rels",
    "_rels/.rels",
    "docProps/core.xml",
)


@st.composite
def xlsx_payloads(draw: st.DrawFn) -> Drawn:
    """A workbook built with openpyxl from a damaged table, sometimes corrupted after."""
    kind, header, cells, recipe = draw(table())
    title = draw(st.sampled_from((kind, kind.upper(), f"2024 {kind}", "Sheet1", "data")))
    rows = [[_typed(h, draw) for h in header]] + [[_typed(v, draw) for v in r] for r in cells]
    if draw(st.booleans()):
        rows = [["Title row of the ministry"], [], *rows]
        recipe.append("title rows")
    sheets = [(title, rows)]
    if draw(st.integers(min_value=0, max_value=3)) == 0:
        other = draw(st.sampled_from((kind, "notes", "notifications")))
        sheets.append((other if other != title else f"{other} 2", [["x"], [1]]))
        recipe.append(f"second sheet {sheets[-1][0]!r}")
    recipe.append(f"sheet {title!r}")
    data = workbook_bytes(sheets)
    choice = draw(
        st.sampled_from(("none", "none", "member", "remove", "garbage-member", "bytes", "trunc"))
    )
    if choice == "member":
        member = draw(st.sampled_from(XLSX_MEMBERS))
        content = draw(
            st.sampled_from(
                (
                    b"",
                    b"<",
                    b"not xml at all",
                    b'<?xml version="1.0"?><x/>',
                    b"\xff\xfe<\x00x\x00/\x00>\x00",
                    b'<?xml version="1.0"?><worksheet><sheetData><row r="1048577">'
                    b'<c r="XFE1048577" t="s"><v>999999</v></c></row></sheetData></worksheet>',
                )
            )
        )
        data = rewrite_members(data, {member: content})
        recipe.append(f"member {member} = {content[:30]!r}")
    elif choice == "remove":
        member = draw(st.sampled_from(XLSX_MEMBERS))
        data = rewrite_members(data, {member: None})
        recipe.append(f"member {member} removed")
    elif choice == "garbage-member":
        member = draw(st.sampled_from(("xl/sharedStrings.xml", "xl/worksheets/sheet1.xml")))
        data = rewrite_members(data, {member: draw(st.binary(max_size=300))})
        recipe.append(f"member {member} = random bytes")
    elif choice in ("bytes", "trunc"):
        at = draw(st.integers(min_value=0, max_value=len(data) - 1))
        if choice == "trunc":
            data = data[:at]
        else:
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
        recipe.append(f"{choice}@{at}")
    name = draw(st.sampled_from((f"{kind}.xlsx", "workbook.xlsx", f"{kind}.xlsm")))
    return Drawn(name, data, "xlsx", kind, recipe)


# --------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------

JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(HOSTILE_TEXT + HOSTILE_NUMBERS + HOSTILE_DATES + HOSTILE_STATES),
    st.just([1, 2]),
    st.just({"nested": {"deeper": True}}),
)


def _deep(depth: int, kind: str) -> str:
    return "[" * depth + "]" * depth if kind == "list" else '{"a":' * depth + "1" + "}" * depth


@st.composite
def json_payloads(draw: st.DrawFn) -> Drawn:
    """Contract records as JSON with wrong types, wrong shapes, deep nesting, bad text."""
    kind, header, cells, recipe = draw(table())
    records: list[Any] = [dict(zip(header, row, strict=False)) for row in cells]
    for record in records:
        if record and draw(st.integers(min_value=0, max_value=3)) == 0:
            key = draw(st.sampled_from(sorted(record)))
            record[key] = draw(JSON_VALUES)
            recipe.append(f"{key}={record[key]!r:.40}")
    if records and draw(st.integers(min_value=0, max_value=6)) == 0:
        records[0] = draw(st.sampled_from((None, 1, "text", [1, 2], [])))
        recipe.append(f"record 1 = {records[0]!r}")
    shape = draw(
        st.sampled_from(("list", "list", "tagged", "page", "scalar", "wrong-records", "deep"))
    )
    recipe.append(f"shape {shape}")
    if shape == "list":
        text = json.dumps(records, ensure_ascii=draw(st.booleans()))
    elif shape == "tagged":
        tag = draw(st.sampled_from((kind, kind, "nonsense", 5, None, ["activities"])))
        text = json.dumps({"kind": tag, "records": records})
    elif shape == "page":
        nxt = draw(st.sampled_from((None, "?page=2", 7, "file:///etc/passwd")))
        text = json.dumps({"kind": kind, "items": records, "next": nxt})
    elif shape == "scalar":
        text = json.dumps(draw(st.sampled_from(("records", 42, None, True, 1.5))))
    elif shape == "wrong-records":
        text = json.dumps({"kind": kind, "records": {"0": records}})
    else:
        depth = draw(st.sampled_from((50, 1000, 100_000)))
        text = _deep(depth, draw(st.sampled_from(("list", "object"))))
        recipe.append(f"depth {depth}")
    if draw(st.integers(min_value=0, max_value=5)) == 0:
        text = draw(
            st.sampled_from(
                (
                    text.replace("}", ', "reference": "dup", "REFERENCE": "dup"}', 1),
                    text[: len(text) // 2],
                    text.replace("null", "NaN", 1),
                    text + " trailing",
                    "\ufeff" + text,
                )
            )
        )
        recipe.append("text damage")
    encoding = draw(st.sampled_from(("utf-8",) * 6 + ("utf-16", "latin-1")))
    data = draw(_byte_damage(_encode(text, encoding), recipe))
    name = draw(st.sampled_from((f"{kind}.json", "feed.json")))
    return Drawn(name, data, "json", kind, recipe)


def any_payload() -> st.SearchStrategy[Drawn]:
    """Any of the payload strategies (the web upload fuzzer draws from this)."""
    return st.one_of(csv_payloads(), xlsx_payloads(), json_payloads(), garbage_payloads())
