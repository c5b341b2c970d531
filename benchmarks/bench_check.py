"""A full compliance check over 1,000,000 activities and 1,000,000 notifications.

Generates a synthetic history (51 States with forces, 2000-2025; about 3 % of activities
notifiable, each with its prior notification; annual exchanges and calendars; a sprinkling
of late notifications and frequent large exercises so that rules have something to find),
writes it with driver-level bulk inserts (``executemany`` on SQLite, ``COPY`` on
PostgreSQL: setup, not measured), then runs ``cbm check``'s service over the whole
catalogue in a fresh process and prints the seconds (reading facts, evaluating rules,
writing findings) and the peak RSS. A figure, not a pass/fail test; the goal is < 10 s.

    .venv/bin/python benchmarks/bench_check.py                   # 1,000,000 of each, both engines
    .venv/bin/python benchmarks/bench_check.py --rows 100000 --engines sqlite
    .venv/bin/python benchmarks/bench_check.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import io
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
from bench_import import peak_mb, prepare, throwaway_postgres  # noqa: E402


def generate(rows: int, seed: int = 11) -> dict:
    """Frames for activities and notifications (contract columns plus provenance)."""
    import numpy as np
    import pandas as pd

    from cbm.reference.loader import DATA_DIR

    rng = np.random.default_rng(seed)
    states = pd.read_csv(DATA_DIR / "states.csv")["code"].tolist()
    no_forces = {"AND", "ISL", "LIE", "MCO", "SMR", "VAT"}
    states = [s for s in states if s not in no_forces]
    n = rows
    i = np.arange(n)
    state = np.array(states)[rng.integers(0, len(states), n)]
    start = pd.Timestamp("2000-01-01") + pd.to_timedelta(rng.integers(0, 26 * 365, n), unit="D")
    length = rng.integers(1, 15, n)
    troops = rng.integers(200, 8000, n)
    notifiable = rng.random(n) < 0.03
    troops[notifiable] = rng.integers(9000, 12500, notifiable.sum())
    large = rng.random(n) < 0.004
    troops[large] = rng.integers(13100, 30000, large.sum())
    notifiable |= large
    ids = np.char.add("ACT-", i.astype(str))
    acts = pd.DataFrame(
        {
            "activity_id": ids,
            "source": np.where(notifiable, "calendar", "open_source"),
            "state": state,
            "host_state": state,
            "name": None,
            "kind": "exercise",
            "start_date": start.date,
            "end_date": (start + pd.to_timedelta(length, unit="D")).date,
            "troops": troops,
            "battle_tanks": rng.integers(0, 200, n),
            "acv": rng.integers(0, 400, n),
            "artillery": rng.integers(0, 200, n),
            "air_sorties": None,
            "airborne_troops": None,
            "area": None,
            "remarks": None,
        }
    )
    lead = np.where(rng.random(n) < 0.01, rng.integers(10, 41, n), rng.integers(43, 90, n))
    sent = start - pd.to_timedelta(lead, unit="D") + pd.Timedelta(hours=9)
    kind = np.where(large, "observation_invitation", "prior_notification")
    notes = pd.DataFrame(
        {
            "reference": np.char.add("N-", i.astype(str)),
            "regime": "VD",
            "kind": kind,
            "sender": state,
            "recipients": "ALL",
            "sent_at": sent.tz_localize("UTC"),
            "received_at": None,
            "covers_year": None,
            "activity_id": ids,
            "event_id": None,
            "in_reply_to": None,
            "nil_report": None,
            "remarks": None,
        }
    )
    # Large activities need both: the invitation above and a prior notification.
    extra = notes[large].assign(reference=lambda d: "P" + d["reference"], kind="prior_notification")
    annual = []
    for year in range(2000, 2027):
        for s in states:
            for k, month, day in (("annual_exchange", 12, 15), ("annual_calendar", 11, 15)):
                late = rng.random() < 0.02
                annual.append(
                    {
                        "reference": f"{k}-{s}-{year}",
                        "regime": "VD",
                        "kind": k,
                        "sender": s,
                        "recipients": "ALL",
                        "sent_at": pd.Timestamp(year - 1, month, day - 5, tz="UTC")
                        + pd.Timedelta(days=10 if late else 0),
                        "covers_year": year,
                    }
                )
    annual_df = pd.DataFrame(annual).reindex(columns=notes.columns)
    keep = n - len(extra) - len(annual_df)
    notes = pd.concat([notes.iloc[:keep], extra, annual_df], ignore_index=True)
    return {"activities": acts, "notifications": notes}


def write(url: str, frames: dict) -> None:
    """Bulk-load the frames (setup, not measured)."""
    import datetime as dt

    from sqlalchemy.engine import make_url

    now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
    for table, frame in frames.items():
        frame = frame.assign(created_at=now, updated_at=now)
        for column in ("sent_at", "received_at"):
            if column in frame:
                values = frame[column]
                frame[column] = [
                    None if v is None or v != v else v.tz_convert(None).isoformat(sep=" ")
                    for v in values
                ]
        columns = list(frame.columns)
        if url.startswith("sqlite"):
            import sqlite3

            path = make_url(url).database
            conn = sqlite3.connect(path)
            marks = ", ".join("?" * len(columns))
            records = frame.astype(object).where(frame.notna(), None).itertuples(index=False)
            conn.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",  # noqa: S608
                (tuple(r) for r in records),
            )
            conn.commit()
            conn.close()
        else:
            import psycopg

            dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
            buffer = io.StringIO()
            frame.to_csv(buffer, index=False, header=False)
            buffer.seek(0)
            with psycopg.connect(dsn) as conn:
                with conn.cursor().copy(
                    f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)"
                ) as cp:
                    while block := buffer.read(1 << 20):
                        cp.write(block)
                conn.execute(f"ANALYZE {table}")
                conn.commit()


def child_check(url: str) -> dict:
    from sqlalchemy.orm import sessionmaker

    from cbm.db import make_engine
    from cbm.services.checks import check_now

    start_mb = peak_mb()
    engine = make_engine(url)
    factory = sessionmaker(bind=engine)
    started = time.perf_counter()
    result = check_now(factory, trigger="benchmark")
    seconds = time.perf_counter() - started
    engine.dispose()
    return {
        "seconds": seconds,
        "peak_mb": peak_mb(),
        "start_mb": start_mb,
        "findings": result.detected,
        "by_rule": {k: v["detected"] for k, v in result.by_rule.items() if v["detected"]},
    }


def in_child(url: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", url],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if out.returncode != 0:
        raise SystemExit(f"check failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench(title: str, url: str, frames: dict) -> None:
    prepare(url)
    started = time.perf_counter()
    write(url, frames)
    setup = time.perf_counter() - started
    rows = {k: len(v) for k, v in frames.items()}
    print(f"\n{title}: {rows['activities']:,} activities, {rows['notifications']:,} notifications")
    print(f"  setup (bulk load, not measured): {setup:.1f} s")
    for label in ("first check (all findings new)", "second check (nothing changes)"):
        m = in_child(url)
        print(
            f"  {label:<34} {m['seconds']:>7.2f} s   peak RSS {m['peak_mb']:>6,.0f} MB "
            f"({m['start_mb']:,.0f} at start)   {m['findings']:,} findings"
        )
    print(f"  findings by rule: {m['by_rule']}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child_check(sys.argv[2])))
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
