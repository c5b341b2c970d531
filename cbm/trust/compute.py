"""Computing the trust signals (method: :mod:`cbm.trust.method`) and storing them.

:func:`compute_trust` reads the facts through :class:`~cbm.compliance.context.CheckContext`
(pandas frames, set-based, the same threshold logic as the rules) and the counted findings,
turns every judged obligation or opportunity into an *item* with a credit between 0 and 1,
and scores each State, signal and year as ``100 × credits ÷ items`` (no items: no data).
Then the composite index (weighted mean over signals with data), the regions and the OSCE
area (mean of members with data, worst member) and the change against the previous year.
Everything is written in one executemany into ``trust_scores`` under a new ``trust_runs``
row.

Items are frames with the columns of :data:`ITEM_COLUMNS`; the findings that moved them are
*links* (:data:`LINK_COLUMNS`). A finding whose subject is not among the items built from
the records (e.g. a late acknowledgement of a cancelled flight) becomes an item of its own,
so every counted finding moves its signal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from cbm.compliance.context import CheckContext, end_of_day, reaches, to_timestamp
from cbm.db import session_scope, utcnow
from cbm.models import (
    Activity,
    CheckRun,
    Finding,
    Inspection,
    Notification,
    ObservationFlight,
    State,
    TrustRun,
    TrustScore,
)
from cbm.trust.method import (
    COUNTED_STATUSES,
    DETAIL_LIMIT,
    INDEX,
    KEEP_RUNS,
    METHOD_VERSION,
    OSCE,
    PENALTIES,
    SIGNAL_IDS,
    SIGNALS_BY_ID,
    WEIGHTS,
)

log = logging.getLogger(__name__)

ITEM_COLUMNS = ["signal", "state", "year", "item", "subject_type", "subject_id", "what", "credit"]
LINK_COLUMNS = [
    "signal",
    "state",
    "year",
    "item",
    "finding_id",
    "rule_id",
    "severity",
    "status",
    "subject_type",
    "subject_id",
    "period",
    "counterpart",
    "effect",
]
SEVERITY_ORDER = {"breach": 0, "late": 1, "warning": 2, "info": 3, "positive": 4}
REGIMES = ("VD", "OST", "CFE", "GEMI")

#: The annual submissions of the timeliness signal: rule, regime, notification kind, the
#: deadline parameter, the year offset of the deadline from the period, and a label.
ANNUAL: tuple[tuple[str, str, str, str, int, str], ...] = (
    ("VD-I-3", "VD", "annual_exchange", "annual_exchange.due_month_day", -1, "VD annual exchange"),
    ("VD-VII-1", "VD", "annual_calendar", "annual_calendar.due_month_day", -1, "annual calendar"),
    ("CFE-X1", "CFE", "annual_exchange", "annual_exchange.due_month_day", -1, "CFE exchange"),
    ("GEMI-3", "GEMI", "annual_exchange", "annual_exchange.due_month_day", 0, "GEMI submission"),
)

#: How a counted finding of each rule moves the item it concerns, per signal: ``zero`` takes
#: the whole credit, ``penalty`` takes :data:`~cbm.trust.method.PENALTIES` of it, ``raise``
#: is a good item of its own (positive findings), ``none`` is only listed.
EFFECTS: dict[str, dict[str, str]] = {
    "timeliness": {"VD-I-3": "zero", "VD-VII-1": "zero", "CFE-X1": "zero", "GEMI-3": "zero"},
    "notification": {"VD-V-3": "zero", "VD-VII-3": "zero", "VD-VI-1": "zero", "VD-VIII-4": "zero"},
    "verification": {
        "VD-IX-I2": "zero",
        "VD-IX-E2": "zero",
        "OS-PROHIBIT": "zero",
        "VD-IX-I4": "penalty",
        "OS-T2": "penalty",
    },
    "transparency": {"OS-OVERQUOTA": "raise", "RED-1": "raise"},
    "restraint": {"VD-VIII-1": "zero", "VD-VIII-5": "zero", "VD-NEAR": "penalty"},
    "reductions": {"CFE-R2": "zero", "RED-1": "zero"},
}
#: What an item made of a finding alone (no matching record) is, in a score's details.
RULE_WHAT = {
    "VD-V-3": "prior notification (VD-V-3)",
    "VD-VII-3": "in the annual calendar (VD-VII-3)",
    "VD-VI-1": "observation invitation (VD-VI-1)",
    "VD-VIII-4": "announced two years ahead (VD-VIII-4)",
    "VD-IX-I2": "inspection refused within the quota",
    "VD-IX-E2": "evaluation visit refused within the quota",
    "VD-IX-I4": "inspection request answered late",
    "OS-PROHIBIT": "flight prohibited without a treaty ground",
    "OS-T2": "flight notification acknowledged late",
    "OS-OVERQUOTA": "flight accepted beyond the passive quota",
    "VD-VIII-1": "above the simultaneity limit",
    "VD-VIII-5": "above the frequency limits",
    "VD-NEAR": "declared just under a threshold",
    "CFE-R2": "treaty reduction late or not completed",
    "RED-1": "unilateral reduction late or not completed",
}


def _rule_what(rule_id: str, severity: str) -> str:
    if rule_id == "RED-1" and severity == "positive":
        return "unilateral reduction completed early"
    return RULE_WHAT.get(rule_id, rule_id)


EFFECT_WORDS = {"zero": "lowered", "penalty": "lowered", "raise": "raised", "none": "listed"}


# --- inputs --------------------------------------------------------------------------------


@dataclass
class Basis:
    """What one computation reads: the facts, the counted findings, the check runs."""

    ctx: CheckContext
    findings: pd.DataFrame
    evaluated: set[str]  # rule ids evaluated by at least one successful check
    coverage: dict[str, dict[str, Any]]  # latest coverage per absence rule
    check_run_id: int | None
    as_of: pd.Timestamp
    first_year: int | None = None
    horizon_year: int | None = None
    notes: list[str] = field(default_factory=list)


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def _items(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return _empty(ITEM_COLUMNS)
    out = frame[ITEM_COLUMNS].copy()
    out["year"] = out["year"].astype(int)
    out["credit"] = out["credit"].astype(float)
    return out


def _check_runs(session: Session, check_run_id: int | None) -> list[Any]:
    query = select(CheckRun.id, CheckRun.as_of, CheckRun.scope).where(
        CheckRun.status == "succeeded"
    )
    if check_run_id is not None:
        query = query.where(CheckRun.id <= check_run_id)
    return list(session.execute(query.order_by(CheckRun.id.desc())))


def _evaluated_rules(runs: Iterable[Any]) -> set[str]:
    from cbm.compliance.registry import all_rules

    rules = all_rules()
    out: set[str] = set()
    for run in runs:
        scope = run.scope or {}
        regimes = set(scope.get("regimes") or [])
        ids = set(scope.get("rules") or [])
        out |= {
            r.id
            for r in rules.values()
            if (not regimes or r.regime in regimes) and (not ids or r.id in ids)
        }
        if len(out) == len(rules):
            break
    return out


def _coverage(session: Session, runs: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """Per timeliness rule, the coverage recorded by the newest run that evaluated it."""
    wanted = {rule for rule, *_ in ANNUAL}
    out: dict[str, dict[str, Any]] = {}
    for run in runs[:50]:
        coverage = session.scalar(select(CheckRun.coverage).where(CheckRun.id == run.id)) or {}
        for rule in wanted - set(out):
            if rule in coverage:
                out[rule] = coverage[rule]
        if len(out) == len(wanted):
            break
    return out


def _findings(session: Session) -> pd.DataFrame:
    rules = sorted({r for effects in EFFECTS.values() for r in effects})
    table = Finding.__table__
    columns = [
        "id",
        "rule_id",
        "severity",
        "status",
        "state",
        "counterpart",
        "subject_type",
        "subject_id",
        "period",
    ]
    query = select(*(table.c[c] for c in columns)).where(
        table.c.rule_id.in_(rules), table.c.status.in_(COUNTED_STATUSES)
    )
    rows = session.execute(query).all()
    frame = pd.DataFrame(rows, columns=columns) if rows else _empty(columns)
    frame = frame.rename(columns={"id": "finding_id"})
    frame["subject_id"] = frame["subject_id"].fillna("")
    frame["period_year"] = pd.to_numeric(frame["period"], errors="coerce")
    return frame


def _years_of_records(session: Session) -> int | None:
    firsts = [
        session.scalar(select(func.min(Activity.start_date))),
        session.scalar(select(func.min(Notification.sent_at))),
        session.scalar(select(func.min(Inspection.requested_at))),
        session.scalar(select(func.min(ObservationFlight.eta_poe))),
    ]
    years = [pd.Timestamp(v).year for v in firsts if v is not None]
    return min(years) if years else None


def read_basis(session: Session, check_run_id: int | None = None) -> Basis:
    runs = _check_runs(session, check_run_id)
    chosen = runs[0] if runs else None
    if chosen is not None and chosen.as_of is not None:
        as_of = pd.Timestamp(chosen.as_of).tz_convert(None)
    else:
        as_of = pd.Timestamp(utcnow()).tz_convert(None)
    ctx = CheckContext(session, as_of)
    basis = Basis(
        ctx=ctx,
        findings=_findings(session),
        evaluated=_evaluated_rules(runs),
        coverage=_coverage(session, runs),
        check_run_id=chosen.id if chosen is not None else None,
        as_of=as_of,
    )
    basis.first_year = _years_of_records(session)
    basis.horizon_year = int(ctx.horizon().year)
    if not runs:
        basis.notes.append("no successful compliance check yet: findings-based items not judged")
    return basis


# --- applying findings to items ----------------------------------------------------------------


def _apply(
    signal: str,
    items: pd.DataFrame,
    found: pd.DataFrame,
    *,
    orphans: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Attach the findings (with an ``item`` column) to the items of one signal.

    Matched on (State, item). Unmatched findings become items of their own (credit 1 before
    their effect) when ``orphans``; otherwise they are dropped. Returns (items, links).
    """
    effects = EFFECTS[signal]
    found = found[found["rule_id"].isin(list(effects))]
    if found.empty:
        return _items(items), _empty(LINK_COLUMNS)
    if "effect" not in found.columns:
        found = found.assign(effect=found["rule_id"].map(effects))
    keyed = items[["state", "item", "year"]].drop_duplicates(["state", "item"])
    merged = found.merge(keyed, on=["state", "item"], how="left")
    missing = merged["year"].isna()
    if orphans:
        extra = merged[missing & merged["period_year"].notna()]
        extra = extra.drop_duplicates(["state", "item"])
        if not extra.empty:
            new = pd.DataFrame(
                {
                    "signal": signal,
                    "state": extra["state"].to_numpy(),
                    "year": extra["period_year"].astype(int).to_numpy(),
                    "item": extra["item"].to_numpy(),
                    "subject_type": extra["subject_type"].to_numpy(),
                    "subject_id": extra["subject_id"].to_numpy(),
                    "what": [
                        _rule_what(r, sev)
                        for r, sev in zip(extra["rule_id"], extra["severity"], strict=True)
                    ],
                    "credit": 1.0,
                }
            )
            items = pd.concat([items, new], ignore_index=True) if not items.empty else new
        merged["year"] = merged["year"].fillna(merged["period_year"])
    merged = merged[merged["year"].notna()]
    if merged.empty:
        return _items(items), _empty(LINK_COLUMNS)
    zero = merged[merged["effect"] == "zero"].groupby(["state", "item"]).size()
    penalty = (
        merged[merged["effect"] == "penalty"]
        .assign(p=lambda f: f["rule_id"].map(PENALTIES).fillna(0.0))
        .groupby(["state", "item"])["p"]
        .sum()
    )
    index = pd.MultiIndex.from_frame(items[["state", "item"]])
    credit = items["credit"].astype(float).to_numpy()
    credit = credit - penalty.reindex(index).fillna(0.0).to_numpy()
    credit = np.where(zero.reindex(index).fillna(0).to_numpy() > 0, 0.0, credit)
    items = items.assign(credit=np.clip(credit, 0.0, 1.0))
    links = merged.assign(signal=signal, effect=merged["effect"].map(EFFECT_WORDS))
    return _items(items), links[LINK_COLUMNS]


