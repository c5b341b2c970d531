"""Exports over HTTP in every format (issue #7): ``?format=csv|xlsx|json`` on every export
endpoint, as ``cbm export --format``; and the workbook of every contract sheet, downloaded
from the Records page, imported by the XLSX importer into an empty database and downloaded
again: the same bytes.

Runs on SQLite and PostgreSQL (the empty database is a new file, or a new PostgreSQL
database dropped afterwards).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PASSWORD, csrf_token_from, login, throwaway_pg_database
from factories import make
from sqlalchemy.orm import Session

from cbm import contract
from cbm.services.export_formats import iter_xlsx
from cbm.services.export_lists import MEDIA_TYPES, build_job, iter_bytes, workbook_jobs
from cbm.services.records import upsert_records

GENERATED = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
#: Text that a careless writer would change: a formula, CRLF, the spreadsheet escape,
#: quotes, non-ASCII.
AWKWARD = '=HYPERLINK("x") _x0041_ "q", ä€😀\r\nline 2'


@pytest.fixture()
def stored(session: Session) -> None:
    for kind in contract.LOAD_ORDER:
        data = [make(kind, n) for n in (1, 2, 3)]
        if kind == "activities":
            data[0]["remarks"] = AWKWARD
            data[1]["name"] = "-1+1"
            data[2]["state"] = "FRA"
        result = upsert_records(session, kind, data)
        assert result.errors == [], (kind, result.errors)
    session.commit()


# --------------------------------------------------------------------------------------
# ?format=
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json"])
def test_a_list_export_in_each_format(signed_in, session: Session, stored, fmt: str) -> None:
    client = signed_in("viewer")
    response = client.get(f"/records/activities.csv?state=DEU&format={fmt}")
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.headers["Content-Type"] == MEDIA_TYPES[fmt]
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="activities_state-DEU.{fmt}"'
    )
    h = response.headers
    assert h["X-Export-Kind"] == "activities" and h["X-Export-Filter"] == "state=DEU"
    assert h["X-Export-Rows"] == "2" and GENERATED.match(h["X-Export-Generated-At"])
    assert h["X-Export-Data-Version"] and h["X-Export-Excel-Safe"] == "false"
    data = response.get_data()
    job = build_job(session, "activities", {"state": "DEU"})
    assert data == b"".join(iter_bytes(session, job, fmt))  # what cbm export --format writes
    assert client.get(f"/records/activities.csv?state=DEU&format={fmt}").get_data() == data
    if fmt == "json":
        doc = json.loads(data)
        assert doc["kind"] == "activities" and len(doc["items"]) == 2
        assert {i["state"] for i in doc["items"]} == {"DEU"}
        assert doc["items"][0]["remarks"] == AWKWARD
        assert isinstance(doc["items"][0]["troops"], int)
    if fmt == "xlsx":
        sheet = zipfile.ZipFile(io.BytesIO(data)).read("xl/worksheets/sheet1.xml")
        assert sheet.count(b"<row ") == 1 + 2


def test_the_manifest_of_a_json_export(signed_in, stored) -> None:
    client = signed_in("viewer")
    data = client.get("/runs/export.csv?format=json").get_data()
    info = client.get("/runs/export.csv?format=json&manifest=1").get_json()
    assert info["format"] == "json" and info["file_name"] == "runs.json"
    assert info["sha256"] == hashlib.sha256(data).hexdigest() and info["bytes"] == len(data)


@pytest.mark.parametrize(
    "url",
    [
        "/records/activities.csv?format=pdf",
        "/runs/export.csv?format=txt",
        "/findings.csv?format=XLS",
        "/admin/sources.csv?format=csv2",
    ],
)
def test_an_unknown_format_is_a_400_naming_it(signed_in, url: str) -> None:
    response = signed_in("admin").get(url)
    assert response.status_code == 400
    text_ = response.get_data(as_text=True)
    assert "- format: " in text_ and "choose one of csv, xlsx, json" in text_
    assert "format" in response.headers["X-Export-Error"].split(",")


def test_the_format_is_case_insensitive_and_csv_by_default(signed_in, stored) -> None:
    client = signed_in("viewer")
    default = client.get("/records/quotas.csv")
    assert default.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert client.get("/records/quotas.csv?format=CSV").get_data() == default.get_data()


# --------------------------------------------------------------------------------------
# the workbook of every contract sheet
# --------------------------------------------------------------------------------------


def _workbook_href(html: str) -> str:
    match = re.search(r'href="([^"]+)" data-test="download-workbook"', html)
    assert match, "no workbook download on the Records page"
    return match.group(1)


def test_the_records_page_offers_the_workbook(signed_in, session: Session, stored) -> None:
    client = signed_in("viewer")
    href = _workbook_href(client.get("/records/").get_data(as_text=True))
    response = client.get(href)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == MEDIA_TYPES["xlsx"]
    assert response.headers["Content-Disposition"] == 'attachment; filename="cbm-all.xlsx"'
    assert response.headers["X-Export-Sheets"] == ",".join(contract.LOAD_ORDER)
    assert response.headers["X-Export-Rows"] == str(3 * len(contract.LOAD_ORDER))
    data = response.get_data()
    # The bytes of cbm export all --format xlsx (the same jobs and writer), and no clock
    # inside: every zip entry is dated 1980-01-01.
    assert data == b"".join(iter_xlsx(session, workbook_jobs(session)))
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    sheets = re.findall(r'<sheet name="([^"]+)"', archive.read("xl/workbook.xml").decode())
    assert sheets == list(contract.LOAD_ORDER)
    info = client.get(f"{href}?manifest=1").get_json()
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
    assert info["sheets"] == {kind: 3 for kind in contract.LOAD_ORDER}


@pytest.fixture()
def empty_app(backend: str, tmp_path: Path) -> Iterator[Any]:
    """The web app on a new, empty database of the same backend (schema and reference
    data only)."""
    from cbm.db import make_engine
    from cbm.migrate import upgrade
    from cbm.reference.loader import load_reference
    from cbm.web import create_app
    from cbm.web.database import web_state

    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        else:
            url = stack.enter_context(throwaway_pg_database("cbm_empty"))
        engine = make_engine(url)
        stack.callback(engine.dispose)
        upgrade(engine)
        with Session(engine) as session:
            load_reference(session)
            session.commit()
        app = create_app(
            {
                "TESTING": True,
                "CBM_SETTINGS_OVERRIDES": {
                    "env": "test",
                    "database_url": url,
                    "secret_key": "test-secret",
                    "instance_dir": tmp_path,
                },
                "CBM_ENGINE": engine,
            }
        )
        yield app
        web_state(app).engine.dispose()


def test_the_workbook_round_trips_byte_identically(signed_in, stored, empty_app) -> None:
    """Download the workbook, upload it (the XLSX importer) into an empty database,
    download that one's workbook: the same bytes."""
    from cbm.services.accounts import create_user
    from cbm.web.database import web_state

    original = signed_in("viewer").get("/records/all.xlsx").get_data()
    with web_state(empty_app).session_factory() as s:
        create_user(s, "round-trip", PASSWORD, "analyst")
        s.commit()
    client = empty_app.test_client()
    assert login(client, "round-trip").status_code == 302
    assert client.get("/records/all.xlsx").headers["X-Export-Rows"] == "0"
    form = csrf_token_from(client.get("/runs/upload").get_data(as_text=True))
    uploaded = client.post(
        "/runs/upload",
        data={"csrf_token": form, "file": (io.BytesIO(original), "cbm-all.xlsx")},
        content_type="multipart/form-data",
    )
    assert uploaded.status_code == 303, uploaded.get_data(as_text=True)[:500]
    run = client.get(uploaded.location)
    assert run.status_code == 200
    again = client.get("/records/all.xlsx")
    assert again.headers["X-Export-Rows"] == str(3 * len(contract.LOAD_ORDER))
    assert again.get_data() == original
