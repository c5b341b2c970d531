"""Every list page has a working download (issue #7, "every list page has a working CSV
download"), found from the app's URL map rather than a hand-kept list of exports.

Each GET page of the URL map is a list page (in :data:`LIST_PAGES`, with the role it needs
and a filter that narrows the seeded data), a page of one thing (its address ends in a
variable: a record, a run, a rule …), a form (it takes POST), or one of the few pages in
:data:`NOT_LISTS`. A new page that is none of these fails
:func:`test_every_page_of_the_url_map_is_classified` until it is given an export (through
``build_job``) and an entry here, or a reason in :data:`NOT_LISTS`.

For every list page, signed in with the role it needs: the page's Download CSV link is
followed; it answers 200, ``text/csv``, the list's columns in their order; the page's
filter is in the link and in the export (``X-Export-Filter``), and the filtered rows are
the ones the service gives for that filter: some, but fewer than without it. The XLSX and
JSON buttons of the same page give the same rows.

Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from factories import make
from sqlalchemy.orm import Session

from cbm import contract
from cbm.models import CheckRun, Finding, ImportRun
from cbm.services import sources as source_service
from cbm.services.export_lists import build_job, iter_bytes
from cbm.services.records import upsert_records


@dataclass(frozen=True)
class ListPage:
    """A list page: where it is, who may read it, what it exports and a filter to try."""

    path: str
    role: str
    kind: str
    #: Query-string filters that keep some seeded rows and drop others (None: the page
    #: has no filter).
    filters: dict[str, str] | None = None
    #: Arguments of both the whole and the filtered list (a window of dates).
    base: dict[str, str] = field(default_factory=dict)


def _record_filter(kind: str) -> dict[str, str]:
    """A filter that keeps the first seeded record of ``kind`` only: a search for its
    identifier, or (for files keyed by State and date) the year of record 1 (2001)."""
    spec = contract.get(kind)
    one, two = make(kind, 1), make(kind, 2)
    for name in spec.key:
        if one[name] != two[name] and spec.field(name).type == "str":
            return {"q": one[name]}
    return {"year": "2001"}


#: endpoint → the list pages it serves (records: one per contract file).
LIST_PAGES: dict[str, list[ListPage]] = {
    "records.list_records": [
        ListPage(f"/records/{kind}/", "viewer", kind, _record_filter(kind))
        for kind in contract.FILES
    ],
    "runs.index": [ListPage("/runs/", "viewer", "runs", {"status": "failed"})],
    "findings.index": [ListPage("/findings", "viewer", "findings", {"severity": "breach"})],
    "rules.index": [ListPage("/rules", "viewer", "rules", {"regime": "OST"})],
    "checks.index": [ListPage("/checks", "viewer", "checks", {"status": "failed"})],
    "deadlines.index": [
        ListPage(
            "/deadlines",
            "viewer",
            "deadlines",
            {"state": "DEU"},
            base={"from": "2024-01-01", "days": "366"},
        )
    ],
    "admin.audit": [ListPage("/admin/audit", "admin", "audit", {"entity_type": "quotas"})],
    "admin.users": [ListPage("/admin/users", "admin", "users", {"role": "analyst"})],
    "sources.index": [ListPage("/admin/sources", "admin", "sources", {"status": "disabled"})],
    "sources.jobs": [ListPage("/admin/jobs", "admin", "jobs", None)],
}

#: GET pages that are not lists, and why. Keep it short: a list belongs in LIST_PAGES.
NOT_LISTS: dict[str, str] = {
    "main.overview": "the home page: counts and links, no rows",
    "account.index": "one's own account (password, calendar link, own API tokens)",
    "admin.index": "redirects to the users",
    "records.index": "the index of the record lists (with the all-sheets workbook download)",
    "dashboards.overview": "charts; each chart has its own CSV",
    "dashboards.method": "the trust method's text",
    "health.healthz": "a health probe",
    "auth.login": "the sign-in form",
}
#: Addresses that are downloads or assets, not pages.
FILE_SUFFIX = re.compile(r"\.(csv|ics|json|xlsx)$")


def _pages(app) -> list[Any]:
    out = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint.endswith("static"):
            continue
        if rule.rule.startswith("/api/") or FILE_SUFFIX.search(rule.rule):
            continue
        out.append(rule)
    return out


def _is_detail(rule: Any) -> bool:
    """A page of one thing: its address ends in a variable (``/runs/<int:run_id>``)."""
    return bool(re.search(r"<[^>]+>$", rule.rule))


def test_every_page_of_the_url_map_is_classified(app) -> None:
    unclassified = []
    for rule in _pages(app):
        if rule.endpoint in LIST_PAGES or rule.endpoint in NOT_LISTS:
            continue
        if "POST" in rule.methods or _is_detail(rule):
            continue
        unclassified.append(f"{rule.rule} ({rule.endpoint})")
    assert not unclassified, (
        "pages that are neither a list with an export nor an allowed non-list page "
        f"(give each a build_job export and an entry in LIST_PAGES): {unclassified}"
    )
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert set(LIST_PAGES) <= endpoints, set(LIST_PAGES) - endpoints
    assert set(NOT_LISTS) <= endpoints, set(NOT_LISTS) - endpoints
    # A list page is not hidden among the details: the ones listed are pages of the map.
    assert not set(LIST_PAGES) & set(NOT_LISTS)


@pytest.fixture()
def seeded(session: Session, make_user) -> None:
    """A few rows for every list, so that each page's filter keeps some and drops some."""
    from cbm.compliance.registry import all_rules

    make_user("analyst", "seeded-analyst")
    for kind in contract.LOAD_ORDER:
        result = upsert_records(session, kind, [make(kind, n) for n in (1, 2, 3)])
        assert result.errors == [], (kind, result.errors)
    session.add_all(
        [
            ImportRun(importer="csv", source_name="feed-a", kind="activities", status="succeeded"),
            ImportRun(importer="csv", source_name="feed-b", kind="quotas", status="failed"),
        ]
    )
    rule_ids = list(all_rules())[:2]
    now = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    for n, (rule_id, severity) in enumerate(zip(rule_ids, ("breach", "late"), strict=True)):
        rule = all_rules()[rule_id]
        session.add(
            Finding(
                finding_key=f"seeded-{n}",
                rule_id=rule_id,
                regime=rule.regime,
                severity=severity,
                state="DEU",
                period="2024",
                due_at=now,
                first_detected_at=now,
                last_detected_at=now,
                summary=f"seeded finding {n}",
            )
        )
    session.add_all(
        [
            CheckRun(trigger="cli", status="succeeded", started_at=now, finished_at=now),
            CheckRun(trigger="nightly", status="failed", started_at=now, message="boom"),
        ]
    )
    source_service.add_source(session, "feed-on", "/srv/cbm/drop/a/*.csv")
    source_service.add_source(session, "feed-off", "/srv/cbm/drop/b/*.csv", enabled=False)
    session.commit()


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def _link(html: str, test: str) -> str:
    match = re.search(rf'href="([^"]+)" data-test="{test}"', html)
    assert match, f"no {test} link"
    return match.group(1).replace("&amp;", "&")


