"""The s3ops side of the benchmarks, as a command so it is measured as its own process, like the peers.

    python -m bench.s3ops_cli summarize --endpoint-url URL BUCKET...   # the storage report's listing phase
    python -m bench.s3ops_cli report --endpoint-url URL [--shard-objects N] BUCKET...   # plan + parts in parallel
    python -m bench.s3ops_cli plan --endpoint-url URL [--shard-objects N] BUCKET...   # the plan alone (its probes)
    python -m bench.s3ops_cli delete --endpoint-url URL --bucket B --run-dir D   # delete every chunk of a plan
    python -m bench.s3ops_cli retention-plan --endpoint-url URL --bucket B --key-prefix P --mysql JSON --table T --run-dir D
    python -m bench.s3ops_cli upload-botocore --endpoint-url URL --bucket B --base-dir D [--multipart-threshold-mib N]

Both print one JSON line (what was counted or deleted) so the bench can check the work was really done.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC
from pathlib import Path
from typing import Any


def summarize(client: Any, buckets: list[str]) -> dict[str, Any]:
    """Objects, bytes and per-class totals of whole buckets, through the storage report's listing code."""
    from include.storage_report.summarize import Totals, count_range

    total = Totals()
    for bucket in buckets:
        total.merge(count_range(client, bucket, None, None))
    return {"objects": total.object_count, "bytes": total.total_bytes, "pages": total.pages, "classes": total.classes}


def summarize_plain(client: Any, buckets: list[str]) -> dict[str, Any]:
    """The same totals through a plain boto3 paginator: the reference the fast listing is measured against."""
    objects = total = pages = 0
    classes: dict[str, list[int]] = {}
    for bucket in buckets:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            pages += 1
            for obj in page.get("Contents", []):
                objects += 1
                total += obj["Size"]
                counts = classes.setdefault(obj.get("StorageClass", "STANDARD"), [0, 0])
                counts[0] += 1
                counts[1] += obj["Size"]
    return {"objects": objects, "bytes": total, "pages": pages, "classes": classes}


def report(endpoint_url: str, buckets: list[str], shard_objects: int | None, plan_only: bool) -> dict[str, Any]:
    """``s3ops report``'s path (include.storage_report.cli.run_local): the DAG's plan (probe, prefix walk,
    boundaries), then every key range listed at once, as the DAG's mapped tasks would list them. Also
    says how many ListObjectsV2 requests the plan made (this process) and the key ranges (the forked
    workers), counted by the clients, so the bench can hold the ranges' requests to the floor."""
    import multiprocessing
    import os

    from include.storage_report.cli import ClientFactory, default_processes, run_local
    from include.storage_report.summarize import list_buckets, plan

    class CountingFactory(ClientFactory):
        def __init__(self) -> None:
            super().__init__(endpoint_url=endpoint_url)
            self.parent = os.getpid()
            self.lists = multiprocessing.get_context("fork").Array("i", 2)  # [plan, ranges]; shared with the forks

        def __call__(self, region: str | None) -> Any:
            client = super().__call__(region)
            if not getattr(client, "_bench_counted", False):
                client._bench_counted = True
                client.meta.events.register("before-send.s3.ListObjectsV2", self.count)  # every attempt, as the server counts
            return client

        def count(self, **_: Any) -> None:
            with self.lists.get_lock():
                self.lists[0 if os.getpid() == self.parent else 1] += 1

    client_for = CountingFactory()
    if plan_only:
        found = list_buckets(client_for("us-east-1"), buckets, ())  # as run_local does
        planned = plan(client_for, found, max_shards=1024, threshold=shard_objects)
        return {"parts": sum(len(s["parts"]) for s in planned)}
    built = run_local(client_for, patterns=buckets, shard_objects=shard_objects, size_unit="B",
                      processes=default_processes())
    entries = built["buckets"]
    if any(b.get("error") for b in entries):
        raise RuntimeError(f"report errors: {[b['error'] for b in entries if b.get('error')]}")
    return {"objects": sum(b["object_count"] for b in entries), "bytes": sum(b["total_bytes"] for b in entries),
            "list_requests": {"plan": client_for.lists[0], "ranges": client_for.lists[1]}}


def delete(client: Any, bucket: str, run_dir: Path) -> dict[str, Any]:
    """The retention / deploy-cleanup delete step: every chunk of the plan in ``run_dir``, then the audit."""
    from include.deletion import plan as deletion

    counts = [deletion.delete_chunk(client, bucket, run_dir, chunk, recheck=None, dry_run=False)
              for chunk in deletion.read_plan(run_dir)["chunks"]]
    deletion.write_audit(run_dir)
    return {"deleted": sum(c["deleted"] for c in counts), "errors": sum(c["errors"] for c in counts),
            "requests": sum(c["requests"] for c in counts)}


