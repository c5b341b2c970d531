"""`cbm doctor`: check a deployment and say what is wrong and how to fix it.

Each check is a function of a :class:`Probe` (the settings and, once reached, the engine)
returning one or more :class:`Finding` rows (status ``OK``, ``WARNING`` or ``PROBLEM``, a
title, what was seen, and the fix), or nothing when it does not apply. Checks that need the
database are skipped when it cannot be reached or is not migrated (that is the problem
reported first). Nothing here writes to the database.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from cbm.config import Settings
from cbm.db import make_engine, utcnow

OK = "OK"
WARNING = "WARNING"
PROBLEM = "PROBLEM"

#: A scheduler heartbeat older than this: no scheduler is running (they beat every 30 s).
HEARTBEAT_STALE_AFTER = dt.timedelta(minutes=3)
#: A scheduled source whose last success is older than this many periods is late.
SOURCE_LATE_PERIODS = 2
#: Secret keys shorter than this are guessable.
MIN_SECRET_LENGTH = 32
WEAK_SECRETS = {"dev", "development", "secret", "changeme", "change-me", "test", "password"}


@dataclass(frozen=True)
class Finding:
    status: str
    title: str
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Probe:
    """What the checks look at; ``engine`` is set once the database answered."""

    settings: Settings
    now: dt.datetime = field(default_factory=utcnow)
    engine: Engine | None = None
    migrated: bool = False

    @property
    def sqlite_path(self) -> Path | None:
        if not self.settings.is_sqlite:
            return None
        database = make_url(self.settings.database_url).database
        if database in (None, "", ":memory:"):
            return None
        return Path(database).expanduser().resolve()

    def session(self) -> Session:
        assert self.engine is not None
        return Session(self.engine)


Check = Callable[[Probe], "Finding | Iterable[Finding] | None"]


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _age(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def _when(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


# --- the checks --------------------------------------------------------------------------


def check_environment(p: Probe) -> Finding:
    s = p.settings
    if s.is_production and s.is_sqlite:
        return Finding(
            WARNING,
            "environment",
            "CBM_ENV=production with the embedded SQLite database: one machine, one writer "
            "at a time.",
            "for several web processes or hosts, set CBM_DATABASE_URL to a PostgreSQL "
            "database (see README, Deployment)",
        )
    return Finding(OK, "environment", f"CBM_ENV={s.env}, database {_safe_url(s.database_url)}")


def check_database(p: Probe) -> Finding:
    url = p.settings.database_url
    path = p.sqlite_path
    if path is not None and not path.exists():
        return Finding(
            PROBLEM,
            "database",
            f"the SQLite file {path} does not exist",
            "cbm db upgrade (creates it and the schema)",
        )
    engine = make_engine(url)
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        engine.dispose()
        orig = getattr(exc, "orig", None)
        reason = str(orig or exc).strip().splitlines()[0] if str(orig or exc).strip() else ""
        return Finding(
            PROBLEM,
            "database",
            f"cannot reach {_safe_url(url)}: {reason}",
            "check CBM_DATABASE_URL, that the server runs and accepts this user",
        )
    p.engine = engine
    return Finding(OK, "database", f"reachable: {_safe_url(url)}")


def check_migrations(p: Probe) -> Finding | None:
    if p.engine is None:
        return None
    from cbm.migrate import migration_status

    try:
        status = migration_status(p.engine)
    except SQLAlchemyError as exc:  # pragma: no cover - reachable a moment ago
        return Finding(PROBLEM, "schema", f"cannot read the revision: {exc}", "")
    if status.is_current:
        p.migrated = True
        return Finding(OK, "schema", f"at the newest revision {status.head}")
    return Finding(
        PROBLEM,
        "schema",
        f"at {status.current or 'an empty schema'}, newest is {status.head}",
        "cbm db upgrade",
    )


def check_reference(p: Probe) -> Finding | None:
    if not p.migrated:
        return None
    from cbm.models import State

    with p.session() as session:
        states = session.scalar(select(func.count()).select_from(State)) or 0
    if not states:
        return Finding(PROBLEM, "reference data", "no States loaded", "cbm reference load")
    return Finding(OK, "reference data", f"{states} States loaded")


def check_secret_key(p: Probe) -> Finding:
    s = p.settings
    key = s.secret_key
    key_file = s.instance_dir / "secret_key"
    from_env = bool(os.environ.get("CBM_SECRET_KEY", "").strip())
    generate = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
    if key.strip().lower() in WEAK_SECRETS or len(key) < MIN_SECRET_LENGTH:
        return Finding(
            PROBLEM if s.is_production else WARNING,
            "secret key",
            f"CBM_SECRET_KEY is too short or a well-known value ({len(key)} characters)",
            f"set CBM_SECRET_KEY to the output of: {generate}",
        )
    if s.is_production and key_file.exists():
        try:
            generated = key_file.read_text(encoding="utf-8").strip()
        except OSError:
            generated = ""
        if generated and generated == key:
            return Finding(
                WARNING,
                "secret key",
                f"production uses the key generated for development in {key_file}",
                f"set CBM_SECRET_KEY to a new key ({generate}) and delete {key_file}",
            )
    origin = "CBM_SECRET_KEY" if from_env else f"generated into {key_file}"
    return Finding(OK, "secret key", f"set ({origin})")


def check_sign_in_limit(p: Probe) -> Finding:
    """Where failed sign-ins are counted: one store for every web process, and reachable."""
    storage = p.settings.ratelimit_storage.strip()
    scheme = storage.split("://", 1)[0].lower()
    title = "sign-in rate limit"
    redis_fix = "set CBM_RATELIMIT_STORAGE=redis://127.0.0.1:6379 (a Redis every web host reaches)"
    if scheme == "memory":
        if p.settings.is_production:
            return Finding(
                WARNING,
                title,
                "CBM_RATELIMIT_STORAGE=memory:// counts failed sign-ins in each web process: "
                "with N workers or hosts a guesser gets N times the limit",
                redis_fix,
            )
        return Finding(OK, title, "counted in this process's memory (memory://)")
    if scheme in {"redis", "rediss"}:
        import redis

        shown = _safe_url(storage)
        client = redis.Redis.from_url(storage, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
        except redis.RedisError as exc:
            return Finding(
                WARNING,
                title,
                f"Redis at {shown} does not answer ({exc}); until it does, each web process "
                "counts failed sign-ins in its own memory",
                "start Redis, or correct CBM_RATELIMIT_STORAGE",
            )
        finally:
            client.close()
        return Finding(OK, title, f"counted in Redis at {shown}")
    return Finding(OK, title, f"counted in {scheme}:// (not checked by cbm doctor)")


def _mode_problem(path: Path, wanted: int, what: str, *, strict: bool) -> Finding | None:
    """Others may write: always a problem. Others may only read: a problem when ``strict``
    (the secret key; the instance folder in production), else a warning (a developer's
    checkout is usually 0755)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return None
    if mode & 0o077:
        writable = bool(mode & 0o022)
        return Finding(
            PROBLEM if writable or strict else WARNING,
            f"permissions: {what}",
            f"{path} has mode {mode:04o}: other users of the machine can "
            + ("read or change it" if writable else "read it"),
            f"chmod {wanted:o} {path}",
        )
    return Finding(OK, f"permissions: {what}", f"{path} has mode {mode:04o}")


