"""Contract records over the API: list, get, create, replace, patch and delete, per kind.

One generic implementation driven by :data:`cbm.contract.FILES`, like the record pages:
filters are the pages' (:func:`cbm.queries.records.parse_list_args`), writes go through
:func:`cbm.services.records.upsert_records` (``create`` / ``update`` modes) and
:func:`cbm.services.records.delete_record`, so the API refuses exactly what a form or an
importer refuses, with the same messages.

A record in JSON has the contract's columns in the contract's order: numbers and booleans
as JSON numbers and booleans, dates ``YYYY-MM-DD``, timestamps UTC with ``Z``, an empty
value as ``null``. Incoming values are turned into contract text (what an importer hands
over) and judged by the same validator. ``_key`` is the record's URL key (the natural key,
encoded as on the record pages) and ``_url`` its address.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from flask import Response, jsonify, url_for

from cbm import contract
from cbm.contract import ContractFile
from cbm.queries import records as q
from cbm.services.exports import format_timestamp, format_value
from cbm.services.records import DeleteRefused, delete_record, entity_key, upsert_records
from cbm.services.validation import RowError
from cbm.web.api import (
    Problem,
    actor,
    api_role,
    bp,
    filter_problem,
    json_body,
    page_links,
    query_args,
)
from cbm.web.database import db_session
from cbm.web.records import decode_key, encode_key

NUMBER_TYPES = (contract.INT, contract.YEAR)


def record_json(spec: ContractFile, row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored row as the API shows it (contract columns, JSON types, ``_key``, ``_url``)."""
    out: dict[str, Any] = {}
    for f in spec.fields:
        value = row.get(f.name)
        if value is None or value == "":
            out[f.name] = None
        elif f.type in NUMBER_TYPES:
            out[f.name] = int(value)
        elif f.type == contract.BOOL:
            out[f.name] = bool(value)
        elif f.type == contract.TIMESTAMP:
            out[f.name] = format_timestamp(value)
        elif f.type == contract.DATE:
            out[f.name] = value.isoformat() if isinstance(value, dt.date) else str(value)
        else:
            out[f.name] = str(value)
    key = encode_key(q.key_parts(spec, row))
    out["_key"] = key
    out["_url"] = url_for(f"api.get_{spec.name}", key=key)
    return out


def _text(spec: ContractFile, name: str, value: Any) -> tuple[str | None, str | None]:
    """(contract text, None) for one JSON value, or (None, why it has the wrong type)."""
    f = spec.field(name)
    if value is None:
        return "", None
    if f.type == contract.BOOL:
        if isinstance(value, bool):
            return ("true" if value else "false"), None
        if isinstance(value, str):
            return value, None
        return None, "must be true, false or null"
    if f.type in NUMBER_TYPES:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value), None
        if isinstance(value, str):
            return value, None
        return None, "must be a whole number or null"
    if isinstance(value, str):
        return value, None
    return None, "must be a string or null"


def contract_row(spec: ContractFile, body: Mapping[str, Any]) -> dict[str, str]:
    """The contract row (text) of the members a JSON body names; 422 on bad members."""
    row: dict[str, str] = {}
    errors = []
    for name, value in body.items():
        if name in ("_key", "_url"):
            continue  # what a GET returned may be sent back as it was
        if name not in spec.columns:
            errors.append(
                {
                    "row": 1,
                    "field": name,
                    "value": None,
                    "message": f"'{name[:60]}' is not a column of {spec.name}; "
                    f"the columns are: {', '.join(spec.columns)}",
                }
            )
            continue
        text, why = _text(spec, name, value)
        if why:
            errors.append({"row": 1, "field": name, "value": None, "message": f"{name} {why}"})
        else:
            row[name] = text or ""
    if errors:
        raise Problem(422, errors[0]["message"], title="The record was not accepted", errors=errors)
    return row


def _errors_problem(errors: list[RowError]) -> Problem:
    items = [
        {"row": e.row, "field": e.column, "value": e.value, "message": e.reason} for e in errors
    ]
    return Problem(422, str(errors[0]), title="The record was not accepted", errors=items)


def _spec_and_key(kind: str, key: str) -> tuple[ContractFile, dict[str, Any]]:
    spec = contract.get(kind)
    try:
        values = q.key_values(spec, decode_key(key))
    except ValueError as exc:
        raise Problem(
            404,
            f"'{key[:100]}' is not a key of {spec.name} ({exc}); a key names "
            f"{', '.join(spec.key)}, joined by ','. Take it from a record's _key.",
        ) from None
    return spec, values


