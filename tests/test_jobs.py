"""Jobs: schedules, the registry, the lock (threads and processes, both backends), job_runs,
and the scheduler's registration of jobs and sources."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session, sessionmaker

from cbm import jobs
from cbm.db import make_session_factory, session_scope, utcnow
from cbm.jobs import (
    JobContext,
    JobResult,
    ScheduleError,
    normalize_schedule,
    parse_schedule,
    run_job,
    run_registered,
)
from cbm.models import JobRun, SchedulerHeartbeat, Source

# --- schedules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds", "canonical"),
    [
        ("every 15m", 900, "every 15m"),
        ("every 1h", 3600, "every 1h"),
        ("every 30s", 30, "every 30s"),
        ("every 5s", 5, "every 5s"),
        ("every 1d", 86400, "every 1d"),
        ("every 900s", 900, "every 15m"),
        ("  Every   2 hours ", 7200, "every 2h"),
        ("every 90 seconds", 90, "every 90s"),
    ],
)
def test_interval_schedules(text: str, seconds: int, canonical: str) -> None:
    trigger = parse_schedule(text)
    assert isinstance(trigger, IntervalTrigger)
    assert trigger.interval == dt.timedelta(seconds=seconds)
    assert normalize_schedule(text) == canonical


def test_intervals_are_aligned_so_every_scheduler_fires_together() -> None:
    now = dt.datetime(2025, 3, 4, 10, 7, 31, tzinfo=dt.UTC)
    first = parse_schedule("every 15m")
    later = parse_schedule("every 15m")  # built at another moment, in another process
    assert first.get_next_fire_time(None, now) == dt.datetime(2025, 3, 4, 10, 15, tzinfo=dt.UTC)
    assert later.get_next_fire_time(None, now) == first.get_next_fire_time(None, now)


def test_cron_schedules_are_utc_with_cron_weekdays() -> None:
    trigger = parse_schedule("0 2 * * *")
    assert isinstance(trigger, CronTrigger)
    start = dt.datetime(2025, 1, 1, 12, tzinfo=dt.UTC)  # a Wednesday
    assert trigger.get_next_fire_time(None, start) == dt.datetime(2025, 1, 2, 2, tzinfo=dt.UTC)
    # Cron's 0 is Sunday (APScheduler 3 alone would read Monday).
    sunday = parse_schedule("30 6 * * 0").get_next_fire_time(None, start)
    assert sunday.strftime("%A %H:%M") == "Sunday 06:30"
    assert parse_schedule("0 0 * * 7").get_next_fire_time(None, start).strftime("%A") == "Sunday"
    weekdays = parse_schedule("0 9 * * 1-5")
    fired = []
    at = start
    for _ in range(7):
        at = weekdays.get_next_fire_time(at, at + dt.timedelta(seconds=1))
        fired.append(at.strftime("%a"))
    assert fired == ["Thu", "Fri", "Mon", "Tue", "Wed", "Thu", "Fri"]
    assert parse_schedule("0 9 * * mon-fri").get_next_fire_time(None, start).strftime("%a") == "Thu"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("every", "is not an interval"),
        ("every 0s", "at least 1 second"),
        ("every 5 fortnights", "unknown unit 'fortnights'"),
        ("daily", "neither an interval nor a five-field cron expression"),
        ("0 2 * *", "five-field cron"),
        ("61 2 * * *", "not a valid cron expression"),
        ("0 2 * * 8", "day of week 8 is out of range"),
        ("0 0 1 * 1", "restricts both the day of the month and the day of the week"),
        ("every 400d", "at most 366 days"),
    ],
)
def test_bad_schedules_say_what_to_write(text: str, says: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_schedule(text)
    assert says in str(info.value)


def test_empty_schedule_is_on_demand() -> None:
    assert parse_schedule("") is None
    assert parse_schedule("   ") is None
    assert normalize_schedule(None) == ""
    assert jobs.next_run_time("") is None


def test_schedule_period() -> None:
    assert jobs.schedule_period(parse_schedule("every 15m")) == dt.timedelta(minutes=15)
    assert jobs.schedule_period(parse_schedule("0 2 * * *")) == dt.timedelta(days=1)
    assert jobs.schedule_period(parse_schedule("*/5 * * * *")) == dt.timedelta(minutes=5)


# --- running a job (the test's own transaction) -------------------------------------------


def _runs(session: Session, job_id: str) -> list[JobRun]:
    session.expire_all()
    return list(session.scalars(select(JobRun).where(JobRun.job_id == job_id).order_by(JobRun.id)))


def test_a_run_is_recorded(session_factory: sessionmaker[Session], session: Session) -> None:
    seen: list[int] = []

    def work(ctx: JobContext) -> str:
        seen.append(ctx.run_id)
        running = _runs(session, "test:ok")
        assert [r.status for r in running] == ["running"]
        return "did the thing"

    outcome = run_job(session_factory, "test:ok", work)
    assert outcome.status == "succeeded" and outcome.message == "did the thing"
    [run] = _runs(session, "test:ok")
    assert run.id == outcome.run_id == seen[0]
    assert run.status == "succeeded" and run.message == "did the thing"
    assert run.finished_at is not None and run.finished_at >= run.started_at
    assert run.pid == os.getpid() and run.host
    assert run.heartbeat_at is not None


def test_an_exception_is_a_failed_run_and_never_escapes(
    session_factory: sessionmaker[Session], session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(ctx: JobContext) -> None:
        raise RuntimeError("the feed is on fire")

    outcome = run_job(session_factory, "test:boom", boom)
    assert outcome.status == "failed"
    [run] = _runs(session, "test:boom")
    assert run.status == "failed" and run.message == "RuntimeError: the feed is on fire"
    assert run.finished_at is not None
    assert "test:boom failed" in caplog.text


def test_a_reported_failure_is_a_failed_run(
    session_factory: sessionmaker[Session], session: Session
) -> None:
    outcome = run_job(
        session_factory, "test:soft", lambda ctx: JobResult("3 files refused", failed=True)
    )
    assert outcome.status == "failed"
    assert _runs(session, "test:soft")[0].message == "3 files refused"


def test_a_run_left_running_by_a_dead_process_is_marked_interrupted(
    session_factory: sessionmaker[Session], session: Session
) -> None:
    session.add(JobRun(job_id="test:dead", status="running", host="gone", pid=1))
    session.commit()
    run_job(session_factory, "test:dead", lambda ctx: "fine")
    dead, fresh = _runs(session, "test:dead")
    assert dead.status == "failed" and dead.message.startswith("interrupted")
    assert fresh.status == "succeeded"


def test_the_trust_job_recomputes_the_trust_signals(
    session_factory: sessionmaker[Session], session: Session
) -> None:
    from cbm.models import TrustRun

    assert not any(job.placeholder for job in jobs.JOBS.values())
    outcome = run_registered(session_factory, "trust:recompute")
    assert outcome.status == "succeeded", outcome.message
    run = session.scalars(select(TrustRun).order_by(TrustRun.id.desc())).first()
    assert run is not None and run.status == "succeeded" and run.trigger == "nightly"
    assert outcome.message.startswith(f"trust run {run.id}: ")
    assert outcome.details == {"trust_run_id": run.id}
    assert _runs(session, "trust:recompute")[-1].message == outcome.message
    assert run_registered(session_factory, "no:such").message == "there is no job 'no:such'"


@pytest.mark.parametrize("job_id", ["check:nightly", "check:after-import"])
def test_check_jobs_run_the_compliance_engine(
    session_factory: sessionmaker[Session], session: Session, job_id: str
) -> None:
    from cbm.models import CheckRun

    assert not jobs.JOBS[job_id].placeholder
    outcome = run_registered(session_factory, job_id)
    assert outcome.status == "succeeded", outcome.message
    run = session.scalars(select(CheckRun).order_by(CheckRun.id.desc())).first()
    assert run is not None and run.status == "succeeded"
    assert run.trigger == job_id.split(":", 1)[1]
    assert outcome.message.startswith(f"check run {run.id}: 0 findings")


def test_the_registry_has_one_import_job_per_enabled_source(session: Session) -> None:
    session.add_all(
        [
            Source(name="feed-a", location="https://example.org/a.csv", schedule="every 1h"),
            Source(name="feed-b", location="/srv/b/*.csv", schedule="", enabled=True),
            Source(name="feed-c", location="/srv/c.csv", schedule="every 1h", enabled=False),
        ]
    )
    session.flush()
    found = jobs.registry(session)
    assert {"check:nightly", "check:after-import", "trust:recompute"} <= set(found)
    assert {"import:feed-a", "import:feed-b"} <= set(found)
    assert "import:feed-c" not in found
    assert "import:feed-c" in jobs.registry(session, include_disabled=True)
    assert found["import:feed-a"].schedule == "every 1h"
    assert jobs.get_job(session, "import:feed-c") is not None
    assert jobs.get_job(session, "import:nope") is None


# --- the lock (committed rows, real connections) -------------------------------------------


@pytest.fixture()
def real_factory(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """Sessions on the engine itself (not the test's rolled-back transaction): the lock tests
    need several connections at once. Their rows are deleted afterwards."""
    factory = make_session_factory(engine)
    yield factory
    with session_scope(factory) as s:
        s.execute(delete(JobRun).where(JobRun.job_id.like("locktest-%")))


def _job_id() -> str:
    return f"locktest-{uuid.uuid4().hex[:8]}"


def _committed_runs(factory: sessionmaker[Session], job_id: str) -> list[JobRun]:
    with session_scope(factory) as s:
        return list(s.scalars(select(JobRun).where(JobRun.job_id == job_id).order_by(JobRun.id)))


def test_a_second_run_of_a_held_job_is_skipped_and_another_job_runs(
    real_factory: sessionmaker[Session],
) -> None:
    held, other = _job_id(), _job_id()
    inside, release = threading.Event(), threading.Event()
    outcomes: dict[str, jobs.JobOutcome] = {}

    def slow(ctx: JobContext) -> str:
        inside.set()
        assert release.wait(20)
        return "slow done"

    thread = threading.Thread(
        target=lambda: outcomes.setdefault("first", run_job(real_factory, held, slow))
    )
    thread.start()
    try:
        assert inside.wait(20)
        called = []
        second = run_job(real_factory, held, lambda ctx: called.append(1))
        assert second.status == "skipped" and second.skipped and second.run_id is None
        assert not called
        # A different job is not blocked by it.
        parallel = run_job(real_factory, other, lambda ctx: "other done")
        assert parallel.status == "succeeded"
        assert [r.status for r in _committed_runs(real_factory, held)] == ["running"]
    finally:
        release.set()
        thread.join(30)
    assert outcomes["first"].status == "succeeded"
    # Skipped runs write nothing: one row for the held job, one for the other.
    assert [r.message for r in _committed_runs(real_factory, held)] == ["slow done"]
    assert [r.message for r in _committed_runs(real_factory, other)] == ["other done"]
    # Released: the job runs again.
    assert run_job(real_factory, held, lambda ctx: "again").status == "succeeded"


def test_the_lock_is_released_after_a_failure(real_factory: sessionmaker[Session]) -> None:
    job_id = _job_id()

    def boom(ctx: JobContext) -> None:
        raise ValueError("no")

    assert run_job(real_factory, job_id, boom).status == "failed"
    assert run_job(real_factory, job_id, lambda ctx: "ok").status == "succeeded"


def test_the_heartbeat_is_refreshed_while_a_job_runs(real_factory: sessionmaker[Session]) -> None:
    job_id = _job_id()
    beats: list[dt.datetime] = []

    def watch(ctx: JobContext) -> str:
        for _ in range(3):
            time.sleep(0.25)
            [run] = _committed_runs(real_factory, job_id)
            beats.append(run.heartbeat_at)
        return "watched"

    assert run_job(real_factory, job_id, watch, heartbeat_seconds=0.1).status == "succeeded"
    assert len(set(beats)) >= 2  # it moved while the job ran


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from cbm.db import make_engine, make_session_factory
    from cbm.jobs import run_job

    url, job_id, flag = sys.argv[1:4]
    factory = make_session_factory(make_engine(url))

    def hold(ctx):
        Path(flag + ".held").write_text("held")
        deadline = time.time() + 60
        while not Path(flag + ".release").exists() and time.time() < deadline:
            time.sleep(0.05)
        return "held by the other process"

    print(run_job(factory, job_id, hold).status, flush=True)
    """
)


