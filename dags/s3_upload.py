"""s3_upload: move finished .dat files from a local folder into S3, verified, never losing one."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import AssetAlias, Param, dag, task

from include.dag_defaults import DEFAULT_ARGS, aws_conn_param

UPLOADED_ALIAS = AssetAlias("s3_upload")

DOC_MD = """
### Move finished `.dat` files into S3

A producer writes `base_dir/<location>/YYYY/MM/DD/HH/<mm>-<topic>.dat` (UTC). Every minute this DAG
moves the *finished* ones to `s3://<bucket>/<key_prefix><location>/YYYY/MM/DD/HH/<mm>-<topic>.dat`:

1. **scan** walks `base_dir`. A file is eligible when its path is in the layout with a real date and
   time, its data minute ended at least `settle_seconds` ago (wall clock) and its mtime is at least
   `settle_seconds` old. Anything else in the tree is *malformed*: never uploaded or deleted, named in
   the log and the summary. Batches of files go to the artifact store (not XCom).
2. **upload_batch** (one task per batch, threads inside): PUT with `Content-MD5` and a SHA-256 checksum,
   `If-None-Match: *` (never replaces an object unless `overwrite`); S3 recomputes both digests and
   echoes them, which verifies the upload (HeadObject when it cannot); then the local file is deleted.
   An identical object already there (a crash after upload) only costs the local delete; a different
   one is a **conflict**: the file stays. Any failure keeps the file for the next run. Small files are
   sent by a lean PUT (signed like botocore; anything unclear is resent through botocore's retries).
3. **tidy** removes empty hour/day/month/year folders whose period ended more than `settle_seconds`
   ago, writes `manifest.jsonl` and `summary.json` to `<artifact root>/s3_upload/<run_id>/`, and emits
   an asset event for `s3://<bucket>/<key_prefix>` (through the alias `s3_upload`) when files were uploaded.
   A run that found nothing leaves no run folder, only a one-line entry in the artifact index.
4. **check** fails the run when files failed or conflicted (they stay in `base_dir`): the run is red and the
   DAG's notification targets get the failure (at most once per 6 hours for the same counts).

**Settings.** Scheduled runs read the Airflow Variable `s3_upload` (JSON, keys = the params below), then
env vars `S3OPS_UPLOAD_BASE_DIR`, `S3OPS_UPLOAD_BUCKET`, … (one per param), then the defaults. A manual
run's conf overrides them. A missing `base_dir`/`bucket` fails the run with a message naming it.
See `docs/upload.md`.
"""

PARAMS = {
    "base_dir": Param(None, type=["null", "string"], title="Base folder",
                      description="Absolute path of the producer's folder (holds <location>/YYYY/MM/DD/HH/). "
                                  "Empty: taken from the Variable s3_upload or S3OPS_UPLOAD_BASE_DIR."),
    "bucket": Param(None, type=["null", "string"], title="Bucket",
                    description="Target bucket. Empty: taken from the Variable s3_upload or S3OPS_UPLOAD_BUCKET."),
    "key_prefix": Param("", type="string", title="Key prefix",
                        description="Prefix for every key, e.g. 'incoming/' (a '/' is added if missing)."),
    "settle_seconds": Param(30, type="integer", minimum=0, title="Settle time (seconds)",
                            description="A file is finished when its data minute ended and its mtime are at "
                                        "least this many seconds old."),
    "overwrite": Param(False, type="boolean", title="Overwrite",
                       description="Replace an existing object with different content (otherwise: a conflict, "
                                   "the local file is kept)."),
    "max_files": Param(100_000, type="integer", minimum=1, title="Max files per run",
                       description="At most this many files per run, oldest data first; the rest wait."),
    "aws_conn_id": aws_conn_param(),
}


def _workers() -> int:
    from include.upload.uploader import DEFAULT_WORKERS

    return int(os.environ.get("S3OPS_UPLOAD_WORKERS", DEFAULT_WORKERS))


@dag(
    dag_id="s3_upload",
    schedule="* * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=PARAMS,
    doc_md=DOC_MD,
    tags=["s3ops", "s3", "upload"],
)
def s3_upload() -> None:
    @task
    def scan(*, dag_run: Any = None, run_id: str | None = None) -> list[str]:
        """Resolve the settings, check the bucket, write the batches; returns the batch names."""
        from airflow.sdk.exceptions import AirflowFailException

        from include.aws.client import client_from_connection
        from include.core.artifacts import run_dir
        from include.upload.settings import SettingsError, load_settings
        from include.upload.uploader import UploadError, check_bucket, scan_task

        try:
            settings = load_settings(dag_run.conf or {})
            check_bucket(client_from_connection(settings.aws_conn_id), settings.bucket)
            return scan_task(settings, run_dir("s3_upload", run_id))
        except (SettingsError, UploadError) as exc:
            raise AirflowFailException(str(exc)) from exc  # a retry would not fix the configuration

    @task
    def upload_batch(batch: str, *, run_id: str | None = None) -> dict[str, int]:
        """Upload → verify → delete the files of one batch, concurrently; returns counts."""
        from include.aws.client import client_from_connection
        from include.core.artifacts import run_dir
        from include.upload.uploader import client_pool_size, run_settings, upload_batch_task

        folder = run_dir("s3_upload", run_id)
        cfg = run_settings(folder)
        client = client_from_connection(cfg.aws_conn_id, pool=client_pool_size(_workers()))
        return upload_batch_task(client, cfg, folder, batch, workers=_workers())

    @task(outlets=[UPLOADED_ALIAS], trigger_rule="none_failed")
    def tidy(batches: list[str], *, run_id: str | None = None, outlet_events: Any = None) -> dict[str, int]:
        """Remove finished empty folders, write manifest + summary, emit the asset event; returns the counts."""
        from airflow.sdk import Asset

        from include.core.artifacts import run_dir
        from include.upload.uploader import RETURN_KEYS, run_settings, tidy_task

        folder = run_dir("s3_upload", run_id)
        cfg = run_settings(folder)
        summary = tidy_task(cfg, folder, batches)
        if summary["uploaded"]:
            outlet_events[UPLOADED_ALIAS].add(
                Asset(cfg.asset_uri), extra={"uploaded": summary["uploaded"], "bytes": summary["bytes"], "run_id": run_id}
            )
        return {k: summary[k] for k in RETURN_KEYS}

    @task
    def check(counts: dict[str, int]) -> None:
        """Fail the run (red in the UI, a failure notification) when files failed or conflicted: they stayed
        behind. tidy has recorded everything and emitted the asset event for what did move."""
        from airflow.sdk.exceptions import AirflowFailException

        from include.upload.uploader import problems

        problem = problems(counts)
        if problem:
            raise AirflowFailException(problem)  # the next run retries the files; a task retry would not help

    batches = scan()
    tidied = tidy(batches)
    upload_batch.expand(batch=batches) >> tidied
    check(tidied)


s3_upload()
