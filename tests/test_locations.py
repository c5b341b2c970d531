"""Locations: files, drop folders and globs, and HTTP feeds from a real server on 127.0.0.1.

The HTTP tests run a ``ThreadingHTTPServer`` on a free loopback port in a thread: it serves
files with ETag and Last-Modified (and answers 304 to a matching conditional request), fails
twice with 500 before answering, hangs past the client's timeout, returns garbage, and
serves a paged JSON API. Drop-folder bookkeeping uses the rolled-back ``session`` fixture.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import json
import os
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from sqlalchemy import select

from cbm.models.sources import Source, SourceFile
from importers import (
    FetchPolicy,
    ImportFormatError,
    LocationError,
    Payload,
    mark_imported,
    open_location,
    read_location,
)

CSV = (
    b"activity_id,source,state,kind,start_date\n"
    b"A1,analyst,DEU,exercise,2024-03-01\n"
    b"A2,analyst,FRA,exercise,2024-03-02\n"
)
LAST_MODIFIED = "Wed, 01 May 2024 10:00:00 GMT"
FAST = FetchPolicy(connect_timeout=2, read_timeout=0.5, retries=2, backoff=0.01, deadline=20)


def api_page(n: int) -> bytes:
    items = [
        {
            "activity_id": f"P{n}-{i}",
            "source": "analyst",
            "state": "DEU",
            "kind": "exercise",
            "start_date": "2024-01-01",
        }
        for i in range(2)
    ]
    nxt = f"/api/activities?page={n + 1}" if n < 3 else None
    return json.dumps({"kind": "activities", "items": items, "next": nxt}).encode()


class Handler(BaseHTTPRequestHandler):
    hits: ClassVar[Counter] = Counter()
    headers_seen: ClassVar[dict[str, dict[str, str]]] = {}

    def log_message(self, *args):  # keep the test output quiet
        pass

    def send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 304:
            self.wfile.write(body)

    def do_GET(self):
        path = self.path
        route = path.split("?", 1)[0]
        Handler.hits[route] += 1
        Handler.headers_seen[route] = dict(self.headers.items())
        count = Handler.hits[route]
        if route == "/activities.csv":
            etag = '"v1"'
            if self.headers.get("If-None-Match") == etag:
                return self.send(304, headers={"ETag": etag})
            return self.send(
                200, CSV, {"Content-Type": "text/csv", "ETag": etag, "Last-Modified": LAST_MODIFIED}
            )
        if route == "/plain.csv":  # no validators: only the checksum tells it is unchanged
            return self.send(200, CSV, {"Content-Type": "text/csv"})
        if route == "/flaky.csv":
            if count <= 2:
                return self.send(500, b"oops")
            return self.send(200, CSV, {"Content-Type": "text/csv"})
        if route == "/busy.csv":
            if count == 1:
                return self.send(429, b"slow down", {"Retry-After": "0"})
            return self.send(200, CSV, {"Content-Type": "text/csv"})
        if route == "/down.csv":
            return self.send(503, b"down", {"Retry-After": "3600"})
        if route == "/missing.csv":
            return self.send(404, b"no")
        if route == "/hang.csv":
            time.sleep(2)
            return self.send(200, CSV)
        if route == "/garbage.json":
            return self.send(200, bytes(range(256)) * 4, {"Content-Type": "application/json"})
        if route == "/not-http":
            self.wfile.write(b"\x00\x01garbage that is not HTTP\r\n\r\n")
            return None
        if route == "/notmod":
            return self.send(304)
        if route == "/big.csv":
            return self.send(200, CSV * 1000, {"Content-Type": "text/csv"})
        if route == "/big-chunked.csv":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(100):
                block = CSV * 10
                self.wfile.write(f"{len(block):x}\r\n".encode() + block + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return None
        if route == "/api/activities":
            page = int(path.rsplit("=", 1)[1]) if "page=" in path else 1
            return self.send(200, api_page(page), {"Content-Type": "application/json"})
        if route == "/api/escape":
            doc = {"kind": "activities", "items": [], "next": "http://127.0.0.2:1/steal"}
            return self.send(200, json.dumps(doc).encode(), {"Content-Type": "application/json"})
        if route == "/api/loop":
            doc = {"kind": "activities", "items": [], "next": "/api/loop"}
            return self.send(200, json.dumps(doc).encode(), {"Content-Type": "application/json"})
        if route == "/redirect":
            return self.send(302, b"", {"Location": "/activities.csv"})
        return self.send(404, b"unknown")


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _reset_hits():
    Handler.hits.clear()
    Handler.headers_seen.clear()


def payloads(location: str, **kw) -> list[Payload]:
    kw.setdefault("policy", FAST)
    return list(open_location(location, **kw))


# --------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------


def test_url_payload_carries_validators_and_checksum(server):
    (payload,) = payloads(f"{server}/activities.csv")
    assert payload.content == CSV
    assert payload.media_type == "text/csv"
    assert payload.meta["etag"] == '"v1"'
    assert payload.meta["last_modified"] == LAST_MODIFIED
    assert payload.meta["page"] == 1 and payload.meta["next"] is None
    assert payload.checksum == hashlib.sha256(CSV).hexdigest()
    assert "cbm-importer" in Handler.headers_seen["/activities.csv"]["User-Agent"]


def test_conditional_request_after_mark_imported_gets_304_and_yields_nothing(server):
    source = Source(name="feed", location=f"{server}/activities.csv")
    (payload,) = payloads(source.location, source=source)
    mark_imported(None, source, payload)
    assert source.etag == '"v1"'
    assert source.last_modified == LAST_MODIFIED
    assert source.last_checksum == payload.checksum
    notes: list[str] = []
    assert payloads(source.location, source=source, notes=notes) == []
    assert Handler.headers_seen["/activities.csv"]["If-None-Match"] == '"v1"'
    assert Handler.headers_seen["/activities.csv"]["If-Modified-Since"] == LAST_MODIFIED
    assert any("not modified since the last import (HTTP 304)" in n for n in notes)


def test_unchanged_payload_without_validators_is_skipped_by_checksum(server):
    source = Source(name="plain", location=f"{server}/plain.csv")
    (payload,) = payloads(source.location, source=source)
    mark_imported(None, source, payload)
    assert source.etag is None
    notes: list[str] = []
    assert payloads(source.location, source=source, notes=notes) == []
    assert any("unchanged since the last import (same SHA-256)" in n for n in notes)
    source.last_checksum = "0" * 64  # content changed since
    assert len(payloads(source.location, source=source)) == 1


def test_304_without_validators_sent_is_reported(server):
    notes: list[str] = []
    assert payloads(f"{server}/notmod", notes=notes) == []
    assert notes and "HTTP 304" in notes[0]


def test_server_error_twice_then_success_is_retried(server):
    notes: list[str] = []
    (payload,) = payloads(f"{server}/flaky.csv", notes=notes)
    assert payload.content == CSV
    assert Handler.hits["/flaky.csv"] == 3
    assert sum("HTTP 500" in n for n in notes) == 2


def test_429_honours_retry_after(server):
    (payload,) = payloads(f"{server}/busy.csv")
    assert payload.content == CSV
    assert Handler.hits["/busy.csv"] == 2


def test_retries_are_bounded_and_retry_after_is_capped(server):
    policy = FetchPolicy(read_timeout=1, retries=2, backoff=0.01, max_backoff=0.05)
    started = time.monotonic()
    with pytest.raises(LocationError, match=r"HTTP 503 Service Unavailable \(after 3 attempts\)"):
        payloads(f"{server}/down.csv", policy=policy)
    assert time.monotonic() - started < 5  # Retry-After: 3600 was capped
    assert Handler.hits["/down.csv"] == 3


def test_client_errors_are_not_retried(server):
    with pytest.raises(LocationError, match=r"/missing.csv: HTTP 404 Not Found"):
        payloads(f"{server}/missing.csv")
    assert Handler.hits["/missing.csv"] == 1


def test_hanging_server_times_out(server):
    policy = FetchPolicy(read_timeout=0.3, retries=1, backoff=0.01)
    started = time.monotonic()
    with pytest.raises(LocationError, match=r"no data within 0.3 s \(after 2 attempts\)"):
        payloads(f"{server}/hang.csv", policy=policy)
    assert time.monotonic() - started < 1.9  # two attempts, neither waited for the server
    assert Handler.hits["/hang.csv"] == 2


def test_garbage_body_is_a_clear_format_error(server):
    ((payload, batches),) = list(read_location(f"{server}/garbage.json", policy=FAST))
    with pytest.raises(ImportFormatError, match=r"garbage.json is not UTF-8: byte \d+"):
        list(batches)
    assert payload.media_type == "application/json"


def test_garbage_that_is_not_http_fails_after_retries(server):
    with pytest.raises(LocationError, match=r"not valid HTTP.*after 3 attempts"):
        payloads(f"{server}/not-http")


def test_download_size_is_limited(server):
    policy = FetchPolicy(max_bytes=10_000, retries=0)
    with pytest.raises(LocationError, match=r"the answer is [\d,]+ bytes; at most 10,000"):
        payloads(f"{server}/big.csv", policy=policy)
    with pytest.raises(LocationError, match=r"larger than 10,000 bytes"):
        payloads(f"{server}/big-chunked.csv", policy=policy)


def test_connection_refused_is_retried_then_reported():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(LocationError, match=r"cannot connect.*after 2 attempts"):
        payloads(f"http://127.0.0.1:{port}/x.csv", policy=FetchPolicy(retries=1, backoff=0.01))


def test_redirect_is_followed_and_credentials_are_not_shown(server):
    url = server.replace("http://", "http://user:secret@") + "/redirect"
    (payload,) = payloads(url)
    assert payload.content == CSV
    assert "secret" not in payload.name and "secret" not in str(payload.meta)


def test_paged_api_is_followed_and_not_remembered(server):
    result = list(read_location(f"{server}/api/activities", policy=FAST))
    assert [p.meta["page"] for p, _ in result] == [1, 2, 3]
    ids = [
        r["activity_id"]
        for _p, batches in result
        for b in batches
        for r in b.rows.to_dict("records")
    ]
    assert ids == ["P1-0", "P1-1", "P2-0", "P2-1", "P3-0", "P3-1"]
    source = Source(name="api", location="x", etag="old", last_checksum="old")
    mark_imported(None, source, result[0][0])
    assert source.etag is None and source.last_checksum is None  # paged: fetched whole


def test_paged_api_stays_on_its_host_and_does_not_loop(server):
    with pytest.raises(LocationError, match=r"on another host; not followed"):
        payloads(f"{server}/api/escape")
    with pytest.raises(LocationError, match=r"loops back"):
        payloads(f"{server}/api/loop")
    with pytest.raises(LocationError, match=r"more than 2 pages"):
        payloads(f"{server}/api/activities", policy=FetchPolicy(max_pages=2))


def test_unsupported_scheme_and_empty_location():
    with pytest.raises(LocationError, match=r"unsupported scheme 'ftp'"):
        payloads("ftp://example.org/x.csv")
    with pytest.raises(LocationError, match=r"no location"):
        payloads("  ")


# --------------------------------------------------------------------------------------
# Files, folders, globs
# --------------------------------------------------------------------------------------


def write(path: Path, data: bytes = CSV) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_file_path_and_file_url(tmp_path):
    path = write(tmp_path / "activities.csv")
    (payload,) = payloads(str(path))
    assert payload.path == path.resolve()
    assert payload.meta["size"] == len(CSV)
    (payload,) = payloads(path.as_uri())
    assert payload.path == path.resolve()
    with pytest.raises(LocationError, match=r"no such file or folder"):
        payloads(str(tmp_path / "nope.csv"))
    with pytest.raises(LocationError, match=r"only local file:// URLs"):
        payloads("file://otherhost/x.csv")


def test_folder_lists_supported_files_sorted(tmp_path):
    for name in ("b.csv", "a.JSON", "c.xlsx", "notes.txt", ".hidden.csv", "~$c.xlsx"):
        write(tmp_path / name)
    write(tmp_path / "sub" / "d.csv")
    assert [p.name for p in payloads(str(tmp_path))] == ["a.JSON", "b.csv", "c.xlsx"]


def test_glob(tmp_path):
    write(tmp_path / "2024" / "activities.csv")
    write(tmp_path / "2025" / "activities.csv")
    write(tmp_path / "2025" / "notes.txt")
    names = [p.name for p in payloads(str(tmp_path / "*" / "*.csv"))]
    assert names == ["2024/activities.csv", "2025/activities.csv"]
    names = [p.name for p in payloads(str(tmp_path / "**" / "*"))]
    assert names == ["2024/activities.csv", "2025/activities.csv", "2025/notes.txt"]
    with pytest.raises(LocationError, match=r"may not contain '\.\.'"):
        payloads(str(tmp_path / "2024" / ".." / "*.csv"))


def test_symlink_leading_outside_the_folder_is_skipped(tmp_path):
    outside = write(tmp_path / "secret" / "passwd.csv")
    drop = tmp_path / "drop"
    write(drop / "activities.csv")
    (drop / "link.csv").symlink_to(outside)
    write(drop / "inner" / "x.csv")
    (drop / "ok-link.csv").symlink_to(drop / "inner" / "x.csv")
    notes: list[str] = []
    names = [p.name for p in payloads(str(drop), notes=notes)]
    assert names == ["activities.csv", "inner/x.csv"]
    assert any("link.csv: skipped, it leads outside" in n for n in notes)
    notes.clear()
    assert [p.name for p in payloads(str(drop / "*.csv"), notes=notes)] == [
        "activities.csv",
        "inner/x.csv",
    ]
    assert any("leads outside" in n for n in notes)


def test_root_confines_the_location(tmp_path):
    allowed = tmp_path / "imports"
    write(allowed / "activities.csv")
    other = write(tmp_path / "elsewhere.csv")
    assert len(payloads(str(allowed), root=allowed)) == 1
    with pytest.raises(LocationError, match=r"outside the allowed folder"):
        payloads(str(other), root=allowed)
    with pytest.raises(LocationError, match=r"outside the allowed folder"):
        payloads(str(allowed / ".." / "elsewhere.csv"), root=allowed)


def test_read_location_over_a_folder_of_formats(tmp_path):
    from openpyxl import Workbook

    write(tmp_path / "activities.csv")
    write(
        tmp_path / "holdings.json",
        json.dumps(
            [
                {
                    "state": "DEU",
                    "as_of": "2024-01-01",
                    "category": "acv",
                    "source": "cfe",
                    "count": 1,
                }
            ]
        ).encode(),
    )
    wb = Workbook()
    wb.active.title = "quotas"
    wb.active.append(["regime", "state", "year", "kind", "counterpart", "quota"])
    wb.active.append(["OST", "DEU", 2024, "passive", None, 12])
    wb.save(tmp_path / "book.xlsx")
    seen = {
        payload.name: [(b.kind, len(b.rows)) for b in batches]
        for payload, batches in read_location(str(tmp_path))
    }
    assert seen == {
        "activities.csv": [("activities", 2)],
        "book.xlsx": [("quotas", 1)],
        "holdings.json": [("holdings", 1)],
    }


# --------------------------------------------------------------------------------------
# Drop folders with bookkeeping
# --------------------------------------------------------------------------------------


@pytest.fixture()
def drop_source(session, tmp_path):
    source = Source(name="drop", location=str(tmp_path / "drop"))
    session.add(source)
    session.flush()
    return source


def test_drop_folder_imports_each_file_once(session, drop_source, tmp_path):
    drop = Path(drop_source.location)
    a = write(drop / "a-activities.csv")
    write(drop / "b-activities.csv", CSV + b"A3,analyst,POL,exercise,2024-03-03\n")
    found = payloads(drop_source.location, source=drop_source, session=session)
    assert [p.name for p in found] == ["a-activities.csv", "b-activities.csv"]
    for p in found:
        assert mark_imported(session, drop_source, p, None) is None  # mark: left in place
    rows = session.scalars(select(SourceFile).where(SourceFile.source_id == drop_source.id)).all()
    assert {(r.path, r.size, r.checksum) for r in rows} == {
        (str(p.path), p.size, p.checksum) for p in found
    }

    notes: list[str] = []
    assert payloads(drop_source.location, source=drop_source, session=session, notes=notes) == []
    assert sum("already imported and unchanged" in n for n in notes) == 2

    # Touched, same content: skipped by checksum.
    os.utime(a, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns + 10**9))
    notes.clear()
    assert payloads(drop_source.location, source=drop_source, session=session, notes=notes) == []
    assert any("a-activities.csv: skipped, the same content" in n for n in notes)

    # Changed content: imported again, once.
    write(a, CSV + b"A9,analyst,DEU,exercise,2024-04-01\n")
    (again,) = payloads(drop_source.location, source=drop_source, session=session)
    assert again.name == "a-activities.csv"
    mark_imported(session, drop_source, again, None)
    mark_imported(session, drop_source, again, None)  # recording twice is harmless
    assert payloads(drop_source.location, source=drop_source, session=session) == []
    count = session.scalars(select(SourceFile).where(SourceFile.source_id == drop_source.id)).all()
    assert len(count) == 3


def test_drop_folder_move_to_processed(session, drop_source):
    drop = Path(drop_source.location)
    write(drop / "activities.csv")
    (payload,) = payloads(drop_source.location, source=drop_source, session=session)
    target = mark_imported(session, drop_source, payload, None, move=True)
    assert target == drop.resolve() / "processed" / "activities.csv"
    assert target.read_bytes() == CSV
    assert not (drop / "activities.csv").exists()
    assert payloads(drop_source.location, source=drop_source, session=session) == []
    # Copied back unchanged: recognised by its content and skipped.
    write(drop / "activities.csv")
    assert payloads(drop_source.location, source=drop_source, session=session) == []
    # A new version with the same name does not overwrite the processed one.
    write(drop / "activities.csv", CSV + b"A3,analyst,POL,exercise,2024-03-03\n")
    (payload,) = payloads(drop_source.location, source=drop_source, session=session)
    second = mark_imported(session, drop_source, payload, None, move=True)
    assert second.parent == target.parent and second != target
    assert target.read_bytes() == CSV
    assert second.name.startswith("activities.") and second.suffix == ".csv"


def test_mark_imported_refuses_what_it_cannot_record(session, drop_source, tmp_path):
    with pytest.raises(ValueError, match=r"not a file of a location"):
        mark_imported(session, drop_source, Payload("x.csv", content=CSV))
    single = write(tmp_path / "single.csv")
    (payload,) = payloads(str(single))
    with pytest.raises(ValueError, match=r"only files of a folder location can be moved"):
        mark_imported(session, drop_source, payload, move=True)


def test_single_file_with_source_is_skipped_when_unchanged(session, drop_source, tmp_path):
    path = write(tmp_path / "activities.csv")
    (payload,) = payloads(str(path), source=drop_source, session=session)
    mark_imported(session, drop_source, payload)
    assert payloads(str(path), source=drop_source, session=session) == []


def test_retry_after_http_date_is_understood():
    from importers.locations import _retry_after

    policy = FetchPolicy(max_backoff=30)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    soon = email.utils.format_datetime(now + dt.timedelta(seconds=10), usegmt=True)
    assert 0 < _retry_after(soon, policy) <= 10
    assert _retry_after("120", policy) == 30
    assert _retry_after("not a date", policy) is None
