"""Faults (issue #8, item 3): each leaves a consistent database, a failed run marked as such,
and a retry that completes the work with nothing applied twice and nothing half-written.

1. ``kill -9`` of a ``cbm import`` mid-run (SQLite and PostgreSQL), then the re-import.
2. PostgreSQL restarted under a running ``cbm scheduler`` (a private cluster of the test's).
3. A full disk under ``cbm export`` and ``cbm backup`` (SQLite), through ``RLIMIT_FSIZE``.
4. A feed that hangs, answers HTTP 500 or answers garbage, then recovers.

Everything is real: ``cbm`` subprocesses, SQLite files, PostgreSQL servers, an HTTP server on
127.0.0.1. Longer variants: ``CBM_FAULT_KILLS`` (kills per import, default 1) and
``CBM_FAULT_ROWS`` (rows of the killed file, default 30,000); see the README.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PG_URL, REQUIRE_PG
from factories import activity
from fault_support import (
    Instance,
    limit_file_size,
    migrate_template,
    pg_database,
    pg_instance,
    sqlite_instance,
    sqlite_template,
    wait_for,
)
from feed_server import csv_bytes
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from cbm.models import Activity, AuditEvent, ImportRun

KILLS = int(os.environ.get("CBM_FAULT_KILLS", "1"))
ROWS = int(os.environ.get("CBM_FAULT_ROWS", "12000"))
CHUNK = 100  # rows per batch of the killed import: many commits to land between


# --- instances --------------------------------------------------------------------------


def _pg_server() -> str:
    if not PG_URL:
        if REQUIRE_PG:
            pytest.fail("CBM_REQUIRE_POSTGRES is set but CBM_TEST_DATABASE_URL is empty")
        pytest.skip("PostgreSQL tests need CBM_TEST_DATABASE_URL")
    return PG_URL


@pytest.fixture(scope="module")
def sqlite_tpl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with sqlite_template(tmp_path_factory.mktemp("faults-sqlite-template")) as folder:
        yield folder


@pytest.fixture(scope="module")
def pg_tpl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = _pg_server()
    with pg_database(server) as url:
        folder = tmp_path_factory.mktemp("faults-pg-template")
        migrate_template({"CBM_DATABASE_URL": url, "CBM_INSTANCE_DIR": str(folder)})
        yield make_url(url).database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def instance(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Instance]:
    """A freshly migrated instance (schema and reference data) on each backend."""
    if request.param == "sqlite":
        with sqlite_instance(request.getfixturevalue("sqlite_tpl"), tmp_path / "i") as inst:
            yield inst
    else:
        template = request.getfixturevalue("pg_tpl")
        with pg_instance(_pg_server(), template, tmp_path / "i") as inst:
            yield inst


@pytest.fixture()
def sqlite_only(sqlite_tpl: Path, tmp_path: Path) -> Iterator[Instance]:
    with sqlite_instance(sqlite_tpl, tmp_path / "i") as inst:
        yield inst


# --- 1. kill -9 mid-import ----------------------------------------------------------------


def _latest_run(inst: Instance) -> tuple[int, str, int] | None:
    found = inst.rows(
        select(ImportRun.id, ImportRun.status, ImportRun.rows_read)
        .order_by(ImportRun.id.desc())
        .limit(1)
    )
    return tuple(found[0]) if found else None


def _kill_mid_run(inst: Instance, path: Path, log: Path, after_rows: int) -> int:
    """Start ``cbm import``, SIGKILL it once ``after_rows`` rows are committed; the run id."""
    before = (_latest_run(inst) or (0,))[0]
    proc = inst.popen("import", str(path), "--chunk-size", str(CHUNK), log=log)
    try:

        def progressed() -> tuple[int, str, int] | None:
            run = _latest_run(inst)
            if run is None or run[0] <= before:
                return None
            assert run[1] == "running", f"the import ended before the kill: {run}"
            return run if run[2] >= after_rows else None

        run_id = wait_for(progressed, 60, f"{after_rows} committed rows", log.read_text)[0]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return run_id


def _provenance(inst: Instance) -> dict[int, tuple[int, int, int]]:
    """Per import run: its rows_inserted, rows created by it, and its audit 'import' count."""
    runs = dict(inst.rows(select(ImportRun.id, ImportRun.rows_inserted)))
    created = dict(
        inst.rows(select(Activity.created_run_id, func.count()).group_by(Activity.created_run_id))
    )
    audited: dict[int, int] = {}
    for run_id, changes in inst.rows(
        select(AuditEvent.run_id, AuditEvent.changes).where(
            AuditEvent.action == "import", AuditEvent.entity_type == "activities"
        )
    ):
        audited[run_id] = audited.get(run_id, 0) + int(changes["inserted"])
    assert set(created) <= set(runs), f"rows name runs that do not exist: {created}"
    assert set(audited) <= set(runs), f"audit events name runs that do not exist: {audited}"
    return {r: (runs[r], created.get(r, 0), audited.get(r, 0)) for r in runs}


def test_kill_9_mid_import_then_reimport_completes_once(instance: Instance, tmp_path: Path):
    inst = instance
    path = tmp_path / "activities.csv"
    path.write_bytes(csv_bytes([activity(n) for n in range(1, ROWS + 1)]))
    rng = random.Random(8)
    killed: list[int] = []
    for i in range(KILLS):
        # The first kill right after the first batch; further ones anywhere before the end.
        after = CHUNK if i == 0 else rng.randrange(CHUNK, ROWS // 2)
        run_id = _kill_mid_run(inst, path, tmp_path / f"import-{i}.log", after)
        killed.append(run_id)
        status, read, inserted = inst.rows(
            select(ImportRun.status, ImportRun.rows_read, ImportRun.rows_inserted).where(
                ImportRun.id == run_id
            )
        )[0]
        # Left "running" by the dead process; only complete batches are stored.
        assert status == "running" and 0 < read < ROWS and read % CHUNK == 0, (status, read)
        assert inst.count(Activity, Activity.created_run_id == run_id) == inserted

        # `cbm runs` marks it at once: its liveness lock died with the process.
        listed = inst.cbm("runs")
        assert listed.returncode == 0, listed.stderr
        line = next(x for x in listed.stdout.splitlines() if x.split()[:1] == [str(run_id)])
        assert "interrupted" in line, listed.stdout
        status, message = inst.rows(
            select(ImportRun.status, ImportRun.message).where(ImportRun.id == run_id)
        )[0]
        assert status == "interrupted" and "the process was stopped or killed" in message
        assert f"the {read:,} rows of its completed batches were stored" in message

    stored = inst.count(Activity)
    again = inst.cbm("import", str(path), timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    rerun = inst.rows(select(ImportRun).order_by(ImportRun.id.desc()).limit(1))[0]
    assert (rerun.status, rerun.rows_read, rerun.rows_rejected) == ("succeeded", ROWS, 0)
    assert (rerun.rows_inserted, rerun.rows_unchanged) == (ROWS - stored, stored)
    assert inst.count(Activity) == ROWS
    assert inst.count(Activity, Activity.created_run_id.is_(None)) == 0
    # Rows, counts and audit agree for every run: nothing doubled, nothing half-written.
    provenance = _provenance(inst)
    assert all(a == b == c for a, b, c in provenance.values()), provenance
    assert sum(p[0] for p in provenance.values()) == ROWS

    # Once more: a no-op.
    audit_before = inst.count(AuditEvent)
    noop = inst.cbm("import", str(path), timeout=120)
    assert noop.returncode == 0, noop.stdout + noop.stderr
    last = inst.rows(select(ImportRun).order_by(ImportRun.id.desc()).limit(1))[0]
    assert (last.status, last.rows_inserted, last.rows_updated, last.rows_unchanged) == (
        "succeeded",
        0,
        0,
        ROWS,
    )
    assert inst.count(Activity) == ROWS
    assert inst.count(AuditEvent) == audit_before
    statuses = [s for (s,) in inst.rows(select(ImportRun.status).order_by(ImportRun.id))]
    assert statuses == ["interrupted"] * KILLS + ["succeeded", "succeeded"]
    assert inst.count(ImportRun, ImportRun.status == "running") == 0


# --- 3. a full disk under cbm export and cbm backup --------------------------------------

LIMIT = 64 * 1024  # bytes a file may reach in the export process (SQLite's -shm is 32 KiB)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def exported(sqlite_tpl: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    """An SQLite instance with 2,000 activities (an export of ~250 KB), checkpointed. The
    tests only read it (and check that it stays so)."""
    folder = tmp_path_factory.mktemp("faults-export")
    with sqlite_instance(sqlite_tpl, folder / "i") as inst:
        path = folder / "activities.csv"
        path.write_bytes(csv_bytes([activity(n) for n in range(1, 2001)]))
        done = inst.cbm("import", str(path))
        assert done.returncode == 0, done.stdout + done.stderr
        with inst.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        inst.engine.dispose()
        yield inst


def _full_disk(inst: Instance, *args: str) -> subprocess.CompletedProcess:
    return inst.cbm(*args, preexec_fn=limit_file_size(LIMIT))


@pytest.mark.parametrize(
    "args",
    [["export", "activities", "--manifest"], ["export", "activities", "--format", "xlsx"]],
    ids=["csv", "xlsx"],
)
def test_export_to_a_full_disk_fails_cleanly(exported: Instance, tmp_path: Path, args):
    inst = exported
    database = inst.dir / "cbm.sqlite3"
    before = _sha256(database)
    out = tmp_path / "out"
    out.mkdir()
    target = out / f"activities.{'xlsx' if 'xlsx' in args else 'csv'}"
    target.write_bytes(b"the previous export\n")
    done = _full_disk(inst, *args, "-o", str(target))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert f"Error: cannot write {target}" in done.stderr, done.stderr
    assert "File too large" in done.stderr, done.stderr
    # The previous file is untouched, and nothing partial is left beside it.
    assert target.read_bytes() == b"the previous export\n"
    assert sorted(p.name for p in out.iterdir()) == [target.name]
    # The database is untouched.
    assert _sha256(database) == before
    assert inst.count(Activity) == 2000
    # With room, the same command works.
    ok = inst.cbm(*args, "-o", str(target))
    assert ok.returncode == 0, ok.stderr
    assert target.stat().st_size > LIMIT


def test_export_all_to_a_full_disk_leaves_no_partial_file(exported: Instance, tmp_path: Path):
    inst = exported
    folder = tmp_path / "all"
    done = _full_disk(inst, "export", "all", "-o", str(folder))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "Error: cannot write" in done.stderr, done.stderr
    # Written under temporary names, renamed only when all are complete: nothing is left.
    assert list(folder.iterdir()) == []
    ok = inst.cbm("export", "all", "-o", str(folder))
    assert ok.returncode == 0, ok.stderr
    assert not [p for p in folder.iterdir() if p.name.endswith(".part")]
    assert any(p.stat().st_size > LIMIT for p in folder.iterdir())


def test_backup_to_a_full_disk_fails_cleanly(exported: Instance, tmp_path: Path):
    inst = exported
    database = inst.dir / "cbm.sqlite3"
    before = _sha256(database)
    target = tmp_path / "backups" / "cbm.sqlite3"
    done = _full_disk(inst, "backup", "-o", str(target))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "Error: backup failed" in done.stderr, done.stderr
    assert list(target.parent.iterdir()) == []
    assert _sha256(database) == before
    ok = inst.cbm("backup", "-o", str(target))
    assert ok.returncode == 0, ok.stderr
