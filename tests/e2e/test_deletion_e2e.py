"""s3_deploy_cleanup and s3_retention on the running Airflow: auto runs, the approval gate answered
through the HITL endpoint, a backfill, and a retried delete. REST API v2 only; S3/MySQL checked directly."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

pytestmark = pytest.mark.slow

DEPLOY = "s3_deploy_cleanup"
RETENTION = "s3_retention"


def _keys(s3: Any, bucket: str) -> set[str]:
    return {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])}


def _deploy_bucket(s3: Any, s3_server: Any, name: str) -> tuple[set[str], set[str]]:
    """12 releases 5 days apart (release-001 oldest) + a loose README; returns (all keys, kept by keep=5)."""
    from include.seed import deploy_objects

    s3.create_bucket(Bucket=name)
    objs = deploy_objects("deploys/", datetime.now(UTC))
    s3_server.control("POST", "seed", {"bucket": name, "objects": objs})
    keys = {o["key"] for o in objs}
    kept = {k for k in keys if not k.startswith("deploys/release-") or int(k.split("-")[1][:3]) > 7}
    return keys, kept


def _wait_awaiting_approval(airflow: Any, dag_id: str, run_id: str) -> dict[str, Any]:
    # approve waits deferred on its trigger (include/deletion/trigger.py), not in awaiting_input
    airflow.wait_task(dag_id, run_id, "approve", {"deferred"}, timeout=240)
    pending = airflow.pending_approvals(dag_id, run_id)
    assert [p["task_instance"]["task_id"] for p in pending] == ["approve"], pending
    return pending[0]


def _audit(e2e_artifacts: Any, dag_id: str, run_id: str) -> dict[str, Any]:
    return json.loads((e2e_artifacts / dag_id / run_id / "audit.json").read_text())


def test_deploy_cleanup_invalid_conf_is_refused(airflow):
    resp = airflow.trigger_raw(DEPLOY, {"bucket": "some-bucket", "min_keep": 0})
    assert resp.status_code == 400 and "min_keep" in resp.text, resp.text


def test_deploy_cleanup_auto_run(airflow, s3, s3_server, e2e_artifacts, unique):
    bucket = unique("deploys")
    keys, kept = _deploy_bucket(s3, s3_server, bucket)
    run_id = airflow.trigger(DEPLOY, {"bucket": bucket, "prefix": "deploys/", "keep": 5, "approval": "auto"})
    assert airflow.wait_run(DEPLOY, run_id, timeout=240) == "success", airflow.task_states(DEPLOY, run_id)
    assert _keys(s3, bucket) == kept
    audit = _audit(e2e_artifacts, DEPLOY, run_id)
    assert audit["deleted_count"] == len(keys - kept) == 21 and audit["error_count"] == 0
    plans = {p["run_id"]: p for p in airflow.get("/s3ops/api/plans")["recent"]}
    assert plans[run_id]["status"] == "finished" and plans[run_id]["audit"]["deleted_count"] == 21


def test_deploy_cleanup_approve_and_reject(airflow, approver, s3, s3_server, e2e_artifacts, unique):
    bucket = unique("gate")
    keys, kept = _deploy_bucket(s3, s3_server, bucket)
    conf = {"bucket": bucket, "prefix": "deploys/", "keep": 5, "approval": "required"}

    rejected = airflow.trigger(DEPLOY, conf)
    _wait_awaiting_approval(airflow, DEPLOY, rejected)
    pending = {p["run_id"]: p for p in airflow.get("/s3ops/api/plans")["pending"]}
    assert pending[rejected]["delete_count"] == 21  # the plugin shows the plan that waits
    assert approver.answer(DEPLOY, rejected, "Reject") == "success", airflow.task_states(DEPLOY, rejected)
    assert _keys(s3, bucket) == keys, "a rejected plan deleted something"

    approved = airflow.trigger(DEPLOY, conf)
    _wait_awaiting_approval(airflow, DEPLOY, approved)
    assert _keys(s3, bucket) == keys, "deleted before approval"
    assert approver.answer(DEPLOY, approved, "Approve") == "success", airflow.task_states(DEPLOY, approved)
    assert _keys(s3, bucket) == kept
    assert _audit(e2e_artifacts, DEPLOY, approved)["deleted_count"] == 21


def test_delete_retried_after_s3_failures_deletes_each_key_once(airflow, s3, s3_server, e2e_artifacts, unique):
    """Every DeleteObjects request fails until the client's retries are used up: the delete task fails
    its first try, Airflow retries it with backoff, and the run ends with exactly the planned deletions."""
    bucket = unique("retry")
    keys, kept = _deploy_bucket(s3, s3_server, bucket)
    from tests.e2e.airflow_api import E2E_MAX_ATTEMPTS

    s3_server.control("POST", "faults", {"mode": "error", "operation": "DeleteObjects", "count": E2E_MAX_ATTEMPTS})
    try:
        run_id = airflow.trigger(DEPLOY, {"bucket": bucket, "prefix": "deploys/", "keep": 5, "approval": "auto"})
        assert airflow.wait_run(DEPLOY, run_id, timeout=420) == "success", airflow.task_states(DEPLOY, run_id)
    finally:
        left = s3_server.control("POST", "faults", {"mode": "off"})
    assert left.get("faults") == [] or not left.get("remaining"), left
    deletes = [t for t in airflow.task_instances(DEPLOY, run_id) if t["task_id"] == "delete"]
    assert [t["try_number"] for t in deletes] == [2], deletes  # failed once, succeeded on the retry
    assert "InternalError" in airflow.task_log(DEPLOY, run_id, "delete", 1, map_index=deletes[0]["map_index"])
    assert _keys(s3, bucket) == kept
    audit = _audit(e2e_artifacts, DEPLOY, run_id)
    assert (audit["deleted_count"], audit["error_count"]) == (len(keys - kept), 0)


# s3_retention ------------------------------------------------------------------------------------
def _retention_world(s3: Any, s3_server: Any, mysql_server: Any, bucket: str, table: str,
                     rows: list[tuple[Any, ...]], files: list[str]) -> None:
    from include.seed import seed_jobs

    s3.create_bucket(Bucket=bucket)
    old = (datetime.now(UTC) - timedelta(days=400)).isoformat()
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
        {"key": name, "size": 1000 + i, "last_modified": old} for i, name in enumerate(files)]})
    conn = mysql_server.connect()
    try:
        seed_jobs(conn, rows, table=table)
    finally:
        conn.close()


def test_retention_invalid_conf_is_refused(airflow):
    resp = airflow.trigger_raw(RETENTION, {"bucket": "some-bucket", "approval": "sometimes"})
    assert resp.status_code == 400 and "approval" in resp.text, resp.text


def test_retention_waits_for_approval_then_deletes_reference_case(airflow, approver, s3, s3_server, mysql_server,
                                                                  e2e_artifacts, unique):
    from include.seed import reference_files, reference_job_rows

    bucket, table = unique("jobs"), unique("jobs").replace("-", "_")
    _retention_world(s3, s3_server, mysql_server, bucket, table,
                     reference_job_rows(datetime.now(UTC)), reference_files())
    expected = {f"incoming_{n:06d}" for n in (11, 12, 13, 14, 15, 17, 18, *range(36, 46))}
    expected |= {"test", "test_1.txt", "test_2.txt"}
    everything = set(reference_files())
    conf = {"bucket": bucket, "jobs_table": table, "orphan_min_age_days": 0, "approval": "required"}

    rejected = airflow.trigger(RETENTION, conf)
    _wait_awaiting_approval(airflow, RETENTION, rejected)
    plan = json.loads((e2e_artifacts / RETENTION / rejected / "plan.json").read_text())
    assert plan["delete_count"] == len(expected)
    assert approver.answer(RETENTION, rejected, "Reject") == "success", airflow.task_states(RETENTION, rejected)
    assert _keys(s3, bucket) == everything, "a rejected plan deleted something"

    approved = airflow.trigger(RETENTION, conf)
    assert airflow.run(RETENTION, approved)["state"] in ("queued", "running")
    _wait_awaiting_approval(airflow, RETENTION, approved)
    assert _keys(s3, bucket) == everything, "deleted before approval"
    assert approver.answer(RETENTION, approved, "Approve") == "success", airflow.task_states(RETENTION, approved)
    assert _keys(s3, bucket) == everything - expected
    assert _audit(e2e_artifacts, RETENTION, approved)["deleted_count"] == len(expected)


def test_retention_backfill_decides_by_each_logical_date(airflow, s3, s3_server, mysql_server, e2e_artifacts, unique):
    """Three daily runs, dry run: a TRIAL job expires (trial_retention P2D) on a different day for each
    file, so each run's plan must name exactly the files expired at ITS logical date."""
    day0 = (datetime.now(UTC) - timedelta(days=6)).replace(hour=0, minute=0, second=0, microsecond=0)
    completed = {"bf_a": day0 - timedelta(days=3), "bf_b": day0 - timedelta(days=1, hours=12),
                 "bf_c": day0 - timedelta(hours=12)}
    rows = [(f"job-{src}".ljust(64, "0"), when, "TRIAL", src) for src, when in completed.items()]
    rows.append(("job-bf_d".ljust(64, "0"), day0 - timedelta(days=30), "OFFICIAL", "bf_d"))
    bucket, table = unique("backfill"), unique("bf").replace("-", "_")
    _retention_world(s3, s3_server, mysql_server, bucket, table, rows, ["bf_a", "bf_b", "bf_c", "bf_d"])
    conf = {"bucket": bucket, "jobs_table": table, "trial_retention": "P2D", "orphan_min_age_days": 0, "dry_run": True}
    # the deployment's: a run's conf may tighten the gate's settings, never loosen them
    airflow.set_variable("s3ops_retention", json.dumps({"approval": "auto", "max_delete_fraction": 1.0}))

    airflow.wait_for_dags([RETENTION])
    airflow.set_paused(RETENTION, False)  # backfill runs stay queued while the DAG is paused
    try:
        airflow.create_backfill(RETENTION, day0.isoformat(), (day0 + timedelta(days=2)).isoformat(), conf)
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline:
            airflow.stop_scheduled_runs(RETENTION)  # the one unpausing created would take a slot
            runs = [r for r in airflow.runs(RETENTION, run_type=["backfill"])
                    if (r.get("conf") or {}).get("bucket") == bucket]
            if len(runs) == 3 and all(r["state"] in ("success", "failed") for r in runs):
                break
            time.sleep(3)
    finally:
        airflow.set_paused(RETENTION, True)
        airflow.http.delete("/api/v2/variables/s3ops_retention")
    assert len(runs) == 3 and all(r["state"] == "success" for r in runs), runs
    expected = {day0: {"bf_a"}, day0 + timedelta(days=1): {"bf_a", "bf_b"},
                day0 + timedelta(days=2): {"bf_a", "bf_b", "bf_c"}}
    got = {}
    for r in runs:
        plan = json.loads((e2e_artifacts / RETENTION / r["dag_run_id"] / "plan.json").read_text())
        got[datetime.fromisoformat(r["logical_date"].replace("Z", "+00:00"))] = set(plan["samples"])
        assert plan["delete_count"] == len(plan["samples"])
    assert got == expected
    assert _keys(s3, bucket) == {"bf_a", "bf_b", "bf_c", "bf_d"}  # dry runs delete nothing


