"""Authorisation matrix: every route of the app, every method, every role.

The routes come from the app's URL map, so a new route is covered the day it is added.
What each route should allow is read from its view, the same way the guard reads it:

- public (listed in ``PUBLIC_ENDPOINTS`` or marked ``@public``): anyone;
- ``@role_required(role)`` (``view.cbm_role``): that role and above;
- neither: any signed-in user (a viewer and above).

Then, for anonymous visitors, viewers, analysts and admins, each method is sent with a
valid CSRF token (this test is about who may, not about CSRF) and:

- an anonymous visitor of a non-public route is sent to ``/login?next=…`` (HTML) or gets
  401 JSON (``/api``);
- a signed-in user below the route's role gets 403;
- a user at or above it is not refused (200, 404 for a missing example, 405, 422 for an
  empty form, a redirect elsewhere: anything but the refusals above).

A policy on top: every route that changes state (POST, PUT, PATCH, DELETE) needs at least
``analyst``, except the few in ``WRITE_ALLOWLIST``. A new write route without a role
decorator fails here.

A route whose URL has an argument this file cannot fill fails with a message naming it:
add an example to ``EXAMPLES`` (that is what keeps new routes covered).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from argon2 import PasswordHasher
from conftest import PASSWORD, csrf_token_from, login
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from werkzeug.routing import Rule

from cbm.services import accounts
from cbm.services.accounts import role_rank
from cbm.services.records import Actor, upsert_records
from cbm.vocab import ROLES
from cbm.web import create_app
from cbm.web.auth import PUBLIC_DASHBOARD_BLUEPRINTS, PUBLIC_ENDPOINTS, limiter

#: Requests this test sends per route. HEAD and OPTIONS are answered by Flask for every
#: GET route and carry no body; they are not tested separately.
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: Endpoints that change state yet are open to every signed-in user (or to anyone). Keep
#: this list short; every entry is a decision, written down.
WRITE_ALLOWLIST = {
    "auth.login": "signing in is how anyone becomes a user",
    "auth.logout": "every user may end their own session",
    "account.change_password": "every user may change their own password",
    "deadlines.renew_feed": "every user may create or renew their own calendar-feed link",
    "account.create_api_token": "every user may create API tokens for themselves (at most "
    "their own role)",
    "account.revoke_api_token": "every user may revoke their own API tokens",
}

#: Statuses that look like a refusal but are the route's real answer. Signing in with an
#: empty form is a failed sign-in: 401, by design, for anyone.
REAL_ANSWERS = {("auth.login", "POST"): {401}}

ANONYMOUS = "anonymous"
WHO = (ANONYMOUS, *ROLES)


# --------------------------------------------------------------------------------------
# the example data set and the URL arguments it fills
# --------------------------------------------------------------------------------------


@dataclass
class DataSet:
    """The records and accounts that route arguments point at."""

    activity: dict[str, str]
    inspection: dict[str, str]
    target_username: str
    target_user_id: int
    run_id: int


def _encode_key(parts: list[str]) -> str:
    """Record keys in URLs, encoded exactly as the records blueprint does."""
    from cbm.web.records import encode_key

    return encode_key(parts)


#: URL argument name -> its example value for the data set. A route with an argument not
#: listed here fails ``test_route_access`` with a message asking for an entry.
EXAMPLES: dict[str, Callable[[DataSet], Any]] = {
    "kind": lambda d: "activities",
    "key": lambda d: _encode_key([d.activity["activity_id"], d.activity["source"]]),
    "username": lambda d: d.target_username,
    "user_id": lambda d: d.target_user_id,
    "run_id": lambda d: d.run_id,
    "job_id": lambda d: "check:nightly",  # a fixed job of the registry (a placeholder)
    "source_id": lambda d: 999_999,  # no such source: 404 for those allowed
    "rule_id": lambda d: "VD-I-3",  # a rule of the catalogue (fixed ids)
    "finding_id": lambda d: 999_999,  # no such finding: 404 for those allowed
    "token_id": lambda d: 999_999,  # no such token: refused with a message
    "check_id": lambda d: 999_999,  # no such check run: 404 for those allowed
    "region_code": lambda d: "baltic",  # a region of the reference data
    "state_code": lambda d: "DEU",  # a participating State of the reference data
    "chart": lambda d: "trend",  # a chart of the overview and region dashboards
    "filename": lambda d: "dashboards/dashboards.js",  # a static file of the dashboards
}


def url_for_rule(rule: Rule, data: DataSet) -> str:
    defaults = rule.defaults or {}
    missing = sorted(a for a in rule.arguments if a not in EXAMPLES and a not in defaults)
    if missing:
        pytest.fail(
            f"route {rule.rule} ({rule.endpoint}) has URL arguments {missing} that the "
            "authorisation matrix cannot fill: add an example value for each to EXAMPLES "
            "in tests/test_authz_matrix.py (and, if it names a record, to DataSet)",
            pytrace=False,
        )
    values = {a: EXAMPLES[a](data) for a in rule.arguments if a in EXAMPLES}
    built = rule.build(values, append_unknown=False)
    assert built is not None, f"cannot build {rule.rule} from {values}"
    return built[1]


# --------------------------------------------------------------------------------------
# the routes, read from the URL map at collection time
# --------------------------------------------------------------------------------------


def _url_map_app() -> Flask:
    """An app built only to read its URL map and views (it never opens its database)."""
    tmp = tempfile.mkdtemp(prefix="cbm-authz-")
    return create_app(
        {
            "TESTING": True,
            "CBM_SETTINGS_OVERRIDES": {
                "env": "test",
                "secret_key": "url-map-only",
                "database_url": f"sqlite:///{tmp}/unused.sqlite3",
                "instance_dir": tmp,
            },
        }
    )


URL_MAP_APP = _url_map_app()
#: (endpoint, rule, method) for every rule but ``static`` and the JSON API, which takes
#: tokens, never session cookies: its own matrix is in ``tests/test_api_authz.py``.
ROUTES = sorted(
    (
        (rule.endpoint, rule.rule, method)
        for rule in URL_MAP_APP.url_map.iter_rules()
        if rule.endpoint != "static" and not rule.endpoint.startswith("api.")
        for method in METHODS
        if method in (rule.methods or ())
    ),
    key=lambda r: (r[1], r[2], r[0]),
)


def required_role(app: Flask, endpoint: str) -> str | None:
    """The role a route needs, as its view declares it; None for a public route."""
    if endpoint in PUBLIC_ENDPOINTS:
        return None
    view = app.view_functions[endpoint]
    view_class = getattr(view, "view_class", None)
    if getattr(view, "cbm_public", False) or getattr(view_class, "cbm_public", False):
        return None
    return getattr(view, "cbm_role", None) or getattr(view_class, "cbm_role", None) or "viewer"


def find_rule(app: Flask, endpoint: str, rule_text: str) -> Rule:
    for rule in app.url_map.iter_rules(endpoint):
        if rule.rule == rule_text:
            return rule
    raise AssertionError(f"{rule_text} ({endpoint}) is not in this app's URL map")


# --------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real argon2id costs ~0.25 s a hash; this file signs in hundreds of times."""
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(accounts, "_hasher", hasher)
    monkeypatch.setattr(accounts, "_DUMMY_HASH", hasher.hash("dummy"))


