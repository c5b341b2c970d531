"""Trust signals (method v1): exact scores on small hand-built data sets, "no data", the
details that explain a score, the index weights, regions, storage and recomputation; then
the demo data set.

Facts go through the import service, the compliance check runs through the engine, then
:func:`cbm.trust.compute.compute_trust` writes a run that :mod:`cbm.trust.store` reads.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from test_rules_support import (
    DAY,
    HOUR,
    activity,
    at,
    flight,
    inspection,
    note,
    parties,
    reduction,
    store,
    submission,
)

from cbm.compliance.engine import run_check
from cbm.demo.loader import load_demo
from cbm.models import Finding, JobRun, TrustRun, TrustScore
from cbm.trust import compute, method
from cbm.trust import store as trust_store
from cbm.trust.compute import compute_trust, recompute
from cbm.trust.method import INDEX, METHOD_VERSION, SIGNAL_IDS, WEIGHTS


def run_all(session: Session) -> TrustRun:
    """The whole compliance catalogue, then the trust signals."""
    run_check(session, trigger="test")
    run = compute_trust(session, trigger="test")
    session.flush()
    return run


def one(session: Session, subject: str, year: int, signal: str, level: str = "state") -> TrustScore:
    row = trust_store.score(session, level=level, subject=subject, year=year, signal=signal)
    assert row is not None, (level, subject, year, signal)
    return row


def finding_id(
    session: Session, rule_id: str, subject_id: str = "", state: str | None = None
) -> int:
    query = select(Finding.id).where(Finding.rule_id == rule_id, Finding.status == "open")
    if subject_id:
        query = query.where(Finding.subject_id == subject_id)
    if state:
        query = query.where(Finding.state == state)
    found = session.scalars(query).all()
    assert len(found) == 1, (rule_id, subject_id, found)
    return found[0]


# --- the method -----------------------------------------------------------------------------------


def test_the_method_is_published_as_data_and_markdown() -> None:
    assert METHOD_VERSION == "1"
    assert SIGNAL_IDS == (
        "timeliness",
        "notification",
        "verification",
        "transparency",
        "restraint",
        "reductions",
        "participation",
    )
    assert set(WEIGHTS) == set(SIGNAL_IDS) and sum(WEIGHTS.values()) == 100
    described = method.method_description()
    assert described["version"] == "1"
    assert [s["id"] for s in described["signals"]] == list(SIGNAL_IDS)
    for s in described["signals"]:
        assert s["title"] and s["definition"] and s["no_data"] in s["definition"]
        assert s["weight"] == WEIGHTS[s["id"]]
    assert described["limitations"] and described["aggregation"] and described["years"]
    text = method.method_markdown()
    assert text.startswith("# Trust method v1")
    for s in method.SIGNALS:
        assert f"(`{s.id}`)" in text
    assert "| Timeliness of obligatory submissions (`timeliness`) | 20 | 20% |" in text


# --- timeliness -----------------------------------------------------------------------------------


def _annual_round(
    session: Session, *, late: dict[str, str] | None = None, missing: tuple[str, ...] = ()
) -> None:
    """Every VD party's AEMI and calendar for 2025 and GEMI for 2024, on time unless ``late``
    names a State whose AEMI arrived on the given day; the States in ``missing`` sent no
    calendar. No CFE exchange on record (its periods are not
    covered, so nothing CFE is owed)."""
    late = late or {}
    rows = []
    for state in parties(session, "VD", "2024-12-15"):
        sent = late.get(state, "2024-12-10T10:00:00Z")
        rows.append(submission(state, "VD", "annual_exchange", 2025, sent))
        if state not in missing:
            rows.append(submission(state, "VD", "annual_calendar", 2025, "2024-11-10T10:00:00Z"))
    for state in parties(session, "GEMI", "2024-04-30"):
        rows.append(submission(state, "GEMI", "annual_exchange", 2024, "2024-04-20T10:00:00Z"))
    store(session, "notifications", *rows)


def test_timeliness_three_owed_one_late_is_66_7(session: Session) -> None:
    _annual_round(session, late={"DEU": "2025-01-05T10:00:00Z"})
    run = run_all(session)
    assert run.status == "succeeded" and run.method_version == METHOD_VERSION
    row = one(session, "DEU", 2024, "timeliness")
    # The AEMI and calendar for 2025 (due in 2024) and the GEMI for 2024: 3 owed, 1 late.
    assert row.items == 3 and row.score == pytest.approx(66.7)
    details = row.details
    assert details["items"] == 3 and details["points"] == 2.0
    late_id = finding_id(session, "VD-I-3", state="DEU")
    assert [(f["id"], f["rule_id"], f["severity"], f["effect"]) for f in details["findings"]] == [
        (late_id, "VD-I-3", "late", "lowered")
    ]
    records = details["records"]
    assert [r["credit"] for r in records] == [0.0, 1.0, 1.0]
    assert records[0]["subject_id"] == "VD-DEU-2025-annual_exchange"
    assert records[0]["what"] == "VD annual exchange for 2025, due 2024-12-15"
    assert details["findings_more"] == 0 and details["records_more"] == 0
    # Everyone else sent everything on time; CFE was not covered, so nothing CFE is owed.
    assert one(session, "FRA", 2024, "timeliness").score == 100.0
    assert one(session, "FRA", 2024, "timeliness").items == 3
    assert trust_store.years(session) == [2024]


def test_a_missing_submission_counts_and_is_listed_without_a_record(session: Session) -> None:
    _annual_round(session, missing=("ARM",))
    run_all(session)
    row = one(session, "ARM", 2024, "timeliness")
    assert row.score == pytest.approx(66.7)
    missing = [r for r in row.details["records"] if r["credit"] == 0.0]
    assert missing == [
        {
            "subject_type": "notification",
            "subject_id": None,
            "what": "annual calendar for 2025, due 2024-11-15",
            "credit": 0.0,
        }
    ]
    assert row.details["findings"][0]["severity"] == "breach"


# --- no data --------------------------------------------------------------------------------------


def test_no_data_is_none_never_0_or_100(session: Session) -> None:
    _annual_round(session)
    run_all(session)
    for signal in ("notification", "verification", "restraint", "reductions", "transparency"):
        row = one(session, "DEU", 2024, signal)
        assert row.score is None and row.items == 0, signal
        assert row.details["findings"] == [] and row.details["records"] == []
        region = one(session, "western_europe", 2024, signal, level="region")
        assert region.score is None and region.worst is None and region.items == 0
        osce = one(session, "OSCE", 2024, signal, level="osce")
        assert osce.score is None and osce.details["with_data"] == 0
    # The index leaves out signals without data: timeliness 100 (w 20) and participation
    # 75 (CFE suspended all 2024; w 10).
    index = one(session, "DEU", 2024, INDEX)
    assert index.score == pytest.approx((20 * 100 + 10 * 75) / 30, abs=0.05)
    assert index.details["signals_with_data"] == 2 and index.details["weights_used"] == 30


def test_an_empty_database_scores_nothing(session: Session) -> None:
    run = compute_trust(session, trigger="test")
    assert run.status == "succeeded" and "no years covered" in run.message
    assert trust_store.years(session) == []
    assert trust_store.region_summary(session) == []
    assert trust_store.latest_run(session).id == run.id


def test_without_a_check_findings_based_signals_are_no_data(session: Session) -> None:
    """A fresh install shows no data, not a perfect score, until a check has run."""
    store(
        session,
        "activities",
        activity("BIG", "POL", "2020-05-01", troops=10000),
        activity("SMALL", "POL", "2020-06-01", troops=2000),
    )
    run = compute_trust(session, trigger="test")
    assert "no successful compliance check yet" in run.message
    assert one(session, "POL", 2020, "notification").score is None
    small = one(session, "POL", 2020, "transparency")
    assert small.score == 0.0 and small.items == 1  # a fact, no finding needed


# --- the other signals ----------------------------------------------------------------------------


def _notified(aid: str, state: str, start: str, troops: int, *, in_calendar: bool = True) -> list:
    """A notifiable activity notified 50 days ahead (and in the calendar)."""
    acts = [activity(aid, state, start, troops=troops)]
    if in_calendar:
        acts.append(activity(aid, state, start, troops=troops, source="calendar"))
    sent = dt.datetime.combine(dt.date.fromisoformat(start), dt.time(9), tzinfo=dt.UTC) - 50 * DAY
    return [acts, note(f"PN-{aid}", "prior_notification", state, sent, activity_id=aid)]


def test_notification_region_aggregate_worst_and_change(session: Session) -> None:
    activities, notes = [], []
    for aid, state, start, notify in (
        ("ARM-20", "ARM", "2020-06-01", True),
        ("AZE-20", "AZE", "2020-06-01", False),
        ("ARM-21", "ARM", "2021-06-01", True),
        ("AZE-21", "AZE", "2021-06-01", True),
    ):
        acts, pn = _notified(aid, state, start, 10000)
        if notify:
            activities += acts
            notes.append(pn)
        else:
            activities.append(activity(aid, state, start, troops=10000, source="open_source"))
    store(session, "activities", *activities)
    store(session, "notifications", *notes)
    run_all(session)
    arm, aze = one(session, "ARM", 2020, "notification"), one(session, "AZE", 2020, "notification")
    assert (arm.score, arm.items) == (100.0, 2)  # prior notification and calendar
    assert (aze.score, aze.items) == (0.0, 2)  # never notified, not in the calendar
    assert {f["rule_id"] for f in aze.details["findings"]} == {"VD-V-3", "VD-VII-3"}
    assert {f["id"] for f in aze.details["findings"]} == {
        finding_id(session, "VD-V-3", "AZE-20"),
        finding_id(session, "VD-VII-3", "AZE-20"),
    }
    assert one(session, "GEO", 2020, "notification").score is None
    region = one(session, "south_caucasus", 2020, "notification", level="region")
    assert region.score == 50.0 and region.worst == "AZE" and region.items == 4
    assert region.details["scores"] == {"ARM": 100.0, "AZE": 0.0, "GEO": None}
    assert region.details["with_data"] == 2 and region.details["members"] == 3
    assert region.change is None  # 2019 is not covered
    later = one(session, "south_caucasus", 2021, "notification", level="region")
    assert later.score == 100.0 and later.change == 50.0 and later.worst == "ARM"
    assert one(session, "AZE", 2021, "notification").change == 100.0
    osce = one(session, "OSCE", 2020, "notification", level="osce")
    assert osce.score == 50.0 and osce.worst == "AZE"
    assert trust_store.series(session, "region", "south_caucasus", "notification") == [
        (2020, 50.0),
        (2021, 100.0),
    ]
    movers = trust_store.movers(session, 2021)
    assert movers and movers[0].subject == "AZE" and movers[0].change > 0
    assert all(m.change is not None for m in movers)
    assert [abs(m.change) for m in movers] == sorted((abs(m.change) for m in movers), reverse=True)


def test_verification_accepted_refused_late_and_restricted(session: Session) -> None:
    requested = "2019-03-01T09:00:00Z"
    store(
        session,
        "inspections",
        inspection("I-OK", "DEU", "RUS", requested),
        inspection(
            "I-SLOW",
            "FRA",
            "RUS",
            "2019-04-01T09:00:00Z",
            replied_at=at("2019-04-02T15:00:00Z"),  # 30 hours
        ),
        inspection("I-NO", "POL", "RUS", "2019-05-01T09:00:00Z", "refused"),
        inspection("I-FM", "ITA", "RUS", "2019-06-01T09:00:00Z", "force_majeure"),
    )
    eta = at("2019-07-10T10:00:00Z")
    store(
        session,
        "observation_flights",
        flight("F-R", "DEU", "RUS", eta, restrictions="Flight distance over Kaliningrad limited."),
    )
    store(
        session,
        "notifications",
        note("ACK", "flight_acknowledgement", "RUS", eta - 90 * HOUR, regime="OST", event_id="F-R"),
    )
    run_all(session)
    row = one(session, "RUS", 2019, "verification")
    # Accepted 1 + late reply 0.5 + refused within the quota 0 + restricted flight 0.5;
    # force majeure is not judged.
    assert row.items == 4 and row.score == 50.0
    assert {(f["rule_id"], f["subject_id"]) for f in row.details["findings"]} == {
        ("VD-IX-I2", "I-NO"),
        ("VD-IX-I4", "I-SLOW"),
    }
    assert row.details["findings"][0]["rule_id"] == "VD-IX-I2"  # breaches first
    credits = {r["subject_id"]: r["credit"] for r in row.details["records"]}
    assert credits == {"I-NO": 0.0, "I-SLOW": 0.5, "F-R": 0.5, "I-OK": 1.0}


def test_restraint_limits_and_near_threshold(session: Session) -> None:
    rows = [
        activity(f"POL-{n}", "POL", f"2019-09-0{n}", "2019-09-20", troops=14000)
        for n in range(1, 5)
    ]
    rows.append(activity("POL-NEAR", "POL", "2019-05-01", troops=8950))
    store(session, "activities", *rows)
    run_all(session)
    row = one(session, "POL", 2019, "restraint")
    # Four simultaneous activities above 13,000: the fourth breaks ¶67.3 (0); the near
    # declaration keeps half a credit: (3 + 0.5) / 5.
    assert row.items == 5 and row.score == 70.0
    assert {(f["rule_id"], f["subject_id"]) for f in row.details["findings"]} == {
        ("VD-VIII-1", "POL-4"),
        ("VD-NEAR", "POL-NEAR"),
    }


def test_reductions_and_transparency(session: Session) -> None:
    store(
        session,
        "reductions",
        reduction("DEU-EARLY", "DEU", "2022-12-31", "2021-06-30", kind="unilateral"),
        reduction("ARM-LATE", "ARM", "2022-12-31", "2023-03-01"),
        reduction("ARM-KEPT", "ARM", "2022-06-30", "2022-06-30"),
    )
    store(
        session,
        "activities",
        activity("DEU-V", "DEU", "2022-04-01", troops=2000),
        activity("DEU-Q", "DEU", "2022-05-01", troops=1500, source="open_source"),
    )
    store(
        session,
        "notifications",
        note("PN-V", "prior_notification", "DEU", "2022-02-01T09:00:00Z", activity_id="DEU-V"),
    )
    run_all(session)
    arm = one(session, "ARM", 2022, "reductions")
    assert arm.items == 2 and arm.score == 50.0
    assert [f["rule_id"] for f in arm.details["findings"]] == ["CFE-R2"]
    deu = one(session, "DEU", 2022, "reductions")
    assert deu.score == 100.0  # kept (early): listed, not a shortfall
    assert [(f["rule_id"], f["severity"], f["effect"]) for f in deu.details["findings"]] == [
        ("RED-1", "positive", "listed")
    ]
    open_ = one(session, "DEU", 2022, "transparency")
    # A voluntary notification (1), an unnotified small exercise (0), an early reduction (1).
    assert open_.items == 3 and open_.score == pytest.approx(66.7)
    assert [(f["rule_id"], f["effect"]) for f in open_.details["findings"]] == [("RED-1", "raised")]
    assert {r["subject_id"]: r["credit"] for r in open_.details["records"]} == {
        "DEU-Q": 0.0,
        "DEU-V": 1.0,
        "DEU-EARLY": 1.0,
    }


def test_participation_counts_days_as_a_party(session: Session) -> None:
    store(
        session,
        "activities",
        activity("X-20", "USA", "2020-05-01", troops=100),
        activity("X-22", "USA", "2022-05-01", troops=100),
    )
    run_all(session)
    # 2020: the USA left Open Skies on 22 November (326 of 366 days a party).
    usa = one(session, "USA", 2020, "participation")
    assert usa.items == 4 and usa.score == pytest.approx(100 * (3 + 326 / 366) / 4, abs=0.05)
    assert "OST: 326 days party, 40 days withdrawn" in {r["what"] for r in usa.details["records"]}
    # 2022: Russia withdrawn from Open Skies, suspended from CFE; party to VD and GEMI.
    assert one(session, "RUS", 2022, "participation").score == 50.0
    # A regime never joined is not counted (Finland: VD, GEMI and Open Skies, not CFE).
    fin = one(session, "FIN", 2022, "participation")
    assert fin.score == 100.0 and fin.items == 3
    # Participation weighs 10 in the index: for RUS it is the only signal with data.
    assert one(session, "RUS", 2022, INDEX).score == 50.0
    assert trust_store.years(session) == [2020, 2022]


def test_index_weights_are_applied(session: Session) -> None:
    store(session, "activities", activity("AZE-S", "AZE", "2021-06-01", troops=100))
    acts, pn = _notified("AZE-N", "AZE", "2021-07-01", 10000, in_calendar=False)
    store(session, "activities", *acts)
    store(session, "notifications", pn)
    run_all(session)
    # notification 50 (notified, not in the calendar; w 20), transparency 0 (w 5),
    # participation 100 (w 10).
    index = one(session, "AZE", 2021, INDEX)
    assert index.details["signals"]["notification"] == 50.0
    assert index.details["signals"]["transparency"] == 0.0
    assert index.details["signals"]["participation"] == 100.0
    assert index.details["weights"] == WEIGHTS
    assert index.score == pytest.approx((20 * 50 + 5 * 0 + 10 * 100) / 35, abs=0.05)


# --- runs, failures and storage -------------------------------------------------------------------


def test_a_failing_computation_leaves_the_previous_run_as_latest(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    store(session, "activities", activity("X", "DEU", "2020-05-01", troops=100))
    good = compute_trust(session, trigger="test")
    count = session.scalar(select(func.count()).where(TrustScore.run_id == good.id))

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(compute, "compute_rows", broken)
    with pytest.raises(RuntimeError, match="boom"):
        compute_trust(session, trigger="test")
    failed = session.scalars(select(TrustRun).order_by(TrustRun.id.desc())).first()
    assert failed.id != good.id and failed.status == "failed"
    assert failed.message == "RuntimeError: boom" and failed.finished_at is not None
    assert trust_store.latest_run(session).id == good.id
    assert session.scalar(select(func.count()).where(TrustScore.run_id == failed.id)) == 0
    assert session.scalar(select(func.count()).where(TrustScore.run_id == good.id)) == count
    assert trust_store.years(session) == [2020]


def test_recompute_records_a_failure_in_its_own_transaction(
    session_factory: sessionmaker[Session], session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compute, "read_basis", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        recompute(session_factory, trigger="test")
    [failed] = session.scalars(select(TrustRun)).all()
    assert failed.status == "failed" and failed.message.startswith("ZeroDivisionError")


def test_a_check_recomputes_trust_and_a_trust_failure_does_not_fail_it(
    session_factory: sessionmaker[Session], session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cbm.services.checks import check_now

    result = check_now(session_factory, trigger="test")
    run = trust_store.latest_run(session)
    assert run is not None and run.trigger == "after-check" and run.check_run_id == result.run_id
    monkeypatch.setattr(compute, "compute_rows", lambda *a, **k: 1 / 0)
    again = check_now(session_factory, trigger="test")
    assert again.run_id > result.run_id
    latest = session.scalars(select(TrustRun).order_by(TrustRun.id.desc())).first()
    assert latest.status == "failed" and latest.check_run_id == again.run_id
    assert trust_store.latest_run(session).id == run.id
    check_now(session_factory, trigger="test", trust=False)
    assert session.scalars(select(TrustRun).order_by(TrustRun.id.desc())).first().id == latest.id


def test_only_the_newest_runs_keep_their_scores(session: Session) -> None:
    store(session, "activities", activity("X", "DEU", "2020-05-01", troops=100))
    runs = [compute_trust(session, trigger="test").id for _ in range(method.KEEP_RUNS + 2)]
    with_scores = set(session.scalars(select(TrustScore.run_id).distinct()))
    assert with_scores == set(runs[-method.KEEP_RUNS :])
    assert session.scalar(select(func.count()).select_from(TrustRun)) == len(runs)


def test_details_are_capped_with_a_count_of_the_rest(session: Session) -> None:
    total = method.DETAIL_LIMIT + 7
    store(
        session,
        "activities",
        *(activity(f"S-{n:03}", "NOR", "2021-03-01", troops=100) for n in range(total)),
    )
    compute_trust(session, trigger="test")
    row = one(session, "NOR", 2021, "transparency")
    assert row.items == total and row.score == 0.0
    assert len(row.details["records"]) == method.DETAIL_LIMIT
    assert row.details["records_more"] == 7


# --- the demo data --------------------------------------------------------------------------------


class Demo:
    def __init__(self, session: Session, factory: sessionmaker[Session], run_id: int) -> None:
        self.session = session
        self.factory = factory
        self.run_id = run_id


@pytest.fixture(scope="module")
def demo(engine: Engine) -> Iterator[Demo]:
    """The demo data, one full check and one trust computation, per backend, rolled back."""
    with engine.connect() as conn:
        trans = conn.begin()
        factory = sessionmaker(
            bind=conn, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )
        session = factory()
        try:
            load_demo(session)
            run_check(session, trigger="test")
            run = compute_trust(session, trigger="test")
            session.commit()
            yield Demo(session, factory, run.id)
        finally:
            session.close()
            trans.rollback()


def _rows(session: Session, run_id: int) -> dict[tuple, tuple]:
    return {
        (r.level, r.subject, r.year, r.signal): (r.score, r.items, r.change, r.worst, r.details)
        for r in session.scalars(select(TrustScore).where(TrustScore.run_id == run_id))
    }


def test_demo_every_region_has_an_index_for_2024(demo: Demo) -> None:
    regions = trust_store.scores(demo.session, level="region", year=2024, signal=INDEX)
    assert len(regions) == 10
    assert all(r.score is not None and 0 <= r.score <= 100 for r in regions)
    assert all(r.worst for r in regions)
    assert 2024 in trust_store.years(demo.session)
    summary = trust_store.region_summary(demo.session, 2024)
    assert len(summary) == 11 and summary[-1].code == "OSCE" and summary[-1].members == 57


def test_demo_armenia_timeliness_is_below_the_osce_median(demo: Demo) -> None:
    states = trust_store.scores(demo.session, level="state", year=2024, signal="timeliness")
    median = statistics.median(r.score for r in states if r.score is not None)
    arm = one(demo.session, "ARM", 2024, "timeliness")
    assert arm.score < median
    assert [f["rule_id"] for f in arm.details["findings"]] == ["VD-I-3"]
    # Its six missing AEMIs (for 2021-2026) are due in 2020-2025: one per year.
    series = dict(trust_store.series(demo.session, "state", "ARM", "timeliness"))
    assert all(series[y] < 100 for y in range(2020, 2026))
    assert one(demo.session, "OSCE", 2024, "timeliness", level="osce").worst == "ARM"


def test_demo_a_second_computation_gives_identical_scores(demo: Demo) -> None:
    first = _rows(demo.session, demo.run_id)
    again = compute_trust(demo.session, trigger="test")
    assert again.status == "succeeded"
    assert _rows(demo.session, again.id) == first


def test_demo_a_check_recomputes_and_the_job_records_a_run(demo: Demo) -> None:
    from cbm.jobs import run_registered
    from cbm.services.checks import check_now

    demo.session.commit()
    result = check_now(demo.factory, trigger="test")
    run = trust_store.latest_run(demo.session)
    assert run.trigger == "after-check" and run.check_run_id == result.run_id
    assert _rows(demo.session, run.id) == _rows(demo.session, demo.run_id)
    outcome = run_registered(demo.factory, "trust:recompute")
    assert outcome.status == "succeeded", outcome.message
    job_run = demo.session.scalars(
        select(JobRun).where(JobRun.job_id == "trust:recompute").order_by(JobRun.id.desc())
    ).first()
    assert job_run.status == "succeeded"
    assert trust_store.latest_run(demo.session).id == outcome.details["trust_run_id"]
