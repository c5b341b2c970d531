"""Helpers shared by the compliance tests: findings as comparable tuples."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cbm.demo import planted
from cbm.models import Finding

Key = tuple[str, str, str, str, str]  # rule, State, subject, period, severity


def found(session: Session, *, include_resolved: bool = False) -> set[Key]:
    """The stored findings (open, acknowledged, disputed; resolved too if asked)."""
    query = select(Finding)
    if not include_resolved:
        query = query.where(Finding.status != "resolved")
    return {
        (f.rule_id, f.state, f.subject_id or "", f.period or "", f.severity)
        for f in session.scalars(query)
    }


def planted_findings() -> set[Key]:
    """What the demo data set plants (docs/demo-planted-cases.md)."""
    return {(c.rule_id, c.state, c.subject_id, c.period, c.severity) for c in planted.findings()}