def test_the_lock_holds_across_processes(
    real_factory: sessionmaker[Session], db_url: str, tmp_path: Path
) -> None:
    job_id = _job_id()
    flag = str(tmp_path / "flag")
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, db_url, job_id, flag],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 60
        while not Path(flag + ".held").exists():
            assert child.poll() is None, child.stderr.read()
            assert time.time() < deadline, "the other process never took the lock"
            time.sleep(0.05)
        called = []
        assert run_job(real_factory, job_id, lambda ctx: called.append(1)).skipped
        assert not called
    finally:
        Path(flag + ".release").write_text("go")
        out, err = child.communicate(timeout=60)
    assert out.strip() == "succeeded", err
    [run] = _committed_runs(real_factory, job_id)
    assert run.pid == child.pid and run.message == "held by the other process"
    assert run_job(real_factory, job_id, lambda ctx: "mine").status == "succeeded"


def test_sqlite_lock_files_live_beside_the_database(tmp_path: Path) -> None:
    path = jobs.lock_file(str(tmp_path / "cbm.sqlite3"), "import:osce/feed")
    assert path.parent == tmp_path / "locks"
    assert path.name.startswith("cbm.sqlite3.import_osce_feed.") and path.suffix == ".lock"
    assert jobs.lock_file(str(tmp_path / "cbm.sqlite3"), "import:osce feed") != path


