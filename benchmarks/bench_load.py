"""Mixed reads and writes at rising concurrency: production profile vs single-process default.

Starts two targets on 127.0.0.1, each on its own throwaway database seeded with the demo
data set (the service behind ``cbm demo load``, its compliance check included, plus
``--rows`` synthetic activities and notifications when asked):

- **default**: what ``make run`` serves, ``cbm serve`` (waitress, 8 threads, the scheduler
  in the same process) on a fresh SQLite file;
- **production**: gunicorn with ``deploy/gunicorn.conf.py`` (as ``deploy/Procfile`` starts
  it: 2 x CPUs gthread workers unless ``--workers``) plus one ``cbm scheduler``, with
  ``CBM_ENV=production``, on a fresh PostgreSQL database (a uuid-named one on the server of
  ``--postgres``, dropped at the end), and the sign-in limiter on a throwaway Redis when
  ``redis-server`` is installed (as ``deploy/cbm.env.example`` says; ``memory://`` if not).

Then, for each concurrency of ``--steps``, ``N`` clients run for ``--seconds-per-step``
against each target in turn (the order alternates per step, so drift in the load of a
shared machine falls on both). Each client is a thread with its own keep-alive
``http.client`` connection, in ``--client-procs`` forked processes (so the clients do not
queue on one GIL); their CPU is measured and printed. The mix, by request: 80 % reads (list
pages with filters, a dashboard, a record page, API list with filters, API get with a
viewer token) and 20 % writes (API create, update and delete of the client's own
activities with an analyst token, and the web form of a new activity with its CSRF token).

Printed per step: requests, throughput, latency p50/p95/p99 of the successful requests,
and errors by kind: ``5xx``, ``4xx`` (unexpected), ``other`` (an unexpected 2xx/3xx, e.g.
a redirect to the sign-in page), ``conn`` (connection refused or reset), ``timeout``; and
the CPU used during the step by the clients (% of one core), the target's own processes
(``app``, in cores), its PostgreSQL backends (``PG``) and the whole machine (all processes,
steal time included: on a shared machine it shows how much CPU was left). A
keep-alive connection the server closed between two requests (a gunicorn worker recycled
after ``max_requests``) is reopened and the request sent again, as browsers and urllib3
do; those are counted as ``reconnects``, not errors. At the end: a summary and the
verdict: production is ahead at a step when it had no error at all and more successful
requests per second than the default (the default's errors are printed, and only lower
its count); it must be ahead at every step with 2 or more clients (under load) and
error-free at all of them (1 client, one request at a time, measures latency: its ratio
is printed, not judged). The exit code is 0 when the run completed, whatever the
verdict. ``--json FILE`` writes every figure. Every process, file and database is removed
at the end, also on Ctrl-C or an error.

    .venv/bin/python benchmarks/bench_load.py                      # 1,2,4,8,16 clients, ~3 min
    .venv/bin/python benchmarks/bench_load.py --steps 1,2 --seconds-per-step 1 --no-check
    .venv/bin/python benchmarks/bench_load.py --targets production --json load.json
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing
import os
import platform
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
GUNICORN = [sys.executable, "-m", "gunicorn"]
PASSWORD = "load-bench-password-123"
USER_AGENT = "cbm-bench-load/1"
STATES = ["DEU", "FRA", "POL", "RUS", "USA", "GBR", "TUR", "UKR", "ARM", "SWE"]
YEARS = list(range(2012, 2026))
# (operation, weight in %): 80 reads, 20 writes.
MIX = [
    ("web_list", 20),
    ("dashboard", 10),
    ("web_record", 15),
    ("api_list", 20),
    ("api_get", 15),
    ("api_create", 7),
    ("api_update", 6),
    ("api_delete", 4),
    ("form_create", 3),
]
WRITES = {"api_create", "api_update", "api_delete", "form_create"}
ERROR_KINDS = ("5xx", "4xx", "other", "conn", "timeout")
TARGETS = ("default", "production")


# --------------------------------------------------------------------------------------
# the machine, the versions
# --------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    mem_mb = 0
    with contextlib.suppress(OSError):
        for text_line in Path("/proc/meminfo").read_text().splitlines():
            if text_line.startswith("MemTotal:"):
                mem_mb = int(text_line.split()[1]) // 1024
    return {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "memory_mb": mem_mb,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def versions(postgres_url: str | None) -> dict[str, str]:
    import cbm

    found = {"python": platform.python_version(), "cbm": cbm.__version__}
    for package in ("gunicorn", "waitress", "Flask", "SQLAlchemy", "psycopg"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    found["sqlite"] = sqlite3.sqlite_version
    if postgres_url:
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        engine = create_engine(postgres_url, poolclass=NullPool)
        with engine.connect() as conn:
            found["postgresql"] = conn.execute(text("SHOW server_version")).scalar_one()
        engine.dispose()
    redis = shutil.which("redis-server")
    if redis:
        out = subprocess.run([redis, "--version"], capture_output=True, text=True, check=False)
        match = re.search(r"v=(\S+)", out.stdout)
        found["redis"] = match.group(1) if match else out.stdout.strip()
    return found


# --------------------------------------------------------------------------------------
# throwaway databases and processes
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def throwaway_postgres(admin_url: str) -> Iterator[str]:
    """A uuid-named database on the server of ``admin_url``, dropped (connections and all)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    name = f"cbm_load_{uuid.uuid4().hex[:12]}"

    def admin(statement: str) -> None:
        engine = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(text(statement))
        finally:
            engine.dispose()

    admin(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(f"dropped database {name}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without any CBM_* setting or proxy, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CBM_", "GUNICORN_"))
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env.update({"NO_PROXY": "127.0.0.1,localhost"}, **extra)
    return env


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A server process in its own session (Ctrl-C reaches only us), always stopped.

    SIGTERM to its whole process group (gunicorn's workers too), SIGKILL after 20 s.
    """
    with log.open("w") as out:
        proc = subprocess.Popen(
            args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
        # Whatever is left in the group (a worker that ignored SIGTERM): gone.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def wait_ready(base_port: int, procs: list[subprocess.Popen], log: Path, timeout: float) -> None:
    """Until /healthz answers 200; fails when a process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[:4]} exited ({proc.returncode}):\n{tail(log)}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", base_port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return
            conn.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"127.0.0.1:{base_port} did not become ready:\n{tail(log)}")
        time.sleep(0.2)


def tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def backend_cpu(url: str | None) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving the database of ``url`` (same host)."""
    if not url:
        return {}
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            pids = conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalars()
            pids = list(pids)
    finally:
        engine.dispose()
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            found[pid] = (int(fields[11]) + int(fields[12])) / tick
    return found


def machine_busy() -> float:
    """CPU seconds the whole machine spent not idle so far (every process, all cores)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds of these processes and their descendants, reaped ones included."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, list[str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = (int(fields[1]), fields)
    wanted = set(pids)
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _) in stats.items():
            if ppid in wanted and pid not in wanted:
                wanted.add(pid)
                grew = True
    total = 0
    for pid in wanted:
        if pid in stats:
            fields = stats[pid][1]
            # utime stime cutime cstime: fields 14-17 of stat, 12-15 after "pid (comm)".
            total += sum(int(x) for x in fields[11:15])
    return total / tick


# --------------------------------------------------------------------------------------
# seeding (in forked processes, both targets at once)
# --------------------------------------------------------------------------------------


def seed(url: str, check: bool, rows: int, demo: bool = True) -> dict[str, str]:
    """Migrate, load the reference and demo data (and the check), two users and tokens."""
    from sqlalchemy.orm import Session

    from cbm.db import make_engine, make_session_factory
    from cbm.demo.loader import load_demo
    from cbm.migrate import upgrade
    from cbm.reference.loader import load_reference
    from cbm.services.accounts import create_user
    from cbm.services.checks import check_now
    from cbm.services.tokens import create_token

    engine = make_engine(url)
    try:
        upgrade(engine)
        with Session(engine) as session:
            load_reference(session)
            if demo:
                load_demo(session)
            analyst = create_user(session, "load-analyst", PASSWORD, "analyst")
            viewer = create_user(session, "load-viewer", PASSWORD, "viewer")
            _, analyst_token = create_token(session, analyst, "load benchmark writes")
            _, viewer_token = create_token(session, viewer, "load benchmark reads")
            session.commit()
        if rows:
            from bench_check import generate, write

            write(url, generate(rows))
        if check:
            check_now(make_session_factory(engine), trigger="benchmark")
    finally:
        engine.dispose()
    return {"analyst_token": analyst_token, "viewer_token": viewer_token}


