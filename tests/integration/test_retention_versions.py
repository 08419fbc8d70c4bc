"""s3_retention on a versioned bucket (dag.test, local MariaDB and S3 server, approval auto)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from include.seed import reference_files, reference_job_rows, seed_jobs

NOW = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
LONG_AGO = (NOW - timedelta(days=400)).isoformat()
EXPIRED = [f"incoming_{n:06d}" for n in (11, 12, 13, 14, 15, 17, 18, *range(36, 46))]
ORPHANS = ["test", "test_1.txt", "test_2.txt"]
OVERWRITTEN = ["incoming_000011", "incoming_000001", "test"]  # expired, official, orphan: 2 versions each
GONE = "incoming_000012"  # expired, but its newest entry is a delete marker already


def versioned_world(s3, s3_server, mysql_conn):
    bucket, table = f"retv-{uuid.uuid4().hex[:10]}", f"jobs_{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    files = reference_files()
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
        {"key": k, "size": 100 + i, "last_modified": LONG_AGO} for i, k in enumerate(files)]})
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
        {"key": k, "size": 1000, "last_modified": LONG_AGO} for k in OVERWRITTEN]})
    s3.delete_object(Bucket=bucket, Key=GONE)
    seed_jobs(mysql_conn, reference_job_rows(NOW), table=table)
    return bucket, table


def versions(s3, bucket):
    """{key: [(version id or marker, size)]} of every entry in the bucket."""
    out: dict[str, list] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in page.get("Versions", []):
            out.setdefault(v["Key"], []).append((v["VersionId"], v["Size"], v["IsLatest"]))
        for m in page.get("DeleteMarkers", []):
            out.setdefault(m["Key"], []).append(("marker", 0, m["IsLatest"]))
    return out


@pytest.fixture(autouse=True)
def auto_approval(deployment):
    """These runs delete without a human (the deployment's choice: a run's conf may not loosen approval)."""
    deployment("s3ops_retention", approval="auto")


def conf(bucket, table, **more):
    return {"bucket": bucket, "jobs_table": table, "orphan_min_age_days": 0, **more}


def test_include_versions_deletes_every_version_and_marker_of_planned_keys(run_dag, s3, s3_server, mysql_conn):
    bucket, table = versioned_world(s3, s3_server, mysql_conn)
    before = versions(s3, bucket)
    planned = sorted(set(EXPIRED + ORPHANS) - {GONE})
    result = run_dag("s3_retention", conf(bucket, table, include_versions=True), logical_date=NOW)
    assert result.state == "success", result.task_states()
    after = versions(s3, bucket)
    assert not set(planned) & set(after)  # no version, no marker left: the bytes are gone
    assert after == {k: vs for k, vs in before.items() if k not in planned}  # everything else untouched
    assert len(after[GONE]) == 2 and len(after["incoming_000001"]) == 2  # kept: deleted key, OFFICIAL job
    plan = json.loads((result.artifacts() / "plan.json").read_text())
    assert plan["include_versions"] is True and plan["versioning"] == "Enabled"
    noncurrent = [size for k in planned for vid, size, latest in before[k] if not latest and vid != "marker"]
    assert plan["versions"]["noncurrent_versions"] == {"count": 2, "bytes": sum(noncurrent)}
    assert plan["versions"]["versions_of_deleted_keys"] == {"keys": 1, "count": 1,
                                                            "bytes": 100 + reference_files().index(GONE)}
    assert plan["delete_count"] == len(planned) + 2 and plan["versioning_note"] is None
    audit = json.loads((result.artifacts() / "audit.json").read_text())
    assert audit["deleted_count"] == len(planned) + 2 and audit["error_count"] == 0


def test_without_include_versions_the_plan_says_deletes_only_add_markers(run_dag, s3, s3_server, mysql_conn):
    bucket, table = versioned_world(s3, s3_server, mysql_conn)
    result = run_dag("s3_retention", conf(bucket, table), logical_date=NOW)
    assert result.state == "success", result.task_states()
    plan = json.loads((result.artifacts() / "plan.json").read_text())
    assert plan["versioning"] == "Enabled" and "only add delete markers" in plan["headline"]
    assert "versions" not in plan
    after = versions(s3, bucket)
    for key in set(EXPIRED + ORPHANS) - {GONE}:  # exactly what the plan said: every version is still stored
        assert ("marker", 0, True) in after[key] and any(vid != "marker" for vid, _, _ in after[key])


def test_an_existing_table_like_ndvr_job_status_with_the_documented_grants(
    run_dag, s3, s3_server, mysql_conn, mysql_server, monkeypatch
):
    """docs/retention.md: a deployment pointed at ``ndvr_job_status`` with a MySQL user holding SELECT
    only plans and deletes; asking for purge_job_rows without DELETE is refused before anything is
    deleted; with DELETE granted the rows are purged."""
    table = "ndvr_job_status"
    seed_jobs(mysql_conn, reference_job_rows(NOW), table=table)
    with select_only_login(mysql_server, table) as (user, password, grant):
        monkeypatch.setenv("AIRFLOW_CONN_MYSQL_NDVR", json.dumps({
            "conn_type": "mysql", "host": "127.0.0.1", "port": mysql_server.port, "login": user,
            "password": password, "schema": mysql_server.database}))

        def bucket_with_files():
            bucket = f"ndvr-{uuid.uuid4().hex[:10]}"
            s3.create_bucket(Bucket=bucket)
            s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
                {"key": k, "size": 100, "last_modified": LONG_AGO} for k in reference_files()]})
            return bucket

        def files(bucket):
            return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))

        reader = conf(bucket_with_files(), table, mysql_conn_id="mysql_ndvr")
        result = run_dag("s3_retention", reader, logical_date=NOW)
        assert result.state == "success", result.task_states()
        assert files(reader["bucket"]) == sorted(set(reference_files()) - set(EXPIRED) - set(ORPHANS))

        purging = {**reader, "bucket": bucket_with_files(), "purge_job_rows": True}
        refused = run_dag("s3_retention", purging, logical_date=NOW)
        assert refused.state == "failed" and refused.task_states()[("guard", -1)] == "failed"
        plan = json.loads((refused.artifacts() / "plan.json").read_text())
        assert any("GRANT DELETE ON ndvr_job_status" in r for r in plan["refusals"])
        assert files(purging["bucket"]) == sorted(reference_files())  # nothing deleted
        rows = len(reference_job_rows(NOW))
        count = mysql_conn.cursor()
        count.execute(f"SELECT COUNT(*) FROM `{table}`")
        assert count.fetchone()[0] == rows

        grant("DELETE")
        purged = run_dag("s3_retention", {**purging, "dry_run": False}, logical_date=NOW + timedelta(seconds=1))
        assert purged.state == "success", purged.task_states()
        assert purged.task_states()[("purge_job_rows", -1)] == "success"
        mysql_conn.commit()  # end the snapshot of the first count (REPEATABLE READ)
        count.execute(f"SELECT COUNT(*) FROM `{table}`")
        assert count.fetchone()[0] == rows - 22  # every expired TRIAL row


@contextmanager
def select_only_login(mysql_server: Any, table: str) -> Iterator[tuple[str, str, Callable[[str], None]]]:
    """A new MySQL user with SELECT on ``table`` only: ``(user, password, grant)``, ``grant("DELETE")`` granting
    more on the table; the user is dropped afterwards."""
    user, password = f"ndvr_{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    root = mysql_server._root()
    cur = root.cursor()

    def grant(privilege: str) -> None:
        for host in ("127.0.0.1", "localhost"):
            cur.execute(f"GRANT {privilege} ON `{mysql_server.database}`.`{table}` TO '{user}'@'{host}'")

    try:
        for host in ("127.0.0.1", "localhost"):
            cur.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY %s", (password,))
        grant("SELECT")
        yield user, password, grant
    finally:
        for host in ("127.0.0.1", "localhost"):
            cur.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
        root.close()
