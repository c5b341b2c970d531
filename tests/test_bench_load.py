"""The load benchmark runs end to end: both targets, a tiny run, the table, zero errors.

`benchmarks/bench_load.py` with two 1-second steps on a small synthetic data set: it must
start the single-process default (cbm serve, SQLite) and the production profile
(gunicorn + cbm scheduler, PostgreSQL), drive both, print the per-step table, the summary
and the verdict line, write its JSON, exit 0 and leave neither a process nor a database
behind. The production part needs ``CBM_TEST_DATABASE_URL`` (a server to create the
throwaway database on) and is required under ``CBM_REQUIRE_POSTGRES=1``; without it only
the default runs. The verdict itself (which profile is faster) is not asserted: two
1-second steps on a shared machine are noise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PG_URL, REQUIRE_PG
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_load.py"
BUDGET = 30  # seconds for the whole run (measured: about 17 s on the 2-core CI machine)


def _admin_url() -> str | None:
    """The PostgreSQL server to run the production profile on, if any."""
    if not PG_URL:
        if REQUIRE_PG:
            pytest.fail("CBM_REQUIRE_POSTGRES is set but CBM_TEST_DATABASE_URL is empty")
        return None
    url = PG_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        engine = create_engine(url, poolclass=NullPool)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # the server is down or refuses us
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL at {PG_URL} is required but unusable: {exc}")
        return None
    return url


def _load_databases(url: str) -> set[str]:
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        names = conn.execute(
            text("SELECT datname FROM pg_database WHERE datname LIKE 'cbm_load_%'")
        ).scalars()
        found = set(names)
    engine.dispose()
    return found


def _group_alive(pgid: int) -> bool:
    """Whether any process is left in the process group (each server leads its own)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_tiny_load_run_of_both_targets_is_error_free(tmp_path: Path) -> None:
    admin = _admin_url()
    targets = "default,production" if admin else "default"
    before = _load_databases(admin) if admin else set()
    figures = tmp_path / "load.json"
    args = [sys.executable, str(SCRIPT), "--steps", "1,2", "--seconds-per-step", "1"]
    args += ["--warmup", "0.3", "--data", "synthetic", "--rows", "1000", "--no-check"]
    args += ["--workers", "2", "--targets", targets, "--json", str(figures)]
    if admin:
        args += ["--postgres", admin]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBM_")}
    started = time.monotonic()
    done = subprocess.run(
        args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=90, check=False
    )
    elapsed = time.monotonic() - started
    out = done.stdout
    assert done.returncode == 0, f"exit {done.returncode}\n{out}\n{done.stderr}"
    assert elapsed <= BUDGET * 2, f"took {elapsed:.0f} s (budget {BUDGET} s)\n{out}"

    assert "machine: " in out and " cores" in out
    assert "versions: python " in out and "cbm " in out
    assert "target      clients requests   req/s  p50 ms  p95 ms  p99 ms  5xx  4xx" in out
    rows = [
        line.split()
        for line in out.splitlines()
        if line.split()[:1] in (["default"], ["production"])
    ]
    table = [r for r in rows if len(r) >= 13 and r[1].isdigit()]
    expected = {(t, c) for t in targets.split(",") for c in ("1", "2")}
    assert {(r[0], r[1]) for r in table} == expected, out
    for r in table:
        assert int(r[2]) > 0, f"no request done: {r}"
        assert r[7:12] == ["0"] * 5, f"errors in {r}\n{out}"
    if admin:
        assert "verdict: PASS" in out or "verdict: FAIL: production NOT ahead" in out
        assert "error" not in out.split("verdict:")[1].split("\n")[0].replace("error-free", "")

    data = json.loads(figures.read_text())
    assert {(s["target"], s["clients"]) for s in data["steps"]} == {
        (t, int(c)) for t, c in expected
    }
    for step in data["steps"]:
        assert step["error_count"] == 0, step
        assert step["ok"] == step["requests"] > 0
        assert step["writes"] > 0 or step["requests"] < 10
        assert step["p50_ms"] <= step["p95_ms"] <= step["p99_ms"]
    assert data["machine"]["cores"] == os.cpu_count()

    # Nothing left behind: no server process of the run, no throwaway database.
    pids = [pid for target in data["targets"] for pid in target["pids"]]
    assert len(pids) >= (3 if admin else 1)  # cbm serve; gunicorn, scheduler (and redis)
    assert [pid for pid in pids if _group_alive(pid)] == []
    if admin:
        assert _load_databases(admin) - before == set()
        assert "dropped database cbm_load_" in out
