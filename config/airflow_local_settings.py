"""Cluster policy for the docker compose deployment (mounted at ``$AIRFLOW_HOME/config``).

Every task of an s3ops DAG (tag ``s3ops``) that does not choose a pool itself runs in the
``s3_requests`` pool, which ``airflow-init`` creates with ``S3OPS_S3_REQUEST_SLOTS`` slots: however many
Celery workers there are, at most that many s3ops tasks talk to S3 at once (each with its own bounded
client connection pool). The DAGs stay deployment-neutral: a local run without this file uses
``default_pool`` and needs no pool to exist. See docs/scaling.md.
"""

from __future__ import annotations

from typing import Any

S3_POOL = "s3_requests"
S3OPS_TAG = "s3ops"


def task_policy(task: Any) -> None:
    dag = getattr(task, "dag", None)
    if dag is not None and S3OPS_TAG in (dag.tags or ()) and task.pool in (None, "default_pool"):
        task.pool = S3_POOL
