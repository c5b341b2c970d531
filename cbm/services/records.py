"""Writing contract records: validate, resolve references, upsert by natural key, audit.

One function per contract file (``upsert_activities`` …) all share :func:`upsert_records`.
It works on sets of rows: one query to find what exists per chunk of keys, bulk INSERT and
bulk UPDATE statements, and audit events in the same transaction. Services flush; the caller
(a request, a command, a job) commits.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import ARRAY, Table, any_, bindparam, delete, func, insert, select
from sqlalchemy.orm import Session

from cbm import contract
from cbm.contract import ContractFile
from cbm.db import utcnow
from cbm.models import (
    Activity,
    AuditEvent,
    Inspection,
    Notification,
    ObservationFlight,
    Reduction,
    State,
    StateAlias,
)
from cbm.services.bulk import (
    bulk_insert,
    bulk_update_by_id,
    create_stage,
    drop_stage,
    fill_stage,
    storage_values,
)
from cbm.services.validation import RowError, StateResolver, validate_rows

KEY_CHUNK = 2000
MODES = ("upsert", "create", "update")
PROVENANCE = (
    "created_at",
    "updated_at",
    "created_run_id",
    "created_by_id",
    "set_by_run_id",
    "set_by_user_id",
)
AUDIT_COLUMNS = (
    "occurred_at",
    "actor_type",
    "user_id",
    "run_id",
    "action",
    "entity_type",
    "entity_id",
    "entity_key",
    "changes",
)


@dataclass(frozen=True)
class Actor:
    """Who is writing: an analyst (``user_id``), an import run (``run_id``), or the system."""

    user_id: int | None = None
    run_id: int | None = None

    @property
    def type(self) -> str:
        if self.run_id is not None:
            return "import_run"
        if self.user_id is not None:
            return "user"
        return "system"


SYSTEM = Actor()


def audit_event(
    session: Session,
    actor: Actor,
    action: str,
    entity_type: str,
    entity_id: int | None,
    entity_key: str,
    changes: Mapping[str, Any],
) -> None:
    """Add one audit event for a change made outside the contract records (accounts, API
    tokens, sources): the same attribution as a record's, in the same log."""
    session.add(
        AuditEvent(
            occurred_at=utcnow(),
            actor_type=actor.type,
            user_id=actor.user_id,
            run_id=actor.run_id,
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            entity_key=entity_key,
            changes=dict(changes),
        )
    )


@dataclass
class UpsertResult:
    """Counts and errors of one upsert call (the shape importers and forms report)."""

    kind: str
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)
    written: bool = True

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "read": self.read,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "errors": [e.__dict__ for e in self.errors],
        }


def state_resolver(session: Session) -> StateResolver:
    """Codes and aliases as stored in the reference tables (so corrections need no code)."""
    codes = session.scalars(select(State.code)).all()
    aliases = dict(session.execute(select(StateAlias.alias, StateAlias.state_code)).all())
    return StateResolver(codes, aliases)


