"""Housekeeping and the run index on an ``s3://`` artifact root (the local S3 server, through
Airflow's ObjectStoragePath and the aws_default connection)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from include.core import artifacts, housekeeping
from include.ui import views


def _keys(s3, bucket: str) -> set[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def test_prune_and_index_on_an_s3_root(s3, s3_server, monkeypatch):
    bucket = f"artifacts-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    monkeypatch.setenv(artifacts.ROOT_ENV, f"s3://{bucket}/store")
    root = artifacts.artifact_root()
    assert not isinstance(root, type(artifacts.Path()))

    artifacts.write_json(artifacts.run_dir("s3_upload", "u1") / "summary.json", {"uploaded": 3, "bytes": 30})
    artifacts.write_jsonl(artifacts.run_dir("s3_upload", "u1") / "manifest.jsonl", [{"key": "a"}])
    ret = artifacts.run_dir("s3_retention", "r1")
    artifacts.write_json(ret / "plan.json", {"delete_count": 2, "bucket": "jobs"})
    artifacts.write_jsonl(ret / "chunks" / "00000.jsonl", [{"key": "x"}])
    artifacts.write_json(ret / "audit.json", {"outcome": "deleted", "deleted_count": 2})
    artifacts.write_json(ret / "audit" / "00000.json", {"deleted": ["x"]})  # the per-key record: kept with the audit
    s3.put_object(Bucket=bucket, Key="store/photos/2019/img.jpg", Body=b"not ours")  # kept: not an s3ops folder

    view = views.uploads_view(root)
    assert (view["run_count"], view["totals"]["uploaded"]) == (1, 3)
    assert [p["status"] for p in views.plans_view(root)["recent"]] == ["finished"]

    now = datetime.now(UTC)
    housekeeping.housekeep(root, {}, now=now + timedelta(days=31))
    left = _keys(s3, bucket)
    assert not any(k.startswith("store/s3_upload/") for k in left), left
    assert {k for k in left if k.startswith("store/s3_retention/")} == {
        "store/s3_retention/r1/plan.json", "store/s3_retention/r1/audit.json", "store/s3_retention/r1/audit/00000.json"}
    assert views.uploads_view(root)["run_count"] == 0
    assert [p["status"] for p in views.plans_view(root)["recent"]] == ["finished"]  # the audit stays readable

    report = housekeeping.housekeep(root, {}, now=now + timedelta(days=401))
    assert not any(k.startswith(("store/s3_retention/", "store/_index/s3_retention/")) for k in _keys(s3, bucket))
    assert "store/photos/2019/img.jpg" in _keys(s3, bucket) and report["foreign_folders_kept"] == ["photos"]
    assert views.plans_view(root)["plan_count"] == 0


def test_a_run_planned_again_on_an_s3_root_keeps_its_earlier_record_and_housekeeping_keeps_it(s3, s3_server,
                                                                                              monkeypatch):
    """keep_earlier_record on ObjectStoragePath (whose relative paths cannot be printed), and housekeeping
    counting earlier/ as a deletion record: a re-plan that then failed left no audit.json at the top, and the
    moved record went after 30 days instead of 400."""
    from include.deletion.plan import PlanWriter

    bucket = f"artifacts-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    monkeypatch.setenv(artifacts.ROOT_ENV, f"s3://{bucket}/store")
    run = artifacts.run_dir("s3_retention", "r1")
    artifacts.write_json(run / "plan.json", {"plan_id": "p1", "chunks": ["00000"]})
    artifacts.write_jsonl(run / "plan" / "00000.jsonl", [{"key": "x", "size": 1, "reason": "orphan"}])
    artifacts.write_json(run / "audit" / "00000.json", {"plan_id": "p1", "deleted": [{"key": "x"}]})
    artifacts.write_json(run / "audit.json", {"plan_id": "p1", "outcome": "deleted", "deleted_count": 1})
    artifacts.write_jsonl(run / "expired_trial_rows" / "00000.jsonl", [{"id": 1}])
    artifacts.write_json(run / "task_results" / "purge_job_rows.json", {"plan_id": "p1", "deleted": 1})  # it purged
    artifacts.write_json(run / "settings.json", {"bucket": "jobs"})
    before = {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in _keys(s3, bucket)}

    PlanWriter(run)  # planned again; here the new plan then fails before it writes anything
    moved = {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in _keys(s3, bucket)
             if k.startswith("store/s3_retention/r1/")}
    assert moved == {k.replace("/r1/", "/r1/earlier/p1/") if not k.endswith("settings.json") else k: v
                     for k, v in before.items() if k.startswith("store/s3_retention/r1/")}

    housekeeping.housekeep(artifacts.artifact_root(), {}, now=datetime.now(UTC) + timedelta(days=31))
    left = _keys(s3, bucket)
    assert {k for k in left if k.startswith("store/s3_retention/r1/earlier/")} == {
        k.replace("/r1/", "/r1/earlier/p1/") for k in before if k.startswith("store/s3_retention/r1/")
        and not k.endswith("settings.json")}


def test_the_uis_bounded_read_on_an_s3_root(s3, s3_server, monkeypatch):
    """The size comes from the object's HEAD (fsspec asks it on open): a report over the UI's limit is flagged
    as too large, and the page is drawn from the run index."""
    bucket = f"artifacts-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    monkeypatch.setenv(artifacts.ROOT_ENV, f"s3://{bucket}/store")
    monkeypatch.setattr(views, "READ_LIMIT", 1000)
    root = artifacts.artifact_root()
    path = artifacts.run_dir("s3_storage_report", "r1") / "report.json"
    bucket_row = {"name": "a", "object_count": 1, "total_bytes": 10, "region": "x" * 2000}
    artifacts.write_json(path, {"generated_at": "2026-01-01T00:00:00+00:00", "buckets": [bucket_row]})

    assert len(artifacts.read_bytes_bounded(root, path, 10_000)) > 2000
    with pytest.raises(artifacts.TooLarge) as refused:
        artifacts.read_bytes_bounded(root, path, 1000)
    assert refused.value.size is not None and refused.value.size > 2000  # the HEAD's size, before any read
    view = views.storage_view(root)
    assert [b["name"] for b in view["latest"]["buckets"]] == ["a"]
    assert any("too large to read" in f for f in view["flags"])


def test_a_record_move_given_up_half_way_on_an_s3_root_is_finished_not_pruned_by_halves(s3, s3_server, monkeypatch):
    """Stopped just before the purge's result moved, and never planned again: housekeeping pruned the rows
    moved to earlier/ as rows of no purge (their purge's result was still at the top)."""
    from include.deletion.plan import keep_earlier_record
    from tests.unit.test_deletion import DELETED_AND_PURGED, Interrupted

    bucket = f"artifacts-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    monkeypatch.setenv(artifacts.ROOT_ENV, f"s3://{bucket}/store")
    run = artifacts.run_dir("s3_retention", "r1")
    for rel, doc in {**DELETED_AND_PURGED, "settings.json": {}}.items():
        artifacts.write_bytes(run / rel, json.dumps(doc).encode())
    before = {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in _keys(s3, bucket)}
    read, reads = artifacts.read_bytes, []

    def stopped_before_the_purge_result_moves(path):
        reads.append(str(path))
        if str(path).endswith("task_results/purge_job_rows.json") and reads.count(str(path)) == 2:
            raise Interrupted("the worker was lost")  # the first read: recorded_deletions; the second: the move
        return read(path)
    with monkeypatch.context() as m:
        m.setattr(artifacts, "read_bytes", stopped_before_the_purge_result_moves)
        with pytest.raises(Interrupted):
            keep_earlier_record(run)
    assert "store/s3_retention/r1/earlier/p1/expired_trial_rows/00000.jsonl" in _keys(s3, bucket)

    now = datetime.now(UTC)
    report = housekeeping.housekeep(artifacts.artifact_root(), {}, now=now + timedelta(days=31))
    assert report["dags"][0]["record_moves_finished"] == ["r1"]
    housekeeping.housekeep(artifacts.artifact_root(), {}, now=now + timedelta(days=62))  # trimmed
    left = {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in _keys(s3, bucket)
            if k.startswith("store/s3_retention/")}
    assert left == {k.replace("/r1/", "/r1/earlier/p1/"): v for k, v in before.items()
                    if k.startswith("store/s3_retention/") and not k.endswith("settings.json")}
