"""Findings for every entry point: filters, lists, counts, CSV, and the analyst's actions.

The findings pages, ``cbm export findings`` and the JSON API call these functions, so a
filter means the same thing everywhere and a CSV from the page equals the CLI's.

- :class:`FindingFilters` is the validated filter set. ``from_mapping`` reads it from any
  mapping of strings (a query string, CLI options) and raises :class:`FilterError` naming
  the field of the first bad value (``errors`` holds every one); ``as_query_args`` gives
  it back for links.
- :func:`query_findings` is the ordered ``SELECT`` (due date newest first, then id);
  :func:`count_by` counts per column value; :func:`page_findings` fetches one page.
- :func:`iter_findings_csv` streams :data:`FINDINGS_CSV_COLUMNS` in chunks.
- :func:`acknowledge`, :func:`dispute` and :func:`reopen` move a finding through its
  lifecycle (open → acknowledged or disputed → open again), each with the analyst's comment
  and a :class:`~cbm.models.FindingEvent`. Resolution is automatic (the engine's), never
  an analyst's action.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from cbm.db import utcnow
from cbm.models import Finding, FindingEvent
from cbm.queries.records import ListPage
from cbm.services.imports import csv_cell

#: The CSV columns, in order (the issue's required columns first).
FINDINGS_CSV_COLUMNS: tuple[str, ...] = (
    "finding_id",
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
    "detected_at",
    "summary",
    "last_detected_at",
    "resolved_at",
    "citation",
)
#: Longest free-text search and comment accepted.
MAX_QUERY_LENGTH = 200
MAX_COMMENT_LENGTH = 4000
MAX_PERIOD_LENGTH = 20
#: Rows read per round trip (and per CSV chunk yielded).
CSV_CHUNK = 2000
#: Query-string aliases accepted by :meth:`FindingFilters.from_mapping` (CLI spellings).
ALIASES = {"rule": "rule_id", "from": "due_from", "to": "due_to", "due_after": "due_from"}


class FilterError(ValueError):
    """A filter value that cannot be used. ``field`` names it; ``errors`` has every one."""

    def __init__(self, field: str, message: str, errors: Mapping[str, str] | None = None):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.errors: dict[str, str] = dict(errors or {field: message})


class FindingActionError(ValueError):
    """An acknowledge, dispute or reopen that is not allowed (the message says why)."""


class FindingNotFound(FindingActionError):
    """No finding has this id."""


# --------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FindingFilters:
    """What to list or export. Every field is optional; States are alpha-3 codes."""

    rule_id: str | None = None
    regime: str | None = None
    severity: str | None = None
    status: str | None = None
    state: str | None = None
    counterpart: str | None = None
    period: str | None = None
    due_from: dt.date | None = None
    due_to: dt.date | None = None
    q: str | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_mapping(cls, session: Session, mapping: Mapping[str, Any]) -> FindingFilters:
        """Validated filters from strings (or dates); empty values mean "any".

        Rule ids, regimes, severities and statuses must be known ones (case does not
        matter); States and counterparts are alpha-3 codes or names (as the record forms
        accept them); dates are ``YYYY-MM-DD`` and ``due_from`` may not follow ``due_to``.
        Keys this class does not know (``page``, ``per_page`` …) are ignored.
        """
        from cbm.compliance.engine import REGIME_ALIASES
        from cbm.compliance.registry import REGIME_NAMES, SEVERITIES, STATUSES, all_rules
        from cbm.services.records import state_resolver

        raw: dict[str, Any] = {}
        for key, value in mapping.items():
            name = ALIASES.get(key, key)
            if name in cls.names() and (name not in raw or key == name):
                raw[name] = value
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}

        def text(name: str) -> str | None:
            value = raw.get(name)
            if value is None:
                return None
            if isinstance(value, dt.date):
                return value.isoformat()
            value = " ".join(str(value).split())
            return value or None

        rule_id = text("rule_id")
        if rule_id:
            rules = {r.upper(): r for r in all_rules()}
            if rule_id.upper() in rules:
                values["rule_id"] = rules[rule_id.upper()]
            else:
                errors["rule_id"] = (
                    f"'{rule_id[:40]}' is not a rule; the catalogue lists every rule id"
                )
        regime = text("regime")
        if regime:
            code = REGIME_ALIASES.get(regime.upper(), regime.upper())
            if code in REGIME_NAMES:
                values["regime"] = code
            else:
                errors["regime"] = (
                    f"'{regime[:40]}' is not a regime; choose one of {', '.join(REGIME_NAMES)}"
                )
        for name, allowed in (("severity", SEVERITIES), ("status", STATUSES)):
            value = text(name)
            if value:
                if value.lower() in allowed:
                    values[name] = value.lower()
                else:
                    errors[name] = (
                        f"'{value[:40]}' is not a {name}; choose one of {', '.join(allowed)}"
                    )
        resolver = None
        for name in ("state", "counterpart"):
            value = text(name)
            if value:
                resolver = resolver or state_resolver(session)
                code = resolver.resolve(value)
                if code:
                    values[name] = code
                else:
                    errors[name] = (
                        f"'{value[:60]}' is not a State we know; use an ISO 3166 alpha-3 "
                        "code (DEU) or a name (Germany)"
                    )
        period = text("period")
        if period:
            if len(period) > MAX_PERIOD_LENGTH:
                errors["period"] = f"a period has at most {MAX_PERIOD_LENGTH} characters"
            else:
                values["period"] = period
        for name in ("due_from", "due_to"):
            value = raw.get(name)
            if isinstance(value, dt.datetime):
                values[name] = value.date()
            elif isinstance(value, dt.date):
                values[name] = value
            elif text(name):
                parsed = _parse_date(text(name) or "")
                if parsed is None:
                    errors[name] = f"'{(text(name) or '')[:40]}' is not a date (YYYY-MM-DD)"
                else:
                    values[name] = parsed
        if (
            values.get("due_from")
            and values.get("due_to")
            and values["due_from"] > values["due_to"]
        ):
            errors["due_to"] = (
                f"the end date {values['due_to']} is before the start date {values['due_from']}"
            )
        q = text("q")
        if q:
            if len(q) > MAX_QUERY_LENGTH:
                errors["q"] = f"a search has at most {MAX_QUERY_LENGTH} characters"
            elif "\x00" in q:  # LIKE on SQLite ends the pattern there (see queries.records)
                errors["q"] = "the search text holds a NUL character; no finding contains one"
            else:
                values["q"] = q
        if errors:
            first = next(iter(errors))
            raise FilterError(first, errors[first], errors)
        return cls(**values)

    def as_query_args(self) -> dict[str, str]:
        """The set filters as strings, for links (``url_for(..., **filters.as_query_args())``)."""
        out: dict[str, str] = {}
        for name in self.names():
            value = getattr(self, name)
            if value is None or value == "":
                continue
            out[name] = value.isoformat() if isinstance(value, dt.date) else str(value)
        return out

    @property
    def filtered(self) -> bool:
        return any(getattr(self, name) not in (None, "") for name in self.names())

    def replace(self, **changes: Any) -> FindingFilters:
        return replace(self, **changes)


def _parse_date(text: str) -> dt.date | None:
    if len(text) != 10:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def conditions(filters: FindingFilters) -> list[ColumnElement[bool]]:
    """The WHERE conditions of ``filters`` (all bound parameters)."""
    conds: list[ColumnElement[bool]] = []
    for name in ("rule_id", "regime", "severity", "status", "state", "counterpart", "period"):
        value = getattr(filters, name)
        if value:
            conds.append(getattr(Finding, name) == value)
    if filters.due_from:
        start = dt.datetime.combine(filters.due_from, dt.time(0), tzinfo=dt.UTC)
        conds.append(Finding.due_at >= start)
    if filters.due_to:
        # The end date is included: everything before the next day's midnight.
        end = dt.datetime.combine(filters.due_to + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)
        conds.append(Finding.due_at < end)
    if filters.q:
        pattern = _like_pattern(filters.q)
        conds.append(
            or_(
                Finding.summary.ilike(pattern, escape="\\"),
                Finding.subject_id.ilike(pattern, escape="\\"),
            )
        )
    return conds


def query_findings(filters: FindingFilters) -> Select[tuple[Finding]]:
    """Findings matching ``filters``: latest due date first (no due date last), then id."""
    return (
        select(Finding)
        .where(*conditions(filters))
        .order_by(Finding.due_at.desc().nulls_last(), Finding.id)
    )


def count_findings(session: Session, filters: FindingFilters) -> int:
    stmt = select(func.count()).select_from(Finding).where(*conditions(filters))
    return int(session.scalar(stmt) or 0)


def count_by(
    session: Session, filters: FindingFilters, *columns: InstrumentedAttribute[Any]
) -> dict[Any, int]:
    """Counts of matching findings per value of ``columns``: ``{value: n}`` for one column,
    ``{(value, value): n}`` for several."""
    if not columns:
        raise ValueError("count_by needs at least one column")
    stmt = (
        select(*columns, func.count())
        .select_from(Finding)
        .where(*conditions(filters))
        .group_by(*columns)
    )
    out: dict[Any, int] = {}
    for row in session.execute(stmt):
        key = row[0] if len(columns) == 1 else tuple(row[: len(columns)])
        out[key] = int(row[-1])
    return out


#: One page of findings: the record lists' page type (rows, total, pages, window()).
FindingsPage = ListPage


def page_findings(
    session: Session, filters: FindingFilters, *, page: int = 1, per_page: int = 50
) -> FindingsPage:
    """Count the matching findings and fetch page ``page`` (1-based) of them."""
    total = count_findings(session, filters)
    result = FindingsPage(rows=[], total=total, page=page, per_page=per_page)
    if page > result.pages:
        result.out_of_range = True
        return result
    stmt = query_findings(filters).limit(per_page).offset((page - 1) * per_page)
    result.rows = list(session.scalars(stmt))  # Finding objects (the lists hold dicts)
    return result


# --------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------


def format_utc(value: dt.datetime | None) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` (UTC, whole seconds); empty for no value."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iter_findings_csv(
    session: Session, filters: FindingFilters, *, chunk: int = CSV_CHUNK
) -> Iterator[str]:
    """The matching findings as RFC 4180 CSV (CRLF line ends), header first, in the
    order of :func:`query_findings`, one piece of text per ``chunk`` rows.

    Text cells that a spreadsheet would run as a formula get a leading ``'`` (as the
    import-rejection CSV does). Citations come from the rule registry.
    """
    from cbm.compliance.registry import all_rules

    citations = {rule_id: r.citation for rule_id, r in all_rules().items()}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(FINDINGS_CSV_COLUMNS)
    yield buffer.getvalue()
    stmt = (
        select(
            Finding.id,
            Finding.rule_id,
            Finding.regime,
            Finding.severity,
            Finding.status,
            Finding.state,
            Finding.counterpart,
            Finding.subject_type,
            Finding.subject_id,
            Finding.period,
            Finding.due_at,
            Finding.first_detected_at,
            Finding.summary,
            Finding.last_detected_at,
            Finding.resolved_at,
        )
        .where(*conditions(filters))
        .order_by(Finding.due_at.desc().nulls_last(), Finding.id)
        .execution_options(yield_per=chunk)
    )
    for part in session.execute(stmt).partitions():
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(
            (
                row.id,
                csv_cell(row.rule_id),
                csv_cell(row.regime),
                csv_cell(row.severity),
                csv_cell(row.status),
                csv_cell(row.state),
                csv_cell(row.counterpart),
                csv_cell(row.subject_type),
                csv_cell(row.subject_id),
                csv_cell(row.period),
                format_utc(row.due_at),
                format_utc(row.first_detected_at),
                csv_cell(row.summary),
                format_utc(row.last_detected_at),
                format_utc(row.resolved_at),
                csv_cell(citations.get(row.rule_id, "")),
            )
            for row in part
        )
        yield buffer.getvalue()


# --------------------------------------------------------------------------------------
# Lifecycle: acknowledge, dispute, reopen
# --------------------------------------------------------------------------------------

#: action -> (status after, statuses it may start from, event action, comment required)
TRANSITIONS: dict[str, tuple[str, frozenset[str], str, bool]] = {
    "acknowledge": ("acknowledged", frozenset({"open", "disputed"}), "acknowledged", True),
    "dispute": ("disputed", frozenset({"open", "acknowledged"}), "disputed", True),
    "reopen": ("open", frozenset({"acknowledged", "disputed"}), "reopened_by_analyst", False),
}


def allowed_actions(status: str) -> list[str]:
    """The actions an analyst may take on a finding in ``status`` (in display order)."""
    return [name for name, (_, sources, _, _) in TRANSITIONS.items() if status in sources]


def clean_comment(comment: str | None, *, required: bool) -> str | None:
    """The comment trimmed; refused when required and empty, or longer than the limit."""
    text = (comment or "").replace("\r\n", "\n").strip()
    if required and not text:
        raise FindingActionError("Write a comment: it says why, for whoever reads this next.")
    if len(text) > MAX_COMMENT_LENGTH:
        raise FindingActionError(
            f"The comment has {len(text):,} characters; at most {MAX_COMMENT_LENGTH:,} are kept."
        )
    return text or None


def _transition(
    session: Session, finding_id: int, user_id: int | None, comment: str | None, action: str
) -> Finding:
    status_after, sources, event_action, required = TRANSITIONS[action]
    text = clean_comment(comment, required=required)
    finding = session.get(Finding, finding_id, with_for_update=True)
    if finding is None:
        raise FindingNotFound(f"There is no finding {finding_id}.")
    if finding.status not in sources:
        if finding.status == "resolved":
            raise FindingActionError(
                f"Finding {finding_id} is resolved: the last check no longer detected it, so "
                f"there is nothing to {action}. If the next check detects it again it reopens."
            )
        if finding.status == status_after:
            raise FindingActionError(f"Finding {finding_id} is already {status_after}.")
        raise FindingActionError(
            f"A finding that is {finding.status} cannot be {status_after} this way."
        )
    now = utcnow()
    finding.status = status_after
    finding.comment = text
    finding.comment_by_id = user_id
    session.add(
        FindingEvent(
            finding_id=finding.id,
            occurred_at=now,
            action=event_action,
            status=status_after,
            user_id=user_id,
            comment=text,
        )
    )
    session.flush()
    return finding


def acknowledge(session: Session, finding_id: int, user_id: int | None, comment: str) -> Finding:
    """Open or disputed → acknowledged: the State's failure is accepted as stated."""
    return _transition(session, finding_id, user_id, comment, "acknowledge")


def dispute(session: Session, finding_id: int, user_id: int | None, comment: str) -> Finding:
    """Open or acknowledged → disputed: the analyst doubts the finding (comment says why)."""
    return _transition(session, finding_id, user_id, comment, "dispute")


def reopen(
    session: Session, finding_id: int, user_id: int | None, comment: str | None = None
) -> Finding:
    """Acknowledged or disputed → open again (the comment is optional)."""
    return _transition(session, finding_id, user_id, comment, "reopen")


ACTIONS = {"acknowledge": acknowledge, "dispute": dispute, "reopen": reopen}