def upsert_records(
    session: Session,
    spec: ContractFile | str,
    rows: pd.DataFrame | Iterable[Mapping[str, Any]],
    *,
    actor: Actor = SYSTEM,
    all_or_nothing: bool = False,
    first_row_number: int = 1,
    states: StateResolver | None = None,
    mode: str = "upsert",
) -> UpsertResult:
    """Validate ``rows`` and write the good ones by natural key, with provenance and audit.

    With ``all_or_nothing`` any error means nothing is written. Rows are numbered from
    ``first_row_number`` in errors (an importer passes 2 for a CSV with a header line).
    ``mode`` is ``upsert`` (importers), ``create`` (a key that exists is an error: a form
    adding a record) or ``update`` (a key that does not exist is an error: a form
    correcting one).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    if isinstance(spec, str):
        spec = contract.get(spec)
    states = states or state_resolver(session)
    validated = validate_rows(spec, rows, states, first_row_number=first_row_number)
    result = UpsertResult(kind=spec.name, read=validated.read, errors=list(validated.errors))

    good = validated.columns
    good_numbers = np.asarray(validated.row_numbers, dtype=np.int64)
    # Repeat until stable: refusing a row may leave a reply in the same batch dangling.
    while True:
        ref_errors = _reference_errors(session, spec, good, good_numbers)
        if not ref_errors:
            break
        result.errors.extend(ref_errors)
        keep = ~np.isin(good_numbers, [e.row for e in ref_errors])
        good = {name: values[keep] for name, values in good.items()}
        good_numbers = good_numbers[keep]
    if mode != "upsert":
        # Forms: a handful of rows, and the mode needs to know what exists before writing.
        good_rows = _as_dicts(spec, good)
        numbers = good_numbers.tolist()
        existing: dict[tuple, dict] = {}
        if good_rows:
            session.flush()
            existing = _existing(session, spec.model.__table__, spec, good_rows)
        mode_errors = []
        for row, number in zip(good_rows, numbers, strict=True):
            found = tuple(row[k] for k in spec.key) in existing
            if mode == "create" and found:
                mode_errors.append(
                    RowError(
                        number,
                        spec.key[0],
                        row[spec.key[0]],
                        f"a record with this key ({entity_key(spec, row)}) already exists; "
                        "edit it instead",
                    )
                )
            elif mode == "update" and not found:
                mode_errors.append(
                    RowError(
                        number,
                        spec.key[0],
                        row[spec.key[0]],
                        f"no record with this key ({entity_key(spec, row)}) is stored",
                    )
                )
        if mode_errors:
            result.errors.extend(mode_errors)
            refused = {e.row for e in mode_errors}
            keep_at = [i for i, n in enumerate(numbers) if n not in refused]
            good_rows = [good_rows[i] for i in keep_at]
    result.errors.sort(key=lambda e: e.row or 0)

    file_level = any(e.row is None for e in result.errors)
    rejected_rows = {e.row for e in result.errors if e.row is not None}
    result.rejected = result.read if file_level else len(rejected_rows)
    if result.errors and all_or_nothing:
        result.written = False
        return result

    if mode != "upsert":
        _write(session, spec, good_rows, existing, actor, result)
    else:
        _merge(session, spec, good, actor, result)
    return result


def _as_dicts(spec: ContractFile, columns: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """Column arrays of good rows as one dict per row (for the few-row paths)."""
    if not columns:
        return []
    lists = [columns[name].tolist() for name in spec.columns]
    return [dict(zip(spec.columns, values, strict=True)) for values in zip(*lists, strict=True)]


def _reference_errors(
    session: Session, spec: ContractFile, columns: Mapping[str, np.ndarray], numbers: np.ndarray
) -> list[RowError]:
    """References between records must resolve, to stored rows or to rows of the same batch."""
    checks: list[tuple[str, list[Any], str]] = []
    if spec.name == "notifications":
        checks = [
            ("activity_id", [Activity.activity_id], "activity"),
            ("in_reply_to", [Notification.reference], "notification"),
            ("event_id", [Inspection.inspection_id, ObservationFlight.flight_id], "event"),
        ]
    elif spec.name == "reductions":
        checks = [("verified_by", [Inspection.inspection_id], "inspection")]
    errors: list[RowError] = []
    if not len(numbers):
        return errors
    for column, targets, label in checks:
        values = columns[column].tolist()
        wanted = {v for v in values if v}
        if not wanted:
            continue
        found: set[str] = set()
        if spec.name == "notifications" and column == "in_reply_to":
            found |= set(columns["reference"].tolist())
        for target in targets:
            for chunk in _chunks(sorted(wanted - found), KEY_CHUNK):
                found |= set(session.scalars(select(target).where(target.in_(chunk))).all())
        hint = {
            "activity": "import the activity first",
            "notification": "import the message it answers first, or in the same file",
            "event": "import the inspection, evaluation visit or observation flight first",
            "inspection": "import the inspection first",
        }[label]
        own = columns["reference"].tolist() if column == "in_reply_to" else None
        for i, value in enumerate(values):
            if not value:
                continue
            number = int(numbers[i])
            if own is not None and value == own[i]:
                errors.append(RowError(number, column, value, "a message cannot answer itself"))
            elif value not in found:
                errors.append(
                    RowError(number, column, value, f"{label} '{value}' is not stored; {hint}")
                )
    return errors


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _existing(session: Session, table: Table, spec: ContractFile, rows: list[dict]) -> dict:
    """Stored rows for the batch's keys, by key tuple.

    One indexed ``IN`` query per chunk of values of the batch's most varied key column
    (a plain ``IN`` plans and runs far faster than a tuple ``IN`` on both backends), then
    the full key is matched in Python.
    """
    keys = spec.key
    cols = [table.c.id, *(table.c[c] for c in spec.columns)]
    wanted = {tuple(r[k] for k in keys) for r in rows}
    position = max(range(len(keys)), key=lambda i: len({w[i] for w in wanted}))
    column = table.c[keys[position]]
    out: dict[tuple, dict] = {}
    values = sorted({w[position] for w in wanted}, key=str)
    postgres = session.get_bind().dialect.name == "postgresql"
    for chunk in _chunks(values, 50_000 if postgres else KEY_CHUNK):
        if postgres:
            # One array parameter instead of thousands of bind parameters.
            cond = column == any_(bindparam("key_values", chunk, type_=ARRAY(column.type)))
        else:
            cond = column.in_(chunk)
        for rec in session.execute(select(*cols).where(cond)).mappings():
            key = tuple(rec[k] for k in keys)
            if key in wanted:
                out[key] = dict(rec)
    return out


def json_value(value: Any) -> Any:
    """A value as the audit log stores it (ISO dates, UTC timestamps with Z)."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def entity_key(spec: ContractFile, row: Mapping[str, Any]) -> str:
    """The natural key as one readable string (for the audit log and history pages)."""
    return " / ".join(str(json_value(row[k])) for k in spec.key)


