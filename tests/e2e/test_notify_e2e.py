"""Notifications on a running Airflow: a scheduled s3_retention run, configured only through its
deployment setting (Variable ``s3ops_retention``), mails its approval request to the local SMTP sink; the
next scheduled run supersedes it (and mails its own request).

Needs the settings model (h3: scheduled runs read ``s3ops_retention``) and the approval lifecycle (h1:
``max_active_runs=2``, supersession recorded in the audit): on a branch without them the scheduled run
has no bucket and fails instead.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

pytestmark = pytest.mark.slow

RETENTION = "s3_retention"

# "A day passes": the scheduler creates the next scheduled run once DagModel.next_dagrun_create_after is
# due. Moving that instant to now (in the standalone's own metadata DB, with Airflow's own models) makes
# the scheduler create the next scheduled run now instead of tomorrow; everything else is the real thing.
_NEXT_DAY_NOW = """
import sys
from datetime import datetime, timezone
from airflow.models.dag import DagModel
from airflow.utils.session import create_session
with create_session() as session:
    dm = session.get(DagModel, sys.argv[1])
    # the next run is due now, with a logical date of now: the scheduler starts no run dated in the future
    now = datetime.now(timezone.utc)
    dm.next_dagrun = dm.next_dagrun_data_interval_start = dm.next_dagrun_data_interval_end = now
    dm.next_dagrun_create_after = now
    print(dm.next_dagrun)