@pytest.fixture()
def matrix_app(app: Flask) -> Iterator[Flask]:
    """The test app, with a sign-in limit this many sign-ins cannot reach."""
    app.config["CBM_LOGIN_RATE_LIMIT"] = "10000 per minute"
    limiter.reset()
    yield app
    limiter.reset()


@pytest.fixture()
def data(session: Session) -> DataSet:
    from factories import activity, inspection

    from cbm.models import ImportRun

    target = accounts.create_user(session, "matrix-target", PASSWORD, "viewer")
    act = activity(1)
    ins = inspection(1)
    for kind, row in (("activities", act), ("inspections", ins)):
        result = upsert_records(session, kind, [row], actor=Actor(user_id=target.id))
        assert result.ok, result.errors
    run = ImportRun(importer="matrix", source_name="matrix.csv", status="succeeded")
    session.add(run)
    session.commit()
    return DataSet(
        activity=act,
        inspection=ins,
        target_username=target.username,
        target_user_id=target.id,
        run_id=run.id,
    )


def client_for(app: Flask, session: Session, who: str) -> tuple[FlaskClient, str]:
    """A client signed in as ``who`` (or anonymous) and a CSRF token of its session."""
    client = app.test_client()
    if who == ANONYMOUS:
        page = client.get("/login")
    else:
        accounts.create_user(session, f"matrix-{who}", PASSWORD, who)
        session.commit()
        response = login(client, f"matrix-{who}")
        assert response.status_code == 302, f"{who} could not sign in"
        page = client.get("/")
        assert page.status_code == 200, f"{who} cannot open the overview"
    return client, csrf_token_from(page.get_data(as_text=True))


