"""Faults (issue #8, item 3): each leaves a consistent database, a failed run marked as such,
and a retry that completes the work with nothing applied twice and nothing half-written.

1. ``kill -9`` of a ``cbm import`` mid-run (SQLite and PostgreSQL), then the re-import.
2. PostgreSQL restarted under a running ``cbm scheduler`` (a private cluster of the test's).
3. A full disk under ``cbm export`` and ``cbm backup`` (SQLite), through ``RLIMIT_FSIZE``.
4. A feed that hangs, answers HTTP 500 or answers garbage, then recovers.

Everything is real: ``cbm`` subprocesses, SQLite files, PostgreSQL servers, an HTTP server on
127.0.0.1. Longer variants: ``CBM_FAULT_KILLS`` (kills per import, default 1),
``CBM_FAULT_ROWS`` (rows of the killed file, default 12,000), ``CBM_FAULT_PG_ROWS`` (rows of
the feed cut by the restart, default 2,400) and ``CBM_FAULT_PG_DOWN`` (seconds the server
stays down, default 2); see the README, "Fault tests".
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PG_URL, REQUIRE_PG
from factories import activity
from fault_support import (
    FaultyFeed,
    Instance,
    copy_pg_database,
    limit_file_size,
    migrate_template,
    pg_bin,
    pg_cluster,
    pg_database,
    pg_instance,
    sqlite_instance,
    sqlite_template,
    wait_for,
)
from feed_server import Feed, csv_bytes
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from cbm.db import make_engine
from cbm.models import Activity, AuditEvent, ImportRun, JobRun, SchedulerHeartbeat, Source

KILLS = int(os.environ.get("CBM_FAULT_KILLS", "1"))
ROWS = int(os.environ.get("CBM_FAULT_ROWS", "12000"))
CHUNK = 100  # rows per batch of the killed import: many commits to land between
PG_ROWS = int(os.environ.get("CBM_FAULT_PG_ROWS", "2400"))
PG_BATCH = 100  # rows per transaction of the import cut by the PostgreSQL restart
CUT_AFTER = 2 * PG_BATCH  # rows stored when the server is stopped: most of the feed is left
PG_DOWN = float(os.environ.get("CBM_FAULT_PG_DOWN", "2"))  # seconds the server stays down


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


# --- 2. PostgreSQL restarted under a running cbm scheduler --------------------------------


def _private_cluster_bin() -> Path:
    found = pg_bin()
    as_root = os.geteuid() == 0
    if found is None or (as_root and shutil.which("runuser") is None):
        reason = (
            "the PostgreSQL restart test needs initdb (/usr/lib/postgresql/*/bin), and "
            "runuser when run as root"
        )
        if REQUIRE_PG:
            pytest.fail(f"CBM_REQUIRE_POSTGRES is set but {reason} are missing")
        pytest.skip(reason)
    return found


def _job_runs(inst: Instance) -> list[tuple[str, str]]:
    return [
        (status, message or "")
        for status, message in inst.rows(
            select(JobRun.status, JobRun.message)
            .where(JobRun.job_id == "import:feed")
            .order_by(JobRun.id)
        )
    ]


def _quiet(n: int) -> dict[str, str]:
    """An activity below every threshold: the check after each import has nothing to find,
    so it takes no time from the ticks the test waits for."""
    small = {"troops": "100", "battle_tanks": "0", "acv": "0", "artillery": "0"}
    return activity(n) | small | {"airborne_troops": "0"}


@pytest.mark.postgres
def test_postgresql_restart_during_a_scheduled_import(
    request: pytest.FixtureRequest, tmp_path: Path
):
    """The server stops for a couple of seconds (``pg_ctl stop -m fast``, then start) while
    a scheduled import writes its batches. What a production user expects: the scheduler
    survives and goes on with its next tick; the cut run is marked failed with the reason
    once the server is back (not left "running"); only complete batches are stored; the
    next tick imports the feed again with counts that add up."""
    bin_dir = _private_cluster_bin()
    with pg_cluster(bin_dir) as cluster:
        admin = make_engine(cluster.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE cbm"))
        admin.dispose()
        url = make_url(cluster.url).set(database="cbm").render_as_string(hide_password=False)
        folder = tmp_path / "i"
        env = {
            "CBM_DATABASE_URL": url,
            "CBM_INSTANCE_DIR": str(folder),
            "CBM_IMPORT_BATCH_ROWS": str(PG_BATCH),
        }
        if PG_URL:  # the migrated template of the other tests, copied: faster
            template = make_url(PG_URL).set(database=request.getfixturevalue("pg_tpl"))
            copy_pg_database(bin_dir, template.render_as_string(hide_password=False), url)
            folder.mkdir()
        else:
            migrate_template(env)
        inst = Instance(url, env, folder)
        log = tmp_path / "scheduler.log"
        body = csv_bytes([_quiet(n) for n in range(1, PG_ROWS + 1)])
        with Feed(body) as feed:
            added = inst.cbm(
                "source", "add", "feed", feed.url, "--kind", "activities", "--schedule", "every 2s"
            )
            assert added.returncode == 0, added.stdout + added.stderr
            scheduler = inst.popen("scheduler", log=log)
            try:

                def logs() -> str:
                    return f"{log.read_text()}\n--- server\n{cluster.log()}"

                def cut_point() -> int | None:
                    found = inst.rows(
                        select(ImportRun.id).where(
                            ImportRun.status == "running", ImportRun.rows_read >= CUT_AFTER
                        )
                    )
                    return found[0][0] if found else None

                cut = wait_for(cut_point, 60, f"{CUT_AFTER} rows of the first import", logs)
                inst.engine.dispose()  # our own connections die with the server too
                cluster.stop("fast")
                time.sleep(PG_DOWN)
                cluster.start()

                def done() -> bool:
                    return bool(
                        inst.rows(
                            select(ImportRun.id).where(
                                ImportRun.id > cut, ImportRun.status == "succeeded"
                            )
                        )
                    )

                wait_for(
                    done, 60 + PG_DOWN + PG_ROWS / 100, "a complete import after the restart", logs
                )
                # A tick later (the feed says 304 now): the scheduler still works.
                seen = len(feed.requests)
                wait_for(lambda: len(feed.requests) > seen, 30, "one more tick", logs)
                assert scheduler.poll() is None, logs()
            finally:
                scheduler.send_signal(signal.SIGTERM)
                try:
                    scheduler.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    scheduler.kill()
                    scheduler.wait()
            assert scheduler.returncode == 0, logs()

        runs = inst.rows(select(ImportRun).order_by(ImportRun.id))
        jobs = _job_runs(inst)
        source = inst.rows(select(Source))[0]
        beats = inst.count(SchedulerHeartbeat)
        inst.engine.dispose()

    first, *rest = runs
    # The cut run: failed with the reason, its complete batches stored, nothing more.
    assert first.id == cut and first.status == "failed", (first.status, first.message)
    assert first.message.startswith("the database connection was lost ("), first.message
    assert f"the {first.rows_read:,} rows of the batches before it were stored" in first.message
    assert first.rows_read % PG_BATCH == 0 and CUT_AFTER <= first.rows_read < PG_ROWS
    assert first.rows_inserted == first.rows_read
    # The runs after it: maybe one more cut (a tick while the server came back), then one
    # that completes the feed: what was stored comes back unchanged, the rest is inserted.
    last = rest[-1]
    assert (last.status, last.rows_read, last.rows_rejected) == ("succeeded", PG_ROWS, 0)
    assert all(r.status == "failed" for r in rest[:-1]), [(r.status, r.message) for r in rest]
    assert sum(r.rows_inserted for r in runs) == PG_ROWS
    assert last.rows_unchanged == sum(r.rows_inserted for r in runs[:-1])
    # The job runs: the cut one failed with the run's message, none left running, and the
    # next ticks succeeded (the import, then "unchanged").
    statuses = [status for status, _ in jobs]
    assert "running" not in statuses, jobs
    failed = [message for status, message in jobs if status == "failed"]
    assert failed and "the database connection was lost" in failed[0], jobs
    assert statuses[-2:] == ["succeeded", "succeeded"], jobs
    assert source.last_error is None and source.last_success_at is not None
    assert beats == 1


def test_only_a_lost_connection_is_waited_out():
    """The end of a run is written again while the server is away (a restart), never for a
    statement the server refused: that one is raised at once."""
    import sqlite3

    import psycopg
    from sqlalchemy.exc import OperationalError

    from cbm.db import connection_lost_reason, retry_while_unreachable

    gone = OperationalError(
        "UPDATE", {}, psycopg.errors.AdminShutdown("terminating connection\nDETAIL: …")
    )
    calls: list[int] = []

    def restarting() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise gone
        return "recorded"

    assert retry_while_unreachable(restarting, "test", wait=0.01) == "recorded"
    assert len(calls) == 3
    assert connection_lost_reason(gone) == (
        "the database connection was lost (terminating connection)"
    )
    for refused in (
        OperationalError("UPDATE", {}, psycopg.errors.SerializationFailure("serialize")),
        OperationalError("UPDATE", {}, sqlite3.OperationalError("locked")),
    ):
        calls.clear()

        def fails(error: Exception = refused) -> None:
            calls.append(1)
            raise error

        with pytest.raises(OperationalError):
            retry_while_unreachable(fails, "test", wait=0.01)
        assert len(calls) == 1

    def never_back() -> None:
        raise gone

    with pytest.raises(OperationalError):  # and not for ever
        retry_while_unreachable(never_back, "test", seconds=0.1, wait=0.01)


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


# --- 4. a feed that hangs, answers HTTP 500 or answers garbage ---------------------------

#: Fast failures: 1 s of silence is a timeout, one retry (so the retry is exercised too).
FAST_FETCH = {"CBM_FETCH_TIMEOUT": "1", "CBM_FETCH_RETRIES": "1"}
GOOD = csv_bytes([_quiet(n) for n in range(1, 41)])
FIXED = csv_bytes([_quiet(n) | {"name": f"Exercise {n} (revised)"} for n in range(1, 51)])
RAGGED = GOOD + b"A-99,notification,DEU" + b",x" * 17 + b"\n"  # 20 cells on row 42
#: (name, feed mode, body, content type, what the failure says)
FAULTS = [
    ("hang", "hang", GOOD, "text/csv", "no data within 1 s (after 2 attempts)"),
    ("http-500", "500", GOOD, "text/csv", "HTTP 500 Internal Server Error (after 2 attempts)"),
    ("binary", "ok", b"\x89PNG\r\n\x1a\n\x00\xff" * 64, "text/csv", "is not UTF-8 text"),
    (
        "html-page",
        "ok",
        b"<html><body>Service unavailable</body></html>\n",
        "text/html",
        "names none of the columns of activities",
    ),
    ("ragged-row", "ok", RAGGED, "text/csv", "row 42 has 20 cells but the header names 16"),
]


def _stored(inst: Instance) -> tuple[list[tuple], int]:
    """What a failed pass must not change: the rows and the audit trail."""
    rows = inst.rows(select(Activity.activity_id, Activity.name).order_by(Activity.activity_id))
    return rows, inst.count(AuditEvent)


def _source(inst: Instance) -> Any:
    """The source's row (its columns by name)."""
    return inst.rows(select(Source))[0]


