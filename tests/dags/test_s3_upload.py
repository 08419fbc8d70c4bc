"""The s3_upload DAG's interface: schedule, params (names are part of the interface), task shape."""

from __future__ import annotations

from pathlib import Path

DAGS = Path(__file__).resolve().parents[2] / "dags"


def test_s3_upload_shape_and_params():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / "s3_upload.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["s3_upload"]
    assert (dag.catchup, dag.max_active_runs) == (False, 1)
    assert dag.timetable.expression == "* * * * *"
    assert set(dag.params) == {"base_dir", "bucket", "key_prefix", "settle_seconds", "overwrite", "max_files",
                               "aws_conn_id"}
    defaults = {name: dag.params[name] for name in dag.params}
    assert (defaults["key_prefix"], defaults["settle_seconds"], defaults["overwrite"]) == ("", 30, False)
    assert defaults["max_files"] >= 10_000 and defaults["aws_conn_id"] == "aws_default"
    assert {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks} == {
        "scan": ["tidy", "upload_batch"], "upload_batch": ["tidy"], "tidy": ["check"], "check": [],
    }
    # a failed or conflicting file makes the run red (check fails) and notifies the deployment's targets
    assert [type(cb).__name__ for cb in dag.get_task("check").on_failure_callback] == ["DeploymentNotifier"]
    tidy = dag.get_task("tidy")
    assert tidy.trigger_rule == "none_failed"  # runs when there was nothing to upload (no mapped instances)
    assert [getattr(o, "name", None) for o in tidy.outlets] == ["s3_upload"]
