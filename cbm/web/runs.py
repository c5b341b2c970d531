"""Import runs in the web app: the list, one run with its rejected rows, the CSV of those
rows, reverting a run (admins) and uploading a file to import (analysts).

Everything goes through :mod:`cbm.services.imports`, the same service as ``cbm import``
and the scheduler. An upload is imported synchronously within the request (its size is
capped by ``CBM_MAX_UPLOAD_MB``); the import commits per batch on sessions of its own, so
the page that follows shows the run as stored.
"""

from __future__ import annotations

import math
import re
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cbm import contract
from cbm.models import ImportRejection, ImportRun, Source, User
from cbm.queries.runs import parse_run_filters, run_conditions
from cbm.services.imports import (
    FAILED,
    INTERRUPTED,
    REJECTED,
    RUNNING,
    STATUSES,
    SUCCEEDED,
    SUCCEEDED_WITH_REJECTIONS,
    RevertRefused,
    mark_stale_runs,
    rejections_csv,
    revert_run,
    run_import,
)
from cbm.web.auth import current_actor, has_role, role_required
from cbm.web.database import db_session, web_state
from cbm.web.exports import export_response

bp = Blueprint("runs", __name__, url_prefix="/runs")

PER_PAGE = 25
REJECTIONS_PER_PAGE = 100
UPLOAD_TYPES = {".csv": "csv", ".xlsx": "xlsx", ".json": "json"}
#: What each status means, for people (the list's legend and the run page).
STATUS_TEXT = {
    RUNNING: "running",
    SUCCEEDED: "succeeded",
    SUCCEEDED_WITH_REJECTIONS: "succeeded with rejected rows",
    REJECTED: "rejected: nothing stored",
    FAILED: "failed",
    INTERRUPTED: "interrupted",
}
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f]")


def _page_arg(errors: dict[str, str], name: str = "page") -> int:
    raw = request.args.get(name, "").strip()
    if not raw:
        return 1
    if not raw.isdigit() or int(raw) < 1:
        errors[name] = f"'{raw[:20]}' is not a page number"
        return 1
    return int(raw)


def _status_counts(session: Session) -> dict[str, int]:
    return dict(
        session.execute(select(ImportRun.status, func.count()).group_by(ImportRun.status)).all()
    )


@bp.get("/")
def index() -> tuple[str, int]:
    """Every run, newest first, filtered by status, source and kind (all in the URL)."""
    session = db_session()
    mark_stale_runs(session)
    errors: dict[str, str] = {}
    parsed = parse_run_filters(request.args)
    values = parsed.values
    page = _page_arg(errors)
    errors.update(parsed.errors)
    stmt = select(ImportRun).where(*run_conditions(parsed))
    runs: list[ImportRun] = []
    total = pages = 0
    status = 200
    if errors:
        status = 400
    else:
        total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        pages = max(1, math.ceil(total / PER_PAGE))
        if page > pages and total:
            errors["page"] = f"there {'is' if pages == 1 else 'are'} only {pages} page(s)"
            status = 404
        else:
            runs = list(
                session.scalars(
                    stmt.order_by(ImportRun.id.desc()).limit(PER_PAGE).offset((page - 1) * PER_PAGE)
                )
            )
    sources = session.scalars(
        select(ImportRun.source_name)
        .where(ImportRun.source_name != "")
        .group_by(ImportRun.source_name)
        .order_by(ImportRun.source_name)
    ).all()
    kept = {k: v for k, v in values.items() if v and k not in errors}

    def page_url(number: int) -> str:
        return url_for("runs.index", **kept, page=number)

    return (
        render_template(
            "runs/index.html",
            runs=runs,
            total=total,
            page=page,
            pages=pages,
            page_url=page_url,
            values=values,
            errors=errors,
            filtered=bool(kept),
            statuses=STATUSES,
            status_text=STATUS_TEXT,
            sources=sources,
            kinds=list(contract.FILES),
            status_counts=_status_counts(session),
            csv_url=url_for("runs.export", **parsed.active),
        ),
        status,
    )


@bp.get("/export.csv")
def export() -> Response:
    """The runs of the list's filters (status, source, kind) as CSV, newest first, streamed
    and stamped (see :mod:`cbm.web.exports`)."""
    return export_response("runs", request.args)


def _get_run(run_id: int) -> ImportRun:
    run = db_session().get(ImportRun, run_id)
    if run is None:
        abort(404, f"There is no import run {run_id}. The list of imports shows every run.")
    return run


def _username(session: Session, user_id: int | None) -> str | None:
    if user_id is None:
        return None
    return session.scalar(select(User.username).where(User.id == user_id)) or f"user #{user_id}"


def _run_context(run: ImportRun) -> dict[str, Any]:
    session = db_session()
    source = session.get(Source, run.source_id) if run.source_id is not None else None
    return {
        "run": run,
        "status_text": STATUS_TEXT,
        "started_by": _username(session, run.user_id),
        "reverted_by": _username(session, run.reverted_by_id),
        "source": source,
        "can_revert": run.reverted_at is None and run.status != RUNNING,
    }


