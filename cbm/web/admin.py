"""Administration pages: accounts and the audit log. Every route needs the admin role.

- Accounts go through :mod:`cbm.services.accounts` (the same rules as ``cbm user …``): a
  refused change (:class:`AccountError`, e.g. demoting the last administrator) comes back
  as a form error with status 422, and the request then rolls back.
- A generated password is rendered once, in the response to the POST that made it, with
  ``Cache-Control: no-store``; it is never stored (not in the session, not in the log).
- Changes an admin makes to their *own* account do not sign them out of the session they
  are using (the session is signed in again with the new ``session_version``); their other
  sessions end as for anyone. Disabling oneself is refused outright.
- The audit log reads filters from the query string (shareable URLs) through
  :mod:`cbm.queries.audit`; bad values give a message and status 400, never a 500.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user
from sqlalchemy import select
from werkzeug.routing import BuildError
from werkzeug.wrappers import Response

from cbm import contract
from cbm.models import User
from cbm.queries.audit import (
    ENTITY_TYPES,
    KNOWN_ACTIONS,
    AuditRow,
    audit_page,
    parse_filters,
)
from cbm.services.accounts import (
    AccountError,
    create_user,
    generate_password,
    get_user,
    reset_password,
    set_active,
    set_role,
)
from cbm.vocab import ROLES
from cbm.web.auth import WebUser, current_actor, role_required
from cbm.web.database import db_session
from cbm.web.exports import export_response

bp = Blueprint("admin", __name__, url_prefix="/admin")

#: A value longer than this is shown shortened, with the full value in a <details>.
SHORT_VALUE = 60
#: How ``cbm.services.records.entity_key`` joins the parts of a natural key.
KEY_SEPARATOR = " / "


# --- accounts ---------------------------------------------------------------------------


@bp.get("/")
@role_required("admin")
def index() -> Response:
    return redirect(url_for("admin.users"))


@bp.get("/users")
@role_required("admin")
def users() -> tuple[str, int]:
    """The accounts by username, filtered by role and status (in the URL and the export)."""
    from cbm.queries.choices import USER_FILTERS, parse_choices
    from cbm.services.export_pages import user_conditions

    parsed = parse_choices(request.args, USER_FILTERS)
    accounts: list[User] = []
    if parsed.ok:
        accounts = list(
            db_session().scalars(
                select(User).where(*user_conditions(parsed.active)).order_by(User.username)
            )
        )
    html = render_template(
        "admin/users.html",
        users=accounts,
        values=parsed.values,
        errors=parsed.errors,
        choices=USER_FILTERS,
        filtered=bool(parsed.active),
        csv_url=url_for("admin.users_csv", **parsed.active),
    )
    return html, (200 if parsed.ok else 400)


@bp.get("/users.csv")
@role_required("admin")
def users_csv() -> Response:
    """The accounts with the page's filters (no password hashes, no tokens)."""
    return export_response("users", request.args)


@bp.route("/users/new", methods=["GET", "POST"])
@role_required("admin")
def new_user() -> Any:
    form = {"username": "", "display_name": "", "role": "viewer", "password_mode": "generate"}
    error = None
    if request.method == "POST":
        form = {
            "username": request.form.get("username", "")[:200],
            "display_name": request.form.get("display_name", "")[:200],
            "role": request.form.get("role", ""),
            "password_mode": request.form.get("password_mode", "generate"),
        }
        password = request.form.get("password", "")[:1024]
        confirm = request.form.get("password_confirm", "")[:1024]
        generated = form["password_mode"] != "set"
        try:
            if generated:
                password = generate_password()
            elif not password:
                raise AccountError("give a password, or choose to generate one")
            elif password != confirm:
                raise AccountError("the two passwords differ")
            user = create_user(
                db_session(),
                form["username"],
                password,
                form["role"],
                display_name=form["display_name"],
                actor=current_actor(),
            )
        except AccountError as exc:
            error = str(exc)
        else:
            if generated:
                return _password_once(user, password, created=True)
            flash(f"Account {user.username} created.", "success")
            return redirect(url_for("admin.user", username=user.username))
    status = 422 if error else 200
    return render_template("admin/user_new.html", form=form, error=error, roles=ROLES), status


