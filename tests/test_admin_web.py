"""Admin pages: accounts (list, create, role, disable/enable, reset) and the audit log."""

from __future__ import annotations

import datetime as dt
import html as html_lib
import re
import sys
import types
from collections.abc import Callable

import pytest
from conftest import PASSWORD, csrf_token_from, login
from flask import Blueprint, Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cbm.models import AuditEvent, ImportRun, User

SignedIn = Callable[..., FlaskClient]


def token(client: FlaskClient, page: str = "/") -> str:
    return csrf_token_from(client.get(page).get_data(as_text=True))


def post(client: FlaskClient, url: str, data: dict | None = None) -> object:
    return client.post(url, data={**(data or {}), "csrf_token": token(client)})


def fresh_user(session: Session, username: str) -> User:
    session.expire_all()
    user = session.scalar(select(User).where(User.username == username))
    assert user is not None
    return user


def audit_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AuditEvent)) or 0


def generated_password(html: str) -> str:
    match = re.search(r'<code data-test="generated-password">([^<]+)</code>', html)
    assert match, html
    return match.group(1)


def cell_texts(html: str, name: str) -> list[str]:
    """The text of every ``data-cell=name`` cell of the audit table, tags stripped."""
    cells = re.findall(rf'<td data-cell="{name}">(.*?)</td>', html, re.S)
    texts = [re.sub(r"<[^>]+>", "", re.sub(r"<br>|</li>", " ", c)) for c in cells]
    return [re.sub(r"\s+", " ", t).strip() for t in texts]


@pytest.fixture()
def admin(signed_in: SignedIn) -> FlaskClient:
    return signed_in("admin", "boss")


# --- access -------------------------------------------------------------------------------


def _admin_requests(app: Flask) -> list[tuple[str, str]]:
    """(method, URL) of every /admin route, with the account 'target' as <username>."""
    found = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if not rule.endpoint.startswith("admin."):
                continue
            url = rule.build({"username": "target"} if "username" in rule.arguments else {})[1]
            found.extend((m, url) for m in sorted(rule.methods - {"HEAD", "OPTIONS"}))
    return found


def test_every_admin_view_requires_the_admin_role(app: Flask) -> None:
    views = {e: f for e, f in app.view_functions.items() if e.startswith("admin.")}
    assert len(views) >= 8
    for endpoint, view in views.items():
        assert getattr(view, "cbm_role", None) == "admin", endpoint


@pytest.mark.parametrize("role", ["viewer", "analyst"])
def test_viewer_and_analyst_get_403_on_every_admin_route(
    app: Flask, session: Session, signed_in: SignedIn, make_user, role: str
) -> None:
    target = make_user("viewer", "target")
    client = signed_in(role)
    requests = _admin_requests(app)
    assert ("GET", "/admin/audit") in requests
    assert ("POST", "/admin/users/target/disable") in requests
    before = audit_count(session)
    for method, url in requests:
        data = {
            "csrf_token": token(client),
            "confirm": "yes",
            "role": "admin",
            "username": "intruder",
            "password_mode": "generate",
        }
        response = client.open(url, method=method, data=data if method == "POST" else None)
        assert response.status_code == 403, (method, url, response.status_code)
    target = fresh_user(session, "target")
    assert (target.role, target.active, target.session_version) == ("viewer", True, 1)
    assert audit_count(session) == before
    assert session.scalar(select(User).where(User.username == "intruder")) is None


def test_anonymous_visitors_are_sent_to_sign_in(app: Flask, client: FlaskClient) -> None:
    response = client.get("/admin/audit?action=create")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_admin_nav_only_for_admins(signed_in: SignedIn, admin: FlaskClient) -> None:
    assert 'href="/admin/users"' in admin.get("/").get_data(as_text=True)
    assert 'href="/admin/users"' not in signed_in("analyst").get("/").get_data(as_text=True)


# --- accounts -----------------------------------------------------------------------------


def test_users_list_shows_every_account(session: Session, admin: FlaskClient, make_user) -> None:
    make_user("analyst", "alice")
    make_user("viewer", "victor")
    from cbm.services.accounts import set_active

    set_active(session, "victor", False)
    session.commit()
    assert admin.get("/admin/").headers["Location"] == "/admin/users"
    response = admin.get("/admin/users")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    rows = dict(re.findall(r'<tr data-user="([^"]+)">(.*?)</tr>', html, re.S))
    assert set(rows) == {"alice", "boss", "victor"}
    assert "analyst" in rows["alice"] and "active" in rows["alice"]
    assert "disabled" in rows["victor"]
    assert "never" in rows["alice"]  # alice never signed in
    assert "UTC" in rows["boss"] and "never" not in rows["boss"]
    assert 'href="/admin/users/alice"' in html


