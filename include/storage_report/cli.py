"""``s3ops report`` (``python -m include.storage_report.cli``): the storage report without Airflow.

The same steps the DAG runs as tasks, in one process: list the buckets, plan parts (listing key ranges,
or groups of inventory data files with ``--source inventory``), summarize every part, build and render.

    s3ops report --bucket 'logs-*' --unit GiB --versions --endpoint-url http://127.0.0.1:9000
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING, Any

from include.aws.shards import DEFAULT_PARTS_PER_BUCKET, DEFAULT_SHARD_OBJECTS
from include.core.dates import DATE_FORMATS, check_date_format
from include.core.units import SIZE_UNITS
from include.storage_report import inventory
from include.storage_report.pricing import STORAGE_CLASSES, PriceTable, load_prices
from include.storage_report.summarize import build_report, list_buckets, plan

if TYPE_CHECKING:  # the boto3 stubs are a dev dependency
    from types_boto3_s3 import S3Client


def run_local(
    client_for: Callable[[str | None], Any], *, patterns: Sequence[str] = (), regions: Sequence[str] = (),
    storage_classes: Sequence[str] = (), size_unit: str = "auto", include_versions: bool = False,
    prices: PriceTable | None = None, now: datetime | None = None, date_format: str = "iso", show_time: bool = True,
    source: str = "listing", inventory_fallback: str = "listing", workers: int = DEFAULT_PARTS_PER_BUCKET,
    shard_objects: int | None = None, shard_parts: int | None = None,
) -> dict[str, Any]:
    """The whole report in one process (the command line): the same steps the DAG runs as tasks, the
    parts summarized by ``workers`` threads at once, as the DAG's mapped tasks run side by side."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    check_date_format(date_format)  # before any request
    buckets = list_buckets(client_for("us-east-1"), patterns, regions)
    if source == "inventory":
        planned = inventory.plan(client_for, buckets, max_shards=1024, include_versions=include_versions,
                                 fallback=inventory_fallback,
                                 listing_plan=partial(plan, threshold=shard_objects, parts_per_bucket=shard_parts))
    else:
        planned = plan(client_for, buckets, max_shards=1024, threshold=shard_objects, parts_per_bucket=shard_parts)

    def summarize(part: Any) -> dict[str, Any]:
        return inventory.summarize_any_part(client_for(part["region"]), part, include_versions=include_versions,
                                            storage_classes=storage_classes)

    with ThreadPoolExecutor(workers) as pool:  # map keeps the parts' order: the report is the same at any width
        results = list(pool.map(summarize, [part for shard in planned for part in shard["parts"]]))
    return build_report(buckets, results, prices=prices or load_prices(), size_unit=size_unit, source=source,
                        include_versions=include_versions, generated_at=now or datetime.now(timezone.utc),
                        date_format=date_format, show_time=show_time)


def main(argv: Sequence[str] | None = None) -> int:
    import json

    from include.aws.client import S3AccessError, check_access, client_from_args
    from include.storage_report import render as report_render

    parser = argparse.ArgumentParser(prog="s3ops report",
                                     description="Storage report of every S3 bucket the credentials can see.")
    parser.add_argument("--bucket", action="append", default=[], help="bucket name or glob (repeatable)")
    parser.add_argument("--region", action="append", default=[], help="only buckets in this region (repeatable)")
    parser.add_argument("--storage-class", action="append", default=[], choices=STORAGE_CLASSES,
                        help="count only this storage class (repeatable)")
    parser.add_argument("--unit", default="auto", choices=SIZE_UNITS, help="size unit (default auto)")
    parser.add_argument("--versions", action="store_true", help="also count noncurrent versions and delete markers")
    parser.add_argument("--source", choices=("listing", "inventory"), default="listing",
                        help="list the buckets (default) or read each one's newest S3 Inventory")
    parser.add_argument("--inventory-fallback", choices=inventory.FALLBACKS, default="listing",
                        help="with --source inventory, a bucket without one is listed (default) or reported as an error")
    parser.add_argument("--date-format", default="iso", metavar="FORMAT",
                        help=f"dates in the table/csv: {', '.join(DATE_FORMATS)} (12/29/2020 vs 29/12/2020) or a "
                             "strftime pattern like %%d.%%m.%%Y (default iso; --json stays ISO 8601 UTC)")
    parser.add_argument("--show-time", action=argparse.BooleanOptionalAction, default=True,
                        help="show the time of day next to dates (default: yes)")
    parser.add_argument("--group-by", choices=("bucket", "region"), default="bucket",
                        help="one row per bucket (default) or per region")
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print report.json instead of the table")
    fmt.add_argument("--csv", action="store_true", help="print report.csv instead of the table")
    parser.add_argument("--profile", help="AWS profile (default: the environment's credentials)")
    parser.add_argument("--endpoint-url", help="S3-compatible endpoint (default: AWS)")
    parser.add_argument("--workers", type=int, default=DEFAULT_PARTS_PER_BUCKET, metavar="N",
                        help=f"key ranges listed at once (default {DEFAULT_PARTS_PER_BUCKET}, a big bucket's parts)")
    parser.add_argument("--shard-objects", type=int, default=DEFAULT_SHARD_OBJECTS, metavar="N",
                        help=f"a bucket with more objects is split into key ranges (default {DEFAULT_SHARD_OBJECTS:,})")
    parser.add_argument("--shard-parts", type=int, default=DEFAULT_PARTS_PER_BUCKET, metavar="N",
                        help=f"at most this many key ranges per big bucket (default {DEFAULT_PARTS_PER_BUCKET})")
    parser.add_argument("--pricing", help="JSON file overriding list prices (format of the pricing setting)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    for flag in ("workers", "shard_objects", "shard_parts"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1, not {getattr(args, flag)}")
    clients: dict[str | None, Any] = {}
    clients_lock = threading.Lock()

    def client_for(region: str | None) -> S3Client:
        with clients_lock:  # parts are summarized by several threads; one client per region is shared
            if region not in clients:
                clients[region] = client_from_args(profile=args.profile, endpoint_url=args.endpoint_url,
                                                   region_name=region or "us-east-1", mode="adaptive")
            return clients[region]

    try:
        check_access(client_for("us-east-1"))
        override = None
        if args.pricing:
            with open(args.pricing, encoding="utf-8") as fh:
                override = json.load(fh)
        report = run_local(client_for, patterns=args.bucket, regions=args.region, storage_classes=args.storage_class,
                           size_unit=args.unit, include_versions=args.versions, prices=load_prices(override),
                           date_format=args.date_format, show_time=args.show_time, source=args.source,
                           inventory_fallback=args.inventory_fallback, workers=args.workers,
                           shard_objects=args.shard_objects, shard_parts=args.shard_parts)
    except (S3AccessError, ValueError, OSError) as exc:
        print(f"storage report: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
    elif args.csv:
        sys.stdout.write(report_render.render_csv(report, group_by=args.group_by))
    else:
        print(report_render.render_table(report, group_by=args.group_by))
    return 1 if report["totals"]["error_count"] else 0


if __name__ == "__main__":
    sys.exit(main())