@bp.get("/users/<username>")
@role_required("admin")
def user(username: str) -> Any:
    return _user_page(_get_user_or_404(username))


@bp.post("/users/<username>/role")
@role_required("admin")
def change_role(username: str) -> Any:
    account = _get_user_or_404(username)
    role = request.form.get("role", "")
    before = account.role
    try:
        set_role(db_session(), account.username, role, actor=current_actor())
    except AccountError as exc:
        return _user_page(account, errors={"role": str(exc)})
    if account.role == before:
        flash(f"{account.username} already has the role {role}.", "info")
        return redirect(url_for("admin.user", username=account.username))
    if _is_self(account):
        _sign_in_again(account)
        flash(f"Your role is now {account.role}.", "success")
        if account.role != "admin":
            return redirect(url_for("main.overview"))
    else:
        flash(
            f"{account.username} is now {account.role}; their sessions have ended.",
            "success",
        )
    return redirect(url_for("admin.user", username=account.username))


@bp.post("/users/<username>/disable")
@role_required("admin")
def disable(username: str) -> Any:
    account = _get_user_or_404(username)
    if _is_self(account):
        return _user_page(
            account,
            errors={
                "status": "You cannot disable your own account. Ask another administrator to do it."
            },
        )
    if not request.form.get("confirm"):
        return _user_page(
            account, errors={"status": "Tick the box to confirm that you want to disable it."}
        )
    try:
        set_active(db_session(), account.username, False, actor=current_actor())
    except AccountError as exc:
        return _user_page(account, errors={"status": str(exc)})
    flash(f"{account.username} is disabled; their sessions have ended.", "success")
    return redirect(url_for("admin.user", username=account.username))


@bp.post("/users/<username>/enable")
@role_required("admin")
def enable(username: str) -> Any:
    account = _get_user_or_404(username)
    try:
        set_active(db_session(), account.username, True, actor=current_actor())
    except AccountError as exc:  # pragma: no cover - enabling is never refused today
        return _user_page(account, errors={"status": str(exc)})
    flash(f"{account.username} is enabled and may sign in again.", "success")
    return redirect(url_for("admin.user", username=account.username))


@bp.post("/users/<username>/reset-password")
@role_required("admin")
def reset(username: str) -> Any:
    account = _get_user_or_404(username)
    if not request.form.get("confirm"):
        return _user_page(
            account,
            errors={"password": "Tick the box to confirm that you want to reset the password."},
        )
    try:
        password = reset_password(db_session(), account.username, actor=current_actor())
    except AccountError as exc:  # pragma: no cover - a generated password is always strong
        return _user_page(account, errors={"password": str(exc)})
    if _is_self(account):
        _sign_in_again(account)
    return _password_once(account, password, created=False)


def _get_user_or_404(username: str) -> User:
    try:
        return get_user(db_session(), username)
    except AccountError:
        abort(404, f"There is no account named '{username[:80]}'.")


def _is_self(account: User) -> bool:
    return account.id == current_user.id


def _sign_in_again(account: User) -> None:
    """Keep the admin's own session after a change that bumped their session_version."""
    session.clear()
    login_user(
        WebUser(
            account.id,
            account.username,
            account.display_name,
            account.role,
            account.session_version,
        )
    )
    session.permanent = True


def _user_page(account: User, errors: dict[str, str] | None = None) -> tuple[str, int]:
    status = 422 if errors else 200
    html = render_template(
        "admin/user.html",
        account=account,
        roles=ROLES,
        errors=errors or {},
        is_self=_is_self(account),
    )
    return html, status