def test_create_user_with_a_generated_password_shown_once(
    app: Flask, session: Session, admin: FlaskClient
) -> None:
    response = post(
        admin,
        "/admin/users/new",
        {
            "username": "Carol",
            "display_name": "Carol C.",
            "role": "analyst",
            "password_mode": "generate",
        },
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    password = generated_password(html)
    assert len(password) >= 12
    carol = fresh_user(session, "carol")
    assert (carol.role, carol.display_name, carol.active) == ("analyst", "Carol C.", True)
    # Never again: not on the account page, the list, the audit log, nor stored readable.
    for page in ("/admin/users/carol", "/admin/users", "/admin/audit"):
        assert password not in admin.get(page).get_data(as_text=True), page
    assert password not in carol.password_hash
    # And it works.
    other = app.test_client()
    assert login(other, "carol", password).status_code == 302
    assert other.get("/").status_code == 200


def test_create_user_with_a_chosen_password(app: Flask, session: Session, admin) -> None:
    response = post(
        admin,
        "/admin/users/new",
        {
            "username": "dave",
            "role": "viewer",
            "password_mode": "set",
            "password": "a long enough password",
            "password_confirm": "a long enough password",
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/users/dave"
    assert "Account dave created" in admin.get("/admin/users/dave").get_data(as_text=True)
    assert login(app.test_client(), "dave", "a long enough password").status_code == 302


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"username": "boss"}, "already exists"),
        ({"username": "Not Valid!"}, "a username has 2 to 80"),
        ({"role": "superuser"}, "is not a role"),
        ({"password_mode": "set", "password": "short", "password_confirm": "short"}, "12"),
        (
            {"password_mode": "set", "password": "long password one", "password_confirm": "x"},
            "two passwords differ",
        ),
        ({"password_mode": "set"}, "give a password"),
    ],
)
def test_create_user_refusals_are_form_errors(
    session: Session, admin: FlaskClient, data: dict, message: str
) -> None:
    before = session.scalar(select(func.count()).select_from(User))
    events = audit_count(session)
    form = {"username": "erin", "role": "viewer", "password_mode": "generate", **data}
    response = post(admin, "/admin/users/new", form)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert message.lower() in html.lower()
    assert 'data-test="generated-password"' not in html
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(User)) == before
    assert audit_count(session) == events


def test_change_role_ends_the_users_sessions(
    app: Flask, session: Session, admin: FlaskClient, make_user
) -> None:
    make_user("viewer", "frank")
    frank = app.test_client()
    assert login(frank, "frank").status_code == 302
    response = post(admin, "/admin/users/frank/role", {"role": "analyst"})
    assert response.status_code == 302
    assert fresh_user(session, "frank").role == "analyst"
    assert "frank is now analyst" in admin.get("/admin/users/frank").get_data(as_text=True)
    assert frank.get("/").status_code == 302  # signed out: sign in again for the new role
    event = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    boss = fresh_user(session, "boss")
    assert (event.action, event.entity_key, event.user_id) == ("update", "frank", boss.id)
    assert event.changes == {"role": ["viewer", "analyst"]}


def test_unknown_role_and_unknown_user(session: Session, admin: FlaskClient, make_user) -> None:
    make_user("viewer", "gina")
    response = post(admin, "/admin/users/gina/role", {"role": "owner"})
    assert response.status_code == 422
    assert "is not a role" in response.get_data(as_text=True)
    assert fresh_user(session, "gina").role == "viewer"
    assert admin.get("/admin/users/nobody").status_code == 404
    assert post(admin, "/admin/users/nobody/disable", {"confirm": "yes"}).status_code == 404


def test_disable_ends_the_users_session_and_enable_lets_them_back(
    app: Flask, session: Session, admin: FlaskClient, make_user
) -> None:
    make_user("analyst", "hana")
    hana = app.test_client()
    assert login(hana, "hana").status_code == 302
    assert hana.get("/").status_code == 200

    response = post(admin, "/admin/users/hana/disable", {"confirm": "yes"})
    assert response.status_code == 302
    assert fresh_user(session, "hana").active is False
    after = hana.get("/")
    assert after.status_code == 302
    assert after.headers["Location"].startswith("/login")
    assert login(app.test_client(), "hana").status_code == 401

    assert post(admin, "/admin/users/hana/enable").status_code == 302
    assert fresh_user(session, "hana").active is True
    assert login(app.test_client(), "hana").status_code == 302
    actions = session.execute(
        select(AuditEvent.changes)
        .where(AuditEvent.entity_key == "hana", AuditEvent.action == "update")
        .order_by(AuditEvent.id)
    ).all()
    assert [c for (c,) in actions] == [{"active": [True, False]}, {"active": [False, True]}]


