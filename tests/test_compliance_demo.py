"""The compliance engine on the demo data: exactly the planted cases, explained, recorded,
stable on re-checks, and scoped checks that leave the rest alone."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from compliance_support import found, planted_findings
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from cbm.compliance import registry
from cbm.compliance.engine import CheckError, make_scope, run_check
from cbm.demo import planted
from cbm.demo.loader import load_demo
from cbm.models import CheckRun, Finding, FindingEvent

UTC = dt.UTC


class Demo:
    def __init__(self, session: Session, first_run: int) -> None:
        self.session = session
        self.first_run = first_run


@pytest.fixture(scope="module")
def demo(engine: Engine) -> Iterator[Demo]:
    """The demo data and one full check, per backend, rolled back at the end."""
    with engine.connect() as conn:
        trans = conn.begin()
        session = Session(bind=conn, join_transaction_mode="create_savepoint")
        try:
            load_demo(session)
            result = run_check(session, trigger="test")
            yield Demo(session, result.run_id)
        finally:
            session.close()
            trans.rollback()


# --- the demo ----------------------------------------------------------------------------


def test_the_demo_check_finds_exactly_the_planted_cases(demo: Demo) -> None:
    expected, got = planted_findings(), found(demo.session)
    assert not expected - got, f"missing planted: {sorted(expected - got)}"
    assert not got - expected, f"not planted: {sorted(got - expected)}"
    for case in planted.non_findings():
        assert not any(
            f[0] == case.rule_id and f[1] == case.state and f[2] == case.subject_id for f in got
        ), case


def test_every_finding_is_explained(demo: Demo) -> None:
    rules = registry.all_rules()
    for f in demo.session.scalars(select(Finding)):
        rule = rules[f.rule_id]
        assert f.regime == rule.regime and f.severity in registry.SEVERITIES
        assert f.status == "open" and f.due_at is not None and f.due_at.tzinfo is not None
        assert f.summary.endswith(".") and f.state in f.summary, f.summary
        assert isinstance(f.evidence, dict) and f.evidence, f.rule_id
        assert f.first_detected_at == f.last_detected_at
        assert f.subject_type == rule.subject_type
    sample = demo.session.scalar(
        select(Finding).where(Finding.rule_id == "VD-V-3", Finding.severity == "late")
    )
    assert "days before its start; VD 2011 ¶38 requires 42." in sample.summary
    events = demo.session.scalars(select(FindingEvent)).all()
    assert {e.action for e in events} == {"detected"} and len(events) == len(planted_findings())


def test_the_check_run_is_recorded_with_coverage(demo: Demo) -> None:
    run = demo.session.get(CheckRun, demo.first_run)
    assert run.status == "succeeded" and run.trigger == "test"
    assert run.rules_evaluated == len(registry.all_rules())
    assert run.findings_detected == run.findings_new == len(planted_findings())
    assert run.findings_resolved == 0 and run.seconds is not None
    coverage = run.coverage["VD-I-3"]
    # The demo covers the AEMIs for 2012-2026; 2027 is not due yet (as_of is today).
    assert coverage["evaluated"] == list(range(2012, 2027))
    assert coverage["skipped"] and coverage["skipped"][0]["period"] == 2027
    # GEMI: submissions exist for 2012-2025 only; 2026 (due 2026-04-30) is not covered.
    gemi = run.coverage["GEMI-3"]
    assert gemi["evaluated"][-1] == 2025
    assert {"period": 2026, "why": "0 of 57 States' submissions in the data"} in gemi["skipped"]


def test_a_second_check_changes_nothing(demo: Demo) -> None:
    before = {f.finding_key: f.id for f in demo.session.scalars(select(Finding))}
    result = run_check(demo.session, trigger="test")
    assert (result.new, result.updated, result.reopened, result.resolved) == (0, 0, 0, 0)
    assert result.detected == len(before)
    assert {f.finding_key: f.id for f in demo.session.scalars(select(Finding))} == before


def test_scope_by_state_and_window_leaves_the_rest_alone(demo: Demo) -> None:
    total = len(found(demo.session))
    only = run_check(demo.session, make_scope(demo.session, states=["Armenia"]), trigger="test")
    assert only.detected == len({f for f in found(demo.session) if f[1] == "ARM"})
    assert only.resolved == 0 and len(found(demo.session)) == total
    window = make_scope(demo.session, date_from=dt.date(2020, 1, 1), date_to=dt.date(2020, 12, 31))
    in_2020 = run_check(demo.session, window, trigger="test")
    assert in_2020.resolved == 0 and 0 < in_2020.detected < total
    stored = demo.session.scalars(select(Finding)).all()
    assert in_2020.detected == sum(
        dt.datetime(2020, 1, 1, tzinfo=UTC) <= f.due_at < dt.datetime(2021, 1, 1, tzinfo=UTC)
        for f in stored
    )


def test_bad_scopes_are_refused_by_name(demo: Demo) -> None:
    with pytest.raises(CheckError, match="unknown regime 'XX'"):
        make_scope(demo.session, regimes=["XX"])
    with pytest.raises(CheckError, match="unknown State 'Atlantis'"):
        make_scope(demo.session, states=["Atlantis"])
    with pytest.raises(CheckError, match="unknown rule 'VD-99'"):
        make_scope(demo.session, rule_ids=["VD-99"])
    with pytest.raises(CheckError, match="after"):
        make_scope(demo.session, date_from=dt.date(2020, 2, 1), date_to=dt.date(2020, 1, 1))
    assert make_scope(demo.session, regimes=["os"]).regimes == ("OST",)
