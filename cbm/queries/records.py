"""Reading contract records: the filtered, sorted, paginated lists, one record, its links
and its full history.

Everything here is driven by :data:`cbm.contract.FILES` and a small table of per-file
choices (:data:`LISTS`): which column dates a record for the year filter, which columns the
list shows, how it is sorted by default. No code is written per record kind.

Performance on large tables (a million rows): every list is two statements, a ``COUNT``
and a ``LIMIT``/``OFFSET`` page, with the same conditions; the year filter is a range on the
date column (so its index is usable) rather than a function of it; the State and region
filters compare indexed State columns; State names are one lookup of the 57 States per
page, not a join per row. Free text is ``ILIKE`` with escaped wildcards, always as a bound
parameter.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    Table,
    and_,
    cast,
    false,
    func,
    literal,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.orm import Session

from cbm import contract, vocab
from cbm.contract import ContractFile
from cbm.models import AuditEvent, ImportRun, Region, State, User
from cbm.queries.overview import HOLDING_SOURCE_REGIME
from cbm.services.records import REFERRERS, entity_key, json_value, state_resolver

PAGE_SIZES: tuple[int, ...] = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
MAX_QUERY_LENGTH = 200
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
#: Related records listed per group on a record page (the total is always given).
RELATED_LIMIT = 50


# --------------------------------------------------------------------------------------
# Per-file list choices
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListSpec:
    """How one contract file is listed.

    ``date_columns`` date a record for the year filter: the first non-empty one counts
    (observation flights: flight start, else planned arrival, else notification).
    ``columns`` are shown in the list (every column can still be sorted on).
    """

    date_columns: tuple[str, ...]
    date_label: str
    columns: tuple[str, ...]
    sort: str
    order: str = "desc"


LISTS: dict[str, ListSpec] = {
    "activities": ListSpec(
        ("start_date",),
        "start date",
        ("activity_id", "source", "state", "name", "kind", "start_date", "end_date", "troops"),
        "start_date",
    ),
    "notifications": ListSpec(
        ("sent_at",),
        "time sent",
        ("reference", "regime", "kind", "sender", "recipients", "sent_at", "activity_id"),
        "sent_at",
    ),
    "inspections": ListSpec(
        ("requested_at",),
        "time requested",
        (
            "inspection_id",
            "regime",
            "kind",
            "inspecting_state",
            "inspected_state",
            "requested_at",
            "reply",
            "outcome",
        ),
        "requested_at",
    ),
    "observation_flights": ListSpec(
        ("flight_start_at", "eta_poe", "notified_at"),
        "flight start, else planned arrival at the point of entry, else notification",
        (
            "flight_id",
            "observing_state",
            "observed_state",
            "eta_poe",
            "flight_start_at",
            "outcome",
            "distance_km",
        ),
        "eta_poe",
    ),
    "quotas": ListSpec(
        ("year",),
        "quota year",
        ("regime", "state", "year", "kind", "counterpart", "quota"),
        "year",
    ),
    "holdings": ListSpec(
        ("as_of",),
        "as-of date",
        ("state", "as_of", "category", "source", "unit", "count", "zone"),
        "as_of",
    ),
    "ceilings": ListSpec(
        ("valid_from",),
        "valid-from date",
        ("regime", "state", "category", "valid_from", "valid_to", "ceiling"),
        "valid_from",
    ),
    "reductions": ListSpec(
        ("deadline", "announced_at"),
        "deadline, else announcement date",
        ("reduction_id", "state", "kind", "category", "quantity", "reduced", "deadline"),
        "deadline",
    ),
}

#: Columns that hold one State (the State filter matches any of them) and lists of States.
STATE_TYPES = (contract.STATE,)
STATE_LIST_TYPES = (contract.STATES,)
#: Columns free text searches. Vocabularies and single States have their own filters (and
#: a State's code or name in the free text matches its State columns exactly), so they are
#: left out: fewer ILIKEs over a large table.
TEXT_TYPES = (contract.STR, contract.TEXT, contract.STATES, contract.RECIPIENTS)


def kind_column(spec: ContractFile) -> str | None:
    """The column the "kind" filter reads: ``kind``, else ``category``."""
    for name in ("kind", "category"):
        if name in spec.columns:
            return name
    return None


def state_columns(spec: ContractFile) -> tuple[str, ...]:
    return tuple(f.name for f in spec.fields if f.type in STATE_TYPES)


def regime_choices(spec: ContractFile) -> tuple[str, ...]:
    """The regimes a record of this file can belong to (the regime filter's options)."""
    if "regime" in spec.columns:
        return spec.field("regime").choices
    if spec.name == "activities":
        return ("VD",)
    if spec.name == "observation_flights":
        return ("OST",)
    if spec.name == "holdings":
        return tuple(r for r in vocab.REGIMES if r in HOLDING_SOURCE_REGIME.values())
    if spec.name == "reductions":
        return ("CFE",)
    return ()


def _regime_condition(spec: ContractFile, regime: str) -> ColumnElement[bool]:
    """Records of ``regime``, on indexed columns (no CASE over the whole table)."""
    table = _table(spec)
    if "regime" in spec.columns:
        return table.c.regime == regime
    if spec.name == "holdings":
        sources = [s for s, r in HOLDING_SOURCE_REGIME.items() if r == regime]
        return table.c.source.in_(sources) if sources else false()
    if spec.name == "reductions":
        # As on the overview: treaty reductions count under CFE, the others are unilateral.
        return table.c.kind == "treaty" if regime == "CFE" else false()
    return true() if regime in regime_choices(spec) else false()


def _table(spec: ContractFile) -> Table:
    return spec.model.__table__  # type: ignore[attr-defined,no-any-return]


# --------------------------------------------------------------------------------------
# Natural keys
# --------------------------------------------------------------------------------------


def key_parts(spec: ContractFile, row: Mapping[str, Any]) -> tuple[str, ...]:
    """A record's natural key in contract notation (dates ISO, years as digits, '' empty)."""
    out = []
    for name in spec.key:
        value = row.get(name)
        if value is None:
            out.append("")
        elif isinstance(value, dt.date):
            out.append(value.isoformat())
        else:
            out.append(str(value))
    return tuple(out)


def key_values(spec: ContractFile, parts: Sequence[str]) -> dict[str, Any]:
    """Typed key values from their contract notation; ValueError if they cannot be a key."""
    if len(parts) != len(spec.key):
        raise ValueError(f"a {spec.name} key has {len(spec.key)} part(s), not {len(parts)}")
    out: dict[str, Any] = {}
    for name, text in zip(spec.key, parts, strict=True):
        f = spec.field(name)
        if f.type == contract.DATE:
            if not _ISO_DATE.fullmatch(text):
                raise ValueError(f"{name}: {text!r} is not a date")
            out[name] = dt.date.fromisoformat(text)
        elif f.type in (contract.YEAR, contract.INT):
            if not text.isascii() or not text.isdigit():
                raise ValueError(f"{name}: {text!r} is not a number")
            out[name] = int(text)
        else:
            if f.required and not text:
                raise ValueError(f"{name} is required")
            out[name] = text
    return out


def stored_key(session: Session, spec: ContractFile, row: Mapping[str, Any]) -> dict[str, Any]:
    """The key of a contract row just written, as stored: parsed by the same validator
    (States resolved to codes, dates and years typed, empty optional parts as '')."""
    from cbm.services.validation import validate_rows

    typed = validate_rows(spec, [row], state_resolver(session)).rows[0]
    return {k: typed[k] for k in spec.key}


def _key_condition(spec: ContractFile, key: Mapping[str, Any]) -> list[ColumnElement[bool]]:
    table = _table(spec)
    return [table.c[k] == (key[k] if key[k] is not None else "") for k in spec.key]


def get_record(session: Session, spec: ContractFile, key: Mapping[str, Any]) -> dict | None:
    """The stored row (every column, id and provenance) for a typed key, or None."""
    table = _table(spec)
    found = session.execute(select(table).where(*_key_condition(spec, key))).mappings().first()
    return dict(found) if found is not None else None


# --------------------------------------------------------------------------------------
# Lists: parameters, filters, sorting, pagination
# --------------------------------------------------------------------------------------


@dataclass
class ListParams:
    """A list request after validation. ``state`` is a resolved code."""

    regime: str | None = None
    state: str | None = None
    region: str | None = None
    year: int | None = None
    kind: str | None = None
    q: str | None = None
    #: The State the free text names, if it is a State's code or name.
    q_state: str | None = None
    sort: str = ""
    order: str = "desc"
    page: int = 1
    per_page: int = DEFAULT_PAGE_SIZE

    @property
    def filtered(self) -> bool:
        return any(
            v not in (None, "")
            for v in (self.regime, self.state, self.region, self.year, self.kind, self.q)
        )


#: The query-string names of the filters (what "clear filters" removes).
FILTER_ARGS = ("regime", "state", "region", "year", "kind", "q")


def parse_list_args(
    session: Session, spec: ContractFile, args: Mapping[str, str]
) -> tuple[ListParams, dict[str, str]]:
    """Validate the query string of a list page. Returns the parameters and, per argument,
    a message for each value that cannot be used (the caller shows them, never a 500)."""
    lst = LISTS[spec.name]
    params = ListParams(sort=lst.sort, order=lst.order)
    errors: dict[str, str] = {}

    def arg(name: str) -> str:
        return (args.get(name) or "").strip()

    regime = arg("regime")
    if regime:
        if regime in vocab.REGIMES:
            params.regime = regime
        else:
            known = ", ".join(vocab.REGIMES)
            errors["regime"] = f"'{regime}' is not a regime; choose one of {known}"
    state = arg("state")
    if state:
        code = state_resolver(session).resolve(_strip_state_label(state))
        if code:
            params.state = code
        else:
            errors["state"] = (
                f"'{state}' is not a known participating State; use an ISO 3166 alpha-3 "
                "code such as DEU, or a name such as Germany"
            )
    region = arg("region")
    if region:
        if session.get(Region, region) is not None:
            params.region = region
        else:
            errors["region"] = f"'{region}' is not a known region; choose one from the list"
    year = arg("year")
    if year:
        if year.isascii() and year.isdigit() and 1900 <= int(year) <= 2200:
            params.year = int(year)
        else:
            errors["year"] = f"'{year}' is not a year; enter four digits such as 2024"
    kind = arg("kind")
    kcol = kind_column(spec)
    if kind:
        choices = spec.field(kcol).choices if kcol else ()
        if kind in choices:
            params.kind = kind
        else:
            errors["kind"] = f"'{kind}' is not a {kcol or 'kind'} of {spec.title.lower()}"
    q = arg("q")
    if "\x00" in q:
        # SQLite's LIKE ends the pattern at a NUL ('a\0b' matched every value ending in
        # 'a'), PostgreSQL refuses it; stored text never holds one (the validator refuses it).
        errors["q"] = "the search text holds a NUL character; no record contains one"
    elif q:
        params.q = q[:MAX_QUERY_LENGTH]
        if len(q) >= 3:  # not two-letter codes: "de" should not find every German record
            params.q_state = state_resolver(session).resolve(params.q)
    sort = arg("sort")
    if sort:
        if sort in spec.columns:
            params.sort = sort
        else:
            errors["sort"] = f"cannot sort by '{sort}'; choose a column of {spec.name}"
    order = arg("order")
    if order:
        if order in ("asc", "desc"):
            params.order = order
        else:
            errors["order"] = "order is asc (ascending) or desc (descending)"
    per_page = arg("per_page")
    if per_page:
        if per_page.isdigit() and int(per_page) in PAGE_SIZES:
            params.per_page = int(per_page)
        else:
            sizes = ", ".join(map(str, PAGE_SIZES))
            errors["per_page"] = f"'{per_page}' is not a page size; choose {sizes}"
    page = arg("page")
    if page:
        if page.isascii() and page.isdigit() and 1 <= int(page) <= 10_000_000:
            params.page = int(page)
        else:
            errors["page"] = f"'{page}' is not a page number; pages are numbered from 1"
    return params, errors


def _strip_state_label(value: str) -> str:
    """'DEU — Germany' (as the State pickers show) → 'DEU'; anything else unchanged."""
    head, sep, _tail = value.partition(" — ")
    return head.strip() if sep else value


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _date_expr(spec: ContractFile) -> ColumnElement[Any]:
    table = _table(spec)
    cols = [table.c[c] for c in LISTS[spec.name].date_columns]
    return cols[0] if len(cols) == 1 else func.coalesce(*cols)


def _year_condition(spec: ContractFile, year: int) -> ColumnElement[bool]:
    """The record's year is ``year`` (in UTC), as a range so an index on the column serves."""
    first = LISTS[spec.name].date_columns[0]
    kind = spec.field(first).type
    expr = _date_expr(spec)
    if kind in (contract.YEAR, contract.INT):
        return expr == year
    if kind == contract.TIMESTAMP:
        low: Any = dt.datetime(year, 1, 1, tzinfo=dt.UTC)
        high: Any = dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC)
    else:
        low, high = dt.date(year, 1, 1), dt.date(year + 1, 1, 1)
    return and_(expr >= low, expr < high)


