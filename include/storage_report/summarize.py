"""The storage report: every bucket the credentials can see, with counts, sizes, classes and costs.

Pipeline (the DAG ``s3_storage_report`` runs each step as a task; the command line runs them in one
process, :mod:`include.storage_report.cli`): :func:`list_buckets` → :func:`plan` (shards, see ``include.aws.shards``) → :func:`summarize_part`
for every part of every shard → :func:`build_report` → ``include.storage_report.render``.

Listing keeps running totals only (constant memory). Sizes are bytes; units appear only in
``total_size`` and the rendered tables. A bucket that cannot be read (4xx: AccessDenied, NoSuchBucket…)
is reported with its ``error`` and null counts; other failures raise so the task is retried. What counts
as a bucket's own error is the caller's (``as_bucket_error``): the command line, which has no retries
after botocore's, reports every failed request of a bucket as its error (:func:`final_bucket_error`).
The command line (``s3ops report``) is :mod:`include.storage_report.cli`.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from include.aws import shards
from include.core.dates import check_date_format
from include.core.errors import error_code
from include.core.progress import Progress
from include.core.times import format_time
from include.core.units import check_unit, format_size
from include.storage_report.aggregate import _money, _sum_counts, region_groups, sized
from include.storage_report.pricing import PriceTable

if TYPE_CHECKING:  # the boto3 stubs are a dev dependency
    from types_boto3_s3 import S3Client

log = logging.getLogger(__name__)

SOURCES = ("listing", "cloudwatch", "inventory")
CLOUDWATCH_BUCKETS_PER_SHARD = 50  # a few metric requests per bucket
#: CloudWatch ``StorageType`` dimension → storage class.
CLOUDWATCH_STORAGE_TYPES = {
    "StandardStorage": "STANDARD",
    "IntelligentTieringFAStorage": "INTELLIGENT_TIERING",
    "IntelligentTieringIAStorage": "INTELLIGENT_TIERING",
    "IntelligentTieringAAStorage": "INTELLIGENT_TIERING",
    "IntelligentTieringAIAStorage": "INTELLIGENT_TIERING",
    "IntelligentTieringDAAStorage": "INTELLIGENT_TIERING",
    "StandardIAStorage": "STANDARD_IA",
    "OneZoneIAStorage": "ONEZONE_IA",
    "GlacierInstantRetrievalStorage": "GLACIER_IR",
    "GlacierStorage": "GLACIER",
    "DeepArchiveStorage": "DEEP_ARCHIVE",
    "ReducedRedundancyStorage": "REDUCED_REDUNDANCY",
    "ExpressOneZone": "EXPRESS_ONEZONE",
}


#: What a failed S3 request (one of :func:`s3_failures`) means for its bucket: the bucket's ``error``
#: text, or None to raise it (a task's retry may succeed).
ErrorText = Callable[[BaseException], "str | None"]


def s3_failures() -> tuple[type[Exception], ...]:
    """The exceptions of a failed S3 request: an error response (``ClientError``), a request botocore
    gave up on (``BotoCoreError``: connection, timeout…) and a response it could not parse
    (``ResponseParserError``, which is not a ``BotoCoreError``)."""
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    return ClientError, BotoCoreError, ResponseParserError


class BucketError(Exception):
    """A bucket could not be read; the report keeps its ``"<code>: <message>"``."""


def _s3_iso(value: str) -> str:
    """S3's ``…T04:28:13.000Z`` → ``…T04:28:13Z`` (the report's ISO 8601 UTC form)."""
    return value[:19] + "Z" if len(value) >= 19 else value


def bucket_error(exc: BaseException) -> str | None:
    """``"<code>: <message>"`` when ``exc`` means this bucket cannot be read (a 4xx from S3), else None."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if not 400 <= status < 500:
        return None
    err = response.get("Error", {})
    code = error_code(exc) or str(status)
    if code == "403":
        code = "AccessDenied"
    elif code == "404":
        code = "NoSuchBucket"
    message = err.get("Message") or {"AccessDenied": "Access Denied", "NoSuchBucket": "The bucket does not exist"}.get(
        code, "request refused")
    return f"{code}: {message}"


