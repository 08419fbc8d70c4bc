"""include.storage_report.summarize aggregation, filters, errors and rendering, without S3 or Airflow."""

from __future__ import annotations

import csv
import fnmatch
import io
import itertools
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from include.storage_report import render as report_render
from include.storage_report.pricing import GB, load_prices
from include.storage_report.settings import NAME_CHARS, check_patterns, check_regions, glob_problem
from include.storage_report.summarize import (
    Totals,
    bucket_entry,
    bucket_error,
    build_report,
    list_buckets,
    matches,
)

NOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)
PRICES = {"prices": {"us-east-1": {"STANDARD": 1.0, "GLACIER": 0.5}, "eu-west-1": {"STANDARD": 2.0}}}


def bucket(name: str, region: str = "us-east-1", error: str | None = None) -> dict:
    return {"name": name, "creation_date": "2026-01-02T03:04:05Z", "region": region, "error": error}


def part(name: str, i: int, of: int, totals: Totals | None, error: str | None = None) -> dict:
    return {"bucket": name, "part": i, "of": of, "totals": totals.to_dict() if totals else None, "error": error}


def totals(objects: list[tuple[int, str, str]], **extra) -> Totals:
    t = Totals(**extra)
    for size, when, cls in objects:
        t.add_object(size, when, cls)
    return t


@pytest.mark.parametrize("name, patterns, hit", [
    ("logs-prod", [], True),
    ("logs-prod", ["logs-*"], True),
    ("logs-prod", ["LOGS-*"], False),  # bucket names are lower case; patterns are not folded
    ("logs-prod", ["data-*", "logs-pro?"], True),
    ("logs-prod", ["logs"], False),
    ("data-2024", ["data-202[0-4]"], True),
    ("data-2025", ["data-202[0-4]"], False),
])
def test_glob_filters(name, patterns, hit):
    assert matches(name, patterns) is hit


