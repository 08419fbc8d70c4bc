"""delete_chunk / write_audit against the local S3 server: real DeleteObjects, per-key errors, retries."""

from __future__ import annotations

import json
import uuid
from datetime import UTC

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


def test_a_key_xml_cannot_carry_never_blocks_its_batch_and_a_cr_key_is_confirmed(s3, s3_server, bucket, tmp_path):
    """``\\x01`` cannot be in an XML 1.0 body (S3 answers the whole DeleteObjects MalformedXML); ``\\r`` comes
    back from DeleteObjects as ``\\n``. Both go one by one (DeleteObject, key in the URL); the rest is one batch."""
    odd = ["ctl\x01key", "cr\rkey", "tab\tkey", "amp&<key>"]
    plain = [f"n/{i}" for i in range(5)]
    for key in odd + plain:
        s3.put_object(Bucket=bucket, Key=key, Body=b"abc")
    summary = _plan(tmp_path, [PlanItem(k, 3, "old") for k in odd + plain])
    s3_server.control("POST", "stats/reset", {})

    out = delete_chunk(s3, bucket, tmp_path, summary["chunks"][0], recheck=None, dry_run=False)
    assert (out["deleted"], out["errors"], out["skipped"]) == (9, 0, 0)
    assert _keys(s3, bucket) == []
    stats = s3_server.control("GET", "stats", None)
    assert (stats.get("DeleteObjects"), stats.get("DeleteObject")) == (1, 2)
    audit = write_audit(tmp_path)
    assert audit["deleted_count"] == 9 and audit["error_count"] == 0


def test_the_local_server_refuses_a_malformed_delete_body_like_s3(s3, bucket):
    from botocore.exceptions import ClientError

    s3.put_object(Bucket=bucket, Key="ctl\x01key", Body=b"1")
    with pytest.raises(ClientError, match="MalformedXML"):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "ctl\x01key"}]})
    assert _keys(s3, bucket) == ["ctl\x01key"]


def test_an_object_rewritten_between_plan_and_delete_is_kept(s3, s3_server, bucket, tmp_path):
    """The plan records each object's ETag and the delete is conditional on it (S3 If-Match, per object
    in DeleteObjects): what changed since the plan stays, recorded as kept, and the run does not fail."""
    from datetime import datetime, timedelta

    from include.aws.listing import iter_objects
    from include.retention.policy import Policy, write_plan

    old = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    keys = ["o/1", "o/2", "o/3", "o/ctl\x01"]
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
        {"key": k, "body": f"v1 {k}", "last_modified": old} for k in keys]})
    summary = write_plan(iter_objects(s3, bucket, "o/"), [], tmp_path, key_prefix="o/",
                         policy=Policy.at(datetime.now(UTC)), lookup=None, jobs_table="jobs",
                         allow_empty_jobs=True)
    assert summary["delete_count"] == 4
    planned = [json.loads(line) for line in (tmp_path / "plan" / "00000.jsonl").read_text().splitlines()]
    assert {r["key"]: r["etag"] for r in planned} == {
        k: s3.head_object(Bucket=bucket, Key=k)["ETag"].strip('"') for k in keys}

    for key in ("o/2", "o/ctl\x01"):  # rewritten after the plan (a batch key and a one-by-one key)
        s3.put_object(Bucket=bucket, Key=key, Body=b"v2, written after the plan")
    out = delete_chunk(s3, bucket, tmp_path, summary["chunks"][0], recheck=None, dry_run=False)

    assert (out["deleted"], out["errors"], out["skipped"]) == (2, 0, 2)
    assert _keys(s3, bucket) == ["o/2", "o/ctl\x01"]
    assert s3.get_object(Bucket=bucket, Key="o/2")["Body"].read() == b"v2, written after the plan"
    audit = json.loads((tmp_path / "audit" / "00000.json").read_text())
    assert sorted((r["key"], r["code"]) for r in audit["skipped"]) == [
        ("o/2", "PreconditionFailed"), ("o/ctl\x01", "PreconditionFailed")]
    assert all(r["why"].startswith("changed since plan, kept") for r in audit["skipped"])
    assert write_audit(tmp_path)["error_count"] == 0


def test_an_object_gone_before_the_conditional_delete_is_not_an_error(s3, bucket, tmp_path):
    s3.put_object(Bucket=bucket, Key="g/1", Body=b"1")
    etag = s3.head_object(Bucket=bucket, Key="g/1")["ETag"].strip('"')
    summary = _plan(tmp_path, [PlanItem("g/1", 1, "old", etag=etag), PlanItem("g/\x02", 1, "old", etag=etag)])
    s3.delete_object(Bucket=bucket, Key="g/1")
    out = delete_chunk(s3, bucket, tmp_path, summary["chunks"][0], recheck=None, dry_run=False)
    assert (out["deleted"], out["errors"], out["skipped"]) == (0, 0, 2)
    skipped = json.loads((tmp_path / "audit" / "00000.json").read_text())["skipped"]
    assert {r["code"] for r in skipped} == {"NoSuchKey"}


def test_the_local_server_checks_etags_per_object_and_keeps_cr_keys_intact(s3, s3_server, bucket):
    """scripts/s3server.py's DeleteObjects ETag check rewrites the request for moto: a key with CR must
    reach moto as itself (not as its LF twin), and every refused key is reported."""
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [{"key": "c\nd", "body": "lf twin"}]})
    etags = {k: s3.put_object(Bucket=bucket, Key=k, Body=b"1")["ETag"] for k in ("c\rd", "x", "y")}
    resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "c\rd", "ETag": etags["c\rd"]}, {"Key": "x", "ETag": '"0123"'}, {"Key": "y", "ETag": etags["y"]},
        {"Key": "nope", "ETag": etags["y"]}]})
    assert sorted((e["Key"], e["Code"]) for e in resp["Errors"]) == [("nope", "NoSuchKey"), ("x", "PreconditionFailed")]
    assert len(resp["Deleted"]) == 2
    assert _keys(s3, bucket) == ["c\nd", "x"]
