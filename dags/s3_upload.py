"""s3_upload: move finished .dat files from a local folder into S3, verified, never losing one."""

from __future__ import annotations

from airflow.sdk import AssetAlias, dag, get_current_context, task

from include.dag_defaults import dag_args, params_of
from include.upload import tasks as upload_tasks

DOC_MD = """
### Move finished `.dat` files into S3

A producer writes `base_dir/<location>/YYYY/MM/DD/HH/<mm>-<topic>.dat` (UTC). Every minute this DAG
moves the *finished* ones to `s3://<bucket>/<key_prefix><location>/YYYY/MM/DD/HH/<mm>-<topic>.dat`:

1. **scan** walks `base_dir`. A file is eligible when its path is in the layout with a real date and
   time, its data minute ended at least `settle_seconds` ago (wall clock) and its mtime is at least
   `settle_seconds` old. Anything else in the tree is *malformed*: never uploaded or deleted, named in
   the log and the summary. Batches of files go to the artifact store (not XCom).
2. **upload_batch** (one task per batch) uploads through AWS's Common Runtime S3 client: one PUT, or a
   parallel multipart upload from `multipart_threshold_mib` on, with the file's CRC64NVME (S3 checks the
   whole object against it) and `If-None-Match: *` (never replaces an object unless `overwrite`); S3's
   echo of the checksum (HeadObject after a multipart upload) verifies the upload; then the local file
   is deleted. An identical object already there (a crash after upload) only costs the local delete; a
   different one is a **conflict**: the file stays. Any failure keeps the file for the next run; a
   multipart upload left incomplete by a killed worker is aborted by its retry or the next scan.
3. **tidy** (also after a batch that failed on its last try: it is recorded, and fails the run) removes
   empty hour/day/month/year folders whose period ended more than `settle_seconds`
   ago, writes `manifest.jsonl` and `summary.json` to `<artifact root>/s3_upload/<run_id>/`, and emits
   an asset event for `s3://<bucket>/<key_prefix>` (through the alias `s3_upload`) when files were uploaded.
   A run that found nothing (no failed abort of a multipart upload either) leaves no run folder, only a
   one-line entry in the artifact index.
4. **check** fails the run when files failed or conflicted (they stay in `base_dir`): the run is red and the
   DAG's notification targets get the failure (the same failure at most once per 6 hours, even as its
   counts grow; docs/notifications.md).

**Settings.** A value typed in the trigger form > key of the Airflow Variable `s3ops_upload` (JSON) >
the built-in default; scheduled runs take everything from the Variable. A missing `base_dir`/`bucket`
or an invalid setting fails the run once, naming it. See `docs/configuration.md` and `docs/upload.md`.
"""

UPLOADED_ALIAS = AssetAlias("s3_upload")


# No backfills: a run uploads what is in base_dir now, whatever its logical date, and a backfill's runs
# would not wait for each other (max_active_runs holds per backfill, not across it and the schedule).
@dag(dag_id="s3_upload", schedule="* * * * *", allowed_run_types=["scheduled", "manual"],
     **dag_args(tags=["s3", "upload"], doc_md=DOC_MD, params=params_of(upload_tasks.SETTINGS)))
def s3_upload() -> None:
    @task
    def scan() -> list[str]:
        return upload_tasks.scan(get_current_context())

    @task
    def upload_batch(batch: str) -> dict[str, int]:
        return upload_tasks.upload_batch(get_current_context(), batch)

    @task(outlets=[UPLOADED_ALIAS], trigger_rule="none_failed")
    def tidy(batches: list[str]) -> dict[str, int]:
        return upload_tasks.tidy(get_current_context(), batches, UPLOADED_ALIAS)

    @task
    def check(counts: dict[str, int]) -> None:
        upload_tasks.check(counts)

    batches = scan()
    tidied = tidy(batches)
    upload_batch.expand(batch=batches) >> tidied
    check(tidied)


s3_upload()