def _write(
    session: Session,
    spec: ContractFile,
    rows: list[dict],
    existing: dict[tuple, dict],
    actor: Actor,
    result: UpsertResult,
) -> None:
    if not rows:
        return
    table: Table = spec.model.__table__  # type: ignore[attr-defined]
    now = utcnow()
    inserts: list[dict] = []
    updates: list[dict] = []
    audits: list[dict] = []
    for row in rows:
        key = tuple(row[k] for k in spec.key)
        old = existing.get(key)
        if old is None:
            inserts.append(
                {
                    **row,
                    "created_at": now,
                    "updated_at": now,
                    "created_run_id": actor.run_id,
                    "created_by_id": actor.user_id,
                    "set_by_run_id": actor.run_id,
                    "set_by_user_id": actor.user_id,
                }
            )
            continue
        changes = {
            c: [json_value(old[c]), json_value(row[c])] for c in spec.columns if old[c] != row[c]
        }
        if not changes:
            result.unchanged += 1
            continue
        updates.append(
            {
                **row,
                "updated_at": now,
                "set_by_run_id": actor.run_id,
                "set_by_user_id": actor.user_id,
                "id": old["id"],
            }
        )
        audits.append(
            {
                "occurred_at": now,
                "actor_type": actor.type,
                "user_id": actor.user_id,
                "run_id": actor.run_id,
                "action": "update",
                "entity_type": spec.name,
                "entity_id": old["id"],
                "entity_key": entity_key(spec, row),
                "changes": changes,
            }
        )
    if inserts:
        bulk_insert(session, table, inserts, (*spec.columns, *PROVENANCE))
        result.inserted = len(inserts)
        audits.extend(_creation_events(session, table, spec, inserts, actor, now))
    if updates:
        bulk_update_by_id(
            session,
            table,
            updates,
            (*spec.columns, "updated_at", "set_by_run_id", "set_by_user_id"),
        )
        result.updated = len(updates)
    if audits:
        bulk_insert(session, AuditEvent.__table__, audits, AUDIT_COLUMNS)


