"""Move finished ``.dat`` files into S3: upload with an integrity check, verify, then delete locally.

The one rule: a local file is deleted only after S3 has shown an object at its key with the same size
and content. A PUT is atomic in S3, so killing the process at any instant leaves each file either still
on disk or in S3 with identical content, never neither. Everything else (a conflict, a vanished or
unreadable file, a missing bucket, a network error) keeps the local file and is reported; the next run
tries again.

Per file: read once (md5 + sha256 in the same pass) → ``PutObject`` with ``Content-MD5`` and
``x-amz-checksum-sha256`` (S3 rejects a body that does not match) and ``If-None-Match: *`` (never
replace an object behind someone's back) → S3's echo of the checksums it stored is the verification
(a ``HeadObject`` only when there is no usable echo) → unlink. An existing object with the same content
(a crash after the upload, before the delete) only costs the local delete; a different one is a
conflict unless ``overwrite``. Files of a batch run concurrently in a thread pool sharing one client.
Small files go through :class:`include.upload.fast_put.FastPut` (the same PUT without botocore's per-request
CPU); anything it cannot settle in one attempt is sent again through the botocore client, with its
retries.

The DAG ``s3_upload`` wires :func:`scan_task` → :func:`upload_batch_task` (mapped) → :func:`tidy_task`;
file lists travel through the artifact store, never XCom. The same code runs without Airflow:

    python -m include.upload.uploader --base-dir DIR --bucket BUCKET [--endpoint-url URL] [--key-prefix P] …
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from include.core import artifacts
from include.core.errors import error_code, error_text
from include.core.times import format_time
from include.upload.fast_put import FastPut
from include.upload.layout import Candidate, Scan, remove_empty_folders, scan_base_dir, split_batches
from include.upload.settings import DEFAULT_WORKERS, UploadSettings

log = logging.getLogger(__name__)

DAG_ID = "s3_upload"
BATCH_SIZE = 500  # files per mapped upload_batch task
MAX_BATCHES = 256  # well under Airflow's max_map_length (1024): batches grow instead
IN_MEMORY_MAX = 32 * 1024 * 1024  # read smaller files once into memory; stream bigger ones
SINGLE_PUT_MAX = 5 * 1024**3  # PutObject's limit
LIST_CAP = 10_000  # names kept per list in summary.json
SMALL_PUT = 1024 * 1024  # below this, skip "Expect: 100-continue" (a round trip per PUT for nothing)
RECOVERY_SLACK = timedelta(minutes=1)  # clock skew between this host and S3 when recognising our own upload
_MD5_ETAG = re.compile(r"[0-9a-f]{32}")

# Outcomes of one file
UPLOADED, ALREADY_PRESENT, CONFLICT, FAILED, NOT_READY = "uploaded", "already_present", "conflict", "failed", "not_ready"


class UploadError(RuntimeError):
    """The run cannot start (missing base_dir, missing bucket, no access): the message says what to fix."""


@dataclass(frozen=True)
class Local:
    """The content of one local file as read for the upload."""

    size: int
    md5_hex: str
    sha256: bytes
    stat: os.stat_result

    @property
    def sha256_b64(self) -> str:
        return base64.b64encode(self.sha256).decode()

    @property
    def checksum(self) -> str:
        """The manifest's checksum: ``sha256:<hex>``, comparable with ``sha256sum`` output."""
        return f"sha256:{self.sha256.hex()}"


@dataclass
class Outcome:
    status: str
    rel: str
    key: str
    size: int = 0
    checksum: str = ""
    uploaded_at: str = ""
    error: str = ""


def _now() -> datetime:
    return datetime.now(timezone.utc)


# --- content ---------------------------------------------------------------------------------------


def read_local(fh: Any) -> tuple[bytes | None, Local]:
    """Hash an open file in one pass; small files are kept in memory so they are read only once."""
    st = os.fstat(fh.fileno())
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    keep = st.st_size <= IN_MEMORY_MAX
    chunks: list[bytes] = []
    size = 0
    while chunk := fh.read(1024 * 1024):
        md5.update(chunk)
        sha.update(chunk)
        size += len(chunk)
        if keep:
            chunks.append(chunk)
    return (b"".join(chunks) if keep else None), Local(size, md5.hexdigest(), sha.digest(), st)


