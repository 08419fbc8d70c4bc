"""s3_storage_report against the local S3 server: every field of report.json against a ground truth
computed here, straight from boto3 paginators and the seed inputs (not with include.storage_report.summarize)."""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from include.seed import DemoWorld, create_bucket

UID = uuid.uuid4().hex[:8]
BIG = f"sr-big-{UID}"  # us-east-1, versioned, 2,500 keys under 10 prefixes: split into several shards
DENIED = f"sr-denied-{UID}"  # every request refused (403 AccessDenied)
CW_EU = f"sr-cw-eu-{UID}"
CW_US = f"sr-cw-us-{UID}"
MIB = 1024 * 1024
# Prices (USD per GB-month) big enough that costs of a few MB are not rounded away.
TEST_PRICES = {
    "as_of": "2026-11-01", "source": "integration test",
    "prices": {
        "us-east-1": {"STANDARD": 1000.0, "STANDARD_IA": 500.0, "GLACIER": 100.0},
        "eu-west-1": {"STANDARD": 2000.0, "GLACIER": 50.0, "DEEP_ARCHIVE": 10.0, "GLACIER_IR": 80.0},
    },
}
REGIONS = {**DemoWorld().regions, BIG: "us-east-1", DENIED: "us-east-1", CW_EU: "eu-west-1", CW_US: "us-east-1"}


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def truth(s3: Any, bucket: str, *, versions: bool, classes: tuple[str, ...] = ()) -> dict[str, Any]:
    """What the report must say about ``bucket``, from a plain sequential listing."""

    def want(storage_class: str) -> bool:
        return not classes or storage_class in classes

    current: list[dict[str, Any]] = []
    noncurrent: list[dict[str, Any]] = []
    markers = 0
    if versions:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for v in page.get("Versions", []):
                if want(v.get("StorageClass", "STANDARD")):
                    (current if v["IsLatest"] else noncurrent).append(v)
            markers += len(page.get("DeleteMarkers", []))
    else:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            current += [o for o in page.get("Contents", []) if want(o.get("StorageClass", "STANDARD"))]
    per_class: dict[str, dict[str, int]] = {}
    for o in current:
        c = per_class.setdefault(o.get("StorageClass", "STANDARD"), {"object_count": 0, "bytes": 0})
        c["object_count"] += 1
        c["bytes"] += o["Size"]
    uploads = [u for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
               if want(u.get("StorageClass", "STANDARD"))]
    mpu_bytes = sum(p["Size"] for u in uploads
                    for p in s3.list_parts(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"]).get("Parts", []))
    return {
        "object_count": len(current),
        "total_bytes": sum(o["Size"] for o in current),
        "last_modified": _iso(max(o["LastModified"] for o in current)) if current else None,
        "storage_classes": per_class,
        "noncurrent_versions": {"object_count": len(noncurrent), "bytes": sum(v["Size"] for v in noncurrent)}
        if versions else None,
        "noncurrent_by_class": [(v.get("StorageClass", "STANDARD"), v["Size"]) for v in noncurrent],
        "delete_markers": markers if versions else None,
        "incomplete_multipart_uploads": {"count": len(uploads), "bytes": mpu_bytes},
    }


def shown(entry: dict[str, Any]) -> str:
    """report.json's numeric ``total_size`` and its unit, written the way the tables write sizes."""
    value, unit = entry["total_size"], entry["total_size_unit"]
    assert isinstance(value, (int, float)) and not isinstance(value, bool)
    return f"{value} B" if unit == "B" else f"{value:.2f} {unit}"


def expected_cost(region: str, by_class: dict[str, int], prices: dict[str, Any] = TEST_PRICES) -> float:
    table = prices["prices"][region]
    return sum(size / 2**30 * table.get(cls, 0.0) for cls, size in by_class.items())


def check_bucket(entry: dict[str, Any], s3: Any, creation: dict[str, str], *, versions: bool,
                 classes: tuple[str, ...] = (), size: Any) -> None:
    name = entry["name"]
    t = truth(s3, name, versions=versions, classes=classes)
    assert entry["error"] is None, entry
    assert entry["region"] == REGIONS[name]
    assert entry["creation_date"] == creation[name]
    for field in ("object_count", "total_bytes", "last_modified", "noncurrent_versions", "delete_markers",
                  "incomplete_multipart_uploads"):
        assert entry[field] == t[field], (name, field)
    assert shown(entry) == size(t["total_bytes"])
    assert {c: {"object_count": v["object_count"], "bytes": v["bytes"]} for c, v in entry["storage_classes"].items()} \
        == t["storage_classes"], name
    region = REGIONS[name]
    for cls, v in entry["storage_classes"].items():
        assert v["estimated_monthly_cost_usd"] == pytest.approx(expected_cost(region, {cls: v["bytes"]}), abs=1e-4)
    hidden: dict[str, int] = {}
    for cls, size_ in t["noncurrent_by_class"]:
        hidden[cls] = hidden.get(cls, 0) + size_
    total = expected_cost(region, {c: v["bytes"] for c, v in t["storage_classes"].items()}) \
        + sum(expected_cost(region, {c: b}) for c, b in hidden.items()) \
        + expected_cost(region, {"STANDARD": t["incomplete_multipart_uploads"]["bytes"]})
    assert entry["estimated_monthly_cost_usd"] == pytest.approx(total, abs=1e-3), name


@pytest.fixture(scope="module")
def world(s3: Any, s3_server: Any, demo_world: DemoWorld) -> dict[str, str]:
    """The demo world plus this module's own buckets; returns every bucket's creation date."""
    from include.seed import create_bucket

    create_bucket(s3, BIG)
    s3.put_bucket_versioning(Bucket=BIG, VersioningConfiguration={"Status": "Enabled"})
    classes = ["STANDARD", "STANDARD_IA", "GLACIER"]
    objs = [{"key": f"area-{i % 10}/item-{i:05d}.bin", "size": 10 + (i * 97) % 5000,
             "storage_class": classes[i % 3]} for i in range(2500)]
    objs.append({"key": "area-3", "size": 7})  # a key equal to a prefix without its slash
    s3_server.control("POST", "seed", {"bucket": BIG, "objects": objs})
    s3_server.control("POST", "seed", {"bucket": BIG, "objects": [  # 40 overwrites: noncurrent versions
        {"key": f"area-{i % 10}/item-{i:05d}.bin", "size": 3000 + i} for i in range(0, 400, 10)]})
    for i in range(1, 400, 20):  # 20 deletes: delete markers
        s3.delete_object(Bucket=BIG, Key=f"area-{i % 10}/item-{i:05d}.bin")
    create_bucket(s3, DENIED)
    s3.put_object(Bucket=DENIED, Key="secret.txt", Body=b"no")
    create_bucket(s3, CW_EU, "eu-west-1")
    create_bucket(s3, CW_US, "us-east-1")
    _deny(s3_server)
    yield {b["Name"]: _iso(b["CreationDate"]) for b in s3.list_buckets()["Buckets"]}
    s3_server.control("POST", "faults", {"mode": "off"})


def _deny(s3_server: Any) -> None:
    """Every request on DENIED refused (403 AccessDenied), for the whole module."""
    s3_server.control("POST", "faults", {"mode": "denied", "bucket": DENIED, "count": 100_000})


def _faults_off(s3_server: Any) -> None:
    """Clear a test's own faults; ``off`` clears every fault, so DENIED's is set again."""
    s3_server.control("POST", "faults", {"mode": "off"})
    _deny(s3_server)


def _report(result: Any) -> dict[str, Any]:
    return json.loads((result.artifacts() / "report.json").read_text())


def test_listing_with_versions_shards_hidden_costs_and_unreadable_bucket(world, s3, run_dag, monkeypatch):
    # the deployment settings: the 1,500-key and 2,500-key buckets split in 3, test prices
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_STORAGE_REPORT", json.dumps(
        {"shard_objects": 1000, "shard_parts": 3, "pricing": TEST_PRICES}))
    result = run_dag("s3_storage_report", {"buckets": ["s3ops-demo-*", f"sr-*-{UID}"], "size_unit": "B",
                                           "include_versions": True})
    assert result.state == "success", result.task_states()
    report = _report(result)
    names = sorted([*DemoWorld().regions, BIG, DENIED, CW_EU, CW_US])
    assert [b["name"] for b in report["buckets"]] == names
    assert report["source"] == "listing" and report["size_unit"] == "B"

    # Sharding: the big buckets were split, nothing but ranges went through XCom.
    shard_list = result.xcom("plan_shards")
    parts = [p for s in shard_list for p in s["parts"]]
    assert sum(p["bucket"] == BIG for p in parts) == 3
    assert sum(p["bucket"] == DemoWorld().logs_bucket for p in parts) == 3
    assert len(shard_list) < len(names)  # small buckets share shards
    assert len(shard_list) <= 1024
    assert len(json.dumps(shard_list)) < 20_000
    assert all(set(p) == {"bucket", "region", "after", "upto", "part", "of"} for p in parts)

    by_name = {b["name"]: b for b in report["buckets"]}
    for name in names:
        if name == DENIED:
            continue
        check_bucket(by_name[name], s3, world, versions=True, size=lambda n: f"{n} B")
    big = by_name[BIG]
    # 40 overwritten keys and 20 deleted ones each leave one noncurrent version
    assert big["object_count"] == 2501 - 20 and big["noncurrent_versions"]["object_count"] == 40 + 20
    assert big["delete_markers"] == 20
    logs = by_name[DemoWorld().logs_bucket]
    assert logs["incomplete_multipart_uploads"] == {"count": 1, "bytes": MIB}
    assert by_name[DemoWorld().empty_bucket]["object_count"] == 0
    assert by_name[DemoWorld().empty_bucket]["last_modified"] is None
    assert by_name[DemoWorld().versioned_bucket]["delete_markers"] == 10

    denied = by_name[DENIED]
    assert denied["error"].startswith("AccessDenied")
    assert denied["object_count"] is None and denied["total_bytes"] is None

    ok = [b for b in report["buckets"] if b["error"] is None]
    assert report["totals"]["bucket_count"] == len(names)
    assert report["totals"]["object_count"] == sum(b["object_count"] for b in ok)
    assert report["totals"]["total_bytes"] == sum(b["total_bytes"] for b in ok)
    assert report["pricing"]["as_of"] == "2026-11-01" and report["pricing"]["label"] == "estimated at list price"
    generated = datetime.strptime(report["generated_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - generated) < timedelta(minutes=10)

    assert result.xcom("publish") == {
        "report_uri": str((result.artifacts() / "report.json").resolve()), "bucket_count": len(names),
        "object_count": report["totals"]["object_count"], "total_bytes": report["totals"]["total_bytes"],
    }
    folder = result.artifacts()
    rows = list(csv.DictReader(io.StringIO((folder / "report.csv").read_text())))
    assert [r["name"] for r in rows] == names
    assert {r["name"]: int(r["total_bytes"] or 0) for r in rows} == {b["name"]: b["total_bytes"] or 0 for b in report["buckets"]}
    assert int(next(r for r in rows if r["name"] == BIG)["GLACIER_bytes"]) == big["storage_classes"]["GLACIER"]["bytes"]
    page = (folder / "report.html").read_text()
    assert all(n in page for n in names) and "Bytes per storage class" in page
    assert "<script" not in page and "<link" not in page and "src=" not in page and "url(" not in page
    table = (folder / "report.txt").read_text()
    assert all(n in table for n in names) and "AccessDenied" in table


def test_filters_kib_and_fail_on_bucket_error(world, s3, run_dag, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_STORAGE_REPORT", json.dumps({"pricing": TEST_PRICES}))
    w = DemoWorld()
    classes = ("GLACIER", "DEEP_ARCHIVE")
    result = run_dag("s3_storage_report", {
        "buckets": [w.archive_bucket, "s3ops-demo-em*", "sr-denied-*", "s3ops-demo-logs"], "regions": [],
        "storage_classes": list(classes), "size_unit": "KiB", "fail_on_bucket_error": True,
        "date_format": "eu", "show_time": False,
    })
    assert result.state == "failed"
    states = result.task_states()
    assert states[("aggregate", -1)] == "success" and states[("publish", -1)] == "failed"
    report = _report(result)  # published before failing
    assert [b["name"] for b in report["buckets"]] == sorted([w.archive_bucket, w.empty_bucket, w.logs_bucket, DENIED])
    for entry in report["buckets"]:
        if entry["name"] != DENIED:
            check_bucket(entry, s3, world, versions=False, classes=classes,
                         size=lambda n: f"{round(n / 1024, 2):.2f} KiB")
    archive = next(b for b in report["buckets"] if b["name"] == w.archive_bucket)
    assert set(archive["storage_classes"]) == set(classes) and archive["object_count"] == 150
    logs = next(b for b in report["buckets"] if b["name"] == w.logs_bucket)
    assert logs["object_count"] == 0 and logs["storage_classes"] == {}  # STANDARD/IA only there
    assert (result.artifacts() / "report.html").exists() and (result.artifacts() / "report.csv").exists()

    # Dates as asked in every rendering; report.json keeps ISO 8601 UTC.
    assert report["display"] == {"date_format": "eu", "show_time": False}
    created = datetime.strptime(world[w.archive_bucket], "%Y-%m-%dT%H:%M:%SZ")
    eu_date = created.strftime("%d/%m/%Y")
    assert archive["creation_date"] == world[w.archive_bucket]
    table = (result.artifacts() / "report.txt").read_text()
    row = next(line for line in table.splitlines() if line.startswith(w.archive_bucket))
    assert row.split()[2] == eu_date and "T" not in row.split()[2]
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO((result.artifacts() / "report.csv").read_text()))}
    assert rows[w.archive_bucket]["creation_date"] == eu_date
    assert eu_date in (result.artifacts() / "report.html").read_text()

    # Regions: every readable bucket's numbers, summed per region (the denied bucket counted as unreadable).
    by_region: dict[str, dict[str, Any]] = {}
    for entry in report["buckets"]:
        r = by_region.setdefault(entry["region"], {"bucket_count": 0, "error_count": 0, "object_count": 0,
                                                   "total_bytes": 0})
        r["bucket_count"] += 1
        if entry["error"]:
            r["error_count"] += 1
        else:
            r["object_count"] += entry["object_count"]
            r["total_bytes"] += entry["total_bytes"]
    assert {r["region"]: {k: r[k] for k in ("bucket_count", "error_count", "object_count", "total_bytes")}
            for r in report["regions"]} == by_region
    eu = next(r for r in report["regions"] if r["region"] == "eu-west-1")
    assert set(eu["storage_classes"]) <= set(classes) and eu["total_size_unit"] == "KiB"
    assert 'id="regions"' in (result.artifacts() / "report.html").read_text()


def test_cloudwatch_source_and_region_filter(world, s3_server, run_dag):
    import boto3

    from scripts.stack import LOCAL_AWS_KEY, LOCAL_AWS_SECRET

    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    metrics = {CW_EU: ("eu-west-1", {"StandardStorage": 5 * MIB, "GlacierStorage": 3 * MIB}, 42),
               CW_US: ("us-east-1", {"StandardStorage": 7 * MIB}, 9)}
    for bucket, (region, sizes, count) in metrics.items():
        cw = boto3.client("cloudwatch", region_name=region, endpoint_url=s3_server.endpoint_url,
                          aws_access_key_id=LOCAL_AWS_KEY, aws_secret_access_key=LOCAL_AWS_SECRET)
        data = [{"MetricName": "BucketSizeBytes", "Timestamp": day, "Value": float(v), "Unit": "Bytes",
                 "Dimensions": [{"Name": "BucketName", "Value": bucket}, {"Name": "StorageType", "Value": st}]}
                for st, v in sizes.items()]
        data.append({"MetricName": "NumberOfObjects", "Timestamp": day, "Value": float(count), "Unit": "Count",
                     "Dimensions": [{"Name": "BucketName", "Value": bucket},
                                    {"Name": "StorageType", "Value": "AllStorageTypes"}]})
        cw.put_metric_data(Namespace="AWS/S3", MetricData=data)
    result = run_dag("s3_storage_report", {"buckets": [f"sr-cw-*-{UID}"], "regions": ["eu-west-1"],
                                           "source": "cloudwatch", "size_unit": "MiB"})
    assert result.state == "success", result.task_states()
    report = _report(result)
    assert report["source"] == "cloudwatch" and report["metric_date"] == day.strftime("%Y-%m-%d")
    assert [b["name"] for b in report["buckets"]] == [CW_EU]
    entry = report["buckets"][0]
    assert entry["region"] == "eu-west-1" and entry["object_count"] == 42
    assert entry["total_bytes"] == 8 * MIB and (entry["total_size"], entry["total_size_unit"]) == (8.0, "MiB")
    assert {c: v["bytes"] for c, v in entry["storage_classes"].items()} == {"STANDARD": 5 * MIB, "GLACIER": 3 * MIB}
    assert all(v["object_count"] is None for v in entry["storage_classes"].values())
    assert entry["last_modified"] is None and entry["error"] is None
    assert "CloudWatch" in (result.artifacts() / "report.txt").read_text()

    # NumberOfObjects exists for all storage types together only: with a class filter, bytes are
    # filtered and the count is unknown, never the count of every class (42).
    glacier = run_dag("s3_storage_report", {"buckets": [CW_EU], "source": "cloudwatch",
                                            "storage_classes": ["GLACIER"]})
    assert glacier.state == "success", glacier.task_states()
    report = _report(glacier)
    [entry] = report["buckets"]
    assert entry["total_bytes"] == 3 * MIB and entry["object_count"] is None
    assert report["totals"]["object_count"] is None and report["regions"][0]["object_count"] is None
    row = next(line for line in (glacier.artifacts() / "report.txt").read_text().splitlines()
               if line.startswith(CW_EU))
    cells = row.split()
    assert cells[3] == "unknown" and "42" not in cells  # (the creation time in the row may hold a 42)


@pytest.mark.parametrize("unit, size", [
    ("B", lambda n: f"{n} B"), ("KB", lambda n: f"{n / 1000:.2f} KB"), ("MB", lambda n: f"{n / 1e6:.2f} MB"),
    ("GB", lambda n: f"{n / 1e9:.2f} GB"), ("TB", lambda n: f"{n / 1e12:.2f} TB"),
    ("KiB", lambda n: f"{n / 1024:.2f} KiB"), ("MiB", lambda n: f"{n / 1024**2:.2f} MiB"),
    ("GiB", lambda n: f"{n / 1024**3:.2f} GiB"), ("TiB", lambda n: f"{n / 1024**4:.2f} TiB"),
    ("auto", lambda n: f"{n / 1024:.2f} KiB"),  # the versioned bucket holds a few KiB
])
def test_cli_json_every_unit(world, s3, s3_server, capsys, unit, size):
    from include.storage_report.cli import main

    bucket = DemoWorld().versioned_bucket
    code = main(["--bucket", bucket, "--versions", "--json", "--unit", unit, "--endpoint-url", s3_server.endpoint_url])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    [entry] = report["buckets"]
    t = truth(s3, bucket, versions=True)
    assert shown(entry) == size(t["total_bytes"]) and report["size_unit"] == unit
    assert (entry["object_count"], entry["noncurrent_versions"], entry["delete_markers"]) == \
        (t["object_count"], t["noncurrent_versions"], t["delete_markers"])


def test_cli_lists_a_split_bucket_with_any_number_of_workers(world, s3, s3_server, capsys):
    """--shard-objects splits BIG into key ranges as the DAG does; one worker or sixteen threads, in one
    process or in three forked ones (two when there are two workers): the same report."""
    from include.storage_report.cli import main

    url = s3_server.endpoint_url
    reports = []
    for workers, processes in (("1", "1"), ("16", "1"), ("16", "3"), ("2", "3")):
        s3_server.control("POST", "stats/reset")
        assert main(["--bucket", BIG, "--versions", "--json", "--shard-objects", "500", "--shard-parts", "6",
                     "--workers", workers, "--processes", processes, "--endpoint-url", url]) == 0
        report = json.loads(capsys.readouterr().out)
        report.pop("generated_at")
        reports.append(report)
        lists = s3_server.control("GET", "stats").get("ListObjectVersions", 0)
        assert lists >= 6  # six key ranges, each listed on its own (not one sequential pass)
    assert reports[0] == reports[1] == reports[2] == reports[3]
    [entry] = reports[0]["buckets"]
    t = truth(s3, BIG, versions=True)
    assert (entry["object_count"], entry["noncurrent_versions"], entry["delete_markers"]) == \
        (t["object_count"], t["noncurrent_versions"], t["delete_markers"])
    for flag in ("--workers", "--processes", "--shard-objects", "--shard-parts"):
        with pytest.raises(SystemExit) as refused:
            main([flag, "0", "--endpoint-url", url])
        assert refused.value.code == 2
        assert f"{flag} must be at least 1, not 0" in capsys.readouterr().err


def test_cli_table_csv_filters_and_errors(world, s3, s3_server, capsys, monkeypatch):
    from include.storage_report.cli import main

    w = DemoWorld()
    url = s3_server.endpoint_url
    assert main(["--bucket", "s3ops-demo-*", "--region", "eu-west-1", "--endpoint-url", url]) == 0
    table = capsys.readouterr().out
    assert w.archive_bucket in table and w.empty_bucket in table and w.logs_bucket not in table

    assert main(["--bucket", w.archive_bucket, "--storage-class", "GLACIER_IR", "--csv", "--endpoint-url", url]) == 0
    [row] = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    t = truth(s3, w.archive_bucket, versions=False, classes=("GLACIER_IR",))
    assert int(row["object_count"]) == t["object_count"] == 75
    assert int(row["GLACIER_IR_bytes"]) == t["total_bytes"]

    assert main(["--bucket", "s3ops-demo-*", "--group-by", "region", "--date-format", "us", "--endpoint-url", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split()[0] == "region" and w.archive_bucket not in "\n".join(lines)
    demo = {b: r for b, r in DemoWorld().regions.items()}
    for region in set(demo.values()):
        row = next(line.split() for line in lines if line.startswith(region + " "))
        assert int(row[1]) == sum(r == region for r in demo.values())
    assert main(["--bucket", w.archive_bucket, "--csv", "--date-format", "%d.%m.%Y", "--no-show-time",
                 "--endpoint-url", url]) == 0
    [row] = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    created = next(b["CreationDate"] for b in s3.list_buckets()["Buckets"] if b["Name"] == w.archive_bucket)
    assert row["creation_date"] == created.astimezone(UTC).strftime("%d.%m.%Y")
    assert main(["--date-format", "%Q", "--endpoint-url", url]) == 2  # refused before any listing
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "date_format" in err and "%Q" in err

    assert main(["--bucket", DENIED, "--json", "--endpoint-url", url]) == 1  # exit 1: a bucket had an error
    assert json.loads(capsys.readouterr().out)["buckets"][0]["error"].startswith("AccessDenied")

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert main(["--endpoint-url", url]) == 2  # no credentials anywhere: one line, no traceback
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("storage report:")


def test_no_matching_bucket_still_publishes_an_empty_report(world, run_dag):
    result = run_dag("s3_storage_report", {"buckets": [f"nothing-matches-{UID}-*"]})
    assert result.state == "success", result.task_states()
    report = _report(result)
    assert report["buckets"] == [] and report["totals"]["object_count"] == 0
    assert result.xcom("publish")["bucket_count"] == 0


def test_bad_param_and_unknown_connection_fail_fast(world, run_dag):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="kb"):
        run_dag("s3_storage_report", {"size_unit": "kb"})
    with pytest.raises(ParamValidationError, match="SUPER_COLD"):
        run_dag("s3_storage_report", {"storage_classes": ["SUPER_COLD"]})
    bad_date = run_dag("s3_storage_report", {"date_format": "dd/mm/yyyy"})  # no strftime directive
    assert bad_date.state == "failed" and bad_date.task_states()[("list_buckets", -1)] == "failed"
    assert not (bad_date.artifacts() / "buckets.json").exists()
    result = run_dag("s3_storage_report", {"aws_conn_id": "no_such_connection"})
    assert result.state == "failed"
    states = result.task_states()
    assert states[("list_buckets", -1)] == "failed" and states.get(("publish", -1)) != "success"
    assert not (result.artifacts() / "report.json").exists()


def test_a_bad_pricing_variable_fails_the_first_task_before_any_listing(world, run_dag, monkeypatch, capfd):
    """The same check as --pricing (check_pricing), when the run's settings are resolved: before, only
    ``aggregate`` loaded the prices, after every bucket had been listed, and a class name nobody uses passed."""
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_STORAGE_REPORT",
                       json.dumps({"pricing": {"prices": {"us-east-1": {"BOGUS": 0.01}}}}))
    result = run_dag("s3_storage_report", {"buckets": [BIG]})
    assert result.state == "failed" and result.task_states()[("list_buckets", -1)] == "failed"
    assert not (result.artifacts() / "buckets.json").exists()
    out, err = capfd.readouterr()
    assert "pricing (from key 'pricing' of the Airflow Variable 's3ops_storage_report'): " \
           'prices["us-east-1"]["BOGUS"]: "BOGUS" is not a storage class' in out + err


_FORKED: dict[str, Any] = {}  # what a forked test process finds (inherited, never pickled)


def _client_identity() -> tuple[int, int]:
    return os.getpid(), id(_FORKED["factory"](None))


def test_cli_client_factory_makes_a_forked_process_its_own_clients(s3_server):
    """A client's open connections must not be shared by two processes: in a forked worker the factory
    makes new clients (one per region, shared by that process's threads)."""
    import multiprocessing

    from include.storage_report.cli import ClientFactory

    factory = ClientFactory(endpoint_url=s3_server.endpoint_url)
    here = factory(None)
    assert factory(None) is here and factory("eu-west-1") is not here
    assert here.list_buckets()["Buckets"] is not None
    _FORKED["factory"] = factory
    pool = multiprocessing.get_context("fork").Pool(1)
    try:
        pid, client_id = pool.apply(_client_identity)
    finally:
        # close + join, not the context manager's terminate(): a worker forked from a test process that
        # has run Airflow inherits its SIGTERM handler and outlives the SIGTERM (CI hung here 15 min)
        pool.close()
        pool.join()
    assert pid != os.getpid() and client_id != id(here)


def test_cli_unknown_profile_is_one_line_and_exit_2(s3_server, capsys, monkeypatch, tmp_path):
    from include.storage_report.cli import main

    config = tmp_path / "config"
    config.write_text("[profile real]\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    assert main(["--profile", "typo", "--endpoint-url", s3_server.endpoint_url]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "storage report: The config profile (typo) could not be found"


# ------------------------------------------- the command line when one bucket cannot be read, or nothing matches

#: apart from the sr-*-UID buckets (DENIED is one), which other tests list
OK, HTTP500, DROPPED, NO_REGION = (f"rb-{what}-{UID}" for what in ("ok", "500", "drop", "head"))


@pytest.fixture
def faulty(world: Any, s3: Any, s3_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Four small buckets; ListObjectsV2 of one answers 500, of another drops the connection, HeadBucket of
    a third answers 500 (one attempt each: botocore's retries would only repeat the same fault)."""
    for name in (OK, HTTP500, DROPPED, NO_REGION):
        create_bucket(s3, name)
        s3.put_object(Bucket=name, Key="k.txt", Body=b"12345")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    for mode, operation, bucket in (("error", "ListObjectsV2", HTTP500), ("drop", "ListObjectsV2", DROPPED),
                                    ("error", "HeadBucket", NO_REGION)):
        s3_server.control("POST", "faults", {"mode": mode, "operation": operation, "bucket": bucket, "count": 1000})
    try:
        yield s3_server
    finally:
        _faults_off(s3_server)


def test_a_bucket_that_cannot_be_listed_is_its_error_and_the_others_are_reported(faulty, capsys):
    from include.storage_report.cli import main

    assert main(["--bucket", f"rb-*-{UID}", "--json", "--endpoint-url", faulty.endpoint_url]) == 1
    out, err = capsys.readouterr()
    report = json.loads(out)
    by_name = {b["name"]: b for b in report["buckets"]}
    assert sorted(by_name) == sorted((OK, HTTP500, DROPPED, NO_REGION))
    assert by_name[OK]["error"] is None and by_name[OK]["object_count"] == 1 and by_name[OK]["total_bytes"] == 5
    assert by_name[HTTP500]["error"].startswith("InternalError: ")
    assert by_name[DROPPED]["error"].startswith("ConnectionClosedError: ")  # botocore's name for a dropped connection
    assert by_name[NO_REGION]["error"].startswith("500: ")
    assert all(by_name[b]["object_count"] is None for b in (HTTP500, DROPPED, NO_REGION))
    assert report["totals"]["error_count"] == 3 and report["totals"]["object_count"] == 1
    assert "Traceback" not in err

    assert main(["--bucket", f"rb-*-{UID}", "--endpoint-url", faulty.endpoint_url]) == 1  # the table says it too
    table = capsys.readouterr().out
    assert "InternalError" in table and "3 bucket(s) could not be read" in table


def test_in_the_dag_a_bucket_failing_every_retry_is_its_error_and_the_report_still_comes_out(faulty, run_dag):
    """A 5xx or a dropped connection fails the task's first try (a retry may get past it); on the last try
    it is that bucket's error, so the others are still reported, and fail_on_bucket_error fails the run
    after publishing. A 4xx never needed a retry."""
    result = run_dag("s3_storage_report", {"buckets": [f"rb-*-{UID}"], "fail_on_bucket_error": True}, retries=1)
    states = result.task_states()
    assert result.state == "failed" and states[("aggregate", -1)] == "success", states
    assert states[("publish", -1)] == "failed"  # fail_on_bucket_error, after publishing
    by_name = {b["name"]: b for b in _report(result)["buckets"]}
    assert by_name[OK]["error"] is None and by_name[OK]["object_count"] == 1
    assert by_name[HTTP500]["error"].startswith("InternalError: ")
    assert by_name[DROPPED]["error"].startswith("ConnectionClosedError: ")
    assert by_name[NO_REGION]["error"].startswith("500: ")
    tries = result.try_numbers()  # the first try raised and was retried: the error is the last try's
    assert tries[("list_buckets", -1)] == 2  # HeadBucket (the region) of one bucket answered 500
    assert max(n for (task, _), n in tries.items() if task == "summarize_shard") == 2


def test_listbuckets_failing_is_a_setup_problem_in_one_line(world, s3_server, capsys, monkeypatch):
    from include.storage_report.cli import main

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    s3_server.control("POST", "faults", {"mode": "error", "operation": "ListBuckets", "count": 1000})
    try:
        code = main(["--endpoint-url", s3_server.endpoint_url])
    finally:
        _faults_off(s3_server)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("storage report: ") and "ListBuckets" in err


def test_a_valid_filter_that_matches_nothing_is_said_plainly(world, s3_server, capsys):
    from include.storage_report.cli import main

    assert main(["--bucket", f"nothing-{UID}-*", "--json", "--endpoint-url", s3_server.endpoint_url]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["buckets"] == [] and report["filters"]["unmatched_buckets"] == [f"nothing-{UID}-*"]
    assert err == f"storage report: no bucket matches 'nothing-{UID}-*'\n"
    assert main(["--bucket", f"nothing-{UID}-*", "--region", "eu-north-1", "--endpoint-url",
                 s3_server.endpoint_url]) == 0
    table = capsys.readouterr().out
    assert f"filters: buckets nothing-{UID}-*; regions eu-north-1" in table
    assert f"no bucket in those regions matches 'nothing-{UID}-*'" in table
    assert "no bucket matching those globs is in eu-north-1" in table
