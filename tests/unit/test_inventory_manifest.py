"""include.inventory.manifest: parsing and verifying S3 Inventory manifests (no S3)."""

from __future__ import annotations

import hashlib
import json

import pytest

from include.inventory.manifest import InventoryError, columns_of, parse

GOOD = {"sourceBucket": "src", "destinationBucket": "arn:aws:s3:::dest", "version": "2016-11-30",
        "fileFormat": "CSV", "fileSchema": "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, "
                                          "ETag, StorageClass",
        "files": [{"key": "inv/src/c/data/a.csv.gz", "size": 12, "MD5checksum": "0" * 32}]}
KEY = "inv/src/c/2026-11-29T01-00Z/manifest.json"


def _parse(doc: object, *, checksum: bytes | None = None, raw: bytes | None = None, versions: bool = True):
    raw = raw if raw is not None else json.dumps(doc).encode()
    checksum = checksum if checksum is not None else hashlib.md5(raw).hexdigest().encode()
    return parse(raw, checksum=checksum, bucket="src", dest_bucket="dest", key=KEY, versions=versions)


def test_a_good_manifest():
    m = _parse(GOOD)
    assert m.columns == ["bucket", "key", "version_id", "is_latest", "is_delete_marker", "size",
                         "last_modified_date", "e_tag", "storage_class"]
    assert (m.format, m.date, m.iso_date, m.versions) == ("CSV", "2026-11-29T01-00Z", "2026-11-29T01:00:00Z", True)
    assert m.files == [{"key": "inv/src/c/data/a.csv.gz", "size": 12, "md5": "0" * 32}]
    assert _parse(GOOD, checksum=hashlib.md5(json.dumps(GOOD).encode()).hexdigest().upper().encode() + b"\n").key == KEY


def test_parquet_schema_columns():
    schema = ("message s3.inventory { required binary bucket (STRING); required binary key (STRING); "
              "optional int64 size; optional int64 last_modified_date (TIMESTAMP(MILLIS,true)); "
              "optional binary storage_class (STRING); }")
    assert columns_of("Parquet", schema) == ["bucket", "key", "size", "last_modified_date", "storage_class"]
    m = _parse({**GOOD, "fileFormat": "Parquet", "fileSchema": schema})
    assert m.versions is False  # no version columns: a current-only inventory whatever the config said


@pytest.mark.parametrize("doc, checksum, says", [
    (GOOD, b"d41d8cd98f00b204e9800998ecf8427e", "does not match"),
    (GOOD, b"", "does not match"),
    ({**GOOD, "sourceBucket": "other"}, None, "manifest of bucket 'other'"),
    ({**GOOD, "fileFormat": "ORC"}, None, "format 'ORC' is not read"),
    ({**GOOD, "fileSchema": "Bucket, Key, Size"}, None, "lacks last_modified_date, storage_class"),
    ({**GOOD, "files": [{"key": "a", "size": -1, "MD5checksum": "0" * 32}]}, None, "files[] entries"),
    ({**GOOD, "files": [{"key": "a", "size": 1, "MD5checksum": "nope"}]}, None, "files[] entries"),
    ({k: v for k, v in GOOD.items() if k != "files"}, None, "not an S3 Inventory manifest"),
])
def test_bad_manifests_are_refused_with_the_reason(doc, checksum, says):
    with pytest.raises(InventoryError, match=said(says)):
        _parse(doc, checksum=checksum)


def said(text: str) -> str:
    import re

    return re.escape(text)


def test_missing_checksum_and_invalid_bytes():
    raw = b"\xff\xfe not json"
    with pytest.raises(InventoryError, match="no manifest.checksum"):
        parse(raw, checksum=None, bucket="src", dest_bucket="dest", key=KEY, versions=False)
    with pytest.raises(InventoryError, match="not an S3 Inventory manifest"):
        _parse(None, raw=raw)


class _Configs:
    """Answers ListBucketInventoryConfigurations with the given configurations (two pages)."""

    def __init__(self, configs: list[dict]) -> None:
        self.pages = [configs[:1], configs[1:]]

    def list_bucket_inventory_configurations(self, Bucket: str, ContinuationToken: str | None = None) -> dict:
        page = self.pages[1 if ContinuationToken else 0]
        return {"InventoryConfigurationList": page, "IsTruncated": not ContinuationToken, "NextContinuationToken": "t"}


def _config(id_: str, fmt: str = "CSV", enabled: bool = True, prefix: str | None = None) -> dict:
    return {"Id": id_, "IsEnabled": enabled, "IncludedObjectVersions": "Current",
            **({"Filter": {"Prefix": prefix}} if prefix else {}),
            "Destination": {"S3BucketDestination": {"Bucket": "arn:aws:s3:::dest", "Format": fmt, "Prefix": "inv"}}}


def test_configurations_that_cannot_be_used_are_named_with_what_to_change():
    from include.inventory.manifest import latest

    assert latest(_Configs([]), "b") is None  # no configuration at all: the caller's own message
    client = _Configs([_config("orc", fmt="ORC"), _config("off", enabled=False), _config("part", prefix="logs/")])
    with pytest.raises(InventoryError) as refused:
        latest(client, "b")
    text = str(refused.value)
    assert "configuration 'orc': format 'ORC' is not read" in text and "CSV and Parquet" in text
    assert "'off': disabled" in text and "'part': covers the prefix 'logs/' only" in text
