"""``make demo``, the README's first command, run as a user runs it on a machine that has bootstrapped:
its own local stack (S3 server, MariaDB, an isolated AIRFLOW_HOME), the seeded demo world, and the four
pipelines as real DAG runs. Nothing else in the suite runs the demo's script, so without this a change
could break the first thing a new user types while every other test stays green.

What each pipeline left is checked against the seeded world (``include.seed``), not against the demo's
own printout."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from include.seed import DemoWorld

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]


def _only_run(artifacts: Path, dag_id: str) -> Path:
    runs = [p for p in (artifacts / dag_id).iterdir() if p.is_dir()]
    assert len(runs) == 1, (dag_id, runs)
    return runs[0]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_make_demo_runs_the_four_pipelines_on_a_fresh_stack(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    # a user's shell, not this session's: none of the fixtures' AIRFLOW_* or S3OPS_* settings leak in
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "S3OPS", "AWS_", "PYTEST"))}
    env["S3OPS_ARTIFACT_ROOT"] = str(artifacts)
    done = subprocess.run(["make", "demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=840)
    tail = (done.stdout + done.stderr)[-4000:]
    assert done.returncode == 0, tail
    assert "demo: all pipelines succeeded" in done.stdout, tail

    world = DemoWorld()
    report = json.loads((_only_run(artifacts, "s3_storage_report") / "report.json").read_text())
    assert {b["name"]: b["region"] for b in report["buckets"]} == world.regions  # every bucket, in its region
    assert not [b["name"] for b in report["buckets"] if b["error"]]
    logs = next(b for b in report["buckets"] if b["name"] == world.logs_bucket)
    assert logs["object_count"] > 1000 and logs["incomplete_multipart_uploads"]["count"] == 1

    upload = _only_run(artifacts, "s3_upload")
    summary = json.loads((upload / "summary.json").read_text())
    rows = _jsonl(upload / "manifest.jsonl")
    assert summary["uploaded"] == len(rows) > 0 and summary["failed"] == summary["conflicts"] == 0
    assert {r["status"] for r in rows} == {"uploaded"}
    assert summary["malformed"] == 2  # the seed's two: a month 13 and a file outside the layout

    audit = json.loads((_only_run(artifacts, "s3_retention") / "audit.json").read_text())
    assert audit["outcome"] == "deleted" and audit["error_count"] == 0
    assert audit["deleted_count"] == audit["planned_count"] > 0
    assert set(audit["deleted_by_reason"]) <= {"orphan", "trial_expired"}  # never an OFFICIAL file

    cleanup = _only_run(artifacts, "s3_deploy_cleanup")
    audit = json.loads((cleanup / "audit.json").read_text())
    assert audit["outcome"] == "deleted" and audit["error_count"] == 0 and audit["deleted_count"] > 0
    ranked = sorted((r for r in _jsonl(cleanup / "deployments.jsonl") if r["rank"] >= 0), key=lambda r: r["rank"])
    assert [r["delete"] for r in ranked[:5]] == [False] * 5  # keep: 5, the newest
    assert all(r["delete"] for r in ranked[5:]) and len(ranked) > 5
