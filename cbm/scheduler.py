"""The scheduler process role (APScheduler 3.x, in memory, in UTC).

`cbm scheduler` runs it alone; `cbm serve` runs it in-process for the embedded default. Any
number of schedulers may run against one database: every job runs under its lock
(:func:`cbm.jobs.run_job`), so only one of them runs a given job at a time, and the others
skip it silently.

What it runs:

- the jobs of the registry (:mod:`cbm.jobs`) that have a schedule: ``check:nightly``,
  ``trust:recompute`` and one ``import:<source>`` per enabled source with a schedule;
- ``check:after-import`` straight after an import that wrote rows (retried in 30 s when
  another process is running it, so new rows are never left unchecked);
- ``sources:reload`` every minute: adds, removes and reschedules import jobs when sources
  change (a scheduler-local chore, not a job run);
- ``heartbeat`` every 30 s: this process's row in ``scheduler_heartbeats``, so the UI can
  warn when no scheduler is alive.

Misfires (a run that could not start on time: the process was suspended, the worker threads
were busy) are handled deliberately. APScheduler's default grace time of 1 s would silently
drop such a run. Here every job has ``coalesce=True`` (any number of missed runs become one)
and a ``misfire_grace_time`` equal to its own period (15 minutes for ``every 15m``, a day for
a nightly cron): a late run still happens as long as it is late by less than one period,
which with coalescing means "the most recent missed run always happens once, as soon as
possible", while a run older than that is superseded by a newer one and dropped.
``max_instances=1``: a run still going when the next is due makes that one skip. Interval
schedules count from a fixed anchor (see :data:`cbm.jobs.INTERVAL_ANCHOR`), so all schedulers
fire at the same moments and "next run" is the same everywhere.

Jobs run in a pool of :data:`WORKERS` threads; each running job uses two database
connections (its lock and its work), which stays within SQLAlchemy's default pool.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import threading
from collections.abc import Callable

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from cbm.db import session_scope, utcnow
from cbm.jobs import (
    AFTER_IMPORT,
    ScheduleError,
    fixed_jobs,
    import_job_id,
    parse_schedule,
    run_registered,
    schedule_period,
)
from cbm.models import SchedulerHeartbeat, Source

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30
#: No heartbeat newer than this: the UI says the scheduler is not running.
STALE_AFTER = dt.timedelta(seconds=2 * HEARTBEAT_SECONDS)
#: Heartbeat rows of schedulers not seen for this long are deleted.
FORGET_AFTER = dt.timedelta(days=7)
SOURCES_RELOAD_SECONDS = 60
AFTER_IMPORT_RETRY_SECONDS = 30
WORKERS = 4
JOB_DEFAULTS = {"coalesce": True, "misfire_grace_time": 300, "max_instances": 1}


def scheduler_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def beat(factory: sessionmaker[Session], ident: str | None = None) -> None:
    """Record that this scheduler is alive (insert or refresh its heartbeat row).

    The transaction starts with a write (the UPDATE): on SQLite a transaction that read
    first cannot write once another process has committed (SQLITE_BUSY_SNAPSHOT, which
    the busy timeout does not wait out), while one that writes first simply waits its turn.
    """
    ident = ident or scheduler_id()
    with session_scope(factory) as session:
        now = utcnow()
        refreshed = session.execute(
            update(SchedulerHeartbeat)
            .where(SchedulerHeartbeat.scheduler_id == ident)
            .values(last_seen_at=now)
        ).rowcount
        if not refreshed:
            host, _, pid = ident.rpartition(":")
            session.add(
                SchedulerHeartbeat(
                    scheduler_id=ident,
                    host=host,
                    pid=int(pid) if pid.isdigit() else None,
                    started_at=now,
                    last_seen_at=now,
                )
            )
            session.execute(
                delete(SchedulerHeartbeat).where(
                    SchedulerHeartbeat.last_seen_at < now - FORGET_AFTER
                )
            )


def last_heartbeat(session: Session) -> dt.datetime | None:
    """When any scheduler last reported (None: never)."""
    return session.scalar(select(func.max(SchedulerHeartbeat.last_seen_at)))


def heartbeat_is_stale(last: dt.datetime | None, now: dt.datetime | None = None) -> bool:
    return last is None or (now or utcnow()) - last > STALE_AFTER


def _safe(job: Callable[[], None], name: str) -> Callable[[], None]:
    def run() -> None:
        try:
            job()
        except Exception:  # a failing job must not kill the scheduler thread
            log.exception("scheduled job %s failed", name)

    return run


class Runtime:
    """The scheduler's own state: which import jobs it has registered, and with what schedule."""

    def __init__(self, scheduler: BaseScheduler, factory: sessionmaker[Session]) -> None:
        self.scheduler = scheduler
        self.factory = factory
        self.import_schedules: dict[str, str] = {}
        self._sync_lock = threading.Lock()

    # -- running jobs -------------------------------------------------------------------

    def run(self, job_id: str) -> None:
        """Run a registry job under its lock; after an import that wrote rows, the check."""
        outcome = run_registered(self.factory, job_id)
        if outcome.wrote_rows and job_id != AFTER_IMPORT:
            self.after_import()

    def after_import(self) -> None:
        outcome = run_registered(self.factory, AFTER_IMPORT)
        if outcome.skipped:  # another process is checking: check again once it is done
            self.scheduler.add_job(
                _safe(self.after_import, AFTER_IMPORT),
                "date",
                run_date=utcnow() + dt.timedelta(seconds=AFTER_IMPORT_RETRY_SECONDS),
                id=f"{AFTER_IMPORT}:retry",
                replace_existing=True,
                misfire_grace_time=None,
            )

    def add_registry_job(self, job_id: str, schedule: str) -> bool:
        try:
            trigger = parse_schedule(schedule)
        except ScheduleError as exc:
            log.error("job %s not scheduled: %s", job_id, exc)
            return False
        if trigger is None:
            return False
        grace = int(schedule_period(trigger).total_seconds())
        self.scheduler.add_job(
            _safe(lambda: self.run(job_id), job_id),
            trigger,
            id=job_id,
            name=job_id,
            replace_existing=True,
            misfire_grace_time=grace,
            coalesce=True,
            max_instances=1,
        )
        return True

    # -- sources ------------------------------------------------------------------------

    def sync_sources(self) -> None:
        """Match the import jobs to the enabled sources with a schedule (add, drop, reschedule)."""
        with self._sync_lock:
            try:
                with session_scope(self.factory) as session:
                    wanted = {
                        import_job_id(name): schedule
                        for name, schedule in session.execute(
                            select(Source.name, Source.schedule).where(
                                Source.enabled.is_(True), Source.schedule != ""
                            )
                        )
                    }
            except Exception:
                log.warning("could not read the sources; keeping the current jobs", exc_info=True)
                return
            for job_id in list(self.import_schedules):
                if job_id not in wanted:
                    self._remove(job_id)
                    log.info("job %s removed", job_id)
            for job_id, schedule in wanted.items():
                if self.import_schedules.get(job_id) == schedule:
                    continue
                self._remove(job_id)
                if self.add_registry_job(job_id, schedule):
                    self.import_schedules[job_id] = schedule
                    log.info("job %s scheduled: %s (UTC)", job_id, schedule)

    def _remove(self, job_id: str) -> None:
        self.import_schedules.pop(job_id, None)
        with contextlib.suppress(JobLookupError):
            self.scheduler.remove_job(job_id)


