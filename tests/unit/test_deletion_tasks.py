"""The pure parts of the deletion wiring: who may delete, the approval verdict, the approval text."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from include.deletion.airflow import approval_body


def test_approval_body_shows_counts_bytes_reasons_samples_and_where():
    body = approval_body(
        {"headline": "Delete 2 of 9 deployments", "delete_count": 3, "delete_bytes": 3 * 1024 ** 2,
         "scanned_count": 40, "by_reason": {"beyond_keep": {"count": 3, "bytes": 3 * 1024 ** 2}},
         "samples": ["d/r1/a", "d/r1/b"], "plan_uri": "/art/plan.json", "chunks": ["00000"]},
        {"bucket": "b1"}, plan_digest="sha256:abc",
    )
    for part in ("```text\nDelete 2 of 9 deployments\n```", "**3 objects** (3.00 MiB)", "```text\nb1\n```",
                 "| beyond_keep | 3 | 3.00 MiB |", "```text\nd/r1/a\nd/r1/b\n```", "Full plan (1 chunks)",
                 "```text\n/art/plan.json\n```", "`sha256:abc`", "Reject deletes nothing"):
        assert part in body


def test_the_approver_sees_every_setting_the_plan_was_made_with_but_secrets():
    """Whoever may trigger a run may point it at another jobs table, connection or prefix: the request
    shows them (escaped), not only the counts those settings produced."""
    settings = {"bucket": "b1", "jobs_table": "jobs_almost_empty", "mysql_conn_id": "other_mysql",
                "key_prefix": "jobs/\u202etxt.exe", "aws_conn_id": "aws_default", "purge_job_rows": True,
                "notifications": ["https://hooks.example/T0/secret-token"], "audit_retention_days": 400}
    body = approval_body({"delete_count": 1, "settings": settings, "chunks": ["00000"]}, {"bucket": "b1"})
    made_with = body.split("Made with these settings")[1].split("Full plan")[0]
    for line in ('jobs_table = "jobs_almost_empty"', 'mysql_conn_id = "other_mysql"', 'key_prefix = "jobs/\\\\u202etxt.exe"',
                 "purge_job_rows = true", 'aws_conn_id = "aws_default"'):
        assert line in made_with
    assert "secret-token" not in body and "notifications" not in body and "audit_retention_days" not in made_with
    assert "\u202e" not in body  # the right-to-left override never reaches the page unescaped


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
    # the audit waits for every delete chunk too: purge_job_rows fails as soon as one chunk fails
    assert t["audit"].upstream_task_ids == {"purge_job_rows", "delete"}
    assert isinstance(t["approve"], PlanApprovalOperator) and t["approve"].defaults == ["Reject"]
    # delete must still run when approve is skipped (auto); audit also when a task before it failed for good
    # (it records what was deleted, then fails the run)
    assert t["delete"].trigger_rule == "none_failed" and t["audit"].trigger_rule == "all_done"


def test_failed_tasks_are_named_in_chunk_order():
    """The audit's ``failed_tasks`` come from Airflow's task states (a mapped task as ``delete_<index>``)."""
    from include.deletion.airflow import _in_order

    assert sorted(["delete_10", "guard", "delete_2", "purge_job_rows", "delete_0"], key=_in_order) == [
        "delete_0", "delete_2", "delete_10", "guard", "purge_job_rows"]


def test_a_plan_json_that_is_not_an_object_is_refused_not_a_traceback(tmp_path, monkeypatch):
    """authorized() parses plan.json from the bytes whose digest it checks: a hand-edited list of pairs
    (which dict() would accept) or a string is refused, naming the file."""
    import json
    from types import SimpleNamespace

    import pytest
    from airflow.sdk.exceptions import AirflowFailException

    import include.dag_defaults as dag_defaults
    from include.deletion.airflow import authorized

    monkeypatch.setenv("S3OPS_ARTIFACT_ROOT", str(tmp_path))
    monkeypatch.setattr(dag_defaults, "saved_run_settings", lambda context: {"approval": "auto"})
    run = tmp_path / "d" / "r"
    run.mkdir(parents=True)
    context = {"ti": SimpleNamespace(dag_id="d", run_id="r")}
    for text in ('[["plan_id", "p1"], ["chunks", []]]', '"p1"'):
        (run / "plan.json").write_text(text)
        with pytest.raises(AirflowFailException, match=r"plan.json is not a plan \(a JSON object\)"):
            authorized(context)
    (run / "plan.json").write_text(json.dumps({"plan_id": "p1", "chunks": []}))
    with pytest.raises(AirflowFailException, match="not those its plan was made with"):  # an object: on to the
        authorized(context)  # gate's own checks (this plan pins no settings)


@functools.cache
def _dags() -> dict[str, Any]:
    from pathlib import Path

    from airflow.dag_processing.dagbag import DagBag

    return dict(DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags")).dags)


def _plan_context(dag_id: str, states: dict[str, str | None], tmp_path: Any, monkeypatch: Any) -> dict[str, Any]:
    """A context for ``dag_id``'s real plan task (its real downstream tasks) whose run has ``states``."""
    from types import SimpleNamespace

    monkeypatch.setenv("S3OPS_ARTIFACT_ROOT", str(tmp_path))
    dag = _dags()[dag_id]
    ti = SimpleNamespace(dag_id=dag_id, run_id="r1",
                         get_task_states=lambda dag_id, run_ids: {"r1": dict(states)})
    return {"ti": ti, "task": dag.get_task("plan")}


@pytest.mark.parametrize("dag_id, busy, message", [
    ("s3_retention", {"delete_0": "success", "delete_1": "running", "delete_10": "queued"},
     r"delete_1 is running, delete_10 is queued"),
    ("s3_retention", {"purge_job_rows": "up_for_retry"}, r"purge_job_rows is up_for_retry"),
    ("s3_retention", {"approve": "deferred"}, r"approve is deferred"),
    ("s3_deploy_cleanup", {"delete_3": "restarting", "audit": "scheduled"}, r"audit is scheduled, delete_3 is restarting"),
])
def test_a_plan_task_does_not_plan_again_while_its_run_still_deletes(dag_id, busy, message, tmp_path, monkeypatch):
    """A plan task cleared alone while the run's deletes run would move the run's record to earlier/ under
    them (a chunk's progress written half here, half there). It waits (a retry) until the tasks after it
    have stopped."""
    from include.deletion.airflow import RunBusy, plan_run_dir

    states = {"plan": "running", "guard": "success", **busy}
    with pytest.raises(RunBusy, match=f"plan: not planning again while tasks after it in this run are underway "
                                      f"\\({message}\\)"):
        plan_run_dir(_plan_context(dag_id, states, tmp_path, monkeypatch))


@pytest.mark.parametrize("dag_id, states", [
    ("s3_retention", {"plan": "running", "guard": None, "delete_0": None, "purge_job_rows": None, "audit": None}),
    ("s3_retention", {"plan": "running", "guard": "success", "delete_0": "success", "delete_1": "failed",
                      "purge_job_rows": "skipped", "audit": "upstream_failed"}),
    # tasks before the plan, or beside it, are not the plan's business (the dispatching run's triggers)
    ("s3_deploy_cleanup", {"targets": "success", "dispatch_0": "running", "has_bucket": "success",
                           "plan": "running", "delete_0": "removed"}),
])
def test_a_plan_task_plans_when_nothing_after_it_is_underway(dag_id, states, tmp_path, monkeypatch):
    from include.deletion.airflow import plan_run_dir

    assert plan_run_dir(_plan_context(dag_id, states, tmp_path, monkeypatch)) == tmp_path / dag_id / "r1"
