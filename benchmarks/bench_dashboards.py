"""Dashboard pages under load: 1,000,000 activities on PostgreSQL, served by gunicorn.

Builds a throwaway PostgreSQL database with the demo data set plus 1,000,000 synthetic
activities and 1,000,000 notifications (the generator of ``bench_check.py``), runs the
compliance check and the trust computation, starts gunicorn on 127.0.0.1 and then has 8
concurrent signed-in clients fetch the overview, region and State dashboards for a fixed
time. Prints p50, p95 and p99 latency per page, throughput and errors. A figure, not a
pass/fail test; the goal is p95 under 150 ms.

Two phases, each with a fresh gunicorn: first as deployed (the per-process cache of page
data on, see ``dashboards/cache.py``: after the warm-up every page is served from the data
computed at the current data version), then with ``CBM_DASHBOARD_CACHE_SIZE=0``, where
every request computes its page (what the first visitor after each check, import or edit
waits for). ``--cache on|off`` runs one of them.

gunicorn: 4 synchronous workers (``--workers``), i.e. 2 × the 2 CPUs of the reference
machine. The pages are CPU-bound Python (threads would only queue on the GIL) and
PostgreSQL runs on the same CPUs, so gunicorn's usual (2 × cores) + 1 is rounded down;
each worker has its own cache, so more workers also mean more cold pages.

    .venv/bin/python benchmarks/bench_dashboards.py                      # 1,000,000 rows, 30 s
    .venv/bin/python benchmarks/bench_dashboards.py --rows 100000 --seconds 10 --workers 4
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_check import generate, prepare, write  # noqa: E402
from bench_import import throwaway_postgres  # noqa: E402

PASSWORD = "bench-password-123"
PAGES = {
    "overview": "/dashboards/?year=2024",
    "region": "/dashboards/regions/{region}?year=2024",
    "state": "/dashboards/states/{state}?year=2024",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(url: str, rows: int) -> None:
    from sqlalchemy.orm import Session, sessionmaker

    from cbm.db import make_engine
    from cbm.demo.loader import load_demo
    from cbm.services.accounts import create_user
    from cbm.services.checks import check_now

    prepare(url)
    engine = make_engine(url)
    with Session(engine) as session:
        load_demo(session)
        create_user(session, "bench", PASSWORD, "viewer")
        session.commit()
    started = time.perf_counter()
    write(url, generate(rows))
    seconds = time.perf_counter() - started
    print(f"  bulk load of {rows:,} activities and notifications: {seconds:.0f} s")
    started = time.perf_counter()
    result = check_now(sessionmaker(bind=engine), trigger="benchmark")
    print(
        f"  check and trust: {time.perf_counter() - started:.1f} s ({result.detected:,} findings)"
    )
    engine.dispose()


def sign_in(base: str):
    import httpx

    client = httpx.Client(base_url=base, timeout=30)
    page = client.get("/login").text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    response = client.post(
        "/login", data={"username": "bench", "password": PASSWORD, "csrf_token": token}
    )
    if response.status_code not in (302, 303):
        raise SystemExit(f"sign-in failed: HTTP {response.status_code}")
    return client


def hammer(seconds: float, sessions: list, urls: dict[str, list[str]]) -> dict:
    """Each signed-in client fetches every page in turn until ``seconds`` have passed."""
    timings: dict[str, list[float]] = {name: [] for name in urls}
    errors: dict[str, int] = dict.fromkeys(urls, 0)
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    clients = len(sessions)

    def work(n: int) -> None:
        client = sessions[n]
        i = n
        while time.monotonic() < stop:
            for name, choices in urls.items():
                url = choices[i % len(choices)]
                started = time.perf_counter()
                response = client.get(url)
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    if response.status_code == 200:
                        timings[name].append(elapsed)
                    else:
                        errors[name] += 1
            i += 1

    threads = [threading.Thread(target=work, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"timings": timings, "errors": errors}


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument(
        "--cache",
        choices=("both", "on", "off"),
        default="both",
        help="the per-process cache of page data: on, off, or one phase each (default)",
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "CBM_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()

    with throwaway_postgres(args.postgres) as url:
        print(f"PostgreSQL, {args.rows:,} activities; gunicorn with {args.workers} workers")
        setup(url, args.rows)
        phases = {"on": "cache of page data on", "off": "cache off: every page computed"}
        for phase in ("on", "off") if args.cache == "both" else (args.cache,):
            env = {"CBM_DASHBOARD_CACHE_SIZE": "0"} if phase == "off" else {}
            run_phase(phases[phase], url, args, env)


def run_phase(label: str, url: str, args: argparse.Namespace, extra_env: dict) -> None:
    import httpx

    port = free_port()
    env = {
        **os.environ,
        "CBM_DATABASE_URL": url,
        # Not "production": its session cookie is Secure, which plain HTTP on 127.0.0.1
        # would not send back. Nothing else on these pages depends on the profile.
        "CBM_ENV": "development",
        "CBM_SECRET_KEY": uuid.uuid4().hex * 2,
        "CBM_SCHEDULER": "0",
        "PYTHONPATH": str(ROOT),
        **extra_env,
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            str(args.workers),
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "cbm.web:create_app()",
        ],
        env=env,
    )
    sessions = []
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise SystemExit("gunicorn did not come up")
        regions = ["baltic", "central_europe", "nordic", "south_caucasus", "western_europe"]
        states = ["DEU", "RUS", "ARM", "FRA", "POL", "TUR", "UKR", "USA"]
        urls = {
            "overview": [PAGES["overview"]],
            "region": [PAGES["region"].format(region=r) for r in regions],
            "state": [PAGES["state"].format(state=s) for s in states],
        }
        # One sign-in per client (the sign-in rate limit allows 10 a minute per worker).
        sessions = [sign_in(base) for _ in range(args.clients)]
        hammer(3, sessions, urls)  # warm up every worker
        result = hammer(args.seconds, sessions, urls)
        total = sum(len(v) for v in result["timings"].values())
        print(
            f"\n{label}: {args.clients} concurrent clients for {args.seconds:.0f} s: "
            f"{total:,} pages, {total / args.seconds:,.1f} pages/s"
        )
        print(f"  {'page':<10} {'requests':>9} {'p50':>8} {'p95':>8} {'p99':>8} {'errors':>7}")
        for page, values in result["timings"].items():
            print(
                f"  {page:<10} {len(values):>9,} {percentile(values, 50):>6.0f} ms "
                f"{percentile(values, 95):>6.0f} ms {percentile(values, 99):>6.0f} ms "
                f"{result['errors'][page]:>7}"
            )
        if any(result["errors"].values()):
            print("  (errors are non-200 answers)")
    finally:
        for client in sessions:
            client.close()
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
