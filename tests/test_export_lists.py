"""Exports of every list (issue #7): the Download CSV of each list page, its headers and
manifest, excel-safe mode, bad filters, who may export, streaming with its own session,
and ``cbm export`` as a real process (the same bytes as the page's download).

The in-process tests run on SQLite and PostgreSQL; the command-line tests run ``cbm`` in a
subprocess against an SQLite file of their own (as ``tests/test_cli.py`` does).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import flask
import pytest
from conftest import PASSWORD, login
from factories import make
from sqlalchemy.orm import Session

from cbm import contract
from cbm.models import ImportRun
from cbm.services.export_lists import build_job, iter_bytes
from cbm.services.records import Actor, upsert_records
from cbm.web.database import web_state

GENERATED = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def body_of(response) -> bytes:
    return response.get_data()


def rows_of(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def service_bytes(session: Session, kind: str, args: dict[str, str], **kw: Any) -> bytes:
    """What ``cbm export KIND`` writes for these filters (the CLI's code path)."""
    job = build_job(session, kind, args)
    return b"".join(iter_bytes(session, job, "csv", **kw))


@pytest.fixture()
def stored(session: Session) -> dict[str, Any]:
    """A few records of every kind (one with a formula-like remark), two import runs and
    the audit events an analyst's creations write."""
    from cbm.services.accounts import create_user

    analyst = create_user(session, "export-analyst", PASSWORD, "analyst")
    actor = Actor(user_id=analyst.id)
    for kind in contract.LOAD_ORDER:
        data = [make(kind, n) for n in (1, 2, 3)]
        if kind == "activities":
            data[1]["state"] = "FRA"
            data[2]["remarks"] = '=HYPERLINK("http://x.invalid")'
            data[2]["start_date"], data[2]["end_date"] = "2023-05-01", "2023-05-03"
        result = upsert_records(session, kind, data, actor=actor)
        assert result.errors == [], (kind, result.errors)
    session.add_all(
        [
            ImportRun(importer="csv", source_name="feed-a", kind="activities", status="succeeded"),
            ImportRun(importer="csv", source_name="feed-b", kind="quotas", status="failed"),
        ]
    )
    session.commit()
    return {"analyst": analyst}


# --------------------------------------------------------------------------------------
# the buttons
# --------------------------------------------------------------------------------------


def download_href(html: str) -> str:
    match = re.search(r'<a class="button" href="([^"]+)" data-test="download-csv"', html)
    assert match, "no Download CSV button"
    return match.group(1).replace("&amp;", "&")


@pytest.mark.parametrize("kind", list(contract.FILES))
def test_every_record_list_has_a_download_with_its_filters(signed_in, stored, kind: str) -> None:
    client = signed_in("viewer")
    page = client.get(f"/records/{kind}/?state=DEU&sort={contract.get(kind).key[0]}&page=1")
    assert page.status_code == 200
    href = download_href(page.get_data(as_text=True))
    assert href == f"/records/{kind}.csv?state=DEU"  # the filters, not the page or sort
    response = client.get(href)
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert rows_of(body_of(response))[0] == list(contract.get(kind).columns)


def test_a_list_with_a_wrong_filter_offers_no_download(signed_in, stored) -> None:
    client = signed_in("viewer")
    page = client.get("/records/activities/?state=Atlantis")
    assert page.status_code == 400 and 'data-test="download-csv"' not in page.get_data(as_text=True)


def test_the_runs_and_audit_pages_have_downloads(signed_in, stored) -> None:
    admin = signed_in("admin")
    runs = admin.get("/runs/?status=failed")
    assert download_href(runs.get_data(as_text=True)) == "/runs/export.csv?status=failed"
    audit = admin.get("/admin/audit?action=create&entity_type=quotas&page=1")
    href = download_href(audit.get_data(as_text=True))
    assert href.startswith("/admin/audit.csv?") and "page=" not in href
    assert "action=create" in href and "entity_type=quotas" in href


# --------------------------------------------------------------------------------------
# the same bytes as the command line, stamped
# --------------------------------------------------------------------------------------


GERMANY_2024 = {"state": "Germany", "year": "2024"}
CREATED_HOLDINGS = {"action": "create", "entity_type": "holdings"}


@pytest.mark.parametrize(
    ("url", "kind", "args"),
    [
        ("/records/activities.csv?state=Germany&year=2024", "activities", GERMANY_2024),
        ("/records/quotas.csv?kind=passive", "quotas", {"kind": "passive"}),
        ("/records/notifications.csv", "notifications", {}),
        ("/runs/export.csv?status=failed", "runs", {"status": "failed"}),
        ("/admin/audit.csv?action=create&entity_type=holdings", "audit", CREATED_HOLDINGS),
    ],
)  # fmt: skip
def test_the_download_equals_the_cli_export_and_is_stamped(
    signed_in, session: Session, stored, url: str, kind: str, args: dict[str, str]
) -> None:
    client = signed_in("admin")
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    data = body_of(response)
    assert data == service_bytes(session, kind, args)
    rows = rows_of(data)
    assert data.endswith(b"\r\n") and rows[0]
    h = response.headers
    assert h["X-Export-Kind"] == kind
    assert int(h["X-Export-Rows"]) == len(rows) - 1 > 0
    assert GENERATED.match(h["X-Export-Generated-At"])
    assert h["X-Export-Data-Version"]
    assert h["X-Export-Excel-Safe"] == "false"
    assert h["Cache-Control"] == "no-store"
    assert h["Content-Disposition"].startswith('attachment; filename="')
    if kind == "activities":
        # The State is stamped as the code it resolved to; the name is stable.
        assert h["X-Export-Filter"] == "state=DEU&year=2024"
        assert 'filename="activities_state-DEU_year-2024.csv"' in h["Content-Disposition"]
        assert {r[2] for r in rows[1:]} == {"DEU"}
    # The same request again: the same bytes and data version.
    again = client.get(url)
    assert body_of(again) == data
    assert again.headers["X-Export-Data-Version"] == h["X-Export-Data-Version"]


def test_the_data_version_changes_with_the_data(signed_in, session: Session, stored) -> None:
    client = signed_in("viewer")
    before = client.get("/records/ceilings.csv").headers["X-Export-Data-Version"]
    result = upsert_records(session, "ceilings", [make("ceilings", 9)])
    assert result.inserted == 1
    session.commit()
    after = client.get("/records/ceilings.csv")
    assert after.headers["X-Export-Data-Version"] != before
    assert after.headers["X-Export-Rows"] == "4"


def test_the_manifest_describes_the_bytes(signed_in, stored) -> None:
    client = signed_in("viewer")
    data = body_of(client.get("/records/activities.csv?state=DEU"))
    response = client.get("/records/activities.csv?state=DEU&manifest=1")
    assert response.status_code == 200 and response.mimetype == "application/json"
    info = response.get_json()
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
    assert info["bytes"] == len(data)
    assert info["rows"] == len(rows_of(data)) - 1
    assert info["kind"] == "activities" and info["filters"] == {"state": "DEU"}
    assert info["filter"] == "state=DEU" and info["format"] == "csv"
    assert GENERATED.match(info["generated_at"]) and info["data_version"]
    assert info["columns"] == list(contract.get("activities").columns)
    assert response.headers["X-Export-Rows"] == str(info["rows"])


def test_excel_safe_neutralises_formulas_and_the_default_is_faithful(signed_in, stored) -> None:
    client = signed_in("viewer")
    faithful = body_of(client.get("/records/activities.csv?year=2023")).decode()
    assert '"=HYPERLINK(""http://x.invalid"")"' in faithful
    response = client.get("/records/activities.csv?year=2023&excel_safe=1")
    assert response.headers["X-Export-Excel-Safe"] == "true"
    safe = body_of(response).decode()
    assert '"\'=HYPERLINK(""http://x.invalid"")"' in safe
    assert "=HYPERLINK" not in safe.replace("'=HYPERLINK", "")


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/records/activities.csv?state=Atlantis", "state"),
        ("/records/activities.csv?year=20x4", "year"),
        ("/records/quotas.csv?kind=sideways", "kind"),
        ("/records/activities.csv?excel_safe=maybe", "excel_safe"),
        ("/runs/export.csv?status=bogus", "status"),
        ("/runs/export.csv?kind=widgets", "kind"),
        ("/admin/audit.csv?from=2024-13-01", "from"),
        ("/admin/audit.csv?entity_type=nothing", "entity_type"),
    ],
)
def test_a_bad_filter_is_a_400_naming_it(signed_in, stored, url: str, field: str) -> None:
    response = signed_in("admin").get(url)
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert f"- {field}: " in text
    assert field in response.headers["X-Export-Error"].split(",")