def _cases() -> list[Any]:
    return [
        pytest.param(endpoint, page, id=f"{endpoint}:{page.kind}")
        for endpoint, pages in LIST_PAGES.items()
        for page in pages
    ]


@pytest.mark.parametrize(("endpoint", "page"), _cases())
def test_every_list_page_downloads_what_it_lists(
    signed_in, session: Session, seeded, endpoint: str, page: ListPage
) -> None:
    client = signed_in(page.role)
    expected_columns = list(build_job(session, page.kind, {}).columns)
    # Unfiltered: the download of the page as it opens.
    base = "&".join(f"{k}={v}" for k, v in page.base.items())
    shown = client.get(f"{page.path}?{base}" if base else page.path)
    assert shown.status_code == 200, (page.path, shown.status_code)
    href = _link(shown.get_data(as_text=True), "download-csv")
    everything = client.get(href)
    assert everything.status_code == 200, (href, everything.get_data(as_text=True)[:300])
    assert everything.mimetype == "text/csv"
    assert everything.headers["X-Export-Kind"] == page.kind
    all_rows = _rows(everything.get_data())
    assert all_rows[0] == expected_columns
    assert int(everything.headers["X-Export-Rows"]) == len(all_rows) - 1
    if page.filters is None:
        assert len(all_rows) > 1, f"{page.kind}: nothing seeded to export"
        return
    # Filtered: the page's filter travels in the link and into the export.
    wanted = {**page.base, **page.filters}
    query = "&".join(f"{k}={v}" for k, v in wanted.items())
    filtered_page = client.get(f"{page.path}?{query}")
    assert filtered_page.status_code == 200
    html = filtered_page.get_data(as_text=True)
    href = _link(html, "download-csv")
    assert dict(parse_qsl(urlsplit(href).query)) == wanted, href
    response = client.get(href)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["X-Export-Filter"] == query
    rows = _rows(response.get_data())
    assert rows[0] == expected_columns
    job = build_job(session, page.kind, wanted)
    assert response.get_data() == b"".join(iter_bytes(session, job, "csv"))
    assert 1 < len(rows) < len(all_rows), (
        f"{page.kind}: the filter {query} should keep some of the {len(all_rows) - 1} rows"
    )
    assert all(r in all_rows for r in rows[1:]), "filtered rows are rows of the whole list"
    # The XLSX and JSON buttons of the same page: the same filter, the same rows.
    doc = client.get(_link(html, "download-json"))
    assert doc.status_code == 200 and doc.mimetype == "application/json"
    assert doc.headers["X-Export-Filter"] == response.headers["X-Export-Filter"]
    items = json.loads(doc.get_data())["items"]
    assert [list(i) for i in items[:1]] == [expected_columns]
    assert len(items) == len(rows) - 1
    workbook = client.get(_link(html, "download-xlsx"))
    assert workbook.status_code == 200
    assert workbook.headers["Content-Disposition"].endswith('.xlsx"')
    sheet = zipfile.ZipFile(io.BytesIO(workbook.get_data())).read("xl/worksheets/sheet1.xml")
    assert sheet.count(b"<row ") == len(rows)
