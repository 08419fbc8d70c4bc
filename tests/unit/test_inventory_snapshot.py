"""The sorted streams the deleting plans read from an inventory snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest

from include.inventory import read
from include.inventory.manifest import Manifest

COLUMNS = ["bucket", "key", "size", "last_modified_date", "e_tag", "storage_class"]


def csv_files(folder: Path, files: int, rows: int) -> list[str]:
    import duckdb

    con = duckdb.connect()
    paths = []
    for f in range(files):
        path = folder / f"data-{f}.csv.gz"
        # keys out of order across and within files, as AWS delivers them
        con.execute(f"COPY (SELECT 'b' AS bucket, 'k/' || lpad(((i * 7919) % {files * rows})::VARCHAR, 9, '0') || "
                    f"repeat('x', 40) AS key, i % 1000 AS size, '2026-01-01T00:00:00.000Z' AS last_modified_date, "
                    f"md5(i::VARCHAR) AS e_tag, 'STANDARD' AS storage_class FROM range({f * rows}, {(f + 1) * rows}) t(i)) "
                    f"TO '{path}' (FORMAT csv, HEADER false, COMPRESSION gzip, FORCE_QUOTE *)")
        paths.append(str(path))
    con.close()
    return paths


def test_two_streams_of_one_snapshot_can_be_read_side_by_side(tmp_path):
    """Each stream is a table of its own and a cursor of its own: reading one does not end the other, and
    the snapshot's folder (database file, spill files) goes when it closes."""
    paths = csv_files(tmp_path, files=2, rows=30_000)
    manifest = Manifest("b", "dest", "inv/b/id/2026-01-01T00-00Z/manifest.json", "2026-01-01T00-00Z", "CSV",
                        COLUMNS, [], False)
    spill = tmp_path / "spill"
    spill.mkdir()
    with read.Snapshot(manifest, str(spill), paths) as snapshot:
        first, second = snapshot.objects("k/00000"), snapshot.objects("k/00001")
        pairs = list(zip(first, second, strict=True))
    lows, highs = [a.key for a, _ in pairs], [b.key for _, b in pairs]
    assert len(pairs) == 10_000 and lows == sorted(lows) and highs == sorted(highs)
    assert all(k.startswith("k/00000") for k in lows) and all(k.startswith("k/00001") for k in highs)
    assert not spill.exists()


PARQUET_PROBE = r"""
import os, sys, duckdb
from include.inventory import read
from include.inventory.manifest import Manifest
from include.storage_report.inventory_files import _query
path = sys.argv[1] + "/data.parquet"
con = duckdb.connect()
# AWS's Parquet inventories hold TIMESTAMP(MILLIS, isAdjustedToUTC=true): DuckDB writes a TIMESTAMPTZ so
con.execute(f"COPY (SELECT 'b' AS bucket, 'k' AS key, 5::BIGINT AS size, "
            f"TIMESTAMPTZ '2026-11-22 04:28:13.123+00' AS last_modified_date, 'e' AS e_tag, "
            f"'STANDARD' AS storage_class) TO '{path}' (FORMAT parquet)")
print(con.execute(_query("Parquet", [], path, False, ())).fetchall()[0][4])
manifest = Manifest("b", "dest", "inv/b/id/2026-01-01T00-00Z/manifest.json", "2026-01-01T00-00Z", "Parquet",
                    [], [], False)
spill = sys.argv[1] + "/spill"
os.mkdir(spill)
with read.Snapshot(manifest, spill, [path]) as snapshot:
    print(next(iter(snapshot.objects(""))).last_modified)
"""


def test_a_parquet_inventorys_times_are_utc_whatever_the_workers_time_zone(tmp_path):
    """``last_modified_date::TIMESTAMP`` turned AWS's UTC-adjusted Parquet times into the process's local
    time: a worker in Tokyo reported the newest object 9 hours late, one in New York 5 hours early."""
    import os
    import subprocess
    import sys

    for zone in ("UTC", "Asia/Tokyo", "America/New_York"):
        out = subprocess.run([sys.executable, "-c", PARQUET_PROBE, str(tmp_path)], capture_output=True, text=True,
                             env={**os.environ, "TZ": zone}, check=True).stdout.split()
        assert out == ["2026-11-22T04:28:13.123Z", "2026-11-22T04:28:13.123Z"], zone


def _damaged(folder: Path, fmt: str) -> str:
    """A data file that passed its MD5 check but is not what the manifest says: a CSV row with five fields
    for a six-column fileSchema, or a Parquet file with a broken footer."""
    import gzip

    if fmt == "CSV":
        path = folder / "data.csv.gz"
        path.write_bytes(gzip.compress(b'"b","k0","10","2026-01-01T00:00:00.000Z","abc"\n'))
    else:
        path = folder / "data.parquet"
        path.write_bytes(b"PAR1 not a parquet file PAR1")
    return str(path)


@pytest.mark.parametrize("fmt", ["CSV", "Parquet"])
def test_a_data_file_not_as_the_manifest_describes_refuses_the_inventory_in_one_line(tmp_path, fmt, monkeypatch):
    """DuckDB's own error escaped before: the deleting plans failed every retry with it, and the storage
    report's mapped task failed on every try, so no bucket got a report. Now it is an InventoryError naming
    the file (the plans fail once, the report refuses that bucket's inventory)."""
    from include.inventory.manifest import InventoryError
    from include.storage_report import inventory_files

    path = _damaged(tmp_path, fmt)
    manifest = Manifest("b", "dest", "inv/b/id/2026-01-01T00-00Z/manifest.json", "2026-01-01T00-00Z", fmt,
                        COLUMNS if fmt == "CSV" else [], [{"key": "inv/b/id/data/x", "size": 1}], False)
    spill = tmp_path / "spill"
    spill.mkdir()
    with read.Snapshot(manifest, str(spill), [path]) as snapshot, pytest.raises(
            InventoryError, match=r"^the data files of s3://dest/inv/b/id/2026-01-01T00-00Z/manifest.json: not "
                                  r"readable as the manifest describes it \(.+\)$"):
        list(snapshot.objects())

    def downloaded(client, bucket, entry, local):
        import shutil

        shutil.copy(path, local)
        return local
    monkeypatch.setattr(inventory_files, "download", downloaded)
    with pytest.raises(InventoryError, match=r"^s3://dest/inv/b/id/data/x: not readable as the manifest describes it"):
        inventory_files.count_files(None, manifest, 0, 1)
