"""The production profile under load: two gunicorn instances and two schedulers on one PostgreSQL.

Two gunicorn instances (2 workers each, ``deploy/gunicorn.conf.py``) and two ``cbm scheduler``
processes run against one throwaway PostgreSQL database. A feed on 127.0.0.1 serves an
activities file that changes a few times; its source is imported ``every 2s``, and with
``CBM_JOB_SCHEDULES`` the "nightly" check and the trust recomputation run every few seconds
too, so imports, checks (scheduled and after each import) and trust runs all happen many
times, from both schedulers, racing for their locks. Meanwhile client threads read (API
lists, list pages, findings, dashboards) and write (API creates, patches, deletes with an
analyst's token) through both instances.

Then, from the database: no job ran twice at once, each feed version was imported exactly
once (and the unchanged re-reads were no-ops), no finding is duplicated or was detected or
resolved twice, the counts add up (records, provenance, audit events, every 2xx write
present), every request was answered without a 5xx, and both schedulers ran jobs (each job
run's id is in the log of the process that ran it, and only there). On a failure the tail
of every process's log is printed.

``CBM_MULTIPROC_SECONDS`` (default 20) is how long the clients run; the README gives a long
variant.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from api_support import make_api_users
from conftest import PASSWORD, csrf_token_from, throwaway_pg_database
from factories import activity
from feed_server import Feed, csv_bytes
from processes import free_port, start_gunicorn, start_scheduler, stop_all, wait_http
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from test_scheduler_processes import cbm

from cbm.db import make_engine
from cbm.models import (
    Activity,
    AuditEvent,
    CheckRun,
    Finding,
    FindingEvent,
    ImportRun,
    JobRun,
    SchedulerHeartbeat,
    TrustRun,
)
from cbm.services.sources import add_source

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SECONDS = float(os.environ.get("CBM_MULTIPROC_SECONDS", "20"))  # clients' run time
TICK = 2  # the source's schedule, in seconds
SCHEDULES = "check:nightly=every 3s; trust:recompute=every 5s"
#: Feed versions: one to start with, then a change every ~8 s of the run (at least 3).
VERSIONS = max(3, int(SECONDS // 8) + 1)
CLIENTS = 4
#: Setup, draining and stopping, on top of the clients' time: about 45 s on a quiet machine,
#: but gunicorn's start alone took 22 s on a loaded one, and CI runs another test worker
#: beside this test; the bound is there to stop a hang, not to time the machine.
DEADLINE = SECONDS + 130
SOURCE = "feed"


# --- the feed ---------------------------------------------------------------------------------


def feed_version(version: int) -> dict[str, dict[str, str]]:
    """Version ``version`` of the feed by activity id: more rows each time, some revised
    (a new name), some dropping below the notification threshold and back (findings resolve
    and reopen)."""
    rows = {}
    for n in range(1, 9 + 4 * version):
        row = activity(n) | {"activity_id": f"F-{n}", "name": f"Exercise {n}"}
        if (n + version) % 3 == 0:
            row["name"] = f"Exercise {n} (revised in v{version})"
        if (n + version) % 4 == 0:  # below every threshold of notification
            row |= {"troops": "8000", "battle_tanks": "100", "acv": "100", "artillery": "100"}
            row |= {"airborne_troops": "0"}
        rows[row["activity_id"]] = row
    return rows


def expected_imports() -> list[tuple[int, int, int]]:
    """(rows read, inserted, updated) of each version's import, from the data itself."""
    out, before = [], {}
    for v in range(VERSIONS):
        rows = feed_version(v)
        inserted = sum(k not in before for k in rows)
        updated = sum(k in before and before[k] != row for k, row in rows.items())
        out.append((len(rows), inserted, updated))
        before = {**before, **rows}
    return out


# --- the clients ------------------------------------------------------------------------------


@dataclass
class Tally:
    """What one client did and what it was answered (None: no answer at all)."""

    requests: list[tuple[str, str, int | None]] = field(default_factory=list)
    creates: int = 0
    updates: int = 0
    deletes: int = 0
    present: dict[str, str] = field(default_factory=dict)  # activity_id -> name last set
    deleted: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)