def retention_plan(client: Any, bucket: str, key_prefix: str, mysql: dict[str, Any], table: str,
                   run_dir: Path) -> dict[str, Any]:
    """The retention DAG's plan step as ``s3ops retention plan`` runs it (``plan_bucket``): the bucket listing
    merged with the job rows, candidates looked up under the spellings the table's rows allow, chunks written."""
    from datetime import datetime

    import MySQLdb

    from include.retention import jobs as jobs_db
    from include.retention.plan import plan_bucket
    from include.retention.policy import Policy

    summary = plan_bucket(
        client, lambda: jobs_db.prepare(MySQLdb.connect(**mysql)), run_dir, bucket=bucket, key_prefix=key_prefix,
        jobs_table=table, policy=Policy.at(datetime.now(UTC)), source="listing", include_versions=False,
        allow_empty_jobs=False, trial_retention="P3M", orphan_min_age_days=7)
    return {"delete_count": summary["delete_count"], "scanned_count": summary["scanned_count"],
            "by_reason": summary["by_reason"]}


def upload_botocore(client: Any, bucket: str, base_dir: Path, threshold: int, workers: int = 16) -> dict[str, Any]:
    """The reference the CRT data plane was chosen against: the same upload → verify → delete through
    botocore (``put_object``) and s3transfer (multipart above ``threshold``, parts in parallel), with the
    same full-object CRC64NVME. s3transfer cannot send ``If-None-Match`` on CompleteMultipartUpload
    (not in its allowed upload arguments), so its multipart path here is not what s3ops promises."""
    from concurrent.futures import ThreadPoolExecutor
    from datetime import datetime

    from boto3.s3.transfer import TransferConfig
    from s3transfer.manager import TransferManager

    from include.upload.layout import scan_base_dir
    from include.upload.uploader import read_local

    scan = scan_base_dir(base_dir, datetime.now(UTC), 0, 10**9)
    config = TransferConfig(multipart_threshold=threshold, multipart_chunksize=min(threshold, 16 * 2**20),
                            max_concurrency=workers)
    manager = TransferManager(client, config)

    def one(rel: str) -> int:
        path = base_dir / rel
        with path.open("rb") as fh:
            local = read_local(fh)
            fh.seek(0)
            if local.size < threshold:
                answer = client.put_object(Bucket=bucket, Key=rel, Body=fh.read(), IfNoneMatch="*",
                                           ChecksumCRC64NVME=local.crc64nvme)
                ok = answer.get("ChecksumCRC64NVME") == local.crc64nvme
            else:
                manager.upload(str(path), bucket, rel, extra_args={"ChecksumCRC64NVME": local.crc64nvme}).result()
                head = client.head_object(Bucket=bucket, Key=rel, ChecksumMode="ENABLED")
                ok = head.get("ChecksumCRC64NVME") == local.crc64nvme
        if not ok:
            raise RuntimeError(f"{rel}: not verified")
        path.unlink()
        return local.size

    with ThreadPoolExecutor(workers) as pool:
        sizes = list(pool.map(one, [c.rel for c in scan.eligible]))
    manager.shutdown()
    return {"uploaded": len(sizes), "bytes": sum(sizes)}


def main(argv: list[str] | None = None) -> int:
    from include.aws.client import client_from_args

    parser = argparse.ArgumentParser(prog="python -m bench.s3ops_cli", description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint-url", required=True)
    sub = parser.add_subparsers(dest="command", required=True)
    p_sum = sub.add_parser("summarize")
    p_sum.add_argument("buckets", nargs="+")
    p_sum.add_argument("--plain", action="store_true", help="list with a plain boto3 paginator (reference)")
    for name in ("report", "plan"):
        p_rep = sub.add_parser(name)
        p_rep.add_argument("buckets", nargs="+")
        p_rep.add_argument("--shard-objects", type=int, help="split buckets above this many objects (default: the DAG's)")
    p_del = sub.add_parser("delete")
    p_del.add_argument("--bucket", required=True)
    p_del.add_argument("--run-dir", type=Path, required=True)
    p_ret = sub.add_parser("retention-plan")
    p_ret.add_argument("--bucket", required=True)
    p_ret.add_argument("--key-prefix", default="")
    p_ret.add_argument("--mysql", type=json.loads, required=True, help="MySQLdb.connect() arguments as JSON")
    p_ret.add_argument("--table", required=True)
    p_ret.add_argument("--run-dir", type=Path, required=True)
    p_up = sub.add_parser("upload-botocore")
    p_up.add_argument("--bucket", required=True)
    p_up.add_argument("--base-dir", type=Path, required=True)
    p_up.add_argument("--multipart-threshold-mib", type=int, default=64)
    args = parser.parse_args(argv)
    if args.command == "upload-botocore":
        client = client_from_args(endpoint_url=args.endpoint_url, region_name="us-east-1", pool=24)
        result = upload_botocore(client, args.bucket, args.base_dir, args.multipart_threshold_mib * 2**20)
        print(json.dumps(result))
        return 0
    if args.command in ("report", "plan"):  # makes its clients as `s3ops report` does
        print(json.dumps(report(args.endpoint_url, args.buckets, args.shard_objects, plan_only=args.command == "plan")))
        return 0
    client = client_from_args(endpoint_url=args.endpoint_url, region_name="us-east-1", mode="adaptive")
    if args.command == "summarize":
        result = (summarize_plain if args.plain else summarize)(client, args.buckets)
    elif args.command == "delete":
        result = delete(client, args.bucket, args.run_dir)
    else:
        result = retention_plan(client, args.bucket, args.key_prefix, args.mysql, args.table, args.run_dir)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
