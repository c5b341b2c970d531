"""Throughput of the write services (validation + upsert + provenance + audit).

Prints rows per second and peak memory for inserting, then re-upserting (unchanged), N
activity rows through ``upsert_records`` in chunks, beside a raw-driver baseline measured in
the same run (sqlite3 ``executemany`` / psycopg ``COPY`` into a bare table). A figure, not a
pass/fail test.

    .venv/bin/python benchmarks/bench_upsert.py --rows 200000
    .venv/bin/python benchmarks/bench_upsert.py --rows 200000 \\
        --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import uuid
from pathlib import Path

import pandas as pd
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from cbm.db import make_engine
from cbm.migrate import upgrade
from cbm.models import ImportRun
from cbm.reference.loader import load_reference
from cbm.services import Actor, upsert_records

STATES = ["DEU", "FRA", "POL", "RUS", "USA", "GBR", "TUR", "UKR", "ITA", "ESP"]


def frame(n: int, start: int = 0) -> pd.DataFrame:
    ids = range(start, start + n)
    return pd.DataFrame(
        {
            "activity_id": [f"BENCH-{i:08d}" for i in ids],
            "source": "calendar",
            "state": [STATES[i % len(STATES)] for i in ids],
            "kind": "exercise",
            "start_date": [f"20{12 + i % 14:02d}-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in ids],
            "troops": [str(i % 20000) for i in ids],
            "battle_tanks": [str(i % 300) for i in ids],
            "name": [f"Exercise {i}" for i in ids],
        },
        dtype=object,
    )


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_services(url: str, rows: int, chunk: int) -> tuple[float, float]:
    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as session:
        load_reference(session)
        run = ImportRun(importer="benchmark")
        session.add(run)
        session.commit()
        actor = Actor(run_id=run.id)
    timings = []
    for label in ("insert", "unchanged"):
        started = time.perf_counter()
        for offset in range(0, rows, chunk):
            with Session(engine) as session:
                result = upsert_records(
                    session, "activities", frame(min(chunk, rows - offset), offset), actor=actor
                )
                assert not result.errors, result.errors[:3]
                session.commit()
        timings.append(rows / (time.perf_counter() - started))
        print(f"  services {label:9}: {timings[-1]:>10,.0f} rows/s   peak RSS {peak_mb():,.0f} MB")
    engine.dispose()
    return timings[0], timings[1]


def baseline_sqlite(path: Path, rows: int) -> float:
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE bare (a TEXT, s TEXT, st TEXT, k TEXT, d TEXT, t INT, b INT, n TEXT)"
    )
    data = frame(rows).itertuples(index=False, name=None)
    started = time.perf_counter()
    conn.executemany("INSERT INTO bare VALUES (?,?,?,?,?,?,?,?)", data)
    conn.commit()
    rate = rows / (time.perf_counter() - started)
    conn.close()
    return rate


def baseline_postgres(url: str, rows: int) -> float:
    import psycopg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "CREATE TEMP TABLE bare (a TEXT, s TEXT, st TEXT, k TEXT, d DATE, t INT, b INT, n TEXT)"
        )
        data = frame(rows)
        started = time.perf_counter()
        with conn.cursor().copy("COPY bare FROM STDIN") as copy:
            for row in data.itertuples(index=False, name=None):
                copy.write_row(row)
        rate = rows / (time.perf_counter() - started)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--chunk", type=int, default=50_000)
    parser.add_argument("--postgres", help="server URL; a throwaway database is created on it")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        print(f"SQLite, {args.rows:,} activity rows, chunks of {args.chunk:,}")
        insert, _ = run_services(f"sqlite:///{tmp}/bench.sqlite3", args.rows, args.chunk)
        raw = baseline_sqlite(Path(tmp) / "raw.sqlite3", args.rows)
        print(f"  raw sqlite3 executemany: {raw:>10,.0f} rows/s   ratio {insert / raw:.2f}")

    if args.postgres:
        admin = make_engine(args.postgres, isolation_level="AUTOCOMMIT")
        name = f"cbm_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
        try:
            print(f"PostgreSQL, {args.rows:,} activity rows, chunks of {args.chunk:,}")
            insert, _ = run_services(url, args.rows, args.chunk)
            raw = baseline_postgres(url, args.rows)
            print(f"  raw psycopg COPY:        {raw:>10,.0f} rows/s   ratio {insert / raw:.2f}")
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
