"""The compliance engine on small data sets: finding identity and lifecycle, coverage of
absence rules, failed runs, and the `cbm check` command (on the demo)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from compliance_support import planted_findings
from factories import make
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cbm.compliance import registry
from cbm.compliance.engine import Scope, run_check
from cbm.models import CheckRun, Finding, FindingEvent
from cbm.services.checks import check_now
from cbm.services.records import delete_record, upsert_records

UTC = dt.UTC


# --- lifecycle on small data sets ---------------------------------------------------------


def _activity(**overrides: object) -> dict:
    base = make(
        "activities",
        activity_id="RUS-2020-ZAPAD",
        source="notification",
        state="RUS",
        host_state="RUS",
        kind="exercise",
        start_date=dt.date(2020, 9, 1),
        end_date=dt.date(2020, 9, 10),
        troops=12800,
        battle_tanks=None,
        acv=None,
        artillery=None,
        air_sorties=None,
        airborne_troops=None,
    )
    base.update(overrides)
    return base


def _notice(reference: str, sent: dt.datetime, **overrides: object) -> dict:
    row = make(
        "notifications",
        reference=reference,
        regime="VD",
        kind="prior_notification",
        sender="RUS",
        recipients="ALL",
        sent_at=sent,
        received_at=None,
        covers_year=None,
        activity_id="RUS-2020-ZAPAD",
        event_id=None,
        in_reply_to=None,
        nil_report=None,
    )
    row.update(overrides)
    return row


def _store(session: Session, kind: str, *rows: dict) -> None:
    result = upsert_records(session, kind, list(rows))
    assert not result.errors, result.errors
    session.flush()


def _only(session: Session, rule_id: str) -> Finding | None:
    return session.scalar(select(Finding).where(Finding.rule_id == rule_id))


def test_a_finding_is_resolved_when_the_facts_change_and_reopened_when_they_change_back(
    session: Session,
) -> None:
    scope = Scope(rule_ids=("VD-V-3",))
    _store(session, "activities", _activity())
    _store(session, "notifications", _notice("RUS-PN-1", dt.datetime(2020, 8, 2, 9, tzinfo=UTC)))
    first = run_check(session, scope, trigger="test")
    finding = _only(session, "VD-V-3")
    assert first.new == 1 and finding.severity == "late" and finding.status == "open"
    assert finding.summary == (
        "RUS notified activity RUS-2020-ZAPAD (12,800 troops) 30 days before its start; "
        "VD 2011 ¶38 requires 42."
    )
    assert finding.evidence["days_before_start"] == 30 and finding.evidence["required_days"] == 42
    # An earlier notification is imported: the finding resolves itself.
    _store(session, "notifications", _notice("RUS-PN-0", dt.datetime(2020, 7, 20, tzinfo=UTC)))
    second = run_check(session, scope, trigger="test")
    assert second.resolved == 1 and second.detected == 0
    session.refresh(finding)
    assert finding.status == "resolved" and finding.resolved_at is not None
    # It was a mistake and is deleted: the same finding (same id) opens again.
    delete_record(session, "notifications", {"reference": "RUS-PN-0"})
    session.flush()
    third = run_check(session, scope, trigger="test")
    assert third.reopened == 1 and third.new == 0
    session.refresh(finding)
    assert finding.status == "open" and finding.resolved_at is None
    actions = session.scalars(
        select(FindingEvent.action)
        .where(FindingEvent.finding_id == finding.id)
        .order_by(FindingEvent.id)
    ).all()
    assert actions == ["detected", "resolved", "reopened"]


def test_an_analysts_status_survives_re_checks_and_changes_are_recorded(session: Session) -> None:
    scope = Scope(rule_ids=("VD-V-3",))
    _store(session, "activities", _activity())
    run_check(session, scope, trigger="test")
    finding = _only(session, "VD-V-3")
    assert finding.severity == "breach" and "did not notify" in finding.summary
    finding.status = "acknowledged"
    session.flush()
    # A late notification arrives: same finding, now "late", still acknowledged.
    _store(session, "notifications", _notice("RUS-PN-1", dt.datetime(2020, 8, 12, tzinfo=UTC)))
    result = run_check(session, scope, trigger="test")
    assert result.updated == 1 and result.new == 0
    session.refresh(finding)
    assert finding.status == "acknowledged" and finding.severity == "late"
    changed = session.scalars(
        select(FindingEvent).where(
            FindingEvent.finding_id == finding.id, FindingEvent.action == "changed"
        )
    ).one()
    assert changed.changes["severity"] == ["breach", "late"]


def test_a_missing_annual_submission_that_arrives_late_keeps_its_identity(session: Session) -> None:
    """Missing then late is one finding (rule + State + period), not two."""
    rows = [
        make(
            "notifications",
            reference=f"VD-{state}-2020-AEMI",
            regime="VD",
            kind="annual_exchange",
            sender=state,
            recipients="ALL",
            sent_at=dt.datetime(2019, 12, 10, tzinfo=UTC),
            received_at=None,
            covers_year=2020,
            activity_id=None,
            event_id=None,
            in_reply_to=None,
            nil_report=None,
        )
        for state in _vd_states(session)
        if state != "ARM"
    ]
    _store(session, "notifications", *rows)
    scope = Scope(rule_ids=("VD-I-3",))
    run_check(session, scope, trigger="test")
    missing = _only(session, "VD-I-3")
    assert (missing.state, missing.period, missing.severity, missing.subject_id) == (
        "ARM",
        "2020",
        "breach",
        "",
    )
    assert missing.summary.startswith("ARM has no annual exchange of military information for 2020")
    late = dict(rows[0], reference="VD-ARM-2020-AEMI", sender="ARM")
    late["sent_at"] = dt.datetime(2020, 1, 10, 8, tzinfo=UTC)
    _store(session, "notifications", late)
    run_check(session, scope, trigger="test")
    session.refresh(missing)
    assert missing.severity == "late" and missing.subject_id == "VD-ARM-2020-AEMI"
    assert missing.status == "open" and "26 days after the deadline" in missing.summary


def _vd_states(session: Session) -> list[str]:
    import pandas as pd

    from cbm.compliance.context import CheckContext

    ctx = CheckContext(session, pd.Timestamp("2026-01-01"))
    return ctx.party_states("VD", pd.Timestamp("2019-12-15"))


def test_a_partial_data_set_does_not_flood_missing_findings(session: Session) -> None:
    row = make(
        "notifications",
        reference="VD-DEU-2020-AEMI",
        regime="VD",
        kind="annual_exchange",
        sender="DEU",
        recipients="ALL",
        sent_at=dt.datetime(2019, 12, 1, tzinfo=UTC),
        received_at=None,
        covers_year=2020,
        activity_id=None,
        event_id=None,
        in_reply_to=None,
        nil_report=None,
    )
    _store(session, "notifications", row)
    result = run_check(session, Scope(rule_ids=("VD-I-3",)), trigger="test")
    assert result.detected == 0
    skipped = result.coverage["VD-I-3"]["skipped"]
    assert {"period": 2020, "why": "1 of 57 States' submissions in the data"} in skipped


def test_a_failing_check_leaves_no_findings_and_a_failed_run(
    session_factory: sessionmaker[Session], session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(ctx: object) -> Iterator[registry.Candidate]:
        raise RuntimeError("rule exploded")

    rules = dict(registry.all_rules())
    original = rules["VD-V-3"]
    monkeypatch.setitem(
        registry.RULES, "VD-V-3", registry.Rule(**{**original.__dict__, "check": broken})
    )
    with pytest.raises(RuntimeError, match="rule exploded"):
        check_now(session_factory, Scope(), trigger="test")
    runs = session.scalars(select(CheckRun)).all()
    assert [(r.status, r.message) for r in runs] == [("failed", "RuntimeError: rule exploded")]
    assert session.scalars(select(Finding)).all() == []


# --- the command --------------------------------------------------------------------------


def _cbm(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CBM_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "cbm.cli", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_cbm_check_on_the_demo_and_its_errors(tmp_path: Path) -> None:
    env = {"CBM_INSTANCE_DIR": str(tmp_path)}
    assert _cbm(["db", "upgrade"], env).returncode == 0
    n = len(planted_findings())
    # Loading the demo runs the check, so the findings (and dashboards) are there at once.
    loaded = _cbm(["demo", "load"], env)
    assert loaded.returncode == 0, loaded.stderr
    assert f"{n} findings detected ({n} new, 0 changed, 0 reopened), 0 resolved" in loaded.stdout
    out = _cbm(["check"], env)
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    assert f"{n} findings detected (0 new, 0 changed, 0 reopened), 0 resolved" in first
    assert "  VD-V-3 " in out.stdout and "GEMI-3: not evaluated for 2026" in out.stdout
    assert "checking VD-I-3" in out.stderr
    again = _cbm(["check", "--regime", "VD", "--state", "ARM", "-q"], env)
    assert again.returncode == 0 and "0 new" in again.stdout and len(again.stdout.splitlines()) == 1
    for args, message in (
        (["check", "--regime", "XX"], "unknown regime 'XX'"),
        (["check", "--state", "Atlantis"], "unknown State 'Atlantis'"),
        (["check", "--from", "2020-02-30"], "--from '2020-02-30' is not a date"),
        (["check", "--from", "2021-01-01", "--to", "2020-01-01"], "is after"),
    ):
        bad = _cbm(args, env)
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)
    # The findings as CSV, with the page's filters.
    target = tmp_path / "findings.csv"
    out = _cbm(["export", "findings", "-o", str(target), "--rule", "VD-I-3"], env)
    assert out.returncode == 0, out.stderr
    lines = target.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith(
        "finding_id,rule_id,regime,severity,status,state,counterpart,subject_type,subject_id,"
        "period,due_at,detected_at,summary"
    )
    expected = sum(1 for f in planted_findings() if f[0] == "VD-I-3")
    assert len(lines) == 1 + expected and all(",VD-I-3,VD," in line for line in lines[1:])
    stdout = _cbm(["export", "findings", "--severity", "positive"], env)
    assert stdout.returncode == 0 and len(stdout.stdout.splitlines()) == 1 + sum(
        1 for f in planted_findings() if f[4] == "positive"
    )
    bad = _cbm(["export", "findings", "--severity", "awful"], env)
    assert bad.returncode == 2 and "severity" in bad.stderr