def test_disable_needs_confirmation(session: Session, admin: FlaskClient, make_user) -> None:
    make_user("viewer", "ivan")
    response = post(admin, "/admin/users/ivan/disable")
    assert response.status_code == 422
    assert "confirm" in response.get_data(as_text=True)
    assert fresh_user(session, "ivan").active is True


def test_reset_password_shows_it_once_and_ends_sessions(
    app: Flask, session: Session, admin: FlaskClient, make_user
) -> None:
    make_user("viewer", "jane")
    jane = app.test_client()
    assert login(jane, "jane").status_code == 302

    refused = post(admin, "/admin/users/jane/reset-password")
    assert refused.status_code == 422
    assert login(app.test_client(), "jane").status_code == 302  # unchanged

    response = post(admin, "/admin/users/jane/reset-password", {"confirm": "yes"})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    password = generated_password(response.get_data(as_text=True))
    assert password not in admin.get("/admin/users/jane").get_data(as_text=True)
    assert jane.get("/").status_code == 302  # her session ended
    assert login(app.test_client(), "jane", PASSWORD).status_code == 401
    assert login(app.test_client(), "jane", password).status_code == 302


def test_last_admin_cannot_be_demoted(session: Session, admin: FlaskClient) -> None:
    events = audit_count(session)
    response = post(admin, "/admin/users/boss/role", {"role": "viewer"})
    assert response.status_code == 422
    assert "last active administrator" in response.get_data(as_text=True)
    boss = fresh_user(session, "boss")
    assert (boss.role, boss.session_version) == ("admin", 1)
    assert audit_count(session) == events
    assert admin.get("/admin/users").status_code == 200  # still signed in, still admin


def test_an_admin_may_step_down_when_another_admin_exists(
    session: Session, admin: FlaskClient, make_user
) -> None:
    make_user("admin", "kim")
    response = post(admin, "/admin/users/boss/role", {"role": "analyst"})
    assert response.status_code == 302
    assert fresh_user(session, "boss").role == "analyst"
    # This session stays signed in, with the new role.
    assert admin.get("/").status_code == 200
    assert admin.get("/admin/users").status_code == 403


def test_an_admin_cannot_disable_themselves(
    session: Session, admin: FlaskClient, make_user
) -> None:
    make_user("admin", "lee")  # another admin exists, so only the self-rule refuses
    events = audit_count(session)
    response = post(admin, "/admin/users/boss/disable", {"confirm": "yes"})
    assert response.status_code == 422
    assert "cannot disable your own account" in response.get_data(as_text=True)
    boss = fresh_user(session, "boss")
    assert (boss.active, boss.session_version) == (True, 1)
    assert audit_count(session) == events
    assert admin.get("/admin/users").status_code == 200


def test_resetting_ones_own_password_keeps_this_session(
    app: Flask, session: Session, admin: FlaskClient
) -> None:
    second = app.test_client()
    assert login(second, "boss").status_code == 302
    response = post(admin, "/admin/users/boss/reset-password", {"confirm": "yes"})
    password = generated_password(response.get_data(as_text=True))
    assert admin.get("/admin/users").status_code == 200
    assert second.get("/").status_code == 302
    assert login(app.test_client(), "boss", password).status_code == 302


def test_admin_posts_without_csrf_are_400(session: Session, admin, make_user) -> None:
    make_user("viewer", "mia")
    for url, data in [
        ("/admin/users/mia/disable", {"confirm": "yes"}),
        ("/admin/users/mia/role", {"role": "admin"}),
        ("/admin/users/mia/reset-password", {"confirm": "yes"}),
        ("/admin/users/new", {"username": "nina", "password_mode": "generate"}),
    ]:
        assert admin.post(url, data=data).status_code == 400, url
    mia = fresh_user(session, "mia")
    assert (mia.role, mia.active, mia.session_version) == ("viewer", True, 1)
    assert session.scalar(select(User).where(User.username == "nina")) is None


# --- audit log ----------------------------------------------------------------------------


def _event(session: Session, when: dt.datetime, **kw) -> AuditEvent:
    values = {
        "actor_type": "system",
        "action": "update",
        "entity_type": "activities",
        "entity_key": "VD-2024-0001",
        "changes": {"status": ["planned", "held"]},
        **kw,
    }
    event = AuditEvent(occurred_at=when, **values)
    session.add(event)
    return event


