"""Trust method v1: what each signal measures, how it is scored, weighted and aggregated.

This module is the *published* method. Everything a figure depends on that is a choice
rather than code (the signals, their credits and penalties, the index weights, the
aggregation, the limitations) is declared here as data; :mod:`cbm.trust.compute` reads it,
and the Method page renders :func:`method_description` (or :func:`method_markdown`).

Bump :data:`METHOD_VERSION` on any change of a definition, a credit or a weight: every
stored run records the version that made it, so a figure can always be traced to its method.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: The version stored on every trust run (``trust_runs.method_version``).
METHOD_VERSION = "1"

#: The composite index's signal id in ``trust_scores.signal``.
INDEX = "index"
#: Levels of ``trust_scores.level``.
LEVELS = ("state", "region", "osce")
#: The subject of the OSCE-wide rows.
OSCE = "OSCE"

#: How many successful runs keep their scores (older runs keep their ``trust_runs`` row,
#: for the record, but their scores are deleted to bound the table).
KEEP_RUNS = 5
#: At most this many findings and this many records are listed in a score's ``details``;
#: ``findings_more`` / ``records_more`` count the rest.
DETAIL_LIMIT = 50

#: Finding statuses that count. *Resolved* findings no longer hold; *disputed* ones are
#: contested by an analyst and do not move a score until the dispute is settled.
COUNTED_STATUSES = ("open", "acknowledged")


@dataclass(frozen=True)
class Signal:
    """One trust signal, as the Method page shows it."""

    id: str
    title: str
    question: str  # one line: what the signal answers
    whose: str  # whose conduct an item judges
    year: str  # which year an item belongs to
    items: str  # what counts as an item, good and bad
    scoring: str  # how the 0-100 score is computed
    no_data: str  # when the signal is "no data"
    rules: tuple[str, ...]  # the compliance rules whose findings move it
    records: tuple[str, ...]  # the record kinds (contract files) it reads

    @property
    def definition(self) -> str:
        """The one-paragraph definition: items, scoring and "no data" together."""
        return f"{self.items} {self.scoring} {self.no_data}"


#: The credit an item keeps when a finding (or, for ``restrictions``, a record) shows a
#: shortfall that is not a refusal: a late reply, a restricted flight, a declaration just
#: under a threshold. A refusal or a breach takes the whole credit (0).
PENALTIES: dict[str, float] = {
    "VD-IX-I4": 0.5,  # inspection request answered after 24 hours
    "OS-T2": 0.5,  # flight notification acknowledged after 24 hours
    "restrictions": 0.5,  # a flight with restrictions imposed by the observed State
    "VD-NEAR": 0.5,  # declared figures within 10 % below a threshold
}

SIGNALS: tuple[Signal, ...] = (
    Signal(
        id="timeliness",
        title="Timeliness of obligatory submissions",
        question="Did the State send its annual submissions on time?",
        whose="the State that owes the submission",
        year=(
            "the year of the deadline (the annual exchange for 2026 is due on 15 December "
            "2025 and counts in 2025), so a year judges what the State had to do in it"
        ),
        items=(
            "One item per annual submission a State owes: the Vienna Document annual exchange "
            "of military information (VD-I-3, by 15 December) and annual calendar (VD-VII-1, by "
            "15 November), the CFE annual information exchange (CFE-X1, by 15 December) and the "
            "GEMI submission (GEMI-3, by 30 April). A submission is owed by every State party "
            "to the regime on the deadline (from the regime participation reference data), and "
            "only for the periods the latest compliance check evaluated (a period whose "
            "deadline has not passed, or for which fewer than half of the States' submissions "
            "are in the data, is not judged). It is good when the first submission for the "
            "period (a nil report counts) arrived by the deadline; it is bad when a VD-I-3, "
            "VD-VII-1, CFE-X1 or GEMI-3 finding reports it late or missing."
        ),
        scoring=(
            "Score = 100 × submissions on time ÷ submissions owed (a late submission earns "
            "nothing: 3 owed with 1 late gives 66.7)."
        ),
        no_data="No data when the State owed nothing in an evaluated period of that year.",
        rules=("VD-I-3", "VD-VII-1", "CFE-X1", "GEMI-3"),
        records=("notifications", "regime participation"),
    ),
    Signal(
        id="notification",
        title="Notification compliance",
        question="Were the State's notifiable activities notified, calendared and observed?",
        whose="the State conducting the activity",
        year="the year the activity starts",
        items=(
            "One item per obligation a military activity triggers, judged on the largest "
            "figure any source reports (notification, calendar, open sources, inspections): "
            "prior notification 42 days ahead at or above a Chapter V threshold (VD-V-3), "
            "inclusion in the annual calendar (VD-VII-3, not for alert activities), an "
            "observation invitation at or above the observation thresholds (VD-VI-1), and the "
            "announcement by 15 November of year −2 above 40,000 troops or 900 tanks "
            "(VD-VIII-4). An obligation is met unless a finding of its rule names the "
            "activity (late, missing or not invited)."
        ),
        scoring="Score = 100 × obligations met ÷ obligations triggered.",
        no_data=(
            "No data when the State conducted no activity at or above a Chapter V threshold "
            "that year (small exercises are judged under transparency instead)."
        ),
        rules=("VD-V-3", "VD-VII-3", "VD-VI-1", "VD-VIII-4"),
        records=("activities", "notifications"),
    ),
    Signal(
        id="verification",
        title="Verification openness",
        question="Did the State accept inspections, evaluation visits and flights it received?",
        whose="the receiving State (inspected, evaluated or overflown)",
        year="the year of the request (inspections, evaluation visits) or of the ETA (flights)",
        items=(
            "One item per Vienna Document inspection or evaluation visit requested of the "
            "State and per Open Skies observation flight over it. An accepted request or a "
            "completed (or curtailed) flight is good (credit 1). A refusal while the State was "
            "within its quota (VD-IX-I2, VD-IX-E2) or a prohibition without a treaty ground "
            "(OS-PROHIBIT) earns 0. A late reply to an inspection request (VD-IX-I4), a late "
            "flight acknowledgement (OS-T2) and restrictions imposed on a flight (the "
            "flight's `restrictions`) each take half a credit away. Refusals beyond the quota, "
            "force majeure and flights prohibited on a treaty ground, declined or cancelled "
            "are the State's right and are not judged."
        ),
        scoring="Score = 100 × credits ÷ requests and flights judged.",
        no_data="No data when the State received no request or flight that could be judged.",
        rules=("VD-IX-I2", "VD-IX-E2", "VD-IX-I4", "OS-PROHIBIT", "OS-T2"),
        records=("inspections", "observation flights"),
    ),
    Signal(
        id="transparency",
        title="Transparency beyond obligation",
        question="Did the State do more than it had to?",
        whose="the State that went beyond (or could have)",
        year=("the year the activity starts, of the flight's ETA, or of the reduction's deadline"),
        items=(
            "Opportunities to go beyond the obligation. Each activity below every Chapter V "
            "threshold (on the largest figure of any source) is an item, good when the State "
            "notified it all the same (a prior notification linked to it) and not good "
            "otherwise. Each observation flight accepted beyond the passive quota "
            "(OS-OVERQUOTA, positive) and each unilateral reduction or withdrawal completed "
            "ahead of its announced deadline (RED-1, positive) is a further good item."
        ),
        scoring="Score = 100 × good items ÷ items.",
        no_data=(
            "No data when the State had no sub-threshold activity on record and no positive "
            "finding that year."
        ),
        rules=("OS-OVERQUOTA", "RED-1"),
        records=("activities", "notifications"),
    ),
    Signal(
        id="restraint",
        title="Restraint",
        question="Did the State keep its large activities within the constraining provisions?",
        whose="the State conducting the activity",
        year="the year the activity starts",
        items=(
            "One item per activity above the lowest constraining thresholds of VD 2011 ¶67 "
            "(13,000 troops, 300 battle tanks, 500 ACV or 300 artillery) and per activity "
            "whose declared figures lie within 10 % below a threshold (VD-NEAR). An activity "
            "within the limits is good (credit 1); one that breaks the simultaneity or "
            "frequency limits (VD-VIII-1, VD-VIII-5) earns 0; a near-threshold declaration "
            "takes half a credit away (a signal, not a breach)."
        ),
        scoring="Score = 100 × credits ÷ activities judged.",
        no_data="No data when the State conducted no such activity that year.",
        rules=("VD-VIII-1", "VD-VIII-5", "VD-NEAR"),
        records=("activities",),
    ),
    Signal(
        id="reductions",
        title="Reductions and withdrawals",
        question="Did the State complete its reductions and withdrawals by their deadline?",
        whose="the State that committed to the reduction",
        year="the year of the deadline",
        items=(
            "One item per CFE treaty reduction and per announced unilateral reduction or "
            "withdrawal whose outcome is known: completed, or its deadline passed before the "
            "data horizon (the latest message on record). Completed by the deadline (early "
            "included) is good; late or never completed (CFE-R2, RED-1 warning) is bad."
        ),
        scoring="Score = 100 × reductions kept ÷ reductions judged.",
        no_data="No data when no reduction of the State fell due (or was completed) that year.",
        rules=("CFE-R2", "RED-1"),
        records=("reductions",),
    ),
    Signal(
        id="participation",
        title="Regime participation",
        question="Is the State a party to the regimes it joined, or suspended or withdrawn?",
        whose="the State",
        year="each calendar year (up to today for the current year)",
        items=(
            "One item per regime (Vienna Document, Open Skies, CFE, GEMI) in which the State "
            "has a participation record covering some of the year (regime participation "
            "reference data). Its credit is the share of those days on which the State was a "
            "party: suspended or withdrawn days earn nothing. A regime the State never took "
            "part in is not counted (it may never have been open to it)."
        ),
        scoring="Score = 100 × mean credit over the regimes counted.",
        no_data="No data when the State has no participation record for the year.",
        rules=(),
        records=("regime participation",),
    ),
)

SIGNAL_IDS: tuple[str, ...] = tuple(s.id for s in SIGNALS)
SIGNALS_BY_ID: dict[str, Signal] = {s.id: s for s in SIGNALS}

#: The published weights of the composite index (they sum to 100; only their ratios matter).
WEIGHTS: dict[str, float] = {
    "timeliness": 20,
    "notification": 20,
    "verification": 20,
    "restraint": 15,
    "reductions": 10,
    "participation": 10,
    "transparency": 5,
}

INDEX_DEFINITION = (
    "The composite index of a State and year is the weighted mean of its signals that have "
    "data, with the published weights; the weights of signals without data are left out "
    "(the others are rescaled), so a missing signal never counts as 0 or 100. No data when "
    "no signal has data."
)

YEARS_DEFINITION = (
    "Years scored: the years the data cover, i.e. every year that has at least one judged "
    "item of a signal other than participation, from the first year with a dated record (an "
    "activity, a notification sent, an inspection or evaluation visit requested, an "
    "observation flight) to the data horizon (the year of the latest message on record, "
    "never after today). Items of other years (e.g. reductions due in the 1990s, or due "
    "after the horizon) are not scored."
)

AGGREGATION = (
    "Regions (the ten regions of the reference data) and the OSCE area are scored per "
    "signal, index included, as the unweighted mean of their member States that have data "
    "for that signal and year: each State counts once, whatever its size or number of "
    "records. The region's index is therefore the mean of its members' indexes. `worst` "
    "names the member with the lowest score (ties: the first code alphabetically); the OSCE "
    "row's members are all participating States. `change` is the score minus the same "
    "row's score of the previous year (no change when either is no data), for States, "
    "regions and the OSCE area alike. A region with no member with data is no data."
)

STORAGE = (
    "Each computation is a trust run (after every successful compliance check, nightly by "
    "the trust:recompute job, or by `cbm trust`) that records the method version and the "
    "check run whose findings it read; pages read the latest successful run. A failed run "
    "is recorded as failed and leaves the previous runs untouched. The scores of the "
    f"newest {KEEP_RUNS} successful runs are kept; older runs keep only their run row. "
    f"Each score lists at most {DETAIL_LIMIT} findings and {DETAIL_LIMIT} records, with a "
    "count of the rest. Scores are stored rounded to one decimal."
)

LIMITATIONS: tuple[str, ...] = (
    "The weights, credits and penalties are the project's own design choices, not "
    "prescribed by any treaty text (csbm-rules.md §10); they are published here so that "
    "they can be discussed and changed (with a new method version).",
    "Signals judge what the data hold: an activity, request or submission missing from the "
    "data is neither good nor bad, and a State with few records has few items, so its "
    "scores move more from year to year. The item counts are shown beside every score.",
    "Findings are taken as the latest compliance check left them: acknowledged findings "
    "count, disputed and resolved ones do not. A rule that has never been evaluated by a "
    "successful check does not judge anything (its items are no data), so a fresh install "
    "shows no data rather than a perfect score.",
    "Participation does not weigh why a State suspended or withdrew (e.g. the 2023–24 "
    "suspensions of the CFE Treaty that followed Russia's withdrawal count like any other "
    "suspension), nor bilateral suspensions, which the reference data cannot represent.",
    "Transparency rewards voluntary notifications only where the sub-threshold activity is "
    "on record (often from open sources); a State whose small exercises are not recorded "
    "anywhere has no data rather than a low score.",
    "Verification counts received requests and flights equally, whoever asked; quota "
    "behaviour (how early a quota is exhausted, concentration of requests) and Chapter III "
    "risk-reduction replies are not scored in v1.",
    "Regional and OSCE aggregates are unweighted means of States: a small State counts as "
    "much as a large one, and a region whose members lack data on a signal is scored on the "
    "members that have it.",
)


def method_description() -> dict[str, Any]:
    """The whole method as plain data (for the Method page and the JSON API)."""
    total = sum(WEIGHTS.values())
    return {
        "version": METHOD_VERSION,
        "signals": [
            {
                **asdict(s),
                "definition": s.definition,
                "weight": WEIGHTS[s.id],
                "weight_share": round(WEIGHTS[s.id] / total, 4),
            }
            for s in SIGNALS
        ],
        "index": {"id": INDEX, "definition": INDEX_DEFINITION, "weights": dict(WEIGHTS)},
        "penalties": dict(PENALTIES),
        "counted_statuses": list(COUNTED_STATUSES),
        "years": YEARS_DEFINITION,
        "aggregation": AGGREGATION,
        "storage": STORAGE,
        "limitations": list(LIMITATIONS),
        "keep_runs": KEEP_RUNS,
        "detail_limit": DETAIL_LIMIT,
    }


def method_markdown() -> str:
    """The method as Markdown (one section per signal, the weights as a table)."""
    total = sum(WEIGHTS.values())
    out = [
        f"# Trust method v{METHOD_VERSION}",
        "",
        "Every signal is computed per participating State and year as a score from 0 to 100, "
        "or **no data** when there is nothing to judge (never 0 or 100 by default). Each "
        "score lists the findings and records that made it.",
        "",
        "## Signals",
        "",
    ]
    for s in SIGNALS:
        out += [
            f"### {s.title} (`{s.id}`)",
            "",
            f"*{s.question}*",
            "",
            s.definition,
            "",
            f"- Whose conduct: {s.whose}.",
            f"- Year: {s.year}.",
            f"- Rules: {', '.join(f'`{r}`' for r in s.rules) if s.rules else 'none'}.",
            f"- Records: {', '.join(s.records)}.",
            f"- Index weight: {WEIGHTS[s.id]:g} of {total:g}.",
            "",
        ]
    out += [
        "## Composite index",
        "",
        INDEX_DEFINITION,
        "",
        "| signal | weight | share |",
        "|---|---|---|",
        *(
            f"| {SIGNALS_BY_ID[k].title} (`{k}`) | {w:g} | {w / total:.0%} |"
            for k, w in WEIGHTS.items()
        ),
        "",
        "Partial credits (an item keeps this much when a finding or record of this kind "
        "concerns it):",
        "",
        *(f"- `{k}`: {v:g}" for k, v in PENALTIES.items()),
        "",
        "## Years",
        "",
        YEARS_DEFINITION,
        "",
        "## Regions and the OSCE area",
        "",
        AGGREGATION,
        "",
        "## Storage and recomputation",
        "",
        STORAGE,
        "",
        "## Known limitations",
        "",
        *(f"- {item}" for item in LIMITATIONS),
        "",
    ]
    return "\n".join(out)


def _check_consistency() -> None:
    assert set(WEIGHTS) == set(SIGNAL_IDS), "every signal has exactly one weight"
    assert all(w > 0 for w in WEIGHTS.values())
    assert len(SIGNAL_IDS) == len(set(SIGNAL_IDS))


_check_consistency()
