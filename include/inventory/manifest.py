"""S3 Inventory manifests: finding the newest complete one of a bucket, the way AWS lays them out.

A bucket's inventory configuration (ListBucketInventoryConfigurations) names a destination bucket and
prefix; each delivery is ``<prefix>/<source-bucket>/<config-id>/<YYYY-MM-DDTHH-MMZ>/manifest.json`` with
``manifest.checksum`` (the MD5 of manifest.json) beside it, and data files under ``…/<config-id>/data/``.
The newest delivery whose checksum matches is read; newer ones that do not match (a delivery still being
written, or damaged) are skipped and named. A manifest that lists no files, another bucket, an unknown
format or lacks the columns a report needs is refused with the reason: never half-read.
No Airflow here; boto3 clients are passed in.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

#: Formats read here (DuckDB reads both, natively); ORC, which DuckDB does not read, is refused by name.
FORMATS = ("CSV", "Parquet")
_DELIVERY = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}Z$")
#: The columns a storage report needs (snake_case, as Parquet names them; CSV names are mapped).
REQUIRED = ("size", "last_modified_date", "storage_class")


class InventoryError(Exception):
    """This bucket's inventory cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class Config:
    """One usable inventory configuration of a source bucket."""

    id: str
    dest_bucket: str
    prefix: str
    format: str
    versions: bool  # IncludedObjectVersions == All


@dataclass
class Manifest:
    """A verified manifest: where it is, what it covers, its data files (key, size, MD5)."""

    source_bucket: str
    dest_bucket: str
    key: str
    date: str  # the delivery folder, 2026-11-29T01-00Z
    format: str
    columns: list[str]
    files: list[dict[str, Any]]
    versions: bool
    skipped: list[str] = field(default_factory=list)  # newer deliveries refused, with why

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def iso_date(self) -> str:
        """``2026-11-29T01-00Z`` → ``2026-11-29T01:00:00Z`` (ISO 8601 UTC like every time in report.json)."""
        return f"{self.date[:13]}:{self.date[14:16]}:00Z"


def _snake(name: str) -> str:
    name = name.strip()
    return {"ETag": "e_tag"}.get(name) or re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def columns_of(file_format: str, schema: str) -> list[str]:
    """The data files' columns from ``fileSchema``: a comma list for CSV (``Bucket, Key, Size, …``),
    a Parquet message schema for Parquet (``message s3.inventory { required binary bucket; … }``)."""
    if file_format == "CSV":
        return [_snake(c) for c in schema.split(",") if c.strip()]
    return re.findall(r"(?:required|optional)\s+\w+\s+(\w+)", schema)


def _arn_bucket(arn: str) -> str:
    return arn.split(":::", 1)[1] if arn.startswith("arn:") else arn


def configs(client: Any, bucket: str, unusable: list[str] | None = None) -> list[Config]:
    """The bucket's enabled, whole-bucket inventory configurations in a readable format (paginated);
    why each other one cannot be used is appended to ``unusable``."""
    found: list[Config] = []
    kwargs: dict[str, Any] = {"Bucket": bucket}
    while True:
        page = client.list_bucket_inventory_configurations(**kwargs)
        for c in page.get("InventoryConfigurationList", []):
            dest = c.get("Destination", {}).get("S3BucketDestination", {})
            fmt = {"csv": "CSV", "parquet": "Parquet", "orc": "ORC"}.get(str(dest.get("Format", "")).lower(), "")
            why = ("disabled" if not c.get("IsEnabled") else
                   f"covers the prefix {(c.get('Filter') or {}).get('Prefix')!r} only, not the whole bucket"
                   if (c.get("Filter") or {}).get("Prefix") else
                   f"format {dest.get('Format')!r} is not read (DuckDB reads CSV and Parquet; choose one of them)"
                   if fmt not in FORMATS else None)
            if why is not None:
                if unusable is not None:
                    unusable.append(f"configuration {c.get('Id')!r}: {why}")
                continue
            found.append(Config(c["Id"], _arn_bucket(dest["Bucket"]), dest.get("Prefix", "").strip("/"), fmt,
                                c.get("IncludedObjectVersions") == "All"))
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return found
        kwargs["ContinuationToken"] = token


def _folder(config: Config, bucket: str) -> str:
    return "/".join(p for p in (config.prefix, bucket, config.id) if p) + "/"


def deliveries(client: Any, config: Config, bucket: str) -> list[str]:
    """Delivery folders (``…/<config-id>/2026-11-29T01-00Z/``), newest first."""
    base = _folder(config, bucket)
    out: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=config.dest_bucket, Prefix=base,
                                                                   Delimiter="/"):
        for p in page.get("CommonPrefixes", []):
            name = p["Prefix"][len(base):].rstrip("/")
            if _DELIVERY.match(name):
                out.append(p["Prefix"])
    return sorted(out, reverse=True)


