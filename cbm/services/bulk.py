"""Bulk writes at driver speed.

SQLAlchemy's per-parameter processing costs more than the database itself on large batches,
so the services hand rows to the DBAPI's ``executemany`` directly, after converting each
value the way the column type would (UTC timestamps, dates, booleans, JSON) for the dialect.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import JSON, Boolean, Date, Table
from sqlalchemy.orm import Session

from cbm.db import UTCDateTime

Converter = Callable[[Any], Any]


def _sqlite_ts(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"timestamp {value.isoformat()} has no time zone")
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _pg_ts(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"timestamp {value.isoformat()} has no time zone")
    return value


def _sqlite_date(value: dt.date | None) -> str | None:
    return None if value is None else value.isoformat()


def _sqlite_bool(value: bool | None) -> int | None:
    return None if value is None else int(bool(value))


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _converter(column_type: Any, dialect: str) -> Converter | None:
    if isinstance(column_type, UTCDateTime):
        return _sqlite_ts if dialect == "sqlite" else _pg_ts
    if isinstance(column_type, JSON):
        return _json
    if dialect == "sqlite":
        if isinstance(column_type, Boolean):
            return _sqlite_bool
        if isinstance(column_type, Date):
            return _sqlite_date
    return None


def _quote(session: Session, name: str) -> str:
    return session.get_bind().dialect.identifier_preparer.quote(name)


def _rows(
    session: Session, table: Table, columns: Sequence[str], rows: Sequence[dict[str, Any]]
) -> list[tuple]:
    dialect = session.get_bind().dialect.name
    # Cached per call: batches repeat the same dates and the same write time many times.
    converters = [
        (lru_cache(maxsize=4096)(conv) if conv is not _json else conv) if conv else None
        for conv in (_converter(table.c[c].type, dialect) for c in columns)
    ]
    out = []
    for row in rows:
        out.append(
            tuple(
                conv(row[c]) if conv else row[c]
                for c, conv in zip(columns, converters, strict=True)
            )
        )
    return out


def _marker(session: Session) -> str:
    return "?" if session.get_bind().dialect.paramstyle == "qmark" else "%s"


def bulk_insert(
    session: Session, table: Table, rows: Sequence[dict[str, Any]], columns: Sequence[str]
) -> None:
    """INSERT many rows in one ``executemany``; ``columns`` must be present in every row."""
    if not rows:
        return
    q = _marker(session)
    # Identifiers come from our table metadata (quoted), values go as parameters.
    names = ", ".join(_quote(session, c) for c in columns)
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # COPY is PostgreSQL's bulk path: one stream instead of a statement per row.
        raw = connection.connection.dbapi_connection
        with (
            raw.cursor() as cursor,
            cursor.copy(f"COPY {_quote(session, table.name)} ({names}) FROM STDIN") as copy,
        ):
            for row in _rows(session, table, columns, rows):
                copy.write_row(row)
        return
    markers = ", ".join([q] * len(columns))
    sql = f"INSERT INTO {_quote(session, table.name)} ({names}) VALUES ({markers})"  # noqa: S608
    connection.exec_driver_sql(sql, _rows(session, table, columns, rows))


def bulk_update_by_id(
    session: Session, table: Table, rows: Sequence[dict[str, Any]], columns: Sequence[str]
) -> None:
    """UPDATE many rows by primary key ``id`` in one ``executemany``."""
    if not rows:
        return
    q = _marker(session)
    assignments = ", ".join(f"{_quote(session, c)} = {q}" for c in columns)
    sql = f"UPDATE {_quote(session, table.name)} SET {assignments} WHERE id = {q}"  # noqa: S608
    params = [
        (*values, row["id"])
        for values, row in zip(_rows(session, table, columns, rows), rows, strict=True)
    ]
    session.connection().exec_driver_sql(sql, params)


# --------------------------------------------------------------------------------------
# Column-wise writes through a staging table
# --------------------------------------------------------------------------------------


def storage_values(session: Session, table: Table, column: str, values: np.ndarray) -> list:
    """``values`` (an object array of typed Python values) as the driver takes them for
    ``table.column``: converted once per distinct object, then spread with array indexing.

    Distinct by identity, not by value: validated columns repeat the very same date and
    timestamp objects (parsed once per distinct text), and hashing identities is cheap
    where hashing aware datetimes is not. Equal values held by different objects are
    merely converted more than once.
    """
    conv = _converter(table.c[column].type, session.get_bind().dialect.name)
    if conv is None:
        return values.tolist()
    if conv is _json:
        return [conv(v) for v in values]
    n = len(values)
    codes, distinct = pd.factorize(np.fromiter(map(id, values), dtype=np.int64, count=n))
    first = np.empty(len(distinct), dtype=np.int64)
    first[codes] = np.arange(n)  # a position of each distinct object (any one will do)
    converted = np.empty(len(distinct), dtype=object)
    converted[:] = [conv(v) for v in values[first].tolist()]
    return converted[codes].tolist()


def create_stage(session: Session, table: Table, columns: Sequence[str]) -> str:
    """A temporary table shaped like ``columns`` of ``table``, plus ``_n`` (the row's position
    in the batch); emptied and made afresh on each call, dropped by :func:`drop_stage`."""
    connection = session.connection()
    name = f"cbm_stage_{table.name}"
    names = ", ".join(_quote(session, c) for c in columns)
    source = _quote(session, table.name)
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS pg_temp.{name}")
        connection.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {name} ON COMMIT DROP AS "  # noqa: S608
            f"SELECT 0::integer AS _n, {names} FROM {source} WITH NO DATA"
        )
    else:
        _sqlite_cache(connection)
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{name}")
        connection.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {name} AS "  # noqa: S608
            f"SELECT 0 AS _n, {names} FROM {source} WHERE 0"
        )
    return name


#: Page cache of an SQLite connection that bulk-writes (KiB; SQLite's default is 2 MiB). A
#: batch touches every index of its table; with the default cache each index page is read
#: again for nearly every row, which makes an indexed insert several times slower.
SQLITE_CACHE_KIB = 64 * 1024


def _sqlite_cache(connection: Any) -> None:
    size = connection.exec_driver_sql("PRAGMA cache_size").scalar()
    if size is not None and (size if size < 0 else size * 4) > -SQLITE_CACHE_KIB:
        connection.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")


def drop_stage(session: Session, name: str) -> None:
    schema = "pg_temp" if session.get_bind().dialect.name == "postgresql" else "temp"
    session.connection().exec_driver_sql(f"DROP TABLE IF EXISTS {schema}.{name}")


def fill_stage(session: Session, name: str, columns: Sequence[str], values: Sequence[list]) -> None:
    """Load the stage: ``values`` holds one list per column (driver values), rows numbered
    from 0 in ``_n``. PostgreSQL: one binary ``COPY``; SQLite: one ``executemany``."""
    n = len(values[0]) if values else 0
    if not n:
        return
    connection = session.connection()
    names = ", ".join(["_n", *(_quote(session, c) for c in columns)])
    rows = zip(range(n), *values, strict=True)
    if connection.dialect.name == "postgresql":
        raw = connection.connection.dbapi_connection
        with raw.cursor() as cursor:
            types = _pg_types(cursor, name)
            with cursor.copy(f"COPY {name} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(types)
                for row in rows:
                    copy.write_row(row)
        return
    markers = ", ".join([_marker(session)] * (len(columns) + 1))
    # The driver's own cursor takes the rows as a stream: no list of tuples is built.
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        cursor.executemany(f"INSERT INTO temp.{name} ({names}) VALUES ({markers})", rows)  # noqa: S608
    finally:
        cursor.close()


def _pg_types(cursor: Any, name: str) -> list[str]:
    """The stage's column types by name, in column order (what binary COPY needs)."""
    cursor.execute(
        "SELECT t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum",
        (f"pg_temp.{name}",),
    )
    return [r[0] for r in cursor.fetchall()]
