"""Exports of every list: the contract files, import runs, the audit log, findings and trust
scores, each with the filters of its page, stamped and streamed.

One :class:`ExportJob` describes what one list page (or ``cbm export KIND``) exports: the
validated filters, the columns, a row source, a ``COUNT`` and a data-version stamp. The web
views and the CLI build jobs with :func:`build_job` from the *same* query-string values the
page reads (the filter rules live in :mod:`cbm.queries` and :mod:`cbm.services.findings`,
never here), then write them with :func:`iter_csv` (or the XLSX and JSON writers of
:mod:`cbm.services.export_formats`).

**Deterministic.** Contract files are written by :mod:`cbm.services.exports` (contract
columns and notation, natural-key order) and re-import as the same data. The other lists
come in the page's order with a unique tie-breaker (newest first by id), timestamps in UTC
(``…Z``), no locale anywhere: the same data and filters give the same bytes.

**Stamped.** :func:`take_stamp` reads the row count (``COUNT`` with the same conditions)
and a *data version* in the export's own transaction (see :func:`open_snapshot`), before the
first byte is streamed, so HTTP headers can carry them:

=====================  ================================================================
kind                   data version
=====================  ================================================================
contract file          ``<latest updated_at of the kind>;<records of the kind>``: changes
                       with every create, update and delete of that kind
``runs``               ``<highest run id>;<latest start/finish/heartbeat/revert time>``
``audit``              ``<highest audit event id>`` (the log is append-only)
``findings``           ``<highest finding event id>;<findings stored>``
``trust_scores``       ``<trust run id>`` (the run the scores come from)
``sources``            ``<latest update or success>;<sources>``
``users``, ``checks``  see :mod:`cbm.services.export_pages`; rules, deadlines and jobs
                       (computed lists): a digest of their rows
=====================  ================================================================

An empty table's timestamp is ``-``. The stamp is about the whole list, not the filtered
rows: if it is unchanged, so is every filtered export of that list.

**Excel-safe.** ``excel_safe=True`` gives every cell that a spreadsheet would take for a
formula (``=``, ``+``, ``-``, ``@``, tab, CR) a leading ``'`` with
:func:`cbm.services.imports.csv_cell`. The default writes the data as it is (a contract
export then re-imports as the same data; an excel-safe one does not). Findings were always
written excel-safe (their CSV is for people) and still are.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlencode

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, aliased, sessionmaker

from cbm import contract
from cbm.models import AuditEvent, ImportRun, User
from cbm.services.exports import (
    BOM,
    EXPORT_CHUNK,
    LINE_END,
    format_timestamp,
    iter_contract_cells,
    iter_contract_csv_text,
)
from cbm.services.imports import csv_cell

#: The lists that are not contract files, besides the contract kinds.
OTHER_KINDS = (
    "runs",
    "audit",
    "findings",
    "trust_scores",
    "sources",
    "users",
    "rules",
    "checks",
    "deadlines",
    "jobs",
)
FORMATS = ("csv", "xlsx", "json")
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "json": "application/json",
}

#: Chunks of rows. A cell is text, or a value ``csv.writer`` writes as its contract text
#: (``None`` → empty, an int, a date): see :func:`text_rows`.
Chunks = Iterator[Sequence[Sequence[Any]]]


class ExportFilterError(ValueError):
    """Filters that cannot be used: ``errors`` maps each argument name to a message."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{name}: {message}" for name, message in self.errors.items()))


