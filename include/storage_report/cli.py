"""``s3ops report`` (``python -m include.storage_report.cli``): the storage report without Airflow.

The same steps the DAG runs as tasks, on one machine: list the buckets, plan parts (listing key ranges,
or groups of inventory data files with ``--source inventory``), summarize every part, build and render.
When a bucket is split into key ranges, the ranges are listed by ``--processes`` worker processes (on
Linux, forked after the plan), as the DAG's mapped tasks each run in a process of their own: parsing
1,000-key pages is Python work, and one process's threads share one core.

    s3ops report --bucket 'logs-*' --unit GiB --versions --endpoint-url http://127.0.0.1:9000
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from include.aws.shards import DEFAULT_PARTS_PER_BUCKET, DEFAULT_SHARD_OBJECTS
from include.core.dates import DATE_FORMATS, check_date_format
from include.core.units import SIZE_UNITS
from include.storage_report import inventory
from include.storage_report.pricing import STORAGE_CLASSES, PriceTable, load_prices, read_pricing_file
from include.storage_report.settings import check_patterns, check_regions
from include.storage_report.summarize import (
    ErrorText,
    build_report,
    final_bucket_error,
    list_buckets,
    plan,
    s3_failures,
)

if TYPE_CHECKING:  # the boto3 stubs are a dev dependency
    from types_boto3_s3 import S3Client


class ClientFactory:
    """``client_for(region)`` of the command line: one client per region, shared by the threads of a
    process. A forked worker process makes its own session and clients (open connections, the credential
    providers' included, must not be shared between processes); only the parent's loaded service models
    are kept (botocore's ``data_loader`` component), which saves each worker ~0.25 s of CPU."""

    def __init__(self, *, profile: str | None = None, endpoint_url: str | None = None, mode: str = "adaptive") -> None:
        self.profile, self.endpoint_url, self.mode = profile, endpoint_url, mode
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._session: Any = None  # botocore's
        self._clients: dict[str | None, Any] = {}

    def __call__(self, region: str | None) -> S3Client:
        from include.aws.client import cli_session, client_from_args

        with self._lock:
            if self._pid != os.getpid() or self._session is None:
                session = cli_session(self.profile)
                if self._session is not None:  # forked
                    session.register_component("data_loader", self._session.get_component("data_loader"))
                self._pid, self._clients, self._session = os.getpid(), {}, session
            if region not in self._clients:
                self._clients[region] = client_from_args(endpoint_url=self.endpoint_url, region_name=region or "us-east-1",
                                                         mode=self.mode, session=self._session)
            return self._clients[region]


@dataclass(frozen=True)
class _Job:
    """What summarizing a part needs besides the part."""

    client_for: Callable[[str | None], Any]
    include_versions: bool
    storage_classes: Sequence[str]
    as_bucket_error: ErrorText = final_bucket_error


_FORKED_JOB: list[_Job] = []  # set by _start_worker in a forked worker process


def _start_worker(job: _Job) -> None:
    _FORKED_JOB[:] = [job]  # a fork inherits ``job``: it is not pickled


def _summarize_parts(parts: Sequence[dict[str, Any]], threads: int, job: _Job | None = None) -> list[dict[str, Any]]:
    """Summarize ``parts`` with ``threads`` threads of this process (``map`` keeps their order)."""
    todo = job or _FORKED_JOB[0]

    def one(part: dict[str, Any]) -> dict[str, Any]:
        return inventory.summarize_any_part(todo.client_for(part["region"]), part,
                                            include_versions=todo.include_versions,
                                            storage_classes=todo.storage_classes,
                                            as_bucket_error=todo.as_bucket_error)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, parts))


def default_processes() -> int:
    """Worker processes for the key ranges of split buckets: one per core this process may use, up to 8,
    where processes can be forked (Linux); elsewhere 1 (threads only: macOS's system libraries are not
    safe across a fork)."""
    if not sys.platform.startswith("linux"):
        return 1
    return max(1, min(8, len(os.sched_getaffinity(0))))