# --- the scheduler's registration ---------------------------------------------------------


def test_the_scheduler_registers_jobs_with_deliberate_misfire_settings(
    session_factory: sessionmaker[Session],
) -> None:
    from cbm.scheduler import build_scheduler

    scheduler = build_scheduler(session_factory)
    registered = {job.id: job for job in scheduler.get_jobs()}
    assert {"heartbeat", "sources:reload", "check:nightly", "trust:recompute"} <= set(registered)
    assert "check:after-import" not in registered  # it follows imports, it has no schedule
    nightly = registered["check:nightly"]
    assert nightly.coalesce is True and nightly.max_instances == 1
    assert nightly.misfire_grace_time == 86400  # one period: a late run still happens once
    assert str(nightly.trigger.timezone) == "UTC"


def test_the_scheduler_follows_source_changes(
    session_factory: sessionmaker[Session], session: Session
) -> None:
    from cbm.scheduler import build_scheduler

    scheduler = build_scheduler(session_factory)
    runtime = scheduler.cbm_runtime
    session.add_all(
        [
            Source(name="hourly", location="https://example.org/a.csv", schedule="every 1h"),
            Source(name="manual", location="/srv/m.csv", schedule=""),
            Source(name="off", location="/srv/o.csv", schedule="every 1h", enabled=False),
        ]
    )
    session.commit()
    runtime.sync_sources()
    ids = {job.id for job in scheduler.get_jobs()}
    assert "import:hourly" in ids
    assert "import:manual" not in ids and "import:off" not in ids
    hourly = scheduler.get_job("import:hourly")
    assert hourly.misfire_grace_time == 3600 and hourly.coalesce
    # Reschedule, enable, disable.
    session.execute(
        Source.__table__.update().where(Source.name == "hourly").values(schedule="every 5m")
    )
    session.execute(Source.__table__.update().where(Source.name == "off").values(enabled=True))
    session.commit()
    runtime.sync_sources()
    assert scheduler.get_job("import:hourly").trigger.interval == dt.timedelta(minutes=5)
    assert scheduler.get_job("import:off") is not None
    session.execute(Source.__table__.delete().where(Source.name == "hourly"))
    session.commit()
    runtime.sync_sources()
    assert scheduler.get_job("import:hourly") is None


