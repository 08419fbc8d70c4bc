"""Retention with include_versions: planned keys take every version and delete marker along (no S3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from include.aws.listing import S3Object, S3Version
from include.deletion.plan import read_chunk, read_plan
from include.retention.policy import JobRow, Policy, write_plan
from include.retention.versions import versioning_note

NOW = datetime(2019, 6, 3, tzinfo=UTC)
OLD = "2018-01-01T00:00:00.000Z"
EXPIRED = (NOW - timedelta(days=200)).replace(tzinfo=None)


def v(key: str, vid: str, size: int, *, latest: bool = False, marker: bool = False) -> S3Version:
    return S3Version(key, vid, 0 if marker else size, OLD, "" if marker else "STANDARD", latest, marker)


VERSIONS = [
    v("in/expired", "e3", 30, latest=True), v("in/expired", "e2", 20), v("in/expired", "e1", 10),
    v("in/expired", "m1", 0, marker=True),
    v("in/gone", "g1", 7), v("in/gone", "gm", 0, latest=True, marker=True),  # deleted already: kept
    v("in/official", "o2", 5, latest=True), v("in/official", "o1", 4),
    v("in/orphan", "null", 9, latest=True),  # written before versioning was enabled
]
ROWS = [JobRow("j1", EXPIRED, "TRIAL", "expired"), JobRow("j2", EXPIRED, "OFFICIAL", "official")]


def _plan(tmp_path, *, versions):
    objects = [S3Object(x.key, x.size, x.last_modified, x.storage_class, "etag") for x in VERSIONS
               if x.is_latest and not x.is_delete_marker]
    summary = write_plan(
        objects, ROWS, tmp_path, key_prefix="in/", policy=Policy.at(NOW, "P3M", 7), lookup=None, jobs_table="jobs",
        allow_empty_jobs=False, versions=VERSIONS if versions else None,
    )
    items = [i for chunk in read_plan(tmp_path)["chunks"] for i in read_chunk(tmp_path, chunk)]
    return summary, items


def test_every_version_and_marker_of_a_planned_key_is_planned(tmp_path):
    summary, items = _plan(tmp_path, versions=True)
    assert sorted((i.key, i.version_id, i.size, i.reason) for i in items) == [
        ("in/expired", "e1", 10, "trial_expired"), ("in/expired", "e2", 20, "trial_expired"),
        ("in/expired", "e3", 30, "trial_expired"), ("in/expired", "m1", 0, "trial_expired"),
        ("in/orphan", "null", 9, "orphan"),
    ]
    assert summary["delete_count"] == 5 and summary["delete_bytes"] == 69
    assert summary["versions"] == {
        "noncurrent_versions": {"count": 2, "bytes": 30}, "delete_markers": 1,
        "versions_of_deleted_keys": {"keys": 1, "count": 1, "bytes": 7},
    }
    assert summary["scanned_count"] == len(VERSIONS)  # the guard's fraction counts versions on both sides
    assert summary["protected"]["by_cause"]["official"] == 1
    assert "2 noncurrent versions (30 bytes) and 1 delete markers" in summary["headline"]


def test_without_versions_the_same_keys_are_planned_without_version_ids(tmp_path):
    summary, items = _plan(tmp_path, versions=False)
    assert sorted((i.key, i.version_id) for i in items) == [("in/expired", None), ("in/orphan", None)]
    assert "versions" not in summary


def test_the_plan_says_plainly_when_deletes_only_add_delete_markers():
    assert "only add delete markers" in versioning_note("Enabled", False)
    assert "only add delete markers" in versioning_note("Suspended", False)
    assert "if the bucket is versioned" in versioning_note("unknown (GetBucketVersioning: AccessDenied: x)", False)
    assert versioning_note("Disabled", False) is None and versioning_note("Enabled", True) is None
    assert versioning_note("Disabled", True) is None  # never versioned: null versions go, conditionally
    assert "keeps every 'null' version" in versioning_note("Suspended", True)
    assert "keeps every 'null' version" in versioning_note("unknown (GetBucketVersioning: AccessDenied: x)", True)
