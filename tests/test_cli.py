"""The `cbm` command, run as a real process against real databases."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CBM = [sys.executable, "-m", "cbm.cli"]


def run(args: list[str], env: dict[str, str], timeout: int = 120) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CBM_")}
    full.update(env)
    return subprocess.run(
        [*CBM, *args], env=full, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    return {"CBM_INSTANCE_DIR": str(tmp_path)}


def test_help_lists_the_commands(env: dict[str, str]) -> None:
    out = run(["--help"], env)
    assert out.returncode == 0
    for command in ("db", "reference", "demo", "serve", "version", "scheduler"):
        assert f"  {command}" in out.stdout
    for sub in (["db", "--help"], ["reference", "--help"], ["demo", "--help"], ["serve", "-h"]):
        result = run(sub, env)
        assert result.returncode == 0 and "Usage:" in result.stdout


def test_version(env: dict[str, str]) -> None:
    import cbm

    out = run(["version"], env)
    assert out.returncode == 0 and out.stdout.strip() == f"cbm {cbm.__version__}"


def test_not_migrated_database_is_reported_with_the_fix(env: dict[str, str]) -> None:
    out = run(["db", "current"], env)
    assert out.returncode == 4
    assert "run cbm db upgrade" in out.stdout
    out = run(["reference", "load"], env)
    assert out.returncode == 4
    assert "is not migrated" in out.stderr and "Run: cbm db upgrade" in out.stderr


def test_upgrade_is_idempotent_and_loads_reference(env: dict[str, str]) -> None:
    first = run(["db", "upgrade"], env)
    assert first.returncode == 0, first.stderr
    assert "Schema migrated from empty to" in first.stdout
    assert "states: 57 inserted" in first.stdout
    second = run(["db", "upgrade"], env)
    assert second.returncode == 0
    assert "Schema already at" in second.stdout
    assert "Reference data already up to date." in second.stdout
    current = run(["db", "current"], env)
    assert current.returncode == 0 and "head:" in current.stdout
    down = run(["db", "downgrade", "base", "--yes"], env)
    assert down.returncode == 0 and "base (empty)" in down.stdout
    assert run(["db", "current"], env).returncode == 4


def test_unreachable_database_exit_code(env: dict[str, str]) -> None:
    env = {**env, "CBM_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:9/none"}
    out = run(["db", "current"], env)
    assert out.returncode == 3
    assert "cannot reach the database" in out.stderr
    assert "Traceback" not in out.stderr


def test_malformed_setting_exit_code(env: dict[str, str]) -> None:
    out = run(["db", "current"], {**env, "CBM_PORT": "eighty"})
    assert out.returncode == 1
    assert "CBM_PORT='eighty' is not valid" in out.stderr
    assert "Traceback" not in out.stderr


def test_config_hides_secrets(env: dict[str, str]) -> None:
    out = run(["config"], {**env, "CBM_SECRET_KEY": "supersecretvalue"})
    assert out.returncode == 0
    assert "supersecretvalue" not in out.stdout and "(set)" in out.stdout


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_runs_the_web_app_and_the_scheduler(env: dict[str, str]) -> None:
    import json
    import time
    import urllib.request

    from sqlalchemy import create_engine, text

    assert run(["db", "upgrade"], env).returncode == 0
    port = _free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith("CBM_")}
    full.update(env)
    proc = subprocess.Popen(
        [*CBM, "serve", "--port", str(port)],
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        body = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    body = json.loads(r.read())
                    break
            except OSError:
                time.sleep(0.2)
        assert body is not None, "server did not answer"
        assert body["status"] == "ok" and body["migrations"]["is_current"] is True
        # Pages need a sign-in: the overview redirects to the sign-in page...
        import http.cookiejar
        import re
        import urllib.parse

        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        with opener.open(f"http://127.0.0.1:{port}/", timeout=5) as r:
            page = r.read().decode()
            assert r.url.startswith(f"http://127.0.0.1:{port}/login")
        # ...and the first administrator, created by `cbm user ensure-admin`, gets in.
        made = run(["user", "ensure-admin"], env)
        password = re.search(r"password: (\S+)", made.stdout).group(1)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode(
            {"username": "admin", "password": password, "csrf_token": token}
        ).encode()
        with opener.open(f"http://127.0.0.1:{port}/login", data=form, timeout=5) as r:
            page = r.read().decode()
        assert "No records yet" in page
        # The in-process scheduler has written its heartbeat.
        db = create_engine(f"sqlite:///{env['CBM_INSTANCE_DIR']}/cbm.sqlite3")
        seen = 0
        while time.monotonic() < deadline and not seen:
            with db.connect() as conn:
                seen = conn.execute(text("SELECT count(*) FROM scheduler_heartbeats")).scalar()
            time.sleep(0.2)
        db.dispose()
        assert seen == 1
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert f"serving on http://127.0.0.1:{port}/" in out
