"""``/api/v1/openapi.json`` and ``/api/v1/docs``: the description and its offline docs page.

The docs page is Swagger UI, vendored under ``cbm/web/static/vendor/swagger-ui/`` with its
licence (see the README there): no CDN, and its validator badge (which would call an
outside service) is off. Swagger UI sets inline styles, so this one page allows inline
*styles* in its Content-Security-Policy; scripts stay same-origin only, as everywhere.
"""

from __future__ import annotations

from flask import Response, jsonify, render_template

from cbm.web.api import bp
from cbm.web.api.openapi import openapi_document
from cbm.web.auth import public

DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


@bp.get("/openapi.json")
@public
def openapi() -> Response:
    return jsonify(openapi_document())


@bp.get("/docs")
@public
def docs() -> Response:
    response = Response(render_template("api/docs.html"))
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response
