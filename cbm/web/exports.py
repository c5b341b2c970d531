"""The HTTP side of list exports: one function that turns a list kind and the page's query
string into a streamed CSV, XLSX or JSON response (``format=csv|xlsx|json``, as
``cbm export --format``), or its JSON manifest.

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
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from flask import Response
from sqlalchemy.orm import Session

from cbm.services.export_formats import XLSXCellError
from cbm.services.export_lists import (
    FORMATS,
    MEDIA_TYPES,
    ExportFilterError,
    ExportJob,
    build_job,
    digest_of,
    headers,
    iter_bytes,
    manifest,
    manifest_json,
    open_snapshot,
    take_stamp,
    workbook_headers,
    workbook_manifest,
)
from cbm.web.database import db_session, web_state

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})
#: Arguments of the export itself, beside the list's filters.
OPTION_ARGS = ("excel_safe", "manifest")
FORMAT_ARG = "format"
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


def _flags(args: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The export's own options (``excel_safe``, ``manifest``, ``format``) and what is
    wrong with them, by argument name."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in OPTION_ARGS:
        raw = (args.get(name) or "").strip().lower()
        if raw in _TRUE:
            values[name] = True
        elif raw in _FALSE:
            values[name] = False
        else:
            errors[name] = f"'{raw[:20]}' is not a yes/no value; use 1 or 0"
    fmt = (args.get(FORMAT_ARG) or "csv").strip().lower()
    if fmt in FORMATS:
        values[FORMAT_ARG] = fmt
    else:
        errors[FORMAT_ARG] = f"'{fmt[:20]}' is not a format; choose one of {', '.join(FORMATS)}"
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
    """The list ``kind`` with the filters in ``args`` (the page's query string), as CSV
    (default), XLSX or JSON (``format``): stamped headers, streamed body; ``manifest=1``
    answers the JSON manifest of that file instead; ``excel_safe=1`` neutralises
    formula-like cells."""
    return stream_jobs(lambda session: [build_job(session, kind, args)], args)


def stream_jobs(
    build: Callable[[Session], list[ExportJob]],
    args: Mapping[str, str],
    *,
    workbook_name: str | None = None,
) -> Response:
    """Build the export jobs on the export's own session and stream them. One job: that
    list in ``format``. Several (``workbook_name`` given): one XLSX workbook, a sheet per
    job (the all-contract-sheets workbook of ``cbm export all --format xlsx``)."""
    flags, flag_errors = _flags(args)
    # End the request's read transaction before the export's own session starts.
    db_session().commit()
    session = open_snapshot(web_state().session_factory)
    try:
        try:
            jobs = build(session)
        except ExportFilterError as exc:
            session.close()
            return refusal({**exc.errors, **flag_errors})
        if workbook_name is not None and flags.get(FORMAT_ARG) != "xlsx":
            flag_errors.setdefault(FORMAT_ARG, "the workbook of every sheet is xlsx only")
        if flag_errors:
            session.close()
            return refusal(flag_errors)
        excel_safe = flags["excel_safe"]
        fmt = flags[FORMAT_ARG]
        stamps = [take_stamp(session, job) for job in jobs]
        if workbook_name is None:
            job, stamp = jobs[0], stamps[0]
            stamped = headers(job, stamp, fmt, excel_safe=excel_safe)

            def pieces() -> Iterator[bytes]:
                return iter_bytes(session, job, fmt, excel_safe=excel_safe)

            file_name = job.file_name(fmt)
        else:
            stamped = workbook_headers(jobs, stamps, workbook_name, excel_safe=excel_safe)

            def pieces() -> Iterator[bytes]:
                from cbm.services.export_formats import iter_xlsx

                return iter_xlsx(session, jobs, excel_safe=excel_safe)

            file_name = workbook_name
        if flags["manifest"]:
            written = digest_of(pieces())
            session.close()
            stamped["Content-Disposition"] = f'attachment; filename="{file_name}.manifest.json"'
            if workbook_name is None:
                info = manifest(jobs[0], stamps[0], written, fmt, excel_safe=excel_safe)
            else:
                info = workbook_manifest(jobs, stamps, written, workbook_name)
            return Response(manifest_json(info), mimetype="application/json", headers=stamped)
    except XLSXCellError as exc:
        session.close()
        return Response(f"{exc}\n", 422, mimetype="text/plain")
    except BaseException:
        session.close()
        raise

    def generate() -> Iterator[bytes]:
        try:
            yield from pieces()
        finally:
            close_quietly(session)

    response = Response(generate(), content_type=MEDIA_TYPES[fmt], headers=stamped)
    response.call_on_close(lambda: close_quietly(session))
    return response
