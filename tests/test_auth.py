"""Web security, proved with real requests on both backends.

Sign-in (generic failure, disabled accounts, no session fixation), ``next=`` open-redirect
refusal, the sign-in rate limit, cookie flags, CSRF on state-changing requests, sessions
ended by account changes, logout, the guard (HTML and /api), security headers and the
upload cap. The route-by-route permissions are in ``test_authz_matrix.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from argon2 import PasswordHasher
from conftest import PASSWORD, csrf_token_from
from flask import Flask, jsonify, request
from flask.testing import FlaskClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from cbm.models import User
from cbm.services import accounts
from cbm.web import SECURITY_HEADERS, create_app
from cbm.web.auth import is_safe_next, limiter

GENERIC_ERROR = "Wrong username or password, or the account is disabled."
COOKIE = "cbm_session"

#: ``next=`` values that must never send the browser to another site (as sent in the form,
#: i.e. after one round of URL decoding).
HOSTILE_NEXT = [
    "https://evil.example",
    "https://evil.example/records/",
    "http://evil.example",
    "//evil.example",
    "//evil.example/records/",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "\\/evil.example",
    "/\\/evil.example",
    "javascript:alert(1)",
    "JavaScript:alert(document.cookie)",
    "data:text/html,<script>alert(1)</script>",
    "%2F%2Fevil.example",
    "%2f%2fevil.example",
    "https:evil.example",
    "https:/evil.example",
    "evil.example",
    " //evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n//evil.example",
    "http://127.0.0.1@evil.example",
    "//127.0.0.1%40evil.example",
    "",
]


# --------------------------------------------------------------------------------------
# helpers and fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id at its real cost takes ~0.25 s a hash; these tests hash and verify hundreds
    of times and are about sessions, not about the hash, so they use the cheapest one."""
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(accounts, "_hasher", hasher)
    monkeypatch.setattr(accounts, "_DUMMY_HASH", hasher.hash("dummy"))


@pytest.fixture(autouse=True)
def fresh_limits(app: Flask) -> Iterator[None]:
    """The limiter is one module-level object whose in-memory counters outlive a request;
    start and end every test with none, so sign-ins in one test never count in another."""
    limiter.reset()
    yield
    limiter.reset()


def login_form(client: FlaskClient) -> str:
    page = client.get("/login")
    assert page.status_code == 200
    return csrf_token_from(page.get_data(as_text=True))


def post_login(client: FlaskClient, username: str, password: str = PASSWORD, **extra: str):
    token = login_form(client)
    return client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token, **extra}
    )


def signed_in_as(client: FlaskClient) -> str | None:
    """The username the overview page shows in the header, or None when it sends us away."""
    response = client.get("/")
    if response.status_code != 200:
        assert response.status_code == 302, response.status_code
        assert response.location.startswith("/login"), response.location
        return None
    match = re.search(r'title="Signed in as ([^ ]+) ', response.get_data(as_text=True))
    assert match, "the overview shows no signed-in user"
    return match.group(1)


def set_cookie(response, name: str = COOKIE) -> dict[str, str | bool] | None:
    """The attributes of the Set-Cookie header for ``name`` (lower-case keys)."""
    for header in response.headers.getlist("Set-Cookie"):
        parts = [p.strip() for p in header.split(";")]
        key, _, value = parts[0].partition("=")
        if key != name:
            continue
        attrs: dict[str, str | bool] = {"value": value}
        for part in parts[1:]:
            attr, sep, val = part.partition("=")
            attrs[attr.lower()] = val if sep else True
        return attrs
    return None


def session_contents(client: FlaskClient) -> dict:
    with client.session_transaction() as sess:
        return dict(sess)


def user_row(session: Session, username: str) -> User:
    session.expire_all()
    return session.scalars(select(User).where(User.username == username)).one()


