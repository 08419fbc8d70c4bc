"""s3_storage_report: every bucket the connection can see, exact, sharded, with units and costs."""

from __future__ import annotations

from airflow.sdk import dag, get_current_context, task

from include.dag_defaults import dag_args, params_of
from include.storage_report import tasks as report_tasks

DOC = """
### S3 storage report

Inventory of every bucket the AWS connection can see: creation date, region, object count, total size,
newest object, objects/bytes per storage class, monthly cost **estimated at list price**, and hidden
costs (noncurrent versions, delete markers, incomplete multipart uploads).

`list_buckets` → `plan_shards` (big buckets are split into key ranges) → `summarize_shard` (mapped,
one task per shard, streaming totals only) → `aggregate` (report.json) → `publish` (report.csv,
report.html, report.txt and the table in this task's log).

Outputs: `<artifact root>/s3_storage_report/<run_id>/`. `source: cloudwatch` reads the daily CloudWatch
storage metrics instead of listing (approximate; the metric date is in the report); `source: inventory`
reads each bucket's newest verified S3 Inventory (exact as of its date; `inventory_fallback` says what a
bucket without one gets: a listing, or an error).
A bucket that cannot be read appears with its error; `fail_on_bucket_error` then fails the run after
publishing. Prices: `include/storage_report/pricing.py`, overridable with the setting `pricing`.

**Settings.** A value typed in the form > key of the Airflow Variable `s3ops_storage_report` > the built-in
default (shard sizes and prices are Variable keys only). See docs/configuration.md and docs/storage_report.md.
"""


@dag(dag_id="s3_storage_report", schedule="@daily",
     **dag_args(tags=["s3", "report"], doc_md=DOC, params=params_of(report_tasks.SETTINGS)))
def s3_storage_report():
    @task
    def list_buckets() -> dict:
        return report_tasks.list_buckets(get_current_context())

    @task
    def plan_shards(bucket_summary: dict) -> list[dict]:
        return report_tasks.plan_shards(get_current_context())

    @task(max_active_tis_per_dagrun=8)
    def summarize_shard(shard: dict) -> list[dict]:
        return report_tasks.summarize_shard(get_current_context(), shard)

    @task(trigger_rule="none_failed")  # no bucket matched: zero shards, still an (empty) report
    def aggregate(shard_results: list[list[dict]]) -> dict:
        return report_tasks.aggregate(get_current_context(), shard_results)

    @task
    def publish(totals: dict) -> dict:
        return report_tasks.publish(get_current_context())

    shards = plan_shards(list_buckets())
    publish(aggregate(summarize_shard.expand(shard=shards)))


s3_storage_report()
