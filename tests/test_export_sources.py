"""The sources list export (issue #7): ``/admin/sources`` with its filters, its downloads
and ``cbm export sources``; credentials in locations never reach the file.

In-process tests run on SQLite and PostgreSQL; the command-line test runs ``cbm`` in a
subprocess against an SQLite file of its own.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from test_export_lists import cbm

from cbm.services import sources as service
from cbm.services.export_lists import SOURCE_COLUMNS, build_job, iter_bytes
from cbm.services.redaction import redact, redact_url

SECRET_URL = (
    "https://reader:hunter2@feeds.example.org/osce/activities.json"
    "?page=1&token=tok-123&APIKEY=ak-456&access_token=at-789&signature=sig-0&password=pw-1&x=keep"
)
SECRETS = ("hunter2", "tok-123", "ak-456", "at-789", "sig-0", "pw-1")


def rows_of(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


@pytest.fixture()
def sources(session: Session) -> None:
    service.add_source(session, "alpha-feed", SECRET_URL, importer="json", kind="activities")
    service.add_source(
        session, "beta-drop", "/srv/cbm/drop/*.csv", importer="csv", kind="quotas", enabled=False
    )
    service.add_source(session, "gamma-feed", "https://example.org/h.csv?key=k-9", kind="holdings")
    found = service.get_source(session, "gamma-feed")
    found.last_error = "GET https://u:pw-2@example.org/x?sig=s-3 failed; Authorization: Bearer b-4"
    session.commit()


def test_redaction_keeps_the_location_recognisable() -> None:
    assert redact_url(SECRET_URL) == (
        "https://reader:***@feeds.example.org/osce/activities.json"
        "?page=1&token=***&APIKEY=***&access_token=***&signature=***&password=***&x=keep"
    )
    assert redact("/srv/cbm/drop/*.csv") == "/srv/cbm/drop/*.csv"
    assert redact("https://example.org/a.csv?keyword=x") == "https://example.org/a.csv?keyword=x"
    assert redact("https://user@example.org/a") == "https://user@example.org/a"
    text = redact("see https://a:b@h.example/p?token=t and\nAuthorization: Bearer abc.def")
    assert text == "see https://a:***@h.example/p?token=*** and\nAuthorization: ***"
    assert redact(None) == ""


def test_the_sources_page_has_filtered_downloads(signed_in, sources) -> None:
    admin = signed_in("admin")
    page = admin.get("/admin/sources?status=enabled&q=FEED")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-source="alpha-feed"' in html and 'data-source="beta-drop"' not in html
    href = re.search(r'href="([^"]+)" data-test="download-csv"', html).group(1)
    href = href.replace("&amp;", "&")
    assert href == "/admin/sources.csv?status=enabled&q=FEED"
    for fmt in ("xlsx", "json"):
        assert f'href="{href.replace("&", "&amp;")}&amp;format={fmt}"' in html
    response = admin.get(href)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["X-Export-Kind"] == "sources"
    assert response.headers["X-Export-Filter"] == "status=enabled&q=FEED"
    assert response.headers["X-Export-Rows"] == "2"
    rows = rows_of(response.get_data())
    assert rows[0] == list(SOURCE_COLUMNS)
    assert [r[0] for r in rows[1:]] == ["alpha-feed", "gamma-feed"]
    body = response.get_data(as_text=True)
    for secret in (*SECRETS, "pw-2", "s-3", "b-4", "k-9"):
        assert secret not in body, secret
    by_name = {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    assert by_name["alpha-feed"]["location"] == redact_url(SECRET_URL)
    assert by_name["gamma-feed"]["last_error"] == (
        "GET https://u:***@example.org/x?sig=*** failed; Authorization: ***"
    )


def test_the_sources_export_equals_the_service_and_every_format_is_redacted(
    signed_in, session: Session, sources
) -> None:
    admin = signed_in("admin")
    web = admin.get("/admin/sources.csv?kind=quotas").get_data()
    job = build_job(session, "sources", {"kind": "quotas"})
    assert web == b"".join(iter_bytes(session, job, "csv"))
    assert [r[0] for r in rows_of(web)[1:]] == ["beta-drop"]
    doc = json.loads(admin.get("/admin/sources.csv?format=json").get_data())
    assert doc["kind"] == "sources" and [i["name"] for i in doc["items"]] == [
        "alpha-feed",
        "beta-drop",
        "gamma-feed",
    ]
    workbook = admin.get("/admin/sources.csv?format=xlsx").get_data()
    import zipfile

    sheet = zipfile.ZipFile(io.BytesIO(workbook)).read("xl/worksheets/sheet1.xml").decode()
    assert "feeds.example.org" in sheet
    for secret in SECRETS:
        assert secret not in json.dumps(doc) and secret not in sheet


def test_the_audit_export_redacts_source_locations(signed_in, sources) -> None:
    body = signed_in("admin").get("/admin/audit.csv?entity_type=sources").get_data(as_text=True)
    assert "feeds.example.org" in body
    for secret in SECRETS:
        assert secret not in body


@pytest.mark.parametrize("role", ["viewer", "analyst"])
def test_only_admins_export_sources(signed_in, sources, role: str) -> None:
    assert signed_in(role).get("/admin/sources.csv").status_code == 403


def test_a_bad_source_filter_is_a_400_naming_it(signed_in, sources) -> None:
    admin = signed_in("admin")
    page = admin.get("/admin/sources?status=sleeping")
    assert page.status_code == 400 and 'data-test="download-csv"' not in page.get_data(as_text=True)
    response = admin.get("/admin/sources.csv?importer=fax")
    assert response.status_code == 400 and "- importer: " in response.get_data(as_text=True)


def test_cli_export_sources(tmp_path: Path) -> None:
    env = {"CBM_INSTANCE_DIR": str(tmp_path / "instance")}
    assert cbm(["db", "upgrade"], env).returncode == 0
    added = cbm(["source", "add", "alpha-feed", SECRET_URL, "--kind", "activities"], env, text=True)
    assert added.returncode == 0, added.stderr
    added = cbm(["source", "add", "beta-drop", "/srv/drop/*.csv", "--importer", "csv"], env)
    assert added.returncode == 0
    out = cbm(["export", "sources", "--q", "alpha"], env)
    assert out.returncode == 0, out.stderr
    rows = rows_of(out.stdout)
    assert rows[0] == list(SOURCE_COLUMNS) and [r[0] for r in rows[1:]] == ["alpha-feed"]
    for secret in SECRETS:
        assert secret.encode() not in out.stdout
    bad = cbm(["export", "sources", "--status", "sleeping"], env, text=True)
    assert bad.returncode == 2 and "Error: --status: " in bad.stderr


def test_pages_and_the_api_never_show_a_source_secret(signed_in, session: Session, sources) -> None:
    """Not only the exports: every page and API answer that shows a run's or a source's
    location or message shows it redacted (only the admin's edit form holds the secret)."""
    from api_support import make_api_users

    from cbm.models import ImportRun, Source

    run = ImportRun(
        importer="json",
        source_name="alpha-feed",
        location=SECRET_URL,
        kind="activities",
        status="failed",
        message=f"GET {SECRET_URL} answered 500",
    )
    session.add(run)
    session.commit()
    alpha = session.query(Source).filter_by(name="alpha-feed").one()
    gamma = session.query(Source).filter_by(name="gamma-feed").one()
    admin = signed_in("admin")
    pages = {
        "/": admin,
        "/runs/": admin,
        f"/runs/{run.id}": admin,
        f"/runs/{run.id}/revert": admin,
        "/admin/sources": admin,
        f"/admin/sources/{gamma.id}": admin,
        "/admin/jobs": admin,
    }
    for path, client in pages.items():
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        body = response.get_data(as_text=True)
        for secret in (*SECRETS, "pw-2", "s-3", "b-4"):
            assert secret not in body, (path, secret)
    assert "feeds.example.org" in admin.get(f"/runs/{run.id}").get_data(as_text=True)
    # The edit form is where an admin changes the location: it holds the real one.
    form = admin.get(f"/admin/sources/{alpha.id}").get_data(as_text=True)
    assert 'id="location"' in form and "hunter2" in form

    users = make_api_users(session)
    api = admin.application.test_client()
    for path in ("/api/v1/runs", f"/api/v1/runs/{run.id}"):
        response = api.get(path, headers=users.headers("viewer"))
        assert response.status_code == 200, (path, response.get_data(as_text=True))
        text = response.get_data(as_text=True)
        assert "feeds.example.org" in text, path
        for secret in SECRETS:
            assert secret not in text, (path, secret)
