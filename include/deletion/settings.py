"""The settings of the deletion gate, shared by every deleting DAG (retention, deploy cleanup).

A DAG lists :func:`gate_settings` among its own settings (:mod:`include.core.settings`); the gate's tasks
(:mod:`include.deletion.airflow`) read them from the run's resolved settings. A setting the gate gains
(e.g. an approval timeout) is added here once, for every deleting DAG.
"""

from __future__ import annotations

from include.core.settings import APPROVAL, USERS, Setting


def gate_settings(*, approval: str, max_delete_count: int) -> tuple[Setting, ...]:
    """approval, approvers, separate_approver, approval_timeout_hours, dry_run and max_delete_count, with
    this DAG's defaults."""
    return (
        Setting("approval", APPROVAL, approval, "Approval",
                "required: a human approves the plan (Browse → Required Actions); auto: delete without a human "
                "when the guards pass.", tighten="required"),
        Setting("approvers", USERS, [], "Approvers",
                "Airflow users who may approve the deletion; empty = any user allowed to answer the request.",
                tighten="subset"),
        Setting("separate_approver", {"type": "boolean"}, True, "Separate approver",
                "The user who triggered the run cannot approve its deletions (scheduled runs have no "
                "triggering user).", tighten="on"),
        # at least 36 s: a tinier value made a zero timedelta, which Airflow reads as no timeout at all
        Setting("approval_timeout_hours", {"type": "number", "minimum": 0.01, "maximum": 720}, 20,
                "Approval timeout (hours)",
                "Unanswered after this long (0.01 to 720 hours), the request expires and nothing is deleted. "
                "Keep it below the schedule interval (20 h for a daily run)."),
        Setting("dry_run", {"type": "boolean"}, False, "Dry run",
                "Plan, guard and audit only: nothing is deleted.", tighten="on"),
        Setting("max_delete_count", {"type": "integer", "minimum": 0, "maximum": 10**9}, max_delete_count,
                "Max objects to delete",
                "The guard refuses the whole plan (nothing deleted) if it deletes more objects (or versions) "
                "than this.", tighten="lower"),
    )


#: Where a deleting DAG's plan reads the bucket's objects from (one definition for every deleting DAG).
PLAN_SOURCES = ("listing", "inventory")
PLAN_SOURCE = Setting(
    "source", {"type": "string", "enum": list(PLAN_SOURCES)}, "listing", "Source",
    "listing: list the bucket (one request per 1,000 keys). inventory: the bucket's newest verified S3 Inventory "
    "(billion-object buckets: no listing); objects written after its date are not in the plan, and every delete is "
    "conditional on the ETag it recorded, so an object rewritten since is kept.")
