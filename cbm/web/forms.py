"""Record forms generated from the contract: one widget per column, parsed back to contract text.

Nothing here validates. A form is turned into one contract row of strings, exactly what an
importer hands over, and :func:`cbm.services.upsert_records` judges it, so a form shows the
same messages as an import. The only translations are the ones a browser needs:

- ``datetime-local`` inputs have no zone; the form labels them UTC and appends ``Z``.
- A State picked from the list as ``DEU — Germany`` becomes ``DEU`` (names and aliases
  typed by hand go to the service unchanged, which resolves them).
- On edit, the key comes from the URL, never from the posted form.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

from cbm import contract, vocab
from cbm.contract import ContractFile
from cbm.contract_doc import TYPE_TEXT
from cbm.services.validation import RowError

#: Labels that plain title-casing would get wrong.
LABELS: dict[str, str] = {
    "acv": "ACV (armoured combat vehicles)",
    "eta_poe": "ETA at point of entry",
    "os_airfield": "Open Skies airfield",
    "distance_km": "Distance (km)",
    "max_distance_km": "Maximum distance (km)",
    "nil_report": "Nil report",
    "as_of": "As of",
    "air_sorties": "Air sorties",
}

#: What a column means, from the data contract (docs/data-contract.md); keyed by
#: ``file.column`` or by a column name shared by several files.
MEANINGS: dict[str, str] = {
    "activities.activity_id": "The activity's reference: the conducting State's own, or one "
    "you assign. One activity may have a row per source.",
    "activities.source": "Where these figures come from.",
    "activities.state": "The conducting State.",
    "activities.host_state": "The State on whose territory it takes place.",
    "activities.name": "For example Zapad-2021.",
    "activities.area": "Specified area, region or co-ordinates.",
    "notifications.reference": "The message reference.",
    "notifications.sender": "The sending State.",
    "notifications.received_at": "When it was received, if known.",
    "notifications.covers_year": "For annual submissions: the year the information is valid "
    "for (an exchange sent in December 2024 covers 2025).",
    "notifications.activity_id": "The activity it notifies, invites to or asks about.",
    "notifications.event_id": "The inspection, evaluation visit or observation flight it "
    "belongs to.",
    "notifications.in_reply_to": "Reference of the message it answers.",
    "notifications.nil_report": "True when the message says there is nothing to report.",
    "inspections.inspecting_state": "The State whose quota it uses (the lead State).",
    "inspections.guest_states": "States that joined the team.",
    "inspections.inspected_state": "The receiving State.",
    "inspections.unit": "Formation or unit evaluated (evaluation visits).",
    "inspections.area": "The specified area (inspections).",
    "inspections.report_at": "When the report was circulated.",
    "inspections.concerns_raised": "True when the report records concerns or irregularities.",
    "inspections.findings": "A short summary of the report.",
    "observation_flights.notified_at": "Time of the flight notification.",
    "observation_flights.eta_poe": "Planned arrival at the point of entry.",
    "observation_flights.arrived_at": "Actual arrival at the point of entry.",
    "observation_flights.mission_plan_at": "Submission of the mission plan.",
    "observation_flights.distance_km": "Distance flown.",
    "observation_flights.max_distance_km": "Maximum distance allowed; empty takes it from "
    "the reference data.",
    "observation_flights.curtailment_cause": "Free text or code; decides whether the flight "
    "counts against the quota (Art. VIII).",
    "observation_flights.report_at": "When the mission report was circulated.",
    "observation_flights.restrictions": "Restrictions imposed by the observed State.",
    "quotas.kind": "Passive: flights or visits a State must accept; active: those it may conduct.",
    "quotas.counterpart": "The State an active quota is held over.",
    "holdings.source": "Which exchange declared the figure.",
    "holdings.zone": "For example a CFE zone.",
    "ceilings.valid_to": "Empty while the ceiling applies.",
    "ceilings.basis": "For example: CFE maximum level for holdings.",
    "reductions.state": "The reducing State.",
    "reductions.quantity": "The number committed.",
    "reductions.reduced": "The number achieved so far.",
    "reductions.completed_at": "The date the commitment was met.",
    "reductions.region_from": "Where the forces were (a State or a region), for withdrawals.",
    "reductions.verified_by": "The inspection that verified it (its inspection_id).",
    "counts_against_quota": "Empty: derived from the rules.",
    "remarks": "Anything else worth knowing.",
}

#: Vocabularies shown grouped by regime (a notification kind belongs to its regime).
GROUPED_CHOICES: dict[tuple[str, str], Mapping[str, Sequence[str]]] = {
    ("notifications", "kind"): vocab.NOTIFICATION_KINDS,
    ("inspections", "kind"): vocab.INSPECTION_KINDS,
}

BOOL_CHOICES: tuple[tuple[str, str], ...] = (
    ("", "unknown"),
    ("true", "yes (true)"),
    ("false", "no (false)"),
)

STATE_LIST_ID = "cbm-states"
KEY_HINT = "Part of the record's key: to change it, delete the record and create it again."

_DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_TIME = r"[0-9]{2}:[0-9]{2}"
#: A time without a zone (what a datetime-local input sends): the form appends Z.
_NAIVE_TS = re.compile(rf"^{_DATE}[T ]{_TIME}(:[0-9]{{2}}(\.[0-9]{{1,6}})?)?$")
#: A value a datetime-local input can hold (at most millisecond precision).
_LOCAL_TS = re.compile(rf"^{_DATE}T{_TIME}(:[0-9]{{2}}(\.[0-9]{{1,3}})?)?$")


def label(name: str) -> str:
    """A column's label: ``start_date`` → ``Start date``, ``activity_id`` → ``Activity ID``."""
    if name in LABELS:
        return LABELS[name]
    proper = {"id": "ID", "state": "State", "states": "States"}
    words = [proper.get(w, w) for w in name.split("_")]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def hint(spec: ContractFile, f: contract.Field) -> str:
    """Help text for a field: what it means, its format, and the contract's note.

    Backticked parts are shown as code (the ``inline_code`` filter)."""
    parts = []
    meaning = MEANINGS.get(f"{spec.name}.{f.name}") or MEANINGS.get(f.name)
    if meaning:
        parts.append(meaning)
    if f.help:
        parts.append(f.help[:1].upper() + f.help[1:] + ".")
    if f.type == contract.STATE:
        parts.append("An alpha-3 code such as `DEU`, or a name such as Germany.")
    elif f.type == contract.STATES:
        parts.append("Alpha-3 codes separated by spaces, such as `FRA POL`.")
    elif f.type == contract.RECIPIENTS:
        parts.append("`ALL`, or alpha-3 codes separated by spaces.")
    elif f.type in (contract.STR,) and spec.max_lengths.get(f.name):
        parts.append(f"At most {spec.max_lengths[f.name]} characters.")
    elif f.type not in (
        contract.VOCAB,
        contract.BOOL,
        contract.TEXT,
        contract.DATE,
        contract.TIMESTAMP,
    ):
        parts.append(TYPE_TEXT[f.type][:1].upper() + TYPE_TEXT[f.type][1:] + ".")
    if not f.required and not f.key:
        parts.append("Optional.")
    return " ".join(parts)


