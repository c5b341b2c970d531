"""Structured logs: a request id on every line of a request, the job run on every line of a job.

In-process tests read the lines the cbm handler writes (the filter and the formatters are
the ones every process installs); one test starts a real gunicorn on 127.0.0.1 with
``CBM_LOG_FORMAT=json`` and reads its stderr, access lines included.
"""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from factories import activity
from feed_server import csv_bytes
from processes import free_port, start_gunicorn, stop_all, wait_http
from test_scheduler_processes import _env, cbm

from cbm import logs
from cbm.jobs import JobContext, run_job
from cbm.services.imports import run_import
from cbm.web.auth import public
from importers.base import Payload

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class Captured:
    def __init__(self, fmt: str) -> None:
        self.stream = io.StringIO()
        self.handler = logs.make_handler(fmt, self.stream)

    def lines(self) -> list[str]:
        return [line for line in self.stream.getvalue().splitlines() if line.strip()]

    def records(self) -> list[dict]:
        """Every line as JSON (a line that does not parse fails the test)."""
        return [json.loads(line) for line in self.lines() if line.startswith("{")]


@pytest.fixture()
def captured(request: pytest.FixtureRequest) -> Iterator[Captured]:
    fmt = getattr(request, "param", "json")
    cap = Captured(fmt)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(cap.handler)
    root.setLevel(logging.INFO)
    try:
        yield cap
    finally:
        root.removeHandler(cap.handler)
        root.setLevel(old_level)


def _logging_app(app):
    logger = logging.getLogger("cbm.test.view")

    def view() -> str:
        logger.info("inside the view")
        logger.warning("a second line")
        return "ok"

    app.add_url_rule("/_test/log", "test_log", public(view))
    return app


def test_a_requests_lines_carry_its_id_and_the_header_is_echoed(app, captured) -> None:
    client = _logging_app(app).test_client()
    answer = client.get("/_test/log", headers={"X-Request-ID": "req-42.abc"})
    assert answer.status_code == 200
    assert answer.headers["X-Request-ID"] == "req-42.abc"
    mine = [r for r in captured.records() if r["logger"] == "cbm.test.view"]
    assert [r["message"] for r in mine] == ["inside the view", "a second line"]
    assert {r["request_id"] for r in mine} == {"req-42.abc"}
    # Nothing leaks into lines logged after the request.
    logging.getLogger("cbm.test.view").info("after")
    assert "request_id" not in captured.records()[-1]


def test_a_request_without_an_id_gets_a_fresh_one_each_time(app, captured) -> None:
    client = _logging_app(app).test_client()
    first = client.get("/_test/log").headers["X-Request-ID"]
    second = client.get("/_test/log").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and re.fullmatch(r"[0-9a-f]{32}", second)
    assert first != second
    ids = [r["request_id"] for r in captured.records() if r["logger"] == "cbm.test.view"]
    assert ids == [first, first, second, second]


@pytest.mark.parametrize(
    "hostile",
    ["abc\r\nX-Injected: 1", "x" * 10_000, "a b", 'quo"te', "", "ünï"],
    ids=["crlf", "10kB", "space", "quote", "empty", "non-ascii"],
)
def test_a_hostile_request_id_is_replaced(app, captured, hostile: str) -> None:
    client = _logging_app(app).test_client()
    # Straight into the WSGI environ: a CR/LF cannot pass a real HTTP parser, but a proxy
    # or another WSGI front end could hand one over.
    answer = client.get("/_test/log", environ_overrides={"HTTP_X_REQUEST_ID": hostile})
    rid = answer.headers["X-Request-ID"]
    assert rid != hostile and re.fullmatch(r"[0-9a-f]{32}", rid)
    assert "X-Injected" not in answer.headers
    assert {r.get("request_id") for r in captured.records() if r["logger"] == "cbm.test.view"} == {
        rid
    }


def test_error_pages_carry_the_id_too(app, captured) -> None:
    def boom() -> str:
        raise RuntimeError("kaboom")

    app.add_url_rule("/_test/boom", "test_boom", public(boom))
    app.config["PROPAGATE_EXCEPTIONS"] = False
    answer = app.test_client().get("/_test/boom", headers={"X-Request-ID": "err-1"})
    assert answer.status_code == 500 and answer.headers["X-Request-ID"] == "err-1"
    errors = [r for r in captured.records() if r["level"] == "ERROR"]
    assert errors and errors[0]["request_id"] == "err-1"
    assert "RuntimeError: kaboom" in errors[0]["exception"]


