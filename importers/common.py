"""Helpers the format modules share: which kind of record a file holds, header names, cell text.

Nothing here validates values: the readers hand rows over as text, faithfully, and the
validation service judges them (with row numbers). What is decided here is file-level:
which contract file the rows belong to and what the columns are called.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from cbm import contract
from importers.base import Batch, ImportFormatError, Payload

log = logging.getLogger("cbm.importers")

KINDS = tuple(contract.FILES)


def unnamed(position: int) -> str:
    """The name given to a header cell that is empty (1-based position)."""
    return f"(no name, column {position})"


_UNNAMED_RE = re.compile(r"^\(no name, column \d+\)$")


def check_kind(kind: str) -> str:
    """An explicitly given kind, checked; ImportFormatError for an unknown one."""
    if kind not in contract.FILES:
        raise ImportFormatError(
            f"unknown record kind {kind!r}; expected one of: {', '.join(KINDS)}"
        )
    return kind


def base_name(name: str) -> str:
    """The last component of a payload name (a path or a URL), without its extension."""
    if "://" in name:
        name = urlsplit(name).path
    last = PurePosixPath(name.replace("\\", "/")).name
    return last.rsplit(".", 1)[0] if "." in last else last


def kinds_in_name(name: str) -> list[str]:
    """Contract file names that appear as words in ``name``.

    ``activities``, ``2024-activities``, ``notifications_export``, ``Observation Flights``
    all name their kind; ``shareholdings`` does not name ``holdings`` (a letter must not
    touch the kind's name on either side; digits, ``-``, ``_``, spaces and dots may).
    """
    text = re.sub(r"[\s\-]+", "_", name.strip().lower())
    found = []
    for kind in KINDS:
        if re.search(rf"(?<![a-z]){re.escape(kind)}(?![a-z])", text):
            found.append(kind)
    # "observation_flights" must not also count as something shorter it contains.
    return [k for k in found if not any(k != o and k in o for o in found)]


def kind_from_name(name: str) -> str | None:
    """The kind a file or sheet name gives, or None when it names none or several."""
    found = kinds_in_name(base_name(name))
    return found[0] if len(found) == 1 else None


def kind_from_columns(columns: Iterable[str], what: str) -> str:
    """The kind whose columns best match a header; ImportFormatError when unclear.

    The best match has the most header columns among its own (so the fewest unknown ones),
    then the fewest required columns missing; it must contain at least one of its key
    columns. A tie is ambiguous: the error asks for the kind to be given.
    """
    header = {c for c in columns if c and not _UNNAMED_RE.match(c)}
    scored = []
    for spec in contract.FILES.values():
        cols = set(spec.columns)
        matched = len(header & cols)
        if not matched or not header & set(spec.key):
            continue
        missing = sum(1 for f in spec.fields if f.required and f.name not in header)
        scored.append((matched, -missing, spec.name))
    hint = (
        f"name the file after its kind (e.g. activities.csv) or give the kind (--kind "
        f"{'|'.join(KINDS)})"
    )
    if not scored:
        raise ImportFormatError(
            f"{what}: cannot tell which kind of records it holds from its name or its "
            f"columns ({', '.join(sorted(header)) or 'none'}); {hint}"
        )
    scored.sort(reverse=True)
    best = scored[0]
    ties = [s[2] for s in scored if s[:2] == best[:2]]
    if len(ties) > 1:
        raise ImportFormatError(
            f"{what}: its columns fit several kinds of records equally well "
            f"({', '.join(sorted(ties))}); {hint}"
        )
    return best[2]


def resolve_kind(
    kind: str | None, name: str, columns: Sequence[str], what: str, *, use_name: bool = True
) -> str:
    """Explicit kind, else the one the name gives, else the one the columns give."""
    if kind is not None:
        return check_kind(kind)
    if use_name:
        from_name = kind_from_name(name)
        if from_name is not None:
            return from_name
    return kind_from_columns(columns, what)


def normalise_header(cells: Sequence[Any], what: str) -> list[str]:
    """Header names stripped and lower-cased (a BOM removed); empty ones named by position.

    A name that appears twice is an ImportFormatError: the rows could not say which of the
    two columns a value belongs to.
    """
    names = []
    for i, cell in enumerate(cells, start=1):
        text = cell if isinstance(cell, str) else cell_text(cell)
        text = text.strip().lstrip("\ufeff").strip().lower()
        names.append(text or unnamed(i))
    seen: dict[str, int] = {}
    for i, n in enumerate(names, start=1):
        if n in seen:
            raise ImportFormatError(
                f"{what}: column {n!r} appears twice in the header (columns {seen[n]} and {i})"
            )
        seen[n] = i
    return names


def drop_empty_unnamed(frame: pd.DataFrame) -> pd.DataFrame:
    """Remove columns without a header name whose cells are all empty (trailing commas).

    An unnamed column that holds a value is kept, so the service reports it as unknown.
    """
    drop = [
        c
        for c in frame.columns
        if _UNNAMED_RE.match(str(c)) and (frame[c].to_numpy(dtype=object) == "").all()
    ]
    return frame.drop(columns=drop) if drop else frame


def blank_rows(frame: pd.DataFrame) -> np.ndarray:
    """Rows whose cells are all empty (a blank line, ``,,,``, an empty spreadsheet row)."""
    if frame.shape[1] == 0:
        return np.ones(len(frame), dtype=bool)
    values = frame.to_numpy(dtype=object)
    empty = (values == "") | pd.isna(values)
    return empty.all(axis=1)


def runs(frame: pd.DataFrame, first_row_number: int, kind: str, part: str = "") -> Iterator[Batch]:
    """The frame's non-blank rows as batches of consecutively numbered rows.

    A blank row is skipped but keeps its number, so the rows after it are numbered as a
    person sees them; a batch never spans a blank row.
    """
    if len(frame) == 0:
        return
    frame = drop_empty_unnamed(frame)
    blank = blank_rows(frame)
    if not blank.any():
        yield Batch(kind, frame.reset_index(drop=True), first_row_number, part)
        return
    keep = np.flatnonzero(~blank)
    if len(keep) == 0:
        return
    # Split where consecutive kept positions are not adjacent.
    breaks = np.flatnonzero(np.diff(keep) > 1) + 1
    for group in np.split(keep, breaks):
        start, stop = int(group[0]), int(group[-1]) + 1
        yield Batch(
            kind,
            frame.iloc[start:stop].reset_index(drop=True),
            first_row_number + start,
            part,
        )


_MIDNIGHT = dt.time(0, 0)


def cell_text(value: Any, field_type: str = contract.STR) -> str:
    """A spreadsheet or JSON value in contract notation (the validator parses the text).

    Whole numbers lose their ``.0``; booleans are ``true``/``false``; dates are
    ``YYYY-MM-DD``; a date and time *without* a zone keeps no zone (the validator refuses it
    as "has no time zone": spreadsheets have no zones, so timestamps must be text with ``Z``
    or an offset), except a midnight date-time in a date column, which is that date.
    """
    if value is None:
        return ""
    if type(value) is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            if field_type == contract.DATE and value.time() == _MIDNIGHT:
                return value.date().isoformat()
            return value.isoformat()
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.isoformat()
    return str(value)


def field_types(kind: str, columns: Sequence[str]) -> list[str]:
    """The contract type of each column (STR for a column the contract does not know)."""
    spec = contract.FILES[kind]
    types = {f.name: f.type for f in spec.fields}
    return [types.get(c, contract.STR) for c in columns]


def warn(payload: Payload, message: str) -> None:
    """A file-level remark that does not stop the import: logged and kept on the payload."""
    log.warning("%s", message)
    payload.warnings.append(message)
