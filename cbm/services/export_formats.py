"""XLSX and JSON writers for exports, streaming and deterministic.

**XLSX.** A minimal Office Open XML workbook written here, straight into a zip stream (no
dependency; see the README's note on ``openpyxl``): one sheet per list, named after its
kind (``activities``, ``notifications`` … as :mod:`importers.xlsx_file` expects), the
header in row 1, then the rows. Every cell is an inline string, except whole numbers of
the contract's number columns (numbers in a spreadsheet). Rows are written as they are read
and the zip is produced piece by piece, so memory does not grow with the number of rows,
and every zip entry has a fixed time (1980-01-01), so the same data gives the same bytes.

Text is kept exactly: ``&``, ``<``, ``>`` are XML-escaped, a carriage return is written
``&#13;`` (an XML reader would otherwise turn CRLF into LF), and text that looks like the
spreadsheet escape ``_xHHHH_`` gets its ``_`` escaped as ``_x005F_`` (readers decode
``_xHHHH_``). A character that XML 1.0 cannot hold at all (U+FFFE, U+FFFF, C0 controls
other than tab, LF and CR; the validator refuses the controls) cannot be written: the
export stops with :class:`XLSXCellError` naming the cell (export CSV instead).

**JSON.** The shape :mod:`importers.json_feed` reads (and the API is to serve)::

    {"kind":"activities","items":[
    {"activity_id":"ZAPAD-2021","source":"notification",...},
    ...
    ],"next":null}

Keys in the contract's column order; whole-number columns as numbers, ``true``/``false``
columns as booleans, empty cells as ``null``, everything else as the contract's text.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy.orm import Session

from cbm import contract
from cbm.services.export_lists import EXPORT_CHUNK, ExportJob, _safe_rows, text_rows

# --------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------

_NUMBER_TYPES = (contract.INT, contract.YEAR)


def _json_converters(job: ExportJob) -> list[Any]:
    def text(cell: str) -> Any:
        return cell if cell != "" else None

    def number(cell: str) -> Any:
        return int(cell) if cell != "" else None

    def boolean(cell: str) -> Any:
        return None if cell == "" else cell == "true"

    if job.spec is None:
        return [text] * len(job.columns)
    out = []
    for f in job.spec.fields:
        if f.type in _NUMBER_TYPES:
            out.append(number)
        elif f.type == contract.BOOL:
            out.append(boolean)
        else:
            out.append(text)
    return out


def iter_json(
    session: Session, job: ExportJob, *, excel_safe: bool = False, chunk_size: int = EXPORT_CHUNK
) -> Iterator[bytes]:
    """The export as one JSON document (see the module documentation), streamed."""
    convert = _json_converters(job)
    columns = job.columns
    yield ('{"kind":' + json.dumps(job.kind) + ',"items":[').encode("utf-8")
    first = True
    safe = excel_safe and not job.always_excel_safe
    for chunk in job.rows(session, chunk_size):
        rows = _safe_rows(chunk) if safe else text_rows(chunk)
        parts = []
        for row in rows:
            item = {c: f(v) for c, f, v in zip(columns, convert, row, strict=True)}
            parts.append(json.dumps(item, ensure_ascii=False, separators=(",", ":")))
        if parts:
            yield (("\n" if first else ",\n") + ",\n".join(parts)).encode("utf-8")
            first = False
    yield ('\n],"next":null}\n' if not first else '],"next":null}\n').encode("utf-8")


# --------------------------------------------------------------------------------------
# XLSX
# --------------------------------------------------------------------------------------


class XLSXCellError(ValueError):
    """A value that an XLSX file cannot hold."""


_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_XML_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
#: Characters XML 1.0 cannot represent at all.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
#: ``_xHHHH_`` is decoded by spreadsheet readers: escape its underscore.
_ESCAPE_LIKE = re.compile(r"_(?=x[0-9A-Fa-f]{4}_)")
_XML_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
#: Whole numbers that survive a spreadsheet's double (15 significant digits).
_SAFE_NUMBER = re.compile(r"-?[0-9]{1,15}")
#: Excel's limit on sheet names.
MAX_SHEET_NAME = 31


def _xml_text(text: str, where: str) -> str:
    bad = _NOT_XML.search(text)
    if bad:
        raise XLSXCellError(
            f"{where}: the character U+{ord(bad.group()):04X} cannot be written to an XLSX "
            "file (XML cannot hold it); export CSV or JSON instead"
        )
    return _ESCAPE_LIKE.sub("_x005F_", text).translate(_XML_ESCAPES)


def column_letter(index: int) -> str:
    """0 → A, 25 → Z, 26 → AA …"""
    out = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


class _Sink(io.RawIOBase):
    """A write-only, non-seekable stream whose bytes are taken out as they come (zipfile
    then writes each entry with a data descriptor instead of seeking back)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def _static_parts(names: Sequence[str]) -> list[tuple[str, str]]:
    sheets = "".join(
        f'<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        for i in range(1, len(names) + 1)
    )
    content_types = (
        f'{_XML_HEAD}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
        'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
        'officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-'
        f'officedocument.spreadsheetml.styles+xml"/>{sheets}</Types>'
    )
    root_rels = (
        f'{_XML_HEAD}<Relationships xmlns="{_PKG_REL}"><Relationship Id="rId1" '
        f'Type="{_REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
    )
    sheet_list = "".join(
        f'<sheet name="{_xml_text(name, "sheet name")}" sheetId="{i}" r:id="rId{i}"/>'
        for i, name in enumerate(names, start=1)
    )
    workbook = (
        f'{_XML_HEAD}<workbook xmlns="{_MAIN}" xmlns:r="{_REL}"><sheets>{sheet_list}</sheets>'
        "</workbook>"
    )
    rels = "".join(
        f'<Relationship Id="rId{i}" Type="{_REL}/worksheet" Target="worksheets/sheet{i}.xml"/>'
        for i in range(1, len(names) + 1)
    )
    workbook_rels = (
        f'{_XML_HEAD}<Relationships xmlns="{_PKG_REL}">{rels}<Relationship '
        f'Id="rId{len(names) + 1}" Type="{_REL}/styles" Target="styles.xml"/></Relationships>'
    )
    styles = (
        f'{_XML_HEAD}<styleSheet xmlns="{_MAIN}"><fonts count="1"><font><sz val="11"/>'
        '<name val="Calibri"/></font></fonts><fills count="2"><fill><patternFill '
        'patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill></fills>'
        '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border>'
        '</borders><cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" '
        'borderId="0"/></cellStyleXfs><cellXfs count="1"><xf numFmtId="0" fontId="0" '
        'fillId="0" borderId="0" xfId="0"/></cellXfs><cellStyles count="1"><cellStyle '
        'name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>'
    )
    return [
        ("[Content_Types].xml", content_types),
        ("_rels/.rels", root_rels),
        ("xl/workbook.xml", workbook),
        ("xl/_rels/workbook.xml.rels", workbook_rels),
        ("xl/styles.xml", styles),
    ]


