"""Validation of contract rows, column by column over whole chunks (pandas), not row by row.

Every entry point (forms, importers, the API, the demo loader) goes through
:func:`validate_rows`, so a value is judged and worded the same everywhere. Errors name the
row, the column, the value and the reason.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from cbm import contract, vocab
from cbm.contract import ContractFile

MAX_INT = 2_147_483_647
# [0-9], not \d: the contract means ASCII digits, and \d also matches Arabic-Indic or
# full-width digits.
_INT_RE = r"^[0-9]+$"
_DATE_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# ISO 8601 date and time with an explicit zone: Z or ±HH:MM (±HHMM and ±HH accepted).
_D = "[0-9]"
_TS_RE = (
    rf"^{_D}{{4}}-{_D}{{2}}-{_D}{{2}}[Tt ]{_D}{{2}}:{_D}{{2}}(:{_D}{{2}}(\.{_D}{{1,9}})?)?"
    rf"(Z|z|[+-]{_D}{{2}}(:?{_D}{{2}})?)$"
)
_TS_NOZONE_RE = (
    rf"^{_D}{{4}}-{_D}{{2}}-{_D}{{2}}([Tt ]{_D}{{2}}:{_D}{{2}}(:{_D}{{2}}(\.{_D}{{1,9}})?)?)?$"
)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Every byte but the control characters above: deleting these from a column's UTF-8 text
# leaves nothing when no value holds one (multi-byte UTF-8 sequences never contain bytes
# below 0x80), so a clean column is judged in one pass in C.
_NOT_CONTROL = bytes(b for b in range(256) if b >= 0x80 or not _CONTROL_RE.match(chr(b)))


@dataclass(frozen=True)
class RowError:
    """Why one value (or one row, when ``column`` is None) was refused."""

    row: int | None
    column: str | None
    value: str | None
    reason: str

    def __str__(self) -> str:
        where = f"row {self.row}" if self.row is not None else "file"
        if self.column:
            where += f", column {self.column}"
        return f"{where}: {self.reason}"


class StateResolver:
    """Maps ISO alpha-3 codes and the shipped aliases (case-insensitive) to codes."""

    def __init__(self, codes: Iterable[str], aliases: Mapping[str, str]) -> None:
        self.codes = frozenset(codes)
        self._map: dict[str, str] = {alias_key(k): v for k, v in aliases.items()}
        for code in self.codes:
            self._map[alias_key(code)] = code

    def resolve(self, value: str) -> str | None:
        return self._map.get(alias_key(value))

    def series(self, values: pd.Series) -> pd.Series:
        return values.map(lambda v: self._map.get(alias_key(v)) if isinstance(v, str) else None)


def alias_key(value: str) -> str:
    """The comparison form of a State name or alias: trimmed, case-folded, single-spaced."""
    return " ".join(value.split()).casefold()


@dataclass
class Validated:
    """Outcome of validation: the good rows as typed Python values, and the errors.

    ``columns`` holds the good rows column by column (object arrays, one per contract
    column, in the order of ``row_numbers``): the services write from them without making
    a dict per row. ``rows`` gives the same rows as dicts, made on first use.
    """

    columns: dict[str, np.ndarray]
    row_numbers: list[int]
    errors: list[RowError]
    read: int
    names: tuple[str, ...] = field(default=())

    @cached_property
    def rows(self) -> list[dict[str, Any]]:
        if not self.names:
            return []
        columns = [self.columns[name].tolist() for name in self.names]
        return [dict(zip(self.names, values, strict=True)) for values in zip(*columns, strict=True)]

    @property
    def rejected_rows(self) -> set[int]:
        return {e.row for e in self.errors if e.row is not None}


def to_frame(rows: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Any input (a DataFrame or dicts of strings or Python values) as a frame of strings."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    frame = frame.set_axis([str(c).strip().lstrip("\ufeff").lower() for c in frame.columns], axis=1)
    out = {}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty"):
            # The common case (CSV text): strip, in one pass, only a column that needs it.
            values = column.to_numpy(dtype=object)
            try:
                joined = "\x00".join(values)
            except TypeError:  # missing values among the strings
                values = values.copy()
                values[pd.isna(values)] = ""
                joined = "\x00".join(values)
            if _needs_strip(joined):
                stripped = np.empty(len(values), dtype=object)
                stripped[:] = [v.strip() for v in values]
                values = stripped
            out[name] = values
        else:
            out[name] = column.astype(object).map(_as_text).to_numpy(dtype=object)
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)), dtype=object)


# ASCII whitespace (what str.strip removes from ASCII text), each byte mapped to a space.
_ASCII_SPACES = bytes.maketrans(b"\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f", b" " * 9)


def _needs_strip(joined: str) -> bool:
    """Whether some value of a column, joined with NUL separators, starts or ends with
    whitespace. Answered with byte searches in C; when unsure (non-ASCII text, or a value
    that itself holds a NUL) it says yes, and the values are stripped one by one."""
    if not joined.isascii():
        return True
    data = joined.encode("ascii").translate(_ASCII_SPACES)
    return data.startswith(b" ") or data.endswith(b" ") or b"\x00 " in data or b" \x00" in data


def _as_text(value: Any) -> str:
    """Format a Python value in contract notation so one parser judges every entry point."""
    if value is None:
        return ""
    if isinstance(value, float) and np.isnan(value):
        return ""
    if value is pd.NaT or value is pd.NA:
        return ""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return value.isoformat()  # refused below: no zone
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def validate_rows(
    spec: ContractFile,
    rows: pd.DataFrame | Iterable[Mapping[str, Any]],
    states: StateResolver,
    *,
    first_row_number: int = 1,
) -> Validated:
    """Check rows against the contract; return typed good rows and every error found.

    Each column is parsed once per distinct value (``pd.factorize``), then the results are
    spread back over the rows with array indexing: a batch repeats its States, kinds,
    dates and small numbers many times. Free-text columns, mostly distinct, are checked
    in a few passes over the whole column instead.
    """
    frame = to_frame(rows)
    n = len(frame)
    if n == 0:
        return Validated(columns={}, row_numbers=[], errors=[], read=0)
    numbers = np.arange(first_row_number, first_row_number + n)
    errors: list[RowError] = []
    bad = np.zeros(n, dtype=bool)

    unknown = [c for c in frame.columns if c not in spec.columns]
    missing = [f.name for f in spec.fields if f.required and f.name not in frame.columns]
    if unknown or missing:
        if unknown:
            errors.append(
                RowError(
                    None,
                    ", ".join(unknown),
                    None,
                    f"unknown column(s) for {spec.name}: {', '.join(unknown)}; "
                    f"expected: {', '.join(spec.columns)}",
                )
            )
        if missing:
            errors.append(
                RowError(
                    None,
                    ", ".join(missing),
                    None,
                    f"missing required column(s) for {spec.name}: {', '.join(missing)}",
                )
            )
        return Validated(columns={}, row_numbers=[], errors=errors, read=n)

    raw: dict[str, np.ndarray] = {}
    for name in spec.columns:
        if name in frame.columns:
            raw[name] = frame[name].to_numpy(dtype=object)
        else:
            raw[name] = np.full(n, "", dtype=object)

    typed: dict[str, np.ndarray] = {}

    def reject(mask: np.ndarray | pd.Series, column: str | None, reason_of: Any) -> None:
        mask = np.asarray(mask, dtype=bool)
        values = raw.get(column) if column is not None else None
        for i in np.flatnonzero(mask):
            value = values[i] if values is not None else None
            reason = reason_of(value, i) if callable(reason_of) else reason_of
            errors.append(RowError(int(numbers[i]), column, value, reason))
        bad[mask] = True

    for f in spec.fields:
        values = raw[f.name]
        max_length = spec.max_lengths.get(f.name)
        if f.type in (contract.STR, contract.TEXT):
            empty, series, invalid, reason = _parse_text(values, max_length)
        else:
            # Parse each distinct value once; spread the results with the codes.
            codes, uniques = pd.factorize(values)
            distinct = pd.Series(uniques, dtype=object)
            distinct_empty = (uniques == "").astype(bool)
            parsed, invalid_u, reason = _parse(f, distinct, ~distinct_empty, states, max_length)
            empty = distinct_empty[codes]
            series = parsed.to_numpy(dtype=object)[codes]
            invalid = None if invalid_u is None else np.asarray(invalid_u, dtype=bool)[codes]
        if f.required:
            reject(empty, f.name, f"{f.name} is required")
        if invalid is not None:
            reject(invalid & ~empty, f.name, reason)
        typed[f.name] = series

    _cross_checks(spec, raw, typed, reject)

    keys = list(spec.key)
    # A key part that failed to parse is compared by its raw text, so two different bad
    # values never look equal to each other or to an empty part.
    parts: dict[str, np.ndarray] = {}
    for k in keys:
        part = typed[k].copy()
        unparsed = np.flatnonzero(_is_none(part))
        if len(unparsed):
            texts = raw[k]
            part[unparsed] = [f"?{texts[i]}" if texts[i] else "" for i in unparsed]
        parts[k] = part
    key_frame = pd.DataFrame(parts, dtype=object)
    # Every row with the same key counts, refused or not (the file is ambiguous about that
    # key), but only rows not already refused get the duplicate error.
    in_group = key_frame.duplicated(keep=False).to_numpy()
    dup = in_group & ~bad
    if dup.any():
        groups: dict[tuple, list[int]] = {}
        for i in np.flatnonzero(in_group):
            groups.setdefault(tuple(key_frame.iloc[i]), []).append(int(numbers[i]))

        def dup_reason(_value: Any, i: int) -> str:
            key = tuple(key_frame.iloc[i])
            others = [r for r in groups[key] if r != numbers[i]]
            shown = ", ".join(f"{k}={v!s}" for k, v in zip(keys, key, strict=True))
            return f"duplicate key ({shown}) also in row(s) {', '.join(map(str, others))}"

        reject(dup, keys[0], dup_reason)

    good = ~bad
    idx = np.flatnonzero(good)
    columns = {name: typed[name][idx] for name in spec.columns}
    for k in keys:
        column = columns[k]
        column[_is_none(column)] = ""  # optional key parts are stored as '' so uniqueness holds
    errors.sort(key=lambda e: e.row or 0)
    return Validated(
        columns=columns,
        row_numbers=numbers[good].tolist(),
        errors=errors,
        read=n,
        names=tuple(spec.columns),
    )


def _is_none(values: np.ndarray) -> np.ndarray:
    """Where an object array holds None (elementwise ``is None``, in C)."""
    return np.asarray(np.equal(values, None), dtype=bool)


def _parse_text(
    values: np.ndarray, max_length: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Callable[[str, int], str]]:
    """A free-text column (mostly distinct values): empty mask, values (None where empty),
    invalid mask and reason, each check one pass over the column."""
    n = len(values)
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
    empty = lengths == 0
    too_long = lengths > max_length if max_length else np.zeros(n, dtype=bool)
    text = "".join(values).encode("utf-8", "surrogatepass")
    if text.translate(None, _NOT_CONTROL):
        search = _CONTROL_RE.search
        control = np.fromiter((search(v) is not None for v in values), dtype=bool, count=n)
    else:
        control = np.zeros(n, dtype=bool)
    series = values.copy()
    series[empty] = None

    def reason(v: str, _i: int) -> str:
        if max_length and len(v) > max_length:
            return f"is {len(v)} characters long; at most {max_length} are allowed"
        return "contains control characters"

    return empty, series, too_long | control, reason


def _pairs(a: np.ndarray, b: np.ndarray, judge: Callable[[Any, Any], bool]) -> np.ndarray:
    """``judge(a[i], b[i])`` for every row, called once per distinct pair of values.

    ``judge(x, None)`` and ``judge(None, y)`` must be false (a missing value never breaks
    a rule between two columns): rows missing either value are not looked at.
    """
    both = np.flatnonzero(~_is_none(a) & ~_is_none(b))
    out = np.zeros(len(a), dtype=bool)
    if not len(both):
        return out
    if len(both) < len(a):
        out[both] = _pairs(a[both], b[both], judge)
        return out
    codes_a, uniques_a = pd.factorize(a)
    codes_b, uniques_b = pd.factorize(b)
    # NA (None) gets code -1 from factorize; give it its own code, after the others.
    codes_a = np.where(codes_a < 0, len(uniques_a), codes_a)
    codes_b = np.where(codes_b < 0, len(uniques_b), codes_b)
    values_a = [*uniques_a.tolist(), None]
    values_b = [*uniques_b.tolist(), None]
    width = len(values_b)
    pair_codes, pairs = pd.factorize(codes_a.astype(np.int64) * width + codes_b)
    verdicts = np.fromiter(
        (bool(judge(values_a[p // width], values_b[p % width])) for p in pairs.tolist()),
        dtype=bool,
        count=len(pairs),
    )
    return verdicts[pair_codes]


def _obj(values: Iterable[Any], index: pd.Index) -> pd.Series:
    """An object Series that keeps None and Python ints as they are (no float inference)."""
    arr = np.empty(len(index), dtype=object)
    arr[:] = list(values)
    return pd.Series(arr, index=index, dtype=object)


def _keep(raw: pd.Series, mask: np.ndarray, convert: Any = None) -> pd.Series:
    """Values of ``raw`` where ``mask`` holds (converted), None elsewhere."""
    arr = raw.to_numpy(dtype=object).copy()
    mask = np.asarray(mask, dtype=bool)
    arr[~mask] = None
    if convert is not None and mask.any():
        sub = np.empty(int(mask.sum()), dtype=object)
        sub[:] = [convert(v) for v in arr[mask]]
        arr[mask] = sub
    return pd.Series(arr, index=raw.index, dtype=object)


def _key_part(value: Any) -> Any:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else value


def _parse(
    f: contract.Field,
    raw: pd.Series,
    present: np.ndarray,
    states: StateResolver,
    max_length: int | None,
) -> tuple[pd.Series, np.ndarray | None, Any]:
    """Parse one column; return typed values (None where empty), the invalid mask, the reason."""
    none = pd.Series([None] * len(raw), index=raw.index, dtype=object)
    t = f.type
    if t in (contract.STR, contract.TEXT):
        too_long = raw.str.len().to_numpy() > max_length if max_length else np.zeros(len(raw), bool)
        control = raw.map(lambda v: bool(_CONTROL_RE.search(v))).to_numpy()
        series = _keep(raw, present)
        invalid = too_long | control
        return (
            series,
            invalid,
            lambda v, _i: (
                f"is {len(v)} characters long; at most {max_length} are allowed"
                if max_length and len(v) > max_length
                else "contains control characters"
            ),
        )
    if t == contract.INT:
        ok = raw.str.fullmatch(_INT_RE).to_numpy(dtype=bool)
        big = raw.str.len().to_numpy() > 10
        big[ok & ~big] = [int(v) > MAX_INT for v in raw[ok & ~big]]
        series = _keep(raw, ok & present & ~big, int)

        def int_reason(v: str, _i: int) -> str:
            if re.fullmatch(r"-\d+", v):
                return f"{v} is negative; counts cannot be negative"
            if re.fullmatch(_INT_RE, v):
                return f"{v} is too large (at most {MAX_INT:,})"
            return f"'{v}' is not a whole number (plain digits, no separators)"

        return series, ~(ok & ~big), int_reason
    if t == contract.YEAR:
        ok = raw.str.fullmatch(r"^[0-9]{4}$").to_numpy(dtype=bool)
        values = _keep(raw, ok & present, int)
        in_range = np.array([v is not None and 1970 <= v <= 2200 for v in values], dtype=bool)
        return (
            _keep(values, in_range),
            ~in_range,
            lambda v, _i: f"'{v}' is not a year between 1970 and 2200",
        )
    if t == contract.BOOL:
        low = raw.str.lower()
        ok = low.isin(["true", "false"]).to_numpy()
        series = _keep(low, ok, lambda v: v == "true")
        return series, ~ok, lambda v, _i: f"'{v}' is not true or false"
    if t == contract.DATE:
        shape = raw.str.fullmatch(_DATE_RE).to_numpy(dtype=bool)
        parsed = pd.to_datetime(raw.where(shape, None), format="%Y-%m-%d", errors="coerce")
        ok = shape & parsed.notna().to_numpy()
        series = none.copy()
        if ok.any():
            series[ok] = [d.date() for d in parsed[ok]]

        def date_reason(v: str, _i: int) -> str:
            if re.fullmatch(_DATE_RE, v):
                return f"'{v}' is not a real calendar date"
            return f"'{v}' is not a date in the form YYYY-MM-DD"

        return series, ~ok, date_reason
    if t == contract.TIMESTAMP:
        shape = raw.str.fullmatch(_TS_RE).to_numpy(dtype=bool)
        canonical = raw.where(shape, None).str.upper()  # 't'/'z' are ISO 8601 too
        parsed = pd.to_datetime(canonical, utc=True, format="ISO8601", errors="coerce")
        parsed = parsed.dt.floor("us")  # Python datetimes hold microseconds
        ok = shape & parsed.notna().to_numpy()
        series = none.copy()
        if ok.any():
            series[ok] = list(parsed[ok].dt.to_pydatetime())

        def ts_reason(v: str, _i: int) -> str:
            if re.fullmatch(_TS_NOZONE_RE, v):
                return f"timestamp '{v}' has no time zone; add Z (UTC) or an offset such as +01:00"
            if re.fullmatch(_TS_RE, v):
                return f"'{v}' is not a real date and time"
            return f"'{v}' is not an ISO 8601 timestamp such as 2024-03-01T09:30:00Z"

        return series, ~ok, ts_reason
    if t == contract.STATE:
        codes = _obj((states.resolve(v) if v else None for v in raw), raw.index)
        ok = codes.notna().to_numpy()
        return (
            codes,
            ~ok,
            lambda v, _i: (
                f"'{v}' is not a known participating State (use an ISO 3166 "
                "alpha-3 code such as DEU, or a known name)"
            ),
        )
    if t in (contract.STATES, contract.RECIPIENTS):
        allow_all = t == contract.RECIPIENTS

        def norm(v: str) -> str | None:
            if allow_all and v.strip().upper() == "ALL":
                return "ALL"
            parts = re.split(r"[\s,;]+", v.strip())
            if allow_all and any(p.upper() == "ALL" for p in parts):
                return None
            out = []
            for p in parts:
                code = states.resolve(p)
                if code is None:
                    return None
                if code not in out:
                    out.append(code)
            return " ".join(out)

        series = _obj((norm(v) if v else None for v in raw), raw.index)
        ok = series.notna().to_numpy()

        def states_reason(v: str, _i: int) -> str:
            if allow_all and any(p.upper() == "ALL" for p in re.split(r"[\s,;]+", v.strip())):
                return "ALL stands alone; it cannot be combined with States"
            unknown = [p for p in re.split(r"[\s,;]+", v.strip()) if states.resolve(p) is None]
            prefix = "ALL or " if allow_all else ""
            return (
                f"unknown State(s) {', '.join(unknown)}; expected {prefix}alpha-3 codes "
                "separated by spaces"
            )

        return series, ~ok, states_reason
    if t == contract.VOCAB:
        ok = raw.isin(f.choices).to_numpy()
        return (
            _keep(raw, present & ok),
            ~ok,
            lambda v, _i: f"'{v}' is not one of: {', '.join(f.choices)}",
        )
    raise ValueError(f"unknown field type {t!r}")  # pragma: no cover


def _cross_checks(
    spec: ContractFile, raw: dict[str, np.ndarray], typed: dict[str, np.ndarray], reject: Any
) -> None:
    """Rules that look at more than one column of the same row."""
    for earlier, later in spec.ordered:
        a, b = typed[earlier], typed[later]
        mask = _pairs(a, b, lambda x, y: x is not None and y is not None and x > y)
        reject(
            mask,
            later,
            lambda _v, i, a=a, b=b, earlier=earlier, later=later: (
                f"{later} {_fmt(b[i])} is before {earlier} {_fmt(a[i])}"
            ),
        )

    if spec.name == "activities":
        host = typed["host_state"]
        typed["host_state"] = np.where(_is_none(host), typed["state"], host)
    if spec.name in ("notifications", "inspections"):
        kinds = vocab.NOTIFICATION_KINDS if spec.name == "notifications" else vocab.INSPECTION_KINDS
        regime, kind = typed["regime"], typed["kind"]
        mismatch = _pairs(
            regime,
            kind,
            lambda r, k: r is not None and k is not None and r in kinds and k not in kinds[r],
        )
        reject(
            mismatch,
            "kind",
            lambda v, i: (
                f"kind '{v}' does not belong to regime {regime[i]} "
                f"(allowed: {', '.join(kinds[regime[i]])})"
            ),
        )
    if spec.name == "quotas":
        kind, counterpart = typed["kind"], typed["counterpart"]
        blank = (raw["counterpart"] == "").astype(bool)
        active_without = (kind == "active").astype(bool) & blank
        passive_with = (kind == "passive").astype(bool) & ~_is_none(counterpart)
        reject(active_without, "counterpart", "an active quota needs the counterpart State")
        reject(passive_with, "counterpart", "a passive quota has no counterpart; leave it empty")
    if spec.name == "observation_flights":
        reject(
            _same(typed["observing_state"], typed["observed_state"]),
            "observed_state",
            "a State cannot observe itself",
        )
    if spec.name == "inspections":
        reject(
            _same(typed["inspecting_state"], typed["inspected_state"]),
            "inspected_state",
            "a State cannot inspect itself",
        )


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Equal and both present (as pandas compares: a missing value equals nothing)."""
    return (a == b).astype(bool) & ~_is_none(a) & ~_is_none(b)


def _fmt(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)
