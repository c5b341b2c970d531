"""Import runs: every payload becomes one recorded, restartable and revertible run.

:func:`run_import` reads payloads (files of a folder, an HTTP response, an upload) through an
importer (:mod:`importers`) and writes their rows through :func:`upsert_records`, so every
entry point is validated by the same rules. Each payload is **one run** (an
:class:`ImportRun`): a folder gives several runs, each with its own checksum, counts and
rejected rows, and each can be reverted on its own.

Transactions — the choice, and why
----------------------------------

* The run row is created and committed first (status ``running``, a heartbeat), so a run is
  visible (and listed) while it works and even if it dies.
* **Per complete batch (the default).** Each batch of rows (``chunk_size``, 50,000 by
  default) is validated and written in its own transaction *together with* its rejected
  rows, the run's updated counts and its heartbeat. A failure or a kill therefore leaves
  only complete batches, and the run's counts describe exactly what is stored. Because
  writes are upserts by natural key, importing the same file again completes the rest:
  rows already stored come back ``unchanged``. This keeps memory and lock times bounded
  on million-row files and lets a long import make progress that survives a crash.
* **All or nothing** (``all_or_nothing=True``, ``cbm import --all-or-nothing``): every
  batch is written in one transaction, which is rolled back entirely when any row is
  rejected (the rejections are then stored in a separate transaction and the run is
  ``rejected``). Use it for files whose rows only make sense together.

Statuses: ``running``; ``succeeded``; ``partial`` (succeeded with rejections: the good
rows stored, the bad rows listed; a name that fits the 20-character status column);
``rejected`` (nothing stored: every row was rejected, or, all or nothing, some row was);
``failed`` (the payload could not be read, or an unexpected error: the message says what,
the failed batch was rolled back); ``interrupted`` (the process stopped: Ctrl+C, or set by
:func:`mark_stale_runs` for a run whose process was killed: its liveness lock is free, see
:mod:`cbm.services.run_liveness`, or its heartbeat went stale).

Duplicates within one payload are rejected: within a batch by the validator, across
batches here (a key seen in an earlier batch of the same payload is reported with the row
where it first appeared).

:func:`revert_run` undoes a run (rows it inserted are deleted, values it changed go back),
refusing with an explanation when later changes touched the same rows or when removing a
row would leave other records pointing at nothing. :func:`rejections_csv` streams a run's
rejected rows as CSV.

Services flush; :func:`run_import` is itself a boundary (it commits per batch, through the
``session_factory`` it is given), while :func:`revert_run` and :func:`mark_stale_runs`
take a session and leave the commit to the caller.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import Table, delete, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from cbm import contract, logs
from cbm.contract import ContractFile
from cbm.db import (
    connection_lost_reason,
    is_connection_lost,
    retry_while_unreachable,
    session_scope,
    utcnow,
)
from cbm.models import AuditEvent, ImportRejection, ImportRun, User
from cbm.services import run_liveness
from cbm.services.bulk import bulk_insert, bulk_update_by_id
from cbm.services.records import (
    AUDIT_COLUMNS,
    REFERRERS,
    SYSTEM,
    Actor,
    UpsertResult,
    entity_key,
    json_value,
    state_resolver,
    upsert_records,
)
from cbm.services.validation import RowError, StateResolver, to_frame, validate_rows

if TYPE_CHECKING:
    from importers.base import Importer, Payload

log = logging.getLogger(__name__)

RUNNING = "running"
SUCCEEDED = "succeeded"
SUCCEEDED_WITH_REJECTIONS = "partial"
REJECTED = "rejected"
FAILED = "failed"
INTERRUPTED = "interrupted"
STATUSES = (RUNNING, SUCCEEDED, SUCCEEDED_WITH_REJECTIONS, REJECTED, FAILED, INTERRUPTED)

#: A running run whose heartbeat is older than this was killed (a batch takes seconds).
STALE_AFTER = dt.timedelta(minutes=15)
#: Rejections stored per run. The counts stay exact beyond it; a file where every cell is
#: wrong should not store millions of messages that say the same thing.
MAX_STORED_REJECTIONS = 100_000
#: How many records a refused revert names.
REFUSAL_LIST = 10
KEY_CHUNK = 2000
REJECTION_HEADER = ("row", "column", "value", "reason", "part")
#: Cells starting with these are formulas to a spreadsheet (CSV injection); they get a '.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
REVERT_NOTE = "revert of run {run_id}"
#: References a restored row may point along: (file, column) -> [(file, column referred to)].
RESTORED_REFERENCES: dict[tuple[str, str], list[tuple[str, str]]] = {
    ("notifications", "activity_id"): [("activities", "activity_id")],
    ("notifications", "in_reply_to"): [("notifications", "reference")],
    ("notifications", "event_id"): [
        ("inspections", "inspection_id"),
        ("observation_flights", "flight_id"),
    ],
    ("reductions", "verified_by"): [("inspections", "inspection_id")],
}
_REVERT_NOTE_RE = re.compile(r"^revert of run (\d+)$")

ProgressCallback = Callable[["ImportProgress"], None]


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportProgress:
    """Sent to the ``progress`` callback: when a payload starts, after each batch, at its end."""

    run_id: int
    payload: str
    size: int  # bytes of the payload
    rows: int  # rows read so far in this payload
    batch_rows: int  # rows of the batch just written (0 for start and end)
    stage: str  # "start", "batch" or "end"


@dataclass
class RunOutcome:
    """What one run did (one payload)."""

    run_id: int
    name: str
    status: str
    importer: str = ""
    checksum: str | None = None
    kinds: list[str] = field(default_factory=list)
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    message: str | None = None

    @property
    def failed(self) -> bool:
        return self.status in (FAILED, INTERRUPTED)


@dataclass
class ImportRunResult:
    """The runs of one :func:`run_import` call, with totals."""

    runs: list[RunOutcome] = field(default_factory=list)

    def _sum(self, name: str) -> int:
        return sum(getattr(r, name) for r in self.runs)

    @property
    def read(self) -> int:
        return self._sum("read")

    @property
    def inserted(self) -> int:
        return self._sum("inserted")

    @property
    def updated(self) -> int:
        return self._sum("updated")

    @property
    def unchanged(self) -> int:
        return self._sum("unchanged")

    @property
    def rejected(self) -> int:
        return self._sum("rejected")

    @property
    def failed(self) -> bool:
        """Some run failed or was interrupted."""
        return any(r.failed for r in self.runs)

    @property
    def ok(self) -> bool:
        """Every run succeeded without rejections."""
        return all(r.status == SUCCEEDED for r in self.runs)


# --------------------------------------------------------------------------------------
# Running an import
# --------------------------------------------------------------------------------------


@dataclass
class _Options:
    importer: str | Importer | None
    kind: str | None
    all_or_nothing: bool
    source_id: int | None
    source_name: str
    location: str
    user_id: int | None
    chunk_size: int
    progress: ProgressCallback | None


def run_import(
    session_factory: sessionmaker[Session],
    payloads: Iterable[Payload],
    *,
    importer: str | Importer | None = None,
    kind: str | None = None,
    all_or_nothing: bool = False,
    source_id: int | None = None,
    source_name: str = "",
    location: str = "",
    user_id: int | None = None,
    chunk_size: int = 50_000,
    progress: ProgressCallback | None = None,
) -> ImportRunResult:
    """Import each payload as one run; see the module documentation for the transactions.

    ``importer`` names the format (``csv``, ``xlsx``, ``json``; default: detected per
    payload) or is an :class:`~importers.base.Importer` instance. ``kind`` names the
    contract file when the payload does not say. ``user_id`` is who started the import
    (the rows themselves are attributed to the run). Never raises for a bad payload or a
    failed write: the run records it (``KeyboardInterrupt`` is recorded and re-raised).
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    opts = _Options(
        importer=importer,
        kind=kind,
        all_or_nothing=all_or_nothing,
        source_id=source_id,
        source_name=source_name,
        location=location,
        user_id=user_id,
        chunk_size=chunk_size,
        progress=progress,
    )
    result = ImportRunResult()
    iterator = iter(payloads)
    while True:
        try:
            payload = next(iterator)
        except StopIteration:
            break
        except ValueError as exc:  # ImportFormatError: the location itself is unreadable
            result.runs.append(_failed_location(session_factory, opts, str(exc)))
            break
        result.runs.append(_import_payload(session_factory, payload, opts))
    return result