def _row_xml(
    number: int, cells: Sequence[str], letters: Sequence[str], numeric: Sequence[bool], where: str
) -> str:
    out = [f'<row r="{number}">']
    for letter, cell, is_number in zip(letters, cells, numeric, strict=True):
        if cell == "":
            continue
        ref = f"{letter}{number}"
        if is_number and _SAFE_NUMBER.fullmatch(cell):
            out.append(f'<c r="{ref}"><v>{cell}</v></c>')
        else:
            text = _xml_text(cell, f"{where}, cell {ref}")
            out.append(
                f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">{text}</t></is></c>'
            )
    out.append("</row>")
    return "".join(out)


def iter_xlsx(
    session: Session,
    jobs: Iterable[ExportJob],
    *,
    excel_safe: bool = False,
    chunk_size: int = EXPORT_CHUNK,
) -> Iterator[bytes]:
    """A workbook with one sheet per job (named after its kind), streamed as bytes."""
    jobs = list(jobs)
    names = [job.kind[:MAX_SHEET_NAME] for job in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"two sheets would have the same name: {names}")
    sink = _Sink()
    archive = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED)
    try:
        for name, text in _static_parts(names):
            with archive.open(_entry(name), "w") as member:
                member.write(text.encode("utf-8"))
        yield sink.take()
        for index, job in enumerate(jobs, start=1):
            letters = [column_letter(i) for i in range(len(job.columns))]
            if job.spec is not None:
                numeric = [f.type in _NUMBER_TYPES for f in job.spec.fields]
            else:
                numeric = [False] * len(job.columns)
            where = f"sheet {names[index - 1]!r}"
            safe = excel_safe and not job.always_excel_safe
            with archive.open(
                _entry(f"xl/worksheets/sheet{index}.xml"), "w", force_zip64=True
            ) as member:
                member.write(f'{_XML_HEAD}<worksheet xmlns="{_MAIN}"><sheetData>'.encode())
                member.write(
                    _row_xml(1, job.columns, letters, [False] * len(letters), where).encode()
                )
                number = 1
                for chunk in job.rows(session, chunk_size):
                    rows = _safe_rows(chunk) if safe else text_rows(chunk)
                    parts = []
                    for row in rows:
                        number += 1
                        parts.append(_row_xml(number, row, letters, numeric, where))
                    member.write("".join(parts).encode("utf-8"))
                    piece = sink.take()
                    if piece:
                        yield piece
                member.write(b"</sheetData></worksheet>")
            yield sink.take()
    finally:
        archive.close()
    yield sink.take()