@dataclass
class ExportJob:
    """One list to export: what the page shows, with its filters, in a stable order."""

    kind: str
    #: The filters in force, by query-string name, in canonical form (a State as its code).
    filters: dict[str, str]
    columns: tuple[str, ...]
    #: ``rows(session, chunk_size)``: the cells, as text, ``chunk_size`` rows at a time.
    rows: Callable[[Session, int], Chunks]
    count: Callable[[Session], int]
    version: Callable[[Session], str]
    #: Contract files re-import; their types matter to the JSON and XLSX writers.
    spec: contract.ContractFile | None = None
    #: The rows are already neutralised for spreadsheets (findings).
    always_excel_safe: bool = False
    #: The SELECT behind ``rows`` (its columns are ``columns``), for callers that page the
    #: same list instead of streaming it (the JSON API); None where rows are built otherwise.
    statement: Any = None
    #: Columns whose text may quote a source URL with its credentials: the export's rows
    #: and every other reader of ``statement`` (the JSON API) write them redacted.
    secret_columns: tuple[str, ...] = ()
    #: ``csv_text(session, chunk_size)``: the rows as CSV text, where written otherwise than
    #: ``csv.writer`` over ``rows`` (contract files: by the server on PostgreSQL).
    csv_text: Callable[[Session, int], Iterator[str]] | None = None

    def redacted(self, values: Sequence[Any]) -> list[Any]:
        """One row of ``statement`` with its secret columns redacted."""
        from cbm.services.redaction import redact

        out = list(values)
        for name in self.secret_columns:
            i = self.columns.index(name)
            if isinstance(out[i], str):
                out[i] = redact(out[i])
        return out

    @property
    def filter_text(self) -> str:
        """The filters as a query string (``state=DEU&year=2024``; empty for none)."""
        return urlencode(self.filters)

    def file_name(self, fmt: str = "csv") -> str:
        """A stable name: the kind and the filters, no date (``activities_state-DEU.csv``)."""
        stem = self.kind
        for name, value in self.filters.items():
            stem += f"_{name}-{_SLUG.sub('-', value).strip('-') or 'x'}"
        if len(stem) > 100:
            digest = hashlib.sha256(self.filter_text.encode("utf-8")).hexdigest()[:12]
            stem = f"{self.kind}_{digest}"
        return f"{stem}.{fmt}"


_SLUG = re.compile(r"[^A-Za-z0-9._]+")


@dataclass(frozen=True)
class Stamp:
    """What an export is, told before its first byte: when, how many rows, which data."""

    generated_at: dt.datetime
    rows: int
    data_version: str

    @property
    def generated_text(self) -> str:
        return format_timestamp(self.generated_at.replace(microsecond=0))


def take_stamp(session: Session, job: ExportJob) -> Stamp:
    """Count the rows and read the data version (in ``session``'s transaction, so the
    stream that follows on the same session sees the same rows: see :func:`open_snapshot`)."""
    return Stamp(dt.datetime.now(dt.UTC), int(job.count(session)), job.version(session))


def open_snapshot(factory: sessionmaker[Session]) -> Session:
    """A session for one export: its count, stamp and rows read one snapshot.

    PostgreSQL: the transaction is REPEATABLE READ (one snapshot for every statement) when
    the session opens its own connection from an engine (a session bound to a connection
    that is already in a transaction, as in the tests, keeps that transaction). SQLite:
    ``cbm.db`` begins a transaction at the first statement and a read transaction sees one
    snapshot until it ends. The caller closes the session (in the streaming generator's
    ``finally`` and on the response's close).
    """
    session = factory()
    bind = session.get_bind()
    if isinstance(bind, Engine) and bind.dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    return session


# --------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------


def _safe_rows(rows: Sequence[Sequence[Any]]) -> list[list[str]]:
    return [[csv_cell(cell) for cell in row] for row in rows]


def text_rows(rows: Sequence[Sequence[Any]]) -> list[list[str]]:
    """Rows of :data:`Chunks` as text cells."""
    return [["" if v is None else str(v) for v in row] for row in rows]


