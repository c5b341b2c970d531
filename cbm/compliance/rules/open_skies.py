"""Treaty on Open Skies: timelines of an observation flight, distance, prohibitions, quotas.

Flights belong to the year of their ETA at the point of entry. Rules apply only while both
States are parties (the engine drops findings for a State after its withdrawal: the USA from
2020-11-22, Russia from 2021-12-18).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd

from cbm.compliance.context import CheckContext, aware, end_of_day, when_iso
from cbm.compliance.registry import Candidate, rule
from cbm.compliance.rules.wording import duration

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
    f = f.assign(lead=lead)
    late = f[f["lead"] < hours]
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
                f"{row.observed_state} {duration(row.lead)} before its ETA "
                f"({when_iso(row.eta_poe)}); OST Art. VI ¶5 requires {hours:g} hours."
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
    notes = ctx.notifications("flight_notification", "flight_acknowledgement")
    notes = notes[(notes["regime"] == "OST") & notes["event_id"].notna()]

    def first(kind: str, prefix: str) -> pd.DataFrame:
        picked = notes[notes["kind"] == kind].sort_values("sent_at").drop_duplicates("event_id")
        return picked.set_index("event_id")[["reference", "sent_at"]].add_prefix(prefix)

    f = f.join(first("flight_notification", "note_"), on="flight_id").join(
        first("flight_acknowledgement", "ack_"), on="flight_id"
    )
    # The clock starts with the notification message, else the flight's notification time;
    # the observed Party is not blamed for a notification message missing from the data.
    base = f["note_sent_at"].fillna(f["notified_at"])
    took = (f["ack_sent_at"] - base) / HOUR
    deadline = base + hours * HOUR
    # A missing acknowledgement is judged only when the data reach past its deadline.
    missing = f["ack_sent_at"].isna() & (deadline < ctx.horizon())
    bad = missing | (took > hours)
    f = f.assign(took=took, deadline=deadline)
    for row in f[bad].itertuples():
        if pd.isna(row.ack_sent_at):
            what = f"{row.observed_state} has no acknowledgement on record"
        else:
            what = f"{row.observed_state} acknowledged it after {duration(row.took)}"
        yield Candidate(
            state=row.observed_state,
            counterpart=row.observing_state,
            subject_type="observation_flight",
            subject_id=row.flight_id,
            period=str(row.year),
            severity="late",
            due_at=aware(row.deadline),
            summary=(
                f"Flight {row.flight_id} of {row.observing_state} over {row.observed_state}: "
                f"{what}; OST Art. VI ¶6 requires an acknowledgement within {hours:g} hours."
            ),
            evidence={
                "flight_id": row.flight_id,
                "notification": None if pd.isna(row.note_reference) else row.note_reference,
                "notification_sent_at": None if pd.isna(row.note_sent_at) else row.note_sent_at,
                "acknowledgement": None if pd.isna(row.ack_reference) else row.ack_reference,
                "notified_at": None if pd.isna(row.notified_at) else row.notified_at,
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
    f = f.assign(took=took)
    over = f[f["took"] > hours]
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
                f"{row.observed_state} ended {duration(row.took)} after its ETA; OST Art. VI ¶9 "
                f"allows {hours:g} hours."
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
            what = f"provided the mission report {duration(row.took, 'days')} after departure"
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


ROUNDED = {"ceil": "rounded up", "floor": "rounded down"}
FIRST_DISTRIBUTION = (
    "quota.first_distribution_percent",
    "quota.first_distribution_rounding",
    "phasing.end_years_after_eif",
)


def percent_of(quota: int, percent: float, rounding: str) -> int:
    """``percent`` % of ``quota`` rounded as the Treaty says (exact arithmetic, no floats)."""
    share = Fraction(str(percent)) * quota / 100
    return math.ceil(share) if rounding == "ceil" else math.floor(share)


def phasing_end(ctx: CheckContext) -> pd.Timestamp | None:
    """The last moment of the phasing period: 31 December of the ``phasing.end_years_after_eif``
    th year after the year of entry into force (the earliest OST participation on record)."""
    part = ctx.frame("participation")
    ost = part[(part["regime"] == "OST") & (part["status"] == "party")]
    if ost.empty or ost["valid_from"].isna().all():
        return None
    eif = ost["valid_from"].min()
    years = int(ctx.param("OST", "phasing.end_years_after_eif"))
    return end_of_day(pd.Timestamp(eif.year + years, 12, 31))


@dataclass(frozen=True)
class PassiveQuota:
    """The passive quota an observed State's flights count against in one year."""

    holder: str  # the State, or the group (BY-RU, Benelux) that holds the quota
    full: int  # the quota as distributed
    accepted: int  # what the observed Party must accept: 75 % in the phasing period
    phased: bool
    percent: float
    rounding: str

    def text(self) -> str:
        if not self.phased:
            return f"{self.full}"
        return (
            f"{self.accepted}: {self.percent:g} % of {self.full}, {ROUNDED[self.rounding]}, in "
            "the phasing period"
        )

    def evidence(self) -> dict[str, object]:
        return {
            "quota_holder": self.holder,
            "passive_quota": self.accepted,
            "passive_quota_distributed": self.full,
            "phasing_period": self.phased,
        }