"""


def _scheduled_runs(airflow: Any) -> list[dict[str, Any]]:
    return sorted(airflow.runs(RETENTION, run_type=["scheduled"]), key=lambda r: r["logical_date"])


def _next_scheduled(airflow: Any, standalone: Any, seen: set[str]) -> str:
    """The id of the next scheduled run: the one unpausing creates, else the one a "day passing" creates
    (another test may have taken today's scheduled run already)."""
    def new() -> list[str]:
        return [r["dag_run_id"] for r in _scheduled_runs(airflow) if r["dag_run_id"] not in seen]

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not new():
        time.sleep(2)
    if not new():
        done = subprocess.run([sys.executable, "-c", _NEXT_DAY_NOW, RETENTION], env=standalone.environment(),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
    run_id = _wait(new, "the next scheduled run", 180)[0]
    seen.add(run_id)
    return run_id


def _wait(predicate: Any, what: str, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}")


def test_scheduled_retention_mails_its_approval_and_the_next_run_supersedes_it(
        airflow, approver, standalone, s3, s3_server, mysql_server, e2e_artifacts, smtp_sink, unique):
    from tests.e2e.test_deletion_e2e import _keys, _retention_world, _wait_awaiting_approval

    bucket, table = unique("sched"), unique("sched").replace("-", "_")
    old = datetime.now(UTC) - timedelta(days=400)
    rows = [(f"job-{i}".ljust(64, "0"), old, "TRIAL", f"trial/{i}.dat") for i in range(5)]
    files = [f"trial/{i}.dat" for i in range(5)] + ["keep/official.dat"]
    rows.append(("job-official".ljust(64, "0"), old, "OFFICIAL", "keep/official.dat"))
    _retention_world(s3, s3_server, mysql_server, bucket, table, rows, files)
    airflow.set_variable("s3ops_retention", json.dumps({
        "bucket": bucket, "jobs_table": table, "trial_retention": "P3M", "orphan_min_age_days": 0,
        "approval": "required", "max_delete_fraction": 1.0,
        "notifications": [{"type": "email", "to": ["approvers@example.com"]}],
    }))
    smtp_sink.clear()

    airflow.wait_for_dags([RETENTION])
    seen = {r["dag_run_id"] for r in _scheduled_runs(airflow)}
    airflow.set_paused(RETENTION, False)
    try:
        first = _next_scheduled(airflow, standalone, seen)
        _wait_awaiting_approval(airflow, RETENTION, first)
        mails = [m for m in smtp_sink.wait_for(1, timeout=120) if first in m["body"]]
        assert len(mails) == 1, [m["subject"] for m in smtp_sink.messages]
        mail = mails[0]
        assert mail["to"] == ["approvers@example.com"]
        assert mail["subject"].startswith(f"[s3ops] approval needed: {RETENTION}: ")
        plan = json.loads((e2e_artifacts / RETENTION / first / "plan.json").read_text())
        assert plan["delete_count"] == 5
        if plan.get("headline"):
            assert plan["headline"][:40] in mail["subject"] + mail["body"]
        assert "5 objects" in mail["body"] and "max_delete_fraction=1.0" in mail["body"]
        from urllib.parse import quote

        link = (f"{standalone.base_url}/dags/{RETENTION}/runs/{quote(first, safe='')}/tasks/approve/"
                f"required_actions?map_index=-1")
        assert link in mail["body"]
        page = airflow.http.get(link.removeprefix(standalone.base_url))
        assert page.status_code == 200  # the link opens the Airflow UI (its single-page app serves the route)

        # the next day's scheduled run: plans the same target, supersedes the waiting request
        second = _next_scheduled(airflow, standalone, seen)
        _wait_awaiting_approval(airflow, RETENTION, second)
        marker = json.loads((e2e_artifacts / RETENTION / first / "superseded.json").read_text())
        assert marker["superseded_by"] == second
        assert any(second in m["body"] for m in smtp_sink.wait_for(2, timeout=120))
        # nobody answers the old request: its trigger closes it as superseded (Reject, no responder) and the run
        # ends, deleting nothing
        assert airflow.wait_run(RETENTION, first, timeout=120) == "success", airflow.task_states(RETENTION, first)
        assert airflow.pending_approvals(RETENTION, first) == []
        audit = json.loads((e2e_artifacts / RETENTION / first / "audit.json").read_text())
        assert (audit["outcome"], audit["superseded_by"], audit["deleted_count"]) == ("superseded", second, 0), audit
        assert audit["approval_record"]["responded_by"] is None
        assert _keys(s3, bucket) == set(files), "a superseded plan deleted something"
        assert approver.answer(RETENTION, second, "Reject") == "success"
        assert _keys(s3, bucket) == set(files)
    finally:
        airflow.set_paused(RETENTION, True)
        airflow.stop_scheduled_runs(RETENTION)
        airflow.http.delete("/api/v2/variables/s3ops_retention")


DEPLOY = "s3_deploy_cleanup"


def test_manual_deploy_cleanup_mails_approval_and_a_failed_run_mails_its_error(
        airflow, standalone, s3, s3_server, e2e_artifacts, smtp_sink, unique):
    """The HITL notifier and the failure callback inside real task processes of a running Airflow."""
    from tests.e2e.test_deletion_e2e import _deploy_bucket, _keys, _wait_awaiting_approval

    bucket = unique("mail")
    keys, _ = _deploy_bucket(s3, s3_server, bucket)
    airflow.set_variable("s3ops_deploy_cleanup", json.dumps({"notifications": [
        {"type": "email", "to": ["deployers@example.com"]}]}))
    smtp_sink.clear()
    try:
        run_id = airflow.trigger(DEPLOY, {"bucket": bucket, "prefix": "deploys/", "keep": 5, "approval": "required"})
        _wait_awaiting_approval(airflow, DEPLOY, run_id)
        mails = [m for m in smtp_sink.wait_for(1, timeout=120) if run_id in m["body"]]
        assert len(mails) == 1, [m["subject"] for m in smtp_sink.messages]
        body = mails[0]["body"]
        assert mails[0]["to"] == ["deployers@example.com"]
        assert "21 objects" in body and "max_delete_count=" in body
        from urllib.parse import quote

        assert (f"{standalone.base_url}/dags/{DEPLOY}/runs/{quote(run_id, safe='')}/tasks/approve/"
                f"required_actions?map_index=-1") in body
        assert airflow.answer(DEPLOY, run_id, "Reject") == "success"
        assert _keys(s3, bucket) == keys

        # a bad deployment setting fails the run's first task at once (no retries): that failure is mailed
        smtp_sink.clear()
        airflow.set_variable("s3ops_deploy_cleanup", json.dumps({"min_keep": 0, "notifications": [
            {"type": "email", "to": ["deployers@example.com"]}]}))
        failed = airflow.trigger(DEPLOY, {"bucket": bucket, "prefix": "deploys/", "keep": 5, "approval": "auto"})
        assert airflow.wait_run(DEPLOY, failed, timeout=420) == "failed", airflow.task_states(DEPLOY, failed)
        mails = [m for m in smtp_sink.wait_for(1, timeout=120) if failed in m["body"]]
        assert len(mails) == 1, [m["subject"] for m in smtp_sink.messages]
        assert mails[0]["subject"].startswith(f"[s3ops] failed: {DEPLOY}.")
        assert "min_keep" in mails[0]["subject"] and "s3ops_deploy_cleanup" in mails[0]["body"]
        assert "Traceback" not in mails[0]["body"]
        assert _keys(s3, bucket) == keys
    finally:
        airflow.http.delete("/api/v2/variables/s3ops_deploy_cleanup")
