"""Jobs: the registry declared in code, schedules, the lock every run holds, and job_runs.

**The registry.** :data:`JOBS` holds the fixed jobs; :func:`registry` adds one
``import:<source name>`` job per enabled source. The scheduler (:mod:`cbm.scheduler`), the
``cbm source run`` command and the admin pages all read it, so they agree on what exists.

- ``import:<name>`` reads a source (conditional HTTP request, drop-folder bookkeeping) and
  imports what changed through the import service. An unchanged feed (HTTP 304, or the same
  checksum as last time) creates no import run: the job run says ``unchanged``.
- ``check:after-import`` runs after any import that wrote rows; ``check:nightly`` runs the
  compliance check every night (both: :func:`cbm.services.checks.check_now`, each run also
  a ``check_runs`` row); ``trust:recompute`` recomputes the trust signals every night
  (:func:`cbm.trust.compute.recompute`, each run also a ``trust_runs`` row). Every successful
  check recomputes them too, so the nightly run only catches up after a failed one.

**The lock.** :func:`run_job` runs a job only while it holds that job's lock, so two
schedulers (two processes, two hosts) never run the same job at the same time:

- PostgreSQL: ``pg_try_advisory_lock(<cbm>, hashtext(job_id))`` on a connection of its own,
  held for the whole run and released in ``finally`` (or by the server when the process
  dies). A *session-level* lock, not a transaction-level one: the job commits several
  times and a transaction lock would be released by its first commit.
- SQLite: an exclusive ``fcntl.flock`` on ``locks/<database>.<job>.lock`` beside the
  database file (for the embedded default, ``instance/locks/``), so every process that uses
  the same database file uses the same lock files. The kernel drops the lock when the
  process dies.

**When the lock is taken**, the run is skipped silently: nothing is written (a "skipped" row
per scheduler per tick would bury the real runs), and the skip is logged at DEBUG (as are
routine ``unchanged`` runs; set ``CBM_LOG_LEVEL=DEBUG`` to see every tick). With
several schedulers this is the normal case: their triggers are aligned (see
:func:`parse_schedule`), they fire together, one runs and the others skip.

**job_runs.** Each run that holds the lock writes a row (``running``, then ``succeeded`` or
``failed`` with a message; ``heartbeat_at`` is refreshed while it runs). A row still
``running`` when the next holder of the lock starts belongs to a process that died: it is
marked ``failed`` ("interrupted"). No exception ever leaves :func:`run_job`: a failing job
is a failed row and a log entry, never a dead scheduler thread.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import hashlib
import logging
import os
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Connection, Engine, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from cbm import logs
from cbm.db import PG_LOCK_NAMESPACE, retry_while_unreachable, session_scope, utcnow
from cbm.models import JobRun, Source

try:  # POSIX only; elsewhere SQLite falls back to a lock inside this process
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: How often a running job refreshes ``job_runs.heartbeat_at``.
JOB_HEARTBEAT_SECONDS = 30
#: Interval schedules count from this instant, not from the scheduler's start: every
#: scheduler fires at the same moments (``every 15m`` → :00, :15, :30, :45 UTC), so the
#: lock decides between them and "next run" is the same everywhere.
INTERVAL_ANCHOR = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)

UNCHANGED = "unchanged"

MAX_MESSAGE = 4000


# --- schedules ------------------------------------------------------------------------


class ScheduleError(ValueError):
    """A schedule that is neither ``every <n><unit>`` nor a five-field cron expression."""


_UNITS = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}
_EVERY = re.compile(r"^every\s+(\d{1,7})\s*([a-z]+)$", re.IGNORECASE)
_CRON_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_SCHEDULE_HELP = (
    "write an interval such as 'every 15m', 'every 1h', 'every 30s' or 'every 1d', or a "
    "five-field cron expression in UTC such as '0 2 * * *' (minute hour day-of-month "
    "month day-of-week); leave it empty to run only on demand"
)
MAX_INTERVAL_SECONDS = 366 * 86400


def _interval_seconds(text_: str) -> int | None:
    match = _EVERY.match(text_)
    if not match:
        return None
    number, unit = int(match.group(1)), match.group(2).lower()
    if unit not in _UNITS:
        raise ScheduleError(
            f"'{text_}': unknown unit '{unit}'; use s, m, h or d (e.g. 'every 15m')"
        )
    seconds = number * _UNITS[unit]
    if seconds < 1:
        raise ScheduleError(f"'{text_}': the interval must be at least 1 second")
    if seconds > MAX_INTERVAL_SECONDS:
        raise ScheduleError(f"'{text_}': the interval must be at most 366 days")
    return seconds


def _format_interval(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"every {seconds // size}{unit}"
    return f"every {seconds}s"


def _cron_weekday(value: str, *, allow_seven: bool = False) -> int:
    """A cron weekday: 0-7 (0 and 7 are Sunday) or sun-sat; 7 is kept for range ends."""
    lowered = value.lower()
    if lowered.isdigit():
        number = int(lowered)
        if number > 7:
            raise ScheduleError(f"day of week {number} is out of range (0-7; 0 and 7 are Sunday)")
        return number if allow_seven else number % 7
    if lowered in _CRON_WEEKDAYS:
        return _CRON_WEEKDAYS.index(lowered)
    raise ScheduleError(f"'{value}' is not a day of the week (0-7 or sun-sat)")


def _cron_day_of_week(field_: str) -> str:
    """A cron day-of-week field as APScheduler 3 names.

    Cron counts 0 (and 7) as Sunday; APScheduler 3 counts 0 as *Monday* (its issue 286).
    Expanding the field to names (``1-5`` → ``mon,tue,wed,thu,fri``) keeps the meaning every
    cron user expects.
    """
    if field_ in ("*", "?"):
        return "*"
    days: set[int] = set()
    for item in field_.split(","):
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ScheduleError(f"'{item}': the step after '/' must be a whole number")
            step = int(step_text)
        if base == "*":
            first, last = 0, 6
        elif "-" in base:
            left, right = base.split("-", 1)
            first = _cron_weekday(left)
            last = _cron_weekday(right, allow_seven=True)
            if last == 0 and first > 0:
                last = 7  # mon-sun: up to the Sunday that ends the week
            if last < first:
                raise ScheduleError(f"'{base}': the range runs backwards")
        else:
            first = _cron_weekday(base)
            last = 6 if slash else first
        days.update(day % 7 for day in range(first, last + 1, step))
    if len(days) == 7:
        return "*"
    # APScheduler 3 numbers Monday 0 … Sunday 6; names avoid the confusion altogether.
    order = sorted(days, key=lambda day: (day - 1) % 7)
    return ",".join(_CRON_WEEKDAYS[day] for day in order)


def normalize_schedule(schedule: str | None) -> str:
    """The canonical text of a schedule (``every 900s`` → ``every 15m``), or raise."""
    text_ = " ".join((schedule or "").split())
    if not text_:
        return ""
    seconds = _interval_seconds(text_)
    if seconds is not None:
        return _format_interval(seconds)
    parse_schedule(text_)
    return text_


def parse_schedule(schedule: str | None) -> BaseTrigger | None:
    """An APScheduler trigger in UTC for a schedule, ``None`` for an empty one.

    ``every 15m`` (also ``s``, ``h``, ``d``) is an interval counted from
    :data:`INTERVAL_ANCHOR`; five fields are cron (``minute hour day month weekday``, with
    cron's weekday numbers: 0 and 7 are Sunday). Raises :class:`ScheduleError` with a
    message that says what to write instead.
    """
    text_ = " ".join((schedule or "").split())
    if not text_:
        return None
    seconds = _interval_seconds(text_)
    if seconds is not None:
        return IntervalTrigger(seconds=seconds, start_date=INTERVAL_ANCHOR, timezone=dt.UTC)
    if text_.lower().startswith("every"):
        raise ScheduleError(f"'{text_}' is not an interval: {_SCHEDULE_HELP}")
    fields = text_.split(" ")
    if len(fields) != 5:
        raise ScheduleError(
            f"'{text_}' is neither an interval nor a five-field cron expression: {_SCHEDULE_HELP}"
        )
    minute, hour, day, month, weekday = fields
    if day not in ("*", "?") and weekday not in ("*", "?"):
        # Cron runs when *either* matches; APScheduler 3 only when *both* do.
        raise ScheduleError(
            f"'{text_}' restricts both the day of the month and the day of the week, which "
            "cron and APScheduler read differently; restrict only one of them"
        )
    try:
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=_cron_day_of_week(weekday),
            timezone=dt.UTC,
        )
    except ScheduleError as exc:
        raise ScheduleError(f"'{text_}': {exc}") from None
    except ValueError as exc:
        raise ScheduleError(f"'{text_}' is not a valid cron expression: {exc}") from None


def schedule_period(trigger: BaseTrigger, now: dt.datetime | None = None) -> dt.timedelta:
    """The time between a trigger's next two runs (at least a second)."""
    now = now or utcnow()
    if isinstance(trigger, IntervalTrigger):
        return max(trigger.interval, dt.timedelta(seconds=1))
    first = trigger.get_next_fire_time(None, now)
    if first is None:
        return dt.timedelta(days=1)
    second = trigger.get_next_fire_time(first, first + dt.timedelta(microseconds=1))
    if second is None:
        return dt.timedelta(days=1)
    return max(second - first, dt.timedelta(seconds=1))


def next_run_time(schedule: str, now: dt.datetime | None = None) -> dt.datetime | None:
    """When a schedule next fires (UTC), or ``None`` (on demand only, or unparsable)."""
    try:
        trigger = parse_schedule(schedule)
    except ScheduleError:
        return None
    if trigger is None:
        return None
    now = now or utcnow()
    return trigger.get_next_fire_time(None, now)


# --- the registry ---------------------------------------------------------------------


@dataclass
class JobResult:
    """What a job reports: a message, whether it wrote rows, whether it failed."""

    message: str = ""
    wrote_rows: bool = False
    failed: bool = False
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobContext:
    """Given to a running job: where to write, which run it is, and a heartbeat."""

    session_factory: sessionmaker[Session]
    job_id: str
    run_id: int

    def beat(self) -> None:
        """Refresh this run's heartbeat (long jobs may call it between steps)."""
        _touch(self.session_factory, self.run_id)


JobFunction = Callable[[JobContext], "JobResult | str | None"]


@dataclass(frozen=True)
class Job:
    """A job of the registry: its id, a title, its schedule (empty: on demand or when
    triggered) and the function that does the work."""

    id: str
    title: str
    schedule: str
    run: JobFunction
    placeholder: bool = False
    when: str = ""  # how it runs, in words, for the jobs page
    source_name: str | None = None


def _check(trigger: str) -> JobFunction:
    """The compliance check as a job (the whole catalogue, all States, every period)."""

    def run(ctx: JobContext) -> JobResult:
        from cbm.services.checks import check_now

        result = check_now(ctx.session_factory, trigger=trigger)
        return JobResult(
            message=(
                f"check run {result.run_id}: {result.detected} findings ({result.new} new, "
                f"{result.resolved} resolved)"
            ),
            details={"check_run_id": result.run_id},
        )

    return run


def _trust(trigger: str) -> JobFunction:
    """The trust signals recomputed from the stored facts and findings (a failure records a
    failed trust run and makes the job run fail)."""

    def run(ctx: JobContext) -> JobResult:
        from cbm.trust.compute import recompute

        outcome = recompute(ctx.session_factory, trigger=trigger)
        return JobResult(
            message=f"trust run {outcome.run_id}: {outcome.message}",
            details={"trust_run_id": outcome.run_id},
        )

    return run


#: The fixed jobs.
JOBS: dict[str, Job] = {
    job.id: job
    for job in (
        Job(
            "check:after-import",
            "Compliance check after imports",
            "",
            _check("after-import"),
            when="after each import that wrote rows",
        ),
        Job(
            "check:nightly",
            "Nightly compliance check",
            "0 2 * * *",
            _check("nightly"),
            when="every night at 02:00 UTC",
        ),
        Job(
            "trust:recompute",
            "Trust signals recomputation",
            "30 2 * * *",
            _trust("nightly"),
            when="every night at 02:30 UTC, after the nightly check",
        ),
    )
}

IMPORT_PREFIX = "import:"
AFTER_IMPORT = "check:after-import"
#: The fixed jobs whose schedule ``CBM_JOB_SCHEDULES`` may change.
FIXED_JOB_IDS = tuple(job_id for job_id, job in JOBS.items() if job.schedule)


def fixed_jobs() -> dict[str, Job]:
    """:data:`JOBS` with the schedules of ``CBM_JOB_SCHEDULES`` (read now, so the scheduler,
    the CLI and the admin pages of one environment agree)."""
    from cbm.config import read_setting

    overrides = dict(read_setting("CBM_JOB_SCHEDULES"))
    if not overrides:
        return dict(JOBS)
    return {
        job_id: dataclasses.replace(
            job, schedule=overrides[job_id], when=f"schedule {overrides[job_id]} (UTC)"
        )
        if job_id in overrides
        else job
        for job_id, job in JOBS.items()
    }


def import_job_id(source_name: str) -> str:
    return f"{IMPORT_PREFIX}{source_name}"


def import_job(source: Source) -> Job:
    """The import job of a source."""
    name = source.name
    when = f"schedule {source.schedule} (UTC)" if source.schedule else "on demand only"
    return Job(
        import_job_id(name),
        f"Import {name}",
        source.schedule or "",
        lambda ctx: import_source(ctx, name),
        when=when,
        source_name=name,
    )


def registry(session: Session, *, include_disabled: bool = False) -> dict[str, Job]:
    """Every job: the fixed ones and one import job per (enabled) source."""
    jobs = fixed_jobs()
    query = select(Source).order_by(Source.name)
    if not include_disabled:
        query = query.where(Source.enabled.is_(True))
    for source in session.scalars(query):
        job = import_job(source)
        jobs[job.id] = job
    return jobs


def get_job(session: Session, job_id: str) -> Job | None:
    """A job of the registry by id (disabled sources' import jobs included)."""
    if job_id in JOBS:
        return fixed_jobs()[job_id]
    if job_id.startswith(IMPORT_PREFIX):
        source = session.scalar(select(Source).where(Source.name == job_id[len(IMPORT_PREFIX) :]))
        if source is not None:
            return import_job(source)
    return None


# --- the import job -------------------------------------------------------------------


def import_source(ctx: JobContext, source_name: str) -> JobResult:
    """The ``import:<name>`` job: read the source and import what changed.

    The work is :func:`cbm.services.sources.fetch_and_import` (conditional requests,
    checksums, the import service, the source's bookkeeping); this wraps its outcome.
    """
    from cbm.services.sources import fetch_and_import

    outcome = fetch_and_import(ctx.session_factory, source_name)
    return JobResult(
        message=outcome.message,
        wrote_rows=outcome.wrote_rows,
        failed=outcome.failed,
        details={"run_ids": list(outcome.run_ids)},
    )


# --- locks ----------------------------------------------------------------------------


class NamedLock:
    """A non-blocking lock by name, held across processes and hosts that share the database
    (a PostgreSQL advisory lock, or a file lock beside an SQLite file); public because the
    import runs' liveness (:mod:`cbm.services.run_liveness`) holds them too."""

    def acquire(self) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def release(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class PgAdvisoryLock(NamedLock):
    """A session-level advisory lock on a connection of its own, held for the whole run."""

    def __init__(self, engine: Engine, job_id: str) -> None:
        self.engine = engine
        self.job_id = job_id
        self.conn: Connection | None = None

    def acquire(self) -> bool:
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(:ns, hashtext(:job))"),
                {"ns": PG_LOCK_NAMESPACE, "job": self.job_id},
            ).scalar()
        except BaseException:
            conn.invalidate()
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self.conn = conn
        return True

    def release(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            conn.execute(
                text("SELECT pg_advisory_unlock(:ns, hashtext(:job))"),
                {"ns": PG_LOCK_NAMESPACE, "job": self.job_id},
            )
        except Exception:  # the server ends the session, and the lock with it
            log.warning("could not release the lock of %s; dropping its connection", self.job_id)
            conn.invalidate()
        finally:
            conn.close()


class FileLock(NamedLock):
    """An exclusive, non-blocking ``flock`` on a file per job (SQLite)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        # Who holds it, for a person looking at the file.
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        return True

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


_LOCAL_LOCKS: dict[str, threading.Lock] = {}
_LOCAL_LOCKS_GUARD = threading.Lock()


class LocalLock(NamedLock):
    """In-memory SQLite (or no fcntl): only this process can use the database anyway."""

    def __init__(self, key: str) -> None:
        with _LOCAL_LOCKS_GUARD:
            self.lock = _LOCAL_LOCKS.setdefault(key, threading.Lock())

    def acquire(self) -> bool:
        return self.lock.acquire(blocking=False)

    def release(self) -> None:
        self.lock.release()


def factory_engine(session_factory: sessionmaker[Session]) -> Engine:
    """The engine behind a session factory (bound to an engine or to a connection)."""
    bind = session_factory.kw.get("bind")
    if isinstance(bind, Engine):
        return bind
    if isinstance(bind, Connection):
        return bind.engine
    raise TypeError("the session factory is not bound to an engine or a connection")


def lock_file(database: str, job_id: str) -> Path:
    """Where the lock of ``job_id`` lives for the SQLite file ``database``."""
    db_path = Path(database).expanduser().resolve()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", job_id)[:60]
    digest = hashlib.sha256(job_id.encode()).hexdigest()[:10]
    return db_path.parent / "locks" / f"{db_path.name}.{slug}.{digest}.lock"


def job_lock(session_factory: sessionmaker[Session], job_id: str) -> NamedLock:
    return engine_lock(factory_engine(session_factory), job_id)


def engine_lock(engine: Engine, name: str) -> NamedLock:
    """The lock called ``name`` for every process using ``engine``'s database (not taken)."""
    if engine.dialect.name == "postgresql":
        return PgAdvisoryLock(engine, name)
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if not database or database == ":memory:" or fcntl is None:
            return LocalLock(f"{id(engine)}:{name}")
        return FileLock(lock_file(database, name))
    return LocalLock(f"{engine.url}:{name}")  # pragma: no cover - other backends


# --- running a job --------------------------------------------------------------------


@dataclass(frozen=True)
class JobOutcome:
    """What :func:`run_job` did: ``succeeded``, ``failed`` or ``skipped`` (lock taken)."""

    job_id: str
    status: str
    message: str = ""
    run_id: int | None = None
    wrote_rows: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"


def this_process() -> tuple[str, int]:
    return socket.gethostname(), os.getpid()


def _touch(session_factory: sessionmaker[Session], run_id: int) -> None:
    with session_scope(session_factory) as session:
        session.execute(update(JobRun).where(JobRun.id == run_id).values(heartbeat_at=utcnow()))


class _Heartbeat:
    """Refreshes a run's heartbeat every few seconds from a daemon thread."""

    def __init__(self, ctx: JobContext, seconds: float) -> None:
        self.ctx = ctx
        self.seconds = seconds
        self.stop_event = threading.Event()
        # In the job's log context, so its warnings carry the job and the run.
        context = contextvars.copy_context()
        self.thread = threading.Thread(
            target=lambda: context.run(self._loop), name=f"heartbeat {ctx.job_id}", daemon=True
        )

    def _loop(self) -> None:
        while not self.stop_event.wait(self.seconds):
            try:
                self.ctx.beat()
            except Exception:
                log.warning("could not refresh the heartbeat of %s", self.ctx.job_id, exc_info=True)

    def __enter__(self) -> _Heartbeat:
        if self.seconds > 0:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(timeout=self.seconds + 5)


def _as_result(value: JobResult | str | None) -> JobResult:
    if isinstance(value, JobResult):
        return value
    return JobResult(message=value or "")


def _short(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


def run_job(
    session_factory: sessionmaker[Session],
    job_id: str,
    fn: JobFunction,
    *,
    heartbeat_seconds: float = JOB_HEARTBEAT_SECONDS,
) -> JobOutcome:
    """Run ``fn`` as job ``job_id`` under its lock, recording a job run. Never raises.

    Returns ``skipped`` (nothing recorded, logged at INFO) when the lock is held elsewhere.
    ``fn`` receives a :class:`JobContext` and returns a :class:`JobResult`, a message or
    ``None``; an exception becomes a ``failed`` run with the exception as its message.
    Every line logged meanwhile carries ``job`` (and ``job_run_id`` once the run exists).
    """
    with logs.log_context(job=job_id):
        return _run_job(session_factory, job_id, fn, heartbeat_seconds)


def _run_job(
    session_factory: sessionmaker[Session],
    job_id: str,
    fn: JobFunction,
    heartbeat_seconds: float,
) -> JobOutcome:
    try:
        lock = job_lock(session_factory, job_id)
        acquired = lock.acquire()
    except Exception as exc:
        log.exception("job %s: could not take its lock", job_id)
        return JobOutcome(job_id, "failed", _short(f"could not take the lock: {exc}"))
    if not acquired:
        log.debug("job %s is running elsewhere: skipped", job_id)
        return JobOutcome(job_id, "skipped", "running elsewhere")
    try:
        return _run_locked(session_factory, job_id, fn, heartbeat_seconds)
    finally:
        try:
            lock.release()
        except Exception:
            log.exception("job %s: could not release its lock", job_id)


def _run_locked(
    session_factory: sessionmaker[Session],
    job_id: str,
    fn: JobFunction,
    heartbeat_seconds: float,
) -> JobOutcome:
    host, pid = this_process()
    try:
        with session_scope(session_factory) as session:
            now = utcnow()
            # We hold the lock, so a run of this job still "running" belongs to a process
            # that died (or lost its database connection) before it could finish.
            session.execute(
                update(JobRun)
                .where(JobRun.job_id == job_id, JobRun.status == "running")
                .values(
                    status="failed",
                    finished_at=now,
                    message="interrupted: the process running it stopped before it finished",
                )
            )
            run = JobRun(
                job_id=job_id,
                status="running",
                started_at=now,
                heartbeat_at=now,
                host=host[:200],
                pid=pid,
            )
            session.add(run)
            session.flush()
            run_id = run.id
    except Exception as exc:
        log.exception("job %s: could not record its run", job_id)
        return JobOutcome(job_id, "failed", _short(f"could not record the run: {exc}"))

    with logs.log_context(job_run_id=run_id):
        return _run_recorded(session_factory, job_id, fn, heartbeat_seconds, run_id)


def _run_recorded(
    session_factory: sessionmaker[Session],
    job_id: str,
    fn: JobFunction,
    heartbeat_seconds: float,
    run_id: int,
) -> JobOutcome:
    ctx = JobContext(session_factory, job_id, run_id)
    try:
        with _Heartbeat(ctx, heartbeat_seconds):
            result = _as_result(fn(ctx))
        status = "failed" if result.failed else "succeeded"
    except Exception as exc:
        log.exception("job %s failed", job_id)
        result = JobResult(message=f"{type(exc).__name__}: {exc}", failed=True)
        status = "failed"
    message = _short(result.message)
    # When the job ended, not when the end could be written: across a database restart
    # the write waits for the server, and another scheduler may meanwhile take the lock
    # (the restart dropped it) and start a run, which must not seem to overlap this one.
    finished = utcnow()

    def record() -> None:
        with session_scope(session_factory) as session:
            session.execute(
                update(JobRun)
                .where(JobRun.id == run_id)
                .values(status=status, finished_at=finished, heartbeat_at=finished, message=message)
            )

    try:
        # Waits out a database restart, so the run keeps its own reason.
        retry_while_unreachable(record, f"job {job_id}: recording the end of run {run_id}")
    except Exception:
        # The row stays "running"; the next holder of the lock marks it interrupted.
        log.exception("job %s: could not record the end of run %s", job_id, run_id)
    if status == "failed":
        log.warning("job %s failed: %s", job_id, message)
    elif message == UNCHANGED:  # routine: every tick of every unchanged source
        log.debug("job %s: %s", job_id, message)
    else:
        log.info("job %s: %s", job_id, message or status)
    return JobOutcome(job_id, status, message, run_id, result.wrote_rows, result.details)


def run_registered(
    session_factory: sessionmaker[Session],
    job_id: str,
    *,
    heartbeat_seconds: float = JOB_HEARTBEAT_SECONDS,
) -> JobOutcome:
    """Run a job of the registry by id (under its lock); an unknown id is a failed outcome."""
    try:
        with session_scope(session_factory) as session:
            job = get_job(session, job_id)
    except Exception as exc:
        log.exception("job %s: could not read the registry", job_id)
        return JobOutcome(job_id, "failed", _short(f"could not read the registry: {exc}"))
    if job is None:
        return JobOutcome(job_id, "failed", f"there is no job '{job_id}'")
    return run_job(session_factory, job.id, job.run, heartbeat_seconds=heartbeat_seconds)


def run_with_follow_up(
    session_factory: sessionmaker[Session], job_id: str
) -> tuple[JobOutcome, JobOutcome | None]:
    """Run a job; when it wrote rows, run ``check:after-import`` after it (one-off runs)."""
    outcome = run_registered(session_factory, job_id)
    follow_up = None
    if outcome.wrote_rows and job_id != AFTER_IMPORT:
        follow_up = run_registered(session_factory, AFTER_IMPORT)
    return outcome, follow_up
