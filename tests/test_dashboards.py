"""The dashboards blueprint: pages with and without data, CSV per chart, filters, 404s.

Trust scores are inserted as rows (``TrustRun``/``TrustScore``) the way the trust
computation stores them; records go through the services. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from urllib.parse import parse_qsl

import pytest
from factories import make
from sqlalchemy.orm import Session

from cbm.models import Finding, Region, State, TrustRun, TrustScore
from cbm.services.records import Actor, upsert_records
from dashboards import charts as ch
from dashboards import queries as dq

SIGNALS = dq.SIGNALS


def csv_rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


@pytest.fixture()
def scored(session: Session) -> dict:
    """A finished trust run: every region scored in 2022 and 2023 except Nordic in 2023
    (no data); the Baltic States and Germany per signal; and a running run that must
    never be shown."""
    run = TrustRun(
        method_version="1",
        status="succeeded",
        started_at=dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
        finished_at=dt.datetime(2024, 1, 2, 0, 1, tzinfo=dt.UTC),
    )
    later = TrustRun(method_version="1", status="running")
    session.add_all([run, later])
    session.flush()
    regions = [code for (code,) in session.query(Region.code).order_by(Region.code)]
    rows = []
    for i, code in enumerate(regions):
        for year, score in ((2022, 60.0 + i), (2023, 70.0 + i)):
            if code == "nordic" and year == 2023:
                score = None
            change = None if score is None or year == 2022 else 10.0
            rows.append(
                TrustScore(
                    run_id=run.id,
                    level="region",
                    subject=code,
                    year=year,
                    signal="index",
                    score=score,
                    items=5,
                    change=change,
                    worst="LVA" if code == "baltic" else None,
                )
            )
    for year in (2022, 2023):
        rows.append(
            TrustScore(
                run_id=run.id,
                level="osce",
                subject="OSCE",
                year=year,
                signal="index",
                score=75.0,
                items=50,
            )
        )
    finding = Finding(
        finding_key="test|LVA|2023",
        rule_id="VD-I-3",
        regime="VD",
        severity="late",
        status="open",
        state="LVA",
        subject_type="notification",
        subject_id="N-LVA-2023",
        period="2023",
        due_at=dt.datetime(2023, 12, 15, 23, 59, 59, tzinfo=dt.UTC),
        summary="LVA sent its annual exchange late.",
    )
    session.add(finding)
    session.flush()
    for state, base in (("EST", 90.0), ("LTU", 80.0), ("LVA", 40.0), ("DEU", 85.0)):
        for year in (2022, 2023):
            for sig in SIGNALS:
                score = None if sig == "reductions" else base + (5 if year == 2023 else 0)
                details = None
                if state == "LVA" and sig == "timeliness" and year == 2023:
                    details = {
                        "findings": [{"id": finding.id, "rule_id": "VD-I-3", "severity": "late"}],
                        "records": [{"subject_type": "notification", "subject_id": "N-LVA-2023"}],
                        "findings_more": 0,
                        "records_more": 2,
                    }
                rows.append(
                    TrustScore(
                        run_id=run.id,
                        level="state",
                        subject=state,
                        year=year,
                        signal=sig,
                        score=score,
                        items=3,
                        change=None if score is None or year == 2022 else 5.0,
                        details=details,
                    )
                )
    # The running run has a nonsense score that must never appear.
    rows.append(
        TrustScore(
            run_id=later.id,
            level="region",
            subject="baltic",
            year=2023,
            signal="index",
            score=1.0,
            items=1,
        )
    )
    session.add_all(rows)
    session.commit()
    return {"run": run, "regions": regions, "finding_id": finding.id}


# --------------------------------------------------------------------------------------
# empty install
# --------------------------------------------------------------------------------------


def test_nav_has_dashboards(signed_in) -> None:
    html = signed_in("viewer").get("/").get_data(as_text=True)
    assert 'href="/dashboards/"' in html and ">Dashboards<" in html


def test_empty_install_explains_what_to_do(signed_in) -> None:
    client = signed_in("viewer")
    response = client.get("/dashboards/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'data-state="no-trust"' in html
    assert "cbm demo load" in html
    assert "cbm check" in html
    assert "osce-map" not in html  # no map of nothing
    for path in ("/dashboards/regions/baltic", "/dashboards/states/DEU", "/dashboards/method"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert 'data-state="no-trust"' in page.get_data(as_text=True), path


def test_empty_csv_has_the_header_only(signed_in) -> None:
    response = signed_in("viewer").get("/dashboards/regions.csv")
    assert response.status_code == 200
    assert csv_rows(response) == [
        ["region", "region_name", "year", "index", "change", "worst_member", "items"]
    ]


# --------------------------------------------------------------------------------------
# with scores
# --------------------------------------------------------------------------------------


def test_overview_map_table_and_latest_findings(signed_in, scored) -> None:
    response = signed_in("viewer").get("/dashboards/?year=2023")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    shapes = re.findall(r'<a href="([^"]+)" class="osce-map__region" data-region="([^"]+)"', html)
    assert len(shapes) == 10
    assert {code for _, code in shapes} == set(scored["regions"])
    assert all(href.startswith("/dashboards/regions/") for href, _ in shapes)
    # Baltic is 70 + its position; Nordic has no data in 2023: hatched and labelled.
    i = scored["regions"].index("baltic")
    assert f'aria-label="Baltic: index {70 + i:.0f} in 2023' in html
    assert 'aria-label="Nordic: index no data in 2023"' in html
    assert "osce-map__fill score--none" in html
    assert 'data-score="no data"' in html
    # The running run's score of 1 is never shown.
    assert 'aria-label="Baltic: index 1 ' not in html
    # Sparklines, the latest finding, the method link.
    assert html.count('class="spark"') == 10
    assert f'href="/findings/{scored["finding_id"]}"' in html
    assert 'href="/dashboards/method"' in html
    # Charts hand their options over as JSON, never as inline script.
    assert '<script type="application/json" data-chart-options=' in html
    assert re.search(r"<script>(?!</script>)", html) is None


def test_year_filter_is_in_the_url_and_the_csv(signed_in, scored) -> None:
    client = signed_in("viewer")
    html = client.get("/dashboards/?year=2022").get_data(as_text=True)
    assert '<option value="2022" selected>' in html
    assert 'href="/dashboards/regions.csv?year=2022"' in html
    rows = csv_rows(client.get("/dashboards/regions.csv?year=2022"))
    assert rows[0] == ["region", "region_name", "year", "index", "change", "worst_member", "items"]
    baltic = next(r for r in rows[1:] if r[0] == "baltic")
    i = scored["regions"].index("baltic")
    assert baltic[2:5] == ["2022", f"{60 + i:.1f}", ""]
    rows = csv_rows(client.get("/dashboards/regions.csv?year=2023"))
    baltic = next(r for r in rows[1:] if r[0] == "baltic")
    assert baltic[2:6] == ["2023", f"{70 + i:.1f}", "10.0", "LVA"]
    nordic = next(r for r in rows[1:] if r[0] == "nordic")
    assert nordic[3] == ""  # no data is empty, never 0
    # Default year: the latest scored one.
    assert '<option value="2023" selected>' in client.get("/dashboards/").get_data(as_text=True)


def test_bad_filters_are_explained(signed_in, scored) -> None:
    client = signed_in("viewer")
    for path in (
        "/dashboards/?year=abc",
        "/dashboards/regions/baltic?signal=nope",
        "/dashboards/states/DEU?year=99999",
        "/dashboards/trend.csv?year=x",
    ):
        response = client.get(path)
        assert response.status_code == 400, path
        assert 'data-state="invalid-filters"' in response.get_data(as_text=True)


def test_csv_endpoints_answer_with_their_chart_data(signed_in, scored) -> None:
    client = signed_in("viewer")
    expected = {
        "/dashboards/trend.csv": ["region", "region_name", "year", "index"],
        "/dashboards/movers.csv?year=2023": [
            "state",
            "state_name",
            "year",
            "index",
            "change",
            "previous_index",
        ],
        "/dashboards/findings.csv": [
            "finding",
            "rule",
            "severity",
            "status",
            "state",
            "period",
            "due",
            "summary",
        ],
        "/dashboards/regions/baltic/heatmap.csv?year=2023": ["subject", "name", "year", *SIGNALS],
        "/dashboards/regions/baltic/trend.csv?signal=timeliness": [
            "subject",
            "name",
            "year",
            "signal",
            "score",
        ],
        "/dashboards/regions/baltic/activities.csv": [
            "activity_id",
            "source",
            "state",
            "name",
            "kind",
            "start_date",
            "end_date",
            "troops",
        ],
        "/dashboards/states/LVA/signals.csv": [
            "state",
            "year",
            "signal",
            "score",
            "change",
            "items",
        ],
        "/dashboards/states/DEU/quotas.csv?year=2023": [
            "year",
            "regime",
            "kind",
            "counterpart",
            "shared_by",
            "quota",
            "used",
            "remaining",
        ],
    }
    for path, header in expected.items():
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.mimetype == "text/csv", path
        assert response.headers["Content-Disposition"].startswith("attachment; filename="), path
        assert csv_rows(response)[0] == header, path
    heat = csv_rows(client.get("/dashboards/regions/baltic/heatmap.csv?year=2023"))
    assert [r[0] for r in heat[1:]] == ["EST", "LTU", "LVA", "baltic"]
    lva = heat[3]
    assert lva[3] == "45.0" and lva[3 + SIGNALS.index("reductions")] == ""
    trend = csv_rows(client.get("/dashboards/regions/baltic/trend.csv?signal=timeliness"))
    assert {r[3] for r in trend[1:]} == {"timeliness"}
    assert ["LVA", "Latvia", "2023", "timeliness", "45.0"] in trend
    movers = csv_rows(client.get("/dashboards/movers.csv?year=2023"))
    assert {r[0] for r in movers[1:]} == {"EST", "LTU", "LVA", "DEU"}
    for path in (
        "/dashboards/nope.csv",
        "/dashboards/regions/baltic/nope.csv",
        "/dashboards/states/DEU/nope.csv",
    ):
        assert client.get(path).status_code == 404, path


def test_region_page_heatmap_links_to_states_and_evidence(signed_in, scored) -> None:
    client = signed_in("viewer")
    response = client.get("/dashboards/regions/baltic?year=2023&signal=timeliness")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'data-test="heatmap"' in html
    assert 'href="/dashboards/states/LVA?year=2023#signal-timeliness"' in html
    assert 'href="/dashboards/regions/baltic/trend.csv?year=2023&amp;signal=timeliness"' in html
    assert '<option value="timeliness" selected>' in html
    # Latvia's finding of 2023 is listed with a link.
    assert f'href="/findings/{scored["finding_id"]}"' in html


def test_state_page_lists_the_evidence_of_a_signal(signed_in, scored) -> None:
    client = signed_in("viewer")
    response = client.get("/dashboards/states/lva?year=2023")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "<h1>Latvia" in html
    assert f'href="/findings/{scored["finding_id"]}" data-test="evidence-finding"' in html
    assert 'data-test="evidence-record"' in html and "N-LVA-2023" in html
    assert "and 2 more" in html
    for key in ch_keys():
        assert f'data-chart-figure="{key}"' in html, key


def ch_keys() -> tuple[str, ...]:
    from dashboards.views import STATE_CHARTS

    return tuple(STATE_CHARTS)


def test_state_quotas_count_visits_and_group_holders(signed_in, session) -> None:
    actor = Actor()
    rows = {
        "quotas": [
            make("quotas", 1, year="2019", state="RUS", regime="VD", quota="3"),
            make(
                "quotas", 2, year="2019", state="DEU", kind="active", counterpart="RUS", quota="2"
            ),
        ],
        "inspections": [make("inspections", 1, requested_at="2019-03-01T09:00:00Z")],
        "observation_flights": [make("observation_flights", 1)],
    }
    for kind, data in rows.items():
        result = upsert_records(session, kind, data, actor=actor)
        assert result.ok, result.errors
    session.commit()
    client = signed_in("viewer")
    quotas = csv_rows(client.get("/dashboards/states/RUS/quotas.csv?year=2019"))
    by_key = {(r[1], r[2], r[3]): r for r in quotas[1:]}
    # VD passive: the quota of 3, one inspection received that counts against it.
    assert by_key[("VD", "passive", "")][5:] == ["3", "1", "2"]
    # Open Skies passive: RUS shares the BY-RU quota (os_quota_holders).
    ost = by_key[("OST", "passive", "")]
    assert ost[4] == "BY-RU" and ost[6] == "1"
    deu = csv_rows(client.get("/dashboards/states/DEU/quotas.csv?year=2019"))
    active = next(r for r in deu[1:] if r[2] == "active")
    assert active[3:] == ["RUS", "", "2", "1", "1"]
    html = client.get("/dashboards/states/RUS?year=2019").get_data(as_text=True)
    assert "shared by BY-RU" in html
    verification = csv_rows(client.get("/dashboards/states/RUS/verification.csv"))
    assert ["RUS", "2019", "1", "0", "1", "0"] in verification


def test_unknown_region_and_state_are_404(signed_in) -> None:
    client = signed_in("viewer")
    for path in (
        "/dashboards/regions/atlantis",
        "/dashboards/states/XXX",
        "/dashboards/regions/atlantis/heatmap.csv",
        "/dashboards/states/XXX/quotas.csv",
    ):
        assert client.get(path).status_code == 404, path


def test_method_page_renders_the_published_method(signed_in) -> None:
    html = signed_in("viewer").get("/dashboards/method").get_data(as_text=True)
    from cbm.trust.method import METHOD_VERSION, SIGNALS, WEIGHTS

    assert f'data-test="method-version">{METHOD_VERSION}<' in html
    for signal in SIGNALS:
        assert f'id="signal-{signal.id}"' in html
        assert signal.title in html
    assert html.count('<tr><th scope="row"><a href="#signal-') == len(WEIGHTS)
    assert "Known limitations" in html


def test_anonymous_visitors_sign_in_first(client) -> None:
    response = client.get("/dashboards/states/DEU")
    assert response.status_code == 302
    assert "/login?next=" in response.location


def test_score_bins_and_no_data() -> None:
    assert ch.score_bin(None) == "none"
    assert ch.score_bin(0) == "b0"
    assert ch.score_bin(100) == "b9"
    assert ch.score_bin(49.9) == "b0" and ch.score_bin(50) == "b1"
    assert ch.score_text(None) == "no data"
    spark = ch.sparkline([50.0, None, 70.0], [2021, 2022, 2023])
    assert len(spark.paths) == 2  # the gap stays a gap
    assert "2022: no data" in spark.label
    option = ch.line_option("t", [2022, 2023], [("a", [None, 50.0], None)])
    assert option["series"][0]["data"][0]["value"] is None


def test_map_geometry_has_every_region(session) -> None:
    from dashboards.views import map_geometry

    geo = map_geometry()
    regions = {code for (code,) in session.query(Region.code)}
    assert set(geo["regions"]) == regions
    members = {s for shape in geo["regions"].values() for s in shape["states"]}
    states = {code for (code,) in session.query(State.code)}
    assert members | set(geo["states_without_shape"]) == states


# --------------------------------------------------------------------------------------
# the cache of page data (dashboards.cache)
# --------------------------------------------------------------------------------------


def test_page_data_is_shared_until_the_data_version_changes(signed_in, scored, session) -> None:
    from cbm.services.findings import acknowledge
    from dashboards.cache import data_version

    viewer, other = signed_in("viewer"), signed_in("viewer")
    before = viewer.get("/dashboards/?year=2023").get_data(as_text=True)
    assert f'data-finding="{scored["finding_id"]}"' in before
    version = data_version(session)
    # A write that bypasses runs, finding events and the audit log is not seen: the page
    # data is computed once per data version and shared by every user ...
    session.query(Finding).filter_by(id=scored["finding_id"]).update(
        {"summary": "Changed behind the tracker's back."}
    )
    session.commit()
    assert data_version(session) == version
    html = other.get("/dashboards/?year=2023").get_data(as_text=True)
    assert "Changed behind" not in html and "LVA sent its annual exchange late." in html
    # ... and a finding action (a finding event) is a new version: pages are recomputed.
    acknowledge(session, scored["finding_id"], None, "Seen.")
    session.commit()
    assert data_version(session) != version
    html = viewer.get("/dashboards/?year=2023").get_data(as_text=True)
    assert "Changed behind the tracker&#39;s back." in html


def test_a_new_trust_run_and_a_record_edit_invalidate_cached_pages(
    signed_in, scored, session
) -> None:
    client = signed_in("viewer")
    quota_cells = '<td class="num">7</td><td class="num">0</td><td class="num">7</td>'
    html = client.get("/dashboards/states/LVA?year=2023").get_data(as_text=True)
    assert f"Trust scores of run #{scored['run'].id}" in html
    assert quota_cells not in html
    newer = TrustRun(
        method_version="1",
        status="succeeded",
        started_at=dt.datetime(2024, 2, 1, tzinfo=dt.UTC),
        finished_at=dt.datetime(2024, 2, 1, 0, 1, tzinfo=dt.UTC),
    )
    session.add(newer)
    session.commit()
    html = client.get("/dashboards/states/LVA?year=2023").get_data(as_text=True)
    assert f"Trust scores of run #{newer.id}" in html
    # An edit through the record services writes an audit event: a new version.
    result = upsert_records(
        session,
        "quotas",
        [make("quotas", 1, year="2023", state="LVA", regime="VD", quota="7")],
        actor=Actor(),
    )
    assert result.ok, result.errors
    session.commit()
    quotas = csv_rows(client.get("/dashboards/states/LVA/quotas.csv?year=2023"))
    assert any(r[1] == "VD" and r[5] == "7" for r in quotas[1:])
    html = client.get("/dashboards/states/LVA?year=2023").get_data(as_text=True)
    assert quota_cells in html


def test_page_cache_is_a_bounded_lru_keyed_by_version() -> None:
    from dashboards.cache import PageCache

    cache = PageCache(size=2)
    built: list[str] = []

    def build(name: str):
        return lambda: built.append(name) or name

    assert cache.get_or_build("a", (1,), build("a")) == "a"
    assert cache.get_or_build("a", (1,), build("a2")) == "a"  # a hit
    assert cache.get_or_build("b", (1,), build("b")) == "b"
    assert cache.get_or_build("a", (1,), build("a3")) == "a"  # a is now the newest
    assert cache.get_or_build("c", (1,), build("c")) == "c"  # evicts b, the oldest
    assert len(cache) == 2
    assert cache.get_or_build("b", (1,), build("b2")) == "b2"
    assert cache.get_or_build("c", (2,), build("c2")) == "c2"  # a new version: rebuilt
    assert built == ["a", "b", "c", "b2", "c2"]
    off = PageCache(size=0)
    assert off.get_or_build("a", (1,), build("x")) == "x" and len(off) == 0


def test_every_dashboard_links_its_trust_scores_download(signed_in, scored, session) -> None:
    """The numbers behind every chart, in one file per page: the overview's year, the
    region's or the State's scores, through the export of ``cbm export trust_scores``."""
    import html as html_lib

    from cbm.services.export_lists import TRUST_COLUMNS, build_job, iter_bytes

    client = signed_in("viewer")
    pages = {
        "/dashboards/?year=2023": {"year": "2023"},
        "/dashboards/regions/baltic?year=2023": {
            "level": "region",
            "subject": "baltic",
            "year": "2023",
        },
        "/dashboards/states/LVA?year=2023": {"level": "state", "state": "LVA", "year": "2023"},
    }
    for page, expected in pages.items():
        body = client.get(page).get_data(as_text=True)
        match = re.search(r'<a href="([^"]+)" data-test="trust-scores-csv"', body)
        assert match, f"{page} has no trust scores download"
        url = html_lib.unescape(match.group(1))
        path, _, query = url.partition("?")
        assert path == "/dashboards/trust_scores.csv", url
        assert dict(parse_qsl(query)) == expected, url
        response = client.get(url)
        assert response.status_code == 200 and response.mimetype == "text/csv", url
        rows = csv_rows(response)
        assert tuple(rows[0]) == TRUST_COLUMNS
        assert len(rows) > 1, f"{url}: no scores"
        year = TRUST_COLUMNS.index("year")
        assert {r[year] for r in rows[1:]} == {"2023"}, url
        if "level" in expected:
            level, subject = TRUST_COLUMNS.index("level"), TRUST_COLUMNS.index("subject")
            want = expected.get("subject") or expected["state"]
            assert {(r[level], r[subject]) for r in rows[1:]} == {(expected["level"], want)}
        # The same bytes as the service gives for those filters.
        job = build_job(session, "trust_scores", expected)
        assert response.get_data() == b"".join(iter_bytes(session, job)), url
    bad = client.get("/dashboards/trust_scores.csv?year=20x3")
    assert bad.status_code == 400 and "year" in bad.get_data(as_text=True)
