"""An in-memory S3 with real S3's listing semantics (for shard planning tests without a server):
ListObjectsV2 (Prefix, Delimiter, StartAfter, ContinuationToken, MaxKeys), ListObjectVersions
(KeyMarker excludes every version of the marker key), ListMultipartUploads, ListParts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeVersion:
    key: str
    size: int
    last_modified: str
    storage_class: str = "STANDARD"
    delete_marker: bool = False


@dataclass
class FakeS3:
    versions: list[FakeVersion] = field(default_factory=list)  # newest version of a key last
    uploads: list[dict[str, Any]] = field(default_factory=list)  # {"Key", "UploadId", "parts": [sizes]}
    calls: int = 0

    def put(self, key: str, size: int, when: str = "2026-01-01T00:00:00.000Z", cls: str = "STANDARD") -> None:
        self.versions.append(FakeVersion(key, size, when, cls))

    def delete(self, key: str, when: str = "2026-01-02T00:00:00.000Z") -> None:
        self.versions.append(FakeVersion(key, 0, when, "", True))

    def _latest(self) -> dict[str, FakeVersion]:
        latest: dict[str, FakeVersion] = {}
        for v in self.versions:
            latest[v.key] = v
        return {k: v for k, v in latest.items() if not v.delete_marker}

    def list_objects_v2(self, Bucket: str, Prefix: str = "", Delimiter: str = "", StartAfter: str = "",
                        ContinuationToken: str = "", MaxKeys: int = 1000) -> dict[str, Any]:
        self.calls += 1
        after = ContinuationToken or StartAfter
        entries: list[tuple[str, Any]] = []
        seen_prefixes: set[str] = set()
        latest = self._latest()
        for key in sorted(latest, key=lambda k: k.encode()):
            if not key.startswith(Prefix) or (after and key.encode() <= after.encode()):
                continue
            if Delimiter and Delimiter in key[len(Prefix):]:
                cp = key[: len(Prefix) + key[len(Prefix):].index(Delimiter) + 1]
                if cp in seen_prefixes or (after and cp.encode() <= after.encode()):
                    continue
                seen_prefixes.add(cp)
                entries.append((cp, None))
            else:
                entries.append((key, latest[key]))
            if len(entries) > MaxKeys:
                break
        page, more = entries[:MaxKeys], len(entries) > MaxKeys
        out: dict[str, Any] = {
            "Contents": [{"Key": k, "Size": v.size, "LastModified": v.last_modified, "StorageClass": v.storage_class,
                          "ETag": '"x"'} for k, v in page if v is not None],
            "CommonPrefixes": [{"Prefix": k} for k, v in page if v is None],
            "KeyCount": len(page), "IsTruncated": more,
        }
        if more:
            last, obj = page[-1]
            out["NextContinuationToken"] = last if obj is not None else last + "\U0010ffff"  # past the prefix
        return out

    def list_object_versions(self, Bucket: str, KeyMarker: str = "", VersionIdMarker: str = "",
                             MaxKeys: int = 1000, Prefix: str = "", Delimiter: str = "") -> dict[str, Any]:
        self.calls += 1
        ordered: list[tuple[str, str, Any, bool]] = []  # key order, newest version first within a key
        for key in sorted({v.key for v in self.versions if v.key.startswith(Prefix)}, key=lambda k: k.encode()):
            mine = [v for v in self.versions if v.key == key]
            for n, v in enumerate(reversed(mine)):
                ordered.append((key, f"{key}#{len(mine) - n}", v, n == 0))
        start = 0
        if KeyMarker and VersionIdMarker:
            start = next(i for i, o in enumerate(ordered) if o[1] == VersionIdMarker) + 1
        elif KeyMarker:
            start = next((i for i, o in enumerate(ordered) if o[0].encode() > KeyMarker.encode()), len(ordered))
        page: list[tuple[str, str, Any, bool]] = []
        prefixes: list[str] = []
        rest = ordered[start:]
        i = 0
        while i < len(rest) and len(page) + len(prefixes) < MaxKeys:
            key = rest[i][0]
            cut = key.find(Delimiter, len(Prefix)) if Delimiter else -1
            if cut >= 0:  # rolled up into one CommonPrefix, which counts as one entry
                common = key[: cut + len(Delimiter)]
                prefixes.append(common)
                while i < len(rest) and rest[i][0].startswith(common):
                    i += 1
                last: tuple[str, str | None] = (common, None)
                continue
            page.append(rest[i])
            last = (rest[i][0], rest[i][1])
            i += 1
        more = i < len(rest)
        out: dict[str, Any] = {
            "Versions": [{"Key": k, "VersionId": vid, "Size": v.size, "LastModified": v.last_modified,
                          "StorageClass": v.storage_class, "IsLatest": latest}
                         for k, vid, v, latest in page if not v.delete_marker],
            "DeleteMarkers": [{"Key": k, "VersionId": vid, "LastModified": v.last_modified, "IsLatest": latest}
                              for k, vid, v, latest in page if v.delete_marker],
            "IsTruncated": more,
        }
        if prefixes:
            out["CommonPrefixes"] = [{"Prefix": p} for p in prefixes]
        if more:
            out["NextKeyMarker"] = last[0]
            if last[1] is not None:
                out["NextVersionIdMarker"] = last[1]
        return out

    def list_multipart_uploads(self, Bucket: str, **_: Any) -> dict[str, Any]:
        return {"Uploads": [{"Key": u["Key"], "UploadId": u["UploadId"], "StorageClass": "STANDARD"}
                            for u in self.uploads], "IsTruncated": False}

    def list_parts(self, Bucket: str, Key: str, UploadId: str, **_: Any) -> dict[str, Any]:
        upload = next(u for u in self.uploads if u["UploadId"] == UploadId)
        return {"Parts": [{"PartNumber": i + 1, "Size": s} for i, s in enumerate(upload["parts"])], "IsTruncated": False}