# --- the signals -------------------------------------------------------------------------------


def timeliness(basis: Basis) -> tuple[pd.DataFrame, pd.DataFrame]:
    ctx = basis.ctx
    frames = []
    for rule_id, regime, kind, due_key, offset, label in ANNUAL:
        info = basis.coverage.get(rule_id)
        if rule_id not in basis.evaluated or not info:
            continue
        periods = [int(p) for p in info.get("evaluated") or []]
        if not periods:
            continue
        month, day = ctx.param(regime, due_key)
        notes = ctx.notifications(kind)
        subs = notes[(notes["regime"] == regime) & notes["covers_year"].notna()]
        subs = subs.assign(
            got=subs["received_at"].fillna(subs["sent_at"]),
            covers_year=subs["covers_year"].astype(int),
        )
        first = subs.sort_values(["got", "reference"]).drop_duplicates(["sender", "covers_year"])
        first = first.set_index(["sender", "covers_year"])["reference"]
        for period in periods:
            due = end_of_day(pd.Timestamp(period + offset, month, day))
            owed = ctx.party_states(regime, due)
            if not owed:
                continue
            refs = [first.get((s, period)) for s in owed]
            frames.append(
                pd.DataFrame(
                    {
                        "signal": "timeliness",
                        "state": owed,
                        "year": due.year,
                        "item": f"{rule_id}|{period}",
                        "subject_type": "notification",
                        "subject_id": [r if isinstance(r, str) else None for r in refs],
                        "what": f"{label} for {period}, due {due.date().isoformat()}",
                        "credit": 1.0,
                    }
                )
            )
    items = pd.concat(frames, ignore_index=True) if frames else _empty(ITEM_COLUMNS)
    found = basis.findings
    found = found.assign(item=found["rule_id"] + "|" + found["period"].fillna(""))
    return _apply("timeliness", _items(items), found, orphans=False)