def list_conditions(
    session: Session, spec: ContractFile, params: ListParams
) -> list[ColumnElement[bool]]:
    """The WHERE conditions of a list (shared by its COUNT and its page)."""
    table = _table(spec)
    conds: list[ColumnElement[bool]] = []
    if params.regime:
        conds.append(_regime_condition(spec, params.regime))
    single = [table.c[c] for c in state_columns(spec)]
    lists = [table.c[f.name] for f in spec.fields if f.type in STATE_LIST_TYPES]
    if params.state:
        code = params.state
        conds.append(
            or_(
                *(c == code for c in single),
                # Lists are space-separated codes: match the code as a whole word.
                *((literal(" ") + c + literal(" ")).like(f"% {code} %") for c in lists),
            )
        )
    if params.region:
        in_region = select(State.code).where(State.region_code == params.region)
        conds.append(or_(*(c.in_(in_region) for c in single)))
    if params.year is not None:
        conds.append(_year_condition(spec, params.year))
    if params.kind:
        conds.append(table.c[kind_column(spec)] == params.kind)  # type: ignore[index]
    if params.q:
        pattern = _like_pattern(params.q)
        text_conds = []
        for f in spec.fields:
            col = table.c[f.name]
            if f.type in TEXT_TYPES:
                text_conds.append(col.ilike(pattern, escape="\\"))
            elif f.key:
                text_conds.append(cast(col, String).ilike(pattern, escape="\\"))
        if params.q_state:  # "Germany" finds the records about DEU
            text_conds.extend(c == params.q_state for c in single)
        conds.append(or_(*text_conds))
    return conds


