"""Load the shipped reference data files into the database, idempotently.

The CSV files in ``cbm/reference/data`` are the source of truth: loading inserts new rows,
updates changed ones, and removes rows no longer in the files (except States and regions,
which recorded data may point at). A second load changes nothing. Correcting a value is a
one-line edit of a data file followed by ``cbm reference load``.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cbm import vocab
from cbm.db import Base
from cbm.models import (
    AuditEvent,
    OSAirfield,
    OSQuotaHolder,
    RegimeParticipation,
    Region,
    RuleParameter,
    State,
    StateAlias,
)
from cbm.services.validation import alias_key

DATA_DIR = Path(__file__).resolve().parent / "data"


class ReferenceDataError(ValueError):
    """A reference file is malformed; the message names the file, the line and the problem."""


@dataclass
class TableSync:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.inserted or self.updated or self.deleted)


@dataclass
class ReferenceSummary:
    tables: dict[str, TableSync] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return any(t.changed for t in self.tables.values())

    def lines(self) -> list[str]:
        return [
            f"{name}: {t.inserted} inserted, {t.updated} updated, {t.deleted} removed, "
            f"{t.unchanged} unchanged"
            for name, t in self.tables.items()
        ]


def read_csv(name: str, data_dir: Path = DATA_DIR) -> list[dict[str, str]]:
    path = data_dir / name
    if not path.exists():
        raise ReferenceDataError(f"reference file {path} is missing")
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return [
            {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            for row in csv.DictReader(handle)
        ]


def _date(value: str, where: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ReferenceDataError(f"{where}: '{value}' is not a date YYYY-MM-DD") from None


def _int(value: str, where: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ReferenceDataError(f"{where}: '{value}' is not a whole number") from None


def _choice(value: str, choices: Iterable[str], where: str) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise ReferenceDataError(f"{where}: '{value}' is not one of {', '.join(choices)}")
    return value


def _sync(
    session: Session,
    model: type[Base],
    key: tuple[str, ...],
    rows: list[dict[str, Any]],
    *,
    delete_missing: bool = True,
) -> TableSync:
    """Make the table hold exactly ``rows`` (by ``key``); report what changed."""
    sync = TableSync()
    existing = {tuple(getattr(o, k) for k in key): o for o in session.scalars(select(model))}
    seen = set()
    for row in rows:
        k = tuple(row[c] for c in key)
        if k in seen:
            raise ReferenceDataError(f"{model.__tablename__}: duplicate key {k}")
        seen.add(k)
        obj = existing.get(k)
        if obj is None:
            session.add(model(**row))
            sync.inserted += 1
            continue
        changed = False
        for column, value in row.items():
            if getattr(obj, column) != value:
                setattr(obj, column, value)
                changed = True
        sync.updated += changed
        sync.unchanged += not changed
    if delete_missing:
        for k, obj in existing.items():
            if k not in seen:
                session.delete(obj)
                sync.deleted += 1
    session.flush()
    return sync


def _rows(
    name: str, data_dir: Path, build: Callable[[dict[str, str], str], dict[str, Any]]
) -> list[dict[str, Any]]:
    return [build(r, f"{name} line {i}") for i, r in enumerate(read_csv(name, data_dir), start=2)]


def load_reference(session: Session, data_dir: Path = DATA_DIR) -> ReferenceSummary:
    """Synchronise every reference table with the files; flush, leave the commit to the caller."""
    summary = ReferenceSummary()
    t = summary.tables

    regions = _rows(
        "regions.csv",
        data_dir,
        lambda r, _w: {"code": r["code"], "name": r["name"], "description": r["description"]},
    )
    t["regions"] = _sync(session, Region, ("code",), regions, delete_missing=False)
    region_codes = {r["code"] for r in regions}

    def state(r: dict[str, str], where: str) -> dict[str, Any]:
        code = r["code"]
        if len(code) != 3 or not code.isalpha() or not code.isupper():
            raise ReferenceDataError(f"{where}: '{code}' is not an ISO 3166 alpha-3 code")
        return {
            "code": code,
            "name": r["name"],
            "region_code": _choice(r["region"], region_codes, where),
            "tags": " ".join(r.get("tags", "").split()),
            "osce_since": _date(r.get("osce_since", ""), where),
            "note": r.get("note", ""),
        }

    states = _rows("states.csv", data_dir, state)
    t["states"] = _sync(session, State, ("code",), states, delete_missing=False)
    codes = {s["code"] for s in states}

    def alias(r: dict[str, str], where: str) -> dict[str, Any]:
        return {
            "alias": r["alias"],
            "alias_key": alias_key(r["alias"]),
            "state_code": _choice(r["state"], codes, where),
            "note": r.get("note", ""),
        }

    t["state_aliases"] = _sync(
        session, StateAlias, ("alias_key",), _rows("state_aliases.csv", data_dir, alias)
    )

    def participation(r: dict[str, str], where: str) -> dict[str, Any]:
        valid_from = _date(r["valid_from"], where)
        if valid_from is None:
            raise ReferenceDataError(f"{where}: valid_from is required")
        valid_to = _date(r.get("valid_to", ""), where)
        if valid_to is not None and valid_to < valid_from:
            raise ReferenceDataError(f"{where}: valid_to is before valid_from")
        return {
            "state_code": _choice(r["state"], codes, where),
            "regime": _choice(r["regime"], vocab.REGIMES, where),
            "status": _choice(r["status"], vocab.PARTICIPATION_STATUSES, where),
            "valid_from": valid_from,
            "valid_to": valid_to,
            "group": r.get("group", ""),
            "note": r.get("note", ""),
            "source": r.get("source", ""),
            "source_status": _choice(
                r.get("source_status", "unverified"), vocab.SOURCE_STATUSES, where
            ),
        }

    t["regime_participation"] = _sync(
        session,
        RegimeParticipation,
        ("state_code", "regime", "valid_from"),
        _rows("regime_participation.csv", data_dir, participation),
    )

    def parameter(r: dict[str, str], where: str) -> dict[str, Any]:
        return {
            "regime": _choice(r["regime"], vocab.REGIMES, where),
            "edition": r["edition"],
            "key": r["key"],
            "value": r["value"],
            "unit": r.get("unit", ""),
            "paragraph": r.get("paragraph", ""),
            "status": _choice(r["status"], vocab.PARAMETER_STATUSES, where),
            "source": r.get("source", ""),
            "description": r.get("description", ""),
        }

    t["rule_parameters"] = _sync(
        session,
        RuleParameter,
        ("regime", "edition", "key"),
        _rows("rule_parameters.csv", data_dir, parameter),
    )

    def quota_holder(r: dict[str, str], where: str) -> dict[str, Any]:
        members = r["members"].split()
        for m in members:
            _choice(m, codes, where)
        return {
            "holder": r["holder"],
            "members": " ".join(members),
            "passive_quota": _int(r["passive_quota"], where),
            "note": r.get("note", ""),
            "citation": r.get("citation", ""),
            "source_status": _choice(
                r.get("source_status", "primary"), vocab.SOURCE_STATUSES, where
            ),
        }

    holders = _rows("os_quotas.csv", data_dir, quota_holder)
    holder_ids = {h["holder"] for h in holders}

    def airfield(r: dict[str, str], where: str) -> dict[str, Any]:
        return {
            "holder": _choice(r["holder"], holder_ids, where),
            "airfield": r["airfield"],
            "max_distance_km": _int(r["max_distance_km"], where),
            "note": r.get("note", ""),
            "citation": r.get("citation", ""),
            "source_status": _choice(
                r.get("source_status", "primary"), vocab.SOURCE_STATUSES, where
            ),
        }

    airfields = _rows("os_airfields.csv", data_dir, airfield)
    # Airfields point at holders: remove stale airfields before holders, add holders first.
    t["os_quota_holders"] = _sync(
        session, OSQuotaHolder, ("holder",), holders, delete_missing=False
    )
    t["os_airfields"] = _sync(session, OSAirfield, ("holder", "airfield"), airfields)
    stale = [h for h in session.scalars(select(OSQuotaHolder)) if h.holder not in holder_ids]
    for h in stale:
        session.delete(h)
        t["os_quota_holders"].deleted += 1
    session.flush()

    if summary.changed:
        session.add(
            AuditEvent(
                actor_type="system",
                action="reference_load",
                entity_type="reference",
                entity_key="reference data",
                changes={
                    name: {"inserted": s.inserted, "updated": s.updated, "deleted": s.deleted}
                    for name, s in t.items()
                    if s.changed
                },
            )
        )
        session.flush()
    return summary