# the approval gate cannot be forged (issue 12 item 1) ------------------------------------------------
def _approval(e2e_artifacts: Any, dag_id: str, run_id: str) -> dict[str, Any]:
    return json.loads((e2e_artifacts / dag_id / run_id / "approval.json").read_text())


def test_forged_answer_xcom_and_approve_marked_successful_delete_nothing(airflow, s3, s3_server, e2e_artifacts,
                                                                          unique):
    """What an API user with task-instance edit rights can write is not an approval: an 'answer' XCom and
    the approve task set to success by hand. Nothing is deleted and the run fails naming the missing approval."""
    bucket = unique("forged")
    keys, _ = _deploy_bucket(s3, s3_server, bucket)
    run_id = airflow.trigger(DEPLOY, {"bucket": bucket, "prefix": "deploys/", "keep": 5, "approval": "required"})
    _wait_awaiting_approval(airflow, DEPLOY, run_id)
    base = f"/api/v2/dags/{DEPLOY}/dagRuns/{run_id}/taskInstances/approve"
    for key, value in (("answer", ["Approve"]), ("return_value", {"chosen_options": ["Approve"], "params_input": {}})):
        resp = airflow.http.post(f"{base}/xcomEntries", json={"key": key, "value": value})
        assert resp.status_code == 201, resp.text  # the API lets them write it ...
    resp = airflow.http.patch(base, json={"new_state": "success"})
    assert resp.status_code == 200, resp.text  # ... and mark the gate successful
    assert airflow.wait_run(DEPLOY, run_id, timeout=240) == "failed", airflow.task_states(DEPLOY, run_id)
    assert _keys(s3, bucket) == keys, "a forged approval deleted something"
    deletes = [t for t in airflow.task_instances(DEPLOY, run_id) if t["task_id"] == "delete"]
    assert deletes and all(t["state"] == "failed" for t in deletes), deletes
    log = airflow.task_log(DEPLOY, run_id, "delete", 1, map_index=deletes[0]["map_index"])
    assert "no approval is recorded" in log and "marked successful by hand" in log
    assert not (e2e_artifacts / DEPLOY / run_id / "approval.json").exists()


