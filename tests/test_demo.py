"""The demo data set: deterministic, valid, complete, and with exactly the planted cases.

The checks run on the generated rows (pure, fast) and on the rows read back from the
database after ``load_demo`` (once per backend, in a module-scoped transaction that is
rolled back). :func:`compute_findings` is an independent, straightforward implementation of
the compliance catalogue the demo is built for; the demo must make it report exactly the
planted findings and none of the planted non-findings.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from cbm import contract, vocab
from cbm.demo import planted
from cbm.demo.generator import (
    LARGE,
    NOTIFY,
    OBSERVE,
    PER_YEAR,
    PER_YEAR_LARGE,
    SIMULTANEOUS,
    SUBMISSION_YEARS,
    YEARS,
    Reference,
    add_working_days,
    generate,
    largest,
    near_thresholds,
    reaches,
)
from cbm.demo.loader import DemoSummary, load_demo, reference_from_session
from cbm.models import Region, State

ROOT = Path(__file__).resolve().parents[1]
UTC = dt.UTC
HORIZON = dt.date(2025, 12, 31)
Data = Mapping[str, Sequence[Mapping[str, Any]]]
Finding = tuple[str, str, str, str, str]  # rule, state, subject, period, severity


# --- an independent implementation of the rule catalogue ---------------------------------


def _end_of(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=UTC)


def _received(note: Mapping[str, Any]) -> dt.datetime:
    return note["received_at"] or note["sent_at"]


def compute_findings(
    data: Data, ref: Reference, *, i2_whole_year: bool = False, near_all_sources: bool = False
) -> set[Finding]:
    """Findings of the catalogue rules; the keyword flags switch to alternative readings."""
    out: set[Finding] = set()
    notes = data["notifications"]

    def add(rule: str, state: str, subject: str, period: int | str, severity: str) -> None:
        out.add((rule, state, subject, str(period), severity))

    # Annual submissions: missing (breach) or late (late).
    def annual(rule: str, regime: str, kind: str, years: Sequence[int], due_of: Any) -> None:
        subs = {
            (n["sender"], n["covers_year"]): n
            for n in notes
            if n["regime"] == regime and n["kind"] == kind
        }
        for state in ref.states:
            for year in years:
                due = due_of(year)
                if not ref.is_party(state, regime, due):
                    continue
                sub = subs.get((state, year))
                if sub is None:
                    add(rule, state, "", year, "breach")
                elif _received(sub) > _end_of(due):
                    add(rule, state, sub["reference"], year, "late")

    exchange, calendar = "annual_exchange", "annual_calendar"
    annual("VD-I-3", "VD", exchange, SUBMISSION_YEARS, lambda y: dt.date(y - 1, 12, 15))
    annual("VD-VII-1", "VD", calendar, SUBMISSION_YEARS, lambda y: dt.date(y - 1, 11, 15))
    annual("CFE-X1", "CFE", exchange, SUBMISSION_YEARS, lambda y: dt.date(y - 1, 12, 15))
    annual("GEMI-3", "GEMI", exchange, YEARS, lambda y: dt.date(y, 4, 30))

    # Activities.
    by_activity: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in data["activities"]:
        by_activity[row["activity_id"]].append(row)
    by_link: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for n in notes:
        if n["activity_id"]:
            by_link[(n["kind"], n["activity_id"])].append(n)
    acts = []
    for aid, rows in sorted(by_activity.items()):
        state = rows[0]["state"]
        start = min(r["start_date"] for r in rows)
        end = max(r["end_date"] or r["start_date"] for r in rows)
        fig = largest(rows)
        acts.append((aid, state, start, end, fig))
        kind = rows[0]["kind"]
        sources = {r["source"] for r in rows}
        if reaches(fig, NOTIFY, False):
            pns = by_link[("prior_notification", aid)]
            if not pns:
                add("VD-V-3", state, aid, start.year, "breach")
            else:
                sent = min(n["sent_at"] for n in pns).date()
                if kind == "alert":
                    if sent > start:
                        add("VD-V-3", state, aid, start.year, "late")
                elif (start - sent).days < 42:
                    add("VD-V-3", state, aid, start.year, "late")
            if kind != "alert" and "calendar" not in sources:
                add("VD-VII-3", state, aid, start.year, "warning")
        if reaches(fig, OBSERVE, False) and not by_link[("observation_invitation", aid)]:
            add("VD-VI-1", state, aid, start.year, "breach")
        if reaches(fig, LARGE, True):
            deadline = _end_of(dt.date(start.year - 2, 11, 15))
            forecasts = by_link[("forecast_two_year", aid)]
            if not any(n["sent_at"] <= deadline for n in forecasts):
                add("VD-VIII-4", state, aid, start.year, "breach")
        declared = [
            r for r in rows if near_all_sources or r["source"] in ("notification", "calendar")
        ]
        if any(near_thresholds(r) for r in declared):
            add("VD-NEAR", state, aid, start.year, "info")

    per_state: dict[str, list[tuple[str, str, dt.date, dt.date, dict]]] = defaultdict(list)
    for act in acts:
        per_state[act[1]].append(act)
    for state, items in per_state.items():
        items.sort(key=lambda a: (a[2], a[0]))
        big = [a for a in items if reaches(a[4], SIMULTANEOUS, True)]
        for aid, _s, start, _e, _f in big:
            running = [b for b in big if b[2] <= start <= b[3]]
            if len(running) > 3:
                add("VD-VIII-1", state, aid, start.year, "breach")
        for limit, thresholds in ((6, PER_YEAR), (3, PER_YEAR_LARGE)):
            counted: dict[int, int] = defaultdict(int)
            for aid, _s, start, _e, fig in items:
                if reaches(fig, thresholds, True):
                    counted[start.year] += 1
                    if counted[start.year] > limit:
                        add("VD-VIII-5", state, aid, start.year, "breach")
        three = {"troops": LARGE["troops"], "battle_tanks": LARGE["battle_tanks"]}
        huge = [a for a in items if reaches(a[4], three, True)]
        for aid, _s, start, _e, _f in huge:
            window = [
                b for b in huge if start.year - 2 <= b[2].year <= start.year and b[2] <= start
            ]
            if len(window) > 1:
                add("VD-VIII-5", state, aid, start.year, "breach")

    # VD inspections and evaluation visits.
    quotas = {
        (q["regime"], q["state"], q["year"], q["kind"], q["counterpart"] or ""): q["quota"]
        for q in data["quotas"]
    }
    inspections = sorted(data["inspections"], key=lambda i: i["requested_at"])
    accepted: dict[tuple[str, str, int], list[Mapping[str, Any]]] = defaultdict(list)
    for i in inspections:
        if i["reply"] == "accepted":
            accepted[(i["kind"], i["inspected_state"], i["requested_at"].year)].append(i)
    hour = dt.timedelta(hours=1)
    for i in inspections:
        year = i["requested_at"].year
        ident, inspected = i["inspection_id"], i["inspected_state"]
        before = [
            a
            for a in accepted[(i["kind"], inspected, year)]
            if i2_whole_year or a["requested_at"] < i["requested_at"]
        ]
        if i["kind"] == "vd_inspection":
            refused = i["reply"] in ("refused", "no_reply")
            same = any(a["inspecting_state"] == i["inspecting_state"] for a in before)
            if refused and len(before) < 3 and not same:
                add("VD-IX-I2", inspected, ident, year, "breach")
            if i["replied_at"] and i["replied_at"] - i["requested_at"] > 24 * hour:
                add("VD-IX-I4", inspected, ident, year, "late")
            if i["report_at"] and i["end_at"] and i["report_at"] - i["end_at"] > 14 * 24 * hour:
                add("VD-IX-I6", i["inspecting_state"], ident, year, "late")
        elif i["kind"] == "vd_evaluation" and i["reply"] in ("refused", "no_reply"):
            quota = quotas.get(("VD", inspected, year, "passive", ""), 0)
            if len(before) < quota:
                add("VD-IX-E2", inspected, ident, year, "breach")
        elif i["regime"] == "CFE":
            lead = 96 if i["kind"] in ("cfe_reduction", "cfe_certification") else 36
            sent = [
                n["sent_at"]
                for n in notes
                if n["kind"] == "inspection_notification" and n["event_id"] == ident
            ]
            if not sent or i["start_at"] - min(sent) < lead * hour:
                add("CFE-I10", i["inspecting_state"], ident, year, "breach")

    # Chapter III.
    replies = {n["in_reply_to"]: n for n in notes if n["kind"] == "unusual_activity_reply"}
    for n in notes:
        if n["kind"] != "unusual_activity_request":
            continue
        reply = replies.get(n["reference"])
        requested = n["recipients"]
        if reply is None:
            add("VD-III-1", requested, n["reference"], n["sent_at"].year, "breach")
        elif reply["sent_at"] - n["sent_at"] > 48 * hour:
            add("VD-III-1", requested, n["reference"], n["sent_at"].year, "late")

    # Open Skies.
    events: dict[tuple[str, str], Mapping[str, Any]] = {}
    for n in notes:
        if n["regime"] == "OST" and n["event_id"]:
            events[(n["kind"], n["event_id"])] = n
    flights = sorted(data["observation_flights"], key=lambda f: (f["eta_poe"], f["flight_id"]))
    for f in flights:
        fid, year = f["flight_id"], f["eta_poe"].year
        observer, observed = f["observing_state"], f["observed_state"]
        if f["eta_poe"] - f["notified_at"] < 72 * hour:
            add("OS-T1", observer, fid, year, "late")
        note, ack = (
            events.get(("flight_notification", fid)),
            events.get(("flight_acknowledgement", fid)),
        )
        if note is None or ack is None or ack["sent_at"] - note["sent_at"] > 24 * hour:
            add("OS-T2", observed, fid, year, "late")
        if f["flight_end_at"] and f["flight_end_at"] - f["eta_poe"] > 96 * hour:
            add("OS-T4", observer, fid, year, "breach")
        if f["report_at"] - f["departed_at"] > 7 * 24 * hour:
            add("OS-T13", observer, fid, year, "late")
        if f["distance_km"] and f["distance_km"] > f["max_distance_km"]:
            add("OS-DIST", observer, fid, year, "breach")
        if f["outcome"] == "prohibited" and not (f["curtailment_cause"] or f["restrictions"]):
            add("OS-PROHIBIT", observed, fid, year, "breach")

    holders = {m: h for h in ref.os_holders for m in h.members}

    def passive(state: str, year: int) -> tuple[str, int]:
        row = quotas.get(("OST", state, year, "passive", ""))
        if row is not None:
            return state, row
        h = holders[state]
        return h.holder, h.passive_quota

    active: dict[tuple[str, int], int] = defaultdict(int)
    for (regime, state, year, kind, _c), quota in quotas.items():
        if regime == "OST" and kind == "active":
            active[(state, year)] += quota
    pair_count: dict[tuple[str, str, int], int] = defaultdict(int)
    over_count: dict[tuple[str, int], int] = defaultdict(int)
    for f in flights:
        if not f["counts_against_quota"]:
            continue
        fid, year = f["flight_id"], f["eta_poe"].year
        observer, observed = f["observing_state"], f["observed_state"]
        key, passive_quota = passive(observed, year)
        pair_count[(observer, observed, year)] += 1
        cap = math.ceil(0.5 * min(active[(observer, year)], passive_quota))
        if pair_count[(observer, observed, year)] > cap:
            add("OS-Q6", observer, fid, year, "breach")
        over_count[(key, year)] += 1
        if over_count[(key, year)] > passive_quota:
            add("OS-OVERQUOTA", observed, fid, year, "positive")

    # CFE holdings.
    holdings = data["holdings"]
    units: dict[tuple[str, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for h in holdings:
        if h["source"] == "cfe" and h["unit"]:
            units[(h["state"], h["unit"], h["category"])].append(h)
    changes = [n for n in notes if n["kind"] == "holdings_change"]
    for (state, unit, category), rows in units.items():
        rows.sort(key=lambda h: h["as_of"])
        for prev, cur in itertools.pairwise(rows):
            if abs(cur["count"] - prev["count"]) < 0.10 * prev["count"]:
                continue
            mine = [n for n in changes if n["sender"] == state and unit in (n["remarks"] or "")]
            mine = [n for n in mine if n["sent_at"].date() >= cur["as_of"]]
            subject = f"{state}/{cur['as_of']}/{category}/cfe/{unit}"
            if not mine:
                add("CFE-X3", state, subject, cur["as_of"].year, "breach")
            elif min(n["sent_at"].date() for n in mine) > add_working_days(cur["as_of"], 5):
                add("CFE-X3", state, subject, cur["as_of"].year, "late")
    for h in holdings:
        if h["source"] != "cfe" or h["unit"]:
            continue
        for c in data["ceilings"]:
            if (c["regime"], c["state"], c["category"]) != ("CFE", h["state"], h["category"]):
                continue
            valid = c["valid_from"] <= h["as_of"] and (
                c["valid_to"] is None or h["as_of"] <= c["valid_to"]
            )
            if valid and h["count"] > c["ceiling"]:
                subject = f"{h['state']}/{h['as_of']}/{h['category']}/cfe/"
                add("CFE-VII-1", h["state"], subject, h["as_of"].year, "breach")

    # Reductions.
    for r in data["reductions"]:
        deadline, done = r["deadline"], r["completed_at"]
        late = (done is not None and done > deadline) or (done is None and deadline < HORIZON)
        if r["kind"] == "treaty" and late:
            add("CFE-R2", r["state"], r["reduction_id"], deadline.year, "breach")
        elif r["kind"] in ("unilateral", "withdrawal"):
            if late:
                add("RED-1", r["state"], r["reduction_id"], deadline.year, "warning")
            elif done is not None and done < deadline:
                add("RED-1", r["state"], r["reduction_id"], deadline.year, "positive")
    return out


def expected_findings() -> set[Finding]:
    return {(c.rule_id, c.state, c.subject_id, c.period, c.severity) for c in planted.findings()}


def assert_findings(found: set[Finding]) -> None:
    expected = expected_findings()
    missing, extra = sorted(expected - found), sorted(found - expected)
    assert not missing and not extra, f"missing planted: {missing}\nunplanted: {extra}"
    for case in planted.non_findings():
        assert not any(
            f[0] == case.rule_id and f[2] == case.subject_id and f[1] == case.state for f in found
        ), case


# --- pure tests on the generated rows ----------------------------------------------------


@pytest.fixture(scope="module")
def reference() -> Reference:
    return Reference.from_files()


@pytest.fixture(scope="module")
def data(reference: Reference) -> Any:
    return generate(reference)


def test_generation_is_deterministic(reference: Reference, data: Any) -> None:
    assert generate(reference) == data
    assert generate(reference, seed=7) != data


def test_rows_follow_the_contract(data: Any) -> None:
    for kind in contract.LOAD_ORDER:
        spec = contract.get(kind)
        for row in data.rows(kind):
            assert tuple(row) == spec.columns
            for f in spec.fields:
                value = row[f.name]
                if value is None:
                    continue
                if f.type == contract.TIMESTAMP:
                    assert isinstance(value, dt.datetime) and value.utcoffset() == dt.timedelta(0)
                elif f.type == contract.DATE:
                    assert type(value) is dt.date
                elif f.type == contract.VOCAB:
                    assert value in f.choices, (kind, f.name, value)


def test_size_is_moderate(data: Any) -> None:
    assert 15_000 <= data.total <= 30_000
    assert all(n > 0 for n in data.counts().values())


def test_every_state_and_region_has_data(reference: Reference, data: Any) -> None:
    active = {n["sender"] for n in data.notifications}
    active |= {h["state"] for h in data.holdings}
    assert active == set(reference.states)
    assert len({reference.region(s) for s in active}) == 10
    with_activities = {a["state"] for a in data.activities}
    no_forces = {"AND", "ISL", "LIE", "MCO", "SMR", "VAT"}
    assert with_activities == set(reference.states) - no_forces
    years = {a["start_date"].year for a in data.activities}
    assert years == set(YEARS)


def test_open_skies_flights_only_between_parties(reference: Reference, data: Any) -> None:
    columns = ("notified_at", "eta_poe", "arrived_at", "departed_at", "report_at")
    for f in data.observation_flights:
        for state in (f["observing_state"], f["observed_state"]):
            for column in columns:
                if f[column] is not None:
                    assert reference.is_party(state, "OST", f[column].date()), (f, state)
        involved = {f["observing_state"], f["observed_state"]}
        if "USA" in involved:
            assert f["report_at"] < dt.datetime(2020, 11, 22, tzinfo=UTC)
        if involved & {"RUS", "BLR"}:
            assert f["report_at"] < dt.datetime(2021, 12, 18, tzinfo=UTC)


def test_cfe_data_only_for_parties(reference: Reference, data: Any) -> None:
    for n in data.notifications:
        if n["regime"] == "CFE":
            assert reference.is_party(n["sender"], "CFE", n["sent_at"].date()), n
    for i in data.inspections:
        if i["regime"] == "CFE":
            for state in (i["inspecting_state"], i["inspected_state"]):
                assert reference.is_party(state, "CFE", i["start_at"].date()), i
    for h in data.holdings:
        if h["source"] == "cfe":
            assert reference.is_party(h["state"], "CFE", h["as_of"] - dt.timedelta(days=17))
    ceiling_states = {c["state"] for c in data.ceilings}
    assert "RUS" not in ceiling_states and len(ceiling_states) == 29


def test_references_resolve(data: Any) -> None:
    activity_ids = {a["activity_id"] for a in data.activities}
    events = {i["inspection_id"] for i in data.inspections}
    events |= {f["flight_id"] for f in data.observation_flights}
    references = {n["reference"] for n in data.notifications}
    for n in data.notifications:
        assert n["activity_id"] is None or n["activity_id"] in activity_ids
        assert n["event_id"] is None or n["event_id"] in events
        assert n["in_reply_to"] is None or n["in_reply_to"] in references
    for r in data.reductions:
        assert r["verified_by"] is None or r["verified_by"] in events


@pytest.mark.parametrize("seed", [2012, 7, 99])
def test_exactly_the_planted_findings(reference: Reference, seed: int) -> None:
    generated = generate(reference, seed=seed)
    rows = {kind: generated.rows(kind) for kind in contract.LOAD_ORDER}
    assert_findings(compute_findings(rows, reference))
    # Alternative readings find the same cases: refusals judged against the whole year's
    # accepted inspections; near-threshold figures looked for in every source.
    assert_findings(compute_findings(rows, reference, i2_whole_year=True))
    assert_findings(compute_findings(rows, reference, near_all_sources=True))


def test_planted_catalogue_is_consistent(reference: Reference) -> None:
    keys = [(c.rule_id, c.state, c.subject_id, c.period) for c in planted.PLANTED]
    assert len(keys) == len(set(keys))
    for case in planted.PLANTED:
        assert case.rule_id in planted.RULES
        assert case.severity in planted.SEVERITIES
        assert case.state in reference.states
        assert case.period.isdigit() and len(case.period) == 4
        assert case.subject_type in (
            "notification",
            "activity",
            "inspection",
            "observation_flight",
            "holding",
            "reduction",
        )
        assert case.subject_id or case.subject_type == "notification"
    for rule_id in planted.RULES:
        assert any(c.rule_id == rule_id for c in planted.findings()), rule_id


def test_docs_list_every_planted_case() -> None:
    doc = ROOT / "docs" / "demo-planted-cases.md"
    assert doc.read_text(encoding="utf-8") == planted.render_planted_markdown(), (
        "docs/demo-planted-cases.md is out of date; regenerate it with "
        "python -c 'from cbm.demo.planted import render_planted_markdown as r; "
        'open("docs/demo-planted-cases.md", "w").write(r())\''
    )


# --- the demo loaded into the database (once per backend) --------------------------------


class Loaded:
    def __init__(self, session: Session, first: DemoSummary, second: DemoSummary) -> None:
        self.session = session
        self.first = first
        self.second = second

    def rows(self) -> dict[str, list[dict[str, Any]]]:
        out = {}
        for kind in contract.LOAD_ORDER:
            spec = contract.get(kind)
            table = spec.model.__table__
            query = select(*(table.c[c] for c in spec.columns))
            out[kind] = [dict(r) for r in self.session.execute(query).mappings()]
        return out


@pytest.fixture(scope="module")
def loaded(engine: Engine) -> Iterator[Loaded]:
    with engine.connect() as conn:
        trans = conn.begin()
        session = Session(bind=conn, join_transaction_mode="create_savepoint")
        try:
            first = load_demo(session)
            second = load_demo(session)
            yield Loaded(session, first, second)
        finally:
            session.close()
            trans.rollback()


def test_load_writes_every_row(loaded: Loaded, data: Any) -> None:
    first = loaded.first
    assert set(first.results) == set(contract.LOAD_ORDER)
    for kind, result in first.results.items():
        assert not result.errors
        assert result.inserted == result.read == data.counts()[kind]
    assert first.seconds < 20
    assert first.lines()[-1].startswith(f"total: {data.total} rows")


def test_second_load_changes_nothing(loaded: Loaded) -> None:
    second = loaded.second
    assert second.inserted == 0 and second.updated == 0
    assert second.unchanged == loaded.first.inserted


def test_loaded_data_cover_every_state_and_region(loaded: Loaded) -> None:
    rows = loaded.rows()
    states = dict(loaded.session.execute(select(State.code, State.region_code)).all())
    senders = {n["sender"] for n in rows["notifications"]}
    assert senders == set(states)
    regions = set(loaded.session.scalars(select(Region.code)))
    assert {states[s] for s in senders} == regions and len(regions) == 10


def test_loaded_open_skies_respect_withdrawals(loaded: Loaded) -> None:
    for f in loaded.rows()["observation_flights"]:
        involved = {f["observing_state"], f["observed_state"]}
        last = f["report_at"]
        if "USA" in involved:
            assert last < dt.datetime(2020, 11, 22, tzinfo=UTC)
        if involved & {"RUS", "BLR"}:
            assert last < dt.datetime(2021, 12, 18, tzinfo=UTC)


def _subject_exists(rows: dict[str, list[dict[str, Any]]], case: planted.PlantedCase) -> bool:
    if case.subject_type == "holding":
        state, as_of, category, source, unit = case.subject_id.split("/", 4)
        return any(
            (h["state"], str(h["as_of"]), h["category"], h["source"], h["unit"] or "")
            == (state, as_of, category, source, unit)
            for h in rows["holdings"]
        )
    table, column = {
        "notification": ("notifications", "reference"),
        "activity": ("activities", "activity_id"),
        "inspection": ("inspections", "inspection_id"),
        "observation_flight": ("observation_flights", "flight_id"),
        "reduction": ("reductions", "reduction_id"),
    }[case.subject_type]
    return any(r[column] == case.subject_id for r in rows[table])


def test_planted_subjects_are_stored(loaded: Loaded) -> None:
    rows = loaded.rows()
    for case in planted.PLANTED:
        if case.subject_id:
            assert _subject_exists(rows, case), case
    # Missing annual submissions are really missing.
    kinds = {
        "VD-I-3": ("VD", "annual_exchange"),
        "VD-VII-1": ("VD", "annual_calendar"),
        "GEMI-3": ("GEMI", "annual_exchange"),
    }
    for case in planted.PLANTED:
        if not case.subject_id:
            regime, kind = kinds[case.rule_id]
            assert not any(
                n["regime"] == regime
                and n["kind"] == kind
                and n["sender"] == case.state
                and n["covers_year"] == int(case.period)
                for n in rows["notifications"]
            ), case


def test_database_reference_gives_the_same_data(loaded: Loaded, data: Any) -> None:
    assert generate(reference_from_session(loaded.session)) == data


def test_loaded_data_show_exactly_the_planted_findings(loaded: Loaded) -> None:
    reference = reference_from_session(loaded.session)
    assert_findings(compute_findings(loaded.rows(), reference))


def test_vocabularies_in_use(data: Any) -> None:
    """The demo exercises the main vocabularies (so pages and filters have something)."""
    assert {a["source"] for a in data.activities} >= {
        "notification",
        "calendar",
        "open_source",
        "inspection",
        "analyst",
    }
    assert {a["kind"] for a in data.activities} == set(vocab.ACTIVITY_KINDS)
    assert {i["kind"] for i in data.inspections} >= {
        "vd_inspection",
        "vd_evaluation",
        "cfe_declared_site",
        "cfe_reduction",
    }
    assert {i["reply"] for i in data.inspections} == {"accepted", "refused", "force_majeure"}
    assert {f["outcome"] for f in data.observation_flights} == {
        "completed",
        "prohibited",
        "declined",
        "curtailed",
    }
    assert {h["source"] for h in data.holdings} == {"vd_aemi", "cfe", "gemi"}
    assert {r["kind"] for r in data.reductions} == set(vocab.REDUCTION_KINDS)
