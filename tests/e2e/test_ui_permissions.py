"""The "S3 Ops" pages show a user only the DAGs the auth manager lets them read (issue 12 item 7).

The simple auth manager gives every role read access to every DAG, except in multi-team mode, where a
user reads only the DAGs of their teams' bundles. So this module runs its own ``airflow standalone``
in multi-team mode: the storage-report DAG in a bundle of team ``storage``, the other three in a bundle
of team ``ops``; ``admin`` (admin, all), ``sam`` (viewer, team storage). Airflow's own REST API is asked
first (``sam`` may read s3_storage_report and not s3_retention), then the plugin must agree on every
page, the JSON and the run tab. The artifacts are written here (nothing needs to run).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scripts.stack import free_port
from tests.e2e.airflow_api import ADMIN, ROOT, VENV_BIN, AirflowClient, AirflowStandalone
from tests.e2e.conftest import E2E_DIR

pytestmark = pytest.mark.slow

SECRET_KEY = "jobs/secret-customer-export.csv"  # a key only the ops team may see
SAM = "sam"
BUNDLES = {"storage": ["s3_storage_report"], "ops": ["s3_retention", "s3_deploy_cleanup", "s3_upload"]}


class TeamsStandalone(AirflowStandalone):
    """A standalone in multi-team mode with two users and two DAG bundles owned by two teams."""

    def __init__(self, home: Path, port: int, env: dict[str, str]) -> None:
        super().__init__(home, port, env)
        self.sam_password = uuid.uuid4().hex

    def environment(self) -> dict[str, str]:
        env = super().environment()
        passwords = self.home / "passwords.json"
        passwords.write_text(json.dumps({ADMIN: self.password, SAM: self.sam_password}))
        bundles = []
        for team, dag_ids in BUNDLES.items():
            folder = self.home / "bundles" / team
            folder.mkdir(parents=True, exist_ok=True)
            for dag_id in dag_ids:
                shutil.copy(ROOT / "dags" / f"{dag_id}.py", folder / f"{dag_id}.py")
            bundles.append({"name": team, "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                            "kwargs": {"path": str(folder), "refresh_interval": 0}, "team_name": team})
        env.update({
            "AIRFLOW__CORE__MULTI_TEAM": "True",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin,{SAM}:viewer:storage",
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
        })
        return env

    def start(self, timeout: float = 180) -> TeamsStandalone:
        # the bundles name teams, which must exist before the dag-processor syncs the bundles
        self.home.mkdir(parents=True, exist_ok=True)
        env = self.environment()
        for cmd in (["db", "migrate"], ["teams", "sync"]):
            done = subprocess.run([str(VENV_BIN / "airflow"), *cmd], env=env, cwd=ROOT,
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"airflow {' '.join(cmd)}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        super().start(timeout)
        return self


def _artifacts(root: Path) -> dict[str, str]:
    """One run of each kind, as the DAGs write them."""
    def write(path: Path, obj: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj))

    runs = {"report": "manual__report", "plan": "manual__plan", "upload": "manual__upload"}
    write(root / "s3_storage_report" / runs["report"] / "report.json", {
        "generated_at": "2026-11-30T00:00:00+00:00", "source": "listing",
        "buckets": [{"name": "team-logs", "object_count": 3, "total_bytes": 300,
                     "storage_classes": {"STANDARD": {"object_count": 3, "bytes": 300}}}],
        "totals": {"bucket_count": 1, "object_count": 3, "total_bytes": 300}})
    write(root / "s3_retention" / runs["plan"] / "plan.json", {
        "plan_id": "p1", "bucket": "ops-jobs", "delete_count": 1, "delete_bytes": 10, "samples": [SECRET_KEY],
        "by_reason": {"orphan": {"count": 1, "bytes": 10}}, "chunks": ["00000.jsonl"], "listing_complete": True,
        "headline": "Delete 1 orphan"})
    write(root / "s3_upload" / runs["upload"] / "summary.json", {
        "uploaded": 2, "bytes": 20, "bucket": "ops-uploads", "failed_paths": [], "malformed": 0, "conflicts": 0,
        "failed": 0})
    return runs


@pytest.fixture(scope="module")
def teams() -> Iterator[tuple[TeamsStandalone, dict[str, str]]]:
    home = E2E_DIR / "airflow-teams"
    artifacts = home / "artifacts"
    runs = _artifacts(artifacts)
    server = TeamsStandalone(home, free_port(), {"S3OPS_ARTIFACT_ROOT": str(artifacts)})
    try:
        server.start()
        AirflowClient(server.base_url, ADMIN, server.password, server=server).wait_for_dags(
            [d for ids in BUNDLES.values() for d in ids], timeout=240)
        yield server, runs
    finally:
        server.stop()


@pytest.fixture(scope="module")
def admin(teams: Any) -> AirflowClient:
    server, _ = teams
    return AirflowClient(server.base_url, ADMIN, server.password, server=server)


@pytest.fixture(scope="module")
def sam(teams: Any) -> AirflowClient:
    server, _ = teams
    return AirflowClient(server.base_url, SAM, server.sam_password, server=server)


def test_airflow_itself_restricts_sam_to_the_storage_team(admin, sam):
    assert sam.http.get("/api/v2/dags/s3_storage_report").status_code == 200
    for dag_id in BUNDLES["ops"]:
        assert sam.http.get(f"/api/v2/dags/{dag_id}").status_code == 403, dag_id
        assert admin.http.get(f"/api/v2/dags/{dag_id}").status_code == 200, dag_id


def test_admin_sees_every_dag_in_the_plugin(admin, teams):
    _, runs = teams
    assert admin.get("/s3ops/api/storage")["latest"]["run_id"] == runs["report"]
    plans = admin.get("/s3ops/api/plans")
    assert [p["run_id"] for p in plans["recent"]] == [runs["plan"]] and plans["hidden_dags"] == []
    assert SECRET_KEY in admin.http.get("/s3ops/plans").text
    assert admin.get("/s3ops/api/uploads")["run_count"] == 1
    run = admin.get(f"/s3ops/api/run/s3_retention/{runs['plan']}")
    assert run["plan"]["samples"] == [SECRET_KEY]


def test_a_restricted_user_sees_only_the_dags_airflow_lets_them_read(sam, teams):
    _, runs = teams
    storage = sam.get("/s3ops/api/storage")
    assert storage["latest"]["run_id"] == runs["report"]  # their team's DAG: shown
    plans = sam.get("/s3ops/api/plans")
    assert plans["recent"] == [] and plans["pending"] == [] and plans["plan_count"] == 0
    assert sorted(plans["hidden_dags"]) == ["s3_deploy_cleanup", "s3_retention"]
    uploads = sam.get("/s3ops/api/uploads")
    assert uploads["runs"] == [] and uploads["totals"]["uploaded"] == 0 and uploads["allowed"] is False
    for page in ("plans", "uploads", "storage"):
        html = sam.http.get(f"/s3ops/{page}")
        assert html.status_code == 200
        assert SECRET_KEY not in html.text and "ops-jobs" not in html.text and "ops-uploads" not in html.text
    assert 'id="not-allowed"' in sam.http.get("/s3ops/plans").text


def test_a_restricted_user_cannot_open_another_teams_run_tab(sam, teams):
    server, runs = teams
    for path in (f"/s3ops/run/s3_retention/{runs['plan']}", f"/s3ops/api/run/s3_retention/{runs['plan']}",
                 f"/s3ops/run/s3_upload/{runs['upload']}"):
        resp = sam.http.get(path)
        assert resp.status_code == 403, path
        assert SECRET_KEY not in resp.text and "ops-uploads" not in resp.text
    own = sam.http.get(f"/s3ops/run/s3_storage_report/{runs['report']}")
    assert own.status_code == 200 and "team-logs" in own.text
    # and without a token at all: nothing
    anonymous = httpx.get(f"{server.base_url}/s3ops/api/run/s3_retention/{runs['plan']}", timeout=30)
    assert anonymous.status_code == 401 and SECRET_KEY not in anonymous.text