class ClientThread(threading.Thread):
    """Reads and writes through both instances in turn until ``stop`` is set.

    One cookie jar for both instances (as behind a load balancer): a web sign-in on one is
    valid on the other, since every process shares the database and the secret key.
    """

    READS = (
        "/api/v1/activities?per_page=25&sort=activity_id",
        "/api/v1/findings",
        "/api/v1/runs",
        "/records/activities/?q=F-",
        "/findings",
        "/dashboards/",
        "/",
    )

    def __init__(self, n: int, bases: list[str], token: str, stop: threading.Event) -> None:
        super().__init__(name=f"client-{n}", daemon=True)
        self.n, self.bases, self.stop = n, bases, stop
        self.api = {"Authorization": f"Bearer {token}"}
        self.tally = Tally()
        self.http = httpx.Client(timeout=30, follow_redirects=False)

    def call(self, method: str, url: str, **kw) -> httpx.Response | None:
        try:
            response = self.http.request(method, url, **kw)
        except httpx.HTTPError as exc:
            self.tally.requests.append((method, url, None))
            self.tally.errors.append(f"{method} {url}: no answer: {exc!r}")
            return None
        self.tally.requests.append((method, url, response.status_code))
        return response

    def expect(self, response: httpx.Response | None, status: int, what: str) -> bool:
        if response is None:
            return False
        if response.status_code != status:
            self.tally.errors.append(
                f"{what}: {response.status_code} (wanted {status}): {response.text[:300]}"
            )
            return False
        return True

    def sign_in(self, base: str) -> None:
        page = self.call("GET", f"{base}/login")
        assert page is not None and page.status_code == 200, page
        answer = self.call(
            "POST",
            f"{base}/login",
            data={
                "username": "api-viewer",
                "password": PASSWORD,
                "csrf_token": csrf_token_from(page.text),
            },
        )
        assert answer is not None and answer.status_code == 302, answer and answer.text

    def run(self) -> None:
        try:
            self.sign_in(self.bases[self.n % 2])
            self._loop()
        except Exception as exc:  # reported by the test, never lost in a thread
            self.tally.errors.append(f"client {self.n} stopped: {exc!r}")
        finally:
            self.http.close()

    def _loop(self) -> None:
        reads = itertools.cycle(self.READS)
        for i in itertools.count():
            if self.stop.is_set():
                return
            here, there = self.bases[i % 2], self.bases[(i + 1) % 2]
            activity_id = f"C-{self.n}-{i}"
            body = activity(i) | {
                "activity_id": activity_id,
                "state": "POL",
                "host_state": "",
                "name": f"Client {self.n} exercise {i}",
                "start_date": "2025-05-01",
                "end_date": "2025-05-09",
                "troops": "9500",
            }
            created = self.call("POST", f"{here}/api/v1/activities", json=body, headers=self.api)
            if self.expect(created, 201, f"create {activity_id}"):
                self.tally.creates += 1
                self.tally.present[activity_id] = body["name"]
                key = created.json()["_key"]
                # Through the other instance: the row must be there at once.
                name = f"Client {self.n} exercise {i}, revised"
                patched = self.call(
                    "PATCH",
                    f"{there}/api/v1/activities/{key}",
                    json={"name": name},
                    headers=self.api,
                )
                if self.expect(patched, 200, f"patch {key}"):
                    self.tally.updates += 1
                    self.tally.present[activity_id] = name
                if i % 4 == 3:
                    gone = self.call("DELETE", f"{here}/api/v1/activities/{key}", headers=self.api)
                    if self.expect(gone, 204, f"delete {key}"):
                        self.tally.deletes += 1
                        self.tally.present.pop(activity_id)
                        self.tally.deleted.add(activity_id)
            for base in (here, there):
                path = next(reads)
                headers = self.api if path.startswith("/api/") else {}
                self.expect(self.call("GET", f"{base}{path}", headers=headers), 200, path)
            time.sleep(0.05)  # a shared machine: leave the servers some room


# --- the scenario -----------------------------------------------------------------------------


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def wait_for(condition: Callable[[], bool], until: float, what: str) -> None:
    while not condition():
        assert time.monotonic() < until, f"timed out waiting for {what}"
        time.sleep(0.25)


@pytest.fixture()
def database() -> Iterator[str]:
    with throwaway_pg_database("cbm_multiproc") as url:
        yield url


