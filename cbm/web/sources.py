"""Administration of import sources and scheduled jobs. Every route needs the admin role.

- ``/admin/sources``: the sources, with forms to add, edit, enable, disable, remove and run
  one now. Changes go through :mod:`cbm.services.sources` (the rules of ``cbm source …``); a
  refused change comes back as the form with its message beside the field (status 422).
- "Run now" runs the source's import job in the request, under the same lock as the
  scheduler (a run already going elsewhere is reported, not doubled), then the compliance
  check when the import wrote rows.
- ``/admin/jobs``: every job of the registry with its schedule, next run (computed from its
  trigger, so it is right even when the scheduler runs in another process), last run and
  recent failures; the schedulers' heartbeats; ``/admin/jobs/<job_id>`` is a job's history.
- A banner on every page an administrator sees (through a context processor and
  ``base.html``) when no scheduler has reported for two heartbeat intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.wrappers import Response

from cbm.db import utcnow
from cbm.jobs import (
    IMPORT_PREFIX,
    get_job,
    import_job_id,
    next_run_time,
    run_with_follow_up,
)
from cbm.models import ImportRun, JobRun, SchedulerHeartbeat, Source
from cbm.queries.jobs import FAILURE_WINDOW, job_rows
from cbm.services import sources as service
from cbm.services.sources import IMPORTERS, SourceError
from cbm.web.auth import current_actor, has_role, role_required
from cbm.web.database import db_session, web_state

bp = Blueprint("sources", __name__, url_prefix="/admin")

HISTORY_PAGE = 50
RECENT_FAILURES = 20


# --- the scheduler banner ---------------------------------------------------------------


def scheduler_banner() -> str | None:
    """The warning to show when no scheduler has reported lately (None when one has)."""
    from cbm.scheduler import heartbeat_is_stale, last_heartbeat

    try:
        last = last_heartbeat(db_session())
    except SQLAlchemyError:  # an error page for a broken database: say nothing more
        return None
    if not heartbeat_is_stale(last):
        return None
    since = (
        f"has not reported since {last.strftime('%Y-%m-%d %H:%M:%S UTC')}"
        if last
        else "has never reported"
    )
    return (
        f"The scheduler {since}: scheduled imports and checks are not running. "
        "Start `cbm scheduler` or `cbm serve`."
    )


@bp.app_context_processor
def _banner_globals() -> dict[str, Any]:
    def banner() -> str | None:
        return scheduler_banner() if has_role("admin") else None

    return {"scheduler_banner": banner}


# --- sources ------------------------------------------------------------------------------


@dataclass
class SourceForm:
    name: str = ""
    location: str = ""
    importer: str = "auto"
    kind: str = ""
    schedule: str = ""
    enabled: bool = True
    all_or_nothing: bool = False

    @classmethod
    def from_source(cls, source: Source) -> SourceForm:
        return cls(
            source.name,
            source.location,
            source.importer,
            source.kind or "",
            source.schedule,
            source.enabled,
            source.all_or_nothing,
        )

    @classmethod
    def from_request(cls) -> SourceForm:
        form = request.form
        return cls(
            name=form.get("name", "")[:200],
            location=form.get("location", "")[:4000],
            importer=form.get("importer", "auto")[:40],
            kind=form.get("kind", "")[:80],
            schedule=form.get("schedule", "")[:200],
            enabled=bool(form.get("enabled")),
            all_or_nothing=bool(form.get("all_or_nothing")),
        )


def _kinds() -> list[str]:
    from cbm import contract

    return list(contract.FILES)


def _form_page(
    template: str, form: SourceForm, errors: dict[str, str], **extra: Any
) -> tuple[str, int]:
    html = render_template(
        template, form=form, errors=errors, importers=IMPORTERS, kinds=_kinds(), **extra
    )
    return html, 422 if errors else 200


def _error_dict(exc: SourceError) -> dict[str, str]:
    return {exc.field or "form": str(exc)}


def _get_source_or_404(source_id: int) -> Source:
    source = db_session().get(Source, source_id)
    if source is None:
        abort(404, f"There is no source number {source_id}.")
    return source


@bp.get("/sources")
@role_required("admin")
def index() -> tuple[str, int]:
    """The sources by name, filtered by status, importer, kind and name (all in the URL,
    and in the export behind Download)."""
    from cbm.queries.sources import STATUSES, parse_source_filters, source_conditions

    session = db_session()
    parsed = parse_source_filters(request.args)
    rows = []
    found: list[Source] = []
    if parsed.ok:
        found = list(
            session.scalars(select(Source).where(*source_conditions(parsed)).order_by(Source.name))
        )
    for source in found:
        last_run = session.scalar(
            select(JobRun)
            .where(JobRun.job_id == import_job_id(source.name))
            .order_by(JobRun.id.desc())
            .limit(1)
        )
        rows.append(
            {
                "source": source,
                "next_run": next_run_time(source.schedule) if source.enabled else None,
                "last_run": last_run,
            }
        )
    total = session.scalar(select(func.count()).select_from(Source)) or 0
    html = render_template(
        "sources/index.html",
        rows=rows,
        total=total,
        values=parsed.values,
        errors=parsed.errors,
        filtered=bool(parsed.active),
        statuses=STATUSES,
        importers=IMPORTERS,
        kinds=_kinds(),
        csv_url=url_for("sources.export", **parsed.active),
    )
    return html, (200 if parsed.ok else 400)


@bp.get("/sources.csv")
@role_required("admin")
def export() -> Response:
    """The sources with the page's filters, secrets redacted (``format=csv|xlsx|json``)."""
    from cbm.web.exports import export_response

    return export_response("sources", request.args)