def iter_csv(
    session: Session,
    job: ExportJob,
    *,
    excel_safe: bool = False,
    bom: bool = False,
    chunk_size: int = EXPORT_CHUNK,
) -> Iterator[str]:
    """The export as RFC 4180 CSV text in pieces (CRLF line ends): the header first, then
    ``chunk_size`` rows per piece. Memory does not grow with the number of rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=LINE_END)
    writer.writerow(job.columns)
    yield (BOM if bom else "") + buffer.getvalue()
    safe = excel_safe and not job.always_excel_safe
    if job.csv_text is not None and not safe:
        yield from job.csv_text(session, chunk_size)
        return
    for rows in job.rows(session, chunk_size):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(_safe_rows(rows) if safe else rows)
        yield buffer.getvalue()


def iter_bytes(
    session: Session, job: ExportJob, fmt: str = "csv", *, excel_safe: bool = False
) -> Iterator[bytes]:
    """The export in ``fmt`` (csv, xlsx or json) as bytes, streamed."""
    if fmt == "csv":
        return (piece.encode("utf-8") for piece in iter_csv(session, job, excel_safe=excel_safe))
    from cbm.services import export_formats

    if fmt == "json":
        return export_formats.iter_json(session, job, excel_safe=excel_safe)
    if fmt == "xlsx":
        return export_formats.iter_xlsx(session, [job], excel_safe=excel_safe)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


@dataclass
class Written:
    """What :func:`write_export` wrote: bytes, their SHA-256."""

    size: int = 0
    sha256: str = ""


def write_export(pieces: Iterator[bytes], fp: IO[bytes]) -> Written:
    """Write ``pieces`` to ``fp``, hashing them on the way."""
    digest = hashlib.sha256()
    size = 0
    for piece in pieces:
        digest.update(piece)
        size += len(piece)
        fp.write(piece)
    return Written(size, digest.hexdigest())


def digest_of(pieces: Iterator[bytes]) -> Written:
    """The size and SHA-256 of an export, computed as it streams (nothing is kept)."""
    digest = hashlib.sha256()
    size = 0
    for piece in pieces:
        digest.update(piece)
        size += len(piece)
    return Written(size, digest.hexdigest())


def headers(job: ExportJob, stamp: Stamp, fmt: str = "csv", *, excel_safe: bool = False) -> dict:
    """The HTTP headers of an export response (every value ASCII)."""
    return {
        "Content-Disposition": f'attachment; filename="{job.file_name(fmt)}"',
        "Cache-Control": "no-store",
        "X-Export-Kind": job.kind,
        "X-Export-Filter": job.filter_text,
        "X-Export-Generated-At": stamp.generated_text,
        "X-Export-Rows": str(stamp.rows),
        "X-Export-Data-Version": stamp.data_version,
        "X-Export-Excel-Safe": "true" if (excel_safe or job.always_excel_safe) else "false",
    }


def manifest(
    job: ExportJob, stamp: Stamp, written: Written, fmt: str = "csv", *, excel_safe: bool = False
) -> dict[str, Any]:
    """The JSON manifest of an export: what, which filters, when, how many rows, which data
    version, and the size and SHA-256 of its bytes."""
    return {
        "kind": job.kind,
        "format": fmt,
        "file_name": job.file_name(fmt),
        "filters": dict(job.filters),
        "filter": job.filter_text,
        "generated_at": stamp.generated_text,
        "rows": stamp.rows,
        "data_version": stamp.data_version,
        "excel_safe": excel_safe or job.always_excel_safe,
        "columns": list(job.columns),
        "bytes": written.size,
        "sha256": written.sha256,
    }


#: The file name of the workbook of every contract sheet, when it is downloaded.
WORKBOOK_NAME = "cbm-all.xlsx"


def workbook_jobs(session: Session) -> list[ExportJob]:
    """Every contract file, unfiltered, in load order: the sheets of the workbook that
    ``cbm export all --format xlsx`` writes and ``cbm import FILE.xlsx`` reads back."""
    return [build_job(session, kind, {}) for kind in contract.LOAD_ORDER]


def workbook_headers(
    jobs: list[ExportJob], stamps: list[Stamp], name: str, *, excel_safe: bool = False
) -> dict[str, str]:
    """The headers of a workbook of several lists: the kinds, the rows of all sheets, and
    each sheet's data version (``kind=version;…``)."""
    return {
        "Content-Disposition": f'attachment; filename="{name}"',
        "Cache-Control": "no-store",
        "X-Export-Kind": "all",
        "X-Export-Sheets": ",".join(job.kind for job in jobs),
        "X-Export-Filter": "",
        "X-Export-Generated-At": stamps[0].generated_text if stamps else "",
        "X-Export-Rows": str(sum(stamp.rows for stamp in stamps)),
        "X-Export-Data-Version": ",".join(
            f"{job.kind}={stamp.data_version}" for job, stamp in zip(jobs, stamps, strict=True)
        ),
        "X-Export-Excel-Safe": "true" if excel_safe else "false",
    }


def workbook_manifest(
    jobs: list[ExportJob], stamps: list[Stamp], written: Written, name: str
) -> dict[str, Any]:
    """The manifest of a workbook, as ``cbm export all --format xlsx --manifest`` writes it."""
    return {
        "kind": "all",
        "format": "xlsx",
        "file_name": name,
        "generated_at": stamps[0].generated_text if stamps else "",
        "sheets": {job.kind: stamp.rows for job, stamp in zip(jobs, stamps, strict=True)},
        "rows": sum(stamp.rows for stamp in stamps),
        "data_version": {
            job.kind: stamp.data_version for job, stamp in zip(jobs, stamps, strict=True)
        },
        "bytes": written.size,
        "sha256": written.sha256,
    }


