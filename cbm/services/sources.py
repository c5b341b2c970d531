"""Import sources: configure them (validated, audited) and import from one.

A source names where rows come from (a file, a drop folder or glob, an HTTP(S) URL), how to
read them (``importer``, ``kind``, ``all_or_nothing``) and when (``schedule``, in UTC). The
admin pages, ``cbm source …`` and the scheduler all go through these functions.

- Every change writes an :class:`~cbm.models.AuditEvent` (``entity_type`` ``sources``) in the
  caller's transaction, with the before and after value of each changed field.
- A source's ``name`` is its identity (job ``import:<name>``, the import runs it made): it
  cannot be changed. Remove the source and add it again under the new name instead.
- A source that has import runs cannot be removed: the runs, and the rows they wrote, name
  it. Disable it instead (``remove_source(..., disable_if_used=True)`` does that).

:func:`fetch_and_import` is the work of the ``import:<name>`` job: read the location with
the source's bookkeeping (conditional HTTP request, checksum, drop-folder files), import what
changed through :func:`cbm.services.imports.run_import`, and remember what was read.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from cbm import contract
from cbm.db import retry_while_unreachable, session_scope, utcnow
from cbm.jobs import UNCHANGED, ScheduleError, normalize_schedule
from cbm.models import ImportRun, Source
from cbm.services import imports
from cbm.services.records import SYSTEM, Actor, audit_event

IMPORTERS: tuple[str, ...] = ("auto", "csv", "xlsx", "json")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MAX_LOCATION = 2000
ENTITY_TYPE = "sources"
#: The fields a person sets, in the order forms and the audit log show them.
FIELDS: tuple[str, ...] = (
    "name",
    "location",
    "importer",
    "kind",
    "schedule",
    "enabled",
    "all_or_nothing",
)


class SourceError(ValueError):
    """A refused change; ``field`` names the form field concerned (or None)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# --- validation -----------------------------------------------------------------------


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise SourceError(
            "a source name has 1 to 100 characters: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            "name",
        )
    return name


def check_importer(importer: str | None) -> str:
    importer = (importer or "auto").strip().lower()
    if importer not in IMPORTERS:
        raise SourceError(
            f"'{importer}' is not an importer; use one of {', '.join(IMPORTERS)} "
            "(auto chooses by the file name or content type)",
            "importer",
        )
    return importer


def check_kind(kind: str | None) -> str | None:
    kind = (kind or "").strip()
    if not kind:
        return None
    if kind not in contract.FILES:
        raise SourceError(
            f"'{kind}' is not a kind of record; use one of {', '.join(contract.FILES)}, or "
            "leave it empty to take the kind from each file's name",
            "kind",
        )
    return kind


def check_schedule(schedule: str | None) -> str:
    try:
        return normalize_schedule(schedule)
    except ScheduleError as exc:
        raise SourceError(f"schedule {exc}", "schedule") from None


def check_location(location: str) -> str:
    """A location is an absolute path (a file, a folder or a glob) or an http(s) URL."""
    location = (location or "").strip()
    if not location:
        raise SourceError("give a location: a file, a folder, a glob or an http(s) URL", "location")
    if len(location) > MAX_LOCATION:
        raise SourceError(f"the location is longer than {MAX_LOCATION} characters", "location")
    if any(ord(c) < 32 for c in location):
        raise SourceError("the location contains control characters", "location")
    if "://" in location:
        parts = urlsplit(location)
        if parts.scheme.lower() not in ("http", "https"):
            raise SourceError(
                f"'{parts.scheme}://' locations are not supported; use an http(s) URL or a "
                "path on this machine",
                "location",
            )
        if not parts.hostname:
            raise SourceError(f"'{location}' has no host name", "location")
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise SourceError(f"'{location}' has a malformed port", "location") from None
        return location
    if not location.startswith("/"):
        raise SourceError(
            f"'{location}' is a relative path; give an absolute path (the scheduler may run "
            "in another directory), e.g. /srv/cbm/drop/*.csv",
            "location",
        )
    return location


def is_url(location: str) -> bool:
    return location.lower().startswith(("http://", "https://"))


# --- reading --------------------------------------------------------------------------


def get_source(session: Session, name: str) -> Source:
    source = session.scalar(select(Source).where(Source.name == (name or "").strip()))
    if source is None:
        raise SourceError(f"there is no source named '{name}'")
    return source


def list_sources(session: Session) -> list[Source]:
    return list(session.scalars(select(Source).order_by(Source.name)))


