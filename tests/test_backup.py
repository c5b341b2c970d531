"""`cbm backup` and `cbm restore` for the SQLite default, and their refusals."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from cbm.backup import BackupError, backup_sqlite, inspect_backup, restore_sqlite
from cbm.db import make_engine
from cbm.migrate import head_revision, upgrade
from cbm.models import Source

CBM = [sys.executable, "-m", "cbm.cli"]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CBM_")}
    full.update(env)
    return subprocess.run(
        [*CBM, *args], env=full, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture()
def instance(tmp_path: Path) -> Path:
    folder = tmp_path / "instance"
    folder.mkdir(mode=0o700)
    engine = make_engine(f"sqlite:///{folder / 'cbm.sqlite3'}")
    upgrade(engine)  # schema only: the reference data is not needed here
    engine.dispose()
    return folder


def _names(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT name FROM sources ORDER BY name")]
    finally:
        conn.close()


def _add_sources(url: str, names: list[str]) -> None:
    engine = make_engine(url)
    with Session(engine) as session:
        session.add_all(Source(name=n, location=f"/srv/{n}") for n in names)
        session.commit()
    engine.dispose()


def test_backup_of_a_live_database_restores_the_same_rows(instance: Path) -> None:
    db = instance / "cbm.sqlite3"
    url = f"sqlite:///{db}"
    env = {"CBM_INSTANCE_DIR": str(instance)}
    _add_sources(url, [f"feed {i:03}" for i in range(50)])

    engine = make_engine(url)  # WAL mode, as the app runs it
    with engine.connect() as reader, engine.connect() as writer:
        reading = reader.begin()  # an open read transaction during the backup
        assert reader.execute(select(func.count()).select_from(Source)).scalar() == 50
        # A write committed in the WAL, not yet checkpointed into the main file.
        with writer.begin():
            writer.execute(insert(Source).values(name="late", location="/srv/late"))
        out = run(["backup"], env)
        reading.rollback()
    engine.dispose()
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line.startswith("Backed up sqlite:///") and line.endswith(("bytes).", "KiB).", "MiB)."))
    backups = list((instance / "backups").glob("cbm-*.sqlite3"))
    assert len(backups) == 1
    assert str(backups[0]) in line
    assert backups[0].name.endswith("Z.sqlite3") and "T" in backups[0].name
    assert (backups[0].stat().st_mode & 0o077) == 0
    expected = _names(db)
    assert len(expected) == 51 and "late" in expected
    assert _names(backups[0]) == expected  # a self-contained file: no -wal needed

    # Change the database, then restore the backup over it.
    _add_sources(url, ["after backup"])
    refused = run(["restore", str(backups[0])], env)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert "after backup" in _names(db)
    done = run(["restore", str(backups[0]), "--yes"], env)
    assert done.returncode == 0, done.stderr
    assert "Restored" in done.stdout and f"revision {head_revision()}" in done.stdout
    assert _names(db) == expected
    kept = list((instance / "backups").glob("cbm-pre-restore-*.sqlite3"))
    assert len(kept) == 1 and "after backup" in _names(kept[0])
    assert run(["db", "current"], env).returncode == 0


def test_backup_to_a_named_file(instance: Path, tmp_path: Path) -> None:
    target = tmp_path / "out" / "copy.sqlite3"
    out = run(["backup", "-o", str(target)], {"CBM_INSTANCE_DIR": str(instance)})
    assert out.returncode == 0, out.stderr
    assert str(target) in out.stdout
    assert inspect_backup(target).revision == head_revision()


def test_restore_refuses_what_is_not_a_cbm_backup(instance: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{instance / 'cbm.sqlite3'}"
    env = {"CBM_INSTANCE_DIR": str(instance)}
    text_file = tmp_path / "notes.sqlite3"
    text_file.write_text("not a database\n" * 10)
    out = run(["restore", str(text_file), "--yes"], env)
    assert out.returncode == 1 and "is not an SQLite database" in out.stderr

    other = tmp_path / "other.sqlite3"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(BackupError, match="not a cbm database"):
        restore_sqlite(url, other)

    future = tmp_path / "future.sqlite3"
    backup_sqlite(url, future)
    conn = sqlite3.connect(future)
    conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    conn.commit()
    conn.close()
    out = run(["restore", str(future), "--yes"], env)
    assert out.returncode == 1
    assert "9999_from_the_future" in out.stderr and "does not know" in out.stderr
    assert "Traceback" not in out.stderr


def test_postgresql_is_refused_with_the_pg_dump_command(tmp_path: Path) -> None:
    env = {
        "CBM_INSTANCE_DIR": str(tmp_path),
        "CBM_DATABASE_URL": "postgresql+psycopg://cbm:s3cret@db.example:6543/cbm_prod",
    }
    out = run(["backup"], env)
    assert out.returncode == 1
    assert "pg_dump -h db.example -p 6543 -U cbm --format=custom" in out.stderr
    assert "cbm_prod" in out.stderr and "s3cret" not in out.stderr
    dump = tmp_path / "x.dump"
    dump.write_bytes(b"PGDMP")
    out = run(["restore", str(dump), "--yes"], env)
    assert out.returncode == 1
    assert "pg_restore -h db.example -p 6543 -U cbm" in out.stderr
    assert "--dbname=cbm_prod" in out.stderr and "s3cret" not in out.stderr
