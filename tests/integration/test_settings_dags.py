"""The settings model on real DAG runs (dag.test, local S3 server and MariaDB): scheduled runs configured
only by their Variable, the untouched trigger form, typed values, bad settings failing once, and the
scheduled deploy cleanup over its targets."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from include.core import artifacts
from include.core.times import format_time
from include.seed import reference_files, reference_job_rows, seed_jobs

NOW = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
LONG_AGO = (NOW - timedelta(days=400)).isoformat()


def untouched_form(dag_id: str) -> dict:
    """What Airflow's trigger form sends when nothing is typed: every param, at its default."""
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import ROOT

    dag = DagBag(dag_folder=str(ROOT / "dags" / f"{dag_id}.py")).dags[dag_id]
    return {name: dag.params[name] for name in dag.params}


def keys(s3, bucket, prefix=""):
    return sorted(o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                  for o in page.get("Contents", []))


@pytest.fixture
def jobs_world(s3, s3_server, mysql_conn):
    bucket, table = f"set-{uuid.uuid4().hex[:10]}", f"jobs_{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    objs = [{"key": f"in/{k}", "size": 100 + i, "last_modified": LONG_AGO} for i, k in enumerate(reference_files())]
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": objs})
    seed_jobs(mysql_conn, reference_job_rows(NOW), table=table)
    return bucket, table


def saved(result) -> dict:
    return json.loads((result.artifacts() / "settings.json").read_text())


def test_scheduled_retention_is_configured_by_its_variable_alone_and_the_untouched_form_matches(
    run_dag, s3, jobs_world, monkeypatch
):
    bucket, table = jobs_world
    variable = {"bucket": bucket, "key_prefix": "in/", "jobs_table": table, "trial_retention": "P80D",
                "orphan_min_age_days": 0, "approval": "auto", "max_delete_count": 1000, "max_delete_fraction": 0.9}
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_RETENTION", json.dumps(variable))

    dry = {**variable, "dry_run": True}  # both runs plan the same files; nothing is deleted yet
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_RETENTION", json.dumps(dry))
    scheduled = run_dag("s3_retention", {}, logical_date=NOW)
    form = untouched_form("s3_retention")
    assert set(form.values()) == {None} and "bucket" in form
    from_form = run_dag("s3_retention", form, logical_date=NOW + timedelta(seconds=1))
    assert scheduled.state == from_form.state == "success", (scheduled.task_states(), from_form.task_states())
    assert saved(scheduled)["values"] == saved(from_form)["values"]
    assert saved(from_form)["sources"]["bucket"] == "variable"
    plan_a, plan_b = scheduled.xcom("plan"), from_form.xcom("plan")
    assert plan_a["delete_count"] == plan_b["delete_count"] == 20
    assert plan_a["by_reason"] == plan_b["by_reason"]
    assert keys(s3, bucket) == sorted(f"in/{k}" for k in reference_files())

    # a run may not turn the deployment's dry run off (a safety setting: only tightened by a run) …
    refused = run_dag("s3_retention", {**form, "dry_run": False}, logical_date=NOW + timedelta(seconds=2))
    assert refused.state == "failed" and refused.task_states()[("plan", -1)] == "failed"
    assert len(keys(s3, bucket)) == len(reference_files())
    # … any other value typed in the form wins over the Variable: the deployment without its dry run
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_RETENTION", json.dumps({**variable, "trial_retention": "P1D"}))
    typed = run_dag("s3_retention", {**form, "trial_retention": "P80D"}, logical_date=NOW + timedelta(seconds=3))
    assert typed.state == "success", typed.task_states()
    assert saved(typed)["sources"]["trial_retention"] == "param"
    assert len(keys(s3, bucket)) == len(reference_files()) - 20
    assert json.loads((typed.artifacts() / "audit.json").read_text())["deleted_count"] == 20