def test_parts_merge_into_one_bucket_entry_with_costs():
    a = totals([(GB, "2026-03-01T00:00:00.000Z", "STANDARD"), (2 * GB, "2026-05-01T00:00:00.000Z", "GLACIER")],
               multipart_uploads=1, multipart_bytes=GB // 2)
    a.add_noncurrent(GB, "GLACIER")
    b = totals([(GB, "2026-04-01T00:00:00.000Z", "STANDARD")], delete_markers=3)
    results = [part("b1", 1, 2, b), part("b1", 0, 2, a)]
    entry = bucket_entry(bucket("b1"), results, load_prices(PRICES), "GiB", include_versions=True)
    assert entry["object_count"] == 3 and entry["total_bytes"] == 4 * GB and (entry["total_size"], entry["total_size_unit"]) == (4.0, "GiB")
    assert entry["last_modified"] == "2026-05-01T00:00:00Z"
    assert entry["storage_classes"] == {
        "GLACIER": {"object_count": 1, "bytes": 2 * GB, "estimated_monthly_cost_usd": 1.0},
        "STANDARD": {"object_count": 2, "bytes": 2 * GB, "estimated_monthly_cost_usd": 2.0},
    }
    # current 3.0 + noncurrent GLACIER 0.5 + incomplete upload (priced as STANDARD) 0.5
    assert entry["estimated_monthly_cost_usd"] == 4.0
    assert entry["noncurrent_versions"] == {"object_count": 1, "bytes": GB}
    assert entry["delete_markers"] == 3
    assert entry["incomplete_multipart_uploads"] == {"count": 1, "bytes": GB // 2}
    assert entry["error"] is None


def test_without_versions_the_version_fields_are_null():
    entry = bucket_entry(bucket("b"), [part("b", 0, 1, Totals())], load_prices(), "auto", include_versions=False)
    assert entry["noncurrent_versions"] is None and entry["delete_markers"] is None
    assert entry["object_count"] == 0 and entry["last_modified"] is None and (entry["total_size"], entry["total_size_unit"]) == (0, "B")
    assert entry["incomplete_multipart_uploads"] == {"count": 0, "bytes": 0}


@pytest.mark.parametrize("results, error", [
    ([part("b", 0, 2, Totals()), part("b", 1, 2, None, "NoSuchBucket: gone")], "NoSuchBucket: gone"),
    ([part("b", 0, 2, Totals())], "Incomplete: 1 of 2 key ranges were listed"),
    ([], "Incomplete: 0 of 1 key ranges were listed"),
])
def test_a_bucket_with_a_failed_or_missing_range_reports_an_error_not_numbers(results, error):
    entry = bucket_entry(bucket("b"), results, load_prices(), "B", include_versions=False)
    assert entry["error"] == error
    assert entry["object_count"] is None and entry["total_bytes"] is None and entry["storage_classes"] == {}


def test_report_totals_skip_unreadable_buckets_and_carry_pricing():
    report = build_report(
        [bucket("zz"), bucket("aa", "eu-west-1"), bucket("denied", None, "AccessDenied: Access Denied")],
        [part("zz", 0, 1, totals([(10, "2026-01-01T00:00:00.000Z", "STANDARD")])),
         part("aa", 0, 1, totals([(GB, "2026-01-01T00:00:00.000Z", "STANDARD")]))],
        prices=load_prices(PRICES), size_unit="MB", source="listing", include_versions=False, generated_at=NOW,
    )
    assert [b["name"] for b in report["buckets"]] == ["aa", "denied", "zz"]
    assert report["generated_at"] == "2026-11-22T04:00:00Z" and report["size_unit"] == "MB"
    assert report["totals"]["bucket_count"] == 3 and report["totals"]["object_count"] == 2
    assert report["totals"]["total_bytes"] == GB + 10 and report["totals"]["error_count"] == 1
    assert report["totals"]["estimated_monthly_cost_usd"] == 2.00000001  # and 10 bytes at $1/GiB
    assert (report["buckets"][0]["total_size"], report["buckets"][0]["total_size_unit"]) == (1073.74, "MB")
    assert report["pricing"]["label"] == "estimated at list price"


def test_bad_unit_is_rejected():
    with pytest.raises(ValueError, match="size unit"):
        build_report([], [], prices=load_prices(), size_unit="kb", source="listing", include_versions=False,
                     generated_at=NOW)


def _client_error(status: int, code: str, message: str = ""):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "ListObjectsV2")


def test_bucket_errors_are_4xx_only():
    assert bucket_error(_client_error(403, "AccessDenied", "Access Denied")) == "AccessDenied: Access Denied"
    assert bucket_error(_client_error(403, "403")) == "AccessDenied: Access Denied"
    assert bucket_error(_client_error(404, "NoSuchBucket", "gone")) == "NoSuchBucket: gone"
    assert bucket_error(_client_error(503, "SlowDown")) is None  # retried by botocore, then the task
    assert bucket_error(RuntimeError("x")) is None


class _Buckets:
    """ListBuckets in two pages; HeadBucket gives the region or refuses."""

    def list_buckets(self, **kw):
        # unpaginated requests fail for accounts with a bucket quota over 10,000
        assert kw.get("MaxBuckets") == 10_000, kw
        if "ContinuationToken" not in kw:
            return {"Buckets": [{"Name": "logs-a", "CreationDate": NOW}, {"Name": "other", "CreationDate": NOW}],
                    "ContinuationToken": "t"}
        return {"Buckets": [{"Name": "logs-eu", "CreationDate": NOW}, {"Name": "logs-no", "CreationDate": NOW}]}

    def head_bucket(self, Bucket):
        if Bucket == "logs-no":
            raise _client_error(403, "403")
        region = "eu-west-1" if Bucket.endswith("eu") else "us-east-1"
        return {"ResponseMetadata": {"HTTPHeaders": {"x-amz-bucket-region": region}}}


def test_list_buckets_paginates_filters_and_keeps_unreadable():
    found = list_buckets(_Buckets(), ["logs-*"])
    assert [(b["name"], b["region"], b["error"]) for b in found] == [
        ("logs-a", "us-east-1", None), ("logs-eu", "eu-west-1", None), ("logs-no", None, "AccessDenied: Access Denied")]
    assert found[0]["creation_date"] == "2026-11-22T04:00:00Z"
    # under a region filter, a bucket of unknown region is kept with its error (it may be in the region)
    assert [(b["name"], b["error"]) for b in list_buckets(_Buckets(), [], ["eu-west-1"])] == [
        ("logs-eu", None), ("logs-no", "AccessDenied: Access Denied")]


def test_listing_logs_progress_lines_with_pages_and_objects(caplog):
    from include.storage_report.summarize import count_range
    from tests.unit._fake_s3 import FakeS3

    fake = FakeS3()
    for i in range(2500):
        fake.put(f"k{i:05d}", 1024)
    with caplog.at_level(logging.INFO, logger="include.storage_report.summarize"):
        t = count_range(fake, "b", None, None, progress_every=0.0)  # a line after every page
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[progress]")]
    assert t.pages == 3 and t.object_count == 2500
    assert len(lines) == 4  # three pages, then the closing line
    assert lines[0].startswith("[progress] listing b (…, …]: 1,000 entries") and "1 pages, 1,000 objects" in lines[0]
    assert "2,500 entries" in lines[-1] and "3 pages, 2,500 objects, 2.44 MiB" in lines[-1] and lines[-1].endswith("done")


def test_renderings_agree_with_the_report():
    report = build_report(
        [bucket("b1"), bucket("bad", None, "AccessDenied: x")],
        [part("b1", 0, 1, totals([(1500, "2026-01-01T00:00:00.000Z", "STANDARD"),
                                  (500, "2026-01-01T00:00:00.000Z", "GLACIER")]))],
        prices=load_prices(), size_unit="KB", source="listing", include_versions=False, generated_at=NOW,
    )
    table = report_render.render_table(report)
    assert "2.00 KB" in table and "AccessDenied: x" in table and "estimated at list price" in table
    rows = list(csv.DictReader(io.StringIO(report_render.render_csv(report))))
    assert [(r["name"], r["total_bytes"], r["STANDARD_bytes"], r["GLACIER_object_count"]) for r in rows] == [
        ("b1", "2000", "1500", "1"), ("bad", "", "", "")]
    page = report_render.render_html(report)
    assert page.startswith("<!doctype html>") and "Bytes per bucket" in page and "width:100.0%" in page
    assert "<script" not in page and "http://" not in page
    assert "&lt;b&gt;" in report_render.render_html({**report, "buckets": [{**report["buckets"][0], "name": "<b>"}]})


def test_a_bucket_gone_mid_run_is_an_error_of_that_bucket_only():
    from include.aws import shards
    from include.storage_report.summarize import summarize_part

    class Gone:
        def list_objects_v2(self, **kw):
            raise _client_error(404, "NoSuchBucket", "The specified bucket does not exist")

    class Throttled:
        def list_objects_v2(self, **kw):
            raise _client_error(503, "SlowDown", "slow down")

    p = shards.Part(bucket="b", region="us-east-1", after=None, upto=None, part=0, of=1)
    assert summarize_part(Gone(), p) == {"bucket": "b", "part": 0, "of": 1, "totals": None,
                                         "error": "NoSuchBucket: The specified bucket does not exist"}
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):  # not the bucket's fault: the task retries
        summarize_part(Throttled(), p)