# --------------------------------------------------------------------------------------
# Widgets
# --------------------------------------------------------------------------------------


@dataclass
class Option:
    value: str
    text: str


@dataclass
class OptionGroup:
    label: str
    options: list[Option]


@dataclass
class FormField:
    """One input of a record form, ready for the template."""

    name: str
    label: str
    widget: str  # text, textarea, number, date, datetime, select, state
    value: str
    hint: str
    required: bool = False
    key: bool = False
    readonly: bool = False
    errors: list[str] = field(default_factory=list)
    options: list[Option] = field(default_factory=list)
    groups: list[OptionGroup] = field(default_factory=list)
    attrs: dict[str, str] = field(default_factory=dict)
    utc: bool = False

    @property
    def id(self) -> str:
        return f"f-{self.name}"

    @property
    def hint_id(self) -> str:
        return f"{self.id}-hint"

    @property
    def error_id(self) -> str:
        return f"{self.id}-error"


def _choice_widget(
    spec: ContractFile, f: contract.Field, value: str
) -> tuple[list[Option], list[OptionGroup]]:
    empty = Option("", "— choose —" if f.required else "— none / unknown —")
    options = [empty]
    groups: list[OptionGroup] = []
    grouped = GROUPED_CHOICES.get((spec.name, f.name))
    if grouped:
        groups = [
            OptionGroup(regime, [Option(c, c) for c in kinds]) for regime, kinds in grouped.items()
        ]
    else:
        options += [Option(c, c) for c in f.choices]
    if value and value not in f.choices:
        # A value from elsewhere (a tampered or outdated form) stays visible with its error.
        options.append(Option(value, value))
    return options, groups


