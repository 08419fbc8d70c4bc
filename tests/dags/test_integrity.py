"""Every DAG file imports cleanly, quickly, and carries what operators rely on."""

from __future__ import annotations

from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_every_dag_file_imports_without_errors(dagbag):
    assert DAG_FILES, "dags/ holds no DAG file"
    assert dagbag.import_errors == {}
    files_with_dags = {Path(d.fileloc).name for d in dagbag.dags.values()}
    assert files_with_dags == {p.name for p in DAG_FILES}, "every file in dags/ defines a DAG"


def test_one_dag_per_file_named_after_its_file(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert Path(dag.fileloc).stem == dag_id, f"{dag_id} lives in {dag.fileloc}"


def test_dags_have_tags_owner_retries_and_docs(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md and len(dag.doc_md) > 100, f"{dag_id} has no useful doc_md"
        for t in dag.tasks:
            assert t.owner and t.owner != "airflow", f"{dag_id}.{t.task_id} has no owner"
            assert t.retries >= 2, f"{dag_id}.{t.task_id} retries={t.retries}"
            if t.task_type != "ApprovalOperator":
                assert t.retry_exponential_backoff, f"{dag_id}.{t.task_id} retries without backoff"


def test_dag_files_parse_quickly(dagbag):
    slow = {s.file: s.duration for s in dagbag.dagbag_stats if s.duration.total_seconds() >= 1.0}
    assert not slow, f"DAG files taking >= 1 s to parse: {slow}"


def test_params_are_documented(dagbag):
    for dag_id, dag in dagbag.dags.items():
        for name, param in dag.params.items():
            assert param.description, f"{dag_id} param {name!r} has no description"
            assert "type" in param.schema, f"{dag_id} param {name!r} has no type"


def test_scheduled_retention_runs_take_their_bucket_from_the_deployment(monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("S3OPS_RETENTION_BUCKET", "jobs-bucket")
    monkeypatch.setenv("S3OPS_RETENTION_KEY_PREFIX", "incoming/")
    dag = DagBag(dag_folder=str(DAGS / "s3_retention.py")).dags["s3_retention"]
    assert dag.params["bucket"] == "jobs-bucket"
    assert dag.params["key_prefix"] == "incoming/"


def test_every_task_notifies_on_failure_and_approvals_notify_approvers(dagbag):
    """Failures reach the deployment's notification targets from every task; approval requests too."""
    for dag_id, dag in dagbag.dags.items():
        for t in dag.tasks:
            callbacks = [type(cb).__name__ for cb in (t.on_failure_callback or [])]
            assert callbacks == ["DeploymentNotifier"], f"{dag_id}.{t.task_id} on_failure_callback={callbacks}"
            if t.task_type.endswith("ApprovalOperator"):
                assert [n.event for n in t.notifiers] == ["approval"], f"{dag_id}.{t.task_id}"
