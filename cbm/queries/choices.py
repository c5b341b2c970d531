"""Filters that pick one value from a fixed list (``role=analyst``, ``regime=VD``), for the
list pages that have no other filter: users, rules and check runs. The page and its
export read them through :func:`parse_choices`, so they filter alike. No Flask here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cbm import vocab

#: Per list: each filter's name and the values it takes.
USER_FILTERS: dict[str, tuple[str, ...]] = {
    "role": vocab.ROLES,
    "status": ("active", "disabled"),
}
CHECK_FILTERS: dict[str, tuple[str, ...]] = {
    "status": ("running", "succeeded", "failed"),
}


def rule_filters() -> dict[str, tuple[str, ...]]:
    """``regime``: the regimes that have rules."""
    from cbm.compliance.registry import REGIME_NAMES

    return {"regime": tuple(REGIME_NAMES)}


@dataclass
class Choices:
    """The values chosen (``active``, by filter name) and the refused ones (``errors``)."""

    active: dict[str, str] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def parse_choices(args: Mapping[str, str], allowed: Mapping[str, Sequence[str]]) -> Choices:
    """Read each filter of ``allowed`` from query-string values (case-insensitive; empty
    means any); an unknown value is an error naming the choices."""
    out = Choices()
    for name, choices in allowed.items():
        raw = " ".join(str(args.get(name) or "").split())[:100]
        out.values[name] = raw
        if not raw:
            continue
        match = next((c for c in choices if c.lower() == raw.lower()), None)
        if match is None:
            out.errors[name] = f"'{raw[:40]}' is not a {name}; choose one of {', '.join(choices)}"
        else:
            out.active[name] = match
    return out
