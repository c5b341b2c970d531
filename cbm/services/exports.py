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
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from sqlalchemy import ColumnElement, String, func, select, type_coerce
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType

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


def _statement(session: Session, spec: ContractFile, where: Where, *, raw: bool = False) -> Any:
    """The SELECT of the contract columns, in natural-key order, with the filters.
    ``raw``: the columns without result processing (the driver's values)."""
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
    columns: list[Any] = [table.c[name] for name in spec.columns]
    if raw:
        columns = [
            # PostgreSQL dates as ISO text from the server: csv.writer then writes strings
            # (str() of a million date objects costs more than the query).
            func.to_char(c, "YYYY-MM-DD").label(c.name)
            if postgres and spec.field(c.name).type == contract.DATE
            else type_coerce(c, NullType()).label(c.name)
            for c in columns
        ]
    stmt = select(*columns).order_by(*order)
    conditions = _conditions(where)
    if conditions:
        stmt = stmt.where(*conditions)
    return stmt


def _timestamp_cell(value: Any) -> Any:
    """A stored timestamp as the driver returns it, in contract notation. SQLite gives the
    naive UTC text SQLAlchemy wrote (``2024-03-01 09:30:00.000000``), PostgreSQL an aware
    datetime; anything else goes through :func:`format_timestamp`."""
    if value is None:
        return None
    if type(value) is str:
        if len(value) == 26 and value[10] == " " and value[19] == ".":
            micro = value[20:]
            return f"{value[:10]}T{value[11:19]}{'' if micro == '000000' else '.' + micro}Z"
        if len(value) == 19 and value[10] == " ":
            return f"{value[:10]}T{value[11:]}Z"
        value = dt.datetime.fromisoformat(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
    return format_timestamp(value)


def _bool_cell(value: Any) -> Any:
    if value is None:
        return None
    return "true" if value else "false"


def _cell_converters(spec: ContractFile) -> list[tuple[int, Any]]:
    """(column index, converter) for the columns whose driver value is not already what
    ``csv.writer`` writes as contract text (text and None, ints, ISO dates are)."""
    out = []
    for i, f in enumerate(spec.fields):
        if f.type == contract.TIMESTAMP:
            out.append((i, _timestamp_cell))
        elif f.type == contract.BOOL:
            out.append((i, _bool_cell))
    return out


def iter_contract_cells(
    session: Session,
    kind: str | ContractFile,
    *,
    where: Where = None,
    chunk_size: int = EXPORT_CHUNK,
) -> Iterator[list[Sequence[Any]]]:
    """The records of one contract file, ``chunk_size`` rows at a time, as cells that
    ``csv.writer`` writes in contract notation: text, ``None`` (an empty cell), ints, and
    ISO dates (``str(date)``, or SQLite's stored text). The fast path of CSV exports.

    The columns are selected without SQLAlchemy's result processing (the driver's values
    as they come) and fetched from the DB-API cursor in chunks, with no row objects in
    between (``benchmarks/bench_export.py``: a third of the time went into them); only
    timestamps and booleans are converted. On PostgreSQL the cursor is a server-side one.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    spec = contract.get(kind) if isinstance(kind, str) else kind
    stmt = _statement(session, spec, where, raw=True)
    connection = session.connection()
    if connection.dialect.supports_server_side_cursors:
        # On the statement: Connection.execution_options() would change the connection.
        stmt = stmt.execution_options(stream_results=True)
    converters = _cell_converters(spec)
    result = connection.execute(stmt)
    try:
        # A streaming result reads one row ahead (to learn the columns): take it through
        # the result, then read the DB-API cursor itself.
        first = [tuple(row) for row in result.fetchmany(1)]
        cursor = result.cursor
        part: list[Any] = first
        if first and chunk_size > 1:
            part += cursor.fetchmany(chunk_size - 1)
        while part:
            if converters:
                rows = []
                for row in part:
                    cells = list(row)
                    for i, convert in converters:
                        cells[i] = convert(cells[i])
                    rows.append(cells)
                yield rows
            else:
                yield part
            part = cursor.fetchmany(chunk_size)
    finally:
        result.close()


def iter_contract_rows(
    session: Session,
    kind: str | ContractFile,
    *,
    where: Where = None,
    chunk_size: int = EXPORT_CHUNK,
) -> Iterator[list[list[str]]]:
    """The records of one contract file as lists of cells (text), ``chunk_size`` rows at a
    time.

    For writers of other formats (XLSX, JSON) that want the same values and order.
    ``where`` takes SQLAlchemy conditions on the file's model (``Activity.state == "DEU"``).
    """
    for part in iter_contract_cells(session, kind, where=where, chunk_size=chunk_size):
        yield [["" if v is None else str(v) for v in row] for row in part]


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
    for rows in iter_contract_cells(session, spec, where=where, chunk_size=chunk_size):
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
    for rows in iter_contract_cells(session, spec, where=where, chunk_size=chunk_size):
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