def test_region_of_a_refused_bucket_comes_from_the_403_header():
    from botocore.exceptions import ClientError

    class Refusing(_Buckets):
        def head_bucket(self, Bucket):
            raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"}, "ResponseMetadata": {
                "HTTPStatusCode": 403, "HTTPHeaders": {"x-amz-bucket-region": "eu-west-1"}}}, "HeadBucket")

    found = list_buckets(Refusing(), ["logs-a"])
    assert [(b["region"], b["error"]) for b in found] == [("eu-west-1", "AccessDenied: Forbidden")]


class _CloudWatch:
    """Daily S3 metrics for one bucket; intelligent-tiering spread over two tiers."""

    def __init__(self, day: datetime) -> None:
        self.day = day
        self.points = {("BucketSizeBytes", "StandardStorage"): 1000, ("BucketSizeBytes", "IntelligentTieringFAStorage"): 30,
                       ("BucketSizeBytes", "IntelligentTieringIAStorage"): 70, ("NumberOfObjects", "AllStorageTypes"): 12}

    def list_metrics(self, **kw):
        return {"Metrics": [{"Dimensions": [{"Name": "BucketName", "Value": "b"}, {"Name": "StorageType", "Value": st}]}
                            for (m, st) in self.points if m == kw["MetricName"]]}

    def get_metric_statistics(self, **kw):
        assert kw["EndTime"] <= NOW.replace(hour=0, minute=0)  # only whole days before the run
        st = next(d["Value"] for d in kw["Dimensions"] if d["Name"] == "StorageType")
        value = self.points.get((kw["MetricName"], st))
        old = {"Timestamp": self.day - timedelta(days=1), "Average": 1.0}
        return {"Datapoints": [] if value is None else [old, {"Timestamp": self.day, "Average": float(value)}]}


def test_cloudwatch_newest_daily_point_per_storage_type():
    from include.storage_report.summarize import summarize_cloudwatch

    day = datetime(2026, 11, 21, tzinfo=UTC)
    result = summarize_cloudwatch(_CloudWatch(day), "b", NOW)
    assert result["error"] is None
    t = result["totals"]
    assert t["metric_date"] == "2026-11-21" and t["object_count"] == 12 and t["total_bytes"] == 1100
    assert t["classes"] == {"STANDARD": [0, 1000], "INTELLIGENT_TIERING": [0, 100]}
    only = summarize_cloudwatch(_CloudWatch(day), "b", NOW, storage_classes=["INTELLIGENT_TIERING"])
    assert only["totals"]["total_bytes"] == 100
    report = build_report([bucket("b")], [result], prices=load_prices(), size_unit="B", source="cloudwatch",
                          include_versions=True, generated_at=NOW)
    entry = report["buckets"][0]
    assert report["metric_date"] == "2026-11-21" and entry["noncurrent_versions"] is None
    assert entry["storage_classes"]["STANDARD"]["object_count"] is None and entry["object_count"] == 12


def test_cloudwatch_numbers_are_all_of_one_day():
    """Each storage type took its own newest point: a class emptied two days ago (S3 reports no empty
    type) still counted with its last size, beside the other classes' numbers of yesterday."""
    from include.storage_report.summarize import summarize_cloudwatch

    day = datetime(2026, 11, 21, tzinfo=UTC)

    class Emptied(_CloudWatch):
        def get_metric_statistics(self, **kw):
            answer = super().get_metric_statistics(**kw)
            if any(d["Value"] == "IntelligentTieringIAStorage" for d in kw["Dimensions"]):
                answer["Datapoints"] = [p for p in answer["Datapoints"] if p["Timestamp"] < self.day]
            return answer

    t = summarize_cloudwatch(Emptied(day), "b", NOW)["totals"]
    assert t["metric_date"] == "2026-11-21" and t["total_bytes"] == 1030 and t["object_count"] == 12
    assert t["classes"] == {"STANDARD": [0, 1000], "INTELLIGENT_TIERING": [0, 30]}

    class CountedFirst(_CloudWatch):  # the 21st's NumberOfObjects published before the 21st's sizes
        def get_metric_statistics(self, **kw):
            answer = super().get_metric_statistics(**kw)
            if kw["MetricName"] == "BucketSizeBytes":  # only the 20th's (1 byte per storage type)
                answer["Datapoints"] = [p for p in answer["Datapoints"] if p["Timestamp"] < self.day]
            return answer

    t = summarize_cloudwatch(CountedFirst(day), "b", NOW)["totals"]  # the 20th's sizes and count, not 0 bytes
    assert (t["metric_date"], t["total_bytes"], t["object_count"]) == ("2026-11-20", 3, 1)

    class Uncounted(_CloudWatch):  # sizes of the 21st, the count only of the 20th
        def get_metric_statistics(self, **kw):
            answer = super().get_metric_statistics(**kw)
            if kw["MetricName"] == "NumberOfObjects":
                answer["Datapoints"] = [p for p in answer["Datapoints"] if p["Timestamp"] < self.day]
            return answer

    t = summarize_cloudwatch(Uncounted(day), "b", NOW)["totals"]
    assert (t["metric_date"], t["total_bytes"], t["object_count"]) == ("2026-11-21", 1100, None)  # unknown, not 0

    class Empty(_CloudWatch):  # S3 reports no metric of an empty bucket
        def get_metric_statistics(self, **kw):
            return {"Datapoints": []}

    t = summarize_cloudwatch(Empty(day), "b", NOW)["totals"]
    assert (t["metric_date"], t["total_bytes"], t["object_count"]) == (None, 0, 0)  # empty: 0, not unknown