def manifest_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------------------
# building jobs from query-string values (the pages' own parsers)
# --------------------------------------------------------------------------------------


def export_kinds() -> tuple[str, ...]:
    return (*contract.FILES, *OTHER_KINDS)


def build_job(session: Session, kind: str, args: Mapping[str, str]) -> ExportJob:
    """The export of list ``kind`` with the filters in ``args`` (query-string values, as
    the list page reads them; arguments that are not filters, such as ``page`` or
    ``sort``, are ignored). Raises :class:`ExportFilterError` naming each bad filter."""
    if kind in contract.FILES:
        return contract_job(session, kind, args)
    builders = {
        "runs": runs_job,
        "audit": audit_job,
        "findings": findings_job,
        "trust_scores": trust_job,
        "sources": sources_job,
    }
    from cbm.services.export_pages import BUILDERS

    builders.update(BUILDERS)
    if kind not in builders:
        raise ValueError(f"there is no list {kind!r}; choose one of {', '.join(export_kinds())}")
    return builders[kind](session, args)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _latest(value: dt.datetime | None) -> str:
    return format_timestamp(value) if value is not None else "-"


def _chunks(session: Session, stmt: Any, chunk_size: int, row: Callable[[Any], list[str]]):
    result = session.execute(stmt.execution_options(yield_per=chunk_size))
    try:
        for part in result.partitions():
            yield [row(r) for r in part]
    finally:
        result.close()


# -- contract files --------------------------------------------------------------------


def contract_job(session: Session, kind: str, args: Mapping[str, str]) -> ExportJob:
    """A contract file with the record list's filters (regime, state, region, year, kind,
    q), parsed by :func:`cbm.queries.records.parse_list_args`: contract columns, natural-key
    order, re-importable."""
    from cbm.queries import records as q

    spec = contract.get(kind)
    given = {k: str(args[k]).strip() for k in q.FILTER_ARGS if args.get(k) and str(args[k]).strip()}
    params, errors = q.parse_list_args(session, spec, given)
    if errors:
        raise ExportFilterError(errors)
    where = q.list_conditions(session, spec, params)
    chosen = {
        "regime": params.regime,
        "state": params.state,
        "region": params.region,
        "year": params.year,
        "kind": params.kind,
        "q": params.q,
    }
    filters = {k: str(v) for k, v in chosen.items() if v not in (None, "")}
    table = spec.model.__table__  # type: ignore[attr-defined]

    def rows(s: Session, chunk_size: int) -> Chunks:
        # Cells csv.writer writes as contract text (None, ints, dates as they come).
        return iter_contract_cells(s, spec, where=where, chunk_size=chunk_size)

    def count(s: Session) -> int:
        return s.scalar(select(func.count()).select_from(table).where(*where)) or 0

    def version(s: Session) -> str:
        latest, n = s.execute(
            select(func.max(table.c.updated_at), func.count()).select_from(table)
        ).one()
        return f"{_latest(latest)};{n}"

    def csv_text(s: Session, chunk_size: int) -> Iterator[str]:
        return iter_contract_csv_text(s, spec, where=where, chunk_size=chunk_size)

    return ExportJob(
        spec.name, filters, spec.columns, rows, count, version, spec=spec, csv_text=csv_text
    )


# -- import runs -----------------------------------------------------------------------

RUN_COLUMNS: tuple[str, ...] = (
    "run_id",
    "source",
    "location",
    "importer",
    "importer_version",
    "kind",
    "status",
    "started_at",
    "finished_at",
    "rows_read",
    "rows_inserted",
    "rows_updated",
    "rows_unchanged",
    "rows_rejected",
    "all_or_nothing",
    "checksum",
    "started_by",
    "message",
    "reverted_at",
    "reverted_by",
)
#: A run's location and message may quote a source URL with its credentials.
RUN_SECRET_COLUMNS = ("location", "message")