def _seed_child(conn: Any, url: str, check: bool, rows: int, demo: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        conn.send(("ok", seed(url, check, rows, demo)))
    except BaseException as exc:  # report any failure to the parent, which raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def seed_all(urls: dict[str, str], check: bool, rows: int, demo: bool) -> dict[str, dict[str, str]]:
    """Seed every target's database in parallel processes; their tokens."""
    ctx = multiprocessing.get_context("fork")
    children = {}
    try:
        for name, url in urls.items():
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_seed_child, args=(child, url, check, rows, demo), daemon=True
            )
            proc.start()
            child.close()
            children[name] = (proc, parent)
        results = {}
        for name, (proc, parent) in children.items():
            try:
                status, value = parent.recv()
            except EOFError:
                status, value = "error", f"the seeding process died ({proc.exitcode})"
            if status != "ok":
                raise RuntimeError(f"seeding the {name} database failed: {value}")
            results[name] = value
        return results
    finally:
        for proc, _ in children.values():
            proc.join(2)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)


# --------------------------------------------------------------------------------------
# a target: its processes, and what a client needs to talk to it
# --------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    description: str
    port: int
    pids: list[int]
    log: Path
    db_url: str | None = None  # PostgreSQL: its backends' CPU is measured too
    # filled in by prepare_clients():
    cookie: str = ""
    csrf: str = ""
    tokens: dict[str, str] = field(default_factory=dict)
    activity_keys: list[str] = field(default_factory=list)

    def spec(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "cookie": self.cookie,
            "csrf": self.csrf,
            "tokens": self.tokens,
            "activity_keys": self.activity_keys,
        }


def http_call(
    port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None
) -> tuple[int, dict[str, list[str]], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"User-Agent": USER_AGENT, **headers})
        response = conn.getresponse()
        found: dict[str, list[str]] = {}
        for key, value in response.getheaders():
            found.setdefault(key.lower(), []).append(value)
        return response.status, found, response.read()
    finally:
        conn.close()


def _cookies(headers: dict[str, list[str]], jar: dict[str, str]) -> None:
    for raw in headers.get("set-cookie", []):
        cookie = SimpleCookie()
        cookie.load(raw)
        for key, morsel in cookie.items():
            jar[key] = morsel.value


