"""The OpenAPI 3.1 description of ``/api/v1/``, built from the contract and the registries.

Record schemas come from :data:`cbm.contract.FILES` (the same declarations the validator,
the forms and the exports read), the filter parameters from the list pages' choices, so a
new column or vocabulary value appears here without editing this file. Every response an
operation can give is listed with its schema, including the problem details of errors:
the schemathesis run in the test suite holds the API to it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from cbm import __version__, contract, vocab
from cbm.queries.records import PAGE_SIZES, kind_column
from cbm.services.export_lists import RUN_COLUMNS, TRUST_COLUMNS
from cbm.web.api.resources import FINDING_FIELDS, RULE_FIELDS, SOURCE_FIELDS

JSON = "application/json"
PROBLEM = "application/problem+json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    out = dict(schema)
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    out["type"] = [out["type"], "null"]
    return out


def field_schema(f: contract.Field, *, max_length: int | None, writing: bool) -> dict[str, Any]:
    """One contract column as JSON Schema (what the API shows, or accepts when writing)."""
    t = f.type
    if t in (contract.INT, contract.YEAR):
        schema: dict[str, Any] = {"type": "integer"}
        if t == contract.YEAR:
            schema.update(minimum=1900, maximum=2200)
    elif t == contract.BOOL:
        schema = {"type": "boolean"}
    elif t == contract.DATE:
        schema = {"type": "string", "format": "date"}
    elif t == contract.TIMESTAMP:
        schema = {"type": "string", "format": "date-time"}
    elif t == contract.VOCAB:
        schema = {"type": "string", "enum": list(f.choices)}
    else:
        schema = {"type": "string"}
        if max_length and writing:
            schema["maxLength"] = max_length
    if f.help:
        schema["description"] = f.help
    if t == contract.STATE:
        schema["description"] = "A participating State: ISO 3166 alpha-3 code (or, when "
        "writing, a name or alias the reference data knows)."
    if writing and f.required:
        return schema
    return _nullable(schema)


def record_schema(spec: contract.ContractFile, *, writing: bool) -> dict[str, Any]:
    props = {
        f.name: field_schema(f, max_length=spec.max_lengths.get(f.name), writing=writing)
        for f in spec.fields
    }
    if writing:
        return {
            "type": "object",
            "properties": props,
            "required": [f.name for f in spec.fields if f.required],
            "additionalProperties": False,
            "description": f"{spec.title}: contract file `{spec.name}`. A column left "
            "out is empty (PUT) or unchanged (PATCH).",
        }
    props["_key"] = {"type": "string", "description": "The record's URL key."}
    props["_url"] = {"type": "string", "description": "The record's address in this API."}
    return {
        "type": "object",
        "properties": props,
        "required": [*spec.columns, "_key", "_url"],
        "description": f"{spec.title}, keyed by ({', '.join(spec.key)}).",
    }


def _page_schema(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "total", "page", "per_page", "pages", "links"],
        "properties": {
            "items": {"type": "array", "items": item},
            "total": {"type": "integer", "minimum": 0},
            "page": {"type": "integer", "minimum": 1},
            "per_page": {"type": "integer", "minimum": 1},
            "pages": {"type": "integer", "minimum": 1},
            "links": {
                "type": "object",
                "required": ["self"],
                "properties": {
                    "self": {"type": "string"},
                    "next": {"type": "string"},
                    "prev": {"type": "string"},
                },
            },
        },
    }


def _problem_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "description": "RFC 9457 problem details. Validation errors list each refused "
        "value in `errors`, with the services' own messages.",
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["message"],
                    "properties": {
                        "row": {"type": ["integer", "null"]},
                        "field": {"type": ["string", "null"]},
                        "value": {"type": ["string", "null"]},
                        "message": {"type": "string"},
                    },
                },
            },
        },
    }


_ERROR_TEXT = {
    400: "Bad request or filter (each bad argument in `errors`)",
    401: "No token, or a token that is unknown, revoked or expired",
    403: "The token's role does not allow this",
    404: "Not found",
    409: "Refused: the current state does not allow it",
    413: "The upload is over the size limit",
    415: "The body is not JSON",
    422: "Not accepted: each refused value in `errors`",
    503: "The database is unreachable or not migrated",
}


def _responses(ok: dict[int, tuple[str, dict[str, Any] | None]], *errors: int) -> dict:
    out: dict[str, Any] = {}
    for code, (text, schema) in ok.items():
        out[str(code)] = {"description": text}
        if schema is not None:
            out[str(code)]["content"] = {JSON: {"schema": schema}}
    for code in sorted({401, 403, 503, *errors}):
        out[str(code)] = {
            "description": _ERROR_TEXT[code],
            "content": {PROBLEM: {"schema": _ref("Problem")}},
        }
    return out


def _query(name: str, schema: dict[str, Any], text: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": text}


def _paging(per_page: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [
        _query("page", {"type": "integer", "minimum": 1, "maximum": 10_000_000}, "Page, from 1"),
        _query(
            "per_page",
            per_page or {"type": "integer", "minimum": 1, "maximum": 200},
            "Rows per page",
        ),
    ]


def _record_list_params(spec: contract.ContractFile) -> list[dict[str, Any]]:
    params = [
        _query("regime", {"type": "string", "enum": list(vocab.REGIMES)}, "Regime"),
        _query("state", {"type": "string", "maxLength": 100}, "A State (code or name)"),
        _query("region", {"type": "string", "maxLength": 40}, "A region code"),
        _query("year", {"type": "integer", "minimum": 1900, "maximum": 2200}, "Year (UTC)"),
    ]
    kcol = kind_column(spec)
    if kcol:
        choices = list(spec.field(kcol).choices)
        params.append(_query("kind", {"type": "string", "enum": choices}, f"The {kcol}"))
    params += [
        _query("q", {"type": "string", "maxLength": 200}, "Free text"),
        _query("sort", {"type": "string", "enum": list(spec.columns)}, "Sort column"),
        _query("order", {"type": "string", "enum": ["asc", "desc"]}, "Sort order"),
        *_paging({"type": "integer", "enum": list(PAGE_SIZES)}),
    ]
    return params


def _key_param(spec: contract.ContractFile) -> dict[str, Any]:
    return {
        "name": "key",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": 600},
        "description": f"The natural key ({', '.join(spec.key)}) joined by ',', as in a "
        "record's `_key` (characters other than letters, digits and -_.:@ as ~XX).",
    }


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": schema}}}


def _record_paths(spec: contract.ContractFile) -> dict[str, Any]:
    name = spec.name
    record, write = _ref(f"{name}.record"), _ref(f"{name}.input")
    patch = _ref(f"{name}.patch")
    tag = [name]
    return {
        f"/{name}": {
            "get": {
                "operationId": f"list_{name}",
                "tags": tag,
                "summary": f"List {spec.title.lower()}, with the list page's filters",
                "parameters": _record_list_params(spec),
                "responses": _responses({200: ("A page", _ref(f"{name}.page"))}, 400),
            },
            "post": {
                "operationId": f"create_{name}",
                "tags": tag,
                "summary": "Add a record (refused if its key exists: use PUT to correct it)",
                "requestBody": _body(write),
                "responses": _responses({201: ("Created", record)}, 400, 415, 422),
            },
        },
        f"/{name}/{{key}}": {
            "parameters": [_key_param(spec)],
            "get": {
                "operationId": f"get_{name}",
                "tags": tag,
                "summary": "One record",
                "responses": _responses({200: ("The record", record)}, 404),
            },
            "put": {
                "operationId": f"replace_{name}",
                "tags": tag,
                "summary": "Replace a record (columns left out become empty)",
                "requestBody": _body(write),
                "responses": _responses({200: ("Stored", record)}, 400, 404, 415, 422),
            },
            "patch": {
                "operationId": f"patch_{name}",
                "tags": tag,
                "summary": "Change the columns named in the body",
                "requestBody": _body(patch),
                "responses": _responses({200: ("Stored", record)}, 400, 404, 415, 422),
            },
            "delete": {
                "operationId": f"delete_{name}",
                "tags": tag,
                "summary": "Delete a record (its history stays); refused while others refer to it",
                "responses": _responses({204: ("Deleted", None)}, 404, 409),
            },
        },
    }


def _links(operations: dict[str, str], parameter: str, expression: str) -> dict[str, Any]:
    """OpenAPI links from a created object to the operations on it (stateful testing and
    clients follow them)."""
    return {
        name: {"operationId": op, "parameters": {parameter: expression}}
        for name, op in operations.items()
    }


def _add_links(paths: dict[str, Any]) -> None:
    """Link every 201 (a created record or source) to what can be done with it next."""
    for name in contract.FILES:
        created = paths[f"/{name}"]["post"]["responses"]["201"]
        created["links"] = _links(
            {
                "get": f"get_{name}",
                "replace": f"replace_{name}",
                "patch": f"patch_{name}",
                "delete": f"delete_{name}",
            },
            "key",
            "$response.body#/_key",
        )
    paths["/sources"]["post"]["responses"]["201"]["links"] = _links(
        {"get": "get_source", "patch": "update_source", "delete": "delete_source"},
        "source_id",
        "$response.body#/id",
    )
    paths["/runs"]["post"]["responses"]["201"]["links"] = _links(
        {"get": "get_run", "revert": "revert_run"}, "run_id", "$response.body#/run_id"
    )


def _columns_schema(columns: tuple[str, ...], types: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(columns),
        "properties": {c: types.get(c, {"type": ["string", "null"]}) for c in columns},
    }


_INT = {"type": ["integer", "null"]}
_NUM = {"type": ["number", "null"]}
_BOOL = {"type": ["boolean", "null"]}


def _other_schemas() -> dict[str, Any]:
    finding = _columns_schema(
        (*FINDING_FIELDS, "citation", "actions", "_url"),
        {
            "id": {"type": "integer"},
            "evidence": {},
            "actions": {"type": "array", "items": {"type": "string"}},
            "_url": {"type": "string"},
        },
    )
    run = _columns_schema(
        RUN_COLUMNS,
        {
            "run_id": {"type": "integer"},
            **{c: _INT for c in RUN_COLUMNS if c.startswith("rows_")},
            "all_or_nothing": _BOOL,
        },
    )
    trust = _columns_schema(
        TRUST_COLUMNS,
        {
            "run_id": {"type": "integer"},
            "year": {"type": "integer"},
            "score": _NUM,
            "items": _INT,
            "change": _NUM,
            "worst": _NUM,
        },
    )
    rule = _columns_schema(
        (*RULE_FIELDS, "_url"),
        {
            "params": {"type": "array", "items": {"type": "string"}},
            "absence": {"type": "boolean"},
            "signal": {"type": "boolean"},
            "_url": {"type": "string"},
        },
    )
    source = _columns_schema(
        ("id", *SOURCE_FIELDS, "_url"),
        {
            "id": {"type": "integer"},
            "enabled": {"type": "boolean"},
            "all_or_nothing": {"type": "boolean"},
            "_url": {"type": "string"},
        },
    )
    source_input = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "maxLength": 100},
            "location": {"type": "string"},
            "importer": {"type": "string", "enum": ["auto", "csv", "xlsx", "json"]},
            "kind": {"type": ["string", "null"], "enum": [*contract.FILES, None]},
            "schedule": {"type": "string", "maxLength": 100},
            "enabled": {"type": "boolean"},
            "all_or_nothing": {"type": "boolean"},
        },
    }
    source_create = {**source_input, "required": ["name", "location"]}
    source_patch = {
        **source_input,
        "properties": {k: v for k, v in source_input["properties"].items() if k != "name"},
    }
    return {
        "Problem": _problem_schema(),
        "finding": finding,
        "finding.page": _page_schema(_ref("finding")),
        "finding.action": {
            "type": "object",
            "required": ["action"],
            "additionalProperties": False,
            "properties": {
                "action": {"type": "string", "enum": ["acknowledge", "dispute", "reopen"]},
                "comment": {"type": "string", "maxLength": 4000},
            },
        },
        "run": run,
        "run.page": _page_schema(_ref("run")),
        "trust_score": trust,
        "trust_score.page": _page_schema(_ref("trust_score")),
        "rule": rule,
        "rule.list": {
            "type": "object",
            "required": ["items", "total"],
            "properties": {
                "items": {"type": "array", "items": _ref("rule")},
                "total": {"type": "integer"},
            },
        },
        "source": source,
        "source.page": _page_schema(_ref("source")),
        "source.create": source_create,
        "source.patch": source_patch,
    }


def _id_param(name: str) -> dict[str, Any]:
    schema = {"type": "integer", "minimum": 0, "maximum": 2_147_483_647}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _other_paths() -> dict[str, Any]:
    s = _query
    text = {"type": "string", "maxLength": 100}
    date = {"type": "string", "format": "date"}
    return {
        "/findings": {
            "get": {
                "operationId": "list_findings",
                "tags": ["findings"],
                "summary": "Findings, with the Findings page's filters",
                "parameters": [
                    s("rule_id", text, "A rule id"),
                    s("regime", text, "VD, OST, CFE, GEMI"),
                    s("severity", text, "Severity"),
                    s("status", text, "open, acknowledged, disputed, resolved"),
                    s("state", text, "The State concerned (code or name)"),
                    s("counterpart", text, "The other State"),
                    s("period", {"type": "string", "maxLength": 20}, "Period"),
                    s("due_from", date, "Due on or after"),
                    s("due_to", date, "Due on or before"),
                    s("q", {"type": "string", "maxLength": 200}, "Free text"),
                    *_paging(),
                ],
                "responses": _responses({200: ("A page", _ref("finding.page"))}, 400),
            }
        },
        "/findings/{finding_id}": {
            "parameters": [_id_param("finding_id")],
            "get": {
                "operationId": "get_finding",
                "tags": ["findings"],
                "summary": "One finding with its evidence",
                "responses": _responses({200: ("The finding", _ref("finding"))}, 404),
            },
            "patch": {
                "operationId": "update_finding",
                "tags": ["findings"],
                "summary": "An analyst's action: acknowledge, dispute (comment required) or reopen",
                "requestBody": _body(_ref("finding.action")),
                "responses": _responses(
                    {200: ("The finding", _ref("finding"))}, 400, 404, 409, 415, 422
                ),
            },
        },
        "/trust_scores": {
            "get": {
                "operationId": "list_trust_scores",
                "tags": ["trust"],
                "summary": "Trust scores of the latest trust run (or `run`)",
                "parameters": [
                    s("level", {"type": "string", "enum": ["state", "region", "osce"]}, "Level"),
                    s("subject", {"type": "string", "maxLength": 40}, "State or region code"),
                    s("state", text, "A State (code or name)"),
                    s("year", {"type": "integer", "minimum": 1900, "maximum": 2200}, "Year"),
                    s("signal", {"type": "string", "maxLength": 30}, "Signal, or index"),
                    s("run", {"type": "integer", "minimum": 1}, "Trust run"),
                    *_paging(),
                ],
                "responses": _responses({200: ("A page", _ref("trust_score.page"))}, 400),
            }
        },
        "/rules": {
            "get": {
                "operationId": "list_rules",
                "tags": ["rules"],
                "summary": "The rule catalogue, each rule with its citation",
                "parameters": [s("regime", {"type": "string", "maxLength": 10}, "Regime")],
                "responses": _responses({200: ("The rules", _ref("rule.list"))}, 400),
            }
        },
        "/rules/{rule_id}": {
            "parameters": [{"name": "rule_id", "in": "path", "required": True, "schema": text}],
            "get": {
                "operationId": "get_rule",
                "tags": ["rules"],
                "summary": "One rule",
                "responses": _responses({200: ("The rule", _ref("rule"))}, 404),
            },
        },
        "/runs": {
            "get": {
                "operationId": "list_runs",
                "tags": ["runs"],
                "summary": "Import runs, newest first, with the Imports page's filters",
                "parameters": [
                    s("status", text, "Run status"),
                    s("source", {"type": "string", "maxLength": 200}, "Source name"),
                    s("kind", {"type": "string", "enum": list(contract.FILES)}, "Record kind"),
                    *_paging(),
                ],
                "responses": _responses({200: ("A page", _ref("run.page"))}, 400),
            },
            "post": {
                "operationId": "create_run",
                "tags": ["runs"],
                "summary": "Import a CSV, XLSX or JSON file now",
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["file"],
                                "properties": {
                                    "file": {"type": "string", "format": "binary"},
                                    "kind": {"type": "string", "enum": list(contract.FILES)},
                                    "all_or_nothing": {"type": "boolean"},
                                },
                            }
                        }
                    },
                },
                "responses": _responses({201: ("The run", _ref("run"))}, 400, 413, 422),
            },
        },
        "/runs/{run_id}": {
            "parameters": [_id_param("run_id")],
            "get": {
                "operationId": "get_run",
                "tags": ["runs"],
                "summary": "One import run",
                "responses": _responses({200: ("The run", _ref("run"))}, 404),
            },
        },
        "/runs/{run_id}/revert": {
            "parameters": [_id_param("run_id")],
            "post": {
                "operationId": "revert_run",
                "tags": ["runs"],
                "summary": "Undo an import run (admin)",
                "responses": _responses({200: ("The run", _ref("run"))}, 404, 409),
            },
        },
        "/sources": {
            "get": {
                "operationId": "list_sources",
                "tags": ["sources"],
                "summary": "Import sources (admin)",
                "parameters": _paging(),
                "responses": _responses({200: ("A page", _ref("source.page"))}, 400),
            },
            "post": {
                "operationId": "create_source",
                "tags": ["sources"],
                "summary": "Add a source (admin)",
                "requestBody": _body(_ref("source.create")),
                "responses": _responses({201: ("Created", _ref("source"))}, 400, 415, 422),
            },
        },
        "/sources/{source_id}": {
            "parameters": [_id_param("source_id")],
            "get": {
                "operationId": "get_source",
                "tags": ["sources"],
                "summary": "One source (admin)",
                "responses": _responses({200: ("The source", _ref("source"))}, 404),
            },
            "patch": {
                "operationId": "update_source",
                "tags": ["sources"],
                "summary": "Change a source (admin)",
                "requestBody": _body(_ref("source.patch")),
                "responses": _responses({200: ("The source", _ref("source"))}, 400, 404, 415, 422),
            },
            "delete": {
                "operationId": "delete_source",
                "tags": ["sources"],
                "summary": "Remove a source that never imported (admin)",
                "responses": _responses({204: ("Removed", None)}, 404, 409),
            },
        },
    }


@cache
def openapi_document() -> dict[str, Any]:
    """The whole description (built once per process: it depends on code, not data)."""
    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for spec in contract.FILES.values():
        schemas[f"{spec.name}.record"] = record_schema(spec, writing=False)
        schemas[f"{spec.name}.input"] = record_schema(spec, writing=True)
        patch = record_schema(spec, writing=True)
        schemas[f"{spec.name}.patch"] = {**patch, "required": []}
        schemas[f"{spec.name}.page"] = _page_schema(_ref(f"{spec.name}.record"))
        paths.update(_record_paths(spec))
    schemas.update(_other_schemas())
    paths.update(_other_paths())
    _add_links(paths)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cbm API",
            "version": __version__,
            "description": "Records, findings, trust scores, rules, import runs and sources "
            "of cbm, the CSBM compliance tracker. Authenticate with a personal API token "
            "(`Authorization: Bearer cbm_…`) from your Account page or `cbm token create`. "
            "Writes go through the same validation as the forms and importers.",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"token": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        },
    }
