"""Progress lines in the task logs of all four DAGs on the demo world (issue 18).

The e2e standalone runs with ``S3OPS_PROGRESS_SECONDS=0`` (see conftest): every listing page, delete
request and uploaded file logs a ``[progress]`` line, so each long step's log must hold several. The
lines found are printed (``pytest -rP`` shows them) so the suite's output shows what an operator sees.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def _progress_lines(airflow: Any, dag_id: str, run_id: str, task_id: str) -> list[str]:
    """The ``[progress]`` messages of every try and map index of ``task_id`` in the run."""
    lines = []
    for ti in airflow.task_instances(dag_id, run_id):
        if ti["task_id"] != task_id or not ti["try_number"]:
            continue
        log = airflow.task_log(dag_id, run_id, task_id, int(ti["try_number"]), map_index=int(ti["map_index"]))
        for row in log.splitlines():
            try:
                record = json.loads(row)
            except ValueError:
                record = row
            message = str(record.get("event", "")) if isinstance(record, dict) else str(record)
            if message.startswith("[progress]"):
                lines.append(message)
    print(f"--- {dag_id}/{run_id} {task_id}: {len(lines)} progress lines")
    print("\n".join(lines))
    return lines


def _finished(airflow: Any, dag_id: str, run_id: str, timeout: float = 300) -> None:
    state = airflow.wait_run(dag_id, run_id, timeout=timeout)
    assert state == "success", airflow.task_states(dag_id, run_id)


def test_storage_report_listing_logs_progress(airflow, demo_world):
    run_id = airflow.trigger("s3_storage_report", {"buckets": [demo_world.logs_bucket]})
    _finished(airflow, "s3_storage_report", run_id)
    lines = _progress_lines(airflow, "s3_storage_report", run_id, "summarize_shard")
    assert len(lines) > 1
    assert any(line.startswith(f"[progress] listing {demo_world.logs_bucket} ") and "entries/s" in line for line in lines)
    assert any(line.endswith("done") for line in lines)


def test_retention_plan_listing_logs_progress(airflow, demo_world):
    run_id = airflow.trigger("s3_retention", {"bucket": demo_world.jobs_bucket, "jobs_table": demo_world.jobs_table,
                                              "dry_run": True})
    airflow.wait_run("s3_retention", run_id, timeout=300)  # the guard may refuse the demo's plan: the plan ran
    assert airflow.task_states("s3_retention", run_id)[("plan", -1)] == "success"
    lines = _progress_lines(airflow, "s3_retention", run_id, "plan")
    assert len(lines) > 1
    assert lines[0].startswith(f"[progress] listing s3://{demo_world.jobs_bucket}/ (retention plan): ")
    assert lines[-1].endswith("done")


def test_deploy_cleanup_plan_and_delete_log_progress(airflow, s3, s3_server, unique):
    from include.seed import deploy_objects

    bucket = unique("progress")  # the demo world's deployment folders, in a bucket this test may empty
    s3.create_bucket(Bucket=bucket)
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": deploy_objects("deploys/", datetime.now(UTC))})
    run_id = airflow.trigger("s3_deploy_cleanup", {"bucket": bucket, "prefix": "deploys/", "keep": 5, "approval": "auto"})
    _finished(airflow, "s3_deploy_cleanup", run_id)
    plan = _progress_lines(airflow, "s3_deploy_cleanup", run_id, "plan")
    assert len(plan) > 1 and any("(deploy cleanup plan)" in line for line in plan)
    assert any("again: objects of the doomed deployments" in line for line in plan)
    deletes = _progress_lines(airflow, "s3_deploy_cleanup", run_id, "delete")
    assert len(deletes) > 1
    assert any(line.startswith("[progress] deleting chunk 00000 (1 of 1 in the plan): 21 of 21 keys (100%)")
               for line in deletes)


def test_upload_batch_logs_progress(airflow, demo_world, tmp_path: Path):
    from include.seed import upload_files

    files = upload_files(tmp_path / "producer", datetime.now(UTC))
    run_id = airflow.trigger("s3_upload", {"base_dir": str(tmp_path / "producer"), "bucket": demo_world.upload_bucket})
    try:
        _finished(airflow, "s3_upload", run_id, timeout=240)
    finally:
        airflow.set_paused("s3_upload", True)
    lines = _progress_lines(airflow, "s3_upload", run_id, "upload_batch")
    assert len(lines) > 1 and all(line.startswith("[progress] uploading batch ") for line in lines)
    assert files["finished"] and "files (100%)" in lines[-1] and lines[-1].endswith("done")
