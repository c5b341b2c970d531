"""Database plumbing: the declarative Base, the UTC timestamp type, engines and sessions.

Services take an explicit :class:`~sqlalchemy.orm.Session`; boundaries (a web request, a
CLI command, a job) open one with :func:`session_scope` and commit once.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How long the record of a run's end waits for a database that went away (a restart).
RECONNECT_SECONDS = 120.0
_SERVER_GOING = frozenset({"57P01", "57P02", "57P03"})

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Every model shares one MetaData with one naming convention (stable migration names)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp that is always UTC: naive values are refused, aware ones converted.

    SQLite has no time zones, so values are stored as naive UTC there and made aware
    again on the way out; PostgreSQL stores ``timestamptz``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if not isinstance(value, dt.datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"timestamp {value.isoformat()} has no time zone")
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    """The current time, aware, in UTC (the only clock the project reads)."""
    return dt.datetime.now(dt.UTC)


#: First key of cbm's two-key PostgreSQL advisory locks: "CBM", so cbm's locks never meet
#: another application's locks on a shared server.
PG_LOCK_NAMESPACE = 0x43424D


def transaction_lock(session: Session, name: str) -> None:
    """Wait for the lock called ``name``, held until ``session``'s transaction ends.

    For work that must not run twice at once against one database, from any process or
    host: PostgreSQL takes a transaction-level advisory lock (released by the commit or
    rollback, or by the server when the connection dies). SQLite needs none: call this
    first in the transaction and make its first statement a write, and SQLite's own write
    lock serialises the transactions (a second writer waits out the busy timeout).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:ns, hashtext(:name))"),
            {"ns": PG_LOCK_NAMESPACE, "name": name},
        )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the pysqlite driver, decide when transactions begin, so that
    # SAVEPOINTs and transactional DDL behave as on PostgreSQL.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


# Execution option: begin SQLite transactions with BEGIN IMMEDIATE (see _sqlite_begin).
SQLITE_IMMEDIATE = "cbm_sqlite_immediate"


def _sqlite_begin(conn: Any) -> None:
    # A deferred transaction that reads and then writes fails at once with "database is
    # locked" (no busy wait) when another connection committed in between; a writer that
    # takes the write lock at BEGIN waits its turn (busy_timeout) instead.
    immediate = conn.get_execution_options().get(SQLITE_IMMEDIATE)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine with the settings each backend needs (FKs and WAL on SQLite)."""
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    # A server that drops packets must not hang a health check or a command forever.
    kwargs.setdefault("connect_args", {"connect_timeout": 10})
    return create_engine(url, **kwargs)


def ensure_sqlite_dir(url: str) -> None:
    """Create the folder of an SQLite file so a fresh checkout can start without setup."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        from pathlib import Path

        Path(parsed.database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, future=True)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Commit on success, roll back on any error: the transaction boundary of a job or command."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def is_connection_lost(exc: BaseException) -> bool:
    """The database went away under us (a restart, a dropped connection), as opposed to a
    statement it refused: retrying the whole transaction later may succeed."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError) or exc.orig is None:
        return False
    # psycopg: no SQLSTATE (the client could not connect or lost the socket), class 08
    # (connection exception) or 57P01-03 (the server shutting down or starting). Not a
    # serialization failure or a cancelled statement; never SQLite's errors (no sqlstate).
    state = getattr(exc.orig, "sqlstate", "none")
    return state is None or str(state).startswith("08") or state in _SERVER_GOING


def connection_lost_reason(exc: BaseException) -> str:
    """``the database connection was lost: <the driver's first line>``, for a run's message."""
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    return f"the database connection was lost ({first})"


def retry_while_unreachable(
    work: Callable[[], T], what: str, *, seconds: float = RECONNECT_SECONDS, wait: float = 0.5
) -> T:
    """Run ``work`` (a whole transaction) again while the database is unreachable.

    For the writes that record how something ended (a failed run, a job's end): after a
    PostgreSQL restart the first attempts fail until the server accepts connections again,
    and giving up at once would leave the run "running", to be called "interrupted" with a
    wrong reason by the next process. Other errors, and the last attempt's, are raised.
    """
    deadline = time.monotonic() + seconds
    attempt = 0
    while True:
        try:
            return work()
        except Exception as exc:
            attempt += 1
            if not is_connection_lost(exc) or time.monotonic() + wait > deadline:
                raise
            if attempt == 1:
                log.warning("%s: the database is unreachable; retrying for %g s", what, seconds)
            time.sleep(min(wait * attempt, 5.0))
