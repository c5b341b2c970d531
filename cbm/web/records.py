"""Record pages for every contract file: lists, record pages with history, and the forms
that create, correct and delete records. One implementation, driven by
:data:`cbm.contract.FILES`; nothing is written per record kind.

URLs name a record by its natural key (see :func:`encode_key`), so a link to
``/records/activities/ZAPAD-2021,notification`` stays valid across databases, exports and
re-imports, and the page of a deleted key still shows its history.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.routing import BuildError

from cbm import contract
from cbm.contract import ContractFile
from cbm.queries import records as q
from cbm.services.records import (
    DeleteRefused,
    delete_record,
    entity_key,
    upsert_records,
)
from cbm.web import forms
from cbm.web.auth import current_actor, role_required
from cbm.web.database import db_session
from cbm.web.exports import export_response

bp = Blueprint("records", __name__, url_prefix="/records")

# --------------------------------------------------------------------------------------
# Keys in URLs
# --------------------------------------------------------------------------------------

#: Characters a key part keeps as they are; every other ASCII character is written ``~XX``
#: (its hex code). Letters beyond ASCII stay readable (browsers show them as typed).
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:@")
_SEPARATOR = ","
_EMPTY_KEY = "~"
#: Path segments that are pages of their own: a key spelled like one is escaped.
_RESERVED = frozenset({"new"})
_ESCAPE = re.compile(r"~([0-9A-F]{2})")


def encode_key(parts: Sequence[str]) -> str:
    """The natural key as one URL path segment: parts joined by ``,``.

    Within a part, ASCII characters other than letters, digits and ``-_.:@`` become
    ``~XX`` (uppercase hex): so ``/``, ``,``, ``~``, ``%``, ``?``, ``#``, ``\\`` and spaces
    never reach the URL as themselves, and the segment has no ``/`` for routing to split
    on. Non-ASCII characters are kept (``url_for`` percent-encodes them as UTF-8 and the
    server decodes them back). A leading ``.`` is escaped too, so a key is never the path
    segment ``.`` or ``..``, and a key spelled ``new`` starts ``~6E`` (``new`` is the
    form for a new record). An empty part is empty (``OST,DEU,2024,passive,``); a key of
    one empty part is ``~``. The encoding is stable (one string per key) and
    :func:`decode_key` reverses it exactly.
    """
    out = []
    for part in parts:
        chars = []
        for i, ch in enumerate(part):
            if (ch in _SAFE and not (i == 0 and ch == ".")) or not ch.isascii():
                chars.append(ch)
            else:
                chars.append(f"~{ord(ch):02X}")
        out.append("".join(chars))
    text = _SEPARATOR.join(out)
    if text in _RESERVED:  # /records/notifications/new is the form, not the key "new"
        text = f"~{ord(text[0]):02X}{text[1:]}"
    return text or _EMPTY_KEY


def decode_key(text: str) -> list[str]:
    """The key parts of an :func:`encode_key` string; ValueError for anything else."""
    if text == _EMPTY_KEY:
        return [""]
    parts = []
    for raw in text.split(_SEPARATOR):
        if "~" in _ESCAPE.sub("", raw):
            raise ValueError(f"bad escape in key part {raw!r}")
        part = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), raw)
        if "\x00" in part:
            # No stored key holds a NUL, and PostgreSQL refuses one as a parameter (a 500).
            raise ValueError(f"key part {raw!r} holds a NUL character")
        parts.append(part)
    return parts


def record_url(kind: str, row: Mapping[str, Any], endpoint: str = "records.record") -> str:
    spec = contract.get(kind)
    return url_for(endpoint, kind=kind, key=encode_key(q.key_parts(spec, row)))


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _spec(kind: str) -> ContractFile:
    spec = contract.FILES.get(kind)
    if spec is None:
        abort(
            404,
            f"There is no record kind '{kind}'. The kinds are: {', '.join(contract.FILES)}.",
        )
    return spec


def _key(spec: ContractFile, encoded: str) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The key parts (contract text) and typed key values of a URL key, or a 404."""
    try:
        parts = decode_key(encoded)
        values = q.key_values(spec, parts)
    except ValueError:
        abort(
            404,
            f"'{encoded}' is not a key of {spec.title.lower()}. A key names "
            f"{', '.join(spec.key)}; open the record from its list instead.",
        )
    return tuple(parts), values


