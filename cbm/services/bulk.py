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
