"""The deletion building blocks shared by every pipeline that deletes: plan → guard → delete → audit.

One implementation, several policies (``s3_retention``, ``s3_deploy_cleanup``). A policy decides *what*
may go and streams it into a :class:`PlanWriter`; everything after that is policy-free:

- the plan lives in the artifact store (``<run_dir>/plan/00000.jsonl``, … and ``plan.json``), never in XCom;
- :func:`check_guards` refuses, naming every violated limit, before anything is deleted;
- :func:`delete_chunk` re-checks a chunk with the policy's ``recheck`` right before deleting it, deletes
  with DeleteObjects (1000 keys a request; keys XML cannot carry one by one), each object only while its
  ETag is the one the plan saw (S3 ``If-Match``: a rewritten object is kept and recorded as skipped),
  records per-key errors in ``<run_dir>/audit/<chunk>.json`` and is safe to retry;
- :func:`write_audit` merges the chunk audits into ``audit.json``.

Nothing here deletes anything that is not named in a plan chunk: an empty plan deletes nothing.
Works without Airflow (plain ``pathlib`` run folders, a boto3 client).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from include.aws.client import DELETE_BATCH, delete_objects, versioning_state
from include.core import artifacts
from include.core.progress import Progress
from include.core.times import format_time

if TYPE_CHECKING:  # the boto3 stubs are a dev dependency
    from types_boto3_s3 import S3Client

log = logging.getLogger(__name__)

PLAN_FILE = artifacts.PLAN_FILE
AUDIT_FILE = "audit.json"
PLAN_DIR = "plan"
AUDIT_DIR = artifacts.AUDIT_DIR
TASK_RESULTS_DIR = artifacts.TASK_RESULTS_DIR
_CHUNK_NAME = re.compile(r"^[0-9]{5,}$")

#: ``recheck(items) -> {key: why it is protected now}``; the keys it returns are skipped, not deleted.
Recheck = Callable[[list["PlanItem"]], dict[str, str]]


@dataclass(frozen=True)
class PlanItem:
    """One object (or one version, when ``version_id`` is set) a plan deletes, and why."""

    key: str
    size: int
    reason: str
    version_id: str | None = None
    last_modified: str = ""
    group: str = ""  # policy-defined grouping (the deployment name, …) for re-checks and reports
    etag: str = ""  # the ETag the plan saw (unquoted): the delete is conditional on it

    def to_row(self) -> dict[str, Any]:
        # not asdict(): it deep-copies every value, a third of a retention plan's own CPU; the fields are flat
        return {name: getattr(self, name) for name in _ITEM_FIELDS}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> PlanItem:
        return cls(
            key=row["key"], size=int(row.get("size", 0)), reason=row.get("reason", ""),
            version_id=row.get("version_id") or None, last_modified=row.get("last_modified", ""),
            group=row.get("group", ""), etag=row.get("etag") or "",
        )


_ITEM_FIELDS = tuple(f.name for f in fields(PlanItem))


def _reason_totals(items: Iterable[PlanItem]) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = {}
    for item in items:
        slot = totals.setdefault(item.reason, {"count": 0, "bytes": 0})
        slot["count"] += 1
        slot["bytes"] += item.size
    return dict(sorted(totals.items()))


class PlanWriter:
    """Streams a plan into ``<run_dir>/plan/00000.jsonl``, ``00001.jsonl``, … (``chunk_size`` items each).

    Memory stays at one chunk whatever the plan size. Writing a plan replaces any earlier plan of the
    same run (a retried plan task starts clean); each plan gets a fresh ``plan_id`` so chunk audits of
    an earlier plan are never mistaken for this one's.
    """

    def __init__(self, run_dir: Any, *, chunk_size: int = 1000, sample_size: int = 20,
                 settings: Mapping[str, Any] | None = None) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.run_dir = run_dir
        self.chunk_size = chunk_size
        self.sample_size = sample_size
        # the run's settings the plan is made with: plan.json (which the guard and the approval pin)
        # records them, and nothing of it is deleted under other ones (approval.authorize)
        self.settings = None if settings is None else dict(settings)
        self.plan_id = uuid.uuid4().hex
        self._buffer: list[PlanItem] = []
        self._chunks: list[str] = []
        self._delete_count = 0
        self._delete_bytes = 0
        self._by_reason: dict[str, dict[str, int]] = {}
        self._samples: list[str] = []
        self._scanned_count = 0
        self._scanned_bytes = 0
        self._closed = False
        keep_earlier_record(run_dir)
        remove_children(run_dir / PLAN_DIR, suffix=".jsonl")

    def add(self, item: PlanItem) -> None:
        if self._closed:
            raise RuntimeError("PlanWriter is closed")
        if not item.key:
            raise ValueError("a plan item needs a non-empty key")
        if not item.reason:
            raise ValueError(f"plan item {item.key!r} needs a reason")
        self._buffer.append(item)
        self._delete_count += 1
        self._delete_bytes += item.size
        slot = self._by_reason.setdefault(item.reason, {"count": 0, "bytes": 0})
        slot["count"] += 1
        slot["bytes"] += item.size
        if len(self._samples) < self.sample_size:
            self._samples.append(item.key)
        if len(self._buffer) >= self.chunk_size:
            self._flush()

    def note_scanned(self, size: int) -> None:
        """Count one object seen under the policy's scope (the base of ``max_delete_fraction``)."""
        self._scanned_count += 1
        self._scanned_bytes += size

    def _flush(self) -> None:
        if not self._buffer:
            return
        name = f"{len(self._chunks):05d}"
        artifacts.write_jsonl(self.run_dir / PLAN_DIR / f"{name}.jsonl", (i.to_row() for i in self._buffer))
        self._chunks.append(name)
        self._buffer = []

    def close(self, *, listing_complete: bool, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write the last chunk and ``plan.json``; return the small summary that goes to XCom."""
        self._flush()
        self._closed = True
        plan_path = self.run_dir / PLAN_FILE
        summary: dict[str, Any] = {
            "plan_uri": artifacts.uri(plan_path),
            "plan_id": self.plan_id,
            "chunks": list(self._chunks),
            "delete_count": self._delete_count,
            "delete_bytes": self._delete_bytes,
            "by_reason": dict(sorted(self._by_reason.items())),
            "scanned_count": self._scanned_count,
            "scanned_bytes": self._scanned_bytes,
            "listing_complete": bool(listing_complete),
            "samples": list(self._samples),
            **(extra or {}),
        }
        pinned = {} if self.settings is None else {"settings": self.settings}
        artifacts.write_json(plan_path, {**summary, "chunk_size": self.chunk_size, **pinned})
        return summary


def remove_children(folder: Any, *, suffix: str) -> None:
    """Delete the files of ``folder`` whose name ends with ``suffix`` (an earlier plan's; missing is fine)."""
    if not artifacts.exists(folder):
        return
    for child in folder.iterdir():
        if child.name.endswith(suffix):
            child.unlink()


class AlreadyDeleted(RuntimeError):
    """The run folder records deletions: asking again would replace the approval they were made under."""


def recorded_deletions(run_dir: Any) -> list[str]:
    """The files of ``run_dir`` that record something deleted: chunk audits naming deleted keys, task results
    counting deleted rows (an unreadable one counts too: it may have)."""
    found = []
    for folder, field in ((AUDIT_DIR, "deleted"), (TASK_RESULTS_DIR, "deleted")):
        if not artifacts.exists(run_dir / folder):
            continue
        for path in sorted(run_dir.joinpath(folder).iterdir(), key=lambda p: p.name):
            if not path.name.endswith(".json"):
                continue
            try:
                record = artifacts.read_json(path)
            except (OSError, ValueError):
                record = {field: "unreadable"}
            if not isinstance(record, dict) or record.get(field):
                found.append(f"{folder}/{path.name}")
    return found


def refuse_after_deletions(run_dir: Any, what: str) -> None:
    """Raise :class:`AlreadyDeleted` when ``run_dir`` records deletions: ``what`` (asking again) would replace
    the approval those deletions were made under. A failed delete is retried by clearing ``delete`` alone;
    planning again keeps the record (:func:`keep_earlier_record`)."""
    found = recorded_deletions(run_dir)
    if found:
        shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise AlreadyDeleted(f"{artifacts.uri(run_dir)} records deletions ({shown}): {what} would replace the "
                             "approval they were made under; clear the run from its plan task (the record is kept "
                             "under earlier/), or trigger a new run")


def keep_earlier_record(run_dir: Any) -> str | None:
    """Before a run that deleted is planned again (a rerun, a backfill that reprocesses its date, a cleared
    plan task), move its record (plan, approval, chunk audits, audit, task results) to
    ``earlier/<plan id>/``, so what was deleted, and under whose approval, is never overwritten. Returns
    that folder's URI, or None when nothing was deleted. A move an earlier attempt began is finished first
    (:func:`include.core.artifacts.move_record_to_earlier`), whatever is left of it at the top."""
    unfinished = artifacts.finish_earlier_move(run_dir)
    found = recorded_deletions(run_dir)
    if not found:
        if unfinished is not None:
            log.info("this run deleted before: its record is kept in %s", artifacts.uri(unfinished))
        return None if unfinished is None else str(artifacts.uri(unfinished))
    # An error of the store is raised, not taken for "no plan id": the folder's name is noted for good below.
    plan_id = ""
    if artifacts.exists(run_dir / PLAN_FILE):
        with suppress(ValueError, AttributeError):
            plan_id = str(artifacts.read_json(run_dir / PLAN_FILE).get("plan_id") or "")
    if not plan_id:  # plan.json already moved by an interrupted attempt of a version without the note
        for rel in found:
            with suppress(ValueError, AttributeError):
                plan_id = str(artifacts.read_json(run_dir / rel).get("plan_id") or "")
            if plan_id:
                break
    dest = artifacts.move_record_to_earlier(run_dir, artifacts.earlier_name(plan_id))
    log.info("this run deleted before: its record is kept in %s", artifacts.uri(dest))
    return str(artifacts.uri(dest))


class GuardRefused(RuntimeError):
    """The plan breaks a safety limit: nothing is deleted. The message names every violated limit."""

    def __init__(self, violations: list[str]) -> None:
        self.violations = list(violations)
        super().__init__("deletion refused, nothing was deleted: " + "; ".join(self.violations))


def guard_violations(
    summary: dict[str, Any], *, max_delete_count: int, max_delete_fraction: float | None,
    refusals: Iterable[str] = (),
) -> list[str]:
    """Every safety limit the plan ``summary`` breaks (empty when it may proceed)."""
    if max_delete_count is None or max_delete_count < 0:
        raise ValueError(f"max_delete_count must be a number >= 0, got {max_delete_count!r}")
    if max_delete_fraction is not None and not 0 <= max_delete_fraction <= 1:
        raise ValueError(f"max_delete_fraction must be within 0..1, got {max_delete_fraction!r}")
    violations = [str(r) for r in refusals] + [str(r) for r in summary.get("refusals", [])]
    if not summary.get("listing_complete", False):
        violations.append("the listing was incomplete, so the plan cannot be trusted")
    count = int(summary.get("delete_count", 0))
    if count > max_delete_count:
        violations.append(f"the plan deletes {count} objects, more than max_delete_count={max_delete_count}")
    if max_delete_fraction is not None and count:
        scanned = int(summary.get("scanned_count", 0))
        fraction = count / scanned if scanned else 1.0
        if fraction > max_delete_fraction:
            violations.append(
                f"the plan deletes {count} of {scanned} objects ({fraction:.1%}), more than "
                f"max_delete_fraction={max_delete_fraction:g}"
            )
    return violations


def check_guards(
    summary: dict[str, Any], *, max_delete_count: int, max_delete_fraction: float | None,
    refusals: Iterable[str] = (),
) -> None:
    """Raise :class:`GuardRefused` naming every violated limit (policy ``refusals`` — given here or as
    ``summary["refusals"]`` — an incomplete listing, ``max_delete_count``, ``max_delete_fraction``)."""
    violations = guard_violations(
        summary, max_delete_count=max_delete_count, max_delete_fraction=max_delete_fraction, refusals=refusals
    )
    if violations:
        raise GuardRefused(violations)


def _check_chunk_name(chunk: str) -> None:
    if not _CHUNK_NAME.match(chunk or ""):
        raise ValueError(f"{chunk!r} is not a plan chunk name (expected digits such as '00000')")


def read_plan(run_dir: Any) -> dict[str, Any]:
    """``plan.json`` of the run; a clear error when the run has no plan."""
    path = run_dir / PLAN_FILE
    if not artifacts.exists(path):
        raise FileNotFoundError(f"no plan at {artifacts.uri(path)}: nothing may be deleted without a plan")
    return dict(artifacts.read_json(path))


def read_chunk(run_dir: Any, chunk: str) -> list[PlanItem]:
    return chunk_items(read_chunk_bytes(run_dir, chunk))


def read_chunk_bytes(run_dir: Any, chunk: str) -> bytes:
    """A plan chunk's file as it is stored: what its digest is taken of, and its items parsed from
    (:func:`chunk_items`), so what was authorised is what is deleted."""
    _check_chunk_name(chunk)
    path = run_dir / PLAN_DIR / f"{chunk}.jsonl"
    if not artifacts.exists(path):
        raise FileNotFoundError(f"plan chunk {chunk} not found at {artifacts.uri(path)}")
    return artifacts.read_bytes(path)


def chunk_items(data: bytes) -> list[PlanItem]:
    return [PlanItem.from_row(row) for row in artifacts.parse_jsonl(data)]


def _ident(item: PlanItem) -> tuple[str, str]:
    return item.key, item.version_id or ""


def _row(item: PlanItem, **more: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"key": item.key, "size": item.size, "reason": item.reason}
    if item.version_id:
        row["version_id"] = item.version_id
    if item.group:
        row["group"] = item.group
    row.update(more)
    return row


def _chunk_counts(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "chunk": record["chunk"],
        "deleted": len(record["deleted"]),
        "deleted_bytes": sum(int(r["size"]) for r in record["deleted"]),
        "errors": len(record["errors"]),
        "skipped": len(record["skipped"]),
        "requests": record.get("requests", 0),
    }


def delete_chunk(
    client: S3Client, bucket: str, run_dir: Any, chunk: str, *, recheck: Recheck | None, dry_run: bool,
    plan_id: str | None = None, plan: Mapping[str, Any] | None = None, items: list[PlanItem] | None = None,
) -> dict[str, Any]:
    """Re-check and delete one plan chunk; record the outcome in ``<run_dir>/audit/<chunk>.json``.

    ``recheck(items)`` returns ``{key: why it is protected now}``; those keys are skipped. The rest go
    to DeleteObjects (1000 a request); per-key errors are recorded, never raised. Safe to retry: items
    an earlier attempt of the same plan already deleted are not sent again, a finished chunk without
    errors is not touched. ``dry_run`` re-checks and counts but deletes and records nothing.
    Returns counts only (``chunk``, ``deleted``, ``deleted_bytes``, ``errors``, ``skipped``, ``requests``).
    ``plan`` and ``items``: plan.json and the chunk as the caller authorised them (read once, digests
    taken of those bytes), instead of reading them again.
    """
    plan = read_plan(run_dir) if plan is None else plan
    plan_id = plan_id or plan.get("plan_id", "")
    if chunk not in plan.get("chunks", []):
        raise ValueError(f"chunk {chunk!r} is not part of the plan at {artifacts.uri(run_dir / PLAN_FILE)}")
    items = read_chunk(run_dir, chunk) if items is None else items
    audit_path = run_dir / AUDIT_DIR / f"{chunk}.json"

    done: list[dict[str, Any]] = []
    if artifacts.exists(audit_path):
        previous = artifacts.read_json(audit_path)
        if previous.get("plan_id") == plan_id:
            if previous.get("complete") and not previous.get("errors"):
                log.info("chunk %s was already deleted by an earlier attempt; nothing to do", chunk)
                return _chunk_counts(previous)
            done = list(previous.get("deleted", []))
    already = {(r["key"], r.get("version_id", "")) for r in done}
    todo = [i for i in items if _ident(i) not in already]

    protected = (recheck(todo) if (recheck is not None and todo) else {}) or {}
    skipped = [_row(i, why=protected[i.key]) for i in todo if i.key in protected]
    to_send = [i for i in todo if i.key not in protected]
    versioning = versioning_state(client, bucket) if any(i.version_id == NULL_VERSION for i in to_send) else None
    if versioning is not None:
        unsafe = {_ident(i): why for i in to_send if (why := null_version_kept(i, versioning))}
        if versioning == "Enabled":
            unsafe.update(null_versions_changed(client, bucket, [i for i in to_send if i.version_id == NULL_VERSION]))
        skipped += [_row(i, why=unsafe[_ident(i)]) for i in to_send if _ident(i) in unsafe]
        to_send = [i for i in to_send if _ident(i) not in unsafe]
    if dry_run:
        return {"chunk": chunk, "deleted": 0, "would_delete": len(to_send), "deleted_bytes": 0,
                "errors": 0, "skipped": len(skipped), "requests": 0}

    deleted: list[dict[str, Any]] = list(done)
    errors: list[dict[str, Any]] = []
    record: dict[str, Any] = {"chunk": chunk, "plan_id": plan_id, "bucket": bucket, "complete": False, "requests": 0,
              "deleted": deleted, "errors": errors, "skipped": skipped}
    chunks = list(plan.get("chunks", []))
    progress = Progress(f"deleting chunk {chunk} ({chunks.index(chunk) + 1} of {len(chunks)} in the plan)",
                        unit="keys", total=len(to_send), total_bytes=sum(i.size for i in to_send), log=log)
    for begin in range(0, len(to_send), DELETE_BATCH):
        batch = to_send[begin:begin + DELETE_BATCH]
        idents = [_s3_ident(i, versioning) for i in batch]
        by_ident = {(o["Key"], o.get("VersionId", "")): i for o, i in zip(idents, batch, strict=True)}
        for result in delete_objects(client, bucket, idents):
            record["requests"] += result.requests
            sent = [(by_ident[(o["Key"], o.get("VersionId", ""))], o) for o in result.objects]
            _record_result(result, sent, deleted, errors, skipped)
            progress.add(len(sent), sum(i.size for i, _ in sent))
        if begin + DELETE_BATCH < len(to_send):
            artifacts.write_json(audit_path, record)  # progress, so a crash mid-chunk is not resent
    record["complete"] = True
    artifacts.write_json(audit_path, record)
    progress.finish()
    counts = _chunk_counts(record)
    log.info("chunk %s: %d deleted, %d errors, %d skipped (re-check)", chunk, counts["deleted"],
             counts["errors"], counts["skipped"])
    return counts


#: The version id S3 gives what was written while the bucket's versioning was off or suspended.
NULL_VERSION = "null"


def null_version_kept(item: PlanItem, versioning: str) -> str | None:
    """Why ``item``, a ``null`` version, must be kept, given the bucket's ``versioning`` now; None when it
    can be deleted safely (and for any other item).

    A version with an id never changes, so deleting it by id deletes what the plan saw. The ``null``
    version does change: a PUT while versioning is off or suspended replaces it, and S3 checks
    ``If-Match`` against the current version only, so deleting ``VersionId=null`` is never conditional.
    Safe are: a bucket whose versioning is Enabled, where no PUT writes ``null`` any more (but one may
    have before versioning was enabled: :func:`null_versions_changed` checks it against the plan first),
    and one that was never versioned, where the ``null`` version is the object itself and a delete
    conditional on its ETag removes exactly it (:func:`_s3_ident`). Everything else is kept and says why."""
    if item.version_id != NULL_VERSION or versioning == "Enabled":
        return None
    if versioning == "Disabled":
        return None if item.etag else ("kept: no ETag was recorded for this object (an inventory without the "
                                       "ETag column), so its delete could not be conditional")
    if versioning == "Suspended":
        return ("kept: a 'null' version can be overwritten while the bucket's versioning is Suspended, and S3 "
                "cannot make its delete conditional; enable versioning to have it deleted")
    return (f"kept: the bucket's versioning could not be read ({versioning}), so whether this 'null' version can "
            "still be overwritten is unknown; allow s3:GetBucketVersioning to have it deleted")


#: HeadObject requests in flight while checking a chunk's ``null`` versions
NULL_CHECKS_IN_FLIGHT = 16


def null_versions_changed(client: S3Client, bucket: str, items: list[PlanItem]) -> dict[tuple[str, str], str]:
    """``{ident: why kept}`` for the ``null`` versions among ``items`` that are no longer what the plan saw
    (HeadObject each, a few at a time). For a bucket whose versioning is Enabled now: the ``null`` version
    cannot change any more, but it may have been rewritten after the plan, before versioning was enabled.
    A plan item without an ETag was a delete marker (the listing gives every version's ETag; an inventory
    without one is refused)."""
    from concurrent.futures import ThreadPoolExecutor

    from include.aws.client import head_version

    def check(item: PlanItem) -> str | None:
        what, detail = head_version(client, bucket, item.key, NULL_VERSION)
        if what == "gone":
            return KEPT_CODES["NoSuchKey"]
        if what == "unknown":
            return f"kept: the 'null' version could not be checked against the plan ({detail})"
        now = f"an object with ETag {detail}" if what == "object" else "a delete marker"
        then = f"an object with ETag {item.etag}" if item.etag else "a delete marker"
        return None if now == then else f"changed since plan, kept: the 'null' version is now {now}, not {then}"

    if not items:
        return {}
    with ThreadPoolExecutor(min(NULL_CHECKS_IN_FLIGHT, len(items))) as pool:
        verdicts = list(pool.map(check, items))
    return {_ident(i): why for i, why in zip(items, verdicts, strict=True) if why is not None}


def null_versions_note(versioning: str) -> str | None:
    """What the approver of a plan with versions must know: on this bucket its ``null`` versions will be
    kept (:func:`null_version_kept`), or None."""
    if versioning == "Suspended" or versioning.startswith("unknown"):
        return (f"Bucket versioning is {versioning}: the delete keeps every 'null' version (what was written while "
                "versioning was off or suspended), since one can be overwritten after the plan and S3 cannot make "
                "its delete conditional; the audit lists them. Versions with ids are deleted.")
    return None


def _s3_ident(item: PlanItem, versioning: str | None = None) -> dict[str, str]:
    """What DeleteObjects gets: a version is deleted by its id (a version never changes); a current
    object only while its ETag is still the one the plan saw (S3 ``If-Match``). So is the ``null``
    version of a never-versioned bucket: there it is the current object (:func:`null_version_kept`)."""
    ident = {"Key": item.key}
    if item.version_id == NULL_VERSION and versioning == "Disabled":
        ident["ETag"] = f'"{item.etag}"'
    elif item.version_id:
        ident["VersionId"] = item.version_id
    elif item.etag:
        ident["ETag"] = f'"{item.etag}"'
    return ident


#: Per-key answers that mean "not deleted, and rightly so": the key is kept (skipped), not an error.
KEPT_CODES = {
    "PreconditionFailed": "changed since plan, kept: its ETag is no longer {etag} (rewritten after the plan)",
    "NoSuchKey": "no longer in the bucket: nothing to delete",
}


def _record_result(result: Any, sent: list[tuple[PlanItem, dict[str, str]]], deleted: list[dict[str, Any]],
                   errors: list[dict[str, Any]], skipped: list[dict[str, Any]]) -> None:
    """Sort one request's answers (``sent``: each item with what DeleteObjects got for it) into deleted /
    per-key errors / kept (skipped) rows."""
    failed = {(e["key"], e.get("version_id") or ""): e for e in result.errors}
    confirmed = Counter(result.deleted)
    markers = set(result.markers_added)
    for item, ident in sent:
        err = failed.get(_ident(item)) or failed.get((item.key, ""))
        if err is not None and err.get("code") in KEPT_CODES and "ETag" in ident:
            why = KEPT_CODES[err["code"]].format(etag=item.etag)
            skipped.append(_row(item, why=why, code=err["code"]))
        elif err is not None:
            errors.append(_row(item, code=err.get("code", ""), message=err.get("message", "")))
        elif item.version_id and "VersionId" not in ident and item.key in markers:
            # versioning changed between the check and the delete: not the delete the plan asked for
            errors.append(_row(item, code="DeleteMarkerAdded",
                               message="the bucket's versioning changed during the delete and S3 answered with a "
                                       "delete marker: if it is Enabled now, the 'null' version is still stored "
                                       "behind the marker; if Suspended, it was removed and the marker stays. "
                                       "See the key's versions"))
        elif confirmed[item.key] > 0:
            confirmed[item.key] -= 1
            deleted.append(_row(item))
        else:
            errors.append(_row(item, code="NoResult", message="S3 reported neither Deleted nor an error"))


def write_audit(run_dir: Any, *, extra: dict[str, Any] | None = None, sample_size: int = 20) -> dict[str, Any]:
    """Merge this plan's ``audit/<chunk>.json`` files into ``audit.json``; return its summary.

    ``audit.json`` holds the counts, bytes per reason, every per-key error and every skipped key (the
    deleted keys stay in the chunk audits). Chunks without a complete audit (none, or a delete that failed
    part way) are listed as ``chunks_missing``; what a partial one deleted still counts.
    """
    plan = read_plan(run_dir)
    plan_id = plan.get("plan_id", "")
    deleted_by_reason: dict[str, dict[str, int]] = {}
    errors: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    done: list[str] = []
    requests = 0
    for chunk in plan.get("chunks", []):
        path = run_dir / AUDIT_DIR / f"{chunk}.json"
        if not artifacts.exists(path):
            continue
        record = artifacts.read_json(path)
        if record.get("plan_id") != plan_id:
            continue  # left over from an earlier plan of this run
        if record.get("complete"):  # a chunk whose delete failed part way: its deletions count, it is not done
            done.append(chunk)
        requests += int(record.get("requests", 0))
        for row in record["deleted"]:
            slot = deleted_by_reason.setdefault(row["reason"], {"count": 0, "bytes": 0})
            slot["count"] += 1
            slot["bytes"] += int(row["size"])
        errors.extend({**row, "chunk": chunk} for row in record["errors"])
        skipped.extend({**row, "chunk": chunk} for row in record["skipped"])
    summary: dict[str, Any] = {
        "plan_uri": artifacts.uri(run_dir / PLAN_FILE),
        "audit_uri": artifacts.uri(run_dir / AUDIT_FILE),
        "plan_id": plan_id,
        "planned_count": int(plan.get("delete_count", 0)),
        "planned_bytes": int(plan.get("delete_bytes", 0)),
        "deleted_count": sum(s["count"] for s in deleted_by_reason.values()),
        "deleted_bytes": sum(s["bytes"] for s in deleted_by_reason.values()),
        "deleted_by_reason": dict(sorted(deleted_by_reason.items())),
        "error_count": len(errors),
        "skipped_count": len(skipped),
        "requests": requests,
        "chunks_planned": len(plan.get("chunks", [])),
        "chunks_done": len(done),
        "chunks_missing": [c for c in plan.get("chunks", []) if c not in done],
        "audited_at": format_time(datetime.now(UTC)),
        **(extra or {}),
    }
    artifacts.write_json(run_dir / AUDIT_FILE, {**summary, "errors": errors, "skipped": skipped})
    return {**summary, "chunks_missing": summary["chunks_missing"][:sample_size],
            "error_samples": errors[:sample_size], "skipped_samples": skipped[:sample_size]}
