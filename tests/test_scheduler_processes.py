"""Two real `cbm scheduler` processes against one database import a feed exactly once per change.

The feed is a real HTTP server on 127.0.0.1 serving a contract CSV with an ETag. A source
reads it every few seconds; both schedulers fire at the same instants (interval schedules
are aligned), so every tick they race for the job's lock. The feed answers slowly enough
that a second run, were the lock broken, would overlap the first, and the test would see it.

Asserted: one import run per distinct payload (two), job runs that never overlap, job runs
written by both processes, the rows stored once, the compliance check after each import
that wrote rows, and a clean stop on SIGTERM. On PostgreSQL (a throwaway database) and on
SQLite (a shared instance folder: the same database file and lock files).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import throwaway_pg_database
from factories import activity
from feed_server import Feed, csv_bytes
from sqlalchemy import Engine, create_engine, func, select

from cbm.db import make_engine
from cbm.models import Activity, ImportRun, JobRun, SchedulerHeartbeat

pytestmark = pytest.mark.slow

CBM = [sys.executable, "-m", "cbm.cli"]
TICK = 5  # seconds: the source's schedule
MIN_RUNTIME = 20  # seconds the schedulers run at least
DEADLINE = 120  # seconds for the whole scenario, at most


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CBM_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env.update({"NO_PROXY": "127.0.0.1,localhost", "CBM_LOG_LEVEL": "INFO"}, **extra)
    return env


def cbm(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [*CBM, *args], env=_env(env), capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, f"cbm {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done


def wait_for(condition: Callable[[], bool], until: float, what: str, logs: Callable[[], str]):
    while not condition():
        assert time.monotonic() < until, f"timed out waiting for {what}\n{logs()}"
        time.sleep(0.25)


def two_schedulers_import_a_feed(env: dict[str, str], engine: Engine, logdir: Path) -> None:
    started = time.monotonic()
    until = started + DEADLINE
    cbm(["db", "upgrade"], env)  # schema and reference data (States for validation)
    first = csv_bytes([activity(1), activity(2)])
    changed = csv_bytes([activity(1) | {"name": "Exercise renamed"}, activity(2), activity(3)])

    with Feed(first, delay=0.3) as feed:
        cbm(
            [
                "source",
                "add",
                "feed",
                feed.url,
                "--kind",
                "activities",
                "--schedule",
                f"every {TICK}s",
            ],
            env,
        )
        logs = [logdir / f"scheduler-{i}.log" for i in (1, 2)]
        procs = []
        for log in logs:
            with log.open("w") as out:
                procs.append(
                    subprocess.Popen(
                        [*CBM, "scheduler"], env=_env(env), stdout=out, stderr=subprocess.STDOUT
                    )
                )

        def show_logs() -> str:
            return "\n".join(f"--- {p.name}\n{p.read_text()}" for p in logs)

        def count(model, *where) -> int:
            with engine.connect() as conn:
                return conn.execute(select(func.count()).select_from(model).where(*where)).scalar()

        def pids_with_runs() -> set[int]:
            with engine.connect() as conn:
                return set(
                    conn.execute(
                        select(JobRun.pid).where(JobRun.job_id == "import:feed").distinct()
                    ).scalars()
                )

        try:
            wait_for(lambda: count(ImportRun) >= 1, until, "the first import", show_logs)
            # Two more ticks on the unchanged feed, then one change.
            ticks = lambda: len(feed.requests)  # noqa: E731
            seen = ticks()
            wait_for(lambda: ticks() >= seen + 2, until, "two more ticks", show_logs)
            imported = count(ImportRun)
            assert imported == 1, f"the first payload was imported {imported} times"
            feed.body = changed
            wait_for(lambda: count(ImportRun) >= 2, until, "the second import", show_logs)
            # Keep going: more ticks on the changed feed, and until both processes have won
            # the lock at least once (which one wins a tick is a race).
            wait_for(
                lambda: (
                    time.monotonic() - started >= MIN_RUNTIME
                    and pids_with_runs() == {p.pid for p in procs}
                ),
                until,
                "job runs by both schedulers",
                show_logs,
            )
            seen = ticks()
            wait_for(lambda: ticks() >= seen + 1, until, "one more tick", show_logs)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        assert [p.returncode for p in procs] == [0, 0], show_logs()
        assert "Traceback" not in show_logs(), show_logs()
        statuses = feed.statuses()

    with engine.connect() as conn:
        runs = conn.execute(select(ImportRun).order_by(ImportRun.id)).all()
        jobs = conn.execute(
            select(JobRun).where(JobRun.job_id == "import:feed").order_by(JobRun.started_at)
        ).all()
        checks = conn.execute(
            select(JobRun).where(JobRun.job_id == "check:after-import").order_by(JobRun.id)
        ).all()
        stored = dict(conn.execute(select(Activity.activity_id, Activity.name)).all())
        stored_rows = conn.execute(select(func.count()).select_from(Activity)).scalar()
        beats = conn.execute(select(SchedulerHeartbeat.pid)).scalars().all()

    # Exactly one import run per distinct payload.
    assert [(r.status, r.rows_read, r.rows_inserted, r.rows_updated) for r in runs] == [
        ("succeeded", 2, 2, 0),
        ("succeeded", 3, 1, 1),
    ]
    assert runs[0].checksum != runs[1].checksum
    # The rows, once each, with the change applied.
    assert stored == {"A-1": "Exercise renamed", "A-2": "Exercise 2", "A-3": "Exercise 3"}
    assert stored_rows == 3
    # Every tick that ran: the two imports, the rest "unchanged" (the server said 304).
    assert all(j.status == "succeeded" for j in jobs), [(j.status, j.message) for j in jobs]
    messages = [j.message for j in jobs]
    assert sum(m != "unchanged" for m in messages) == 2, messages
    assert messages.count("unchanged") >= 3
    assert statuses.count(200) == 2 and statuses.count(304) >= 3
    # No two runs of the job overlap, and both processes ran it.
    for before, after in itertools.pairwise(jobs):
        assert before.finished_at <= after.started_at, (before, after)
    assert {j.pid for j in jobs} == {p.pid for p in procs}
    assert len({j.host for j in jobs}) == 1
    # The compliance check followed each import that wrote rows.
    assert len(checks) == 2 and all(c.status == "succeeded" for c in checks), checks
    assert all(c.message.startswith("check run ") for c in checks), [c.message for c in checks]
    assert {p.pid for p in procs} <= set(beats)


@pytest.fixture()
def throwaway_pg() -> Iterator[str]:
    """A throwaway database (a failure, not a skip, without a server under CBM_REQUIRE_POSTGRES)."""
    with throwaway_pg_database("cbm_sched") as url:
        yield url


@pytest.mark.postgres
def test_two_schedulers_on_postgresql(throwaway_pg: str, tmp_path: Path) -> None:
    env = {"CBM_DATABASE_URL": throwaway_pg, "CBM_INSTANCE_DIR": str(tmp_path / "instance")}
    engine = make_engine(throwaway_pg)
    try:
        two_schedulers_import_a_feed(env, engine, tmp_path)
    finally:
        engine.dispose()


def test_two_schedulers_on_sqlite(tmp_path: Path) -> None:
    instance = tmp_path / "instance"  # shared: the same database file and lock files
    engine = create_engine(f"sqlite:///{instance / 'cbm.sqlite3'}")
    try:
        two_schedulers_import_a_feed({"CBM_INSTANCE_DIR": str(instance)}, engine, tmp_path)
    finally:
        engine.dispose()
    assert sorted(p.name.split(".")[2] for p in (instance / "locks").iterdir()) == [
        "check_after-import",
        "import_feed",
    ]
