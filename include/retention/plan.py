"""The retention plan of one bucket: what the DAG's ``plan`` task and ``s3ops retention plan`` share.

The bucket's objects (with ``include_versions``, every version and delete marker too), from a listing
or from its newest S3 Inventory, are streamed against the job rows into the plan's artifacts by
:func:`include.retention.policy.write_plan`. Each caller says how to connect to MySQL (an Airflow
connection, or a login on the command line); this module never touches Airflow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import ExitStack, closing
from functools import partial
from typing import Any

from include.aws.client import versioning_state
from include.core.progress import Progress
from include.deletion.plan import keep_earlier_record
from include.inventory.read import object_source
from include.retention import jobs as jobs_db
from include.retention.expired_rows import ExpiredRowsWriter
from include.retention.policy import Policy, write_plan
from include.retention.versions import versioning_note


def plan_bucket(client: Any, connect: Callable[[], Any], run_dir: Any, *, bucket: str, key_prefix: str,
                jobs_table: str, policy: Policy, source: str, include_versions: bool, allow_empty_jobs: bool,
                trial_retention: str, orphan_min_age_days: float, purge_job_rows: bool = False,
                run_settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the plan of ``s3://bucket/key_prefix`` into ``run_dir`` and return its summary (``run_settings``:
    the DAG run's settings, which plan.json records for the deletion gate).

    ``connect`` opens a MySQL connection. Two are opened once the objects can be read (after an
    inventory's download, which can take minutes, so that no connection idles through it): one streams
    the job rows in name order, one answers lookups by name and, with ``purge_job_rows``, tells whether
    this login may delete rows (the approver sees it before approving). Both are closed on return.
    A ``completedAt`` of no time zone (``DATETIME``) moves the TRIAL cutoff 12 hours back
    (:meth:`Policy.for_zoneless_times`): the plan, the delete step's re-check and the purge all decide by it."""
    keep_earlier_record(run_dir)  # before ExpiredRowsWriter removes an earlier plan's rows
    versioning = versioning_state(client, bucket)
    with ExitStack() as cleanup:
        found = cleanup.enter_context(object_source(client, bucket, source, include_versions=include_versions))
        stream = cleanup.enter_context(closing(connect()))
        lookup_conn = cleanup.enter_context(closing(connect()))
        purge_denied = jobs_db.delete_denied(lookup_conn, jobs_table) if purge_job_rows else None
        completed_type = jobs_db.check_readable(lookup_conn, jobs_table)
        if completed_type == "DATETIME":
            policy = policy.for_zoneless_times()
        marks = jobs_db.spelling_marks(lookup_conn, jobs_table, key_prefix, bucket)  # the spellings worth asking for
        expired = ExpiredRowsWriter(run_dir, policy)  # always: it removes an earlier plan's rows
        progress = Progress(f"{found.reading} s3://{bucket}/{key_prefix} (retention plan)",
                            unit="versions" if include_versions else "objects")
        summary = write_plan(
            found.objects(key_prefix, on_batch=progress.add), jobs_db.iter_job_rows(stream, jobs_table), run_dir,
            key_prefix=key_prefix, policy=policy,
            lookup=partial(jobs_db.rows_for_names, lookup_conn, jobs_table), bucket=bucket, marks=marks,
            jobs_table=jobs_table, allow_empty_jobs=allow_empty_jobs,
            versions=found.versions(key_prefix, on_batch=progress.add) if include_versions else None,
            run_settings=run_settings, expired_rows=expired if purge_job_rows else None,
            extra={"bucket": bucket, "trial_retention": trial_retention, "orphan_min_age_days": orphan_min_age_days,
                   "purge_job_rows": purge_job_rows, "include_versions": include_versions, "versioning": versioning,
                   "purge_denied": purge_denied, "versioning_note": versioning_note(versioning, include_versions),
                   "source": source, "inventory": found.describe(), "completed_at_type": completed_type},
        )
    progress.finish()
    return summary