def _activities(basis: Basis) -> pd.DataFrame:
    """One row per relevant activity of a State party to the VD when it started."""
    from cbm.compliance.rules.vd_activities import activity_table

    ctx = basis.ctx
    acts = activity_table(ctx)
    if acts.empty:
        return acts
    party = ctx.party(acts["state"], "VD", acts["start"])
    acts = acts[party]
    return acts.assign(year=acts["start"].dt.year)


def notification(basis: Basis) -> tuple[pd.DataFrame, pd.DataFrame]:
    ctx = basis.ctx
    acts = _activities(basis)
    frames = []
    if not acts.empty:
        prior, p_strict = ctx.thresholds("VD", "prior_notification")
        observe, o_strict = ctx.thresholds("VD", "observation")
        large, l_strict = ctx.thresholds("VD", "large_activity")
        notifiable = reaches(acts, prior, p_strict)
        parts = (
            ("VD-V-3", notifiable, "prior notification"),
            ("VD-VII-3", notifiable & (acts["kind"] != "alert"), "in the annual calendar"),
            ("VD-VI-1", reaches(acts, observe, o_strict), "observation invitation"),
            ("VD-VIII-4", reaches(acts, large, l_strict), "announced two years ahead"),
        )
        for rule_id, mask, label in parts:
            chosen = acts[mask.to_numpy()]
            if chosen.empty or rule_id not in basis.evaluated:
                continue
            frames.append(
                pd.DataFrame(
                    {
                        "signal": "notification",
                        "state": chosen["state"].to_numpy(),
                        "year": chosen["year"].to_numpy(),
                        "item": (rule_id + "|" + chosen["activity_id"]).to_numpy(),
                        "subject_type": "activity",
                        "subject_id": chosen["activity_id"].to_numpy(),
                        "what": f"{label} ({rule_id})",
                        "credit": 1.0,
                    }
                )
            )
    items = pd.concat(frames, ignore_index=True) if frames else _empty(ITEM_COLUMNS)
    found = basis.findings
    found = found.assign(item=found["rule_id"] + "|" + found["subject_id"])
    return _apply("notification", _items(items), found)


