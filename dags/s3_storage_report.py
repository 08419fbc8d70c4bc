"""s3_storage_report: every bucket the connection can see, exact, sharded, with units and costs."""

from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import Param, dag, get_current_context, task

from include.core.units import SIZE_UNITS
from include.dag_defaults import DEFAULT_ARGS, aws_conn_param

# Constants only: both modules import nothing, so parsing stays fast and the enums have one source.
from include.storage_report.pricing import STORAGE_CLASSES

DOC = """
### S3 storage report

Inventory of every bucket the AWS connection can see: creation date, region, object count, total size,
newest object, objects/bytes per storage class, monthly cost **estimated at list price**, and hidden
costs (noncurrent versions, delete markers, incomplete multipart uploads).

`list_buckets` → `plan_shards` (big buckets are split into key ranges) → `summarize_shard` (mapped,
one task per shard, streaming totals only) → `aggregate` (report.json) → `publish` (report.csv,
report.html, report.txt and the table in this task's log).

Outputs: `<artifact root>/s3_storage_report/<run_id>/`; report.json has a `regions` section (the CLI's
`--group-by region`). `date_format`/`show_time` set how dates read in report.txt/csv/html and the UI. `source: cloudwatch` reads the daily CloudWatch
storage metrics instead of listing (approximate; the metric date is in the report).
A bucket that cannot be read appears with its error; `fail_on_bucket_error` then fails the run after
publishing. Prices: `include/storage_report/pricing.py`, overridable with the Variable `s3ops_pricing`.
See docs/storage_report.md.
"""


@dag(
    dag_id="s3_storage_report",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["s3ops", "s3", "report"],
    doc_md=DOC,
    default_args=DEFAULT_ARGS,
    params={
        "buckets": Param([], type="array", items={"type": "string", "minLength": 1}, title="Buckets",
                         description="Bucket names or glob patterns (logs-*, data-202?); empty = every bucket."),
        "regions": Param([], type="array", items={"type": "string", "pattern": "^[a-z]{2}(-[a-z]+)+-[0-9]+$"},
                         title="Regions", description="Only buckets in these regions (e.g. eu-west-1); empty = all."),
        "storage_classes": Param([], type="array", items={"type": "string", "enum": list(STORAGE_CLASSES)},
                                 title="Storage classes",
                                 description="Count only objects in these storage classes; empty = all."),
        "size_unit": Param("auto", type="string", enum=list(SIZE_UNITS), title="Size unit",
                           description="Unit of total_size and the tables: KB = 1000 B, KiB = 1024 B; "
                                       "auto picks per bucket. Byte counts are always exact."),
        "include_versions": Param(False, type="boolean", title="Include versions",
                                  description="Also count noncurrent versions and delete markers "
                                              "(ListObjectVersions instead of ListObjectsV2)."),
        "source": Param("listing", type="string", enum=["listing", "cloudwatch", "inventory"], title="Source",
                        description="listing: exact, lists every object. cloudwatch: daily BucketSizeBytes/"
                                    "NumberOfObjects metrics, no listing, approximate. inventory: exact as of "
                                    "the newest verified S3 Inventory (its date is in the report), no listing."),
        "inventory_fallback": Param("listing", type="string", enum=["listing", "error"], title="Without inventory",
                                    description="source inventory, for a bucket without a usable inventory: "
                                                "list it (listing) or report it with the reason (error)."),
        "fail_on_bucket_error": Param(False, type="boolean", title="Fail on bucket error",
                                      description="Fail the run (after publishing the report) when any bucket "
                                                  "could not be read."),
        "date_format": Param("iso", type="string", minLength=1, maxLength=64, title="Date format",
                             description="Dates in report.txt/csv/html and the UI: iso (2020-12-29), us "
                                         "(12/29/2020), eu (29/12/2020) or a strftime pattern (%d.%m.%Y). "
                                         "report.json stays ISO 8601 UTC."),
        "show_time": Param(True, type="boolean", title="Show time",
                           description="Show the time of day (UTC) next to dates."),
        "aws_conn_id": aws_conn_param(),
    },
)
def s3_storage_report():
    @task
    def list_buckets() -> dict:
        from include.storage_report import tasks as storage_report_tasks

        ctx = get_current_context()
        return storage_report_tasks.list_buckets(ctx["params"], ctx["run_id"])

    @task
    def plan_shards(bucket_summary: dict) -> list[dict]:
        from include.storage_report import tasks as storage_report_tasks

        ctx = get_current_context()
        return storage_report_tasks.plan_shards(ctx["params"], ctx["run_id"])

    @task(max_active_tis_per_dagrun=8)
    def summarize_shard(shard: dict) -> list[dict]:
        from include.storage_report import tasks as storage_report_tasks

        ctx = get_current_context()
        now = ctx.get("logical_date") or ctx["dag_run"].run_after
        return storage_report_tasks.summarize_shard(shard, ctx["params"], now)

    @task(trigger_rule="none_failed")  # no bucket matched: zero shards, still an (empty) report
    def aggregate(shard_results: list[list[dict]]) -> dict:
        from include.storage_report import tasks as storage_report_tasks

        ctx = get_current_context()
        return storage_report_tasks.aggregate(shard_results, ctx["params"], ctx["run_id"])

    @task
    def publish(totals: dict) -> dict:
        from include.storage_report import tasks as storage_report_tasks

        ctx = get_current_context()
        return storage_report_tasks.publish(ctx["params"], ctx["run_id"])

    shards = plan_shards(list_buckets())
    publish(aggregate(summarize_shard.expand(shard=shards)))


s3_storage_report()