def strip_volatile(html: str, *usernames: str) -> str:
    """The page with CSRF tokens and the echoed usernames blanked (they differ by design)."""
    html = re.sub(r'name="csrf_token" value="[^"]*"', 'name="csrf_token" value=""', html)
    for name in usernames:
        html = html.replace(f'value="{name}"', 'value=""')
    return html


# --------------------------------------------------------------------------------------
# sign-in
# --------------------------------------------------------------------------------------


def test_login_success_signs_in_and_redirects_to_the_overview(
    client: FlaskClient, make_user: Callable[..., User], session: Session
) -> None:
    make_user("analyst", "alice")
    assert user_row(session, "alice").last_login_at is None
    response = post_login(client, "alice")
    assert response.status_code == 302
    assert response.location == "/"
    assert signed_in_as(client) == "alice"
    assert user_row(session, "alice").last_login_at is not None


def test_login_username_is_case_and_space_insensitive(
    client: FlaskClient, make_user: Callable[..., User]
) -> None:
    make_user("viewer", "bob")
    assert post_login(client, "  BOB ").status_code == 302
    assert signed_in_as(client) == "bob"


def test_login_failures_are_401_and_say_nothing_about_which_part_was_wrong(
    app: Flask, make_user: Callable[..., User], session: Session
) -> None:
    make_user("analyst", "alice")
    make_user("analyst", "carol")
    accounts.set_active(session, "carol", False)
    session.commit()

    attempts = {
        "wrong password": ("alice", "not the password at all"),
        "unknown user": ("mallory", PASSWORD),
        "unknown user, wrong password": ("mallory", "not the password at all"),
        "disabled account, right password": ("carol", PASSWORD),
        "empty password": ("alice", ""),
    }
    pages = {}
    for label, (username, password) in attempts.items():
        client = app.test_client()
        response = post_login(client, username, password)
        html = response.get_data(as_text=True)
        assert response.status_code == 401, f"{label}: {response.status_code}"
        assert GENERIC_ERROR in html, label
        assert signed_in_as(client) is None, f"{label}: signed in anyway"
        assert set_cookie(response) is None or "_user_id" not in session_contents(client)
        lowered = html.lower()
        for leak in ("unknown user", "no account", "does not exist", "disabled account",
                     "incorrect password", "wrong password.", "password is wrong"):  # fmt: skip
            assert leak not in lowered, f"{label}: page says {leak!r}"
        pages[label] = strip_volatile(html, "alice", "mallory", "carol")
    # Apart from the echoed username, every failure is the very same page.
    first = next(iter(pages.values()))
    for label, page in pages.items():
        assert page == first, f"the page for '{label}' differs from the others"


def test_disabled_account_cannot_sign_in_and_enabled_again_can(
    client: FlaskClient, make_user: Callable[..., User], session: Session
) -> None:
    make_user("viewer", "dave")
    accounts.set_active(session, "dave", False)
    session.commit()
    response = post_login(client, "dave")
    assert response.status_code == 401
    assert GENERIC_ERROR in response.get_data(as_text=True)
    assert signed_in_as(client) is None
    assert user_row(session, "dave").last_login_at is None

    accounts.set_active(session, "dave", True)
    session.commit()
    assert post_login(client, "dave").status_code == 302
    assert signed_in_as(client) == "dave"