def final_bucket_error(exc: BaseException) -> str | None:
    """A failed request of a bucket as its error, when no retry follows (the command line, a task's last
    try) or none is worth it (:func:`add_multipart_uploads`: a retry would list the bucket again): a 4xx as
    :func:`bucket_error` writes it, a 5xx that botocore's retries did not get past
    (``InternalError: …``), or a request the endpoint broke off or answered unreadably
    (``ConnectionClosedError: …``, ``ReadTimeoutError: …``, ``ResponseParserError: …``).

    None for what is not about one bucket, so that it fails the run instead of passing for a report
    whose every bucket is in error: an endpoint that cannot be reached at all (``EndpointConnectionError``,
    a connect timeout, TLS), missing or failing credentials, and a bug (``ParamValidationError``)."""
    from botocore.exceptions import ClientError, FlexibleChecksumError, HTTPClientError, IncompleteReadError
    from botocore.parsers import ResponseParserError

    text = bucket_error(exc)
    if text is None and isinstance(exc, ClientError):
        err, meta = exc.response.get("Error", {}), exc.response.get("ResponseMetadata", {})
        text = f"{err.get('Code') or meta.get('HTTPStatusCode') or 'Error'}: {err.get('Message') or 'request failed'}"
    elif text is None and isinstance(exc, (HTTPClientError, IncompleteReadError, FlexibleChecksumError,
                                           ResponseParserError)):
        text = f"{type(exc).__name__}: {exc}"
    if text is None:
        return None
    text = re.sub(r"\s+", " ", text).strip()  # a parser error quotes the response, line ends and all
    return text if len(text) <= 300 else text[:300] + "…"


# ---------------------------------------------------------------------------------------------- buckets


def matches(name: str, patterns: Sequence[str]) -> bool:
    """Glob match (``*``, ``?``, ``[…]``, ``[!…]``), case-sensitive like bucket names; no patterns = everything."""
    return not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)


def unmatched(buckets: Sequence[dict[str, Any]], patterns: Sequence[str], regions: Sequence[str]) -> dict[str, Any]:
    """The report's ``filters`` block: the filters as given and those that matched none of ``buckets``."""
    return {
        "buckets": list(patterns), "regions": list(regions),
        "unmatched_buckets": [p for p in patterns if not any(fnmatch.fnmatchcase(b["name"], p) for b in buckets)],
        "unmatched_regions": [r for r in regions if not any(b["region"] == r for b in buckets)],
    }


def bucket_region(client: S3Client, bucket: str) -> str:
    """The bucket's region from HeadBucket's ``x-amz-bucket-region`` (S3 sends it on 403/301 too)."""
    from botocore.exceptions import ClientError

    try:
        response = client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        region = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
        if region:
            cast("dict[str, Any]", exc.response).setdefault("BucketRegion", region)  # ours, for the caller
        raise
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    return headers.get("x-amz-bucket-region") or response.get("BucketRegion") or "us-east-1"


def list_buckets(
    client: S3Client, patterns: Sequence[str] = (), regions: Sequence[str] = (), *, threads: int = 8,
    as_bucket_error: ErrorText = bucket_error,
) -> list[dict[str, Any]]:
    """``[{"name", "creation_date", "region", "error"}]`` for every visible bucket matching ``patterns``
    and ``regions`` (ListBuckets paginated; ``client`` should be a us-east-1 client so creation dates
    have us-east-1 semantics). A bucket whose region cannot be read keeps its error (``as_bucket_error``)
    and stays in the report, under a region filter too: it may be in one of them, and a report that
    dropped it would say nothing of a bucket it could not read."""
    from botocore.exceptions import ClientError

    found: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"MaxBuckets": 10_000}  # unpaginated, ListBuckets fails for quotas over 10,000
    while True:
        page = client.list_buckets(**kwargs)
        for b in page.get("Buckets", []):
            if matches(b["Name"], patterns):
                found.append({"name": b["Name"], "creation_date": format_time(b["CreationDate"], "seconds"),
                              "region": b.get("BucketRegion"), "error": None})
        token = page.get("ContinuationToken")
        if not token:
            break
        kwargs["ContinuationToken"] = token

    def locate(bucket: dict[str, Any]) -> dict[str, Any]:
        try:
            bucket["region"] = bucket_region(client, bucket["name"])
        except s3_failures() as exc:
            text = as_bucket_error(exc)
            if text is None:
                raise
            if isinstance(exc, ClientError):
                bucket["region"] = exc.response.get("BucketRegion") or bucket["region"]
            bucket["error"] = text
        return bucket

    with ThreadPoolExecutor(threads) as pool:
        located = list(pool.map(locate, found))
    return sorted((b for b in located if not regions or b["region"] in regions or b["region"] is None),
                  key=lambda b: b["name"])


