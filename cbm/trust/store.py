"""Reading the stored trust signals: what the dashboards, the Method page and the CLI ask.

Every function reads the **latest successful run** (or the run given) and answers with one
indexed query on ``trust_scores`` (``ix_trust_scores_lookup``: run, level, year, signal), so
pages never recompute anything and their cost does not grow with the number of facts: a
run holds about (57 States + 10 regions + 1) × years × 8 rows whatever the data volume.
``score`` is ``None`` for "no data"; render it as such, never as 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, defer

from cbm.models import Region, TrustRun, TrustScore
from cbm.trust.method import INDEX, OSCE


def latest_run(session: Session) -> TrustRun | None:
    """The newest successful trust run, or ``None`` before the first one."""
    return session.scalars(
        select(TrustRun).where(TrustRun.status == "succeeded").order_by(TrustRun.id.desc()).limit(1)
    ).first()


def latest_run_id(session: Session) -> int | None:
    return session.scalar(select(func.max(TrustRun.id)).where(TrustRun.status == "succeeded"))


def _run(session: Session, run_id: int | None) -> int | None:
    return run_id if run_id is not None else latest_run_id(session)


def scores(
    session: Session,
    *,
    level: str,
    year: int | None = None,
    subject: str | None = None,
    signal: str | None = None,
    run_id: int | None = None,
    with_details: bool = True,
) -> list[TrustScore]:
    """Score rows of one level (``state``, ``region`` or ``osce``) of the latest run,
    optionally for one year, subject and signal (``index`` for the composite), ordered by
    subject, year and signal. ``with_details=False`` leaves the ``details`` JSON unloaded."""
    run = _run(session, run_id)
    if run is None:
        return []
    query = select(TrustScore).where(TrustScore.run_id == run, TrustScore.level == level)
    if year is not None:
        query = query.where(TrustScore.year == year)
    if signal is not None:
        query = query.where(TrustScore.signal == signal)
    if subject is not None:
        query = query.where(TrustScore.subject == subject)
    if not with_details:
        query = query.options(defer(TrustScore.details))
    query = query.order_by(TrustScore.subject, TrustScore.year, TrustScore.signal)
    return list(session.scalars(query))


def score(
    session: Session, *, level: str, subject: str, year: int, signal: str = INDEX
) -> TrustScore | None:
    """One score row of the latest run, or ``None``."""
    found = scores(session, level=level, year=year, subject=subject, signal=signal)
    return found[0] if found else None


def years(session: Session, *, run_id: int | None = None) -> list[int]:
    """The years the latest run scored, oldest first (empty before the first run)."""
    run = _run(session, run_id)
    if run is None:
        return []
    return list(
        session.scalars(
            select(TrustScore.year)
            .where(
                TrustScore.run_id == run,
                TrustScore.level == "osce",
                TrustScore.signal == INDEX,
                TrustScore.subject == OSCE,
            )
            .order_by(TrustScore.year)
        )
    )


def series(
    session: Session, level: str, subject: str, signal: str = INDEX, *, run_id: int | None = None
) -> list[tuple[int, float | None]]:
    """``(year, score)`` per scored year, oldest first, for a trend line (``None``: no data)."""
    run = _run(session, run_id)
    if run is None:
        return []
    rows = session.execute(
        select(TrustScore.year, TrustScore.score)
        .where(
            TrustScore.run_id == run,
            TrustScore.level == level,
            TrustScore.signal == signal,
            TrustScore.subject == subject,
        )
        .order_by(TrustScore.year)
    ).all()
    return [(int(r.year), r.score) for r in rows]


def movers(
    session: Session, year: int, n: int = 5, *, run_id: int | None = None
) -> list[TrustScore]:
    """The States whose index changed most against the previous year (either direction),
    largest change first; States without a change (no data either year) are left out."""
    run = _run(session, run_id)
    if run is None:
        return []
    return list(
        session.scalars(
            select(TrustScore)
            .where(
                TrustScore.run_id == run,
                TrustScore.level == "state",
                TrustScore.year == year,
                TrustScore.signal == INDEX,
                TrustScore.change.is_not(None),
            )
            .options(defer(TrustScore.details))
            .order_by(func.abs(TrustScore.change).desc(), TrustScore.subject)
            .limit(n)
        )
    )


@dataclass(frozen=True)
class RegionLine:
    """One region (or the OSCE area) in one year: its index, change and lowest member."""

    code: str
    name: str
    year: int
    index: float | None
    change: float | None
    worst: str | None
    worst_score: float | None
    with_data: int
    members: int


def region_summary(
    session: Session, year: int | None = None, *, run_id: int | None = None
) -> list[RegionLine]:
    """The index of every region and of the OSCE area in ``year`` (the latest scored year
    by default), regions by name, the OSCE area last."""
    run = _run(session, run_id)
    if run is None:
        return []
    if year is None:
        scored = years(session, run_id=run)
        if not scored:
            return []
        year = scored[-1]
    names = {code: name for code, name in session.execute(select(Region.code, Region.name))}
    rows = scores(session, level="region", year=year, signal=INDEX, run_id=run)
    rows += scores(session, level="osce", year=year, signal=INDEX, run_id=run)
    out = []
    for row in rows:
        details = row.details or {}
        member_scores = details.get("scores") or {}
        out.append(
            RegionLine(
                row.subject,
                names.get(row.subject, "OSCE area" if row.level == "osce" else row.subject),
                row.year,
                row.score,
                row.change,
                row.worst,
                member_scores.get(row.worst) if row.worst else None,
                int(details.get("with_data") or 0),
                int(details.get("members") or 0),
            )
        )
    regions = sorted((r for r in out if r.code != OSCE), key=lambda r: r.name)
    return regions + [r for r in out if r.code == OSCE]
