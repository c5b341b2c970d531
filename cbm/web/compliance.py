"""The compliance engine in the web app: rules, findings, check runs and deadlines.

Four small blueprints (so the navigation marks the right one as current), one module:

- ``rules``: the catalogue (``/rules``) and one rule with its parameters, the periods its
  last check covered and its recent findings (``/rules/<rule_id>``);
- ``findings``: the filtered list (``/findings``), its CSV (``/findings.csv``, the same
  service as ``cbm export findings``), one finding with evidence, records and history, and
  the analyst's acknowledge / dispute / reopen (POST);
- ``checks``: the check runs, one run's coverage, and "run a check now" (POST, analysts);
- ``deadlines``: what is due in the next days (``/deadlines``) and the same as an
  iCalendar feed (``/deadlines.ics``), which a calendar client reads with the personal
  token in its URL instead of a session.

Everything reads and writes through :mod:`cbm.services.findings`,
:mod:`cbm.compliance.engine` and :mod:`cbm.compliance.deadlines`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

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

from cbm.compliance import deadlines as dl
from cbm.models import Activity, CheckRun, Finding, FindingEvent, Notification, RuleParameter, User
from cbm.services import findings as svc
from cbm.services.findings import FilterError, FindingActionError, FindingFilters, FindingNotFound
from cbm.web.auth import feed_token_auth, has_role, role_required
from cbm.web.database import db_session, web_state

rules_bp = Blueprint("rules", __name__)
findings_bp = Blueprint("findings", __name__)
checks_bp = Blueprint("checks", __name__)
deadlines_bp = Blueprint("deadlines", __name__)
BLUEPRINTS = (findings_bp, rules_bp, deadlines_bp, checks_bp)
#: Navigation entries, in order (endpoint, label).
NAV = (
    ("findings.index", "Findings"),
    ("rules.index", "Rules"),
    ("deadlines.index", "Deadlines"),
    ("checks.index", "Checks"),
)

PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
CHECKS_PER_PAGE = 25
RECENT_FINDINGS = 20
SEVERITY_TEXT = {
    "breach": "breach",
    "late": "late",
    "warning": "warning",
    "info": "info",
    "positive": "positive",
}
SOURCE_STATUS_TEXT = {"verified": "verified", "commonly_cited": "commonly cited"}
EVENT_TEXT = {
    "detected": "Detected",
    "changed": "Changed",
    "resolved": "Resolved",
    "reopened": "Detected again (reopened)",
    "acknowledged": "Acknowledged",
    "disputed": "Disputed",
    "reopened_by_analyst": "Reopened by an analyst",
}
ACTION_TEXT = {
    "acknowledge": ("Acknowledge", "acknowledged"),
    "dispute": ("Dispute", "disputed"),
    "reopen": ("Reopen", "reopened"),
}
#: Contract file of each subject type, and evidence keys that name records.
SUBJECT_KINDS = {
    "notification": "notifications",
    "activity": "activities",
    "inspection": "inspections",
    "observation_flight": "observation_flights",
    "holding": "holdings",
    "reduction": "reductions",
}
EVIDENCE_REFERENCES = {
    "activity_id": "activities",
    "activities": "activities",
    "inspection_id": "inspections",
    "flight_id": "observation_flights",
    "reduction_id": "reductions",
    "notification": "notifications",
    "submission": "notifications",
    "request": "notifications",
    "reply_reference": "notifications",
    "forecast": "notifications",
    "observation_invitation": "notifications",
    "reference": "notifications",
}


# --------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------


def _registry() -> dict[str, Any]:
    from cbm.compliance.registry import all_rules

    return all_rules()


def _regime_names() -> dict[str, str]:
    from cbm.compliance.registry import REGIME_NAMES

    return REGIME_NAMES


def _state_names(session: Session) -> dict[str, str]:
    from cbm.queries.records import state_names

    return state_names(session)


def _with_query(url: str, values: Mapping[str, Any]) -> str:
    values = {k: v for k, v in values.items() if v not in (None, "")}
    return f"{url}?{urlencode(values)}" if values else url


def _usernames(session: Session, ids: set[int | None]) -> dict[int, str]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    rows = session.execute(
        select(User.id, User.username, User.display_name).where(User.id.in_(wanted))
    )
    return {uid: (display or name) for uid, name, display in rows}


def _record_url(kind: str, parts: list[str]) -> str:
    from cbm.web.records import encode_key

    return url_for("records.record", kind=kind, key=encode_key(parts))


def _parameters(session: Session, rules: Mapping[str, Any]) -> dict[tuple[str, str], Any]:
    """Every parameter the rules name, by (regime, key), from their regime's edition."""
    from cbm.compliance.registry import EDITIONS

    wanted = {(r.param_regime, k) for r in rules.values() for k in r.params}
    regimes = {regime for regime, _ in wanted}
    out: dict[tuple[str, str], Any] = {}
    for regime in regimes:
        edition = EDITIONS.get(regime)
        stmt = select(RuleParameter).where(
            RuleParameter.regime == regime, RuleParameter.edition == edition
        )
        for p in db_session().scalars(stmt):
            if (regime, p.key) in wanted:
                out[(regime, p.key)] = p
    return out


