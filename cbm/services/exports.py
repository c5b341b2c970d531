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

On PostgreSQL the CSV of a contract file is written by the server (:func:`iter_contract_csv_text`:
``COPY (SELECT …) TO STDOUT (FORMAT csv)`` with every column already in contract notation),
streamed to the client while it sends the previous rows on, instead of a Python row per record
through ``csv.writer``; ``tests/test_export_backends.py`` holds it to the same bytes as SQLite's.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Date,
    Integer,
    String,
    case,
    func,
    literal,
    literal_column,
    select,
    type_coerce,
)
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType

from cbm import contract
from cbm.contract import ContractFile, Field
from cbm.db import UTCDateTime

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
    ISO dates (``str(date)``, or SQLite's stored text). The path of CSV exports on SQLite
    (on PostgreSQL the server writes them: :func:`iter_contract_csv_text`) and of the
    XLSX and JSON writers.

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


# -- PostgreSQL: the server writes the CSV -------------------------------------------------

#: ``to_char`` patterns of a timestamp in UTC: seconds, or microseconds when there are any
#: (as :func:`format_timestamp`).
_TS_SECONDS = 'YYYY-MM-DD"T"HH24:MI:SS"Z"'
_TS_MICRO = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'


def _copy_cell(f: Field, column: Any, iso_dates: bool) -> Any:
    """The SQL of one column as its contract text on PostgreSQL (None: no such rule, the
    file is written in Python). Empty text becomes NULL: COPY quotes ``''`` (to tell it
    from NULL), ``csv.writer`` writes both as an empty cell."""
    kind, sql_type = f.type, column.type
    if kind == contract.TIMESTAMP:
        if not isinstance(sql_type, UTCDateTime):
            return None
        utc = column.op("AT TIME ZONE")(literal_column("'UTC'"))
        whole = func.date_trunc("second", column) == column
        return func.to_char(utc, case((whole, literal(_TS_SECONDS)), else_=literal(_TS_MICRO)))
    if kind == contract.DATE:
        if not isinstance(sql_type, Date):
            return None
        # date_out in an ISO DateStyle is YYYY-MM-DD; to_char (3x slower) otherwise.
        return column if iso_dates else func.to_char(column, "YYYY-MM-DD")
    if kind == contract.BOOL:
        if not isinstance(sql_type, Boolean):
            return None
        return case((column.is_(True), literal("true")), (column.is_(False), literal("false")))
    if kind in (contract.INT, contract.YEAR):
        return column if isinstance(sql_type, Integer) else None
    if isinstance(sql_type, String) and not getattr(sql_type, "native_enum", False):
        return func.nullif(column, "")
    return None


def _copy_statement(
    session: Session, connection: Any, spec: ContractFile, where: Where
) -> tuple[str, dict] | None:
    """``COPY (SELECT …) TO STDOUT (FORMAT csv)`` of a contract file and its parameters (merged
    client-side by psycopg), or None where a column has no SQL rule."""
    driver = connection.connection.driver_connection
    iso_dates = (driver.info.parameter_status("DateStyle") or "").startswith("ISO")
    table = spec.model.__table__  # type: ignore[attr-defined]
    cells = [_copy_cell(f, table.c[f.name], iso_dates) for f in spec.fields]
    if any(c is None for c in cells):
        return None
    stmt = _statement(session, spec, where).with_only_columns(*cells, maintain_column_froms=True)
    dialect = connection.dialect
    compiled = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    for name, bind in compiled.binds.items():
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None and name in params:
            params[name] = process(params[name])
    return f"COPY ({compiled.string}) TO STDOUT (FORMAT csv)", params


def _crlf(data: bytearray) -> bytearray:
    """COPY ends rows with LF; the contract (and csv.writer) with CRLF. ``data`` is whole
    rows, so a quote char opens or closes a quoted cell and the LFs outside quotes (even
    pieces of a split at ``"``) are the line ends; a LF inside a cell stays as it is."""
    if b'"' not in data:
        return data.replace(b"\n", b"\r\n")
    pieces = data.split(b'"')
    pieces[::2] = [p.replace(b"\n", b"\r\n") for p in pieces[::2]]
    return b'"'.join(pieces)


def _iter_copy(
    connection: Any, sql: str, params: dict, chunk_size: int
) -> Iterator[tuple[str, int]]:
    driver = connection.connection.driver_connection
    encoding = driver.info.encoding
    with driver.cursor() as cursor, cursor.copy(sql, params or None) as copy:
        # One COPY message is one row, a buffer that is copied into ``part`` and let go at
        # once (kept, the chunk's buffers made the garbage collector scan the whole heap
        # again and again: half the time). An early close cancels the COPY (psycopg), which
        # aborts the transaction: the export's own session is then rolled back.
        part = bytearray()
        rows = 0
        for data in copy:
            part += data
            rows += 1
            if rows >= chunk_size:
                yield _crlf(part).decode(encoding), rows
                part = bytearray()
                rows = 0
        if rows:
            yield _crlf(part).decode(encoding), rows


def iter_contract_csv_text(
    session: Session,
    kind: str | ContractFile,
    *,
    where: Where = None,
    chunk_size: int = EXPORT_CHUNK,
) -> Iterator[str]:
    """The records of one contract file as CSV text (no header), about ``chunk_size`` rows
    per piece: the body of :func:`iter_contract_csv` and of the contract exports of
    :mod:`cbm.services.export_lists`.

    PostgreSQL: the server formats it (``COPY … (FORMAT csv)``, CRLF line ends put in here),
    the natural-key order and the contract notation in SQL (:func:`_copy_cell`), streamed
    with no row objects (``benchmarks/bench_export.py``: the million Python rows and
    ``csv.writer`` were most of the export's time). SQLite: ``csv.writer`` over
    :func:`iter_contract_cells`. Same data, same bytes (``tests/test_export_backends.py``).
    """
    for text, _ in _csv_body(session, kind, where, chunk_size):
        yield text


def _csv_body(
    session: Session, kind: str | ContractFile, where: Where, chunk_size: int
) -> Iterator[tuple[str, int]]:
    """(CSV text, rows in it) pieces of :func:`iter_contract_csv_text`."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    spec = contract.get(kind) if isinstance(kind, str) else kind
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        copy = _copy_statement(session, connection, spec, where)
        if copy is not None:
            yield from _iter_copy(connection, *copy, chunk_size)
            return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=LINE_END)
    for rows in iter_contract_cells(session, spec, where=where, chunk_size=chunk_size):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(rows)
        yield buffer.getvalue(), len(rows)


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
    yield (BOM if bom else "") + _header(spec)
    yield from iter_contract_csv_text(session, spec, where=where, chunk_size=chunk_size)


def _header(spec: ContractFile) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=LINE_END).writerow(spec.columns)
    return buffer.getvalue()


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

    def put(text: str) -> None:
        fp.write(text.encode("utf-8") if binary else text)  # type: ignore[arg-type]

    put((BOM if bom else "") + _header(spec))
    count = 0
    for text, rows in _csv_body(session, spec, where, chunk_size):
        put(text)
        count += rows
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
