"""``source: inventory`` for the storage report: plan parts over inventory data files, summarize them.

Each bucket with a usable inventory (see ``include.inventory.manifest``) is split into parts of
``FILES_PER_PART`` data files, each part a mapped task; the parts' totals merge exactly like listing
ranges. Parts carry only the manifest's address and a file index range (XCom stays small); the task
reads and verifies the manifest again. A bucket without a usable inventory is listed instead
(``fallback="listing"``, the reason kept in the report) or reported with the reason as its error
(``fallback="error"``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from include.aws import shards
from include.inventory import manifest as inv
from include.storage_report.inventory_files import FILES_PER_PART, count_files
from include.storage_report.summarize import ErrorText, bucket_error, s3_failures

log = logging.getLogger(__name__)
FALLBACKS = ("listing", "error")


def _find(client: Any, bucket: str, include_versions: bool, as_bucket_error: ErrorText = bucket_error,
          ) -> inv.Manifest | str:
    """The bucket's manifest, or why there is none (a failed request ``as_bucket_error`` names, e.g. no
    s3:GetInventoryConfiguration, is a reason too; anything else raises)."""
    try:
        found = inv.latest(client, bucket, want_versions=include_versions)
    except inv.InventoryError as exc:
        return str(exc)
    except s3_failures() as exc:
        why = as_bucket_error(exc)
        if why is None:
            raise
        return f"its inventory cannot be read ({why})"
    if found is None:
        return ("no inventory configuration usable for an exact report (enabled, whole bucket, CSV or Parquet"
                + (", all versions" if include_versions else "") + ")")
    return found


def inventory_parts(bucket: dict[str, Any], found: inv.Manifest, parts_per_bucket: int) -> list[shards.Part]:
    per_part = max(FILES_PER_PART, math.ceil(len(found.files) / parts_per_bucket))
    count = max(1, math.ceil(len(found.files) / per_part))
    parts = []
    for i in range(count):
        part: Any = shards.Part(bucket=bucket["name"], region=bucket["region"], after=None, upto=None, part=i,
                                of=count)
        part["inventory"] = {"dest_bucket": found.dest_bucket, "manifest_key": found.key, "versions": found.versions,
                             "first": i * per_part, "last": min(len(found.files), (i + 1) * per_part),
                             "skipped": found.skipped[:3]}
        parts.append(part)
    return parts


def plan(
    client_for: Callable[[str | None], Any], buckets: Sequence[dict[str, Any]], *, max_shards: int,
    include_versions: bool, fallback: str, listing_plan: Callable[..., list[shards.Shard]],
    parts_per_bucket: int = 64, threads: int = 8, as_bucket_error: ErrorText = bucket_error,
) -> list[shards.Shard]:
    """Shards for the readable ``buckets``: inventory parts, and listing ranges (``listing_plan``) or
    error parts for the buckets without a usable inventory (``as_bucket_error``: see :func:`_find`)."""
    if fallback not in FALLBACKS:
        raise ValueError(f"inventory_fallback {fallback!r} is not one of {', '.join(FALLBACKS)}")
    readable = [b for b in buckets if not b.get("error")]
    with ThreadPoolExecutor(threads) as pool:
        found = list(pool.map(lambda b: _find(client_for(b["region"]), b["name"], include_versions, as_bucket_error),
                              readable))
    missing = {b["name"]: r for b, r in zip(readable, found, strict=True) if isinstance(r, str)}
    listed: list[shards.Shard] = []
    if fallback == "listing" and missing:
        to_list = [b for b in readable if b["name"] in missing]
        listed = listing_plan(client_for, to_list, max_shards=max(1, max_shards // 2))
        for shard in listed:
            for p in shard["parts"]:
                p["note"] = f"listed: {missing[p['bucket']]}"  # type: ignore[typeddict-unknown-key]
    room = max_shards - len(listed)
    # as the listing plan does: split buckets take at most half the shards left, whatever their number
    big = sum(1 for r in found if not isinstance(r, str) and len(r.files) > FILES_PER_PART)
    budget = shards.parts_budget(big, room, parts_per_bucket)
    by_inventory: list[list[shards.Part]] = []
    sizes: list[int] = []
    for bucket, result in zip(readable, found, strict=True):
        if isinstance(result, str):
            log.info("%s: %s", bucket["name"], result)
            if fallback == "error":
                part: Any = shards.Part(bucket=bucket["name"], region=bucket["region"], after=None, upto=None,
                                        part=0, of=1)
                part["inventory"] = {"error": result}
                by_inventory.append([part])
                sizes.append(1)
            continue
        log.info("%s: inventory of %s, %d data files%s", bucket["name"], result.date, len(result.files),
                 f" (newer refused: {'; '.join(result.skipped)})" if result.skipped else "")
        by_inventory.append(inventory_parts(bucket, result, budget))
        sizes.append(max(1, len(result.files)))
    planned = shards.pack(by_inventory, room, sizes=sizes, capacity=FILES_PER_PART) if by_inventory else []
    out = [*planned, *listed]
    return [shards.Shard(index=i, parts=s["parts"]) for i, s in enumerate(out)]


def summarize_any_part(client: Any, part: dict[str, Any], *, include_versions: bool,
                       storage_classes: Sequence[str], as_bucket_error: ErrorText = bucket_error) -> dict[str, Any]:
    """The totals of a part of either source: a group of inventory data files (:func:`summarize_part`)
    or a listing key range (``include.storage_report.summarize.summarize_part``)."""
    from include.storage_report import summarize

    if part.get("inventory"):
        return summarize_part(client, part, include_versions=include_versions, storage_classes=storage_classes,
                              as_bucket_error=as_bucket_error)
    return summarize.summarize_part(client, part, include_versions=include_versions,  # type: ignore[arg-type]
                                    storage_classes=storage_classes, as_bucket_error=as_bucket_error)


def summarize_part(client: Any, part: dict[str, Any], *, include_versions: bool,
                   storage_classes: Sequence[str], as_bucket_error: ErrorText = bucket_error) -> dict[str, Any]:
    """The part result (as ``include.storage_report.summarize.summarize_part``) from its data files."""
    from include.storage_report.summarize import add_multipart_uploads

    spec = part["inventory"]
    result: dict[str, Any] = {"bucket": part["bucket"], "part": part["part"], "of": part["of"], "totals": None,
                              "error": None}
    if spec.get("error"):
        result["error"] = f"NoInventory: {spec['error']}"
        return result
    try:
        key = spec["manifest_key"]
        raw = inv.fetch(client, spec["dest_bucket"], key)
        if raw is None:
            raise inv.InventoryError(f"s3://{spec['dest_bucket']}/{key}: gone since planning")
        found = inv.parse(raw, checksum=inv.fetch(client, spec["dest_bucket"], key[:-len("manifest.json")]
                                                 + "manifest.checksum"),
                          bucket=part["bucket"], dest_bucket=spec["dest_bucket"], key=key, versions=spec["versions"])
        totals = count_files(client, found, spec["first"], spec["last"], storage_classes=storage_classes,
                             include_versions=include_versions)
        if part["part"] == 0:  # not in inventories; one cheap request for most buckets
            add_multipart_uploads(client, part["bucket"], totals, storage_classes)
        result["totals"] = totals.to_dict()
        result["inventory"] = {"date": found.iso_date, "manifest": f"s3://{found.dest_bucket}/{found.key}",
                               "format": found.format, "versions": found.versions, "files": len(found.files),
                               "skipped": spec.get("skipped") or []}
    except inv.InventoryError as exc:
        result["error"] = f"InventoryRefused: {exc}"
    except s3_failures() as exc:
        result["error"] = as_bucket_error(exc)
        if result["error"] is None:
            raise
    if result["error"]:
        log.warning("bucket %s: %s", part["bucket"], result["error"])
    return result