def test_cloudwatch_plan_packs_buckets_without_listing():
    from include.storage_report.summarize import plan

    buckets = [bucket(f"b{i:03d}") for i in range(120)] + [bucket("bad", None, "AccessDenied: x")]
    planned = plan(lambda region: None, buckets, max_shards=1024, source="cloudwatch")
    assert [len(s["parts"]) for s in planned] == [50, 50, 20]


# ------------------------------------------------- a bucket that fails on the command line is that bucket's error


def _parser_error():
    from botocore.parsers import ResponseParserError

    return ResponseParserError("Unable to parse response (syntax error: line 1, column 0), invalid XML received. "
                               "Further retries may succeed:\nb'<<garbage\\n'")


def test_final_bucket_errors_name_every_s3_failure_in_one_line():
    from botocore.exceptions import (
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ParamValidationError,
        ReadTimeoutError,
    )

    from include.storage_report.summarize import final_bucket_error

    assert final_bucket_error(_client_error(403, "AccessDenied", "Access Denied")) == "AccessDenied: Access Denied"
    assert final_bucket_error(_client_error(500, "InternalError", "We encountered an internal error")) \
        == "InternalError: We encountered an internal error"
    assert final_bucket_error(_client_error(503, "")) == "503: request failed"
    parsed = final_bucket_error(_parser_error())
    assert parsed is not None and parsed.startswith("ResponseParserError: Unable to parse response") and "\n" not in parsed
    # the endpoint took this bucket's request, then broke it off or never answered it
    assert final_bucket_error(ConnectionClosedError(endpoint_url="http://x/b")).startswith("ConnectionClosedError: ")
    assert final_bucket_error(ReadTimeoutError(endpoint_url="http://x/b")).startswith("ReadTimeoutError: ")
    # not about one bucket: raised, so the run fails (a report of buckets all in error would pass for done)
    assert final_bucket_error(EndpointConnectionError(endpoint_url="http://x")) is None
    assert final_bucket_error(ConnectTimeoutError(endpoint_url="http://x")) is None
    assert final_bucket_error(NoCredentialsError()) is None
    assert final_bucket_error(ParamValidationError(report="Invalid bucket name")) is None
    assert final_bucket_error(RuntimeError("a bug")) is None  # never passed off as a bucket's error


@pytest.mark.parametrize("last_try", [False, True])
def test_cloudwatch_failures_are_the_buckets_error_as_the_caller_says(last_try):
    """A 4xx is the bucket's error on every try; a 5xx or a dropped connection only on the last one (the
    DAG passes final_bucket_error then), so the report still comes out with the other buckets."""
    from botocore.exceptions import ConnectionClosedError

    from include.storage_report.summarize import final_bucket_error, summarize_cloudwatch

    class Failing:
        def __init__(self, exc: Exception) -> None:
            self.exc = exc

        def list_metrics(self, **_: Any) -> Any:
            raise self.exc

    as_error = final_bucket_error if last_try else bucket_error
    denied = summarize_cloudwatch(Failing(_client_error(403, "AccessDenied", "no")), "b", NOW, as_bucket_error=as_error)
    assert denied["error"] == "AccessDenied: no" and denied["totals"] is None
    for exc, text in ((_client_error(500, "InternalFailure", "oops"), "InternalFailure: oops"),
                      (ConnectionClosedError(endpoint_url="http://cw"), "ConnectionClosedError: ")):
        if last_try:
            assert summarize_cloudwatch(Failing(exc), "b", NOW, as_bucket_error=as_error)["error"].startswith(text)
        else:
            with pytest.raises(type(exc)):
                summarize_cloudwatch(Failing(exc), "b", NOW, as_bucket_error=as_error)


class _World(_Buckets):
    """Three buckets: one readable, one whose listing gets a 500 after botocore's retries, one whose
    listing answer botocore cannot parse."""

    def __init__(self) -> None:
        from tests.unit._fake_s3 import FakeS3

        self.good = FakeS3()
        self.good.put("a.txt", 100)

    def list_buckets(self, **kw):
        return {"Buckets": [{"Name": n, "CreationDate": NOW} for n in ("good", "http500", "garbled")]}

    def head_bucket(self, Bucket):
        return {"ResponseMetadata": {"HTTPHeaders": {"x-amz-bucket-region": "us-east-1"}}}

    def list_objects_v2(self, Bucket, **kw):
        if Bucket == "http500":
            raise _client_error(500, "InternalError", "We encountered an internal error. Please try again.")
        if Bucket == "garbled":
            raise _parser_error()
        return self.good.list_objects_v2(Bucket, **kw)

    def list_multipart_uploads(self, Bucket, **kw):
        return self.good.list_multipart_uploads(Bucket)