def test_only_approvers_may_approve_and_the_audit_records_who(airflow, approver, s3, s3_server, e2e_artifacts,
                                                              unique):
    bucket = unique("approvers")
    keys, kept = _deploy_bucket(s3, s3_server, bucket)
    run_id = airflow.trigger(DEPLOY, {"bucket": bucket, "prefix": "deploys/", "keep": 5, "approval": "required",
                                      "approvers": ["approver"]})
    pending = _wait_awaiting_approval(airflow, DEPLOY, run_id)
    assert [u["id"] for u in pending["assigned_users"]] == ["approver"]
    refused = airflow.respond_raw(DEPLOY, run_id, "approve", "Approve")  # admin is not in approvers
    assert refused.status_code == 403 and "not a respondent" in refused.text, refused.text
    assert _keys(s3, bucket) == keys
    assert approver.answer(DEPLOY, run_id, "Approve") == "success", airflow.task_states(DEPLOY, run_id)
    assert _keys(s3, bucket) == kept
    request = json.loads((e2e_artifacts / DEPLOY / run_id / "approval_request.json").read_text())
    audit = _audit(e2e_artifacts, DEPLOY, run_id)
    record = audit["approval_record"]
    assert (audit["approval"], audit["deleted_count"]) == ("approved", 21)
    assert record["responded_by"] == {"id": "approver", "name": "approver"} and record["responded_at"]
    assert record["plan_digest"] == request["plan_digest"] and record["triggered_by"] == "admin"
    plans = {p["run_id"]: p for p in airflow.get("/s3ops/api/plans")["recent"]}
    assert plans[run_id]["approval"]["by"] == "approver"


