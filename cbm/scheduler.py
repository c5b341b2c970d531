"""The scheduler process role (APScheduler 3.x).

`cbm scheduler` runs it alone; `cbm serve` runs it in-process for the embedded default.
Jobs are declared in code. Misfires are coalesced with a generous grace time (APScheduler's
default of 1 s would silently skip a run after a short pause). Each scheduler records a
heartbeat so the UI can warn when none is alive. Import, check and trust jobs register here
as those capabilities land.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cbm.db import session_scope, utcnow
from cbm.models import SchedulerHeartbeat

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30
JOB_DEFAULTS = {"coalesce": True, "misfire_grace_time": 300, "max_instances": 1}


def scheduler_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def beat(factory: sessionmaker[Session], ident: str | None = None) -> None:
    """Record that this scheduler is alive (insert or refresh its heartbeat row)."""
    ident = ident or scheduler_id()
    with session_scope(factory) as session:
        row = session.scalar(
            select(SchedulerHeartbeat).where(SchedulerHeartbeat.scheduler_id == ident)
        )
        if row is None:
            host, _, pid = ident.rpartition(":")
            session.add(
                SchedulerHeartbeat(
                    scheduler_id=ident, host=host, pid=int(pid) if pid.isdigit() else None
                )
            )
        else:
            row.last_seen_at = utcnow()


def _safe(job: Callable[[], None], name: str) -> Callable[[], None]:
    def run() -> None:
        try:
            job()
        except Exception:  # a failing job must not kill the scheduler thread
            log.exception("scheduled job %s failed", name)

    return run


def build_scheduler(
    factory: sessionmaker[Session], scheduler_cls: type[BaseScheduler] = BackgroundScheduler
) -> BaseScheduler:
    """A scheduler in UTC with the project's jobs registered."""
    scheduler = scheduler_cls(timezone="UTC", job_defaults=JOB_DEFAULTS)
    ident = scheduler_id()
    scheduler.add_job(
        _safe(lambda: beat(factory, ident), "heartbeat"),
        "interval",
        seconds=HEARTBEAT_SECONDS,
        id="heartbeat",
        next_run_time=utcnow(),
    )
    return scheduler
