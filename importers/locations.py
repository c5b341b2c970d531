"""Where payloads come from: a file, a drop folder or glob, or an HTTP(S) URL.

:func:`open_location` yields the :class:`~importers.base.Payload` s of a location;
:func:`read_location` pairs each with the batches of its importer; :func:`mark_imported`
records, after a successful import, what must not be imported again.

**Files.** A location is a file path, a ``file://`` URL, a folder or a glob (``*``, ``?``,
``[…]``; ``**`` recurses). A folder yields its ``*.csv``, ``*.xlsx``, ``*.xlsm`` and
``*.json`` files (not its sub-folders; hidden files and Excel lock files ``~$…`` are
ignored); a glob yields every regular file it matches. Both come in the contract's load
order where a file's name gives its kind (``activities.csv`` before ``notifications.csv``,
whose rows may name activities), then by name. Every file
must resolve inside the folder (for a glob: the folder before its first wildcard): a
symbolic link that leads outside is skipped with a warning, a glob with ``..`` is refused.
With ``root``, the location itself must also lie inside that folder.

**Drop folders.** Given a ``source`` and a ``session``, a file already recorded for the
source (:class:`~cbm.models.sources.SourceFile`) is skipped: at once when its path, size and
modification time are unchanged, else when a file with the same SHA-256 was imported
before (touched, renamed or copied back). After importing, :func:`mark_imported` records the
file ("mark", the default, leaves it where it is) and, with ``move=True`` for a folder
location, moves it to the folder's ``processed/`` sub-folder.

**URLs.** ``http://`` and ``https://`` are fetched with httpx: connect and read timeouts,
an overall deadline, up to ``retries`` further attempts with exponential backoff on
connection errors, timeouts, HTTP 5xx and 429 (a ``Retry-After`` is honoured up to
``max_backoff``), redirects followed (5 at most), and a size limit on the (decompressed)
body. With a ``source``, the request is conditional (``If-None-Match`` from
``source.etag``, ``If-Modified-Since`` from ``source.last_modified``): a 304 yields nothing,
and so does a body whose SHA-256 equals ``source.last_checksum``. A payload's ``meta`` holds
``url``, ``etag``, ``last_modified``, ``page`` and ``next``. A JSON API page's ``next`` link
is followed on the same scheme, host and port, up to ``max_pages``; a paged feed is always
fetched whole (its validators are not kept, since the first page says nothing about the
others).

What a location skips or notices is logged and, when a ``notes`` list is given, appended to
it as a sentence for the run's report.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import glob
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit, urlunsplit
from urllib.request import url2pathname

from importers.base import Batch, ImportFormatError, Payload

if TYPE_CHECKING:
    import httpx
    from sqlalchemy.orm import Session

    from cbm.models.sources import Source

log = logging.getLogger("cbm.importers")

FOLDER_SUFFIXES = (".csv", ".xlsx", ".xlsm", ".json")
PROCESSED = "processed"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class LocationError(ImportFormatError):
    """The location cannot be read at all (missing, outside its folder, HTTP failure …)."""


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for reading a location; the defaults suit scheduled imports."""

    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    deadline: float = 900.0  # seconds for one URL, all attempts included
    retries: int = 3  # further attempts after the first
    backoff: float = 1.0  # first wait; doubles each time
    max_backoff: float = 60.0  # cap on any wait, Retry-After included
    max_bytes: int = 200 * 2**20
    max_pages: int = 1000
    max_redirects: int = 5
    user_agent: str = "cbm-importer/1"


def _note(notes: list[str] | None, message: str, level: int = logging.INFO) -> None:
    log.log(level, "%s", message)
    if notes is not None:
        notes.append(message)


# --------------------------------------------------------------------------------------
# The entry points
# --------------------------------------------------------------------------------------


def open_location(
    location: str,
    *,
    source: Source | None = None,
    session: Session | None = None,
    client: httpx.Client | None = None,
    policy: FetchPolicy | None = None,
    root: str | os.PathLike[str] | None = None,
    notes: list[str] | None = None,
) -> Iterator[Payload]:
    """Yield the payloads of a location (see the module documentation).

    Raises :class:`LocationError` (an :class:`ImportFormatError`) when the location
    cannot be read at all.
    """
    policy = policy or FetchPolicy()
    loc = location.strip()
    if not loc:
        raise LocationError("no location given")
    scheme = urlsplit(loc).scheme.lower()
    if scheme in ("http", "https"):
        yield from _open_url(loc, source=source, client=client, policy=policy, notes=notes)
        return
    if scheme == "file":
        parts = urlsplit(loc)
        if parts.netloc not in ("", "localhost"):
            raise LocationError(f"{loc}: only local file:// URLs are read")
        loc = url2pathname(parts.path)
    elif len(scheme) > 1 and "://" in loc:
        raise LocationError(f"{loc}: unsupported scheme {scheme!r}; use a path or http(s)://")
    yield from _open_path(loc, source=source, session=session, root=root, notes=notes)