def _merge(
    session: Session,
    spec: ContractFile,
    columns: Mapping[str, np.ndarray],
    actor: Actor,
    result: UpsertResult,
) -> None:
    """Upsert good rows set-wise: stage them, find changed stored rows in one join, merge.

    1. The rows go into a temporary staging table (PostgreSQL: one binary ``COPY``;
       SQLite: one ``executemany``).
    2. One join of the stage with the table by natural key says which rows are stored and
       whether a value differs (``IS DISTINCT FROM``); only those that differ are read
       back, as typed values, to name each change in the audit log. (Nothing is read back
       when no key is stored yet, and nothing is written when every row is stored as is.)
    3. One ``INSERT … SELECT … ON CONFLICT (key) DO UPDATE … WHERE id IN (changed)``
       writes new rows (in row order, so ids follow the file) and the changed ones.
       Counts: the statement's row count is inserted + updated; the rest were unchanged.
    """
    names = spec.columns
    n = len(columns[names[0]]) if columns else 0
    if not n:
        return
    table: Table = spec.model.__table__  # type: ignore[attr-defined]
    session.flush()
    connection = session.connection()
    postgres = connection.dialect.name == "postgresql"
    q = "%s" if postgres else "?"
    quote = connection.dialect.identifier_preparer.quote
    target = quote(table.name)
    now = utcnow()

    # On an error the stage is left to the rollback (PostgreSQL drops it with the
    # transaction) or to the next batch (SQLite: create_stage drops it first).
    stage = create_stage(session, table, names)
    fill_stage(
        session, stage, names, [storage_values(session, table, c, columns[c]) for c in names]
    )
    on_key = " AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in spec.key)
    distinct = "IS DISTINCT FROM" if postgres else "IS NOT"
    differs = " OR ".join(f"t.{quote(c)} {distinct} s.{quote(c)}" for c in names)
    if postgres:
        # One index probe per staged row, whatever the table's size: left to itself the
        # planner hashes the whole table for every batch (the stage has no statistics).
        inner = f"SELECT * FROM {target} t WHERE {on_key} OFFSET 0"  # noqa: S608
        joined = f"{stage} s CROSS JOIN LATERAL ({inner}) t"
    else:
        joined = f"{stage} s JOIN {target} t ON {on_key}"
    # The stored rows of the batch's keys: position, id, and whether a value differs.
    matched = connection.exec_driver_sql(
        f"SELECT s._n, t.id, CASE WHEN {differs} THEN 1 ELSE 0 END FROM {joined}"  # noqa: S608
    ).all()
    candidates = sorted((position, rid) for position, rid, differ in matched if differ)
    updates: list[tuple[int, int]] = []  # (id, position)
    audits: list[dict] = []
    if candidates:
        old = _rows_by_id(session, table, spec, [rid for _, rid in candidates])
        for position, rid in candidates:
            before = old[rid]
            row = {c: columns[c][position] for c in names}
            changes = {
                c: [json_value(before[c]), json_value(row[c])] for c in names if before[c] != row[c]
            }
            if not changes:
                continue  # stored differently, same value: unchanged
            updates.append((rid, position))
            audits.append(
                {
                    "occurred_at": now,
                    "actor_type": actor.type,
                    "user_id": actor.user_id,
                    "run_id": actor.run_id,
                    "action": "update",
                    "entity_type": spec.name,
                    "entity_id": rid,
                    "entity_key": entity_key(spec, row),
                    "changes": changes,
                }
            )
    stored = {position for position, _, _ in matched}

    def value(column: str, v: Any) -> Any:
        return storage_values(session, table, column, np.array([v], dtype=object))[0]

    provenance = [
        value("created_at", now),
        value("updated_at", now),
        actor.run_id,
        actor.user_id,
        actor.run_id,
        actor.user_id,
    ]
    quoted = ", ".join(quote(c) for c in names)
    insert_sql = (
        f"INSERT INTO {target} ({quoted}, {', '.join(quote(c) for c in PROVENANCE)}) "  # noqa: S608
        f"SELECT {quoted}, {', '.join([q] * len(PROVENANCE))} FROM {stage} "
        f"WHERE true ORDER BY _n ON CONFLICT ({', '.join(quote(k) for k in spec.key)}) "
    )
    params: list[Any] = list(provenance)
    if updates:
        assignments = ", ".join(
            f"{quote(c)} = excluded.{quote(c)}"
            for c in (*names, "updated_at", "set_by_run_id", "set_by_user_id")
        )
        ids = [rid for rid, _ in updates]
        if postgres:
            where = f"{target}.id = ANY({q}::integer[])"
        else:
            where = f"{target}.id IN (SELECT value FROM json_each({q}))"  # noqa: S608
            ids = json.dumps(ids)
        insert_sql += f"DO UPDATE SET {assignments} WHERE {where}"
        params.append(ids)
    else:
        insert_sql += "DO NOTHING"
    written = 0
    if updates or len(stored) < n:  # nothing to write when every row is stored as is
        written = connection.exec_driver_sql(insert_sql, tuple(params)).rowcount
    drop_stage(session, stage)

    result.updated = len(updates)
    result.inserted = written - len(updates)
    result.unchanged = n - written
    if result.inserted:
        if actor.run_id is None:
            inserts = [{c: columns[c][p] for c in names} for p in range(n) if p not in stored]
            audits.extend(_creation_events(session, table, spec, inserts, actor, now))
        else:
            audits.extend(_creation_events(session, table, spec, [], actor, now, result.inserted))
    if audits:
        bulk_insert(session, AuditEvent.__table__, audits, AUDIT_COLUMNS)


