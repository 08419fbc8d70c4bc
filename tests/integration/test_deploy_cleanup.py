"""s3_deploy_cleanup end to end with dag.test() on the local S3 server, plus library-level scenarios."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _iso(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat()


@pytest.fixture
def bucket(s3):
    name = f"deploys-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    return name


def _seed_deployments(s3_server, bucket, ages: dict[str, float], files=("index.html", "assets/app.js"), prefix="deploys/"):
    objs = [{"key": f"{prefix}README.txt", "body": "loose", "last_modified": _iso(400)}]
    for name, age in ages.items():
        for f in files:
            objs.append({"key": f"{prefix}{name}/{f}", "size": 10, "last_modified": _iso(age)})
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": objs})


def _keys(s3, bucket, prefix=""):
    return sorted(o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                  for o in p.get("Contents", []))


def _deployments_left(s3, bucket, prefix="deploys/"):
    return sorted({k[len(prefix):].split("/")[0] for k in _keys(s3, bucket, prefix) if "/" in k[len(prefix):]})


def test_keep_n_deletes_older_deployments_and_rerun_deletes_nothing(s3, s3_server, run_dag, bucket):
    ages = {f"release-{i:03d}": 5 * (12 - i) for i in range(1, 13)}  # release-012 is the newest
    _seed_deployments(s3_server, bucket, ages)
    conf = {"bucket": bucket, "prefix": "deploys/", "keep": 5, "approval": "auto"}
    result = run_dag("s3_deploy_cleanup", conf)
    assert result.state == "success", result.task_states()
    assert _deployments_left(s3, bucket) == [f"release-{i:03d}" for i in range(8, 13)]
    assert "deploys/README.txt" in _keys(s3, bucket)
    audit = json.loads((result.artifacts() / "audit.json").read_text())
    assert audit["outcome"] == "deleted" and audit["deleted_count"] == 14 and audit["error_count"] == 0
    assert audit["deleted_by_reason"] == {"beyond_keep": {"count": 14, "bytes": 140}}
    assert result.xcom("audit")["deleted_count"] == 14

    again = run_dag("s3_deploy_cleanup", conf)
    assert again.state == "success"
    assert again.xcom("plan")["delete_count"] == 0 and again.xcom("audit")["deleted_count"] == 0
    assert again.xcom("audit")["outcome"] == "nothing_to_delete"
    assert _deployments_left(s3, bucket) == [f"release-{i:03d}" for i in range(8, 13)]
