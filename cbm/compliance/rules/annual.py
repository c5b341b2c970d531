"""Annual submissions: the VD exchange and calendar, the CFE exchange, GEMI.

A submission is due from every State party to the regime on the deadline. Missing is a
``breach``, received after the deadline ``late``; a nil report satisfies the obligation.
Absence is judged only for periods the data cover: a period counts as covered when at least
``analytics.absence_coverage_min_share`` of the States that owed it submitted something, and
its deadline has passed. The periods evaluated and skipped are recorded on the check run.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from cbm.compliance.context import CheckContext, aware, end_of_day, when_iso
from cbm.compliance.registry import REGIME_NAMES, Candidate, rule

COVERAGE_KEY = "analytics.absence_coverage_min_share"


def annual_submissions(
    ctx: CheckContext,
    rule_id: str,
    regime: str,
    kind: str,
    due_key: str,
    due_year_offset: int,
    what: str,
    citation: str,
) -> Iterator[Candidate]:
    """Findings for one annual submission; ``covers_year`` Y is due on month-day of Y+offset."""
    month, day = ctx.param(regime, due_key)
    min_share = ctx.param(regime, COVERAGE_KEY)
    notes = ctx.notifications(kind)
    subs = notes[
        (notes["regime"] == regime) & (notes["kind"] == kind) & notes["covers_year"].notna()
    ]
    subs = subs.assign(
        got=subs["received_at"].fillna(subs["sent_at"]), covers_year=subs["covers_year"].astype(int)
    )
    # The first submission for a period is the one that counts for timeliness.
    first = subs.sort_values(["got", "reference"]).drop_duplicates(["sender", "covers_year"])
    years = sorted(first["covers_year"].unique())
    evaluated, skipped = [], []
    if years:
        span = range(years[0], max(years[-1], ctx.as_of.year - due_year_offset) + 1)
    else:
        span = range(0)
    owed_rows = []
    for year in span:
        due = end_of_day(pd.Timestamp(year + due_year_offset, month, day))
        owed = ctx.party_states(regime, due)
        if not owed:
            continue
        sent = first[(first["covers_year"] == year) & first["sender"].isin(owed)]
        if due >= ctx.as_of:
            skipped.append({"period": year, "why": f"not yet due ({due.date()})"})
            continue
        if len(sent) < min_share * len(owed):
            skipped.append(
                {
                    "period": year,
                    "why": f"{len(sent)} of {len(owed)} States' submissions in the data",
                }
            )
            continue
        evaluated.append(year)
        owed_rows.append(pd.DataFrame({"state": owed, "covers_year": year, "due": due}))
    out: list[Candidate] = []
    if owed_rows:
        owed_frame = pd.concat(owed_rows, ignore_index=True)
        merged = owed_frame.merge(
            first, left_on=["state", "covers_year"], right_on=["sender", "covers_year"], how="left"
        )
        bad = merged[merged["reference"].isna() | (merged["got"] > merged["due"])]
        out = [_annual_finding(row, what, citation) for row in bad.itertuples()]
    ctx.record_coverage(
        rule_id,
        regime=REGIME_NAMES[regime],
        evaluated=evaluated,
        skipped=skipped,
        min_share=min_share,
    )
    return iter(out)


def _annual_finding(row: object, what: str, citation: str) -> Candidate:
    """Missing (breach) or late (late): keyed by State and period, so missing-then-late is
    one finding whose severity changes."""
    due, year, state = row.due, int(row.covers_year), row.state
    key = f"{state}|{year}"
    if pd.isna(row.reference):
        return Candidate(
            state=state,
            subject_type="notification",
            subject_id="",
            period=str(year),
            severity="breach",
            due_at=aware(due),
            summary=(
                f"{state} has no {what} for {year} on record; {citation} requires it "
                f"by {due.date():%d %B %Y}."
            ),
            evidence={"due_at": due, "covers_year": year, "submission": None},
            key=key,
        )
    days = (row.got.normalize() - due.normalize()).days
    return Candidate(
        state=state,
        subject_type="notification",
        subject_id=str(row.reference),
        period=str(year),
        severity="late",
        due_at=aware(due),
        summary=(
            f"{state} sent its {what} for {year} ({row.reference}) on "
            f"{when_iso(row.got)}, {days} day{'s' if days != 1 else ''} after "
            f"the deadline; {citation} requires it by {due.date():%d %B %Y}."
        ),
        evidence={
            "due_at": due,
            "covers_year": year,
            "submission": str(row.reference),
            "received_at": row.got,
            "nil_report": bool(row.nil_report) if pd.notna(row.nil_report) else None,
            "days_late": days,
        },
        key=key,
    )


@rule(
    "VD-I-3",
    regime="VD",
    title="Annual exchange of military information by 15 December",
    citation="VD 2011 ¶10",
    source_status="verified",
    severity="late",
    subject_type="notification",
    requirement=(
        "Each participating State exchanges information on its military forces not later than "
        "15 December, valid as of 1 January of the following year; a nil report satisfies it."
    ),
    params=("annual_exchange.due_month_day", "annual_exchange.valid_as_of_month_day", COVERAGE_KEY),
    absence=True,
)
def vd_annual_exchange(ctx: CheckContext) -> Iterator[Candidate]:
    return annual_submissions(
        ctx,
        "VD-I-3",
        "VD",
        "annual_exchange",
        "annual_exchange.due_month_day",
        -1,
        "annual exchange of military information",
        "VD 2011 ¶10",
    )


@rule(
    "VD-VII-1",
    regime="VD",
    title="Annual calendar by 15 November",
    citation="VD 2011 ¶61",
    source_status="commonly_cited",
    severity="late",
    subject_type="notification",
    requirement=(
        "Each participating State exchanges its annual calendar of notifiable military "
        "activities for the following year not later than 15 November."
    ),
    params=("annual_calendar.due_month_day", COVERAGE_KEY),
    absence=True,
)
def vd_annual_calendar(ctx: CheckContext) -> Iterator[Candidate]:
    return annual_submissions(
        ctx,
        "VD-VII-1",
        "VD",
        "annual_calendar",
        "annual_calendar.due_month_day",
        -1,
        "annual calendar",
        "VD 2011 ¶61",
    )


@rule(
    "CFE-X1",
    regime="CFE",
    title="CFE annual information exchange by 15 December",
    citation="CFE Protocol on Information Exchange Sec. VII ¶1(C)",
    source_status="verified",
    severity="late",
    subject_type="notification",
    requirement=(
        "Each State Party exchanges information on its holdings on 15 December, effective as "
        "of 1 January of the following year."
    ),
    params=("annual_exchange.due_month_day", "annual_exchange.valid_as_of_month_day", COVERAGE_KEY),
    absence=True,
)
def cfe_annual_exchange(ctx: CheckContext) -> Iterator[Candidate]:
    return annual_submissions(
        ctx,
        "CFE-X1",
        "CFE",
        "annual_exchange",
        "annual_exchange.due_month_day",
        -1,
        "CFE annual information exchange",
        "CFE Prot. Info. Exch. Sec. VII ¶1(C)",
    )


@rule(
    "GEMI-3",
    regime="GEMI",
    title="Global Exchange of Military Information by 30 April",
    citation="GEMI 1994 (¶ not verified)",
    source_status="commonly_cited",
    severity="late",
    subject_type="notification",
    requirement="Each participating State provides its GEMI submission by 30 April each year.",
    params=("annual_exchange.due_month_day", COVERAGE_KEY),
    absence=True,
)
def gemi_exchange(ctx: CheckContext) -> Iterator[Candidate]:
    return annual_submissions(
        ctx,
        "GEMI-3",
        "GEMI",
        "annual_exchange",
        "annual_exchange.due_month_day",
        0,
        "GEMI submission",
        "GEMI 1994",
    )
