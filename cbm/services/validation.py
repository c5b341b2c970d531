"""Validation of contract rows, column by column over whole chunks (pandas), not row by row.

Every entry point (forms, importers, the API, the demo loader) goes through
:func:`validate_rows`, so a value is judged and worded the same everywhere. Errors name the
row, the column, the value and the reason.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
    """Outcome of validation: the good rows as typed Python values, and the errors."""

    rows: list[dict[str, Any]]
    row_numbers: list[int]
    errors: list[RowError]
    read: int

    @property
    def rejected_rows(self) -> set[int]:
        return {e.row for e in self.errors if e.row is not None}


def to_frame(rows: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Any input (a DataFrame or dicts of strings or Python values) as a frame of strings."""
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    frame.columns = [str(c).strip().lstrip("\ufeff").lower() for c in frame.columns]
    out = {}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty"):
            # The common case (CSV text): strip in one vectorised pass.
            out[name] = column.astype(object).fillna("").str.strip().to_numpy(dtype=object)
        else:
            out[name] = column.astype(object).map(_as_text).to_numpy(dtype=object)
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)), dtype=object)


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
    """Check rows against the contract; return typed good rows and every error found."""
    frame = to_frame(rows)
    n = len(frame)
    if n == 0:
        return Validated(rows=[], row_numbers=[], errors=[], read=0)
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
        return Validated(rows=[], row_numbers=[], errors=errors, read=n)

    for name in spec.columns:
        if name not in frame.columns:
            frame[name] = ""

    typed: dict[str, pd.Series] = {}

    def reject(mask: np.ndarray | pd.Series, column: str | None, reason_of: Any) -> None:
        mask = np.asarray(mask, dtype=bool)
        for i in np.flatnonzero(mask):
            value = frame[column].iat[i] if column in frame.columns else None
            reason = reason_of(value, i) if callable(reason_of) else reason_of
            errors.append(RowError(int(numbers[i]), column, value, reason))
        bad[mask] = True

    for f in spec.fields:
        raw = frame[f.name]
        empty = (raw == "").to_numpy()
        if f.required:
            reject(empty, f.name, f"{f.name} is required")
        present = ~empty
        series, invalid, reason = _parse(f, raw, present, states, spec.max_lengths.get(f.name))
        if invalid is not None:
            reject(invalid & present, f.name, reason)
        typed[f.name] = series

    _cross_checks(spec, frame, typed, reject)

    keys = list(spec.key)
    # A key part that failed to parse is compared by its raw text, so two different bad
    # values never look equal to each other or to an empty part.
    key_frame = pd.DataFrame(
        {
            k: [
                _key_part(v) if v is not None else (f"?{r}" if r else "")
                for v, r in zip(typed[k], frame[k], strict=True)
            ]
            for k in keys
        }
    )
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
    columns = {name: typed[name].to_numpy(dtype=object)[idx] for name in spec.columns}
    records = [
        dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)
    ]
    if not spec.columns:
        records = []
    for rec in records:
        for k in keys:
            if rec[k] is None:
                rec[k] = ""  # optional key parts are stored as '' so uniqueness holds
    errors.sort(key=lambda e: e.row or 0)
    return Validated(
        rows=records,
        row_numbers=[int(x) for x in numbers[good]],
        errors=errors,
        read=n,
    )


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


def _cross_checks(spec: ContractFile, frame: pd.DataFrame, typed: dict, reject: Any) -> None:
    """Rules that look at more than one column of the same row."""
    for earlier, later in spec.ordered:
        a, b = typed[earlier], typed[later]
        both = (a.notna() & b.notna()).to_numpy()
        mask = np.zeros(len(a), dtype=bool)
        if both.any():
            mask[both] = [x > y for x, y in zip(a[both], b[both], strict=True)]
        reject(
            mask,
            later,
            lambda _v, i, a=a, b=b, earlier=earlier, later=later: (
                f"{later} {_fmt(b.iat[i])} is before {earlier} {_fmt(a.iat[i])}"
            ),
        )

    if spec.name == "activities":
        host = typed["host_state"]
        typed["host_state"] = _obj(
            (h if h is not None else s for h, s in zip(host, typed["state"], strict=True)),
            host.index,
        )
    if spec.name in ("notifications", "inspections"):
        kinds = vocab.NOTIFICATION_KINDS if spec.name == "notifications" else vocab.INSPECTION_KINDS
        regime, kind = typed["regime"], typed["kind"]
        mismatch = np.array(
            [
                r is not None and k is not None and r in kinds and k not in kinds[r]
                for r, k in zip(regime, kind, strict=True)
            ],
            dtype=bool,
        )
        reject(
            mismatch,
            "kind",
            lambda v, i: (
                f"kind '{v}' does not belong to regime {regime.iat[i]} "
                f"(allowed: {', '.join(kinds[regime.iat[i]])})"
            ),
        )
    if spec.name == "quotas":
        kind, counterpart = typed["kind"], typed["counterpart"]
        blank = (frame["counterpart"] == "").to_numpy()
        active_without = (kind == "active").to_numpy() & blank
        passive_with = ((kind == "passive") & counterpart.notna()).to_numpy()
        reject(active_without, "counterpart", "an active quota needs the counterpart State")
        reject(passive_with, "counterpart", "a passive quota has no counterpart; leave it empty")
    if spec.name == "observation_flights":
        same = (typed["observing_state"] == typed["observed_state"]).fillna(False).to_numpy()
        reject(same, "observed_state", "a State cannot observe itself")
    if spec.name == "inspections":
        same = (typed["inspecting_state"] == typed["inspected_state"]).fillna(False).to_numpy()
        reject(same, "inspected_state", "a State cannot inspect itself")


def _fmt(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)
