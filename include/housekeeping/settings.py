"""Every setting of ``s3ops_housekeeping``: the trigger form's ``dry_run`` and the Variable ``s3ops_housekeeping``.

The Variable is checked whole, as every DAG's is (:mod:`include.core.settings`): a misspelt key such as
``artifact_retention_day`` fails the run naming it, instead of leaving the 30-day default to prune what the
deployment meant to keep for 90. Its retention settings are the fallback of every DAG: a DAG whose own
Variable sets ``artifact_retention_days``/``audit_retention_days`` (:data:`include.core.settings.COMMON`) is
pruned by those; they also apply to this DAG's own run folders.
"""

from __future__ import annotations

from dataclasses import replace

from include.core.housekeeping import ARTIFACT_RETENTION_DAYS, AUDIT_RETENTION_DAYS
from include.core.settings import ARTIFACT_RETENTION, AUDIT_RETENTION, NOTIFICATIONS, Setting, Settings

SETTINGS = Settings("s3ops_housekeeping", "housekeeping", (
    Setting("dry_run", {"type": "boolean"}, False, "Dry run", "Report what would be removed; remove nothing.",
            tighten="on"),
    replace(ARTIFACT_RETENTION, default=ARTIFACT_RETENTION_DAYS,
            description="Run folders older than this are pruned, for every DAG whose own Variable does not set "
                        "artifact_retention_days."),
    replace(AUDIT_RETENTION, default=AUDIT_RETENTION_DAYS,
            description="A run that deleted something keeps its deletion record this long (never less than "
                        "artifact_retention_days), for every DAG whose own Variable does not set "
                        "audit_retention_days."),
    NOTIFICATIONS,
))
