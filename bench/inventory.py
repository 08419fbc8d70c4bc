"""Bench: summarizing an S3 Inventory with the storage report's own reader (issue 17, scenario "inventory").

    python -m bench.inventory [--objects 1000000,10000000] [--reps 3] [--threads 1] [--plan]

Synthetic inventory data files in AWS's columns (1M rows per file, versioned columns, 4 storage
classes) are written locally with DuckDB, then each format is aggregated by the exact query
``include.storage_report.inventory_files`` runs per data file (``_query``), one file after another, in a child
process: wall time, CPU time (user+sys), objects per CPU-second (= per core) and peak RSS of the child.
The download and MD5 check of each data file are not included (network-bound; MD5 runs at ~600 MB/s).

``--plan`` adds what the deleting pipelines read instead (``include.inventory.read.Snapshot.objects``):
every current object of all the files, sorted by key out of core by DuckDB and streamed into Python as
the retention merge join consumes it (the order is checked on the way).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROWS_PER_FILE = 1_000_000
COLUMNS = ["bucket", "key", "version_id", "is_latest", "is_delete_marker", "size", "last_modified_date", "e_tag",
           "storage_class"]


def make_files(folder: Path, n: int, fmt: str) -> list[str]:
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 2")
    paths = []
    for start in range(0, n, ROWS_PER_FILE):
        stop = min(n, start + ROWS_PER_FILE)
        path = folder / f"{fmt}-{start // ROWS_PER_FILE:05d}.{'parquet' if fmt == 'Parquet' else 'csv.gz'}"
        paths.append(str(path))
        if path.exists():
            continue
        select = (f"SELECT 'bench' AS bucket, 'data/' || lpad(i::VARCHAR, 10, '0') AS key, md5(i::VARCHAR) AS version_id, "
                  f"i % 10 <> 0 AS is_latest, i % 97 = 0 AS is_delete_marker, (i * 7919) % 100000 AS size, "
                  f"TIMESTAMP '2025-01-01' + to_seconds(i % 31536000) AS last_modified_date, md5(i::VARCHAR) AS e_tag, "
                  f"['STANDARD', 'STANDARD_IA', 'GLACIER', 'DEEP_ARCHIVE'][i % 4 + 1] AS storage_class "
                  f"FROM range({start}, {stop}) t(i)")
        if fmt == "Parquet":
            con.execute(f"COPY ({select}) TO '{path}' (FORMAT parquet)")
        else:
            con.execute(f"COPY (SELECT * REPLACE (strftime(last_modified_date, '%Y-%m-%dT%H:%M:%S.000Z') AS "
                        f"last_modified_date) FROM ({select})) TO '{path}' (FORMAT csv, HEADER false, "
                        f"COMPRESSION gzip, FORCE_QUOTE *)")
    con.close()
    return paths


def child_plan(fmt: str, paths: list[str]) -> None:
    """Runs in the measured process: the sorted object stream a retention plan reads; prints JSON."""
    from include.inventory.manifest import Manifest
    from include.inventory.read import Snapshot

    started = time.perf_counter()
    manifest = Manifest("bench", "bench-dest", "inv/bench/id/2026-01-01T00-00Z/manifest.json", "2026-01-01T00-00Z",
                        fmt, COLUMNS, [], True)
    folder = tempfile.mkdtemp(prefix="s3ops-bench-sort-")
    objects, previous = 0, ""
    with Snapshot(manifest, folder, paths) as snapshot:  # removes ``folder`` (spill files only) on exit
        for obj in snapshot.objects():
            if obj.key <= previous:
                raise SystemExit(f"out of order: {obj.key!r} after {previous!r}")
            previous = obj.key
            objects += 1
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"wall": time.perf_counter() - started, "cpu": usage.ru_utime + usage.ru_stime,
                      "rss_mb": usage.ru_maxrss / 1024, "current_objects": objects}))


def child(fmt: str, paths: list[str], threads: int) -> None:
    """Runs in the measured process: every file through the report's query; prints JSON."""
    import duckdb

    from include.inventory.read import duckdb_config
    from include.storage_report.inventory_files import _query

    started = time.perf_counter()
    con = duckdb.connect(config=duckdb_config(threads=str(threads)))  # the readers' own settings
    objects = 0
    for path in paths:
        for _cls, kind, n, _bytes, _newest, _bad in con.execute(_query(fmt, COLUMNS, path, True, ())).fetchall():
            objects += n if kind == "current" else 0
    con.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"wall": time.perf_counter() - started, "cpu": usage.ru_utime + usage.ru_stime,
                      "rss_mb": usage.ru_maxrss / 1024, "current_objects": objects}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inventory")
    parser.add_argument("--objects", default="1000000,10000000")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--folder", default=os.path.join(tempfile.gettempdir(), "s3ops-bench-inventory"))
    parser.add_argument("--plan", action="store_true", help="also measure the sorted stream the deleting plans read")
    parser.add_argument("--child", nargs="*")
    parser.add_argument("--child-plan", nargs="*")
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1:], args.threads)
        return 0
    if args.child_plan:
        child_plan(args.child_plan[0], args.child_plan[1:])
        return 0
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"{'format':15} {'rows':>11} {'wall s':>8} {'cpu s':>8} {'rows/cpu-s':>12} {'peak RSS MB':>12}")
    for n in (int(x) for x in args.objects.split(",")):
        for fmt in ("Parquet", "CSV"):
            paths = make_files(folder, n, fmt)
            modes = [("report", "--child")] + ([("plan", "--child-plan")] if args.plan else [])
            for label, flag in modes:
                runs = []
                for _ in range(args.reps):
                    out = subprocess.run([sys.executable, "-m", "bench.inventory", "--threads", str(args.threads),
                                          flag, fmt, *paths], capture_output=True, text=True, check=True)
                    runs.append(json.loads(out.stdout))
                wall = statistics.median(r["wall"] for r in runs)
                cpu = statistics.median(r["cpu"] for r in runs)
                rss = statistics.median(r["rss_mb"] for r in runs)
                name = fmt if label == "report" else f"{fmt} sorted"
                print(f"{name:15} {n:>11,} {wall:>8.2f} {cpu:>8.2f} {n / cpu:>12,.0f} {rss:>12.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