#: One record of each kind, for sentences ("Add activity", "Delete quota …?").
NOUNS: dict[str, str] = {
    "activities": "activity",
    "notifications": "notification",
    "inspections": "inspection or evaluation visit",
    "observation_flights": "observation flight",
    "quotas": "quota",
    "holdings": "holding",
    "ceilings": "ceiling",
    "reductions": "reduction or withdrawal",
}


def _noun(spec: ContractFile) -> str:
    return NOUNS.get(spec.name, "record")


def _common(spec: ContractFile | None = None) -> dict[str, Any]:
    session = db_session()
    return {
        "spec": spec,
        "noun": _noun(spec) if spec else None,
        "nouns": NOUNS,
        "states": q.state_names(session),
        "display": forms.display,
        "label": forms.label,
        "record_url": record_url,
        "encode_key": encode_key,
        "key_parts": q.key_parts,
        "list_spec": q.LISTS,
        "files": contract.FILES,
        "state_list_id": forms.STATE_LIST_ID,
        "run_url": run_url,
        "new_url": new_url,
    }


#: Endpoints that may show one import run (the importers' blueprint), tried in order.
RUN_ENDPOINTS = ("runs.run", "imports.run", "imports.detail")


def run_url(run_id: int) -> str | None:
    """The page of an import run, once a blueprint provides one; None until then."""
    for endpoint in RUN_ENDPOINTS:
        if endpoint in current_app.view_functions:
            try:
                return url_for(endpoint, run_id=run_id)
            except BuildError:
                continue
    return None


# --------------------------------------------------------------------------------------
# Index and lists
# --------------------------------------------------------------------------------------


@bp.get("/")
def index() -> str:
    """The record kinds with their counts."""
    counts = q.record_counts(db_session())
    return render_template(
        "records/index.html", counts=counts, total=sum(counts.values()), **_common()
    )


@bp.get("/all.xlsx")
def workbook() -> Any:
    """Every contract file in one XLSX workbook, a sheet per file in load order: what
    ``cbm export all --format xlsx`` writes, and what the XLSX importer (an upload, or
    ``cbm import FILE.xlsx``) reads back as the same data. Streamed and stamped;
    ``manifest=1`` gives its manifest."""
    from cbm.services.export_lists import WORKBOOK_NAME, workbook_jobs
    from cbm.web.exports import stream_jobs

    args = {**request.args.to_dict(), "format": "xlsx"}
    return stream_jobs(workbook_jobs, args, workbook_name=WORKBOOK_NAME)


def _list_url(kind: str, args: Mapping[str, str], **changes: Any) -> str:
    merged = {k: v for k, v in args.items() if v not in (None, "")}
    for name, value in changes.items():
        if value in (None, ""):
            merged.pop(name, None)
        else:
            merged[name] = value
    return _with_query(url_for("records.list_records", kind=kind), merged)


def _with_query(url: str, values: Mapping[str, Any]) -> str:
    """``url`` with a query string. (Not ``url_for(**values)``: a column or filter named
    ``kind`` would collide with the route's ``kind``.)"""
    values = {k: v for k, v in values.items() if v not in (None, "")}
    return f"{url}?{urlencode(values)}" if values else url


def new_url(kind: str, values: Mapping[str, Any] | None = None) -> str:
    """The form for a new record of ``kind``, prefilled with ``values``."""
    return _with_query(url_for("records.new", kind=kind), values or {})


