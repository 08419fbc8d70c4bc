"""include.dag_defaults.DeploymentNotifier("failure") around its artifact store: an unreachable store does not
keep a failure from being reported. The provider notifiers are replaced by a recorder."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from include import dag_defaults
from include.core import artifacts

TARGETS = json.dumps({"notifications": ["ops@example.com"]})


@pytest.fixture
def delivered(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> list[tuple[Any, Any]]:
    """(target, message) of every notification handed to a provider; a local artifact root of its own."""
    monkeypatch.setenv(artifacts.ROOT_ENV, str(tmp_path / "artifacts"))
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_UPLOAD", TARGETS)
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_STORAGE_REPORT", TARGETS)
    out: list[tuple[Any, Any]] = []
    monkeypatch.setattr(dag_defaults, "provider_notifier",
                        lambda target, message: lambda context: out.append((target, message)))
    return out


def _fail(dag_id: str, task_id: str, error: BaseException, *, run_id: str = "scheduled__r1", map_index: int = -1) -> None:
    ti = SimpleNamespace(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index, try_number=4)
    dag_defaults.DeploymentNotifier("failure").notify({"ti": ti, "exception": error})


def _unreachable(*args: Any, **kwargs: Any) -> Any:
    raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9/artifacts/s3_upload/scheduled__r1/settings.json")


@pytest.mark.parametrize(("broken", "reaches"), [
    ("exists", "ops@example.com"),  # the run's settings cannot be read: the Variable's targets
    ("read_bytes", "ops@example.com"),
    ("write_bytes", "run@example.com"),  # the report mark cannot be written: sent all the same
])
def test_an_unreachable_artifact_store_still_reports_the_failure(delivered, monkeypatch, caplog, broken, reaches):
    """s3fs lets botocore's connection errors through as they are; one escaped the failure callback, the
    Variable's targets were never tried, and nobody was told the store was down."""
    artifacts.write_json(artifacts.run_dir("s3_upload", "scheduled__r1") / "settings.json",
                         {"values": {"notifications": ["run@example.com"]}})
    monkeypatch.setattr(artifacts, broken, _unreachable)
    _fail("s3_upload", "scan", EndpointConnectionError(endpoint_url="http://127.0.0.1:9/artifacts"))
    assert [(t.to, m.event) for t, m in delivered] == [((reaches,), "failure")]
    assert "EndpointConnectionError" in caplog.text  # what failed is logged


def test_a_broken_variable_and_an_unreachable_store_are_logged_not_raised(delivered, monkeypatch, caplog):
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_UPLOAD", '{"notifications": oops}')
    monkeypatch.setattr(artifacts, "exists", _unreachable)
    _fail("s3_upload", "scan", RuntimeError("boom"))
    assert delivered == []
    assert "EndpointConnectionError" in caplog.text and "no failure notification sent" in caplog.text