def runs_job(session: Session, args: Mapping[str, str]) -> ExportJob:
    """Import runs with the Imports page's filters (status, source, kind), newest first."""
    from cbm.queries.runs import parse_run_filters, run_conditions

    parsed = parse_run_filters(args)
    if parsed.errors:
        raise ExportFilterError(parsed.errors)
    where = run_conditions(parsed)
    starter, reverter = aliased(User), aliased(User)
    r = ImportRun
    stmt = (
        select(
            r.id,
            r.source_name,
            r.location,
            r.importer,
            r.importer_version,
            r.kind,
            r.status,
            r.started_at,
            r.finished_at,
            r.rows_read,
            r.rows_inserted,
            r.rows_updated,
            r.rows_unchanged,
            r.rows_rejected,
            r.all_or_nothing,
            r.checksum,
            starter.username,
            r.message,
            r.reverted_at,
            reverter.username,
        )
        .outerjoin(starter, starter.id == r.user_id)
        .outerjoin(reverter, reverter.id == r.reverted_by_id)
        .where(*where)
        .order_by(r.id.desc())
    )

    from cbm.services.redaction import redact

    secret = [RUN_COLUMNS.index(name) for name in RUN_SECRET_COLUMNS]

    def row(values: Any) -> list[str]:
        cells = [_text(v) for v in values]
        # A run's location and message may quote a source URL with its credentials.
        for i in secret:
            cells[i] = redact(cells[i])
        return cells

    def rows(s: Session, chunk_size: int) -> Chunks:
        return _chunks(s, stmt, chunk_size, row)

    def count(s: Session) -> int:
        return s.scalar(select(func.count()).select_from(r).where(*where)) or 0

    def version(s: Session) -> str:
        top, *times = s.execute(
            select(
                func.max(r.id),
                func.max(r.started_at),
                func.max(r.finished_at),
                func.max(r.heartbeat_at),
                func.max(r.reverted_at),
            )
        ).one()
        known = [t for t in times if t is not None]
        return f"{top or 0};{_latest(max(known) if known else None)}"

    return ExportJob(
        "runs",
        parsed.active,
        RUN_COLUMNS,
        rows,
        count,
        version,
        statement=stmt,
        secret_columns=RUN_SECRET_COLUMNS,
    )


# -- the audit log ---------------------------------------------------------------------

AUDIT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "occurred_at",
    "actor",
    "actor_type",
    "username",
    "run_id",
    "action",
    "entity_type",
    "entity_id",
    "entity_key",
    "changes",
    "note",
)


#: The audit entity type of import sources (:data:`cbm.services.sources.ENTITY_TYPE`).
SOURCES_ENTITY = "sources"


def _changes_text(value: Any) -> str:
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def audit_job(session: Session, args: Mapping[str, str]) -> ExportJob:
    """The audit log with its page's filters (actor, action, entity_type, key, from, to),
    newest first; ``changes`` as compact JSON with sorted keys."""
    from cbm.queries.audit import _conditions, actor_filter_text, parse_filters

    values = {k: v for k, v in args.items() if k != "page"}
    parsed = parse_filters(values)
    if parsed.errors:
        raise ExportFilterError(parsed.errors)
    f = parsed.filters
    chosen = {
        "actor": f.actor.text if f.actor else None,
        "action": f.action,
        "entity_type": f.entity_type,
        "key": f.key,
        "from": f.date_from.isoformat() if f.date_from else None,
        "to": f.date_to.isoformat() if f.date_to else None,
    }
    filters = {k: v for k, v in chosen.items() if v}
    where = _conditions(f)
    ev = AuditEvent
    stmt = (
        select(
            ev.id,
            ev.occurred_at,
            ev.actor_type,
            User.username,
            ev.run_id,
            ev.action,
            ev.entity_type,
            ev.entity_id,
            ev.entity_key,
            ev.changes,
            ev.note,
        )
        .outerjoin(User, User.id == ev.user_id)
        .where(*where)
        .order_by(ev.occurred_at.desc(), ev.id.desc())
    )

    from cbm.services.redaction import redact

    def row(r: Any) -> list[str]:
        changes = _changes_text(r.changes)
        return [
            str(r.id),
            _text(r.occurred_at),
            actor_filter_text(r.actor_type, r.username, r.run_id),
            r.actor_type,
            r.username or "",
            _text(r.run_id),
            r.action,
            r.entity_type,
            _text(r.entity_id),
            r.entity_key,
            # A source's location (before and after) may hold credentials.
            redact(changes) if r.entity_type == SOURCES_ENTITY else changes,
            r.note or "",
        ]

    def rows(s: Session, chunk_size: int) -> Chunks:
        return _chunks(s, stmt, chunk_size, row)

    def count(s: Session) -> int:
        return s.scalar(select(func.count()).select_from(ev).where(*where)) or 0

    def version(s: Session) -> str:
        return str(s.scalar(select(func.max(ev.id))) or 0)

    return ExportJob("audit", filters, AUDIT_COLUMNS, rows, count, version)


