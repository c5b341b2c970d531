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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from cbm.compliance.context import CheckContext, jsonable
from cbm.compliance.registry import Candidate, Rule, select_rules
from cbm.db import utcnow
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
    """
    scope = scope or Scope()
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


def _sync(
    session: Session,
    run: CheckRun,
    rules: Sequence[Rule],
    scope: Scope,
    found: dict[str, list[Candidate]],
    now: dt.datetime,
) -> dict[str, int]:
    by_id = {r.id: r for r in rules}
    wanted: dict[str, tuple[Rule, Candidate]] = {}
    for rule_id, candidates in found.items():
        for c in candidates:
            wanted[finding_key(rule_id, c)] = (by_id[rule_id], c)
    query = select(Finding).where(Finding.rule_id.in_([r.id for r in rules]))
    if scope.states:
        query = query.where(Finding.state.in_(scope.states))
    start, end = scope.window()
    if start:
        query = query.where(Finding.due_at >= start)
    if end:
        query = query.where(Finding.due_at <= end)
    existing = {f.finding_key: f for f in session.scalars(query)}
    # Keys detected now but stored outside the scope filters above (e.g. a due date moved).
    missing_keys = [k for k in wanted if k not in existing]
    for chunk in range(0, len(missing_keys), 500):
        keys = missing_keys[chunk : chunk + 500]
        for f in session.scalars(select(Finding).where(Finding.finding_key.in_(keys))):
            existing[f.finding_key] = f
    counts = {"new": 0, "updated": 0, "reopened": 0, "resolved": 0}
    events: list[FindingEvent] = []
    created: list[Finding] = []
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
        f = existing.get(key)
        if f is None:
            f = Finding(
                finding_key=key,
                rule_id=r.id,
                status="open",
                first_detected_at=now,
                last_detected_at=now,
                last_check_run_id=run.id,
                **values,
            )
            session.add(f)
            created.append(f)
            counts["new"] += 1
            continue
        changes = {
            name: [jsonable(_comparable(getattr(f, name))), jsonable(_comparable(value))]
            for name, value in values.items()
            if _comparable(getattr(f, name)) != _comparable(value) and name != "evidence"
        }
        if f.evidence != values["evidence"]:
            changes["evidence"] = [None, None]  # too long for the history; the page shows it
        for name, value in values.items():
            setattr(f, name, value)
        f.last_detected_at = now
        f.last_check_run_id = run.id
        if f.status == "resolved":
            f.status = "open"
            f.resolved_at = None
            counts["reopened"] += 1
            events.append(_event(f, now, "reopened", run.id, changes or None))
        elif changes:
            counts["updated"] += 1
            events.append(_event(f, now, "changed", run.id, changes))
    for key, f in existing.items():
        if key in wanted or f.status == "resolved":
            continue
        f.status = "resolved"
        f.resolved_at = now
        f.last_check_run_id = run.id
        counts["resolved"] += 1
        events.append(
            _event(f, now, "resolved", run.id, None, "No longer detected: the facts changed.")
        )
    session.flush()  # new findings get their ids
    events.extend(_event(f, now, "detected", run.id, None) for f in created)
    session.add_all(events)
    run.findings_detected = len(wanted)
    run.findings_new = counts["new"]
    run.findings_updated = counts["updated"]
    run.findings_reopened = counts["reopened"]
    run.findings_resolved = counts["resolved"]
    session.flush()
    return counts


def _comparable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).replace(microsecond=0)
    return value


def _event(
    f: Finding,
    now: dt.datetime,
    action: str,
    run_id: int,
    changes: dict[str, Any] | None,
    comment: str | None = None,
) -> FindingEvent:
    return FindingEvent(
        finding_id=f.id,
        occurred_at=now,
        action=action,
        status=f.status,
        check_run_id=run_id,
        changes=changes,
        comment=comment,
    )


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