def test_self_approval_is_refused_when_separate_approver_is_on(airflow, s3, s3_server, e2e_artifacts, unique):
    """No approvers set: Airflow lets any user answer, so the gate refuses the triggering user's own Approve
    when the answer comes back. Nothing is deleted; the run fails saying why."""
    bucket = unique("selfapp")
    keys, _ = _deploy_bucket(s3, s3_server, bucket)
    run_id = airflow.trigger(DEPLOY, {"bucket": bucket, "prefix": "deploys/", "keep": 5, "approval": "required"})
    _wait_awaiting_approval(airflow, DEPLOY, run_id)
    assert airflow.answer(DEPLOY, run_id, "Approve") == "failed", airflow.task_states(DEPLOY, run_id)
    assert _keys(s3, bucket) == keys, "a self-approval deleted something"
    approval = _approval(e2e_artifacts, DEPLOY, run_id)
    assert approval["verdict"] == "refused" and "self-approval" in approval["reason"]
    assert approval["responded_by"]["id"] == "admin" == approval["triggered_by"]
    states = airflow.task_states(DEPLOY, run_id)
    assert states[("approve", -1)] == "failed"
    # the try that got the answer: Airflow 3.3 may have retried the waiting task once (see AirflowClient.answer)
    approve = next(t for t in airflow.task_instances(DEPLOY, run_id) if t["task_id"] == "approve")
    assert "self-approval refused" in airflow.task_log(DEPLOY, run_id, "approve", int(approve["try_number"]))


