"""The retention run glue: the plan, re-check and purge steps wired to S3 and the jobs table.

Called from dags/s3_retention.py (and ``s3ops retention plan``) with plain values, so they run and are
tested without a DAG run. Kept apart from :mod:`include.retention.policy` (the pure decision) so the
policy never imports the MySQL adapter, which itself builds on the policy's types: no import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from include.deletion.recheck import RecheckContext
from include.retention import jobs as jobs_db
from include.retention.policy import Policy, make_recheck, policy_of, write_plan


def run_plan(
    *, aws_conn_id: str, mysql_conn_id: str, bucket: str, key_prefix: str, jobs_table: str, policy: Policy,
    run_dir: Any, allow_empty_jobs: bool, purge_job_rows: bool, trial_retention: str, orphan_min_age_days: float,
) -> dict[str, Any]:
    """The ``plan`` task: stream the listing against the job rows into the run's plan artifacts."""
    from include.aws.client import client_from_connection
    from include.aws.listing import iter_objects

    jobs_db.quote_table(jobs_table)  # a bad name fails before anything is listed
    client = client_from_connection(aws_conn_id, mode="adaptive")
    stream, lookup_conn = jobs_db.connect(mysql_conn_id), jobs_db.connect(mysql_conn_id)
    try:
        summary = write_plan(
            iter_objects(client, bucket, key_prefix), jobs_db.iter_job_rows(stream, jobs_table), run_dir,
            key_prefix=key_prefix, policy=policy,
            lookup=lambda names: jobs_db.rows_for_sources(lookup_conn, jobs_table, names),
            jobs_table=jobs_table, allow_empty_jobs=allow_empty_jobs,
            extra={"bucket": bucket, "trial_retention": trial_retention,
                   "orphan_min_age_days": orphan_min_age_days, "purge_job_rows": purge_job_rows},
        )
    finally:
        stream.close()
        lookup_conn.close()
    return summary


def recheck_factory(ctx: RecheckContext) -> Callable[[list[Any]], dict[str, str]]:
    """For include.deletion.airflow: the delete step's re-check in MySQL, under the plan's policy."""
    table = ctx.plan["jobs_table"]
    conn = jobs_db.connect(ctx.params["mysql_conn_id"])  # autocommit: every chunk sees the latest rows
    return make_recheck(lambda names: jobs_db.rows_for_sources(conn, table, names),
                        ctx.plan["policy"]["key_prefix"], policy_of(ctx.plan))


def run_purge(*, mysql_conn_id: str, plan: dict[str, Any], run_dir: Any) -> dict[str, Any]:
    """The ``purge_job_rows`` task: record the expired TRIAL rows in ``purged_rows.jsonl``, then delete them."""
    from include.core import artifacts

    dest = run_dir / "purged_rows.jsonl"
    conn = jobs_db.connect(mysql_conn_id)
    try:
        counts = jobs_db.purge_expired_trials(conn, plan["jobs_table"], policy_of(plan), dest)
    finally:
        conn.close()
    return {**counts, "purged_rows_uri": artifacts.uri(dest)}