def check_permissions(p: Probe) -> list[Finding]:
    s = p.settings
    found = [
        _mode_problem(s.instance_dir, 0o700, "instance dir", strict=s.is_production),
        _mode_problem(s.instance_dir / "secret_key", 0o600, "secret key file", strict=True),
    ]
    return [f for f in found if f is not None]


def check_sqlite_folder(p: Probe) -> Finding | None:
    path = p.sqlite_path
    if path is None:
        return None
    folder = path.parent
    if not folder.is_dir():
        return Finding(
            PROBLEM,
            "SQLite folder",
            f"{folder} does not exist",
            f"mkdir -p {folder} (or run cbm db upgrade)",
        )
    blocked = [x for x in (folder, path) if x.exists() and not os.access(x, os.W_OK)]
    if blocked:
        return Finding(
            PROBLEM,
            "SQLite folder",
            f"not writable by this user: {', '.join(map(str, blocked))} (SQLite needs to "
            "write its -wal and -shm files beside the database)",
            f"chown -R <the user running cbm> {folder}",
        )
    return Finding(OK, "SQLite folder", f"{folder} is writable")


def check_scheduler(p: Probe) -> Finding | None:
    if not p.migrated:
        return None
    from cbm.models import SchedulerHeartbeat

    with p.session() as session:
        latest = session.scalars(
            select(SchedulerHeartbeat).order_by(SchedulerHeartbeat.last_seen_at.desc()).limit(1)
        ).first()
        alive = session.scalar(
            select(func.count())
            .select_from(SchedulerHeartbeat)
            .where(SchedulerHeartbeat.last_seen_at >= p.now - HEARTBEAT_STALE_AFTER)
        )
    if latest is None:
        return Finding(
            WARNING,
            "scheduler",
            "no scheduler has reported: scheduled imports, checks and trust recomputation "
            "do not run",
            "start cbm scheduler or cbm serve (with CBM_SCHEDULER=true)",
        )
    age = p.now - latest.last_seen_at
    if age > HEARTBEAT_STALE_AFTER:
        return Finding(
            WARNING,
            "scheduler",
            f"the last heartbeat is {_age(age)} old ({latest.scheduler_id}, on host "
            f"{latest.host or '?'}, at {_when(latest.last_seen_at)})",
            "start cbm scheduler (or cbm serve with CBM_SCHEDULER=true); check its log",
        )
    return Finding(
        OK,
        "scheduler",
        f"{alive} running; last heartbeat {_age(age)} ago from {latest.scheduler_id}",
    )