def test_the_command_line_reports_a_bucket_it_cannot_list_and_goes_on():
    """A 5xx after the retries or an unparsable answer killed the whole report with a traceback; now the
    bucket carries its error (exit 1) and the other buckets are reported."""
    from include.storage_report.cli import run_local

    world = _World()
    report = run_local(lambda region: world, workers=2)
    errors = {b["name"]: b["error"] for b in report["buckets"]}
    good = next(b for b in report["buckets"] if b["name"] == "good")
    assert errors["good"] is None and good["object_count"] == 1 and good["total_bytes"] == 100
    assert errors["http500"] == "InternalError: We encountered an internal error. Please try again."
    assert errors["garbled"].startswith("ResponseParserError: Unable to parse response")
    assert report["totals"]["error_count"] == 2 and report["totals"]["object_count"] == 1


def test_the_dag_still_raises_a_5xx_or_a_parser_error_so_the_task_is_retried():
    from botocore.exceptions import ClientError
    from botocore.parsers import ResponseParserError

    from include.aws import shards
    from include.storage_report.summarize import plan, summarize_part

    world = _World()
    for name, error in (("http500", ClientError), ("garbled", ResponseParserError)):
        p = shards.Part(bucket=name, region="us-east-1", after=None, upto=None, part=0, of=1)
        with pytest.raises(error):
            summarize_part(world, p)
        with pytest.raises(error):
            plan(lambda region: world, [bucket(name)], max_shards=8)


def test_a_bucket_whose_inventory_configuration_cannot_be_read_is_listed_with_the_reason():
    """AccessDenied on GetInventoryConfiguration stopped the whole plan (with --source inventory)."""
    from botocore.exceptions import ClientError

    from include.storage_report import inventory
    from include.storage_report.summarize import final_bucket_error
    from include.storage_report.summarize import plan as listing_plan

    class NoInventoryRights(_World):
        def list_bucket_inventory_configurations(self, Bucket, **kw):
            if Bucket == "http500":
                raise _client_error(500, "InternalError", "try again")
            raise _client_error(403, "AccessDenied", "Access Denied")

    world = NoInventoryRights()
    planned = inventory.plan(lambda region: world, [bucket("good")], max_shards=8, include_versions=False,
                             fallback="listing", listing_plan=listing_plan)
    [part] = [p for shard in planned for p in shard["parts"]]
    assert part["note"] == "listed: its inventory cannot be read (AccessDenied: Access Denied)"
    with pytest.raises(ClientError):  # a 5xx in the DAG: the task retries
        inventory.plan(lambda region: world, [bucket("http500")], max_shards=8, include_versions=False,
                       fallback="error", listing_plan=listing_plan)
    planned = inventory.plan(lambda region: world, [bucket("http500")], max_shards=8, include_versions=False,
                             fallback="error", listing_plan=listing_plan, as_bucket_error=final_bucket_error)
    [part] = [p for shard in planned for p in shard["parts"]]
    assert part["inventory"] == {"error": "its inventory cannot be read (InternalError: try again)"}


# ---------------------------------------------------------------------------------- --bucket and --region filters

@pytest.mark.parametrize(("pattern", "says"), [
    ("", "--bucket '' is empty: give a bucket name or a glob such as logs-*"),
    ("[", "--bucket '[' can match no bucket: the '[' at position 1 is never closed"),
    ("logs-[0-9", "the '[' at position 6 is never closed"),
    ("[!]", "the '[' at position 1 is never closed"),
    ("data-[9-0]", "the range 9-0 in [9-0] is reversed (write 0-9)"),
    ("[ ]x", "the set [ ] holds no character a bucket name can hold"),
    ("s3://logs", "it holds ':', which no bucket name holds"),
    ("logs/2026", "it holds '/', which no bucket name holds"),
    (" logs", "it holds ' ', which no bucket name holds"),
    ("logs]", "it holds ']', which no bucket name holds"),
])
def test_a_glob_that_can_match_nothing_is_refused_with_the_reason(pattern, says):
    with pytest.raises(ValueError) as refused:
        check_patterns(["logs-*", pattern])
    assert says in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("pattern", ["logs-*", "data-202[0-4]", "x[!0-9]*", "[]a]", "[!]a]", "a[-.]b", "Legacy_Name",
                                     "*", "?", "[a-]"])
def test_usable_globs_pass(pattern):
    assert glob_problem(pattern) is None


@settings(max_examples=400, deadline=None)
@given(st.text("ab.-_[]!*? /", max_size=8), st.lists(st.text("ab.-_", min_size=1, max_size=6), max_size=8))
def test_a_refused_glob_really_matches_no_bucket_name(pattern, names):
    """What is refused for its form can match no name made of bucket-name characters (fnmatch's reading);
    a reversed range is refused as a mistake even beside members that match."""
    problem = glob_problem(pattern)
    if problem is not None and "reversed" not in problem:
        assert not any(fnmatch.fnmatchcase(name, pattern) for name in names), (pattern, problem)


def test_name_chars_are_those_of_legacy_and_current_bucket_names():
    assert NAME_CHARS == set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")