def read_location(
    location: str,
    kind: str | None = None,
    importer: str | None = None,
    chunk_size: int = 50_000,
    **options: Any,
) -> Iterator[tuple[Payload, Iterator[Batch]]]:
    """Each payload of a location with the batches its importer reads from it.

    ``importer`` names the format (``csv``, ``xlsx``, ``json``; none or ``auto``:
    detected per payload). ``options`` go to :func:`open_location`.
    """
    from importers.registry import importer_for

    for payload in open_location(location, **options):
        reader = importer_for(payload, importer)
        yield payload, reader.batches(payload, kind=kind, chunk_size=chunk_size)


def mark_imported(
    session: Session | None,
    source: Source,
    payload: Payload,
    run_id: int | None = None,
    *,
    move: bool = False,
) -> Path | None:
    """Remember that ``payload`` of ``source`` was imported, so it is skipped next time.

    A file is recorded as a :class:`~cbm.models.sources.SourceFile` (path, size, mtime,
    checksum, run). With ``move=True`` and a folder location it is then moved to the
    folder's ``processed/`` sub-folder (a name already there gets a UTC time suffix) and
    the new path is returned. Call it in the transaction that stores the run's rows; the
    move happens at once, so move only once the rows are safely stored (or accept that a
    failed commit leaves the file in ``processed/`` unrecorded, to be put back by hand).

    For a URL, the validators (ETag, Last-Modified) and the checksum are kept on the
    source, unless the feed is paged (then they are cleared: it is fetched whole each time).
    """
    meta = payload.meta
    if meta.get("url"):
        if meta.get("page", 1) != 1:
            return None
        if meta.get("next"):
            source.etag = source.last_modified = source.last_checksum = None
        else:
            source.etag = _clip(meta.get("etag"), 400)
            source.last_modified = _clip(meta.get("last_modified"), 100)
            source.last_checksum = payload.checksum
        return None
    if payload.path is None or "path" not in meta:
        raise ValueError(f"{payload.name}: not a file of a location; nothing to record")
    if session is None:
        raise ValueError("recording an imported file needs a session")
    from sqlalchemy import select

    from cbm.models.sources import SourceFile

    path = str(meta["path"])
    checksum = payload.checksum
    row = session.scalars(
        select(SourceFile).where(
            SourceFile.source_id == source.id,
            SourceFile.path == path,
            SourceFile.checksum == checksum,
        )
    ).first()
    if row is None:
        row = SourceFile(source_id=source.id, path=path, checksum=checksum)
        session.add(row)
    row.size = int(meta.get("size", payload.size))
    row.mtime_ns = int(meta.get("mtime_ns", 0))
    row.run_id = run_id
    from cbm.db import utcnow

    row.imported_at = utcnow()
    session.flush()
    if not move:
        return None
    folder = meta.get("folder")
    if not folder:
        raise ValueError(f"{payload.name}: only files of a folder location can be moved")
    target_dir = Path(str(folder)) / PROCESSED
    target_dir.mkdir(exist_ok=True)
    current = Path(path)
    target = target_dir / current.name
    if target.exists():
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = target_dir / f"{current.stem}.{stamp}{current.suffix}"
    os.replace(current, target)
    meta["moved_to"] = str(target)
    return target


def _clip(value: object, length: int) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= length else None