class PassiveQuotas:
    """Passive quotas by State and year: the quotas table, else the Annex A holder's quota
    (a group's common quota for its members); in the phasing period the first-distribution
    rule (Annex A Sec. II ¶1) limits what must be accepted to 75 % of it, rounded down."""

    def __init__(self, ctx: CheckContext) -> None:
        quotas = ctx.frame("quotas")
        ost = quotas[(quotas["regime"] == "OST") & (quotas["kind"] == "passive")]
        self.stored = {(r.state, int(r.year)): int(r.quota) for r in ost.itertuples()}
        self.holders: dict[str, tuple[str, int]] = {}
        for h in ctx.frame("os_holders").itertuples():
            for member in str(h.members).split():
                self.holders[member] = (h.holder, int(h.passive_quota))
        self.percent = float(ctx.param("OST", "quota.first_distribution_percent"))
        self.rounding = str(ctx.param("OST", "quota.first_distribution_rounding"))
        self.phasing_end = phasing_end(ctx)

    def get(self, state: str, year: int, eta: pd.Timestamp) -> PassiveQuota | None:
        """``None`` when neither the quotas table nor Annex A gives the State a quota."""
        if (state, year) in self.stored:
            holder, full = state, self.stored[(state, year)]
        elif state in self.holders:
            holder, full = self.holders[state]
        else:
            return None
        phased = self.phasing_end is not None and eta <= self.phasing_end
        accepted = percent_of(full, self.percent, self.rounding) if phased else full
        return PassiveQuota(holder, full, accepted, phased, self.percent, self.rounding)


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
        "of its own total active quota or of the other's passive quota, whichever is less "
        "(in the phasing period 75 percent, rounded down, of the passive quota)."
    ),
    params=(
        "quota.per_counterpart_cap_percent",
        "quota.per_counterpart_cap_rounding",
        *FIRST_DISTRIBUTION,
    ),
)
def per_counterpart_cap(ctx: CheckContext) -> Iterator[Candidate]:
    percent = float(ctx.param("OST", "quota.per_counterpart_cap_percent"))
    rounding = str(ctx.param("OST", "quota.per_counterpart_cap_rounding"))
    passive_of = PassiveQuotas(ctx)
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
    evaluated: set[tuple[str, int]] = set()
    skipped: dict[tuple[str, int], str] = {}
    for row in counted.itertuples():
        key = (row.observing_state, row.year)
        if key not in active.index:
            skipped[key] = "no active quota on record"  # no distribution: not evaluated
            continue
        passive = passive_of.get(row.observed_state, row.year, row.eta_poe)
        if passive is None:
            skipped[(row.observed_state, row.year)] = "no passive quota on record"
            continue
        evaluated.add(key)
        own = int(active.loc[key])
        cap = percent_of(min(own, passive.accepted), percent, rounding)
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
                    f"({percent:g} % of min(active {own}, passive {passive.text()}), "
                    f"{ROUNDED[rounding]})."
                ),
                evidence={
                    "flight_id": row.flight_id,
                    "flights_so_far": int(row.n),
                    "active_quota": own,
                    **passive.evidence(),
                    "cap": cap,
                },
            )
    ctx.record_coverage(
        "OS-Q6",
        evaluated=sorted(f"{s} {y}" for s, y in evaluated),
        skipped=[{"period": f"{s} {y}", "why": why} for (s, y), why in sorted(skipped.items())],
    )


@rule(
    "OS-OVERQUOTA",
    regime="OST",
    title="Observation flights accepted beyond the passive quota (positive)",
    citation="OST Art. III Sec. I ¶2-3; Annex A Sec. II ¶1",
    source_status="verified",
    severity="positive",
    subject_type="observation_flight",
    requirement=(
        "Not an obligation: a Party that accepts more observation flights than its passive "
        "quota (in the phasing period 75 percent of it, rounded down) shows openness beyond "
        "the Treaty; flagged as a positive signal."
    ),
    params=FIRST_DISTRIBUTION,
    signal=True,
)
def beyond_quota(ctx: CheckContext) -> Iterator[Candidate]:
    passive_of = PassiveQuotas(ctx)
    counted = _counted(ctx)
    if counted.empty:
        return
    quotas = [
        passive_of.get(state, year, eta)
        for state, year, eta in zip(
            counted["observed_state"], counted["year"], counted["eta_poe"], strict=True
        )
    ]
    known = np.array([q is not None for q in quotas], dtype=bool)
    counted = counted.assign(quota=quotas)[known]  # no quota on record: not evaluated
    if counted.empty:
        return
    counted = counted.assign(
        holder=[q.holder for q in counted["quota"]],
        limit=[q.accepted for q in counted["quota"]],
    )
    counted = counted.assign(n=counted.groupby(["holder", "year"]).cumcount() + 1)
    for row in counted[counted["n"] > counted["limit"]].itertuples():
        passive: PassiveQuota = row.quota
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
                f"of {passive.text()}: openness beyond what the Treaty requires."
            ),
            evidence={
                "flight_id": row.flight_id,
                "flights_accepted": int(row.n),
                **passive.evidence(),
            },
        )