def verification(basis: Basis) -> tuple[pd.DataFrame, pd.DataFrame]:
    ctx = basis.ctx
    frames = []
    insp = ctx.frame("inspections")
    insp = insp[insp["kind"].isin(["vd_inspection", "vd_evaluation"])]
    if not insp.empty:
        rule = np.where(insp["kind"] == "vd_inspection", "VD-IX-I2", "VD-IX-E2")
        insp = insp[pd.Series(rule, index=insp.index).isin(list(basis.evaluated)).to_numpy()]
        insp = insp[ctx.party(insp["inspected_state"], "VD", insp["requested_at"])]
        accepted = insp[insp["reply"] == "accepted"]
        words = np.where(
            accepted["kind"] == "vd_inspection",
            "inspection accepted",
            "evaluation visit accepted",
        )
        frames.append(
            pd.DataFrame(
                {
                    "signal": "verification",
                    "state": accepted["inspected_state"].to_numpy(),
                    "year": accepted["requested_at"].dt.year.to_numpy(),
                    "item": accepted["inspection_id"].to_numpy(),
                    "subject_type": "inspection",
                    "subject_id": accepted["inspection_id"].to_numpy(),
                    "what": words,
                    "credit": 1.0,
                }
            )
        )
    flights = ctx.frame("observation_flights")
    flights = flights[flights["eta_poe"].notna()]
    if not flights.empty and "OS-PROHIBIT" in basis.evaluated:
        flights = flights[ctx.party(flights["observed_state"], "OST", flights["eta_poe"])]
        done = flights[flights["outcome"].isin(["completed", "curtailed"])]
        restricted = done["restrictions"].fillna("").str.strip() != ""
        credit = np.where(restricted, 1.0 - PENALTIES["restrictions"], 1.0)
        what = np.where(
            restricted,
            "flight accepted, with restrictions: " + done["restrictions"].fillna("").str.strip(),
            "flight accepted",
        )
        frames.append(
            pd.DataFrame(
                {
                    "signal": "verification",
                    "state": done["observed_state"].to_numpy(),
                    "year": done["eta_poe"].dt.year.to_numpy(),
                    "item": done["flight_id"].to_numpy(),
                    "subject_type": "observation_flight",
                    "subject_id": done["flight_id"].to_numpy(),
                    "what": what,
                    "credit": credit,
                }
            )
        )
    frames = [f for f in frames if not f.empty]
    items = pd.concat(frames, ignore_index=True) if frames else _empty(ITEM_COLUMNS)
    found = basis.findings.assign(item=basis.findings["subject_id"])
    return _apply("verification", _items(items), found)


def transparency(basis: Basis) -> tuple[pd.DataFrame, pd.DataFrame]:
    ctx = basis.ctx
    session = ctx.session
    table = Activity.__table__
    query = select(
        table.c.activity_id, func.min(table.c.state), func.min(table.c.start_date)
    ).group_by(table.c.activity_id)
    result = session.connection().execute(query)
    records = result.cursor.fetchall() if result.cursor is not None else []
    result.close()
    items = _empty(ITEM_COLUMNS)
    if records:
        ids, states, starts = (list(c) for c in zip(*records, strict=True))
        acts = pd.DataFrame(
            {"activity_id": ids, "state": states, "start": pd.Series(starts, dtype=object)}
        )
        acts["start"] = to_timestamp(acts["start"]).to_numpy()
        relevant = _activities(basis)
        if not relevant.empty:
            prior, strict = ctx.thresholds("VD", "prior_notification")
            notifiable = set(relevant.loc[reaches(relevant, prior, strict), "activity_id"])
            acts = acts[~acts["activity_id"].isin(notifiable)]
        acts = acts[ctx.party(acts["state"], "VD", acts["start"])]
        notified_ids = session.scalars(
            select(Notification.activity_id)
            .where(Notification.kind == "prior_notification", Notification.activity_id.is_not(None))
            .distinct()
        ).all()
        notified = acts["activity_id"].isin(set(notified_ids)).to_numpy()
        items = pd.DataFrame(
            {
                "signal": "transparency",
                "state": acts["state"].to_numpy(),
                "year": acts["start"].dt.year.to_numpy(),
                "item": acts["activity_id"].to_numpy(),
                "subject_type": "activity",
                "subject_id": acts["activity_id"].to_numpy(),
                "what": np.where(
                    notified,
                    "below the thresholds, notified voluntarily",
                    "below the thresholds, not notified",
                ),
                "credit": notified.astype(float),
            }
        )
    found = basis.findings
    found = found[found["severity"] == "positive"]
    found = found.assign(item=found["rule_id"] + "|" + found["subject_id"])
    return _apply("transparency", _items(items), found)


