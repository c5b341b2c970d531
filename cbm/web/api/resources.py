"""Findings, trust scores, rules, import runs and sources over the API.

Each reads through the service or query its page uses, with the page's filters and
messages: findings through :class:`cbm.services.findings.FindingFilters` and the analyst
actions, trust scores and import runs through the export jobs of
:mod:`cbm.services.export_lists` (the same SELECT, paged), rules from the registry,
sources through :mod:`cbm.services.sources`. What the engine derives (findings, scores)
is not created or deleted by hand: findings change status through the analysts' actions,
import runs are created by an upload and undone by a revert.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

from flask import Response, jsonify, request, url_for
from sqlalchemy import func, select

from cbm import contract
from cbm.models import Finding, ImportRun, Source
from cbm.services import findings as findings_service
from cbm.services import sources as sources_service
from cbm.services.export_lists import ExportFilterError, build_job
from cbm.services.exports import format_timestamp
from cbm.web.api import (
    Problem,
    actor,
    api_role,
    bp,
    filter_problem,
    identity,
    json_body,
    page_links,
    query_args,
)
from cbm.web.database import db_session, web_state

PER_PAGE_DEFAULT = 50
#: Ids above this exist nowhere (and would overflow the database's integer).
MAX_ID = 2_147_483_647
PER_PAGE_MAX = 200


def json_value(value: Any) -> Any:
    """A stored value as JSON: timestamps UTC with Z, dates ISO, the rest as they are."""
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def paging() -> tuple[int, int]:
    """``page`` (from 1) and ``per_page`` (1 to 200) from the query string; 400 otherwise."""
    args = query_args()
    errors: dict[str, str] = {}
    page, per_page = 1, PER_PAGE_DEFAULT
    raw = (args.get("page") or "").strip()
    if raw:
        if raw.isascii() and raw.isdigit() and 1 <= int(raw) <= 10_000_000:
            page = int(raw)
        else:
            errors["page"] = f"'{raw[:20]}' is not a page number; pages are numbered from 1"
    raw = (args.get("per_page") or "").strip()
    if raw:
        if raw.isascii() and raw.isdigit() and 1 <= int(raw) <= PER_PAGE_MAX:
            per_page = int(raw)
        else:
            errors["per_page"] = f"'{raw[:20]}' is not a page size; choose 1 to {PER_PAGE_MAX}"
    if errors:
        raise filter_problem(errors)
    return page, per_page


def page_body(items: Sequence[Any], total: int, page: int, per_page: int) -> dict[str, Any]:
    pages = max(1, math.ceil(total / per_page))
    links = page_links(page, pages)
    return {
        "items": list(items),
        "total": total,
        "page": page,
        "per_page": per_page,
        "pages": pages,
        "links": links,
    }


def _job(kind: str, args: Mapping[str, str]) -> Any:
    try:
        return build_job(db_session(), kind, args)
    except ExportFilterError as exc:
        raise filter_problem(exc.errors) from None


def _paged_job(kind: str) -> Response:
    """A list whose filters and SELECT are an export job's, one page of it."""
    page, per_page = paging()
    session = db_session()
    job = _job(kind, query_args())
    total = job.count(session)
    stmt = job.statement.limit(per_page).offset((page - 1) * per_page)
    items = [
        {c: json_value(v) for c, v in zip(job.columns, job.redacted(row), strict=True)}
        for row in session.execute(stmt)
    ]
    return jsonify(page_body(items, total, page, per_page))


# -- findings ------------------------------------------------------------------------------

FINDING_FIELDS = (
    "id",
    "rule_id",
    "regime",
    "severity",
    "status",
    "state",
    "counterpart",
    "subject_type",
    "subject_id",
    "period",
    "due_at",
    "first_detected_at",
    "last_detected_at",
    "resolved_at",
    "summary",
    "comment",
    "evidence",
)


def finding_json(finding: Finding) -> dict[str, Any]:
    from cbm.compliance.registry import all_rules

    out = {name: json_value(getattr(finding, name)) for name in FINDING_FIELDS}
    rule = all_rules().get(finding.rule_id)
    out["citation"] = rule.citation if rule else None
    out["actions"] = findings_service.allowed_actions(finding.status)
    out["_url"] = url_for("api.get_finding", finding_id=finding.id)
    return out


@bp.get("/findings")
@api_role("viewer")
def list_findings() -> Response:
    page, per_page = paging()
    session = db_session()
    try:
        filters = findings_service.FindingFilters.from_mapping(session, query_args())
    except findings_service.FilterError as exc:
        raise filter_problem(exc.errors) from None
    found = findings_service.page_findings(session, filters, page=page, per_page=per_page)
    items = [finding_json(f) for f in found.rows]
    return jsonify(page_body(items, found.total, page, per_page))


