"""The Airflow side of ``s3_retention``: what its own tasks do (the deletion gate is shared:
:mod:`include.deletion.airflow`). The DAG file only wires these.

``plan`` resolves the run's settings first (params > Variable ``s3ops_retention`` > defaults, recorded in
``settings.json``) and checks them before anything is listed: a bad duration, a cutoff outside the
calendar or a bad table name fails the run once, without retries, naming the setting.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import closing
from typing import Any

from include.core.times import logical_now
from include.retention.settings import SETTINGS

# The policy (and the S3 listing it needs) is imported inside the functions: the DAG file imports this
# module at parse time, which must stay fast.


def plan(context: Any) -> dict[str, Any]:
    """Stream the listing against the job rows; write the plan; return its small summary."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.dag_defaults import resolve_run_settings
    from include.deletion.airflow import plan_run_dir
    from include.inventory.manifest import InventoryError
    from include.retention import jobs as jobs_db
    from include.retention.policy import OrderError, Policy

    run_dir = plan_run_dir(context)  # first: settings.json is rewritten next
    s = resolve_run_settings(SETTINGS, context)
    now = logical_now(context)
    try:
        policy = Policy.at(now, s["trial_retention"], s["orphan_min_age_days"])
        jobs_db.quote_table(s["jobs_table"])
    except (ValueError, OverflowError) as exc:  # checked before any listing; no retry fixes it
        raise AirflowFailException(f"{SETTINGS.dag_id}: {exc}") from None
    try:
        return run_plan(
            aws_conn_id=s["aws_conn_id"], mysql_conn_id=s["mysql_conn_id"], bucket=s["bucket"],
            key_prefix=s["key_prefix"], jobs_table=s["jobs_table"], run_dir=run_dir, policy=policy,
            allow_empty_jobs=s["allow_empty_jobs"], purge_job_rows=s["purge_job_rows"],
            trial_retention=s["trial_retention"], orphan_min_age_days=s["orphan_min_age_days"],
            include_versions=s["include_versions"], source=s["source"], run_settings=s,
        )
    except InventoryError as exc:  # no usable inventory, or a damaged one: a retry reads the same files
        raise AirflowFailException(f"{SETTINGS.dag_id}: source inventory: {exc}") from None
    except (jobs_db.TableUnreadable, OrderError) as exc:  # a misspelt table or a missing grant, a server that
        raise AirflowFailException(f"{SETTINGS.dag_id}: {exc}") from None  # lists out of order: a retry reads the same


def purge_job_rows(context: Any) -> dict[str, Any]:
    """Delete the expired TRIAL rows the approved plan recorded (when asked), if they still are."""
    from airflow.sdk.exceptions import AirflowSkipException

    from include.dag_defaults import saved_run_settings
    from include.deletion.airflow import authorized, record_task_result, recorded_task_result, run_dir_of

    s = saved_run_settings(context)
    if not s["purge_job_rows"] or s["dry_run"]:
        raise AirflowSkipException("purge_job_rows is off (or this is a dry run): job rows are kept")
    # plan.json as authorised (its digest checked; the settings those the plan was made with), not read again
    plan = authorized(context).plan
    run_dir = run_dir_of(context)
    plan_id = plan["plan_id"]
    earlier = recorded_task_result(context, plan_id)  # an earlier attempt's progress: its committed batches are done

    def record(progress: dict[str, Any], complete: bool = False) -> dict[str, Any]:  # after every transaction
        return record_task_result(context, {"started": True, "complete": complete, **progress}, plan_id)

    if earlier is None:  # before the first DELETE: a purge that fails part way has begun (housekeeping keeps it)
        record({})
    return record(run_purge(mysql_conn_id=plan["settings"]["mysql_conn_id"], plan=plan, run_dir=run_dir,
                            earlier=earlier, save=record), complete=True)


def recheck(ctx: Any) -> Callable[[list[Any]], dict[str, str]]:
    """The delete step's re-check in MySQL, under the plan's policy, for the shared deletion tasks."""
    from include.retention import jobs as jobs_db
    from include.retention.policy import make_recheck, policy_of

    table = ctx.plan["jobs_table"]
    conn = jobs_db.connect(ctx.params["mysql_conn_id"])  # autocommit: every chunk sees the latest rows
    return make_recheck(lambda names: jobs_db.rows_for_names(conn, table, names),
                        ctx.plan["policy"]["key_prefix"], policy_of(ctx.plan), bucket=ctx.bucket)


def run_plan(
    *, aws_conn_id: str, mysql_conn_id: str, bucket: str, key_prefix: str, jobs_table: str, policy: Any,
    run_dir: Any, allow_empty_jobs: bool, purge_job_rows: bool, trial_retention: str, orphan_min_age_days: float,
    include_versions: bool = False, source: str = "listing", run_settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``plan`` task: stream the listing (or, with ``include_versions``, every version), or the
    bucket's newest inventory with ``source="inventory"``, against the job rows into the run's plan
    artifacts (:func:`include.retention.plan.plan_bucket`, which ``s3ops retention plan`` runs too)."""
    from include.aws.client import client_from_connection
    from include.retention import jobs as jobs_db
    from include.retention.plan import plan_bucket

    jobs_db.quote_table(jobs_table)  # a bad name fails before anything is listed
    client = client_from_connection(aws_conn_id, mode="adaptive")
    with closing(jobs_db.connect(mysql_conn_id)) as conn:  # a wrong connection or table fails before an
        jobs_db.check_readable(conn, jobs_table)  # inventory's download, not after
    return plan_bucket(
        client, lambda: jobs_db.connect(mysql_conn_id), run_dir, bucket=bucket, key_prefix=key_prefix,
        jobs_table=jobs_table, policy=policy, source=source, include_versions=include_versions,
        allow_empty_jobs=allow_empty_jobs, trial_retention=trial_retention, orphan_min_age_days=orphan_min_age_days,
        purge_job_rows=purge_job_rows, run_settings=run_settings,
    )


def run_purge(*, mysql_conn_id: str, plan: dict[str, Any], run_dir: Any, earlier: Mapping[str, Any] | None = None,
              save: Callable[[dict[str, Any]], Any] | None = None) -> dict[str, Any]:
    """The ``purge_job_rows`` task: delete the expired TRIAL rows the plan recorded, if they still are
    (``earlier``, ``save``: an earlier attempt's record, and where each batch's progress goes:
    :func:`include.retention.jobs.purge_planned_rows`)."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.core import artifacts
    from include.retention import jobs as jobs_db
    from include.retention.expired_rows import EXPIRED_ROWS_DIR, RowsChanged, planned_rows
    from include.retention.policy import policy_of

    try:
        row_lists = planned_rows(run_dir, plan.get("expired_trial_rows_files"))
        conn = jobs_db.connect(mysql_conn_id)
        try:
            counts = jobs_db.purge_planned_rows(conn, plan["jobs_table"], row_lists, policy_of(plan), earlier, save)
        finally:
            conn.close()
    except (RowsChanged, jobs_db.PurgeMismatch) as exc:  # a retry reads the same files and table
        raise AirflowFailException(f"purge_job_rows: {exc}") from None
    return {**counts, "expired_trial_rows_uri": artifacts.uri(run_dir / EXPIRED_ROWS_DIR)}