def restraint(basis: Basis) -> tuple[pd.DataFrame, pd.DataFrame]:
    ctx = basis.ctx
    acts = _activities(basis)
    items = _empty(ITEM_COLUMNS)
    if not acts.empty and {"VD-VIII-1", "VD-VIII-5"} <= basis.evaluated:
        simultaneous, s_strict = ctx.thresholds("VD", "constraint.simultaneous")
        per_year, y_strict = ctx.thresholds("VD", "constraint.per_year")
        mask = reaches(acts, simultaneous, s_strict) | reaches(acts, per_year, y_strict)
        chosen = acts[mask.to_numpy()]
        items = pd.DataFrame(
            {
                "signal": "restraint",
                "state": chosen["state"].to_numpy(),
                "year": chosen["year"].to_numpy(),
                "item": chosen["activity_id"].to_numpy(),
                "subject_type": "activity",
                "subject_id": chosen["activity_id"].to_numpy(),
                "what": "activity above the ¶67 thresholds",
                "credit": 1.0,
            }
        )
    found = basis.findings.assign(item=basis.findings["subject_id"])
    return _apply("restraint", _items(items), found)


def reductions(basis: Basis) -> tuple[pd.DataFrame, pd.DataFrame]:
    ctx = basis.ctx
    r = ctx.frame("reductions")
    r = r[r["deadline"].notna()]
    items = _empty(ITEM_COLUMNS)
    if not r.empty:
        rule = np.where(r["kind"] == "treaty", "CFE-R2", "RED-1")
        r = r[pd.Series(rule, index=r.index).isin(list(basis.evaluated)).to_numpy()]
        horizon = ctx.horizon().normalize()
        judged = r["completed_at"].notna() | (r["deadline"] < horizon)
        r = r[judged.to_numpy()]
        early = (r["completed_at"] < r["deadline"]).fillna(False).to_numpy()
        on_time = (r["completed_at"] <= r["deadline"]).fillna(False).to_numpy()
        items = pd.DataFrame(
            {
                "signal": "reductions",
                "state": r["state"].to_numpy(),
                "year": r["deadline"].dt.year.to_numpy(),
                "item": r["reduction_id"].to_numpy(),
                "subject_type": "reduction",
                "subject_id": r["reduction_id"].to_numpy(),
                "what": np.where(
                    early,
                    "completed before its deadline",
                    np.where(on_time, "completed by its deadline", "late or not completed"),
                ),
                "credit": 1.0,
            }
        )
    found = basis.findings
    found = found[found["rule_id"].isin(list(EFFECTS["reductions"]))]
    # An early unilateral reduction (RED-1 positive) is kept: listed here, rewarded under
    # transparency.
    found = found.assign(
        item=found["subject_id"],
        effect=np.where(found["severity"] == "positive", "none", "zero"),
    )
    return _apply("reductions", _items(items), found)