@bp.get("/<kind>/")
def list_records(kind: str) -> tuple[str, int]:
    """A list with filters, sorting and pages; every choice is in the query string."""
    spec = _spec(kind)
    session = db_session()
    known = (*q.FILTER_ARGS, "sort", "order", "per_page", "page")
    args = {k: v for k, v in request.args.items() if k in known and v.strip()}
    params, errors = q.parse_list_args(session, spec, args)
    page = None
    status = 200
    stored = True
    if errors:
        status = 400
    else:
        page = q.list_records(session, spec, params)
        if page.out_of_range:
            status = 404
        elif page.total == 0 and params.filtered:
            stored = q.has_records(session, spec)
        elif page.total == 0:
            stored = False
    lst = q.LISTS[spec.name]
    kcol = q.kind_column(spec)
    return (
        render_template(
            "records/list.html",
            params=params,
            args=args,
            errors=errors,
            page=page,
            stored=stored,
            lst=lst,
            columns=lst.columns,
            kind_column=kcol,
            kind_choices=spec.field(kcol).choices if kcol else (),
            regime_choices=q.regime_choices(spec),
            regions=q.regions(session),
            page_sizes=q.PAGE_SIZES,
            list_url=lambda **changes: _list_url(spec.name, args, **changes),
            clear_url=_list_url(spec.name, {}),
            csv_url=export_url(spec.name, args),
            **_common(spec),
        ),
        status,
    )


def export_url(kind: str, args: Mapping[str, str]) -> str:
    """The list's CSV: the same filters (not the page, sort or page size) at ``<kind>.csv``."""
    return _with_query(
        url_for("records.export_list", kind=kind),
        {k: args[k] for k in q.FILTER_ARGS if args.get(k)},
    )


@bp.get("/<kind>.csv")
def export_list(kind: str) -> Any:
    """Every record of the list's filters as contract CSV (contract columns, natural-key
    order: it re-imports), streamed and stamped (see :mod:`cbm.web.exports`)."""
    spec = _spec(kind)
    return export_response(spec.name, request.args)


# --------------------------------------------------------------------------------------
# Record page
# --------------------------------------------------------------------------------------


@bp.get("/<kind>/<key>")
def record(kind: str, key: str) -> tuple[str, int]:
    """All values, where the record came from, related records and its full history."""
    spec = _spec(kind)
    parts, values = _key(spec, key)
    session = db_session()
    row = q.get_record(session, spec, values)
    history = q.record_history(session, spec, values, row=row)
    if row is None and not history.entries:
        abort(
            404,
            f"No {_noun(spec)} with the key {entity_key(spec, values)} is stored, and none "
            "ever was. Check the address, or find the record in its list.",
        )
    context: dict[str, Any] = {
        "row": row,
        "parts": parts,
        "history": history,
        "key_text": entity_key(spec, values),
        "encoded": encode_key(parts),
    }
    if row is not None:
        context["provenance"] = q.provenance(session, row)
        context["links"] = q.outgoing_links(session, spec, row)
        context["related"] = q.related_records(session, spec, row)
        context["link_columns"] = {
            link.column for link in q.LINKS if link.source == spec.name and not link.is_sibling
        }
        context["add_defaults"] = lambda group: _add_defaults(spec, row, group)
    else:
        context["recreate_url"] = new_url(spec.name, forms.form_values(spec, history.last_values))
    return render_template("records/record.html", **context, **_common(spec)), 200


def _add_defaults(spec: ContractFile, row: Mapping[str, Any], group: q.RelatedGroup) -> dict:
    """Prefilled values for "add a related record": the reference and the regime; for
    another source row of an activity, what the sources share (not the figures)."""
    values = {group.column: group.value}
    target = contract.get(group.kind)
    if target is spec and group.column in spec.key:
        shared = forms.form_values(spec, row)
        for f in spec.fields:
            if not f.key and f.type != contract.INT and f.name != "remarks" and shared[f.name]:
                values[f.name] = shared[f.name]
    if "regime" in target.columns:
        regimes = q.regime_choices(spec)
        regime = row.get("regime") or (regimes[0] if len(regimes) == 1 else None)
        if regime:
            values["regime"] = regime
    return values


# --------------------------------------------------------------------------------------
# Create, edit, delete
# --------------------------------------------------------------------------------------