# --------------------------------------------------------------------------------------
# verdicts
# --------------------------------------------------------------------------------------


def refusal(response, path: str) -> str | None:
    """What kind of refusal the response is, or None when it is an answer."""
    if response.status_code == 403:
        return "403"
    if response.status_code == 401:
        return "401"
    if response.status_code in (301, 302, 303, 307, 308):
        location = urlsplit(response.location or "")
        if location.path == "/login" and "next" in parse_qs(location.query):
            return "redirect to sign-in"
    return None


def expectation(required: str | None, who: str, path: str) -> str:
    if required is None:
        return "allowed"
    if who == ANONYMOUS:
        return "401 JSON" if path.startswith("/api/") or path == "/api" else "redirect to sign-in"
    if role_rank(who) < role_rank(required):
        return "403"
    return "allowed"


def verdict(response, expected: str, path: str, allowed_extra: set[int]) -> bool:
    got = refusal(response, path)
    if expected == "allowed":
        return got is None or response.status_code in allowed_extra
    if expected == "401 JSON":
        return response.status_code == 401 and response.is_json
    if expected == "redirect to sign-in":
        # ... and back to this very page after signing in.
        return got == expected and parse_qs(urlsplit(response.location).query)["next"] == [path]
    return got == expected


# --------------------------------------------------------------------------------------
# the tests
# --------------------------------------------------------------------------------------


def test_the_url_map_was_read() -> None:
    """Guard against a matrix that passes because it enumerated nothing."""
    endpoints = {endpoint for endpoint, _, _ in ROUTES}
    assert {"auth.login", "auth.logout", "main.overview", "health.healthz"} <= endpoints
    assert ("auth.logout", "/logout", "POST") in ROUTES
    assert ("auth.logout", "/logout", "GET") not in ROUTES


@pytest.mark.parametrize(
    ("endpoint", "rule_text", "method"),
    ROUTES,
    ids=[f"{m} {r} [{e}]" for e, r, m in ROUTES],
)
def test_route_access(
    matrix_app: Flask,
    session: Session,
    data: DataSet,
    endpoint: str,
    rule_text: str,
    method: str,
) -> None:
    rule = find_rule(matrix_app, endpoint, rule_text)
    path = url_for_rule(rule, data)
    required = required_role(matrix_app, endpoint)
    allowed_extra = REAL_ANSWERS.get((endpoint, method), set())
    problems = []
    # Highest role last: a write by a lower role (if wrongly allowed) cannot hide the
    # record a higher role's request needs.
    for who in WHO:
        client, token = client_for(matrix_app, session, who)
        kwargs: dict[str, Any] = {"headers": {"X-CSRFToken": token}}
        if method != "GET":
            kwargs["data"] = {"csrf_token": token}
        response = client.open(path, method=method, **kwargs)
        expected = expectation(required, who, path)
        if not verdict(response, expected, path, allowed_extra):
            location = f" -> {response.location}" if response.location else ""
            problems.append(
                f"{method} {path} ({endpoint}) as {who}: expected {expected} "
                f"(route needs {required or 'nothing: public'}), "
                f"got {response.status_code}{location}"
            )
        if response.status_code == 400 and method != "GET":
            body = response.get_data(as_text=True)
            assert "CSRF" not in body, f"{method} {path} as {who}: the CSRF token was refused"
    assert not problems, "\n".join(problems)