def test_an_unknown_kind_is_a_404(signed_in) -> None:
    assert signed_in("viewer").get("/records/widgets.csv").status_code == 404


def test_a_viewer_exports_what_they_see_and_not_the_audit_log(signed_in, stored) -> None:
    viewer = signed_in("viewer")
    assert viewer.get("/records/holdings.csv").status_code == 200
    assert viewer.get("/runs/export.csv").status_code == 200
    assert viewer.get("/admin/audit.csv").status_code == 403
    analyst = signed_in("analyst")
    assert analyst.get("/admin/audit.csv").status_code == 403


def test_anonymous_visitors_are_sent_to_sign_in(client) -> None:
    response = client.get("/records/activities.csv")
    assert response.status_code == 302 and "/login" in response.location


def test_the_runs_and_audit_exports_hold_the_filtered_rows(signed_in, stored) -> None:
    admin = signed_in("admin")
    runs = rows_of(body_of(admin.get("/runs/export.csv?kind=quotas")))
    assert runs[0][:7] == [
        "run_id",
        "source",
        "location",
        "importer",
        "importer_version",
        "kind",
        "status",
    ]
    assert [(r[1], r[6]) for r in runs[1:]] == [("feed-b", "failed")]
    audit = rows_of(
        body_of(admin.get("/admin/audit.csv?actor=export-analyst&entity_type=reductions"))
    )
    assert len(audit) == 1 + 3
    assert {(r[2], r[6], r[7]) for r in audit[1:]} == {("export-analyst", "create", "reductions")}
    changes = json.loads(audit[1][10])
    assert changes["reduction_id"][0] is None
    ids = [int(r[0]) for r in audit[1:]]
    assert ids == sorted(ids, reverse=True)  # newest first, as the page