def test_a_jobs_lines_carry_its_name_its_run_and_the_import_run(session_factory, captured) -> None:
    seen: dict = {}

    def job(ctx: JobContext) -> str:
        logging.getLogger("cbm.test.job").info("working")
        result = run_import(
            ctx.session_factory,
            [Payload(name="feed.csv", content=csv_bytes([activity(1), activity(2)]))],
            importer="csv",
            kind="activities",
        )
        seen["import_run_id"] = result.runs[0].run_id
        return "done"

    outcome = run_job(session_factory, "import:test", job, heartbeat_seconds=0)
    assert outcome.status == "succeeded" and outcome.run_id is not None
    records = captured.records()
    working = next(r for r in records if r["message"] == "working")
    assert (working["job"], working["job_run_id"]) == ("import:test", outcome.run_id)
    assert "import_run_id" not in working
    imported = next(r for r in records if r["message"].startswith("import run "))
    assert imported["import_run_id"] == seen["import_run_id"]
    assert imported["job_run_id"] == outcome.run_id
    done = next(r for r in records if r["message"] == "job import:test: done")
    assert done["job_run_id"] == outcome.run_id and "import_run_id" not in done
    for r in records:
        assert ISO_Z.match(r["time"]), r
        assert {"time", "level", "logger", "message"} <= set(r)
    # Outside the job: no job fields.
    logging.getLogger("cbm.test.job").info("later")
    assert "job" not in captured.records()[-1]


def test_a_failing_jobs_exception_is_in_its_json_line(session_factory, captured) -> None:
    def job(ctx: JobContext) -> str:
        raise ValueError("the feed is broken")

    outcome = run_job(session_factory, "check:test", job, heartbeat_seconds=0)
    assert outcome.status == "failed"
    failed = [r for r in captured.records() if r.get("exception")]
    assert failed and failed[0]["job_run_id"] == outcome.run_id
    assert "ValueError: the feed is broken" in failed[0]["exception"]


@pytest.mark.parametrize("captured", ["text"], indirect=True)
def test_the_text_format_is_one_readable_line_with_the_context(captured) -> None:
    with logs.log_context(job="check:nightly", job_run_id=7):
        logging.getLogger("cbm.x").warning("slow: %s s", 3)
    [line] = captured.lines()
    stamp, level, rest = line.split(" ", 2)
    assert ISO_Z.match(stamp) and level == "WARNING"
    assert rest == "cbm.x [job=check:nightly job_run_id=7]: slow: 3 s"


def test_the_cli_writes_json_lines_when_asked(tmp_path: Path) -> None:
    env = {
        "CBM_INSTANCE_DIR": str(tmp_path / "instance"),
        "CBM_LOG_FORMAT": "json",
        "CBM_LOG_LEVEL": "DEBUG",
    }
    done = cbm(["db", "upgrade"], env)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines, done.stderr
    assert all(json.loads(line)["level"] for line in lines)
    bad = subprocess.run(
        [sys.executable, "-m", "cbm.cli", "config"],
        env=_env({**env, "CBM_LOG_FORMAT": "xml"}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode != 0 and "CBM_LOG_FORMAT='xml' is not valid" in bad.stderr


def test_gunicorn_writes_json_lines_with_the_request_id(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    env = {"CBM_INSTANCE_DIR": str(instance), "CBM_SCHEDULER": "false"}
    cbm(["db", "upgrade"], env)
    port = free_port()
    log = tmp_path / "gunicorn.log"
    proc = start_gunicorn({**env, "CBM_LOG_FORMAT": "json"}, port, log, workers=1)
    url = f"http://127.0.0.1:{port}/login"
    try:
        wait_http(url, proc, log)
        answer = httpx.get(url, headers={"X-Request-ID": "gun-1"}, timeout=5)
        assert answer.status_code == 200 and answer.headers["X-Request-ID"] == "gun-1"
        # gunicorn itself refuses a header over 8190 bytes (431); this one reaches the app.
        long_id = httpx.get(url, headers={"X-Request-ID": "y" * 5_000}, timeout=5)
        assert long_id.status_code == 200
        assert re.fullmatch(r"[0-9a-f]{32}", long_id.headers["X-Request-ID"])
    finally:
        assert stop_all([proc]) == [0], log.read_text()
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    access = [r for r in records if r["logger"] == "gunicorn.access"]
    ids = [r.get("request_id") for r in access]
    assert ids[-2:] == ["gun-1", long_id.headers["X-Request-ID"]], access
    assert all(ISO_Z.match(r["time"]) for r in records)
    assert any(r["logger"] == "gunicorn.error" for r in records)
