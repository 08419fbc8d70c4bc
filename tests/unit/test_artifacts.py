from __future__ import annotations

import pytest

from include.core import artifacts


def test_root_defaults_under_airflow_home(monkeypatch, tmp_path):
    monkeypatch.delenv(artifacts.ROOT_ENV, raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    assert artifacts.artifact_root() == tmp_path / "s3ops-artifacts"


def test_run_dir_and_json_round_trip(monkeypatch, tmp_path):
    monkeypatch.setenv(artifacts.ROOT_ENV, str(tmp_path))
    d = artifacts.run_dir("s3_retention", "manual__2026-01-01T00:00:00+00:00")
    assert d == tmp_path / "s3_retention" / "manual__2026-01-01T00:00:00+00:00"
    artifacts.write_json(d / "plan.json", {"count": 3})
    assert artifacts.read_json(d / "plan.json") == {"count": 3}
    assert artifacts.write_jsonl(d / "plan" / "00000.jsonl", [{"key": "a"}, {"key": "b"}]) == 2
    assert [r["key"] for r in artifacts.read_jsonl(d / "plan" / "00000.jsonl")] == ["a", "b"]
    # atomic writes leave no temporary files behind
    assert sorted(p.name for p in d.iterdir()) == ["plan", "plan.json"]


@pytest.mark.parametrize("bad", ["", "a/b", "..", "."])
def test_run_dir_rejects_ids_that_escape_the_folder(monkeypatch, tmp_path, bad):
    monkeypatch.setenv(artifacts.ROOT_ENV, str(tmp_path))
    with pytest.raises(ValueError, match="cannot name an artifact folder"):
        artifacts.run_dir("d", bad)


def test_a_local_artifact_is_not_indexed_under_a_remote_root_and_needs_no_airflow(monkeypatch, tmp_path):
    """The command lines write locally; a deployment's remote root must not make them build it (Airflow)."""
    import sys

    for name in ("airflow", "airflow.sdk"):  # any import of them raises, even where a test already loaded them
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setenv(artifacts.ROOT_ENV, "s3://artifacts-bucket/s3ops")
    plan = tmp_path / "s3_deploy_cleanup" / "manual__1" / "plan.json"
    assert artifacts.index_entry_for(plan, {"delete_count": 1}) is None
    with pytest.raises(ImportError):  # the remote root itself still needs Airflow: the check above is real
        artifacts.artifact_root()
    monkeypatch.setenv(artifacts.ROOT_ENV, str(tmp_path))  # the same artifact under a local root is indexed
    assert artifacts.index_entry_for(plan, {"delete_count": 1}) is not None
