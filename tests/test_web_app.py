"""The web shell: factory, overview page, /healthz, error pages, security headers, CSP hygiene."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask import Flask, abort
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

import cbm
from cbm.config import load_settings
from cbm.migrate import head_revision
from cbm.models import Activity, Inspection, Notification, Quota, Region, State
from cbm.web import SECURITY_HEADERS, create_app, db_session, format_number, web_state
from cbm.web.auth import public

STATIC_DIR = Path(cbm.__file__).parent / "web" / "static"


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


class _Cells(HTMLParser):
    """Collect the text of every element carrying a ``data-cell`` attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[str, str] = {}
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        key = dict(attrs).get("data-cell")
        if key:
            self._open.append(key)
            self.cells[key] = ""

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag in {"td", "span"}:
            # data-cell elements hold text only, so the first close ends the innermost cell.
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if self._open:
            self.cells[self._open[-1]] += data.strip()


def cells(html: str) -> dict[str, str]:
    parser = _Cells()
    parser.feed(html)
    return parser.cells


def ts(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_csp_clean(html: str) -> None:
    """No inline script or style (CSP forbids them) and no URL to another host."""
    for tag in re.findall(r"<script\b[^>]*>", html, flags=re.IGNORECASE):
        assert "src=" in tag, f"inline script: {tag}"
    assert not re.search(r"<style\b", html, flags=re.IGNORECASE), "inline <style> block"
    assert not re.search(r"\sstyle\s*=", html, flags=re.IGNORECASE), "style= attribute"
    assert not re.search(r"\son[a-z]+\s*=", html, flags=re.IGNORECASE), "inline event handler"
    assert not re.search(r"https?://", html, flags=re.IGNORECASE), "absolute URL"
    for url in re.findall(r'(?:href|src|action)="([^"]*)"', html):
        assert not url.startswith("//"), f"protocol-relative URL {url}"


def insert_records(session: Session) -> None:
    """Three activities, two notifications, one inspection over DEU, RUS and USA, 2023-2024."""
    session.add_all(
        [
            Activity(
                activity_id="ZAPAD-2023",
                source="notification",
                state="RUS",
                host_state="BLR",
                kind="exercise",
                start_date=dt.date(2023, 9, 8),
            ),
            Activity(
                activity_id="WETTINER-2023",
                source="calendar",
                state="DEU",
                host_state="DEU",
                kind="exercise",
                start_date=dt.date(2023, 6, 1),
            ),
            Activity(
                activity_id="DEFENDER-2024",
                source="notification",
                state="USA",
                host_state="DEU",
                kind="transfer",
                start_date=dt.date(2024, 4, 1),
            ),
            Notification(
                reference="DEU/2023/1",
                regime="VD",
                kind="annual_exchange",
                sender="DEU",
                sent_at=ts("2023-12-14T09:00:00Z"),
            ),
            Notification(
                reference="USA/2024/7",
                regime="OST",
                kind="flight_notification",
                sender="USA",
                sent_at=ts("2024-03-01T09:00:00Z"),
            ),
            Inspection(
                inspection_id="VD-2024-INS-1",
                regime="VD",
                kind="vd_inspection",
                inspecting_state="DEU",
                inspected_state="RUS",
                requested_at=ts("2024-02-01T09:00:00Z"),
            ),
        ]
    )
    session.flush()


@pytest.fixture()
def own_app(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Build apps on a database URL of the test's choosing; dispose their engines after."""
    apps: list[Flask] = []

    def build(url: str, **config: object) -> Flask:
        app = create_app(
            {
                "TESTING": True,
                "CBM_SETTINGS_OVERRIDES": {
                    "database_url": url,
                    "secret_key": "x",
                    "instance_dir": tmp_path,
                    "env": "test",
                },
                **config,
            }
        )
        apps.append(app)
        return app

    yield build
    for app in apps:
        web_state(app).engine.dispose()


# --------------------------------------------------------------------------------------
# factory
# --------------------------------------------------------------------------------------


@pytest.fixture()
def client(signed_in: Callable[..., FlaskClient]) -> FlaskClient:
    """Pages need a signed-in user; these tests are about the app shell, so a viewer."""
    return signed_in("viewer")


def _sign_in_attempt(app: Flask):
    """POST the sign-in form (with its CSRF token): the first request that needs the DB."""
    from conftest import csrf_token_from

    client = app.test_client()
    page = client.get("/login")
    assert page.status_code == 200
    token = csrf_token_from(page.get_data(as_text=True))
    return client.post("/login", data={"username": "x", "password": "y", "csrf_token": token})


def test_factory_derives_flask_config_from_settings(app: Flask) -> None:
    settings = app.config["CBM_SETTINGS"]
    assert settings.env == "test"
    assert app.config["SECRET_KEY"] == "test-secret"
    assert app.config["MAX_CONTENT_LENGTH"] == settings.max_upload_mb * 1024 * 1024
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert app.config["SESSION_COOKIE_SECURE"] is False


def test_production_sets_secure_cookies(tmp_path: Path) -> None:
    app = create_app(
        {
            "CBM_SETTINGS_OVERRIDES": {
                "env": "production",
                "secret_key": "s" * 40,
                "database_url": f"sqlite:///{tmp_path}/p.sqlite3",
                "instance_dir": tmp_path,
                "max_upload_mb": 2,
            }
        }
    )
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["MAX_CONTENT_LENGTH"] == 2 * 1024 * 1024
    web_state(app).engine.dispose()


def test_factory_accepts_ready_settings(tmp_path: Path) -> None:
    settings = load_settings(
        {},
        env="test",
        secret_key="from-the-cli",
        database_url=f"sqlite:///{tmp_path}/cli.sqlite3",
        instance_dir=tmp_path,
    )
    app = create_app({"CBM_SETTINGS": settings, "CBM_SETTINGS_OVERRIDES": {"max_upload_mb": 1}})
    assert app.config["CBM_SETTINGS"].secret_key == "from-the-cli"
    assert app.config["SECRET_KEY"] == "from-the-cli"
    assert app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024
    web_state(app).engine.dispose()


# --------------------------------------------------------------------------------------
# overview
# --------------------------------------------------------------------------------------


def test_overview_empty_state(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert ">No records yet</h2>" in html
    assert html.count("No records yet") == 1
    assert "<code>cbm demo load</code>" in html
    assert "record the first one" not in html  # a viewer cannot record
    assert "cbm — CSBM compliance tracker" in html
    assert f"cbm {cbm.__version__}" in html
    assert "All times UTC" in html
    assert 'aria-current="page"' in html  # Overview is the active nav entry
    assert "By regime" not in html  # no tables of zeros
    assert_csp_clean(html)


def test_overview_counts_match_the_store(session: Session, client: FlaskClient) -> None:
    insert_records(session)
    response = client.get("/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "No records yet" not in html
    got = cells(html)

    assert got["total:all"] == "6"
    assert got["total:activities"] == "3"
    assert got["total:notifications"] == "2"
    assert got["total:inspections"] == "1"
    assert got["total:observation_flights"] == "0"
    assert got["states:with_data"] == "4"  # RUS, BLR (host), DEU, USA
    assert got["states:total"] == "57"

    # by regime
    assert got["regime:activities:VD"] == "3"
    assert got["regime:notifications:VD"] == "1"
    assert got["regime:notifications:OST"] == "1"
    assert got["regime:inspections:VD"] == "1"
    assert got["regime:inspections:CFE"] == "0"
    assert got["regime:total:VD"] == "5"
    assert got["regime:total:OST"] == "1"
    assert got["regime:total:total"] == "6"

    # by region: RUS → Black Sea / Eastern Europe, DEU → Central Europe, USA → North America
    assert got["region:black_sea_eastern_europe:activities"] == "1"
    assert got["region:black_sea_eastern_europe:inspections"] == "1"  # inspected State
    assert got["region:black_sea_eastern_europe:total"] == "2"
    assert got["region:central_europe:activities"] == "1"
    assert got["region:central_europe:notifications"] == "1"
    assert got["region:central_europe:total"] == "2"
    assert got["region:north_america:activities"] == "1"
    assert got["region:north_america:notifications"] == "1"
    assert got["region:north_america:total"] == "2"
    assert got["region:nordic:total"] == "0"

    # by year
    assert got["year:2023:activities"] == "2"
    assert got["year:2023:notifications"] == "1"
    assert got["year:2023:inspections"] == "0"
    assert got["year:2023:total"] == "3"
    assert got["year:2024:activities"] == "1"
    assert got["year:2024:notifications"] == "1"
    assert got["year:2024:inspections"] == "1"
    assert got["year:2024:total"] == "3"
    assert got["year:total:total"] == "6"
    assert "year:none:total" not in got

    assert "unilateral" in html.lower()  # the reductions footnote
    assert "No import has run yet." in html
    assert_csp_clean(html)


def test_overview_uses_thousands_separators(session: Session, client: FlaskClient) -> None:
    session.add_all(
        Quota(regime="VD", state="DEU", year=year, kind="passive", counterpart="", quota=3)
        for year in range(1000, 2234)
    )
    session.flush()
    got = cells(client.get("/").get_data(as_text=True))
    assert got["total:quotas"] == "1,234"
    assert got["regime:quotas:VD"] == "1,234"
    assert format_number(1234567) == "1,234,567"
    assert format_number(None) == "–"


# --------------------------------------------------------------------------------------
# /healthz
# --------------------------------------------------------------------------------------


def test_healthz_ok_on_the_migrated_database(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.is_json
    body = response.get_json()
    assert body == {
        "status": "ok",
        "database": {"reachable": True, "error": None},
        "migrations": {"current": head_revision(), "head": head_revision(), "is_current": True},
        "version": cbm.__version__,
    }
    assert response.headers["Cache-Control"] == "no-store"


def test_healthz_503_on_an_unmigrated_database(
    own_app: Callable[..., Flask], tmp_path: Path
) -> None:
    app = own_app(f"sqlite:///{tmp_path}/empty.sqlite3")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "error"
    assert body["database"] == {"reachable": True, "error": None}
    assert body["migrations"] == {"current": None, "head": head_revision(), "is_current": False}


def test_healthz_503_on_an_unreachable_database(
    own_app: Callable[..., Flask], tmp_path: Path
) -> None:
    app = own_app(f"sqlite:///{tmp_path}/no/such/dir/cbm.sqlite3")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "error"
    assert body["database"]["reachable"] is False
    assert "unable to open database file" in body["database"]["error"]
    assert "[SQL" not in body["database"]["error"]
    assert body["migrations"]["is_current"] is False
    assert body["migrations"]["current"] is None


# --------------------------------------------------------------------------------------
# database failures during a request
# --------------------------------------------------------------------------------------


def test_overview_on_an_unmigrated_database_says_run_upgrade(
    own_app: Callable[..., Flask], tmp_path: Path
) -> None:
    app = own_app(f"sqlite:///{tmp_path}/empty.sqlite3")
    response = _sign_in_attempt(app)
    assert response.status_code == 503
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert "<code>cbm db upgrade</code>" in html
    assert 'href="/"' in html
    assert_csp_clean(html)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value


def test_overview_on_an_unreachable_database_says_so(
    own_app: Callable[..., Flask], tmp_path: Path
) -> None:
    app = own_app(f"sqlite:///{tmp_path}/no/such/dir/cbm.sqlite3")
    response = _sign_in_attempt(app)
    assert response.status_code == 503
    html = response.get_data(as_text=True)
    assert "database is unreachable" in html
    assert "cbm db upgrade" not in html


def test_database_errors_under_api_are_json(own_app: Callable[..., Flask], tmp_path: Path) -> None:
    app = own_app(f"sqlite:///{tmp_path}/empty.sqlite3")

    @app.get("/api/v1/things")
    @public
    def things() -> dict:
        db_session().execute(select(Region.code)).all()
        return {}

    response = app.test_client().get("/api/v1/things")
    assert response.status_code == 503
    assert response.is_json
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == 503
    assert "cbm db upgrade" in body["detail"]


# --------------------------------------------------------------------------------------
# the request transaction: commit on success, roll back otherwise
# --------------------------------------------------------------------------------------


def test_request_commits_on_success_and_rolls_back_on_error(
    app: Flask, session: Session, signed_in: Callable[..., FlaskClient]
) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = False

    def add_region(code: str) -> None:
        db_session().add(Region(code=code, name=code, description=""))
        db_session().flush()

    @app.post("/_test/ok")
    def ok() -> str:
        add_region("zz_ok")
        return "ok"

    @app.post("/_test/bad-request")
    def bad_request() -> str:
        add_region("zz_bad_request")
        abort(400)

    @app.post("/_test/boom")
    def boom() -> str:
        add_region("zz_boom")
        raise RuntimeError("boom")

    app.config["WTF_CSRF_ENABLED"] = False  # test-only routes; CSRF has its own tests
    client = signed_in("viewer")
    assert client.post("/_test/ok").status_code == 200
    assert client.post("/_test/bad-request").status_code == 400
    assert client.post("/_test/boom").status_code == 500

    stored = set(session.scalars(select(Region.code).where(Region.code.like("zz_%"))))
    assert stored == {"zz_ok"}


def test_a_failed_commit_is_an_error_page_not_a_success(
    app: Flask, session: Session, signed_in: Callable[..., FlaskClient]
) -> None:
    """The commit runs before the response leaves, so the user never sees 200 for lost data."""
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.post("/_test/duplicate")
    def duplicate() -> str:
        # State names are unique: the INSERT, and so the commit, fails after the view returns.
        db_session().add(State(code="ZZZ", name="Germany", region_code="central_europe"))
        return "looks fine"

    app.config["WTF_CSRF_ENABLED"] = False  # test-only route; CSRF has its own tests
    response = signed_in("viewer").post("/_test/duplicate")
    assert response.status_code == 500
    assert "looks fine" not in response.get_data(as_text=True)
    assert session.get(State, "ZZZ") is None


# --------------------------------------------------------------------------------------
# error pages
# --------------------------------------------------------------------------------------


def test_404_is_an_html_page_with_a_link_home(client: FlaskClient) -> None:
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert "There is no page at this address" in html
    assert 'href="/"' in html
    assert "cbm — CSBM compliance tracker" in html
    assert_csp_clean(html)


def test_api_404_is_json(client: FlaskClient) -> None:
    response = client.get("/api/nope")
    assert response.status_code == 404
    assert response.is_json
    assert response.mimetype == "application/problem+json"
    assert response.get_json() == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "There is no page at this address. The link may be mistyped or the page "
        "may have moved.",
    }


def test_405_page(client: FlaskClient) -> None:
    response = client.post("/")
    assert response.status_code == 405
    assert response.mimetype == "text/html"
    assert "does not accept that kind of request" in response.get_data(as_text=True)


def test_healthz_405_is_json(client: FlaskClient) -> None:
    response = client.post("/healthz")
    assert response.status_code == 405
    assert response.is_json


@pytest.mark.parametrize(
    ("code", "phrase"),
    [(400, "could not be understood"), (403, "permission"), (413, "50 MiB")],
)
def test_other_error_pages(
    app: Flask, code: int, phrase: str, signed_in: Callable[..., FlaskClient]
) -> None:
    @app.get("/_test/abort")
    def aborting() -> str:
        abort(code)

    response = signed_in().get("/_test/abort")
    assert response.status_code == code
    html = response.get_data(as_text=True)
    assert phrase in html
    assert 'href="/"' in html
    assert_csp_clean(html)


def test_abort_with_a_description_shows_it(
    app: Flask, signed_in: Callable[..., FlaskClient]
) -> None:
    @app.get("/_test/custom")
    def custom() -> str:
        abort(400, "The file has no header row.")

    @app.get("/api/_test/custom")
    def api_custom() -> str:
        abort(400, "The file has no header row.")

    client = signed_in()
    assert "The file has no header row." in client.get("/_test/custom").get_data(as_text=True)
    assert client.get("/api/_test/custom").get_json() == {
        "type": "about:blank",
        "title": "Bad Request",
        "status": 400,
        "detail": "The file has no header row.",
    }


def test_upload_over_the_limit_is_413(app: Flask, signed_in: Callable[..., FlaskClient]) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 1024

    @app.post("/_test/upload")
    def upload() -> str:
        from flask import request

        return str(len(request.form))

    response = signed_in().post("/_test/upload", data={"f": "x" * 4096})
    assert response.status_code == 413
    assert "larger than the limit" in response.get_data(as_text=True)


def test_500_page_html_and_json(app: Flask, signed_in: Callable[..., FlaskClient]) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/_test/crash")
    def crash() -> str:
        raise RuntimeError("secret detail")

    @app.get("/api/_test/crash")
    def api_crash() -> str:
        raise RuntimeError("secret detail")

    client = signed_in()
    response = client.get("/_test/crash")
    assert response.status_code == 500
    html = response.get_data(as_text=True)
    assert "Something went wrong on our side" in html
    assert "secret detail" not in html
    assert 'href="/"' in html

    response = client.get("/api/_test/crash")
    assert response.status_code == 500
    assert response.get_json()["status"] == 500
    assert "secret detail" not in response.get_data(as_text=True)


# --------------------------------------------------------------------------------------
# security headers and offline-by-construction
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/healthz", "/no-such-page", "/api/nope", "/static/cbm.css"])
def test_security_headers_on_every_response(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp


def test_static_files_reference_no_other_host() -> None:
    # Vendored files (Swagger UI) are copied unchanged and name hosts in strings they never
    # load (the SVG namespace, the validator badge that api-docs.js turns off); the docs
    # page test checks what that page itself references.
    for path in STATIC_DIR.rglob("*"):
        if "vendor" in path.parts:
            continue
        if path.is_file() and path.suffix in {".css", ".js", ".html"}:
            content = path.read_text(encoding="utf-8")
            assert not re.search(r"https?://|@import|url\(\s*['\"]?//", content), path


def test_templates_have_no_inline_script_or_style() -> None:
    templates = Path(cbm.__file__).parent / "web" / "templates"
    for path in templates.rglob("*.html"):
        content = path.read_text(encoding="utf-8")
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", content), path
        assert not re.search(r"<style\b|\sstyle\s*=", content), path
        assert not re.search(r"https?://", content), path


@pytest.mark.parametrize(
    "path",
    [
        "/records/activities/?q=a%00b",
        "/records/notifications/a%00b",
        "/admin/audit?actor=a%00b",
        "/admin/audit?key=a%00b",
        "/findings?q=a%00b",
    ],
)
def test_a_nul_in_the_address_is_a_400_not_a_500_or_a_match_of_everything(
    signed_in, path: str
) -> None:
    """Found by tests/test_hostile_input.py: on PostgreSQL a NUL in a filter or a record key
    was a 500 (text parameters cannot hold one); on SQLite LIKE ended the pattern at the
    NUL, so q=a%00b listed every record with a text ending in 'a'."""
    client = signed_in("admin")
    response = client.get(path)
    assert response.status_code == 400, response.status_code
    assert "NUL" in response.get_data(as_text=True)
