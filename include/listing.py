"""Streaming S3 listings: one object at a time, constant memory, whatever the bucket size.

Every pipeline lists through here, so a faster implementation (see bench/) speeds up all of them.
Keys come in S3's order (UTF-8 binary). ``last_modified`` stays the ISO 8601 UTC string S3 sent
(``2026-11-22T04:28:13.000Z``): comparable as a string, and converted with :func:`parse_time` only
where a datetime is really needed (building one per key is a large part of listing CPU).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, NamedTuple


class S3Object(NamedTuple):
    key: str
    size: int
    last_modified: str  # ISO 8601 UTC, as S3 sends it
    storage_class: str
    etag: str


class S3Version(NamedTuple):
    key: str
    version_id: str
    size: int  # 0 for delete markers
    last_modified: str
    storage_class: str
    is_latest: bool
    is_delete_marker: bool


def _iso(value: Any) -> str:
    if isinstance(value, str):
        return value
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(value: str) -> datetime:
    """``2026-11-22T04:28:13.000Z`` → an aware UTC datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc)


def iter_objects(
    client: Any, bucket: str, prefix: str = "", *, start_after: str | None = None, end_before: str | None = None,
    page_size: int = 1000, on_page: Any = None,
) -> Iterator[S3Object]:
    """Objects under ``prefix`` with ``start_after < key < end_before`` (either bound optional), in key
    order. ``on_page(objects_in_page)`` is called after each page (progress logging)."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
    if start_after:
        kwargs["StartAfter"] = start_after
    while True:
        page = client.list_objects_v2(**kwargs)
        contents = page.get("Contents", [])
        for obj in contents:
            key = obj["Key"]
            if end_before is not None and key >= end_before:
                return
            yield S3Object(key, int(obj["Size"]), _iso(obj["LastModified"]), obj.get("StorageClass", "STANDARD"),
                           obj.get("ETag", "").strip('"'))
        if on_page is not None:
            on_page(len(contents))
        if not page.get("IsTruncated"):
            return
        kwargs["ContinuationToken"] = page["NextContinuationToken"]
        kwargs.pop("StartAfter", None)


def iter_versions(
    client: Any, bucket: str, prefix: str = "", *, on_page: Any = None
) -> Iterator[S3Version]:
    """Every version and delete marker under ``prefix`` (ListObjectVersions), key order."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": 1000}
    while True:
        page = client.list_object_versions(**kwargs)
        items: list[S3Version] = [
            S3Version(v["Key"], v.get("VersionId", "null"), int(v.get("Size", 0)), _iso(v["LastModified"]),
                      v.get("StorageClass", "STANDARD"), bool(v.get("IsLatest")), False)
            for v in page.get("Versions", [])
        ] + [
            S3Version(m["Key"], m.get("VersionId", "null"), 0, _iso(m["LastModified"]), "", bool(m.get("IsLatest")), True)
            for m in page.get("DeleteMarkers", [])
        ]
        items.sort(key=lambda v: v.key)
        yield from items
        if on_page is not None:
            on_page(len(items))
        if not page.get("IsTruncated"):
            return
        kwargs["KeyMarker"] = page["NextKeyMarker"]
        kwargs["VersionIdMarker"] = page.get("NextVersionIdMarker", "")