def build_scheduler(
    factory: sessionmaker[Session],
    scheduler_cls: type[BaseScheduler] = BackgroundScheduler,
    *,
    reload_seconds: float = SOURCES_RELOAD_SECONDS,
) -> BaseScheduler:
    """A scheduler in UTC with the registry's jobs, the sources' reload and the heartbeat.

    The :class:`Runtime` is available as ``scheduler.cbm_runtime``.
    """
    scheduler = scheduler_cls(
        timezone="UTC",
        job_defaults=JOB_DEFAULTS,
        executors={"default": ThreadPoolExecutor(WORKERS)},
    )
    runtime = Runtime(scheduler, factory)
    scheduler.cbm_runtime = runtime  # type: ignore[attr-defined]
    ident = scheduler_id()
    scheduler.add_job(
        _safe(lambda: beat(factory, ident), "heartbeat"),
        "interval",
        seconds=HEARTBEAT_SECONDS,
        id="heartbeat",
        next_run_time=utcnow(),
        misfire_grace_time=HEARTBEAT_SECONDS,
    )
    for job in fixed_jobs().values():  # with CBM_JOB_SCHEDULES applied
        if job.schedule:
            runtime.add_registry_job(job.id, job.schedule)
    scheduler.add_job(
        _safe(runtime.sync_sources, "sources:reload"),
        "interval",
        seconds=reload_seconds,
        id="sources:reload",
        next_run_time=utcnow(),
        misfire_grace_time=int(reload_seconds),
    )
    return scheduler
