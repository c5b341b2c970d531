"""The HTTP side of list exports: one function that turns a list kind and the page's query
string into a streamed CSV response (or its JSON manifest).

Used by the records, runs and admin blueprints; the filters are parsed by the same code as
the pages (through :func:`cbm.services.export_lists.build_job`).

**Sessions and streaming.** The rows are streamed after the view has returned, when the
request context (and the request's session) is gone. So the export reads on a session of
its own, opened from the app's session factory (:func:`~cbm.services.export_lists.open_snapshot`:
one snapshot for the count, the stamp and the rows) and closed by the generator's
``finally`` and, should the body never be read, by the response's ``close``. It is not
``stream_with_context``: the generator needs nothing from the request, and a response left
unread must not keep the request context (and its signed-in user) pushed. The request's own
read transaction is ended first (as an upload does), so the two sessions never interleave.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping

from flask import Response
from sqlalchemy.orm import Session

from cbm.services.export_lists import (
    ExportFilterError,
    build_job,
    digest_of,
    headers,
    iter_bytes,
    iter_csv,
    manifest,
    manifest_json,
    open_snapshot,
    take_stamp,
)
from cbm.web.database import db_session, web_state

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})
#: Arguments of the export itself, beside the list's filters.
OPTION_ARGS = ("excel_safe", "manifest")
log = logging.getLogger(__name__)


def close_quietly(session: Session) -> None:
    """Close the export's session; never raise. It runs in a generator's ``finally`` or a
    response's ``close``, possibly when the body is abandoned and collected long after the
    request (a dead connection, a rolled-back outer transaction): the read-only session has
    nothing to lose, and an exception there could only be "ignored" by the interpreter."""
    try:
        session.close()
    except Exception:
        log.warning("closing an export's database session failed", exc_info=True)


def _flags(args: Mapping[str, str]) -> tuple[dict[str, bool], dict[str, str]]:
    values: dict[str, bool] = {}
    errors: dict[str, str] = {}
    for name in OPTION_ARGS:
        raw = (args.get(name) or "").strip().lower()
        if raw in _TRUE:
            values[name] = True
        elif raw in _FALSE:
            values[name] = False
        else:
            errors[name] = f"'{raw[:20]}' is not a yes/no value; use 1 or 0"
    return values, errors


def refusal(errors: Mapping[str, str]) -> Response:
    """400 naming each filter that cannot be used (plain text, as the findings CSV)."""
    text = "These filters cannot be used:\n" + "".join(
        f"- {name}: {message}\n" for name, message in errors.items()
    )
    response = Response(text, 400, mimetype="text/plain")
    response.headers["X-Export-Error"] = ",".join(errors)
    return response


def export_response(kind: str, args: Mapping[str, str]) -> Response:
    """The list ``kind`` as CSV with the filters in ``args`` (the page's query string):
    stamped headers, streamed body; ``manifest=1`` answers the JSON manifest instead;
    ``excel_safe=1`` neutralises formula-like cells."""
    flags, flag_errors = _flags(args)
    # End the request's read transaction before the export's own session starts.
    db_session().commit()
    session = open_snapshot(web_state().session_factory)
    try:
        try:
            job = build_job(session, kind, args)
        except ExportFilterError as exc:
            session.close()
            return refusal({**exc.errors, **flag_errors})
        if flag_errors:
            session.close()
            return refusal(flag_errors)
        excel_safe = flags["excel_safe"]
        stamp = take_stamp(session, job)
        stamped = headers(job, stamp, "csv", excel_safe=excel_safe)
        if flags["manifest"]:
            written = digest_of(iter_bytes(session, job, "csv", excel_safe=excel_safe))
            session.close()
            stamped["Content-Disposition"] = (
                f'attachment; filename="{job.file_name("csv")}.manifest.json"'
            )
            body = manifest_json(manifest(job, stamp, written, "csv", excel_safe=excel_safe))
            return Response(body, mimetype="application/json", headers=stamped)
    except BaseException:
        session.close()
        raise

    def generate() -> Iterator[str]:
        try:
            yield from iter_csv(session, job, excel_safe=excel_safe)
        finally:
            close_quietly(session)

    response = Response(generate(), mimetype="text/csv", headers=stamped)
    response.call_on_close(lambda: close_quietly(session))
    return response
