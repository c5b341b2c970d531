"""Backups of the embedded SQLite database: `cbm backup` and `cbm restore`.

A backup is taken with SQLite's online backup API in one step, so it is a consistent
snapshot even while web and scheduler processes write (WAL mode): it copies what one read
transaction sees. The copy is switched to the rollback journal so it is one self-contained
file. A restore checks that the file is an SQLite database of cbm at a migration revision
this version knows, copies it next to the live database and renames it into place.

PostgreSQL is backed up with its own tools; :func:`pg_dump_command` and
:func:`pg_restore_command` say how, without printing the password.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shlex
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

SQLITE_MAGIC = b"SQLite format 3\x00"


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why and what to do."""


def sqlite_file(url: str) -> Path:
    """The database file of an SQLite URL (raises for other backends and memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        raise BackupError("not an SQLite file database")
    return Path(parsed.database).expanduser().resolve()


def _pg_args(url: str) -> str:
    parsed = make_url(url)
    parts = []
    if parsed.host:
        parts += ["-h", parsed.host]
    if parsed.port:
        parts += ["-p", str(parsed.port)]
    if parsed.username:
        parts += ["-U", parsed.username]
    return " ".join(shlex.quote(p) for p in parts)


def pg_dump_command(url: str, now: dt.datetime | None = None) -> str:
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    database = make_url(url).database or "cbm"
    return (
        f"pg_dump {_pg_args(url)} --format=custom --file=cbm-{stamp}.dump {shlex.quote(database)}"
    ).replace("  ", " ")


def pg_restore_command(url: str, file: str = "FILE.dump") -> str:
    database = make_url(url).database or "cbm"
    return (
        f"pg_restore {_pg_args(url)} --clean --if-exists --no-owner "
        f"--dbname={shlex.quote(database)} {shlex.quote(file)}"
    ).replace("  ", " ")


def default_backup_path(instance_dir: Path, now: dt.datetime | None = None) -> Path:
    stamp = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return instance_dir / "backups" / f"cbm-{stamp}.sqlite3"


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _copy(source: sqlite3.Connection, target: Path) -> None:
    """Copy ``source`` into ``target`` (through ``target.part``, renamed when complete)."""
    partial = target.with_name(target.name + ".part")
    _remove(partial)
    dest = sqlite3.connect(partial)
    os.chmod(partial, 0o600)  # the data is sensitive, whatever the umask
    try:
        source.backup(dest)  # pages=-1: the whole database under one read transaction
        dest.execute("PRAGMA journal_mode=DELETE")
        result = dest.execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            raise BackupError(f"the copy fails SQLite's quick_check: {result}")
    except BaseException:
        dest.close()
        _remove(partial)
        raise
    dest.close()
    os.replace(partial, target)


def backup_sqlite(url: str, target: Path) -> int:
    """Copy the live database of ``url`` to ``target``; returns the size in bytes."""
    database = sqlite_file(url)
    if not database.exists():
        raise BackupError(f"no database file at {database}; nothing to back up")
    target = target.expanduser().resolve()
    if target == database:
        raise BackupError("the backup file cannot be the database itself")
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    source = sqlite3.connect(database, timeout=30)
    try:
        _copy(source, target)
    except sqlite3.Error as exc:
        raise BackupError(f"backup failed: {exc}") from None
    finally:
        source.close()
    return target.stat().st_size


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    from cbm.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return {rev.revision for rev in script.walk_revisions()}


@dataclass(frozen=True)
class BackupInfo:
    path: Path
    revision: str
    head: str

    @property
    def is_current(self) -> bool:
        return self.revision == self.head


def inspect_backup(path: Path) -> BackupInfo:
    """Check that ``path`` is a cbm SQLite database at a known revision (read-only)."""
    path = path.expanduser().resolve()
    if not path.is_file():
        raise BackupError(f"{path} is not a file")
    with path.open("rb") as handle:
        if handle.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise BackupError(f"{path} is not an SQLite database")
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{path} is not a cbm database (no migration revision: {exc})") from None
    from cbm.migrate import head_revision

    head = head_revision()
    if len(rows) != 1:
        raise BackupError(f"{path} has no single migration revision; not a cbm backup")
    revision = rows[0][0]
    if revision not in known_revisions():
        raise BackupError(
            f"{path} is at migration revision {revision}, which this version of cbm does not "
            "know (a backup of a newer version?); restore it with that version"
        )
    return BackupInfo(path=path, revision=revision, head=head)


def restore_sqlite(url: str, backup: Path) -> BackupInfo:
    """Replace the database of ``url`` by ``backup`` (stop the other processes first).

    The backup is copied next to the database and renamed over it; the old database's
    -wal and -shm files, which would otherwise be replayed onto the restored one, are
    removed first.
    """
    info = inspect_backup(backup)
    database = sqlite_file(url)
    if info.path == database:
        raise BackupError("that file is the database itself")
    database.parent.mkdir(parents=True, exist_ok=True)
    staged = database.with_name(f".{database.name}.restore")
    source = sqlite3.connect(f"{info.path.as_uri()}?mode=ro", uri=True)
    try:
        _copy(source, staged)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy {info.path}: {exc}") from None
    finally:
        source.close()
    for suffix in ("-wal", "-shm"):
        _remove(database.with_name(database.name + suffix))
    os.replace(staged, database)
    return info
