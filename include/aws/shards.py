"""Split buckets into key ranges that can be listed in parallel and merged exactly.

A *part* is one key range of one bucket: the keys ``k`` with ``after < k <= upto`` (``None`` = open).
A bucket's parts are cut at boundary keys ``b1 < b2 < … < bn``: ``(None, b1]``, ``(b1, b2]``, …,
``(bn, None)``. They partition the key space, so summing the parts equals one sequential listing,
whatever the keys are. Boundaries are *existing keys* (the first key under a prefix), which keeps
``KeyMarker`` of ListObjectVersions exact on every S3 implementation.

A *shard* is what one mapped task lists: a few parts (several small buckets, or one range of a big
bucket). There are never more shards than ``[core] max_map_length``.

Finding boundaries is cheap: a bucket is big when a probe of ``threshold`` objects (``threshold/1000``
pages) does not reach its end, or, sooner, when the pages it read plus one page at the head of each key
range prove more than ``threshold`` objects (small buckets are packed several to a shard by the count
the probe saw). Its prefix tree is then walked with ``Delimiter="/"`` (CommonPrefixes only, a few requests) or,
in folders without sub-folders, by next character (``StartAfter`` hops, one request per distinct
character), and the first key under evenly spaced prefixes becomes a boundary. Prefixes say nothing
about how many keys they hold, so ranges are even in prefixes, not necessarily in keys.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:  # the boto3 stubs are a dev dependency
    from types_boto3_s3 import S3Client

#: A bucket with more objects than this is split (the storage report's ``shard_objects`` setting overrides).
DEFAULT_SHARD_OBJECTS = 20_000
#: At most this many parts per big bucket (the storage report's ``shard_parts`` setting overrides).
DEFAULT_PARTS_PER_BUCKET = 16
#: Requests of the plan in flight at once (a level of the prefix walk, the boundary lookups).
PROBE_THREADS = 16
_MAX_PREFIX_DEPTH = 24  # levels of descent; a level with one child costs two requests
_PAST_PREFIX = "\U0010ffff"  # the highest code point: ``p + _PAST_PREFIX`` sorts after every real key under p


class Part(TypedDict):
    bucket: str
    region: str | None
    after: str | None  # exclusive lower bound (a key), None = from the start
    upto: str | None  # inclusive upper bound (a key), None = to the end
    part: int  # 0-based index of this part within its bucket
    of: int  # how many parts the bucket has


class Shard(TypedDict):
    index: int
    parts: list[Part]


def in_range(key: str, after: str | None, upto: str | None) -> bool:
    return (after is None or key > after) and (upto is None or key <= upto)


def end_before(upto: str | None) -> str | None:
    """The exclusive bound equal to ``<= upto``: nothing sorts between ``s`` and ``s + "\\0"``, and S3
    keys cannot hold NUL (XML 1.0 cannot carry it)."""
    return None if upto is None else upto + "\x00"


def ranges(boundaries: Sequence[str]) -> list[tuple[str | None, str | None]]:
    """``[b1, b2]`` → ``[(None, b1), (b1, b2), (b2, None)]`` (boundaries sorted and deduplicated)."""
    cuts = sorted(set(boundaries))
    lows: list[str | None] = [None, *cuts]
    highs: list[str | None] = [*cuts, None]
    return list(zip(lows, highs, strict=True))


def probe_count(client: S3Client, bucket: str, threshold: int, *, on_more: Callable[[], None] | None = None,
                proven_big: Callable[[int, str], bool] | None = None, versions: bool = False) -> int | None:
    """The bucket's object count when it holds at most ``threshold`` objects, else None (big).
    Lists at most ``threshold`` keys; ``on_more()`` is called once the first page is full;
    ``proven_big(seen, last_key)`` ends the probe early (see :func:`count_floor`). With ``versions`` it
    counts what ListObjectVersions lists (versions and delete markers), as a listing of versions will: a
    bucket of few current objects but many versions (everything deleted: delete markers only) is big."""
    from include.aws.listing import count_objects

    if not versions:
        return count_objects(client, bucket, threshold, on_more=on_more, proven_more=proven_big)
    kwargs: dict[str, Any] = {"Bucket": bucket, "MaxKeys": min(1000, threshold)}
    seen = 0
    while True:
        page = client.list_object_versions(**kwargs)
        keys = _version_keys(page)
        seen += len(keys)
        if not page.get("IsTruncated"):
            return seen
        if on_more is not None and "KeyMarker" not in kwargs:
            on_more()
        if seen >= threshold or (proven_big is not None and keys and proven_big(seen, max(keys))):
            return None
        kwargs.update(KeyMarker=page["NextKeyMarker"], VersionIdMarker=page.get("NextVersionIdMarker", ""),
                      MaxKeys=min(1000, threshold - seen))


def _version_keys(page: Any) -> list[str]:
    """The keys of a ListObjectVersions page's versions and delete markers."""
    return [v["Key"] for v in page.get("Versions", [])] + [m["Key"] for m in page.get("DeleteMarkers", [])]