def test_audit_log_shows_account_events_with_their_actor(
    session: Session, admin: FlaskClient
) -> None:
    post(admin, "/admin/users/new", {"username": "olga", "role": "analyst"})
    post(admin, "/admin/users/olga/role", {"role": "viewer"})
    response = admin.get("/admin/audit?entity_type=users")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert cell_texts(html, "action")[:3] == ["update", "create", "create"]  # newest first
    actors = cell_texts(html, "actor")
    assert actors[:2] == ["boss", "boss"]
    assert actors[2] == "system"  # the admin account itself was made by the test fixture
    entities = cell_texts(html, "entity")
    assert entities[:3] == ["users olga", "users olga", "users boss"]
    changes = cell_texts(html, "changes")
    assert changes[0] == "role: analyst → viewer"
    assert "username: — → olga" in changes[1]
    assert 'href="/admin/users/olga"' in html  # the entity links to the account
    assert 'href="/admin/audit?actor=boss"' in html  # the actor links to their events
    assert "UTC" in html


def test_audit_filters(session: Session, admin: FlaskClient, make_user) -> None:
    make_user("analyst", "pat")
    pat = fresh_user(session, "pat")
    run = ImportRun(importer="csv", source_name="spring.csv", status="succeeded")
    session.add(run)
    session.flush()
    _event(session, dt.datetime(2024, 3, 1, 10, tzinfo=dt.UTC), entity_key="VD-2024-0001")
    _event(
        session,
        dt.datetime(2024, 3, 2, 23, 59, tzinfo=dt.UTC),
        actor_type="user",
        user_id=pat.id,
        action="create",
        entity_type="notifications",
        entity_key="NOT-50%_OFF",
    )
    _event(
        session,
        dt.datetime(2024, 3, 3, 0, 0, tzinfo=dt.UTC),
        actor_type="import_run",
        run_id=run.id,
        action="import",
        entity_type="holdings",
        entity_key=f"import run {run.id}",
        changes={"inserted": 12},
    )
    session.commit()

    def keys(query: str) -> list[str]:
        response = admin.get("/admin/audit?" + query)
        assert response.status_code == 200, response.get_data(as_text=True)
        return [e.split(" ", 1)[1] for e in cell_texts(response.get_data(as_text=True), "entity")]

    assert keys("actor=pat") == ["NOT-50%_OFF"]
    assert keys("actor=PAT") == ["NOT-50%_OFF"]
    assert keys(f"actor=import+run+{run.id}") == [f"import run {run.id}"]
    assert keys(f"actor=run:{run.id}") == [f"import run {run.id}"]
    system = keys("actor=system")
    assert "VD-2024-0001" in system and "NOT-50%_OFF" not in system
    assert keys("actor=nobody") == []
    assert keys("action=import") == [f"import run {run.id}"]
    assert keys("entity_type=notifications") == ["NOT-50%_OFF"]
    assert keys("key=vd-2024") == ["VD-2024-0001"]
    assert keys("key=50%25_") == ["NOT-50%_OFF"]  # % and _ are literal, not wildcards
    assert keys("key=NOT%25OFF") == []  # a wildcard % would match
    assert keys("from=2024-03-02&to=2024-03-02") == ["NOT-50%_OFF"]  # 'to' is inclusive
    assert keys("from=2024-03-01&to=2024-03-03") == [
        f"import run {run.id}",
        "NOT-50%_OFF",
        "VD-2024-0001",
    ]
    assert keys("to=2024-03-01") == ["VD-2024-0001"]
    assert keys("actor=system&entity_type=activities&to=2024-03-05") == ["VD-2024-0001"]
    html = admin.get(f"/admin/audit?actor=import+run+{run.id}").get_data(as_text=True)
    assert "spring.csv" in html  # the run's source is named next to it
    empty = admin.get("/admin/audit?actor=nobody").get_data(as_text=True)
    assert "No events match these filters" in empty


