"""The personal account page: who you are, your role, and changing your own password."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import PASSWORD, csrf_token_from, login
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cbm.models import AuditEvent, User
from cbm.services.accounts import AccountError, change_own_password, create_user

NEW = "a brand new passphrase"


def fresh_user(session: Session, username: str) -> User:
    session.expire_all()
    user = session.scalar(select(User).where(User.username == username))
    assert user is not None
    return user


def change(client: FlaskClient, current: str, new: str, confirm: str | None = None):
    token = csrf_token_from(client.get("/account").get_data(as_text=True))
    return client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current_password": current,
            "new_password": new,
            "new_password_confirm": new if confirm is None else confirm,
        },
    )


@pytest.fixture()
def rita(app: Flask, make_user) -> FlaskClient:
    make_user("analyst", "rita")
    client = app.test_client()
    assert login(client, "rita").status_code == 302
    return client


def test_account_page_shows_who_you_are(session: Session, rita: FlaskClient) -> None:
    response = rita.get("/account")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "rita" in html
    assert '<dd data-test="role"><span class="badge badge--role">analyst</span></dd>' in html
    last = fresh_user(session, "rita").last_login_at
    assert last is not None
    assert last.strftime("%Y-%m-%d %H:%M UTC") in html
    assert 'href="/account"' in rita.get("/").get_data(as_text=True)  # the header link


def test_account_page_needs_sign_in(client: FlaskClient) -> None:
    response = client.get("/account")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


@pytest.mark.parametrize("role", ["viewer", "admin"])
def test_every_role_has_an_account_page(signed_in: Callable[..., FlaskClient], role) -> None:
    assert signed_in(role).get("/account").status_code == 200


def test_wrong_current_password_is_refused_and_nothing_changes(
    app: Flask, session: Session, rita: FlaskClient
) -> None:
    before = fresh_user(session, "rita")
    hash_before, version_before = before.password_hash, before.session_version
    events = session.scalar(select(func.count()).select_from(AuditEvent))
    response = change(rita, "not my password at all", NEW)
    assert response.status_code == 422
    assert "current password is wrong" in response.get_data(as_text=True)
    after = fresh_user(session, "rita")
    assert (after.password_hash, after.session_version) == (hash_before, version_before)
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == events
    assert rita.get("/").status_code == 200
    assert login(app.test_client(), "rita", PASSWORD).status_code == 302
    assert login(app.test_client(), "rita", NEW).status_code == 401


@pytest.mark.parametrize(
    ("new", "confirm", "message"),
    [
        ("short", None, "at least 12 characters"),
        (NEW, "something else entirely", "two new passwords differ"),
        (PASSWORD, None, "must differ from the current one"),
        (" padded password ", None, "start or end with spaces"),
    ],
)
def test_weak_or_mismatched_new_passwords_are_refused(
    app: Flask, session: Session, rita: FlaskClient, new: str, confirm: str | None, message: str
) -> None:
    version = fresh_user(session, "rita").session_version
    response = change(rita, PASSWORD, new, confirm)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert fresh_user(session, "rita").session_version == version
    assert login(app.test_client(), "rita", PASSWORD).status_code == 302


def test_success_keeps_this_session_and_ends_the_others(
    app: Flask, session: Session, rita: FlaskClient
) -> None:
    other = app.test_client()
    assert login(other, "rita").status_code == 302
    assert other.get("/").status_code == 200

    response = change(rita, PASSWORD, NEW)
    assert response.status_code == 302
    assert response.headers["Location"] == "/account"
    page = rita.get("/account")
    assert page.status_code == 200  # still signed in
    assert "Your password is changed" in page.get_data(as_text=True)
    assert rita.get("/").status_code == 200

    ended = other.get("/")
    assert ended.status_code == 302
    assert ended.headers["Location"].startswith("/login")

    assert login(app.test_client(), "rita", PASSWORD).status_code == 401
    assert login(app.test_client(), "rita", NEW).status_code == 302

    user = fresh_user(session, "rita")
    event = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert (event.actor_type, event.user_id, event.action) == ("user", user.id, "update")
    assert (event.entity_type, event.entity_key) == ("users", "rita")
    assert event.changes == {"password": ["(hidden)", "(changed)"]}
    assert NEW not in str(event.changes)


def test_missing_csrf_token_is_400(app: Flask, session: Session, rita: FlaskClient) -> None:
    response = rita.post(
        "/account/password",
        data={"current_password": PASSWORD, "new_password": NEW, "new_password_confirm": NEW},
    )
    assert response.status_code == 400
    assert login(app.test_client(), "rita", PASSWORD).status_code == 302


def test_password_change_is_rate_limited(app: Flask, rita: FlaskClient) -> None:
    app.config["CBM_LOGIN_RATE_LIMIT"] = "3 per minute"
    codes = [change(rita, "wrong guess number x", NEW).status_code for _ in range(4)]
    assert codes == [422, 422, 422, 429]


def test_service_refuses_a_disabled_account(session: Session) -> None:
    from cbm.services.accounts import set_active

    user = create_user(session, "sam", PASSWORD, "viewer")
    set_active(session, "sam", False)
    with pytest.raises(AccountError, match="disabled"):
        change_own_password(session, user.id, PASSWORD, NEW)
