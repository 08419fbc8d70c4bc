"""delete_chunk / write_audit against the local S3 server: real DeleteObjects, per-key errors, retries."""

from __future__ import annotations

import json
import uuid

import pytest

from include.deletion.plan import PlanItem, PlanWriter, delete_chunk, write_audit


@pytest.fixture
def bucket(s3):
    name = f"del-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    return name


def _keys(s3, bucket):
    return sorted(o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                  for o in p.get("Contents", []))


def _plan(run_dir, items, chunk_size=1000):
    writer = PlanWriter(run_dir, chunk_size=chunk_size)
    for item in items:
        writer.add(item)
    return writer.close(listing_complete=True)


def test_deletes_only_planned_keys_records_and_is_idempotent(s3, s3_server, bucket, tmp_path):
    s3_server.control("POST", "seed", {"bucket": bucket, "generate": {"prefix": "a/", "count": 2300, "size": 3}})
    s3.put_object(Bucket=bucket, Key="keep/me", Body=b"x")
    items = [PlanItem(f"a/{i:08d}", 3, "old" if i % 2 else "orphan") for i in range(2200)]
    summary = _plan(tmp_path, items, chunk_size=1100)  # chunks bigger than one DeleteObjects request
    protected = {"a/00000005": "a job refers to it now"}

    totals = [delete_chunk(s3, bucket, tmp_path, c, recheck=lambda its: {k: v for k, v in protected.items()
                                                                           if k in {i.key for i in its}},
                           dry_run=False) for c in summary["chunks"]]
    assert [t["requests"] for t in totals] == [2, 2]
    assert sum(t["deleted"] for t in totals) == 2199 and sum(t["skipped"] for t in totals) == 1
    expected_left = ["a/00000005"] + [f"a/{i:08d}" for i in range(2200, 2300)] + ["keep/me"]
    assert _keys(s3, bucket) == expected_left

    # a retried task touches nothing: no DeleteObjects request is sent again
    s3_server.control("POST", "stats/reset", {})
    again = delete_chunk(s3, bucket, tmp_path, "00001", recheck=None, dry_run=False)
    assert again["deleted"] == 1100
    assert s3_server.control("GET", "stats", None).get("DeleteObjects", 0) == 0

    audit = write_audit(tmp_path, extra={"outcome": "deleted"})
    assert audit["deleted_count"] == 2199 and audit["deleted_bytes"] == 2199 * 3
    assert audit["deleted_by_reason"] == {"old": {"count": 1099, "bytes": 3297}, "orphan": {"count": 1100, "bytes": 3300}}
    assert audit["skipped_count"] == 1 and audit["error_count"] == 0 and audit["chunks_missing"] == []
    on_disk = json.loads((tmp_path / "audit.json").read_text())
    assert on_disk["skipped"] == [{"key": "a/00000005", "size": 3, "reason": "old",
                                   "why": "a job refers to it now", "chunk": "00000"}]
    assert on_disk["outcome"] == "deleted"


def test_dry_run_deletes_and_records_nothing(s3, bucket, tmp_path):
    s3.put_object(Bucket=bucket, Key="x", Body=b"1")
    summary = _plan(tmp_path, [PlanItem("x", 1, "old")])
    out = delete_chunk(s3, bucket, tmp_path, summary["chunks"][0], recheck=None, dry_run=True)
    assert out["would_delete"] == 1 and out["deleted"] == 0
    assert _keys(s3, bucket) == ["x"] and not (tmp_path / "audit").exists()


def test_per_key_errors_are_recorded_not_raised_and_retried(s3, tmp_path):
    """Object Lock legal hold makes DeleteObjects refuse one version (AccessDenied) and delete the rest."""
    bucket = f"lock-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    versions = {k: s3.put_object(Bucket=bucket, Key=k, Body=b"abc")["VersionId"] for k in ("d/1", "d/2", "d/3")}
    s3.put_object_legal_hold(Bucket=bucket, Key="d/2", VersionId=versions["d/2"], LegalHold={"Status": "ON"})
    items = [PlanItem(k, 3, "old", version_id=v) for k, v in versions.items()]
    summary = _plan(tmp_path, items)

    out = delete_chunk(s3, bucket, tmp_path, summary["chunks"][0], recheck=None, dry_run=False)
    assert (out["deleted"], out["errors"]) == (2, 1)
    left = s3.list_object_versions(Bucket=bucket).get("Versions", [])
    assert [(v["Key"], v["VersionId"]) for v in left] == [("d/2", versions["d/2"])]
    audit = write_audit(tmp_path)
    assert audit["error_count"] == 1
    assert audit["error_samples"][0]["key"] == "d/2" and audit["error_samples"][0]["code"] == "AccessDenied"

    # after the hold is lifted a retry deletes what is left and keeps the earlier deletions in the record
    s3.put_object_legal_hold(Bucket=bucket, Key="d/2", VersionId=versions["d/2"], LegalHold={"Status": "OFF"})
    out = delete_chunk(s3, bucket, tmp_path, summary["chunks"][0], recheck=None, dry_run=False)
    assert (out["deleted"], out["errors"]) == (3, 0)
    assert not s3.list_object_versions(Bucket=bucket).get("Versions")
    assert write_audit(tmp_path)["deleted_count"] == 3


def test_a_chunk_audit_of_an_earlier_plan_is_not_trusted(s3, bucket, tmp_path):
    s3.put_object(Bucket=bucket, Key="x", Body=b"1")
    s3.put_object(Bucket=bucket, Key="y", Body=b"1")
    first = _plan(tmp_path, [PlanItem("x", 1, "old")])
    delete_chunk(s3, bucket, tmp_path, first["chunks"][0], recheck=None, dry_run=False)
    second = _plan(tmp_path, [PlanItem("y", 1, "old")])  # the plan task ran again in the same run
    out = delete_chunk(s3, bucket, tmp_path, second["chunks"][0], recheck=None, dry_run=False)
    assert out["deleted"] == 1 and _keys(s3, bucket) == []
    assert write_audit(tmp_path)["deleted_count"] == 1


def test_a_chunk_outside_the_plan_is_refused(s3, bucket, tmp_path):
    _plan(tmp_path, [])
    with pytest.raises(ValueError, match="not part of the plan"):
        delete_chunk(s3, bucket, tmp_path, "00000", recheck=None, dry_run=False)
    with pytest.raises(FileNotFoundError, match="no plan"):
        delete_chunk(s3, bucket, tmp_path / "other", "00000", recheck=None, dry_run=False)