def _finding(finding_id: int) -> Finding:
    finding = db_session().get(Finding, finding_id) if finding_id <= MAX_ID else None
    if finding is None:
        raise Problem(404, f"There is no finding {finding_id}.")
    return finding


@bp.get("/findings/<int:finding_id>")
@api_role("viewer")
def get_finding(finding_id: int) -> Response:
    return jsonify(finding_json(_finding(finding_id)))


@bp.patch("/findings/<int:finding_id>")
@api_role("analyst")
def update_finding(finding_id: int) -> Response:
    """An analyst's action: ``{"action": "acknowledge"|"dispute"|"reopen", "comment": …}``."""
    body = json_body()
    unknown = sorted(set(body) - {"action", "comment"})
    if unknown:
        raise Problem(422, f"unknown member(s): {', '.join(unknown)[:200]}; send action, comment")
    action = body.get("action")
    if action not in findings_service.ACTIONS:
        raise Problem(
            422,
            "action is one of: " + ", ".join(findings_service.ACTIONS),
            errors=[{"field": "action", "message": "acknowledge, dispute or reopen"}],
        )
    comment = body.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise Problem(422, "comment must be a string")
    _finding(finding_id)
    try:
        finding = findings_service.ACTIONS[action](
            db_session(), finding_id, identity().user_id, comment or ""
        )
    except findings_service.FindingActionError as exc:
        raise Problem(409, str(exc), title="The action was refused") from None
    return jsonify(finding_json(finding))


# -- trust scores --------------------------------------------------------------------------


@bp.get("/trust_scores")
@api_role("viewer")
def list_trust_scores() -> Response:
    return _paged_job("trust_scores")


# -- rules ---------------------------------------------------------------------------------


RULE_FIELDS = (
    "id",
    "regime",
    "title",
    "citation",
    "source_status",
    "severity",
    "subject_type",
    "requirement",
    "params",
    "absence",
    "signal",
)


def rule_json(rule: Any) -> dict[str, Any]:
    out = {name: getattr(rule, name) for name in RULE_FIELDS}
    out["params"] = list(rule.params)
    out["_url"] = url_for("api.get_rule", rule_id=rule.id)
    return out


@bp.get("/rules")
@api_role("viewer")
def list_rules() -> Response:
    from cbm.compliance.registry import all_rules

    regime = (query_args().get("regime") or "").strip().upper()
    rules = list(all_rules().values())
    known = sorted({r.regime for r in rules})
    if regime and regime not in known:
        raise filter_problem({"regime": f"'{regime[:20]}' is not a regime; choose {known}"})
    chosen = [rule_json(r) for r in rules if not regime or r.regime == regime]
    return jsonify(items=chosen, total=len(chosen))


@bp.get("/rules/<rule_id>")
@api_role("viewer")
def get_rule(rule_id: str) -> Response:
    from cbm.compliance.registry import all_rules

    rule = all_rules().get(rule_id)
    if rule is None:
        raise Problem(404, f"There is no rule '{rule_id[:60]}' in the catalogue.")
    return jsonify(rule_json(rule))


# -- import runs ---------------------------------------------------------------------------


@bp.get("/runs")
@api_role("viewer")
def list_runs() -> Response:
    return _paged_job("runs")


@bp.get("/runs/<int:run_id>")
@api_role("viewer")
def get_run(run_id: int) -> Response:
    job = _job("runs", {})
    row = (
        db_session().execute(job.statement.where(ImportRun.id == run_id)).first()
        if run_id <= MAX_ID
        else None
    )
    if row is None:
        raise Problem(404, f"There is no import run {run_id}.")
    return jsonify({c: json_value(v) for c, v in zip(job.columns, job.redacted(row), strict=True)})


@bp.post("/runs")
@api_role("analyst")
def create_run() -> Response:
    """Import a file now (multipart ``file``, optional ``kind`` and ``all_or_nothing``),
    through the same service as ``cbm import`` and the upload page."""
    from cbm.services.imports import run_import
    from cbm.web.runs import UPLOAD_TYPES, clean_filename
    from importers.base import Payload

    file = request.files.get("file")
    name = clean_filename(file.filename or "") if file is not None else ""
    suffix = ("." + name.rsplit(".", 1)[-1].lower()) if "." in name else ""
    kind = (request.form.get("kind") or "").strip() or None
    all_or_nothing = (request.form.get("all_or_nothing") or "").lower() in ("1", "true", "on")
    errors = {}
    if file is None or not name:
        errors["file"] = "send the file to import as the multipart field 'file'"
    elif suffix not in UPLOAD_TYPES:
        errors["file"] = f"'{name}' is not a CSV, XLSX or JSON file (by its name)"
    if kind and kind not in contract.FILES:
        errors["kind"] = f"'{kind[:40]}' is not a kind of record"
    if errors:
        raise Problem(
            422,
            next(iter(errors.values())),
            errors=[{"field": k, "message": v} for k, v in errors.items()],
        )
    assert file is not None
    content = file.read()
    db_session().commit()  # the import writes on sessions of its own
    result = run_import(
        web_state().session_factory,
        [Payload(name=name, content=content, media_type=file.mimetype or None)],
        importer=UPLOAD_TYPES[suffix],
        kind=kind,
        all_or_nothing=all_or_nothing,
        source_name="api upload",
        location=f"api upload: {name}",
        user_id=identity().user_id,
    )
    run_id = result.runs[0].run_id
    response = get_run(run_id)
    response.status_code = 201
    response.headers["Location"] = url_for("api.get_run", run_id=run_id)
    return response


