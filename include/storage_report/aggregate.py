"""Sums shared by report.json's buckets, regions and totals: sizes as numbers in their unit, money,
counts that may be unknown (null), per-storage-class totals, and the per-region groups.

Kept apart from :mod:`include.storage_report.summarize` so the renderers can rebuild the region
groups of an older report without importing the summarizer (which imports the renderers for its CLI).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from include.core.units import convert, resolve_unit


def _money(usd: float) -> float:
    """A cost as report.json keeps it: to a millionth of a cent, so that the region and total sums of many
    small buckets stay right (at 4 decimals, 2,000 buckets of 2 MiB each summed to $0.00, not $0.09) and a
    bucket costing less than a cent still shows as such; the renderers show cents."""
    return round(usd, 8)


def sized(size_bytes: int, size_unit: str, field: str = "total_size") -> dict[str, Any]:
    """``{"total_size": 1.5, "total_size_unit": "KiB"}``: a number in its unit and the unit beside it
    (``auto`` picks one per value), for programs; display strings are made by the renderers."""
    unit = resolve_unit(size_bytes, size_unit)
    return {field: convert(size_bytes, unit), f"{field}_unit": unit}


def _add_classes(into: dict[str, dict[str, Any]], classes: dict[str, dict[str, Any]]) -> None:
    for cls, v in classes.items():
        t = into.setdefault(cls, {"object_count": 0, "bytes": 0, "estimated_monthly_cost_usd": 0.0})
        t["object_count"] = None if v["object_count"] is None or t["object_count"] is None \
            else t["object_count"] + v["object_count"]
        t["bytes"] += v["bytes"]
        t["estimated_monthly_cost_usd"] = _money(t["estimated_monthly_cost_usd"] + v["estimated_monthly_cost_usd"])


def _sum_counts(values: Iterable[int | None]) -> int | None:
    """The sum, or None (unknown) when any part is unknown."""
    total = 0
    for v in values:
        if v is None:
            return None
        total += v
    return total


def region_groups(entries: Sequence[dict[str, Any]], size_unit: str) -> list[dict[str, Any]]:
    """report.json's ``regions``: per region (null when it could not be read) the buckets, objects,
    bytes, estimated cost and storage classes of its readable buckets, and how many could not be read."""
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for e in entries:
        groups.setdefault(e["region"], []).append(e)
    out = []
    for region in sorted(groups, key=lambda r: (r is None, r or "")):
        members = groups[region]
        ok = [e for e in members if e["error"] is None]
        classes: dict[str, dict[str, Any]] = {}
        for e in ok:
            _add_classes(classes, e["storage_classes"])
        total_bytes = sum(e["total_bytes"] for e in ok)
        out.append({
            "region": region, "bucket_count": len(members), "error_count": len(members) - len(ok),
            "object_count": _sum_counts(e["object_count"] for e in ok), "total_bytes": total_bytes,
            **sized(total_bytes, size_unit),
            "estimated_monthly_cost_usd": _money(sum(e["estimated_monthly_cost_usd"] for e in ok)),
            "storage_classes": dict(sorted(classes.items())),
        })
    return out
