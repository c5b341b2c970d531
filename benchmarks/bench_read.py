"""Read 1,000,000 activity rows of contract CSV with CSVImporter: rows/s and peak memory.

Generates the file in a temporary folder (about 110 MB), reads it in chunks of 100,000 rows
and prints the rate and the peak memory of the process. Memory must stay bounded by the chunk
size, not the file size: the figures for a tenth of the rows are printed alongside to show it.

    .venv/bin/python benchmarks/bench_read.py [--rows 1000000] [--chunk-size 100000]
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cbm import contract
from importers import CSVImporter, Payload

KINDS = ("exercise", "transfer", "concentration", "alert")
STATES = ("DEU", "FRA", "POL", "RUS", "USA", "GBR", "ITA", "ESP")


def write_file(path: Path, rows: int) -> int:
    header = ",".join(contract.ACTIVITIES.columns)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(header + "\n")
        for i in range(rows):
            day = 1 + i % 28
            out.write(
                f"ACT-{i:08d},notification,{STATES[i % 8]},{STATES[(i + 1) % 8]},"
                f"Exercise {i},{KINDS[i % 4]},2024-03-{day:02d},2024-04-{day:02d},"
                f"{1000 + i % 20000},{i % 300},{i % 500},{i % 200},{i % 90},,"
                f'"area {i % 97}","remark, with a comma"\n'
            )
    return path.stat().st_size


def read_all(path: Path, chunk_size: int, trace: bool) -> tuple[int, float, int]:
    gc.collect()
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    rows = 0
    for batch in CSVImporter().batches(Payload(path.name, path=path), chunk_size=chunk_size):
        rows += len(batch.rows)
    elapsed = time.perf_counter() - started
    peak = 0
    if trace:
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return rows, elapsed, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = []
        for rows in (args.rows // 10, args.rows):
            path = Path(tmp) / f"activities-{rows}.csv"
            size = write_file(path, rows)
            read, elapsed, _ = read_all(path, args.chunk_size, trace=False)
            assert read == rows, (read, rows)
            _, _, peak = read_all(path, args.chunk_size, trace=True)
            results.append((rows, size, elapsed, peak))
            path.unlink()
        print(f"chunk size {args.chunk_size:,} rows")
        print(f"{'rows':>10} {'file MB':>8} {'seconds':>8} {'rows/s':>10} {'peak traced MB':>15}")
        for rows, size, elapsed, peak in results:
            print(
                f"{rows:>10,} {size / 1e6:>8.1f} {elapsed:>8.2f} {rows / elapsed:>10,.0f} "
                f"{peak / 1e6:>15.1f}"
            )
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"process peak RSS {maxrss:,.0f} MB")
        small, large = results[0][3], results[1][3]
        verdict = "bounded by the chunk size" if large < 2 * small else "GROWS with the file"
        print(
            f"memory: {verdict} ({small / 1e6:.0f} MB for 1/10 of the rows, "
            f"{large / 1e6:.0f} MB for all)"
        )


if __name__ == "__main__":
    main()
