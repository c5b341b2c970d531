"""Two compliance checks started at the same instant (the nightly job and the check after an
import, on two schedulers) run one after the other, so neither fails and no finding is
detected or resolved twice.

Found while building tests/test_multiprocess.py, whose two schedulers run both check jobs
(under different job locks). Before the check's own lock, the second of two
simultaneous checks failed on the findings' unique key (both inserted the same new
findings) or wrote a second "resolved" event for each finding both had seen open.
"""

from __future__ import annotations

import contextlib
import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import throwaway_pg_database
from factories import activity
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from cbm.db import make_engine, make_session_factory
from cbm.migrate import upgrade
from cbm.models import CheckRun, FindingEvent
from cbm.reference.loader import load_reference
from cbm.services.checks import check_now
from cbm.services.records import upsert_records

pytestmark = pytest.mark.slow

QUIET = {"troops": "100", "battle_tanks": "0", "acv": "0", "artillery": "0", "airborne_troops": "0"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated database with its reference data, committed to (threads share it)."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'cbm.sqlite3'}"
        else:
            url = stack.enter_context(throwaway_pg_database("cbm_checks"))
        engine = make_engine(url)
        stack.callback(engine.dispose)
        upgrade(engine)
        with Session(engine) as session:
            load_reference(session)
            session.commit()
        yield engine


def _two_checks_at_once(engine: Engine) -> list[str]:
    factory = make_session_factory(engine)
    barrier = threading.Barrier(2)
    failures: list[str] = []

    def check(trigger: str) -> None:
        barrier.wait()
        try:
            check_now(factory, trigger=trigger, trust=False)
        except Exception as exc:
            failures.append(f"{trigger}: {type(exc).__name__}: {exc}"[:300])

    threads = [threading.Thread(target=check, args=(t,)) for t in ("nightly", "after-import")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return failures


def test_simultaneous_checks_run_one_after_the_other(engine: Engine) -> None:
    rows = [activity(n) for n in range(1, 40)]
    failures = []
    # New findings, then all resolved (below every threshold), then all reopened.
    for version in (rows, [r | QUIET for r in rows], rows):
        with Session(engine) as session:
            assert upsert_records(session, "activities", version).ok
            session.commit()
        failures += _two_checks_at_once(engine)
    assert not failures, failures
    with Session(engine) as session:
        statuses = session.scalars(select(CheckRun.status)).all()
        events = session.execute(
            select(FindingEvent.finding_id, FindingEvent.action).order_by(FindingEvent.id)
        ).all()
    assert statuses == ["succeeded"] * 6
    lives: dict[int, list[str]] = defaultdict(list)
    for finding_id, action in events:
        lives[finding_id].append(action)
    assert lives, "the rows gave no findings: the test exercises nothing"
    assert all(life == ["detected", "resolved", "reopened"] for life in lives.values()), {
        f: life for f, life in lives.items() if life != ["detected", "resolved", "reopened"]
    }


def test_an_acknowledgement_during_a_check_is_kept(engine: Engine) -> None:
    """An analyst acknowledges a finding while a check that changes it runs: the check
    must read the finding after the analyst's commit, not write back the status it read
    before (a lost update: the acknowledgement silently gone)."""
    from cbm.models import Finding
    from cbm.services.findings import acknowledge

    rows = [activity(n) for n in range(1, 6)]
    factory = make_session_factory(engine)
    with Session(engine) as session:
        assert upsert_records(session, "activities", rows).ok
        session.commit()
    check_now(factory, trigger="manual", trust=False)
    # The next check sees other figures: every finding of these activities changes.
    with Session(engine) as session:
        bigger = [r | {"troops": "14000", "end_date": "2024-03-25"} for r in rows]
        assert upsert_records(session, "activities", bigger).ok
        session.commit()
        target = session.scalars(
            select(Finding).where(Finding.status == "open").order_by(Finding.id)
        ).first()
        assert target is not None, "the rows gave no open finding: the test exercises nothing"
        target_id = target.id

    analyst = Session(engine)
    acknowledge(analyst, target_id, None, "Seen; the notification is on its way.")  # not committed
    failures: list[str] = []

    def check() -> None:
        try:
            check_now(factory, trigger="manual", trust=False)
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}"[:300])

    thread = threading.Thread(target=check)
    thread.start()
    thread.join(timeout=1.5)  # the check is now waiting for the analyst's row (or lock)
    analyst.commit()
    analyst.close()
    thread.join(timeout=120)
    assert not thread.is_alive() and not failures, failures

    with Session(engine) as session:
        finding = session.get(Finding, target_id)
        assert finding is not None
        events = session.scalars(
            select(FindingEvent.action)
            .where(FindingEvent.finding_id == target_id)
            .order_by(FindingEvent.id)
        ).all()
        assert finding.status == "acknowledged", (finding.status, events)
        assert "changed" in events, events  # the check did change it, after the analyst
        assert events.index("acknowledged") < events.index("changed"), events