@bp.get("/<int:run_id>")
def run(run_id: int) -> tuple[str, int]:
    """One run: where from, when, counts, outcome, and its rejected rows (paged)."""
    run = _get_run(run_id)
    session = db_session()
    errors: dict[str, str] = {}
    page = _page_arg(errors)
    total = (
        session.scalar(
            select(func.count())
            .select_from(ImportRejection)
            .where(ImportRejection.run_id == run_id)
        )
        or 0
    )
    pages = max(1, math.ceil(total / REJECTIONS_PER_PAGE))
    status = 200
    if page > pages:
        errors["page"] = f"the rejected rows fill {pages} page(s)"
        page, status = pages, 404
    rejections = session.scalars(
        select(ImportRejection)
        .where(ImportRejection.run_id == run_id)
        .order_by(ImportRejection.id)
        .limit(REJECTIONS_PER_PAGE)
        .offset((page - 1) * REJECTIONS_PER_PAGE)
    ).all()
    if errors and status == 200:
        status = 400
    return (
        render_template(
            "runs/run.html",
            rejections=rejections,
            rejections_total=total,
            page=page,
            pages=pages,
            errors=errors,
            first_index=(page - 1) * REJECTIONS_PER_PAGE + 1,
            page_url=lambda n: url_for("runs.run", run_id=run_id, page=n) + "#rejected",
            audit_url=(
                url_for("admin.audit", actor=f"import run {run_id}") if has_role("admin") else None
            ),
            **_run_context(run),
        ),
        status,
    )


@bp.get("/<int:run_id>/rejections.csv")
def rejections(run_id: int) -> Response:
    """The run's rejected rows as CSV (row, column, value, reason, part), streamed."""
    _get_run(run_id)
    factory = web_state().session_factory

    def generate():
        session = factory()
        try:
            yield from rejections_csv(session, run_id)
        finally:
            session.close()

    # Not stream_with_context: the generator needs only the session factory, and a response
    # left unread must not keep this request's context (and its signed-in user) pushed.
    return Response(
        generate(),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="run-{run_id}-rejections.csv"',
            "Cache-Control": "no-store",
        },
    )


@bp.route("/<int:run_id>/revert", methods=["GET", "POST"])
@role_required("admin")
def revert(run_id: int) -> Any:
    """Confirm (GET), then revert (POST). A refusal explains itself (409); nothing changes."""
    run = _get_run(run_id)
    context = _run_context(run)
    if request.method == "GET":
        return render_template("runs/revert.html", refused=None, **context)
    try:
        result = revert_run(db_session(), run_id, current_actor())
    except RevertRefused as exc:
        lines = str(exc).splitlines()
        return (
            render_template(
                "runs/revert.html",
                refused=lines[0],
                refused_items=[line[2:] for line in lines[1:] if line.startswith("- ")],
                **context,
            ),
            409,
        )
    flash(
        f"Reverted import run {run_id}: {result.total_deleted:,} rows removed, "
        f"{result.total_restored:,} restored.",
        "success",
    )
    return redirect(url_for("runs.run", run_id=run_id), 303)


def _upload_form(
    values: dict[str, Any], errors: dict[str, str] | None = None, status: int = 200
) -> tuple[str, int]:
    return (
        render_template(
            "runs/upload.html",
            values=values,
            errors=errors or {},
            kinds=list(contract.FILES),
            titles={name: spec.title for name, spec in contract.FILES.items()},
            max_mb=current_app.config["CBM_SETTINGS"].max_upload_mb,
        ),
        status,
    )


def clean_filename(raw: str) -> str:
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    return _UNSAFE_NAME.sub("", name).strip()[:200]


@bp.route("/upload", methods=["GET", "POST"])
@role_required("analyst")
def upload() -> Any:
    """Import a CSV, XLSX or JSON file now, through the same service as ``cbm import``."""
    from importers.base import Payload

    values: dict[str, Any] = {"kind": "", "all_or_nothing": False}
    if request.method == "GET":
        return _upload_form(values)
    values = {
        "kind": request.form.get("kind", "").strip(),
        "all_or_nothing": request.form.get("all_or_nothing") in ("1", "on", "true"),
    }
    errors: dict[str, str] = {}
    file = request.files.get("file")
    name = clean_filename(file.filename or "") if file is not None else ""
    suffix = ("." + name.rsplit(".", 1)[-1].lower()) if "." in name else ""
    if file is None or not name:
        errors["file"] = "choose a file to import"
    elif suffix not in UPLOAD_TYPES:
        errors["file"] = f"'{name}' is not a CSV, XLSX or JSON file (by its name)"
    if values["kind"] and values["kind"] not in contract.FILES:
        errors["kind"] = f"'{values['kind'][:40]}' is not a kind of record"
    if errors:
        return _upload_form(values, errors, 422)
    assert file is not None
    content = file.read()
    # End this request's read transaction before the import writes on sessions of its own.
    db_session().commit()
    result = run_import(
        web_state().session_factory,
        [Payload(name=name, content=content, media_type=file.mimetype or None)],
        importer=UPLOAD_TYPES[suffix],
        kind=values["kind"] or None,
        all_or_nothing=values["all_or_nothing"],
        source_name="web upload",
        location=f"upload: {name}",
        user_id=current_user.id,
    )
    outcome = result.runs[0]
    counts = (
        f"{outcome.read:,} rows read, {outcome.inserted:,} inserted, {outcome.updated:,} "
        f"updated, {outcome.unchanged:,} unchanged, {outcome.rejected:,} rejected"
    )
    if outcome.status == SUCCEEDED:
        flash(f"Imported {name}: {counts}.", "success")
    elif outcome.status == SUCCEEDED_WITH_REJECTIONS:
        flash(f"Imported {name} with rejected rows: {counts}. They are listed below.", "warning")
    elif outcome.status == REJECTED:
        flash(f"Nothing imported from {name}: {counts}. {outcome.message}.", "error")
    else:
        flash(f"The import of {name} failed: {outcome.message}", "error")
    return redirect(url_for("runs.run", run_id=outcome.run_id), 303)
