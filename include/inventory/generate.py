"""Write real S3 Inventory deliveries for a bucket into an S3 server (the local one, for tests and the demo).

AWS's documented layout: the source bucket gets an inventory configuration (PutBucketInventoryConfiguration)
naming ``s3://<dest>/<prefix>``; a delivery is ``<prefix>/<bucket>/<config-id>/<YYYY-MM-DDTHH-MMZ>/
manifest.json`` + ``manifest.checksum`` with the data files under ``<prefix>/<bucket>/<config-id>/data/``
(CSV: gzip, no header, every field quoted, keys URL-encoded; Parquet: snake_case columns). The rows come
from listing the bucket now (ListObjectVersions with ``versions``), so a report from the inventory must
equal a report from the listing.

    python -m include.inventory.generate --bucket B --dest D [--format CSV|Parquet] [--versions] --endpoint-url URL
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

CSV_SCHEMA = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass"
CSV_SCHEMA_CURRENT = "Bucket, Key, Size, LastModifiedDate, ETag, StorageClass"
PARQUET_COLUMNS = (("bucket", "VARCHAR", "required binary bucket (STRING)"),
                   ("key", "VARCHAR", "required binary key (STRING)"),
                   ("version_id", "VARCHAR", "optional binary version_id (STRING)"),
                   ("is_latest", "BOOLEAN", "optional boolean is_latest"),
                   ("is_delete_marker", "BOOLEAN", "optional boolean is_delete_marker"),
                   ("size", "BIGINT", "optional int64 size"),
                   # TIMESTAMPTZ: written with isAdjustedToUTC=true, as AWS's own inventories are
                   ("last_modified_date", "TIMESTAMPTZ", "optional int64 last_modified_date (TIMESTAMP(MILLIS,true))"),
                   ("e_tag", "VARCHAR", "optional binary e_tag (STRING)"),
                   ("storage_class", "VARCHAR", "optional binary storage_class (STRING)"))
VERSION_COLUMNS = {"version_id", "is_latest", "is_delete_marker"}


def configure(client: Any, bucket: str, *, dest_bucket: str, prefix: str, config_id: str, fmt: str,
              versions: bool) -> None:
    """The source bucket's inventory configuration, as a console user would set it."""
    client.put_bucket_inventory_configuration(Bucket=bucket, Id=config_id, InventoryConfiguration={
        "Destination": {"S3BucketDestination": {"Bucket": f"arn:aws:s3:::{dest_bucket}", "Format": fmt,
                                                "Prefix": prefix}},
        "IsEnabled": True, "Id": config_id, "IncludedObjectVersions": "All" if versions else "Current",
        "OptionalFields": ["Size", "LastModifiedDate", "StorageClass", "ETag"], "Schedule": {"Frequency": "Daily"},
    })


def rows(client: Any, bucket: str, versions: bool) -> Iterator[tuple[Any, ...]]:
    """(bucket, key, version_id, is_latest, is_delete_marker, size, last_modified, etag, class) per entry."""
    from include.aws.listing import iter_objects, iter_versions

    if versions:  # as S3 Inventory records them: every version's own ETag, none for delete markers
        for v in iter_versions(client, bucket):
            yield (bucket, v.key, v.version_id, v.is_latest, v.is_delete_marker,
                   None if v.is_delete_marker else v.size, v.last_modified, v.etag,
                   "" if v.is_delete_marker else v.storage_class)
    else:
        for o in iter_objects(client, bucket):
            yield (bucket, o.key, None, True, False, o.size, o.last_modified, o.etag, o.storage_class)


def _csv_file(batch: list[tuple[Any, ...]], versions: bool) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for b, key, vid, latest, marker, size, when, etag, cls in batch:
        fields = [b, quote(key, safe="/")]
        if versions:
            fields += [vid or "", "true" if latest else "false", "true" if marker else "false"]
        fields += ["" if size is None else str(size), when, etag, cls]
        writer.writerow(fields)
    return gzip.compress(buf.getvalue().encode("utf-8"), mtime=0)