def same_content(head: dict[str, Any], local: Local) -> bool | None:
    """Does the object HeadObject describes hold exactly ``local``? None: cannot tell from the headers.

    The ETag is the body's MD5 for single-part objects without KMS/customer-key encryption; the stored
    SHA-256 (when the object was uploaded with one) is checked by S3 at upload. Both are used when
    present: either one disagreeing means different content.
    """
    if int(head.get("ContentLength", -1)) != local.size:
        return False
    verdict: bool | None = None
    checksum = head.get("ChecksumSHA256")
    if checksum and "-" not in checksum:  # "-N": a composite checksum of a multipart upload
        if checksum != local.sha256_b64:
            return False
        verdict = True
    etag = str(head.get("ETag", "")).strip('"')
    etag_is_md5 = (
        _MD5_ETAG.fullmatch(etag)
        and head.get("ServerSideEncryption") not in ("aws:kms", "aws:kms:dsse")
        and not head.get("SSECustomerAlgorithm")
    )
    if etag_is_md5:
        return etag == local.md5_hex
    return verdict


def _fetched_same(client: Any, bucket: str, key: str, local: Local) -> bool:
    """Last resort when the headers cannot tell: download and compare SHA-256."""
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    sha = hashlib.sha256()
    for chunk in iter(lambda: body.read(1024 * 1024), b""):
        sha.update(chunk)
    return sha.digest() == local.sha256


def put_verified(response: dict[str, Any], local: Local) -> bool:
    """Did the PUT itself prove the stored bytes are ours? S3 recomputes the SHA-256 and MD5 we sent
    (``ChecksumSHA256``, ``Content-MD5``), refuses the PUT on a mismatch, and echoes what it stored: an
    echo equal to the local digest is the verification, without a HeadObject round trip. Anything else
    (no echo, a KMS ETag) falls back to :func:`stored_same`."""
    if response.get("ChecksumSHA256") and response["ChecksumSHA256"] == local.sha256_b64:
        return True
    etag = str(response.get("ETag", "")).strip('"')
    return bool(etag) and "-" not in etag and etag == local.md5_hex and not response.get("SSEKMSKeyId")