def _add_feed(inst: Instance, feed: FaultyFeed, schedule: str = "") -> None:
    """Through the service ``cbm source add`` calls (one process start less)."""
    from cbm.db import make_session_factory, session_scope
    from cbm.services.sources import add_source

    with session_scope(make_session_factory(inst.engine)) as session:
        add_source(session, "feed", feed.url, kind="activities", schedule=schedule)


def test_a_failing_feed_through_cbm_source_run(sqlite_only: Instance):
    """Each fault, one after the other, on a source that imported once: the pass fails with
    its reason, the source's last error says it and its last success stays, nothing stored
    changes; once the feed is fixed, the next pass imports it."""
    inst = sqlite_only
    with FaultyFeed(GOOD) as feed:
        _add_feed(inst, feed)
        first = inst.cbm("source", "run", "feed")
        assert first.returncode == 0, first.stdout + first.stderr
        succeeded_at = _source(inst).last_success_at
        before = _stored(inst)
        assert len(before[0]) == 40
        for name, mode, body, content_type, reason in FAULTS[:2] + FAULTS[3:4]:
            # (each costs a process start; the scheduler test meets every fault)
            feed.mode, feed.body, feed.content_type = mode, body, content_type
            started = time.monotonic()
            done = inst.cbm("source", "run", "feed", extra=FAST_FETCH)
            took = time.monotonic() - started
            assert done.returncode == 1, (name, done.stdout, done.stderr)
            assert "Traceback" not in done.stderr, (name, done.stderr)
            assert done.stdout.startswith("import:feed FAILED: ") and reason in done.stdout, (
                name,
                done.stdout,
            )
            status, message = _job_runs(inst)[-1]
            assert status == "failed" and reason in message, (name, status, message)
            source = _source(inst)
            assert reason in source.last_error, (name, source.last_error)
            assert source.last_success_at == succeeded_at, name
            assert _stored(inst) == before, name
            run = inst.rows(select(ImportRun).order_by(ImportRun.id.desc()).limit(1))[0]
            if mode == "ok":  # read, then refused: a failed import run that stored nothing
                assert (run.status, run.rows_inserted, run.rows_updated) == ("failed", 0, 0)
                assert reason in run.message and "nothing was stored" in run.message, name
            else:  # never read: no import run
                assert run.status == "succeeded", (name, run.status)
            if mode == "hang":  # two attempts of 1 s and a wait of 1 s: the setting holds
                assert 3 <= took < 20, took
        # Fixed: the next pass imports it, and the source is healthy again.
        feed.mode, feed.body, feed.content_type = "ok", FIXED, "text/csv"
        fixed = inst.cbm("source", "run", "feed", extra=FAST_FETCH)
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        assert "50 read, 10 inserted, 40 updated, 0 unchanged, 0 rejected" in fixed.stdout
    source = _source(inst)
    assert source.last_error is None and source.last_success_at > succeeded_at
    assert inst.count(Activity) == 50
    assert inst.count(Activity, Activity.name.like("%(revised)")) == 50
    assert inst.count(ImportRun, ImportRun.status == "running") == 0