def timestamp_input(value: str) -> tuple[str, dict[str, str]]:
    """The widget for a timestamp's text: ``datetime`` (a datetime-local input, with the
    step its precision needs) or ``text`` when a browser could not hold the value (an
    offset, or more than millisecond precision), so nothing is lost on the way back."""
    if not value:
        return "datetime", {}
    if not _LOCAL_TS.match(value):
        return "text", {}
    time = value.split("T", 1)[1]
    if "." in time:
        return "datetime", {"step": "0.001"}
    if time.count(":") == 2:
        return "datetime", {"step": "1"}
    return "datetime", {}


def build_fields(
    spec: ContractFile,
    values: Mapping[str, str],
    errors: Mapping[str, list[str]] | None = None,
    *,
    editing: bool = False,
) -> list[FormField]:
    """The inputs of a form for ``spec`` filled with ``values`` (contract or form text)."""
    errors = errors or {}
    out = []
    for f in spec.fields:
        value = values.get(f.name, "") or ""
        ff = FormField(
            name=f.name,
            label=label(f.name),
            widget="text",
            value=value,
            hint=hint(spec, f),
            required=f.required,
            key=f.key,
            errors=list(errors.get(f.name, [])),
        )
        if f.key and editing:
            ff.readonly = True
            ff.hint = KEY_HINT
            out.append(ff)
            continue
        if f.type == contract.VOCAB:
            ff.widget = "select"
            ff.options, ff.groups = _choice_widget(spec, f, value)
        elif f.type == contract.BOOL:
            ff.widget = "select"
            ff.options = [Option(v, t) for v, t in BOOL_CHOICES]
            if value and value not in ("true", "false"):
                ff.options.append(Option(value, value))
        elif f.type == contract.STATE:
            ff.widget = "state"
            ff.attrs = {"list": STATE_LIST_ID, "autocomplete": "off", "spellcheck": "false"}
        elif f.type == contract.DATE:
            ff.widget = "date"
        elif f.type == contract.TIMESTAMP:
            ff.widget, ff.attrs = timestamp_input(value)
            ff.utc = True
            if ff.widget == "text":
                ff.attrs = {"spellcheck": "false"}
        elif f.type == contract.INT:
            ff.widget = "number"
            ff.attrs = {"min": "0", "step": "1", "inputmode": "numeric"}
        elif f.type == contract.YEAR:
            ff.widget = "number"
            ff.attrs = {"min": "1970", "max": "2200", "step": "1", "inputmode": "numeric"}
        elif f.type == contract.TEXT:
            ff.widget = "textarea"
        elif f.type in (contract.STATES, contract.RECIPIENTS):
            ff.attrs = {"spellcheck": "false", "autocomplete": "off"}
        out.append(ff)
    return out


# --------------------------------------------------------------------------------------
# Between stored values, form text and contract text
# --------------------------------------------------------------------------------------


def _timestamp_text(value: dt.datetime) -> str:
    """A stored timestamp as a datetime-local value in UTC, as precise as it is."""
    value = value.astimezone(dt.UTC)
    if value.microsecond % 1000:
        return value.isoformat().replace("+00:00", "Z")  # shown as text: nothing lost
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}"
    if value.second:
        return value.strftime("%Y-%m-%dT%H:%M:%S")
    return value.strftime("%Y-%m-%dT%H:%M")