def _rows_by_id(
    session: Session, table: Table, spec: ContractFile, ids: Sequence[int]
) -> dict[int, dict]:
    """Stored rows (typed as the ORM reads them) by id."""
    cols = [table.c.id, *(table.c[c] for c in spec.columns)]
    out: dict[int, dict] = {}
    for chunk in _chunks(list(ids), KEY_CHUNK):
        for rec in session.execute(select(*cols).where(table.c.id.in_(chunk))).mappings():
            out[rec["id"]] = dict(rec)
    return out


def _creation_events(
    session: Session,
    table: Table,
    spec: ContractFile,
    inserts: list[dict],
    actor: Actor,
    now: dt.datetime,
    count: int | None = None,
) -> list[dict]:
    """Audit events for new rows (``count``: how many, when ``inserts`` is not given).

    An analyst's or the system's creations get one event per row with every value. An
    import run's creations get one summary event per run and kind: the rows themselves carry
    ``created_run_id``, which is what history pages and run reverts read, and a
    million-row import stays a bulk write.
    """
    if actor.run_id is not None:
        return [
            {
                "occurred_at": now,
                "actor_type": actor.type,
                "user_id": actor.user_id,
                "run_id": actor.run_id,
                "action": "import",
                "entity_type": spec.name,
                "entity_id": None,
                "entity_key": f"import run {actor.run_id}",
                "changes": {"inserted": len(inserts) if count is None else count},
            }
        ]
    ids = _existing(session, table, spec, inserts)
    events = []
    for row in inserts:
        key = tuple(row[k] for k in spec.key)
        events.append(
            {
                "occurred_at": now,
                "actor_type": actor.type,
                "user_id": actor.user_id,
                "run_id": None,
                "action": "create",
                "entity_type": spec.name,
                "entity_id": ids[key]["id"],
                "entity_key": entity_key(spec, row),
                "changes": {
                    c: [None, json_value(row[c])] for c in spec.columns if row[c] not in (None, "")
                },
            }
        )
    return events


#: Who may point at a record: (file, column referred to) -> [(referring model, column)].
REFERRERS: dict[tuple[str, str], list[tuple[Any, str]]] = {
    ("activities", "activity_id"): [(Notification, "activity_id")],
    ("notifications", "reference"): [(Notification, "in_reply_to")],
    ("inspections", "inspection_id"): [(Notification, "event_id"), (Reduction, "verified_by")],
    ("observation_flights", "flight_id"): [(Notification, "event_id")],
}


