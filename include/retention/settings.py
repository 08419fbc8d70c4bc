"""Every setting of ``s3_retention``: the trigger form's params and the Variable ``s3ops_retention``.

Scheduled runs are configured entirely here, without code: set the Variable (see docs/configuration.md).
"""

from __future__ import annotations

from include.core.settings import BUCKET, COMMON, CONN_ID, DAYS, REQUIRED, Setting, Settings
from include.deletion.settings import PLAN_SOURCE, gate_settings

#: ISO 8601 duration, strictly: upper-case designators in order (Y M W D, then T H M S), at least one
#: component, bounded digit counts (P999999999D would leave the calendar). Years and months are calendar units.
DURATION_PATTERN = (r"^P(?=\d|T\d)(\d{1,3}Y)?(\d{1,4}M)?(\d{1,4}W)?(\d{1,5}D)?"
                    r"(T(?=\d)(\d{1,6}H)?(\d{1,7}M)?(\d{1,9}S)?)?$")
#: ``table`` or ``schema.table``; checked again and quoted by include.retention.jobs.
TABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63})?$"

SETTINGS = Settings("s3_retention", "retention", (
    Setting("bucket", BUCKET, REQUIRED, "Bucket", "Bucket holding the job files."),
    Setting("key_prefix", {"type": "string", "maxLength": 1024}, "", "Key prefix",
            "Object key = key_prefix + sourceData. Objects outside this prefix are never touched."),
    Setting("jobs_table", {"type": "string", "pattern": TABLE_PATTERN}, "jobs", "Jobs table",
            "MySQL table with jobId, completedAt, type, sourceData (table or schema.table; an existing one such as "
            "ndvr_job_status works: needs SELECT, and DELETE with purge_job_rows)."),
    Setting("trial_retention", {"type": "string", "pattern": DURATION_PATTERN}, "P3M", "TRIAL retention",
            "ISO 8601 duration after completedAt before a TRIAL job expires: P3M (calendar months), P90D, P1Y2M, "
            "P2W, PT36H (upper case, designators in order)."),
    Setting("orphan_min_age_days", DAYS, 7, "Orphan minimum age (days)",
            f"A file no job refers to is an orphan only when older than this many days (0 to {DAYS['maximum']}; "
            "its job row may not be written yet)."),
    *gate_settings(approval="required", max_delete_count=100_000),
    Setting("max_delete_fraction", {"type": "number", "minimum": 0, "maximum": 1}, 0.5, "Max fraction to delete",
            "The guard refuses a plan deleting more than this fraction of the objects under the prefix.",
            tighten="lower"),
    Setting("allow_empty_jobs", {"type": "boolean"}, False, "Allow an empty jobs table",
            "Without it, a job query returning no rows, or only rows whose sourceData is NULL, empty or blank, is refused "
            "(either would make every file an orphan).", tighten="off"),
    Setting("purge_job_rows", {"type": "boolean"}, False, "Purge expired TRIAL rows",
            "After deleting, delete the expired TRIAL job rows the plan recorded (the approver sees their count)."),
    Setting("include_versions", {"type": "boolean"}, False, "Include versions",
            "On a versioned bucket, also delete every version and delete marker of each planned key (without it a "
            "delete only adds a delete marker and the bytes stay billed)."),
    PLAN_SOURCE,
    Setting("mysql_conn_id", CONN_ID, "mysql_default", "MySQL connection",
            "Airflow MySQL connection of the jobs database."),
    *COMMON,
))
