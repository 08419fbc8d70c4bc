"""Shard planning and exact merging: sharded totals equal one sequential pass, whatever the keys."""

from __future__ import annotations

import random

import pytest

from include.aws import shards
from include.storage_report import summarize as storage_report
from tests.unit._fake_s3 import FakeS3

TRICKY = ["a", "a/", "a-b", "a/b", "a/b/", "a//c", "a0", "b", "z/\u00e9t\u00e9", "z/\U0001f600", "~", " lead"]


def build(seed: int, n: int) -> FakeS3:
    rnd = random.Random(seed)
    fake = FakeS3()
    dirs = ["logs/2026/01/", "logs/2026/02/", "logs/2027/", "img/", "img/raw/", "data-", "x/y/z/", ""]
    classes = ["STANDARD", "STANDARD_IA", "GLACIER"]
    for i in range(n):
        key = f"{rnd.choice(dirs)}{rnd.randrange(10**6):06d}{rnd.choice(['', '.bin', '/'])}"
        fake.put(key, rnd.randrange(0, 5000), f"2026-0{1 + i % 9}-0{1 + i % 9}T00:00:{i % 60:02d}.000Z",
                 rnd.choice(classes))
    for key in TRICKY:
        fake.put(key, len(key))
    keys = sorted({v.key for v in fake.versions})
    for key in rnd.sample(keys, len(keys) // 10):  # overwrites → noncurrent versions
        fake.put(key, 7, "2026-12-01T00:00:00.000Z")
    for key in rnd.sample(keys, len(keys) // 20):  # deletes → delete markers
        fake.delete(key)
    fake.uploads.append({"Key": "u", "UploadId": "1", "parts": [100, 50]})
    return fake


def sequential(fake: FakeS3, classes: tuple[str, ...] = ()) -> dict:
    """The truth, from the fake's own data (no listing code involved)."""
    latest: dict = {}
    for v in fake.versions:
        latest[v.key] = v
    current = [v for v in latest.values() if not v.delete_marker and (not classes or v.storage_class in classes)]
    noncurrent = [v for v in fake.versions if not v.delete_marker and latest[v.key] is not v
                  and (not classes or v.storage_class in classes)]
    return {
        "object_count": len(current), "total_bytes": sum(v.size for v in current),
        "last_modified": max((v.last_modified for v in current), default=None),
        "noncurrent": (len(noncurrent), sum(v.size for v in noncurrent)),
        "delete_markers": sum(v.delete_marker for v in fake.versions),
    }


def sharded(fake: FakeS3, *, versions: bool, threshold: int, parts: int, classes: tuple[str, ...] = ()):
    bucket = {"name": "b", "region": "us-east-1", "creation_date": "2026-01-01T00:00:00Z", "error": None}
    planned = storage_report.plan(lambda region: fake, [bucket], max_shards=64, threshold=threshold,
                                  parts_per_bucket=parts, include_versions=versions)
    results = [storage_report.summarize_part(fake, p, include_versions=versions, storage_classes=classes)
               for s in planned for p in s["parts"]]
    total = storage_report.Totals()
    for r in results:
        total.merge(storage_report.Totals.from_dict(r["totals"]))
    return planned, total


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("versions", [False, True])
def test_sharded_totals_equal_a_sequential_pass(seed, versions):
    fake = build(seed, 400 + 150 * seed)
    planned, total = sharded(fake, versions=versions, threshold=100, parts=2 + seed)
    parts = [p for s in planned for p in s["parts"]]
    assert 1 < len(parts) <= 2 + seed
    truth = sequential(fake)
    assert (total.object_count, total.total_bytes, total.last_modified) == \
        (truth["object_count"], truth["total_bytes"], truth["last_modified"])
    assert (total.multipart_uploads, total.multipart_bytes) == (1, 150)
    if versions:
        assert (sum(n for n, _ in total.noncurrent.values()), sum(b for _, b in total.noncurrent.values())) \
            == truth["noncurrent"]
        assert total.delete_markers == truth["delete_markers"]


def test_sharded_storage_class_filter():
    fake = build(11, 600)
    _, total = sharded(fake, versions=False, threshold=50, parts=5, classes=("GLACIER",))
    truth = sequential(fake, ("GLACIER",))
    assert (total.object_count, total.total_bytes) == (truth["object_count"], truth["total_bytes"])
    assert set(total.classes) == {"GLACIER"}


def test_small_bucket_is_one_part_and_a_big_flat_bucket_is_cut_by_characters():
    fake = FakeS3()
    for i in range(300):
        fake.put(f"part-{i:05d}", i)
    planned, total = sharded(fake, versions=False, threshold=1000, parts=8)
    assert [len(s["parts"]) for s in planned] == [1] and total.object_count == 300
    fake.calls = 0
    planned, total = sharded(fake, versions=True, threshold=100, parts=8)  # big, no "/" to cut at
    cuts = [p["upto"] for s in planned for p in s["parts"]][:-1]
    assert len(cuts) == 7 and cuts == sorted(cuts)
    assert (total.object_count, total.total_bytes) == (300, sum(range(300)))
    assert fake.calls < 75  # probe, ~2 hops per level (+1 per child at the last), cut keys, the listing


@pytest.mark.parametrize("flat", [False, True])
def test_with_versions_a_bucket_of_few_current_objects_but_many_versions_is_split(flat):
    """The probe counts what a listing of versions lists: a bucket whose every key was deleted (delete
    markers and noncurrent versions only) or overwritten many times is big, and is cut at keys of
    versions (it had been one range: ListObjectsV2 saw no object, or a few)."""
    fake = FakeS3()
    for i in range(400):
        key = f"k{i:04d}" if flat else f"d{i % 10}/k{i:04d}"
        fake.put(key, i)
        fake.put(key, i + 1)
        if i % 100:  # all but 4 keys deleted
            fake.delete(key)
    planned, total = sharded(fake, versions=True, threshold=100, parts=6)
    parts = [p for s in planned for p in s["parts"]]
    assert 1 < len(parts) <= 6
    truth = sequential(fake)
    assert truth["object_count"] == 4 and truth["delete_markers"] == 396
    assert (total.object_count, total.total_bytes, total.last_modified) == \
        (truth["object_count"], truth["total_bytes"], truth["last_modified"])
    assert (sum(n for n, _ in total.noncurrent.values()), sum(b for _, b in total.noncurrent.values())) \
        == truth["noncurrent"]
    assert total.delete_markers == truth["delete_markers"]
    planned, _ = sharded(fake, versions=False, threshold=100, parts=6)  # 4 current objects: small
    assert [len(s["parts"]) for s in planned] == [1]


def test_a_key_going_on_with_the_highest_code_point_does_not_stop_the_walk_by_characters():
    """U+10FFFF sorts after every other character, so ``child + U+10FFFF`` is not past a key such as
    ``a\U0010ffff1``: the walk found ``a`` again on every request up to its cap and never reached ``b``…``j``,
    so every cut fell among the ``a`` keys and one range held the rest of the bucket."""
    fake = FakeS3()
    for key in ["a\U0010ffff1", "a\U0010ffff\U0010ffff2", "a\U0010ffff\U0010ffff"]:
        fake.put(key, 1)
    for c in "bcdefghij":
        for i in range(50):
            fake.put(f"{c}{i:03d}", 1)
    assert shards._next_chars(fake, "b", "", 64) == list("abcdefghij")
    fake.calls = 0
    cuts = shards.boundaries(fake, "b", 8)
    assert len(cuts) == 7 and len({c[0] for c in cuts}) == 7, cuts
    planned, total = sharded(fake, versions=False, threshold=100, parts=8)
    assert len([p for s in planned for p in s["parts"]]) == 8 and total.object_count == 453


def test_ranges_partition_the_key_space():
    assert shards.ranges([]) == [(None, None)]
    assert shards.ranges(["m", "c", "m"]) == [(None, "c"), ("c", "m"), ("m", None)]
    spans = shards.ranges(["a/", "a/b"])
    for key in TRICKY + ["", "a/a", "a/c", "a.", "a/\U0010ffff"]:
        assert sum(shards.in_range(key, lo, hi) for lo, hi in spans) == 1, key
    assert shards.end_before("abc") == "abc\x00" and "abc" < "abc\x00" < "abc\x01" and shards.end_before(None) is None


def test_pick_evenly():
    assert shards.pick_evenly(["a", "b"], 5) == ["a", "b"]
    assert shards.pick_evenly([str(i) for i in range(10)], 3) == ["0", "3", "6"]


def _part(bucket: str, i: int = 0, of: int = 1) -> shards.Part:
    return shards.Part(bucket=bucket, region="us-east-1", after=None, upto=None, part=i, of=of)


def test_pack_never_exceeds_max_shards_and_keeps_every_part_once():
    buckets = [[_part(f"b{i:03d}")] for i in range(3000)]
    buckets += [[_part("big", i, 4) for i in range(4)]]
    packed = shards.pack(buckets, 1024, sizes=[10] * 3001, capacity=1000)
    assert len(packed) <= 1024
    seen = [(p["bucket"], p["part"]) for s in packed for p in s["parts"]]
    assert sorted(seen) == sorted((p["bucket"], p["part"]) for parts in buckets for p in parts)
    assert [s["index"] for s in packed] == list(range(len(packed)))
    assert all(len(s["parts"]) == 1 for s in packed if s["parts"][0]["bucket"] == "big")


def test_pack_groups_small_buckets_by_object_count():
    buckets = [[_part(n)] for n in "abcde"]
    packed = shards.pack(buckets, 1024, sizes=[600, 300, 50, 900, 0], capacity=1000)
    assert [[p["bucket"] for p in s["parts"]] for s in packed] == [["a", "b", "c"], ["d", "e"]]
    with pytest.raises(ValueError, match="no shard"):
        shards.pack([[_part("x", i, 3) for i in range(3)], [_part("y")]], 3)


def test_parts_budget_leaves_room_for_small_buckets():
    assert shards.parts_budget(0, 1024, 16) == 16
    assert shards.parts_budget(10, 1024, 16) == 16
    assert shards.parts_budget(100, 1024, 16) == 5
    assert shards.parts_budget(5000, 1024, 16) == 1


def test_probe_counts_up_to_the_threshold_and_says_when_a_second_page_is_needed():
    fake = FakeS3()
    for i in range(250):
        fake.put(f"k{i:04d}", 1)
    called: list[int] = []
    assert shards.probe_count(fake, "b", 1000, on_more=lambda: called.append(1)) == 250
    assert called == [] and fake.calls == 1  # one page, not more
    assert shards.probe_count(fake, "b", 250, on_more=lambda: called.append(1)) == 250
    assert called == []
    fake.calls = 0
    assert shards.probe_count(fake, "b", 100, on_more=lambda: called.append(1)) is None
    assert called == [1] and fake.calls == 1  # MaxKeys=100: the first page reached the threshold
    fake.calls = 0
    assert shards.probe_count(fake, "b", 249, on_more=lambda: called.append(2)) is None
    assert called == [1, 2] and fake.calls == 1


def test_a_probe_proven_big_by_something_else_stops_at_once():
    fake = FakeS3()
    for i in range(5000):
        fake.put(f"k{i:05d}", 1)
    asked: list[tuple[int, str]] = []

    def proven(seen: int, last_key: str) -> bool:
        asked.append((seen, last_key))
        return seen >= 2000
    assert shards.probe_count(fake, "b", 4500, proven_big=proven) is None
    assert asked == [(1000, "k00999"), (2000, "k01999")] and fake.calls == 2  # not the 5 pages of 4,500 keys
    fake.calls = 0
    assert shards.probe_count(fake, "b", 9000, proven_big=lambda seen, last: False) == 5000
    assert fake.calls == 5  # never proven: counted to the end, as without the callback


def test_range_heads_count_one_page_of_each_range_after_the_first():
    fake = FakeS3()
    for i in range(2500):
        fake.put(f"k{i:05d}", 1)
    assert shards.range_heads(fake, "b", ["k00100", "k02450"]) == [("k00100", 1000), ("k02450", 49)]
    assert fake.calls == 2  # one page each, though the middle range holds 2,350 keys
    assert shards.range_heads(fake, "b", []) == []


def test_count_floor_counts_no_key_twice():
    heads = [("b", 1000), ("d", 400), ("f", 1000)]
    assert shards.count_floor(2000, "c", heads) == 2000 + 400 + 1000  # the range after "b" may hold probed keys
    assert shards.count_floor(2000, "a", heads) == 2000 + 2400
    assert shards.count_floor(10, "g", heads) == 10


def test_a_big_bucket_gets_the_cuts_of_a_walk_after_its_probe_and_they_partition_it():
    """The plan reuses the cuts its speculative walk made beside the probe: they are the cuts a walk made
    after the probe gives, and the ranges still sum to one sequential pass."""
    fake = build(11, 3000)
    bucket = {"name": "b", "region": "us-east-1", "creation_date": "2026-01-01T00:00:00Z", "error": None}
    planned = storage_report.plan(lambda region: fake, [bucket], max_shards=64, threshold=1500, parts_per_bucket=6)
    uptos = [p["upto"] for s in planned for p in s["parts"]]
    assert uptos[:-1] == shards.boundaries(fake, "b", 6) and uptos[-1] is None and len(uptos) > 2
    _, total = sharded(fake, versions=False, threshold=1500, parts=6)
    assert total.object_count == sequential(fake)["object_count"]


def test_the_walk_started_beside_the_probe_gives_the_cuts_of_a_walk_after_it():
    fake = build(3, 900)
    planned, _ = sharded(fake, versions=False, threshold=100, parts=6)
    cuts = [p["upto"] for s in planned for p in s["parts"]][:-1]
    assert cuts == shards.boundaries(fake, "b", 6)  # the walk without the probe, in one thread
    assert len(cuts) == 5
    # a bucket whose first probe page is full (a walk starts) but which stays under the threshold: one part
    medium = FakeS3()
    for i in range(1500):
        medium.put(f"d{i % 7}/{i:05d}", 1)
    planned, total = sharded(medium, versions=False, threshold=5000, parts=6)
    assert [len(s["parts"]) for s in planned] == [1]
    assert total.object_count == 1500


@pytest.mark.parametrize(("layout", "threads"), [("300 days", 16), ("10 areas x 30 days", 2)])
def test_ranges_cover_the_whole_key_space_evenly_past_the_walk_cap(layout, threads):
    """More prefixes than a level keeps (want * 8 = 128): the cut keys still spread over all of them, so no
    range is left with the tail of the bucket (it was: 300 folders, cuts only in the first 128; or, asked
    2 at a time, a level that stopped descending dropped its unexplored prefixes)."""
    fake = FakeS3()
    folders = ([f"events/day-{d:04d}/" for d in range(300)] if layout == "300 days"
               else [f"area-{a}/day-{d:02d}/" for a in range(10) for d in range(30)])
    for folder in folders:
        for i in range(10):
            fake.put(f"{folder}{i:03d}", 1)
    parts = 16
    cuts = shards.boundaries(fake, "b", parts, threads=threads)
    assert len(cuts) == parts - 1
    keys = sorted(v.key for v in fake.versions)
    sizes = [sum(1 for k in keys if shards.in_range(k, lo, hi)) for lo, hi in shards.ranges(cuts)]
    assert sum(sizes) == len(keys)
    assert max(sizes) <= 2 * len(keys) / parts  # even within a factor of two, the last range included
