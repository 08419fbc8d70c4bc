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


def _plan_context(dag_id: str, states: Any, tmp_path: Any, monkeypatch: Any) -> dict[str, Any]:
    """A context for ``dag_id``'s real plan task (its real downstream tasks) whose run has ``states`` (a
    list: one per look, the last one kept)."""
    from types import SimpleNamespace

    monkeypatch.setenv("S3OPS_ARTIFACT_ROOT", str(tmp_path))
    looks = states if isinstance(states, list) else [states]  # the same list: a test sees what was looked at

    def get_task_states(dag_id: str, run_ids: list[str]) -> dict[str, Any]:
        return {"r1": dict(looks.pop(0) if len(looks) > 1 else looks[0])}
    return {"ti": SimpleNamespace(dag_id=dag_id, run_id="r1", get_task_states=get_task_states),
            "task": _dags()[dag_id].get_task("plan")}


@pytest.mark.parametrize("dag_id, busy, message", [
    ("s3_retention", {"delete_0": "success", "delete_1": "running", "delete_10": "queued"},
     r"delete_1 is running, delete_10 is queued"),
    ("s3_retention", {"delete_0": "success", "purge_job_rows": "up_for_retry"}, r"purge_job_rows is up_for_retry"),
    ("s3_retention", {"approve": "deferred"}, r"approve is deferred"),
    ("s3_retention", {"approve": "awaiting_input"}, r"approve is awaiting_input"),  # Airflow 3.3's HITL wait
    ("s3_deploy_cleanup", {"delete_3": "restarting", "audit": "scheduled"}, r"audit is scheduled, delete_3 is restarting"),
])
def test_a_plan_task_does_not_plan_again_while_its_run_still_deletes(dag_id, busy, message, tmp_path, monkeypatch):
    """A plan task cleared alone while the run's deletes run (or its approval waits) would replace the plan
    they work on, and move the run's record to earlier/ under them (a chunk's progress written half here,
    half there). It fails, naming them, without retries (a retry minutes later would find them still busy)."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.deletion.airflow import plan_run_dir

    states = {"plan": "running", "guard": "success", "approve": "success", **busy}
    with pytest.raises(AirflowFailException, match=f"plan: not planning again while tasks after it in this run are "
                                                   f"underway \\({message}\\): .* Nothing was changed"):
        plan_run_dir(_plan_context(dag_id, states, tmp_path, monkeypatch), poll=0)
    assert not (tmp_path / dag_id).exists()


@pytest.mark.parametrize("dag_id, states", [
    ("s3_retention", {"plan": "running", "guard": None, "delete_0": None, "purge_job_rows": None, "audit": None}),
    ("s3_retention", {"plan": "running", "guard": "success", "delete_0": "success", "delete_1": "failed",
                      "purge_job_rows": "skipped", "audit": "upstream_failed"}),
    # cleared with the plan while its worker was gone: it starts again only after guard and approve
    ("s3_retention", {"plan": "running", "guard": None, "approve": None, "delete_0": "up_for_retry"}),
    # tasks before the plan, or beside it, are not the plan's business (the dispatching run's triggers)
    ("s3_deploy_cleanup", {"targets": "success", "dispatch_0": "running", "has_bucket": "success",
                           "plan": "running", "delete_0": "removed"}),
])
def test_a_plan_task_plans_when_nothing_after_it_is_underway(dag_id, states, tmp_path, monkeypatch):
    from include.deletion.airflow import plan_run_dir

    assert plan_run_dir(_plan_context(dag_id, states, tmp_path, monkeypatch)) == tmp_path / dag_id / "r1"


def test_a_plan_cleared_with_its_downstream_tasks_waits_for_them_to_stop(tmp_path, monkeypatch):
    """Clearing the plan with its downstream tasks stops a running delete (restarting, then None): the plan
    waits for that instead of failing, and a task still stopping after ``stop_wait`` fails it."""
    from datetime import timedelta

    from airflow.sdk.exceptions import AirflowFailException

    from include.deletion.airflow import plan_run_dir

    stopping = {"plan": "running", "guard": None, "approve": None, "delete_0": "restarting", "delete_1": None}
    stopped = {**stopping, "delete_0": None}
    looks = [stopping, stopping, stopping, stopped]
    context = _plan_context("s3_deploy_cleanup", looks, tmp_path, monkeypatch)
    assert plan_run_dir(context, poll=0) == tmp_path / "s3_deploy_cleanup" / "r1"
    assert len(looks) == 1  # it looked until the delete had stopped
    with pytest.raises(AirflowFailException, match=r"\(delete_0 is restarting\)"):
        plan_run_dir(_plan_context("s3_deploy_cleanup", stopping, tmp_path, monkeypatch), stop_wait=timedelta(0), poll=0)


@pytest.mark.parametrize("states, has_plan, has_audit, deleted, expected", [
    ({"plan": "success", "guard": "success"}, True, False, False, None),
    # cleared alone after the run, it rewrote plan.json and then failed: the guard's success is of another plan
    ({"plan": "failed", "guard": "success", "guarded": False}, True, False, False, "AlreadyReported"),
    # the plan failed in this attempt: the plan.json there is an earlier attempt's, with nothing new to record
    ({"plan": "failed", "guard": "upstream_failed"}, True, False, False, "AlreadyReported"),
    ({"plan": "failed", "guard": "upstream_failed"}, True, True, True, "AlreadyReported"),
    ({"plan": "failed"}, False, False, False, "AlreadyReported"),
    # marked failed during the deletes: those deletions are this plan's
    ({"plan": "failed", "guard": "upstream_failed"}, True, False, True, None),
    # it refused to plan again while the approval waited: the guarded plan is the one to audit
    ({"plan": "failed", "guard": "success"}, True, False, False, None),
    ({"plan": "failed", "guard": "success"}, False, False, False, "AlreadyReported"),
    # the audit cleared alone while the run plans again
    ({"plan": "running", "guard": "success"}, True, True, True, "AirflowFailException"),
    ({"plan": "up_for_retry", "guard": "success"}, True, False, False, "AirflowFailException"),
])
def test_the_audit_records_the_plan_its_run_worked_on_and_only_then(states, has_plan, has_audit, deleted, expected):
    from include.deletion.airflow import unauditable

    states = dict(states)
    guarded = states.pop("guarded", True)
    refusal = unauditable("plan", states, has_plan=has_plan, has_audit=has_audit, deleted=deleted, guarded=guarded)
    assert (None if refusal is None else type(refusal).__name__) == expected


def test_the_approver_sees_which_settings_the_run_gave_and_who_triggered_it():
    """A run's conf may change a policy setting (another key_prefix, protect emptied, keep lowered): the request
    listed every value, but nothing told the approver which of a dozen the person who triggered the run chose
    rather than the deployment, nor who that person was. Both are shown, escaped."""
    from include.core.settings import Resolved

    values = {"bucket": "b1", "key_prefix": "jobs/", "jobs_table": "jobs", "aws_conn_id": "aws_default",
              "max_delete_count": 10, "notifications": ["https://hooks.example/secret"]}
    sources = {"bucket": "param", "key_prefix": "param", "jobs_table": "variable", "aws_conn_id": "default",
               "max_delete_count": "param", "notifications": "param"}
    params = Resolved(values, sources)
    body = approval_body({"delete_count": 1, "settings": values, "chunks": ["00000"]}, params,
                         triggered_by="mallory`\n**ok**")
    given = body.split("given by this run's conf or trigger form")[1].split("Run triggered by")[0]
    assert "```text\nbucket\nkey_prefix\nmax_delete_count\n```" in given  # a secret's name neither
    assert "**3 of them given" in body
    assert "```text\nmallory`\\n**ok**\n```" in body.split("Run triggered by:")[1]
    # the deployment's own values only, or a scheduled run: no such lines
    plain = approval_body({"delete_count": 1, "settings": values, "chunks": ["00000"]},
                          Resolved(values, {k: "variable" for k in values}))
    assert "given by this run" not in plain and "triggered by" not in plain
