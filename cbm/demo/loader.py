"""Load the demo data set through the write services (``cbm demo load``).

:func:`load_demo` reads the reference data from the database, generates the demo rows and
writes them file by file in :data:`cbm.contract.LOAD_ORDER` through
:func:`cbm.services.upsert_records`, so the demo is validated and audited like any import.
It flushes but never commits: the caller owns the transaction. Loading twice changes
nothing (every row of the second load is unchanged).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from cbm import contract
from cbm.demo.generator import OSHolder, Participation, Reference, generate
from cbm.demo.planted import PLANTED
from cbm.models import OSAirfield, OSQuotaHolder, RegimeParticipation, State
from cbm.services import SYSTEM, Actor, UpsertResult, state_resolver, upsert_records

Progress = Callable[[str], None]


class DemoError(RuntimeError):
    """The demo data could not be loaded (missing reference data, or rows were rejected)."""


@dataclass
class DemoSummary:
    """What one demo load did: the upsert result per contract file, and how long it took."""

    seed: int
    results: dict[str, UpsertResult] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def read(self) -> int:
        return sum(r.read for r in self.results.values())

    @property
    def inserted(self) -> int:
        return sum(r.inserted for r in self.results.values())

    @property
    def updated(self) -> int:
        return sum(r.updated for r in self.results.values())

    @property
    def unchanged(self) -> int:
        return sum(r.unchanged for r in self.results.values())

    @property
    def planted(self) -> int:
        return sum(1 for c in PLANTED if c.is_finding)

    def lines(self) -> list[str]:
        out = [
            f"{name}: {r.read} rows, {r.inserted} inserted, {r.updated} updated, "
            f"{r.unchanged} unchanged"
            for name, r in self.results.items()
        ]
        out.append(
            f"total: {self.read} rows, {self.inserted} inserted, {self.updated} updated, "
            f"{self.unchanged} unchanged (seed {self.seed}, {self.planted} planted "
            "compliance cases, see docs/demo-planted-cases.md)"
        )
        return out


def reference_from_session(session: Session) -> Reference:
    """The reference data the generator needs, as stored in the database."""
    states = {
        code: (name, region)
        for code, name, region in session.execute(
            select(State.code, State.name, State.region_code).order_by(State.code)
        )
    }
    participation = tuple(
        Participation(p.state_code, p.regime, p.status, p.valid_from, p.valid_to, p.group or "")
        for p in session.scalars(
            select(RegimeParticipation).order_by(
                RegimeParticipation.state_code,
                RegimeParticipation.regime,
                RegimeParticipation.valid_from,
            )
        )
    )
    holders = tuple(
        OSHolder(h.holder, tuple(h.members.split()), h.passive_quota)
        for h in session.scalars(select(OSQuotaHolder).order_by(OSQuotaHolder.holder))
    )
    airfields = tuple(
        (a.holder, a.airfield, a.max_distance_km)
        for a in session.scalars(select(OSAirfield).order_by(OSAirfield.holder, OSAirfield.id))
    )
    return Reference(states, participation, holders, airfields)


def load_demo(
    session: Session,
    *,
    seed: int = 2012,
    progress: Progress | None = None,
    actor: Actor = SYSTEM,
) -> DemoSummary:
    """Generate the demo data set and write it through the services; flush, don't commit.

    Raises :class:`DemoError` when the reference data are missing or any row is refused (the
    demo must be entirely valid); the caller then rolls back.
    """
    started = time.monotonic()
    say = progress or (lambda _message: None)
    reference = reference_from_session(session)
    if not reference.states or not reference.participation:
        raise DemoError("the reference data are not loaded; run `cbm reference load` first")
    try:
        data = generate(reference, seed=seed)
    except ValueError as exc:
        raise DemoError(f"the demo data could not be generated: {exc}") from exc
    say(f"generated {data.total} rows for 2012-2025 (seed {seed})")
    states = state_resolver(session)
    summary = DemoSummary(seed=seed)
    for name in contract.LOAD_ORDER:
        rows = data.rows(name)
        result = upsert_records(
            session, name, rows, actor=actor, all_or_nothing=True, states=states
        )
        summary.results[name] = result
        if result.errors:
            shown = "; ".join(str(e) for e in result.errors[:5])
            more = f" (and {len(result.errors) - 5} more)" if len(result.errors) > 5 else ""
            raise DemoError(f"{name}: {len(result.errors)} rows refused: {shown}{more}")
        say(
            f"{name}: {result.read} rows ({result.inserted} inserted, {result.updated} "
            f"updated, {result.unchanged} unchanged)"
        )
    session.flush()
    summary.seconds = time.monotonic() - started
    return summary
