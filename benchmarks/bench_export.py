"""Streaming a contract CSV export of 1,000,000 activities, beside a raw csv.writer baseline.

Bulk-loads the synthetic activities of ``bench_check.py`` (setup, not measured), then, each
in a fresh process so that memory figures are its own:

* **export**: the path of ``/records/activities.csv`` and ``cbm export activities``:
  ``open_snapshot`` → ``build_job`` (the page's filter parsing) → ``take_stamp`` (the
  ``COUNT`` and data version of the headers) → ``iter_bytes`` (contract notation, natural-key
  order, CSV: on PostgreSQL written by the server with ``COPY … (FORMAT csv)``, on SQLite by
  ``csv.writer`` over the cursor's values), every piece hashed and written to /dev/null;
* **raw**: the same SELECT (same columns, same ORDER BY) on a DB-API cursor, ``fetchmany``
  in chunks of the same size (a server-side cursor on PostgreSQL), straight into
  ``csv.writer`` (no formatting: what the driver returns), to /dev/null.

Prints rows/s, seconds, CPU seconds and the RSS growth (peak RSS minus RSS before the first
query) of each, and the ratio export / raw. A figure, not a pass/fail test; the goal is
≥ 200,000 rows/s with < 100 MB of growth. The SHA-256 of the export is the same on both
engines (same data, same bytes).

Two runs of 1,000,000 rows, shared 2-CPU machine at a load average of about 4 (±30 %):
PostgreSQL 349,000 and 274,000 rows/s (raw 132,000 and 107,000; ratio 2.65 and 2.55; RSS
growth 5 MB), SQLite 250,000 and 193,000 rows/s (raw 161,000 and 180,000; ratio 1.55 and
1.08; 15 MB); a third at a load average of 7: 164,000 and 121,000 rows/s (ratios 2.60 and
1.38). Before ``COPY``, PostgreSQL did 187,000 rows/s. See the README.

    .venv/bin/python benchmarks/bench_export.py                       # 1,000,000 rows, both engines
    .venv/bin/python benchmarks/bench_export.py --rows 200000 --engines sqlite
    .venv/bin/python benchmarks/bench_export.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_check import generate, write  # noqa: E402
from bench_import import peak_mb, prepare, throwaway_postgres  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def child_export(url: str) -> dict:
    """The export as the web view and the CLI run it."""
    from cbm.db import make_engine, make_session_factory
    from cbm.services.export_lists import build_job, iter_bytes, open_snapshot, take_stamp

    engine = make_engine(url)
    with engine.connect():
        pass
    factory = make_session_factory(engine)
    start_mb = rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    session = open_snapshot(factory)
    digest = hashlib.sha256()
    size = 0
    try:
        job = build_job(session, "activities", {})
        stamp = take_stamp(session, job)
        with open(os.devnull, "wb") as sink:
            for piece in iter_bytes(session, job, "csv"):
                digest.update(piece)
                size += len(piece)
                sink.write(piece)
    finally:
        session.close()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    engine.dispose()
    return {
        "rows": stamp.rows,
        "seconds": seconds,
        "cpu": cpu,
        "growth_mb": peak_mb() - start_mb,
        "bytes": size,
        "sha256": digest.hexdigest(),
    }


def child_raw(url: str) -> dict:
    """The same query through the bare driver cursor into csv.writer."""
    from sqlalchemy.orm import Session

    from cbm.db import make_engine
    from cbm.services.exports import EXPORT_CHUNK, _statement

    engine = make_engine(url)
    with Session(engine) as session:
        stmt = _statement(session, __import__("cbm.contract").contract.get("activities"), None)
    sql = str(stmt.compile(engine, compile_kwargs={"literal_binds": True}))
    start_mb = rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    rows = 0
    raw = engine.raw_connection()
    try:
        postgres = engine.dialect.name == "postgresql"
        cursor = raw.driver_connection.cursor("bench_raw") if postgres else raw.cursor()
        cursor.execute(sql)
        with open(os.devnull, "w", newline="") as sink:
            writer = csv.writer(sink, lineterminator="\r\n")
            while batch := cursor.fetchmany(EXPORT_CHUNK):
                writer.writerows(batch)
                rows += len(batch)
        cursor.close()
    finally:
        raw.close()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    engine.dispose()
    return {"rows": rows, "seconds": seconds, "cpu": cpu, "growth_mb": peak_mb() - start_mb}


def in_child(kind: str, url: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, url],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if out.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench(title: str, url: str, frames: dict) -> None:
    prepare(url)
    started = time.perf_counter()
    write(url, {"activities": frames["activities"]})
    print(f"\n{title}: {len(frames['activities']):,} activities")
    print(f"  setup (bulk load, not measured): {time.perf_counter() - started:.1f} s")
    raw = in_child("raw", url)
    export = in_child("export", url)
    for label, m in (("raw csv.writer over the cursor", raw), ("export (HTTP/CLI path)", export)):
        print(
            f"  {label:<31} {m['rows']:>10,} rows {m['seconds']:>6.2f} s "
            f"({m['rows'] / m['seconds']:>9,.0f} rows/s) CPU {m['cpu']:>5.1f} s "
            f"RSS growth {m['growth_mb']:>5.1f} MB"
        )
    ratio = (export["rows"] / export["seconds"]) / (raw["rows"] / raw["seconds"])
    print(
        f"  export / raw: {ratio:.2f}   ({export['bytes']:,} bytes, "
        f"sha256 {export['sha256'][:16]}…)"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, url = sys.argv[2], sys.argv[3]
        print(json.dumps(child_export(url) if kind == "export" else child_raw(url)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "CBM_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
        help="An admin URL; a throwaway database is created and dropped.",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    frames = generate(args.rows)
    print(f"generated in {time.perf_counter() - started:.1f} s")
    engines = args.engines.split(",")
    if "sqlite" in engines:
        with tempfile.TemporaryDirectory() as folder:
            bench("SQLite", f"sqlite:///{folder}/bench.db", frames)
    if "postgresql" in engines:
        with throwaway_postgres(args.postgres) as url:
            bench("PostgreSQL", url, frames)


if __name__ == "__main__":
    main()
