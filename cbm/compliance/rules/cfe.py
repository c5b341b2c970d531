"""CFE Treaty: holdings changes, maximum levels for holdings, inspection notice.

(The annual exchange, CFE-X1, is in ``annual``; treaty reductions, CFE-R2, in
``reductions``.) No findings for a State whose CFE participation is suspended or ended.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from cbm.compliance.context import CheckContext, aware, day_iso, end_of_day, when_iso
from cbm.compliance.registry import Candidate, rule
from cbm.compliance.rules.wording import duration

HOUR = pd.Timedelta(hours=1)


def holding_key(state: str, as_of: pd.Timestamp, category: str, source: str, unit: str) -> str:
    return f"{state}/{as_of.date().isoformat()}/{category}/{source}/{unit}"


def add_working_days(days: pd.Series, n: int) -> pd.Series:
    """``n`` working days (Monday-Friday) after each day; a weekend day counts from Friday."""
    d = days.to_numpy().astype("datetime64[D]")
    return pd.Series(np.busday_offset(d, n, roll="backward"), index=days.index).astype(
        "datetime64[ns]"
    )


@rule(
    "CFE-X3",
    regime="CFE",
    title="Change of 10 % or more in a unit's holdings notified within 5 working days",
    citation="CFE Protocol on Information Exchange Sec. VIII ¶1(B); Review Conference 1996",
    source_status="verified",
    severity="late",
    subject_type="holding",
    requirement=(
        "A change of 10 percent or more in any category of treaty-limited equipment of a unit "
        "is notified within five (working) days of the change."
    ),
    params=(
        "holdings_change.threshold_percent",
        "holdings_change.comparator",
        "holdings_change.notification_working_days",
    ),
)
def holdings_change(ctx: CheckContext) -> Iterator[Candidate]:
    percent = float(ctx.param("CFE", "holdings_change.threshold_percent"))
    strict = ctx.param("CFE", "holdings_change.comparator") == "gt"
    days = int(ctx.param("CFE", "holdings_change.notification_working_days"))
    h = ctx.frame("holdings")
    h = h[(h["source"] == "cfe") & (h["unit"] != "")].sort_values(
        ["state", "unit", "category", "as_of"]
    )
    prev = h.groupby(["state", "unit", "category"])["count"].shift()
    change = (h["count"] - prev).abs()
    limit = prev * percent / 100
    hit = (change > limit) if strict else (change >= limit)
    h = h.assign(prev=prev, change=change)
    changes = h[hit.fillna(False).astype(bool)]
    if changes.empty:
        return
    changes = changes.assign(deadline=add_working_days(changes["as_of"], days).to_numpy())
    notes = ctx.notifications("holdings_change")
    notes = notes[notes["kind"] == "holdings_change"][["sender", "remarks", "sent_at", "reference"]]
    pairs = changes.reset_index(names="i").merge(
        notes, left_on="state", right_on="sender", how="inner"
    )
    mentions = [
        isinstance(remarks, str) and unit in remarks
        for unit, remarks in zip(pairs["unit"], pairs["remarks"], strict=True)
    ]
    pairs = pairs[
        np.array(mentions, dtype=bool) & (pairs["sent_at"].dt.normalize() >= pairs["as_of"])
    ]
    firsts = pairs.sort_values("sent_at").drop_duplicates("i").set_index("i")
    changes = changes.join(firsts[["sent_at", "reference"]])
    for row in changes.itertuples():
        if pd.notna(row.sent_at) and row.sent_at.normalize() <= row.deadline:
            continue
        subject = holding_key(row.state, row.as_of, row.category, "cfe", row.unit)
        what = (
            "did not notify"
            if pd.isna(row.sent_at)
            else f"notified it only on {day_iso(row.sent_at)} ({row.reference})"
        )
        yield Candidate(
            state=row.state,
            subject_type="holding",
            subject_id=subject,
            period=str(row.as_of.year),
            severity="breach" if pd.isna(row.sent_at) else "late",
            due_at=aware(end_of_day(row.deadline)),
            summary=(
                f"{row.state}'s unit {row.unit} changed its {row.category} holdings from "
                f"{int(row.prev):,} to {int(row.count):,} on {day_iso(row.as_of)} "
                f"({row.change / row.prev:.0%}); {row.state} {what}; the CFE Protocol on "
                f"Information Exchange requires notice within {days} working days "
                f"(by {day_iso(row.deadline)})."
            ),
            evidence={
                "unit": row.unit,
                "category": row.category,
                "as_of": day_iso(row.as_of),
                "previous": int(row.prev),
                "count": int(row.count),
                "threshold_percent": percent,
                "deadline": day_iso(row.deadline),
                "notification": None if pd.isna(row.reference) else row.reference,
                "notified_at": None if pd.isna(row.sent_at) else row.sent_at,
            },
        )


@rule(
    "CFE-VII-1",
    regime="CFE",
    title="Holdings within the maximum levels for holdings",
    citation="CFE Art. VII ¶1",
    source_status="verified",
    severity="breach",
    subject_type="holding",
    requirement=(
        "A State Party's holdings in each category of treaty-limited equipment stay within its "
        "maximum levels for holdings."
    ),
)
def above_ceiling(ctx: CheckContext) -> Iterator[Candidate]:
    h = ctx.frame("holdings")
    totals = h[(h["source"] == "cfe") & (h["unit"] == "")]
    ceilings = ctx.frame("ceilings")
    ceilings = ceilings[ceilings["regime"] == "CFE"]
    pairs = totals.merge(ceilings, on=["state", "category"])
    valid = (pairs["valid_from"] <= pairs["as_of"]) & (
        pairs["valid_to"].isna() | (pairs["as_of"] <= pairs["valid_to"])
    )
    over = pairs[valid & (pairs["count"] > pairs["ceiling"])]
    for row in over.itertuples():
        yield Candidate(
            state=row.state,
            subject_type="holding",
            subject_id=holding_key(row.state, row.as_of, row.category, "cfe", ""),
            period=str(row.as_of.year),
            severity="breach",
            due_at=aware(end_of_day(row.as_of)),
            summary=(
                f"{row.state} declared {int(row.count):,} {row.category} as of "
                f"{day_iso(row.as_of)}, above its ceiling of {int(row.ceiling):,}; CFE Art. VII "
                "requires holdings within the maximum levels."
            ),
            evidence={
                "category": row.category,
                "as_of": day_iso(row.as_of),
                "count": int(row.count),
                "ceiling": int(row.ceiling),
                "ceiling_valid_from": day_iso(row.valid_from),
                "excess": int(row.count - row.ceiling),
            },
        )


NOTICE_KEYS = {
    "cfe_declared_site": "inspection.notice.declared_site_hours",
    "cfe_challenge": "inspection.notice.challenge_hours",
    "cfe_reduction": "inspection.notice.reduction_hours",
    "cfe_certification": "inspection.notice.certification_hours",
}


@rule(
    "CFE-I10",
    regime="CFE",
    title="CFE inspection notified at least 36 hours before arrival",
    citation="CFE Protocol on Inspection Sec. IV ¶2-3",
    source_status="verified",
    severity="breach",
    subject_type="inspection",
    requirement=(
        "The inspecting State notifies its intent to inspect at least 36 hours before arrival "
        "(96 hours for reduction and certification inspections)."
    ),
    params=tuple(NOTICE_KEYS.values()),
)
def inspection_notice(ctx: CheckContext) -> Iterator[Candidate]:
    insp = ctx.frame("inspections")
    insp = insp[(insp["regime"] == "CFE") & insp["start_at"].notna()]
    hours = insp["kind"].map({k: float(ctx.param("CFE", v)) for k, v in NOTICE_KEYS.items()})
    insp = insp.assign(
        hours=hours.fillna(float(ctx.param("CFE", NOTICE_KEYS["cfe_declared_site"])))
    )
    notes = ctx.notifications("inspection_notification")
    notes = notes[(notes["kind"] == "inspection_notification") & notes["event_id"].notna()]
    first = notes.sort_values("sent_at").drop_duplicates("event_id").set_index("event_id")
    insp = insp.join(first[["reference", "sent_at"]], on="inspection_id")
    lead = (insp["start_at"] - insp["sent_at"]) / HOUR
    bad = insp["sent_at"].isna() | (lead < insp["hours"])
    insp = insp.assign(lead=lead)
    for row in insp[bad].itertuples():
        what = (
            "gave no notice on record"
            if pd.isna(row.sent_at)
            else f"gave notice {duration(row.lead)} before arrival ({row.reference})"
        )
        yield Candidate(
            state=row.inspecting_state,
            counterpart=row.inspected_state,
            subject_type="inspection",
            subject_id=row.inspection_id,
            period=str(row.requested_at.year),
            severity="breach",
            due_at=aware(row.start_at - row.hours * HOUR),
            summary=(
                f"{row.inspecting_state} {what} for inspection {row.inspection_id} in "
                f"{row.inspected_state} arriving {when_iso(row.start_at)}; the CFE Protocol on "
                f"Inspection requires {row.hours:g} hours."
            ),
            evidence={
                "inspection_id": row.inspection_id,
                "kind": row.kind,
                "arrival": row.start_at,
                "notification": None if pd.isna(row.reference) else row.reference,
                "notified_at": None if pd.isna(row.sent_at) else row.sent_at,
                "lead_hours": None if pd.isna(row.lead) else round(float(row.lead), 2),
                "required_hours": row.hours,
            },
        )
