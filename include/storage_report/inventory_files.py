"""Storage-report totals from S3 Inventory data files, read with DuckDB (CSV.gz and Parquet).

Why DuckDB: it reads gzip CSV and Parquet natively, aggregates a file in a streaming pass with bounded
memory and vectorised code (millions of rows per second per core), so nothing here parses rows in
Python. Each data file is downloaded to a temporary file, checked against the manifest
(:func:`include.inventory.read.download`), aggregated, and removed: disk and memory hold one data file
at a time.

The totals are the same :class:`include.storage_report.summarize.Totals` a listing produces, so parts
merge exactly whatever their source. Rows: with a versioned inventory, ``is_latest`` and not a delete
marker = a current object; other versions are noncurrent; delete markers are counted. Without version
columns every row is a current object.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from typing import Any

from include.core.progress import Progress
from include.inventory.manifest import InventoryError, Manifest
from include.inventory.read import (
    PARQUET_TIME,
    download,
    duckdb_config,
    local_name,
    read_as_described,
    relation,
    sql_text,
)
from include.storage_report.summarize import Totals

log = logging.getLogger(__name__)
#: Data files per mapped task: a billion-object inventory (~ thousands of files) stays within the
#: mapping limit while each task reads a few hundred MB.
FILES_PER_PART = 8


def _query(fmt: str, columns: Sequence[str], path: str, versions: bool, storage_classes: Sequence[str]) -> str:
    """One row per (storage class, kind) with count, bytes and newest ``last_modified`` (ISO, ms)."""
    size = "TRY_CAST(size AS BIGINT)"
    when = PARQUET_TIME if fmt == "Parquet" else "last_modified_date"
    cls = "COALESCE(NULLIF(storage_class, ''), 'STANDARD')"
    if versions:
        marker = "COALESCE(TRY_CAST(is_delete_marker AS BOOLEAN), false)"
        latest = "COALESCE(TRY_CAST(is_latest AS BOOLEAN), false)"
        kind = f"CASE WHEN {marker} THEN 'marker' WHEN {latest} THEN 'current' ELSE 'noncurrent' END"
    else:
        kind = "'current'"
    where = ""
    if storage_classes:
        names = ", ".join(sql_text(c) for c in storage_classes)
        where = f"WHERE {kind} = 'marker' OR {cls} IN ({names})"
    return (f"SELECT {cls} AS cls, {kind} AS kind, count(*) AS n, COALESCE(sum({size}), 0) AS bytes, "
            f"max({when}) AS newest, count(*) FILTER (WHERE {size} IS NULL AND {kind} <> 'marker') AS bad "
            f"FROM {relation(fmt, columns, [path])} {where} GROUP BY ALL")


def count_files(client: Any, manifest: Manifest, first: int, last: int, *,
                storage_classes: Sequence[str] = (), include_versions: bool = False) -> Totals:
    """Totals over data files ``first..last-1`` of ``manifest`` (one part of a bucket)."""
    import duckdb

    totals = Totals()
    versions = manifest.versions
    con = duckdb.connect(config=duckdb_config())
    progress = Progress(f"reading the inventory of {manifest.source_bucket} (files {first + 1}..{last})", unit="files",
                        total=last - first, total_bytes=sum(int(manifest.files[i]["size"]) for i in range(first, last)),
                        log=log, detail=lambda: f"{totals.object_count or 0:,} objects")
    try:
        with tempfile.TemporaryDirectory(prefix="s3ops-inventory-") as folder:
            for i in range(first, last):
                entry = manifest.files[i]
                path = download(client, manifest.dest_bucket, entry, os.path.join(folder, local_name(i, entry)))
                with read_as_described(f"s3://{manifest.dest_bucket}/{entry['key']}"):
                    rows = con.execute(_query(manifest.format, manifest.columns, path, versions,
                                              storage_classes)).fetchall()
                os.remove(path)
                for cls, kind, n, size, newest, bad in rows:
                    if bad:
                        raise InventoryError(f"s3://{manifest.dest_bucket}/{entry['key']}: {bad} rows without "
                                             "a readable Size: refused")
                    if kind == "marker":
                        totals.delete_markers += n if include_versions else 0
                    elif kind == "current":
                        counts = totals.classes.setdefault(cls, [0, 0])
                        counts[0] += n
                        counts[1] += int(size)
                        totals.object_count = (totals.object_count or 0) + n
                        totals.total_bytes += int(size)
                        if newest and (totals.last_modified is None or newest > totals.last_modified):
                            totals.last_modified = newest
                    elif include_versions:
                        counts = totals.noncurrent.setdefault(cls, [0, 0])
                        counts[0] += n
                        counts[1] += int(size)
                totals.pages += 1
                progress.add(1, int(entry["size"]))
    except BaseException:
        progress.finish("failed")
        raise
    finally:
        con.close()
    progress.finish()
    return totals