@bp.route("/sources/new", methods=["GET", "POST"])
@role_required("admin")
def new() -> Any:
    form = SourceForm()
    errors: dict[str, str] = {}
    if request.method == "POST":
        form = SourceForm.from_request()
        try:
            source = service.add_source(
                db_session(),
                form.name,
                form.location,
                importer=form.importer,
                kind=form.kind,
                schedule=form.schedule,
                enabled=form.enabled,
                all_or_nothing=form.all_or_nothing,
                actor=current_actor(),
            )
        except SourceError as exc:
            errors = _error_dict(exc)
        else:
            flash(f"Source {source.name} added.", "success")
            return redirect(url_for("sources.source", source_id=source.id))
    return _form_page("sources/new.html", form, errors)


@bp.route("/sources/<int:source_id>", methods=["GET", "POST"])
@role_required("admin")
def source(source_id: int) -> Any:
    found = _get_source_or_404(source_id)
    form = SourceForm.from_source(found)
    errors: dict[str, str] = {}
    if request.method == "POST":
        form = SourceForm.from_request()
        form.name, form.enabled = found.name, found.enabled
        try:
            service.update_source(
                db_session(),
                found.name,
                location=form.location,
                importer=form.importer,
                kind=form.kind,
                schedule=form.schedule,
                all_or_nothing=form.all_or_nothing,
                actor=current_actor(),
            )
        except SourceError as exc:
            errors = _error_dict(exc)
        else:
            flash(f"Source {found.name} saved.", "success")
            return redirect(url_for("sources.source", source_id=found.id))
    return _source_page(found, form, errors)


def _source_page(
    found: Source, form: SourceForm | None = None, errors: dict[str, str] | None = None
) -> tuple[str, int]:
    session = db_session()
    job_runs = session.scalars(
        select(JobRun)
        .where(JobRun.job_id == import_job_id(found.name))
        .order_by(JobRun.id.desc())
        .limit(20)
    ).all()
    import_runs = session.scalars(
        select(ImportRun)
        .where(ImportRun.source_id == found.id)
        .order_by(ImportRun.id.desc())
        .limit(20)
    ).all()
    return _form_page(
        "sources/source.html",
        form or SourceForm.from_source(found),
        errors or {},
        source=found,
        job_runs=job_runs,
        import_runs=import_runs,
        run_count=service.run_count(session, found),
        next_run=next_run_time(found.schedule) if found.enabled else None,
        run_url=_run_url,
    )


def _run_url(run_id: int) -> str | None:
    """A link to an import run's page when the runs pages exist."""
    for endpoint in ("runs.run", "imports.run", "admin.run"):
        if endpoint in current_app.view_functions:
            try:
                return url_for(endpoint, run_id=run_id)
            except Exception:  # pragma: no cover - another signature
                return None
    return None


@bp.post("/sources/<int:source_id>/enable")
@role_required("admin")
def enable(source_id: int) -> Any:
    found = _get_source_or_404(source_id)
    service.set_enabled(db_session(), found.name, True, actor=current_actor())
    when = f"scheduled {found.schedule} (UTC)" if found.schedule else "run on demand only"
    flash(f"Source {found.name} is enabled ({when}).", "success")
    return redirect(url_for("sources.source", source_id=found.id))


@bp.post("/sources/<int:source_id>/disable")
@role_required("admin")
def disable(source_id: int) -> Any:
    found = _get_source_or_404(source_id)
    service.set_enabled(db_session(), found.name, False, actor=current_actor())
    flash(f"Source {found.name} is disabled: it is no longer scheduled.", "success")
    return redirect(url_for("sources.source", source_id=found.id))