def _password_once(account: User, password: str, *, created: bool) -> Response:
    """Show a generated password in this response only, and keep it out of every cache."""
    response = make_response(
        render_template(
            "admin/password_once.html", account=account, password=password, created=created
        )
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


# --- audit log --------------------------------------------------------------------------


@dataclass(frozen=True)
class ShownValue:
    short: str
    full: str | None = None  # set when ``short`` is truncated


@dataclass(frozen=True)
class ShownChange:
    field: str
    before: ShownValue | None  # None: the value is not a [before, after] pair
    after: ShownValue


@bp.get("/audit")
@role_required("admin")
def audit() -> Any:
    parsed = parse_filters(request.args)
    page = None
    rows: list[dict[str, Any]] = []
    if parsed.ok:
        page = audit_page(db_session(), parsed.filters)
        record_link = _record_link_builder()
        rows = [_row_view(row, record_link) for row in page.rows]
    actions = list(KNOWN_ACTIONS)
    if parsed.filters.action and parsed.filters.action not in actions:
        actions.append(parsed.filters.action)
    html = render_template(
        "admin/audit.html",
        parsed=parsed,
        values=parsed.values,
        errors=parsed.errors,
        page=page,
        rows=rows,
        actions=actions,
        entity_types=ENTITY_TYPES,
        usernames=db_session().scalars(select(User.username).order_by(User.username)).all(),
        page_url=_page_url(parsed.values),
        csv_url=url_for(
            "admin.audit_csv", **{k: v for k, v in parsed.values.items() if v and k != "page"}
        ),
    )
    return html, (200 if parsed.ok else 400)


@bp.get("/audit.csv")
@role_required("admin")
def audit_csv() -> Response:
    """The audit log with the page's filters as CSV, newest first, streamed and stamped."""
    return export_response("audit", request.args)


def _page_url(values: dict[str, str]) -> Callable[[int], str]:
    kept = {k: v for k, v in values.items() if v and k != "page"}

    def build(number: int) -> str:
        return url_for("admin.audit", **kept, page=number)

    return build


def _row_view(row: AuditRow, record_link: Callable[[str, str], str | None] | None) -> dict:
    if row.actor_type == "import_run" and row.run_id is not None:
        actor = f"import run {row.run_id}"
        actor_note = row.run_source or ""
    elif row.actor_type == "user":
        actor = row.username or f"user #{row.user_id}"
        actor_note = row.user_display_name or ""
    else:
        actor, actor_note = "system", ""
    entity_url = None
    if row.entity_type == "users":
        entity_url = url_for("admin.user", username=row.entity_key)
    elif record_link and row.entity_type in contract.FILES and row.entity_id is not None:
        entity_url = record_link(row.entity_type, row.entity_key)
    return {
        "row": row,
        "actor": actor,
        "actor_note": actor_note,
        "actor_url": url_for("admin.audit", actor=row.actor_filter),
        "entity_url": entity_url,
        "changes": shown_changes(row.changes),
    }


def _record_link_builder() -> Callable[[str, str], str | None] | None:
    """Links to ``records.record`` when the records blueprint exists, else None (plain text).

    The records blueprint is optional here: its URL-key encoder, ``encode_key(parts)`` in
    ``cbm/web/records.py``, is imported lazily so this module works without it. The audit
    log stores a key as its parts joined by " / " (``cbm.services.records.entity_key``); a
    key that does not split back into the contract's number of parts stays plain text.
    """
    if "records.record" not in current_app.view_functions:
        return None
    try:
        encode = importlib.import_module("cbm.web.records").encode_key
    except (ImportError, AttributeError):
        return None

    def build(kind: str, key: str) -> str | None:
        parts = key.split(KEY_SEPARATOR)
        if len(parts) != len(contract.FILES[kind].key):
            return None
        try:
            return url_for("records.record", kind=kind, key=encode(parts))
        except (BuildError, TypeError, ValueError):
            return None

    return build


def shown_changes(changes: Any) -> list[ShownChange]:
    """``{"field": [before, after], …}`` as compact before → after pairs (long ones cut)."""
    if not changes:
        return []
    if not isinstance(changes, dict):
        return [ShownChange("", None, _shown(changes))]
    shown = []
    for name, value in changes.items():
        if isinstance(value, list) and len(value) == 2:
            shown.append(ShownChange(str(name), _shown(value[0]), _shown(value[1])))
        else:
            shown.append(ShownChange(str(name), None, _shown(value)))
    return shown


def _shown(value: Any) -> ShownValue:
    if value is None:
        return ShownValue("—")
    if isinstance(value, str):
        text = full = value
    else:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
        full = json.dumps(value, ensure_ascii=False, sort_keys=True, indent=2, default=str)
    if len(text) <= SHORT_VALUE:
        return ShownValue(text)
    return ShownValue(" ".join(text[: SHORT_VALUE - 1].split()) + "…", full)