def _failed_location(factory: sessionmaker[Session], opts: _Options, message: str) -> RunOutcome:
    """A location that yields no payload at all is still a run, so the failure is listed."""
    name = opts.location or "(unknown location)"
    importer_name = opts.importer if isinstance(opts.importer, str) else ""
    run_id, _ = _create_run(
        factory,
        opts,
        location=name,
        importer=importer_name or "unknown",
        version="",
        checksum=None,
        status=FAILED,
        message=message,
    )
    return RunOutcome(run_id=run_id, name=name, status=FAILED, message=message)


def _resolve_importer(payload: Payload, importer: str | Importer | None) -> Importer:
    if importer is not None and not isinstance(importer, str):
        return importer
    from importers.registry import importer_for

    found = importer_for(payload, name=None if importer in (None, "", "auto") else importer)
    return found() if isinstance(found, type) else found


def _create_run(
    factory: sessionmaker[Session],
    opts: _Options,
    *,
    location: str,
    importer: str,
    version: str,
    checksum: str | None,
    status: str = RUNNING,
    message: str | None = None,
) -> tuple[int, Any]:
    """Create and commit the run's row; a running run's liveness lock is taken before the
    commit (see :mod:`cbm.services.run_liveness`) and returned for the caller to release."""
    now = utcnow()
    with session_scope(factory) as session:
        run = ImportRun(
            source_name=opts.source_name[:200],
            location=location,
            importer=importer[:60],
            importer_version=version[:40],
            kind=opts.kind,
            status=status,
            started_at=now,
            finished_at=None if status == RUNNING else now,
            heartbeat_at=now,
            checksum=checksum,
            all_or_nothing=opts.all_or_nothing,
            user_id=opts.user_id,
            source_id=opts.source_id,
            message=message,
        )
        session.add(run)
        # Write first, then read: on SQLite a transaction that reads before it writes fails
        # at once ("database is locked") when another process committed in between.
        session.flush()
        lock = run_liveness.hold(factory, run.id) if status == RUNNING else None
        try:
            mark_stale_runs(session)
            session.flush()
        except BaseException:
            run_liveness.release(lock)
            raise
        return run.id, lock


def _import_payload(factory: sessionmaker[Session], payload: Payload, opts: _Options) -> RunOutcome:
    where = str(payload.path) if payload.path is not None else (opts.location or payload.name)
    problem = None
    imp = None
    try:
        imp = _resolve_importer(payload, opts.importer)
    except ValueError as exc:  # ImportFormatError and unknown importer names
        problem = str(exc)
    checksum = None
    try:
        checksum = payload.checksum
    except (OSError, ValueError) as exc:
        problem = problem or f"{payload.name}: cannot be read: {exc}"
    importer_name = imp.name if imp is not None else (opts.importer or "unknown")
    run_id, lock = _create_run(
        factory,
        opts,
        location=where,
        importer=str(importer_name),
        version=getattr(imp, "version", "") or "",
        checksum=checksum,
        status=FAILED if problem else RUNNING,
        message=problem,
    )
    with logs.log_context(import_run_id=run_id):
        return _run_payload(
            factory, payload, opts, imp, run_id, problem, importer_name, checksum, lock
        )


def _run_payload(
    factory: sessionmaker[Session],
    payload: Payload,
    opts: _Options,
    imp: Importer | None,
    run_id: int,
    problem: str | None,
    importer_name: Any,
    checksum: str | None,
    lock: Any,
) -> RunOutcome:
    """The import run ``run_id`` from its start to its outcome (lines carry its id)."""
    outcome = RunOutcome(
        run_id=run_id,
        name=payload.name,
        status=RUNNING,
        importer=str(importer_name),
        checksum=checksum,
    )
    if problem or imp is None:
        outcome.status, outcome.message = FAILED, problem
        return outcome
    try:
        return _write_payload(factory, imp, payload, opts, outcome)
    finally:
        # After the final status is committed (or could not be): from now on another
        # process that finds this run still "running" knows its process is gone.
        run_liveness.release(lock)


