"""Vienna Document verification and risk reduction: inspections (Chapter IX ¶75-100),
evaluation visits (¶107-108), and replies about unusual military activities (Chapter III).

Inspections and evaluation visits belong to the year of their request. A refusal is a
breach only while the receiving State was within its quota: fewer accepted requests (before
this one, that year) than the quota, none yet from the same requesting State, and for
evaluation visits within the per-requester and per-unit limits. Force majeure is not a
refusal, and an accepted request marked as not counting against the quota (not carried out
because of force majeure) does not use the quota up.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pandas as pd

from cbm.compliance.context import CheckContext, aware, when_iso
from cbm.compliance.registry import Candidate, rule
from cbm.compliance.rules.wording import duration

REFUSED = ("refused", "no_reply")
HOUR = pd.Timedelta(hours=1)


def _accepted_before(frame: pd.DataFrame, accepted: pd.DataFrame) -> pd.DataFrame:
    """Per refused request, the accepted requests of the same kind, receiving State and year
    that came before it (with who asked and for which unit)."""
    acc = accepted[
        [
            "kind",
            "inspected_state",
            "year",
            "requested_at",
            "inspecting_state",
            "unit",
            "inspection_id",
        ]
    ].rename(
        columns={
            "requested_at": "requested_at_acc",
            "inspecting_state": "inspecting_state_acc",
            "unit": "unit_acc",
            "inspection_id": "inspection_id_acc",
        }
    )
    pairs = frame[["inspection_id", "kind", "inspected_state", "year", "requested_at"]].merge(
        acc, on=["kind", "inspected_state", "year"]
    )
    return pairs[pairs["requested_at_acc"] < pairs["requested_at"]]


def _vd(ctx: CheckContext, kind: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    insp = ctx.frame("inspections")
    insp = insp[insp["kind"] == kind]
    insp = insp.assign(year=insp["requested_at"].dt.year)
    # An accepted request counts against the quota unless it is marked as not counting
    # (e.g. not carried out because of force majeure); an empty flag counts.
    counts = insp["counts_against_quota"].astype(object).fillna(True).astype(bool)
    accepted = insp[(insp["reply"] == "accepted") & counts]
    return insp, accepted


@rule(
    "VD-IX-I2",
    regime="VD",
    title="Inspection not refused while within the passive quota",
    citation="VD 2011 ¶75-77",
    source_status="commonly_cited",
    severity="breach",
    subject_type="inspection",
    requirement=(
        "A participating State accepts inspection requests while it has accepted fewer than "
        "three that year and none from the requesting State; force majeure is not a refusal."
    ),
    params=("inspection.passive_quota_per_year", "inspection.max_per_requester_per_year"),
)
def inspection_refused(ctx: CheckContext) -> Iterator[Candidate]:
    quota = int(ctx.param("VD", "inspection.passive_quota_per_year"))
    per_requester = int(ctx.param("VD", "inspection.max_per_requester_per_year"))
    insp, accepted = _vd(ctx, "vd_inspection")
    refused = insp[insp["reply"].isin(REFUSED)]
    before = _accepted_before(refused, accepted).merge(
        refused[["inspection_id", "inspecting_state"]], on="inspection_id"
    )
    total = before.groupby("inspection_id").size()
    same = (
        before[before["inspecting_state_acc"] == before["inspecting_state"]]
        .groupby("inspection_id")
        .size()
    )
    refused = refused.assign(
        accepted_before=refused["inspection_id"].map(total).fillna(0).astype(int),
        same_before=refused["inspection_id"].map(same).fillna(0).astype(int),
    )
    within = (refused["accepted_before"] < quota) & (refused["same_before"] < per_requester)
    for row in refused[within].itertuples():
        what = "refused" if row.reply == "refused" else "did not answer"
        yield Candidate(
            state=row.inspected_state,
            counterpart=row.inspecting_state,
            subject_type="inspection",
            subject_id=row.inspection_id,
            period=str(row.year),
            severity="breach",
            due_at=aware(row.requested_at),
            summary=(
                f"{row.inspected_state} {what} inspection request {row.inspection_id} from "
                f"{row.inspecting_state} ({when_iso(row.requested_at)}) having accepted "
                f"{row.accepted_before} of its {quota} inspections that year; VD 2011 ¶75-77 "
                "requires acceptance within the quota."
            ),
            evidence={
                "inspection_id": row.inspection_id,
                "reply": row.reply,
                "requested_at": row.requested_at,
                "accepted_before_this_year": int(row.accepted_before),
                "accepted_from_requester": int(row.same_before),
                "quota": quota,
                "per_requester_limit": per_requester,
            },
        )


@rule(
    "VD-IX-I4",
    regime="VD",
    title="Inspection request answered within 24 hours",
    citation="VD 2011 ¶85",
    source_status="commonly_cited",
    severity="late",
    subject_type="inspection",
    requirement="The receiving State replies to an inspection request within 24 hours.",
    params=("inspection.reply_hours",),
)
def inspection_reply(ctx: CheckContext) -> Iterator[Candidate]:
    hours = float(ctx.param("VD", "inspection.reply_hours"))
    insp, _ = _vd(ctx, "vd_inspection")
    took = (insp["replied_at"] - insp["requested_at"]) / HOUR
    insp = insp.assign(took=took)
    late = insp[insp["took"] > hours]
    for row in late.itertuples():
        yield Candidate(
            state=row.inspected_state,
            counterpart=row.inspecting_state,
            subject_type="inspection",
            subject_id=row.inspection_id,
            period=str(row.year),
            severity="late",
            due_at=aware(row.requested_at + hours * HOUR),
            summary=(
                f"{row.inspected_state} answered inspection request {row.inspection_id} from "
                f"{row.inspecting_state} {duration(row.took)} after it was made; VD 2011 ¶85 "
                f"requires a reply within {hours:g} hours."
            ),
            evidence={
                "inspection_id": row.inspection_id,
                "requested_at": row.requested_at,
                "replied_at": row.replied_at,
                "hours": round(float(row.took), 2),
                "limit_hours": hours,
            },
        )


@rule(
    "VD-IX-I6",
    regime="VD",
    title="Inspection report within 14 days",
    citation="VD 2011 ¶100",
    source_status="commonly_cited",
    severity="late",
    subject_type="inspection",
    requirement="The inspecting State circulates its inspection report within 14 days.",
    params=("inspection.report_days",),
)
def inspection_report(ctx: CheckContext) -> Iterator[Candidate]:
    days = int(ctx.param("VD", "inspection.report_days"))
    insp, _ = _vd(ctx, "vd_inspection")
    took = insp["report_at"] - insp["end_at"]
    insp = insp.assign(took=took)
    late = insp[insp["took"] > pd.Timedelta(days=days)]
    for row in late.itertuples():
        yield Candidate(
            state=row.inspecting_state,
            counterpart=row.inspected_state,
            subject_type="inspection",
            subject_id=row.inspection_id,
            period=str(row.year),
            severity="late",
            due_at=aware(row.end_at + pd.Timedelta(days=days)),
            summary=(
                f"{row.inspecting_state} circulated the report of inspection {row.inspection_id} "
                f"in {row.inspected_state} {duration(row.took, 'days')} after it "
                f"ended; VD 2011 ¶100 requires it within {days} days."
            ),
            evidence={
                "inspection_id": row.inspection_id,
                "end_at": row.end_at,
                "report_at": row.report_at,
                "days": round(row.took.total_seconds() / 86400, 2),
                "limit_days": days,
            },
        )


def evaluation_quota(ctx: CheckContext) -> pd.Series:
    """Passive evaluation quota per (State, year): the quotas table, else from the units
    reported in the annual exchange, ``min(15, ceil(units / 60))``."""
    if "evaluation_quota" in ctx._cache:
        return ctx._cache["evaluation_quota"]
    per = int(ctx.param("VD", "evaluation.units_per_visit"))
    cap = int(ctx.param("VD", "evaluation.max_per_year"))
    quotas = ctx.frame("quotas")
    stored = quotas[(quotas["regime"] == "VD") & (quotas["kind"] == "passive")]
    table = stored.set_index(["state", "year"])["quota"].astype(int)
    holdings = ctx.frame("holdings")
    units = holdings[(holdings["source"] == "vd_aemi") & (holdings["unit"] != "")]
    if not units.empty:
        counted = (
            units.assign(year=units["as_of"].dt.year).groupby(["state", "year"])["unit"].nunique()
        )
        derived = counted.map(lambda n: min(cap, math.ceil(n / per)))
        table = table.combine_first(derived)
    ctx._cache["evaluation_quota"] = table
    return table


@rule(
    "VD-IX-E2",
    regime="VD",
    title="Evaluation visit not refused within the passive evaluation quota",
    citation="VD 2011 ¶107",
    source_status="verified",
    severity="breach",
    subject_type="inspection",
    requirement=(
        "A participating State accepts evaluation visits up to its quota, min(15, ceil(units / "
        "60)), within one fifth of it from one State (one if the quota is below five), and at "
        "most twice a year per unit (once by the same State)."
    ),
    params=(
        "evaluation.units_per_visit",
        "evaluation.units_rounding",
        "evaluation.max_per_year",
        "evaluation.per_requester_fraction",
        "evaluation.per_requester_rounding",
        "evaluation.small_quota_threshold",
        "evaluation.small_quota_per_requester_max",
        "evaluation.per_unit_max_per_year",
        "evaluation.per_unit_per_requester_max_per_year",
    ),
)
def evaluation_refused(ctx: CheckContext) -> Iterator[Candidate]:
    fraction = float(ctx.param("VD", "evaluation.per_requester_fraction"))
    small = int(ctx.param("VD", "evaluation.small_quota_threshold"))
    small_max = int(ctx.param("VD", "evaluation.small_quota_per_requester_max"))
    per_unit = int(ctx.param("VD", "evaluation.per_unit_max_per_year"))
    per_unit_same = int(ctx.param("VD", "evaluation.per_unit_per_requester_max_per_year"))
    rounding = ctx.param("VD", "evaluation.per_requester_rounding")
    quotas = evaluation_quota(ctx)
    insp, accepted = _vd(ctx, "vd_evaluation")
    refused = insp[insp["reply"].isin(REFUSED)]
    before = _accepted_before(refused, accepted).merge(
        refused[["inspection_id", "inspecting_state", "unit"]], on="inspection_id"
    )
    for row in refused.itertuples():
        quota = int(quotas.get((row.inspected_state, row.year), 0))
        mine = before[before["inspection_id"] == row.inspection_id]
        total = len(mine)
        from_requester = int((mine["inspecting_state_acc"] == row.inspecting_state).sum())
        unit = row.unit if isinstance(row.unit, str) and row.unit else None
        unit_rows = mine[mine["unit_acc"] == unit] if unit else mine.iloc[0:0]
        share = quota * fraction
        requester_max = (
            small_max
            if quota < small
            else (math.ceil(share) if rounding == "ceil" else math.floor(share))
        )
        if total >= quota or from_requester >= requester_max:
            continue
        if unit and (
            len(unit_rows) >= per_unit
            or int((unit_rows["inspecting_state_acc"] == row.inspecting_state).sum())
            >= per_unit_same
        ):
            continue
        what = "refused" if row.reply == "refused" else "did not answer"
        yield Candidate(
            state=row.inspected_state,
            counterpart=row.inspecting_state,
            subject_type="inspection",
            subject_id=row.inspection_id,
            period=str(row.year),
            severity="breach",
            due_at=aware(row.requested_at),
            summary=(
                f"{row.inspected_state} {what} evaluation visit {row.inspection_id} from "
                f"{row.inspecting_state} having accepted {total} of its quota of {quota} that "
                f"year ({from_requester} from {row.inspecting_state}); VD 2011 ¶107 requires "
                "acceptance within the quota."
            ),
            evidence={
                "inspection_id": row.inspection_id,
                "reply": row.reply,
                "unit": unit,
                "quota": quota,
                "accepted_before_this_year": total,
                "accepted_from_requester": from_requester,
                "per_requester_limit": requester_max,
            },
        )


@rule(
    "VD-III-1",
    regime="VD",
    title="Unusual military activity: reply within 48 hours",
    citation="VD 2011 ¶16 (Chapter III)",
    source_status="commonly_cited",
    severity="breach",
    subject_type="notification",
    requirement=(
        "A State asked to explain an unusual military activity replies within 48 hours of the "
        "request."
    ),
    params=("unusual_activity.reply_hours",),
)
def unusual_activity_reply(ctx: CheckContext) -> Iterator[Candidate]:
    hours = float(ctx.param("VD", "unusual_activity.reply_hours"))
    notes = ctx.notifications("unusual_activity_request", "unusual_activity_reply")
    requests = notes[notes["kind"] == "unusual_activity_request"]
    if requests.empty:
        return
    replies = notes[(notes["kind"] == "unusual_activity_reply") & notes["in_reply_to"].notna()]
    requests = requests.assign(requested=requests["recipients"].fillna("").str.split()).explode(
        "requested"
    )
    requests = requests[requests["requested"].notna() & (requests["requested"] != "ALL")]
    first = replies.sort_values("sent_at").drop_duplicates(["in_reply_to", "sender"])
    merged = requests.merge(
        first[["in_reply_to", "sender", "sent_at", "reference"]].rename(
            columns={"sender": "requested", "sent_at": "reply_at", "reference": "reply_ref"}
        ),
        left_on=["reference", "requested"],
        right_on=["in_reply_to", "requested"],
        how="left",
        suffixes=("", "_r"),
    )
    took = (merged["reply_at"] - merged["sent_at"]) / HOUR
    deadline = merged["sent_at"] + hours * HOUR
    missing = merged["reply_at"].isna() & (deadline < ctx.horizon())
    late = took > hours
    merged = merged.assign(took=took, deadline=deadline)
    for row in merged[missing | late].itertuples():
        if pd.isna(row.reply_at):
            severity = "breach"
            summary = (
                f"{row.requested} has not replied to {row.sender}'s request {row.reference} "
                f"about an unusual military activity ({when_iso(row.sent_at)}); VD 2011 "
                f"Chapter III requires a reply within {hours:g} hours."
            )
        else:
            severity = "late"
            summary = (
                f"{row.requested} replied to {row.sender}'s request {row.reference} "
                f"{duration(row.took)} after it was sent; VD 2011 Chapter III requires a reply "
                f"within {hours:g} hours."
            )
        yield Candidate(
            state=row.requested,
            counterpart=row.sender,
            subject_type="notification",
            subject_id=row.reference,
            period=str(row.sent_at.year),
            severity=severity,
            due_at=aware(row.deadline),
            summary=summary,
            evidence={
                "request": row.reference,
                "requested_at": row.sent_at,
                "reply": None if pd.isna(row.reply_ref) else row.reply_ref,
                "replied_at": None if pd.isna(row.reply_at) else row.reply_at,
                "hours": None if pd.isna(row.took) else round(float(row.took), 2),
                "limit_hours": hours,
            },
        )
