"""The audit log as the admin pages read it: filters parsed from a query string, one page.

:func:`parse_filters` turns untrusted query-string values into an :class:`AuditFilters`
(or friendly messages saying what is wrong); :func:`audit_page` runs two set-based
statements: the page of events (joined to the acting user and import run) and the count.
Nothing here imports Flask, so the CLI or an API can reuse it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from cbm import contract
from cbm.models import AuditEvent, ImportRun, User

PER_PAGE = 50
MAX_KEY_LENGTH = 400

#: Entity types the filter offers: every contract file, the accounts, the reference data,
#: the import sources.
ENTITY_TYPES: tuple[str, ...] = (*contract.FILES, "users", "reference", "sources")
#: Actions the filter offers; a well-formed other action (a later feature's) still works.
KNOWN_ACTIONS: tuple[str, ...] = (
    "create",
    "update",
    "delete",
    "import",
    "revert",
    "reference_load",
)
ACTOR_TYPES = ("user", "import_run", "system")

_ACTION_RE = re.compile(r"^[a-z][a-z0-9_]{0,15}$")
# "import run 12", "run 12", "run #12", "run:12". A username cannot hold a space or a colon,
# so these never shadow an account; only the word "system" does (use "user:system").
_RUN_RE = re.compile(r"^(?:(?:import\s+)?run\s+#?|run:)(\d{1,9})$", re.IGNORECASE)
_USER_PREFIX = "user:"


@dataclass(frozen=True)
class ActorFilter:
    type: str  # user | import_run | system
    username: str | None = None
    run_id: int | None = None

    @property
    def text(self) -> str:
        return actor_filter_text(self.type, self.username, self.run_id)


@dataclass(frozen=True)
class AuditFilters:
    actor: ActorFilter | None = None
    action: str | None = None
    entity_type: str | None = None
    key: str | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None  # inclusive
    page: int = 1

    @property
    def active(self) -> bool:
        return any(
            v is not None
            for v in (
                self.actor,
                self.action,
                self.entity_type,
                self.key,
                self.date_from,
                self.date_to,
            )
        )


@dataclass
class ParsedFilters:
    """The filters that could be read, the raw values to show back, and what was wrong."""

    filters: AuditFilters
    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class AuditRow:
    id: int
    occurred_at: dt.datetime
    actor_type: str
    user_id: int | None
    username: str | None
    user_display_name: str | None
    run_id: int | None
    run_source: str | None
    action: str
    entity_type: str
    entity_id: int | None
    entity_key: str
    changes: dict[str, Any] | None
    note: str | None

    @property
    def actor_filter(self) -> str:
        """The actor filter value that shows every event of this row's actor."""
        return actor_filter_text(self.actor_type, self.username, self.run_id)


@dataclass(frozen=True)
class AuditPage:
    rows: list[AuditRow]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def first_index(self) -> int:
        return (self.page - 1) * self.per_page + 1 if self.rows else 0

    @property
    def last_index(self) -> int:
        return (self.page - 1) * self.per_page + len(self.rows)


def actor_filter_text(actor_type: str, username: str | None, run_id: int | None) -> str:
    if actor_type == "import_run" and run_id is not None:
        return f"import run {run_id}"
    if actor_type == "user" and username:
        return f"{_USER_PREFIX}{username}" if username == "system" else username
    return "system"