@dataclass
class ListPage:
    """One page of a list: the rows (dicts of every column and ``id``) and the counts."""

    rows: list[dict[str, Any]]
    total: int
    page: int
    per_page: int
    out_of_range: bool = False

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def first_index(self) -> int:
        return 0 if not self.rows else (self.page - 1) * self.per_page + 1

    @property
    def last_index(self) -> int:
        return (self.page - 1) * self.per_page + len(self.rows)

    def window(self, around: int = 2) -> list[int | None]:
        """Page numbers to link: the first, the last and a few around the current page;
        ``None`` marks a gap."""
        wanted = {1, self.pages, *range(self.page - around, self.page + around + 1)}
        shown = sorted(p for p in wanted if 1 <= p <= self.pages)
        out: list[int | None] = []
        for p in shown:
            if out and p - (out[-1] or 0) > 1:
                out.append(None)
            out.append(p)
        return out


def _order_by(spec: ContractFile, sort: str, order: str) -> list[Any]:
    table = _table(spec)
    col = table.c[sort]
    ordered = col.desc() if order == "desc" else col.asc()
    if col.nullable:
        # Empty values last in both directions, on both backends. (Only on nullable
        # columns: on NOT NULL ones a plain ORDER BY lets PostgreSQL walk the index.)
        ordered = ordered.nulls_last()
    tie = table.c.id.desc() if order == "desc" else table.c.id.asc()
    return [ordered, tie]


