"""Support for the fault tests: real `cbm` processes against a migrated instance of their own.

Migrating takes seconds, so each backend is migrated once (``cbm db upgrade`` into a
template) and every test gets a copy: a copied SQLite file, or on PostgreSQL a database
created from the template database. Nothing here mocks the database or the processes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import make_url

from cbm.db import make_engine

CBM = [sys.executable, "-m", "cbm.cli"]


def cbm_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a `cbm` subprocess: no CBM_* of ours, no proxy, ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CBM_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env.update({"NO_PROXY": "127.0.0.1,localhost", "CBM_LOG_LEVEL": "INFO"})
    env.update(extra)
    return env


def wait_for(
    condition: Callable[[], Any], timeout: float, what: str, logs: Callable[[], str] = str
):
    """Poll ``condition`` until it is truthy (returned) or ``timeout`` seconds pass (fail)."""
    until = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > until:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{logs()}")
        time.sleep(0.02)


@dataclass
class Instance:
    """A migrated cbm database and the settings a `cbm` subprocess needs to use it."""

    url: str
    env: dict[str, str]
    dir: Path
    engine: Engine = field(init=False)

    def __post_init__(self) -> None:
        self.engine = make_engine(self.url)

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def cbm(
        self,
        *args: str,
        timeout: float = 60,
        extra: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*CBM, *args],
            env=cbm_env({**self.env, **(extra or {})}),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )

    def popen(self, *args: str, log: Path, **kwargs: Any) -> subprocess.Popen:
        with log.open("w") as out:
            return subprocess.Popen(
                [*CBM, *args],
                env=cbm_env(self.env),
                stdout=out,
                stderr=subprocess.STDOUT,
                **kwargs,
            )

    def scalar(self, stmt: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(stmt).scalar()

    def rows(self, stmt: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(stmt).all())

    def count(self, model: Any, *where: Any) -> int:
        return self.scalar(select(func.count()).select_from(model).where(*where))


def limit_file_size(max_bytes: int) -> Callable[[], None]:
    """A ``preexec_fn``: files the child writes may not grow past ``max_bytes``, and a write
    beyond it fails with EFBIG instead of killing the child (SIGXFSZ ignored) — the full
    disk, without mounting anything (needs no privilege)."""
    import resource

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return apply


def migrate_template(env: dict[str, str]) -> None:
    done = subprocess.run(
        [*CBM, "db", "upgrade"], env=cbm_env(env), capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, f"cbm db upgrade: {done.stdout}\n{done.stderr}"


@contextmanager
def sqlite_template(folder: Path) -> Iterator[Path]:
    """An instance folder with a migrated SQLite database (and its secret key)."""
    migrate_template({"CBM_INSTANCE_DIR": str(folder)})
    yield folder


@contextmanager
def sqlite_instance(template: Path, folder: Path) -> Iterator[Instance]:
    folder.mkdir(parents=True)
    for name in ("cbm.sqlite3", "secret_key"):
        shutil.copy2(template / name, folder / name)
    instance = Instance(
        f"sqlite:///{folder / 'cbm.sqlite3'}", {"CBM_INSTANCE_DIR": str(folder)}, folder
    )
    try:
        yield instance
    finally:
        instance.engine.dispose()


def _admin(server_url: str) -> Engine:
    if server_url.startswith("postgresql://"):
        server_url = "postgresql+psycopg://" + server_url.split("://", 1)[1]
    return make_engine(server_url, isolation_level="AUTOCOMMIT")


def _drop(admin: Engine, name: str) -> None:
    with admin.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :n AND pid <> pg_backend_pid()"
            ),
            {"n": name},
        )
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))


@contextmanager
def pg_database(server_url: str, template: str | None = None) -> Iterator[str]:
    """A throwaway database on the server of ``server_url`` (dropped afterwards): its URL."""
    admin = _admin(server_url)
    name = f"cbm_faults_{uuid.uuid4().hex[:10]}"
    clause = f' TEMPLATE "{template}"' if template else ""
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))
        try:
            yield make_url(str(admin.url)).set(database=name).render_as_string(hide_password=False)
        finally:
            _drop(admin, name)
    finally:
        admin.dispose()


@contextmanager
def pg_instance(server_url: str, template: str, folder: Path) -> Iterator[Instance]:
    with pg_database(server_url, template) as url:
        folder.mkdir(parents=True)
        instance = Instance(url, {"CBM_DATABASE_URL": url, "CBM_INSTANCE_DIR": str(folder)}, folder)
        try:
            yield instance
        finally:
            instance.engine.dispose()


class FaultyFeed:
    """A feed on 127.0.0.1 that can break: ``mode`` ``ok`` serves ``body`` (no ETag, so
    every read is a full one), ``hang`` accepts the request and says nothing for ``hang``
    seconds, ``500`` answers HTTP 500. ``requests`` lists the mode of each request met."""

    def __init__(self, body: bytes, *, content_type: str = "text/csv; charset=utf-8") -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.body = body
        self.content_type = content_type
        self.mode = "ok"
        self.hang = 30.0
        self.requests: list[str] = []
        feed = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mode = feed.mode
                feed.requests.append(mode)
                if mode == "hang":
                    time.sleep(feed.hang)
                    return
                if mode == "500":
                    self.send_error(500, "Internal Server Error")
                    return
                body = feed.body
                self.send_response(200)
                self.send_header("Content-Type", feed.content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/feed.csv"

    def __enter__(self) -> FaultyFeed:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- a private PostgreSQL cluster (the shared server on 5432 is never restarted) ----------


def pg_bin() -> Path | None:
    """The folder of Debian's PostgreSQL programs (the newest version), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgCluster:
    """A throwaway cluster of the test's own, run by the ``postgres`` OS user on 127.0.0.1
    (trust authentication), that the test may stop and start at will."""

    bin: Path
    folder: Path
    port: int = field(default_factory=_free_port)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *args: str, timeout: float = 120) -> None:
        # PostgreSQL refuses to run as root: as root, run it as the postgres OS user.
        command = [*(_RUN_AS_POSTGRES if os.geteuid() == 0 else []), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{' '.join(args)}: {done.stdout}\n{done.stderr}"

    def init(self) -> None:
        self._as_postgres(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "--no-instructions",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        self._as_postgres(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "server.log"),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


_RUN_AS_POSTGRES = ["runuser", "-u", "postgres", "--"]


@contextmanager
def pg_cluster(bin_dir: Path) -> Iterator[PgCluster]:
    """Init and start a private cluster in a folder the ``postgres`` user owns; stop it and
    remove the folder afterwards."""
    import pwd
    import tempfile

    # Not under pytest's tmp_path: its parents are private to root.
    folder = Path(tempfile.mkdtemp(prefix="cbm-faults-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    cluster = PgCluster(bin_dir, folder)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        try:
            if (cluster.data / "postmaster.pid").exists():
                cluster.stop("immediate")
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def copy_pg_database(bin_dir: Path, source_url: str, target_url: str) -> None:
    """Copy a (migrated) database into another server with ``pg_dump | psql``: seconds,
    where migrating it again takes several times as long."""
    dump = subprocess.Popen(
        [str(bin_dir / "pg_dump"), "--no-owner", "--no-privileges", "-d", _libpq(source_url)],
        stdout=subprocess.PIPE,
    )
    load = subprocess.run(
        [str(bin_dir / "psql"), "-q", "-v", "ON_ERROR_STOP=1", "-d", _libpq(target_url)],
        stdin=dump.stdout,
        capture_output=True,
        text=True,
        timeout=120,
    )
    dump.stdout.close()
    assert dump.wait(timeout=120) == 0 and load.returncode == 0, load.stderr