def _stored(spec: ContractFile, key: Mapping[str, Any]) -> dict[str, Any]:
    row = q.get_record(db_session(), spec, key)
    if row is None:
        raise Problem(404, f"No {spec.name} record with the key {entity_key(spec, key)} is stored.")
    return row


def _stored_text(spec: ContractFile, row: Mapping[str, Any]) -> dict[str, str]:
    return {f.name: format_value(f, row.get(f.name)) for f in spec.fields}


def list_view(kind: str) -> Response:
    spec = contract.get(kind)
    session = db_session()
    params, errors = q.parse_list_args(session, spec, query_args())
    if errors:
        raise filter_problem(errors)
    page = q.list_records(session, spec, params)
    return jsonify(
        items=[record_json(spec, r) for r in page.rows],
        total=page.total,
        page=page.page,
        per_page=page.per_page,
        pages=page.pages,
        links=page_links(page.page, page.pages),
    )


def get_view(kind: str, key: str) -> Response:
    spec, values = _spec_and_key(kind, key)
    return jsonify(record_json(spec, _stored(spec, values)))


def create_view(kind: str) -> Response:
    spec = contract.get(kind)
    session = db_session()
    row = contract_row(spec, json_body())
    result = upsert_records(session, spec, [row], actor=actor(), mode="create")
    if result.errors:
        raise _errors_problem(result.errors)
    stored = q.get_record(session, spec, q.stored_key(session, spec, row))
    assert stored is not None
    body = record_json(spec, stored)
    response = jsonify(body)
    response.status_code = 201
    response.headers["Location"] = body["_url"]
    return response


def _check_key_unchanged(spec: ContractFile, row: Mapping[str, str], stored_text: dict) -> None:
    for name in spec.key:
        if name in row and row[name] != stored_text[name]:
            raise Problem(
                422,
                f"{name} is part of the key, which comes from the URL and cannot change; "
                "to rename a record, create the new one and delete the old one",
                title="The record was not accepted",
                errors=[
                    {
                        "row": 1,
                        "field": name,
                        "value": row[name],
                        "message": f"{name} is part of the key and cannot change",
                    }
                ],
            )


def _update(kind: str, key: str, *, partial: bool) -> Response:
    spec, values = _spec_and_key(kind, key)
    session = db_session()
    stored = _stored(spec, values)
    stored_text = _stored_text(spec, stored)
    given = contract_row(spec, json_body())
    _check_key_unchanged(spec, given, stored_text)
    # PUT replaces the record (a column left out becomes empty); PATCH changes what it names.
    row = {**stored_text, **given} if partial else {n: given.get(n, "") for n in spec.columns}
    row.update({k: stored_text[k] for k in spec.key})
    result = upsert_records(session, spec, [row], actor=actor(), mode="update")
    if result.errors:
        raise _errors_problem(result.errors)
    return jsonify(record_json(spec, _stored(spec, values)))


def replace_view(kind: str, key: str) -> Response:
    return _update(kind, key, partial=False)


def patch_view(kind: str, key: str) -> Response:
    return _update(kind, key, partial=True)


def delete_view(kind: str, key: str) -> Response:
    spec, values = _spec_and_key(kind, key)
    _stored(spec, values)
    try:
        delete_record(db_session(), spec, values, actor=actor())
    except DeleteRefused as exc:
        raise Problem(409, str(exc), title="Other records refer to this one") from None
    return Response(status=204)


def _register() -> None:
    """One set of routes per kind, so the URL map and the OpenAPI paths name every kind."""
    views = (
        ("list", "", ["GET"], api_role("viewer")(list_view)),
        ("create", "", ["POST"], api_role("analyst")(create_view)),
        ("get", "/<key>", ["GET"], api_role("viewer")(get_view)),
        ("replace", "/<key>", ["PUT"], api_role("analyst")(replace_view)),
        ("patch", "/<key>", ["PATCH"], api_role("analyst")(patch_view)),
        ("delete", "/<key>", ["DELETE"], api_role("analyst")(delete_view)),
    )
    for kind in contract.FILES:
        for action, suffix, methods, view in views:
            bp.add_url_rule(
                f"/{kind}{suffix}",
                endpoint=f"{action}_{kind}",
                view_func=view,
                methods=methods,
                defaults={"kind": kind},
            )


_register()
