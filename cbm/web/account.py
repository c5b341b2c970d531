"""The signed-in user's own account: who they are, their role, a password change, and
personal API tokens.

A new token's secret is shown once, in the response to the POST that made it (never put in
a flash message: those travel in the signed, not encrypted, session cookie).

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
from cbm.services.tokens import (
    MAX_EXPIRY_DAYS,
    TokenError,
    create_token,
    list_tokens,
    revoke_token,
    token_status,
)
from cbm.vocab import ROLES
from cbm.web.auth import WebUser, current_actor, limiter, role_required
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


@bp.post("/tokens")
@role_required("viewer")
def create_api_token() -> Any:
    """Create a personal API token; the page shows its secret this once."""
    user = db_session().get(User, current_user.id)
    raw_days = request.form.get("expires_days", "").strip()
    try:
        if raw_days and not raw_days.isdigit():
            raise TokenError(f"'{raw_days[:20]}' is not a number of days")
        _token, secret = create_token(
            db_session(),
            user,
            request.form.get("name", "")[:200],
            scope=request.form.get("scope", "").strip() or None,
            expires_days=int(raw_days) if raw_days else None,
            actor=current_actor(),
        )
    except TokenError as exc:
        return _page(token_error=str(exc))
    return _page(new_token=secret)


@bp.post("/tokens/<int:token_id>/revoke")
@role_required("viewer")
def revoke_api_token(token_id: int) -> Any:
    try:
        token = revoke_token(
            db_session(), token_id, owner_id=current_user.id, actor=current_actor()
        )
    except TokenError as exc:
        return _page(token_error=str(exc))
    flash(f"Revoked the API token {token.prefix}… ({token.name}).", "success")
    return redirect(url_for("account.index") + "#api-tokens", 303)


def _page(
    error: str | None = None, *, token_error: str | None = None, new_token: str | None = None
) -> tuple[str, int]:
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
        tokens=list_tokens(db_session(), current_user.id),
        token_status=token_status,
        token_error=token_error,
        new_token=new_token,
        scopes=ROLES[: ROLES.index(user.role) + 1] if user is not None else (),
        max_expiry_days=MAX_EXPIRY_DAYS,
    )
    return html, (422 if error or token_error else 200)
