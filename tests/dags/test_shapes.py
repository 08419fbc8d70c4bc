"""Each DAG's interface: schedule, params (names are part of the interface), tasks and edges."""

from __future__ import annotations

from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"

DELETION_GATE = {"guard": ["approve", "delete"], "approve": ["delete"]}


def _dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / f"{dag_id}.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


def _edges(dag) -> dict[str, list[str]]:
    return {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks}


def _form(dag_id: str) -> set[str]:
    import importlib

    feature = dag_id.removeprefix("s3_").removeprefix("s3ops_")
    settings = importlib.import_module(f"include.{feature}.settings").SETTINGS
    return {s.name for s in settings.entries if s.form}


@pytest.mark.parametrize("dag_id", ["s3_storage_report", "s3_upload", "s3_retention", "s3_deploy_cleanup",
                                    "s3ops_housekeeping"])
def test_params_are_exactly_the_form_settings_all_null(dag_id):
    dag = _dag(dag_id)
    assert set(dag.params) == _form(dag_id)
    assert {name: dag.params[name] for name in dag.params} == dict.fromkeys(dag.params)
    # the deleting DAGs allow a second run, so a newer plan can supersede one that waits for approval; deploy
    # cleanup one per target too, so no target's run queues behind another target's waiting approval
    runs = {"s3_retention": 2, "s3_deploy_cleanup": 256 + 2}.get(dag_id, 1)
    assert (dag.catchup, dag.max_active_runs) == (False, runs)


def test_s3_storage_report_shape():
    dag = _dag("s3_storage_report")
    assert dag.timetable.expression == "0 0 * * *"  # @daily
    assert _edges(dag) == {"list_buckets": ["plan_shards"], "plan_shards": ["summarize_shard"],
                           "summarize_shard": ["aggregate"], "aggregate": ["publish"], "publish": []}
    assert dag.get_task("aggregate").trigger_rule == "none_failed"  # zero shards still make a report
    assert _form("s3_storage_report") >= {"buckets", "regions", "storage_classes", "size_unit", "source"}


def test_s3_upload_shape():
    dag = _dag("s3_upload")
    assert dag.timetable.expression == "* * * * *"
    assert _form("s3_upload") == {"base_dir", "bucket", "key_prefix", "settle_seconds", "overwrite", "max_files",
                                  "multipart_threshold_mib", "throughput_target_gbps", "aws_conn_id"}
    assert _edges(dag) == {"scan": ["tidy", "upload_batch"], "upload_batch": ["tidy"], "tidy": ["check"], "check": []}
    tidy = dag.get_task("tidy")
    # runs when there was nothing to upload (no mapped instances); a batch that fails on its last try is
    # recorded instead of failing its task, so tidy runs after it too
    assert tidy.trigger_rule == "none_failed"
    # no backfills: a backfill's runs do not wait for the scheduled ones, and a run uploads what is there now
    assert {str(getattr(t, "value", t)) for t in dag.allowed_run_types} == {"scheduled", "manual"}
    assert [getattr(o, "name", None) for o in tidy.outlets] == ["s3_upload"]
    # a failed or conflicting file makes the run red (check fails) and notifies the deployment's targets
    assert [type(cb).__name__ for cb in dag.get_task("check").on_failure_callback] == ["DeploymentNotifier"]


def test_s3_retention_shape():
    dag = _dag("s3_retention")
    assert dag.timetable.expression == "0 0 * * *"  # @daily
    assert _edges(dag) == {"plan": ["guard"], **DELETION_GATE, "delete": ["audit", "purge_job_rows"],
                           "purge_job_rows": ["audit"], "audit": []}
    assert _form("s3_retention") >= {"bucket", "key_prefix", "jobs_table", "trial_retention", "orphan_min_age_days",
                                     "approval", "approvers", "max_delete_count", "max_delete_fraction"}


def test_s3_deploy_cleanup_shape():
    dag = _dag("s3_deploy_cleanup")
    assert dag.timetable.expression == "0 0 * * *"  # @daily
    assert _edges(dag) == {"targets": ["dispatch", "has_bucket"], "dispatch": [], "has_bucket": ["plan"],
                           "plan": ["guard"], **DELETION_GATE, "delete": ["audit"], "audit": []}
    dispatch = dag.get_task("dispatch")
    assert dispatch.task_type == "TriggerDagRunOperator" and dispatch.partial_kwargs["trigger_dag_id"] == dag.dag_id
    # a target's run that already exists was not started by this dispatch (a run created ahead of it through the
    # REST API under the id it gives): skipping it left the target silently to that run's conf
    assert dispatch.partial_kwargs.get("skip_when_already_exists", False) is False
    assert dag.get_task("has_bucket").task_type == "_ShortCircuitDecoratedOperator"
