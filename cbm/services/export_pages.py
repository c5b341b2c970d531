"""Export jobs of the list pages beside the records, runs, audit, findings and sources:
users (``/admin/users``), rules (``/rules``), check runs (``/checks``), deadlines
(``/deadlines``) and scheduled jobs (``/admin/jobs``). Registered in
:func:`cbm.services.export_lists.build_job`, so the pages' downloads and ``cbm export``
reach them the same way; each reads its filters with the page's own parser.

Users, check runs: SELECTs streamed in chunks. Rules, deadlines, jobs: lists computed from
the catalogue, the reference data or the registry (a few hundred rows at most), built once
in the export's snapshot; their data version is a digest of the rows (it changes exactly
when a row does). Never exported: password hashes, calendar-feed tokens, API tokens.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cbm.models import CheckRun, User
from cbm.services.export_lists import (
    Chunks,
    ExportFilterError,
    ExportJob,
    _chunks,
    _latest,
    _text,
)

USER_COLUMNS: tuple[str, ...] = (
    "username",
    "display_name",
    "role",
    "status",
    "created_at",
    "last_login_at",
)
CHECK_COLUMNS: tuple[str, ...] = (
    "check_id",
    "trigger",
    "status",
    "started_at",
    "finished_at",
    "started_by",
    "scope",
    "as_of",
    "rules_evaluated",
    "findings_detected",
    "findings_new",
    "findings_updated",
    "findings_reopened",
    "findings_resolved",
    "seconds",
    "message",
)
DEADLINE_COLUMNS: tuple[str, ...] = (
    "due_at",
    "state",
    "regime",
    "what",
    "citation",
    "status",
    "rule_id",
    "counterpart",
    "subject_type",
    "subject_id",
    "uid",
)
JOB_COLUMNS: tuple[str, ...] = (
    "job_id",
    "title",
    "when",
    "enabled",
    "last_status",
    "last_started_at",
    "last_finished_at",
    "last_message",
    "failures_7d",
    "last_failure_at",
)


def _fixed(
    kind: str, filters: dict[str, str], columns: tuple[str, ...], rows: list[list[str]]
) -> ExportJob:
    """A job over rows already computed (in the export's snapshot)."""
    digest = hashlib.sha256(
        json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    ).hexdigest()[:16]

    def chunks(s: Session, chunk_size: int) -> Chunks:
        for start in range(0, len(rows), chunk_size):
            yield rows[start : start + chunk_size]

    return ExportJob(kind, filters, columns, chunks, lambda s: len(rows), lambda s: digest)


def _compact(value: Any) -> str:
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


# -- users -----------------------------------------------------------------------------


def users_job(session: Session, args: Mapping[str, str]) -> ExportJob:
    """Accounts by username with the Users page's filters (role, status); no secrets."""
    from cbm.queries.choices import USER_FILTERS, parse_choices

    parsed = parse_choices(args, USER_FILTERS)
    if parsed.errors:
        raise ExportFilterError(parsed.errors)
    where = user_conditions(parsed.active)
    u = User
    stmt = (
        select(u.username, u.display_name, u.role, u.active, u.created_at, u.last_login_at)
        .where(*where)
        .order_by(u.username)
    )

    def row(r: Any) -> list[str]:
        return [
            r.username,
            r.display_name or "",
            r.role,
            "active" if r.active else "disabled",
            _text(r.created_at),
            _text(r.last_login_at),
        ]

    def version(s: Session) -> str:
        n, created, login = s.execute(
            select(func.count(), func.max(u.created_at), func.max(u.last_login_at))
        ).one()
        # Role and status changes write audit events; so does every account change.
        from cbm.models import AuditEvent

        changed = s.scalar(select(func.max(AuditEvent.id)).where(AuditEvent.entity_type == "users"))
        known = [t for t in (created, login) if t is not None]
        return f"{n};{_latest(max(known) if known else None)};{changed or 0}"

    return ExportJob(
        "users",
        parsed.active,
        USER_COLUMNS,
        lambda s, size: _chunks(s, stmt, size, row),
        lambda s: s.scalar(select(func.count()).select_from(u).where(*where)) or 0,
        version,
    )


def user_conditions(active: Mapping[str, str]) -> list[Any]:
    """The WHERE conditions of the Users page's filters (shared with its export)."""
    where: list[Any] = []
    if "role" in active:
        where.append(User.role == active["role"])
    if "status" in active:
        where.append(User.active.is_(active["status"] == "active"))
    return where


# -- check runs ------------------------------------------------------------------------


def checks_job(session: Session, args: Mapping[str, str]) -> ExportJob:
    """Compliance check runs, newest first, with the Checks page's filter (status)."""
    from cbm.queries.choices import CHECK_FILTERS, parse_choices

    parsed = parse_choices(args, CHECK_FILTERS)
    if parsed.errors:
        raise ExportFilterError(parsed.errors)
    where = check_conditions(parsed.active)
    c = CheckRun
    stmt = (
        select(
            c.id,
            c.trigger,
            c.status,
            c.started_at,
            c.finished_at,
            User.username,
            c.scope,
            c.as_of,
            c.rules_evaluated,
            c.findings_detected,
            c.findings_new,
            c.findings_updated,
            c.findings_reopened,
            c.findings_resolved,
            c.seconds,
            c.message,
        )
        .outerjoin(User, User.id == c.user_id)
        .where(*where)
        .order_by(c.id.desc())
    )

    def row(r: Sequence[Any]) -> list[str]:
        cells = [_text(v) for v in r]
        cells[6] = _compact(r[6])
        return cells

    def version(s: Session) -> str:
        top, started, finished = s.execute(
            select(func.max(c.id), func.max(c.started_at), func.max(c.finished_at))
        ).one()
        known = [t for t in (started, finished) if t is not None]
        return f"{top or 0};{_latest(max(known) if known else None)}"

    return ExportJob(
        "checks",
        parsed.active,
        CHECK_COLUMNS,
        lambda s, size: _chunks(s, stmt, size, row),
        lambda s: s.scalar(select(func.count()).select_from(c).where(*where)) or 0,
        version,
    )


def check_conditions(active: Mapping[str, str]) -> list[Any]:
    """The WHERE conditions of the Checks page's filter (shared with its export)."""
    return [CheckRun.status == active["status"]] if "status" in active else []


# -- rules -----------------------------------------------------------------------------


def rule_rows(session: Session, regime: str | None = None) -> list[Any]:
    """The rules of the catalogue (of ``regime``), in catalogue order: what the Rules page
    lists and its export writes."""
    from cbm.compliance.registry import all_rules

    return [r for r in all_rules().values() if regime is None or r.regime == regime]


def rules_job(session: Session, args: Mapping[str, str]) -> ExportJob:
    """The rule catalogue with the Rules page's filter (regime), by rule id: citation,
    source status, severity, parameters (``key=value`` of the reference data) and the
    findings per status."""
    from cbm.compliance.registry import EDITIONS, STATUSES
    from cbm.models import Finding, RuleParameter
    from cbm.queries.choices import parse_choices, rule_filters

    parsed = parse_choices(args, rule_filters())
    if parsed.errors:
        raise ExportFilterError(parsed.errors)
    rules = sorted(rule_rows(session, parsed.active.get("regime")), key=lambda r: r.id)
    params = {
        (p.regime, p.key): p.value
        for p in session.scalars(select(RuleParameter))
        if EDITIONS.get(p.regime) == p.edition
    }
    counts = dict(
        ((rule_id, status), n)
        for rule_id, status, n in session.execute(
            select(Finding.rule_id, Finding.status, func.count()).group_by(
                Finding.rule_id, Finding.status
            )
        )
    )
    columns = (
        "rule_id",
        "regime",
        "title",
        "citation",
        "source_status",
        "severity",
        "subject_type",
        "requirement",
        "absence",
        "signal",
        "parameters",
        *(f"findings_{s}" for s in STATUSES),
    )
    rows = [
        [
            r.id,
            r.regime,
            r.title,
            r.citation,
            r.source_status,
            r.severity,
            r.subject_type,
            r.requirement,
            _text(r.absence),
            _text(r.signal),
            "; ".join(f"{k}={params.get((r.param_regime, k), '')}" for k in r.params),
            *(str(counts.get((r.id, s), 0)) for s in STATUSES),
        ]
        for r in rules
    ]
    return _fixed("rules", parsed.active, columns, rows)


# -- deadlines -------------------------------------------------------------------------


def deadlines_job(session: Session, args: Mapping[str, str]) -> ExportJob:
    """What is due in the Deadlines page's window (``from``, default today UTC; ``days``;
    ``state``), by due time, State and text, as the page and the calendar feed list it.
    The window is stamped as resolved (``from`` always a date)."""
    from cbm.compliance import deadlines as dl

    values, errors = dl.parse_window(session, args)
    if errors:
        raise ExportFilterError(errors)
    filters = {"from": values["start"].isoformat(), "days": str(values["days"])}
    if values["state"]:
        filters["state"] = values["state"]
    items = dl.upcoming(
        session,
        start=values["start"],
        days=values["days"],
        states=[values["state"]] if values["state"] else None,
    )
    rows = [
        [
            _text(d.due_at.astimezone(dt.UTC)),
            d.state,
            d.regime,
            d.what,
            d.citation,
            d.status,
            d.rule_id or "",
            d.counterpart or "",
            d.subject_type or "",
            d.subject_id or "",
            d.uid,
        ]
        for d in items
    ]
    return _fixed("deadlines", filters, DEADLINE_COLUMNS, rows)


# -- scheduled jobs --------------------------------------------------------------------


def jobs_job(session: Session, args: Mapping[str, str]) -> ExportJob:
    """The jobs table of ``/admin/jobs`` (no filters): how each job runs, its last run and
    its failures of the last 7 days. The next run time is left out: it moves with the clock,
    not the data."""
    from cbm.db import utcnow
    from cbm.queries.jobs import job_rows

    rows = [
        [
            r.job_id,
            r.title,
            r.when,
            _text(r.enabled),
            r.last.status if r.last else "",
            _text(r.last.started_at) if r.last else "",
            _text(r.last.finished_at) if r.last else "",
            (r.last.message or "") if r.last else "",
            str(r.failures),
            _text(r.last_failure.started_at) if r.last_failure else "",
        ]
        for r in job_rows(session, utcnow())
    ]
    return _fixed("jobs", {}, JOB_COLUMNS, rows)


BUILDERS = {
    "users": users_job,
    "checks": checks_job,
    "rules": rules_job,
    "deadlines": deadlines_job,
    "jobs": jobs_job,
}
FILTERS: dict[str, tuple[str, ...]] = {
    "users": ("role", "status"),
    "checks": ("status",),
    "rules": ("regime",),
    "deadlines": ("from", "days", "state"),
    "jobs": (),
}