def parse_filters(args: Mapping[str, str]) -> ParsedFilters:
    """Read the filters from query-string values; every problem becomes a message."""
    values = {
        name: (args.get(name) or "").strip()
        for name in ("actor", "action", "entity_type", "key", "from", "to", "page")
    }
    errors: dict[str, str] = {}
    actor: ActorFilter | None = None
    if values["actor"]:
        actor = _parse_actor(values["actor"])
        if actor is None:
            errors["actor"] = (
                "Give a username, 'import run N' (N a number) or 'system'."
                if len(values["actor"]) <= 100
                else "The actor is too long: give a username, 'import run N' or 'system'."
            )
    action = values["action"].lower() or None
    if action and not _ACTION_RE.match(action):
        errors["action"] = "An action is a short word such as 'create', 'update' or 'delete'."
    entity_type = values["entity_type"] or None
    if entity_type and entity_type not in ENTITY_TYPES:
        shown = entity_type if len(entity_type) <= 40 else entity_type[:40] + "…"
        errors["entity_type"] = (
            f"'{shown}' is not an entity type; choose one of {', '.join(ENTITY_TYPES)}."
        )
    key = values["key"] or None
    if key and len(key) > MAX_KEY_LENGTH:
        errors["key"] = f"The key text is too long (at most {MAX_KEY_LENGTH} characters)."
    elif key and "\x00" in key:  # LIKE on SQLite ends the pattern there (see queries.records)
        errors["key"] = "The key text holds a NUL character; no key contains one."
    date_from = _parse_date(values["from"], "from", errors)
    date_to = _parse_date(values["to"], "to", errors)
    if date_from and date_to and date_from > date_to:
        errors["to"] = "The end date is before the start date."
    page = 1
    if values["page"]:
        if values["page"].isdigit() and 1 <= int(values["page"]) <= 1_000_000:
            page = int(values["page"])
        else:
            errors["page"] = "The page is a whole number from 1."
    filters = AuditFilters(
        actor=actor,
        action=action if "action" not in errors else None,
        entity_type=entity_type if "entity_type" not in errors else None,
        key=key if "key" not in errors else None,
        date_from=date_from,
        date_to=date_to if "to" not in errors else None,
        page=page,
    )
    return ParsedFilters(filters=filters, values=values, errors=errors)


def _parse_actor(text: str) -> ActorFilter | None:
    if len(text) > 100:
        return None
    lowered = text.lower()
    if lowered == "system":
        return ActorFilter("system")
    match = _RUN_RE.match(text)
    if match:
        return ActorFilter("import_run", run_id=int(match.group(1)))
    name = lowered[len(_USER_PREFIX) :] if lowered.startswith(_USER_PREFIX) else lowered
    name = name.strip()
    if not name or any(c.isspace() for c in name):
        return None
    return ActorFilter("user", username=name)


def _parse_date(text: str, name: str, errors: dict[str, str]) -> dt.date | None:
    if not text:
        return None
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError
        return dt.date.fromisoformat(text)
    except ValueError:
        errors[name] = "Give a date as YYYY-MM-DD (UTC), for example 2024-03-31."
        return None


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _conditions(f: AuditFilters) -> list[ColumnElement[bool]]:
    ev = AuditEvent
    cond: list[ColumnElement[bool]] = []
    if f.actor is not None:
        if f.actor.type == "system":
            cond.append(ev.actor_type == "system")
        elif f.actor.type == "import_run":
            cond.append(ev.run_id == f.actor.run_id)
        else:
            user_id = select(User.id).where(User.username == f.actor.username).scalar_subquery()
            cond.append(and_(ev.actor_type == "user", ev.user_id == user_id))
    if f.action:
        cond.append(ev.action == f.action)
    if f.entity_type:
        cond.append(ev.entity_type == f.entity_type)
    if f.key:
        escaped = f.key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        cond.append(ev.entity_key.ilike(f"%{escaped}%", escape="\\"))
    if f.date_from:
        cond.append(ev.occurred_at >= _midnight(f.date_from))
    if f.date_to:
        cond.append(ev.occurred_at < _midnight(f.date_to + dt.timedelta(days=1)))
    return cond


def audit_page(session: Session, filters: AuditFilters, per_page: int = PER_PAGE) -> AuditPage:
    """One page of events, newest first, and how many match in all (two statements)."""
    cond = _conditions(filters)
    total = session.scalar(select(func.count()).select_from(AuditEvent).where(*cond)) or 0
    ev = AuditEvent
    stmt = (
        select(
            ev.id,
            ev.occurred_at,
            ev.actor_type,
            ev.user_id,
            User.username,
            User.display_name,
            ev.run_id,
            ImportRun.source_name,
            ev.action,
            ev.entity_type,
            ev.entity_id,
            ev.entity_key,
            ev.changes,
            ev.note,
        )
        .outerjoin(User, User.id == ev.user_id)
        .outerjoin(ImportRun, ImportRun.id == ev.run_id)
        .where(*cond)
        .order_by(ev.occurred_at.desc(), ev.id.desc())
        .limit(per_page)
        .offset((filters.page - 1) * per_page)
    )
    rows = [AuditRow(*r) for r in session.execute(stmt).all()]
    return AuditPage(rows=rows, total=total, page=filters.page, per_page=per_page)
