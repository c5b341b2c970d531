"""`cbm doctor`: each check reports what is wrong and the fix; exit 1 only on a PROBLEM."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import throwaway_pg_database
from sqlalchemy.orm import Session

from cbm.config import load_settings
from cbm.db import make_engine, utcnow
from cbm.doctor import OK, PROBLEM, WARNING, Finding, has_problem, run_checks
from cbm.migrate import upgrade
from cbm.models import CheckRun, SchedulerHeartbeat, Source

CBM = [sys.executable, "-m", "cbm.cli"]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CBM_")}
    full.update(env)
    return subprocess.run(
        [*CBM, *args], env=full, capture_output=True, text=True, timeout=120, check=False
    )


def _migrate(url: str) -> None:
    from cbm.reference.loader import load_reference

    engine = make_engine(url)
    try:
        upgrade(engine)
        with Session(engine) as session:
            load_reference(session)
            session.commit()
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database with the reference data, built once and copied per test."""
    path = tmp_path_factory.mktemp("doctor-template") / "cbm.sqlite3"
    _migrate(f"sqlite:///{path}")
    return path


@pytest.fixture()
def instance(tmp_path: Path, template: Path) -> Path:
    folder = tmp_path / "instance"
    folder.mkdir(mode=0o700)
    shutil.copy(template, folder / "cbm.sqlite3")
    return folder


def _url(instance: Path) -> str:
    return f"sqlite:///{instance / 'cbm.sqlite3'}"


def _add(url: str, *rows: object) -> None:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            session.add_all(rows)
            session.commit()
    finally:
        engine.dispose()


def _beat(url: str, age: dt.timedelta = dt.timedelta(seconds=5)) -> None:
    seen = utcnow() - age
    _add(
        url,
        SchedulerHeartbeat(
            scheduler_id="sched-host:4242",
            host="sched-host",
            pid=4242,
            started_at=seen,
            last_seen_at=seen,
        ),
    )


def _checks(instance: Path) -> list[Finding]:
    return run_checks(load_settings({"CBM_INSTANCE_DIR": str(instance)}))


def _by_title(findings: list[Finding], title: str) -> Finding:
    matches = [f for f in findings if f.title == title]
    assert len(matches) == 1, findings
    return matches[0]