# --------------------------------------------------------------------------------------
# streaming with a session of its own
# --------------------------------------------------------------------------------------


def test_the_stream_outlives_the_request_and_closes_its_session(app, signed_in, stored) -> None:
    client = signed_in("viewer")
    state = web_state(app)
    original = state.session_factory
    sessions: list[tuple[Session, list[bool]]] = []

    def tracking() -> Session:
        session = original()
        closed: list[bool] = []
        real_close = session.close

        def close() -> None:
            closed.append(True)
            real_close()

        session.close = close  # type: ignore[method-assign]
        sessions.append((session, closed))
        return session

    state.session_factory = tracking  # type: ignore[assignment]
    try:
        response = client.get("/records/notifications.csv", buffered=False)
        assert not flask.has_request_context()
        assert response.status_code == 200
        open_now = [s for s, closed in sessions if not closed]
        assert len(open_now) == 1, "the export's own session is open until the body is read"
        data = b"".join(response.response)
        response.close()
        assert rows_of(data)[0] == list(contract.get("notifications").columns)
        assert len(rows_of(data)) == 4
        assert all(closed for _, closed in sessions), "every session is closed after the body"
        # A body that is never read: the response's close still closes the session.
        unread = client.get("/records/quotas.csv", buffered=False)
        assert [s for s, closed in sessions if not closed]
        unread.close()
        assert all(closed for _, closed in sessions)
    finally:
        state.session_factory = original


def test_the_export_reads_in_chunks(session: Session, stored) -> None:
    """Memory stays flat: rows come ``chunk_size`` at a time (one piece each)."""
    from cbm.services.export_lists import iter_csv

    job = build_job(session, "quotas", {})
    pieces = list(iter_csv(session, job, chunk_size=1))
    assert len(pieces) == 1 + 3
    assert "".join(pieces).encode() == service_bytes(session, "quotas", {})


def test_trust_scores_export_of_the_latest_run(session: Session) -> None:
    from cbm.models import TrustRun, TrustScore

    old = TrustRun(method_version="1", status="succeeded")
    new = TrustRun(method_version="1", status="succeeded")
    session.add_all([old, new])
    session.flush()
    for run, subject, level, score in (
        (old, "DEU", "state", 1.0),
        (new, "DEU", "state", 0.5),
        (new, "FRA", "state", None),
        (new, "WEU", "region", 0.25),
    ):
        session.add(
            TrustScore(
                run_id=run.id, level=level, subject=subject, year=2024, signal="index", score=score
            )
        )
    session.commit()
    rows = rows_of(service_bytes(session, "trust_scores", {"level": "state"}))
    assert rows[0][:7] == [
        "run_id",
        "method_version",
        "level",
        "subject",
        "year",
        "signal",
        "score",
    ]
    assert [(r[0], r[3], r[6]) for r in rows[1:]] == [
        (str(new.id), "DEU", "0.5"),
        (str(new.id), "FRA", ""),
    ]
    germany = rows_of(service_bytes(session, "trust_scores", {"state": "Germany"}))
    assert [r[3] for r in germany[1:]] == ["DEU"]
    from cbm.services.export_lists import ExportFilterError

    with pytest.raises(ExportFilterError) as caught:
        build_job(session, "trust_scores", {"level": "planet"})
    assert list(caught.value.errors) == ["level"]


