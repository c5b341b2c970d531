"""A request id for every request: taken from a sane ``X-Request-ID``, else generated.

Why: one id ties a request's log lines (the app's, SQLAlchemy's, gunicorn's access line)
to each other and to whatever sent it (a proxy, a client that reports an error). The id is
bound to the log context for the request and echoed in the ``X-Request-ID`` response
header, which is also how gunicorn's access log finds it.
"""

from __future__ import annotations

import contextlib

from flask import Flask, Response, g, request

from cbm import logs

HEADER = "X-Request-ID"


def init_request_id(app: Flask) -> None:
    """Bind the id before any other hook runs, echo it on every response, unbind after."""

    def _bind() -> None:
        g.request_id = logs.sane_request_id(request.headers.get(HEADER))
        g._log_token = logs.bind(request_id=g.request_id)

    def _echo(response: Response) -> Response:
        rid = g.get("request_id")
        if rid:
            response.headers[HEADER] = rid
        return response

    def _unbind(exc: BaseException | None) -> None:
        token = g.pop("_log_token", None)
        if token is not None:
            with contextlib.suppress(ValueError, RuntimeError):  # set in another context
                logs.unbind(token)

    # First among the before_request hooks (sign-in guard, database) so their lines carry it.
    app.before_request_funcs.setdefault(None, []).insert(0, _bind)
    app.after_request(_echo)
    app.teardown_request(_unbind)