def test_healthy_instance_is_all_ok(instance: Path) -> None:
    _beat(_url(instance))
    out = run(["doctor"], {"CBM_INSTANCE_DIR": str(instance)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "PROBLEM" not in out.stdout and "WARNING" not in out.stdout, out.stdout
    for title in ("database", "schema", "reference data", "secret key", "scheduler"):
        assert f"OK       {title}:" in out.stdout
    assert "0 problem(s), 0 warning(s)." in out.stdout


def test_unmigrated_database_is_a_problem_with_the_fix(tmp_path: Path) -> None:
    import sqlite3

    tmp_path.chmod(0o700)
    sqlite3.connect(tmp_path / "cbm.sqlite3").close()  # an empty database file
    env = {"CBM_INSTANCE_DIR": str(tmp_path)}
    out = run(["doctor"], env)
    assert out.returncode == 1
    assert "PROBLEM  schema: at an empty schema" in out.stdout
    assert "fix: cbm db upgrade" in out.stdout
    data = json.loads(run(["doctor", "--json"], env).stdout)
    assert data["ok"] is False
    schema = next(c for c in data["checks"] if c["title"] == "schema")
    assert schema == {
        "status": PROBLEM,
        "title": "schema",
        "detail": schema["detail"],
        "fix": "cbm db upgrade",
    }
    assert {c["status"] for c in data["checks"]} <= {OK, WARNING, PROBLEM}


def test_missing_sqlite_file_and_unreachable_server(tmp_path: Path) -> None:
    findings = _checks(tmp_path)
    assert _by_title(findings, "database").status == PROBLEM
    assert not any(f.title == "schema" for f in findings)  # skipped, not piled on
    settings = load_settings(
        {
            "CBM_INSTANCE_DIR": str(tmp_path),
            "CBM_DATABASE_URL": "postgresql+psycopg://nobody:hunter2@127.0.0.1:9/none",
        }
    )
    database = _by_title(run_checks(settings), "database")
    assert database.status == PROBLEM and "cannot reach" in database.detail
    assert "hunter2" not in database.detail


def test_open_permissions_are_problems_with_chmod(instance: Path) -> None:
    _beat(_url(instance))
    _checks(instance)  # generates the secret key file (0600)
    key = instance / "secret_key"
    key.chmod(0o644)
    instance.chmod(0o755)
    findings = _checks(instance)
    assert has_problem(findings)
    key_check = _by_title(findings, "permissions: secret key file")
    assert key_check.status == PROBLEM and key_check.fix == f"chmod 600 {key}"
    # A folder others may only read is a warning outside production (a developer's
    # checkout), a problem once others may write to it.
    dir_check = _by_title(findings, "permissions: instance dir")
    assert dir_check.status == WARNING and dir_check.fix == f"chmod 700 {instance}"
    instance.chmod(0o777)
    dir_check = _by_title(_checks(instance), "permissions: instance dir")
    assert dir_check.status == PROBLEM and "read or change it" in dir_check.detail
    instance.chmod(0o755)
    out = run(["doctor"], {"CBM_INSTANCE_DIR": str(instance)})
    assert out.returncode == 1 and f"fix: chmod 600 {key}" in out.stdout


def test_weak_secret_key_in_production(instance: Path) -> None:
    settings = load_settings(
        {"CBM_INSTANCE_DIR": str(instance), "CBM_ENV": "production", "CBM_SECRET_KEY": "dev"}
    )
    key = _by_title(run_checks(settings), "secret key")
    assert key.status == PROBLEM and "CBM_SECRET_KEY" in key.fix


def test_sign_in_limit_storage(instance: Path) -> None:
    def limit(**env: str) -> Finding:
        settings = load_settings({"CBM_INSTANCE_DIR": str(instance), **env})
        return _by_title(run_checks(settings), "sign-in rate limit")

    assert limit().status == OK  # memory:// on a developer's machine
    production = {"CBM_ENV": "production", "CBM_SECRET_KEY": "k" * 48}
    per_process = limit(**production)
    assert per_process.status == WARNING and "N times the limit" in per_process.detail
    assert "CBM_RATELIMIT_STORAGE=redis://" in per_process.fix
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    down = limit(**production, CBM_RATELIMIT_STORAGE=f"redis://:hunter2@127.0.0.1:{closed}")
    assert down.status == WARNING and "does not answer" in down.detail, down
    assert "hunter2" not in down.detail


def test_sign_in_limit_on_a_live_redis(instance: Path) -> None:
    import redis

    url = os.environ.get("CBM_TEST_REDIS_URL", "redis://127.0.0.1:6379")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("CBM_REQUIRE_REDIS", "").strip().lower() in {"1", "true", "yes"}:
            pytest.fail(f"CBM_REQUIRE_REDIS is set but Redis at {url} is unusable: {exc}")
        pytest.skip(f"Redis at {url} is unusable: {exc}")
    settings = load_settings({"CBM_INSTANCE_DIR": str(instance), "CBM_RATELIMIT_STORAGE": url})
    found = _by_title(run_checks(settings), "sign-in rate limit")
    assert found.status == OK and "counted in Redis" in found.detail, found


def test_scheduler_heartbeat_missing_or_stale(instance: Path) -> None:
    missing = _by_title(_checks(instance), "scheduler")
    assert missing.status == WARNING
    assert "no scheduler has reported" in missing.detail
    assert "cbm scheduler" in missing.fix and "cbm serve" in missing.fix
    _beat(_url(instance), age=dt.timedelta(minutes=20))
    stale = _by_title(_checks(instance), "scheduler")
    assert stale.status == WARNING
    assert "20 min old" in stale.detail and "sched-host" in stale.detail


def test_late_source_and_failed_check_are_warnings(instance: Path) -> None:
    now = utcnow()
    _beat(_url(instance))
    _add(
        _url(instance),
        Source(
            name="ministry-feed",
            location="https://example.org/feed.csv",
            schedule="every 1h",
            created_at=now - dt.timedelta(days=3),
            last_success_at=now - dt.timedelta(hours=5),
            last_error="HTTP 500 from https://example.org/feed.csv",
        ),
        Source(
            name="fresh-feed",
            location="/srv/drop",
            schedule="every 1h",
            created_at=now - dt.timedelta(days=3),
            last_success_at=now - dt.timedelta(minutes=30),
        ),
        Source(name="never", location="/srv/never", schedule="0 2 * * *", created_at=now),
        Source(name="off", location="/srv/off", schedule="every 1m", enabled=False),
        CheckRun(trigger="nightly", status="failed", started_at=now, message="boom: bad data"),
    )
    findings = _checks(instance)
    late = _by_title(findings, "source ministry-feed")
    assert late.status == WARNING
    assert "5 h ago" in late.detail and "HTTP 500" in late.detail
    assert "cbm source run 'ministry-feed'" in late.fix
    assert _by_title(findings, "source fresh-feed").status == OK
    assert _by_title(findings, "source never").status == OK  # added just now, not due yet
    assert not any(f.title == "source off" for f in findings)
    check = _by_title(findings, "compliance check")
    assert check.status == WARNING and "boom: bad data" in check.detail
    assert not has_problem(findings)


@pytest.fixture()
def throwaway_pg() -> Iterator[str]:
    """A throwaway database (a failure, not a skip, without a server under CBM_REQUIRE_POSTGRES)."""
    with throwaway_pg_database("cbm_doctor") as url:
        yield url


@pytest.mark.postgres
def test_healthy_postgresql_deployment(throwaway_pg: str, tmp_path: Path) -> None:
    _migrate(throwaway_pg)
    _beat(throwaway_pg)
    env = {
        "CBM_DATABASE_URL": throwaway_pg,
        "CBM_INSTANCE_DIR": str(tmp_path / "instance"),
        "CBM_ENV": "production",
        "CBM_SECRET_KEY": "k" * 20 + uuid.uuid4().hex,
        # As deploy/cbm.env.example: one counter of failed sign-ins for every web process.
        "CBM_RATELIMIT_STORAGE": os.environ.get("CBM_TEST_REDIS_URL", "redis://127.0.0.1:6379"),
    }
    out = run(["doctor", "--json"], env)
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(out.stdout)
    assert data["ok"] is True
    statuses = {c["title"]: c["status"] for c in data["checks"]}
    assert statuses["database"] == statuses["schema"] == statuses["scheduler"] == OK
    assert "SQLite folder" not in statuses
    assert all(s == OK for s in statuses.values()), data