def _latest_run(session: Session) -> CheckRun | None:
    return session.scalar(select(CheckRun).order_by(CheckRun.id.desc()).limit(1))


def _page_arg(errors: dict[str, str], raw: str | None) -> int:
    raw = (raw or "").strip()
    if not raw:
        return 1
    if not raw.isdigit() or int(raw) < 1:
        errors["page"] = f"'{raw[:20]}' is not a page number"
        return 1
    return int(raw)


def scope_text(scope: Mapping[str, Any] | None) -> str:
    """A check run's scope for people: "all regimes; all States" or what was chosen."""
    scope = scope or {}
    parts = [
        f"regimes {', '.join(scope['regimes'])}" if scope.get("regimes") else "all regimes",
        f"States {', '.join(scope['states'])}" if scope.get("states") else "all States",
    ]
    if scope.get("from") or scope.get("to"):
        parts.append(f"due {scope.get('from') or '…'} to {scope.get('to') or '…'}")
    if scope.get("rules"):
        parts.append(f"rules {', '.join(scope['rules'])}")
    return "; ".join(parts)


def _common() -> dict[str, Any]:
    return {
        "severity_text": SEVERITY_TEXT,
        "source_status_text": SOURCE_STATUS_TEXT,
        "regime_names": _regime_names(),
        "scope_text": scope_text,
    }


# --------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------


@rules_bp.get("/rules", endpoint="index")
def rules_index() -> tuple[str, int]:
    """Every rule (of ``regime``) grouped by regime, with its parameters and finding counts
    per status."""
    from cbm.compliance.registry import STATUSES
    from cbm.queries.choices import parse_choices, rule_filters
    from cbm.services.export_pages import rule_rows

    session = db_session()
    parsed = parse_choices(request.args, rule_filters())
    rules = {r.id: r for r in rule_rows(session, parsed.active.get("regime"))} if parsed.ok else {}
    counts = svc.count_by(session, FindingFilters(), Finding.rule_id, Finding.status)
    groups: dict[str, list[Any]] = {}
    for r in rules.values():
        groups.setdefault(r.regime, []).append(r)
    order = list(_regime_names())
    grouped = sorted(groups.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99)
    return render_template(
        "compliance/rules.html",
        grouped=grouped,
        params=_parameters(session, rules),
        counts=counts,
        statuses=STATUSES,
        total_rules=len(rules),
        values=parsed.values,
        errors=parsed.errors,
        regimes=rule_filters()["regime"],
        csv_url=url_for("rules.csv", **parsed.active),
        **_common(),
    ), (200 if parsed.ok else 400)


@rules_bp.get("/rules.csv", endpoint="csv")
def rules_csv() -> Response:
    """The rule catalogue with the page's filter (``format=csv|xlsx|json``)."""
    from cbm.web.exports import export_response

    return export_response("rules", request.args)


def _coverage_for(session: Session, rule_id: str) -> tuple[CheckRun | None, dict | None]:
    """The latest successful check run that evaluated ``rule_id`` and its coverage entry."""
    stmt = (
        select(CheckRun)
        .where(CheckRun.status == "succeeded")
        .order_by(CheckRun.id.desc())
        .limit(50)
    )
    for run in session.scalars(stmt):
        coverage = run.coverage or {}
        if rule_id in coverage:
            return run, coverage[rule_id]
        scope = run.scope or {}
        if not scope.get("regimes") and not scope.get("rules"):
            return run, None  # a full run: the rule was evaluated and records no coverage
    return None, None