@pytest.mark.parametrize(("variable", "conf", "needle"), [
    ({"trial_retention": "P1D1D"}, {}, "key 'trial_retention' of the Airflow Variable 's3ops_retention'"),
    ({"trial_retention": "p"}, {}, "trial_retention"),
    ({"orphan_min_age_days": 1e6}, {}, "orphan_min_age_days"),
    ({"orphan_min_age_days": 7, "jobs_tabel": "x"}, {}, "unknown keys ['jobs_tabel']"),
    ({"orphan_min_age_days": math.nan}, {}, "orphan_min_age_days = nan"),
    ({"bucket": None}, {}, "bucket is not set"),
    # the REST API's conf: a misspelled key, and a run loosening the gate the deployment set
    ({}, {"dryRun": True}, "not settings of this DAG: 'dryRun'"),
    ({"approval": "required"}, {"approval": "auto"}, "a run may only make it 'required'"),
    ({"approval": "required", "approvers": ["alice"]}, {"approvers": ["mallory"]}, "name some of the deployment's"),
    ({"approval": "required"}, {"separate_approver": False}, "separate_approver = false"),
    ({}, {"max_delete_count": 10**9}, "would loosen the deployment's 100000"),
])
def test_a_bad_setting_fails_the_plan_once_before_any_listing(run_dag, s3, jobs_world, monkeypatch, capfd,
                                                              variable, conf, needle):
    bucket, table = jobs_world
    base = {"jobs_table": table, "approval": "auto", "bucket": bucket}
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_RETENTION", json.dumps({**base, **variable}))
    result = run_dag("s3_retention", conf, logical_date=NOW - timedelta(minutes=len(needle)))  # a run folder of its own
    assert not (result.artifacts() / "settings.json").exists()
    assert result.state == "failed"
    states = result.task_states()
    assert states[("plan", -1)] == "failed"  # failed, not up_for_retry: no retry fixes a setting
    assert not (result.artifacts() / "plan.json").exists()  # nothing was listed or planned
    out = capfd.readouterr().out
    assert needle in out
    assert len(keys(s3, bucket)) == len(reference_files())


def test_form_refuses_out_of_range_values(run_dag):
    from airflow.sdk.exceptions import ParamValidationError

    for conf in ({"orphan_min_age_days": 1e6}, {"trial_retention": "P999999999D"}, {"trial_retention": "P1M1Y"},
                 {"bucket": ""}, {"bucket": "Bad_Bucket"}):
        with pytest.raises(ParamValidationError, match=next(iter(conf))):
            run_dag("s3_retention", conf)
    for conf in ({"older_than_days": 1e12}, {"keep": -1}, {"bucket": "x"}):
        with pytest.raises(ParamValidationError, match=next(iter(conf))):
            run_dag("s3_deploy_cleanup", conf)


# ------------------------------------------------------------------------------ deploy cleanup targets


def _seed(s3, s3_server, ages: dict[str, float], prefix: str) -> str:
    bucket = f"deploys-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    objs = [{"key": f"{prefix}{name}/index.html", "size": 10, "last_modified": (NOW - timedelta(days=age)).isoformat()}
            for name, age in ages.items()]
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": objs})
    return bucket


def _triggered_runs(dag_id: str, parent_run_id: str) -> dict[str, dict]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        runs = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id,
                                                    DagRun.run_id.startswith(f"{parent_run_id}__target"))).all()
        return {r.run_id: dict(r.conf or {}) for r in runs}


def test_scheduled_deploy_cleanup_cleans_every_target_of_its_variable(run_dag, s3, s3_server, monkeypatch):
    ages = {f"r{i}": 10 * (5 - i) for i in range(1, 5)}  # r4 newest
    web = _seed(s3, s3_server, ages, "web/")
    api = _seed(s3, s3_server, ages, "api/")
    targets = [{"bucket": web, "prefix": "web/", "keep": 1}, {"bucket": api, "prefix": "api/", "keep": 2}]
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_DEPLOY_CLEANUP", json.dumps({"targets": targets, "approval": "auto"}))

    scheduled = run_dag("s3_deploy_cleanup", {}, logical_date=NOW)
    assert scheduled.state == "success", scheduled.task_states()
    states = scheduled.task_states()
    assert states[("dispatch", 0)] == states[("dispatch", 1)] == "success"
    assert all(states[(t, -1)] == "skipped" for t in ("plan", "guard", "approve", "audit"))
    assert scheduled.xcom("targets") == [{**t, "now": format_time(NOW)} for t in targets]  # and the run's time
    runs = _triggered_runs("s3_deploy_cleanup", scheduled.run_id)
    assert sorted(runs.values(), key=lambda c: c["bucket"]) == sorted(scheduled.xcom("targets"), key=lambda c: c["bucket"])
    assert keys(s3, web) and len(keys(s3, web)) == 4  # the dispatching run itself deletes nothing

    # each dispatched run is one target's full pipeline (plan, guard, approval, audit)
    for conf in runs.values():
        result = run_dag("s3_deploy_cleanup", conf)
        assert result.state == "success", result.task_states()
        assert result.task_states()[("dispatch", -1)] == "skipped"  # no targets mapped: it is one of them
    assert keys(s3, web) == ["web/r4/index.html"]
    assert keys(s3, api) == ["api/r3/index.html", "api/r4/index.html"]


