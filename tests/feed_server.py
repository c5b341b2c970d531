"""A real HTTP feed on 127.0.0.1 for import tests: serves one body with an ETag, answers a
matching ``If-None-Match`` with 304, and counts what it was asked."""

from __future__ import annotations

import csv
import hashlib
import io
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def csv_bytes(rows: Iterable[dict[str, str]]) -> bytes:
    rows = list(rows)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


class Feed:
    """``with Feed(body) as feed:`` serves ``body`` at ``feed.url``; set ``feed.body`` to change."""

    def __init__(
        self, body: bytes, *, etag: bool = True, delay: float = 0.0, path: str = "/feed.csv"
    ) -> None:
        self.body = body
        self.etag = etag
        self.delay = delay
        self.path = path
        self.requests: list[tuple[str, int]] = []  # (If-None-Match or "", status)
        self._lock = threading.Lock()
        feed = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != feed.path:
                    self.send_error(404)
                    return
                body = feed.body
                tag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
                asked = self.headers.get("If-None-Match", "")
                if feed.delay:
                    time.sleep(feed.delay)
                status = 304 if feed.etag and asked == tag else 200
                with feed._lock:
                    feed.requests.append((asked, status))
                self.send_response(status)
                if feed.etag:
                    self.send_header("ETag", tag)
                if status == 304:
                    self.end_headers()
                    return
                self.send_header("Content-Type", "text/csv; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.path}"

    def statuses(self) -> list[int]:
        with self._lock:
            return [status for _, status in self.requests]

    def __enter__(self) -> Feed:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