@rules_bp.get("/rules/<rule_id>")
def rule(rule_id: str) -> str:
    """One rule: requirement, parameters, coverage of the last check, recent findings."""
    from cbm.compliance.registry import STATUSES

    rules = _registry()
    r = rules.get(rule_id)
    if r is None:
        abort(404, f"There is no rule '{rule_id[:40]}'. The rule catalogue lists every rule.")
    session = db_session()
    filters = FindingFilters(rule_id=r.id)
    recent = list(session.scalars(svc.query_findings(filters).limit(RECENT_FINDINGS)))
    run, coverage = _coverage_for(session, r.id)
    return render_template(
        "compliance/rule.html",
        rule=r,
        params=_parameters(session, {r.id: r}),
        counts=svc.count_by(session, filters, Finding.status),
        total=svc.count_findings(session, filters),
        statuses=STATUSES,
        recent=recent,
        run=run,
        coverage=coverage,
        states=_state_names(session),
        **_common(),
    )


# --------------------------------------------------------------------------------------
# Findings
# --------------------------------------------------------------------------------------


@findings_bp.get("/findings", endpoint="index")
def findings_index() -> tuple[str, int]:
    """Findings with filters (all in the URL), severity counts and pages."""
    from cbm.compliance.registry import SEVERITIES, STATUSES

    session = db_session()
    args = {k: v for k, v in request.args.items() if v.strip()}
    errors: dict[str, str] = {}
    filters = FindingFilters()
    try:
        filters = FindingFilters.from_mapping(session, args)
    except FilterError as exc:
        errors.update(exc.errors)
    page_no = _page_arg(errors, args.get("page"))
    per_page = DEFAULT_PAGE_SIZE
    if args.get("per_page"):
        if args["per_page"].isdigit() and int(args["per_page"]) in PAGE_SIZES:
            per_page = int(args["per_page"])
        else:
            errors["per_page"] = (
                f"'{args['per_page'][:20]}' is not a page size; choose one of "
                f"{', '.join(map(str, PAGE_SIZES))}"
            )
    page = None
    severity_counts: dict[str, int] = {}
    status = 200
    if errors:
        status = 400
    else:
        page = svc.page_findings(session, filters, page=page_no, per_page=per_page)
        severity_counts = svc.count_by(session, filters, Finding.severity)
        if page.out_of_range:
            status = 404
    kept = {**filters.as_query_args()}
    if per_page != DEFAULT_PAGE_SIZE:
        kept["per_page"] = str(per_page)

    def list_url(**changes: Any) -> str:
        merged = dict(kept)
        for name, value in changes.items():
            if value in (None, ""):
                merged.pop(name, None)
            else:
                merged[name] = str(value)
        return _with_query(url_for("findings.index"), merged)

    any_run = _latest_run(session) is not None
    return (
        render_template(
            "compliance/findings.html",
            page=page,
            filters=filters,
            args=args,
            errors=errors,
            list_url=list_url,
            csv_url=_with_query(url_for("findings.csv"), filters.as_query_args()),
            clear_url=url_for("findings.index"),
            severity_counts=severity_counts,
            any_run=any_run,
            stored=(page is not None and page.total > 0)
            or bool(session.scalar(select(func.count()).select_from(Finding))),
            rules=_registry(),
            severities=SEVERITIES,
            statuses=STATUSES,
            states=_state_names(session),
            page_sizes=PAGE_SIZES,
            per_page=per_page,
            **_common(),
        ),
        status,
    )


@findings_bp.get("/findings.csv", endpoint="csv")
def findings_csv() -> Response:
    """The filtered findings as CSV: the same service, columns and stamped headers as every
    other list export (and the same bytes as ``cbm export findings``)."""
    from cbm.web.exports import export_response

    return export_response("findings", request.args)


def _get_finding(finding_id: int) -> Finding:
    finding = db_session().get(Finding, finding_id)
    if finding is None:
        abort(404, f"There is no finding {finding_id}. The findings list shows every finding.")
    return finding


def _references(value: Any) -> list[str]:
    if isinstance(value, str) and value.strip():
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v.strip()]
    return []