def list_records(session: Session, spec: ContractFile, params: ListParams) -> ListPage:
    """Count the records matching ``params`` and fetch the requested page of them."""
    table = _table(spec)
    conds = list_conditions(session, spec, params)
    total = session.scalar(select(func.count()).select_from(table).where(*conds)) or 0
    page = ListPage(rows=[], total=int(total), page=params.page, per_page=params.per_page)
    if params.page > page.pages:
        page.out_of_range = True
        return page
    stmt = (
        select(table)
        .where(*conds)
        .order_by(*_order_by(spec, params.sort, params.order))
        .limit(params.per_page)
        .offset((params.page - 1) * params.per_page)
    )
    page.rows = [dict(r) for r in session.execute(stmt).mappings()]
    return page


def has_records(session: Session, spec: ContractFile) -> bool:
    table = _table(spec)
    return session.scalar(select(table.c.id).limit(1)) is not None


def record_counts(session: Session) -> dict[str, int]:
    """The number of stored records per contract file, in one statement."""
    parts = [
        select(literal(name, String).label("kind"), func.count().label("n")).select_from(
            _table(spec)
        )
        for name, spec in contract.FILES.items()
    ]
    counts = dict.fromkeys(contract.FILES, 0)
    for kind, n in session.execute(union_all(*parts)):
        counts[kind] = int(n)
    return counts