# -- findings --------------------------------------------------------------------------


def findings_job(session: Session, args: Mapping[str, str]) -> ExportJob:
    """Findings with the Findings page's filters: the same bytes as ``/findings.csv``
    (:func:`cbm.services.findings.iter_findings_csv`, excel-safe by design)."""
    from cbm.models import Finding, FindingEvent
    from cbm.services.findings import (
        FINDINGS_CSV_COLUMNS,
        FilterError,
        FindingFilters,
        conditions,
        iter_findings_csv,
    )

    try:
        filters = FindingFilters.from_mapping(session, args)
    except FilterError as exc:
        raise ExportFilterError(exc.errors) from None
    where = conditions(filters)

    def rows(s: Session, chunk_size: int) -> Chunks:
        # The findings writer is the reference (its columns and cells); parse its pieces
        # back into cells so the other formats share them.
        pieces = iter_findings_csv(s, filters, chunk=chunk_size)
        next(pieces)  # the header
        for piece in pieces:
            yield list(csv.reader(io.StringIO(piece, newline="")))

    def count(s: Session) -> int:
        return s.scalar(select(func.count()).select_from(Finding).where(*where)) or 0

    def version(s: Session) -> str:
        top, n = s.execute(
            select(
                select(func.max(FindingEvent.id)).scalar_subquery(),
                select(func.count()).select_from(Finding).scalar_subquery(),
            )
        ).one()
        return f"{top or 0};{n}"

    return ExportJob(
        "findings",
        filters.as_query_args(),
        FINDINGS_CSV_COLUMNS,
        rows,
        count,
        version,
        always_excel_safe=True,
    )


# -- trust scores ----------------------------------------------------------------------

TRUST_COLUMNS: tuple[str, ...] = (
    "run_id",
    "method_version",
    "level",
    "subject",
    "year",
    "signal",
    "score",
    "items",
    "change",
    "worst",
)
TRUST_LEVELS = ("state", "region", "osce")
TRUST_FILTERS = ("level", "subject", "state", "year", "signal", "run")


def trust_job(session: Session, args: Mapping[str, str]) -> ExportJob:
    """Trust scores of the latest successful trust run (or ``run``), filtered by ``level``
    (state, region, osce), ``subject`` (a State or region code; ``state`` resolves a State's
    name too), ``year`` and ``signal`` (``index`` for the composite), ordered by level,
    subject, year and signal."""
    from cbm.models import TrustRun, TrustScore
    from cbm.services.records import state_resolver

    raw = {k: (str(args.get(k) or "")).strip() for k in TRUST_FILTERS}
    errors: dict[str, str] = {}
    filters: dict[str, str] = {}
    if raw["level"]:
        if raw["level"] in TRUST_LEVELS:
            filters["level"] = raw["level"]
        else:
            errors["level"] = f"'{raw['level'][:40]}' is not a level; choose state, region or osce"
    if raw["state"]:
        code = state_resolver(session).resolve(raw["state"])
        if code:
            filters["subject"] = code
        else:
            errors["state"] = f"'{raw['state'][:40]}' is not a known participating State"
    if raw["subject"]:
        filters["subject"] = raw["subject"][:40]
    if raw["year"]:
        if raw["year"].isascii() and raw["year"].isdigit() and 1900 <= int(raw["year"]) <= 2200:
            filters["year"] = raw["year"]
        else:
            errors["year"] = f"'{raw['year'][:20]}' is not a year; enter four digits such as 2024"
    if raw["signal"]:
        filters["signal"] = raw["signal"][:30]
    run_id: int | None = None
    if raw["run"]:
        if raw["run"].isdigit():
            run_id = int(raw["run"])
            filters["run"] = raw["run"]
        else:
            errors["run"] = f"'{raw['run'][:20]}' is not a trust run number"
    if errors:
        raise ExportFilterError(errors)
    if run_id is None:
        run_id = session.scalar(select(func.max(TrustRun.id)).where(TrustRun.status == "succeeded"))
    ts = TrustScore
    where: list[Any] = [ts.run_id == (run_id if run_id is not None else -1)]
    for name in ("level", "subject", "signal"):
        if name in filters:
            where.append(getattr(ts, name) == filters[name])
    if "year" in filters:
        where.append(ts.year == int(filters["year"]))
    stmt = (
        select(
            ts.run_id,
            TrustRun.method_version,
            ts.level,
            ts.subject,
            ts.year,
            ts.signal,
            ts.score,
            ts.items,
            ts.change,
            ts.worst,
        )
        .join(TrustRun, TrustRun.id == ts.run_id)
        .where(*where)
        .order_by(ts.level, ts.subject, ts.year, ts.signal, ts.id)
    )

    def rows(s: Session, chunk_size: int) -> Chunks:
        return _chunks(s, stmt, chunk_size, lambda r: [_text(v) for v in r])

    def count(s: Session) -> int:
        return s.scalar(select(func.count()).select_from(ts).where(*where)) or 0

    def version(s: Session) -> str:
        return str(run_id or 0)

    return ExportJob("trust_scores", filters, TRUST_COLUMNS, rows, count, version, statement=stmt)