def _first_key(client: S3Client, bucket: str, prefix: str, after: str | None, versions: bool) -> str | None:
    """The first key under ``prefix`` after ``after``: of a current object, or with ``versions`` of any
    version or delete marker (a key whose every version is noncurrent is listed by versions too)."""
    if versions:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": 1}
        if after is not None:
            kwargs["KeyMarker"] = after
        return min(_version_keys(client.list_object_versions(**kwargs)), default=None)
    kwargs = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": 1}
    if after is not None:
        kwargs["StartAfter"] = after
    contents = client.list_objects_v2(**kwargs).get("Contents") or []
    return contents[0]["Key"] if contents else None


def range_heads(client: S3Client, bucket: str, cuts: Sequence[str], threads: int = PROBE_THREADS
                ) -> list[tuple[str, int]]:
    """For each key range after the first (cut at ``cuts``): its lower bound and how many of its keys
    one page from there holds (at most 1,000). One request per range, ``threads`` at a time: a probe
    reading from the bucket's start then needs a few pages, not ``threshold/1000``, to prove the bucket
    big (:func:`count_floor`)."""
    from itertools import islice

    from include.aws.listing import iter_objects

    def head(span: tuple[str | None, str | None]) -> tuple[str, int]:
        lo, hi = span
        assert lo is not None  # every range but the first has a lower bound
        return lo, sum(1 for _ in islice(iter_objects(client, bucket, start_after=lo, end_before=end_before(hi)), 1000))

    with ThreadPoolExecutor(max(1, threads)) as pool:
        return list(pool.map(head, ranges(cuts)[1:]))


def count_floor(seen: int, last_key: str, heads: Sequence[tuple[str, int]]) -> int:
    """At least how many objects a bucket holds: the ``seen`` keys a probe read from its start (up to
    ``last_key``) plus the :func:`range_heads` of the ranges that start at or after ``last_key``, whose
    keys all sort after the probe's (no key is counted twice)."""
    return seen + sum(count for lo, count in heads if lo >= last_key)


