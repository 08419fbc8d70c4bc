"""source: inventory (issue 17) against the local S3 server: real inventories written by
include.inventory.generate in AWS's layout, read by real DAG runs (dag.test), compared with the listing."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

UID = uuid.uuid4().hex[:8]
DEST = f"inv-dest-{UID}"
CSV_B = f"inv-csv-{UID}"  # versioned, CSV inventory with every version
PARQ_B = f"inv-parq-{UID}"  # Parquet inventory of current versions only
PLAIN_B = f"inv-none-{UID}"  # no inventory configuration: listed instead
OLDER_B = f"inv-older-{UID}"  # a newer delivery with a bad checksum, an older good one
BAD_B = f"inv-badsum-{UID}"  # the only delivery's manifest.checksum does not match
TAMPERED_B = f"inv-tamper-{UID}"  # a data file changed after the manifest was written
CLASSES = ["STANDARD", "STANDARD_IA", "GLACIER", "DEEP_ARCHIVE"]
#: What an inventory adds to a bucket entry; everything else must equal the listing's.
INVENTORY_ONLY = ("inventory", "inventory_note")


def _seed(s3: Any, s3_server: Any, bucket: str, n: int, *, versioned: bool = False) -> None:
    s3.create_bucket(Bucket=bucket)
    if versioned:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    base = datetime(2025, 1, 1, tzinfo=UTC)
    objs = [{"key": f"p{i % 7}/obj-{i:05d}" + (" ü,\"q\"" if i % 50 == 0 else ""), "size": (i * 7919) % 10_000,
             "storage_class": CLASSES[i % 4], "last_modified": (base + timedelta(hours=i)).isoformat()}
            for i in range(n)]
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": objs})
    if versioned:
        s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
            {**o, "size": o["size"] + 1, "last_modified": (base + timedelta(days=600)).isoformat()}
            for o in objs[:300:3]]})  # overwrites, newer (moto orders versions by time): noncurrent versions
        for o in objs[1:200:10]:
            s3.delete_object(Bucket=bucket, Key=o["key"])  # delete markers
    upload = s3.create_multipart_upload(Bucket=bucket, Key="unfinished.bin")
    s3.upload_part(Bucket=bucket, Key="unfinished.bin", UploadId=upload["UploadId"], PartNumber=1, Body=b"z" * 1234)


@pytest.fixture(scope="module")
def inventories(s3: Any, s3_server: Any) -> dict[str, Any]:
    from include.inventory.generate import write_inventory

    s3.create_bucket(Bucket=DEST)
    _seed(s3, s3_server, CSV_B, 2600, versioned=True)
    _seed(s3, s3_server, PARQ_B, 1500)
    _seed(s3, s3_server, PLAIN_B, 300)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    keys = {
        CSV_B: write_inventory(s3, CSV_B, dest_bucket=DEST, fmt="CSV", versions=True, rows_per_file=250, when=now),
        PARQ_B: write_inventory(s3, PARQ_B, dest_bucket=DEST, fmt="Parquet", prefix="inv/parquet", rows_per_file=400,
                                when=now),
    }
    for bucket in (OLDER_B, BAD_B, TAMPERED_B):
        _seed(s3, s3_server, bucket, 120)
    older = now - timedelta(days=1)
    keys[OLDER_B] = write_inventory(s3, OLDER_B, dest_bucket=DEST, rows_per_file=50, when=older)
    s3.put_object(Bucket=OLDER_B, Key="after-the-inventory.txt", Body=b"new")  # only a newer delivery has it
    newer = write_inventory(s3, OLDER_B, dest_bucket=DEST, rows_per_file=50, when=now)
    s3.put_object(Bucket=DEST, Key=newer.replace("manifest.json", "manifest.checksum"), Body=b"0" * 32)
    bad = write_inventory(s3, BAD_B, dest_bucket=DEST, when=now)
    s3.put_object(Bucket=DEST, Key=bad.replace("manifest.json", "manifest.checksum"), Body=b"f" * 32)
    tampered = write_inventory(s3, TAMPERED_B, dest_bucket=DEST, rows_per_file=50, when=now)
    first = json.loads(s3.get_object(Bucket=DEST, Key=tampered)["Body"].read())["files"][1]["key"]
    s3.put_object(Bucket=DEST, Key=first, Body=b"not the file the manifest describes")
    return {"keys": keys, "now": now, "older": older, "newer": newer}


def _report(result: Any) -> dict[str, Any]:
    assert result.state == "success", result.task_states()
    return json.loads((result.artifacts() / "report.json").read_text())


def _same_as_listing(inventory: dict[str, Any], listing: dict[str, Any]) -> None:
    by_name = {b["name"]: b for b in listing["buckets"]}
    assert [b["name"] for b in inventory["buckets"]] == list(by_name)
    for entry in inventory["buckets"]:
        assert {k: v for k, v in entry.items() if k not in INVENTORY_ONLY} == by_name[entry["name"]], entry["name"]
    assert inventory["totals"] == listing["totals"] and inventory["regions"] == listing["regions"]


@pytest.mark.parametrize("versions", [False, True])
def test_report_from_inventory_equals_report_from_listing(inventories, s3, run_dag, versions):
    conf = {"buckets": [CSV_B, PARQ_B, PLAIN_B], "include_versions": versions, "size_unit": "B"}
    listing = _report(run_dag("s3_storage_report", conf))
    result = run_dag("s3_storage_report", {**conf, "source": "inventory"})
    inventory = _report(result)
    _same_as_listing(inventory, listing)
    by_name = {b["name"]: b for b in inventory["buckets"]}
    date = inventories["now"].strftime("%Y-%m-%dT%H:%M:00Z")
    assert by_name[CSV_B]["inventory"]["date"] == date and by_name[CSV_B]["inventory"]["format"] == "CSV"
    assert by_name[CSV_B]["inventory"]["manifest"] == f"s3://{DEST}/{inventories['keys'][CSV_B]}"
    assert by_name[CSV_B]["object_count"] == 2600 - 20 and by_name[CSV_B]["incomplete_multipart_uploads"]["count"] == 1
    if versions:  # the Parquet inventory has current versions only: that bucket is listed, and says why
        assert by_name[CSV_B]["noncurrent_versions"]["object_count"] == 100 + 20
        assert by_name[CSV_B]["delete_markers"] == 20
        note = by_name[PARQ_B]["inventory_note"]
        assert "inventory" not in by_name[PARQ_B] and note.startswith("listed: ")
        assert "all versions" in note or "no IsLatest/IsDeleteMarker columns" in note
    else:
        assert by_name[PARQ_B]["inventory"]["format"] == "Parquet"
    assert "no inventory configuration" in by_name[PLAIN_B]["inventory_note"]
    assert inventory["inventory_dates"][CSV_B] == date
    # the date is in every output
    folder = result.artifacts()
    assert f"{CSV_B}: S3 Inventory of {date}" in (folder / "report.txt").read_text()
    assert f"{CSV_B}: S3 Inventory of {date}" in (folder / "report.html").read_text()
    assert f",{date}," in (folder / "report.csv").read_text()
    # fan-out: one mapped task per group of data files, nothing but addresses in XCom
    parts = [p for shard in result.xcom("plan_shards") for p in shard["parts"]]
    csv_parts = [p for p in parts if p["bucket"] == CSV_B]
    assert len(csv_parts) == 2 and [p["inventory"]["first"] for p in csv_parts] == [0, 8]  # 11 files, 8 per part
    assert len(json.dumps(result.xcom("plan_shards"))) < 10_000


def test_checksums_decide_which_delivery_is_read_and_a_bad_one_is_refused(inventories, s3, run_dag):
    result = run_dag("s3_storage_report", {"buckets": [OLDER_B, BAD_B, TAMPERED_B], "source": "inventory",
                                           "inventory_fallback": "error", "date_format": "eu"})
    report = _report(result)
    by_name = {b["name"]: b for b in report["buckets"]}
    older = by_name[OLDER_B]  # the older, verified delivery; the newer one named as refused
    assert older["error"] is None and older["inventory"]["date"] == inventories["older"].strftime("%Y-%m-%dT%H:%M:00Z")
    assert older["object_count"] == 120  # the object written after it is not in it
    assert "does not match" in older["inventory"]["skipped"][0] and inventories["newer"] in older["inventory"]["skipped"][0]
    bad = by_name[BAD_B]
    assert bad["error"].startswith("NoInventory: ") and "manifest.checksum" in bad["error"]
    assert "does not match" in bad["error"] and bad["object_count"] is None
    tampered = by_name[TAMPERED_B]  # never half-read: a data file that does not match refuses the bucket
    assert tampered["error"].startswith("InventoryRefused: ") and "the manifest says" in tampered["error"]
    assert tampered["object_count"] is None and tampered["total_bytes"] is None
    assert report["totals"]["error_count"] == 2
    assert inventories["older"].strftime("%d/%m/%Y") in (result.artifacts() / "report.txt").read_text()


def test_the_command_line_reads_inventories_too(inventories, s3_server, capsys):
    from include.storage_report.cli import main

    common = ["--bucket", CSV_B, "--bucket", PARQ_B, "--bucket", PLAIN_B, "--json", "--unit", "B",
              "--endpoint-url", s3_server.endpoint_url]
    assert main(common) == 0
    listing = json.loads(capsys.readouterr().out)
    assert main([*common, "--source", "inventory"]) == 0
    inventory = json.loads(capsys.readouterr().out)
    assert inventory["source"] == "inventory" and set(inventory["inventory_dates"]) == {CSV_B, PARQ_B}
    for report in (listing, inventory):
        report.pop("generated_at", None)
    _same_as_listing(inventory, listing)
    # a bucket without an inventory: an error by option, and the exit code says so
    assert main([*common, "--source", "inventory", "--inventory-fallback", "error"]) == 1
    errored = {b["name"]: b for b in json.loads(capsys.readouterr().out)["buckets"]}
    assert errored[PLAIN_B]["error"].startswith("NoInventory: ") and errored[CSV_B]["error"] is None
