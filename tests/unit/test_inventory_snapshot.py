"""The sorted streams the deleting plans read from an inventory snapshot."""

from __future__ import annotations

from pathlib import Path

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
