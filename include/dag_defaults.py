"""What every s3ops DAG shares: ownership, retries with exponential backoff, the connection params.

Imported by the DAG files at parse time, so it stays tiny: no I/O, nothing heavy.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Param

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "s3ops",
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}


def aws_conn_param() -> Param:
    return Param("aws_default", type="string", minLength=1, title="AWS connection",
                 description="Airflow connection with the S3 credentials (and endpoint_url, if any) to use.")


def mysql_conn_param() -> Param:
    return Param("mysql_default", type="string", minLength=1, title="MySQL connection",
                 description="Airflow MySQL connection of the jobs database.")


def approval_gate_params(timeout_hours: float = 20) -> dict[str, Param]:
    """Who may approve a deleting DAG's plan and how long the request waits (include.deletion.approval)."""
    return {
        "approvers": Param(
            [], type="array", items={"type": "string", "minLength": 1}, title="Approvers",
            description="Airflow user ids who may approve (the HITL assigned users; Airflow refuses anyone else). "
                        "Empty: any user allowed to answer Required Actions.",
        ),
        "separate_approver": Param(
            True, type="boolean", title="Separate approver",
            description="The user who triggered the run cannot approve its deletions (scheduled runs have no "
                        "triggering user).",
        ),
        "approval_timeout_hours": Param(
            timeout_hours, type="number", exclusiveMinimum=0, maximum=720, title="Approval timeout (hours)",
            description="Unanswered after this long, the request expires and nothing is deleted. Keep it below "
                        "the schedule interval (20 h for a daily run).",
        ),
    }
