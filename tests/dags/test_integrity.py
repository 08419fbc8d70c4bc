"""Every DAG file imports cleanly, quickly, and carries what operators rely on."""

from __future__ import annotations

from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
#: the DAGs whose params come from include.core.settings
SETTINGS_MODEL_DAGS = ("s3_storage_report", "s3_upload", "s3_retention", "s3_deploy_cleanup", "s3ops_housekeeping")
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


def test_no_param_default_is_read_from_the_environment_at_parse_time(monkeypatch):
    """Params default to null (= the deployment setting); the dag-processor's environment decides nothing."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("S3OPS_RETENTION_BUCKET", "jobs-bucket")
    monkeypatch.setenv("S3OPS_UPLOAD_BUCKET", "upload-bucket")
    bag = DagBag(dag_folder=str(DAGS))
    for dag_id in SETTINGS_MODEL_DAGS:
        dag = bag.dags[dag_id]
        assert all(dag.params[name] is None for name in dag.params), dag_id


def test_param_descriptions_name_the_variable_and_the_built_in_default(dagbag):
    for dag_id in SETTINGS_MODEL_DAGS:
        for name, param in dagbag.dags[dag_id].params.items():
            assert "s3ops_" in param.description and "built-in default" in param.description, (dag_id, name)


def test_every_task_notifies_on_failure_and_approvals_notify_approvers(dagbag):
    """Failures reach the deployment's notification targets from every task; approval requests too."""
    for dag_id, dag in dagbag.dags.items():
        for t in dag.tasks:
            callbacks = [type(cb).__name__ for cb in (t.on_failure_callback or [])]
            assert callbacks == ["DeploymentNotifier"], f"{dag_id}.{t.task_id} on_failure_callback={callbacks}"
            if t.task_type.endswith("ApprovalOperator"):
                assert [n.event for n in t.notifiers] == ["approval"], f"{dag_id}.{t.task_id}"


def test_the_deleting_dags_share_one_tag(dagbag):
    """A user filtering the DAG list by what deletes finds every deleting DAG under one tag."""
    deleting = {dag_id for dag_id, dag in dagbag.dags.items() if "approve" in dag.task_ids}
    assert deleting == {"s3_retention", "s3_deploy_cleanup"}
    tagged = {dag_id for dag_id, dag in dagbag.dags.items() if "deletion" in dag.tags}
    assert tagged == deleting