def _write_payload(
    factory: sessionmaker[Session],
    imp: Importer,
    payload: Payload,
    opts: _Options,
    outcome: RunOutcome,
) -> RunOutcome:
    run_id = outcome.run_id
    state = _RunState(run_id=run_id, outcome=outcome, payload=payload, opts=opts)
    state.report("start", 0)
    try:
        if opts.all_or_nothing:
            _write_all_or_nothing(factory, imp, state)
        else:
            _write_per_batch(factory, imp, state)
    except ValueError as exc:  # ImportFormatError: the payload cannot be read (further)
        _fail(factory, state, str(exc))
    except KeyboardInterrupt:
        _finish(
            factory,
            state,
            INTERRUPTED,
            _partial_note("stopped by the user (Ctrl+C)", state),
        )
        raise
    except Exception as exc:
        if is_connection_lost(exc):
            # A restart of the server, not a bug: say so (the failed batch was rolled back).
            log.warning("import run %s failed: %s", run_id, connection_lost_reason(exc))
            _fail(factory, state, connection_lost_reason(exc))
        else:
            log.exception("import run %s failed", run_id)
            _fail(factory, state, f"unexpected error: {type(exc).__name__}: {exc}")
    state.report("end", 0)
    log.info(
        "import run %s %s: %s read, %s inserted, %s updated, %s rejected",
        run_id,
        outcome.status,
        outcome.read,
        outcome.inserted,
        outcome.updated,
        outcome.rejected,
    )
    return outcome


