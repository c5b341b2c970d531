"""Hostile input through the web app, on both backends (issue #8; the JSON API is tested
elsewhere).

* SQL injection through every filter of every list page, CSV export and dashboard, the
  routes read from the URL map: never a 500, no row the filter should exclude, no password
  hash, no database error text, and every table intact afterwards.
* Download names from user input: no CR/LF or quote reaches Content-Disposition.
* Uploads: over ``CBM_MAX_UPLOAD_MB`` is a readable 413 with nothing stored; a small
  workbook that inflates huge (zip bomb), and XML entity tricks (billion laughs, XXE at a
  local file, DOCTYPE in sharedStrings, sheet, workbook and [Content_Types].xml) are failed
  runs that say why, with nothing stored and nothing of the local file shown.
* CSRF on every state-changing route of the URL map: no token, a forged token and a token
  of another session are refused (400) and change nothing.
* Sessions: a tampered or forged session cookie signs nobody in.
* Privilege escalation: ``role=admin`` smuggled into the account form, analysts and viewers
  on admin routes with valid tokens (the full matrix is ``test_authz_matrix.py``).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher
from conftest import PASSWORD, csrf_token_from, login
from factories import make
from flask import Flask
from flask.testing import FlaskClient
from fuzz_payloads import workbook_bytes
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from test_authz_matrix import METHODS, DataSet, url_for_rule
from werkzeug.routing import Rule

from cbm import contract
from cbm.models import AuditEvent, ImportRejection, ImportRun, User
from cbm.queries import records as record_queries
from cbm.queries import runs as run_queries
from cbm.services import accounts
from cbm.services.records import Actor, upsert_records
from cbm.web.auth import limiter

#: Text every seeded record carries; a filter given a payload must never show it.
CANARY = "CANARY-ROW"
SQL_PAYLOADS = (
    "' OR 1=1 --",
    "1; DROP TABLE users",
    "%' UNION SELECT password_hash, username FROM users --",
    "\\",
    "a\x00b",
    '" OR ""="',
    "DEU' OR '1'='1",
    "1) OR (1=1",
)
#: Query-string names each page reads, by endpoint (the list filters come from the modules
#: that parse them, so a new filter is fuzzed the day it is added).
COMMON = ("page", "per_page", "sort", "dir")
FILTERS: dict[str, tuple[str, ...]] = {
    "records.list_records": (*record_queries.FILTER_ARGS, *COMMON),
    "records.export_list": (*record_queries.FILTER_ARGS, "sort", "dir", "manifest"),
    "runs.index": (*run_queries.FILTER_ARGS, "page"),
    "runs.export": (*run_queries.FILTER_ARGS, "manifest"),
    "admin.audit": ("actor", "action", "entity_type", "key", "from", "to", "page"),
    "admin.audit_csv": ("actor", "action", "entity_type", "key", "from", "to"),
    "findings.index": (
        *("rule", "regime", "severity", "status", "state", "counterpart", "period"),
        *("from", "to", "page", "per_page"),
    ),
    "findings.csv": ("rule", "regime", "severity", "status", "state", "counterpart", "period"),
    "deadlines.index": ("from", "days", "state"),
}
#: Filters that select rows: with a payload they must not show the canary rows.
SELECTING = {"regime", "state", "region", "year", "kind", "q", "status", "source", "actor"}
#: Pages whose rows carry the canary (the runs page lists source names in its filter form).
CANARY_PAGES = set(FILTERS) - {"runs.index"}
#: Every other GET route (dashboards, record pages, …) gets these.
DEFAULT_NAMES = ("year", "signal", "page", "q", "state")
SKIP = {"static", "dashboards.static", "auth.login", "health.healthz", "deadlines.ics"}
DB_ERRORS = ("syntax error", "sqlite3.", "psycopg", "OperationalError", "ProgrammingError")


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(accounts, "_hasher", hasher)
    monkeypatch.setattr(accounts, "_DUMMY_HASH", hasher.hash("dummy"))


@pytest.fixture()
def web(app: Flask) -> Iterator[Flask]:
    app.config["CBM_LOGIN_RATE_LIMIT"] = "10000 per minute"
    limiter.reset()
    yield app
    limiter.reset()


def client_as(app: Flask, session: Session, role: str, name: str | None = None) -> FlaskClient:
    username = name or f"hostile-{role}"
    accounts.create_user(session, username, PASSWORD, role)
    session.commit()
    client = app.test_client()
    assert login(client, username).status_code == 302
    return client


def token_of(client: FlaskClient, page: str = "/") -> str:
    return csrf_token_from(client.get(page).get_data(as_text=True))


@pytest.fixture()
def canaries(session: Session) -> DataSet:
    """One record of every kind carrying CANARY, a run and an account to point at."""
    target = accounts.create_user(session, "hostile-target", PASSWORD, "viewer")
    actor = Actor(user_id=target.id)
    text_field = {
        "activities": "name",
        "notifications": "remarks",
        "inspections": "findings",
        "observation_flights": "restrictions",
        "quotas": None,
        "holdings": "unit",
        "ceilings": "basis",
        "reductions": "remarks",
    }
    rows = {}
    for kind in contract.LOAD_ORDER:
        field = text_field[kind]
        rows[kind] = make(kind, 7, **({field: CANARY} if field else {}))
        result = upsert_records(session, kind, [rows[kind]], actor=actor)
        assert result.ok, (kind, result.errors)
    run = ImportRun(importer="csv", source_name=CANARY, status="succeeded")
    session.add(run)
    session.commit()
    return DataSet(rows["activities"], rows["inspections"], target.username, target.id, run.id)


def table_counts(session: Session) -> dict[str, int]:
    models = [spec.model for spec in contract.FILES.values()]
    models += [User, ImportRun, ImportRejection, AuditEvent]
    return {m.__tablename__: session.scalar(select(func.count()).select_from(m)) for m in models}


def get_routes(app: Flask) -> list[Rule]:
    return sorted(
        (
            r
            for r in app.url_map.iter_rules()
            if "GET" in (r.methods or ()) and r.endpoint not in SKIP
        ),
        key=lambda r: r.rule,
    )


def targets(app: Flask, data: DataSet) -> list[tuple[str, str, tuple[str, ...]]]:
    """(endpoint, path, names) for every GET route; record lists and exports per kind."""
    out = []
    for rule in get_routes(app):
        names = FILTERS.get(rule.endpoint, DEFAULT_NAMES)
        if rule.endpoint in ("records.list_records", "records.export_list"):
            for kind in contract.FILES:
                path = rule.build({"kind": kind}, append_unknown=False)[1]
                out.append((rule.endpoint, path, names))
        else:
            out.append((rule.endpoint, url_for_rule(rule, data), names))
    return out


# --------------------------------------------------------------------------------------
# SQL injection
# --------------------------------------------------------------------------------------


def test_sql_injection_through_every_filter_of_every_page(
    web: Flask, session: Session, canaries: DataSet
) -> None:
    client = client_as(web, session, "admin")
    before = table_counts(session)
    plan = targets(web, canaries)
    assert {e for e, _, _ in plan} >= set(FILTERS), "a filtered page left the URL map"
    # The canary is visible unfiltered, so its absence below means something.
    shown = client.get("/records/activities/").get_data(as_text=True)
    assert CANARY in shown
    problems = []
    sent = 0
    for endpoint, path, names in plan:
        for name in names:
            for payload in SQL_PAYLOADS:
                response = client.get(path, query_string={name: payload})
                sent += 1
                # Bytes, not text: some exports are workbooks (?format=xlsx, /records/all.xlsx).
                body = response.get_data().decode("utf-8", "replace")
                where = f"GET {path}?{name}={payload!r} ({endpoint}): {response.status_code}"
                if response.status_code >= 500:
                    problems.append(where)
                elif "$argon2" in body:
                    problems.append(f"{where}: a password hash in the answer")
                elif any(e in body for e in DB_ERRORS):
                    problems.append(f"{where}: a database error in the answer")
                elif name in SELECTING and endpoint in CANARY_PAGES and CANARY in body:
                    problems.append(f"{where}: rows the filter excludes are shown")
    assert not problems, "\n".join(problems[:30])
    assert sent > 1500
    session.expire_all()
    assert table_counts(session) == before
    assert session.scalar(select(User.username).where(User.username == "hostile-target"))


@pytest.mark.parametrize("payload", SQL_PAYLOADS)
def test_injection_in_record_keys_is_a_404(
    web: Flask, session: Session, canaries: DataSet, payload: str
) -> None:
    client = client_as(web, session, "admin")
    for kind in contract.FILES:
        response = client.get(f"/records/{kind}/", query_string={})
        assert response.status_code == 200
        from cbm.web.records import encode_key

        answer = client.get(f"/records/{kind}/{encode_key([payload])}")
        # A NUL is refused before the view (400), unless the key cannot even be parsed.
        expected = {400, 404} if "\x00" in payload else {404}
        assert answer.status_code in expected, (kind, payload, answer.status_code)


def test_a_nul_in_a_search_is_explained_not_a_match_of_everything(
    web: Flask, session: Session, canaries: DataSet
) -> None:
    """Found by the injection sweep: on SQLite, LIKE ends the pattern at a NUL, so q=a\\0b
    listed every record with a text ending in 'a' (the canary's area, 'training area')."""
    client = client_as(web, session, "admin")
    for path, name in (
        ("/records/activities/", "q"),
        ("/records/activities.csv", "q"),
        ("/findings", "q"),
        ("/admin/audit", "key"),
    ):
        response = client.get(path, query_string={name: "a\x00b"})
        assert response.status_code == 400, (path, response.status_code)
        assert CANARY not in response.get_data(as_text=True), path


# --------------------------------------------------------------------------------------
# download names
# --------------------------------------------------------------------------------------

HEADER_INJECTION = (
    'x"; filename="evil.exe',
    "x\r\nSet-Cookie: pwned=1",
    "x\nLocation: https://evil.example",
    "../../etc/passwd",
    "..\\..\\boot.ini",
    "\u202egpj.exe",
)


@pytest.mark.parametrize("value", HEADER_INJECTION)
def test_export_file_names_from_filters_cannot_inject_headers(
    web: Flask, session: Session, canaries: DataSet, value: str
) -> None:
    client = client_as(web, session, "admin")
    for path, name in (
        ("/records/activities.csv", "q"),
        ("/runs/export.csv", "source"),
        ("/admin/audit.csv", "key"),
    ):
        response = client.get(path, query_string={name: value})
        assert response.status_code in (200, 400), (path, response.status_code)
        assert "pwned" not in response.headers.get("Set-Cookie", "")
        assert "Location" not in response.headers
        disposition = response.headers.get("Content-Disposition", "")
        if disposition:
            inner = disposition.split('filename="', 1)[1].rsplit('"', 1)[0]
            # No separator, quote, line break or bidi override: '..' alone names no folder.
            assert not set(inner) & set('"\r\n/\\\u202e'), (path, disposition)


def test_upload_file_name_with_path_and_controls_is_cleaned(web: Flask, session: Session) -> None:
    client = client_as(web, session, "analyst")
    content = b"activity_id,source\r\n"
    for name in ("../../etc/activities.csv", "..\\..\\activities.csv", "act\r\nivities.csv"):
        response = client.post(
            "/runs/upload",
            data={"csrf_token": token_of(client), "file": (io.BytesIO(content), name)},
            content_type="multipart/form-data",
        )
        assert response.status_code in (303, 422), (name, response.status_code)
        if response.status_code == 422:  # the form refused the name: nothing imported
            continue
        run = session.get(ImportRun, int(response.location.rsplit("/", 1)[-1]))
        assert run is not None
        assert "/" not in run.location.removeprefix("upload: "), run.location
        assert "\\" not in run.location and "\r" not in run.location, run.location


# --------------------------------------------------------------------------------------
# uploads: size, zip bombs, XML entities
# --------------------------------------------------------------------------------------


@pytest.fixture()
def small_app(engine: Any, session_factory: Any, db_url: str, tmp_path: Any) -> Iterator[Flask]:
    from cbm.web import create_app

    app = create_app(
        {
            "TESTING": True,
            "CBM_SETTINGS_OVERRIDES": {
                "env": "test",
                "secret_key": "test-secret",
                "database_url": db_url,
                "instance_dir": tmp_path,
                "max_upload_mb": 1,
            },
            "CBM_ENGINE": engine,
            "CBM_SESSION_FACTORY": session_factory,
        }
    )
    limiter.reset()
    yield app
    limiter.reset()


def upload(client: FlaskClient, content: bytes, name: str) -> Any:
    return client.post(
        "/runs/upload",
        data={"csrf_token": token_of(client), "file": (io.BytesIO(content), name)},
        content_type="multipart/form-data",
    )


def test_an_upload_over_the_limit_is_a_readable_413_and_stores_nothing(
    small_app: Flask, session: Session
) -> None:
    client = client_as(small_app, session, "analyst")
    before = table_counts(session)
    header = ",".join(contract.get("activities").columns).encode() + b"\r\n"
    row = b"A-%d,notification,DEU,POL,x,exercise,2024-03-10,,1,1,1,1,1,1,,\r\n"
    body = header + b"".join(row % i for i in range(30_000))
    assert len(body) > 2**20
    response = upload(client, body, "activities.csv")
    assert response.status_code == 413
    text = response.get_data(as_text=True)
    assert "larger than the limit of 1 MiB" in text and "<html" in text.lower()
    assert "Traceback" not in text
    session.expire_all()
    assert table_counts(session) == before


def _bomb_workbook() -> bytes:
    """A valid workbook plus a 150 MiB sheet of zeros, under 1 MiB compressed."""
    base = workbook_bytes([("activities", [list(contract.get("activities").columns)])])
    src = zipfile.ZipFile(io.BytesIO(base))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        with dst.open("xl/worksheets/sheet2.xml", "w", force_zip64=True) as member:
            block = b"0" * 2**20
            for _ in range(150):
                member.write(block)
    return out.getvalue()


XXE_TARGET = "/etc/hostname"
XML_TRICKS = {
    "billion laughs in sharedStrings": (
        "xl/sharedStrings.xml",
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
        '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="1">'
        "<si><t>&lol3;</t></si></sst>",
    ),
    "XXE in the sheet": (
        "xl/worksheets/sheet1.xml",
        f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file://{XXE_TARGET}">]>'
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        '<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>&xxe;</t></is></c></row>'
        "</sheetData></worksheet>",
    ),
    "DOCTYPE in workbook.xml": (
        "xl/workbook.xml",
        '<?xml version="1.0"?><!DOCTYPE workbook SYSTEM "http://127.0.0.1:9/x.dtd"><workbook/>',
    ),
    "ENTITY in [Content_Types].xml": (
        "[Content_Types].xml",
        '<?xml version="1.0"?><!DOCTYPE t [<!ENTITY % p SYSTEM "file:///etc/passwd">%p;]>'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>',
    ),
    "UTF-16 DOCTYPE in sharedStrings": (
        "xl/sharedStrings.xml",
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE s [<!ENTITY e "x">]><sst/>',
    ),
}


def _tricked_workbook(member: str, xml: str) -> bytes:
    from fuzz_payloads import rewrite_members

    base = workbook_bytes([("activities", [["activity_id", "source"], ["A-1", "notification"]])])
    encoded = xml.encode("utf-16") if 'encoding="UTF-16"' in xml else xml.encode()
    return rewrite_members(base, {member: encoded})


@pytest.mark.parametrize("trick", ["zip bomb", *XML_TRICKS])
def test_hostile_workbooks_are_failed_runs_that_say_why(
    web: Flask, session: Session, trick: str
) -> None:
    client = client_as(web, session, "analyst")
    before = table_counts(session)
    if trick == "zip bomb":
        content, expected = _bomb_workbook(), "zip bomb"
        assert len(content) < 2**20
    else:
        content, expected = _tricked_workbook(*XML_TRICKS[trick]), "DOCTYPE or ENTITY"
    response = upload(client, content, "activities.xlsx")
    assert response.status_code == 303
    run = session.get(ImportRun, int(response.location.rsplit("/", 1)[-1]))
    assert run is not None and run.status == "failed", (trick, run and run.status)
    assert expected in (run.message or ""), run.message
    page = client.get(response.location).get_data(as_text=True)
    try:
        secret = open(XXE_TARGET).read().strip()  # noqa: SIM115 - a one-line file
    except OSError:
        secret = ""
    if secret:
        assert secret not in (run.message or "") and secret not in page
    session.expire_all()
    after = table_counts(session)
    assert after.pop("import_runs") == before.pop("import_runs") + 1
    after.pop("audit_events"), before.pop("audit_events")
    assert after == before


# --------------------------------------------------------------------------------------
# CSRF on every state-changing route
# --------------------------------------------------------------------------------------

WRITES = ("POST", "PUT", "PATCH", "DELETE")


def test_csrf_is_required_on_every_state_changing_route(
    web: Flask, session: Session, canaries: DataSet
) -> None:
    admin = client_as(web, session, "admin")
    other = client_as(web, session, "analyst", "hostile-other")
    foreign = token_of(other)
    before = table_counts(session)
    routes = [
        (rule, method)
        for rule in sorted(web.url_map.iter_rules(), key=lambda r: r.rule)
        if rule.endpoint != "static" and not rule.endpoint.startswith("api.")  # tokens, no cookies
        for method in WRITES
        if method in (rule.methods or ())
    ]
    assert len(routes) >= 25, routes
    problems = []
    for rule, method in routes:
        path = url_for_rule(rule, canaries)
        for label, token in (("no token", None), ("forged", "forged.token"), ("foreign", foreign)):
            data: dict[str, str] = {"role": "admin", "username": "hostile-target"}
            if token is not None:
                data["csrf_token"] = token
            response = admin.open(path, method=method, data=data)
            if response.status_code != 400:
                problems.append(f"{method} {path} with {label}: {response.status_code}")
    assert not problems, "\n".join(problems)
    session.expire_all()
    assert table_counts(session) == before
    assert admin.get("/account").status_code == 200, "a refused request ended the session"
    assert METHODS  # the matrix's methods include every write method tested here
    assert set(WRITES) <= set(METHODS)


# --------------------------------------------------------------------------------------
# sessions
# --------------------------------------------------------------------------------------


def test_a_tampered_or_forged_session_cookie_signs_nobody_in(web: Flask, session: Session) -> None:
    from flask.sessions import SecureCookieSessionInterface

    victim = client_as(web, session, "admin", "hostile-victim")
    cookie = victim.get_cookie("cbm_session")
    assert cookie is not None
    value = cookie.value
    user = session.scalar(select(User).where(User.username == "hostile-victim"))
    assert user is not None
    forged_app = Flask("forger")
    forged_app.secret_key = "guessed-secret"
    signer = SecureCookieSessionInterface().get_signing_serializer(forged_app)
    forged = signer.dumps({"_user_id": f"{user.id}:{user.session_version}", "_fresh": True})
    flipped = value[:-3] + ("A" if value[-3] != "A" else "B") + value[-2:]
    payload, _, signature = value.partition(".")
    for label, bad in (
        ("one character changed", flipped),
        ("signature dropped", payload),
        ("forged with another key", forged),
        ("garbage", "x" * 40),
        ("empty", ""),
    ):
        attacker = web.test_client()
        attacker.set_cookie("cbm_session", bad)
        response = attacker.get("/admin/users")
        assert response.status_code == 302, label
        assert "/login" in response.location, label
    assert signature


# --------------------------------------------------------------------------------------
# privilege escalation
# --------------------------------------------------------------------------------------


def test_a_role_field_in_the_password_form_changes_no_role(web: Flask, session: Session) -> None:
    client = client_as(web, session, "analyst", "hostile-climber")
    response = client.post(
        "/account/password",
        data={
            "csrf_token": token_of(client, "/account"),
            "current_password": PASSWORD,
            "new_password": PASSWORD + "!",
            "new_password_confirm": PASSWORD + "!",
            "role": "admin",
            "is_admin": "1",
            "username": "hostile-target",
            "user_id": "1",
        },
    )
    assert response.status_code == 302
    session.expire_all()
    user = session.scalar(select(User).where(User.username == "hostile-climber"))
    assert user is not None and user.role == "analyst"
    assert client.get("/admin/users").status_code == 403


@pytest.mark.parametrize("role", ["viewer", "analyst"])
def test_lower_roles_cannot_touch_accounts_even_with_a_valid_token(
    web: Flask, session: Session, make_user: Callable[..., User], role: str
) -> None:
    client = client_as(web, session, role)
    target = make_user("viewer", "hostile-victim-2")
    me = session.scalar(select(User).where(User.username == f"hostile-{role}"))
    assert me is not None
    token = token_of(client)
    attempts = [
        (f"/admin/users/hostile-{role}/role", {"role": "admin"}),
        (f"/admin/users/{target.username}/role", {"role": "admin"}),
        (f"/admin/users/{target.username}/disable", {"confirm": "1"}),
        (f"/admin/users/{target.username}/reset-password", {"confirm": "1"}),
        ("/admin/users/new", {"username": "backdoor", "role": "admin", "password": PASSWORD}),
    ]
    for path, data in attempts:
        response = client.post(path, data={"csrf_token": token, **data})
        assert response.status_code == 403, (path, response.status_code)
    session.expire_all()
    assert session.get(User, me.id).role == role
    refreshed = session.get(User, target.id)
    assert refreshed.role == "viewer" and refreshed.active
    assert session.scalar(select(User).where(User.username == "backdoor")) is None
