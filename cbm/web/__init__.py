"""The web app: one factory, small init steps, in order (as in Indico and Redash).

``create_app`` is the only way to build the app; the CLI, the tests and a WSGI server all
call it. Each ``init_*`` step does one thing, so later issues add ``init_auth`` and
``init_cli`` without touching the others.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Any

from flask import Flask, Response, request
from markupsafe import Markup, escape

import cbm
from cbm.config import Settings, load_settings
from cbm.services.redaction import redact
from cbm.web.auth import init_auth
from cbm.web.database import db_session, get_engine, init_db, web_state
from cbm.web.errors import init_errors
from cbm.web.request_id import init_request_id

__all__ = [
    "SECURITY_HEADERS",
    "create_app",
    "db_session",
    "get_engine",
    "register_nav",
    "web_state",
]

#: Sent on every response. No inline script or style is allowed, and nothing from another
#: host: the app works offline and a compromised third party cannot inject code.
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app. ``config`` keys go to ``app.config`` (they win over derived values);
    ``CBM_SETTINGS`` (a ready :class:`Settings`) or else :func:`load_settings` with
    ``CBM_SETTINGS_OVERRIDES`` gives the settings, and ``CBM_ENGINE`` /
    ``CBM_SESSION_FACTORY`` replace the engine and session factory (the tests share one
    connection this way)."""
    config = dict(config or {})
    app = Flask(__name__)
    settings = init_config(app, config)
    init_db(app, settings, config)
    init_request_id(app)
    init_templates(app)
    init_auth(app)
    init_blueprints(app)
    init_errors(app)
    init_security(app)
    return app


def init_config(app: Flask, config: dict[str, Any]) -> Settings:
    """Parse the settings once and derive Flask's own keys from them.

    A caller that already holds a :class:`Settings` (the CLI) passes it as ``CBM_SETTINGS``,
    so the app sees exactly what the command saw; overrides still apply on top.
    """
    overrides = config.get("CBM_SETTINGS_OVERRIDES", {})
    given = config.get("CBM_SETTINGS")
    if isinstance(given, Settings):
        settings = dataclasses.replace(given, **overrides)
    else:
        settings = load_settings(**overrides)
    app.config.update(
        CBM_SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_upload_mb * 1024 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production,
        SESSION_COOKIE_NAME="cbm_session",
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=settings.session_hours),
    )
    app.config.update(
        {k: v for k, v in config.items() if k not in {"CBM_ENGINE", "CBM_SESSION_FACTORY"}}
    )
    app.config["CBM_SETTINGS"] = settings
    app.json.sort_keys = False  # keep JSON in the order it is written (status first)
    app.logger.setLevel(settings.log_level)
    return settings


def init_templates(app: Flask) -> None:
    """Filters and globals every template may use (numbers, UTC times, version, nav)."""
    app.jinja_env.filters["num"] = format_number
    app.jinja_env.filters["utc"] = format_utc
    app.jinja_env.filters["inline_code"] = inline_code
    # Locations and messages may quote a source URL with its credentials (see redaction).
    app.jinja_env.filters["redact"] = redact

    @app.context_processor
    def _globals() -> dict[str, Any]:
        return {"cbm_version": cbm.__version__, "nav_items": _nav_items()}


def init_blueprints(app: Flask) -> None:
    """Register the core blueprints and their nav entries (only pages that exist)."""
    from cbm.web.health import bp as health_bp
    from cbm.web.views import bp as main_bp

    app.register_blueprint(main_bp)
    app.register_blueprint(health_bp)
    register_nav(app, "main.overview", "Overview")
    from dashboards import bp as dashboards_bp

    app.register_blueprint(dashboards_bp)
    register_nav(app, "dashboards.overview", "Dashboards")
    from cbm.web.records import bp as records_bp

    app.register_blueprint(records_bp)
    register_nav(app, "records.index", "Records")
    from cbm.web.compliance import BLUEPRINTS as compliance_bps
    from cbm.web.compliance import NAV as compliance_nav

    for blueprint in compliance_bps:
        app.register_blueprint(blueprint)
    for endpoint, label in compliance_nav:
        register_nav(app, endpoint, label)
    from cbm.web.runs import bp as runs_bp

    app.register_blueprint(runs_bp)
    register_nav(app, "runs.index", "Imports")
    from cbm.web.account import bp as account_bp
    from cbm.web.admin import bp as admin_bp

    app.register_blueprint(admin_bp)
    app.register_blueprint(account_bp)
    register_nav(app, "admin.users", "Admin", "admin")
    from cbm.web.sources import bp as sources_bp

    app.register_blueprint(sources_bp)
    from cbm.web.api import init_api

    init_api(app)


def init_security(app: Flask) -> None:
    """Security headers on every response, error pages and static files included; a NUL
    in the address or a form field is refused before any view sees it."""

    @app.before_request
    def _refuse_nul() -> None:
        # No stored value holds a NUL (the validator refuses control characters), and
        # PostgreSQL refuses one in any parameter: a 500 instead of an answer; on SQLite
        # LIKE ends its pattern there and matches too much. (Uploaded files are not fields.)
        from flask import abort, request

        if "\x00" in request.path or any(
            "\x00" in (k or "") or "\x00" in (v or "")
            for source in (request.args, request.form)
            for k, v in source.items(multi=True)
        ):
            abort(400, "The request holds a NUL character (\\0), which no value here may hold.")

    @app.after_request
    def _security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def register_nav(app: Flask, endpoint: str, label: str, role: str = "viewer") -> None:
    """Add a page to the main navigation (shown to users with ``role`` or above)."""
    web_state(app).nav.append((endpoint, label, role))


def _nav_items() -> list[dict[str, Any]]:
    current = request.endpoint or ""
    return [
        {
            "endpoint": endpoint,
            "label": label,
            "role": role,
            "active": current == endpoint
            or current.split(".")[0] == endpoint.split(".")[0] != "main",
        }
        for endpoint, label, role in web_state().nav
    ]


def format_number(value: int | float | None) -> str:
    """Thousands separators for counts (1,234,567); an unknown value is an en dash."""
    if value is None:
        return "–"
    return f"{value:,}"


_BACKTICKS = re.compile(r"`([^`]+)`")


def inline_code(text: str) -> Markup:
    """Escape plain text and show `backticked` commands as <code> (error messages use them)."""
    return Markup(_BACKTICKS.sub(r"<code>\1</code>", str(escape(text))))


def format_utc(value: dt.datetime | None) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM UTC`` (the app shows every time in UTC)."""
    if value is None:
        return "–"
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%d %H:%M UTC")