def fetch(client: Any, bucket: str, key: str) -> bytes | None:
    from botocore.exceptions import ClientError

    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise


def parse(raw: bytes, *, checksum: bytes | None, bucket: str, dest_bucket: str, key: str,
          versions: bool) -> Manifest:
    """A verified :class:`Manifest` from manifest.json's bytes and manifest.checksum; InventoryError
    naming what is wrong otherwise."""
    if checksum is None:
        raise InventoryError(f"s3://{dest_bucket}/{key}: no manifest.checksum beside it (delivery incomplete)")
    expected = checksum.decode("ascii", "replace").strip().lower()
    actual = hashlib.md5(raw).hexdigest()  # the checksum AWS defines for manifests
    if expected != actual:
        raise InventoryError(f"s3://{dest_bucket}/{key}: manifest.checksum {expected[:32]!r} does not match "
                             f"the manifest's MD5 {actual} (damaged or still being written)")
    try:
        doc = json.loads(raw)
        fmt, schema, files = doc["fileFormat"], doc["fileSchema"], doc["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InventoryError(f"s3://{dest_bucket}/{key}: not an S3 Inventory manifest ({exc})") from None
    if doc.get("sourceBucket") != bucket:
        raise InventoryError(f"s3://{dest_bucket}/{key}: manifest of bucket {doc.get('sourceBucket')!r}, "
                             f"not {bucket!r}")
    if fmt not in FORMATS:
        raise InventoryError(f"s3://{dest_bucket}/{key}: format {fmt!r} is not read (CSV or Parquet)")
    columns = columns_of(fmt, str(schema))
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise InventoryError(f"s3://{dest_bucket}/{key}: the inventory lacks {', '.join(missing)}: add Size, "
                             "LastModifiedDate and StorageClass to the configuration's optional fields")
    if not isinstance(files, list) or not all(
            isinstance(f, dict) and isinstance(f.get("key"), str) and isinstance(f.get("size"), int)
            and f["size"] >= 0 and re.fullmatch(r"[0-9a-fA-F]{32}", str(f.get("MD5checksum", ""))) for f in files):
        raise InventoryError(f"s3://{dest_bucket}/{key}: files[] entries need key, size and MD5checksum")
    if versions and not {"is_latest", "is_delete_marker"} <= set(columns):
        versions = False
    date = key.rstrip("/").split("/")[-2]
    return Manifest(bucket, dest_bucket, key, date, fmt, columns,
                    [{"key": f["key"], "size": f["size"], "md5": f["MD5checksum"].lower()} for f in files],
                    versions)


def latest(client: Any, bucket: str, *, want_versions: bool = False) -> Manifest | None:
    """The newest verified manifest of ``bucket`` (None: no usable inventory configuration). With
    ``want_versions`` only configurations that include every version qualify. Raises InventoryError
    when configurations exist but no delivery can be read (every one named with why)."""
    unusable: list[str] = []
    usable = [c for c in configs(client, bucket, unusable) if c.versions or not want_versions]
    if not usable:
        if unusable:  # configured, but in a way no exact report or plan can use: say how to fix it
            raise InventoryError("no usable inventory configuration: " + "; ".join(unusable[:5]))
        return None
    refused: list[str] = []
    candidates = sorted(((d, c) for c in usable for d in deliveries(client, c, bucket)),
                        key=lambda dc: dc[0].rstrip("/").split("/")[-1], reverse=True)
    for delivery, config in candidates:
        key = delivery + "manifest.json"
        raw = fetch(client, config.dest_bucket, key)
        if raw is None:
            refused.append(f"s3://{config.dest_bucket}/{key}: missing")
            continue
        try:
            manifest = parse(raw, checksum=fetch(client, config.dest_bucket, delivery + "manifest.checksum"),
                             bucket=bucket, dest_bucket=config.dest_bucket, key=key, versions=config.versions)
        except InventoryError as exc:
            refused.append(str(exc))
            continue
        if want_versions and not manifest.versions:
            refused.append(f"s3://{config.dest_bucket}/{key}: no IsLatest/IsDeleteMarker columns")
            continue
        manifest.skipped = refused
        return manifest
    if refused:
        raise InventoryError("no usable inventory delivery: " + "; ".join(refused[:5]))
    raise InventoryError(f"the inventory configuration(s) of {bucket} ({', '.join(c.id for c in usable)}) "
                         "have delivered nothing yet")
