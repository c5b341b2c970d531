"""JSON: a list of records, a tagged object, or a page of another ``cbm``'s JSON API.

Three shapes are accepted (UTF-8, a BOM allowed; at most ``max_bytes``, 50 MiB):

1. A list of records, each an object whose keys are contract columns::

       [{"activity_id": "ZAPAD-2021", "source": "notification", "state": "RUS", ...}, ...]

   The kind is the one given, else the one the file name names (``activities.json``),
   else the one whose columns best match the keys.

2. An object naming its kind::

       {"kind": "activities", "records": [ ...records... ]}

3. A page of a ``cbm`` JSON API (this is the shape the API is to serve)::

       {"kind": "activities", "items": [ ...records... ], "next": "…?page=2" | null}

   ``next`` (absolute, or relative to the page's URL) is followed by
   :func:`importers.locations.open_location`, on the same scheme, host and port only; each
   page is a payload of its own. Other keys (``count``, ``page``, …) are ignored.

A given kind that contradicts the payload's ``kind`` is an error. Values must be text,
numbers, ``true``/``false`` or ``null`` (= empty); they become contract text as in XLSX
(whole numbers without ``.0``, booleans ``true``/``false``). A nested object or list as a
value, a record that is not an object, a key given twice in one record (also when the
two differ only in case or spaces), ``NaN``/``Infinity``, and any other top level are
refused with the record's number. Records are numbered from 1 in the order of the list.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pandas as pd

from importers.base import Batch, Importer, ImportFormatError, Payload
from importers.common import cell_text, check_kind, field_types, resolve_kind

_SCALARS = (str, int, float, bool, type(None))


class _DuplicateKey(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for key, value in pairs:
        norm = key.strip().lower()
        if norm in seen:
            raise _DuplicateKey(f"the key {key!r} appears twice in one object ({seen[norm]!r})")
        seen[norm] = key
        out[key] = value
    return out


class _BadConstant(ValueError):
    pass


def _constant(name: str) -> Any:
    raise _BadConstant(f"{name} is not a value JSON allows")


def parse_json(payload: Payload, max_bytes: int) -> Any:
    """The payload's JSON document, within the size limit; ImportFormatError otherwise."""
    size = payload.size
    if size > max_bytes:
        raise ImportFormatError(
            f"{payload.name} is {size:,} bytes; JSON payloads of at most {max_bytes:,} bytes "
            "are accepted (split it, or use CSV)"
        )
    with payload.open() as handle:
        raw = handle.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ImportFormatError(f"{payload.name}: more than {max_bytes:,} bytes; refused")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ImportFormatError(
            f"{payload.name} is not UTF-8: byte {exc.start} (line {line}) is "
            f"0x{raw[exc.start : exc.start + 1].hex().upper()}"
        ) from None
    if not text.strip():
        raise ImportFormatError(f"{payload.name} is empty")
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise ImportFormatError(
            f"{payload.name} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except (_DuplicateKey, _BadConstant) as exc:
        raise ImportFormatError(f"{payload.name}: {exc}") from None
    except RecursionError:
        raise ImportFormatError(f"{payload.name}: the JSON is nested too deeply") from None


def records_of(payload: Payload, doc: Any) -> tuple[list[Any], str | None, Any]:
    """(records, kind the payload names, next link) of an accepted shape."""
    if isinstance(doc, list):
        return doc, None, None
    if not isinstance(doc, dict):
        raise ImportFormatError(
            f"{payload.name}: the top level is {type(doc).__name__}; expected a list of "
            'records, {"kind": …, "records": […]}, or an API page {"kind": …, "items": […]}'
        )
    if "records" in doc and "items" in doc:
        raise ImportFormatError(f"{payload.name}: has both 'records' and 'items'; use one")
    key = "records" if "records" in doc else "items" if "items" in doc else None
    if key is None:
        raise ImportFormatError(
            f"{payload.name}: a JSON object must hold its records under 'records' (or "
            f"'items', an API page); it has {', '.join(map(repr, list(doc)[:10])) or 'no keys'}"
        )
    records = doc[key]
    if not isinstance(records, list):
        raise ImportFormatError(f"{payload.name}: '{key}' must be a list of records")
    kind = doc.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise ImportFormatError(f"{payload.name}: 'kind' must be text")
    next_link = doc.get("next") if key == "items" else None
    if next_link is not None and not isinstance(next_link, str):
        raise ImportFormatError(f"{payload.name}: 'next' must be a URL or null")
    return records, kind, next_link


class JSONImporter(Importer):
    """Reads JSON records (see the module documentation for the shapes)."""

    name = "json"
    version = "1"

    def __init__(self, *, max_bytes: int = 50 * 2**20) -> None:
        self.max_bytes = max_bytes

    def batches(
        self, payload: Payload, *, kind: str | None = None, chunk_size: int = 50_000
    ) -> Iterator[Batch]:
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        if kind is not None:
            check_kind(kind)
        doc = parse_json(payload, self.max_bytes)
        records, named, _next = records_of(payload, doc)
        del doc
        for i, record in enumerate(records, start=1):
            if not isinstance(record, dict):
                raise ImportFormatError(
                    f"{payload.name}: record {i} is {type(record).__name__}, not an object"
                )
            for key, value in record.items():
                if not isinstance(value, _SCALARS):
                    raise ImportFormatError(
                        f"{payload.name}: record {i}, key {key!r}: a nested "
                        f"{'list' if isinstance(value, list) else 'object'} is not allowed; "
                        "values are text, numbers, true/false or null"
                    )
        if named is not None:
            try:
                named = check_kind(named)
            except ImportFormatError as exc:
                raise ImportFormatError(f"{payload.name}: its 'kind': {exc}") from None
            if kind is not None and kind != named:
                raise ImportFormatError(
                    f"{payload.name} holds {named} (its 'kind'), not {kind} as asked"
                )
        if not records:
            return
        columns: dict[str, None] = {}
        for record in records[:1000]:
            columns.update(dict.fromkeys(k.strip().lower() for k in record))
        if named is not None:
            kind = named
        else:
            kind = resolve_kind(kind, payload.name, list(columns), payload.name)
        for start in range(0, len(records), chunk_size):
            chunk = [
                {k.strip().lower(): v for k, v in record.items()}
                for record in records[start : start + chunk_size]
            ]
            keys: dict[str, None] = {}
            for record in chunk:
                keys.update(dict.fromkeys(record))
            names = list(keys)
            types = field_types(kind, names)
            data = {
                name: [cell_text(r.get(name), t) for r in chunk]
                for name, t in zip(names, types, strict=True)
            }
            frame = pd.DataFrame(data, index=pd.RangeIndex(len(chunk)), dtype=object)
            yield Batch(kind, frame, start + 1)