def run_local(
    client_for: Callable[[str | None], Any], *, patterns: Sequence[str] = (), regions: Sequence[str] = (),
    storage_classes: Sequence[str] = (), size_unit: str = "auto", include_versions: bool = False,
    prices: PriceTable | None = None, now: datetime | None = None, date_format: str = "iso", show_time: bool = True,
    source: str = "listing", inventory_fallback: str = "listing", workers: int = DEFAULT_PARTS_PER_BUCKET,
    shard_objects: int | None = None, shard_parts: int | None = None, processes: int = 1,
    as_bucket_error: ErrorText = final_bucket_error,
) -> dict[str, Any]:
    """The whole report on this machine (the command line): the same steps the DAG runs as tasks, the
    parts summarized ``workers`` at once, as the DAG's mapped tasks run side by side. With ``processes``
    above 1, a ``client_for`` that is a :class:`ClientFactory`, and a bucket split into key ranges, the
    parts are shared out to that many forked processes (``workers`` threads in all).

    No task retry follows botocore's own here, so by default a bucket whose requests fail for any S3
    reason (a 5xx after the retries, a response botocore cannot parse) is reported with that error and
    the other buckets are still summarized (``as_bucket_error``)."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    if processes < 1:
        raise ValueError(f"processes must be at least 1, not {processes}")
    check_date_format(date_format)  # before any request
    check_patterns(patterns)
    check_regions(regions)
    buckets = list_buckets(client_for("us-east-1"), patterns, regions, as_bucket_error=as_bucket_error)
    listing_plan = partial(plan, threshold=shard_objects, parts_per_bucket=shard_parts, as_bucket_error=as_bucket_error,
                           include_versions=include_versions)
    if source == "inventory":
        planned = inventory.plan(client_for, buckets, max_shards=1024, include_versions=include_versions,
                                 fallback=inventory_fallback, listing_plan=listing_plan,
                                 as_bucket_error=as_bucket_error)
    else:
        planned = listing_plan(client_for, buckets, max_shards=1024)
    parts: list[dict[str, Any]] = [dict(part) for shard in planned for part in shard["parts"]]
    split = any(part.get("of", 1) > 1 for part in parts)
    forks = min(processes, workers, len(parts)) if split and isinstance(client_for, ClientFactory) else 1
    if forks > 1 and "fork" not in multiprocessing.get_all_start_methods():
        forks = 1
    job = _Job(client_for, include_versions, storage_classes, as_bucket_error)
    if forks == 1:
        results = _summarize_parts(parts, workers, job)
    else:
        # The plan's thread pools have ended, so the fork copies no lock a thread holds: the caller must
        # not run other threads (the command line does not). Parts go round robin (neighbouring ranges
        # spread out); the ``workers`` threads are shared out, so no more ranges are listed at once.
        threads = [workers // forks + (i < workers % forks) for i in range(forks)]
        with ProcessPoolExecutor(forks, mp_context=multiprocessing.get_context("fork"),
                                 initializer=_start_worker, initargs=(job,)) as pool:
            grouped = list(pool.map(_summarize_parts, [parts[i::forks] for i in range(forks)], threads))
        results = [{}] * len(parts)
        for i, group in enumerate(grouped):
            results[i::forks] = group
    return build_report(buckets, results, prices=prices or load_prices(), size_unit=size_unit, source=source,
                        include_versions=include_versions, generated_at=now or datetime.now(UTC),
                        date_format=date_format, show_time=show_time, patterns=patterns, regions=regions)


def parser() -> argparse.ArgumentParser:
    """The options of ``s3ops report``."""
    p = argparse.ArgumentParser(prog="s3ops report", description="Storage report of every S3 bucket the credentials "
                                                                  "can see.")
    p.add_argument("--bucket", action="append", default=[], help="bucket name or glob (repeatable)")
    p.add_argument("--region", action="append", default=[], help="only buckets in this region (repeatable)")
    p.add_argument("--storage-class", action="append", default=[], choices=STORAGE_CLASSES,
                   help="count only this storage class (repeatable)")
    p.add_argument("--unit", default="auto", choices=SIZE_UNITS, help="size unit (default auto)")
    p.add_argument("--versions", action="store_true", help="also count noncurrent versions and delete markers")
    p.add_argument("--source", choices=("listing", "inventory"), default="listing",
                   help="list the buckets (default) or read each one's newest S3 Inventory")
    p.add_argument("--inventory-fallback", choices=inventory.FALLBACKS, default="listing",
                   help="with --source inventory, a bucket without one is listed (default) or reported as an error")
    p.add_argument("--date-format", default="iso", metavar="FORMAT",
                   help=f"dates in the table/csv: {', '.join(DATE_FORMATS)} (12/29/2020 vs 29/12/2020) or a "
                        "strftime pattern like %%d.%%m.%%Y (default iso; --json stays ISO 8601 UTC)")
    p.add_argument("--show-time", action=argparse.BooleanOptionalAction, default=True,
                   help="show the time of day next to dates (default: yes)")
    p.add_argument("--group-by", choices=("bucket", "region"), default="bucket",
                   help="one row per bucket (default) or per region")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print report.json instead of the table")
    fmt.add_argument("--csv", action="store_true", help="print report.csv instead of the table")
    p.add_argument("--profile", help="AWS profile (default: the environment's credentials)")
    p.add_argument("--endpoint-url", help="S3-compatible endpoint (default: AWS)")
    p.add_argument("--workers", type=int, default=DEFAULT_PARTS_PER_BUCKET, metavar="N",
                   help=f"key ranges listed at once (default {DEFAULT_PARTS_PER_BUCKET}, a big bucket's parts)")
    p.add_argument("--processes", type=int, default=default_processes(), metavar="N",
                   help="processes that list the key ranges of split buckets (default: one per core, up to 8, "
                        "on Linux; 1 elsewhere)")
    p.add_argument("--shard-objects", type=int, default=DEFAULT_SHARD_OBJECTS, metavar="N",
                   help=f"a bucket with more objects is split into key ranges (default {DEFAULT_SHARD_OBJECTS:,})")
    p.add_argument("--shard-parts", type=int, default=DEFAULT_PARTS_PER_BUCKET, metavar="N",
                   help=f"at most this many key ranges per big bucket (default {DEFAULT_PARTS_PER_BUCKET})")
    p.add_argument("--pricing", metavar="FILE",
                   help="JSON file overriding list prices (format of the pricing setting)")
    return p


def check_args(args: argparse.Namespace) -> PriceTable:
    """What can be refused before any request, refused in one line (ValueError): the ``--bucket`` globs,
    the ``--region`` names, ``--date-format`` and the ``--pricing`` file; returns the prices to use."""
    check_patterns(args.bucket)
    check_regions(args.region)
    check_date_format(args.date_format)
    return load_prices(None if args.pricing is None else read_pricing_file(args.pricing))


def _one_line(exc: BaseException) -> str:
    """``exc``'s message on one line (botocore's parser errors quote the response, line ends and all)."""
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """``s3ops report``: 0, 1 when a bucket could not be read (its error is in the report), 2 when
    nothing was reported (bad arguments, no credentials, ListBuckets failed: one line on stderr)."""
    import json

    from include.aws.client import S3AccessError, check_access
    from include.storage_report import render as report_render

    p = parser()
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    for flag in ("workers", "processes", "shard_objects", "shard_parts"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1, not {getattr(args, flag)}")
    client_for = ClientFactory(profile=args.profile, endpoint_url=args.endpoint_url)
    # a worker killed (BrokenProcessPool); an unknown --profile, or ListBuckets itself failing (s3_failures)
    setup_problems: tuple[type[Exception], ...] = (S3AccessError, ValueError, OSError, BrokenProcessPool,
                                                   *s3_failures())
    try:
        prices = check_args(args)
        check_access(client_for("us-east-1"))
        report = run_local(client_for, patterns=args.bucket, regions=args.region, storage_classes=args.storage_class,
                           size_unit=args.unit, include_versions=args.versions, prices=prices,
                           date_format=args.date_format, show_time=args.show_time, source=args.source,
                           inventory_fallback=args.inventory_fallback, workers=args.workers,
                           shard_objects=args.shard_objects, shard_parts=args.shard_parts, processes=args.processes)
    except setup_problems as exc:
        print(f"storage report: {_one_line(exc)}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2, allow_nan=False))
    elif args.csv:
        sys.stdout.write(report_render.render_csv(report, group_by=args.group_by))
    else:
        print(report_render.render_table(report, group_by=args.group_by))
    if args.json or args.csv:  # the table says it itself
        for line in report_render.filter_notes(report):
            print(f"storage report: {line}", file=sys.stderr)
    return 1 if report["totals"]["error_count"] else 0


if __name__ == "__main__":
    sys.exit(main())
