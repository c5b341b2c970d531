"""The signed-in user's own account: who they are, their role, and a password change.

Changing the password needs the current one (a session left open on a shared machine is not
enough to take the account over). The change bumps ``session_version``, which ends the
account's other sessions; this session is signed in again with the new version, so the
person who made the change stays signed in. The POST is rate-limited like sign-in, since a
wrong current password is a password guess.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user

from cbm.compliance.deadlines import ensure_feed_token
from cbm.models import User
from cbm.services.accounts import MIN_PASSWORD_LENGTH, AccountError, change_own_password
from cbm.web.auth import WebUser, limiter, role_required
from cbm.web.database import db_session

bp = Blueprint("account", __name__, url_prefix="/account")


def _password_limit() -> str:
    return current_app.config.get("CBM_LOGIN_RATE_LIMIT", "10 per minute;50 per hour")


@bp.get("")
@role_required("viewer")
def index() -> Any:
    # The calendar-feed link is made on the first visit (a GET that writes, once).
    ensure_feed_token(db_session(), current_user.id)
    return _page()


@bp.post("/password")
@role_required("viewer")
@limiter.limit(_password_limit)
def change_password() -> Any:
    current = request.form.get("current_password", "")[:1024]
    new = request.form.get("new_password", "")[:1024]
    confirm = request.form.get("new_password_confirm", "")[:1024]
    try:
        if not current:
            raise AccountError("give your current password")
        if new != confirm:
            raise AccountError("the two new passwords differ")
        user = change_own_password(db_session(), current_user.id, current, new)
    except AccountError as exc:
        return _page(error=str(exc))
    session.clear()  # a fresh session cookie for the new credentials
    login_user(WebUser(user.id, user.username, user.display_name, user.role, user.session_version))
    session.permanent = True
    flash("Your password is changed. Your other sessions have been signed out.", "success")
    return redirect(url_for("account.index"))


def _page(error: str | None = None) -> tuple[str, int]:
    user = db_session().get(User, current_user.id)
    feed_url = (
        url_for("deadlines.ics", token=user.feed_token, _external=True)
        if user is not None and user.feed_token
        else None
    )
    html = render_template(
        "account/index.html",
        account=user,
        error=error,
        min_length=MIN_PASSWORD_LENGTH,
        feed_url=feed_url,
    )
    return html, (422 if error else 200)