@pytest.mark.parametrize(("region", "says"), [
    ("", "--region '' is empty: give a region name such as eu-west-1"),
    ("EU-WEST-1", "--region 'EU-WEST-1' is not a region name such as eu-west-1"),
    ("eu-west1", "is not a region name"),
    ("eu-west-1\n", "is not a region name"),
])
def test_a_region_that_is_no_region_name_is_refused(region, says):
    with pytest.raises(ValueError, match=says.replace("(", r"\(")):
        check_regions(["us-east-1", region])
    check_regions(["us-east-1", "us-gov-west-1", "ap-southeast-4"])


def test_every_region_botocore_knows_is_a_region_name():
    """The regions filter and a price override take every region of botocore's endpoint data, of every
    partition: the European Sovereign Cloud's eusc-de-east-1 was refused (its first part has 4 letters)."""
    import json
    from pathlib import Path

    import botocore

    from include.storage_report.pricing import check_pricing

    data = json.loads((Path(botocore.__file__).parent / "data" / "endpoints.json").read_text())
    regions = sorted({r for partition in data["partitions"] for r in partition["regions"]})
    assert "eusc-de-east-1" in regions and "us-gov-west-1" in regions
    check_regions(regions[:100])
    check_regions(regions[100:])
    check_pricing({"prices": {r: {"STANDARD": 0.025} for r in regions}})


@pytest.mark.parametrize(("setting", "value", "says"), [
    ("buckets", ["["], "'[' can match no bucket"), ("buckets", [""], "buckets"),
    ("regions", ["eu-west-1\n"], "is not a region name"), ("regions", [""], "regions"),
    # the limits (docs/storage_report.md): 100 values, each once; globs of 1,024 characters, regions of 64
    ("buckets", [f"logs-{i}-*" for i in range(101)], "is too long"),
    ("regions", [f"zz-zz-{i}" for i in range(101)], "is too long"),
    ("buckets", ["logs-*", "data-*", "logs-*"], "has non-unique elements"),
    ("regions", ["eu-west-1", "eu-west-1"], "has non-unique elements"),
    ("buckets", ["a" * 1025], "is too long"), ("regions", ["eu-" + "a" * 64 + "-1"], "is too long"),
])
def test_the_dag_settings_refuse_the_same_filters(setting, value, says):
    from include.core.settings import SettingsError
    from include.storage_report.settings import SETTINGS

    with pytest.raises(SettingsError) as refused:
        SETTINGS.resolve({setting: value}, None)
    assert says in str(refused.value)


