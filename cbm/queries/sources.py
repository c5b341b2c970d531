"""The sources list's filters, shared by ``/admin/sources``, its export and
``cbm export sources``: one place reads and checks ``status``, ``importer``, ``kind`` and
``q``. Nothing here imports Flask.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, func, or_

from cbm import contract
from cbm.models import Source

#: The query-string names of the filters, in the order they are shown and stamped.
FILTER_ARGS = ("status", "importer", "kind", "q")
STATUSES = ("enabled", "disabled")
MAX_VALUE_LENGTH = 200


@dataclass
class SourceFilters:
    """The filters that could be read and, per argument, what was wrong with the others."""

    status: str | None = None
    importer: str | None = None
    kind: str | None = None
    q: str | None = None
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def active(self) -> dict[str, str]:
        """The filters in force, by argument name (for URLs, stamps and manifests)."""
        chosen = {"status": self.status, "importer": self.importer, "kind": self.kind, "q": self.q}
        return {k: v for k, v in chosen.items() if v}


def parse_source_filters(args: Mapping[str, str]) -> SourceFilters:
    """Read the filters from query-string values; a problem is a message, not an exception.
    ``q`` is text in the name (case-insensitive)."""
    from cbm.services.sources import IMPORTERS

    values = {k: " ".join(str(args.get(k) or "").split())[:MAX_VALUE_LENGTH] for k in FILTER_ARGS}
    out = SourceFilters(values=values)
    if values["status"]:
        if values["status"] in STATUSES:
            out.status = values["status"]
        else:
            out.errors["status"] = (
                f"'{values['status']}' is not a status; choose enabled or disabled"
            )
    if values["importer"]:
        if values["importer"] in IMPORTERS:
            out.importer = values["importer"]
        else:
            out.errors["importer"] = (
                f"'{values['importer']}' is not an importer; choose one of {', '.join(IMPORTERS)}"
            )
    if values["kind"]:
        if values["kind"] in contract.FILES:
            out.kind = values["kind"]
        else:
            out.errors["kind"] = f"'{values['kind']}' is not a kind of record"
    if values["q"]:
        out.q = values["q"]
    return out


def source_conditions(filters: SourceFilters) -> list[ColumnElement[bool]]:
    """The WHERE conditions of the filters in force (shared by the page and the export)."""
    conds: list[ColumnElement[bool]] = []
    if filters.status:
        conds.append(Source.enabled.is_(filters.status == "enabled"))
    if filters.importer:
        conds.append(Source.importer == filters.importer)
    if filters.kind:
        conds.append(Source.kind == filters.kind)
    if filters.q:
        needle = filters.q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conds.append(or_(func.lower(Source.name).like(f"%{needle}%", escape="\\")))
    return conds
