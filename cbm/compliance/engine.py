"""Running checks: evaluate the rules in scope and keep the findings table in step.

Identity is ``finding_key`` (rule plus subject), so a re-check updates a finding instead of
duplicating it. Lifecycle: a new key is *open*; a finding no longer detected in the scope
evaluated is *resolved* automatically (the facts changed, e.g. a late notification was
imported); a resolved finding detected again is *reopened*. Acknowledged and disputed
findings keep the analyst's status while they are still detected. Every step is a
``FindingEvent``; every run is a ``CheckRun`` with its counts and coverage.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from cbm.compliance.context import CheckContext, jsonable
from cbm.compliance.registry import Candidate, Rule, select_rules
from cbm.db import transaction_lock, utcnow
from cbm.models import CheckRun, Finding, FindingEvent

log = logging.getLogger(__name__)
REGIME_ALIASES = {"OS": "OST", "OPEN_SKIES": "OST", "REDUCTIONS": "RED"}


class CheckError(ValueError):
    """A check asked for something that cannot be evaluated (unknown regime, bad window)."""


@dataclass(frozen=True)
class Scope:
    """What a check evaluates: regimes, States, and a window on deadlines/events (UTC days)."""

    regimes: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    rule_ids: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "regimes": list(self.regimes),
            "states": list(self.states),
            "from": self.date_from.isoformat() if self.date_from else None,
            "to": self.date_to.isoformat() if self.date_to else None,
            "rules": list(self.rule_ids),
        }

    def describe(self) -> str:
        parts = [
            f"regimes {', '.join(self.regimes)}" if self.regimes else "all regimes",
            f"States {', '.join(self.states)}" if self.states else "all States",
        ]
        if self.date_from or self.date_to:
            parts.append(f"due {self.date_from or '…'} to {self.date_to or '…'}")
        if self.rule_ids:
            parts.append(f"rules {', '.join(self.rule_ids)}")
        return "; ".join(parts)

    def window(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        start = (
            dt.datetime.combine(self.date_from, dt.time(0), tzinfo=dt.UTC)
            if self.date_from
            else None
        )
        end = (
            dt.datetime.combine(self.date_to, dt.time(23, 59, 59, 999999), tzinfo=dt.UTC)
            if self.date_to
            else None
        )
        return start, end


def make_scope(
    session: Session,
    *,
    regimes: Iterable[str] = (),
    states: Iterable[str] = (),
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    rule_ids: Iterable[str] = (),
) -> Scope:
    """A validated scope: unknown regimes, States or rules are refused with their name."""
    from cbm.compliance.registry import all_rules
    from cbm.services.records import state_resolver

    known_regimes = {r.regime for r in all_rules().values()}
    chosen = []
    for regime in regimes:
        code = REGIME_ALIASES.get(regime.strip().upper(), regime.strip().upper())
        if code not in known_regimes:
            raise CheckError(
                f"unknown regime {regime!r}; choose from {', '.join(sorted(known_regimes))}"
            )
        chosen.append(code)
    resolver = state_resolver(session)
    codes = []
    for state in states:
        code = resolver.resolve(state.strip())
        if code is None:
            raise CheckError(f"unknown State {state!r} (use an ISO 3166 alpha-3 code or a name)")
        codes.append(code)
    rules = list(rule_ids)
    unknown = [r for r in rules if r not in all_rules()]
    if unknown:
        raise CheckError(f"unknown rule {unknown[0]!r}")
    if date_from and date_to and date_from > date_to:
        raise CheckError(f"--from {date_from} is after --to {date_to}")
    return Scope(
        tuple(dict.fromkeys(chosen)), tuple(dict.fromkeys(codes)), date_from, date_to, tuple(rules)
    )


@dataclass
class CheckResult:
    run_id: int
    rules: int
    detected: int
    new: int
    updated: int
    reopened: int
    resolved: int
    seconds: float
    by_rule: dict[str, dict[str, int]] = field(default_factory=dict)
    coverage: dict[str, Any] = field(default_factory=dict)
    open_by_severity: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [
            f"check run {self.run_id}: {self.rules} rules, {self.detected} findings detected "
            f"({self.new} new, {self.updated} changed, {self.reopened} reopened), "
            f"{self.resolved} resolved, in {self.seconds:.1f} s"
        ]
        for rule_id, counts in self.by_rule.items():
            if counts.get("detected"):
                sev = ", ".join(f"{n} {s}" for s, n in counts.items() if s != "detected" and n)
                out.append(f"  {rule_id:<12} {counts['detected']:>5}  ({sev})")
        return out


def finding_key(rule_id: str, c: Candidate) -> str:
    """Rule plus subject: stable across runs (and across instances for the same data)."""
    if c.key:
        return f"{rule_id}|{c.key}"
    return f"{rule_id}|{c.subject_type}|{c.subject_id}|{c.state}"


def evaluate(ctx: CheckContext, rules: Sequence[Rule], scope: Scope) -> dict[str, list[Candidate]]:
    """Run each rule and keep the candidates in scope (State, window, participation)."""
    start, end = scope.window()
    out: dict[str, list[Candidate]] = {}
    for r in rules:
        found = list(r.check(ctx))
        if r.regime in ("VD", "OST", "CFE", "GEMI") and found:
            # No findings for a State that was not a party (withdrawn, suspended) then.
            when = pd.Series(
                [pd.Timestamp(c.due_at).tz_convert(None) if c.due_at else ctx.as_of for c in found]
            )
            party = ctx.party(pd.Series([c.state for c in found]), r.regime, when)
            found = [c for c, ok in zip(found, party, strict=True) if ok]
        if scope.states:
            found = [c for c in found if c.state in scope.states]
        if start or end:
            found = [
                c
                for c in found
                if c.due_at is None
                or ((start is None or c.due_at >= start) and (end is None or c.due_at <= end))
            ]
        unique: dict[str, Candidate] = {}
        for c in found:
            unique.setdefault(finding_key(r.id, c), c)
        out[r.id] = list(unique.values())
    return out


#: The lock every check holds (see :func:`run_check`).
CHECK_LOCK = "compliance:check"


def run_check(
    session: Session,
    scope: Scope | None = None,
    *,
    trigger: str = "cli",
    user_id: int | None = None,
    as_of: dt.datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> CheckResult:
    """Evaluate the rules in ``scope`` and update the findings (commits nothing itself).

    The caller owns the transaction; the check run row is written in it too. On an error
    the caller rolls back and records a failed run with :func:`record_failed_run`.

    Checks run one at a time per database (:data:`CHECK_LOCK`, held until the caller's
    commit): two checks at once (the nightly job and the one after an import, on two
    schedulers, or the Checks page) would both insert the same new findings (one failing
    on the unique key) and both resolve the same ones (two "resolved" events). Waiting
    for the other check, this one then reads the findings it wrote.
    """
    scope = scope or Scope()
    transaction_lock(session, CHECK_LOCK)
    started = time.perf_counter()
    now = utcnow()
    as_of = as_of or now
    run = CheckRun(
        trigger=trigger,
        user_id=user_id,
        scope=scope.as_json(),
        as_of=as_of,
        started_at=now,
        status="running",
    )
    session.add(run)
    session.flush()
    rules = select_rules(scope.regimes, scope.rule_ids)
    ctx = CheckContext(session, pd.Timestamp(as_of).tz_convert(None))
    found: dict[str, list[Candidate]] = {}
    for r in rules:
        if progress:
            progress(f"{r.id}: {r.title}")
        found.update(evaluate(ctx, [r], scope))
    counts = _sync(session, run, rules, scope, found, now)
    run.status = "succeeded"
    run.finished_at = utcnow()
    run.rules_evaluated = len(rules)
    run.coverage = ctx.coverage
    run.seconds = round(time.perf_counter() - started, 3)
    session.flush()
    by_rule: dict[str, dict[str, int]] = {}
    for r in rules:
        entry: dict[str, int] = {"detected": len(found.get(r.id, []))}
        for c in found.get(r.id, []):
            entry[c.severity] = entry.get(c.severity, 0) + 1
        by_rule[r.id] = entry
    return CheckResult(
        run.id,
        len(rules),
        run.findings_detected,
        counts["new"],
        counts["updated"],
        counts["reopened"],
        counts["resolved"],
        run.seconds,
        by_rule,
        ctx.coverage,
    )


VALUE_COLUMNS = (
    "regime",
    "severity",
    "state",
    "counterpart",
    "subject_type",
    "subject_id",
    "period",
    "due_at",
    "summary",
    "evidence",
)


def _sync(
    session: Session,
    run: CheckRun,
    rules: Sequence[Rule],
    scope: Scope,
    found: dict[str, list[Candidate]],
    now: dt.datetime,
) -> dict[str, int]:
    """Write what changed, set-based: new findings in one executemany, unchanged ones
    touched by one UPDATE per thousand, changed/reopened/resolved ones with their events."""
    table = Finding.__table__
    by_id = {r.id: r for r in rules}
    wanted: dict[str, tuple[Rule, Candidate]] = {}
    for rule_id, candidates in found.items():
        for c in candidates:
            wanted[finding_key(rule_id, c)] = (by_id[rule_id], c)
    columns = [
        table.c.id,
        table.c.finding_key,
        table.c.status,
        *(table.c[c] for c in VALUE_COLUMNS),
    ]
    query = select(*columns).where(table.c.rule_id.in_([r.id for r in rules]))
    if scope.states:
        query = query.where(table.c.state.in_(scope.states))
    start, end = scope.window()
    if start:
        query = query.where(table.c.due_at >= start)
    if end:
        query = query.where(table.c.due_at <= end)
    # FOR UPDATE (PostgreSQL; SQLite's write lock is already held): an analyst's action
    # on one of these findings either commits before this read, or waits for the check's
    # commit. Without it, an acknowledgement made meanwhile was overwritten by the status
    # read here (a lost update).
    existing = {row.finding_key: row for row in session.execute(query.with_for_update())}
    # Keys detected now but stored outside the scope filters above (e.g. a due date moved).
    missing_keys = [k for k in wanted if k not in existing]
    for keys in _chunks(missing_keys, 500):
        stmt = select(*columns).where(table.c.finding_key.in_(keys)).with_for_update()
        for row in session.execute(stmt):
            existing[row.finding_key] = row
    counts = {"new": 0, "updated": 0, "reopened": 0, "resolved": 0}
    events: list[dict[str, Any]] = []
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    touched: list[int] = []
    for key, (r, c) in wanted.items():
        values = {
            "regime": r.regime,
            "severity": c.severity,
            "state": c.state,
            "counterpart": c.counterpart,
            "subject_type": c.subject_type,
            "subject_id": c.subject_id,
            "period": c.period,
            "due_at": c.due_at,
            "summary": c.summary,
            "evidence": jsonable(c.evidence),
        }
        row = existing.get(key)
        if row is None:
            inserts.append(
                {
                    "finding_key": key,
                    "rule_id": r.id,
                    "status": "open",
                    "first_detected_at": now,
                    "last_detected_at": now,
                    "resolved_at": None,
                    "comment": None,
                    "comment_by_id": None,
                    "last_check_run_id": run.id,
                    **values,
                }
            )
            continue
        changes = {
            name: [jsonable(_comparable(getattr(row, name))), jsonable(_comparable(value))]
            for name, value in values.items()
            if name != "evidence" and _comparable(getattr(row, name)) != _comparable(value)
        }
        if row.evidence != values["evidence"]:
            changes["evidence"] = [None, None]  # too long for the history; the page shows it
        reopened = row.status == "resolved"
        if not changes and not reopened:
            touched.append(row.id)
            continue
        status = "open" if reopened else row.status
        updates.append({"_id": row.id, **values, "_status": status, "_resolved_at": None})
        if reopened:
            counts["reopened"] += 1
            events.append(_event(row.id, now, "reopened", status, run.id, changes or None))
        else:
            counts["updated"] += 1
            events.append(_event(row.id, now, "changed", status, run.id, changes))
    resolved = [
        row.id for key, row in existing.items() if key not in wanted and row.status != "resolved"
    ]
    for finding_id in resolved:
        counts["resolved"] += 1
        events.append(
            _event(
                finding_id,
                now,
                "resolved",
                "resolved",
                run.id,
                None,
                "No longer detected: the facts changed.",
            )
        )
    if inserts:
        session.execute(table.insert(), inserts)
        counts["new"] = len(inserts)
        for keys in _chunks([i["finding_key"] for i in inserts], 1000):
            for finding_id, _key in session.execute(
                select(table.c.id, table.c.finding_key).where(table.c.finding_key.in_(keys))
            ):
                events.append(_event(finding_id, now, "detected", "open", run.id, None))
    if updates:
        statement = (
            table.update()
            .where(table.c.id == bindparam("_id"))
            .values(
                **{c: bindparam(c) for c in VALUE_COLUMNS},
                status=bindparam("_status"),
                resolved_at=bindparam("_resolved_at"),
                last_detected_at=now,
                last_check_run_id=run.id,
            )
        )
        session.execute(statement, updates)
    for ids in _chunks(touched, 1000):
        session.execute(
            table.update()
            .where(table.c.id.in_(ids))
            .values(last_detected_at=now, last_check_run_id=run.id)
        )
    for ids in _chunks(resolved, 1000):
        session.execute(
            table.update()
            .where(table.c.id.in_(ids))
            .values(status="resolved", resolved_at=now, last_check_run_id=run.id)
        )
    if events:
        session.execute(FindingEvent.__table__.insert(), events)
    # Core statements bypass the identity map: Finding objects loaded earlier are stale.
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Finding):
            session.expire(obj)
    run.findings_detected = len(wanted)
    run.findings_new = counts["new"]
    run.findings_updated = counts["updated"]
    run.findings_reopened = counts["reopened"]
    run.findings_resolved = counts["resolved"]
    session.flush()
    return counts


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _comparable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).replace(microsecond=0)
    return value


def _event(
    finding_id: int,
    now: dt.datetime,
    action: str,
    status: str,
    run_id: int,
    changes: dict[str, Any] | None,
    comment: str | None = None,
) -> dict[str, Any]:
    return {
        "finding_id": finding_id,
        "occurred_at": now,
        "action": action,
        "status": status,
        "user_id": None,
        "check_run_id": run_id,
        "changes": changes,
        "comment": comment,
    }


def record_failed_run(
    session: Session, scope: Scope, *, trigger: str, user_id: int | None, message: str
) -> int:
    """A failed check still leaves a run row (after the caller rolled its work back)."""
    now = utcnow()
    run = CheckRun(
        trigger=trigger,
        user_id=user_id,
        scope=scope.as_json(),
        as_of=now,
        started_at=now,
        finished_at=now,
        status="failed",
        message=message[:2000],
    )
    session.add(run)
    session.flush()
    return run.id