def _cookie_header(jar: dict[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in jar.items())


def _csrf(page: bytes) -> str:
    match = re.search(rb'name="csrf_token"[^>]*value="([^"]+)"', page)
    if not match:
        raise RuntimeError("no CSRF token in the page")
    return match.group(1).decode()


def prepare_clients(target: Target, tokens: dict[str, str]) -> None:
    """Sign in once (the limiter allows 10 a minute), fix the session's CSRF secret, and
    collect record keys to read; every client then shares this session cookie."""
    jar: dict[str, str] = {}
    status, headers, page = http_call(target.port, "GET", "/login", {})
    _cookies(headers, jar)
    form = urlencode({"username": "load-analyst", "password": PASSWORD, "csrf_token": _csrf(page)})
    status, headers, _ = http_call(
        target.port,
        "POST",
        "/login",
        {
            "Cookie": _cookie_header(jar),
            "Content-Type": "application/x-www-form-urlencoded",
        },
        form.encode(),
    )
    if status not in (302, 303):
        raise RuntimeError(f"{target.name}: sign-in failed with HTTP {status}")
    _cookies(headers, jar)
    # The session gets its CSRF secret on the first form after sign-in: keep that cookie.
    status, headers, page = http_call(
        target.port, "GET", "/records/activities/new", {"Cookie": _cookie_header(jar)}
    )
    if status != 200:
        raise RuntimeError(f"{target.name}: the new-activity form answered HTTP {status}")
    _cookies(headers, jar)
    target.cookie = _cookie_header(jar)
    target.csrf = _csrf(page)
    target.tokens = tokens
    auth = {"Authorization": f"Bearer {tokens['viewer_token']}", "Accept": "application/json"}
    keys: list[str] = []
    for page_no in (1, 5, 9):
        status, _, body = http_call(
            target.port, "GET", f"/api/v1/activities?per_page=100&page={page_no}", auth
        )
        if status != 200:
            raise RuntimeError(f"{target.name}: API list answered HTTP {status}: {body[:200]!r}")
        keys += [item["_key"] for item in json.loads(body)["items"]]
    if not keys:
        raise RuntimeError(f"{target.name}: the data set has no activities")
    target.activity_keys = keys


@contextlib.contextmanager
def start_default(tmp: Path) -> Iterator[Target]:
    """``cbm serve`` as ``make run`` starts it: SQLite, the scheduler in the process."""
    folder = tmp / "default"
    port = free_port()
    env = clean_env(
        {
            "CBM_DATABASE_URL": f"sqlite:///{folder / 'cbm.sqlite3'}",
            "CBM_INSTANCE_DIR": str(folder),
            "CBM_HOST": "127.0.0.1",
            "CBM_PORT": str(port),
        }
    )
    log = tmp / "default.log"
    with process([sys.executable, "-m", "cbm.cli", "serve"], env, log) as web:
        wait_ready(port, [web], log, timeout=60)
        yield Target(
            "default",
            "cbm serve (waitress, 8 threads, in-process scheduler), SQLite",
            port,
            [web.pid],
            log,
        )


@contextlib.contextmanager
def start_production(tmp: Path, url: str, workers: int | None) -> Iterator[Target]:
    """gunicorn with the deployed config plus ``cbm scheduler``, PostgreSQL, Redis limiter."""
    folder = tmp / "production"
    folder.mkdir(mode=0o700)
    port = free_port()
    with contextlib.ExitStack() as stack:
        limiter = "memory://"
        pids = []
        redis = shutil.which("redis-server")
        if redis:
            redis_port = free_port()
            server = stack.enter_context(
                process(
                    [
                        redis,
                        "--port",
                        str(redis_port),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(folder),
                    ],
                    clean_env({}),
                    tmp / "redis.log",
                )
            )
            limiter = f"redis://127.0.0.1:{redis_port}"
            pids.append(server.pid)
        extra = {
            "CBM_ENV": "production",
            "CBM_DATABASE_URL": url,
            "CBM_SECRET_KEY": uuid.uuid4().hex + uuid.uuid4().hex,
            "CBM_INSTANCE_DIR": str(folder),
            "CBM_SCHEDULER": "false",
            "CBM_HOST": "127.0.0.1",
            "CBM_PORT": str(port),
            "CBM_RATELIMIT_STORAGE": limiter,
            "CBM_LOG_LEVEL": "INFO",
        }
        if workers:
            extra["GUNICORN_WORKERS"] = str(workers)
        env = clean_env(extra)
        log = tmp / "production-web.log"
        web = stack.enter_context(
            process(
                [*GUNICORN, "--config", str(GUNICORN_CONF), "cbm.web:create_app()"],
                env,
                log,
            )
        )
        sched = stack.enter_context(
            process([sys.executable, "-m", "cbm.cli", "scheduler"], env, tmp / "scheduler.log")
        )
        wait_ready(port, [web, sched], log, timeout=90)
        count = workers or 2 * (os.cpu_count() or 1)
        yield Target(
            "production",
            f"gunicorn deploy/gunicorn.conf.py ({count} gthread workers x 2 threads) "
            f"+ cbm scheduler, PostgreSQL, limiter {limiter.split(':')[0]}",
            port,
            [web.pid, sched.pid, *pids],
            log,
            db_url=url,
        )


# --------------------------------------------------------------------------------------
# the clients (forked processes, a thread and a keep-alive connection per client)
# --------------------------------------------------------------------------------------

STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class Client:
    """One simulated user: a keep-alive connection and a seeded choice of operations."""

    def __init__(self, spec: dict[str, Any], tag: str, number: int, timeout: float) -> None:
        self.spec = spec
        self.tag = tag
        self.number = number
        self.timeout = timeout
        self.rng = random.Random(f"{tag}-{number}")
        self.conn: http.client.HTTPConnection | None = None
        self.serial = 0
        self.own: list[str] = []  # activity keys this client created and has not deleted
        self.records: list[tuple[str, str, float]] = []
        self.samples: dict[str, str] = {}  # the first error of each kind and operation
        self.reconnects = 0
        ops, weights = zip(*MIX, strict=True)
        self.ops = list(ops)
        self.weights = list(weights)

    # -- transport -----------------------------------------------------------------

    def _send(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.spec["port"], self.timeout)
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def call(
        self,
        op: str,
        method: str,
        path: str,
        expect: int,
        headers: dict[str, str],
        body: bytes | None = None,
    ) -> tuple[str, bytes]:
        headers = {"User-Agent": USER_AGENT, **headers}
        started = time.perf_counter()
        outcome = "ok"
        content = b""
        try:
            reused = self.conn is not None and self.conn.sock is not None
            try:
                status, content = self._send(method, path, headers, body)
            except STALE:
                if not reused:
                    raise
                # The server closed the idle keep-alive connection: reopen and resend once.
                self.conn.close()
                self.reconnects += 1
                status, content = self._send(method, path, headers, body)
            if status != expect:
                outcome = "5xx" if status >= 500 else "4xx" if status >= 400 else "other"
                detail = f"HTTP {status}"
        except TimeoutError as exc:
            outcome, status, detail = "timeout", 0, repr(exc)
        except (OSError, http.client.HTTPException) as exc:
            outcome, status, detail = "conn", 0, repr(exc)
        if outcome != "ok":
            if self.conn is not None:
                self.conn.close()
            self.samples.setdefault(
                f"{outcome} {op}", f"{method} {path}: {detail} {content[:120]!r}"
            )
        self.records.append((op, outcome, (time.perf_counter() - started) * 1000))
        return outcome, content

    # -- the workload ----------------------------------------------------------------

    def web(self) -> dict[str, str]:
        return {"Cookie": self.spec["cookie"]}

    def api(self, role: str) -> dict[str, str]:
        token = self.spec["tokens"][f"{role}_token"]
        return {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def new_activity(self) -> dict[str, Any]:
        self.serial += 1
        day = 1 + self.serial % 28
        return {
            "activity_id": f"LOAD-{self.tag}-{self.number}-{self.serial}",
            "source": "notification",
            "state": self.rng.choice(STATES),
            "kind": "exercise",
            "name": f"Load exercise {self.serial}",
            "start_date": f"2025-06-{day:02d}",
            "end_date": f"2025-07-{day:02d}",
            "troops": self.rng.randint(100, 2000),
        }

    def step(self) -> None:
        op = self.rng.choices(self.ops, self.weights)[0]
        if op in ("api_update", "api_delete") and not self.own:
            op = "api_create"
        state, year = self.rng.choice(STATES), self.rng.choice(YEARS)
        key = quote(self.rng.choice(self.spec["activity_keys"]), safe="")
        if op == "web_list":
            kind = self.rng.choice(("activities", "notifications"))
            self.call(op, "GET", f"/records/{kind}/?state={state}&year={year}", 200, self.web())
        elif op == "dashboard":
            path = self.rng.choice((f"/dashboards/?year={year}", f"/dashboards/states/{state}"))
            self.call(op, "GET", path, 200, self.web())
        elif op == "web_record":
            self.call(op, "GET", f"/records/activities/{key}", 200, self.web())
        elif op == "api_list":
            query = f"state={state}&year={year}&per_page=25"
            self.call(op, "GET", f"/api/v1/activities?{query}", 200, self.api("viewer"))
        elif op == "api_get":
            self.call(op, "GET", f"/api/v1/activities/{key}", 200, self.api("viewer"))
        elif op == "api_create":
            row = self.new_activity()
            headers = {**self.api("analyst"), "Content-Type": "application/json"}
            outcome, content = self.call(
                op, "POST", "/api/v1/activities", 201, headers, json.dumps(row).encode()
            )
            if outcome == "ok":
                self.own.append(json.loads(content)["_key"])
        elif op == "api_update":
            mine = quote(self.rng.choice(self.own), safe="")
            headers = {**self.api("analyst"), "Content-Type": "application/json"}
            body = json.dumps({"troops": self.rng.randint(100, 2000)}).encode()
            self.call(op, "PATCH", f"/api/v1/activities/{mine}", 200, headers, body)
        elif op == "api_delete":
            mine = self.own.pop(0)
            path = f"/api/v1/activities/{quote(mine, safe='')}"
            self.call(op, "DELETE", path, 204, self.api("analyst"))
        elif op == "form_create":
            row = self.new_activity()
            form = urlencode({**row, "csrf_token": self.spec["csrf"]}).encode()
            headers = {**self.web(), "Content-Type": "application/x-www-form-urlencoded"}
            outcome, _ = self.call(op, "POST", "/records/activities/new", 303, headers, form)
            if outcome == "ok":
                self.own.append(f"{row['activity_id']},{row['source']}")  # the natural key

    def run(self, start_at: float, stop_at: float) -> None:
        while time.monotonic() < start_at:
            time.sleep(0.001)
        while time.monotonic() < stop_at:
            self.step()
        if self.conn is not None:
            self.conn.close()


def _client_child(
    conn: Any,
    spec: dict[str, Any],
    tag: str,
    numbers: list[int],
    start_at: float,
    stop_at: float,
    timeout: float,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent ends us on Ctrl-C
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    clients = [Client(spec, tag, n, timeout) for n in numbers]
    cpu = time.process_time()
    threads = [threading.Thread(target=c.run, args=(start_at, stop_at)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    finished = time.monotonic()
    conn.send(
        {
            "records": [r for c in clients for r in c.records],
            "samples": {k: v for c in clients for k, v in c.samples.items()},
            "reconnects": sum(c.reconnects for c in clients),
            "cpu": time.process_time() - cpu,
            "finished": finished,
        }
    )
    conn.close()


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def run_step(
    target: Target, clients: int, seconds: float, procs: int, timeout: float, tag: str
) -> dict[str, Any]:
    """``clients`` clients against ``target`` for ``seconds``; the step's figures."""
    ctx = multiprocessing.get_context("fork")
    nprocs = max(1, min(clients, procs))
    groups = [list(range(i, clients, nprocs)) for i in range(nprocs)]
    start_at = time.monotonic() + 0.3
    stop_at = start_at + seconds
    children = []
    cpu_before = tree_cpu(target.pids)
    busy_before, busy_wall = machine_busy(), time.monotonic()
    db_before = backend_cpu(target.db_url)
    try:
        for numbers in groups:
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_client_child,
                args=(child, target.spec(), tag, numbers, start_at, stop_at, timeout),
                daemon=True,
            )
            proc.start()
            child.close()
            children.append((proc, parent))
        results = []
        for _proc, parent in children:
            if not parent.poll(seconds + timeout + 60):
                raise RuntimeError(f"a client process of {target.name} did not report")
            results.append(parent.recv())
    finally:
        for proc, _ in children:
            proc.join(2)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
    server_cpu = tree_cpu(target.pids) - cpu_before
    busy = (machine_busy() - busy_before) / (time.monotonic() - busy_wall)
    db_cpu = sum(cpu - db_before.get(pid, 0.0) for pid, cpu in backend_cpu(target.db_url).items())
    elapsed = max(r["finished"] for r in results) - start_at
    records = [rec for r in results for rec in r["records"]]
    ok = [ms for _, outcome, ms in records if outcome == "ok"]
    errors = dict.fromkeys(ERROR_KINDS, 0)
    by_op: dict[str, dict[str, Any]] = {}
    for op, outcome, ms in records:
        entry = by_op.setdefault(op, {"requests": 0, "errors": 0, "ms": []})
        entry["requests"] += 1
        if outcome == "ok":
            entry["ms"].append(ms)
        else:
            errors[outcome] += 1
            entry["errors"] += 1
    client_cpu = sum(r["cpu"] for r in results)
    return {
        "target": target.name,
        "clients": clients,
        "seconds": round(elapsed, 3),
        "requests": len(records),
        "ok": len(ok),
        "writes": sum(1 for op, _, _ in records if op in WRITES),
        "rps": len(ok) / elapsed,
        "p50_ms": percentile(ok, 50),
        "p95_ms": percentile(ok, 95),
        "p99_ms": percentile(ok, 99),
        "errors": errors,
        "error_count": sum(errors.values()),
        "error_samples": sorted({f"{k}: {v}" for r in results for k, v in r["samples"].items()}),
        "reconnects": sum(r["reconnects"] for r in results),
        "client_cpu_s": round(client_cpu, 2),
        "client_cpu_pct_of_core": round(100 * client_cpu / elapsed, 1),
        "app_cpu_s": round(server_cpu, 2),
        "db_cpu_s": round(db_cpu, 2),
        "machine_busy_cores": round(busy, 2),
        "cpu_ms_per_request": round(1000 * (server_cpu + db_cpu) / max(1, len(ok)), 2),
        "by_op": {
            op: {
                "requests": e["requests"],
                "errors": e["errors"],
                "p50_ms": round(percentile(e["ms"], 50), 1),
                "p95_ms": round(percentile(e["ms"], 95), 1),
            }
            for op, e in sorted(by_op.items())
        },
    }


# --------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------

STEP_HEADER = (
    f"{'target':<11} {'clients':>7} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} "
    f"{'p99 ms':>7} {'5xx':>4} {'4xx':>4} {'other':>5} {'conn':>4} {'timeout':>7} "
    f"{'reconn':>6} {'client CPU':>10} {'app CPU':>7} {'PG CPU':>6} {'machine':>7}"
)


def step_line(r: dict[str, Any]) -> str:
    e = r["errors"]
    return (
        f"{r['target']:<11} {r['clients']:>7} {r['requests']:>8} {r['rps']:>7.1f} "
        f"{r['p50_ms']:>7.1f} {r['p95_ms']:>7.1f} {r['p99_ms']:>7.1f} {e['5xx']:>4} "
        f"{e['4xx']:>4} {e['other']:>5} {e['conn']:>4} {e['timeout']:>7} {r['reconnects']:>6} "
        f"{r['client_cpu_pct_of_core']:>9.0f}% {r['app_cpu_s'] / r['seconds']:>6.2f}c "
        f"{r['db_cpu_s'] / r['seconds']:>5.2f}c {r['machine_busy_cores']:>6.2f}c"
    )


def verdict(results: list[dict[str, Any]], steps: list[int]) -> tuple[bool, str, list[dict]]:
    """Production is ahead at a step when it had no error at all and served more successful
    requests per second than the default (whose errors, if any, only lower its count).

    Throughput is judged under load: at every step with two or more concurrent clients.
    A single client sends one request at a time, which measures latency, not throughput:
    there the in-process SQLite default has no hop to a database server, and production
    can use only one of its workers. That step must still be error-free; its ratio is
    printed, not judged."""
    rows = []
    for clients in steps:
        by = {r["target"]: r for r in results if r["clients"] == clients}
        d, p = by["default"]["rps"], by["production"]["rps"]
        clean = by["production"]["error_count"] == 0
        rows.append(
            {
                "clients": clients,
                "default_rps": d,
                "production_rps": p,
                "production_errors": by["production"]["error_count"],
                "default_errors": by["default"]["error_count"],
                "ratio": p / d if d else None,
                "ahead": clean and p > d,
                "judged": clients >= 2,
            }
        )
    behind = [r for r in rows if not r["ahead"] and (r["judged"] or r["production_errors"])]
    ratios = ", ".join(
        f"{r['clients']} clients {r['ratio']:.2f}x" if r["ratio"] else f"{r['clients']}: -"
        for r in rows
    )
    if behind:
        which = ", ".join(
            f"{r['clients']}{' (errors)' if r['production_errors'] else ''}" for r in behind
        )
        return (
            False,
            f"FAIL: production NOT ahead at {which} clients; production/default: {ratios}",
            rows,
        )
    sequential = [r for r in rows if not r["judged"]]
    note = " (1 client: one request at a time, latency rather than throughput, not judged)"
    return (
        True,
        "PASS: production error-free at every step and ahead at every step under load"
        f"{note if sequential else ''}; production/default: {ratios}",
        rows,
    )


def summary(results: list[dict[str, Any]], steps: list[int], rows: list[dict]) -> str:
    out = [
        f"{'clients':>7} | {'default req/s':>13} {'p95 ms':>7} {'errors':>6} {'CPU/req':>7} | "
        f"{'production req/s':>16} {'p95 ms':>7} {'errors':>6} {'CPU/req':>7} | "
        f"{'prod/default':>12} {'machine':>7}"
    ]
    for clients, row in zip(steps, rows, strict=True):
        by = {r["target"]: r for r in results if r["clients"] == clients}
        cells = []
        for name in TARGETS:
            r = by.get(name)
            width = 13 if name == "default" else 16
            if r is None:
                cells.append(f"{'-':>{width}} {'-':>7} {'-':>6} {'-':>7}")
            else:
                cells.append(
                    f"{r['rps']:>{width}.1f} {r['p95_ms']:>7.1f} {r['error_count']:>6} "
                    f"{cpu_per_request(r):>5.1f}ms"
                )
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] else "-"
        busy = max(r["machine_busy_cores"] for r in by.values())
        out.append(f"{clients:>7} | {cells[0]} | {cells[1]} | {ratio:>12} {busy:>6.2f}c")
    out.append(
        "CPU/req: CPU of the target's processes and PostgreSQL backends per successful "
        "request; machine: the busiest of the two steps, in cores busy (all processes)"
    )
    return "\n".join(out)


def cpu_per_request(r: dict[str, Any]) -> float:
    return 1000 * (r["app_cpu_s"] + r["db_cpu_s"]) / max(1, r["ok"])


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def copy_logs(tmp: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for log in tmp.glob("*.log"):
        shutil.copy(log, folder / log.name)


def parse_steps(text: str) -> list[int]:
    try:
        steps = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a list of numbers like 1,2,4") from None
    if not steps or any(s < 1 or s > 256 for s in steps):
        raise argparse.ArgumentTypeError("every step is a number of clients from 1 to 256")
    return steps


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=parse_steps, default=[1, 2, 4, 8, 16])
    parser.add_argument("--seconds-per-step", type=float, default=12.0)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per target")
    parser.add_argument("--targets", default="default,production")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers")
    parser.add_argument(
        "--client-procs", type=int, default=os.cpu_count() or 1, help="client processes"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    parser.add_argument(
        "--data",
        choices=("demo", "synthetic"),
        default="demo",
        help="the demo data set (default), or only --rows synthetic rows (a quick smoke run)",
    )
    parser.add_argument(
        "--rows",
        type=int,
        default=None,
        help="synthetic activities and notifications (default: 0 with the demo, 2000 alone)",
    )
    parser.add_argument(
        "--no-check", action="store_true", help="skip the compliance check after seeding"
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "CBM_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument(
        "--logs", type=Path, default=None, help="copy the servers' logs into this folder"
    )
    args = parser.parse_args(argv)
    names = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not names or set(names) - set(TARGETS):
        parser.error(f"--targets: choose from {', '.join(TARGETS)}")
    if args.rows is None:
        args.rows = 0 if args.data == "demo" else 2000
    if args.data == "synthetic" and args.rows < 100:
        parser.error("--data synthetic needs --rows of at least 100")
    signal.signal(signal.SIGTERM, _terminate)

    started = time.monotonic()
    info = {"machine": machine()}
    info["versions"] = versions(args.postgres if "production" in names else None)
    m = info["machine"]
    print(
        f"machine: {m['cores']} cores, {m['memory_mb']:,} MB, {m['platform']}; "
        f"load average {' '.join(map(str, m['load_average_at_start']))}"
    )
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    tag = uuid.uuid4().hex[:6]
    results: list[dict[str, Any]] = []
    targets: list[Target] = []
    try:
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cbm-load-")))
            if args.logs:
                stack.callback(copy_logs, tmp, args.logs)
            (tmp / "default").mkdir(mode=0o700)
            urls = {}
            if "default" in names:
                urls["default"] = f"sqlite:///{tmp / 'default' / 'cbm.sqlite3'}"
            if "production" in names:
                urls["production"] = stack.enter_context(throwaway_postgres(args.postgres))
            t0 = time.monotonic()
            tokens = seed_all(urls, not args.no_check, args.rows, args.data == "demo")
            data = ["the demo data"] if args.data == "demo" else []
            if args.rows:
                data.append(f"{args.rows:,} synthetic activities and notifications")
            print(
                f"seeded {len(urls)} database(s) with {' + '.join(data)}"
                f"{'' if args.no_check else ' and its check'} in {time.monotonic() - t0:.1f} s"
            )
            for name in names:
                t0 = time.monotonic()
                if name == "default":
                    target = stack.enter_context(start_default(tmp))
                else:
                    target = stack.enter_context(start_production(tmp, urls[name], args.workers))
                prepare_clients(target, tokens[name])
                print(f"{name}: {target.description}; up in {time.monotonic() - t0:.1f} s")
                targets.append(target)
            for target in targets:
                if args.warmup > 0:
                    run_step(target, 4, args.warmup, args.client_procs, args.timeout, tag + "w")
            print(
                f"\n{args.seconds_per_step:g} s per step; mix {dict(MIX)} "
                f"(%); {args.client_procs} client processes"
            )
            print(STEP_HEADER)
            for i, clients in enumerate(args.steps):
                order = targets if i % 2 == 0 else targets[::-1]
                for target in order:
                    r = run_step(
                        target,
                        clients,
                        args.seconds_per_step,
                        args.client_procs,
                        args.timeout,
                        f"{tag}-{clients}",
                    )
                    results.append(r)
                    print(step_line(r), flush=True)
                    for sample in r["error_samples"]:
                        print(f"    error: {sample}")
            print()
    except KeyboardInterrupt:
        print("\ninterrupted: every process and database was removed", file=sys.stderr)
        return 130

    steps = args.steps
    ok, line, rows = verdict(results, steps) if len(names) == 2 else (True, "", [])
    print("summary (req/s = successful requests per second):")
    if rows:
        print(summary(results, steps, rows))
        print(f"verdict: {line}")
    print(f"total time {time.monotonic() - started:.0f} s")
    if args.json:
        figures = {
            **info,
            "config": {
                "steps": steps,
                "seconds_per_step": args.seconds_per_step,
                "warmup": args.warmup,
                "client_procs": args.client_procs,
                "workers": args.workers or 2 * (os.cpu_count() or 1),
                "data": args.data,
                "rows": args.rows,
                "check": not args.no_check,
                "mix": dict(MIX),
            },
            "targets": [
                {"name": t.name, "description": t.description, "pids": t.pids} for t in targets
            ],
            "steps": results,
            "comparison": rows,
            "verdict": {"production_ahead": ok, "line": line},
        }
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
