"""The demo world: buckets, objects, versions, a multipart upload, job rows and upload files.

Used by ``make demo`` and by the tests, so the demo shows what the tests check. Everything is created
with names from ``DemoWorld`` so tests can find it. S3 writes go through the S3 API; when the local
server's control API is given, objects are written straight into it (fast) and can be backdated.

    python -m include.seed --endpoint-url http://127.0.0.1:PORT --upload-dir DIR  # + S3OPS_MYSQL_* env
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the boto3 stubs are a dev dependency
    from types_boto3_s3 import S3Client

# (method, endpoint, body) -> response; the local server's /_s3ops/ API (scripts/stack.py S3Server.control)
Control = Callable[[str, str, dict[str, Any]], Any]

REFERENCE_NOW = datetime(2019, 6, 3, tzinfo=UTC)


@dataclass(frozen=True)
class DemoWorld:
    """Names of everything the seeder creates."""

    logs_bucket: str = "s3ops-demo-logs"  # us-east-1, > 1000 objects, STANDARD + STANDARD_IA, a multipart upload
    archive_bucket: str = "s3ops-demo-archive"  # eu-west-1, cold storage classes
    empty_bucket: str = "s3ops-demo-empty"  # eu-west-1, nothing in it
    versioned_bucket: str = "s3ops-demo-versioned"  # us-east-1, noncurrent versions + delete markers
    jobs_bucket: str = "s3ops-demo-jobs"  # retention reference files
    deploys_bucket: str = "s3ops-demo-deploys"  # deployment folders under deploys/
    upload_bucket: str = "s3ops-demo-uploads"  # target of s3_upload
    inventory_bucket: str = "s3ops-demo-inventory"  # S3 Inventory deliveries of the versioned and logs buckets
    deploys_prefix: str = "deploys/"
    jobs_table: str = "jobs"
    regions: dict[str, str] = field(
        default_factory=lambda: {
            "s3ops-demo-logs": "us-east-1",
            "s3ops-demo-archive": "eu-west-1",
            "s3ops-demo-empty": "eu-west-1",
            "s3ops-demo-versioned": "us-east-1",
            "s3ops-demo-jobs": "us-east-1",
            "s3ops-demo-deploys": "us-east-1",
            "s3ops-demo-uploads": "us-east-1",
            "s3ops-demo-inventory": "us-east-1",
        }
    )


def create_bucket(client: S3Client, name: str, region: str = "us-east-1") -> None:
    """Create a bucket in ``region`` (idempotent)."""
    kwargs: dict[str, Any] = {"Bucket": name}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        client.create_bucket(**kwargs)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass


def put_objects(client: S3Client, bucket: str, objects: Iterable[dict[str, Any]], control: Control | None = None) -> int:
    """Write ``{"key", "size"|"body", "storage_class", "last_modified"}`` objects; returns the count."""
    objects = list(objects)
    if control is not None:
        for i in range(0, len(objects), 5000):
            control("POST", "seed", {"bucket": bucket, "objects": objects[i : i + 5000]})
        return len(objects)

    def put(obj: dict[str, Any]) -> None:
        body = obj["body"].encode() if "body" in obj else b"x" * int(obj.get("size", 0))
        client.put_object(Bucket=bucket, Key=obj["key"], Body=body, StorageClass=obj.get("storage_class", "STANDARD"))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, objects))
    return len(objects)


def logs_objects(count: int = 1500) -> list[dict[str, Any]]:
    return [
        {
            "key": f"app/2026/{1 + i % 12:02d}/{1 + i % 28:02d}/part-{i:05d}.log",
            "size": 100 + (i * 37) % 4000,
            "storage_class": "STANDARD_IA" if i % 3 == 0 else "STANDARD",
        }
        for i in range(count)
    ]


def archive_objects() -> list[dict[str, Any]]:
    classes = ["GLACIER", "DEEP_ARCHIVE", "GLACIER_IR", "STANDARD"]
    return [
        {"key": f"backups/{i // 50:02d}/dump-{i:04d}.tar", "size": 1000 + i * 11, "storage_class": classes[i % 4]}
        for i in range(300)
    ]


def reference_job_rows(now: datetime = REFERENCE_NOW) -> list[tuple[str, datetime | None, str, str]]:
    """The 50 jobs of the retention reference case, ``completedAt`` shifted so that ``now`` plays the
    role of 2019-06-03. Rows are (jobId, completedAt, type, sourceData)."""
    shift = now - REFERENCE_NOW

    def at(y: int, m: int, d: int) -> datetime:
        return datetime(y, m, d, tzinfo=UTC) + shift

    def src(n: int) -> str:
        return f"incoming_{n:06d}"

    jobs: list[tuple[datetime | None, str, str]] = []
    jobs += [(None, "OFFICIAL", src(n)) for n in [*range(1, 10), *range(19, 31)]]
    jobs += [(None, "TRIAL", src(n)) for n in (10, 16)]
    jobs += [(at(2019, 1, 1), "TRIAL", src(n)) for n in (11, 12, 13, 14, 15, 17, 18)]
    jobs += [(at(2019, 1, 5), "TRIAL", src(n)) for n in range(36, 46)]
    jobs += [(at(2019, 1, 5), "TRIAL", src(45)) for _ in range(5)]  # 000045 is shared by six jobs
    jobs += [(at(2019, 4, 1), "TRIAL", src(n)) for n in range(31, 36)]
    # OFFICIAL rows have a completion time too; it never matters for them
    rows = [
        (f"job-{i:03d}".ljust(64, "0"), completed or (at(2019, 2, 1) if kind == "OFFICIAL" else None), kind, source)
        for i, (completed, kind, source) in enumerate(jobs)
    ]
    assert len(rows) == 50
    return rows


def reference_files() -> list[str]:
    """Names of the files in the retention reference case (object key = key_prefix + name)."""
    return [f"incoming_{n:06d}" for n in range(1, 46)] + ["test", "test_1.txt", "test_2.txt"]


JOBS_DDL = """
CREATE TABLE IF NOT EXISTS `{table}` (
  jobId VARCHAR(64) NOT NULL,
  completedAt TIMESTAMP NULL DEFAULT NULL,
  type VARCHAR(32) NULL,
  sourceData VARCHAR(64) NULL,
  PRIMARY KEY (jobId),
  KEY idx_sourceData (sourceData)
) CHARACTER SET utf8mb4
"""


def seed_jobs(conn: Any, rows: Iterable[tuple[Any, ...]], table: str = "jobs", replace: bool = True) -> int:
    """Create the jobs table and insert rows (jobId, completedAt, type, sourceData), UTC."""
    cur = conn.cursor()
    cur.execute("SET time_zone = '+00:00'")
    cur.execute(JOBS_DDL.format(table=table))
    if replace:
        cur.execute(f"DELETE FROM `{table}`")
    rows = [
        (job, c.astimezone(UTC).replace(tzinfo=None) if c else None, kind, src) for job, c, kind, src in rows
    ]
    cur.executemany(f"INSERT INTO `{table}` (jobId, completedAt, type, sourceData) VALUES (%s, %s, %s, %s)", rows)
    conn.commit()
    return len(rows)


def upload_files(base_dir: Path, now: datetime) -> dict[str, list[Path]]:
    """Files in the producer's layout: finished ones (two hours back: even the last minute of that hour
    ended an hour ago, whatever the settle time), one still being written (this minute) and malformed
    ones. Returns them by kind."""
    base_dir.mkdir(parents=True, exist_ok=True)
    done: list[Path] = []
    hour = (now - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    for location in ("berlin", "paris"):
        for minute in (0, 1, 2, 15, 59):
            for topic in ("temperature", "humidity"):
                t = hour + timedelta(minutes=minute)
                p = base_dir / location / f"{t:%Y/%m/%d/%H}" / f"{t:%M}-{topic}.dat"
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(f"{location} {topic} {t.isoformat()}\n".encode() * (10 + minute))
                old = (now - timedelta(minutes=10)).timestamp()
                os.utime(p, (old, old))
                done.append(p)
    current = base_dir / "berlin" / f"{now:%Y/%m/%d/%H}" / f"{now:%M}-temperature.dat"
    current.parent.mkdir(parents=True, exist_ok=True)
    current.write_bytes(b"still being written\n")
    malformed = [base_dir / "berlin" / "2026" / "13" / "01" / "00" / "05-temperature.dat", base_dir / "paris" / "notes.txt"]
    for p in malformed:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"not in the layout\n")
    return {"finished": done, "in_progress": [current], "malformed": malformed}


def seed_s3(client: S3Client, world: DemoWorld = DemoWorld(), control: Control | None = None, now: datetime | None = None) -> None:
    """Create the demo buckets and objects (idempotent: re-seeding rewrites the same keys)."""
    now = now or datetime.now(UTC)
    for name, region in world.regions.items():
        create_bucket(client, name, region)
    put_objects(client, world.logs_bucket, logs_objects(), control)
    put_objects(client, world.archive_bucket, archive_objects(), control)
    # An incomplete multipart upload: one 1 MiB part, never completed (a hidden cost).
    uploads = client.list_multipart_uploads(Bucket=world.logs_bucket).get("Uploads", [])
    if not uploads:
        mpu = client.create_multipart_upload(Bucket=world.logs_bucket, Key="tmp/abandoned-upload.bin")
        client.upload_part(Bucket=world.logs_bucket, Key="tmp/abandoned-upload.bin", UploadId=mpu["UploadId"],
                           PartNumber=1, Body=b"m" * (1024 * 1024))
    # Versioned bucket: 50 keys, 20 overwritten once (noncurrent versions), 10 deleted (delete markers).
    client.put_bucket_versioning(Bucket=world.versioned_bucket, VersioningConfiguration={"Status": "Enabled"})
    if not client.list_objects_v2(Bucket=world.versioned_bucket, MaxKeys=1).get("KeyCount"):
        for i in range(50):
            client.put_object(Bucket=world.versioned_bucket, Key=f"doc-{i:02d}.txt", Body=b"v1" * (50 + i))
        for i in range(20):
            client.put_object(Bucket=world.versioned_bucket, Key=f"doc-{i:02d}.txt", Body=b"v2" * (60 + i))
        for i in range(40, 50):
            client.delete_object(Bucket=world.versioned_bucket, Key=f"doc-{i:02d}.txt")
    # Retention reference files; written "long ago" when the server can backdate them.
    old = (now - timedelta(days=400)).isoformat()
    put_objects(
        client, world.jobs_bucket,
        [{"key": name, "size": 1000 + i, "last_modified": old} for i, name in enumerate(reference_files())], control,
    )
    put_objects(client, world.deploys_bucket, deploy_objects(world.deploys_prefix, now), control)
    seed_inventories(client, world, now)


def seed_inventories(client: Any, world: DemoWorld, now: datetime) -> None:
    """Real S3 Inventory deliveries (include.inventory.generate) for ``source: inventory``: every version
    of the versioned bucket as CSV, the logs bucket's current objects as Parquet. Re-seeding the same
    minute rewrites the same delivery."""
    from include.inventory.generate import write_inventory

    write_inventory(client, world.versioned_bucket, dest_bucket=world.inventory_bucket, fmt="CSV", versions=True,
                    rows_per_file=25, when=now)
    write_inventory(client, world.logs_bucket, dest_bucket=world.inventory_bucket, fmt="Parquet",
                    rows_per_file=500, when=now)


def deploy_objects(prefix: str, now: datetime, count: int = 12) -> list[dict[str, Any]]:
    """``count`` deployment folders, release-001 the oldest (5 days apart), plus a loose file."""
    objs: list[dict[str, Any]] = [{"key": f"{prefix}README.txt", "body": "deployments live in folders\n"}]
    for i in range(1, count + 1):
        when = (now - timedelta(days=5 * (count - i))).isoformat()
        for name in ("index.html", "assets/app.js", "assets/app.css"):
            objs.append({"key": f"{prefix}release-{i:03d}/{name}", "size": 200 + i, "last_modified": when})
    return objs


def control_api(endpoint_url: str) -> Control | None:
    """The local S3 server's ``/_s3ops/`` control API (fast seeding, backdating), if it has one."""
    import json
    import urllib.error
    import urllib.request

    def call(method: str, what: str, body: dict[str, Any] | None = None) -> Any:
        req = urllib.request.Request(f"{endpoint_url.rstrip('/')}/_s3ops/{what}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.loads(resp.read())

    try:
        call("GET", "stats")
    except (urllib.error.URLError, ValueError, OSError):
        return None  # plain S3 (or moto without the control API): seed through the S3 API
    return call


def main() -> None:
    import boto3
    from botocore.config import Config

    parser = argparse.ArgumentParser(description="Seed the s3ops demo world")
    parser.add_argument("--endpoint-url", default=os.environ.get("S3OPS_S3_ENDPOINT"))
    parser.add_argument("--upload-dir", type=Path, help="create the upload base_dir here")
    parser.add_argument("--no-mysql", action="store_true")
    args = parser.parse_args()
    client = boto3.client("s3", endpoint_url=args.endpoint_url, region_name="us-east-1",
                          config=Config(retries={"mode": "standard", "max_attempts": 10}))
    control = control_api(args.endpoint_url) if args.endpoint_url else None
    seed_s3(client, control=control)
    if not args.no_mysql:
        import MySQLdb

        # S3OPS_MYSQL_HOST: the `mysql` service in docker compose; the local stack listens on 127.0.0.1.
        conn = MySQLdb.connect(host=os.environ.get("S3OPS_MYSQL_HOST", "127.0.0.1"),
                               port=int(os.environ["S3OPS_MYSQL_PORT"]),
                               user=os.environ["S3OPS_MYSQL_USER"], passwd=os.environ["S3OPS_MYSQL_PASSWORD"],
                               db=os.environ["S3OPS_MYSQL_DATABASE"])
        seed_jobs(conn, reference_job_rows(datetime.now(UTC)))
        conn.close()
    if args.upload_dir:
        upload_files(args.upload_dir, datetime.now(UTC))
    print("demo world seeded")


if __name__ == "__main__":
    main()