# -- import sources --------------------------------------------------------------------

SOURCE_COLUMNS: tuple[str, ...] = (
    "name",
    "status",
    "importer",
    "kind",
    "location",
    "schedule",
    "all_or_nothing",
    "created_at",
    "updated_at",
    "last_success_at",
    "last_error",
)


def sources_job(session: Session, args: Mapping[str, str]) -> ExportJob:
    """Import sources with the Sources page's filters (status, importer, kind, q), by name.
    Secrets in a location or an error message (a URL's password, ``token=`` and the like,
    auth header values) are written ``***`` (:func:`cbm.services.redaction.redact`): the
    file travels, the credentials must not."""
    from cbm.models import Source
    from cbm.queries.sources import parse_source_filters, source_conditions
    from cbm.services.redaction import redact

    parsed = parse_source_filters(args)
    if parsed.errors:
        raise ExportFilterError(parsed.errors)
    where = source_conditions(parsed)
    so = Source
    stmt = (
        select(
            so.name,
            so.enabled,
            so.importer,
            so.kind,
            so.location,
            so.schedule,
            so.all_or_nothing,
            so.created_at,
            so.updated_at,
            so.last_success_at,
            so.last_error,
        )
        .where(*where)
        .order_by(so.name)
    )

    def row(r: Any) -> list[str]:
        return [
            r.name,
            "enabled" if r.enabled else "disabled",
            r.importer,
            r.kind or "",
            redact(r.location),
            r.schedule or "",
            _text(r.all_or_nothing),
            _text(r.created_at),
            _text(r.updated_at),
            _text(r.last_success_at),
            redact(r.last_error),
        ]

    def rows(s: Session, chunk_size: int) -> Chunks:
        return _chunks(s, stmt, chunk_size, row)

    def count(s: Session) -> int:
        return s.scalar(select(func.count()).select_from(so).where(*where)) or 0

    def version(s: Session) -> str:
        updated, success, n = s.execute(
            select(func.max(so.updated_at), func.max(so.last_success_at), func.count())
        ).one()
        known = [t for t in (updated, success) if t is not None]
        return f"{_latest(max(known) if known else None)};{n}"

    return ExportJob("sources", parsed.active, SOURCE_COLUMNS, rows, count, version)


def describe_filters(kind: str) -> Sequence[str]:
    """The filter names of a list (for help texts)."""
    from cbm.queries import records as q
    from cbm.queries.runs import FILTER_ARGS as RUN_ARGS
    from cbm.queries.sources import FILTER_ARGS as SOURCE_ARGS
    from cbm.services.export_pages import FILTERS as PAGE_FILTERS

    if kind in contract.FILES:
        return q.FILTER_ARGS
    return {
        "runs": RUN_ARGS,
        "audit": ("actor", "action", "entity_type", "key", "from", "to"),
        "findings": (
            "rule_id",
            "regime",
            "severity",
            "status",
            "state",
            "counterpart",
            "period",
            "due_from",
            "due_to",
            "q",
        ),
        "trust_scores": TRUST_FILTERS,
        "sources": SOURCE_ARGS,
        **PAGE_FILTERS,
    }[kind]


__all__ = [
    "FORMATS",
    "MEDIA_TYPES",
    "ExportFilterError",
    "ExportJob",
    "Stamp",
    "build_job",
    "digest_of",
    "headers",
    "iter_bytes",
    "iter_csv",
    "manifest",
    "open_snapshot",
    "take_stamp",
    "workbook_headers",
    "workbook_jobs",
    "workbook_manifest",
    "write_export",
]