def check_sources(p: Probe) -> list[Finding] | None:
    if not p.migrated:
        return None
    from cbm.jobs import ScheduleError, parse_schedule, schedule_period
    from cbm.models import Source

    with p.session() as session:
        sources = session.scalars(
            select(Source).where(Source.enabled.is_(True)).order_by(Source.name)
        ).all()
    found: list[Finding] = []
    for source in sources:
        title = f"source {source.name}"
        if not source.schedule:
            continue
        try:
            trigger = parse_schedule(source.schedule)
        except ScheduleError as exc:
            found.append(
                Finding(
                    PROBLEM,
                    title,
                    f"invalid schedule: {exc}",
                    f"cbm source update '{source.name}' --schedule 'every 1h'",
                )
            )
            continue
        if trigger is None:  # pragma: no cover - an empty schedule was skipped above
            continue
        late_after = SOURCE_LATE_PERIODS * schedule_period(trigger, p.now)
        error = (source.last_error or "").strip().splitlines()
        why = f"; last error: {error[0][:300]}" if error else ""
        fix = f"cbm source run '{source.name}' to see the error; cbm source list"
        if source.last_success_at is None:
            if p.now - source.created_at > late_after:
                found.append(Finding(WARNING, title, f"never imported successfully{why}", fix))
            else:
                found.append(Finding(OK, title, "added recently; not imported yet"))
            continue
        age = p.now - source.last_success_at
        if age > late_after:
            found.append(
                Finding(
                    WARNING,
                    title,
                    f"last success {_age(age)} ago ({_when(source.last_success_at)}), "
                    f"schedule {source.schedule}{why}",
                    fix,
                )
            )
        else:
            found.append(Finding(OK, title, f"last success {_age(age)} ago"))
    if not found:
        return [Finding(OK, "sources", "no enabled scheduled sources")]
    return found


def check_latest_check_run(p: Probe) -> Finding | None:
    if not p.migrated:
        return None
    from cbm.models import CheckRun

    with p.session() as session:
        run = session.scalars(
            select(CheckRun).order_by(CheckRun.started_at.desc(), CheckRun.id.desc()).limit(1)
        ).first()
    if run is None:
        return Finding(OK, "compliance check", "no check has run yet")
    if run.status == "failed":
        message = (run.message or "").strip().splitlines()
        return Finding(
            WARNING,
            "compliance check",
            f"the latest check run {run.id} ({_when(run.started_at)}) failed"
            + (f": {message[0][:300]}" if message else ""),
            "cbm check (prints the error); fix the data or report the bug",
        )
    return Finding(
        OK, "compliance check", f"latest run {run.id} {run.status} at {_when(run.started_at)}"
    )


CHECKS: list[Check] = [
    check_environment,
    check_database,
    check_migrations,
    check_reference,
    check_secret_key,
    check_sign_in_limit,
    check_permissions,
    check_sqlite_folder,
    check_scheduler,
    check_sources,
    check_latest_check_run,
]


def run_checks(settings: Settings, now: dt.datetime | None = None) -> list[Finding]:
    """Run every check in order; a check that crashes is reported, never raised."""
    probe = Probe(settings=settings, now=now or utcnow())
    results: list[Finding] = []
    try:
        for check in CHECKS:
            try:
                outcome: Any = check(probe)
            except Exception as exc:  # one broken check must not hide the others
                name = check.__name__.removeprefix("check_").replace("_", " ")
                outcome = Finding(PROBLEM, name, f"the check itself failed: {exc!r}", "")
            if outcome is None:
                continue
            if isinstance(outcome, Finding):
                results.append(outcome)
            else:
                results.extend(outcome)
    finally:
        if probe.engine is not None:
            probe.engine.dispose()
    return results


def has_problem(findings: Iterable[Finding]) -> bool:
    return any(f.status == PROBLEM for f in findings)
