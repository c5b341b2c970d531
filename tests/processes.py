"""Real server processes for tests: gunicorn and `cbm scheduler` on 127.0.0.1, always stopped.

The environment and `cbm` runner come from ``test_scheduler_processes`` (one copy of each).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from test_scheduler_processes import CBM, _env

ROOT = Path(__file__).resolve().parents[1]
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(
    env: dict[str, str], port: int, log: Path, *, workers: int = 2, threads: int = 2
) -> subprocess.Popen:
    """gunicorn with the deployed config on 127.0.0.1:``port``; output to ``log``."""
    with log.open("w") as out:
        return subprocess.Popen(
            [
                str(Path(sys.executable).with_name("gunicorn")),
                "--config",
                str(GUNICORN_CONF),
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--bind",
                f"127.0.0.1:{port}",
                "cbm.web:create_app()",
            ],
            env=_env(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def start_scheduler(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            [*CBM, "scheduler"], env=_env(env), stdout=out, stderr=subprocess.STDOUT
        )


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    """Until ``url`` answers (any status); fails when the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"{proc.args} exited:\n{log.read_text()}"
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"{url} did not answer:\n{log.read_text()}"
            time.sleep(0.2)


def stop_all(procs: list[subprocess.Popen], timeout: float = 30) -> list[int]:
    """SIGTERM every process, wait, SIGKILL what is left; their exit codes."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait())
    return codes
