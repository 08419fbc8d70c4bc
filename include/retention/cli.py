"""``s3ops retention plan``: the retention plan and the reason for every file, without Airflow.

A dry run only: it lists the bucket, streams the job table against it exactly as the ``plan`` task
does, writes the plan artifacts to ``--out`` and prints what a run would delete and why. Nothing is
deleted; deleting goes through the DAG's guard, approval and audit.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from include.core.settings import MAX_DAYS
from include.core.text import shown
from include.core.times import given_time
from include.deletion.settings import PLAN_SOURCES

PROG = "s3ops retention plan"


def _now(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    return given_time(text, "--now")


def _days(text: str) -> float:
    """A number of days from 0 to ``MAX_DAYS``: the bound of the DAG's ``orphan_min_age_days``."""
    try:
        days = float(text)
    except ValueError:
        days = float("nan")
    if not 0 <= days <= MAX_DAYS:  # NaN fails both comparisons
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days from 0 to {MAX_DAYS}")
    return days


def _check_out(path: Path) -> None:
    """Make the ``--out`` folder if missing; ValueError naming it when it cannot be made or written (known
    before the bucket is listed, not at the plan's first chunk)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as exc:
        raise ValueError(f"--out {str(path)!r} is no folder this user can write: {exc.strerror or exc}") from None


def _count(text: str) -> int:
    """A whole number from 0 (how many planned files to print)."""
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 0")
    return count


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                epilog="The MySQL password is read from MYSQL_PWD (never from the command line).")
    p.add_argument("--bucket", required=True)
    p.add_argument("--key-prefix", default="", help="objects live at KEY_PREFIX + sourceData (default '')")
    p.add_argument("--jobs-table", default="jobs", help="table with jobId, completedAt, type, sourceData (default jobs)")
    p.add_argument("--trial-retention", default="P3M",
                   help="ISO 8601 duration TRIAL jobs are kept, as the DAG's trial_retention (default P3M)")
    p.add_argument("--orphan-min-age-days", type=_days, default=7.0, metavar="DAYS",
                   help=f"unreferenced objects younger than this are kept (0 to {MAX_DAYS}; default 7)")
    p.add_argument("--allow-empty-jobs", action="store_true", help="accept an empty job table (else refused)")
    p.add_argument("--source", choices=PLAN_SOURCES, default="listing",
                   help="plan from a listing (default) or from the bucket's newest S3 Inventory")
    p.add_argument("--include-versions", action="store_true",
                   help="also plan every version and delete marker of the planned keys (ListObjectVersions), as "
                        "the DAG's include_versions does; without it, a versioned bucket keeps every version")
    p.add_argument("--now", help="decide as of this UTC time (default: now), like a run's logical date")
    p.add_argument("--mysql-host", default="127.0.0.1")
    p.add_argument("--mysql-port", type=int, default=3306)
    p.add_argument("--mysql-user", default="root")
    p.add_argument("--mysql-database", required=True)
    p.add_argument("--out", type=Path, help="folder for plan.json and the plan chunks (default: a new temp folder)")
    p.add_argument("--limit", type=_count, default=1000, help="print at most this many planned files (default 1000)")
    p.add_argument("--profile", help="AWS profile (default: the environment's credentials)")
    p.add_argument("--endpoint-url", help="S3-compatible endpoint (default: AWS)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    import MySQLdb
    from botocore.exceptions import BotoCoreError, ClientError

    from include.aws.client import S3AccessError, check_access, client_from_args
    from include.deletion.plan import read_chunk
    from include.inventory.manifest import InventoryError
    from include.retention import jobs as jobs_db
    from include.retention.plan import plan_bucket
    from include.retention.policy import OrderError, Policy

    try:
        jobs_db.quote_table(args.jobs_table)  # a bad name fails before anything is listed
        policy = Policy.at(_now(args.now), args.trial_retention, args.orphan_min_age_days)
        client = client_from_args(profile=args.profile, endpoint_url=args.endpoint_url, mode="adaptive")
        check_access(client, args.bucket)
        if args.out is not None:  # made only for a bucket that can be read: a refused run leaves no folder
            _check_out(args.out)
    except (S3AccessError, ValueError, BotoCoreError, ClientError) as exc:  # e.g. an unknown --profile
        print(f"retention plan: {exc}", file=sys.stderr)
        return 2
    mysql = f"MySQL at {args.mysql_host}:{args.mysql_port} as {args.mysql_user!r}"
    login = dict(host=args.mysql_host, port=args.mysql_port, user=args.mysql_user,
                 password=os.environ.get("MYSQL_PWD", ""), database=args.mysql_database)
    try:
        conn = jobs_db.connect_direct(**login)  # a wrong login fails here, in one line, before anything is listed
    except MySQLdb.Error as exc:
        print(f"retention plan: cannot connect to {mysql}: {exc}", file=sys.stderr)
        return 2
    try:
        with closing(conn):
            jobs_db.check_readable(conn, args.jobs_table)  # and so does a table that cannot be read
    except (jobs_db.TableUnreadable, MySQLdb.Error) as exc:
        print(f"retention plan: {mysql}: {exc}", file=sys.stderr)
        return 2
    run_dir = args.out or Path(tempfile.mkdtemp(prefix="retention-plan-"))
    versions_too = args.include_versions
    try:
        summary = plan_bucket(
            client, lambda: jobs_db.connect_direct(**login), run_dir, bucket=args.bucket, key_prefix=args.key_prefix,
            jobs_table=args.jobs_table, policy=policy, source=args.source, include_versions=versions_too,
            allow_empty_jobs=args.allow_empty_jobs, trial_retention=args.trial_retention,
            orphan_min_age_days=args.orphan_min_age_days,
        )
    except InventoryError as exc:
        print(f"retention plan: source inventory: {exc}", file=sys.stderr)
        return 2
    except (OrderError, jobs_db.TableUnreadable) as exc:  # the table changed since its check above
        print(f"retention plan: {exc}", file=sys.stderr)
        return 2
    except MySQLdb.Error as exc:  # e.g. the server went away during a long inventory download
        print(f"retention plan: {mysql}: {exc}", file=sys.stderr)
        return 2

    listed = 0
    for chunk in summary["chunks"]:
        for item in read_chunk(run_dir, chunk):
            if listed < args.limit:
                # escaped as the approver sees them: a key with "\r", a newline or a terminal escape could
                # otherwise hide what a deletion would remove from whoever reads this plan
                version = f"  version {shown(item.version_id)}" if item.version_id else ""
                print(f"DELETE  {item.reason:<13} {item.size:>12}  {shown(item.key)}{version}")
            listed += 1
    if listed > args.limit:
        print(f"… and {listed - args.limit} more (all of them in {summary['plan_uri']})")
    for reason, slot in sorted(summary.get("by_reason", {}).items()):
        print(f"{reason}: {slot['count']} objects, {slot['bytes']} bytes")
    for cause, count in sorted(summary.get("protected", {}).get("by_cause", {}).items()):
        print(f"kept ({cause}): {count}")
    print(summary["headline"])
    entries = "objects, versions and delete markers" if versions_too else "objects"
    print(f"plan: {summary['delete_count']} {entries}, {summary['delete_bytes']} bytes at {summary['plan_uri']} "
          "(dry run: nothing was deleted)")
    return 3 if summary.get("refusals") else 0


if __name__ == "__main__":
    sys.exit(main())
