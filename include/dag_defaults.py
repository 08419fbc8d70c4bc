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