@bp.post("/runs/<int:run_id>/revert")
@api_role("admin")
def revert_run(run_id: int) -> Response:
    from cbm.services.imports import RevertRefused
    from cbm.services.imports import revert_run as revert

    if run_id > MAX_ID or db_session().get(ImportRun, run_id) is None:
        raise Problem(404, f"There is no import run {run_id}.")
    try:
        revert(db_session(), run_id, actor())
    except RevertRefused as exc:
        raise Problem(409, str(exc), title="The revert was refused") from None
    return get_run(run_id)


# -- sources -------------------------------------------------------------------------------

SOURCE_FIELDS = (
    "name",
    "importer",
    "kind",
    "location",
    "schedule",
    "enabled",
    "all_or_nothing",
    "created_at",
    "updated_at",
    "last_success_at",
    "last_error",
)
SOURCE_WRITABLE = {
    "location": str,
    "importer": str,
    "kind": (str, type(None)),
    "schedule": str,
    "enabled": bool,
    "all_or_nothing": bool,
}


def source_json(source: Source) -> dict[str, Any]:
    out: dict[str, Any] = {"id": source.id}
    out.update({name: json_value(getattr(source, name)) for name in SOURCE_FIELDS})
    out["_url"] = url_for("api.get_source", source_id=source.id)
    return out


def _source(source_id: int) -> Source:
    source = db_session().get(Source, source_id) if source_id <= MAX_ID else None
    if source is None:
        raise Problem(404, f"There is no source {source_id}.")
    return source


def _source_values(body: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    allowed = {**SOURCE_WRITABLE, **({"name": str} if creating else {})}
    errors = []
    for name, value in body.items():
        if name not in allowed:
            errors.append({"field": name, "message": f"'{name[:60]}' cannot be set"})
        elif not isinstance(value, allowed[name]):
            errors.append({"field": name, "message": f"{name} has the wrong type"})
    if creating:
        errors.extend(
            {"field": name, "message": f"{name} is required"}
            for name in ("name", "location")
            if name not in body
        )
    if errors:
        raise Problem(422, errors[0]["message"], errors=errors)
    return dict(body)


def _source_error(exc: sources_service.SourceError) -> Problem:
    field = getattr(exc, "field", None)
    return Problem(422, str(exc), errors=[{"field": field, "message": str(exc)}])


@bp.get("/sources")
@api_role("admin")
def list_sources() -> Response:
    page, per_page = paging()
    session = db_session()
    total = session.scalar(select(func.count()).select_from(Source)) or 0
    stmt = select(Source).order_by(Source.name, Source.id)
    rows = session.scalars(stmt.limit(per_page).offset((page - 1) * per_page))
    items = [source_json(s) for s in rows]
    return jsonify(page_body(items, total, page, per_page))


@bp.get("/sources/<int:source_id>")
@api_role("admin")
def get_source(source_id: int) -> Response:
    return jsonify(source_json(_source(source_id)))


@bp.post("/sources")
@api_role("admin")
def create_source() -> Response:
    values = _source_values(json_body(), creating=True)
    try:
        source = sources_service.add_source(
            db_session(), values.pop("name"), values.pop("location"), actor=actor(), **values
        )
    except sources_service.SourceError as exc:
        raise _source_error(exc) from None
    response = jsonify(source_json(source))
    response.status_code = 201
    response.headers["Location"] = url_for("api.get_source", source_id=source.id)
    return response


@bp.patch("/sources/<int:source_id>")
@api_role("admin")
def update_source(source_id: int) -> Response:
    source = _source(source_id)
    values = _source_values(json_body(), creating=False)
    try:
        source = sources_service.update_source(db_session(), source.name, actor=actor(), **values)
    except sources_service.SourceError as exc:
        raise _source_error(exc) from None
    return jsonify(source_json(source))


@bp.delete("/sources/<int:source_id>")
@api_role("admin")
def delete_source(source_id: int) -> Response:
    source = _source(source_id)
    try:
        sources_service.remove_source(db_session(), source.name, actor=actor())
    except sources_service.SourceError as exc:
        raise Problem(409, str(exc), title="The source is in use") from None
    return Response(status=204)
