"""Every setting of ``s3_storage_report``: the trigger form's params and the Variable ``s3ops_storage_report``.

Shard sizes and list prices are deployment settings (Variable keys ``shard_objects``, ``shard_parts``,
``pricing``), not environment variables: they reach every worker the same way.

The checks beyond JSON schema are here too, and ``s3ops report`` uses them for its options: a bucket glob
or region that can match nothing by its very form (empty, an unclosed ``[``, a character no bucket name
holds) is a mistake and refused with the reason; one that is fine but matches no bucket is not an error
(the report names it, see ``include.storage_report.summarize.unmatched``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

from include.aws.shards import DEFAULT_PARTS_PER_BUCKET, DEFAULT_SHARD_OBJECTS
from include.core.dates import check_date_format
from include.core.settings import COMMON, Setting, Settings
from include.core.units import SIZE_UNITS
from include.storage_report.pricing import REGION_PATTERN, STORAGE_CLASSES, check_pricing

#: Characters a bucket name can hold: a-z 0-9 . - today, A-Z and _ in legacy us-east-1 names too.
NAME_CHARS = frozenset(string.ascii_letters + string.digits + ".-_")
#: The most bucket globs, and the most regions, one report may filter by (each named in the report when it
#: matches nothing): enough for any real filter, few enough that the report stays small.
MAX_FILTERS = 100
#: The longest bucket glob: legacy us-east-1 names have up to 255 characters, and a set ([a-z]) is longer
#: than the character it matches.
MAX_PATTERN_LENGTH = 1024
#: The longest region name accepted (today's longest, ap-southeast-4 or us-gov-west-1, have 14 and 13).
MAX_REGION_LENGTH = 64


def _set_problem(body: str, negated: bool) -> str | None:
    """Why the set ``[body]`` (``[!body]`` when ``negated``) is a mistake, or None: a reversed range
    (fnmatch drops it), or no member a bucket name can hold. Ranges are read as :mod:`fnmatch` reads
    them (``a-z``; a ``-`` first or last is itself)."""
    usable = False
    k = 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            low, high = body[k], body[k + 2]
            if low > high:
                return f"the range {low}-{high} in [{body}] is reversed (write {high}-{low})"
            usable |= any(low <= c <= high for c in NAME_CHARS)
            k += 3
        else:
            usable |= body[k] in NAME_CHARS
            k += 1
    if not usable and not negated:
        return f"the set [{body}] holds no character a bucket name can hold (letters, digits, '.', '-', '_')"
    return None


def glob_problem(pattern: str) -> str | None:
    """Why the bucket glob ``pattern`` can match no bucket name whatever buckets exist, or None.
    ``[`` opens a set exactly as :mod:`fnmatch` reads it (``]`` right after ``[`` or ``[!`` is a member)."""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "[":
            negated = pattern.startswith("!", i + 1)
            start = i + 2 if negated else i + 1
            end = pattern.find("]", start + 1 if pattern.startswith("]", start) else start)
            if end < 0:
                return f"the '[' at position {i + 1} is never closed (a set is written [abc], [a-z] or [!0-9])"
            problem = _set_problem(pattern[start:end], negated)
            if problem:
                return problem
            i = end + 1
            continue
        if c not in NAME_CHARS and c not in "*?":
            return f"it holds {c!r}, which no bucket name holds (letters, digits, '.', '-', '_')"
        i += 1
    return None


def check_filter_list(values: Sequence[str], where: str) -> None:
    """ValueError, in one line naming ``where``, for more than :data:`MAX_FILTERS` values or one given twice
    (the command line's repeated options; the settings' schema says the same)."""
    if len(values) > MAX_FILTERS:
        raise ValueError(f"{where}: {len(values)} values given, at most {MAX_FILTERS}")
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{where} {value[:40]!r} is given twice: give it once")
        seen.add(value)


def check_patterns(patterns: Sequence[str], where: str = "--bucket") -> None:
    """ValueError, in one line naming ``where``, for too many or repeated globs (:func:`check_filter_list`)
    or the first empty, too long or unusable one."""
    check_filter_list(patterns, where)
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"{where} {pattern!r} is empty: give a bucket name or a glob such as logs-*")
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise ValueError(f"{where} {pattern[:40]!r}… has {len(pattern)} characters, at most {MAX_PATTERN_LENGTH}")
        problem = glob_problem(pattern)
        if problem:
            raise ValueError(f"{where} {pattern!r} can match no bucket: {problem}")


def check_regions(regions: Sequence[str], where: str = "--region") -> None:
    """ValueError, in one line naming ``where``, for too many or repeated regions (:func:`check_filter_list`)
    or the first value that is not a region name."""
    check_filter_list(regions, where)
    for region in regions:
        if not isinstance(region, str) or not region:
            raise ValueError(f"{where} {region!r} is empty: give a region name such as eu-west-1")
        if len(region) > MAX_REGION_LENGTH or not re.fullmatch(REGION_PATTERN, region):
            raise ValueError(f"{where} {region!r} is not a region name such as eu-west-1 (lower case)")


#: No schema of its own: every rule (an object, its keys, region names, storage classes, 0 <= price <=
#: MAX_PRICE) is include.storage_report.pricing.check_pricing's, the one ``--pricing`` files go through.
PRICING: dict[str, object] = {}

SETTINGS = Settings("s3_storage_report", "storage_report", (
    Setting("buckets", {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": MAX_PATTERN_LENGTH},
                        "maxItems": MAX_FILTERS, "uniqueItems": True}, [], "Buckets",
            f"Bucket names or glob patterns (logs-*, data-202?), at most {MAX_FILTERS}, each once; empty = every "
            "bucket.", extra_check=check_patterns),
    Setting("regions", {"type": "array", "items": {"type": "string", "pattern": REGION_PATTERN,
                                                   "maxLength": MAX_REGION_LENGTH},
                        "maxItems": MAX_FILTERS, "uniqueItems": True}, [],
            "Regions", f"Only buckets in these regions (e.g. eu-west-1), at most {MAX_FILTERS}, each once; empty = "
            "all.", extra_check=check_regions),
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
            '{storage class: USD per GB-month}}}.', form=False, extra_check=check_pricing),
    *COMMON,
))