def state_names(session: Session) -> dict[str, str]:
    """Every State's name by code (57 rows: read once per page instead of a join per row)."""
    return dict(session.execute(select(State.code, State.name).order_by(State.code)).all())


def regions(session: Session) -> list[tuple[str, str]]:
    rows = session.execute(select(Region.code, Region.name).order_by(Region.name)).all()
    return [(code, name) for code, name in rows]


# --------------------------------------------------------------------------------------
# Links between records
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """``source.column`` names a record of ``target`` by its ``target_column``."""

    source: str
    column: str
    target: str
    target_column: str

    @property
    def is_sibling(self) -> bool:
        """Rows of one file sharing a value (an activity's rows per source), not a reference."""
        return self.source == self.target and self.column == self.target_column


def _links() -> tuple[Link, ...]:
    """Every reference between contract files, read from the service's REFERRERS table
    (the same one that refuses deletes), plus an activity's other source rows."""
    by_model = {spec.model: name for name, spec in contract.FILES.items()}
    out = [
        Link(by_model[model], column, target, target_column)
        for (target, target_column), referrers in REFERRERS.items()
        for model, column in referrers
    ]
    out.append(Link("activities", "activity_id", "activities", "activity_id"))
    return tuple(out)


LINKS: tuple[Link, ...] = _links()

#: What the "add" link under a group of related records says (default: "Add one").
RELATED_ADD: dict[tuple[str, str], str] = {
    ("activities", "activity_id"): "Add a notification about this activity",
    ("notifications", "in_reply_to"): "Add a reply",
    ("notifications", "event_id"): "Add a message",
    ("reductions", "verified_by"): "Add a reduction verified by it",
}

RELATED_TITLES: dict[tuple[str, str, str], str] = {
    ("activities", "notifications", "activity_id"): "Notifications about this activity",
    ("activities", "activities", "activity_id"): "Other sources of this activity",
    ("notifications", "notifications", "in_reply_to"): "Replies to this message",
    ("inspections", "notifications", "event_id"): (
        "Messages about this inspection (request, reply, report …)"
    ),
    ("inspections", "reductions", "verified_by"): "Reductions verified by this inspection",
    ("observation_flights", "notifications", "event_id"): "Messages about this flight",
}


@dataclass
class RelatedGroup:
    """Records of ``kind`` whose ``column`` names this record."""

    title: str
    kind: str
    column: str
    value: str
    rows: list[dict[str, Any]]
    total: int
    add_label: str = "Add one"


@dataclass
class LinkTarget:
    """A record another record's value points at."""

    kind: str
    row: dict[str, Any]


def outgoing_links(
    session: Session, spec: ContractFile, row: Mapping[str, Any]
) -> dict[str, list[LinkTarget]]:
    """For each reference column of ``row`` with a value: the records it names (an
    activity_id names every source row of that activity)."""
    out: dict[str, list[LinkTarget]] = {}
    for link in LINKS:
        if link.source != spec.name or link.is_sibling:
            continue
        value = row.get(link.column)
        if not value:
            continue
        target = contract.get(link.target)
        table = _table(target)
        found = (
            session.execute(
                select(table)
                .where(table.c[link.target_column] == value)
                .order_by(table.c.id)
                .limit(RELATED_LIMIT)
            )
            .mappings()
            .all()
        )
        out.setdefault(link.column, []).extend(LinkTarget(link.target, dict(r)) for r in found)
    return out


