"""Throughput of whole imports: CSV file → importer → validation → upsert → run bookkeeping.

Generates contract CSV files (activities, and notifications without references so they
validate on their own) in a temporary folder, imports them through ``run_import`` (the path
``cbm import`` takes) into SQLite and into PostgreSQL (a throwaway database), and prints
rows per second, CPU time and peak memory (RSS) beside a raw-driver baseline measured in the
same run: ``sqlite3`` ``executemany`` of the CSV rows (read with the csv module) into a bare
table of text columns, and psycopg ``COPY … FROM STDIN (FORMAT csv)`` of the file's bytes
into one.
Each measurement runs in a fresh process, so its peak RSS is its own. A figure, not a
pass/fail test.

    .venv/bin/python benchmarks/bench_import.py --rows 200000
    .venv/bin/python benchmarks/bench_import.py              # 1,000,000 rows per file
    .venv/bin/python benchmarks/bench_import.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

STATES = ["DEU", "FRA", "POL", "RUS", "USA", "GBR", "TUR", "UKR", "ITA", "ESP", "BLR", "SWE"]
KINDS = ["exercise", "transfer", "concentration", "alert"]
SOURCES = ["notification", "calendar", "open_source"]


def peak_mb() -> float:
    """Peak RSS of this process. VmHWM, not ru_maxrss: Linux carries ru_maxrss across
    fork and exec, so a child would report its parent's peak."""
    try:
        with open("/proc/self/status") as status:
            for text_line in status:
                if text_line.startswith("VmHWM:"):
                    return int(text_line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextlib.contextmanager
def throwaway_postgres(admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database on the server of ``admin_url``, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"cbm_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --------------------------------------------------------------------------------------
# the files
# --------------------------------------------------------------------------------------


def write_files(folder: Path, rows: int) -> dict[str, Path]:
    """activities.csv and notifications.csv with ``rows`` rows each (contract columns)."""
    import numpy as np
    import pandas as pd

    from cbm import contract

    i = np.arange(rows)
    year = 2012 + i % 14
    month = 1 + i % 12
    day = 1 + i % 28
    start = pd.Series([f"{y}-{m:02d}-{d:02d}" for y, m, d in zip(year, month, day, strict=True)])
    end_day = np.minimum(day + 5, 28)
    end = pd.Series([f"{y}-{m:02d}-{d:02d}" for y, m, d in zip(year, month, end_day, strict=True)])
    states = np.array(STATES)
    activities = pd.DataFrame(
        {
            "activity_id": [f"BENCH-{n:08d}" for n in i],
            "source": np.array(SOURCES)[i % len(SOURCES)],
            "state": states[i % len(states)],
            "host_state": states[(i + 3) % len(states)],
            "name": [f"Exercise {n}" for n in i],
            "kind": np.array(KINDS)[i % len(KINDS)],
            "start_date": start,
            "end_date": end,
            "troops": (i * 7 % 20000).astype(str),
            "battle_tanks": (i % 300).astype(str),
            "acv": (i % 500).astype(str),
            "artillery": (i % 200).astype(str),
            "air_sorties": "",
            "airborne_troops": "",
            "area": "Training area",
            "remarks": "",
        }
    )
    notifications = pd.DataFrame(
        {
            "reference": [f"VD/BENCH/{n:08d}" for n in i],
            "regime": "VD",
            "kind": "prior_notification",
            "sender": states[i % len(states)],
            "recipients": "ALL",
            "sent_at": [
                f"{y}-{m:02d}-{d:02d}T09:{n % 60:02d}:00Z"
                for y, m, d, n in zip(year, month, day, i, strict=True)
            ],
            "received_at": "",
            "covers_year": year.astype(str),
            "activity_id": "",
            "event_id": "",
            "in_reply_to": "",
            "nil_report": "false",
            "remarks": "",
        }
    )
    files = {}
    for kind, frame in (("activities", activities), ("notifications", notifications)):
        assert list(frame.columns) == list(contract.get(kind).columns), kind
        path = folder / f"{kind}.csv"
        frame.to_csv(path, index=False)
        files[kind] = path
    return files


# --------------------------------------------------------------------------------------
# the measurements (each in its own process)
# --------------------------------------------------------------------------------------


def child_import(url: str, path: str, kind: str, chunk: int) -> dict:
    from cbm.db import make_engine, make_session_factory
    from cbm.services.imports import run_import
    from importers.base import Payload

    engine = make_engine(url)
    factory = make_session_factory(engine)
    start_mb = peak_mb()
    started, cpu = time.perf_counter(), time.process_time()
    result = run_import(
        factory, [Payload(name=Path(path).name, path=Path(path))], kind=kind, chunk_size=chunk
    )
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    run = result.runs[0]
    engine.dispose()
    return {
        "rows": run.read,
        "seconds": seconds,
        "cpu": cpu,
        "peak_mb": peak_mb(),
        "start_mb": start_mb,
        "status": run.status,
        "inserted": run.inserted,
        "unchanged": run.unchanged,
        "rejected": run.rejected,
        "message": run.message,
    }


def child_raw_sqlite(path: str, db: str) -> dict:
    import csv
    import sqlite3

    start_mb = peak_mb()
    conn = sqlite3.connect(db)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        columns = ", ".join(f'"{c}" TEXT' for c in header)
        conn.execute(f"CREATE TABLE bare ({columns})")
        marks = ", ".join("?" * len(header))
        started, cpu = time.perf_counter(), time.process_time()
        conn.executemany(f"INSERT INTO bare VALUES ({marks})", reader)  # noqa: S608
        conn.commit()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    rows = conn.execute("SELECT count(*) FROM bare").fetchone()[0]
    conn.close()
    return {
        "rows": rows,
        "seconds": seconds,
        "cpu": cpu,
        "peak_mb": peak_mb(),
        "start_mb": start_mb,
    }


def child_raw_postgres(path: str, url: str) -> dict:
    import psycopg
    from sqlalchemy.engine import make_url

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    start_mb = peak_mb()
    with psycopg.connect(dsn) as conn:
        with open(path, "rb") as handle:
            header = handle.readline().decode().strip().split(",")
            columns = ", ".join(f'"{c}" TEXT' for c in header)
            conn.execute(f"CREATE TABLE bare ({columns})")
            handle.seek(0)
            started, cpu = time.perf_counter(), time.process_time()
            with conn.cursor().copy("COPY bare FROM STDIN WITH (FORMAT csv, HEADER true)") as cp:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    cp.write(block)
            conn.commit()
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        rows = conn.execute("SELECT count(*) FROM bare").fetchone()[0]
        conn.execute("DROP TABLE bare")
    return {
        "rows": rows,
        "seconds": seconds,
        "cpu": cpu,
        "peak_mb": peak_mb(),
        "start_mb": start_mb,
    }


def in_child(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    if out.returncode != 0:
        raise SystemExit(f"measurement {args[0]} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------


def prepare(url: str) -> None:
    from sqlalchemy.orm import Session

    from cbm.db import make_engine
    from cbm.migrate import upgrade
    from cbm.reference.loader import load_reference

    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as session:
        load_reference(session)
        session.commit()
    engine.dispose()


def line(label: str, m: dict, raw: dict | None = None) -> str:
    rate = m["rows"] / m["seconds"]
    ratio = f"{rate / (raw['rows'] / raw['seconds']):6.2f}" if raw else "     –"
    return (
        f"  {label:<36} {m['rows']:>10,} {m['seconds']:>8.1f} s {m['cpu']:>6.1f} s "
        f"{rate:>10,.0f} rows/s {m['peak_mb']:>7,.0f} MB ({m['start_mb']:,.0f} at start)  {ratio}"
    )


def bench_backend(title: str, url: str, files: dict[str, Path], chunk: int, raw: dict) -> None:
    print(f"\n{title}")
    print(
        f"  {'phase':<36} {'rows':>10} {'time':>10} {'our CPU':>8} {'throughput':>17} "
        f"{'peak RSS':>8}                 {'vs raw'}"
    )
    prepare(url)
    for label, kind in (
        ("activities: insert", "activities"),
        ("activities: again (all unchanged)", "activities"),
        ("notifications: insert", "notifications"),
    ):
        m = in_child("import", url, str(files[kind]), kind, str(chunk))
        assert m["status"] == "succeeded", m
        assert m["rejected"] == 0, m
        print(line(label, m, raw[kind]))
    for kind in ("activities", "notifications"):
        print(line(f"raw baseline: {kind}", raw[kind]))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        what, *rest = sys.argv[2:]
        if what == "import":
            url, path, kind, chunk = rest
            result = child_import(url, path, kind, int(chunk))
        elif what == "raw-sqlite":
            result = child_raw_sqlite(*rest)
        else:
            result = child_raw_postgres(*rest)
        print(json.dumps(result))
        return

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per file")
    parser.add_argument("--chunk", type=int, default=50_000, help="rows per batch")
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "CBM_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
        help="server URL; a throwaway database is created on it ('' to skip)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        files = write_files(folder, args.rows)
        sizes = ", ".join(f"{k} {p.stat().st_size / 2**20:,.0f} MiB" for k, p in files.items())
        print(
            f"{args.rows:,} rows per file ({sizes}), batches of {args.chunk:,}; "
            f"generated in {time.perf_counter() - started:.1f} s"
        )
        print("vs raw: the import's rows/s divided by the raw driver's on the same file")
        print(
            "our CPU: CPU time of the measuring process (on PostgreSQL the rest of the time "
            "is the server's, or waiting)"
        )

        raw = {
            kind: in_child("raw-sqlite", str(path), str(folder / f"raw-{kind}.sqlite3"))
            for kind, path in files.items()
        }
        bench_backend(
            "SQLite (a file; WAL)", f"sqlite:///{folder}/bench.sqlite3", files, args.chunk, raw
        )

        if args.postgres:
            with throwaway_postgres(args.postgres) as url:
                raw = {
                    kind: in_child("raw-postgres", str(path), url) for kind, path in files.items()
                }
                bench_backend("PostgreSQL (a throwaway database)", url, files, args.chunk, raw)


if __name__ == "__main__":
    main()
