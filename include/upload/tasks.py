"""The Airflow side of ``s3_upload``: what each of its tasks does. The DAG file only wires these.

``scan`` resolves the settings (params > Variable ``s3ops_upload`` > defaults, recorded in the run's
``settings.json``), checks the bucket and writes the batches; ``upload_batch`` and ``tidy`` read the
run's settings back, so a run never mixes two configurations.
"""

from __future__ import annotations

from typing import Any

from include.core import artifacts
from include.upload.settings import SETTINGS, UploadSettings, upload_settings

DAG_ID = SETTINGS.dag_id


def _settings(context: Any, *, resolve: bool = False) -> UploadSettings:
    from airflow.sdk.exceptions import AirflowFailException

    from include.core.settings import SettingsError
    from include.dag_defaults import resolve_run_settings, saved_run_settings

    resolved = resolve_run_settings(SETTINGS, context) if resolve else saved_run_settings(context)
    try:
        return upload_settings(resolved, resolved.sources)
    except SettingsError as exc:
        raise AirflowFailException(f"{DAG_ID}: {exc}") from None  # a retry would not fix the configuration


def scan(context: Any) -> list[str]:
    """Resolve the settings, check the bucket, write the batches; returns the batch names."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.aws.client import client_from_connection
    from include.upload.uploader import UploadError, check_bucket, scan_task

    settings = _settings(context, resolve=True)
    try:
        client = client_from_connection(settings.aws_conn_id)
        check_bucket(client, settings.bucket)
        # with the client: abort the multipart uploads a killed worker left open
        return scan_task(settings, artifacts.run_dir(DAG_ID, context["run_id"]), client=client,
                         attempt=context["ti"].try_number)
    except UploadError as exc:
        raise AirflowFailException(str(exc)) from exc  # a retry would not fix the configuration


def upload_batch(context: Any, batch: str) -> dict[str, int]:
    """Upload → verify → delete the files of one batch (through the CRT client, ``workers`` in flight); returns counts."""
    from include.aws.client import client_from_connection
    from include.aws.crt import credentials_from_connection
    from include.upload.uploader import client_pool_size, record_failed_batch, upload_batch_task

    settings = _settings(context)
    folder = artifacts.run_dir(DAG_ID, context["run_id"])
    ti = context["ti"]
    try:
        client = client_from_connection(settings.aws_conn_id, pool=client_pool_size(settings.workers))
        return upload_batch_task(client, settings, folder, batch, workers=settings.workers,
                                 credentials=credentials_from_connection(settings.aws_conn_id),
                                 attempt=ti.try_number)
    except Exception as exc:
        if ti.try_number <= ti.max_tries:  # Airflow's own test: a retry is left, so retry (with backoff)
            raise
        # The last try: record the failure, so that tidy still records what the other batches moved and
        # emits their asset event, and check fails the run naming this batch (a failed task here left tidy
        # upstream_failed: no summary, no manifest, no asset event for anything).
        return record_failed_batch(folder, batch, f"{type(exc).__name__}: {exc}")


def tidy(context: Any, batches: list[str], alias: Any) -> dict[str, int]:
    """Remove finished empty folders, write manifest + summary, emit the asset event; returns the counts."""
    from airflow.sdk import Asset

    from include.upload.uploader import RETURN_KEYS, tidy_task

    settings = _settings(context)
    run_id = context["run_id"]
    summary = tidy_task(settings, artifacts.run_dir(DAG_ID, run_id), batches)
    if summary["uploaded"]:
        context["outlet_events"][alias].add(
            Asset(settings.asset_uri), extra={"uploaded": summary["uploaded"], "bytes": summary["bytes"], "run_id": run_id}
        )
    return {k: summary[k] for k in RETURN_KEYS}


def check(counts: dict[str, int]) -> None:
    """Fail the run (red in the UI, a failure notification) when files failed or conflicted: they stayed
    behind. tidy has recorded everything and emitted the asset event for what did move."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.upload.uploader import problems

    problem = problems(counts)
    if problem:
        raise AirflowFailException(problem)  # the next run retries the files; a task retry would not help