def participation(basis: Basis, years: Sequence[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    ctx = basis.ctx
    part = ctx.frame("participation")
    part = part[part["regime"].isin(REGIMES)]
    if part.empty or not years:
        return _empty(ITEM_COLUMNS), _empty(LINK_COLUMNS)
    today = basis.as_of.normalize()
    spans = pd.DataFrame({"year": list(years)})
    spans["y0"] = pd.to_datetime({"year": spans["year"], "month": 1, "day": 1})
    spans["y1"] = pd.to_datetime({"year": spans["year"], "month": 12, "day": 31}).clip(upper=today)
    pairs = part.merge(spans, how="cross")
    start = pairs[["valid_from", "y0"]].max(axis=1)
    end = pairs["valid_to"].fillna(pd.Timestamp.max.normalize())
    end = pd.concat([end, pairs["y1"]], axis=1).min(axis=1)
    days = ((end - start).dt.days + 1).clip(lower=0)
    pairs = pairs.assign(days=days)
    pairs = pairs[pairs["days"] > 0]
    if pairs.empty:
        return _empty(ITEM_COLUMNS), _empty(LINK_COLUMNS)
    per = pairs.pivot_table(
        index=["state_code", "regime", "year"],
        columns="status",
        values="days",
        aggfunc="sum",
        fill_value=0,
    )
    for status in ("party", "suspended", "withdrawn"):
        if status not in per.columns:
            per[status] = 0
    per = per.reset_index()
    total = per["party"] + per["suspended"] + per["withdrawn"]
    credit = per["party"] / total

    def describe(row: Any) -> str:
        if row.suspended == 0 and row.withdrawn == 0:
            return f"{row.regime}: party all year"
        bits = [f"{int(getattr(row, s))} days {s}" for s in ("party", "suspended", "withdrawn")]
        return f"{row.regime}: " + ", ".join(b for b in bits if not b.startswith("0 "))

    items = pd.DataFrame(
        {
            "signal": "participation",
            "state": per["state_code"].to_numpy(),
            "year": per["year"].to_numpy(),
            "item": per["regime"].to_numpy(),
            "subject_type": "participation",
            "subject_id": per["regime"].to_numpy(),
            "what": [describe(r) for r in per.itertuples()],
            "credit": credit.to_numpy(),
        }
    )
    return _items(items), _empty(LINK_COLUMNS)


# --- scoring ------------------------------------------------------------------------------------


def scored_years(basis: Basis, items: pd.DataFrame) -> list[int]:
    """Years with a judged item of a behavioural signal, between the first dated record and
    the data horizon (see :data:`cbm.trust.method.YEARS_DEFINITION`)."""
    if items.empty or basis.first_year is None:
        return []
    last = min(basis.horizon_year or basis.as_of.year, basis.as_of.year)
    years = items["year"].astype(int).unique()
    return sorted(int(y) for y in years if basis.first_year <= y <= last)


def _details(
    items: pd.DataFrame, links: pd.DataFrame, signal_rules: dict[str, tuple[str, ...]]
) -> dict[tuple[str, str, int], dict[str, Any]]:
    out: dict[tuple[str, str, int], dict[str, Any]] = {}
    keys = ["signal", "state", "year"]
    if not items.empty:
        ordered = items.assign(
            _sid=items["subject_id"].fillna("").astype(str),
        ).sort_values([*keys, "credit", "_sid", "item"])
        ordered = ordered.assign(_n=ordered.groupby(keys).cumcount())
        counts = ordered.groupby(keys).size()
        points = ordered.groupby(keys)["credit"].sum()
        for key, n in counts.items():
            signal = key[0]
            out[(key[0], key[1], int(key[2]))] = {
                "items": int(n),
                "points": round(float(points[key]), 3),
                "rules": list(signal_rules.get(signal, ())),
                "findings": [],
                "findings_more": 0,
                "records": [],
                "records_more": max(0, int(n) - DETAIL_LIMIT),
            }
        head = ordered[ordered["_n"] < DETAIL_LIMIT]
        for row in zip(
            head["signal"],
            head["state"],
            head["year"],
            head["subject_type"],
            head["subject_id"],
            head["what"],
            head["credit"],
            strict=True,
        ):
            entry = out[(row[0], row[1], int(row[2]))]
            entry["records"].append(
                {
                    "subject_type": row[3],
                    "subject_id": row[4] if isinstance(row[4], str) and row[4] else None,
                    "what": row[5],
                    "credit": round(float(row[6]), 3),
                }
            )
    if not links.empty:
        ordered = links.assign(
            _sev=links["severity"].map(SEVERITY_ORDER).fillna(9),
            year=links["year"].astype(int),
        ).sort_values([*keys, "_sev", "finding_id"])
        ordered = ordered.drop_duplicates([*keys, "finding_id"])
        ordered = ordered.assign(_n=ordered.groupby(keys).cumcount())
        counts = ordered.groupby(keys).size()
        for key, n in counts.items():
            entry = out.get((key[0], key[1], int(key[2])))
            if entry is not None:
                entry["findings_more"] = max(0, int(n) - DETAIL_LIMIT)
        head = ordered[ordered["_n"] < DETAIL_LIMIT]
        for row in head.itertuples(index=False):
            entry = out.get((row.signal, row.state, int(row.year)))
            if entry is None:
                continue
            entry["findings"].append(
                {
                    "id": int(row.finding_id),
                    "rule_id": row.rule_id,
                    "severity": row.severity,
                    "status": row.status,
                    "subject_type": row.subject_type,
                    "subject_id": row.subject_id or None,
                    "period": row.period,
                    "counterpart": row.counterpart if isinstance(row.counterpart, str) else None,
                    "effect": row.effect,
                }
            )
    return out


def _round(value: float | None) -> float | None:
    if value is None or pd.isna(value):
        return None
    return round(float(value), 1)


@dataclass
class Computed:
    """The rows to store, and what the run's message says."""

    rows: list[dict[str, Any]]
    years: list[int]
    states: int
    notes: list[str]


def compute_rows(basis: Basis, states: pd.DataFrame) -> Computed:
    """Every score row (States, regions, OSCE) for the years covered."""
    parts = [
        timeliness(basis),
        notification(basis),
        verification(basis),
        transparency(basis),
        restraint(basis),
        reductions(basis),
    ]
    items = (
        pd.concat([p[0] for p in parts if not p[0].empty], ignore_index=True)
        if any(not p[0].empty for p in parts)
        else _empty(ITEM_COLUMNS)
    )
    links = (
        pd.concat([p[1] for p in parts if not p[1].empty], ignore_index=True)
        if any(not p[1].empty for p in parts)
        else _empty(LINK_COLUMNS)
    )
    years = scored_years(basis, items)
    p_items, _ = participation(basis, years)
    if not p_items.empty:
        items = pd.concat([items, p_items], ignore_index=True) if not items.empty else p_items
    known = set(states["code"])
    if not items.empty:
        items = items[items["year"].isin(years) & items["state"].isin(known)]
    if not links.empty:
        links = links[links["year"].astype(int).isin(years) & links["state"].isin(known)]
    signal_rules = {s: SIGNALS_BY_ID[s].rules for s in SIGNAL_IDS}
    details = _details(items, links, signal_rules)

    # State scores (unrounded), one row per State, year and signal.
    codes = sorted(known)
    grid = pd.MultiIndex.from_product(
        [codes, years, list(SIGNAL_IDS)], names=["state", "year", "signal"]
    )
    if not items.empty:
        grouped = items.groupby(["state", "year", "signal"]).agg(
            n=("credit", "size"), points=("credit", "sum")
        )
        grouped["score"] = 100.0 * grouped["points"] / grouped["n"]
        table = grouped.reindex(grid)
    else:
        table = pd.DataFrame(index=grid, columns=["n", "points", "score"], dtype=float)
    table = table.reset_index()
    table["n"] = table["n"].fillna(0).astype(int)

    # The composite index: weighted mean over signals with data.
    weights = table["signal"].map(WEIGHTS).astype(float)
    has = table["score"].notna()
    table = table.assign(
        w=np.where(has, weights, 0.0),
        ws=np.where(has, weights * table["score"].fillna(0.0), 0.0),
    )
    per = table.groupby(["state", "year"]).agg(
        w=("w", "sum"), ws=("ws", "sum"), n=("n", "sum"), with_data=("score", "count")
    )
    index_rows = per.reset_index()
    safe = index_rows["w"].where(index_rows["w"] > 0, 1.0)
    index_rows["score"] = np.where(index_rows["w"] > 0, index_rows["ws"] / safe, np.nan)
    index_rows["signal"] = INDEX
    signal_scores = table.pivot_table(
        index=["state", "year"], columns="signal", values="score", aggfunc="first", dropna=False
    )
    state_rows = pd.concat(
        [
            table[["state", "year", "signal", "n", "score"]],
            index_rows[["state", "year", "signal", "n", "score"]],
        ],
        ignore_index=True,
    )

    rows: list[dict[str, Any]] = []
    score_of: dict[tuple[str, str, str, int], float | None] = {}
    for r in state_rows.itertuples(index=False):
        value = None if pd.isna(r.score) else float(r.score)
        score_of[("state", r.state, r.signal, int(r.year))] = value
        if r.signal == INDEX:
            used = {}
            if (r.state, r.year) in signal_scores.index:
                line = signal_scores.loc[(r.state, r.year)]
                used = {s: _round(line.get(s)) for s in SIGNAL_IDS}
            detail = {
                "signals": used,
                "weights": {s: WEIGHTS[s] for s in SIGNAL_IDS},
                "weights_used": float(sum(WEIGHTS[s] for s, v in used.items() if v is not None)),
                "signals_with_data": sum(1 for v in used.values() if v is not None),
            }
        else:
            detail = details.get((r.signal, r.state, int(r.year))) or {
                "items": 0,
                "points": 0.0,
                "rules": list(signal_rules.get(r.signal, ())),
                "findings": [],
                "findings_more": 0,
                "records": [],
                "records_more": 0,
            }
        rows.append(
            {
                "level": "state",
                "subject": r.state,
                "year": int(r.year),
                "signal": r.signal,
                "score": value,
                "items": int(r.n),
                "worst": None,
                "details": detail,
            }
        )

    # Regions and the OSCE area: mean of members with data, the worst member.
    region_of = dict(zip(states["code"], states["region_code"], strict=True))
    members = state_rows.assign(region=state_rows["state"].map(region_of))
    both = pd.concat(
        [
            members.assign(level="region", subject=members["region"]),
            members.assign(level="osce", subject=OSCE),
        ],
        ignore_index=True,
    )
    keys = ["level", "subject", "year", "signal"]
    both = both.assign(_missing=both["score"].isna()).sort_values(
        [*keys, "_missing", "score", "state"]
    )
    sizes = both.groupby(["level", "subject"])["state"].nunique()
    agg = both.groupby(keys, sort=False).agg(
        score=("score", "mean"), n=("n", "sum"), with_data=("score", "count")
    )
    first = both.drop_duplicates(keys).set_index(keys)
    first = first.reindex(agg.index)
    agg["worst"] = np.where(first["_missing"].to_numpy(), None, first["state"].to_numpy())
    member_scores: dict[tuple[str, str, int, str], dict[str, float | None]] = {}
    for level, subject, year, signal, state, value in zip(
        both["level"],
        both["subject"],
        both["year"],
        both["signal"],
        both["state"],
        both["score"],
        strict=True,
    ):
        member_scores.setdefault((level, subject, int(year), signal), {})[state] = _round(value)
    for key, r in zip(agg.index, agg.itertuples(index=False), strict=True):
        level, subject, year, signal = key[0], key[1], int(key[2]), key[3]
        value = None if pd.isna(r.score) else float(r.score)
        score_of[(level, subject, signal, year)] = value
        rows.append(
            {
                "level": level,
                "subject": subject,
                "year": year,
                "signal": signal,
                "score": value,
                "items": int(r.n),
                "worst": r.worst if isinstance(r.worst, str) else None,
                "details": {
                    "aggregate": "mean of members with data (unweighted)",
                    "members": int(sizes[(level, subject)]),
                    "with_data": int(r.with_data),
                    "scores": dict(sorted(member_scores[(level, subject, year, signal)].items())),
                },
            }
        )

    # Change against the previous year, for every row.
    for row in rows:
        now = row["score"]
        before = score_of.get((row["level"], row["subject"], row["signal"], row["year"] - 1))
        row["change"] = _round(now - before) if now is not None and before is not None else None
        row["score"] = _round(now)
    return Computed(rows, years, len(codes), list(basis.notes))


# --- runs ----------------------------------------------------------------------------------------


def _states(session: Session) -> pd.DataFrame:
    rows = session.execute(select(State.code, State.region_code).order_by(State.code)).all()
    return (
        pd.DataFrame(rows, columns=["code", "region_code"])
        if rows
        else _empty(["code", "region_code"])
    )


def _store(session: Session, run_id: int, rows: list[dict[str, Any]]) -> None:
    table = TrustScore.__table__
    batch = [{"run_id": run_id, **row} for row in rows]
    for start in range(0, len(batch), 5000):
        session.execute(table.insert(), batch[start : start + 5000])


def prune(session: Session, keep: int = KEEP_RUNS) -> int:
    """Delete the scores of all but the newest ``keep`` successful runs (and of any run that
    did not succeed); the run rows stay. Returns how many runs lost their scores."""
    succeeded = session.scalars(
        select(TrustRun.id).where(TrustRun.status == "succeeded").order_by(TrustRun.id.desc())
    ).all()
    kept = set(succeeded[:keep])
    with_scores = session.scalars(select(TrustScore.run_id).distinct()).all()
    old = sorted(r for r in with_scores if r not in kept)
    for start in range(0, len(old), 500):
        session.execute(delete(TrustScore).where(TrustScore.run_id.in_(old[start : start + 500])))
    return len(old)


def compute_trust(
    session: Session, *, check_run_id: int | None = None, trigger: str = "cli"
) -> TrustRun:
    """Compute every trust signal and store it under a new run (commits nothing itself).

    The scores are written inside a savepoint: if anything fails, they are rolled back, the
    run is marked ``failed`` with the error as its message, and the exception is re-raised;
    the previous runs stay as they were. On success, scores of all but the newest
    :data:`~cbm.trust.method.KEEP_RUNS` successful runs are deleted.
    """
    started = time.perf_counter()
    run = TrustRun(
        method_version=METHOD_VERSION,
        status="running",
        started_at=utcnow(),
        check_run_id=check_run_id,
        trigger=trigger[:20],
    )
    session.add(run)
    session.flush()
    try:
        with session.begin_nested():
            basis = read_basis(session, check_run_id)
            run.check_run_id = basis.check_run_id
            computed = compute_rows(basis, _states(session))
            _store(session, run.id, computed.rows)
    except Exception as exc:
        run.status = "failed"
        run.finished_at = utcnow()
        run.seconds = round(time.perf_counter() - started, 3)
        run.message = f"{type(exc).__name__}: {exc}"[:2000]
        session.flush()
        raise
    span = f"{computed.years[0]}–{computed.years[-1]}" if computed.years else "no years covered"
    message = f"{computed.states} States, {span}, {len(computed.rows)} scores"
    if computed.notes:
        message += "; " + "; ".join(computed.notes)
    run.status = "succeeded"
    run.finished_at = utcnow()
    run.seconds = round(time.perf_counter() - started, 3)
    run.message = message
    session.flush()
    prune(session)
    return run


def record_failed_run(
    session: Session, *, check_run_id: int | None, trigger: str, message: str
) -> int:
    """A failed computation still leaves a run row (after the caller rolled back)."""
    now = utcnow()
    run = TrustRun(
        method_version=METHOD_VERSION,
        status="failed",
        started_at=now,
        finished_at=now,
        check_run_id=check_run_id,
        trigger=trigger[:20],
        message=message[:2000],
    )
    session.add(run)
    session.flush()
    return run.id


@dataclass(frozen=True)
class TrustOutcome:
    """What :func:`recompute` did (plain values: usable after the session closed)."""

    run_id: int
    status: str
    seconds: float
    message: str
    check_run_id: int | None

    def line(self) -> str:
        return (
            f"trust run {self.run_id} (method v{METHOD_VERSION}): {self.message}, "
            f"in {self.seconds:.1f} s"
        )


def recompute(
    session_factory: sessionmaker[Session],
    *,
    check_run_id: int | None = None,
    trigger: str = "cli",
) -> TrustOutcome:
    """Compute and commit in a transaction of its own; on any error record a failed run (in
    another transaction) and re-raise."""
    try:
        with session_scope(session_factory) as session:
            run = compute_trust(session, check_run_id=check_run_id, trigger=trigger)
            outcome = TrustOutcome(
                run.id, run.status, float(run.seconds or 0.0), run.message or "", run.check_run_id
            )
        return outcome
    except Exception as exc:
        with session_scope(session_factory) as session:
            record_failed_run(
                session,
                check_run_id=check_run_id,
                trigger=trigger,
                message=f"{type(exc).__name__}: {exc}",
            )
        raise
