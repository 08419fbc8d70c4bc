"""Scale-out proof without Docker: the docker compose topology (PostgreSQL, Redis, CeleryExecutor,
scheduler, dag-processor, api-server, two Celery workers) as local processes, running the real
``s3_storage_report`` on a bucket big enough to be sharded."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.integration.celery_topology import ROOT, CeleryTopology

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PREFIXES = 12  # top-level "folders": the shard planner cuts key ranges at their first keys
PER_PREFIX = 250
SHARD_PARTS = 6
CLASSES = ["STANDARD", "STANDARD_IA", "GLACIER"]


def seed_big_bucket(s3: Any, s3_server: Any) -> str:
    bucket = f"scale-out-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    for i in range(PREFIXES):
        s3_server.control("POST", "seed", {"bucket": bucket, "generate": {
            "prefix": f"p{i:02d}/obj-", "count": PER_PREFIX, "size": 100 + 37 * i, "storage_classes": CLASSES,
            "last_modified": f"2026-0{1 + i % 9}-15T12:00:00Z",
        }})
    return bucket


def ground_truth(s3: Any, bucket: str) -> dict[str, Any]:
    """Counted here from a plain boto3 listing, not by the code under test."""
    count, total, newest = 0, 0, None
    classes: dict[str, dict[str, int]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            count += 1
            total += obj["Size"]
            c = classes.setdefault(obj.get("StorageClass", "STANDARD"), {"object_count": 0, "bytes": 0})
            c["object_count"] += 1
            c["bytes"] += obj["Size"]
            newest = max(newest or obj["LastModified"], obj["LastModified"])
    return {"object_count": count, "total_bytes": total, "classes": classes, "last_modified": newest}


def drop_bucket(s3: Any, bucket: str) -> None:
    """The session's S3 server is shared: other tests report on every bucket it has."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        if page.get("Contents"):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": o["Key"]} for o in page["Contents"]]})
    s3.delete_bucket(Bucket=bucket)


@pytest.fixture
def big_bucket(s3: Any, s3_server: Any) -> Iterator[str]:
    bucket = seed_big_bucket(s3, s3_server)
    try:
        yield bucket
    finally:
        drop_bucket(s3, bucket)


def test_storage_report_shards_run_on_both_workers_and_equal_the_single_machine_report(
    s3: Any, s3_server: Any, big_bucket: str
) -> None:
    from include.aws.client import client_from_args
    from include.storage_report.cli import run_local

    bucket = big_bucket
    topo = CeleryTopology(
        dags_folder=ROOT / "dags",
        local_settings=ROOT / "config" / "airflow_local_settings.py",
        extra_env={
            "AIRFLOW_CONN_AWS_DEFAULT": s3_server.airflow_conn(),
            # split anything above 1000 objects, into SHARD_PARTS key ranges
            "AIRFLOW_VAR_S3OPS_STORAGE_REPORT": json.dumps({"shard_objects": 1000, "shard_parts": SHARD_PARTS}),
        },
    )
    run_id = "scale-out-1"
    with topo:
        # what airflow-init does in docker compose; the cluster policy puts s3ops tasks in this pool
        topo.api("POST", "/pools", {"name": "s3_requests", "slots": 4, "description": "compose parity"})
        run = topo.run("s3_storage_report", {"buckets": [bucket], "size_unit": "B"}, run_id=run_id)
        tis = topo.task_instances("s3_storage_report", run_id)
        assert run["state"] == "success", json.dumps(tis, indent=1)[:3000] + topo.logs()
        # the artifact root is inside the topology's folder, which stop() removes
        report = json.loads((topo.artifact_root / "s3_storage_report" / run_id / "report.json").read_text())

    shards = [ti for ti in tis if ti["task_id"] == "summarize_shard"]
    assert len(shards) == SHARD_PARTS, [ti["map_index"] for ti in shards]
    assert {ti["state"] for ti in shards} == {"success"}
    hosts = Counter(ti["hostname"] for ti in shards)
    assert set(hosts) == {"w1", "w2"}, f"every shard ran on one worker: {hosts}"
    assert {ti["pool"] for ti in tis} == {"s3_requests"}

    [entry] = report["buckets"]
    # the same report, computed in one process with one sequential listing (no shards)
    local = run_local(
        lambda region: client_from_args(endpoint_url=s3_server.endpoint_url, region_name=region or "us-east-1"),
        patterns=[bucket], size_unit="B",
    )
    assert report["buckets"] == local["buckets"]
    assert report["totals"] == local["totals"]

    truth = ground_truth(s3, bucket)
    assert truth["object_count"] == PREFIXES * PER_PREFIX
    assert (entry["object_count"], entry["total_bytes"]) == (truth["object_count"], truth["total_bytes"])
    assert {c: {"object_count": v["object_count"], "bytes": v["bytes"]} for c, v in entry["storage_classes"].items()} \
        == truth["classes"]
    assert datetime.fromisoformat(entry["last_modified"].replace("Z", "+00:00")) == truth["last_modified"]
