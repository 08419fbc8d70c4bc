"""Every setting of ``s3_deploy_cleanup``: the trigger form's params and the Variable ``s3ops_deploy_cleanup``.

A scheduled run cleans every target of ``targets`` (one plan, guard, approval and audit per target);
a run given a ``bucket`` cleans only that target, described by the other params (each falling back to
the Variable's key, then the built-in default).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from include.core.settings import BUCKET, COMMON, DAYS, Setting, Settings
from include.core.times import given_time
from include.deletion.settings import PLAN_SOURCE, gate_settings

PREFIX = {"type": "string", "maxLength": 1024, "pattern": "^$|/$"}
#: the most targets a scheduled run cleans (one run of the DAG each)
MAX_TARGETS = 256
KEEP = {"type": "integer", "minimum": 0, "maximum": 10**6}
MIN_KEEP = {"type": "integer", "minimum": 1, "maximum": 10**6}
PROTECT = {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 1024}}
#: One target of a scheduled run: what the params describe for a manual run.
TARGET = {
    "type": "object",
    "required": ["bucket"],
    "additionalProperties": False,
    "properties": {
        # no null: a key a target leaves out takes the Variable's value, and null would read as "no limit"
        "bucket": BUCKET, "prefix": PREFIX, "keep": KEEP, "older_than_days": DAYS,
        "min_keep": MIN_KEEP, "protect": PROTECT, "source": PLAN_SOURCE.schema,
    },
}
#: The per-target settings (a target's keys; the params of a manual run).
TARGET_KEYS = ("bucket", "prefix", "keep", "older_than_days", "min_keep", "protect", "source")


def _a_target(params: Mapping[str, Any], variable: Mapping[str, Any]) -> frozenset[str]:
    """The keys of one of the Variable's ``targets`` that a run gives exactly as that target sets them (as the
    dispatching run starts each target's run): the deployment chose those values, so pinning ``bucket`` or
    ``prefix`` does not refuse them. A key the target leaves out (a param the dispatching run was given and
    passed on) is checked against the pins as any other."""
    for target in variable.get("targets") or ():
        if not isinstance(target, Mapping):
            continue
        own = {k: v for k, v in target.items() if k in TARGET_KEYS and v is not None}
        if own and all(params.get(k) == v and type(params.get(k)) is type(v) for k, v in own.items()):
            return frozenset(own)
    return frozenset()


def _a_time(value: Any, where: str) -> None:
    """``now`` reads as a time (whether it is after the run's own is checked when the run plans)."""
    given_time(value, where)


SETTINGS = Settings("s3_deploy_cleanup", "deploy_cleanup", (
    Setting("bucket", BUCKET, None, "Bucket",
            "Bucket that holds the deployment folders. Set: clean only this target. Not set anywhere: clean "
            "every entry of targets."),
    Setting("prefix", PREFIX, None, "Prefix",
            "Folder holding the deployments, ending with '/' (e.g. deploys/); '/' = the bucket root, where every "
            "top-level folder is a deployment. Required (never the root by omission): set it here, in the Variable or "
            "in the target. Objects directly under it are never touched."),
    Setting("keep", KEEP, None, "Keep newest N",
            "Every deployment except the newest N is a candidate. Set nowhere: no count limit (then older_than_days "
            "must be set)."),
    Setting("older_than_days", DAYS, None, "Older than (days)",
            f"Only deployments older than this many days (0 to {DAYS['maximum']}, at the run's logical time) are "
            "candidates. With keep, both must hold."),
    Setting("now", {"type": "string", "minLength": 1, "maxLength": 64}, None, "Decide as of",
            "The time older_than_days is judged at (ISO 8601, UTC without an offset); empty: the run's logical time. "
            "Never later than that. A scheduled run passes its own to each target's run, so a backfill's targets "
            "decide as that date's run would have.", variable=False, extra_check=_a_time),
    Setting("min_keep", MIN_KEEP, 1, "Always keep newest",
            "The newest min_keep deployments are never deleted, whatever else is set."),
    Setting("protect", PROTECT, [], "Protect", "Deployment names or globs (release-1.*) that are never deleted."),
    Setting("targets", {"type": "array", "items": TARGET, "maxItems": MAX_TARGETS}, [], "Targets",
            "Scheduled runs: a list of {bucket, prefix, keep, older_than_days, min_keep, protect, source}, one plan per "
            "target; a key a target leaves out takes the setting of that name (a key set to null is refused).",
            form=False),
    *gate_settings(approval="auto", max_delete_count=10_000),
    Setting("include_versions", {"type": "boolean"}, False, "Include versions",
            "Also delete every noncurrent version and delete marker in the deleted deployments (versioned buckets)."),
    PLAN_SOURCE,
    *COMMON,
), pinned_exempt=_a_target)