# ------------------------------------------------------------------------------------------------ totals


@dataclass
class Totals:
    """Running totals of one key range (or a whole bucket once merged); JSON-able via to/from_dict."""

    object_count: int | None = 0  # None: unknown (CloudWatch with a storage-class filter)
    total_bytes: int = 0
    last_modified: str | None = None
    classes: dict[str, list[int]] = field(default_factory=dict)  # class -> [objects, bytes] (current)
    noncurrent: dict[str, list[int]] = field(default_factory=dict)  # class -> [versions, bytes]
    delete_markers: int = 0
    multipart_uploads: int = 0
    multipart_bytes: int = 0
    multipart_error: str | None = None  # the uploads could not be listed: unknown, not zero
    pages: int = 0

    def add_object(self, size: int, last_modified: str, storage_class: str) -> None:
        self.object_count += 1  # type: ignore[operator]  # TODO(types): None only for CloudWatch totals
        self.total_bytes += size
        if self.last_modified is None or last_modified > self.last_modified:
            self.last_modified = last_modified
        counts = self.classes.setdefault(storage_class, [0, 0])
        counts[0] += 1
        counts[1] += size

    def add_noncurrent(self, size: int, storage_class: str) -> None:
        counts = self.noncurrent.setdefault(storage_class, [0, 0])
        counts[0] += 1
        counts[1] += size

    def merge(self, other: Totals) -> Totals:
        self.object_count = None if self.object_count is None or other.object_count is None \
            else self.object_count + other.object_count
        self.total_bytes += other.total_bytes
        if other.last_modified and (self.last_modified is None or other.last_modified > self.last_modified):
            self.last_modified = other.last_modified
        for mine, theirs in ((self.classes, other.classes), (self.noncurrent, other.noncurrent)):
            for cls, (n, b) in theirs.items():
                counts = mine.setdefault(cls, [0, 0])
                counts[0] += n
                counts[1] += b
        self.delete_markers += other.delete_markers
        self.multipart_uploads += other.multipart_uploads
        self.multipart_bytes += other.multipart_bytes
        self.multipart_error = self.multipart_error or other.multipart_error
        self.pages += other.pages
        return self

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Totals:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def _version_pages(client: S3Client, bucket: str, after: str | None) -> Iterator[dict[str, Any]]:
    """ListObjectVersions pages from the first key after ``after`` (a key, see include.aws.shards)."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "MaxKeys": 1000}
    if after is not None:
        kwargs["KeyMarker"] = after
    while True:
        page = dict(client.list_object_versions(**kwargs))
        yield page
        if not page.get("IsTruncated"):
            return
        kwargs["KeyMarker"] = page["NextKeyMarker"]
        kwargs["VersionIdMarker"] = page.get("NextVersionIdMarker", "")


def count_range(
    client: S3Client, bucket: str, after: str | None, upto: str | None, *, include_versions: bool = False,
    storage_classes: Sequence[str] = (), progress_every: float | None = None,
) -> Totals:
    """Totals of the keys ``after < key <= upto`` (current objects; with ``include_versions`` also
    noncurrent versions and delete markers). ``storage_classes`` limits what is counted."""
    from include.aws.listing import iter_objects

    totals = Totals()
    progress = Progress(f"listing {bucket} ({after or '…'}, {upto or '…'}]", unit="entries", every=progress_every,
                        log=log, detail=lambda: f"{totals.pages:,} pages, {totals.object_count or 0:,} objects, "
                                                f"{format_size(totals.total_bytes)}")

    def page_listed(entries: int) -> None:
        totals.pages += 1
        progress.add(entries)
    wanted = set(storage_classes)
    if not include_versions:
        for obj in iter_objects(client, bucket, start_after=after, end_before=shards.end_before(upto),
                                on_page=page_listed):
            if not wanted or obj.storage_class in wanted:
                totals.add_object(obj.size, obj.last_modified, obj.storage_class)
    else:
        for page in _version_pages(client, bucket, after):
            versions, markers = page.get("Versions", []), page.get("DeleteMarkers", [])
            past_end = False
            for v in versions:
                key = v["Key"]
                if not shards.in_range(key, after, upto):
                    past_end |= upto is not None and key > upto
                    continue
                cls = v.get("StorageClass", "STANDARD")
                if wanted and cls not in wanted:
                    continue
                last_modified = v["LastModified"]
                if not isinstance(last_modified, str):
                    last_modified = format_time(last_modified.replace(microsecond=0))
                if v.get("IsLatest"):
                    totals.add_object(int(v.get("Size", 0)), last_modified, cls)
                else:
                    totals.add_noncurrent(int(v.get("Size", 0)), cls)
            for m in markers:
                if shards.in_range(m["Key"], after, upto):
                    totals.delete_markers += 1
                else:
                    past_end |= upto is not None and m["Key"] > upto
            page_listed(len(versions) + len(markers))
            if past_end:
                break
    progress.finish()
    return totals


def count_multipart_uploads(client: S3Client, bucket: str, storage_classes: Sequence[str] = ()) -> tuple[int, int]:
    """(incomplete multipart uploads, bytes of their uploaded parts): ListMultipartUploads + ListParts.
    An upload completed or aborted between the two requests (ListParts: ``NoSuchUpload``) no longer
    costs anything: it is not counted."""
    count = size = 0
    kwargs: dict[str, Any] = {"Bucket": bucket}
    while True:
        page = client.list_multipart_uploads(**kwargs)
        for upload in page.get("Uploads", []):
            if storage_classes and upload.get("StorageClass", "STANDARD") not in storage_classes:
                continue
            part_kwargs: dict[str, Any] = {"Bucket": bucket, "Key": upload["Key"], "UploadId": upload["UploadId"]}
            upload_size = 0
            try:
                while True:
                    parts = client.list_parts(**part_kwargs)
                    upload_size += sum(int(p.get("Size", 0)) for p in parts.get("Parts", []))
                    if not parts.get("IsTruncated"):
                        break
                    part_kwargs["PartNumberMarker"] = parts["NextPartNumberMarker"]
            except s3_failures() as exc:
                if error_code(exc) != "NoSuchUpload":
                    raise
                continue
            count += 1
            size += upload_size
        if not page.get("IsTruncated"):
            return count, size
        kwargs["KeyMarker"] = page.get("NextKeyMarker", "")
        kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker", "")


def add_multipart_uploads(client: S3Client, bucket: str, totals: Totals, storage_classes: Sequence[str] = ()) -> None:
    """Count the bucket's incomplete multipart uploads into ``totals``. Their listing needs permissions of
    its own (``s3:ListBucketMultipartUploads``, ``s3:ListMultipartUploadParts``): refused (any 4xx), or
    failing for this bucket after botocore's retries (a 5xx, an answer it cannot parse), the uploads are
    unknown (``totals.multipart_error``), not the bucket's numbers, which were listed (a retry of the task
    would list them all again)."""
    try:
        totals.multipart_uploads, totals.multipart_bytes = count_multipart_uploads(client, bucket, storage_classes)
    except s3_failures() as exc:
        refused = final_bucket_error(exc)
        if refused is None:
            raise
        totals.multipart_error = f"{refused} (ListMultipartUploads/ListParts)"
        log.warning("bucket %s: incomplete multipart uploads cannot be listed: %s", bucket, refused)


def summarize_part(
    client: S3Client, part: shards.Part, *, include_versions: bool = False, storage_classes: Sequence[str] = (),
    as_bucket_error: ErrorText = bucket_error,
) -> dict[str, Any]:
    """``{"bucket", "part", "of", "totals", "error"}`` for one key range; part 0 also counts the bucket's
    incomplete multipart uploads. A failed request that ``as_bucket_error`` names (by default a 4xx)
    becomes the part's ``error``; anything else raises."""

    result: dict[str, Any] = {"bucket": part["bucket"], "part": part["part"], "of": part["of"], "totals": None,
                              "error": None}
    if part.get("note"):
        result["note"] = part["note"]  # type: ignore[typeddict-item]
    try:
        totals = count_range(client, part["bucket"], part["after"], part["upto"],
                             include_versions=include_versions, storage_classes=storage_classes)
        if part["part"] == 0:
            add_multipart_uploads(client, part["bucket"], totals, storage_classes)
        result["totals"] = totals.to_dict()
    except s3_failures() as exc:
        result["error"] = as_bucket_error(exc)
        if result["error"] is None:
            raise
        log.warning("bucket %s cannot be read: %s", part["bucket"], result["error"])
    return result