def related_records(
    session: Session, spec: ContractFile, row: Mapping[str, Any]
) -> list[RelatedGroup]:
    """Records that point at ``row``, oldest first (a request before its reply and report),
    at most :data:`RELATED_LIMIT` each with the total."""
    groups = []
    for link in LINKS:
        if link.target != spec.name:
            continue
        value = row.get(link.target_column)
        if not value:
            continue
        source = contract.get(link.source)
        table = _table(source)
        conds = [table.c[link.column] == value]
        if link.is_sibling:
            conds.append(table.c.id != row["id"])
        total = session.scalar(select(func.count()).select_from(table).where(*conds)) or 0
        rows = []
        if total:
            lst = LISTS[source.name]
            rows = [
                dict(r)
                for r in session.execute(
                    select(table)
                    .where(*conds)
                    .order_by(*_order_by(source, lst.sort, "asc"))
                    .limit(RELATED_LIMIT)
                ).mappings()
            ]
        title = RELATED_TITLES.get(
            (spec.name, link.source, link.column),
            f"{source.title} whose {link.column} names this record",
        )
        add = (
            "Add another source row"
            if link.is_sibling
            else RELATED_ADD.get((link.source, link.column), "Add one")
        )
        groups.append(
            RelatedGroup(title, source.name, link.column, str(value), rows, int(total), add)
        )
    return groups


# --------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------


@dataclass
class Change:
    field: str
    before: Any
    after: Any


@dataclass
class HistoryEntry:
    """One change to a record: when, who (a user, an import run or the system), what.

    ``synthetic`` entries are not audit events: an import run records the rows it creates
    on the rows themselves (``created_run_id``), so their creation is reconstructed here.
    """

    occurred_at: dt.datetime | None
    action: str
    actor_type: str
    user_id: int | None = None
    username: str | None = None
    run_id: int | None = None
    run_source: str | None = None
    changes: list[Change] = field(default_factory=list)
    synthetic: bool = False
    event_id: int | None = None
    note: str | None = None

    @property
    def actor_label(self) -> str:
        if self.actor_type == "import_run" and self.run_id is not None:
            return f"import run {self.run_id}"
        if self.actor_type == "user":
            return self.username or (f"user #{self.user_id}" if self.user_id else "a user")
        if self.actor_type == "unknown":
            return "an import run or the system"
        return "the system"


@dataclass
class History:
    """The history of one natural key, newest first; ``deleted`` is the delete event when
    no record has the key now (its ``changes`` hold the last values)."""

    key: str
    entries: list[HistoryEntry]
    deleted: HistoryEntry | None = None

    @property
    def last_values(self) -> dict[str, Any]:
        if self.deleted is None:
            return {}
        return {c.field: c.before for c in self.deleted.changes}


def _changes(spec: ContractFile, raw: Mapping[str, Any] | None) -> list[Change]:
    if not raw:
        return []
    order = {c: i for i, c in enumerate(spec.columns)}
    out = []
    for name, pair in raw.items():
        before, after = [*pair, None, None][:2] if isinstance(pair, list) else (None, pair)
        out.append(Change(name, before, after))
    out.sort(key=lambda c: order.get(c.field, len(order)))
    return out


def _initial_values(
    spec: ContractFile, final: Mapping[str, Any], updates: Sequence[AuditEvent]
) -> dict[str, Any]:
    """Walk back from the last known values through the updates to the values at creation."""
    values = {c: final.get(c) for c in spec.columns}
    for event in sorted(updates, key=lambda e: (e.occurred_at, e.id), reverse=True):
        for name, pair in (event.changes or {}).items():
            if isinstance(pair, list) and name in values:
                values[name] = pair[0]
    return values


