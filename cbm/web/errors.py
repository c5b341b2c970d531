"""Error pages: a helpful sentence and a way home for people, JSON for machines.

Paths under ``/api/`` and ``/healthz`` get RFC 9457 problem details
(``application/problem+json``: ``type``, ``title``, ``status``, ``detail``), the one error
format of the JSON API, whichever layer raised the error.
Database failures are not 500s: an unreachable database and an unmigrated one are 503s
that say what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, Response, current_app, jsonify, render_template, request
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.http import HTTP_STATUS_CODES

from cbm.config import Settings

#: SQLSTATEs PostgreSQL raises when a table or column the code expects is missing.
_MISSING_SCHEMA_SQLSTATES = {"42P01", "42703"}
_MISSING_SCHEMA_MESSAGES = ("no such table", "no such column")

#: Headers of an HTTP error that the error page keeps.
_KEPT_HEADERS = frozenset({"Allow", "WWW-Authenticate", "Retry-After"})

_MESSAGES: dict[int, str] = {
    400: "The request could not be understood. Check the address or the form and try again.",
    403: "You do not have permission to see this page. Ask an administrator if you need it.",
    404: "There is no page at this address. The link may be mistyped or the page may have moved.",
    405: "This page does not accept that kind of request, for example a form sent to a page "
    "that only shows data.",
    413: "The upload is larger than the limit of {max_upload_mb} MiB. Split the file, or ask an "
    "administrator to raise CBM_MAX_UPLOAD_MB.",
    429: "Too many attempts from your address in a short time. Wait a minute, then try again.",
    500: "Something went wrong on our side. The error has been logged; try again, and tell the "
    "administrator if it keeps happening.",
}

DB_UNREACHABLE = (
    "The database is unreachable, so the tracker can neither read nor store records. Check "
    "that the database server is running and that CBM_DATABASE_URL points at it, then reload."
)
DB_NOT_MIGRATED = (
    "The database has not been set up for this version of cbm. Run `cbm db upgrade`, then "
    "reload this page."
)


@dataclass(frozen=True)
class ErrorInfo:
    code: int
    title: str
    message: str


def wants_json() -> bool:
    """Machine paths answer errors in JSON; everything else gets an HTML page."""
    path = request.path
    return path == "/api" or path.startswith("/api/") or path == "/healthz"


def is_missing_schema(exc: BaseException) -> bool:
    """True when a database error means the schema is missing or behind (not migrated)."""
    if not isinstance(exc, OperationalError | ProgrammingError):
        return False
    if getattr(exc.orig, "sqlstate", None) in _MISSING_SCHEMA_SQLSTATES:
        return True
    text = str(exc.orig).lower()
    return any(m in text for m in _MISSING_SCHEMA_MESSAGES) or (
        isinstance(exc, ProgrammingError) and "does not exist" in text
    )


def problem_response(
    status: int, detail: str, *, title: str | None = None, **extra: object
) -> Response:
    """An ``application/problem+json`` response (RFC 9457); ``extra`` adds members."""
    body = {
        "type": "about:blank",
        "title": title or HTTP_STATUS_CODES.get(status, "Error"),
        "status": status,
        "detail": detail,
        **extra,
    }
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    return response


def render_error(info: ErrorInfo) -> tuple[Response | str, int]:
    if wants_json():
        return problem_response(info.code, info.message, title=info.title), info.code
    return render_template("error.html", error=info), info.code


def _settings() -> Settings:
    return current_app.config["CBM_SETTINGS"]


def _http_error(exc: HTTPException) -> tuple[Response | str, int]:
    code = exc.code or 500
    template = _MESSAGES.get(code)
    custom = exc.description and exc.description != type(exc).description
    if code == 429:
        custom = False  # the limiter's own text ("10 per 1 minute") tells a person nothing
    if custom or template is None:
        # abort(400, "The file has no header row") says more than any generic sentence.
        message = exc.description or HTTP_STATUS_CODES.get(code, "Error")
    else:
        message = template.format(max_upload_mb=_settings().max_upload_mb)
    body, status = render_error(ErrorInfo(code, HTTP_STATUS_CODES.get(code, "Error"), message))
    kept = {k: v for k, v in exc.get_headers() if k in _KEPT_HEADERS}
    if kept:  # 405 says what is allowed, 401 how to authenticate, 429 when to come back
        body = body if isinstance(body, Response) else Response(body, mimetype="text/html")
        body.headers.update(kept)
    return body, status


def _database_error(exc: DBAPIError) -> tuple[Response | str, int]:
    if is_missing_schema(exc):
        current_app.logger.error("database not migrated (%s): %s", request.path, exc.orig)
        return render_error(ErrorInfo(503, "Database not set up", DB_NOT_MIGRATED))
    if isinstance(exc, OperationalError):
        current_app.logger.error("database unreachable (%s): %s", request.path, exc.orig)
        return render_error(ErrorInfo(503, "Database unreachable", DB_UNREACHABLE))
    current_app.logger.exception("database error on %s", request.path)
    return _http_error(InternalServerError())


def _server_error(exc: InternalServerError) -> tuple[Response | str, int]:
    # Errors raised outside the view (e.g. by the commit in after_request) arrive here
    # wrapped; a database cause still deserves the 503 that explains it.
    original = exc.original_exception
    if isinstance(original, OperationalError | ProgrammingError):
        return _database_error(original)
    return _http_error(exc)


def init_errors(app: Flask) -> None:
    """Register the handlers: HTTP errors, database errors, and the last-resort 500."""
    app.register_error_handler(OperationalError, _database_error)
    app.register_error_handler(ProgrammingError, _database_error)
    app.register_error_handler(InternalServerError, _server_error)
    app.register_error_handler(HTTPException, _http_error)
