"""Treaty on Open Skies: timelines of an observation flight, distance, prohibitions, quotas.

Flights belong to the year of their ETA at the point of entry. Rules apply only while both
States are parties (the engine drops findings for a State after its withdrawal: the USA from
2020-11-22, Russia from 2021-12-18).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pandas as pd

from cbm.compliance.context import CheckContext, aware, when_iso
from cbm.compliance.registry import Candidate, rule

HOUR = pd.Timedelta(hours=1)


def _flights(ctx: CheckContext) -> pd.DataFrame:
    flights = ctx.frame("observation_flights")
    return flights.assign(year=flights["eta_poe"].dt.year)


@rule(
    "OS-T1",
    regime="OST",
    title="Observation flight notified at least 72 hours before the ETA",
    citation="OST Art. VI Sec. I ¶5",
    source_status="verified",
    severity="late",
    subject_type="observation_flight",
    requirement=(
        "The observing Party notifies its intention to conduct an observation flight at least "
        "72 hours before the estimated time of arrival at the point of entry."
    ),
    params=("flight_notification.min_lead_hours",),
)
def flight_notice(ctx: CheckContext) -> Iterator[Candidate]:
    hours = float(ctx.param("OST", "flight_notification.min_lead_hours"))
    f = _flights(ctx)
    lead = (f["eta_poe"] - f["notified_at"]) / HOUR
    late = f[lead < hours].assign(lead=lead)
    for row in late.itertuples():
        yield Candidate(
            state=row.observing_state,
            counterpart=row.observed_state,
            subject_type="observation_flight",
            subject_id=row.flight_id,
            period=str(row.year),
            severity="late",
            due_at=aware(row.eta_poe - hours * HOUR),
            summary=(
                f"{row.observing_state} notified observation flight {row.flight_id} over "
                f"{row.observed_state} {row.lead:.1f} hours before its ETA "
                f"({when_iso(row.eta_poe)}); OST Art. VI ¶5 requires {hours:g}."
            ),
            evidence={
                "flight_id": row.flight_id,
                "notified_at": row.notified_at,
                "eta_poe": row.eta_poe,
                "lead_hours": round(float(row.lead), 2),
                "required_hours": hours,
            },
        )


@rule(
    "OS-T2",
    regime="OST",
    title="Flight notification acknowledged within 24 hours",
    citation="OST Art. VI Sec. I ¶6",
    source_status="verified",
    severity="late",
    subject_type="observation_flight",
    requirement="The observed Party acknowledges a flight notification within 24 hours.",
    params=("flight_acknowledgement.max_hours",),
)
def flight_acknowledgement(ctx: CheckContext) -> Iterator[Candidate]:
    hours = float(ctx.param("OST", "flight_acknowledgement.max_hours"))
    f = _flights(ctx)
    notes = ctx.frame("notifications")
    notes = notes[(notes["regime"] == "OST") & notes["event_id"].notna()]

    def first(kind: str, prefix: str) -> pd.DataFrame:
        picked = notes[notes["kind"] == kind].sort_values("sent_at").drop_duplicates("event_id")
        return picked.set_index("event_id")[["reference", "sent_at"]].add_prefix(prefix)

    f = f.join(first("flight_notification", "note_"), on="flight_id").join(
        first("flight_acknowledgement", "ack_"), on="flight_id"
    )
    took = (f["ack_sent_at"] - f["note_sent_at"]) / HOUR
    bad = f["note_sent_at"].isna() | f["ack_sent_at"].isna() | (took > hours)
    f = f.assign(took=took)
    for row in f[bad].itertuples():
        if pd.isna(row.note_sent_at):
            what = "no flight notification message is on record"
        elif pd.isna(row.ack_sent_at):
            what = f"{row.observed_state} has no acknowledgement on record"
        else:
            what = f"{row.observed_state} acknowledged it after {row.took:.1f} hours"
        base = row.note_sent_at if pd.notna(row.note_sent_at) else row.notified_at
        yield Candidate(
            state=row.observed_state,
            counterpart=row.observing_state,
            subject_type="observation_flight",
            subject_id=row.flight_id,
            period=str(row.year),
            severity="late",
            due_at=aware(base + hours * HOUR) if pd.notna(base) else aware(row.eta_poe),
            summary=(
                f"Flight {row.flight_id} of {row.observing_state} over {row.observed_state}: "
                f"{what}; OST Art. VI ¶6 requires an acknowledgement within {hours:g} hours."
            ),
            evidence={
                "flight_id": row.flight_id,
                "notification": None if pd.isna(row.note_reference) else row.note_reference,
                "notification_sent_at": None if pd.isna(row.note_sent_at) else row.note_sent_at,
                "acknowledgement": None if pd.isna(row.ack_reference) else row.ack_reference,
                "acknowledged_at": None if pd.isna(row.ack_sent_at) else row.ack_sent_at,
                "hours": None if pd.isna(row.took) else round(float(row.took), 2),
                "limit_hours": hours,
            },
        )


@rule(
    "OS-T4",
    regime="OST",
    title="ETA to end of the observation flight within 96 hours",
    citation="OST Art. VI Sec. I ¶9",
    source_status="verified",
    severity="breach",
    subject_type="observation_flight",
    requirement=(
        "The period from the estimated time of arrival at the point of entry to the completion "
        "of the observation flight does not exceed 96 hours unless otherwise agreed."
    ),
    params=("mission.max_window_hours",),
)
def mission_window(ctx: CheckContext) -> Iterator[Candidate]:
    hours = float(ctx.param("OST", "mission.max_window_hours"))
    f = _flights(ctx)
    took = (f["flight_end_at"] - f["eta_poe"]) / HOUR
    over = f[took > hours].assign(took=took)
    for row in over.itertuples():
        yield Candidate(
            state=row.observing_state,
            counterpart=row.observed_state,
            subject_type="observation_flight",
            subject_id=row.flight_id,
            period=str(row.year),
            severity="breach",
            due_at=aware(row.eta_poe + hours * HOUR),
            summary=(
                f"{row.observing_state}'s observation flight {row.flight_id} over "
                f"{row.observed_state} ended {row.took:.1f} hours after its ETA; OST Art. VI ¶9 "
                f"allows {hours:g}."
            ),
            evidence={
                "flight_id": row.flight_id,
                "eta_poe": row.eta_poe,
                "flight_end_at": row.flight_end_at,
                "hours": round(float(row.took), 2),
                "limit_hours": hours,
            },
        )


@rule(
    "OS-T13",
    regime="OST",
    title="Mission report within 7 days after departure",
    citation="OST Art. VI Sec. I ¶21",
    source_status="verified",
    severity="late",
    subject_type="observation_flight",
    requirement=(
        "The observing Party provides the mission report to all States Parties within seven "
        "days after departure from the point of exit."
    ),
    params=("mission_report.max_days",),
)
def mission_report(ctx: CheckContext) -> Iterator[Candidate]:
    days = int(ctx.param("OST", "mission_report.max_days"))
    limit = pd.Timedelta(days=days)
    f = _flights(ctx)
    f = f[f["departed_at"].notna()]
    took = f["report_at"] - f["departed_at"]
    deadline = f["departed_at"] + limit
    missing = f["report_at"].isna() & (deadline < ctx.horizon())
    late = took > limit
    f = f.assign(took=took, deadline=deadline)
    for row in f[missing | late].itertuples():
        if pd.isna(row.report_at):
            severity, what = "breach", "has provided no mission report"
        else:
            severity = "late"
            what = f"provided the mission report {row.took.total_seconds() / 86400:.1f} days after"
            what += " departure"
        yield Candidate(
            state=row.observing_state,
            counterpart=row.observed_state,
            subject_type="observation_flight",
            subject_id=row.flight_id,
            period=str(row.year),
            severity=severity,
            due_at=aware(row.deadline),
            summary=(
                f"{row.observing_state} {what} for flight {row.flight_id} over "
                f"{row.observed_state}; OST Art. VI ¶21 requires it within {days} days."
            ),
            evidence={
                "flight_id": row.flight_id,
                "departed_at": row.departed_at,
                "report_at": None if pd.isna(row.report_at) else row.report_at,
                "limit_days": days,
            },
        )


@rule(
    "OS-DIST",
    regime="OST",
    title="Flight distance within the maximum for the Open Skies airfield",
    citation="OST Annex A Sec. III; Art. VI Sec. II ¶2",
    source_status="verified",
    severity="breach",
    subject_type="observation_flight",
    requirement=(
        "The distance flown does not exceed the maximum flight distance of the Open Skies "
        "airfield from which the flight begins."
    ),
)
def flight_distance(ctx: CheckContext) -> Iterator[Candidate]:
    f = _flights(ctx)
    airfields = ctx.frame("os_airfields")
    by_name = airfields.drop_duplicates("airfield").set_index("airfield")["max_distance_km"]
    maximum = f["max_distance_km"].fillna(f["os_airfield"].map(by_name))
    f = f.assign(maximum=maximum)
    over = f[(f["distance_km"] > f["maximum"]).fillna(False).astype(bool)]
    for row in over.itertuples():
        yield Candidate(
            state=row.observing_state,
            counterpart=row.observed_state,
            subject_type="observation_flight",
            subject_id=row.flight_id,
            period=str(row.year),
            severity="breach",
            due_at=aware(row.eta_poe),
            summary=(
                f"{row.observing_state}'s flight {row.flight_id} over {row.observed_state} from "
                f"{row.os_airfield or 'its airfield'} covered {int(row.distance_km):,} km; OST "
                f"Annex A allows {int(row.maximum):,} km from that airfield."
            ),
            evidence={
                "flight_id": row.flight_id,
                "os_airfield": row.os_airfield,
                "distance_km": int(row.distance_km),
                "max_distance_km": int(row.maximum),
            },
        )


@rule(
    "OS-PROHIBIT",
    regime="OST",
    title="Prohibited observation flight with a recorded treaty ground",
    citation="OST Art. VIII Sec. I ¶1-3",
    source_status="verified",
    severity="breach",
    subject_type="observation_flight",
    requirement=(
        "An observed Party prohibits an observation flight only on a ground the Treaty gives "
        "(Art. VIII), and explains it in writing."
    ),
    params=("prohibition_explanation.max_days",),
)
def prohibited(ctx: CheckContext) -> Iterator[Candidate]:
    f = _flights(ctx)
    ground = (
        f["curtailment_cause"].fillna("").str.strip() + f["restrictions"].fillna("").str.strip()
    )
    bad = f[(f["outcome"] == "prohibited") & (ground == "")]
    for row in bad.itertuples():
        yield Candidate(
            state=row.observed_state,
            counterpart=row.observing_state,
            subject_type="observation_flight",
            subject_id=row.flight_id,
            period=str(row.year),
            severity="breach",
            due_at=aware(row.eta_poe),
            summary=(
                f"{row.observed_state} prohibited {row.observing_state}'s observation flight "
                f"{row.flight_id} with no treaty ground on record; OST Art. VIII allows a "
                "prohibition only on its stated grounds."
            ),
            evidence={"flight_id": row.flight_id, "outcome": row.outcome, "ground": None},
        )


def _passive_quotas(
    ctx: CheckContext,
) -> tuple[dict[tuple[str, int], int], dict[str, tuple[str, int]]]:
    quotas = ctx.frame("quotas")
    ost = quotas[(quotas["regime"] == "OST") & (quotas["kind"] == "passive")]
    stored = {(r.state, int(r.year)): int(r.quota) for r in ost.itertuples()}
    holders = {}
    for h in ctx.frame("os_holders").itertuples():
        for member in str(h.members).split():
            holders[member] = (h.holder, int(h.passive_quota))
    return stored, holders


def _counted(ctx: CheckContext) -> pd.DataFrame:
    f = _flights(ctx)
    counted = f[f["counts_against_quota"].fillna(False).astype(bool)]
    return counted.sort_values(["eta_poe", "flight_id"])


@rule(
    "OS-Q6",
    regime="OST",
    title="Flights over one State within 50 % (rounded up) of the quotas",
    citation="OST Art. III Sec. I ¶10",
    source_status="verified",
    severity="breach",
    subject_type="observation_flight",
    requirement=(
        "No Party conducts more observation flights over another than 50 percent, rounded up, "
        "of its own total active quota or of the other's passive quota, whichever is less."
    ),
    params=("quota.per_counterpart_cap_percent", "quota.per_counterpart_cap_rounding"),
)
def per_counterpart_cap(ctx: CheckContext) -> Iterator[Candidate]:
    percent = float(ctx.param("OST", "quota.per_counterpart_cap_percent"))
    rounding = ctx.param("OST", "quota.per_counterpart_cap_rounding")
    stored, holders = _passive_quotas(ctx)
    quotas = ctx.frame("quotas")
    active = (
        quotas[(quotas["regime"] == "OST") & (quotas["kind"] == "active")]
        .groupby(["state", "year"])["quota"]
        .sum()
    )
    counted = _counted(ctx)
    counted = counted.assign(
        n=counted.groupby(["observing_state", "observed_state", "year"]).cumcount() + 1
    )
    evaluated, skipped = set(), set()
    for row in counted.itertuples():
        key = (row.observing_state, row.year)
        if key not in active.index:
            skipped.add(key)  # no active quota distribution on record: not evaluated
            continue
        evaluated.add(key)
        own = int(active.loc[key])
        passive = stored.get((row.observed_state, row.year))
        if passive is None:
            passive = holders.get(row.observed_state, (row.observed_state, 0))[1]
        share = min(own, passive) * percent / 100
        cap = math.ceil(share) if rounding == "ceil" else math.floor(share)
        if row.n > cap:
            yield Candidate(
                state=row.observing_state,
                counterpart=row.observed_state,
                subject_type="observation_flight",
                subject_id=row.flight_id,
                period=str(row.year),
                severity="breach",
                due_at=aware(row.eta_poe),
                summary=(
                    f"{row.flight_id} was {row.observing_state}'s flight no. {row.n} over "
                    f"{row.observed_state} in {row.year}; OST Art. III ¶10 caps it at {cap} "
                    f"(50 % of min(active {own}, passive {passive}), rounded up)."
                ),
                evidence={
                    "flight_id": row.flight_id,
                    "flights_so_far": int(row.n),
                    "active_quota": own,
                    "passive_quota": passive,
                    "cap": cap,
                },
            )
    ctx.record_coverage(
        "OS-Q6",
        evaluated=sorted(f"{s} {y}" for s, y in evaluated),
        skipped=[
            {"period": f"{s} {y}", "why": "no active quota on record"} for s, y in sorted(skipped)
        ],
    )


@rule(
    "OS-OVERQUOTA",
    regime="OST",
    title="Observation flights accepted beyond the passive quota (positive)",
    citation="OST Art. III Sec. I ¶2-3",
    source_status="verified",
    severity="positive",
    subject_type="observation_flight",
    requirement=(
        "Not an obligation: a Party that accepts more observation flights than its passive "
        "quota shows openness beyond the Treaty; flagged as a positive signal."
    ),
    signal=True,
)
def beyond_quota(ctx: CheckContext) -> Iterator[Candidate]:
    stored, holders = _passive_quotas(ctx)
    counted = _counted(ctx)
    if counted.empty:
        return
    keys, limits = [], []
    for state, year in zip(counted["observed_state"], counted["year"], strict=True):
        passive = stored.get((state, year))
        if passive is not None:
            keys.append(state)
            limits.append(passive)
        else:
            holder, quota = holders.get(state, (state, 0))
            keys.append(holder)
            limits.append(quota)
    counted = counted.assign(holder=keys, limit=np.array(limits))
    counted = counted.assign(n=counted.groupby(["holder", "year"]).cumcount() + 1)
    for row in counted[counted["n"] > counted["limit"]].itertuples():
        yield Candidate(
            state=row.observed_state,
            counterpart=row.observing_state,
            subject_type="observation_flight",
            subject_id=row.flight_id,
            period=str(row.year),
            severity="positive",
            due_at=aware(row.eta_poe),
            summary=(
                f"{row.observed_state} accepted {row.flight_id} from {row.observing_state} as "
                f"flight no. {row.n} in {row.year} over {row.holder}, beyond its passive quota "
                f"of {row.limit}: openness beyond what the Treaty requires."
            ),
            evidence={
                "flight_id": row.flight_id,
                "quota_holder": row.holder,
                "flights_accepted": int(row.n),
                "passive_quota": int(row.limit),
            },
        )