def test_audit_pagination_keeps_the_filters(session: Session, admin: FlaskClient) -> None:
    start = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)
    for i in range(120):
        _event(session, start + dt.timedelta(minutes=i), entity_key=f"PAGE-{i:03d}")
    session.commit()
    base = "/admin/audit?key=PAGE-"
    first = admin.get(base).get_data(as_text=True)
    keys = [e.split(" ", 1)[1] for e in cell_texts(first, "entity")]
    assert len(keys) == 50
    assert keys[0] == "PAGE-119" and keys[-1] == "PAGE-070"
    assert "Events 1–50 of 120" in first
    assert "Page 1 of 3" in first
    assert 'href="/admin/audit?key=PAGE-&amp;page=2"' in first
    third = admin.get(base + "&page=3").get_data(as_text=True)
    keys = [e.split(" ", 1)[1] for e in cell_texts(third, "entity")]
    assert keys == [f"PAGE-{i:03d}" for i in range(19, -1, -1)]
    assert "Events 101–120 of 120" in third
    beyond = admin.get(base + "&page=9")
    assert beyond.status_code == 200
    assert "No events on page 9" in beyond.get_data(as_text=True)


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("from=2024-13-01", "from", "YYYY-MM-DD"),
        ("to=yesterday", "to", "YYYY-MM-DD"),
        ("from=2024-05-01&to=2024-04-01", "to", "before the start date"),
        ("page=abc", "page", "whole number"),
        ("page=0", "page", "whole number"),
        ("page=99999999999999999999", "page", "whole number"),
        ("entity_type=bogus", "entity_type", "is not an entity type"),
        ("action=DROP+TABLE", "action", "short word"),
        ("actor=two+words", "actor", "import run N"),
        ("actor=" + "x" * 300, "actor", "too long"),
        ("key=" + "k" * 401, "key", "too long"),
    ],
)
def test_bad_filters_give_a_message_not_a_500(
    admin: FlaskClient, query: str, field: str, message: str
) -> None:
    response = admin.get("/admin/audit?" + query)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert f'data-test="filter-message-{field}"' in html
    assert message in html
    assert 'data-test="audit"' not in html


def test_long_changes_are_truncated_with_the_full_value_in_details(
    session: Session, admin: FlaskClient
) -> None:
    long = {"notes": "x" * 200, "figures": list(range(40))}
    _event(
        session,
        dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        entity_key="LONG-1",
        changes={"payload": [None, long], "short": ["a", "b"]},
    )
    session.commit()
    html = admin.get("/admin/audit?key=LONG-1").get_data(as_text=True)
    details = re.search(r"<details[^>]*><summary>(.*?)</summary><pre>(.*?)</pre>", html, re.S)
    assert details, html
    summary, full = html_lib.unescape(details.group(1)), html_lib.unescape(details.group(2))
    assert summary.endswith("…") and len(summary) <= 60
    assert summary.startswith('{"figures": [0, 1, 2')
    assert "x" * 200 in full and '"figures": [' in full
    assert "short: a → b" in cell_texts(html, "changes")[0]


def test_record_entities_are_plain_text_without_the_records_page(
    session: Session, app: Flask, admin: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(app.view_functions, "records.record", raising=False)
    _event(session, dt.datetime(2024, 1, 1, tzinfo=dt.UTC), entity_key="VD-1 / x", entity_id=7)
    session.commit()
    html = admin.get("/admin/audit?key=VD-1").get_data(as_text=True)
    assert cell_texts(html, "entity") == ["activities VD-1 / x"]
    assert "/records/activities" not in html


@pytest.fixture()
def records_page(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in records blueprint and key encoder, unless the real ones are there.

    Registered before any request (Flask refuses blueprints after the first one).
    """
    if "records.record" in app.view_functions:
        return
    records = Blueprint("records", __name__)
    records.add_url_rule("/records/<kind>/<key>", "record", lambda kind, key: "record")
    app.register_blueprint(records)
    fake = types.ModuleType("cbm.web.records")
    fake.encode_key = lambda parts: ",".join(parts)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cbm.web.records", fake)


def test_record_entities_link_to_the_records_page_when_it_exists(
    records_page: None, session: Session, admin: FlaskClient
) -> None:
    _event(session, dt.datetime(2024, 1, 1, tzinfo=dt.UTC), entity_key="VD-1 / x", entity_id=7)
    _event(
        session,
        dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
        actor_type="import_run",
        action="import",
        entity_key="import run 1 VD",
    )
    # A key that does not split into the contract's two parts cannot be a record's.
    _event(session, dt.datetime(2023, 1, 1, tzinfo=dt.UTC), entity_key="VD-odd", entity_id=8)
    session.commit()
    html = admin.get("/admin/audit?key=VD").get_data(as_text=True)
    entity = re.findall(r'<td data-cell="entity">(.*?)</td>', html, re.S)
    assert len(entity) == 3
    assert "<a href" not in entity[0]  # an import summary is not a record
    assert re.search(r'<a href="/records/activities/VD-1,x">VD-1 / x</a>', entity[1]), entity[1]
    assert "<a href" not in entity[2]


def test_empty_audit_log_text(session: Session, admin: FlaskClient) -> None:
    html = admin.get("/admin/audit?entity_type=ceilings").get_data(as_text=True)
    assert 'data-test="audit-empty"' in html
    assert "No events match these filters" in html