def _render_form(
    spec: ContractFile,
    values: Mapping[str, str],
    *,
    editing: bool,
    errors: Sequence[Any] = (),
    parts: Sequence[str] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    by_field, summary = forms.errors_by_field(spec, errors)
    fields = forms.build_fields(spec, values, by_field, editing=editing)
    return (
        render_template(
            "records/form.html",
            fields=fields,
            editing=editing,
            summary=summary,
            parts=parts,
            encoded=encode_key(parts) if parts is not None else None,
            key_text=" / ".join(parts) if parts is not None else None,
            **_common(spec),
        ),
        status,
    )


@bp.route("/<kind>/new", methods=["GET", "POST"])
@role_required("analyst")
def new(kind: str) -> Any:
    """Add a record. The service validates it; on errors nothing is written (HTTP 422)."""
    spec = _spec(kind)
    if request.method == "GET":
        return _render_form(spec, forms.prefill(spec, request.args), editing=False)
    session = db_session()
    row = forms.row_from_form(spec, request.form)
    result = upsert_records(session, spec, [row], actor=current_actor(), mode="create")
    if result.errors:
        return _render_form(
            spec,
            forms.submitted_values(spec, request.form),
            editing=False,
            errors=result.errors,
            status=422,
        )
    stored = q.get_record(session, spec, q.stored_key(session, spec, row))
    assert stored is not None
    flash(f"Added {_noun(spec)} {entity_key(spec, stored)}.", "success")
    return redirect(record_url(spec.name, stored), 303)


@bp.route("/<kind>/<key>/edit", methods=["GET", "POST"])
@role_required("analyst")
def edit(kind: str, key: str) -> Any:
    """Correct a record. The key is fixed (it comes from the URL, not the form)."""
    spec = _spec(kind)
    parts, values = _key(spec, key)
    session = db_session()
    row = q.get_record(session, spec, values)
    if row is None:
        abort(
            404,
            f"No {_noun(spec)} with the key {entity_key(spec, values)} is stored, so there "
            "is nothing to edit. It may have been deleted; its record page shows its history.",
        )
    if request.method == "GET":
        return _render_form(spec, forms.form_values(spec, row), editing=True, parts=parts)
    key_text = dict(zip(spec.key, q.key_parts(spec, row), strict=True))
    submitted = forms.row_from_form(spec, request.form, key=key_text)
    result = upsert_records(session, spec, [submitted], actor=current_actor(), mode="update")
    if result.errors:
        shown = {**forms.submitted_values(spec, request.form), **key_text}
        return _render_form(
            spec, shown, editing=True, errors=result.errors, parts=parts, status=422
        )
    if result.updated:
        flash(f"Saved your changes to {_noun(spec)} {entity_key(spec, row)}.", "success")
    else:
        flash("Nothing changed: the values you sent are the ones stored.", "info")
    return redirect(record_url(spec.name, row), 303)


@bp.route("/<kind>/<key>/delete", methods=["GET", "POST"])
@role_required("analyst")
def delete(kind: str, key: str) -> Any:
    """Confirm (GET), then delete (POST). The history stays on the record page."""
    spec = _spec(kind)
    parts, values = _key(spec, key)
    session = db_session()
    row = q.get_record(session, spec, values)
    if row is None:
        abort(
            404,
            f"No {_noun(spec)} with the key {entity_key(spec, values)} is stored; it may "
            "have been deleted already. Its record page shows its history.",
        )
    context = {
        "row": row,
        "parts": parts,
        "encoded": encode_key(parts),
        "key_text": entity_key(spec, values),
        "related": q.related_records(session, spec, row),
        "refused": None,
    }
    if request.method == "GET":
        return render_template("records/delete.html", **context, **_common(spec))
    try:
        delete_record(session, spec, values, actor=current_actor())
    except DeleteRefused as exc:
        context["refused"] = str(exc)
        return render_template("records/delete.html", **context, **_common(spec)), 409
    flash(
        f"Deleted {_noun(spec)} {entity_key(spec, row)}. Its history stays on this page.",
        "success",
    )
    return redirect(record_url(spec.name, row), 303)