# ------------------------------------------------------------------------------------------- cloudwatch


def metric_day(now: datetime) -> datetime:
    """The newest day CloudWatch's daily S3 metrics can be complete for: the day before ``now``."""
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)


def summarize_cloudwatch(cloudwatch: Any, bucket: str, now: datetime, *, storage_classes: Sequence[str] = (),
                         lookback_days: int = 3, as_bucket_error: ErrorText = bucket_error) -> dict[str, Any]:
    """A part result from the daily ``BucketSizeBytes`` (per StorageType) and ``NumberOfObjects``
    metrics, all of one day: the newest ``BucketSizeBytes`` has in the ``lookback_days`` days before ``now``'s
    day (a storage type without a point that day holds nothing then; no count that day is an unknown count).
    Object counts per
    class do not exist there; ``totals["metric_date"]`` is the day the numbers are for. A failed request
    that ``as_bucket_error`` names is the bucket's error (by default a 4xx); anything else raises."""
    end = metric_day(now) + timedelta(days=1)
    start = end - timedelta(days=lookback_days)
    result: dict[str, Any] = {"bucket": bucket, "part": 0, "of": 1, "totals": None, "error": None}

    def daily(metric: str, storage_type: str) -> dict[str, float]:
        """The metric's daily averages by day (``YYYY-MM-DD``, UTC) in the window."""
        points = cloudwatch.get_metric_statistics(
            Namespace="AWS/S3", MetricName=metric, StartTime=start, EndTime=end, Period=86400, Statistics=["Average"],
            Dimensions=[{"Name": "BucketName", "Value": bucket}, {"Name": "StorageType", "Value": storage_type}],
        ).get("Datapoints", [])
        return {p["Timestamp"].astimezone(UTC).strftime("%Y-%m-%d"): float(p["Average"]) for p in points}

    try:
        storage_types: set[str] = set()
        kwargs: dict[str, Any] = {"Namespace": "AWS/S3", "MetricName": "BucketSizeBytes",
                                  "Dimensions": [{"Name": "BucketName", "Value": bucket}]}
        while True:
            page = cloudwatch.list_metrics(**kwargs)
            for metric in page.get("Metrics", []):
                storage_types |= {d["Value"] for d in metric["Dimensions"] if d["Name"] == "StorageType"}
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
        sizes = {storage_type: daily("BucketSizeBytes", storage_type) for storage_type in sorted(storage_types)
                 if (cls := CLOUDWATCH_STORAGE_TYPES.get(storage_type)) is not None
                 and (not storage_classes or cls in storage_classes)}
        # NumberOfObjects exists for all storage types together only: with a class filter the count
        # of the filtered classes is unknown (null), never the count of every class.
        objects = {} if storage_classes else daily("NumberOfObjects", "AllStorageTypes")
        # One day for every number: the newest the sizes have (NumberOfObjects may be published first: its
        # day would make every size 0). A storage type without a size that day held nothing then (S3 reports
        # no empty type): its older point would count what has gone since. No count that day: unknown.
        day = max((d for points in sizes.values() for d in points), default=None) or max(objects, default=None)
        totals = Totals()
        for storage_type, points in sizes.items():
            if day in points:
                counts = totals.classes.setdefault(CLOUDWATCH_STORAGE_TYPES[storage_type], [0, 0])
                counts[1] += int(points[day])
                totals.total_bytes += int(points[day])
        # no point at all: an empty bucket (S3 reports none for it), 0 objects; points but no count that day: unknown
        totals.object_count = int(objects[day]) if day in objects else (0 if day is None else None)
        data = totals.to_dict()
        if storage_classes:
            data["object_count"] = None
        data["metric_date"] = day
        result["totals"] = data
    except s3_failures() as exc:  # CloudWatch's failures are botocore's, as S3's are
        result["error"] = as_bucket_error(exc)
        if result["error"] is None:
            raise
    return result


