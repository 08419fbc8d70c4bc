"""Retention on versioned buckets: a planned key goes with every version and delete marker it has.

On a versioned bucket a DeleteObjects without a version id only adds a delete marker: the bytes stay
billed. With ``include_versions`` the plan lists ListObjectVersions instead of ListObjectsV2; each key's
current version is what the job join decides on (the same rule as without versions), and when the key
is planned every version and delete marker of it becomes a plan item with its version id. A key whose
newest entry is a delete marker has no current object: no job join happens for it, its versions are
kept and counted (``versions_of_deleted_keys``). Memory: one key's versions at a time, plus those of the
candidates waiting for their MySQL re-check batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby
from typing import Any, NamedTuple

from include.aws.listing import S3Version
from include.deletion.plan import null_versions_note

VERSIONED_STATES = ("Enabled", "Suspended")


class VersionedObject(NamedTuple):
    """A key's current version (the fields the join reads, like ``S3Object``) and all its entries."""

    key: str
    size: int
    last_modified: str
    storage_class: str
    etag: str
    versions: tuple[S3Version, ...]


@dataclass
class VersionCounts:
    """What plan.json says about versions: the planned keys' noncurrent versions and delete markers,
    and the versions kept because their key has no current object."""

    noncurrent_versions: int = 0
    noncurrent_bytes: int = 0
    delete_markers: int = 0
    deleted_keys: int = 0
    deleted_keys_versions: int = 0
    deleted_keys_bytes: int = 0

    def planned(self, obj: VersionedObject) -> None:
        for v in obj.versions:
            if v.is_delete_marker:
                self.delete_markers += 1
            elif not v.is_latest:
                self.noncurrent_versions += 1
                self.noncurrent_bytes += v.size

    def as_dict(self) -> dict[str, Any]:
        return {
            "noncurrent_versions": {"count": self.noncurrent_versions, "bytes": self.noncurrent_bytes},
            "delete_markers": self.delete_markers,
            "versions_of_deleted_keys": {"keys": self.deleted_keys, "count": self.deleted_keys_versions,
                                         "bytes": self.deleted_keys_bytes},
        }


def current_with_versions(
    versions: Iterable[S3Version], counts: VersionCounts, note_scanned: Callable[[int], None],
) -> Iterator[VersionedObject]:
    """One :class:`VersionedObject` per key that has a current version (ListObjectVersions order: key
    order, every entry of a key together). ``note_scanned`` gets every entry but the current one (the
    join counts that), so the guard's fraction is versions deleted / versions under the prefix."""
    for key, entries in groupby(versions, key=lambda v: v.key):
        group = tuple(entries)
        current = next((v for v in group if v.is_latest and not v.is_delete_marker), None)
        for v in group:
            if v is not current:
                note_scanned(v.size)
        if current is None:  # newest entry is a delete marker: nothing current to decide on; kept
            counts.deleted_keys += 1
            counts.deleted_keys_versions += sum(not v.is_delete_marker for v in group)
            counts.deleted_keys_bytes += sum(v.size for v in group)
            continue
        yield VersionedObject(key, current.size, current.last_modified, current.storage_class, "", group)


def versioning_note(state: str, include_versions: bool) -> str | None:
    """What the approver must know about versions, or None when nothing needs saying."""
    if include_versions:
        return null_versions_note(state)
    if state in VERSIONED_STATES:
        return (f"The bucket is versioned ({state}): these deletes only add delete markers; every version "
                "stays stored and billed. Set include_versions to delete the planned keys' versions too.")
    if state.startswith("unknown"):
        return (f"Bucket versioning is {state}: if the bucket is versioned, these deletes only add delete "
                "markers and the bytes stay billed.")
    return None