def test_the_heartbeat_and_its_staleness(
    session_factory: sessionmaker[Session], session: Session
) -> None:
    from cbm.scheduler import beat, heartbeat_is_stale, last_heartbeat

    assert heartbeat_is_stale(None)
    beat(session_factory, "host-a:1")
    beat(session_factory, "host-a:1")
    last = last_heartbeat(session)
    assert last is not None and not heartbeat_is_stale(last)
    assert heartbeat_is_stale(last, now=last + dt.timedelta(seconds=61))
    rows = session.scalars(select(SchedulerHeartbeat)).all()
    assert [(r.host, r.pid) for r in rows] == [("host-a", 1)]


def test_a_scheduler_started_for_real_beats_and_runs_a_job(
    real_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A started BackgroundScheduler in this process: heartbeat at once, a due job runs."""
    from cbm import scheduler as scheduler_module

    job_id = _job_id()
    monkeypatch.setattr(
        jobs, "JOBS", {job_id: jobs.Job(job_id, "test", "every 1s", lambda ctx: "ticked")}
    )
    sched = scheduler_module.build_scheduler(real_factory, BackgroundScheduler)
    sched.start()
    try:
        deadline = time.time() + 15
        while time.time() < deadline and not _committed_runs(real_factory, job_id):
            time.sleep(0.2)
        time.sleep(1.5)
    finally:
        sched.shutdown(wait=True)
    try:
        runs = _committed_runs(real_factory, job_id)
        assert runs and {r.message for r in runs} == {"ticked"}
        assert all(r.status == "succeeded" and r.pid == os.getpid() for r in runs)
        with session_scope(real_factory) as s:
            last = scheduler_module.last_heartbeat(s)
        assert last is not None and utcnow() - last < dt.timedelta(seconds=30)
    finally:
        with session_scope(real_factory) as s:
            s.execute(
                delete(SchedulerHeartbeat).where(
                    SchedulerHeartbeat.scheduler_id == scheduler_module.scheduler_id()
                )
            )