def record_links(session: Session, finding: Finding) -> list[dict[str, str]]:
    """Links to the records behind a finding: its subject and records its evidence names
    (only those stored). A missing annual submission links to the State's notifications."""
    from cbm.models import Inspection, ObservationFlight, Reduction

    links: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    models = {
        "notifications": (Notification, Notification.reference),
        "inspections": (Inspection, Inspection.inspection_id),
        "observation_flights": (ObservationFlight, ObservationFlight.flight_id),
        "reductions": (Reduction, Reduction.reduction_id),
    }
    nouns = {
        "notifications": "notification",
        "activities": "activity",
        "inspections": "inspection",
        "observation_flights": "observation flight",
        "holdings": "holding",
        "reductions": "reduction",
    }

    def add(kind: str, ident: str, role: str) -> None:
        if (kind, ident) in seen:
            return
        seen.add((kind, ident))
        if kind == "activities":
            sources = session.scalars(
                select(Activity.source)
                .where(Activity.activity_id == ident)
                .order_by(Activity.source)
            ).all()
            for source in sources:
                links.append(
                    {
                        "role": role,
                        "text": f"activity {ident} ({source})",
                        "url": _record_url("activities", [ident, source]),
                    }
                )
            if not sources:
                links.append({"role": role, "text": f"activity {ident} (not stored)", "url": ""})
            return
        if kind == "holdings":
            parts = ident.split("/", 4)
            if len(parts) == 5:
                links.append(
                    {
                        "role": role,
                        "text": f"holding {' / '.join(p for p in parts if p)}",
                        "url": _record_url("holdings", parts),
                    }
                )
            return
        model, column = models[kind]
        found = session.scalar(select(func.count()).select_from(model).where(column == ident))
        links.append(
            {
                "role": role,
                "text": f"{nouns[kind]} {ident}" + ("" if found else " (not stored)"),
                "url": _record_url(kind, [ident]) if found else "",
            }
        )

    kind = SUBJECT_KINDS.get(finding.subject_type or "")
    if kind and finding.subject_id:
        add(kind, finding.subject_id, "subject")
    elif kind == "notifications":
        # A missing annual submission: what the State did send is in its notifications.
        args = {"state": finding.state, "regime": finding.regime}
        if finding.regime == "RED":
            args.pop("regime")
        links.append(
            {
                "role": "subject",
                "text": f"notifications sent by {finding.state} (the submission is missing)",
                "url": _with_query(url_for("records.list_records", kind="notifications"), args),
            }
        )
    for key, target in EVIDENCE_REFERENCES.items():
        for ident in _references((finding.evidence or {}).get(key)):
            add(target, ident, "evidence")
    return links


def _finding_page(
    finding: Finding,
    *,
    error: str | None = None,
    error_action: str | None = None,
    comment: str = "",
    status: int = 200,
) -> tuple[str, int]:
    session = db_session()
    events = list(
        session.scalars(
            select(FindingEvent)
            .where(FindingEvent.finding_id == finding.id)
            .order_by(FindingEvent.occurred_at, FindingEvent.id)
        )
    )
    names = _usernames(session, {e.user_id for e in events} | {finding.comment_by_id})
    return (
        render_template(
            "compliance/finding.html",
            finding=finding,
            rule=_registry().get(finding.rule_id),
            events=events,
            names=names,
            event_text=EVENT_TEXT,
            links=record_links(session, finding),
            actions=svc.allowed_actions(finding.status) if has_role("analyst") else [],
            action_text=ACTION_TEXT,
            error=error,
            error_action=error_action,
            comment=comment,
            max_comment=svc.MAX_COMMENT_LENGTH,
            states=_state_names(session),
            **_common(),
        ),
        status,
    )


@findings_bp.get("/findings/<int:finding_id>")
def finding(finding_id: int) -> tuple[str, int]:
    """One finding: what happened, the rule, evidence, records, history, and actions."""
    return _finding_page(_get_finding(finding_id))


def _act(finding_id: int, action: str) -> Any:
    finding = _get_finding(finding_id)
    comment = request.form.get("comment", "")
    try:
        svc.ACTIONS[action](db_session(), finding_id, current_user.id, comment)
    except FindingNotFound:
        abort(404)
    except FindingActionError as exc:
        return _finding_page(
            finding, error=str(exc), error_action=action, comment=comment[:5000], status=422
        )
    flash(f"Finding {finding_id} is {ACTION_TEXT[action][1]}.", "success")
    return redirect(url_for("findings.finding", finding_id=finding_id), 303)


@findings_bp.post("/findings/<int:finding_id>/acknowledge")
@role_required("analyst")
def acknowledge(finding_id: int) -> Any:
    return _act(finding_id, "acknowledge")


@findings_bp.post("/findings/<int:finding_id>/dispute")
@role_required("analyst")
def dispute(finding_id: int) -> Any:
    return _act(finding_id, "dispute")


@findings_bp.post("/findings/<int:finding_id>/reopen")
@role_required("analyst")
def reopen(finding_id: int) -> Any:
    return _act(finding_id, "reopen")


