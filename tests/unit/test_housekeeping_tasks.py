"""The s3ops_housekeeping DAG's settings and its prune task (include.housekeeping), on a local artifact root
with the Variables set as a deployer sets them (``AIRFLOW_VAR_…``)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from include.core import artifacts

NOW = datetime(2026, 11, 30, tzinfo=UTC)
DAG_ID = "s3ops_housekeeping"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(artifacts.ROOT_ENV, str(tmp_path))
    monkeypatch.delenv("AIRFLOW_VAR_S3OPS_HOUSEKEEPING", raising=False)
    return tmp_path


def _variable(monkeypatch: pytest.MonkeyPatch, name: str, text: str) -> None:
    monkeypatch.setenv(f"AIRFLOW_VAR_{name.upper()}", text)


def _run_folder(root: Path, dag_id: str, run_id: str, days_old: float) -> Path:
    """A run folder as the DAG's first task leaves it, its files ``days_old`` days old at :data:`NOW`."""
    folder = root / dag_id / run_id
    artifacts.write_json(folder / "settings.json", {"values": {}})
    ts = (NOW - timedelta(days=days_old)).timestamp()
    for path in [folder, *folder.rglob("*")]:
        os.utime(path, (ts, ts))
    return folder


def _context(run_id: str, **params: Any) -> dict[str, Any]:
    """What the prune task gets from Airflow: its params (the untouched form: every one null)."""
    from include.housekeeping.settings import SETTINGS

    ti = SimpleNamespace(dag_id=DAG_ID, run_id=run_id, task_id="prune", map_index=-1, try_number=1)
    return {"params": {**dict.fromkeys(SETTINGS.param_specs()), **params}, "ti": ti,
            "dag_run": SimpleNamespace(run_after=NOW), "logical_date": NOW}


def _prune(run_id: str, **params: Any) -> dict[str, Any]:
    from include.housekeeping.tasks import prune

    return prune(_context(run_id, **params))


def test_a_misspelt_key_of_its_variable_fails_the_run_naming_it_and_removes_nothing(root, monkeypatch):
    """``artifact_retention_day`` was ignored: the 30-day default pruned runs meant to be kept for 90."""
    from airflow.sdk.exceptions import AirflowFailException

    _variable(monkeypatch, DAG_ID, json.dumps({"artifact_retention_day": 90, "audit_retention": 3650}))
    kept = _run_folder(root, "s3_upload", "sixty_days_old", 60)
    with pytest.raises(AirflowFailException) as failed:
        _prune("typo")
    message = str(failed.value)
    assert "s3ops_housekeeping" in message and "['artifact_retention_day', 'audit_retention']" in message
    assert kept.is_dir()


@pytest.mark.parametrize(("variable", "says"), [
    ('{"artifact_retention_days": "90"}', "artifact_retention_days = \"90\""),
    ('{"audit_retention_days": 0}', "audit_retention_days = 0"),
    ('{"notifications": "not an address"}', "notifications"),
    ('["artifact_retention_days", 90]', "must be a JSON object"),
    ('{"artifact_retention_days": 90,}', "is not valid JSON"),
])
def test_a_bad_variable_fails_the_run_naming_what_is_wrong(root, monkeypatch, variable, says):
    from airflow.sdk.exceptions import AirflowFailException

    _variable(monkeypatch, DAG_ID, variable)
    with pytest.raises(AirflowFailException, match="s3ops_housekeeping") as failed:
        _prune("bad")
    assert says in str(failed.value)


def test_its_variable_is_every_dags_fallback_and_a_dags_own_keys_come_first(root, monkeypatch):
    """Other DAGs' Variables hold their own retention keys among their other settings; housekeeping's own
    run folders (written since it resolves its settings) are pruned like any other DAG's."""
    _variable(monkeypatch, DAG_ID, json.dumps({"artifact_retention_days": 90}))
    _variable(monkeypatch, "s3ops_upload", json.dumps({"bucket": "landing", "artifact_retention_days": 10}))
    runs = {("s3_retention", "sixty"): _run_folder(root, "s3_retention", "sixty", 60),
            ("s3_retention", "hundred"): _run_folder(root, "s3_retention", "hundred", 100),
            ("s3_upload", "twenty"): _run_folder(root, "s3_upload", "twenty", 20),
            (DAG_ID, "old_run"): _run_folder(root, DAG_ID, "old_run", 100)}
    result = _prune("today")
    assert {key for key, folder in runs.items() if folder.exists()} == {("s3_retention", "sixty")}
    assert result["dags"]["s3_upload"]["runs_removed"] == 1
    saved = json.loads((root / DAG_ID / "today" / "settings.json").read_text())
    assert saved["values"]["artifact_retention_days"] == 90 and saved["sources"]["artifact_retention_days"] == "variable"
    assert saved["values"]["audit_retention_days"] == 400  # the built-in default


def test_dry_run_removes_nothing_and_a_run_cannot_turn_off_the_deployments(root, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    old = _run_folder(root, "s3_upload", "old", 60)
    assert _prune("dry", dry_run=True)["dags"]["s3_upload"]["runs_removed"] == 1
    assert old.is_dir()
    _variable(monkeypatch, DAG_ID, json.dumps({"dry_run": True}))
    with pytest.raises(AirflowFailException, match="dry_run"):
        _prune("wet", dry_run=False)
    _prune("scheduled")
    assert old.is_dir()


def test_its_failures_still_reach_the_targets_when_its_variable_breaks(root, monkeypatch):
    """The last good run kept its targets: a trailing comma in the Variable fails the next run, and that
    failure is still mailed (it went nowhere: nothing had resolved the housekeeping targets)."""
    from airflow.sdk.exceptions import AirflowFailException

    from include import dag_defaults

    sent: list[Any] = []
    monkeypatch.setattr(dag_defaults, "send", lambda message, targets, context: sent.append((message, targets)) or 1)
    _variable(monkeypatch, DAG_ID, json.dumps({"notifications": ["ops@example.com"]}))
    _prune("good")
    _variable(monkeypatch, DAG_ID, '{"notifications": ["ops@example.com"], "artifact_retention_days": 90,}')
    with pytest.raises(AirflowFailException) as failed:
        _prune("broken")
    dag_defaults.DeploymentNotifier("failure").notify({**_context("broken"), "exception": failed.value})
    [(message, targets)] = sent
    assert [t.to for t in targets] == [("ops@example.com",)] and "not valid JSON" in message.subject + message.text