# --------------------------------------------------------------------------------------------- the plan


def plan(
    client_for: Callable[[str | None], Any], buckets: Sequence[dict[str, Any]], *, max_shards: int,
    source: str = "listing", threshold: int | None = None, parts_per_bucket: int | None = None, threads: int = 8,
    include_versions: bool = False, as_bucket_error: ErrorText = bucket_error,
) -> list[shards.Shard]:
    """Shards over the readable ``buckets`` (``client_for(region)`` gives a client). With ``source``
    ``cloudwatch`` every bucket is one part; with ``inventory`` parts are groups of inventory data
    files (planned by include.storage_report.inventory, not here). A bucket whose probe fails with what
    ``as_bucket_error`` names gets one part (its listing will then record the error); so does a big
    bucket whose cut points cannot be read. With ``include_versions`` a bucket's size is what
    ListObjectVersions lists (versions and delete markers), and its cuts are keys of those."""

    if source not in ("listing", "cloudwatch"):
        raise ValueError(f"plan() lists or reads CloudWatch; source {source!r} is planned by its own module")
    threshold = threshold or shards.DEFAULT_SHARD_OBJECTS
    parts_per_bucket = parts_per_bucket or shards.DEFAULT_PARTS_PER_BUCKET
    readable = [b for b in buckets if not b.get("error")]
    if source == "cloudwatch":
        return shards.pack([shards.parts_for(b["name"], b["region"], []) for b in readable], max_shards,
                           sizes=[1] * len(readable), capacity=CLOUDWATCH_BUCKETS_PER_SHARD)

    # A bucket whose probe's first page is full is most likely big: beside the rest of its probe (round
    # trips overlap), its prefixes are walked, its key ranges cut and their heads read, which can prove it
    # big pages before the probe would reach ``threshold``. A bucket whose probe ended meanwhile (small)
    # skips what is left of that.
    speculation: dict[str, Future[tuple[list[str] | None, list[str] | None, list[tuple[str, int]]]]] = {}
    probed: set[str] = set()

    def speculate(client: Any, name: str) -> tuple[list[str] | None, list[str] | None, list[tuple[str, int]]]:
        if name in probed:  # it waited in the queue until its probe ended
            return None, None, []
        prefixes = shards.prefix_tree(client, name, parts_per_bucket, versions=include_versions)
        if name in probed:
            return prefixes, None, []
        cuts = shards.boundaries(client, name, parts_per_bucket, prefixes=prefixes, versions=include_versions)
        if name in probed:
            return prefixes, cuts, []
        return prefixes, cuts, shards.range_heads(client, name, cuts)

    def probe(bucket: dict[str, Any]) -> int | None:
        client, name = client_for(bucket["region"]), bucket["name"]

        def walk() -> None:
            speculation[name] = walker.submit(speculate, client, name)

        def proven_big(seen: int, last_key: str) -> bool:
            ahead = speculation.get(name)
            if ahead is None or not ahead.done() or ahead.exception() is not None:
                return False
            return shards.count_floor(seen, last_key, ahead.result()[2]) > threshold
        try:
            return shards.probe_count(client, name, threshold, on_more=walk, proven_big=proven_big,
                                      versions=include_versions)
        except s3_failures() as exc:
            if as_bucket_error(exc) is None:
                raise
            return 0  # one part; its listing records the error
        finally:
            probed.add(name)

    def split(args: tuple[dict[str, Any], bool]) -> list[shards.Part]:
        bucket, is_big = args
        cuts: list[str] = []
        if is_big:
            ahead = speculation.get(bucket["name"])
            # what the speculation found, unless it failed: then only what is needed now may fail the plan
            prefixes, made, _ = (None, None, []) if ahead is None or ahead.exception() else ahead.result()
            try:
                cuts = made if made is not None and budget == parts_per_bucket else shards.boundaries(
                    client_for(bucket["region"]), bucket["name"], budget, prefixes=prefixes,
                    versions=include_versions)
            except s3_failures() as exc:
                if as_bucket_error(exc) is None:
                    raise
            log.info("%s holds more than %d objects: %d key ranges", bucket["name"], threshold, len(cuts) + 1)
        return shards.parts_for(bucket["name"], bucket["region"], cuts)

    walker = ThreadPoolExecutor(threads)
    try:
        with ThreadPoolExecutor(threads) as pool:
            counts = list(pool.map(probe, readable))
        big = [c is None for c in counts]
        budget = shards.parts_budget(sum(big), max_shards, parts_per_bucket)
        with ThreadPoolExecutor(threads) as pool:
            parts = list(pool.map(split, zip(readable, big, strict=True)))
    finally:
        walker.shutdown(cancel_futures=True)  # what is queued for buckets that proved small is not needed
    sizes = [threshold if c is None else c for c in counts]
    return shards.pack(parts, max_shards, sizes=sizes, capacity=threshold)