def test_a_backfills_targets_judge_older_than_days_as_of_its_date(run_dag, s3, s3_server, monkeypatch):
    """A target's run has no logical date of its own and starts when the dispatching run reaches it: it judged
    the age of each deployment on that day, so a backfill of 20 days ago deleted a deployment of 30 days
    that the original run would have kept (it was 10 days old then)."""
    web = _seed(s3, s3_server, {"r1": 40, "r2": 30, "r3": 10, "r4": 1}, "web/")
    targets = [{"bucket": web, "prefix": "web/", "older_than_days": 15}]
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_DEPLOY_CLEANUP", json.dumps({"targets": targets, "approval": "auto"}))
    backfill = run_dag("s3_deploy_cleanup", {}, logical_date=NOW - timedelta(days=20))
    assert backfill.state == "success", backfill.task_states()
    [conf] = _triggered_runs("s3_deploy_cleanup", backfill.run_id).values()
    assert conf["now"] == format_time(NOW - timedelta(days=20))

    target = run_dag("s3_deploy_cleanup", conf)  # started today, as the scheduler starts it
    assert target.state == "success", target.task_states()
    assert keys(s3, web) == [f"web/r{i}/index.html" for i in (2, 3, 4)]  # r1 was 20 days old then; r2 10
    plan = json.loads((artifacts.run_dir("s3_deploy_cleanup", target.run_id) / "plan.json").read_text())
    assert plan["now"] == (NOW - timedelta(days=20)).isoformat()

    # a time after the run's own is refused before anything is listed: it would make more old enough
    later = run_dag("s3_deploy_cleanup", {**conf, "now": "2999-01-01T00:00:00Z"})
    assert later.state == "failed" and later.task_states()[("targets", -1)] == "failed"
    assert keys(s3, web) == [f"web/r{i}/index.html" for i in (2, 3, 4)]


def test_manual_deploy_cleanup_with_a_bucket_cleans_only_that_target(run_dag, s3, s3_server, monkeypatch):
    ages = {f"r{i}": 10 * (5 - i) for i in range(1, 5)}
    web = _seed(s3, s3_server, ages, "web/")
    other = _seed(s3, s3_server, ages, "web/")
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_DEPLOY_CLEANUP", json.dumps(
        {"targets": [{"bucket": other, "prefix": "web/", "keep": 1}], "approval": "auto", "keep": 3}))
    form = untouched_form("s3_deploy_cleanup")
    result = run_dag("s3_deploy_cleanup", {**form, "bucket": web, "prefix": "web/"})
    assert result.state == "success", result.task_states()
    assert result.xcom("targets") == []
    assert keys(s3, web) == [f"web/r{i}/index.html" for i in (2, 3, 4)]  # keep 3 from the Variable
    assert len(keys(s3, other)) == 4
    assert _triggered_runs("s3_deploy_cleanup", result.run_id) == {}


@pytest.mark.parametrize(("variable", "needle"), [
    ({}, "nothing to clean"),
    ({"targets": [{"bucket": "deploys-a", "older_than_days": 1e12}]}, "older_than_days"),
    ({"targets": [{"bucket": "deploys-a"}]}, "targets[0] (bucket 'deploys-a')"),  # neither keep nor age
    ({"bucket": "deploys-a", "keep": 1, "targets": [{"bucket": "deploys-b", "keep": 1}]}, "both bucket and targets"),
])
def test_bad_deploy_cleanup_settings_fail_once_naming_them(run_dag, monkeypatch, capfd, variable, needle):
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_DEPLOY_CLEANUP", json.dumps(variable))
    result = run_dag("s3_deploy_cleanup", {})
    assert result.state == "failed"
    assert result.task_states()[("targets", -1)] == "failed"
    assert needle in capfd.readouterr().out