def test_two_web_instances_and_two_schedulers_on_one_postgresql(
    database: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    until = started + DEADLINE
    env = {
        "CBM_DATABASE_URL": database,
        "CBM_INSTANCE_DIR": str(tmp_path / "instance"),
        "CBM_SECRET_KEY": "multiprocess-test-" + "k" * 32,
        "CBM_SCHEDULER": "false",
        "CBM_JOB_SCHEDULES": SCHEDULES,
    }
    cbm(["db", "upgrade"], env)
    print(f"migrated in {time.monotonic() - started:.1f} s")
    engine = make_engine(database)
    logs = {
        name: tmp_path / f"{name}.log" for name in ("web-1", "web-2", "scheduler-1", "scheduler-2")
    }
    procs: dict[str, object] = {}
    try:
        with Feed(csv_bytes(feed_version(0).values())) as feed:
            with Session(engine) as session:
                users = make_api_users(session)
                add_source(session, SOURCE, feed.url, kind="activities", schedule=f"every {TICK}s")
                session.commit()
            ports = [free_port(), free_port()]
            for name, port in zip(("web-1", "web-2"), ports, strict=True):
                procs[name] = start_gunicorn(env, port, logs[name], workers=2, threads=2)
            for name in ("scheduler-1", "scheduler-2"):
                procs[name] = start_scheduler(env, logs[name])
            bases = [f"http://127.0.0.1:{port}" for port in ports]
            for name, base in zip(("web-1", "web-2"), bases, strict=True):
                wait_http(f"{base}/healthz", procs[name], logs[name])
            print(f"started in {time.monotonic() - started:.1f} s")
            outcome = _run_clients(engine, feed, bases, users.tokens["analyst"], until)
            print(f"clients and drain done at {time.monotonic() - started:.1f} s")
            # All at once (the schedulers let their running jobs finish).
            codes = stop_all([procs[n] for n in logs])
            statuses = feed.statuses()
            print(f"stopped at {time.monotonic() - started:.1f} s")
        assert codes == [0, 0, 0, 0], f"exit codes {codes}"
        _assert_database(engine, outcome, statuses, users.user_ids["analyst"], procs, logs)
        assert time.monotonic() - started <= DEADLINE, "the scenario took too long"
    except BaseException:
        for name, log in logs.items():
            print(f"----- {name} (last lines of {log})\n{tail(log)}")
        raise
    finally:
        stop_all([p for p in procs.values()], timeout=10)  # type: ignore[misc]
        engine.dispose()


@dataclass
class Outcome:
    tallies: list[Tally]
    imported_versions: int


def _count(engine: Engine, model, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def _run_clients(engine: Engine, feed: Feed, bases: list[str], token: str, until: float) -> Outcome:
    """Clients for ``SECONDS`` while the feed moves through its versions; then drain."""
    stop = threading.Event()
    clients = [ClientThread(n, bases, token, stop) for n in range(CLIENTS)]
    for client in clients:
        client.start()
    begun = time.monotonic()
    imports = lambda: _count(engine, ImportRun, ImportRun.source_name == SOURCE)  # noqa: E731
    try:
        wait_for(lambda: imports() >= 1, until, "the first import")
        for version in range(1, VERSIONS):
            # Spread the changes over the clients' time; each version is imported before
            # the next one is served (else a version could go unseen, which is allowed).
            time.sleep(max(0.0, begun + SECONDS * version / VERSIONS - time.monotonic()))
            feed.body = csv_bytes(feed_version(version).values())
            wait_for(
                lambda v=version: imports() >= v + 1, until, f"the import of version {version}"
            )
        time.sleep(max(0.0, begun + SECONDS - time.monotonic()))
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=40)
    assert not any(c.is_alive() for c in clients), "a client did not stop"
    print(f"clients ran {time.monotonic() - begun:.1f} s")
    # Drain: a few more ticks of the unchanged feed, and the checks after the last writes.
    seen = len(feed.requests)
    wait_for(lambda: len(feed.requests) >= seen + 2, until, "two more ticks of the feed")
    last_write = dt.datetime.now(dt.UTC)
    wait_for(
        lambda: _count(engine, CheckRun, CheckRun.started_at > last_write) >= 1,
        until,
        "a check after the clients stopped",
    )
    return Outcome([c.tally for c in clients], imports())


def _assert_database(
    engine: Engine,
    outcome: Outcome,
    statuses: list[int],
    analyst_id: int,
    procs: dict,
    logs: dict[str, Path],
) -> None:
    tallies = outcome.tallies
    # Every request answered, none with a 5xx, every write as wanted.
    requests = [r for t in tallies for r in t.requests]
    errors = [e for t in tallies for e in t.errors]
    by_status = Counter(status for _, _, status in requests)
    assert not errors, f"{len(errors)} unexpected answers of {len(requests)}:\n" + "\n".join(
        errors[:20]
    )
    assert by_status[None] == 0 and not any(s >= 500 for s in by_status if s), by_status
    creates = sum(t.creates for t in tallies)
    updates = sum(t.updates for t in tallies)
    deletes = sum(t.deletes for t in tallies)
    assert creates >= CLIENTS * 3 and deletes >= 1, (creates, updates, deletes)
    print(
        f"{len(requests)} requests ({dict(by_status)}), {creates} creates, {updates} updates, "
        f"{deletes} deletes; {outcome.imported_versions} feed versions imported"
    )

    with engine.connect() as conn:
        runs = conn.execute(
            select(ImportRun).where(ImportRun.source_name == SOURCE).order_by(ImportRun.id)
        ).all()
        jobs = conn.execute(select(JobRun).order_by(JobRun.job_id, JobRun.started_at)).all()
        stored = {
            r.activity_id: r
            for r in conn.execute(
                select(
                    Activity.activity_id,
                    Activity.name,
                    Activity.troops,
                    Activity.battle_tanks,
                    Activity.created_run_id,
                    Activity.set_by_run_id,
                    Activity.created_by_id,
                    Activity.set_by_user_id,
                )
            )
        }
        audit = conn.execute(
            select(
                AuditEvent.action, AuditEvent.user_id, AuditEvent.run_id, AuditEvent.changes
            ).where(AuditEvent.entity_type == "activities")
        ).all()
        findings = conn.execute(select(Finding)).all()
        events = conn.execute(
            select(
                FindingEvent.finding_id, FindingEvent.action, FindingEvent.check_run_id
            ).order_by(FindingEvent.finding_id, FindingEvent.id)
        ).all()
        checks = conn.execute(select(CheckRun.status, CheckRun.message, CheckRun.trigger)).all()
        trust = conn.execute(select(TrustRun.status, TrustRun.message, TrustRun.trigger)).all()
        beats = set(conn.execute(select(SchedulerHeartbeat.pid)).scalars())

    # --- no job ran twice at once -------------------------------------------------------
    assert jobs, "no job ran"
    assert not [j for j in jobs if j.status != "succeeded"], [
        (j.job_id, j.status, j.message) for j in jobs if j.status != "succeeded"
    ]
    for job_id, group in itertools.groupby(jobs, key=lambda j: j.job_id):
        for before, after in itertools.pairwise(list(group)):
            assert before.finished_at <= after.started_at, f"{job_id} overlapped: {before} {after}"
    per_job = Counter(j.job_id for j in jobs)
    for job_id in (f"import:{SOURCE}", "check:after-import", "check:nightly", "trust:recompute"):
        assert per_job[job_id] >= 2, f"{job_id} ran {per_job[job_id]} times: {per_job}"

    # --- no import applied twice; unchanged re-reads are no-ops --------------------------
    expected = expected_imports()
    assert outcome.imported_versions == VERSIONS
    assert [(r.status, r.rows_read, r.rows_inserted, r.rows_updated) for r in runs] == [
        ("succeeded", *e) for e in expected
    ]
    assert len({r.checksum for r in runs}) == VERSIONS
    assert statuses.count(200) == VERSIONS, Counter(statuses)
    imports = [j for j in jobs if j.job_id == f"import:{SOURCE}"]
    unchanged = [j for j in imports if j.message == "unchanged"]
    assert len(imports) - len(unchanged) == VERSIONS, [j.message for j in imports]
    assert len(unchanged) >= 3 and statuses.count(304) == len(unchanged), Counter(statuses)

    # --- the counts add up: records, provenance, audit -----------------------------------
    feed_rows: dict[str, dict[str, str]] = {}
    first_run: dict[str, int] = {}
    last_run: dict[str, int] = {}
    for run, version in zip(runs, range(VERSIONS), strict=True):
        for key, row in feed_version(version).items():
            if key not in feed_rows:
                first_run[key] = run.id
            if feed_rows.get(key) != row:
                last_run[key] = run.id
            feed_rows[key] = row
    present = {k: name for t in tallies for k, name in t.present.items()}
    deleted = set().union(*(t.deleted for t in tallies))
    assert len(stored) == len(feed_rows) + creates - deletes
    assert set(stored) == set(feed_rows) | set(present)
    assert not deleted & set(stored)
    for key, row in feed_rows.items():
        got = stored[key]
        assert (got.name, got.troops, got.battle_tanks) == (
            row["name"],
            int(row["troops"]),
            int(row["battle_tanks"]),
        ), key
        assert (got.created_run_id, got.set_by_run_id) == (first_run[key], last_run[key]), key
        assert got.created_by_id is None and got.set_by_user_id is None, key
    assert sum(r.created_run_id is not None for r in stored.values()) == len(feed_rows)
    for key, name in present.items():
        got = stored[key]
        assert got.name == name, (key, got.name, name)
        assert got.created_by_id == analyst_id and got.created_run_id is None, key
    by_analyst = Counter(a.action for a in audit if a.user_id == analyst_id)
    assert by_analyst == Counter(create=creates, update=updates, delete=deletes), by_analyst
    for run in runs:
        mine = [a for a in audit if a.run_id == run.id]
        summary = [a for a in mine if a.action == "import"]
        assert [a.changes["inserted"] for a in summary] == (
            [run.rows_inserted] if run.rows_inserted else []
        ), run.id
        assert sum(a.action == "update" for a in mine) == run.rows_updated, run.id
        assert len(mine) == len(summary) + run.rows_updated, run.id
    assert len(audit) == creates + updates + deletes + sum(
        bool(r.rows_inserted) + r.rows_updated for r in runs
    )

    # --- no finding duplicated, none detected or resolved twice --------------------------
    assert findings, "the checks found nothing: the scenario does not exercise them"
    natural = Counter(
        (f.rule_id, f.state, f.counterpart, f.subject_type, f.subject_id, f.period)
        for f in findings
    )
    assert not [k for k, n in natural.items() if n > 1], natural.most_common(3)
    assert len({f.finding_key for f in findings}) == len(findings)
    for finding_id, group in itertools.groupby(events, key=lambda e: e.finding_id):
        actions = [e.action for e in group if e.action in ("detected", "resolved", "reopened")]
        assert actions[0] == "detected" and "detected" not in actions[1:], (finding_id, actions)
        for before, after in itertools.pairwise(actions):
            # Resolved and reopened alternate: never resolved twice in a row, never reopened
            # while open (two checks racing would write such pairs).
            assert (before == "resolved") == (after == "reopened"), (finding_id, actions)
    resolved = sum(e.action == "resolved" for e in events)
    assert resolved >= 1, "no finding was resolved: the feed changes do not exercise it"
    assert not [c for c in checks if c.status != "succeeded"], checks
    assert {c.trigger for c in checks} >= {"after-import", "nightly"}
    assert not [t for t in trust if t.status != "succeeded"], trust
    assert {t.trigger for t in trust} >= {"after-check", "nightly"}

    # --- both schedulers took part, and the logs say which ran what ----------------------
    pids = {procs[n].pid: n for n in ("scheduler-1", "scheduler-2")}
    assert set(pids) <= beats, (pids, beats)
    assert {j.pid for j in jobs} == set(pids), Counter((j.job_id, j.pid) for j in jobs)
    texts = {name: logs[name].read_text() for name in pids.values()}
    for name, text in texts.items():
        assert "Traceback" not in text, f"{name} logged a traceback"
    for j in jobs:
        if j.message == "unchanged":  # routine runs are logged at DEBUG only
            continue
        mark = re.compile(rf"job_run_id={j.id}[\] ]")
        holders = [name for name, text in texts.items() if mark.search(text)]
        assert holders == [pids[j.pid]], (j.id, j.job_id, j.pid, holders)
    for name in ("web-1", "web-2"):
        text = logs[name].read_text()
        assert "Traceback" not in text, f"{name} logged a traceback"
