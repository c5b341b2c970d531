"""The JSON API at ``/api/v1/``: the same records, findings, scores, rules, import runs and
sources as the pages, through the same services and with the same validation messages.

- **Authentication**: a personal API token (``Authorization: Bearer cbm_…``), created on the
  Account page or with ``cbm token create``. Session cookies are not accepted here, so the
  API needs no CSRF token and a browser tab cannot be tricked into writing through it.
- **Authorisation**: every view declares the role it needs with :func:`api_role`; the
  token's role is the lower of its owner's and its own scope. A view without a declared
  role is refused to everyone (a safe default for a forgotten decorator).
- **Errors** are ``application/problem+json`` (RFC 9457) from the app's one error handler
  (:func:`cbm.web.errors.problem_response`); validation errors add ``errors``, a list of
  ``{row, field, value, message}`` exactly as the services report them.
- The OpenAPI 3.1 description (``/api/v1/openapi.json``) and its docs page (``/api/v1/docs``)
  are public: they describe the API and hold no data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlencode

from flask import Blueprint, Response, g, request

from cbm.services.accounts import role_rank
from cbm.services.records import Actor
from cbm.services.tokens import TokenIdentity, authenticate_token
from cbm.web.database import db_session
from cbm.web.errors import problem_response

bp = Blueprint("api", __name__, url_prefix="/api/v1")

F = TypeVar("F", bound=Callable[..., Any])

#: Endpoints of the blueprint that need no token.
PUBLIC_API_ENDPOINTS = frozenset({"api.openapi", "api.docs"})
_G_IDENTITY = "_cbm_api_identity"


class Problem(Exception):
    """Raised by an API view: becomes a problem+json response with these members."""

    def __init__(self, status: int, detail: str, *, title: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title
        self.extra = extra


def api_role(role: str) -> Callable[[F], F]:
    """Declare the role a view needs (read by the guard and by the authorisation tests)."""

    def decorate(view: F) -> F:
        view.cbm_api_role = role  # type: ignore[attr-defined]
        return view

    return decorate


def identity() -> TokenIdentity:
    """The token identity of this request (set by the guard)."""
    return g.get(_G_IDENTITY)


def actor() -> Actor:
    """Who the services record for this request: the token's owner."""
    return Actor(user_id=identity().user_id)


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def unauthorized(detail: str, error: str | None = None) -> Response:
    response = problem_response(401, detail)
    challenge = 'Bearer realm="cbm"'
    if error:
        challenge += f', error="{error}"'
    response.headers["WWW-Authenticate"] = challenge
    return response


@bp.before_request
def _authenticate() -> Response | None:
    """Token first, then the view's role. Runs before every API view."""
    from flask import current_app

    endpoint = request.endpoint or ""
    if endpoint in PUBLIC_API_ENDPOINTS or endpoint not in current_app.view_functions:
        return None  # public, or no such route (the 404/405 handler answers)
    secret = _bearer()
    if secret is None:
        return unauthorized(
            "This API needs a personal API token: send 'Authorization: Bearer cbm_…'. "
            "Create one on your Account page or with `cbm token create`."
        )
    found = authenticate_token(db_session(), secret)
    if found is None:
        return unauthorized(
            "The API token is not valid: it is unknown, revoked or expired, or its account "
            "is disabled.",
            "invalid_token",
        )
    setattr(g, _G_IDENTITY, found)
    view = current_app.view_functions[endpoint]
    needed = getattr(view, "cbm_api_role", None)
    if needed is None or role_rank(found.role) < role_rank(needed):
        return problem_response(
            403,
            f"This needs the {needed or 'admin'} role; the token acts as {found.role}.",
        )
    return None


@bp.errorhandler(Problem)
def _problem(exc: Problem) -> Response:
    return problem_response(exc.status, exc.detail, title=exc.title, **exc.extra)


def json_body() -> Mapping[str, Any]:
    """The request's JSON object, or a 400/415 problem that says what is wrong with it."""
    if not request.is_json:
        raise Problem(415, "Send the body as JSON with 'Content-Type: application/json'.")
    data = request.get_json(silent=True)
    if data is None:
        raise Problem(400, "The body is not valid JSON.")
    if not isinstance(data, dict):
        raise Problem(422, f"The body must be a JSON object, not {type(data).__name__}.")
    return data


def query_args() -> dict[str, str]:
    """The query string as one value per name (the last one wins, as on the pages)."""
    return {k: v for k, v in request.args.items(multi=False)}


def page_links(page: int, pages: int) -> dict[str, str]:
    """``self``, ``next`` and ``prev`` of a list: this path with the same query, another page.

    Built from the request path, not ``url_for``: a filter named like a route default
    (``kind``) must stay a query argument.
    """
    args = {k: v for k, v in query_args().items() if k != "page"}

    def link(number: int) -> str:
        return f"{request.path}?{urlencode({**args, 'page': number})}"

    links = {"self": link(page)}
    if page < pages:
        links["next"] = link(page + 1)
    if 1 < page <= pages:
        links["prev"] = link(page - 1)
    return links


def filter_problem(errors: Mapping[str, str]) -> Problem:
    """A 400 naming every query argument that cannot be used, with the pages' messages."""
    items = [{"field": name, "message": message} for name, message in errors.items()]
    first = next(iter(errors.items()))
    return Problem(400, f"{first[0]}: {first[1]}", title="Bad filter", errors=items)


def init_api(app: Any) -> None:
    """Register the API (its views import here so the blueprint is complete)."""
    from cbm.web.api import docs, records, resources  # noqa: F401  (register views)
    from cbm.web.auth import csrf

    csrf.exempt(bp)
    app.register_blueprint(bp)