def run_count(session: Session, source: Source) -> int:
    """How many import runs this source made (by id, or by name for older runs)."""
    return (
        session.scalar(
            select(func.count())
            .select_from(ImportRun)
            .where(
                or_(
                    ImportRun.source_id == source.id,
                    (ImportRun.source_id.is_(None)) & (ImportRun.source_name == source.name),
                )
            )
        )
        or 0
    )


# --- writing --------------------------------------------------------------------------


def _audit(
    session: Session, actor: Actor, action: str, source: Source, changes: dict[str, Any]
) -> None:
    audit_event(session, actor, action, ENTITY_TYPE, source.id, source.name, changes)


def _values(source: Source) -> dict[str, Any]:
    return {name: getattr(source, name) for name in FIELDS}


def add_source(
    session: Session,
    name: str,
    location: str,
    *,
    importer: str = "auto",
    kind: str | None = None,
    schedule: str = "",
    enabled: bool = True,
    all_or_nothing: bool = False,
    actor: Actor = SYSTEM,
) -> Source:
    """Create a source (validated; audited). Raises :class:`SourceError`."""
    name = check_name(name)
    existing = session.scalar(select(Source).where(func.lower(Source.name) == name.lower()))
    if existing is not None:
        raise SourceError(f"a source named '{existing.name}' already exists", "name")
    source = Source(
        name=name,
        location=check_location(location),
        importer=check_importer(importer),
        kind=check_kind(kind),
        schedule=check_schedule(schedule),
        enabled=bool(enabled),
        all_or_nothing=bool(all_or_nothing),
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    session.add(source)
    session.flush()
    _audit(
        session,
        actor,
        "create",
        source,
        {k: [None, v] for k, v in _values(source).items() if v not in (None, "")},
    )
    session.flush()
    return source


_UNSET: Any = object()


def update_source(
    session: Session,
    name: str,
    *,
    location: str = _UNSET,
    importer: str = _UNSET,
    kind: str | None = _UNSET,
    schedule: str = _UNSET,
    enabled: bool = _UNSET,
    all_or_nothing: bool = _UNSET,
    actor: Actor = SYSTEM,
) -> Source:
    """Change the given fields of a source (the others stay). Audited when anything changed.

    A changed location or importer forgets what was read before (ETag, Last-Modified,
    checksum), so the next run reads the new location in full.
    """
    source = get_source(session, name)
    wanted: dict[str, Any] = {}
    if location is not _UNSET:
        wanted["location"] = check_location(location)
    if importer is not _UNSET:
        wanted["importer"] = check_importer(importer)
    if kind is not _UNSET:
        wanted["kind"] = check_kind(kind)
    if schedule is not _UNSET:
        wanted["schedule"] = check_schedule(schedule)
    if enabled is not _UNSET:
        wanted["enabled"] = bool(enabled)
    if all_or_nothing is not _UNSET:
        wanted["all_or_nothing"] = bool(all_or_nothing)
    changes = {
        key: [getattr(source, key), value]
        for key, value in wanted.items()
        if getattr(source, key) != value
    }
    if not changes:
        return source
    for key, (_before, after) in changes.items():
        setattr(source, key, after)
    if "location" in changes or "importer" in changes:
        source.etag = source.last_modified = source.last_checksum = None
    source.updated_at = utcnow()
    session.flush()
    _audit(session, actor, "update", source, changes)
    session.flush()
    return source


def set_enabled(session: Session, name: str, enabled: bool, *, actor: Actor = SYSTEM) -> Source:
    return update_source(session, name, enabled=enabled, actor=actor)


@dataclass(frozen=True)
class RemoveResult:
    name: str
    removed: bool  # False: it had runs and was disabled instead
    runs: int = 0


def remove_source(
    session: Session, name: str, *, disable_if_used: bool = False, actor: Actor = SYSTEM
) -> RemoveResult:
    """Delete a source that never imported anything.

    A source with import runs is refused (their provenance names it), or, with
    ``disable_if_used``, disabled instead.
    """
    source = get_source(session, name)
    runs = run_count(session, source)
    if runs:
        if not disable_if_used:
            raise SourceError(
                f"source '{source.name}' has {runs} import run{'s' if runs != 1 else ''}, which "
                "name it as their provenance, so it cannot be removed; disable it instead "
                f"(cbm source disable {source.name}, or cbm source remove {source.name} "
                "--disable)"
            )
        if source.enabled:
            update_source(session, source.name, enabled=False, actor=actor)
        return RemoveResult(source.name, removed=False, runs=runs)
    before = {k: [v, None] for k, v in _values(source).items() if v not in (None, "")}
    _audit(session, actor, "delete", source, before)
    session.delete(source)
    session.flush()
    return RemoveResult(source.name, removed=True)


# --- importing from a source ----------------------------------------------------------


@dataclass
class SourceImportOutcome:
    """What one pass over a source did."""

    source_name: str
    message: str
    unchanged: bool = False
    failed: bool = False
    wrote_rows: bool = False
    run_ids: list[int] = field(default_factory=list)


#: Import-run statuses after which the same bytes are not read again (fixing the file or the
#: feed changes its checksum, and then it is read). After an interruption or an unexpected
#: error (a database failure, a bug) they are read again on the next pass.
_SETTLED = ("succeeded", imports.SUCCEEDED_WITH_REJECTIONS, "rejected", "failed")
#: Import-run statuses that make the job (and the source's last error) a failure.
_FAILED = ("failed", "interrupted", "rejected")


@dataclass(frozen=True)
class _SourceSnapshot:
    id: int
    name: str
    location: str
    importer: str
    kind: str | None
    all_or_nothing: bool


def fetch_policy() -> Any:
    """The limits for reading a source's feed: :class:`importers.locations.FetchPolicy` with
    ``CBM_FETCH_TIMEOUT`` (read timeout, and connect timeout up to 10 s) and
    ``CBM_FETCH_RETRIES`` applied, so an operator can shorten a hanging feed's failure."""
    from cbm.config import read_setting
    from importers.locations import FetchPolicy

    timeout = float(read_setting("CBM_FETCH_TIMEOUT"))
    return FetchPolicy(
        connect_timeout=min(FetchPolicy.connect_timeout, timeout),
        read_timeout=timeout,
        retries=int(read_setting("CBM_FETCH_RETRIES")),
    )


def fetch_and_import(
    session_factory: sessionmaker[Session],
    source_name: str,
    *,
    user_id: int | None = None,
    policy: Any = None,
    chunk_size: int | None = None,
) -> SourceImportOutcome:
    """Read a source and import what changed (the work of job ``import:<name>``).

    1. Open the location with the source's bookkeeping
       (:func:`importers.locations.open_location`): a conditional HTTP request, the last
       checksum, the drop-folder files already imported. Nothing new (HTTP 304, the same
       checksum, only known files): no import run, the outcome is ``unchanged`` — a
       failure when the source's last import run failed or was rejected (the same bad
       bytes again), which keeps its ``last_error`` and ``last_success_at``.
    2. A location that cannot be read at all (missing folder, HTTP error after retries) is a
       failure of the pass, recorded on the source (``last_error``), without an import run.
    3. Otherwise :func:`cbm.services.imports.run_import` imports each payload as a run.
    4. Then, in one transaction, what was read is remembered
       (:func:`importers.locations.mark_imported`: ETag, Last-Modified and checksum for a
       feed, path and checksum for a file) and ``last_success_at``/``last_error`` are set.

    ``policy`` (a :class:`importers.locations.FetchPolicy`) and ``chunk_size`` (rows per
    transaction) default to :func:`fetch_policy` and ``CBM_IMPORT_BATCH_ROWS``.

    The caller holds the job's lock, so no other process reads this source meanwhile. If
    the process dies between 3 and 4, the next pass imports the same payload again: its rows
    come back ``unchanged`` (the import is an upsert by natural key), nothing is doubled.
    """
    from cbm.config import read_setting
    from cbm.services.imports import run_import
    from importers.base import ImportFormatError, Payload
    from importers.locations import open_location

    policy = policy or fetch_policy()
    chunk_size = chunk_size or int(read_setting("CBM_IMPORT_BATCH_ROWS"))
    notes: list[str] = []
    with session_scope(session_factory) as session:
        source = session.scalar(select(Source).where(Source.name == source_name))
        if source is None:
            return SourceImportOutcome(
                source_name, f"there is no source named '{source_name}'", failed=True
            )
        snap = _SourceSnapshot(
            source.id,
            source.name,
            source.location,
            source.importer,
            source.kind,
            source.all_or_nothing,
        )
        payloads = open_location(
            snap.location, source=source, session=session, policy=policy, notes=notes
        )
        try:
            first = next(payloads, None)
        except (ImportFormatError, OSError) as exc:
            first, problem = None, str(exc)
        else:
            problem = None
        last_run = None
        if first is None and problem is None:
            last_run = session.execute(
                select(ImportRun.id, ImportRun.status)
                .where(ImportRun.source_id == snap.id)
                .order_by(ImportRun.id.desc())
                .limit(1)
            ).first()
        # End this read transaction before the import writes (on SQLite a transaction that
        # began as a read cannot write once another connection has committed).
    if problem is not None:
        # Location errors usually start with the location already.
        message = (
            f"cannot read {problem}"
            if problem.startswith(snap.location)
            else f"cannot read {snap.location}: {problem}"
        )
        _record_pass(session_factory, snap.id, error=message)
        return SourceImportOutcome(snap.name, message, failed=True)
    if first is None and last_run is not None and last_run.status in _FAILED:
        # The same bytes as a run that failed (a feed still serving its error page): not a
        # success. The source keeps its last error and its last success until they change.
        verb = "failed" if last_run.status == "failed" else f"was {last_run.status}"
        message = (
            f"unchanged since import run {last_run.id}, which {verb}; the source keeps its "
            "error until the location serves something else"
        )
        return SourceImportOutcome(snap.name, message, unchanged=True, failed=True)
    if first is None:
        _record_pass(session_factory, snap.id, error=None)
        return SourceImportOutcome(snap.name, UNCHANGED, unchanged=True)

    read: list[Payload] = []

    def remembered() -> Iterator[Payload]:
        # Keep what mark_imported needs (not the bytes) for each payload handed over.
        for payload in itertools.chain([first], payloads):
            read.append(
                Payload(
                    name=payload.name,
                    path=payload.path,
                    media_type=payload.media_type,
                    meta=payload.meta,
                    _checksum=payload.checksum,
                )
            )
            yield payload

    result = run_import(
        session_factory,
        remembered(),
        importer=None if snap.importer == "auto" else snap.importer,
        kind=snap.kind,
        all_or_nothing=snap.all_or_nothing,
        source_id=snap.id,
        source_name=snap.name,
        location=snap.location,
        user_id=user_id,
        chunk_size=chunk_size,
    )
    failed_runs = [run for run in result.runs if run.status in _FAILED]
    message = _summary(result, notes)

    def record() -> None:
        with session_scope(session_factory) as session:
            _record_pass_in(session, snap.id, error=message if failed_runs else None)
            source = session.get(Source, snap.id)
            if source is not None:
                for payload, run in zip(read, result.runs, strict=False):
                    if run.status in _SETTLED and not _read_again(run.message):
                        mark_imported(session, source, payload, run.run_id)

    # After a database restart the runs' ends were recorded once it was back; so is this.
    retry_while_unreachable(record, f"source {snap.name}: recording the pass")
    return SourceImportOutcome(
        snap.name,
        message,
        failed=bool(failed_runs),
        wrote_rows=(result.inserted + result.updated) > 0,
        run_ids=[run.run_id for run in result.runs],
    )


def _read_again(message: str | None) -> bool:
    """A run that failed for a reason of ours (a bug, a lost database connection), not of the
    payload's: the same bytes are read again on the next pass."""
    return (message or "").startswith(("unexpected error", "the database connection was lost"))


def mark_imported(session: Session, source: Source, payload: Any, run_id: int) -> None:
    from importers.locations import mark_imported as mark

    mark(session, source, payload, run_id)


def _summary(result: Any, notes: list[str]) -> str:
    """One line per run: ``import run 12 succeeded: 3 read, 2 inserted, …``."""
    lines = []
    for run in result.runs:
        counts = (
            f"{run.read:,} read, {run.inserted:,} inserted, {run.updated:,} updated, "
            f"{run.unchanged:,} unchanged, {run.rejected:,} rejected"
        )
        line = f"import run {run.run_id} {run.status} ({run.name}): {counts}"
        if run.message:
            line += f"; {run.message}"
        lines.append(line)
    skipped = [note for note in notes if "skipped" in note]
    if skipped:
        lines.append(f"{len(skipped)} file(s) skipped as already imported")
    return "\n".join(lines)


def _record_pass(
    session_factory: sessionmaker[Session], source_id: int, *, error: str | None
) -> None:
    """A pass that imported nothing: a success (unchanged) or an unreadable location."""
    with session_scope(session_factory) as session:
        _record_pass_in(session, source_id, error=error)


def _record_pass_in(session: Session, source_id: int, *, error: str | None) -> None:
    """Set ``last_success_at``/``last_error`` with a plain UPDATE.

    It is the first statement of its transaction on purpose: on SQLite a transaction that
    reads first cannot write once another process has committed meanwhile
    (SQLITE_BUSY_SNAPSHOT is not waited out), one that writes first waits for its turn.
    """
    values: dict[str, Any] = {"last_error": error}
    if error is None:
        values["last_success_at"] = utcnow()
    session.execute(update(Source).where(Source.id == source_id).values(**values))
