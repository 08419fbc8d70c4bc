"""s3_retention: delete the files no job still needs (MySQL jobs × S3 listing → plan → gate → deletes)."""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import Param, dag, get_current_context, task

from include.dag_defaults import DEFAULT_ARGS, aws_conn_param, mysql_conn_param
from include.deletion.airflow import add_deletion_tasks

DOC_MD = """
### s3_retention

Joins the MySQL job table with the bucket listing and deletes the files no kept job refers to.
Object key = `key_prefix` + `sourceData`; objects outside `key_prefix` are never touched.

**Rule** (at the run's logical time): a file is **kept** if any job referring to it is OFFICIAL, a
TRIAL still running (`completedAt` NULL) or completed within `trial_retention`, or has any other type
(unknown data is kept and reported). Otherwise it goes: `trial_expired` (only expired TRIAL jobs refer
to it) or `orphan` (no job refers to it and it is older than `orphan_min_age_days`).

**Flow**: `plan` (one streaming pass: sorted listing × job rows sorted by `sourceData` in binary order;
the plan is written to the artifact store in chunks, with `plan.json`) → `guard` (refuses an empty job
query unless `allow_empty_jobs`, an incomplete listing, more than `max_delete_count` or
`max_delete_fraction`) → `approve` (Browse → Required Actions, unless `approval` is `auto`) → `delete`
(per chunk: re-checked in MySQL, then DeleteObjects) → `purge_job_rows` (optional: expired TRIAL rows,
written to `purged_rows.jsonl` first) → `audit` (`audit.json`; the run fails if keys could not be deleted).

Backfills and retries decide exactly as the original run: "now" is the logical time.
See `docs/retention.md`.
"""


@dag(
    dag_id="s3_retention",
    schedule="@daily",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["s3ops", "s3", "mysql", "retention", "deletes"],
    doc_md=DOC_MD,
    default_args=DEFAULT_ARGS,
    params={
        # Scheduled runs use the defaults: a deployment sets them with S3OPS_RETENTION_BUCKET / _KEY_PREFIX.
        "bucket": Param(
            os.environ.get("S3OPS_RETENTION_BUCKET", ""), type="string", title="Bucket",
            description="Bucket holding the job files (required; scheduled runs use the default, set by the "
                        "S3OPS_RETENTION_BUCKET environment variable).",
        ),
        "key_prefix": Param(
            os.environ.get("S3OPS_RETENTION_KEY_PREFIX", ""), type="string", title="Key prefix",
            description="Object key = key_prefix + sourceData. Objects outside this prefix are never touched.",
        ),
        "jobs_table": Param(
            "jobs", type="string", title="Jobs table", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63})?$",
            description="MySQL table with jobId, completedAt, type, sourceData (table or schema.table).",
        ),
        "trial_retention": Param(
            "P3M", type="string", title="TRIAL retention",
            pattern=r"^\s*[Pp](\d+[YyMmWwDd])*([Tt](\d+[HhMmSs])+)?\s*$",
            description="ISO 8601 duration after completedAt before a TRIAL job expires: P3M (calendar months), "
                        "P90D, P1Y2M…",
        ),
        "orphan_min_age_days": Param(
            7, type="number", minimum=0, title="Orphan minimum age (days)",
            description="A file no job refers to is an orphan only when older than this (its job row may "
                        "not be written yet).",
        ),
        "approval": Param(
            "required", type="string", enum=["required", "auto"], title="Approval",
            description="required: a human approves the plan (Browse → Required Actions); auto: delete "
                        "without a human when the guards pass.",
        ),
        "dry_run": Param(False, type="boolean", title="Dry run",
                         description="Plan, guard and audit only: nothing is deleted or purged."),
        "max_delete_count": Param(100000, type="integer", minimum=0, title="Max objects to delete",
                                  description="The guard refuses a plan deleting more objects than this."),
        "max_delete_fraction": Param(
            0.5, type="number", minimum=0, maximum=1, title="Max fraction to delete",
            description="The guard refuses a plan deleting more than this fraction of the objects under the prefix.",
        ),
        "allow_empty_jobs": Param(
            False, type="boolean", title="Allow an empty jobs table",
            description="Without it, a job query returning no rows is refused (it would make every file an orphan).",
        ),
        "purge_job_rows": Param(False, type="boolean", title="Purge expired TRIAL rows",
                                description="After deleting, delete the expired TRIAL job rows (recorded first)."),
        "aws_conn_id": aws_conn_param(),
        "mysql_conn_id": mysql_conn_param(),
    },
)
def s3_retention() -> None:
    @task
    def plan() -> dict:
        """Stream the listing against the job rows; write the plan; return its small summary."""
        from include.deletion.airflow import run_dir_of
        from include.retention.plan import run_plan
        from include.retention.policy import Policy

        context = get_current_context()
        p = context["params"]
        if not p["bucket"]:
            raise ValueError(
                "the bucket param is empty: trigger s3_retention with the bucket holding the job files, or set "
                "S3OPS_RETENTION_BUCKET for scheduled runs"
            )
        now = context.get("logical_date") or context["dag_run"].run_after
        return run_plan(
            aws_conn_id=p["aws_conn_id"], mysql_conn_id=p["mysql_conn_id"], bucket=p["bucket"],
            key_prefix=p["key_prefix"], jobs_table=p["jobs_table"], run_dir=run_dir_of(context),
            policy=Policy.at(now, p["trial_retention"], p["orphan_min_age_days"]),
            allow_empty_jobs=p["allow_empty_jobs"], purge_job_rows=p["purge_job_rows"],
            trial_retention=p["trial_retention"], orphan_min_age_days=p["orphan_min_age_days"],
        )

    @task(trigger_rule="none_failed")
    def purge_job_rows() -> dict:
        """Delete the expired TRIAL rows (when asked), after writing them to purged_rows.jsonl."""
        from airflow.sdk.exceptions import AirflowSkipException

        from include.deletion.airflow import require_authorized, run_dir_of
        from include.deletion.plan import read_plan
        from include.retention.plan import run_purge

        context = get_current_context()
        p = context["params"]
        if not p["purge_job_rows"] or p["dry_run"]:
            raise AirflowSkipException("purge_job_rows is off (or this is a dry run): job rows are kept")
        require_authorized(context)
        run_dir = run_dir_of(context)
        return run_purge(mysql_conn_id=p["mysql_conn_id"], plan=read_plan(run_dir), run_dir=run_dir)

    add_deletion_tasks(plan(), recheck="include.retention.plan:recheck_factory", before_audit=purge_job_rows)


s3_retention()
