"""s3_retention end to end with dag.test() against the local MariaDB and S3 server (approval auto)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from include.seed import reference_files, reference_job_rows, seed_jobs

# The reference case happens "at 2019-06-03"; the DAG starts in 2024, so it is replayed today with every
# completedAt shifted by (today - 2019-06-03), as the issue allows, and the files backdated.
NOW = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
LONG_AGO = (NOW - timedelta(days=400)).isoformat()
EXPIRED = [f"incoming_{n:06d}" for n in (11, 12, 13, 14, 15, 17, 18, *range(36, 46))]
ORPHANS = ["test", "test_1.txt", "test_2.txt"]


@pytest.fixture
def world(s3, s3_server, mysql_conn):
    """``world(files, rows)`` → (bucket, table): a fresh bucket with backdated files and a fresh jobs table."""

    def make(files, rows, *, sizes=None):
        bucket, table = f"ret-{uuid.uuid4().hex[:10]}", f"jobs_{uuid.uuid4().hex[:10]}"
        s3.create_bucket(Bucket=bucket)
        objs = [{"key": k, "size": (sizes or {}).get(k, 100 + i), "last_modified": LONG_AGO} for i, k in enumerate(files)]
        for i in range(0, len(objs), 5000):
            s3_server.control("POST", "seed", {"bucket": bucket, "objects": objs[i:i + 5000]})
        seed_jobs(mysql_conn, rows, table=table)
        return bucket, table

    return make


def keys(s3, bucket):
    return sorted(o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                  for o in page.get("Contents", []))


@pytest.fixture(autouse=True)
def auto_approval(deployment):
    """These runs delete without a human (the deployment's choice: a run's conf may not loosen approval)."""
    deployment("s3ops_retention", approval="auto")


def conf(bucket, table, **more):
    return {"bucket": bucket, "jobs_table": table, "orphan_min_age_days": 0, **more}


def table_rows(mysql_conn, table):
    cur = mysql_conn.cursor()
    cur.execute(f"SELECT jobId, type, completedAt FROM `{table}`")
    return cur.fetchall()


def test_reference_case_deletes_exactly_the_expected_files_and_a_rerun_deletes_nothing(
    run_dag, s3, world, mysql_conn
):
    bucket, table = world(reference_files(), reference_job_rows(NOW))
    result = run_dag("s3_retention", conf(bucket, table, purge_job_rows=True), logical_date=NOW)
    assert result.state == "success", result.task_states()

    assert keys(s3, bucket) == sorted(set(reference_files()) - set(EXPIRED) - set(ORPHANS))
    plan = json.loads((result.artifacts() / "plan.json").read_text())
    assert plan["by_reason"] == {
        "orphan": {"count": 3, "bytes": sum(100 + reference_files().index(k) for k in ORPHANS)},
        "trial_expired": {"count": 17, "bytes": sum(100 + reference_files().index(k) for k in EXPIRED)},
    }
    assert plan["protected"]["by_cause"]["official"] == 21 and plan["protected"]["by_cause"]["trial_recent"] == 5
    audit = json.loads((result.artifacts() / "audit.json").read_text())
    assert audit["deleted_count"] == 20 and audit["error_count"] == 0 and audit["outcome"] == "deleted"
    assert audit["purge_job_rows"]["deleted"] == 22  # 7 + 6 sharing 000045 + 4 others of 36–44 + … = every expired TRIAL row
    assert audit["purge_job_rows"]["planned"] == plan["expired_trial_rows"] == 22
    # the audit copies the purge's result file (tagged with the plan), not its XCom
    recorded = json.loads((result.artifacts() / "task_results" / "purge_job_rows.json").read_text())
    assert recorded["plan_id"] == plan["plan_id"] and audit["purge_job_rows"] == recorded
    purged = [json.loads(line) for f in sorted((result.artifacts() / "expired_trial_rows").iterdir())
              for line in f.read_text().splitlines()]
    expected_purged = {j for j, c, t, s in reference_job_rows(NOW)
                       if t == "TRIAL" and c is not None and c < NOW - timedelta(days=80)}
    assert {r["jobId"] for r in purged} == expected_purged and len(expected_purged) == 22
    assert {r[0] for r in table_rows(mysql_conn, table)} == {r[0] for r in reference_job_rows(NOW)} - expected_purged

    # the same run again (same logical time, same run id): nothing more is deleted
    first_record = {str(p.relative_to(result.artifacts())): p.read_bytes()
                    for p in result.artifacts().rglob("*") if p.is_file() and not p.name == "settings.json"
                    and not str(p.relative_to(result.artifacts())).startswith("earlier/")}
    again = run_dag("s3_retention", conf(bucket, table, purge_job_rows=True), logical_date=NOW)
    assert again.state == "success"
    assert again.xcom("plan")["delete_count"] == 0
    assert keys(s3, bucket) == sorted(set(reference_files()) - set(EXPIRED) - set(ORPHANS))
    again_audit = json.loads((again.artifacts() / "audit.json").read_text())
    assert again_audit["deleted_count"] == 0
    # a new plan of the run: the first plan's purge record is not carried on
    assert (again_audit["purge_job_rows"]["planned"], again_audit["purge_job_rows"]["deleted"]) == (0, 0)
    # but kept, all of it (the purged rows too), byte for byte, under earlier/<its plan id>/
    kept = again.artifacts() / "earlier" / plan["plan_id"]
    assert {str(p.relative_to(kept)): p.read_bytes() for p in kept.rglob("*") if p.is_file()} == first_record
    assert any(name.startswith("expired_trial_rows/") for name in first_record)


def test_a_purge_that_fails_part_way_goes_on_where_it_stopped_on_retry(run_dag, world, mysql_conn, monkeypatch):
    """MySQL goes away after the first batch of job rows was purged: Airflow's retry sends only the batches
    not yet committed, and the audit counts every row once (the retry's own count reported the first
    batch's rows as changed or gone since the plan)."""
    import include.retention.jobs as jobs_db

    bucket, table = world(reference_files(), reference_job_rows(NOW))
    monkeypatch.setattr(jobs_db, "PURGE_BATCH", 10)
    sent: list[int] = []
    real = jobs_db._purge_batch

    def purge_batch(conn, quoted, part, cutoff, name):
        sent.append(len(part))
        if len(sent) == 2:
            raise RuntimeError("(2006, 'MySQL server has gone away')")
        return real(conn, quoted, part, cutoff, name)

    monkeypatch.setattr(jobs_db, "_purge_batch", purge_batch)
    result = run_dag("s3_retention", conf(bucket, table, purge_job_rows=True), logical_date=NOW, retries=1)
    assert result.state == "success", result.task_states()
    assert sent == [10, 10, 10, 2]  # 22 rows: batch 1, batch 2 fails; the retry: batches 2 and 3
    purge = json.loads((result.artifacts() / "audit.json").read_text())["purge_job_rows"]
    assert (purge["planned"], purge["deleted"], purge["kept_count"], purge["complete"]) == (22, 22, 0, True)
    assert len(table_rows(mysql_conn, table)) == len(reference_job_rows(NOW)) - 22


def test_prefix_isolation_many_deletions_shared_and_unknown_jobs(run_dag, s3, world, deployment):
    deployment("s3ops_retention", max_delete_fraction=1.0)  # a run may only lower the limit
    old = NOW - timedelta(days=200)
    orphans = [f"data/orphan-{i:05d}" for i in range(1205)]
    outside = ["datax", "other/orphan-1", "data", "dat/orphan-2"]
    kept = ["data/shared", "data/beta", "data/null-type", "data/recent"]
    rows = [
        ("j1", old, "TRIAL", "shared"), ("j2", old, "OFFICIAL", "shared"),  # OFFICIAL wins over expired TRIAL
        ("j3", old, "TRIAL", "beta"), ("j4", old, "Beta", "beta"),  # unknown type: kept and reported
        ("j5", old, None, "null-type"),
        ("j6", NOW - timedelta(days=10), " trial ", "recent"),
        ("j7", old, "trial", "expired"),
        ("j8", old, "TRIAL", "orphan-00003x"),  # refers to no file
    ]
    bucket, table = world([*orphans, *outside, *kept, "data/expired"], rows)
    result = run_dag("s3_retention", conf(bucket, table, key_prefix="data/"),
                     logical_date=NOW)
    assert result.state == "success", result.task_states()
    assert keys(s3, bucket) == sorted(outside + kept)
    summary = result.xcom("plan")
    assert summary["delete_count"] == 1206 and len(summary["chunks"]) == 2
    assert summary["scanned_count"] == 1205 + len(kept) + 1
    assert summary["protected"]["by_cause"]["unknown_type"] == 2
    assert summary["protected"]["by_cause"]["official"] == 1
    assert summary["unknown_type_rows"]["count"] == 2
    assert {s["jobId"] for s in summary["unknown_type_rows"]["samples"]} == {"j4", "j5"}
    audit = result.xcom("audit")
    assert audit["deleted_by_reason"]["orphan"]["count"] == 1205
    assert audit["deleted_by_reason"]["trial_expired"]["count"] == 1
    assert audit["requests"] == 2  # DeleteObjects: 1000 keys, then 206


def test_dry_run_deletes_nothing(run_dag, s3, world, mysql_conn):
    bucket, table = world(reference_files(), reference_job_rows(NOW))
    result = run_dag("s3_retention", conf(bucket, table, dry_run=True, purge_job_rows=True), logical_date=NOW)
    assert result.state == "success", result.task_states()
    assert keys(s3, bucket) == sorted(reference_files())
    assert len(table_rows(mysql_conn, table)) == 50
    assert result.xcom("plan")["delete_count"] == 20
    audit = json.loads((result.artifacts() / "audit.json").read_text())
    assert audit["outcome"] == "dry_run" and audit["deleted_count"] == 0


def test_empty_job_table_is_refused(run_dag, s3, world):
    bucket, table = world(reference_files(), [])
    result = run_dag("s3_retention", conf(bucket, table), logical_date=NOW)
    assert result.state == "failed"
    assert result.task_states()[("guard", -1)] == "failed"
    assert keys(s3, bucket) == sorted(reference_files())
    plan = json.loads((result.artifacts() / "plan.json").read_text())
    assert plan["jobs"]["rows"] == 0 and "returned no rows" in plan["refusals"][0]


def test_guard_limits_refuse_a_plan_that_deletes_too_much(run_dag, s3, world):
    bucket, table = world(reference_files(), reference_job_rows(NOW))
    result = run_dag("s3_retention", conf(bucket, table, max_delete_count=19, max_delete_fraction=0.4),
                     logical_date=NOW)
    assert result.state == "failed"
    states = result.task_states()
    assert states[("guard", -1)] == "failed" and states[("audit", -1)] == "failed"
    assert keys(s3, bucket) == sorted(reference_files())
    audit = json.loads((result.artifacts() / "audit.json").read_text())
    assert (audit["outcome"], audit["failed_tasks"], audit["deleted_count"]) == ("guard_refused", ["guard"], 0)
    assert any("max_delete_count=19" in refusal for refusal in audit["guard_refusals"])


def test_a_delete_chunk_that_fails_for_good_is_audited_once_every_other_chunk_is_done(run_dag, s3, world,
                                                                                       monkeypatch):
    """S3 unreachable for one chunk of three: the other chunks delete, the purge does not run, and the audit
    (after every chunk, not as soon as the purge gave up) records the 12 deleted files and the failed chunk."""
    import include.deletion.plan as plan_module

    class SmallChunks(plan_module.PlanWriter):
        def __init__(self, run_dir, **kwargs):
            super().__init__(run_dir, **{**kwargs, "chunk_size": 8})

    real = plan_module.delete_chunk

    def delete_chunk(client, bucket, run_dir, chunk, **kwargs):
        if chunk == "00000":
            raise ConnectionError("S3 unreachable")
        return real(client, bucket, run_dir, chunk, **kwargs)

    monkeypatch.setattr(plan_module, "PlanWriter", SmallChunks)
    monkeypatch.setattr(plan_module, "delete_chunk", delete_chunk)
    bucket, table = world(reference_files(), reference_job_rows(NOW))
    result = run_dag("s3_retention", conf(bucket, table, purge_job_rows=True), logical_date=NOW, retries=0)
    assert result.state == "failed"
    states = result.task_states()
    assert [states[("delete", i)] for i in range(3)] == ["failed", "success", "success"]
    assert (states[("purge_job_rows", -1)], states[("audit", -1)]) == ("upstream_failed", "failed")
    audit = json.loads((result.artifacts() / "audit.json").read_text())
    assert (audit["outcome"], audit["failed_tasks"], audit["deleted_count"]) == ("failed", ["delete_0"], 12)
    assert audit["chunks_missing"] == ["00000"] and audit["purge_job_rows"] is None
    assert len(keys(s3, bucket)) == len(reference_files()) - 12


def test_a_purge_that_fails_for_good_is_still_audited_and_fails_the_run(run_dag, s3, world, mysql_conn,
                                                                        monkeypatch):
    """The job rows could not be purged (a copy of a planned row appeared since: every attempt refuses): the
    audit ran only when everything before it succeeded, so the run's audit.json never recorded the 20 files
    its delete had removed. It records them now, names the failed task and fails the run."""
    import include.retention.jobs as jobs_db

    bucket, table = world(reference_files(), reference_job_rows(NOW))

    def refuse(*_args, **_kwargs):
        raise jobs_db.PurgeMismatch("a purge batch also matched 1 row(s) the plan did not record: rolled back")

    monkeypatch.setattr(jobs_db, "_purge_batch", refuse)
    result = run_dag("s3_retention", conf(bucket, table, purge_job_rows=True), logical_date=NOW)
    assert result.state == "failed"
    states = result.task_states()
    assert (states[("delete", 0)], states[("purge_job_rows", -1)], states[("audit", -1)]) == (
        "success", "failed", "failed")
    assert keys(s3, bucket) == sorted(set(reference_files()) - set(EXPIRED) - set(ORPHANS))
    audit = json.loads((result.artifacts() / "audit.json").read_text())
    assert (audit["outcome"], audit["failed_tasks"], audit["deleted_count"]) == ("failed", ["purge_job_rows"], 20)
    assert audit["purge_job_rows"]["started"] is True and audit["purge_job_rows"]["complete"] is False
    assert len(table_rows(mysql_conn, table)) == len(reference_job_rows(NOW))  # nothing purged
    from include.ui import html as ui_html
    from include.ui import views as ui_views

    view = ui_views.plans_view(result.artifacts().parent.parent, {("s3_retention", result.run_id): "failed"})
    entry = next(p for p in view["recent"] if p["run_id"] == result.run_id)
    assert entry["status"] == "failed" and " errors (the purge stopped part way)." in ui_html.render_plans(view)


def test_per_key_delete_errors_are_recorded_and_fail_the_run(run_dag, s3, world, monkeypatch):
    """S3 refuses one key of the DeleteObjects request (as a lock or policy would): the other keys are
    deleted, the refusal is recorded in audit.json, and the run ends failed."""
    import include.aws.client

    bucket, table = world(reference_files(), reference_job_rows(NOW))
    refused = "incoming_000012"
    real = include.aws.client.client_from_connection

    def refuse_one(params, **_):
        objs = params["Delete"]["Objects"]
        params["Delete"]["Objects"] = [o for o in objs if o["Key"] != refused]

    def report_it(parsed, **_):
        parsed.setdefault("Errors", []).append({"Key": refused, "Code": "AccessDenied", "Message": "locked"})

    def client(*args, **kwargs):
        c = real(*args, **kwargs)
        c.meta.events.register("before-parameter-build.s3.DeleteObjects", refuse_one)
        c.meta.events.register("after-call.s3.DeleteObjects", report_it)
        return c

    monkeypatch.setattr(include.aws.client, "client_from_connection", client)
    result = run_dag("s3_retention", conf(bucket, table), logical_date=NOW)
    assert result.state == "failed"
    states = result.task_states()
    assert states[("delete", 0)] == "success" and states[("audit", -1)] == "failed"
    assert keys(s3, bucket) == sorted(set(reference_files()) - set(EXPIRED) - set(ORPHANS) | {refused})
    audit = json.loads((result.artifacts() / "audit.json").read_text())
    assert audit["deleted_count"] == 19 and audit["error_count"] == 1
    assert audit["errors"][0]["key"] == refused and audit["errors"][0]["code"] == "AccessDenied"


def test_a_jobs_table_that_cannot_be_read_fails_the_plan_once_naming_it(run_dag, s3, world, mysql_conn):
    """A misspelt jobs_table, or a table without the job columns, is no outage a retry outlasts: the plan
    failed only after every retry (minutes of backoff) with MySQL's bare error; it fails at once, naming it."""
    bucket, table = world(reference_files(), reference_job_rows(NOW))
    cur = mysql_conn.cursor()
    cur.execute(f"CREATE TABLE `{table}_nocol` (jobId VARCHAR(64), completedAt TIMESTAMP NULL, type VARCHAR(32))")
    for name in (f"{table}_missing", f"{table}_nocol"):
        result = run_dag("s3_retention", conf(bucket, name), logical_date=NOW, retries=1)
        assert result.state == "failed" and result.task_states()[("plan", -1)] == "failed"
        assert result.try_numbers()[("plan", -1)] == 1  # a retryable error would have been tried twice
    assert keys(s3, bucket) == sorted(reference_files())


def test_a_listing_out_of_key_order_fails_the_plan_once(run_dag, s3, world, monkeypatch):
    """A server that does not list in key order makes the merge join wrong: the plan stops, and a retry lists
    the same, so it fails at once (it was retried with minutes of backoff) and deletes nothing."""
    from tests.integration.test_retention_cli import listing_out_of_order

    bucket, table = world(reference_files(), reference_job_rows(NOW))
    listing_out_of_order(monkeypatch)
    result = run_dag("s3_retention", conf(bucket, table), logical_date=NOW, retries=1)
    assert result.state == "failed" and result.task_states()[("plan", -1)] == "failed"
    assert result.try_numbers()[("plan", -1)] == 1
    assert keys(s3, bucket) == sorted(reference_files())
