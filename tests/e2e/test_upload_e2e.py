"""s3_upload on the running Airflow, through the REST API v2 only."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _write_dat(base: Path, location: str, when: datetime, topic: str, body: bytes) -> Path:
    path = base / location / f"{when:%Y/%m/%d/%H}" / f"{when:%M}-{topic}.dat"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    old = (datetime.now(UTC) - timedelta(minutes=10)).timestamp()
    os.utime(path, (old, old))
    return path


def _keys(s3, bucket: str) -> dict[str, bytes]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def test_upload_run_moves_finished_files_and_keeps_the_rest(airflow, s3, stack, e2e_artifacts, unique, tmp_path):
    from include.seed import upload_files

    bucket = unique("upload")
    s3.create_bucket(Bucket=bucket)
    base = tmp_path / "producer"
    files = upload_files(base, datetime.now(UTC))
    contents = {p.relative_to(base).as_posix(): p.read_bytes() for p in files["finished"]}
    try:
        run_id = airflow.trigger("s3_upload", {"base_dir": str(base), "bucket": bucket, "key_prefix": "in/",
                                               "settle_seconds": 120})
        assert airflow.wait_run("s3_upload", run_id, timeout=240) == "success", airflow.task_states("s3_upload", run_id)
    finally:
        airflow.set_paused("s3_upload", True)  # no scheduled runs (without settings) behind this test

    assert _keys(s3, bucket) == {f"in/{rel}": body for rel, body in contents.items()}
    assert not any(p.exists() for p in files["finished"])
    assert all(p.exists() for p in files["in_progress"] + files["malformed"])
    summary = json.loads((e2e_artifacts / "s3_upload" / run_id / "summary.json").read_text())
    assert (summary["uploaded"], summary["malformed"], summary["conflicts"], summary["failed"]) == (
        len(contents), len(files["malformed"]), 0, 0)
    assert summary["bytes"] == sum(len(b) for b in contents.values())
    assert airflow.xcom("s3_upload", run_id, "tidy")["uploaded"] == len(contents)
    runs = {r["run_id"]: r for r in airflow.get("/s3ops/api/uploads")["runs"]}
    assert runs[run_id]["uploaded"] == len(contents) and runs[run_id]["malformed"] == len(files["malformed"])


def test_upload_schedule_moves_new_files_within_two_minutes(airflow, s3, unique, tmp_path):
    bucket = unique("sched")
    s3.create_bucket(Bucket=bucket)
    base = tmp_path / "scheduled"
    base.mkdir()
    airflow.set_variable("s3ops_upload", json.dumps({"base_dir": str(base), "bucket": bucket, "settle_seconds": 5}))
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)
    written = {_write_dat(base, loc, minute, "temperature", f"{loc}\n".encode()): loc for loc in ("oslo", "rome")}
    expected = {p.relative_to(base).as_posix() for p in written}
    unpaused_at = datetime.now(UTC)
    airflow.set_paused("s3_upload", False)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and set(_keys(s3, bucket)) != expected:
            time.sleep(3)
        assert set(_keys(s3, bucket)) == expected, airflow.runs("s3_upload", order_by="-start_date")[:3]
        deadline = time.monotonic() + 60  # the scheduled run that moved them finishes (tidy, summary)
        while time.monotonic() < deadline:
            scheduled = [r for r in airflow.runs("s3_upload", run_type=["scheduled"], state=["success"])
                         if r["start_date"] and datetime.fromisoformat(r["start_date"].replace("Z", "+00:00")) >= unpaused_at]
            if scheduled:
                break
            time.sleep(2)
    finally:
        airflow.set_paused("s3_upload", True)  # (a paused DAG's running runs stop being scheduled)
    assert scheduled, "the files were not moved by a scheduled run"
    assert not any(p.exists() for p in written)
