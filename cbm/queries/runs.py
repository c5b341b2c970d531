"""The import runs list's filters, shared by the page (``/runs/``), its CSV export and
``cbm export runs``: one place reads and checks ``status``, ``source`` and ``kind``.

Nothing here imports Flask.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, or_

from cbm import contract
from cbm.models import ImportRun

#: The query-string names of the filters, in the order they are shown and stamped.
FILTER_ARGS = ("status", "source", "kind")
MAX_VALUE_LENGTH = 200


@dataclass
class RunFilters:
    """The filters that could be read (``values``: as typed, to show back) and what was
    wrong with the others (``errors``: argument name → message)."""

    status: str | None = None
    source: str | None = None
    kind: str | None = None
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def active(self) -> dict[str, str]:
        """The filters in force, by argument name (for URLs, stamps and manifests)."""
        chosen = {"status": self.status, "source": self.source, "kind": self.kind}
        return {k: v for k, v in chosen.items() if v}


def parse_run_filters(args: Mapping[str, str]) -> RunFilters:
    """Read ``status``, ``source`` and ``kind`` from query-string values; every problem is
    a message, never an exception. ``source`` is any text (an exact source name)."""
    from cbm.services.imports import STATUSES

    values = {k: (args.get(k) or "").strip()[:MAX_VALUE_LENGTH] for k in FILTER_ARGS}
    out = RunFilters(values=values)
    if values["status"]:
        if values["status"] in STATUSES:
            out.status = values["status"]
        else:
            out.errors["status"] = (
                f"'{values['status']}' is not a status; choose one of {', '.join(STATUSES)}"
            )
    if values["source"]:
        out.source = values["source"]
    if values["kind"]:
        if values["kind"] in contract.FILES:
            out.kind = values["kind"]
        else:
            out.errors["kind"] = f"'{values['kind']}' is not a kind of record"
    return out


def run_conditions(filters: RunFilters) -> list[ColumnElement[bool]]:
    """The WHERE conditions of the filters in force (shared by the page and the export)."""
    conds: list[ColumnElement[bool]] = []
    if filters.status:
        conds.append(ImportRun.status == filters.status)
    if filters.source:
        conds.append(ImportRun.source_name == filters.source)
    if filters.kind:
        # A run of several kinds lists them with commas.
        kind = filters.kind
        conds.append(
            or_(
                ImportRun.kind == kind,
                ImportRun.kind.like(f"{kind},%"),
                ImportRun.kind.like(f"%,{kind}"),
                ImportRun.kind.like(f"%,{kind},%"),
            )
        )
    return conds