# --------------------------------------------------------------------------------------
# Check runs
# --------------------------------------------------------------------------------------


@checks_bp.get("/checks", endpoint="index")
def checks_index() -> tuple[str, int]:
    """Every check run, newest first."""
    from cbm.queries.choices import CHECK_FILTERS, parse_choices
    from cbm.services.export_pages import check_conditions

    session = db_session()
    errors: dict[str, str] = {}
    page = _page_arg(errors, request.args.get("page"))
    parsed = parse_choices(request.args, CHECK_FILTERS)
    errors.update(parsed.errors)
    where = check_conditions(parsed.active)
    total = session.scalar(select(func.count()).select_from(CheckRun).where(*where)) or 0
    pages = max(1, math.ceil(total / CHECKS_PER_PAGE))
    status = 200
    runs: list[CheckRun] = []
    if errors:
        status = 400
    elif page > pages:
        errors["page"] = f"there {'is' if pages == 1 else 'are'} only {pages} page(s)"
        status = 404
    else:
        runs = list(
            session.scalars(
                select(CheckRun)
                .where(*where)
                .order_by(CheckRun.id.desc())
                .limit(CHECKS_PER_PAGE)
                .offset((page - 1) * CHECKS_PER_PAGE)
            )
        )
    return (
        render_template(
            "compliance/checks.html",
            runs=runs,
            total=total,
            page=page,
            pages=pages,
            errors=errors,
            names=_usernames(session, {r.user_id for r in runs}),
            page_url=lambda n: url_for("checks.index", **parsed.active, page=n),
            values=parsed.values,
            statuses=CHECK_FILTERS["status"],
            csv_url=url_for("checks.csv", **parsed.active),
            **_common(),
        ),
        status,
    )


@checks_bp.get("/checks.csv", endpoint="csv")
def checks_csv() -> Response:
    """The check runs with the page's filter, newest first (``format=csv|xlsx|json``)."""
    from cbm.web.exports import export_response

    return export_response("checks", request.args)


@checks_bp.get("/checks/<int:check_id>")
def check(check_id: int) -> str:
    """One check run: when, who, scope, counts, and per rule the periods it covered."""
    session = db_session()
    run = session.get(CheckRun, check_id)
    if run is None:
        abort(404, f"There is no check run {check_id}. The list of checks shows every run.")
    rules = _registry()
    coverage = run.coverage or {}
    order = list(rules)
    covered = sorted(coverage.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 999)
    return render_template(
        "compliance/check.html",
        run=run,
        rules=rules,
        covered=covered,
        started_by=_usernames(session, {run.user_id}).get(run.user_id or 0),
        **_common(),
    )


@checks_bp.post("/checks/run", endpoint="run")
@role_required("analyst")
def run_now() -> Response:
    """Run a full check now, in this request; the run page shows what it found."""
    from cbm.services.checks import check_now

    # End this request's transaction (on SQLite it holds the write lock) before the check
    # writes on sessions of its own.
    db_session().commit()
    try:
        # The same service as `cbm check` and the scheduler: one transaction, and a failed
        # run row (with the reason) when anything goes wrong.
        result = check_now(web_state().session_factory, trigger="web", user_id=current_user.id)
    except Exception as exc:  # the engine's error is the run's message, not a 500
        current_app.logger.exception("check run failed")
        failed = (
            db_session()
            .scalars(
                select(CheckRun).where(CheckRun.status == "failed").order_by(CheckRun.id.desc())
            )
            .first()
        )
        flash(f"The check failed: {type(exc).__name__}: {exc}", "error")
        if failed is None:
            return redirect(url_for("checks.index"), 303)
        return redirect(url_for("checks.check", check_id=failed.id), 303)
    flash(result.lines()[0][0].upper() + result.lines()[0][1:] + ".", "success")
    return redirect(url_for("checks.check", check_id=result.run_id), 303)


# --------------------------------------------------------------------------------------
# Deadlines and the calendar feed
# --------------------------------------------------------------------------------------


def _deadline_args(session: Session, args: Mapping[str, str]) -> tuple[dict[str, Any], dict]:
    """The page's window (shared with its export): :func:`cbm.compliance.deadlines.parse_window`."""
    return dl.parse_window(session, args)


