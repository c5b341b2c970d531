"""Exports in the data-contract format: what is stored, written back as contract CSV.

The contract promises that *an export re-imports as the same data* (see
``docs/data-contract.md`` and ``docs/exports.md``), so a value is written exactly as the
importer reads it back:

* columns in the contract's order, one header row, RFC 4180 quoting, CRLF line ends,
  UTF-8 (no byte-order mark unless asked for: the importer accepts one, Excel likes one);
* timestamps in UTC as ``YYYY-MM-DDTHH:MM:SSZ`` (``.ffffff`` only when there are
  microseconds), dates ``YYYY-MM-DD``, booleans ``true``/``false``, whole numbers as plain
  digits, States as the stored alpha-3 codes;
* an unknown value (NULL) and an optional key part stored as ``''`` are empty cells;
* text verbatim. Cells that start with ``=``, ``+``, ``-`` or ``@`` are **not** given a
  protective ``'``: the importer stores cells as read and strips no such prefix, so a
  prefix would come back as part of the value and the round trip would change the data.

Rows come in natural-key order (strings in code-point order on every backend) and are read
``chunk_size`` at a time, so a table of millions of rows never sits in memory and the same
data always gives the same bytes.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from sqlalchemy import ColumnElement, String, select
from sqlalchemy.orm import Session

from cbm import contract
from cbm.contract import ContractFile, Field

#: Rows fetched from the database per round trip (and per text chunk yielded).
EXPORT_CHUNK = 5000
#: RFC 4180 line ends; the importer reads CRLF and LF alike.
LINE_END = "\r\n"
BOM = "\ufeff"

Where = ColumnElement[bool] | Iterable[ColumnElement[bool]] | None


def format_value(f: Field, value: Any) -> str:
    """One stored value in contract notation: the text the importer parses back to it."""
    if value is None:
        return ""
    t = f.type
    if t == contract.TIMESTAMP:
        return format_timestamp(value)
    if t == contract.DATE:
        if isinstance(value, dt.datetime):
            raise TypeError(f"{f.name}: expected a date, got a datetime ({value!r})")
        return value.isoformat()
    if t == contract.BOOL:
        return "true" if value else "false"
    if t in (contract.INT, contract.YEAR):
        # format(…, "d") refuses floats and strings: a stored number is an int.
        return format(value, "d")
    return str(value)


def format_timestamp(value: dt.datetime) -> str:
    """An aware timestamp in UTC with ``Z``; a naive one is a bug, not a guess."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"timestamp {value.isoformat()} has no time zone")
    utc = value.astimezone(dt.UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds" if utc.microsecond else "seconds") + "Z"


def contract_row(spec: ContractFile, values: Iterable[Any]) -> list[str]:
    """The cells of one record, given its values in the contract's column order."""
    return [format_value(f, v) for f, v in zip(spec.fields, values, strict=True)]


def export_file_name(kind: str) -> str:
    """``01-activities.csv`` …: sorted by name, a folder of exports imports in load order.

    A folder import (``cbm import FOLDER``) takes files in name order, and notifications
    refer to observation flights, which sort after them by kind alone.
    """
    spec = contract.get(kind)
    return f"{contract.LOAD_ORDER.index(spec.name) + 1:02d}-{spec.name}.csv"


def _conditions(where: Where) -> list[ColumnElement[bool]]:
    if where is None:
        return []
    if isinstance(where, ColumnElement):
        return [where]
    return list(where)


def _statement(session: Session, spec: ContractFile, where: Where) -> Any:
    """The SELECT of the contract columns, in natural-key order, with the filters."""
    table = spec.model.__table__  # type: ignore[attr-defined]
    postgres = session.get_bind().dialect.name == "postgresql"
    order: list[Any] = []
    if "in_reply_to" in table.c:
        # Messages before the replies that name them, so that a file longer than one import
        # batch re-imports (a reply must find its message stored or in its own batch).
        order.append(table.c.in_reply_to.is_not(None))
    for name in spec.key:
        column = table.c[name]
        if postgres and isinstance(column.type, String):
            # Byte (code-point) order, as SQLite's BINARY: the same bytes on both backends,
            # whatever the database's collation.
            order.append(column.collate("C"))
        else:
            order.append(column)
    order.append(table.c.id)
    stmt = select(*(table.c[name] for name in spec.columns)).order_by(*order)
    conditions = _conditions(where)
    if conditions:
        stmt = stmt.where(*conditions)
    return stmt


def iter_contract_rows(
    session: Session,
    kind: str | ContractFile,
    *,
    where: Where = None,
    chunk_size: int = EXPORT_CHUNK,
) -> Iterator[list[list[str]]]:
    """The records of one contract file as lists of cells, ``chunk_size`` rows at a time.

    For writers of other formats (XLSX, JSON) that want the same values and order.
    ``where`` takes SQLAlchemy conditions on the file's model (``Activity.state == "DEU"``).
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    spec = contract.get(kind) if isinstance(kind, str) else kind
    stmt = _statement(session, spec, where).execution_options(yield_per=chunk_size)
    result = session.execute(stmt)
    try:
        for part in result.partitions():
            yield [contract_row(spec, row) for row in part]
    finally:
        result.close()


def iter_contract_csv(
    session: Session,
    kind: str | ContractFile,
    *,
    where: Where = None,
    chunk_size: int = EXPORT_CHUNK,
    bom: bool = False,
) -> Iterator[str]:
    """One contract file as CSV text in pieces: the header first, then ``chunk_size`` rows
    per piece (for a streamed HTTP response or a file). An empty table gives the header."""
    spec = contract.get(kind) if isinstance(kind, str) else kind
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=LINE_END)
    writer.writerow(spec.columns)
    yield (BOM if bom else "") + buffer.getvalue()
    for rows in iter_contract_rows(session, spec, where=where, chunk_size=chunk_size):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(rows)
        yield buffer.getvalue()


def write_contract_csv(
    session: Session,
    kind: str | ContractFile,
    fp: IO[str] | IO[bytes],
    *,
    where: Where = None,
    chunk_size: int = EXPORT_CHUNK,
    bom: bool = False,
) -> int:
    """Write one contract file as CSV to ``fp``; return the number of records written.

    ``fp`` is a binary stream (UTF-8 is written) or a text stream opened with
    ``newline=""`` (otherwise the platform may turn the CRLF line ends into something else).
    """
    spec = contract.get(kind) if isinstance(kind, str) else kind
    binary = isinstance(fp, io.RawIOBase | io.BufferedIOBase) or "b" in getattr(fp, "mode", "")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=LINE_END)
    writer.writerow(spec.columns)
    count = 0

    def flush() -> None:
        text = buffer.getvalue()
        fp.write(text.encode("utf-8") if binary else text)  # type: ignore[arg-type]
        buffer.seek(0)
        buffer.truncate()

    if bom:
        fp.write(BOM.encode("utf-8") if binary else BOM)  # type: ignore[arg-type]
    flush()
    for rows in iter_contract_rows(session, spec, where=where, chunk_size=chunk_size):
        writer.writerows(rows)
        count += len(rows)
        flush()
    return count


def write_contract_folder(
    session: Session,
    folder: str | Path,
    kinds: Iterable[str] = contract.LOAD_ORDER,
    *,
    chunk_size: int = EXPORT_CHUNK,
) -> dict[str, int]:
    """Write each contract file into ``folder`` (named by :func:`export_file_name`), so that
    ``cbm import FOLDER`` loads them back in an order where references resolve.
    Returns the records written per kind."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for kind in kinds:
        with (path / export_file_name(kind)).open("wb") as handle:
            counts[contract.get(kind).name] = write_contract_csv(
                session, kind, handle, chunk_size=chunk_size
            )
    return counts
