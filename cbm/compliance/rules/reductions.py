"""Reductions: CFE treaty reductions (CFE-R2) and unilateral reductions and withdrawals
(RED-1). A reduction belongs to the year of its deadline. One never completed is judged only
when its deadline lies before the data horizon (the latest message on record)."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from cbm.compliance.context import CheckContext, aware, day_iso, end_of_day
from cbm.compliance.registry import Candidate, rule


def _late_or_early(ctx: CheckContext, kinds: tuple[str, ...]) -> pd.DataFrame:
    r = ctx.frame("reductions")
    r = r[r["kind"].isin(kinds) & r["deadline"].notna()]
    horizon = ctx.horizon().normalize()
    late = (r["completed_at"] > r["deadline"]) | (
        r["completed_at"].isna() & (r["deadline"] < horizon)
    )
    early = r["completed_at"] < r["deadline"]
    return r.assign(late=late.fillna(False), early=early.fillna(False))


def _evidence(row: object) -> dict[str, object]:
    return {
        "reduction_id": row.reduction_id,
        "kind": row.kind,
        "category": row.category,
        "quantity": int(row.quantity),
        "reduced": None if pd.isna(row.reduced) else int(row.reduced),
        "deadline": day_iso(row.deadline),
        "completed_at": day_iso(row.completed_at),
    }


@rule(
    "CFE-R2",
    regime="CFE",
    title="Treaty reduction completed by its deadline",
    citation="CFE Art. VIII ¶4",
    source_status="verified",
    severity="breach",
    subject_type="reduction",
    requirement=(
        "Reductions of treaty-limited equipment are completed by the end of the reduction "
        "phases (40 months after entry into force for the full liability)."
    ),
    params=("reduction.phase3.months", "reduction.phase3.percent"),
)
def treaty_reduction(ctx: CheckContext) -> Iterator[Candidate]:
    r = _late_or_early(ctx, ("treaty",))
    for row in r[r["late"]].itertuples():
        what = (
            f"completed it on {day_iso(row.completed_at)}"
            if pd.notna(row.completed_at)
            else "has not reported its completion"
        )
        yield Candidate(
            state=row.state,
            subject_type="reduction",
            subject_id=row.reduction_id,
            period=str(row.deadline.year),
            severity="breach",
            due_at=aware(end_of_day(row.deadline)),
            summary=(
                f"{row.state}'s treaty reduction {row.reduction_id} ({int(row.quantity):,} "
                f"{row.category}) was due by {day_iso(row.deadline)}; {row.state} {what}; CFE "
                "Art. VIII requires completion by the deadline."
            ),
            evidence=_evidence(row),
        )


@rule(
    "RED-1",
    regime="RED",
    title="Unilateral reductions: late (warning) or completed early (positive)",
    citation="Announced unilateral commitment (political)",
    source_status="commonly_cited",
    severity="warning",
    subject_type="reduction",
    requirement=(
        "A State that announces a unilateral reduction or withdrawal completes it by the date "
        "it announced; completing it early is a positive signal."
    ),
)
def unilateral_reduction(ctx: CheckContext) -> Iterator[Candidate]:
    r = _late_or_early(ctx, ("unilateral", "withdrawal"))
    for row in r[r["late"] | r["early"]].itertuples():
        if row.late:
            severity = "warning"
            what = (
                f"completed it on {day_iso(row.completed_at)}, after"
                if pd.notna(row.completed_at)
                else "has not reported its completion, due"
            )
            summary = (
                f"{row.state}'s announced {row.kind} {row.reduction_id} ({int(row.quantity):,} "
                f"{row.category}): {row.state} {what} the announced deadline of "
                f"{day_iso(row.deadline)}."
            )
        else:
            severity = "positive"
            summary = (
                f"{row.state} completed its announced {row.kind} {row.reduction_id} "
                f"({int(row.quantity):,} {row.category}) on {day_iso(row.completed_at)}, ahead "
                f"of the announced deadline of {day_iso(row.deadline)}."
            )
        yield Candidate(
            state=row.state,
            subject_type="reduction",
            subject_id=row.reduction_id,
            period=str(row.deadline.year),
            severity=severity,
            due_at=aware(end_of_day(row.deadline)),
            summary=summary,
            evidence=_evidence(row),
        )