@pytest.mark.parametrize(("args", "says"), [
    (["--bucket", ""], "storage report: --bucket '' is empty"),
    (["--bucket", "["], "storage report: --bucket '[' can match no bucket: the '[' at position 1 is never closed"),
    (["--region", ""], "storage report: --region '' is empty"),
    (["--region", "Europe"], "storage report: --region 'Europe' is not a region name"),
    # the limits of the buckets and regions settings, as above
    ([a for i in range(101) for a in ("--bucket", f"logs-{i}-*")], "storage report: --bucket: 101 values given, at most 100"),
    ([a for i in range(101) for a in ("--region", f"zz-zz-{i}")], "storage report: --region: 101 values given, at most 100"),
    (["--bucket", "logs-*", "--bucket", "logs-*"], "storage report: --bucket 'logs-*' is given twice"),
    (["--region", "eu-west-1", "--region", "eu-west-1"], "storage report: --region 'eu-west-1' is given twice"),
    (["--bucket", "a" * 1025], f"storage report: --bucket {'a' * 40!r}… has 1025 characters, at most 1024"),
])
def test_report_refuses_a_filter_that_can_match_nothing_with_exit_2_before_connecting(args, says, monkeypatch, capsys):
    from include.storage_report import cli

    def no_connection(*_: object, **__: object) -> None:
        raise AssertionError("connected before refusing the filter")

    monkeypatch.setattr(cli.ClientFactory, "__call__", no_connection)
    assert cli.main([*args, "--endpoint-url", "http://127.0.0.1:9"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(says) and len(err.splitlines()) == 1, err


def _report(patterns: list[str], regions: list[str]) -> dict:
    totals = Totals()
    totals.add_object(10, "2026-01-01T00:00:00.000Z", "STANDARD")
    buckets = [{"name": "logs-a", "creation_date": "2026-01-01T00:00:00Z", "region": "us-east-1", "error": None}]
    results = [{"bucket": "logs-a", "part": 0, "of": 1, "totals": totals.to_dict(), "error": None}]
    return build_report(buckets, results, prices=load_prices(), size_unit="B", source="listing",
                        include_versions=False, generated_at=NOW, patterns=patterns, regions=regions)


def test_a_filter_that_matched_no_bucket_is_named_in_the_report_and_the_table():
    report = _report(["logs-*", "typo-*"], ["us-east-1", "eu-north-1"])
    assert report["filters"] == {"buckets": ["logs-*", "typo-*"], "regions": ["us-east-1", "eu-north-1"],
                                 "unmatched_buckets": ["typo-*"], "unmatched_regions": ["eu-north-1"]}
    notes = ["filters: buckets logs-*, typo-*; regions us-east-1, eu-north-1",
             "no bucket in those regions matches 'typo-*'", "no bucket matching those globs is in eu-north-1"]
    assert report_render.filter_notes(report) == notes
    table = report_render.render_table(report)
    assert table.splitlines()[-3:] == notes
    assert all(note in report_render.render_html(report) for note in ("typo-*", "is in eu-north-1"))
    assert report_render.filter_notes(_report(["logs-*"], [])) == []
    empty = build_report([], [], prices=load_prices(), size_unit="B", source="listing", include_versions=False,
                         generated_at=NOW)
    assert report_render.filter_notes(empty) == ["no bucket to report: the credentials see none"]
    old = json.loads(json.dumps(report))
    del old["filters"]
    assert report_render.filter_notes(old) == []  # a report written before filters were recorded
    only_globs = _report(["typo-*"], [])
    assert report_render.filter_notes(only_globs) == ["no bucket matches 'typo-*'"]  # nothing to refer to


def test_the_filter_notes_grow_with_the_filters_not_with_their_product():
    """Each note named the whole other list: 100 globs and 100 regions matching nothing made 200 lines of
    100 names each (a report.json holding thousands of each, hundreds of MiB of text)."""
    globs, regions = [f"zq{i}-*" for i in range(300)], [f"zz-zz-{i}" for i in range(300)]
    report = {"buckets": [], "filters": {"buckets": globs, "regions": regions,
                                         "unmatched_buckets": globs, "unmatched_regions": regions}}
    notes = report_render.filter_notes(report)
    assert len(notes) == 1 + len(globs) + len(regions)
    named = sum(len(g) + 2 for g in globs) + sum(len(r) + 2 for r in regions)
    assert sum(map(len, notes)) < 2 * named + 40 * len(notes)


def test_the_dag_takes_as_many_filters_as_the_limit():
    from include.storage_report.settings import SETTINGS

    conf = {"buckets": [f"logs-{i}-*" for i in range(100)], "regions": [f"zz-zz-{i}" for i in range(100)]}
    resolved = SETTINGS.resolve(conf, None)
    assert (resolved["buckets"], resolved["regions"]) == (conf["buckets"], conf["regions"])


class _UploadsWorld(_Buckets):
    """One readable bucket with two incomplete multipart uploads; ``refuse`` makes the multipart listing
    answer 403 (a role with s3:ListBucket only), ``gone`` names an upload completed between
    ListMultipartUploads and its ListParts (404 NoSuchUpload)."""

    def __init__(self, refuse: bool = False, gone: str | None = None, broken: Exception | None = None) -> None:
        from tests.unit._fake_s3 import FakeS3

        self.s3 = FakeS3()
        self.s3.put("a.txt", 100)
        self.s3.uploads = [{"Key": "big", "UploadId": "u1", "parts": [GB]}, {"Key": "done", "UploadId": "u2", "parts": [7]}]
        self.refuse, self.gone, self.broken = refuse, gone, broken

    def list_buckets(self, **kw):
        return {"Buckets": [{"Name": "busy", "CreationDate": NOW}]}

    def head_bucket(self, Bucket):
        return {"ResponseMetadata": {"HTTPHeaders": {"x-amz-bucket-region": "us-east-1"}}}

    def list_objects_v2(self, Bucket, **kw):
        return self.s3.list_objects_v2(Bucket, **kw)

    def list_multipart_uploads(self, Bucket, **kw):
        if self.broken is not None:
            raise self.broken
        if self.refuse:
            raise _client_error(403, "AccessDenied", "not authorized to perform s3:ListBucketMultipartUploads")
        return self.s3.list_multipart_uploads(Bucket)

    def list_parts(self, Bucket, Key, UploadId, **kw):
        if UploadId == self.gone:
            raise _client_error(404, "NoSuchUpload", "The specified upload does not exist.")
        return self.s3.list_parts(Bucket, Key, UploadId)


def test_an_upload_completed_while_the_report_lists_it_is_not_counted_and_the_bucket_is_reported():
    """ListParts answering NoSuchUpload (the upload finished between the two requests) made the whole
    bucket's numbers an error; now that upload simply no longer costs anything."""
    from include.storage_report.cli import run_local

    report = run_local(lambda region: _UploadsWorld(gone="u2"), workers=1)
    [b] = report["buckets"]
    assert b["error"] is None and b["object_count"] == 1 and b["total_bytes"] == 100
    assert b["incomplete_multipart_uploads"] == {"count": 1, "bytes": GB}


def test_a_role_that_cannot_list_multipart_uploads_still_gets_the_buckets_numbers():
    """s3:ListBucketMultipartUploads is a permission of its own: refused, the bucket's objects are still
    counted; only its incomplete uploads are unknown, and every rendering says why."""
    from include.storage_report.cli import run_local

    report = run_local(lambda region: _UploadsWorld(refuse=True), workers=1)
    [b] = report["buckets"]
    assert b["error"] is None and b["object_count"] == 1 and b["total_bytes"] == 100
    assert b["incomplete_multipart_uploads"] is None
    assert b["incomplete_multipart_uploads_error"].startswith("AccessDenied: not authorized")
    assert report["totals"]["error_count"] == 0
    text = report_render.render_table(report)
    assert "busy: incomplete multipart uploads unknown (AccessDenied: not authorized" in text
    assert "incomplete multipart uploads unknown" in report_render.render_html(report)
    # the same world with the permission: counted, no note
    allowed = run_local(lambda region: _UploadsWorld(), workers=1)
    assert allowed["buckets"][0]["incomplete_multipart_uploads"] == {"count": 2, "bytes": GB + 7}
    assert "unknown" not in report_render.render_table(allowed)


def _unparseable() -> Exception:
    from botocore.parsers import ResponseParserError

    return ResponseParserError("Unable to parse response (not well-formed (invalid token): line 1, column 9), "
                               "invalid XML received:\nb'<Key>\x01</Key>'")


@pytest.mark.parametrize("broken", [lambda: _client_error(500, "InternalError", "We encountered an internal error"),
                                    _unparseable])
def test_multipart_uploads_that_cannot_be_listed_after_retries_leave_the_buckets_numbers(broken):
    """A 5xx that botocore's retries did not get past, or an answer it cannot parse (a control character in
    an upload's key), on ListMultipartUploads: the objects, already listed, are still the bucket's numbers;
    only the uploads are unknown. It was the whole bucket's error."""
    from include.storage_report.cli import run_local

    report = run_local(lambda region: _UploadsWorld(broken=broken()), workers=1)
    [b] = report["buckets"]
    assert b["error"] is None and b["object_count"] == 1 and b["total_bytes"] == 100
    assert b["incomplete_multipart_uploads"] is None
    error = b["incomplete_multipart_uploads_error"]
    assert error.endswith("(ListMultipartUploads/ListParts)") and "\n" not in error
    assert error.startswith(("InternalError: We encountered", "ResponseParserError: Unable to parse"))


def test_the_cost_of_many_small_buckets_adds_up():
    """Each bucket's cost was rounded to 4 decimals before the regions and totals added them up: 2,000
    buckets of 2 MiB each (under $0.0001 each at list price) summed to $0.00, not $0.09."""
    names = [f"b{i:04d}" for i in range(2000)]
    report = build_report([bucket(n) for n in names],
                          [part(n, 0, 1, totals([(2 * 2**20, "2026-01-01T00:00:00.000Z", "STANDARD")])) for n in names],
                          prices=load_prices(), size_unit="B", source="listing", include_versions=False,
                          generated_at=NOW)
    one = load_prices().monthly_cost("us-east-1", "STANDARD", 2 * 2**20)
    assert 0 < one < 0.00005
    assert report["totals"]["estimated_monthly_cost_usd"] == pytest.approx(2000 * one, rel=1e-3)
    assert report["regions"][0]["estimated_monthly_cost_usd"] == pytest.approx(2000 * one, rel=1e-3)
    assert "$0.09" in report_render.render_table(report)
    assert "<$0.01" in report_render.render_table(report)  # each bucket: less than a cent, not nothing
    rows = list(csv.DictReader(io.StringIO(report_render.render_csv(report))))
    assert rows[0]["estimated_monthly_cost_usd"] == f"{one:.8f}".rstrip("0") and "e-" not in rows[0]["estimated_monthly_cost_usd"]
    regions = list(csv.DictReader(io.StringIO(report_render.render_csv(report, group_by="region"))))
    assert "e-" not in regions[0]["estimated_monthly_cost_usd"] and float(regions[0]["estimated_monthly_cost_usd"]) > 0.08


def test_a_storage_class_without_any_price_is_named_under_the_totals():
    """A class with no price cost $0.00 with no word outside report.json."""
    buckets = [{"name": "b", "creation_date": "2026-01-01T00:00:00Z", "region": "us-east-1", "error": None}]
    totals = Totals()
    totals.add_object(5 * GB, "2026-11-01T00:00:00.000Z", "OUTPOSTS")
    report = build_report(buckets, [{"bucket": "b", "part": 0, "of": 1, "totals": totals.to_dict(), "error": None}],
                          prices=load_prices(PRICES), size_unit="GiB", source="listing", include_versions=False,
                          generated_at=NOW)
    assert report["pricing"]["unpriced"] == ["us-east-1/OUTPOSTS"]
    line = "no price for us-east-1/OUTPOSTS: counted as $0 in the costs"
    assert line in report_render.render_table(report) and line in report_render.render_html(report)


def test_an_inventory_plan_of_many_big_buckets_stays_within_max_shards(monkeypatch):
    """inventory_parts gave every bucket up to 64 parts with no overall budget: 18 buckets of 600 data
    files made 1,080 parts for 1,024 shards and plan_shards crashed (range() arg 3 must not be zero)."""
    from include.inventory.manifest import Manifest
    from include.storage_report import inventory
    from include.storage_report.summarize import plan as listing_plan

    files = {f"big-{i:02d}": 600 for i in range(18)} | {"small": 3}

    def found(client, name, versions, as_error):
        return Manifest(name, "dest", f"inv/{name}/manifest.json", "2026-11-29T01-00Z", "CSV", [],
                        [{"key": f"{name}/{n}.csv.gz", "size": 1} for n in range(files[name])], False)

    monkeypatch.setattr(inventory, "_find", found)
    planned = inventory.plan(lambda region: None, [bucket(n) for n in files], max_shards=1024, include_versions=False,
                             fallback="error", listing_plan=listing_plan)
    assert len(planned) <= 1024
    for name, n in files.items():  # every data file in exactly one part of its bucket
        spans = sorted((p["inventory"]["first"], p["inventory"]["last"]) for s in planned for p in s["parts"]
                       if p["bucket"] == name)
        assert spans[0][0] == 0 and spans[-1][1] == n and all(a[1] == b[0] for a, b in itertools.pairwise(spans))