# --------------------------------------------------------------------------------------
# cbm export, as a real process
# --------------------------------------------------------------------------------------

CBM = [sys.executable, "-m", "cbm.cli"]


def cbm(args: list[str], env: dict[str, str], **kw: Any) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CBM_")}
    full.update(env)
    return subprocess.run(
        [*CBM, *args], env=full, capture_output=True, timeout=300, check=False, **kw
    )


def write_csv(path: Path, kind: str, data: list[dict[str, Any]]) -> Path:
    spec = contract.get(kind)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(spec.columns)
        for row in data:
            writer.writerow([row.get(c, "") for c in spec.columns])
    return path


@pytest.fixture(scope="module")
def cli_db(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An SQLite file migrated by ``cbm db upgrade`` and filled by ``cbm import``."""
    folder = tmp_path_factory.mktemp("cli-export")
    env = {"CBM_INSTANCE_DIR": str(folder / "instance")}
    assert cbm(["db", "upgrade"], env).returncode == 0
    source = folder / "source"
    source.mkdir()
    for i, kind in enumerate(contract.LOAD_ORDER, start=1):
        data = [make(kind, n) for n in (1, 2, 3, 4)]
        if kind == "activities":
            data[0]["state"] = "FRA"
            data[1]["remarks"] = '+49 30 1234, "quoted"\nand a new line'
            data[3]["name"] = "=1+1"
        write_csv(source / f"{i:02d}-{kind}.csv", kind, data)
    imported = cbm(["import", str(source)], env, text=True)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    return {"env": env, "folder": folder}


def test_cli_export_with_filters_and_a_manifest(cli_db: dict[str, Any], tmp_path: Path) -> None:
    env = cli_db["env"]
    target = tmp_path / "deu.csv"
    out = cbm(["export", "activities", "--state", "deu", "-o", str(target), "--manifest"], env)
    assert out.returncode == 0, out.stderr
    data = target.read_bytes()
    rows = rows_of(data)
    assert rows[0] == list(contract.get("activities").columns)
    assert len(rows) == 1 + 3 and {r[2] for r in rows[1:]} == {"DEU"}
    info = json.loads((tmp_path / "deu.csv.manifest.json").read_text())
    assert info["sha256"] == hashlib.sha256(data).hexdigest() and info["rows"] == 3
    assert info["filters"] == {"state": "DEU"} and info["kind"] == "activities"
    assert b"Wrote 3 activities rows (state=DEU)" in out.stderr
    # Standard output gives the same bytes.
    stdout = cbm(["export", "activities", "--state", "DEU"], env)
    assert stdout.returncode == 0 and stdout.stdout == data
    # Excel-safe on request only.
    assert b'"=1+1"' not in data and b",=1+1," in data
    safe = cbm(["export", "activities", "--excel-safe"], env).stdout
    assert b",'=1+1," in safe and b"'+49 30 1234" in safe


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["activities", "--state", "Atlantis"], "--state"),
        (["activities", "--year", "twenty"], "--year"),
        (["holdings", "--kind", "boats"], "--kind"),
        (["runs", "--status", "bogus"], "--status"),
        (["audit", "--from", "2024-02-30"], "--from"),
        (["audit", "--entity-type", "planets"], "--entity-type"),
        (["findings", "--severity", "awful"], "--severity"),
        (["trust_scores", "--level", "planet"], "--level"),
    ],
)
def test_cli_export_refuses_a_bad_filter_with_exit_2(
    cli_db: dict[str, Any], args: list[str], option: str
) -> None:
    out = cbm(["export", *args], cli_db["env"], text=True)
    assert out.returncode == 2, out.stderr
    assert f"Error: {option}: " in out.stderr
    assert out.stdout == ""


def test_cli_export_every_kind_and_list(cli_db: dict[str, Any], tmp_path: Path) -> None:
    env = cli_db["env"]
    others = ["runs", "audit", "findings", "trust_scores", "sources", "users", "rules"]
    for kind in [*contract.FILES, *others, "checks", "deadlines", "jobs"]:
        out = cbm(["export", kind, "-o", str(tmp_path / f"{kind}.csv")], env, text=True)
        assert out.returncode == 0, (kind, out.stderr)
        assert (tmp_path / f"{kind}.csv").read_bytes().endswith(b"\r\n")
    runs = rows_of((tmp_path / "runs.csv").read_bytes())
    assert len(runs) == 1 + len(contract.LOAD_ORDER)
    assert {r[6] for r in runs[1:]} == {"succeeded"}
    json_out = cbm(["export", "quotas", "--format", "json"], env)
    doc = json.loads(json_out.stdout)
    assert doc["kind"] == "quotas" and doc["next"] is None and len(doc["items"]) == 4
    assert isinstance(doc["items"][0]["year"], int)


def test_cli_export_all_reimports_byte_identically(cli_db: dict[str, Any], tmp_path: Path) -> None:
    """A folder, a workbook and JSON files of everything; each imported into an empty
    database gives back the same CSV bytes."""
    env = cli_db["env"]
    folder = tmp_path / "csv"
    assert cbm(["export", "all", "-o", str(folder), "--manifest"], env).returncode == 0
    original = {p.name: p.read_bytes() for p in sorted(folder.glob("*.csv"))}
    assert list(original) == [
        f"{i:02d}-{k}.csv" for i, k in enumerate(contract.LOAD_ORDER, start=1)
    ]
    info = json.loads((folder / "manifest.json").read_text())
    assert [f["sha256"] for f in info["files"]] == [
        hashlib.sha256(b).hexdigest() for b in original.values()
    ]
    workbook = tmp_path / "all.xlsx"
    out = cbm(["export", "all", "--format", "xlsx", "-o", str(workbook)], env)
    assert out.returncode == 0, out.stderr
    again = cbm(["export", "all", "--format", "xlsx", "-o", str(tmp_path / "again.xlsx")], env)
    assert again.returncode == 0
    assert (tmp_path / "again.xlsx").read_bytes() == workbook.read_bytes()  # deterministic
    json_folder = tmp_path / "json"
    assert cbm(["export", "all", "--format", "json", "-o", str(json_folder)], env).returncode == 0
    for name, location in (("xlsx", workbook), ("json", json_folder)):
        fresh = {"CBM_INSTANCE_DIR": str(tmp_path / f"fresh-{name}")}
        assert cbm(["db", "upgrade"], fresh).returncode == 0
        imported = cbm(["import", str(location)], fresh, text=True)
        assert imported.returncode == 0, (name, imported.stdout, imported.stderr)
        back = tmp_path / f"back-{name}"
        assert cbm(["export", "all", "-o", str(back)], fresh).returncode == 0
        assert {p.name: p.read_bytes() for p in sorted(back.glob("*.csv"))} == original, name


def test_the_page_download_equals_the_cli_output(cli_db: dict[str, Any], tmp_path: Path) -> None:
    """The web app on the same database file serves the bytes ``cbm export`` writes."""
    from cbm.services import accounts
    from cbm.web import create_app

    env = cli_db["env"]
    instance = Path(env["CBM_INSTANCE_DIR"])
    url = f"sqlite:///{instance / 'cbm.sqlite3'}"
    app = create_app(
        {
            "TESTING": True,
            "CBM_SETTINGS_OVERRIDES": {
                "env": "test",
                "database_url": url,
                "secret_key": "test-secret",
                "instance_dir": instance,
            },
        }
    )
    factory = web_state(app).session_factory
    with factory() as session:
        accounts.create_user(session, "cli-viewer", PASSWORD, "viewer")
        session.commit()
    client = app.test_client()
    assert login(client, "cli-viewer").status_code == 302
    for page, args in (
        ("/records/activities.csv?state=DEU&q=Ex", ["activities", "--state", "DEU", "--q", "Ex"]),
        ("/records/holdings.csv?kind=personnel", ["holdings", "--kind", "personnel"]),
        ("/runs/export.csv?kind=notifications", ["runs", "--kind", "notifications"]),
        ("/rules.csv?regime=OST&format=json", ["rules", "--regime", "OST", "--format", "json"]),
        ("/deadlines.csv?from=2024-01-01&days=366",
         ["deadlines", "--from", "2024-01-01", "--days", "366"]),
    ):  # fmt: skip
        web = client.get(page)
        assert web.status_code == 200, page
        out = cbm(["export", *args], env)
        assert out.returncode == 0, out.stderr
        assert web.get_data() == out.stdout, page
    web_state(app).engine.dispose()