@bp.post("/sources/<int:source_id>/remove")
@role_required("admin")
def remove(source_id: int) -> Any:
    found = _get_source_or_404(source_id)
    if not request.form.get("confirm"):
        return _source_page(found, errors={"remove": "Tick the box to confirm the removal."})
    try:
        result = service.remove_source(db_session(), found.name, actor=current_actor())
    except SourceError as exc:
        return _source_page(found, errors={"remove": str(exc)})
    flash(f"Source {result.name} removed.", "success")
    return redirect(url_for("sources.index"))


@bp.post("/sources/<int:source_id>/run")
@role_required("admin")
def run_now(source_id: int) -> Response:
    found = _get_source_or_404(source_id)
    _run_and_flash(import_job_id(found.name))
    return redirect(url_for("sources.source", source_id=found.id))


def _run_and_flash(job_id: str) -> None:
    # End this request's transaction (on SQLite it holds the write lock) before the job
    # writes on sessions of its own.
    db_session().commit()
    outcome, follow_up = run_with_follow_up(web_state().session_factory, job_id)
    if outcome.skipped:
        flash(
            f"{job_id} is running elsewhere (a scheduler) right now; nothing was started. "
            "Try again when it has finished.",
            "warning",
        )
        return
    category = "error" if outcome.status == "failed" else "success"
    flash(f"{job_id} {outcome.status}: {outcome.message or 'done'}", category)
    if follow_up is not None:
        flash(f"{follow_up.job_id} {follow_up.status}: {follow_up.message or 'done'}", "info")


# --- jobs ---------------------------------------------------------------------------------


@bp.get("/jobs")
@role_required("admin")
def jobs() -> str:
    session = db_session()
    now = utcnow()
    rows = job_rows(session, now)
    recent_failures = session.scalars(
        select(JobRun)
        .where(JobRun.status == "failed")
        .order_by(JobRun.id.desc())
        .limit(RECENT_FAILURES)
    ).all()
    schedulers = session.scalars(
        select(SchedulerHeartbeat).order_by(SchedulerHeartbeat.last_seen_at.desc())
    ).all()
    from cbm.scheduler import STALE_AFTER

    return render_template(
        "sources/jobs.html",
        rows=rows,
        recent_failures=recent_failures,
        schedulers=schedulers,
        stale_before=now - STALE_AFTER,
        failure_days=FAILURE_WINDOW.days,
        csv_url=url_for("sources.jobs_export"),
    )


@bp.get("/jobs.csv")
@role_required("admin")
def jobs_export() -> Response:
    """The jobs table (``format=csv|xlsx|json``), as ``cbm export jobs``."""
    from cbm.web.exports import export_response

    return export_response("jobs", request.args)


@bp.get("/jobs/<job_id>")
@role_required("admin")
def job(job_id: str) -> Any:
    session = db_session()
    found = get_job(session, job_id)
    total = session.scalar(select(func.count()).select_from(JobRun).where(JobRun.job_id == job_id))
    if found is None and not total:
        abort(404, f"There is no job '{job_id[:120]}'.")
    page_text = request.args.get("page", "1")
    page = int(page_text) if page_text.isdigit() and 1 <= int(page_text) <= 1_000_000 else 1
    runs = session.scalars(
        select(JobRun)
        .where(JobRun.job_id == job_id)
        .order_by(JobRun.id.desc())
        .offset((page - 1) * HISTORY_PAGE)
        .limit(HISTORY_PAGE)
    ).all()
    source = None
    if job_id.startswith(IMPORT_PREFIX):
        source = session.scalar(select(Source).where(Source.name == job_id[len(IMPORT_PREFIX) :]))
    return render_template(
        "sources/job.html",
        job_id=job_id,
        job=found,
        source=source,
        runs=runs,
        total=total or 0,
        page=page,
        pages=max(1, -(-(total or 0) // HISTORY_PAGE)),
        next_run=next_run_time(found.schedule) if found else None,
    )


@bp.post("/jobs/<job_id>/run")
@role_required("admin")
def run_job_now(job_id: str) -> Response:
    if get_job(db_session(), job_id) is None:
        abort(404, f"There is no job '{job_id[:120]}'.")
    _run_and_flash(job_id)
    return redirect(url_for("sources.job", job_id=job_id))


def duration(run: JobRun | None) -> str:
    """How long a run took, in words (``–`` while it runs)."""
    if run is None or run.finished_at is None:
        return "–"
    seconds = (run.finished_at - run.started_at).total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.0f} min"


@bp.app_template_filter("job_duration")
def _job_duration(run: JobRun | None) -> str:
    return duration(run)
