"""The dashboards in a real browser, on the demo data (checked and scored).

Every page is loaded by the ``page`` fixture, which refuses any request not addressed to
the live server and fails the test if a page tried one, logged a console error (a CSP
violation is one) or raised a script error. Each test saves full-page screenshots (see
``shots`` in conftest.py; CI keeps them under ``test-artifacts/screenshots``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from e2e.conftest import ACCOUNTS, PASSWORD, LiveServer, load_demo_and_score, serve

pytestmark = pytest.mark.browser

REGIONS = 10


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """This module's server holds the demo data, a check's findings and trust scores."""
    with serve(tmp_path_factory, load_demo_and_score) as server:
        yield server


def sign_in_as_viewer(page: Any) -> None:
    username = next(u for u, (role, _) in ACCOUNTS.items() if role == "viewer")
    page.goto("/login?next=/dashboards/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/dashboards/")


def wait_for_charts(page: Any) -> None:
    page.wait_for_selector("html[data-charts-ready]", state="attached")


def test_overview_renders_a_map_with_every_region(page: Any, shots: Any) -> None:
    sign_in_as_viewer(page)
    wait_for_charts(page)
    assert page.get_by_role("heading", name="Trust across the OSCE area").is_visible()
    regions = page.locator("svg[data-test=osce-map] a[data-region]")
    assert regions.count() == REGIONS
    codes = {regions.nth(i).get_attribute("data-region") for i in range(REGIONS)}
    assert len(codes) == REGIONS
    for i in range(REGIONS):  # each a link with a name a screen reader reads out
        label = regions.nth(i).get_attribute("aria-label") or ""
        assert ": index " in label, label
        assert regions.nth(i).locator("path.osce-map__fill").count() == 1
    assert page.locator("table[data-chart-table=regions] tbody tr").count() == REGIONS
    assert page.locator("svg.spark").count() == REGIONS
    # The ECharts figures drew (as SVG), and each has its table and its CSV link.
    assert int(page.get_attribute("html", "data-charts-ready") or 0) >= 2
    assert page.locator("[data-chart][data-drawn=true] svg").count() >= 2
    for key in ("trend", "movers"):
        figure = page.locator(f"[data-chart-figure={key}]")
        assert figure.locator("details.chart__table table").count() == 1
        assert figure.locator(f"a[data-test=csv-{key}]").count() == 1
    assert page.locator("a[data-test=finding-link]").count() > 0
    shots(page, "overview")
    # Keyboard: the regions of the map are reachable with Tab.
    page.locator("svg[data-test=osce-map] a[data-region]").first.focus()
    focused = page.evaluate("document.activeElement.getAttribute('data-region')")
    assert focused


def test_clicking_a_region_opens_its_page(page: Any, shots: Any) -> None:
    sign_in_as_viewer(page)
    region = page.locator("svg[data-test=osce-map] a[data-region=baltic]")
    region.click()
    page.wait_for_url("**/dashboards/regions/baltic**")
    wait_for_charts(page)
    assert page.get_by_role("heading", name="Baltic", exact=True).is_visible()
    heat = page.locator("table[data-test=heatmap]")
    assert heat.locator("tbody tr").count() == 3 + 1  # EST, LTU, LVA and the region
    assert page.locator("[data-chart=activities][data-drawn=true] svg").count() == 1
    shots(page, "region")
    # A heatmap cell leads to the State page, at the signal's evidence.
    heat.locator("tbody tr").first.locator("td.score a").first.click()
    page.wait_for_url("**/dashboards/states/**")
    wait_for_charts(page)
    assert page.locator("table[data-test=signals]").is_visible()
    shots(page, "state-from-heatmap")


def test_a_state_page_shows_its_quotas(page: Any, shots: Any) -> None:
    sign_in_as_viewer(page)
    page.goto("/dashboards/states/DEU?year=2018")
    wait_for_charts(page)
    assert page.get_by_role("heading", name="Germany").is_visible()
    quotas = page.locator("[data-chart-figure=quotas]")
    assert quotas.locator("[data-chart=quotas][data-drawn=true] svg").count() == 1
    table = quotas.locator("table[data-chart-table=quotas]")
    rows = table.locator("tbody tr")
    assert rows.count() > 0
    texts = " ".join(rows.all_text_contents())
    assert "passive" in texts and "OST" in texts
    quotas.locator("summary").click()
    assert table.is_visible()
    for key in ("calendar", "findings", "submissions", "verification", "holdings", "reductions"):
        assert page.locator(f"[data-chart-figure={key}]").count() == 1, key
    shots(page, "state")
    # A group quota holder (Belarus shares the BY-RU Open Skies quota).
    page.goto("/dashboards/states/BLR?year=2015")
    wait_for_charts(page)
    assert "BY-RU" in page.locator("[data-chart-figure=quotas]").inner_text()
    shots(page, "state-group-quota")


def test_the_csv_link_of_a_chart_downloads_its_data(page: Any, shots: Any) -> None:
    sign_in_as_viewer(page)
    page.goto("/dashboards/regions/central_europe?year=2019")
    wait_for_charts(page)
    link = page.locator("a[data-test=csv-activities]")
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename == "cbm-central_europe-activities-2019.csv"
    text = Path(download.path()).read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == [
        "activity_id",
        "source",
        "state",
        "name",
        "kind",
        "start_date",
        "end_date",
        "troops",
    ]
    table = page.locator("table[data-chart-table=activities] tbody tr")
    assert len(rows) - 1 == table.count() > 0
    assert all(r[5].startswith("2019-") for r in rows[1:])
    assert urlsplit(link.get_attribute("href") or "").query == "year=2019"


def test_method_page_and_no_request_leaves_the_server(page: Any, shots: Any) -> None:
    sign_in_as_viewer(page)
    page.goto("/dashboards/method")
    assert page.locator("[data-test=method-version]").inner_text().strip()
    assert page.locator("table[data-test=method-weights] tbody tr").count() == 7
    shots(page, "method")
    # The ``page`` fixture fails this test if any page above asked another host.
