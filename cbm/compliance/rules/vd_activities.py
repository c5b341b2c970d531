"""Vienna Document rules on military activities: notification, calendars, observation,
constraining provisions, and the near-threshold signal.

An activity may have several rows (one per source of its figures); the rules use, per
figure, the largest of any source, the earliest start and the latest end.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from cbm.compliance.context import (
    FIGURE_WORDS,
    FIGURES,
    CheckContext,
    aware,
    day_iso,
    end_of_day,
    first_reached,
    reaches,
)
from cbm.compliance.registry import Candidate, rule

DAY = pd.Timedelta(days=1)


def threshold_keys(prefix: str, *figures: str, comparator: bool = False) -> tuple[str, ...]:
    """The parameter keys of one threshold level (for a rule's ``params``)."""
    keys = tuple(f"{prefix}.threshold.{f}" for f in figures)
    return (*keys, f"{prefix}.comparator") if comparator else keys


def activity_table(ctx: CheckContext) -> pd.DataFrame:
    """One row per activity: State, kind, first start, last end, largest figures, sources."""
    if "activity_table" not in ctx._cache:
        rows = ctx.relevant_activities()
        if rows.empty:
            table = pd.DataFrame(
                {
                    "activity_id": pd.Series(dtype=object),
                    "state": pd.Series(dtype=object),
                    "kind": pd.Series(dtype=object),
                    "start": pd.Series(dtype="datetime64[ns]"),
                    "end": pd.Series(dtype="datetime64[ns]"),
                    **{f: pd.Series(dtype="Int64") for f in FIGURES},
                    "has_calendar": pd.Series(dtype=bool),
                }
            )
        else:
            rows = rows.assign(
                end=rows["end_date"].fillna(rows["start_date"]),
                has_calendar=rows["source"] == "calendar",
            )
            table = (
                rows.groupby("activity_id", sort=True)
                .agg(
                    state=("state", "first"),
                    kind=("kind", "first"),
                    start=("start_date", "min"),
                    end=("end", "max"),
                    has_calendar=("has_calendar", "any"),
                    **{f: (f, "max") for f in FIGURES},
                )
                .reset_index()
            )
        ctx._cache["activity_table"] = table
    return ctx._cache["activity_table"]


def linked(ctx: CheckContext, kind: str) -> pd.DataFrame:
    """Notifications of ``kind`` linked to an activity: the earliest sent per activity."""
    notes = ctx.linked_notifications(kind)
    picked = notes[notes["activity_id"].notna()]
    picked = picked.sort_values(["sent_at", "reference"]).drop_duplicates("activity_id")
    return picked.set_index("activity_id")[["reference", "sent_at"]]


def figures_text(row: object, thresholds: dict[str, int], strict: bool) -> str:
    hit = first_reached(row, thresholds, strict)
    if hit is None:
        return ""
    column, value, _limit = hit
    return f"{value:,} {FIGURE_WORDS[column]}"


def figures_of(row: object) -> dict[str, int | None]:
    return {f: (None if pd.isna(getattr(row, f)) else int(getattr(row, f))) for f in FIGURES}


@rule(
    "VD-V-3",
    regime="VD",
    title="Prior notification at least 42 days before the start",
    citation="VD 2011 ¶38, ¶40, ¶41",
    source_status="commonly_cited",
    severity="late",
    subject_type="activity",
    requirement=(
        "An activity at or above a Chapter V threshold (any one parameter) is notified 42 days "
        "or more before it starts; an alert activity at the time the troops start it."
    ),
    params=(
        *threshold_keys(
            "prior_notification",
            "troops",
            "tanks",
            "acv",
            "artillery",
            "air_sorties",
            "amphibious_airborne_troops",
            comparator=True,
        ),
        "prior_notification.lead_days",
        "alert_notification.lead_days",
    ),
)
def prior_notification(ctx: CheckContext) -> Iterator[Candidate]:
    thresholds, strict = ctx.thresholds("VD", "prior_notification")
    lead = int(ctx.param("VD", "prior_notification.lead_days"))
    alert_lead = int(ctx.param("VD", "alert_notification.lead_days"))
    acts = activity_table(ctx)
    acts = acts[reaches(acts, thresholds, strict)]
    pns = linked(ctx, "prior_notification")
    acts = acts.join(pns, on="activity_id")
    is_alert = acts["kind"] == "alert"
    need = np.where(is_alert, alert_lead, lead)
    sent_day = acts["sent_at"].dt.normalize()
    days_before = (acts["start"] - sent_day).dt.days
    missing = acts["reference"].isna()
    late = ~missing & (days_before < need)
    due = acts["start"] - pd.to_timedelta(need, unit="D")
    acts = acts.assign(need=need, days_before=days_before, due=due)
    for row in acts[missing | late].itertuples():
        size = figures_text(row, thresholds, strict)
        alert = row.kind == "alert"
        rule_text = (
            "VD 2011 ¶41 requires an alert activity to be notified when it starts"
            if alert
            else f"VD 2011 ¶38 requires {row.need}"
        )
        if pd.isna(row.reference):
            severity = "breach"
            summary = (
                f"{row.state} did not notify activity {row.activity_id} ({size}), which started "
                f"on {day_iso(row.start)}; "
                + (rule_text + "." if alert else f"{rule_text} days' prior notification.")
            )
        else:
            severity = "late"
            if alert:
                summary = (
                    f"{row.state} notified alert activity {row.activity_id} ({size}) on "
                    f"{day_iso(row.sent_at)}, after its start on {day_iso(row.start)}; {rule_text}."
                )
            else:
                summary = (
                    f"{row.state} notified activity {row.activity_id} ({size}) "
                    f"{int(row.days_before)} days before its start; {rule_text}."
                )
        yield Candidate(
            state=row.state,
            subject_type="activity",
            subject_id=row.activity_id,
            period=str(row.start.year),
            severity=severity,
            due_at=aware(end_of_day(row.due)),
            summary=summary,
            evidence={
                "activity_id": row.activity_id,
                "kind": row.kind,
                "start_date": day_iso(row.start),
                "figures": figures_of(row),
                "thresholds": thresholds,
                "comparator": "gt" if strict else "gte",
                "notification": None if pd.isna(row.reference) else row.reference,
                "notified_at": None if pd.isna(row.sent_at) else row.sent_at,
                "days_before_start": None if pd.isna(row.days_before) else int(row.days_before),
                "required_days": int(row.need),
            },
        )


@rule(
    "VD-VII-3",
    regime="VD",
    title="Notifiable activity included in the annual calendar",
    citation="VD 2011 ¶61",
    source_status="commonly_cited",
    severity="warning",
    subject_type="activity",
    requirement=(
        "A notifiable activity (other than an alert activity) appears in the annual calendar "
        "of the year it takes place."
    ),
    params=(
        *threshold_keys(
            "prior_notification",
            "troops",
            "tanks",
            "acv",
            "artillery",
            "air_sorties",
            "amphibious_airborne_troops",
            comparator=True,
        ),
    ),
)
def calendar_inclusion(ctx: CheckContext) -> Iterator[Candidate]:
    thresholds, strict = ctx.thresholds("VD", "prior_notification")
    acts = activity_table(ctx)
    acts = acts[
        reaches(acts, thresholds, strict) & (acts["kind"] != "alert") & ~acts["has_calendar"]
    ]
    for row in acts.itertuples():
        year = row.start.year
        yield Candidate(
            state=row.state,
            subject_type="activity",
            subject_id=row.activity_id,
            period=str(year),
            severity="warning",
            due_at=aware(end_of_day(row.start)),
            summary=(
                f"{row.state}'s notifiable activity {row.activity_id} "
                f"({figures_text(row, thresholds, strict)}, starting {day_iso(row.start)}) is not "
                f"in its annual calendar for {year}; VD 2011 ¶61 requires notifiable activities "
                "to be listed in the calendar."
            ),
            evidence={
                "activity_id": row.activity_id,
                "start_date": day_iso(row.start),
                "figures": figures_of(row),
                "thresholds": thresholds,
                "calendar_row": False,
            },
        )


@rule(
    "VD-VI-1",
    regime="VD",
    title="Observers invited at or above the observation thresholds",
    citation="VD 2011 ¶47.4, ¶47.5",
    source_status="commonly_cited",
    severity="breach",
    subject_type="activity",
    requirement=(
        "Observers from all participating States are invited to an activity at or above the "
        "observation thresholds (any one parameter)."
    ),
    params=(
        *threshold_keys(
            "observation",
            "troops",
            "tanks",
            "acv",
            "artillery",
            "amphibious_airborne_troops",
            comparator=True,
        ),
    ),
)
def observation_invitation(ctx: CheckContext) -> Iterator[Candidate]:
    thresholds, strict = ctx.thresholds("VD", "observation")
    acts = activity_table(ctx)
    acts = acts[reaches(acts, thresholds, strict)]
    invited = linked(ctx, "observation_invitation")
    acts = acts[~acts["activity_id"].isin(invited.index)]
    for row in acts.itertuples():
        size = figures_text(row, thresholds, strict)
        yield Candidate(
            state=row.state,
            subject_type="activity",
            subject_id=row.activity_id,
            period=str(row.start.year),
            severity="breach",
            due_at=aware(end_of_day(row.start)),
            summary=(
                f"{row.state} invited no observers to activity {row.activity_id} ({size}, "
                f"starting {day_iso(row.start)}); VD 2011 ¶47.4 requires an invitation at or "
                "above the observation thresholds."
            ),
            evidence={
                "activity_id": row.activity_id,
                "start_date": day_iso(row.start),
                "figures": figures_of(row),
                "thresholds": thresholds,
                "observation_invitation": None,
            },
        )


@rule(
    "VD-VIII-4",
    regime="VD",
    title="Large activities announced by 15 November of year −2",
    citation="VD 2011 ¶68, ¶70",
    source_status="verified",
    severity="breach",
    subject_type="activity",
    requirement=(
        "An activity above 40,000 troops or 900 battle tanks (or 2,000 ACV, 900 artillery) is "
        "communicated in writing by 15 November of the second year before it takes place."
    ),
    params=(
        *threshold_keys("large_activity", "troops", "tanks", "acv", "artillery", comparator=True),
        "forecast.due_month_day",
        "forecast.years_ahead",
    ),
)
def large_activity_forecast(ctx: CheckContext) -> Iterator[Candidate]:
    thresholds, strict = ctx.thresholds("VD", "large_activity")
    month, day = ctx.param("VD", "forecast.due_month_day")
    ahead = int(ctx.param("VD", "forecast.years_ahead"))
    acts = activity_table(ctx)
    acts = acts[reaches(acts, thresholds, strict)]
    forecasts = linked(ctx, "forecast_two_year")
    acts = acts.join(forecasts, on="activity_id")
    deadlines = pd.to_datetime(
        {"year": acts["start"].dt.year - ahead, "month": month, "day": day}
    ) + pd.Timedelta(hours=23, minutes=59, seconds=59)
    acts = acts.assign(deadline=deadlines.to_numpy())
    bad = acts["sent_at"].isna() | (acts["sent_at"] > acts["deadline"])
    for row in acts[bad].itertuples():
        size = figures_text(row, thresholds, strict)
        when = (
            "never announced it"
            if pd.isna(row.sent_at)
            else f"announced it only on {day_iso(row.sent_at)}"
        )
        yield Candidate(
            state=row.state,
            subject_type="activity",
            subject_id=row.activity_id,
            period=str(row.start.year),
            severity="breach",
            due_at=aware(row.deadline),
            summary=(
                f"{row.state} {when} for activity {row.activity_id} ({size}, starting "
                f"{day_iso(row.start)}); VD 2011 ¶68 requires an announcement by "
                f"{day_iso(row.deadline)}."
            ),
            evidence={
                "activity_id": row.activity_id,
                "start_date": day_iso(row.start),
                "figures": figures_of(row),
                "thresholds": thresholds,
                "forecast": None if pd.isna(row.reference) else row.reference,
                "forecast_sent_at": None if pd.isna(row.sent_at) else row.sent_at,
                "deadline": row.deadline,
            },
        )


@rule(
    "VD-VIII-1",
    regime="VD",
    title="No more than three simultaneous activities above 13,000 troops / 300 tanks",
    citation="VD 2011 ¶67.3",
    source_status="verified",
    severity="breach",
    subject_type="activity",
    requirement=(
        "A participating State carries out no more than three notifiable activities above "
        "13,000 troops, 300 battle tanks, 500 ACV or 300 artillery at the same time."
    ),
    params=(
        "constraint.simultaneous.max_activities",
        *threshold_keys(
            "constraint.simultaneous", "troops", "tanks", "acv", "artillery", comparator=True
        ),
    ),
)
def simultaneous(ctx: CheckContext) -> Iterator[Candidate]:
    thresholds, strict = ctx.thresholds("VD", "constraint.simultaneous")
    limit = int(ctx.param("VD", "constraint.simultaneous.max_activities"))
    acts = activity_table(ctx)
    big = acts[reaches(acts, thresholds, strict)][["activity_id", "state", "start", "end"]]
    pairs = big.merge(big, on="state", suffixes=("", "_other"))
    # Activities running when this one starts (itself included).
    running = pairs[
        (pairs["start_other"] <= pairs["start"]) & (pairs["start"] <= pairs["end_other"])
    ]
    counts = running.groupby("activity_id").agg(
        n=("activity_id_other", "size"), others=("activity_id_other", lambda s: sorted(s))
    )
    over = big.join(counts, on="activity_id")
    over = over[over["n"] > limit]
    for row in over.itertuples():
        yield Candidate(
            state=row.state,
            subject_type="activity",
            subject_id=row.activity_id,
            period=str(row.start.year),
            severity="breach",
            due_at=aware(end_of_day(row.start)),
            summary=(
                f"When {row.activity_id} started on {day_iso(row.start)}, {row.state} had "
                f"{row.n} activities above the ¶67.3 thresholds running at once; VD 2011 ¶67.3 "
                f"allows {limit}."
            ),
            evidence={
                "activity_id": row.activity_id,
                "start_date": day_iso(row.start),
                "running": row.others,
                "count": int(row.n),
                "limit": limit,
                "thresholds": thresholds,
            },
        )


def _per_year(ctx: CheckContext, prefix: str, paragraph: str) -> Iterator[Candidate]:
    thresholds, strict = ctx.thresholds("VD", prefix)
    limit = int(ctx.param("VD", f"{prefix}.max_activities"))
    acts = activity_table(ctx)
    counted = acts[reaches(acts, thresholds, strict)].sort_values(["state", "start", "activity_id"])
    counted = counted.assign(year=counted["start"].dt.year)
    counted = counted.assign(n=counted.groupby(["state", "year"]).cumcount() + 1)
    for row in counted[counted["n"] > limit].itertuples():
        yield Candidate(
            state=row.state,
            subject_type="activity",
            subject_id=row.activity_id,
            period=str(row.year),
            severity="breach",
            due_at=aware(end_of_day(row.start)),
            summary=(
                f"{row.activity_id} (starting {day_iso(row.start)}) was {row.state}'s "
                f"{_ordinal(row.n)} activity in {row.year} above the {paragraph} thresholds "
                f"({', '.join(f'{v:,} {FIGURE_WORDS[k]}' for k, v in thresholds.items())}); "
                f"VD 2011 {paragraph} allows {limit} per calendar year."
            ),
            evidence={
                "activity_id": row.activity_id,
                "start_date": day_iso(row.start),
                "count_in_year": int(row.n),
                "limit": limit,
                "thresholds": thresholds,
                "provision": paragraph,
            },
        )


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@rule(
    "VD-VIII-5",
    regime="VD",
    title="Frequency limits for activities above 13,000 / 25,000 / 40,000 troops",
    citation="VD 2011 ¶67.1, ¶67.2, ¶67.2.1",
    source_status="commonly_cited",
    severity="breach",
    subject_type="activity",
    requirement=(
        "Per calendar year at most six activities above 13,000 troops or 300 tanks, of which at "
        "most three above 25,000 troops or 400 tanks; within three calendar years at most one "
        "above 40,000 troops or 900 tanks."
    ),
    params=(
        "constraint.per_year.max_activities",
        *threshold_keys("constraint.per_year", "troops", "tanks"),
        "constraint.per_year_large.max_activities",
        *threshold_keys("constraint.per_year_large", "troops", "tanks"),
        "constraint.three_year.max_activities",
        "constraint.three_year.window_years",
        *threshold_keys("constraint.three_year", "troops", "tanks"),
    ),
)
def frequency_limits(ctx: CheckContext) -> Iterator[Candidate]:
    yield from _per_year(ctx, "constraint.per_year", "¶67.2")
    yield from _per_year(ctx, "constraint.per_year_large", "¶67.2.1")
    thresholds, strict = ctx.thresholds("VD", "constraint.three_year")
    limit = int(ctx.param("VD", "constraint.three_year.max_activities"))
    window = int(ctx.param("VD", "constraint.three_year.window_years"))
    acts = activity_table(ctx)
    huge = acts[reaches(acts, thresholds, strict)][["activity_id", "state", "start"]]
    huge = huge.assign(year=huge["start"].dt.year)
    pairs = huge.merge(huge, on="state", suffixes=("", "_other"))
    inside = (
        (pairs["year_other"] >= pairs["year"] - (window - 1))
        & (pairs["year_other"] <= pairs["year"])
        & (pairs["start_other"] <= pairs["start"])
    )
    counts = (
        pairs[inside]
        .groupby("activity_id")
        .agg(n=("activity_id_other", "size"), others=("activity_id_other", lambda s: sorted(s)))
    )
    over = huge.join(counts, on="activity_id")
    for row in over[over["n"] > limit].itertuples():
        earlier = [a for a in row.others if a != row.activity_id]
        yield Candidate(
            state=row.state,
            subject_type="activity",
            subject_id=row.activity_id,
            period=str(row.year),
            severity="breach",
            due_at=aware(end_of_day(row.start)),
            summary=(
                f"{row.state} carried out {row.activity_id} (starting {day_iso(row.start)}) "
                f"within {window} calendar years of {', '.join(earlier)}, all above the ¶67.1 "
                f"thresholds; VD 2011 ¶67.1 allows {limit} such activity in {window} years."
            ),
            evidence={
                "activity_id": row.activity_id,
                "start_date": day_iso(row.start),
                "in_window": row.others,
                "count": int(row.n),
                "limit": limit,
                "window_years": window,
                "thresholds": thresholds,
                "provision": "¶67.1",
            },
        )


NEAR_LEVELS = (
    "prior_notification",
    "observation",
    "constraint.simultaneous",
    "constraint.per_year",
    "constraint.per_year_large",
    "large_activity",
)


@rule(
    "VD-NEAR",
    regime="VD",
    title="Declared figures within 10 % below a threshold (signal)",
    citation="VD 2011 ¶40, ¶47, ¶67, ¶68 (project analytic)",
    source_status="commonly_cited",
    severity="info",
    subject_type="activity",
    requirement=(
        "Not an obligation: a declared figure (notification or calendar) within 10 % below a "
        "notification, observation or constraint threshold is flagged for analysts."
    ),
    params=("analytics.near_threshold_band_percent",),
    signal=True,
)
def near_threshold(ctx: CheckContext) -> Iterator[Candidate]:
    band = float(ctx.param("VD", "analytics.near_threshold_band_percent")) / 100
    rows = ctx.relevant_activities()
    declared = rows[rows["source"].isin(["notification", "calendar"])]
    hits: dict[str, list[tuple[str, int, int, str]]] = {}
    for level in NEAR_LEVELS:
        thresholds, _strict = ctx.thresholds("VD", level)
        for column, limit in thresholds.items():
            values = declared[column]
            near = (values >= limit * (1 - band)) & (values <= limit)
            for aid, value in zip(
                declared.loc[near.fillna(False), "activity_id"],
                values[near.fillna(False)],
                strict=True,
            ):
                hits.setdefault(aid, []).append((column, int(value), int(limit), level))
    if not hits:
        return
    acts = activity_table(ctx).set_index("activity_id")
    for aid in sorted(hits):
        act = acts.loc[aid]
        column, value, limit, level = hits[aid][0]
        yield Candidate(
            state=act["state"],
            subject_type="activity",
            subject_id=aid,
            period=str(act["start"].year),
            severity="info",
            due_at=aware(end_of_day(act["start"])),
            summary=(
                f"{act['state']} declared {value:,} {FIGURE_WORDS[column]} for {aid}, within "
                f"{band:.0%} below the {limit:,} threshold ({level.replace('_', ' ')}); a signal "
                "for analysts, not a breach."
            ),
            evidence={
                "activity_id": aid,
                "start_date": day_iso(act["start"]),
                "near": [
                    {"figure": c, "value": v, "threshold": t, "level": lv}
                    for c, v, t, lv in hits[aid]
                ],
                "band_percent": band * 100,
            },
        )