def test_write_routes_need_at_least_analyst() -> None:
    """A route that changes state needs analyst or admin, unless it is allowlisted."""
    offenders = []
    for endpoint, rule_text, method in ROUTES:
        if method not in WRITE_METHODS or endpoint in WRITE_ALLOWLIST:
            continue
        required = required_role(URL_MAP_APP, endpoint)
        if required is None or role_rank(required) < role_rank("analyst"):
            offenders.append(
                f"{method} {rule_text} ({endpoint}) needs {required or 'nothing (public)'}"
            )
    assert not offenders, (
        "routes that change state must require at least 'analyst' "
        "(@role_required('analyst') or 'admin'), or be added to WRITE_ALLOWLIST with a "
        "reason:\n" + "\n".join(offenders)
    )


def test_the_allowlist_names_real_write_routes() -> None:
    """A stale allowlist entry would silently exempt a future route of the same name."""
    writes = {endpoint for endpoint, _, method in ROUTES if method in WRITE_METHODS}
    stale = sorted(set(WRITE_ALLOWLIST) - writes)
    assert not stale, f"WRITE_ALLOWLIST names endpoints with no write route: {stale}"


def test_every_route_argument_has_an_example() -> None:
    """Fast, data-free version of the check in test_route_access, listing all gaps."""
    missing = {}
    for endpoint, rule_text, _ in ROUTES:
        args = set(re.findall(r"<(?:[^:<>]+:)?([^<>]+)>", rule_text))
        gaps = sorted(args - set(EXAMPLES))
        if gaps:
            missing[f"{rule_text} ({endpoint})"] = gaps
    assert not missing, (
        "add example values to EXAMPLES in tests/test_authz_matrix.py for: "
        + "; ".join(f"{route}: {', '.join(gaps)}" for route, gaps in missing.items())
    )


@pytest.fixture()
def public_dashboards_app(
    engine: Any, session_factory: Any, db_url: str, tmp_path: Any
) -> Iterator[Flask]:
    app = create_app(
        {
            "TESTING": True,
            "CBM_SETTINGS_OVERRIDES": {
                "env": "test",
                "secret_key": "test-secret",
                "database_url": db_url,
                "instance_dir": tmp_path,
                "public_dashboards": True,
            },
            "CBM_ENGINE": engine,
            "CBM_SESSION_FACTORY": session_factory,
        }
    )
    limiter.reset()
    yield app
    limiter.reset()


def test_public_dashboards_open_dashboard_reads_only(
    public_dashboards_app: Flask, session: Session, data: DataSet
) -> None:
    """CBM_PUBLIC_DASHBOARDS lets anonymous visitors read dashboards, and nothing else."""
    app = public_dashboards_app
    assert app.config["CBM_SETTINGS"].public_dashboards is True
    client, token = client_for(app, session, ANONYMOUS)
    problems = []
    for endpoint, rule_text, method in ROUTES:
        path = url_for_rule(find_rule(app, endpoint, rule_text), data)
        required = required_role(app, endpoint)
        blueprint = endpoint.split(".", 1)[0] if "." in endpoint else None
        opened = (
            blueprint in PUBLIC_DASHBOARD_BLUEPRINTS
            and method == "GET"
            and role_rank(required or "viewer") <= role_rank("viewer")
        )
        expected = "allowed" if opened else expectation(required, ANONYMOUS, path)
        kwargs: dict[str, Any] = {"headers": {"X-CSRFToken": token}}
        if method != "GET":
            kwargs["data"] = {"csrf_token": token}
        response = client.open(path, method=method, **kwargs)
        if not verdict(response, expected, path, REAL_ANSWERS.get((endpoint, method), set())):
            problems.append(
                f"{method} {path} ({endpoint}) as anonymous with public dashboards: expected "
                f"{expected}, got {response.status_code} {response.location or ''}"
            )
    assert not problems, "\n".join(problems)
