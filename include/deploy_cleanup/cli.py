"""``python -m include.deploy_cleanup.cli``: the deploy cleanup without Airflow.

Plans by default (a dry run: prints every deployment and its decision); ``--delete`` then runs the same
guard, re-check, delete and audit as the DAG, with the person at the keyboard as the approver.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from include.core import artifacts
from include.core.text import shown


def main(argv: Sequence[str] | None = None) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from include.aws.client import S3AccessError, check_access, client_from_args
    from include.core.errors import error_code, error_text
    from include.deletion.approval import DeleteRefused
    from include.deletion.plan import GuardRefused, check_guards, delete_chunk, read_plan, write_audit
    from include.deletion.recheck import RecheckContext
    from include.deletion.settings import PLAN_SOURCES
    from include.deploy_cleanup.plan import make_recheck, plan_cleanup, settings_from_params
    from include.inventory.manifest import InventoryError

    parser = argparse.ArgumentParser(prog="s3ops deploy-cleanup", description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", required=True,
                        help="folder holding the deployments, ending with '/'; '/' for the bucket root")
    parser.add_argument("--keep", type=int, help="keep the newest N deployments")
    parser.add_argument("--older-than-days", type=float, help="only delete deployments older than X days")
    parser.add_argument("--min-keep", type=int, default=1, help="never delete the newest Y (default 1)")
    parser.add_argument("--protect", action="append", default=[], help="name or glob never deleted (repeatable)")
    parser.add_argument("--include-versions", action="store_true", help="also delete old versions and delete markers")
    parser.add_argument("--source", choices=PLAN_SOURCES, default="listing",
                        help="plan from a listing (default) or from the bucket's newest S3 Inventory")
    parser.add_argument("--max-delete-count", type=int, default=10000, help="refuse bigger plans (default 10000)")
    parser.add_argument("--delete", action="store_true", help="delete (default: plan only)")
    parser.add_argument("--out", type=Path, help="folder for plan.json, deployments.jsonl and audit.json")
    parser.add_argument("--profile", help="AWS profile (default: the environment's credentials)")
    parser.add_argument("--endpoint-url", help="S3-compatible endpoint (default: AWS)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.max_delete_count < 0:  # before anything is listed, like every other bad parameter
        print(f"deploy cleanup: --max-delete-count must be a number >= 0, got {args.max_delete_count}", file=sys.stderr)
        return 2
    try:
        settings = settings_from_params({
            "prefix": args.prefix, "keep": args.keep, "older_than_days": args.older_than_days,
            "min_keep": args.min_keep, "protect": args.protect, "include_versions": args.include_versions,
            "source": args.source,
        })
        client = client_from_args(profile=args.profile, endpoint_url=args.endpoint_url, mode="adaptive")
        check_access(client, args.bucket)
        run_dir = args.out or Path(tempfile.mkdtemp(prefix="deploy-cleanup-"))
        summary = plan_cleanup(client, args.bucket, settings, run_dir, datetime.now(UTC))
        for row in artifacts.read_jsonl(run_dir / "deployments.jsonl"):
            # escaped as the approver sees them: a name is anyone's who can write to the bucket, and a raw
            # "\r", newline or terminal escape could hide what --delete would delete from whoever reads this
            print(f"{'DELETE' if row['delete'] else 'keep  '}  {shown(row['name']):<40} {row['newest']}  "
                  f"{row['objects']:>7} objects  {row['why']}")
        if summary["protect_unmatched"]:
            print("warning: protect patterns that matched no deployment: "
                  f"{', '.join(shown(p) for p in summary['protect_unmatched'])}")
        print(f"plan: {summary['delete_count']} objects, {summary['delete_bytes']} bytes at {summary['plan_uri']}")
        check_guards(summary, max_delete_count=args.max_delete_count, max_delete_fraction=None)
        if not args.delete:
            print("plan only: run again with --delete to delete")
            return 0
        recheck = make_recheck(RecheckContext(client, args.bucket, {}, read_plan(run_dir), run_dir))
        for chunk in summary["chunks"]:
            delete_chunk(client, args.bucket, run_dir, chunk, recheck=recheck, dry_run=False)
        audit = write_audit(run_dir, extra={"outcome": "deleted" if summary["chunks"] else "nothing_to_delete",
                                            "approval": "command line"})
    except (S3AccessError, GuardRefused, DeleteRefused, InventoryError, ValueError, OSError) as exc:
        print(f"deploy cleanup: {exc}", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError) as exc:  # a missing or misnamed bucket, access to it denied, …
        code = error_code(exc)
        hint = {"NoSuchBucket": f"bucket {args.bucket!r} does not exist: check --bucket",
                "AccessDenied": f"access to bucket {args.bucket!r} denied: check the credentials' permissions"}
        print(f"deploy cleanup: {hint.get(code) or error_text(exc)}", file=sys.stderr)
        return 2
    print(f"deleted {audit['deleted_count']} objects ({audit['deleted_bytes']} bytes), {audit['skipped_count']} "
          f"skipped, {audit['error_count']} errors: {audit['audit_uri']}")
    return 1 if audit["error_count"] else 0


if __name__ == "__main__":
    sys.exit(main())