def contract_text(f: contract.Field, value: Any) -> str:
    """A stored (or audit-log JSON) value in the notation a form shows."""
    if value is None:
        return ""
    if f.type == contract.TIMESTAMP:
        if isinstance(value, str):
            value = _parse_iso(value)
            if value is None:
                return ""
        return _timestamp_text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def form_values(spec: ContractFile, row: Mapping[str, Any]) -> dict[str, str]:
    """A stored row (or the last values of a deleted one) as the text a form shows."""
    return {f.name: contract_text(f, row.get(f.name)) for f in spec.fields}


def prefill(spec: ContractFile, args: Mapping[str, str]) -> dict[str, str]:
    """Initial values of a new record from the query string (``?activity_id=A-1``)."""
    return {name: str(args[name])[:2000] for name in spec.columns if args.get(name)}


def _state_text(value: str) -> str:
    head, sep, _tail = value.partition(" — ")
    return head.strip() if sep else value


def row_from_form(
    spec: ContractFile, form: Mapping[str, str], key: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The contract row a submitted form stands for. With ``key`` (an edit), the key
    columns come from it and not from the form."""
    row: dict[str, str] = {}
    for f in spec.fields:
        if key is not None and f.key:
            row[f.name] = key[f.name]
            continue
        value = (form.get(f.name) or "").strip()
        if f.type == contract.TIMESTAMP and _NAIVE_TS.match(value):
            value = value.replace(" ", "T") + "Z"  # the input is labelled UTC
        elif f.type == contract.STATE:
            value = _state_text(value)
        row[f.name] = value
    return row


def submitted_values(spec: ContractFile, form: Mapping[str, str]) -> dict[str, str]:
    """What the user typed, to show again beside the errors."""
    return {name: (form.get(name) or "").strip() for name in spec.columns}


def errors_by_field(
    spec: ContractFile, errors: Iterable[RowError]
) -> tuple[dict[str, list[str]], list[RowError]]:
    """The service's reasons per form field, and every error for the summary."""
    by_field: dict[str, list[str]] = {}
    summary = []
    for e in errors:
        summary.append(e)
        if e.column in spec.columns:
            by_field.setdefault(e.column, []).append(e.reason)
    return by_field, summary


# --------------------------------------------------------------------------------------
# Showing values
# --------------------------------------------------------------------------------------


def _parse_iso(value: str) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def format_timestamp(value: dt.datetime) -> str:
    """``YYYY-MM-DD HH:MM UTC``, with seconds when the value has them (so a change of a few
    seconds is visible in the history)."""
    value = value.astimezone(dt.UTC)
    if value.second or value.microsecond:
        text = value.strftime("%Y-%m-%d %H:%M:%S")
        if value.microsecond:
            text += f".{value.microsecond:06d}".rstrip("0")
        return text + " UTC"
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _state(code: str, states: Mapping[str, str], long: bool) -> Markup:
    name = states.get(code)
    if name is None:
        return escape(code)
    if long:
        return Markup("{} — {}").format(code, name)
    return Markup('<abbr title="{}">{}</abbr>').format(name, code)


def display(
    spec: ContractFile, name: str, value: Any, states: Mapping[str, str], *, long: bool = False
) -> Markup:
    """A value as a page shows it: States with their names, times in UTC, unknown as ``–``.

    ``value`` may be stored (Python) or from the audit log (JSON text)."""
    if value is None or value == "":
        return Markup('<span class="muted" title="empty">–</span>')
    try:
        f = spec.field(name)
    except KeyError:
        return escape(str(value))
    if f.type == contract.STATE:
        return _state(str(value), states, long)
    if f.type in (contract.STATES, contract.RECIPIENTS):
        if value == "ALL":
            return Markup('<abbr title="all participating States">ALL</abbr>')
        sep = Markup("<br>") if long else Markup(" ")
        return sep.join(_state(c, states, long) for c in str(value).split())
    if f.type == contract.TIMESTAMP:
        when = value if isinstance(value, dt.datetime) else _parse_iso(str(value))
        return escape(format_timestamp(when) if when else str(value))
    if f.type == contract.BOOL:
        truth = value if isinstance(value, bool) else str(value).lower() == "true"
        return Markup("yes") if truth else Markup("no")
    if f.type == contract.INT and isinstance(value, int):
        return escape(f"{value:,}")
    if isinstance(value, dt.date):
        return escape(value.isoformat())
    return escape(str(value))