def _deadline_links(d: dl.Deadline) -> dict[str, str]:
    links: dict[str, str] = {}
    if d.subject_type == "notification":
        if d.subject_id:
            links["record"] = _record_url("notifications", [d.subject_id])
        else:
            links["record"] = _with_query(
                url_for("records.list_records", kind="notifications"),
                {"state": d.state, "regime": d.regime},
            )
    elif d.subject_type in SUBJECT_KINDS and d.subject_id:
        links["record"] = _record_url(SUBJECT_KINDS[d.subject_type], [d.subject_id])
    if d.rule_id and d.rule_id in _registry():
        links["rule"] = url_for("rules.rule", rule_id=d.rule_id)
    return links


@deadlines_bp.get("/deadlines", endpoint="index")
def deadlines_index() -> tuple[str, int]:
    """What is due in the next days, grouped by date, with the calendar subscription."""
    session = db_session()
    values, errors = _deadline_args(session, request.args)
    items: list[dl.Deadline] = []
    if not errors:
        items = dl.upcoming(
            session,
            start=values["start"],
            days=values["days"],
            states=[values["state"]] if values["state"] else None,
        )
    groups: dict[dt.date, list[dl.Deadline]] = {}
    for d in items:
        groups.setdefault(d.due_date, []).append(d)
    user = session.get(User, current_user.id)
    token = user.feed_token if user else None
    feed_url = url_for("deadlines.ics", token=token, _external=True) if token else None
    state_feed_url = (
        url_for("deadlines.ics", token=token, state=values["state"], _external=True)
        if token and values["state"]
        else None
    )
    return (
        render_template(
            "compliance/deadlines.html",
            groups=sorted(groups.items()),
            total=len(items),
            outstanding=sum(1 for d in items if d.outstanding),
            values=values,
            end=values["start"] + dt.timedelta(days=values["days"]),
            args={k: request.args.get(k, "") for k in ("from", "days", "state")},
            errors=errors,
            links=_deadline_links,
            feed_url=feed_url,
            state_feed_url=state_feed_url,
            csv_url=url_for(
                "deadlines.csv",
                **{k: v for k in ("from", "days", "state") if (v := request.args.get(k, ""))},
            ),
            states=_state_names(session),
            default_days=dl.DEFAULT_DAYS,
            max_days=dl.MAX_DAYS,
            **_common(),
        ),
        400 if errors else 200,
    )


@deadlines_bp.post("/deadlines/feed")
@role_required("viewer")
def renew_feed() -> Response:
    """Create the personal calendar link, or replace it (the old one stops working)."""
    session = db_session()
    user = session.get(User, current_user.id)
    had = bool(user and user.feed_token)
    dl.renew_feed_token(session, current_user.id)
    if had:
        flash("Your calendar link is renewed. The old link no longer works.", "success")
    else:
        flash("Your calendar link is ready: subscribe to it in your calendar.", "success")
    return redirect(url_for("deadlines.index") + "#feed", 303)


@deadlines_bp.get("/deadlines.csv", endpoint="csv")
@role_required("viewer")
def deadlines_csv() -> Response:
    """What is due in the page's window (``format=csv|xlsx|json``), as the page lists it."""
    from cbm.web.exports import export_response

    return export_response("deadlines", request.args)


@deadlines_bp.get("/deadlines.ics")
@feed_token_auth
def ics() -> Response:
    """The deadlines as iCalendar. A signed-in browser needs no token; a calendar client
    sends the personal ``token`` of the account page or the deadlines page instead."""
    session = db_session()
    if not getattr(current_user, "is_authenticated", False):
        user = dl.user_for_feed_token(session, request.args.get("token"))
        if user is None:
            return Response(
                "This calendar link is not valid: it was renewed, or the account is disabled. "
                "Copy the current link from the Deadlines page.\n",
                401,
                mimetype="text/plain",
            )
    values, errors = _deadline_args(session, request.args)
    if errors:
        text = "".join(f"{name}: {message}\n" for name, message in errors.items())
        return Response(text, 400, mimetype="text/plain")
    items = dl.upcoming(
        session,
        start=values["start"],
        days=values["days"],
        states=[values["state"]] if values["state"] else None,
    )
    name = "cbm deadlines" + (f" ({values['state']})" if values["state"] else "")
    body = dl.to_ical(
        items,
        calendar_name=name,
        uid_domain=request.host.split(":")[0] or "cbm.invalid",
        url_for_deadline=lambda d: url_for("deadlines.index", state=d.state, _external=True),
    )
    return Response(
        body,
        200,
        content_type="text/calendar; charset=utf-8",
        headers={
            "Content-Disposition": 'inline; filename="cbm-deadlines.ics"',
            "Cache-Control": "private, no-store",
        },
    )