def _common_prefixes(client: S3Client, bucket: str, prefix: str, cap: int, versions: bool = False) -> list[str]:
    """About ``cap`` of the ``/`` folders right under ``prefix``: no more pages once ``cap`` are found,
    and spread evenly over every folder of the pages read (the first ``cap`` only would leave the key
    space after them to one huge last range). With ``versions``, folders of versions and delete markers too."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "Delimiter": "/"}
    found: list[str] = []
    while len(found) < cap:
        page: dict[str, Any] = dict(client.list_object_versions(**kwargs) if versions
                                    else client.list_objects_v2(**kwargs))
        found += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        if not page.get("IsTruncated"):
            break
        if not versions:
            kwargs["ContinuationToken"] = page["NextContinuationToken"]
        elif any(p["Prefix"] == page["NextKeyMarker"] for p in page.get("CommonPrefixes", [])):
            kwargs["KeyMarker"] = page["NextKeyMarker"] + _PAST_PREFIX  # it ended at a folder: past all of it
            kwargs.pop("VersionIdMarker", None)
        else:  # it ended at a key's versions
            kwargs.update(KeyMarker=page["NextKeyMarker"], VersionIdMarker=page.get("NextVersionIdMarker", ""))
    return pick_evenly(list(dict.fromkeys(found)), cap)


def _next_chars(client: S3Client, bucket: str, prefix: str, cap: int, versions: bool = False) -> list[str]:
    """The distinct ``prefix + c`` that keys under ``prefix`` start with: one MaxKeys=1 request per
    child, each starting after every key of the previous child (for folders without sub-folders)."""
    found: list[str] = []
    after = prefix
    while len(found) < cap:
        key = _first_key(client, bucket, prefix, after, versions)
        if key is None:
            break
        child = key[: len(prefix) + 1]
        if not found or found[-1] != child:
            found.append(child)
        # Past every key under child: a key that goes on with U+10FFFF sorts after child + U+10FFFF, so
        # the hop is past its whole run of them (else each request found child again, and the walk never
        # reached the characters after it).
        rest = key[len(child):]
        after = child + _PAST_PREFIX * (len(rest) - len(rest.lstrip(_PAST_PREFIX)) + 1)
    return found


def prefix_tree(client: S3Client, bucket: str, want: int, threads: int = PROBE_THREADS, versions: bool = False
                ) -> list[str]:
    """Sorted prefixes that cut the bucket into at least ``want`` pieces where the keys allow,
    descending level by level: into ``/`` folders (CommonPrefixes), and where a prefix has none, by its
    next character. A prefix with nothing under it stays as it is. Every prefix of a level is divided
    (a level holds fewer than ``want``), each into at most about ``want * 8 / len(level)`` children, so
    every part of the key space keeps its share of the cuts. The prefixes of a level are asked
    ``threads`` at a time: on S3 each request is a round trip. With ``versions`` the keys of versions
    and delete markers count too (ListObjectVersions)."""
    level = [""]
    flat: set[str] = set()  # prefixes with no "/" below them: their children are flat too
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for _ in range(_MAX_PREFIX_DEPTH):
            cap = max(2, math.ceil(want * 8 / len(level)))

            def children_of(prefix: str, cap: int = cap) -> tuple[list[str], bool]:
                children = [] if prefix in flat else _common_prefixes(client, bucket, prefix, cap=cap, versions=versions)
                if children:
                    return children, False
                return [c for c in _next_chars(client, bucket, prefix, cap=cap, versions=versions) if c != prefix], True

            deeper: list[str] = []
            grew = False
            for prefix, (children, by_char) in zip(level, pool.map(children_of, level), strict=True):
                if by_char:
                    flat.update(children)
                grew |= len(children) > 1 or (len(children) == 1 and children[0] != prefix)
                deeper += children or [prefix]
            if not grew:
                break
            level = sorted(set(deeper))
            if len(level) >= want:
                break
    return [p for p in level if p]


def pick_evenly(items: Sequence[str], count: int) -> list[str]:
    """``count`` items spread evenly over ``items`` (all of them when there are not more)."""
    if count >= len(items):
        return list(items)
    step = len(items) / count
    return [items[min(len(items) - 1, math.floor(i * step))] for i in range(count)]


def boundaries(client: S3Client, bucket: str, parts: int, threads: int = PROBE_THREADS,
               prefixes: Sequence[str] | None = None, versions: bool = False) -> list[str]:
    """Boundary keys that split ``bucket`` into at most ``parts`` key ranges (``prefixes``: the bucket's
    :func:`prefix_tree` when already walked, for at least ``parts`` pieces; ``versions``: cut where
    versions and delete markers are, for a listing of versions)."""
    if parts < 2:
        return []
    if prefixes is None:
        prefixes = prefix_tree(client, bucket, parts, threads, versions=versions)

    def first_key(prefix: str) -> str | None:
        return _first_key(client, bucket, prefix, None, versions)

    # The first prefix starts the first range anyway; each later one starts a new range.
    with ThreadPoolExecutor(max(1, threads)) as pool:
        cuts = [k for k in pool.map(first_key, pick_evenly(prefixes[1:], parts - 1)) if k is not None]
    return sorted(set(cuts))


def parts_for(bucket: str, region: str | None, cuts: Sequence[str]) -> list[Part]:
    spans = ranges(cuts)
    return [
        Part(bucket=bucket, region=region, after=lo, upto=hi, part=i, of=len(spans))
        for i, (lo, hi) in enumerate(spans)
    ]


def pack(parts_by_bucket: Sequence[list[Part]], max_shards: int, *, sizes: Sequence[int] = (),
         capacity: int = DEFAULT_SHARD_OBJECTS) -> list[Shard]:
    """Shards for ``max_shards`` mapped tasks at most: each range of a split bucket is a shard of its
    own; single-part (small) buckets are packed in order into shards of about ``capacity`` objects
    (``sizes``: one object count per bucket, when known), into the shards that are left."""
    if max_shards < 1:
        raise ValueError("max_shards must be >= 1")
    split = [p for parts in parts_by_bucket if len(parts) > 1 for p in parts]
    small = [(parts[0], sizes[i] if i < len(sizes) else capacity)
             for i, parts in enumerate(parts_by_bucket) if len(parts) == 1]
    room = max_shards - len(split)
    if small and room < 1:
        raise ValueError(f"{len(split)} ranges of split buckets leave no shard for {len(small)} small buckets")
    groups: list[list[Part]] = [[p] for p in split]
    packed: list[list[Part]] = []
    load = 0
    for part, size in small:
        if not packed or load + size > capacity:
            packed.append([])
            load = 0
        packed[-1].append(part)
        load += size
    if len(packed) > room:  # too many: spread evenly over the room left instead
        per_shard = math.ceil(len(small) / room)
        packed = [[p for p, _ in small[i : i + per_shard]] for i in range(0, len(small), per_shard)]
    return [Shard(index=i, parts=g) for i, g in enumerate(groups + packed)]


def parts_budget(big_buckets: int, max_shards: int, parts_per_bucket: int) -> int:
    """Parts each big bucket may have so that split buckets use at most half the shards."""
    if big_buckets == 0:
        return parts_per_bucket
    return max(1, min(parts_per_bucket, (max_shards // 2) // big_buckets))
