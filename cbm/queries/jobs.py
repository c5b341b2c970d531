"""The jobs table of ``/admin/jobs``, shared by the page, its export and
``cbm export jobs``: every job of the registry (and ones no longer configured that have
runs), with how it runs, its last run and its recent failures. Nothing here imports Flask.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cbm.jobs import IMPORT_PREFIX, Job, next_run_time, registry
from cbm.models import JobRun, Source

#: Failures counted on the jobs page.
FAILURE_WINDOW = dt.timedelta(days=7)


@dataclass
class JobRow:
    job: Job | None
    job_id: str
    title: str
    when: str
    next_run: dt.datetime | None
    enabled: bool
    last: JobRun | None
    failures: int
    last_failure: JobRun | None


def job_rows(session: Session, now: dt.datetime) -> list[JobRow]:
    """The jobs in registry order, then the unconfigured ones by id; failures are those
    of the :data:`FAILURE_WINDOW` before ``now``."""
    known = registry(session, include_disabled=True)
    enabled_sources = set(
        session.scalars(select(Source.name).where(Source.enabled.is_(True))).all()
    )
    last_ids = dict(
        session.execute(select(JobRun.job_id, func.max(JobRun.id)).group_by(JobRun.job_id)).all()
    )
    failed_q = select(JobRun.job_id, func.count(), func.max(JobRun.id)).where(
        JobRun.status == "failed", JobRun.started_at >= now - FAILURE_WINDOW
    )
    failures = {
        job_id: (count, last_id)
        for job_id, count, last_id in session.execute(failed_q.group_by(JobRun.job_id))
    }
    wanted_ids = set(last_ids.values()) | {last for _, last in failures.values()}
    runs = {
        run.id: run
        for run in session.scalars(select(JobRun).where(JobRun.id.in_(wanted_ids or {-1})))
    }
    rows = []
    for job_id in [*known, *sorted(set(last_ids) - set(known))]:
        job = known.get(job_id)
        is_import = job_id.startswith(IMPORT_PREFIX)
        enabled = job is not None and (not is_import or job.source_name in enabled_sources)
        if job is None:
            when = "no longer configured"
        elif not enabled:
            when = "source disabled"
        else:
            when = job.when or (job.schedule and f"{job.schedule} (UTC)") or "on demand"
        count, last_failure_id = failures.get(job_id, (0, None))
        rows.append(
            JobRow(
                job=job,
                job_id=job_id,
                title=job.title if job else job_id,
                when=when,
                next_run=next_run_time(job.schedule, now) if job and enabled else None,
                enabled=enabled,
                last=runs.get(last_ids.get(job_id, -1)),
                failures=count,
                last_failure=runs.get(last_failure_id) if last_failure_id else None,
            )
        )
    return rows
