"""Every setting of ``s3_deploy_cleanup``: the trigger form's params and the Variable ``s3ops_deploy_cleanup``.

A scheduled run cleans every target of ``targets`` (one plan, guard, approval and audit per target);
a run given a ``bucket`` cleans only that target, described by the other params (each falling back to
the Variable's key, then the built-in default).
"""

from __future__ import annotations

from include.core.settings import APPROVAL, BUCKET, CONN_ID, DAYS, Setting, Settings

PREFIX = {"type": "string", "maxLength": 1024, "pattern": "^$|/$"}
KEEP = {"type": "integer", "minimum": 0, "maximum": 10**6}
MIN_KEEP = {"type": "integer", "minimum": 1, "maximum": 10**6}
PROTECT = {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 1024}}
#: One target of a scheduled run: what the params describe for a manual run.
TARGET = {
    "type": "object",
    "required": ["bucket"],
    "additionalProperties": False,
    "properties": {
        "bucket": BUCKET, "prefix": PREFIX, "keep": {"type": ["integer", "null"], **{k: v for k, v in KEEP.items() if k != "type"}},
        "older_than_days": {"type": ["number", "null"], **{k: v for k, v in DAYS.items() if k != "type"}},
        "min_keep": MIN_KEEP, "protect": PROTECT,
    },
}
#: The per-target settings (a target's keys; the params of a manual run).
TARGET_KEYS = ("bucket", "prefix", "keep", "older_than_days", "min_keep", "protect")

SETTINGS = Settings("s3_deploy_cleanup", "deploy_cleanup", (
    Setting("bucket", BUCKET, None, "Bucket",
            "Bucket that holds the deployment folders. Set: clean only this target. Not set anywhere: clean "
            "every entry of targets."),
    Setting("prefix", PREFIX, "", "Prefix",
            "Folder holding the deployments, ending with '/' (e.g. deploys/); empty = the bucket root. Objects "
            "directly under it are never touched."),
    Setting("keep", KEEP, None, "Keep newest N",
            "Every deployment except the newest N is a candidate; null = no count limit (then set older_than_days)."),
    Setting("older_than_days", DAYS, None, "Older than (days)",
            f"Only deployments older than this many days (0 to {DAYS['maximum']}, at the run's logical time) are "
            "candidates. With keep, both must hold."),
    Setting("min_keep", MIN_KEEP, 1, "Always keep newest",
            "The newest min_keep deployments are never deleted, whatever else is set."),
    Setting("protect", PROTECT, [], "Protect", "Deployment names or globs (release-1.*) that are never deleted."),
    Setting("targets", {"type": "array", "items": TARGET, "maxItems": 256}, [], "Targets",
            "Scheduled runs: a list of {bucket, prefix, keep, older_than_days, min_keep, protect}, one plan per "
            "target; a key a target leaves out takes the setting of that name.", form=False),
    Setting("approval", APPROVAL, "auto", "Approval",
            "required: a human approves the plan (Browse → Required Actions). auto: delete without asking when "
            "the plan is within the guards."),
    Setting("approvers", {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True}, [],
            "Approvers", "Airflow users who may approve the deletion; empty = any user allowed to answer the request."),
    Setting("separate_approver", {"type": "boolean"}, True, "Separate approver",
            "The user who triggered the run cannot approve its deletions (scheduled runs have no triggering user)."),
    Setting("dry_run", {"type": "boolean"}, False, "Dry run", "Plan, guard and audit only: nothing is deleted."),
    Setting("max_delete_count", {"type": "integer", "minimum": 0, "maximum": 10**9}, 10_000, "Max objects to delete",
            "Refuse the whole run (nothing deleted) if the plan deletes more objects (or versions) than this."),
    Setting("include_versions", {"type": "boolean"}, False, "Include versions",
            "Also delete every noncurrent version and delete marker in the deleted deployments (versioned buckets)."),
    Setting("aws_conn_id", CONN_ID, "aws_default", "AWS connection",
            "Airflow connection with the S3 credentials (and endpoint_url, if any)."),
    Setting("notifications", {"type": "array", "items": {"type": "object"}}, [], "Notifications",
            "Where approval requests and failures are sent: a list of notification targets "
            "(see docs/configuration.md).", form=False),
))