def test_a_failing_feed_under_the_scheduler(sqlite_only: Instance, tmp_path: Path):
    """Every fault under a running ``cbm scheduler`` (a tick every 2 s): every tick on the
    broken feed is a failed job run with the reason (the same garbage on the next tick too:
    it is not "unchanged"), the scheduler goes on, and the tick after the fix imports the
    feed."""
    inst = sqlite_only
    inst.env.update(FAST_FETCH)
    log = tmp_path / "scheduler.log"
    with FaultyFeed(GOOD) as feed:
        _add_feed(inst, feed, "every 2s")
        scheduler = inst.popen("scheduler", log=log)
        try:

            def succeeded(count: int) -> bool:
                return [s for s, _ in _job_runs(inst)].count("succeeded") >= count

            wait_for(lambda: succeeded(1), 60, "the first import", log.read_text)
            succeeded_at = _source(inst).last_success_at
            before = _stored(inst)
            for name, mode, body, content_type, reason in FAULTS:
                feed.mode, feed.body, feed.content_type = mode, body, content_type
                seen = len(_job_runs(inst))

                def failed_with_reason() -> bool:
                    return any(
                        s == "failed" and reason in m  # noqa: B023 - used at once
                        for s, m in _job_runs(inst)[seen:]  # noqa: B023
                    )

                wait_for(failed_with_reason, 30, f"a failed tick ({name})", log.read_text)
                if name == "binary":
                    # The next tick meets the same bytes: still a failure, not "unchanged".
                    seen = len(_job_runs(inst))
                    wait_for(
                        lambda: any(
                            s == "failed" and "which failed" in m
                            for s, m in _job_runs(inst)[seen:]  # noqa: B023
                        ),
                        30,
                        "a tick on the same garbage",
                        log.read_text,
                    )
                source = _source(inst)
                assert reason in source.last_error, (name, source.last_error)
                assert source.last_success_at == succeeded_at, name
                assert _stored(inst) == before, name
            feed.mode, feed.body, feed.content_type = "ok", FIXED, "text/csv"
            wait_for(lambda: inst.count(Activity) == 50, 30, "the fixed feed", log.read_text)
            assert scheduler.poll() is None, log.read_text()
        finally:
            scheduler.send_signal(signal.SIGTERM)
            try:
                scheduler.wait(timeout=30)
            except subprocess.TimeoutExpired:
                scheduler.kill()
                scheduler.wait()
    assert scheduler.returncode == 0, log.read_text()
    assert "Traceback" not in log.read_text(), log.read_text()
    source = _source(inst)
    assert source.last_error is None and source.last_success_at > succeeded_at
    statuses = [s for s, _ in _job_runs(inst)]
    assert "running" not in statuses and statuses[-1] == "succeeded", _job_runs(inst)
    assert inst.count(Activity, Activity.name.like("%(revised)")) == 50