# --------------------------------------------------------------------------------------
# Files, folders and globs
# --------------------------------------------------------------------------------------


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def _open_path(
    loc: str,
    *,
    source: Source | None,
    session: Session | None,
    root: str | os.PathLike[str] | None,
    notes: list[str] | None,
) -> Iterator[Payload]:
    given = Path(os.path.expanduser(loc))
    is_glob = glob.has_magic(loc)
    if is_glob:
        if ".." in given.parts:
            raise LocationError(f"{loc}: a glob may not contain '..'")
        base_parts = []
        for part in given.parts:
            if glob.has_magic(part):
                break
            base_parts.append(part)
        base = Path(*base_parts) if base_parts else Path(".")
        if not base.is_dir():
            raise LocationError(f"{loc}: the folder {base} does not exist")
    elif given.is_dir():
        base = given
    elif given.is_file():
        base = None
    elif given.exists():
        raise LocationError(f"{loc} is neither a file nor a folder")
    else:
        raise LocationError(f"{loc}: no such file or folder")

    anchor = (base if base is not None else given).resolve()
    if root is not None:
        root_real = Path(root).resolve()
        if not _inside(anchor, root_real):
            raise LocationError(f"{loc} is outside the allowed folder {root_real}")

    if base is None:
        candidates = [given]
        folder_real = None
    elif is_glob:
        candidates = _in_load_order(
            Path(p) for p in glob.glob(os.path.expanduser(loc), recursive=True)
        )
        folder_real = base.resolve()
    else:
        candidates = _in_load_order(
            p
            for p in given.iterdir()
            if p.suffix.lower() in FOLDER_SUFFIXES and not p.name.startswith((".", "~$"))
        )
        folder_real = base.resolve()

    known = _known_files(session, source)
    for candidate in candidates:
        real = candidate.resolve()
        if folder_real is not None and not _inside(real, folder_real):
            _note(
                notes,
                f"{candidate}: skipped, it leads outside {folder_real} (a symbolic link?)",
                logging.WARNING,
            )
            continue
        if not real.is_file():
            if not is_glob or not real.is_dir():
                _note(notes, f"{candidate}: skipped, not a regular file", logging.WARNING)
            continue
        stat = real.stat()
        name = str(candidate) if folder_real is None else str(real.relative_to(folder_real))
        payload = Payload(
            name=name if folder_real is not None else loc,
            path=real,
            meta={"path": str(real), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns},
        )
        if folder_real is not None and not is_glob:
            payload.meta["folder"] = str(folder_real)
        if known is not None:
            paths, checksums = known
            if (str(real), stat.st_size, stat.st_mtime_ns) in paths:
                _note(notes, f"{name}: skipped, already imported and unchanged")
                continue
            if payload.checksum in checksums:
                _note(notes, f"{name}: skipped, the same content was already imported")
                continue
        yield payload


def _in_load_order(paths: Iterable[Path]) -> list[Path]:
    """Files whose name gives their kind in the contract's load order (activities before the
    notifications that name them), then the rest; by name within each."""
    from cbm.contract import LOAD_ORDER
    from importers.common import kind_from_name

    def key(path: Path) -> tuple[int, str]:
        kind = kind_from_name(path.name)
        return (LOAD_ORDER.index(kind) if kind in LOAD_ORDER else len(LOAD_ORDER), str(path))

    return sorted(paths, key=key)


def _known_files(
    session: Session | None, source: Source | None
) -> tuple[set[tuple[str, int, int]], set[str]] | None:
    if session is None or source is None or source.id is None:
        return None
    from sqlalchemy import select

    from cbm.models.sources import SourceFile

    rows = session.execute(
        select(SourceFile.path, SourceFile.size, SourceFile.mtime_ns, SourceFile.checksum).where(
            SourceFile.source_id == source.id
        )
    ).all()
    return {(p, s, m) for p, s, m, _c in rows}, {c for *_rest, c in rows}


# --------------------------------------------------------------------------------------
# HTTP(S)
# --------------------------------------------------------------------------------------


