"""Is the process of a ``running`` import run still alive? It holds a lock named after the run.

A run's heartbeat is refreshed once per batch, and a batch may take minutes, so a stale
heartbeat (15 minutes, :data:`cbm.services.imports.STALE_AFTER`) is a slow sign that the
process died. The lock is exact: the kernel (``flock`` on SQLite) or the server (a
session-level advisory lock on PostgreSQL) drops it the moment the process dies (``kill -9``,
a crash, a lost host), so the next ``cbm import``, ``cbm runs`` or Imports page marks a killed
run ``interrupted`` at once, and its rows can be re-imported without waiting.

The lock is taken before the run's row is committed, so no other process ever sees a
running run whose lock is not yet held. It is released after the run's final status is
committed. A run whose lock could not be taken (logged) is judged by its heartbeat only.
In-memory SQLite has no other processes: its runs are judged by their heartbeat.
"""

from __future__ import annotations

import contextlib
import logging

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from cbm.jobs import FileLock, LocalLock, NamedLock, engine_lock, factory_engine

log = logging.getLogger(__name__)


def lock_name(run_id: int) -> str:
    return f"import-run:{run_id}"


def _lock(engine: Engine, run_id: int) -> NamedLock | None:
    lock = engine_lock(engine, lock_name(run_id))
    return None if isinstance(lock, LocalLock) else lock


def hold(factory: sessionmaker[Session], run_id: int) -> NamedLock | None:
    """Take the lock of a run this process is about to run (None: could not, logged)."""
    try:
        lock = _lock(factory_engine(factory), run_id)
        if lock is not None and lock.acquire():
            return lock
    except Exception:
        log.warning("import run %s: could not take its liveness lock", run_id, exc_info=True)
        return None
    if lock is not None:
        log.warning("import run %s: its liveness lock is taken by another process", run_id)
    return None


def release(lock: NamedLock | None) -> None:
    """Release a run's lock once its final status is committed (and drop its lock file)."""
    if lock is None:
        return
    try:
        lock.release()
    except Exception:
        log.warning("could not release an import run's liveness lock", exc_info=True)
    _forget(lock)


def _forget(lock: NamedLock) -> None:
    # The run is over: nobody needs the file again (a checker that still opens it finds the
    # lock free and the run no longer running, which changes nothing).
    if isinstance(lock, FileLock):
        with contextlib.suppress(OSError):
            lock.path.unlink()


def is_abandoned(session: Session, run_id: int) -> bool:
    """True when nobody holds the lock of ``run_id``: the process that ran it is gone.

    Errors (a lock folder that cannot be written, a lost connection) answer False: the
    heartbeat rule still applies.
    """
    bind = session.get_bind()
    engine = bind.engine if isinstance(bind, Connection) else bind
    try:
        lock = _lock(engine, run_id)
        if lock is None or not lock.acquire():
            return False
    except Exception:
        log.warning("import run %s: could not test its liveness lock", run_id, exc_info=True)
        return False
    try:
        lock.release()
    finally:
        _forget(lock)
    return True
