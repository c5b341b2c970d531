"""The rule registry: every rule with its id, regime, citation, source status and severity.

Rule ids are fixed (``VD-V-3``, ``OS-T1`` ...) so that findings compare across instances.
Numbers a rule uses are *parameters* read from the reference data (``rule_parameters``),
never literals in the rule code; ``params`` names them for the catalogue page.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cbm.compliance.context import CheckContext

SEVERITIES = ("breach", "late", "warning", "info", "positive")
STATUSES = ("open", "acknowledged", "disputed", "resolved")
SOURCE_STATUSES = ("verified", "commonly_cited")
SUBJECT_TYPES = (
    "notification",
    "activity",
    "inspection",
    "observation_flight",
    "holding",
    "reduction",
)
#: The edition of each regime whose parameters the rules read.
EDITIONS = {"VD": "VD2011", "OST": "OST1992", "CFE": "CFE1990", "GEMI": "GEMI1994"}
REGIME_NAMES = {
    "VD": "Vienna Document 2011",
    "OST": "Treaty on Open Skies",
    "CFE": "CFE Treaty",
    "GEMI": "Global Exchange of Military Information",
    "RED": "Unilateral reductions and withdrawals",
}


@dataclass(frozen=True)
class Candidate:
    """What a rule found about one subject; the engine turns it into a stored finding.

    ``state`` is the State that owed the obligation. ``subject_id`` is the subject's natural
    key (empty for a missing annual submission). ``due_at`` is the deadline or the event the
    obligation hangs on (aware UTC): the ``--from``/``--to`` window selects on it.
    """

    state: str
    subject_type: str
    subject_id: str
    period: str
    severity: str
    due_at: dt.datetime | None
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    counterpart: str | None = None
    # Identity beyond rule + subject, for rules whose subject may be missing (annual).
    key: str | None = None


RuleFunction = Callable[["CheckContext"], Iterable[Candidate]]


@dataclass(frozen=True)
class Rule:
    id: str
    regime: str  # VD | OST | CFE | GEMI | RED (RED: no participation filter)
    title: str
    citation: str  # document and paragraph, shown beside every finding
    source_status: str  # verified | commonly_cited
    severity: str  # the default (most usual) severity
    subject_type: str
    requirement: str  # one sentence: what the rule requires
    params: tuple[str, ...]  # parameter keys of ``regime``'s edition
    check: RuleFunction
    absence: bool = False  # evaluates missing submissions: only for periods the data covers
    signal: bool = False  # an analytic signal, not a breach

    @property
    def param_regime(self) -> str:
        return "CFE" if self.regime == "RED" else self.regime


RULES: dict[str, Rule] = {}


def rule(
    id: str,
    *,
    regime: str,
    title: str,
    citation: str,
    source_status: str,
    severity: str,
    subject_type: str,
    requirement: str,
    params: tuple[str, ...] = (),
    absence: bool = False,
    signal: bool = False,
) -> Callable[[RuleFunction], RuleFunction]:
    """Register a rule function under its fixed id."""
    assert severity in SEVERITIES and source_status in SOURCE_STATUSES, id
    assert subject_type in SUBJECT_TYPES, id

    def register(fn: RuleFunction) -> RuleFunction:
        if id in RULES:
            raise ValueError(f"rule {id} registered twice")
        RULES[id] = Rule(
            id,
            regime,
            title,
            citation,
            source_status,
            severity,
            subject_type,
            requirement,
            params,
            fn,
            absence,
            signal,
        )
        return fn

    return register


def all_rules() -> dict[str, Rule]:
    """Every registered rule (importing the rule modules registers them), in catalogue order."""
    from cbm.compliance import rules  # noqa: F401  (registers)

    return RULES


def select_rules(
    regimes: Iterable[str] | None = None, ids: Iterable[str] | None = None
) -> list[Rule]:
    chosen = list(all_rules().values())
    if regimes:
        wanted = {r.upper() for r in regimes}
        chosen = [r for r in chosen if r.regime in wanted]
    if ids:
        wanted_ids = set(ids)
        chosen = [r for r in chosen if r.id in wanted_ids]
    return chosen