# ------------------------------------------------------------------------------------------- the report


def bucket_entry(
    bucket: dict[str, Any], results: Sequence[dict[str, Any]], prices: PriceTable, size_unit: str,
    include_versions: bool,
) -> dict[str, Any]:
    """One ``buckets[]`` entry of report.json from the bucket and the results of all its parts."""
    entry: dict[str, Any] = {
        "name": bucket["name"], "creation_date": bucket["creation_date"], "region": bucket["region"],
        "object_count": None, "total_bytes": None, "total_size": None, "total_size_unit": None,
        "last_modified": None,
        "storage_classes": {}, "estimated_monthly_cost_usd": None,
        "noncurrent_versions": None, "delete_markers": None,
        "incomplete_multipart_uploads": None, "error": bucket.get("error"),
    }
    inventory = next((r["inventory"] for r in results if r.get("inventory")), None)
    note = next((r["note"] for r in results if r.get("note")), None)
    if inventory is not None:
        entry["inventory"] = inventory
    if note is not None:
        entry["inventory_note"] = note
    if entry["error"] is None:
        errors = [r["error"] for r in results if r.get("error")]
        expected = results[0]["of"] if results else 1
        if errors:
            entry["error"] = errors[0]
        elif sorted(r["part"] for r in results) != list(range(expected)):
            entry["error"] = f"Incomplete: {len(results)} of {expected} key ranges were listed"
    if entry["error"] is not None:
        return entry
    totals = Totals()
    for r in results:
        totals.merge(Totals.from_dict(r["totals"]))
    region = bucket["region"]
    cloudwatch = any("metric_date" in r["totals"] for r in results)
    classes = {}
    cost = 0.0
    for cls, (n, size) in sorted(totals.classes.items()):
        cls_cost = prices.monthly_cost(region, cls, size)
        cost += cls_cost
        classes[cls] = {"object_count": None if cloudwatch else n, "bytes": size,
                        "estimated_monthly_cost_usd": _money(cls_cost)}
    for cls, (_, size) in totals.noncurrent.items():
        cost += prices.monthly_cost(region, cls, size)
    cost += prices.monthly_cost(region, "STANDARD", totals.multipart_bytes)
    entry.update(
        object_count=totals.object_count,
        total_bytes=totals.total_bytes,
        **sized(totals.total_bytes, size_unit),
        last_modified=_s3_iso(totals.last_modified) if totals.last_modified else None,
        storage_classes=classes,
        estimated_monthly_cost_usd=_money(cost),
        incomplete_multipart_uploads={"count": totals.multipart_uploads, "bytes": totals.multipart_bytes},
    )
    if include_versions and not cloudwatch:
        entry["noncurrent_versions"] = {"object_count": sum(n for n, _ in totals.noncurrent.values()),
                                        "bytes": sum(b for _, b in totals.noncurrent.values())}
        entry["delete_markers"] = totals.delete_markers
    if totals.multipart_error:
        entry["incomplete_multipart_uploads"] = None
        entry["incomplete_multipart_uploads_error"] = totals.multipart_error
    if cloudwatch:
        entry["incomplete_multipart_uploads"] = None
        entry["metric_date"] = next((r["totals"].get("metric_date") for r in results), None)
    return entry


