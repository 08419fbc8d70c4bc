"""The s3ops side of the benchmarks, as a command so it is measured as its own process, like the peers.

    python -m bench.s3ops_cli summarize --endpoint-url URL BUCKET...   # the storage report's listing phase
    python -m bench.s3ops_cli delete --endpoint-url URL --bucket B --run-dir D   # delete every chunk of a plan

Both print one JSON line (what was counted or deleted) so the bench can check the work was really done.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def summarize(client: Any, buckets: list[str]) -> dict[str, Any]:
    """Objects, bytes and per-class totals of whole buckets, through the storage report's listing code."""
    from include.storage_report import Totals, count_range

    total = Totals()
    for bucket in buckets:
        total.merge(count_range(client, bucket, None, None))
    return {"objects": total.object_count, "bytes": total.total_bytes, "pages": total.pages, "classes": total.classes}


def delete(client: Any, bucket: str, run_dir: Path) -> dict[str, Any]:
    """The retention / deploy-cleanup delete step: every chunk of the plan in ``run_dir``, then the audit."""
    from include import deletion

    counts = [deletion.delete_chunk(client, bucket, run_dir, chunk, recheck=None, dry_run=False)
              for chunk in deletion.read_plan(run_dir)["chunks"]]
    deletion.write_audit(run_dir)
    return {"deleted": sum(c["deleted"] for c in counts), "errors": sum(c["errors"] for c in counts),
            "requests": sum(c["requests"] for c in counts)}


def main(argv: list[str] | None = None) -> int:
    from include.s3 import client_from_args

    parser = argparse.ArgumentParser(prog="python -m bench.s3ops_cli", description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint-url", required=True)
    sub = parser.add_subparsers(dest="command", required=True)
    p_sum = sub.add_parser("summarize")
    p_sum.add_argument("buckets", nargs="+")
    p_del = sub.add_parser("delete")
    p_del.add_argument("--bucket", required=True)
    p_del.add_argument("--run-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    client = client_from_args(endpoint_url=args.endpoint_url, region_name="us-east-1", mode="adaptive")
    if args.command == "summarize":
        result = summarize(client, args.buckets)
    else:
        result = delete(client, args.bucket, args.run_dir)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