def test_a_newer_run_supersedes_a_waiting_plan_of_the_same_target(airflow, approver, s3, s3_server, e2e_artifacts,
                                                                    unique):
    bucket = unique("supersede")
    keys, _ = _deploy_bucket(s3, s3_server, bucket)
    conf = {"bucket": bucket, "prefix": "deploys/", "keep": 5, "approval": "required"}
    older = airflow.trigger(DEPLOY, conf)
    _wait_awaiting_approval(airflow, DEPLOY, older)
    newer = airflow.trigger(DEPLOY, conf)
    _wait_awaiting_approval(airflow, DEPLOY, newer)
    marker = json.loads((e2e_artifacts / DEPLOY / older / "superseded.json").read_text())
    assert marker["superseded_by"] == newer
    # nobody answers the older request: its trigger closes it by itself, within seconds of the newer plan
    assert airflow.wait_run(DEPLOY, older, timeout=90) == "success", airflow.task_states(DEPLOY, older)
    assert airflow.pending_approvals(DEPLOY, older) == []  # gone from Required Actions
    closed = airflow.get(f"/api/v2/dags/{DEPLOY}/dagRuns/{older}/taskInstances/approve/-1/hitlDetails")
    assert (closed["response_received"], closed["chosen_options"], closed["responded_by_user"]) == (
        True, ["Reject"], None), closed  # closed by the system, as at a timeout: nobody answered
    answered_after = datetime.fromisoformat(closed["responded_at"]) - datetime.fromisoformat(marker["at"])
    assert answered_after < timedelta(seconds=60), answered_after
    states = airflow.task_states(DEPLOY, older)
    assert (states[("approve", -1)], states[("delete", -1)], states[("audit", -1)]) == ("success", "skipped", "success")
    assert _keys(s3, bucket) == keys, "a superseded plan deleted something"
    audit = _audit(e2e_artifacts, DEPLOY, older)
    assert (audit["outcome"], audit["approval"], audit["superseded_by"], audit["deleted_count"]) == (
        "superseded", "superseded", newer, 0)
    assert audit["approval_record"]["responded_by"] is None
    assert "closed without an answer" in audit["approval_record"]["reason"]
    plans = {p["run_id"]: p for p in airflow.get("/s3ops/api/plans")["recent"]}
    assert (plans[older]["status"], plans[newer]["status"]) == ("superseded", "awaiting approval")
    pending = {p["task_instance"]["dag_run_id"] for p in airflow.pending_approvals(DEPLOY, "~")}
    assert newer in pending and older not in pending, pending
    assert approver.answer(DEPLOY, newer, "Reject") == "success"
    assert _keys(s3, bucket) == keys