def _head(client: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        return client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def stored_same(client: Any, bucket: str, key: str, local: Local) -> bool:
    """Is there an object at ``key`` holding exactly ``local``? (HeadObject; a download only if it cannot tell.)"""
    head = _head(client, bucket, key)
    if head is None:
        return False
    verdict = same_content(head, local)
    return verdict if verdict is not None else _fetched_same(client, bucket, key, local)


def _no_expect_for_small_bodies(request: Any, **_: Any) -> None:
    """botocore asks for ``100 Continue`` before every PUT body; for a small file that only adds a
    round trip. Big bodies keep it, so a refused PUT (412, 403) does not send gigabytes first."""
    from botocore.utils import determine_content_length

    if "Expect" in request.headers:
        length = determine_content_length(request.body)
        if length is not None and length <= SMALL_PUT:
            del request.headers["Expect"]


# --- one file --------------------------------------------------------------------------------------


@dataclass
class Uploader:
    """Uploads files of one run: a shared client (thread-safe, one connection pool) and the settings."""

    client: Any
    settings: UploadSettings
    scanned_at: datetime = field(default_factory=_now)
    fast_put: bool = True  # small bodies through FastPut (False: every PUT through botocore)

    def __post_init__(self) -> None:
        self.client.meta.events.register(
            "before-sign.s3.PutObject", _no_expect_for_small_bodies, unique_id="s3ops-upload-no-expect"
        )
        self.fast = FastPut.for_bucket(self.client, self.settings.bucket) if self.fast_put else None

    def upload_one(self, cand: Candidate) -> Outcome:
        """Upload → verify → delete one file; never raises for a per-file problem (it is the outcome)."""
        key = self.settings.key(cand.rel)
        path = Path(self.settings.base_dir) / cand.rel
        try:
            return self._move(cand, key, path)
        except FileNotFoundError:
            return self._vanished(cand, key)
        except (ClientError, BotoCoreError) as exc:
            text = error_text(exc)
            if error_code(exc) == "NoSuchBucket":
                text = f"bucket {self.settings.bucket!r} does not exist ({text})"
            return Outcome(FAILED, cand.rel, key, cand.size, error=text)
        except OSError as exc:
            return Outcome(FAILED, cand.rel, key, cand.size, error=f"unreadable: {exc.strerror or exc}")

    def _move(self, cand: Candidate, key: str, path: Path) -> Outcome:
        bucket = self.settings.bucket
        with path.open("rb") as fh:
            data, local = read_local(fh)
            st = local.stat
            if st.st_size != cand.size or st.st_mtime_ns != cand.mtime_ns or local.size != st.st_size:
                return Outcome(NOT_READY, cand.rel, key, local.size, error="changed since the scan")
            if local.size > SINGLE_PUT_MAX:
                return Outcome(FAILED, cand.rel, key, local.size, error="larger than 5 GiB (single PUT limit)")
            if data is None:
                fh.seek(0)
            status, put_response = self._put(key, data if data is not None else fh, local)
        if status == CONFLICT:
            return Outcome(CONFLICT, cand.rel, key, local.size, local.checksum,
                           error="a different object already exists at this key")
        if status == UPLOADED and not (put_verified(put_response, local) or stored_same(self.client, bucket, key, local)):
            return Outcome(FAILED, cand.rel, key, local.size, error="verification failed: the object differs after upload")
        now = os.stat(path)
        if (now.st_ino, now.st_size, now.st_mtime_ns) != (st.st_ino, st.st_size, st.st_mtime_ns):
            return Outcome(FAILED, cand.rel, key, local.size, error="changed while uploading; kept")
        path.unlink(missing_ok=True)
        return Outcome(status, cand.rel, key, local.size, local.checksum, format_time(_now()))

    def _put(self, key: str, body: Any, local: Local) -> tuple[str, dict[str, Any]]:
        """PUT unless an object exists (If-None-Match) → (UPLOADED, the PUT response), ALREADY_PRESENT or
        CONFLICT."""
        kwargs: dict[str, Any] = {
            "Bucket": self.settings.bucket, "Key": key, "Body": body,
            "ContentMD5": base64.b64encode(bytes.fromhex(local.md5_hex)).decode(),
            "ChecksumAlgorithm": "SHA256", "ChecksumSHA256": local.sha256_b64,
        }
        if not self.settings.overwrite:
            kwargs["IfNoneMatch"] = "*"
        answer = None
        if self.fast is not None and isinstance(body, bytes):
            answer = self.fast.put(key, body, md5_b64=kwargs["ContentMD5"], sha256=local.sha256,
                                   if_none_match=not self.settings.overwrite)
        if answer is not None and answer.status == 200:
            return UPLOADED, answer.response
        if answer is None or answer.status != 412:
            # no clear answer from the one fast attempt (or none made): botocore sends it, with its retries
            try:
                return UPLOADED, self.client.put_object(**kwargs)
            except ClientError as exc:
                # 412: an object exists; 409: a concurrent conditional write to the same key.
                if error_code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                    raise
        same = stored_same(self.client, self.settings.bucket, key, local)
        return (ALREADY_PRESENT if same else CONFLICT), {}

    def _vanished(self, cand: Candidate, key: str) -> Outcome:
        """The file is gone. If this run already moved it (a retried task), the object is there, newer
        than the scan: report it as uploaded. Otherwise someone else removed it: say so."""
        try:
            head = _head(self.client, self.settings.bucket, key)
        except (ClientError, BotoCoreError) as exc:
            return Outcome(FAILED, cand.rel, key, cand.size, error=f"vanished; cannot check S3: {error_text(exc)}")
        if head is not None and head["LastModified"] >= self.scanned_at - RECOVERY_SLACK:
            checksum = head.get("ChecksumSHA256")
            return Outcome(
                UPLOADED, cand.rel, key, int(head["ContentLength"]),
                f"sha256:{base64.b64decode(checksum).hex()}" if checksum else f"etag:{head['ETag'].strip(chr(34))}",
                format_time(head["LastModified"]),
            )
        return Outcome(FAILED, cand.rel, key, cand.size, error="vanished before upload")


# --- a batch ----------------------------------------------------------------------------------------


@dataclass
class BatchResult:
    """What a batch did. ``uploaded`` rows are the manifest rows (key, size, checksum, uploaded_at)."""

    uploaded: list[dict[str, Any]] = field(default_factory=list)
    already_present: int = 0
    conflicts: list[dict[str, str]] = field(default_factory=list)  # key, path
    failed: list[dict[str, str]] = field(default_factory=list)  # path, error
    not_ready: list[dict[str, str]] = field(default_factory=list)  # path, why
    bytes: int = 0

    def add(self, outcome: Outcome, base_dir: str) -> None:
        path = str(Path(base_dir) / outcome.rel)
        if outcome.status in (UPLOADED, ALREADY_PRESENT):
            self.uploaded.append(
                {"key": outcome.key, "size": outcome.size, "checksum": outcome.checksum, "uploaded_at": outcome.uploaded_at}
            )
            self.bytes += outcome.size
            self.already_present += outcome.status == ALREADY_PRESENT
        elif outcome.status == CONFLICT:
            self.conflicts.append({"key": outcome.key, "path": path})
            log.warning("conflict: %s exists in S3 with different content; kept %s", outcome.key, path)
        elif outcome.status == NOT_READY:
            self.not_ready.append({"path": path, "why": outcome.error})
        else:
            self.failed.append({"path": path, "error": outcome.error})
            log.warning("failed: %s: %s", path, outcome.error)

    def counts(self) -> dict[str, int]:
        return {
            "uploaded": len(self.uploaded), "already_present": self.already_present,
            "conflicts": len(self.conflicts), "failed": len(self.failed),
            "skipped_not_ready": len(self.not_ready), "bytes": self.bytes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchResult:
        return cls(**data)


def upload_candidates(uploader: Uploader, candidates: Sequence[Candidate], *, workers: int = DEFAULT_WORKERS) -> BatchResult:
    """Upload files concurrently (``workers`` threads, one shared client)."""
    result = BatchResult()
    lock = threading.Lock()

    def one(cand: Candidate) -> None:
        outcome = uploader.upload_one(cand)
        with lock:
            result.add(outcome, uploader.settings.base_dir)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="upload") as pool:
        for _ in pool.map(one, candidates):
            pass
    return result


def check_bucket(client: Any, bucket: str) -> None:
    """Fail the run early, in one line, when the bucket is missing or not ours to write."""
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = error_code(exc)
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise UploadError(f"bucket {bucket!r} does not exist: create it or fix the 'bucket' setting") from exc
        if code in ("403", "AccessDenied", "Forbidden"):
            raise UploadError(f"access to bucket {bucket!r} denied: check the connection's credentials") from exc
        raise


def client_pool_size(workers: int) -> int:
    return workers + 4


# --- run steps (Airflow-free; the DAG calls these) -----------------------------------------------


def _candidate_rows(cands: Iterable[Candidate]) -> list[list[Any]]:
    return [[c.rel, c.size, c.mtime_ns] for c in cands]


def _candidates(rows: Iterable[list[Any]]) -> list[Candidate]:
    # The minute is only used for ordering in the scan; the upload does not need it.
    epoch = datetime.fromtimestamp(0, timezone.utc)
    return [Candidate(epoch, rel, int(size), int(mtime_ns)) for rel, size, mtime_ns in rows]


LOG_CAP = 1000  # malformed paths named one per log line; the rest are in scan.json


def _scan_report(base: Path, scan: Scan, now: datetime) -> dict[str, Any]:
    """Log what the scan found and return it as the ``scan.json`` body (without settings and batches)."""
    for path, reason in scan.malformed[:LOG_CAP]:
        log.warning("malformed, left alone: %s (%s)", path, reason)
    if len(scan.malformed) > LOG_CAP:
        log.warning("… and %d more malformed paths (all listed in scan.json)", len(scan.malformed) - LOG_CAP)
    for path, error in scan.errors:
        log.warning("scan error: %s: %s", path, error)
    log.info("scan of %s: %d eligible (%d this run, %d deferred by max_files), %d not ready, %d malformed",
             base, scan.eligible_total, len(scan.eligible), scan.deferred, scan.not_ready, len(scan.malformed))
    return {
        "scanned_at": format_time(now), "selected": len(scan.eligible), "deferred": scan.deferred, "not_ready": scan.not_ready,
        "malformed": [{"path": p, "reason": r} for p, r in scan.malformed],
        "errors": [{"path": p, "error": e} for p, e in scan.errors],
    }


def _existing_base(settings: UploadSettings) -> Path:
    base = Path(settings.base_dir)
    if not base.is_dir():
        raise UploadError(f"base_dir {settings.base_dir!r} is not an existing folder: create it or fix the setting")
    return base


def scan_task(settings: UploadSettings, run_dir: Any, *, now: datetime | None = None) -> list[str]:
    """Walk ``base_dir``, write the batches and ``scan.json`` (with the run's resolved settings, so
    every task of the run uses the same ones); return the batch names (the only thing in XCom)."""
    base = _existing_base(settings)
    now = now or _now()
    scan = scan_base_dir(base, now, settings.settle_seconds, settings.max_files)
    batches = split_batches(scan.eligible, BATCH_SIZE, MAX_BATCHES)
    names = [f"{i:05d}" for i in range(len(batches))]
    for name, batch in zip(names, batches, strict=True):
        artifacts.write_json(run_dir / "batches" / f"{name}.json",
                             {"scanned_at": format_time(now), "files": _candidate_rows(batch)})
    report = _scan_report(base, scan, now)
    artifacts.write_json(run_dir / "scan.json", {"settings": settings.to_dict(), "batches": names, **report})
    log.info("%d file(s) to upload in %d batch(es)", len(scan.eligible), len(names))
    return names


def upload_batch_task(client: Any, settings: UploadSettings, run_dir: Any, batch: str,
                      *, workers: int = DEFAULT_WORKERS) -> dict[str, int]:
    """Upload one batch, write ``results/<batch>.json``; return counts. Safe to retry."""
    spec = artifacts.read_json(run_dir / "batches" / f"{batch}.json")
    scanned_at = datetime.fromisoformat(spec["scanned_at"].replace("Z", "+00:00"))
    result = upload_candidates(Uploader(client, settings, scanned_at), _candidates(spec["files"]), workers=workers)
    artifacts.write_json(run_dir / "results" / f"{batch}.json", asdict(result))
    counts = result.counts()
    log.info("batch %s: %s", batch, counts)
    return counts


def summarize(settings: UploadSettings, scan_info: dict[str, Any], results: Iterable[BatchResult],
              *, removed_folders: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run's ``summary.json`` and manifest rows from the scan and the batch results."""
    manifest: list[dict[str, Any]] = []
    conflicts: list[dict[str, str]] = []
    failed: list[dict[str, str]] = list(scan_info.get("errors", []))
    not_ready = int(scan_info.get("not_ready", 0))
    already = total_bytes = 0
    for res in results:
        manifest += res.uploaded
        conflicts += res.conflicts
        failed += res.failed
        not_ready += len(res.not_ready)
        already += res.already_present
        total_bytes += res.bytes
    malformed = scan_info.get("malformed", [])
    summary = {
        "uploaded": len(manifest), "skipped_not_ready": not_ready, "malformed": len(malformed),
        "conflicts": len(conflicts), "failed": len(failed), "bytes": total_bytes,
        "already_present": already, "deferred": int(scan_info.get("deferred", 0)), "removed_folders": removed_folders,
        "malformed_paths": [m["path"] for m in malformed][:LIST_CAP],
        "conflict_keys": [c["key"] for c in conflicts][:LIST_CAP],
        "failed_paths": [f["path"] for f in failed][:LIST_CAP],
        "failures": failed[:LIST_CAP],
        "bucket": settings.bucket, "key_prefix": settings.key_prefix, "base_dir": settings.base_dir,
        "scanned_at": scan_info.get("scanned_at"), "finished_at": format_time(_now()),
    }
    return summary, manifest


RETURN_KEYS = ("uploaded", "skipped_not_ready", "malformed", "conflicts", "failed", "bytes")


def found_nothing(summary: dict[str, Any], batches: Sequence[str]) -> bool:
    """A run with no batch and nothing malformed or failed has nothing worth a run folder."""
    return not batches and not any(summary[k] for k in ("uploaded", "malformed", "conflicts", "failed"))


def problems(counts: dict[str, Any]) -> str | None:
    """Why an upload run must not look green: files failed or conflicted and stayed in ``base_dir``."""
    failed, conflicts = int(counts.get("failed") or 0), int(counts.get("conflicts") or 0)
    if not failed and not conflicts:
        return None
    return (f"{failed} file(s) failed and {conflicts} conflicted with a different object already in the bucket; "
            f"they stay in base_dir and are retried every run (summary.json lists them; set overwrite to replace "
            f"conflicting objects)")


def tidy_task(settings: UploadSettings, run_dir: Any, batches: Sequence[str], *,
              now: datetime | None = None) -> dict[str, Any]:
    """Remove finished empty folders, write ``manifest.jsonl`` and ``summary.json``; return the summary."""
    scan_info = artifacts.read_json(run_dir / "scan.json")
    results = []
    for batch in batches:
        path = run_dir / "results" / f"{batch}.json"
        if not artifacts.exists(path):
            raise UploadError(f"batch {batch} left no result at {artifacts.uri(path)}: did upload_batch run?")
        results.append(BatchResult.from_dict(artifacts.read_json(path)))
    removed = remove_empty_folders(Path(settings.base_dir), now or _now(), settings.settle_seconds)
    summary, manifest = summarize(settings, scan_info, results, removed_folders=len(removed))
    if found_nothing(summary, batches):
        # every minute on a quiet folder: no run folder, only the one-line index entry
        artifacts.record_index(run_dir / "summary.json", {k: v for k, v in summary.items() if not isinstance(v, list)})
        for name in ("scan.json", "settings.json"):  # nothing later reads them: no run folder at all
            artifacts.remove(run_dir / name)
        artifacts.remove_empty_folder(run_dir)
        log.info("nothing to upload from %s (%d not ready yet)", settings.base_dir, summary["skipped_not_ready"])
        return summary
    artifacts.write_jsonl(run_dir / "manifest.jsonl", manifest)
    artifacts.write_json(run_dir / "summary.json", summary)
    log.info("upload to s3://%s/%s: %s; removed %d empty folder(s); artifacts at %s", settings.bucket,
             settings.key_prefix, {k: summary[k] for k in RETURN_KEYS}, len(removed), artifacts.uri(run_dir))
    return summary


# --- command line ----------------------------------------------------------------------------------


def upload_tree(client: Any, settings: UploadSettings, *, workers: int = DEFAULT_WORKERS, tidy: bool = True,
                now: datetime | None = None, fast_put: bool = True) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Scan, upload every eligible file in one process and tidy: what the DAG does, without Airflow."""
    base = _existing_base(settings)
    now = now or _now()
    scan = scan_base_dir(base, now, settings.settle_seconds, settings.max_files)
    scan_info = _scan_report(base, scan, now)
    result = upload_candidates(Uploader(client, settings, now, fast_put), scan.eligible, workers=workers)
    removed = remove_empty_folders(base, _now(), settings.settle_seconds) if tidy else []
    return summarize(settings, scan_info, [result], removed_folders=len(removed))


def main(argv: list[str] | None = None) -> int:
    from include.aws.client import client_from_args
    from include.upload.settings import SETTINGS, SettingsError, resolve_settings

    parser = argparse.ArgumentParser(prog="s3ops upload", description=__doc__.splitlines()[0])
    parser.add_argument("--base-dir", help="the producer's folder (required)")
    parser.add_argument("--bucket", help="target bucket (required)")
    parser.add_argument("--key-prefix", help="prefix for every key (default '')")
    parser.add_argument("--settle-seconds", type=int, help=f"default {SETTINGS['settle_seconds'].default}")
    parser.add_argument("--overwrite", action="store_true", default=None, help="replace objects with different content")
    parser.add_argument("--max-files", type=int, help=f"default {SETTINGS['max_files'].default}")
    parser.add_argument("--endpoint-url", default=os.environ.get("S3OPS_S3_ENDPOINT"))
    parser.add_argument("--profile")
    parser.add_argument("--region")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--no-tidy", action="store_true", help="leave empty folders")
    parser.add_argument("--manifest", type=Path, help="also write the manifest (JSON lines) here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    conf = {k: getattr(args, k) for k in ("base_dir", "bucket", "key_prefix", "settle_seconds", "overwrite", "max_files")}
    try:
        settings, _ = resolve_settings(conf, None)
        client = client_from_args(profile=args.profile, endpoint_url=args.endpoint_url, region_name=args.region,
                                  pool=client_pool_size(args.workers))
        check_bucket(client, settings.bucket)
        summary, manifest = upload_tree(client, settings, workers=args.workers, tidy=not args.no_tidy)
    except (SettingsError, UploadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.manifest:
        artifacts.write_jsonl(args.manifest, manifest)
    print(json.dumps(summary, indent=2))
    return 1 if summary["failed"] or summary["conflicts"] else 0


if __name__ == "__main__":
    sys.exit(main())