class _SeenKeys:
    """Natural keys met in earlier batches of one payload, as 64-bit hashes (vectorised).

    Kept as one sorted array (16 bytes a row: a million rows take 16 MB), looked up with
    ``searchsorted``.
    """

    def __init__(self) -> None:
        # One sorted array for the whole payload (equal hashes in the order they were met),
        # so a batch is one ``searchsorted``, not one per earlier batch.
        self._hashes = np.empty(0, dtype=np.uint64)
        self._rows = np.empty(0, dtype=np.int64)

    def check_and_add(
        self, hashes: np.ndarray, rows: np.ndarray, eligible: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Which eligible rows have a key seen before, and the row where it first appeared."""
        dup = np.zeros(len(hashes), dtype=bool)
        first = np.zeros(len(hashes), dtype=np.int64)
        seen, seen_rows = self._hashes, self._rows
        if len(seen):
            pos = np.minimum(np.searchsorted(seen, hashes), len(seen) - 1)
            dup = (seen[pos] == hashes) & eligible
            first[dup] = seen_rows[pos[dup]]
        keep = eligible
        order = np.argsort(hashes[keep], kind="stable")
        new, new_rows = hashes[keep][order].astype(np.uint64), rows[keep][order]
        # After the equal hashes already there, so the earliest row stays the first.
        at = np.searchsorted(seen, new, side="right")
        self._hashes = np.insert(seen, at, new)
        self._rows = np.insert(seen_rows, at, new_rows)
        return dup, first


@dataclass
class _RunState:
    """What one run has committed so far, and what it knows across batches."""

    run_id: int
    outcome: RunOutcome
    payload: Payload
    opts: _Options
    states: StateResolver | None = None
    seen: dict[str, _SeenKeys] = field(default_factory=dict)
    file_errors: set[tuple] = field(default_factory=set)
    stored_rejections: int = 0
    rows_seen: int = 0

    @property
    def actor(self) -> Actor:
        # Rows are attributed to the run; the run records who started it.
        return Actor(run_id=self.run_id)

    def report(self, stage: str, batch_rows: int) -> None:
        if self.opts.progress is None:
            return
        self.opts.progress(
            ImportProgress(
                run_id=self.run_id,
                payload=self.payload.name,
                size=self._size(),
                rows=self.rows_seen,
                batch_rows=batch_rows,
                stage=stage,
            )
        )

    def _size(self) -> int:
        try:
            return self.payload.size
        except OSError:
            return 0


def _spec_of(batch_kind: str) -> ContractFile:
    from importers.base import ImportFormatError

    spec = contract.FILES.get(batch_kind)
    if spec is None:
        raise ImportFormatError(
            f"unknown record kind '{batch_kind}'; expected one of: {', '.join(contract.FILES)}"
        )
    return spec


def _upsert_batch(
    session: Session, batch: Any, state: _RunState
) -> tuple[UpsertResult, list[RowError]]:
    """Validate and write one batch; rejections include duplicates of earlier batches."""
    spec = _spec_of(batch.kind)
    if state.states is None:
        state.states = state_resolver(session)
    frame = batch.rows
    duplicates: dict[int, tuple[int, str, str]] = {}
    keyed = _key_hashes(spec, frame, state.states)
    if keyed is not None:
        hashes, eligible, key_frame, column = keyed
        numbers = np.arange(batch.first_row_number, batch.first_row_number + len(frame))
        seen = state.seen.setdefault(spec.name, _SeenKeys())
        dup, first = seen.check_and_add(hashes, numbers, eligible)
        if dup.any():
            positions = np.flatnonzero(dup)
            for i in positions:
                values = key_frame.iloc[i].tolist()
                shown = ", ".join(f"{k}={v}" for k, v in zip(spec.key, values, strict=True))
                duplicates[int(numbers[i])] = (int(first[i]), str(values[0]), shown)
            # The validator reports duplicates within a batch. For these rows, blank the
            # first key part so the row is refused (never written), then replace that
            # error with one naming the earlier row.
            frame = frame.copy()
            frame[column] = frame[column].astype(object)
            frame.iloc[positions, frame.columns.get_loc(column)] = ""
    result = upsert_records(
        session,
        spec,
        frame,
        actor=state.actor,
        first_row_number=batch.first_row_number,
        states=state.states,
    )
    errors = result.errors
    if duplicates:
        blanked = spec.key[0]
        required = f"{blanked} is required"
        errors = [
            e
            for e in errors
            if not (e.row in duplicates and e.column == blanked and e.reason == required)
        ]
        for row, (first_row, value, shown) in duplicates.items():
            errors.append(
                RowError(
                    row,
                    blanked,
                    value,
                    f"duplicate key ({shown}) also in row {first_row} of this file",
                )
            )
        errors.sort(key=lambda e: e.row or 0)
    return result, errors


def _key_hashes(
    spec: ContractFile, frame: pd.DataFrame, states: StateResolver
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, Any] | None:
    """Each row's natural key as the validator will read it (trimmed, States as codes):
    64-bit hashes, whether the key is complete, the key parts, and the frame column of the
    first key part. None when the key columns are not all there (the validator then
    rejects the whole batch)."""
    if frame.columns.duplicated().any():
        return None
    names = {str(c).strip().lstrip("\ufeff").lower(): c for c in frame.columns}
    if any(k not in names for k in spec.key if spec.field(k).required):
        return None
    n = len(frame)
    present = [k for k in spec.key if k in names]
    texts = to_frame(frame[[names[k] for k in present]])
    parts: dict[str, pd.Series] = {}
    eligible = np.ones(n, dtype=bool)
    for k in spec.key:
        f = spec.field(k)
        raw = texts[k] if k in present else pd.Series([""] * n, dtype=object)
        raw = raw.reset_index(drop=True)
        if f.required:
            eligible &= (raw != "").to_numpy()
        if f.type == contract.STATE:
            codes = states.series(raw)
            raw = codes.where(codes.notna(), "?" + raw)
        parts[k] = raw.astype(object)
    key_frame = pd.DataFrame(parts)
    hashes = pd.util.hash_pandas_object(key_frame, index=False).to_numpy(dtype=np.uint64)
    return hashes, eligible, key_frame, names[spec.key[0]]


def _rejection_rows(
    state: _RunState, kind: str, errors: Sequence[RowError]
) -> tuple[list[dict[str, Any]], int]:
    """Rows for ``import_rejections`` (file-level errors once per run, capped per run)."""
    rows = []
    dropped = 0
    for e in errors:
        if e.row is None:
            marker = (kind, e.column, e.reason)
            if marker in state.file_errors:
                continue
            state.file_errors.add(marker)
        if state.stored_rejections + len(rows) >= MAX_STORED_REJECTIONS:
            dropped += 1
            continue
        rows.append(
            {
                "run_id": state.run_id,
                "kind": kind,
                "row_number": e.row,
                "column": _storable((e.column or None) and e.column[:100]),
                "value": _storable(None if e.value is None else str(e.value)),
                "reason": _storable(e.reason),
            }
        )
    return rows, dropped


def _storable(text: str | None) -> str | None:
    """Rejected text as it can be stored and shown: PostgreSQL text holds no NUL (a header
    cell of a damaged file may), so a NUL is written as the four characters ``\\x00``."""
    return text.replace("\x00", "\\x00") if text and "\x00" in text else text


def _store_rejections(session: Session, state: _RunState, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(ImportRejection.__table__), rows)
        state.stored_rejections += len(rows)


def _cap_note(session: Session, state: _RunState, dropped: int, note_stored: set) -> None:
    """Once the cap is reached, one file-level rejection says that more were not stored."""
    if dropped and not note_stored:
        note_stored.add(True)
        session.execute(
            insert(ImportRejection.__table__),
            [
                {
                    "run_id": state.run_id,
                    "kind": None,
                    "row_number": None,
                    "column": None,
                    "value": None,
                    "reason": (
                        f"more rejections were found than the {MAX_STORED_REJECTIONS:,} "
                        "stored for one run; the counts include them all. Fix the rows "
                        "listed and import the file again to see the rest."
                    ),
                }
            ],
        )


def _counts(outcome: RunOutcome, kind: str | None) -> dict[str, Any]:
    """The run's columns for these counts (``kind``: the one asked for, if any)."""
    return {
        "rows_read": outcome.read,
        "rows_inserted": outcome.inserted,
        "rows_updated": outcome.updated,
        "rows_unchanged": outcome.unchanged,
        "rows_rejected": outcome.rejected,
        "kind": _kind_label(outcome.kinds, kind),
    }


def _kind_label(kinds: Sequence[str], default: str | None) -> str | None:
    if not kinds:
        return default
    label = ",".join(kinds)
    return label if len(label) <= 40 else "several"


def _add(outcome: RunOutcome, result: UpsertResult, kind: str, written: bool) -> None:
    outcome.read += result.read
    outcome.rejected += result.rejected
    if written:
        outcome.inserted += result.inserted
        outcome.updated += result.updated
        outcome.unchanged += result.unchanged
    if kind not in outcome.kinds:
        outcome.kinds.append(kind)


def _write_per_batch(factory: sessionmaker[Session], imp: Importer, state: _RunState) -> None:
    """Each batch in its own transaction, with its rejections, counts and heartbeat."""
    opts = state.opts
    outcome = state.outcome
    cap_noted: set = set()
    for batch in imp.batches(state.payload, kind=opts.kind, chunk_size=opts.chunk_size):
        with session_scope(factory) as session:
            result, errors = _upsert_batch(session, batch, state)
            rows, dropped = _rejection_rows(state, batch.kind, errors)
            _store_rejections(session, state, rows)
            _cap_note(session, state, dropped, cap_noted)
            pending = dataclasses.replace(outcome, kinds=list(outcome.kinds))
            _add(pending, result, batch.kind, written=True)
            session.execute(
                update(ImportRun)
                .where(ImportRun.id == state.run_id)
                .values(**_counts(pending, opts.kind), heartbeat_at=utcnow())
            )
        # Committed: only now does the run's own tally advance.
        _add(outcome, result, batch.kind, written=True)
        state.rows_seen += result.read
        state.report("batch", result.read)
    status = SUCCEEDED_WITH_REJECTIONS if outcome.rejected else SUCCEEDED
    message = None
    if outcome.read == 0:
        message = f"{state.payload.name}: no rows to import"
    elif outcome.rejected == outcome.read:
        status = REJECTED
        message = "every row was rejected, so nothing was stored; fix the rows listed"
    _finish(factory, state, status, message)


def _write_all_or_nothing(factory: sessionmaker[Session], imp: Importer, state: _RunState) -> None:
    """Every batch in one transaction, rolled back entirely if any row is rejected."""
    opts = state.opts
    outcome = state.outcome
    session = factory()
    pending: list[dict[str, Any]] = []
    dropped = 0
    try:
        postgres = session.get_bind().dialect.name == "postgresql"
        for batch in imp.batches(state.payload, kind=opts.kind, chunk_size=opts.chunk_size):
            result, errors = _upsert_batch(session, batch, state)
            _add(outcome, result, batch.kind, written=True)
            rows, more = _rejection_rows(state, batch.kind, errors)
            state.stored_rejections += len(rows)  # counted now, stored after the rollback
            pending.extend(rows)
            dropped += more
            state.rows_seen += result.read
            if postgres:
                # Visible to other processes while the big transaction is open, so the run is
                # not taken for dead. (On SQLite the run holds the write lock: nobody else
                # can write, or mark it stale, until it ends.)
                _heartbeat(factory, state.run_id)
            state.report("batch", result.read)
        if outcome.rejected:
            session.rollback()
        else:
            message = _message(
                state, f"{state.payload.name}: no rows to import" if not outcome.read else None
            )
            session.execute(
                update(ImportRun)
                .where(ImportRun.id == state.run_id)
                .values(
                    **_counts(outcome, opts.kind),
                    status=SUCCEEDED,
                    finished_at=utcnow(),
                    heartbeat_at=utcnow(),
                    message=message,
                )
            )
            session.commit()
            outcome.status, outcome.message = SUCCEEDED, message
            return
    except BaseException:
        session.rollback()
        outcome.inserted = outcome.updated = outcome.unchanged = 0
        raise
    finally:
        session.close()
    # Rejected: nothing was written; store the rejections and the verdict.
    outcome.inserted = outcome.updated = outcome.unchanged = 0
    state.stored_rejections = 0
    with session_scope(factory) as session:
        _store_rejections(session, state, pending)
        _cap_note(session, state, dropped, set())
        message = _message(
            state,
            f"all or nothing: {outcome.rejected:,} of {outcome.read:,} rows rejected, "
            "so nothing was stored; fix the rows listed and import the file again",
        )
        session.execute(
            update(ImportRun)
            .where(ImportRun.id == state.run_id)
            .values(
                **_counts(outcome, opts.kind),
                status=REJECTED,
                finished_at=utcnow(),
                heartbeat_at=utcnow(),
                message=message,
            )
        )
    outcome.status, outcome.message = REJECTED, message


def _message(state: _RunState, main: str | None) -> str | None:
    """The run's message: what happened, then the reader's remarks (a skipped sheet, …)."""
    remarks = [str(w) for w in getattr(state.payload, "warnings", None) or ()]
    text = "; ".join(part for part in (main, *remarks) if part)
    return text or None


def _heartbeat(factory: sessionmaker[Session], run_id: int) -> None:
    with session_scope(factory) as session:
        session.execute(
            update(ImportRun).where(ImportRun.id == run_id).values(heartbeat_at=utcnow())
        )


def _partial_note(reason: str, state: _RunState) -> str:
    outcome = state.outcome
    if state.opts.all_or_nothing:
        return f"{reason}; all or nothing: nothing was stored"
    if not outcome.read:
        return f"{reason}; nothing was stored"
    return (
        f"{reason}; the {outcome.read:,} rows of the batches before it were stored "
        "(see the counts). Import the file again once fixed: rows already stored come "
        "back unchanged"
    )


def _fail(factory: sessionmaker[Session], state: _RunState, reason: str) -> None:
    _finish(factory, state, FAILED, _partial_note(reason, state))


def _finish(
    factory: sessionmaker[Session], state: _RunState, status: str, message: str | None
) -> None:
    outcome = state.outcome
    message = _message(state, message)
    values: dict[str, Any] = {
        "status": status,
        "finished_at": utcnow(),
        "heartbeat_at": utcnow(),
        "message": message,
    }
    if state.opts.all_or_nothing:
        # Nothing of a failed all-or-nothing run is stored; its counts say what was read.
        values.update(_counts(outcome, state.opts.kind))
    elif outcome.kinds:
        values["kind"] = _kind_label(outcome.kinds, state.opts.kind)

    def record() -> None:
        with session_scope(factory) as session:
            session.execute(update(ImportRun).where(ImportRun.id == state.run_id).values(**values))

    # Waits out a database restart, so the run ends with its own reason, not "interrupted".
    retry_while_unreachable(record, f"import run {state.run_id}: recording its end")
    outcome.status, outcome.message = status, message


def mark_stale_runs(session: Session, older_than: dt.timedelta = STALE_AFTER) -> int:
    """Mark ``running`` runs whose process is gone as ``interrupted``.

    A process is gone when nobody holds the run's liveness lock (it was killed or crashed:
    known at once, see :mod:`cbm.services.run_liveness`) or when the run gave no heartbeat
    for ``older_than``. Batches committed before stay (their counts say how many rows), and
    importing the same payload again completes it. Returns how many were marked.
    """
    cutoff = utcnow() - older_than
    running = session.execute(
        select(
            ImportRun.id,
            ImportRun.heartbeat_at,
            ImportRun.started_at,
            ImportRun.all_or_nothing,
            ImportRun.rows_read,
        ).where(ImportRun.status == RUNNING)
    ).all()
    marked = 0
    for run_id, heartbeat_at, started_at, all_or_nothing, rows_read in running:
        last = heartbeat_at or started_at
        if last >= cutoff and not run_liveness.is_abandoned(session, run_id):
            continue
        if all_or_nothing:
            kept = "all or nothing: nothing was stored"
        elif rows_read:
            kept = (
                f"the {rows_read:,} rows of its completed batches were stored; import "
                "the same file again to complete it (stored rows come back unchanged)"
            )
        else:
            kept = "nothing was stored"
        # Only while still running: a run that finished meanwhile keeps its outcome.
        marked += session.execute(
            update(ImportRun)
            .where(ImportRun.id == run_id, ImportRun.status == RUNNING)
            .values(
                status=INTERRUPTED,
                finished_at=utcnow(),
                message=(
                    f"no sign of life since {last:%Y-%m-%d %H:%M:%S} UTC: the process was "
                    f"stopped or killed; {kept}"
                ),
            )
        ).rowcount
    session.flush()
    return marked


# --------------------------------------------------------------------------------------
# Rejected rows as CSV
# --------------------------------------------------------------------------------------


def csv_cell(value: Any) -> str:
    """A value safe to open in a spreadsheet: formulas are neutralised with a leading '."""
    if value is None:
        return ""
    text = str(value)
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def rejections_csv(session: Session, run_id: int, *, chunk: int = 2000) -> Iterator[str]:
    """A run's rejected rows as RFC 4180 CSV (CRLF line ends), streamed in pieces.

    Columns: ``row`` (the source's own row number, empty for a file-level problem),
    ``column``, ``value`` (as read), ``reason``, ``part`` (the contract file the rows were
    read as: for a workbook, the sheet of that name).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(REJECTION_HEADER)
    yield buffer.getvalue()
    stmt = (
        select(
            ImportRejection.row_number,
            ImportRejection.column,
            ImportRejection.value,
            ImportRejection.reason,
            ImportRejection.kind,
        )
        .where(ImportRejection.run_id == run_id)
        .order_by(ImportRejection.id)
        .execution_options(yield_per=chunk)
    )
    for part in session.execute(stmt).partitions():
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(
            (
                "" if row is None else row,
                csv_cell(col),
                csv_cell(val),
                csv_cell(why),
                csv_cell(kind),
            )
            for row, col, val, why, kind in part
        )
        yield buffer.getvalue()


# --------------------------------------------------------------------------------------
# Reverting a run
# --------------------------------------------------------------------------------------


class RevertRefused(ValueError):
    """A revert that would overwrite later changes or leave dangling references; says why."""


@dataclass
class RevertResult:
    run_id: int
    deleted: dict[str, int] = field(default_factory=dict)
    restored: dict[str, int] = field(default_factory=dict)
    #: Rows the run inserted that were already gone (deleted since): nothing to undo there.
    already_gone: int = 0

    @property
    def total_deleted(self) -> int:
        return sum(self.deleted.values())

    @property
    def total_restored(self) -> int:
        return sum(self.restored.values())

    def lines(self) -> list[str]:
        out = []
        for kind in contract.FILES:
            d, r = self.deleted.get(kind, 0), self.restored.get(kind, 0)
            if d or r:
                out.append(f"{kind}: {d:,} removed, {r:,} restored")
        if self.already_gone:
            out.append(f"{self.already_gone:,} rows it inserted had been deleted already")
        return out


@dataclass
class _KindPlan:
    spec: ContractFile
    deletes: list[dict[str, Any]] = field(default_factory=list)  # current rows
    # (current row, values to restore as stored JSON, provenance to restore)
    restores: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = field(
        default_factory=list
    )


def _chunks(items: Sequence[Any], size: int = KEY_CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def revert_run(session: Session, run_id: int, actor: Actor = SYSTEM) -> RevertResult:
    """Undo an import run: rows it inserted are removed, values it changed go back.

    Refused (:class:`RevertRefused`, nothing written) when the run is running or already
    reverted, when it changed nothing that is still stored, when any row it wrote was
    changed or deleted since by someone else (a user, the system or a later run that is
    not itself reverted — revert later runs first), or when removing a row would leave
    other records referring to nothing. Every change is an audit event by ``actor`` with
    the note "revert of run N"; the run gets ``reverted_at``/``reverted_by_id``. The
    caller commits.
    """
    session.flush()
    run = session.scalars(select(ImportRun).where(ImportRun.id == run_id).with_for_update()).first()
    if run is None:
        raise LookupError(f"there is no import run {run_id}")
    if run.reverted_at is not None:
        who = _username(session, run.reverted_by_id) if run.reverted_by_id else "the system"
        raise RevertRefused(
            f"run {run_id} was already reverted on {run.reverted_at:%Y-%m-%d %H:%M} UTC by {who}"
        )
    if run.status == RUNNING:
        raise RevertRefused(
            f"run {run_id} is still running; wait for it to finish (a run whose process "
            "was killed is marked interrupted after a while, and can be reverted then)"
        )

    note = REVERT_NOTE.format(run_id=run_id)
    problems: list[str] = []
    plans: list[_KindPlan] = []
    result = RevertResult(run_id=run_id)
    for spec in contract.FILES.values():
        plan = _plan_kind(session, run, spec, problems)
        plans.append(plan)
    expected_inserts = run.rows_inserted or 0
    found_inserts = sum(len(p.deletes) for p in plans)
    result.already_gone = max(0, expected_inserts - found_inserts)
    if not problems:
        _check_references(session, plans, problems)
    if problems:
        shown = problems[:REFUSAL_LIST]
        more = len(problems) - len(shown)
        text = "\n".join(f"- {p}" for p in shown)
        if more:
            text += f"\n- … and {more:,} more"
        raise RevertRefused(
            f"run {run_id} cannot be reverted: later changes touched rows it wrote, or "
            f"undoing it would break references. Nothing was changed.\n{text}"
        )
    if not any(p.deletes or p.restores for p in plans):
        raise RevertRefused(
            f"run {run_id} changed nothing that is still stored, so there is nothing to revert"
        )

    now = utcnow()
    for plan in plans:
        _apply_restores(session, plan, actor, note, now, problems)
    if problems:  # a stored value that no longer validates (the rules changed since)
        raise RevertRefused(
            f"run {run_id} cannot be reverted: values it replaced are no longer valid.\n"
            + "\n".join(f"- {p}" for p in problems[:REFUSAL_LIST])
        )
    for plan in plans:
        _apply_deletes(session, plan, actor, note, now)
        if plan.deletes:
            result.deleted[plan.spec.name] = len(plan.deletes)
        if plan.restores:
            result.restored[plan.spec.name] = len(plan.restores)
    session.execute(
        insert(AuditEvent.__table__).values(
            occurred_at=now,
            actor_type=actor.type,
            user_id=actor.user_id,
            run_id=actor.run_id,
            action="revert",
            entity_type="import_runs",
            entity_id=run_id,
            entity_key=f"import run {run_id}",
            changes={
                "deleted": [None, result.total_deleted],
                "restored": [None, result.total_restored],
            },
            note=note,
        )
    )
    run.reverted_at = now
    run.reverted_by_id = actor.user_id
    session.flush()
    return result


def _username(session: Session, user_id: int | None) -> str:
    if user_id is None:
        return "the system"
    name = session.scalar(select(User.username).where(User.id == user_id))
    return name or f"user #{user_id}"


def _who(session: Session, names: dict[int, str], *, user_id: Any, run_id: Any) -> str:
    if run_id is not None:
        return f"import run {run_id}"
    if user_id is not None:
        if user_id not in names:
            names[user_id] = _username(session, user_id)
        return names[user_id]
    return "the system"


def _plan_kind(
    session: Session, run: ImportRun, spec: ContractFile, problems: list[str]
) -> _KindPlan:
    """What reverting ``run`` means for one table, and why it may not be possible."""
    table: Table = spec.model.__table__  # type: ignore[attr-defined]
    plan = _KindPlan(spec)
    names: dict[int, str] = {}
    inserted = [
        dict(r)
        for r in session.execute(select(table).where(table.c.created_run_id == run.id)).mappings()
    ]
    # Updates by the run: the earliest 'before' of each field, per row.
    befores: dict[int, dict[str, Any]] = {}
    first_event: dict[int, int] = {}
    keys: dict[int, str] = {}
    for event_id, entity_id, key, changes in session.execute(
        select(AuditEvent.id, AuditEvent.entity_id, AuditEvent.entity_key, AuditEvent.changes)
        .where(
            AuditEvent.run_id == run.id,
            AuditEvent.action == "update",
            AuditEvent.entity_type == spec.name,
        )
        .order_by(AuditEvent.id)
    ):
        if entity_id is None:
            continue
        values = befores.setdefault(entity_id, {})
        first_event.setdefault(entity_id, event_id)
        keys[entity_id] = key
        for name, pair in (changes or {}).items():
            if name in spec.columns and isinstance(pair, list) and name not in values:
                values[name] = pair[0]
    inserted_ids = {r["id"] for r in inserted}
    update_ids = [i for i in befores if i not in inserted_ids]
    current: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(update_ids):
        for r in session.execute(select(table).where(table.c.id.in_(chunk))).mappings():
            current[r["id"]] = dict(r)

    # Rows the run updated that are gone: restoring them would mean re-creating them.
    gone = [i for i in update_ids if i not in current or entity_key(spec, current[i]) != keys[i]]
    if gone:
        deleters: dict[int, tuple] = {}
        for chunk in _chunks(gone):
            for eid, user_id, run_id, at in session.execute(
                select(
                    AuditEvent.entity_id,
                    AuditEvent.user_id,
                    AuditEvent.run_id,
                    AuditEvent.occurred_at,
                ).where(
                    AuditEvent.entity_type == spec.name,
                    AuditEvent.entity_id.in_(chunk),
                    AuditEvent.action == "delete",
                )
            ):
                deleters[eid] = (user_id, run_id, at)
        for i in gone:
            user_id, run_id, at = deleters.get(i, (None, None, None))
            when = f" on {at:%Y-%m-%d %H:%M} UTC" if at else ""
            problems.append(
                f"{spec.name} {keys[i]}: deleted since by "
                f"{_who(session, names, user_id=user_id, run_id=run_id)}{when}"
            )

    affected = [*inserted, *(current[i] for i in update_ids if i not in gone)]
    # Set by someone else since (a user, the system, a later run).
    changed_since: set[int] = set()
    for row in affected:
        if row["set_by_run_id"] != run.id:
            changed_since.add(row["id"])
            who = _who(session, names, user_id=row["set_by_user_id"], run_id=row["set_by_run_id"])
            at = row.get("updated_at")
            when = f" on {at:%Y-%m-%d %H:%M} UTC" if at else ""
            problems.append(f"{spec.name} {entity_key(spec, row)}: changed since by {who}{when}")
    # Later audit events on the same rows by anyone but this run (or a reverted later run).
    by_id = {r["id"]: r for r in affected}
    later = _later_events(session, run, spec, list(by_id))
    for eid, events in later.items():
        row = by_id[eid]
        if eid in changed_since:
            continue
        events = [e for e in events if e.entity_key == entity_key(spec, row)]
        if not events:
            continue
        e = events[-1]
        problems.append(
            f"{spec.name} {entity_key(spec, row)}: {e.action} since by "
            f"{_who(session, names, user_id=e.user_id, run_id=e.run_id)} "
            f"on {e.occurred_at:%Y-%m-%d %H:%M} UTC"
        )
    if problems:
        return plan

    plan.deletes = inserted
    previous = _previous_setters(session, spec, {i: first_event[i] for i in update_ids})
    for i in update_ids:
        if not befores[i]:
            continue  # the run's events name no column of this file: nothing to restore
        row = current[i]
        if i in previous:
            provenance = previous[i]
        else:  # no earlier event: set by whoever created it (an import run's bulk insert)
            provenance = {
                "set_by_run_id": row["created_run_id"],
                "set_by_user_id": row["created_by_id"],
            }
        plan.restores.append((row, befores[i], provenance))
    return plan


def _later_events(
    session: Session, run: ImportRun, spec: ContractFile, ids: Sequence[int]
) -> dict[int, list[Any]]:
    """Audit events on these rows since the run started, not by the run itself, ignoring
    those of later runs that were reverted and of their reverts."""
    out: dict[int, list[Any]] = {}
    for chunk in _chunks(ids):
        rows = session.execute(
            select(
                AuditEvent.id,
                AuditEvent.entity_id,
                AuditEvent.entity_key,
                AuditEvent.action,
                AuditEvent.user_id,
                AuditEvent.run_id,
                AuditEvent.occurred_at,
                AuditEvent.note,
            )
            .where(
                AuditEvent.entity_type == spec.name,
                AuditEvent.entity_id.in_(chunk),
                AuditEvent.occurred_at >= run.started_at,
                or_(AuditEvent.run_id.is_(None), AuditEvent.run_id != run.id),
            )
            .order_by(AuditEvent.id)
        ).all()
        for e in rows:
            out.setdefault(e.entity_id, []).append(e)
    if not out:
        return out
    run_ids = {e.run_id for events in out.values() for e in events if e.run_id is not None}
    for events in out.values():
        for e in events:
            match = _REVERT_NOTE_RE.match(e.note or "")
            if match:
                run_ids.add(int(match.group(1)))
    reverted = (
        set(
            session.scalars(
                select(ImportRun.id).where(
                    ImportRun.id.in_(run_ids), ImportRun.reverted_at.is_not(None)
                )
            )
        )
        if run_ids
        else set()
    )

    def undone(e: Any) -> bool:
        if e.run_id is not None and e.run_id in reverted:
            return True
        match = _REVERT_NOTE_RE.match(e.note or "")
        return bool(match and int(match.group(1)) in reverted)

    return {
        eid: kept for eid, events in out.items() if (kept := [e for e in events if not undone(e)])
    }


def _previous_setters(
    session: Session, spec: ContractFile, first_event: Mapping[int, int]
) -> dict[int, dict[str, Any]]:
    """Who set each row before the run's first change to it (the latest earlier event)."""
    out: dict[int, dict[str, Any]] = {}
    best: dict[int, int] = {}
    ids = list(first_event)
    for chunk in _chunks(ids):
        for eid, event_id, user_id, run_id in session.execute(
            select(
                AuditEvent.entity_id, AuditEvent.id, AuditEvent.user_id, AuditEvent.run_id
            ).where(
                AuditEvent.entity_type == spec.name,
                AuditEvent.entity_id.in_(chunk),
                AuditEvent.action.in_(("create", "update")),
            )
        ):
            if event_id < first_event[eid] and event_id > best.get(eid, -1):
                best[eid] = event_id
                out[eid] = {"set_by_run_id": run_id, "set_by_user_id": user_id}
    return out


def _check_references(session: Session, plans: list[_KindPlan], problems: list[str]) -> None:
    """No record may be left pointing at a row the revert removes, nor be restored to point
    at one that is not there."""
    by_kind = {p.spec.name: p for p in plans}
    deleted_ids = {name: {r["id"] for r in p.deletes} for name, p in by_kind.items()}
    restored = {
        name: {row["id"]: before for row, before, _ in p.restores} for name, p in by_kind.items()
    }
    for (kind, column), referrers in REFERRERS.items():
        plan = by_kind[kind]
        if not plan.deletes:
            continue
        spec = plan.spec
        table: Table = spec.model.__table__  # type: ignore[attr-defined]
        values = sorted({r[column] for r in plan.deletes if r[column]})
        if kind == "activities":
            # Another source row of the same activity that stays keeps the reference valid.
            remaining: set[str] = set()
            for chunk in _chunks(values):
                for value, rid in session.execute(
                    select(table.c.activity_id, table.c.id).where(table.c.activity_id.in_(chunk))
                ):
                    if rid not in deleted_ids[kind]:
                        remaining.add(value)
            values = [v for v in values if v not in remaining]
        if not values:
            continue
        removed_key = {r[column]: entity_key(spec, r) for r in plan.deletes}
        for model, ref_column in referrers:
            ref_spec = next(f for f in contract.FILES.values() if f.model is model)
            ref_table: Table = model.__table__
            for chunk in _chunks(values):
                for ref in session.execute(
                    select(ref_table).where(ref_table.c[ref_column].in_(chunk))
                ).mappings():
                    if ref["id"] in deleted_ids[ref_spec.name]:
                        continue
                    before = restored[ref_spec.name].get(ref["id"])
                    if before and ref_column in before and before[ref_column] != ref[ref_column]:
                        continue  # restored to point elsewhere (checked below)
                    problems.append(
                        f"{ref_spec.name} {entity_key(ref_spec, ref)} refers to "
                        f"{kind} {removed_key[ref[ref_column]]} ({ref_column}), which the "
                        "revert would remove; change or delete it first"
                    )
    # Restored references must resolve after the revert.
    for (kind, column), targets in RESTORED_REFERENCES.items():
        plan = by_kind[kind]
        wanted = {before[column]: row for row, before, _ in plan.restores if before.get(column)}
        if not wanted:
            continue
        found: set[str] = set()
        for target_kind, target_column in targets:
            t: Table = contract.get(target_kind).model.__table__  # type: ignore[attr-defined]
            for chunk in _chunks(sorted(wanted)):
                for value, rid in session.execute(
                    select(t.c[target_column], t.c.id).where(t.c[target_column].in_(chunk))
                ):
                    if rid not in deleted_ids[target_kind]:
                        found.add(value)
        for value, row in wanted.items():
            if value not in found:
                problems.append(
                    f"{kind} {entity_key(plan.spec, row)}: its earlier {column} '{value}' is "
                    "no longer stored (or the revert removes it), so it cannot be restored"
                )


def _apply_restores(
    session: Session,
    plan: _KindPlan,
    actor: Actor,
    note: str,
    now: dt.datetime,
    problems: list[str],
) -> None:
    if not plan.restores:
        return
    spec = plan.spec
    table: Table = spec.model.__table__  # type: ignore[attr-defined]
    states = state_resolver(session)
    merged = []
    for row, before, _ in plan.restores:
        values = {c: json_value(row[c]) for c in spec.columns}
        values.update(before)
        merged.append({c: ("" if v is None else v) for c, v in values.items()})
    validated = validate_rows(spec, merged, states)
    if validated.errors:
        for e in validated.errors[:REFUSAL_LIST]:
            row = plan.restores[(e.row or 1) - 1][0]
            problems.append(f"{spec.name} {entity_key(spec, row)}: {e}")
        return
    updates = []
    audits = []
    for typed, (row, _before, provenance) in zip(validated.rows, plan.restores, strict=True):
        changes = {
            c: [json_value(row[c]), json_value(typed[c])]
            for c in spec.columns
            if row[c] != typed[c]
        }
        updates.append(
            {
                **typed,
                "updated_at": now,
                "set_by_run_id": provenance["set_by_run_id"],
                "set_by_user_id": provenance["set_by_user_id"],
                "id": row["id"],
            }
        )
        audits.append(
            {
                "occurred_at": now,
                "actor_type": actor.type,
                "user_id": actor.user_id,
                "run_id": actor.run_id,
                "action": "update",
                "entity_type": spec.name,
                "entity_id": row["id"],
                "entity_key": entity_key(spec, row),
                "changes": changes,
                "note": note,
            }
        )
    bulk_update_by_id(
        session,
        table,
        updates,
        (*spec.columns, "updated_at", "set_by_run_id", "set_by_user_id"),
    )
    bulk_insert(session, AuditEvent.__table__, audits, (*AUDIT_COLUMNS, "note"))


def _apply_deletes(
    session: Session, plan: _KindPlan, actor: Actor, note: str, now: dt.datetime
) -> None:
    if not plan.deletes:
        return
    spec = plan.spec
    table: Table = spec.model.__table__  # type: ignore[attr-defined]
    audits = [
        {
            "occurred_at": now,
            "actor_type": actor.type,
            "user_id": actor.user_id,
            "run_id": actor.run_id,
            "action": "delete",
            "entity_type": spec.name,
            "entity_id": row["id"],
            "entity_key": entity_key(spec, row),
            "changes": {
                c: [json_value(row[c]), None] for c in spec.columns if row[c] not in (None, "")
            },
            "note": note,
        }
        for row in plan.deletes
    ]
    bulk_insert(session, AuditEvent.__table__, audits, (*AUDIT_COLUMNS, "note"))
    ids = [r["id"] for r in plan.deletes]
    for chunk in _chunks(ids):
        session.execute(delete(table).where(table.c.id.in_(chunk)))