def build_report(
    buckets: Sequence[dict[str, Any]], results: Iterable[dict[str, Any]], *, prices: PriceTable, size_unit: str,
    source: str, include_versions: bool, generated_at: datetime, date_format: str = "iso", show_time: bool = True,
    patterns: Sequence[str] = (), regions: Sequence[str] = (),
) -> dict[str, Any]:
    """report.json: one entry per bucket (in name order), per region, and the totals over the readable
    ones. Times stay ISO 8601 UTC; ``date_format``/``show_time`` are recorded in ``display`` for the
    renderers (txt/csv/html, the UI); the bucket globs and regions asked for, and those that matched no
    bucket, in ``filters``."""
    check_unit(size_unit)
    check_date_format(date_format)
    if source not in SOURCES:
        raise ValueError(f"source {source!r} is not one of {', '.join(SOURCES)}")
    by_bucket: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_bucket.setdefault(r["bucket"], []).append(r)
    entries = [bucket_entry(b, by_bucket.get(b["name"], []), prices, size_unit, include_versions)
               for b in sorted(buckets, key=lambda b: b["name"])]
    ok = [e for e in entries if e["error"] is None]
    total_bytes = sum(e["total_bytes"] for e in ok)
    report: dict[str, Any] = {
        "generated_at": format_time(generated_at, "seconds"),
        "source": source,
        "size_unit": size_unit,
        "display": {"date_format": date_format, "show_time": bool(show_time)},
        "buckets": entries,
        "regions": region_groups(entries, size_unit),
        "totals": {
            "bucket_count": len(entries),
            "object_count": _sum_counts(e["object_count"] for e in ok),
            "total_bytes": total_bytes,
            "estimated_monthly_cost_usd": _money(sum(e["estimated_monthly_cost_usd"] for e in ok)),
            **sized(total_bytes, size_unit),
            "error_count": len(entries) - len(ok),
        },
        "pricing": prices.describe(),
        "filters": unmatched(entries, patterns, regions),
    }
    if source == "cloudwatch":
        dates = sorted({e["metric_date"] for e in ok if e.get("metric_date")})
        report["metric_date"] = dates[-1] if dates else None
        report["note"] = ("approximate: CloudWatch daily storage metrics (BucketSizeBytes, NumberOfObjects), "
                          "not a listing; no per-class object counts, newest object or hidden costs"
                          + ("; some object counts are unknown: NumberOfObjects exists only for all storage "
                             "types together (none with a storage-class filter), and may lack the sizes' day"
                             if any(e["object_count"] is None for e in ok) else ""))
    if source == "inventory":
        report["inventory_dates"] = {e["name"]: e["inventory"]["date"] for e in entries if e.get("inventory")}
    return report


# ------------------------------------------------------------------------------------- the command line