def test_session_is_renewed_on_sign_in_no_fixation(
    client: FlaskClient, make_user: Callable[..., User]
) -> None:
    make_user("analyst", "alice")
    token = login_form(client)
    # An attacker plants a session (here: a marker in it) before the victim signs in.
    with client.session_transaction() as sess:
        sess["planted"] = "by-the-attacker"
    planted = client.get_cookie(COOKIE)
    assert planted is not None
    before = planted.value
    assert session_contents(client)["planted"] == "by-the-attacker"

    response = client.post(
        "/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302
    attrs = set_cookie(response)
    assert attrs is not None, "sign-in did not issue a new session cookie"
    after = client.get_cookie(COOKIE)
    assert after is not None and after.value != before
    contents = session_contents(client)
    assert "planted" not in contents, "data from before sign-in survived it"
    assert "csrf_token" not in contents, "the pre-sign-in CSRF secret survived sign-in"
    assert contents.get("_user_id", "").split(":")[0].isdigit()

    # The CSRF token known before sign-in is worthless afterwards.
    stale = client.post("/logout", data={"csrf_token": token})
    assert stale.status_code == 400
    assert signed_in_as(client) == "alice"


def test_a_session_cookie_from_before_sign_in_is_not_the_signed_in_one(
    app: Flask, make_user: Callable[..., User]
) -> None:
    """Replaying the anonymous cookie (what a fixation attacker holds) gives no access."""
    make_user("viewer", "erin")
    victim = app.test_client()
    login_form(victim)
    anonymous_cookie = victim.get_cookie(COOKIE).value
    assert post_login(victim, "erin").status_code == 302
    assert signed_in_as(victim) == "erin"

    attacker = app.test_client()
    attacker.set_cookie(COOKIE, anonymous_cookie)
    assert signed_in_as(attacker) is None


# --------------------------------------------------------------------------------------
# next=
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", HOSTILE_NEXT)
def test_hostile_next_is_refused_on_sign_in(
    client: FlaskClient, make_user: Callable[..., User], target: str
) -> None:
    make_user("viewer", "alice")
    response = post_login(client, "alice", next=target)
    assert response.status_code == 302
    assert response.location == "/", f"next={target!r} sent the user to {response.location!r}"


@pytest.mark.parametrize(
    "query",
    [
        "next=https://evil.example",
        "next=//evil.example",
        "next=%2F%2Fevil.example",
        "next=%252F%252Fevil.example",
        "next=/%5Cevil.example",
        "next=%5C%5Cevil.example",
        "next=javascript:alert(1)",
        "next=/%09/evil.example",
        "next=https%3A%2F%2Fevil.example",
    ],
)
def test_hostile_next_in_the_query_string_is_refused(
    app: Flask, make_user: Callable[..., User], query: str
) -> None:
    make_user("viewer", "alice")
    client = app.test_client()
    page = client.get(f"/login?{query}")
    html = page.get_data(as_text=True)
    assert 'name="next"' not in html, "a hostile next= was carried into the sign-in form"
    token = csrf_token_from(html)
    response = client.post(
        f"/login?{query}", data={"username": "alice", "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302
    assert response.location == "/", f"{query} sent the user to {response.location!r}"
    # Already signed in: /login?next=… redirects at once, and must stay local too.
    again = client.get(f"/login?{query}")
    assert again.status_code == 302
    assert again.location == "/"


@pytest.mark.parametrize("target", HOSTILE_NEXT)
def test_is_safe_next_refuses_hostile_targets(target: str) -> None:
    assert not is_safe_next(target)


@pytest.mark.parametrize("target", ["/records/", "/records/inspections/?q=VD&page=2", "/"])
def test_a_local_next_is_honoured(
    client: FlaskClient, make_user: Callable[..., User], target: str
) -> None:
    make_user("viewer", "alice")
    page = client.get("/login", query_string={"next": target})
    assert f'name="next" value="{target.replace("&", "&amp;")}"' in page.get_data(as_text=True)
    response = post_login(client, "alice", next=target)
    assert response.status_code == 302
    assert response.location == target


def test_anonymous_page_request_goes_to_login_and_back(
    client: FlaskClient, make_user: Callable[..., User]
) -> None:
    make_user("viewer", "alice")
    response = client.get("/?year=2024&region=east")
    assert response.status_code == 302
    parts = urlsplit(response.location)
    assert parts.path == "/login"
    assert parse_qs(parts.query)["next"] == ["/?year=2024&region=east"]

    back = post_login(client, "alice", next=parse_qs(parts.query)["next"][0])
    assert back.status_code == 302
    assert back.location == "/?year=2024&region=east"


# --------------------------------------------------------------------------------------
# rate limit
# --------------------------------------------------------------------------------------


def test_the_eleventh_sign_in_attempt_in_a_minute_is_429(
    client: FlaskClient, make_user: Callable[..., User]
) -> None:
    make_user("viewer", "alice")
    token = login_form(client)
    for attempt in range(1, 11):
        response = client.post(
            "/login",
            data={"username": "alice", "password": "guess-guess-guess", "csrf_token": token},
        )
        assert response.status_code == 401, f"attempt {attempt}: {response.status_code}"
    # The 11th is refused even with the right password: guessing has to stop.
    response = client.post(
        "/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 429
    assert signed_in_as(client) is None
    assert int(response.headers["Retry-After"]) > 0
    # Only POSTs count: the form itself still opens.
    assert client.get("/login").status_code == 200


def test_the_429_page_is_a_friendly_html_page(
    client: FlaskClient, app: Flask, make_user: Callable[..., User]
) -> None:
    app.config["CBM_LOGIN_RATE_LIMIT"] = "2 per minute"
    token = login_form(client)
    for _ in range(2):
        client.post("/login", data={"username": "x", "password": "y", "csrf_token": token})
    response = client.post("/login", data={"username": "x", "password": "y", "csrf_token": token})
    assert response.status_code == 429
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert '<section class="error-page"' in html
    assert 'href="/"' in html, "no way home"
    message = re.search(r'<p class="error-page__message">(.*?)</p>', html, re.S)
    assert message, "no message on the 429 page"
    text = message.group(1).lower()
    # A person should learn what happened and what to do, not read "2 per 1 minute".
    assert "sign-in" in text or "sign in" in text or "attempts" in text, message.group(1)
    assert "try again" in text or "wait" in text, message.group(1)


def test_the_limit_is_per_client_address_and_configurable(
    app: Flask, make_user: Callable[..., User]
) -> None:
    make_user("viewer", "alice")
    app.config["CBM_LOGIN_RATE_LIMIT"] = "3 per minute"
    attacker = app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "203.0.113.7"
    token = login_form(attacker)
    codes = [
        attacker.post(
            "/login", data={"username": "alice", "password": "nope-nope-nope", "csrf_token": token}
        ).status_code
        for _ in range(4)
    ]
    assert codes == [401, 401, 401, 429]

    colleague = app.test_client()
    colleague.environ_base["REMOTE_ADDR"] = "198.51.100.9"
    assert post_login(colleague, "alice").status_code == 302
    assert signed_in_as(colleague) == "alice"


def test_limiter_reset_clears_the_counters(app: Flask) -> None:
    """The fixture above relies on this; without it tests would throttle one another."""
    app.config["CBM_LOGIN_RATE_LIMIT"] = "1 per minute"
    client = app.test_client()
    token = login_form(client)
    data = {"username": "x", "password": "y", "csrf_token": token}
    assert client.post("/login", data=data).status_code == 401
    assert client.post("/login", data=data).status_code == 429
    limiter.reset()
    assert client.post("/login", data=data).status_code == 401


# --------------------------------------------------------------------------------------
# cookies
# --------------------------------------------------------------------------------------


def test_session_cookie_is_httponly_lax_and_not_secure_outside_production(
    client: FlaskClient, make_user: Callable[..., User]
) -> None:
    make_user("viewer", "alice")
    anonymous = client.get("/login")
    response = post_login(client, "alice")
    for label, resp in (("anonymous", anonymous), ("signed in", response)):
        attrs = set_cookie(resp)
        assert attrs is not None, f"{label}: no session cookie"
        assert attrs.get("httponly") is True, f"{label}: {attrs}"
        assert str(attrs.get("samesite")).lower() == "lax", f"{label}: {attrs}"
        assert "secure" not in attrs, f"{label}: Secure outside production breaks http://"
        assert attrs.get("path") == "/"
    names = {h.split("=", 1)[0] for h in response.headers.getlist("Set-Cookie")}
    assert names == {COOKIE}, f"unexpected cookies: {names}"


@pytest.fixture()
def production_app(
    engine: Engine, session_factory: sessionmaker[Session], db_url: str, tmp_path: Path
) -> Iterator[Flask]:
    app = create_app(
        {
            "CBM_SETTINGS_OVERRIDES": {
                "env": "production",
                "secret_key": "p" * 48,
                "database_url": db_url,
                "instance_dir": tmp_path,
            },
            "CBM_ENGINE": engine,
            "CBM_SESSION_FACTORY": session_factory,
        }
    )
    limiter.reset()
    yield app
    limiter.reset()


def test_session_cookie_is_secure_in_production(
    production_app: Flask, make_user: Callable[..., User]
) -> None:
    assert production_app.config["CBM_SETTINGS"].is_production
    make_user("viewer", "alice")
    client = production_app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"  # production is served over HTTPS
    anonymous = client.get("/login")
    response = post_login(client, "alice")
    assert response.status_code == 302
    for resp in (anonymous, response):
        attrs = set_cookie(resp)
        assert attrs is not None
        assert attrs.get("secure") is True, attrs
        assert attrs.get("httponly") is True, attrs
        assert str(attrs.get("samesite")).lower() == "lax", attrs
    assert signed_in_as(client) == "alice"


# --------------------------------------------------------------------------------------
# CSRF
# --------------------------------------------------------------------------------------


def test_login_without_csrf_token_is_400_and_signs_nobody_in(
    client: FlaskClient, make_user: Callable[..., User], session: Session
) -> None:
    make_user("analyst", "alice")
    client.get("/login")
    for data in (
        {"username": "alice", "password": PASSWORD},
        {"username": "alice", "password": PASSWORD, "csrf_token": ""},
        {"username": "alice", "password": PASSWORD, "csrf_token": "forged.token.value"},
    ):
        response = client.post("/login", data=data)
        assert response.status_code == 400, data
        assert "CSRF" in response.get_data(as_text=True) or "form" in response.get_data(
            as_text=True
        )
        assert signed_in_as(client) is None
    assert user_row(session, "alice").last_login_at is None


def test_a_csrf_token_from_another_session_is_refused(
    app: Flask, make_user: Callable[..., User]
) -> None:
    make_user("analyst", "alice")
    other = app.test_client()
    foreign_token = login_form(other)
    victim = app.test_client()
    login_form(victim)
    response = victim.post(
        "/login", data={"username": "alice", "password": PASSWORD, "csrf_token": foreign_token}
    )
    assert response.status_code == 400
    assert signed_in_as(victim) is None


def test_logout_without_csrf_token_is_400_and_keeps_the_session(
    signed_in: Callable[..., FlaskClient],
) -> None:
    client = signed_in("viewer", "frank")
    for data in ({}, {"csrf_token": ""}, {"csrf_token": "forged"}):
        response = client.post("/logout", data=data)
        assert response.status_code == 400, data
        assert signed_in_as(client) == "frank", "a forged logout ended the session"


def test_csrf_header_token_is_accepted_for_scripts(
    signed_in: Callable[..., FlaskClient],
) -> None:
    """Flask-WTF also reads X-CSRFToken, which is how page scripts send it."""
    client = signed_in("viewer", "frank")
    token = csrf_token_from(client.get("/").get_data(as_text=True))
    response = client.post("/logout", headers={"X-CSRFToken": token})
    assert response.status_code == 302
    assert signed_in_as(client) is None


# --------------------------------------------------------------------------------------
# sessions end when the account changes
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda s, name: accounts.set_active(s, name, False), id="disabled"),
        pytest.param(lambda s, name: accounts.reset_password(s, name), id="password-reset"),
        pytest.param(
            lambda s, name: accounts.reset_password(s, name, "a brand new password!"),
            id="password-set",
        ),
        pytest.param(lambda s, name: accounts.set_role(s, name, "viewer"), id="role-lowered"),
        pytest.param(lambda s, name: accounts.set_role(s, name, "admin"), id="role-raised"),
    ],
)
def test_account_change_ends_its_sessions(
    app: Flask,
    session: Session,
    signed_in: Callable[..., FlaskClient],
    change: Callable[[Session, str], object],
) -> None:
    first = signed_in("analyst", "grace")
    second = app.test_client()
    assert post_login(second, "grace").status_code == 302
    bystander = signed_in("analyst", "heidi")
    for client in (first, second):
        assert signed_in_as(client) == "grace"

    change(session, "grace")
    session.commit()

    for client in (first, second):
        response = client.get("/")
        assert response.status_code == 302
        assert response.location.startswith("/login?next=")
    assert signed_in_as(bystander) == "heidi", "another account's session ended too"


def test_an_unchanged_role_or_state_keeps_the_session(
    session: Session, signed_in: Callable[..., FlaskClient]
) -> None:
    """No-op changes do not bump session_version (no needless sign-outs)."""
    client = signed_in("analyst", "ivan")
    accounts.set_role(session, "ivan", "analyst")
    accounts.set_active(session, "ivan", True)
    session.commit()
    assert signed_in_as(client) == "ivan"


def test_a_new_password_works_and_the_old_one_does_not(
    app: Flask, session: Session, make_user: Callable[..., User]
) -> None:
    make_user("viewer", "judy")
    new = accounts.reset_password(session, "judy")
    session.commit()
    assert post_login(app.test_client(), "judy").status_code == 401
    client = app.test_client()
    assert post_login(client, "judy", new).status_code == 302
    assert signed_in_as(client) == "judy"


# --------------------------------------------------------------------------------------
# logout
# --------------------------------------------------------------------------------------


def test_logout_is_post_only(signed_in: Callable[..., FlaskClient]) -> None:
    client = signed_in("viewer", "kim")
    response = client.get("/logout")
    assert response.status_code == 405
    assert signed_in_as(client) == "kim", "GET /logout ended the session"


def test_logout_ends_the_session(signed_in: Callable[..., FlaskClient]) -> None:
    client = signed_in("viewer", "kim")
    token = csrf_token_from(client.get("/").get_data(as_text=True))
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302
    assert response.location == "/login"
    assert "_user_id" not in session_contents(client)
    assert signed_in_as(client) is None
    page = client.get("/login").get_data(as_text=True)
    assert "You are signed out." in page


def test_a_session_cookie_copied_before_logout_is_dead_after_it(
    app: Flask, signed_in: Callable[..., FlaskClient]
) -> None:
    client = signed_in("viewer", "kim")
    stolen = client.get_cookie(COOKIE).value
    token = csrf_token_from(client.get("/").get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302

    thief = app.test_client()
    thief.set_cookie(COOKIE, stolen)
    assert signed_in_as(thief) is None


# --------------------------------------------------------------------------------------
# the guard
# --------------------------------------------------------------------------------------


@pytest.fixture()
def api_app(app: Flask) -> Flask:
    """The app with an /api route and an analyst write route (no real ones exist yet)."""
    from cbm.web.auth import role_required

    @app.get("/api/_test/things")
    def _api_things():
        return jsonify(things=[])

    @app.post("/_test/upload")
    @role_required("analyst")
    def _upload() -> str:
        return str(len(request.files.getlist("file")))

    return app


def test_anonymous_pages_redirect_to_login_with_next(client: FlaskClient) -> None:
    for path in ("/", "/?year=2024"):
        response = client.get(path)
        assert response.status_code == 302
        parts = urlsplit(response.location)
        assert parts.path == "/login"
        assert parse_qs(parts.query)["next"] == [path]
    # A POST without a token is refused before anything else looks at it.
    assert client.post("/logout").status_code == 400


def test_anonymous_api_is_401_json(api_app: Flask) -> None:
    client = api_app.test_client()
    response = client.get("/api/_test/things")
    assert response.status_code == 401
    assert response.is_json
    assert response.get_json()["status"] == 401
    assert "Location" not in response.headers


def test_signed_in_api_request_passes_the_guard(
    api_app: Flask, make_user: Callable[..., User]
) -> None:
    make_user("viewer", "lee")
    client = api_app.test_client()
    assert post_login(client, "lee").status_code == 302
    response = client.get("/api/_test/things")
    assert response.status_code == 200
    assert response.get_json() == {"things": []}


def test_public_endpoints_need_no_sign_in(client: FlaskClient) -> None:
    assert client.get("/login").status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/static/cbm.css").status_code == 200


# --------------------------------------------------------------------------------------
# headers and upload cap
# --------------------------------------------------------------------------------------


def test_security_headers_on_sign_in_pages_and_errors(
    client: FlaskClient, app: Flask, make_user: Callable[..., User]
) -> None:
    make_user("viewer", "alice")
    app.config["CBM_LOGIN_RATE_LIMIT"] = "1 per minute"
    responses = {
        "login page": client.get("/login"),
        "failed login": post_login(client, "alice", "wrong wrong wrong"),
        "rate limited": post_login(client, "alice"),
        "csrf refused": client.post("/login", data={}),
        "anonymous redirect": client.get("/"),
    }
    assert responses["rate limited"].status_code == 429
    for label, response in responses.items():
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, f"{label}: {name}"
        csp = response.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.fixture()
def small_upload_app(
    engine: Engine, session_factory: sessionmaker[Session], db_url: str, tmp_path: Path
) -> Iterator[Flask]:
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


def test_upload_over_cbm_max_upload_mb_is_413(
    small_upload_app: Flask, make_user: Callable[..., User]
) -> None:
    import io

    from cbm.web.auth import role_required

    received: list[int] = []

    @small_upload_app.post("/_test/upload")
    @role_required("analyst")
    def _upload() -> str:
        received.append(len(request.files["file"].read()))
        return "ok"

    make_user("analyst", "mia")
    client = small_upload_app.test_client()
    assert post_login(client, "mia").status_code == 302
    token = csrf_token_from(client.get("/").get_data(as_text=True))

    def upload(size: int):
        return client.post(
            "/_test/upload",
            data={"csrf_token": token, "file": (io.BytesIO(b"x" * size), "big.csv")},
            content_type="multipart/form-data",
        )

    small = upload(1000)
    assert small.status_code == 200
    big = upload(1024 * 1024 + 1)
    assert big.status_code == 413
    assert "larger than the limit of 1 MiB" in big.get_data(as_text=True)
    assert received == [1000], "the oversized upload reached the view"


def test_an_oversized_sign_in_post_is_413(small_upload_app: Flask) -> None:
    client = small_upload_app.test_client()
    token = login_form(client)
    response = client.post(
        "/login",
        data={"username": "x", "password": "y" * (1024 * 1024 + 10), "csrf_token": token},
    )
    assert response.status_code == 413


@pytest.mark.parametrize(("proxies", "expected"), [(0, "127.0.0.1"), (1, "203.0.113.7")])
def test_client_address_behind_trusted_proxies(
    engine, session_factory, db_url: str, tmp_path, proxies: int, expected: str
) -> None:
    """The rate limit keys on the client address: behind a proxy it must be the client's,
    and without a configured proxy a forged X-Forwarded-For must not be believed."""
    from flask import request as flask_request

    from cbm.web import create_app
    from cbm.web.auth import public

    app = create_app(
        {
            "TESTING": True,
            "CBM_SETTINGS_OVERRIDES": {
                "env": "test",
                "database_url": db_url,
                "secret_key": "x",
                "instance_dir": tmp_path,
                "trusted_proxies": proxies,
            },
            "CBM_ENGINE": engine,
            "CBM_SESSION_FACTORY": session_factory,
        }
    )

    @app.get("/_test/addr")
    @public
    def addr() -> str:
        return flask_request.remote_addr or ""

    got = app.test_client().get("/_test/addr", headers={"X-Forwarded-For": "203.0.113.7"})
    assert got.get_data(as_text=True) == expected
