"""Sign-in, sessions, roles and the guard that keeps every page behind a login.

- Sessions name the account *and* its ``session_version``; disabling an account, resetting
  its password or changing its role bumps the version, which ends its sessions at once.
- Every endpoint needs a signed-in user unless it is listed in ``PUBLIC_ENDPOINTS`` (or is
  a dashboard and ``CBM_PUBLIC_DASHBOARDS`` is on, for GET only). A view marked
  :func:`feed_token_auth` (the calendar feed) is also reached by a GET with ``?token=``,
  which the view checks itself. Views state the role
  they need with :func:`role_required`; without it, any signed-in user (a viewer) may see
  them.
- Sign-in is rate-limited per client address, and the session is renewed on sign-in
  (no session fixation). ``next=`` only accepts paths on this site.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, current_user, login_user, logout_user
from flask_wtf.csrf import CSRFProtect
from werkzeug.wrappers import Response

from cbm.models import User
from cbm.services.accounts import authenticate, role_rank
from cbm.services.records import Actor
from cbm.web.database import db_session

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)

#: Endpoints anyone may reach without signing in.
PUBLIC_ENDPOINTS = frozenset({"auth.login", "static", "health.healthz"})
#: Blueprints opened read-only to anonymous visitors by CBM_PUBLIC_DASHBOARDS.
PUBLIC_DASHBOARD_BLUEPRINTS = frozenset({"dashboards"})

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class WebUser:
    """The signed-in account as the web layer sees it (detached from any DB session)."""

    id: int
    username: str
    display_name: str
    role: str
    session_version: int

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        return f"{self.id}:{self.session_version}"

    def has_role(self, role: str) -> bool:
        return role_rank(self.role) >= role_rank(role)

    @property
    def label(self) -> str:
        return self.display_name or self.username


def current_actor() -> Actor:
    """The actor services record for this request (the signed-in user)."""
    if getattr(current_user, "is_authenticated", False):
        return Actor(user_id=current_user.id)
    return Actor()


def has_role(role: str) -> bool:
    return bool(getattr(current_user, "is_authenticated", False) and current_user.has_role(role))


def role_required(role: str) -> Callable[[F], F]:
    """Refuse the view (403) to signed-in users below ``role``; anonymous users sign in."""

    def decorate(view: F) -> F:
        view.cbm_role = role  # type: ignore[attr-defined]  # read by the authorisation test

        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not getattr(current_user, "is_authenticated", False):
                return login_manager.unauthorized()
            if not current_user.has_role(role):
                abort(403)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorate


def public(view: F) -> F:
    """Mark a view as reachable without signing in (the guard lets it through)."""
    view.cbm_public = True  # type: ignore[attr-defined]
    return view


def feed_token_auth(view: F) -> F:
    """Mark a GET view that may be read with ``?token=`` instead of a session.

    Calendar clients cannot sign in, so a feed URL carries the account's feed token. The
    guard lets an anonymous GET through to such a view only when the URL has a ``token``
    argument, and the view itself must check the token (and refuse a wrong one). Without a
    token the usual rule applies: sign in first.
    """
    view.cbm_feed_token = True  # type: ignore[attr-defined]
    return view


def _feed_token_request(endpoint: str) -> bool:
    if request.method not in ("GET", "HEAD") or "token" not in request.args:
        return False
    view = current_app.view_functions.get(endpoint)
    return bool(getattr(view, "cbm_feed_token", False))


def is_public(endpoint: str) -> bool:
    if endpoint in PUBLIC_ENDPOINTS:
        return True
    view = current_app.view_functions.get(endpoint)
    return bool(getattr(view, "cbm_public", False))


def is_safe_next(target: str | None) -> bool:
    """Only a path on this site: no scheme, no host, no '//' or backslash tricks."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return False
    if "\\" in target or any(ord(c) < 32 for c in target):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def _load_user(user_id: str) -> WebUser | None:
    try:
        ident, version = (int(x) for x in user_id.split(":", 1))
    except ValueError:
        return None
    user = db_session().get(User, ident)
    if user is None or not user.active or user.session_version != version:
        return None
    return WebUser(user.id, user.username, user.display_name, user.role, user.session_version)


def _guard() -> Response | None:
    """Runs before every request: anonymous users may only reach public endpoints."""
    endpoint = request.endpoint
    if endpoint is None or is_public(endpoint):
        return None
    if endpoint.startswith("api."):
        return None  # the API authenticates tokens itself (cbm.web.api), never cookies
    if getattr(current_user, "is_authenticated", False):
        return None
    if _feed_token_request(endpoint):
        return None  # the view checks the token
    settings = current_app.config["CBM_SETTINGS"]
    blueprint = endpoint.split(".", 1)[0] if "." in endpoint else None
    if (
        getattr(settings, "public_dashboards", False)
        and blueprint in PUBLIC_DASHBOARD_BLUEPRINTS
        and request.method in ("GET", "HEAD")
    ):
        return None
    return login_manager.unauthorized()


def _unauthorized() -> Response:
    if request.path.startswith("/api/"):
        abort(401)
    target = request.full_path if request.query_string else request.path
    return redirect(url_for("auth.login", next=target))


def init_auth(app: Flask) -> None:
    """Sessions, CSRF on every state-changing request, the login rate limit, the guard."""
    settings = app.config["CBM_SETTINGS"]
    if settings.trusted_proxies:
        # Behind N reverse proxies, take the client address (for the sign-in rate limit)
        # and the scheme from their X-Forwarded-* headers, and trust nothing else.
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # tied to the session instead
    app.config.setdefault("RATELIMIT_STORAGE_URI", settings.ratelimit_storage)
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    # When the shared storage (Redis) is down, count in this process's memory instead of
    # answering every sign-in with a 500; the limiter goes back to Redis once it answers.
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    login_manager.init_app(app)
    login_manager.user_loader(_load_user)
    login_manager.unauthorized_handler(_unauthorized)
    login_manager.session_protection = "strong"
    csrf.init_app(app)
    limiter.init_app(app)
    app.before_request(_guard)
    app.register_blueprint(bp)

    @app.context_processor
    def _auth_globals() -> dict[str, Any]:
        return {"has_role": has_role}


def _login_limit() -> str:
    return current_app.config.get("CBM_LOGIN_RATE_LIMIT", "10 per minute;50 per hour")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login() -> Any:
    """Sign in. A failed attempt says only that the name or password is wrong."""
    next_url = request.values.get("next", "")
    if not is_safe_next(next_url):
        next_url = ""
    if getattr(current_user, "is_authenticated", False):
        return redirect(next_url or url_for("main.overview"))
    error = None
    username = ""
    if request.method == "POST":
        username = request.form.get("username", "")[:80]
        password = request.form.get("password", "")[:1024]
        user = authenticate(db_session(), username, password)
        if user is None:
            error = "Wrong username or password, or the account is disabled."
        else:
            session.clear()  # a fresh session: nothing from before sign-in carries over
            login_user(
                WebUser(user.id, user.username, user.display_name, user.role, user.session_version)
            )
            session.permanent = True
            return redirect(next_url or url_for("main.overview"))
    status = 401 if error else 200
    return render_template("login.html", error=error, next=next_url, username=username), status


@bp.post("/logout")
def logout() -> Response:
    """Sign out everywhere.

    Sessions are signed cookies, so clearing this browser's copy is not enough: a copy taken
    earlier would still work. Bumping the account's session_version ends every session of
    the account, this one included.
    """
    if getattr(current_user, "is_authenticated", False):
        user = db_session().get(User, current_user.id)
        if user is not None:
            user.session_version += 1
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))