def _parquet_file(batch: list[tuple[Any, ...]], versions: bool) -> bytes:
    import duckdb

    cols = [c for c in PARQUET_COLUMNS if versions or c[0] not in VERSION_COLUMNS]
    with tempfile.TemporaryDirectory(prefix="s3ops-inventory-gen-") as folder:
        src, out = os.path.join(folder, "rows.csv"), os.path.join(folder, "data.parquet")
        with open(src, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            for r in batch:
                picked = [r[i] for i, c in enumerate(PARQUET_COLUMNS) if versions or c[0] not in VERSION_COLUMNS]
                writer.writerow(["" if v is None else v for v in picked])
        spec = ", ".join(f"'{name}': '{kind}'" for name, kind, _ in cols)
        con = duckdb.connect()
        try:
            con.execute(f"COPY (SELECT * FROM read_csv('{src}', header = false, columns = {{{spec}}}, "
                        f"timestampformat = '%Y-%m-%dT%H:%M:%S.%gZ')) TO '{out}' (FORMAT parquet)")
        finally:
            con.close()
        with open(out, "rb") as fh:
            return fh.read()


def write_inventory(
    client: Any, bucket: str, *, dest_bucket: str, prefix: str = "inventory", config_id: str = "s3ops",
    fmt: str = "CSV", versions: bool = False, rows_per_file: int = 1000, when: datetime | None = None,
    dest_client: Any = None,
) -> str:
    """Configure ``bucket``'s inventory and deliver one inventory of it now; returns the manifest key."""
    if fmt not in ("CSV", "Parquet"):
        raise ValueError(f"format {fmt!r}: CSV or Parquet")
    dest_client = dest_client or client
    when = (when or datetime.now(UTC)).astimezone(UTC)
    configure(client, bucket, dest_bucket=dest_bucket, prefix=prefix, config_id=config_id, fmt=fmt, versions=versions)
    base = "/".join(p for p in (prefix.strip("/"), bucket, config_id) if p)
    files = []
    batch: list[tuple[Any, ...]] = []

    def flush() -> None:
        body = _csv_file(batch, versions) if fmt == "CSV" else _parquet_file(batch, versions)
        key = f"{base}/data/{uuid.uuid4()}.{'csv.gz' if fmt == 'CSV' else 'parquet'}"
        dest_client.put_object(Bucket=dest_bucket, Key=key, Body=body)
        files.append({"key": key, "size": len(body), "MD5checksum": hashlib.md5(body).hexdigest()})
        batch.clear()

    for row in rows(client, bucket, versions):
        batch.append(row)
        if len(batch) >= rows_per_file:
            flush()
    if batch:
        flush()
    if fmt == "CSV":
        schema = CSV_SCHEMA if versions else CSV_SCHEMA_CURRENT
    else:
        schema = "message s3.inventory { " + " ".join(
            f"{d};" for name, _, d in PARQUET_COLUMNS if versions or name not in VERSION_COLUMNS) + " }"
    manifest = json.dumps({
        "sourceBucket": bucket, "destinationBucket": f"arn:aws:s3:::{dest_bucket}", "version": "2016-11-30",
        "creationTimestamp": str(int(when.timestamp() * 1000)), "fileFormat": fmt, "fileSchema": schema,
        "files": files,
    }, indent=2).encode("utf-8")
    folder = f"{base}/{when.strftime('%Y-%m-%dT%H-%MZ')}"
    dest_client.put_object(Bucket=dest_bucket, Key=f"{folder}/manifest.json", Body=manifest)
    dest_client.put_object(Bucket=dest_bucket, Key=f"{folder}/manifest.checksum",
                           Body=hashlib.md5(manifest).hexdigest().encode("ascii"))
    return f"{folder}/manifest.json"


def main(argv: Sequence[str] | None = None) -> int:
    from include.aws.client import client_from_args

    parser = argparse.ArgumentParser(prog="python -m include.inventory.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--bucket", required=True, help="source bucket")
    parser.add_argument("--dest", required=True, help="destination bucket (must exist)")
    parser.add_argument("--prefix", default="inventory", help="destination prefix (default inventory)")
    parser.add_argument("--id", default="s3ops", help="inventory configuration id (default s3ops)")
    parser.add_argument("--format", default="CSV", choices=("CSV", "Parquet"))
    parser.add_argument("--versions", action="store_true", help="every version (IncludedObjectVersions All)")
    parser.add_argument("--rows-per-file", type=int, default=100_000)
    parser.add_argument("--endpoint-url", help="S3-compatible endpoint (default: AWS)")
    parser.add_argument("--profile")
    args = parser.parse_args(argv)
    client = client_from_args(profile=args.profile, endpoint_url=args.endpoint_url, region_name="us-east-1")
    key = write_inventory(client, args.bucket, dest_bucket=args.dest, prefix=args.prefix, config_id=args.id,
                          fmt=args.format, versions=args.versions, rows_per_file=max(1, args.rows_per_file))
    print(f"s3://{args.dest}/{key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