def record_history(
    session: Session,
    spec: ContractFile,
    key: Mapping[str, Any],
    row: Mapping[str, Any] | None = None,
) -> History:
    """Every change to the record with this natural key, newest first.

    Audit events are found by (file, entity key), so a key that was deleted (and perhaps
    created again) keeps its whole history. Creations by import runs, which the audit log
    holds as one summary event per run, are rebuilt from the row's ``created_run_id`` and
    ``created_at`` and the values it had before later updates.
    """
    ek = entity_key(spec, key)
    if row is None:
        row = get_record(session, spec, key)
    events = list(
        session.scalars(
            select(AuditEvent)
            .where(AuditEvent.entity_type == spec.name, AuditEvent.entity_key == ek)
            .order_by(AuditEvent.occurred_at, AuditEvent.id)
        )
    )
    entries = [
        HistoryEntry(
            occurred_at=e.occurred_at,
            action=e.action,
            actor_type=e.actor_type,
            user_id=e.user_id,
            run_id=e.run_id,
            changes=_changes(spec, e.changes),
            event_id=e.id,
            note=e.note,
        )
        for e in events
    ]

    # Each life of the key (a row id) that has no 'create' event was created in bulk.
    lives: dict[int | None, list[AuditEvent]] = {}
    for e in events:
        lives.setdefault(e.entity_id, []).append(e)
    if row is not None:
        lives.setdefault(row["id"], [])
    for entity_id, life in lives.items():
        if entity_id is None or any(e.action == "create" for e in life):
            continue
        updates = [e for e in life if e.action == "update"]
        current = row is not None and row["id"] == entity_id
        if current:
            assert row is not None
            final = {c: json_value(row[c]) for c in spec.columns}
            run_id, user_id = row.get("created_run_id"), row.get("created_by_id")
            actor = "import_run" if run_id else ("user" if user_id else "system")
            when = row.get("created_at")
            note = None
        else:
            ends = [e for e in life if e.action == "delete"]
            if not ends:
                continue
            final = {c: pair[0] for c, pair in (ends[-1].changes or {}).items()}
            run_id = user_id = None
            actor, when = "unknown", None
            note = (
                "created in bulk before it was deleted; an import run's creations are "
                "recorded on the row, which no longer exists"
            )
        initial = _initial_values(spec, final, updates)
        entries.append(
            HistoryEntry(
                occurred_at=when,
                action="create",
                actor_type=actor,
                user_id=user_id,
                run_id=run_id,
                changes=[
                    Change(c, None, initial[c])
                    for c in spec.columns
                    if initial.get(c) not in (None, "")
                ],
                synthetic=True,
                note=note,
            )
        )

    _name_actors(session, entries)
    oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
    entries.sort(
        key=lambda e: (
            e.occurred_at or oldest,
            0 if e.synthetic else 1,
            e.event_id or 0,
        ),
        reverse=True,
    )
    deleted = None
    if row is None and entries and entries[0].action == "delete":
        deleted = entries[0]
    return History(key=ek, entries=entries, deleted=deleted)


def _name_actors(session: Session, entries: Sequence[HistoryEntry]) -> None:
    """Usernames and import-run sources for the entries, in two queries."""
    user_ids = {e.user_id for e in entries if e.user_id is not None}
    run_ids = {e.run_id for e in entries if e.run_id is not None}
    users = (
        dict(session.execute(select(User.id, User.username).where(User.id.in_(user_ids))).all())
        if user_ids
        else {}
    )
    runs = (
        dict(
            session.execute(
                select(ImportRun.id, ImportRun.source_name).where(ImportRun.id.in_(run_ids))
            ).all()
        )
        if run_ids
        else {}
    )
    for e in entries:
        if e.user_id is not None:
            e.username = users.get(e.user_id)
        if e.run_id is not None:
            e.run_source = runs.get(e.run_id) or None


@dataclass(frozen=True)
class Provenance:
    """Who created a stored record and who last set it, as the record page states it."""

    created_at: dt.datetime | None
    created_by: str
    created_run_id: int | None
    updated_at: dt.datetime | None
    set_by: str
    set_by_run_id: int | None


def provenance(session: Session, row: Mapping[str, Any]) -> Provenance:
    ids = {row.get("created_by_id"), row.get("set_by_user_id")} - {None}
    users = (
        dict(session.execute(select(User.id, User.username).where(User.id.in_(ids))).all())
        if ids
        else {}
    )

    def who(run_id: int | None, user_id: int | None) -> str:
        if run_id is not None:
            return f"import run {run_id}"
        if user_id is not None:
            return users.get(user_id) or f"user #{user_id}"
        return "the system"

    return Provenance(
        created_at=row.get("created_at"),
        created_by=who(row.get("created_run_id"), row.get("created_by_id")),
        created_run_id=row.get("created_run_id"),
        updated_at=row.get("updated_at"),
        set_by=who(row.get("set_by_run_id"), row.get("set_by_user_id")),
        set_by_run_id=row.get("set_by_run_id"),
    )