class DeleteRefused(ValueError):
    """A delete that would leave other records pointing at nothing; says which."""


def delete_record(
    session: Session, spec: ContractFile | str, key: Mapping[str, Any], *, actor: Actor = SYSTEM
) -> dict[str, Any]:
    """Delete one record by natural key, keeping its last values in the audit log.

    The row leaves its table, but its history stays: the audit event holds every value it
    had, so the record page of a deleted key still shows who created, changed and deleted
    it. Refused (:class:`DeleteRefused`) while other records refer to it.
    """
    if isinstance(spec, str):
        spec = contract.get(spec)
    table: Table = spec.model.__table__  # type: ignore[attr-defined]
    cond = [table.c[k] == (key.get(k) if key.get(k) is not None else "") for k in spec.key]
    session.flush()
    old = session.execute(select(table).where(*cond)).mappings().first()
    if old is None:
        raise LookupError(f"no {spec.title.lower()} record with key {entity_key(spec, key)}")
    for (name, column), referrers in REFERRERS.items():
        if name != spec.name:
            continue
        value = old[column]
        if name == "activities":
            # Other sources of the same activity keep the reference valid.
            others = session.scalar(
                select(func.count())
                .select_from(table)
                .where(table.c.activity_id == value, table.c.id != old["id"])
            )
            if others:
                continue
        for model, ref_column in referrers:
            col = getattr(model, ref_column)
            found = session.scalars(select(model).where(col == value).limit(5)).all()
            if found:
                spec_of = next(f for f in contract.FILES.values() if f.model is model)
                keys = ", ".join(entity_key(spec_of, _row_dict(spec_of, r)) for r in found)
                raise DeleteRefused(
                    f"{spec_of.title.lower()} {keys} refer to {entity_key(spec, old)} "
                    f"({ref_column}); change or delete them first"
                )
    session.execute(
        insert(AuditEvent.__table__).values(
            occurred_at=utcnow(),
            actor_type=actor.type,
            user_id=actor.user_id,
            run_id=actor.run_id,
            action="delete",
            entity_type=spec.name,
            entity_id=old["id"],
            entity_key=entity_key(spec, old),
            changes={
                c: [json_value(old[c]), None] for c in spec.columns if old[c] not in (None, "")
            },
        )
    )
    session.execute(delete(table).where(table.c.id == old["id"]))
    session.flush()
    return {c: old[c] for c in spec.columns}


def _row_dict(spec: ContractFile, obj: Any) -> dict[str, Any]:
    return {c: getattr(obj, c) for c in spec.columns}


def _make(name: str):
    spec = contract.get(name)

    def upsert(
        session: Session,
        rows: pd.DataFrame | Iterable[Mapping[str, Any]],
        *,
        actor: Actor = SYSTEM,
        all_or_nothing: bool = False,
        first_row_number: int = 1,
        states: StateResolver | None = None,
        mode: str = "upsert",
    ) -> UpsertResult:
        return upsert_records(
            session,
            spec,
            rows,
            actor=actor,
            all_or_nothing=all_or_nothing,
            first_row_number=first_row_number,
            states=states,
            mode=mode,
        )

    upsert.__name__ = f"upsert_{name}"
    upsert.__qualname__ = upsert.__name__
    upsert.__doc__ = (
        f"Validate and write {spec.title.lower()} rows (contract file ``{name}``), "
        f"keyed by ({', '.join(spec.key)}). See :func:`upsert_records`."
    )
    return upsert


upsert_activities = _make("activities")
upsert_notifications = _make("notifications")
upsert_inspections = _make("inspections")
upsert_observation_flights = _make("observation_flights")
upsert_quotas = _make("quotas")
upsert_holdings = _make("holdings")
upsert_ceilings = _make("ceilings")
upsert_reductions = _make("reductions")
