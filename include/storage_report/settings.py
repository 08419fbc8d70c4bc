"""Every setting of ``s3_storage_report``: the trigger form's params and the Variable ``s3ops_storage_report``.

Shard sizes and list prices are deployment settings (Variable keys ``shard_objects``, ``shard_parts``,
``pricing``), not environment variables: they reach every worker the same way.
"""

from __future__ import annotations

from include.aws.shards import DEFAULT_PARTS_PER_BUCKET, DEFAULT_SHARD_OBJECTS
from include.core.dates import check_date_format
from include.core.settings import COMMON, Setting, Settings
from include.core.units import SIZE_UNITS
from include.storage_report.pricing import STORAGE_CLASSES

PRICING = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "as_of": {"type": "string"},
        "source": {"type": "string"},
        "prices": {"type": "object", "additionalProperties": {
            "type": "object", "additionalProperties": {"type": "number", "minimum": 0}}},
    },
}

SETTINGS = Settings("s3_storage_report", "storage_report", (
    Setting("buckets", {"type": "array", "items": {"type": "string", "minLength": 1}}, [], "Buckets",
            "Bucket names or glob patterns (logs-*, data-202?); empty = every bucket."),
    Setting("regions", {"type": "array", "items": {"type": "string", "pattern": "^[a-z]{2}(-[a-z]+)+-[0-9]+$"}}, [],
            "Regions", "Only buckets in these regions (e.g. eu-west-1); empty = all."),
    Setting("storage_classes", {"type": "array", "items": {"type": "string", "enum": list(STORAGE_CLASSES)}}, [],
            "Storage classes", "Count only objects in these storage classes; empty = all."),
    Setting("size_unit", {"type": "string", "enum": list(SIZE_UNITS)}, "auto", "Size unit",
            "Unit of total_size and the tables: KB = 1000 B, KiB = 1024 B; auto picks per bucket. Byte counts "
            "are always exact."),
    Setting("include_versions", {"type": "boolean"}, False, "Include versions",
            "Also count noncurrent versions and delete markers (ListObjectVersions instead of ListObjectsV2)."),
    Setting("source", {"type": "string", "enum": ["listing", "cloudwatch", "inventory"]}, "listing", "Source",
            "listing: exact, lists every object. cloudwatch: daily BucketSizeBytes/NumberOfObjects metrics, no "
            "listing, approximate. inventory: exact as of the newest verified S3 Inventory (its date is in the "
            "report), no listing."),
    Setting("inventory_fallback", {"type": "string", "enum": ["listing", "error"]}, "listing", "Without inventory",
            "With source inventory, a bucket without a usable inventory is listed (listing) or reported with the "
            "reason (error)."),
    Setting("date_format", {"type": "string", "minLength": 1, "maxLength": 64}, "iso", "Date format",
            "Dates in report.txt/csv/html and the UI: iso (2020-12-29), us (12/29/2020), eu (29/12/2020) or a "
            "strftime pattern (%d.%m.%Y). report.json stays ISO 8601 UTC.",
            extra_check=lambda value, where: check_date_format(value)),
    Setting("show_time", {"type": "boolean"}, True, "Show time", "Show the time of day (UTC) next to dates."),
    Setting("fail_on_bucket_error", {"type": "boolean"}, False, "Fail on bucket error",
            "Fail the run (after publishing the report) when any bucket could not be read."),
    Setting("shard_objects", {"type": "integer", "minimum": 1, "maximum": 10**9}, DEFAULT_SHARD_OBJECTS,
            "Shard threshold", "A bucket with more objects than this is split into key ranges listed in parallel.",
            form=False),
    Setting("shard_parts", {"type": "integer", "minimum": 1, "maximum": 1024}, DEFAULT_PARTS_PER_BUCKET,
            "Parts per bucket", "At most this many key ranges per big bucket.", form=False),
    Setting("pricing", PRICING, {}, "Prices",
            'List-price overrides merged over the built-in table: {"as_of", "source", "prices": {region: '
            '{storage class: USD per GB-month}}}.', form=False),
    *COMMON,
))
