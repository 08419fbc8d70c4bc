"""The pure parts of the deletion wiring: who may delete, the approval verdict, the approval text."""

from __future__ import annotations

import json

import pytest

from include.deletion.airflow import DeleteRefused, approval_body, approval_verdict, authorize_delete

PLAN = {"plan_id": "p1", "chunks": ["00000", "00001"]}
APPROVED = {"chosen_options": ["Approve"], "params_input": {}}
REJECTED = {"chosen_options": ["Reject"], "params_input": {}}


def _auth(**kw):
    args = {"plan": PLAN, "summary": {"plan_id": "p1"}, "chunk": "00000", "guard_passed": True,
            "guard_plan_id": "p1", "params": {"approval": "required", "dry_run": False},
            "approval_result": APPROVED}
    args.update(kw)
    return authorize_delete(**args)


def test_delete_is_authorised_when_everything_holds():
    assert _auth() == "approved"
    assert _auth(params={"approval": "auto", "dry_run": False}, approval_result=None) == "auto"


@pytest.mark.parametrize(("change", "message"), [
    ({"plan": None}, "no plan.json"),
    ({"summary": {"plan_id": "old"}}, "not the plan the guard checked"),
    ({"guard_plan_id": "old"}, "not the plan the guard checked"),
    ({"chunk": "00009"}, "not part of the plan"),
    ({"guard_passed": None}, "guard did not pass"),
    ({"approval_result": None}, "got: no_answer"),  # e.g. approve marked success by hand
    ({"approval_result": REJECTED}, "got: rejected"),
    ({"params": {"approval": "required", "dry_run": True}}, "got: dry_run"),
    ({"params": {"approval": "sometimes"}}, "approval must be one of"),
])
def test_delete_is_refused_when_a_precondition_is_missing(change, message):
    with pytest.raises(DeleteRefused, match=message):
        _auth(**change)


def test_approval_verdict():
    assert approval_verdict({"approval": "auto", "dry_run": True}, APPROVED) == "dry_run"
    assert approval_verdict({"approval": "required"}, {"chosen_options": ["Reject"], "timedout": True}) == "rejected"
    assert approval_verdict({"approval": "required"}, {"chosen_options": []}) == "no_answer"


def test_approval_body_shows_counts_bytes_reasons_samples_and_where():
    body = approval_body(
        {"headline": "Delete 2 of 9 deployments", "delete_count": 3, "delete_bytes": 3 * 1024 ** 2,
         "scanned_count": 40, "by_reason": {"beyond_keep": {"count": 3, "bytes": 3 * 1024 ** 2}},
         "samples": ["d/r1/a", "d/r1/b"], "plan_uri": "/art/plan.json", "chunks": ["00000"]},
        {"bucket": "b1"},
    )
    for part in ("Delete 2 of 9 deployments", "**3 objects** (3.00 MiB)", "`b1`", "| beyond_keep | 3 | 3.00 MiB |",
                 "- `d/r1/a`", "`/art/plan.json` (1 chunks)", "Reject deletes nothing"):
        assert part in body


def test_a_plan_wide_check_needs_no_chunk():
    assert _auth(chunk=None) == "approved"
    with pytest.raises(DeleteRefused, match="got: rejected"):
        _auth(chunk=None, approval_result=REJECTED)


def test_wiring_with_a_task_between_delete_and_audit():
    """The shape both DAGs get, including retention's extra step before the audit."""
    from datetime import datetime

    from airflow.sdk import DAG, task

    from include.deletion.airflow import PlanApprovalOperator, add_deletion_tasks
    from include.deploy_cleanup.plan import make_recheck

    @task
    def plan() -> dict:
        return {}

    @task(trigger_rule="none_failed")
    def purge_job_rows() -> dict:
        return {}

    with DAG("wiring_test", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        tasks = add_deletion_tasks(plan(), recheck=make_recheck, before_audit=purge_job_rows)
    assert set(tasks) == {"guard", "approve", "delete", "audit"}
    t = dag.task_dict
    assert set(t) == {"plan", "guard", "approve", "delete", "purge_job_rows", "audit"}
    assert t["guard"].upstream_task_ids == {"plan"}
    assert t["approve"].upstream_task_ids == {"guard"}
    assert t["delete"].upstream_task_ids == {"guard", "approve"}
    assert t["purge_job_rows"].upstream_task_ids == {"delete"}
    assert t["audit"].upstream_task_ids == {"purge_job_rows"}
    assert isinstance(t["approve"], PlanApprovalOperator) and t["approve"].defaults == ["Reject"]
    # delete and audit must still run when approve is skipped (auto) or delete is skipped (reject, dry run)
    assert t["delete"].trigger_rule == t["audit"].trigger_rule == "none_failed"


def test_require_authorized_skips_on_reject_and_fails_without_retry_otherwise(tmp_path, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from include.deletion.airflow import require_authorized
    from include.deletion.plan import PlanWriter

    monkeypatch.setenv("S3OPS_ARTIFACT_ROOT", str(tmp_path))
    summary = PlanWriter(tmp_path / "d" / "r").close(listing_complete=True)

    class TI:
        dag_id, run_id = "d", "r"

        def __init__(self, answer):
            self.xcoms = {("plan", "return_value"): summary, ("guard", "passed"): True,
                          ("guard", "plan_id"): summary["plan_id"], ("approve", "answer"): answer}

        def xcom_pull(self, task_ids, key="return_value"):
            return self.xcoms.get((task_ids, key))

    params = {"approval": "required", "dry_run": False}
    # the run's resolved settings, not the params (which may be empty), decide
    (tmp_path / "d" / "r" / "settings.json").write_text(json.dumps({"values": params}))
    params = {"approval": "auto", "dry_run": False}
    assert require_authorized({"ti": TI(["Approve"]), "params": params}) == "approved"
    with pytest.raises(AirflowSkipException):
        require_authorized({"ti": TI(["Reject"]), "params": params})
    with pytest.raises(AirflowFailException, match="no_answer"):
        require_authorized({"ti": TI(None), "params": params})
