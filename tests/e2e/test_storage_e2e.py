"""s3_storage_report on the running Airflow, through the REST API v2 only."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

pytestmark = pytest.mark.slow


def _ground_truth(s3, bucket: str) -> dict:
    """Object count, bytes and per-class totals listed here with plain boto3 (not the code under test)."""
    truth = {"object_count": 0, "total_bytes": 0, "classes": defaultdict(lambda: [0, 0])}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            truth["object_count"] += 1
            truth["total_bytes"] += obj["Size"]
            cls = truth["classes"][obj.get("StorageClass", "STANDARD")]
            cls[0] += 1
            cls[1] += obj["Size"]
    return truth


def test_invalid_conf_is_refused_naming_the_param(airflow):
    resp = airflow.trigger_raw("s3_storage_report", {"size_unit": "XB"})
    assert resp.status_code == 400, resp.text
    assert "size_unit" in resp.text and "XB" in resp.text


def test_storage_report_run(airflow, s3, s3_server, demo_world, e2e_artifacts, unique):
    bucket = unique("report")
    s3.create_bucket(Bucket=bucket)
    s3_server.control("POST", "seed", {"bucket": bucket, "generate": {
        "prefix": "data/", "count": 1200, "size": 1000, "storage_classes": ["STANDARD", "STANDARD_IA", "GLACIER"]}})
    buckets = [bucket, demo_world.logs_bucket, demo_world.archive_bucket]
    run_id = airflow.trigger("s3_storage_report", {"buckets": buckets, "size_unit": "KiB"})
    assert airflow.wait_run("s3_storage_report", run_id, timeout=300) == "success", airflow.task_states(
        "s3_storage_report", run_id)

    report = json.loads((e2e_artifacts / "s3_storage_report" / run_id / "report.json").read_text())
    got = {b["name"]: b for b in report["buckets"]}
    assert set(got) == set(buckets)
    for name in buckets:
        truth = _ground_truth(s3, name)
        assert (got[name]["object_count"], got[name]["total_bytes"]) == (truth["object_count"], truth["total_bytes"])
        assert {k: (v["object_count"], v["bytes"]) for k, v in got[name]["storage_classes"].items()} == {
            k: tuple(v) for k, v in truth["classes"].items()}
    assert got[demo_world.logs_bucket]["incomplete_multipart_uploads"]["count"] == 1
    published = airflow.xcom("s3_storage_report", run_id, "publish")
    assert published["object_count"] == sum(_ground_truth(s3, n)["object_count"] for n in buckets)
    assert published["bucket_count"] == 3
    # the plugin serves the same numbers
    view = airflow.get("/s3ops/api/storage")
    assert view["latest"]["run_id"] == run_id
    assert {b["name"]: b["total_bytes"] for b in view["latest"]["buckets"]} == {
        n: got[n]["total_bytes"] for n in buckets}
