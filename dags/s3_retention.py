"""s3_retention: delete the files no job still needs (MySQL jobs × S3 listing → plan → gate → deletes)."""

from __future__ import annotations

from airflow.sdk import dag, get_current_context, task

from include.dag_defaults import dag_args, params_of
from include.deletion.airflow import add_deletion_tasks
from include.retention import tasks as retention_tasks

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
(per chunk: re-checked in MySQL, then DeleteObjects) → `purge_job_rows` (optional: the expired TRIAL rows the
plan recorded in `expired_trial_rows/`, if they still are) → `audit` (`audit.json`, also after a failed task: what was deleted; the run fails if keys could not be deleted or a task failed).

Backfills and retries decide exactly as the original run: "now" is the logical time.

**Settings.** A value typed in the form > key of the Airflow Variable `s3ops_retention` > the built-in
default. Scheduled runs are configured entirely by the Variable (bucket, key_prefix, jobs_table,
trial_retention, orphan_min_age_days, approval, approvers, limits, notifications). A bad or missing
setting fails `plan` once, before anything is listed, naming it. See `docs/configuration.md` and
`docs/retention.md`.
"""


@dag(dag_id="s3_retention", schedule="@daily",
     # a newer run can start while an older plan waits for approval, and supersede it
     **dag_args(max_active_runs=2, tags=["s3", "mysql", "retention", "deletion"], doc_md=DOC_MD,
                params=params_of(retention_tasks.SETTINGS)))
def s3_retention() -> None:
    @task
    def plan() -> dict:
        """Resolve and check the settings; stream the listing against the job rows; write the plan."""
        return retention_tasks.plan(get_current_context())

    @task(trigger_rule="none_failed")
    def purge_job_rows() -> dict:
        """Delete the expired TRIAL rows the approved plan recorded (when asked), if they still are."""
        return retention_tasks.purge_job_rows(get_current_context())

    add_deletion_tasks(plan(), recheck=retention_tasks.recheck, before_audit=purge_job_rows)


s3_retention()
