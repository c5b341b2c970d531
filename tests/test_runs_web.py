"""Import pages: the run list, a run with its rejected rows and their CSV, upload, revert."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from typing import Any

import pytest
from conftest import csrf_token_from
from factories import make, rows
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cbm import contract
from cbm.models import Activity, ImportRun, User
from cbm.services.imports import run_import
from cbm.services.records import Actor, upsert_records
from importers.base import Payload

SignedIn = Callable[..., FlaskClient]


def csv_bytes(kind: str, data: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(contract.get(kind).columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(data)
    return out.getvalue().encode()


def import_bytes(factory: sessionmaker[Session], name: str, content: bytes, **kw: Any):
    result = run_import(factory, [Payload(name=name, content=content)], importer="csv", **kw)
    return result.runs[0]


def token(client: FlaskClient, page: str = "/") -> str:
    return csrf_token_from(client.get(page).get_data(as_text=True))


def text_of(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture()
def factory(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    return session_factory


@pytest.fixture()
def with_rejections(factory) -> int:
    data = [*rows("activities", 3), make("activities", 4, troops="=1+2")]
    return import_bytes(factory, "activities.csv", csv_bytes("activities", data)).run_id


# --- list -------------------------------------------------------------------------------


def test_the_list_shows_runs_with_their_counts_and_filters(
    signed_in: SignedIn, factory, with_rejections: int
) -> None:
    clean = import_bytes(factory, "activities.csv", csv_bytes("activities", rows("activities", 3)))
    viewer = signed_in("viewer")
    page = viewer.get("/runs/")
    assert page.status_code == 200
    html = text_of(page)
    assert re.search(r'<a href="/runs/"[^>]*>Imports</a>', html)  # in the navigation
    assert f'data-run="{with_rejections}"' in html and f'data-run="{clean.run_id}"' in html
    assert 'data-status="partial"' in html and 'data-status="succeeded"' in html
    assert "Import a file" not in html  # viewers cannot upload

    only = text_of(viewer.get("/runs/?status=partial"))
    assert f'data-run="{with_rejections}"' in only and f'data-run="{clean.run_id}"' not in only
    assert f'data-run="{clean.run_id}"' in text_of(viewer.get("/runs/?kind=activities"))
    assert "No imports match" in text_of(viewer.get("/runs/?kind=quotas"))

    bad = viewer.get("/runs/?status=exploded&kind=nope")
    assert bad.status_code == 400
    assert "is not a status" in text_of(bad) and "is not a kind of record" in text_of(bad)
    assert viewer.get("/runs/?page=99").status_code == 404


def test_the_list_pages(signed_in: SignedIn, session: Session) -> None:
    for _ in range(30):
        session.add(ImportRun(importer="csv", status="succeeded", source_name="feed"))
    session.commit()
    viewer = signed_in("viewer")
    first = text_of(viewer.get("/runs/?source=feed"))
    assert first.count("data-run=") == 25 and "Page 1 of 2" in first
    second = text_of(viewer.get("/runs/?source=feed&page=2"))
    assert second.count("data-run=") == 5


# --- one run ----------------------------------------------------------------------------


def test_a_run_page_shows_counts_rejections_and_the_csv_link(
    signed_in: SignedIn, with_rejections: int
) -> None:
    viewer = signed_in("viewer")
    page = viewer.get(f"/runs/{with_rejections}")
    assert page.status_code == 200
    html = text_of(page)
    assert "Import run" in html and "partial" in html
    assert f'href="/runs/{with_rejections}/rejections.csv"' in html
    assert "Download rejected rows (CSV)" in html
    table = re.search(r'data-test="rejections">(.*?)</table>', html, re.S).group(1)
    assert "troops" in table and "=1+2" in table and "not a whole number" in table
    assert "Revert this run" not in html  # viewers cannot revert
    assert viewer.get("/runs/999999").status_code == 404


def test_the_rejections_download_is_csv_with_formulas_neutralised(
    signed_in: SignedIn, with_rejections: int
) -> None:
    response = signed_in("viewer").get(f"/runs/{with_rejections}/rejections.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    assert f"run-{with_rejections}-rejections.csv" in response.headers["Content-Disposition"]
    body = text_of(response)
    assert body.startswith("row,column,value,reason,part\r\n")
    parsed = list(csv.reader(io.StringIO(body, newline="")))
    assert parsed[1][:3] == ["5", "troops", "'=1+2"] and parsed[1][4] == "activities"


def test_rejected_rows_are_paged(signed_in: SignedIn, factory, monkeypatch) -> None:
    from cbm.web import runs

    monkeypatch.setattr(runs, "REJECTIONS_PER_PAGE", 2)
    data = [make("activities", n, kind="parade") for n in range(1, 6)]
    run_id = import_bytes(factory, "activities.csv", csv_bytes("activities", data)).run_id
    viewer = signed_in("viewer")
    html = text_of(viewer.get(f"/runs/{run_id}?page=3"))
    assert "Page 3 of 3" in html
    assert viewer.get(f"/runs/{run_id}?page=4").status_code == 404


# --- upload -----------------------------------------------------------------------------


def upload(client: FlaskClient, content: bytes, name: str = "activities.csv", **form: Any):
    data = {"csrf_token": token(client, "/runs/upload"), **form}
    data["file"] = (io.BytesIO(content), name)
    return client.post("/runs/upload", data=data, content_type="multipart/form-data")


def test_an_analyst_uploads_a_file_and_lands_on_its_run(
    signed_in: SignedIn, session: Session
) -> None:
    analyst = signed_in("analyst", "ana")
    assert analyst.get("/runs/upload").status_code == 200
    response = upload(analyst, csv_bytes("activities", rows("activities", 2)))
    assert response.status_code == 303
    run_id = int(response.location.rsplit("/", 1)[-1])
    run = session.get(ImportRun, run_id)
    assert run.status == "succeeded" and run.rows_inserted == 2
    assert run.source_name == "web upload" and run.location == "upload: activities.csv"
    assert run.user_id == session.scalar(select(User.id).where(User.username == "ana"))
    page = analyst.get(response.location)
    assert "Imported activities.csv: 2 rows read, 2 inserted" in text_of(page)
    assert session.scalar(select(Activity.set_by_run_id).where(Activity.activity_id == "A-1"))


def test_upload_with_all_or_nothing_and_a_bad_row_stores_nothing(
    signed_in: SignedIn, session: Session
) -> None:
    analyst = signed_in("analyst")
    data = [*rows("activities", 2), make("activities", 3, kind="parade")]
    response = upload(
        analyst, csv_bytes("activities", data), name="mine.csv", kind="activities",
        all_or_nothing="1",
    )  # fmt: skip
    assert response.status_code == 303
    run = session.get(ImportRun, int(response.location.rsplit("/", 1)[-1]))
    assert run.status == "rejected" and run.all_or_nothing and run.kind == "activities"
    assert session.scalars(select(Activity)).all() == []
    assert "Nothing imported from mine.csv" in text_of(analyst.get(response.location))


def test_upload_refuses_wrong_files_and_kinds_and_viewers(signed_in: SignedIn, app) -> None:
    analyst = signed_in("analyst")
    wrong = upload(analyst, b"hello", name="notes.txt")
    assert wrong.status_code == 422 and "is not a CSV, XLSX or JSON file" in text_of(wrong)
    kind = upload(analyst, b"a,b\n", kind="dragons")
    assert kind.status_code == 422 and "is not a kind of record" in text_of(kind)
    viewer = signed_in("viewer")
    assert viewer.get("/runs/upload").status_code == 403

    app.config["MAX_CONTENT_LENGTH"] = 1024
    big = upload(analyst, b"x" * 4096)
    assert big.status_code == 413


def test_a_failed_upload_is_a_failed_run(signed_in: SignedIn, session: Session) -> None:
    analyst = signed_in("analyst")
    response = upload(analyst, b"", name="activities.csv")
    assert response.status_code == 303
    run = session.get(ImportRun, int(response.location.rsplit("/", 1)[-1]))
    assert run.status == "failed" and "empty" in run.message
    assert "The import of activities.csv failed" in text_of(analyst.get(response.location))


# --- revert -----------------------------------------------------------------------------


def test_an_admin_reverts_a_run_after_confirming(
    signed_in: SignedIn, factory, session: Session
) -> None:
    run_id = import_bytes(
        factory, "activities.csv", csv_bytes("activities", rows("activities", 2))
    ).run_id
    admin = signed_in("admin", "boss")
    page = text_of(admin.get(f"/runs/{run_id}"))
    assert f'href="/runs/{run_id}/revert"' in page
    confirm = admin.get(f"/runs/{run_id}/revert")
    assert confirm.status_code == 200 and "Revert run" in text_of(confirm)
    response = admin.post(
        f"/runs/{run_id}/revert", data={"csrf_token": token(admin, f"/runs/{run_id}/revert")}
    )
    assert response.status_code == 303
    assert session.scalars(select(Activity)).all() == []
    after = text_of(admin.get(f"/runs/{run_id}"))
    assert "Reverted import run" in after and "Reverted on" in after and "by boss" in after
    assert 'data-test="revert-link"' not in after


def test_revert_needs_an_admin(signed_in: SignedIn, factory) -> None:
    run_id = import_bytes(
        factory, "activities.csv", csv_bytes("activities", rows("activities", 1))
    ).run_id
    analyst = signed_in("analyst")
    assert analyst.get(f"/runs/{run_id}/revert").status_code == 403
    refused = analyst.post(f"/runs/{run_id}/revert", data={"csrf_token": token(analyst)})
    assert refused.status_code == 403


def test_a_refused_revert_explains_itself_with_409(
    signed_in: SignedIn, factory, session: Session
) -> None:
    run_id = import_bytes(
        factory, "activities.csv", csv_bytes("activities", rows("activities", 2))
    ).run_id
    admin = signed_in("admin", "boss")
    boss = session.scalar(select(User.id).where(User.username == "boss"))
    upsert_records(
        session, "activities", [make("activities", 1, troops="1")], actor=Actor(user_id=boss)
    )
    session.commit()
    response = admin.post(
        f"/runs/{run_id}/revert", data={"csrf_token": token(admin, f"/runs/{run_id}/revert")}
    )
    assert response.status_code == 409
    html = text_of(response)
    assert "This run cannot be reverted" in html
    assert "activities A-1 / notification: changed since by boss" in html
    assert len(session.scalars(select(Activity)).all()) == 2


def test_upload_page_is_offline(signed_in: SignedIn) -> None:
    html = text_of(signed_in("analyst").get("/runs/upload"))
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert 'enctype="multipart/form-data"' in html
