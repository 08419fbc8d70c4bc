"""The local stack itself: servers reachable through the Airflow connections, the demo world as
documented, and S3 clients that survive throttling and dropped connections."""

from __future__ import annotations

from datetime import UTC

import pytest
from botocore.exceptions import ClientError

from include.aws import client as s3lib


def test_aws_default_connection_reaches_the_local_server(stack, demo_world):
    client = s3lib.client_from_connection("aws_default")
    names = {b["Name"] for b in client.list_buckets()["Buckets"]}
    assert set(demo_world.regions) <= names


def test_mysql_default_connection_reaches_mariadb(stack, demo_world):
    from airflow.providers.mysql.hooks.mysql import MySqlHook

    rows = MySqlHook(mysql_conn_id="mysql_default").get_records("SELECT COUNT(*), COUNT(DISTINCT sourceData) FROM jobs")
    assert rows[0][0] == 50
    assert rows[0][1] == 45  # incoming_000001..45; 000045 has six jobs


def test_demo_world_has_two_regions_versions_and_a_multipart_upload(s3, demo_world):
    regions = {
        name: s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"]
        for name in demo_world.regions
    }
    assert regions == demo_world.regions
    assert set(regions.values()) == {"us-east-1", "eu-west-1"}
    versions = s3.list_object_versions(Bucket=demo_world.versioned_bucket)
    # 20 overwritten + the 10 deleted keys, whose last version is now behind a delete marker
    assert sum(not v["IsLatest"] for v in versions["Versions"]) == 30
    assert len(versions["DeleteMarkers"]) == 10
    assert len(s3.list_multipart_uploads(Bucket=demo_world.logs_bucket)["Uploads"]) == 1
    classes = {o["StorageClass"] for o in s3.list_objects_v2(Bucket=demo_world.archive_bucket)["Contents"]}
    assert classes == {"GLACIER", "DEEP_ARCHIVE", "GLACIER_IR", "STANDARD"}


def test_seeded_objects_can_be_backdated(s3, demo_world):
    obj = s3.head_object(Bucket=demo_world.jobs_bucket, Key="incoming_000001")
    from datetime import datetime

    age = datetime.now(UTC) - obj["LastModified"]
    assert age.days >= 399


@pytest.mark.parametrize("mode", ["slowdown", "error", "drop"])
def test_clients_retry_throttling_and_dropped_connections(s3, s3_server, mode):
    s3.create_bucket(Bucket=f"retry-{mode}")
    client = s3lib.client_from_connection("aws_default")
    s3_server.control("POST", "faults", {"mode": mode, "operation": "ListObjectsV2", "count": 3})
    try:
        assert client.list_objects_v2(Bucket=f"retry-{mode}")["KeyCount"] == 0
    finally:
        left = s3_server.control("POST", "faults", {"mode": "off"})
    assert left["cleared"] == 0, "the injected faults were not all hit"


def test_without_retries_the_injected_fault_is_visible(s3, s3_server):
    """Proves the fault injection is real: the retry test above would pass vacuously otherwise."""
    import boto3
    from botocore.config import Config

    bare = boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name="us-east-1",
                        config=Config(retries={"mode": "standard", "total_max_attempts": 1}))
    s3.create_bucket(Bucket="retry-visible")
    s3_server.control("POST", "faults", {"mode": "slowdown", "operation": "ListObjectsV2", "count": 1})
    with pytest.raises(ClientError, match="SlowDown"):
        bare.list_objects_v2(Bucket="retry-visible")
    s3_server.control("POST", "faults", {"mode": "off"})


def test_unreachable_endpoint_fails_with_one_clear_line():
    client = s3lib.client_from_args(endpoint_url="http://127.0.0.1:9", region_name="us-east-1", max_attempts=1)
    with pytest.raises(s3lib.S3AccessError, match=r"cannot reach the S3 endpoint http://127.0.0.1:9"):
        s3lib.check_access(client)


def test_delete_objects_batches_by_1000_and_reports_every_key(s3, s3_server):
    s3.create_bucket(Bucket="batch-delete")
    s3_server.control("POST", "seed", {"bucket": "batch-delete", "generate": {"prefix": "k/", "count": 2500, "size": 1}})
    s3_server.control("POST", "stats/reset")
    keys = ({"Key": f"k/{i:08d}"} for i in range(2500))
    results = list(s3lib.delete_objects(s3lib.client_from_connection(), "batch-delete", keys))
    assert [len(r.deleted) for r in results] == [1000, 1000, 500]
    assert s3_server.control("GET", "stats")["DeleteObjects"] == 3
    assert s3.list_objects_v2(Bucket="batch-delete")["KeyCount"] == 0


def test_delete_objects_with_nothing_sends_nothing(s3_server):
    s3_server.control("POST", "stats/reset")
    assert list(s3lib.delete_objects(s3lib.client_from_connection(), "no-such-bucket", iter(()))) == []
    assert s3_server.control("GET", "stats").get("DeleteObjects", 0) == 0


def test_a_starting_mysql_server_leaves_other_servers_temporary_tables_alone(tmp_path):
    """mariadbd deletes every "#sql*" file in its tmpdir at start: with a shared /tmp, one test
    worker's server wiped another's temporary tables while it was being initialised (CI, stop 25)."""
    import secrets
    import tempfile
    from pathlib import Path

    from scripts.stack import MySQLServer

    other = Path(tempfile.gettempdir()) / f"#sql-temptable-s3ops-{secrets.token_hex(4)}-1-1.MAI"
    other.write_bytes(b"another server's temporary table")
    server = MySQLServer(tmp_path / "mysql")
    try:
        server.start()
        assert other.exists()
        conn = server.connect()
        conn.cursor().execute("SELECT 1")
        conn.close()
    finally:
        server.stop()
        other.unlink(missing_ok=True)