def _redact(url: str) -> str:
    """The URL without user and password, for names and messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _open_url(
    url: str,
    *,
    source: Source | None,
    client: httpx.Client | None,
    policy: FetchPolicy,
    notes: list[str] | None,
) -> Iterator[Payload]:
    import httpx

    own = client is None
    if client is None:
        client = httpx.Client(
            follow_redirects=True,
            max_redirects=policy.max_redirects,
            headers={"User-Agent": policy.user_agent},
        )
    try:
        headers = {}
        if source is not None:
            if source.etag:
                headers["If-None-Match"] = source.etag
            if source.last_modified:
                headers["If-Modified-Since"] = source.last_modified
        origin = _origin(url)
        seen = {url}
        page = 1
        current = url
        while True:
            response, content = _fetch(client, current, headers, policy, notes)
            name = _redact(current)
            if content is None:  # 304
                _note(
                    notes, f"{name}: not modified since the last import (HTTP 304)", logging.DEBUG
                )
                return
            media = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            next_link = _next_link(content, media)
            payload = Payload(
                name=name,
                content=content,
                media_type=media or None,
                meta={
                    "url": name,
                    "status": response.status_code,
                    "etag": response.headers.get("etag"),
                    "last_modified": response.headers.get("last-modified"),
                    "page": page,
                    "next": urljoin(str(response.url), next_link) if next_link else None,
                },
            )
            if (
                page == 1
                and next_link is None
                and source is not None
                and source.last_checksum
                and source.last_checksum == payload.checksum
            ):
                _note(notes, f"{name}: unchanged since the last import (same SHA-256)")
                return
            yield payload
            if not next_link:
                return
            following = str(payload.meta["next"])
            if _origin(following) != origin:
                raise LocationError(
                    f"{name}: its next page {_redact(following)} is on another host; not followed"
                )
            if following in seen:
                raise LocationError(f"{name}: its next page {_redact(following)} loops back")
            page += 1
            if page > policy.max_pages:
                raise LocationError(f"{_redact(url)}: more than {policy.max_pages} pages; stopped")
            seen.add(following)
            current = following
            headers = {}
    finally:
        if own:
            client.close()


def _next_link(content: bytes, media: str) -> str | None:
    """The ``next`` link of a cbm API page, if the body is one (see json_feed)."""
    start = content[:64].removeprefix(b"\xef\xbb\xbf").lstrip()[:1]
    if start != b"{" or ("json" not in media and media not in ("", "text/plain")):
        return None
    try:
        doc = json.loads(content.decode("utf-8-sig"))
    except (ValueError, RecursionError):
        return None  # the importer reports what is wrong with it
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        return None
    link = doc.get("next")
    return link if isinstance(link, str) and link.strip() else None


def _retry_after(value: str | None, policy: FetchPolicy) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - dt.datetime.now(dt.UTC)).total_seconds()
    return min(max(seconds, 0.0), policy.max_backoff)


def _describe(exc: Exception, policy: FetchPolicy) -> str:
    import httpx

    if isinstance(exc, httpx.ConnectTimeout):
        return f"no connection within {policy.connect_timeout:g} s"
    if isinstance(exc, httpx.ReadTimeout):
        return f"no data within {policy.read_timeout:g} s"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"the server's answer is not valid HTTP ({exc})"
    return f"{type(exc).__name__}: {exc}"


def _fetch(
    client: httpx.Client,
    url: str,
    headers: dict[str, str],
    policy: FetchPolicy,
    notes: list[str] | None,
) -> tuple[httpx.Response, bytes | None]:
    """GET with retries; (response, body), body None for a 304. LocationError on failure."""
    import httpx

    name = _redact(url)
    timeout = httpx.Timeout(
        policy.read_timeout, connect=policy.connect_timeout, pool=policy.connect_timeout
    )
    deadline = time.monotonic() + policy.deadline
    attempt = 0
    while True:
        wait: float | None = None
        problem = ""
        try:
            with client.stream("GET", url, headers=headers, timeout=timeout) as response:
                status = response.status_code
                if status == 304:
                    return response, None
                if status in RETRY_STATUSES:
                    problem = f"HTTP {status} {response.reason_phrase}".strip()
                    wait = _retry_after(response.headers.get("retry-after"), policy)
                elif status >= 400:
                    raise LocationError(f"{name}: HTTP {status} {response.reason_phrase}".strip())
                elif status != 200:
                    raise LocationError(
                        f"{name}: HTTP {status} {response.reason_phrase}; expected 200".strip()
                    )
                else:
                    return response, _read_body(response, name, policy, deadline)
        except httpx.UnsupportedProtocol as exc:
            raise LocationError(f"{name}: {exc}") from None
        except httpx.TooManyRedirects:
            raise LocationError(
                f"{name}: more than {policy.max_redirects} redirects; stopped"
            ) from None
        except httpx.TransportError as exc:
            problem = _describe(exc, policy)
        except httpx.HTTPError as exc:  # e.g. a body that does not decompress
            raise LocationError(f"{name}: {_describe(exc, policy)}") from None
        if attempt >= policy.retries:
            raise LocationError(f"{name}: {problem} (after {attempt + 1} attempts)")
        if wait is None:
            wait = min(policy.backoff * 2**attempt, policy.max_backoff)
        if time.monotonic() + wait > deadline:
            raise LocationError(
                f"{name}: {problem}; giving up, the {policy.deadline:g} s deadline would pass"
            )
        attempt += 1
        _note(
            notes,
            f"{name}: {problem}; attempt {attempt + 1} of {policy.retries + 1} in {wait:.3g} s",
            logging.WARNING,
        )
        time.sleep(wait)


def _read_body(response: httpx.Response, name: str, policy: FetchPolicy, deadline: float) -> bytes:
    length = response.headers.get("content-length")
    if length and length.isdigit() and int(length) > policy.max_bytes:
        raise LocationError(
            f"{name}: the answer is {int(length):,} bytes; at most {policy.max_bytes:,} are "
            "accepted"
        )
    chunks = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > policy.max_bytes:
            raise LocationError(
                f"{name}: the answer is larger than {policy.max_bytes:,} bytes; refused"
            )
        if time.monotonic() > deadline:
            raise LocationError(f"{name}: the download took longer than {policy.deadline:g} s")
        chunks.append(chunk)
    return b"".join(chunks)
