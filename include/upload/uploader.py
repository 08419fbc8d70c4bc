"""Move finished ``.dat`` files into S3: upload with a full-object checksum, verify, then delete locally.

The one rule: a local file is deleted only after S3 has shown an object at its key with the same size
and content. A PUT is atomic in S3 and a multipart upload becomes an object only when it completes, so
killing the process at any instant leaves each file either still on disk or in S3 with identical
content, never neither. Everything else (a conflict, a vanished or unreadable file, a missing bucket, a
network error, any exception) keeps the local file and becomes that file's outcome; the next run tries
again.

Per file: read once for its CRC64NVME (the checksum S3 keeps for every object) → upload through AWS's
Common Runtime S3 client (:mod:`include.aws.crt`: one PUT, or a parallel multipart upload at or above
``multipart_threshold_mib``) with ``x-amz-checksum-crc64nvme`` (S3 checks the whole object against it
and refuses a mismatch) and ``If-None-Match: *`` (on the PUT, or on CompleteMultipartUpload: never
replace an object behind someone's back) → S3's echo of the stored checksum is the verification (a
HeadObject when there is no echo, as after a multipart upload) → unlink. An existing object with the
same content (a crash after the upload, before the delete) only costs the local delete; a different
one is a conflict unless ``overwrite``. A multipart upload left incomplete by a killed worker is aborted
by the next run, if its file is still in ``base_dir`` (:func:`abort_abandoned_uploads`); one uploader per
``base_dir`` at a time (:mod:`include.upload.lock`) keeps another's uploads from looking abandoned. The files of a
batch share one botocore client and one CRT client, up to ``workers`` uploads in flight; one Python
thread reads, submits and finishes. Why the CRT client and not botocore/s3transfer: bench/README.md
(scenarios 6 and 9).

The DAG ``s3_upload`` wires :func:`scan_task` → :func:`upload_batch_task` (mapped) → :func:`tidy_task`;
file lists travel through the artifact store, never XCom. The same code runs without Airflow:

    python -m include.upload.uploader --base-dir DIR --bucket BUCKET [--endpoint-url URL] [--key-prefix P] …
"""

from __future__ import annotations

import argparse
import base64
import errno
import gc
import json
import logging
import os
import stat
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from awscrt.checksums import crc64nvme
from botocore.exceptions import BotoCoreError, ClientError, InvalidRegionError

from include.aws.crt import MIB, Answer, BucketURL, CrtPutter, credentials_from_args, proxy_problem, signing_region
from include.core import artifacts
from include.core.errors import ABORT_ADVICE, error_code, error_text
from include.core.progress import Progress
from include.core.text import shown
from include.core.times import format_time
from include.upload import lock
from include.upload.layout import (
    PRIVATE_NAME_BYTES,
    PRIVATE_PREFIX,
    Candidate,
    Folders,
    MalformedPath,
    MovedSinceScan,
    Scan,
    parse_data_path,
    put_back,
    remove_empty_folders,
    scan_base_dir,
    split_batches,
)
from include.upload.settings import DEFAULT_WORKERS, UploadSettings

log = logging.getLogger(__name__)

BATCH_SIZE = 500  # files per mapped upload_batch task
MAX_BATCHES = 256  # well under Airflow's max_map_length (1024): batches grow instead
MAX_OBJECT = 5 * 1024**4  # S3's largest object (5 TiB)
PART_SIZE = 8 * MIB  # multipart part size, the AWS CLI's (the CRT client grows it when a file would need > 10,000 parts)
CRT_MEMORY_LIMIT = 512 * MIB  # the CRT client's buffer pool (its minimum is 256 MiB): peak memory does not grow with the file size
LIST_CAP = 10_000  # names kept per list in summary.json
READ_CHUNK = 8 * MIB
# No answer, submission or progress report for this long: S3 stalled, cancel what is in flight. A file under
# the multipart threshold (one PUT) reports no progress until it ends, so the limit grows with the bytes of
# those in flight, at STALL_RATE (64 files of 63 MiB: 11 hours; small files: 10 minutes).
STALL_SECONDS = 600
STALL_RATE = 100_000  # bytes per second
RECOVERY_SLACK = timedelta(minutes=1)  # clock skew between this host and S3 when recognising our own upload

# Outcomes of one file
UPLOADED, ALREADY_PRESENT, CONFLICT, FAILED, NOT_READY = "uploaded", "already_present", "conflict", "failed", "not_ready"
NOT_DELETED = "uploaded_not_deleted"  # in S3 and verified, but the local delete failed: the next run deletes it
IN_S3 = (UPLOADED, ALREADY_PRESENT, NOT_DELETED)


class UploadError(RuntimeError):
    """The run cannot start (missing base_dir, missing bucket, no access): the message says what to fix."""


class NotRegularFile(Exception):
    """A path the scan saw as a regular file is something else now (a FIFO, a folder, a symbolic link…)."""


@dataclass(frozen=True)
class Local:
    """The content of one local file as read for the upload."""

    size: int
    crc64nvme: str  # base64 of the 8 big-endian bytes, as S3 reports it
    stat: os.stat_result

    @property
    def checksum(self) -> str:
        """The manifest's checksum, comparable with ``aws s3api head-object --checksum-mode ENABLED``."""
        return f"crc64nvme:{self.crc64nvme}"


#: Where the CRT client reads a file it uploads: the file this process opened and checksummed, through
#: Linux's /proc/self/fd (a new open of that very file, not of a path someone could swap a folder in), or
#: where /proc is missing (macOS, whose /dev/fd would share the offset) the path, guarded by the checksum.
_PROC_FD = os.path.isdir("/proc/self/fd")


@dataclass(frozen=True)
class Pending:
    """A file read and ready to go: what :meth:`Uploader.finish` needs once S3 has answered. ``fh`` stays
    open until then: the CRT client reads the upload from it (:attr:`sent_path`)."""

    cand: Candidate
    key: str
    path: str
    local: Local
    fh: Any

    @property
    def sent_path(self) -> str:
        return f"/proc/self/fd/{self.fh.fileno()}" if _PROC_FD else self.path


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
    return datetime.now(UTC)


def _b64_crc(value: int) -> str:
    return base64.b64encode(value.to_bytes(8, "big")).decode()


# --- content ---------------------------------------------------------------------------------------

_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFDIR: "a folder", stat.S_IFSOCK: "a socket"}
# O_NONBLOCK: opening a FIFO that has no writer waits for ever (so may a device); a non-blocking open never
# does. O_NOFOLLOW: the scan follows no symbolic link, so neither does the read (a link swapped in after the
# scan would upload whatever it points to). O_NOCTTY: a terminal swapped in never becomes the process's.
_SCANNED_FILE_FLAGS = os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY


def open_scanned(path: str, flags: int, dir_fd: int | None = None) -> int:
    """``open()``'s opener for a file the scan found (``path`` relative to ``dir_fd`` if given): the
    descriptor of a regular file, back in blocking mode (so reading it, and its CRC, are what they always
    were), or :class:`NotRegularFile` for anything else, without ever waiting."""
    try:
        fd = os.open(path, flags | _SCANNED_FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW's answer for a link
            raise NotRegularFile("a symbolic link") from None
        if exc.errno == errno.ENXIO:  # a socket, or a device with nothing behind it
            raise NotRegularFile("a socket or a device") from None
        raise
    try:
        kind = stat.S_IFMT(os.fstat(fd).st_mode)
        if kind != stat.S_IFREG:
            raise NotRegularFile(_KINDS.get(kind, f"file type {kind:o}"))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_local(fh: Any) -> Local:
    """CRC64NVME of an open file in one pass (native code: a few GB/s), and its stat. One buffer sized to
    the file (at most ``READ_CHUNK``): a small file costs one read, and one more that finds its end."""
    st = os.fstat(fh.fileno())
    buf = memoryview(bytearray(max(1, min(st.st_size + 1, READ_CHUNK))))
    crc = size = 0
    while n := fh.readinto(buf):
        crc = crc64nvme(buf[:n], crc)
        size += n
    return Local(size, _b64_crc(crc), st)


def same_content(head: dict[str, Any], local: Local) -> bool | None:
    """Does the object HeadObject describes hold exactly ``local``? None: cannot tell from the headers
    (an object stored without a full-object CRC64NVME, e.g. by another tool before S3 computed one)."""
    if int(head.get("ContentLength", -1)) != local.size:
        return False
    checksum = head.get("ChecksumCRC64NVME")
    if checksum and str(head.get("ChecksumType") or "FULL_OBJECT").upper() == "FULL_OBJECT":
        return bool(checksum == local.crc64nvme)
    return None


def _fetched_same(client: Any, bucket: str, key: str, local: Local) -> bool:
    """Last resort when the headers cannot tell: download and compare the CRC64NVME."""
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    crc = 0
    for chunk in iter(lambda: body.read(READ_CHUNK), b""):
        crc = crc64nvme(chunk, crc)
    return _b64_crc(crc) == local.crc64nvme


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


def holds_the_file(client: Any, bucket: str, key: str, local: Local, fd: int, *,
                   head: dict[str, Any] | None = None) -> bool:
    """Does an object this run did not write (found at the key) hold exactly the file open at ``fd``? Its
    size and CRC64NVME first (HeadObject), then every byte (GetObject, compared as it streams). A CRC is
    no proof against someone who chose the object: CRC64 is linear, so an object of the same length and
    checksum and other bytes is easy to make, and deleting the file on its word would lose the only copy.
    A download is the price, paid only when an object is already there (a run killed after its upload).
    ``head``: the object's HeadObject answer when the caller has it already."""
    head = head if head is not None else _head(client, bucket, key)
    if head is None or same_content(head, local) is False:  # None (the headers cannot tell): the bytes will
        return False
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    offset = 0
    try:
        for chunk in iter(lambda: body.read(READ_CHUNK), b""):
            if os.pread(fd, len(chunk), offset) != chunk:
                return False
            offset += len(chunk)
    finally:
        body.close()
    return offset == local.size


def put_verified(answer: Answer, local: Local) -> bool:
    """Did the upload's answer itself prove the stored bytes are ours? S3 checked the whole object against
    the CRC64NVME we sent (refusing a mismatch) and echoes what it stored: an echo equal to the local
    checksum is the verification. No echo (a multipart upload's final answer) → :func:`stored_same`."""
    echo = answer.headers.get("x-amz-checksum-crc64nvme")
    return bool(echo) and echo == local.crc64nvme and (answer.headers.get("x-amz-checksum-type") or "FULL_OBJECT").upper() == "FULL_OBJECT"


# --- one file --------------------------------------------------------------------------------------


@dataclass
class Uploader:
    """Uploads files of one run: a shared botocore client (checks, HeadObject), a shared CRT client
    (the uploads) and the settings."""

    client: Any
    settings: UploadSettings
    scanned_at: datetime = field(default_factory=_now)
    credentials: Any = None  # botocore credentials for the CRT client (default: the environment/profile)
    putter: CrtPutter | None = None
    retried: bool = False  # a retry of the batch's task: a file gone may have been moved by an earlier try
    folders: Folders = field(init=False)

    def __post_init__(self) -> None:
        self.folders = Folders(self.settings.base_dir)
        if self.putter is None:
            threshold = self.settings.multipart_threshold_mib * MIB
            self.putter = CrtPutter(self.client, self.credentials or credentials_from_args(), self.settings.bucket,
                                    part_size=min(PART_SIZE, threshold), threshold=threshold,
                                    memory_limit=CRT_MEMORY_LIMIT, throughput_gbps=self.settings.throughput_target_gbps)

    def upload_one(self, cand: Candidate) -> Outcome:
        """Upload → verify → delete one file and wait; never raises: any problem is this file's outcome."""
        step = self.prepare(cand)
        if isinstance(step, Outcome):
            return step
        assert self.putter is not None
        try:
            answer = self.putter.put_file(step.key, step.sent_path, step.local.size, crc64nvme=step.local.crc64nvme,
                                          if_none_match=not self.settings.overwrite)
        except Exception:  # refused at submission, so nothing reads the file (an interrupt may leave a read going)
            step.fh.close()
            raise
        return self.finish(step, answer)

    def close(self) -> None:
        """Close the folders' descriptors (the uploader reopens them if used again)."""
        self.folders.close()

    def prepare(self, cand: Candidate) -> Pending | Outcome:
        """Read the file's checksum and decide: a :class:`Pending` upload, or already an outcome (not
        ready, vanished, an existing object a multipart upload need not be sent for, an error)."""
        key = self.settings.key(cand.rel)
        path = os.path.join(self.settings.base_dir, cand.rel)  # a str: the two Path objects cost ~6 µs a file
        return self._guarded(cand, key, path, lambda: self._prepare(cand, key, path))

    def finish(self, pending: Pending, answer: Answer) -> Outcome:
        """S3's answer → verify → delete locally; the file's outcome."""
        try:
            return self._guarded(pending.cand, pending.key, pending.path, lambda: self._finish(pending, answer))
        finally:
            pending.fh.close()

    def _guarded(self, cand: Candidate, key: str, path: str, step: Callable[[], Any]) -> Any:
        try:
            return step()
        except FileNotFoundError:
            return self._vanished(cand, key)
        except NotRegularFile as exc:  # kept; the next scan names it as malformed
            return Outcome(NOT_READY, cand.rel, key, cand.size,
                           error=f"changed since the scan: no longer a regular file ({exc}); kept")
        except MovedSinceScan as exc:  # never read through the link; the next scan names it as malformed
            return Outcome(NOT_READY, cand.rel, key, cand.size, error=f"changed since the scan: {exc}; kept")
        except (ClientError, BotoCoreError) as exc:
            return Outcome(FAILED, cand.rel, key, cand.size, error=self._s3_error(error_code(exc), error_text(exc)))
        except OSError as exc:
            return Outcome(FAILED, cand.rel, key, cand.size, error=f"cannot read the local file: {exc.strerror or exc}")
        except Exception as exc:  # one file's surprise must not stop the batch or lose the manifest
            log.exception("unexpected error uploading %s", shown(path))
            return Outcome(FAILED, cand.rel, key, cand.size, error=f"{type(exc).__name__}: {exc}")

    def _s3_error(self, code: str, text: str) -> str:
        """A file's error from S3's code and text, with what to do where S3's own words do not say it."""
        if code == "NoSuchBucket":
            return f"bucket {self.settings.bucket!r} does not exist ({text})"
        if code in ("AccessDenied", "403", "Forbidden"):  # HeadBucket passed: the upload or a check is denied
            return (f"S3 denied access to bucket {self.settings.bucket!r} ({text}): the credentials need s3:PutObject, "
                    "and s3:GetObject for the checks of an existing object and of a multipart upload (HeadObject)")
        return text

    def _prepare(self, cand: Candidate, key: str, path: str) -> Pending | Outcome:
        folder, _, name = cand.rel.rpartition("/")
        folder_fd = self.folders.fd(folder)
        fh = _open_scanned_file(folder_fd, name)
        handed_over = False
        try:
            local = read_local(fh)
            st = local.stat
            if st.st_size != cand.size or st.st_mtime_ns != cand.mtime_ns or local.size != st.st_size:
                return Outcome(NOT_READY, cand.rel, key, local.size, error="changed since the scan")
            if cand.ino and st.st_ino != cand.ino:  # another file renamed into the place of the scanned one
                return Outcome(NOT_READY, cand.rel, key, local.size, error="changed since the scan: another file")
            if local.size > MAX_OBJECT:
                return Outcome(FAILED, cand.rel, key, local.size, error="larger than 5 TiB (S3's largest object)")
            pending = Pending(cand, key, path, local, fh)
            bucket = self.settings.bucket
            multipart = local.size >= self.settings.multipart_threshold_mib * MIB
            if multipart and not self.settings.overwrite and (head := _head(self.client, bucket, key)) is not None:
                # do not send gigabytes only to have CompleteMultipartUpload refuse them
                same = holds_the_file(self.client, bucket, key, local, fh.fileno(), head=head)
                return self._delete_local(pending, ALREADY_PRESENT if same else CONFLICT)
            handed_over = True
            return pending
        finally:
            if not handed_over:
                fh.close()

    def _finish(self, pending: Pending, answer: Answer) -> Outcome:
        bucket, key, local, rel = self.settings.bucket, pending.key, pending.local, pending.cand.rel
        if answer.status == 200:
            if not (put_verified(answer, local) or stored_same(self.client, bucket, key, local)):
                return Outcome(FAILED, rel, key, local.size, error="verification failed: the object differs after upload")
            return self._delete_local(pending, UPLOADED)
        if answer.status in (412, 409):  # 412: an object was there; 409: another write to the key was in flight
            head = _head(self.client, bucket, key)
            if head is None:  # nothing differs, so no conflict: removed since, or the other write never landed
                return Outcome(FAILED, rel, key, local.size,
                               error=f"S3 refused the upload ({answer.error}) but no object is at the key now ("
                                     f"{'removed since' if answer.status == 412 else 'another write to it was in flight'}"
                                     "); the file is kept and the next run tries again")
            same = holds_the_file(self.client, bucket, key, local, pending.fh.fileno(), head=head)
            return self._delete_local(pending, ALREADY_PRESENT if same else CONFLICT)
        if answer.code in ("BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch"):
            return Outcome(FAILED, rel, key, local.size,
                           error=f"S3 refused the content: it does not match the file's checksum (changed while "
                                 f"uploading?) ({answer.error})")
        if answer.status == 0:
            return Outcome(FAILED, rel, key, local.size, error=f"no answer from S3 after retries: {answer.error}")
        return Outcome(FAILED, rel, key, local.size, error=self._s3_error(answer.code or str(answer.status), answer.error))

    def _delete_local(self, pending: Pending, status: str) -> Outcome:
        """The object at the key is verified to hold the file (or conflicts): delete the file, unless it
        changed meanwhile."""
        local, rel, key = pending.local, pending.cand.rel, pending.key
        if status == CONFLICT:
            return Outcome(CONFLICT, rel, key, local.size, local.checksum,
                           error="a different object already exists at this key")
        folder, _, name = rel.rpartition("/")
        uploaded_at = format_time(_now())
        try:  # in the folder the scan listed, through its descriptor: never through a link swapped in since
            folder_fd = self.folders.fd(folder)
        except MovedSinceScan as exc:
            return Outcome(NOT_DELETED, rel, key, local.size, local.checksum, uploaded_at,
                           error=f"uploaded and verified, but not deleted: {exc}; the file is kept")
        st, now = local.stat, os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
        # ctime too: a rewrite that put the mtime back (cp -p, touch -r, rsync -t --inplace) still moves it
        if _identity(now) != _identity(st):
            if not _same_bytes_again(folder_fd, name, local, now):
                return Outcome(FAILED, rel, key, local.size, error=CHANGED_AFTER_UPLOAD)
            st = now  # only its metadata changed (a hard link, a chmod): the file S3 holds, to delete as it is now
        try:
            problem = _unlink_if_same(folder_fd, name, st)
        except FileNotFoundError:
            problem = None
        except OSError as exc:
            return Outcome(NOT_DELETED, rel, key, local.size, local.checksum, uploaded_at,
                           error=f"uploaded and verified, but deleting the local file failed "
                                 f"({exc.strerror or exc}); it is kept and the next run deletes it")
        if problem:
            return Outcome(FAILED, rel, key, local.size, error=problem)
        return Outcome(status, rel, key, local.size, local.checksum, uploaded_at)

    def _vanished(self, cand: Candidate, key: str) -> Outcome:
        """The file is gone. If this run already moved it (a retried task), the object is there: newer
        than the scan, it is reported as uploaded; older, of the file's size, and on a retry, as already
        present (the first try found that object identical and deleted the file, then died before its
        record). Otherwise someone else removed it: say so."""
        try:
            head = _head(self.client, self.settings.bucket, key)
        except (ClientError, BotoCoreError) as exc:
            return Outcome(FAILED, cand.rel, key, cand.size, error=f"vanished; cannot check S3: {error_text(exc)}")
        if head is not None and head["LastModified"] >= self.scanned_at - RECOVERY_SLACK:
            checksum = head.get("ChecksumCRC64NVME")
            return Outcome(
                UPLOADED, cand.rel, key, int(head["ContentLength"]),
                f"crc64nvme:{checksum}" if checksum else f"etag:{head['ETag'].strip(chr(34))}",
                format_time(head["LastModified"]),
            )
        if self.retried and head is not None and int(head["ContentLength"]) == cand.size:
            checksum = head.get("ChecksumCRC64NVME")
            return Outcome(ALREADY_PRESENT, cand.rel, key, cand.size,
                           f"crc64nvme:{checksum}" if checksum else f"etag:{head['ETag'].strip(chr(34))}",
                           error="the file was gone when this try began; an object of its size was already at the "
                                 "key (an earlier try found it identical and deleted the file)")
        return Outcome(FAILED, cand.rel, key, cand.size, error="vanished before upload")


def _open_scanned_file(folder_fd: int, name: str) -> BinaryIO:
    """``name`` in the folder the scan listed, opened unbuffered as :func:`open_scanned` opens it (no link
    followed, still a regular file): the upload's read and the re-read before a local delete alike."""
    return open(name, "rb", buffering=0, opener=lambda n, flags: open_scanned(n, flags, folder_fd))


def _identity(st: os.stat_result) -> tuple[int, ...]:
    """What must not change between the upload's read and the local delete."""
    return st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _same_bytes_again(folder_fd: int, name: str, local: Local, now: os.stat_result) -> bool:
    """The file's change time moved since the upload's read (``now``: its lstat): metadata only (a backup tool
    hard-linking it, a chmod), or content rewritten with its mtime put back? The very file (inode, size and
    mtime as read) is read again: the same CRC64NVME, and nothing moved while it was read."""
    if _identity(now)[:4] != _identity(local.stat)[:4]:
        return False
    with _open_scanned_file(folder_fd, name) as fh:
        again = read_local(fh)
        after = os.fstat(fh.fileno())
    return again.crc64nvme == local.crc64nvme and _identity(again.stat) == _identity(after) == _identity(now)


def _unlink_if_same(folder_fd: int, name: str, st: os.stat_result) -> str | None:
    """Delete ``name`` only if it is still the file ``st`` describes; else keep it and say why.

    Deleting by name after a check would delete a file a producer renamed over it in between (an atomic
    rewrite of the minute), never uploaded. So the file is first renamed to a name only this call knows,
    checked there, and deleted; another file caught by the rename is linked back under its name (a link
    fails rather than replace a file written there since) and its private name removed."""
    # the name, cut to fit 255 bytes with the prefix (a long multibyte one would not): a leftover of a killed
    # run gets it back at the next scan (include.upload.layout._restore_leftover)
    private = os.fsdecode(os.fsencode(f"{PRIVATE_PREFIX}{uuid.uuid4().hex}-") + os.fsencode(name)[:PRIVATE_NAME_BYTES])
    os.rename(name, private, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
    moved = os.stat(private, dir_fd=folder_fd, follow_symlinks=False)
    if (moved.st_ino, moved.st_dev) == (st.st_ino, st.st_dev):
        try:
            os.unlink(private, dir_fd=folder_fd)
        except OSError as exc:
            try:
                put_back(folder_fd, private, name)  # kept under its name: the next run deletes it
            except OSError:
                return (f"uploaded and verified, but deleting the local file failed ({exc.strerror or exc}), and so "
                        f"did giving it its name back: it is kept as {private!r} in the same folder")
            raise
        return None
    try:
        put_back(folder_fd, private, name)
    except OSError as exc:
        return (f"{REPLACED_AFTER_UPLOAD}; putting the new file back failed ({exc.strerror or exc}): it is kept as "
                f"{private!r} in the same folder")
    return REPLACED_AFTER_UPLOAD


STALLED = ("no answer and no progress from S3 for {} s: the upload was cancelled; the file is kept and the next run "
           "sends it again")  # .format(the seconds waited)
NOT_SENT = "not sent: S3 stalled on this batch's uploads (see the others); the file is kept for the next run"
#: a file written to after its upload, before its delete: the producer broke the settle contract
CHANGED_AFTER_UPLOAD = ("changed after its upload (written to after settle_seconds): kept; S3 holds the content as "
                        "read for the upload, so the next runs report a conflict at its key. Make the producer "
                        "finish files within settle_seconds (or raise it), then upload the file with overwrite")


#: another file renamed into the place of the uploaded one, between its upload and its delete
REPLACED_AFTER_UPLOAD = ("replaced after its upload (another file was renamed over it): the new file is kept; S3 "
                         "holds the one read for the upload, so the next runs report a conflict at its key. Make the "
                         "producer finish files within settle_seconds, then upload the file with overwrite")


#: why an incomplete upload at a layout key is not aborted (the scan report's log line, the docs)
LEFT_ALONE_WHY = "no such file in base_dir: another uploader's (another host, or a command line on another folder)"


@dataclass
class AbandonedUploads:
    """What :func:`abort_abandoned_uploads` did: a row per upload it aborted (or tried to), and how many
    incomplete uploads at layout keys it left alone because their files are not in this ``base_dir``."""

    aborted: list[dict[str, str]] = field(default_factory=list)
    left_alone: int = 0


Listings = dict[str, dict[str, str]]  # folder → {exact name: "dir", "file" or "other"}


def _kind(entry: os.DirEntry[str]) -> str:
    if entry.is_dir(follow_symlinks=False):
        return "dir"
    return "file" if entry.is_file(follow_symlinks=False) else "other"


def _listing(folders: Folders, folder: str, seen: Listings) -> dict[str, str]:
    """A folder's entries by exact name and kind, listed once per :func:`abort_abandoned_uploads`, through
    its descriptor (reached as the scan reaches it: never through a link). The kinds are read now, while
    the descriptor is open: a DirEntry that needs a stat later would use a descriptor number that may
    belong to another folder by then."""
    if folder not in seen:
        try:
            with os.scandir(folders.fd(folder)) as entries:
                seen[folder] = {e.name: _kind(e) for e in entries}
        except (OSError, MovedSinceScan):  # missing, a link or a file now, unreadable: nothing of ours there
            seen[folder] = {}
    return seen[folder]


def _scan_finds(folders: Folders, rel: str, seen: Listings) -> bool:
    """Would this run's scan find ``rel`` in ``base_dir``: a regular file at exactly that path, reached
    through folders and no symbolic link (the scan follows none: a link to another host's folder is not
    ours), each name spelled exactly? Names are looked up in listings before a folder is opened, because
    on a case-insensitive disk opening ``Berlin/…`` would find ``berlin/…``, whose key is another one."""
    folder, parts = "", rel.split("/")
    for depth, name in enumerate(parts):
        if _listing(folders, folder, seen).get(name) != ("file" if depth == len(parts) - 1 else "dir"):
            return False
        folder = f"{folder}/{name}" if folder else name
    return True


def _abort(client: Any, bucket: str, upload: dict[str, Any]) -> dict[str, str]:
    """Abort one incomplete upload; its row for ``scan.json`` (with ``error`` if S3 refused)."""
    key = upload["Key"]
    row = {"key": key, "initiated": format_time(upload["Initiated"])}
    try:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
        log.info("aborted an incomplete multipart upload of %s started %s", key, row["initiated"])
    except (ClientError, BotoCoreError) as exc:  # refused, or the network failed after retries: say so, go on
        if error_code(exc) != "NoSuchUpload":  # gone meanwhile: that is what we wanted
            row["error"] = error_text(exc)
            log.warning("cannot abort the incomplete upload of %s: %s", key, row["error"])
    return row


def abort_abandoned_uploads(client: Any, settings: UploadSettings, before: datetime, *,
                            keys: Collection[str] | None = None) -> AbandonedUploads:
    """Abort the multipart uploads a killed worker of *this* ``base_dir`` left behind: under ``key_prefix``,
    at a key in the producer layout, started before ``before`` (this run's scan; with
    ``max_active_runs=1`` no earlier run is still uploading), and whose file is still in ``base_dir`` at
    the path the key maps to. That file is what makes aborting safe: the scan finds it and it is
    uploaded again, so nothing is lost. An upload whose file is not here is another uploader's with the
    same bucket and prefix (another host, a command line on another folder), maybe sending parts right
    now: aborting it would break that upload, every minute. It is left alone and counted. ``keys``: only
    uploads at these keys are considered (a retried batch: its own files'; the others are not counted)."""
    result = AbandonedUploads()
    try:
        uploads = [u for page in client.get_paginator("list_multipart_uploads").paginate(
            Bucket=settings.bucket, Prefix=settings.key_prefix) for u in page.get("Uploads", [])]
    except (ClientError, BotoCoreError) as exc:  # e.g. no s3:ListBucketMultipartUploads: upload anyway, say so
        log.warning("cannot list incomplete multipart uploads, none aborted: %s", error_text(exc))
        result.aborted.append({"key": "", "initiated": "",
                               "error": f"cannot list incomplete multipart uploads: {error_text(exc)}"})
        return result
    seen: Listings = {}
    folders = Folders(settings.base_dir)
    try:
        for upload in uploads:
            if keys is not None and upload["Key"] not in keys:
                continue
            rel = upload["Key"][len(settings.key_prefix):]
            try:
                parse_data_path(rel)
            except MalformedPath:
                continue
            if upload["Initiated"] >= before:
                continue
            if not _scan_finds(folders, rel, seen):
                result.left_alone += 1
                continue
            result.aborted.append(_abort(client, settings.bucket, upload))
    finally:
        folders.close()
    return result


# --- a batch ----------------------------------------------------------------------------------------


@dataclass
class BatchResult:
    """What a batch did: one row per file (the manifest rows), whatever happened to it; on a retry, the
    multipart uploads an earlier try left that it aborted (rows as in ``scan.json``)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    aborted_uploads: list[dict[str, str]] = field(default_factory=list)

    def add(self, outcome: Outcome, base_dir: str) -> None:
        path = shown(os.path.join(base_dir, outcome.rel))
        row = {"key": outcome.key, "path": path, "status": outcome.status, "size": outcome.size,
               "checksum": outcome.checksum, "uploaded_at": outcome.uploaded_at, "error": outcome.error}
        self.rows.append(row)
        if outcome.status == CONFLICT:
            log.warning("conflict: %s exists in S3 with different content; kept %s", outcome.key, path)
        elif outcome.status in (FAILED, NOT_DELETED):
            log.warning("%s: %s: %s", outcome.status, path, outcome.error)

    def counts(self) -> dict[str, int]:
        status = [r["status"] for r in self.rows]
        return {
            "uploaded": sum(s in IN_S3 for s in status), "already_present": status.count(ALREADY_PRESENT),
            "conflicts": status.count(CONFLICT), "failed": status.count(FAILED) + status.count(NOT_DELETED),
            "skipped_not_ready": status.count(NOT_READY),
            "bytes": sum(r["size"] for r in self.rows if r["status"] in IN_S3),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchResult:
        return cls(rows=list(data.get("rows") or []), aborted_uploads=list(data.get("aborted_uploads") or []))


class Answers:
    """S3's answers, handed over by the CRT client's threads and taken by the one Python thread in groups.

    Waking the Python thread costs a futex round trip and a GIL hand-off; for small files that was a
    quarter of the client's CPU when it woke once per answer. :meth:`take` now returns a group: once
    ``wake_at`` answers are ready, once every upload in flight has answered, or ``linger`` seconds after
    the group's first answer (so answers never wait long behind slow uploads, e.g. big files)."""

    def __init__(self, wake_at: int, linger: float = 0.05) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._ready: list[tuple[Pending, Answer]] = []
        self._in_flight = 0
        self.wake_at = max(1, wake_at)
        self.linger = linger
        self.active_at = time.monotonic()  # the last submission, answer or progress report

    def touch(self, _sent: int = 0) -> None:
        """A progress report of a big upload (on a CRT thread): it is not stalled."""
        self.active_at = time.monotonic()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def sent(self) -> None:
        with self._cond:
            self._in_flight += 1
            self.active_at = time.monotonic()

    def not_sent(self) -> None:
        with self._cond:
            self._in_flight -= 1

    def _group_ready(self) -> bool:
        return len(self._ready) >= min(self.wake_at, self._in_flight)

    def put(self, pending: Pending, answer: Answer) -> None:
        """Called on a CRT thread with an upload's final answer."""
        with self._cond:
            self._ready.append((pending, answer))
            self.active_at = time.monotonic()
            if len(self._ready) == 1 or self._group_ready():  # the group's start, and its end
                self._cond.notify()

    def take(self, stall: float | None = None) -> list[tuple[Pending, Answer]]:
        """Wait for the next group of answers (at least one; call only with uploads in flight), or return
        none once nothing happened for ``stall`` seconds (no submission, answer or progress report)."""
        with self._cond:
            while not self._ready:
                if stall is None:
                    self._cond.wait()
                    continue
                left = self.active_at + stall - time.monotonic()
                if left <= 0:
                    return []
                self._cond.wait(min(left, 60))
            deadline = time.monotonic() + self.linger
            while not self._group_ready() and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            ready, self._ready = self._ready, []
            self._in_flight -= len(ready)
            return ready

    def forget(self) -> None:
        """Stop waiting for the uploads in flight (cancelled, and they never answered)."""
        with self._cond:
            self._in_flight = 0


def upload_candidates(uploader: Uploader, candidates: Sequence[Candidate], *, workers: int = DEFAULT_WORKERS,
                      what: str = "uploading") -> BatchResult:
    """Upload files with up to ``workers`` uploads in flight; every file gets a row.

    One Python thread reads, submits and finishes; the CRT client's own threads do the network work and
    hand the answers back through :class:`Answers`. (A thread per upload cost more CPU than the uploads:
    GIL hand-offs between threads that mostly wait.)"""
    try:
        return _upload_all(uploader, candidates, workers, what)
    finally:
        uploader.close()


def _upload_all(uploader: Uploader, candidates: Sequence[Candidate], workers: int, what: str) -> BatchResult:
    """:func:`upload_candidates`' work."""
    result = BatchResult()
    base_dir = str(Path(uploader.settings.base_dir))  # as the scan names files
    workers = max(1, workers)
    answers = Answers(wake_at=workers // 4)  # Answers keeps it at 1 or more
    assert uploader.putter is not None
    progress = Progress(what, unit="files", total=len(candidates), total_bytes=sum(c.size for c in candidates),
                        log=log)
    threshold = uploader.settings.multipart_threshold_mib * MIB
    requests: dict[int, tuple[Pending, Any]] = {}  # in flight, by id(pending): to cancel them if S3 stalls
    stalled = False

    def record(outcome: Outcome, size: int) -> None:
        result.add(outcome, base_dir)
        progress.add(1, size)

    def failed(pending: Pending, error: str, *, close: bool = True) -> None:
        if close:
            pending.fh.close()
        record(Outcome(FAILED, pending.cand.rel, pending.key, pending.cand.size, error=error), pending.cand.size)

    def stall_limit() -> float:
        """STALL_SECONDS, or longer when many bytes of small files (which report no progress) are in flight."""
        unreported = sum(p.local.size for p, _ in requests.values() if p.local.size < threshold)
        return max(STALL_SECONDS, unreported / STALL_RATE)

    waited: float = STALL_SECONDS

    def finish_some() -> None:
        nonlocal stalled, waited
        limit = stall_limit()
        group = answers.take(limit)
        for pending, answer in group:
            requests.pop(id(pending), None)
            if stalled and answer.status == 0:  # cancelled below
                failed(pending, STALLED.format(round(waited)))
            else:
                record(uploader.finish(pending, answer), pending.cand.size)
        if group:
            return
        if stalled:  # cancelled, and still no answer: a wedged client; the files stay, the batch ends
            for pending, _ in list(requests.values()):  # left open: the client may still read them
                failed(pending, STALLED.format(round(waited)), close=False)
            requests.clear()
            answers.forget()
            return
        # Nothing moved for STALL_SECONDS (a connection that took the bytes and never answers, an endpoint
        # gone silent): cancel what is in flight (each answers with status 0) and send nothing more.
        log.error("no answer and no progress from S3 for %d s: cancelling %d upload(s) in flight; the files stay",
                  limit, len(requests))
        stalled, waited = True, limit
        for _, request in list(requests.values()):
            with suppress(Exception):  # it may have just ended: its answer is on the way
                request.cancel()
        answers.touch()

    # Folder by folder (the oldest minute first in each): the folders' descriptors are opened once each
    # (layout.Folders), however many locations the files of each minute are spread over.
    for cand in sorted(candidates, key=lambda c: c.rel.rpartition("/")[0]):
        if stalled:
            record(Outcome(FAILED, cand.rel, uploader.settings.key(cand.rel), cand.size, error=NOT_SENT), cand.size)
            continue
        step = uploader.prepare(cand)
        if isinstance(step, Outcome):
            record(step, cand.size)
            continue
        while answers.in_flight >= workers and not stalled:
            finish_some()
        if stalled:
            failed(step, NOT_SENT)
            continue
        answers.sent()
        try:
            request = uploader.putter.start(
                step.key, step.sent_path, step.local.size, crc64nvme=step.local.crc64nvme,
                if_none_match=not uploader.settings.overwrite,
                done=lambda answer, step=step: answers.put(step, answer),  # type: ignore[misc]
                progress=answers.touch if step.local.size >= threshold else None)  # big files report progress
        except Exception as exc:  # noqa: BLE001 - the CRT refused the request itself: this file's outcome
            answers.not_sent()
            failed(step, f"{type(exc).__name__}: {exc}")
            continue
        requests[id(step)] = (step, request)
    while answers.in_flight > 0:
        finish_some()
    progress.finish()
    return result


def check_bucket(client: Any, bucket: str) -> None:
    """Fail the run early, in one line, when the bucket is missing, not ours to write, in another region
    than the one the uploads are signed for, or behind a proxy the CRT client cannot be given."""
    if problem := proxy_problem(client, BucketURL.of(client, bucket).url):
        raise UploadError(problem)
    answers: list[tuple[int, str]] = []  # (status, x-amz-bucket-region) of every HTTP answer, redirects included

    def answered(response_dict: dict[str, Any] | None = None, **_: Any) -> None:
        if response_dict is not None:
            headers = {str(k).lower(): str(v) for k, v in (response_dict.get("headers") or {}).items()}
            answers.append((int(response_dict.get("status_code") or 0), headers.get("x-amz-bucket-region", "")))

    event = "response-received.s3.HeadBucket"
    client.meta.events.register(event, answered)
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        _check_region(client, bucket, answers)
        code = error_code(exc)
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise UploadError(f"bucket {bucket!r} does not exist: create it or fix the 'bucket' setting") from exc
        if code in ("403", "AccessDenied", "Forbidden"):
            raise UploadError(f"access to bucket {bucket!r} denied: check the connection's credentials") from exc
        raise
    finally:
        client.meta.events.unregister(event, answered)
    _check_region(client, bucket, answers)


def _check_region(client: Any, bucket: str, answers: list[tuple[int, str]]) -> None:
    """Refuse a bucket whose endpoint refused HeadBucket signed for the configured region and named another
    (AWS: 301, or 400 AuthorizationHeaderMalformed, or 403, with ``x-amz-bucket-region``). botocore follows
    such an answer to the right region by itself, so its requests pass; the CRT client signs every upload
    for the configured region, so every file would fail with S3's own error, run after run. An endpoint that
    accepted the configured region (a MinIO that ignores regions) and names another is only logged."""
    configured = signing_region(client)
    refused = next((r for status, r in answers if status >= 300 and r and r != configured), None)
    if refused:
        raise UploadError(f"bucket {bucket!r} is in region {refused!r}, not in the configured region {configured!r}: "
                          f"set the region to {refused!r} (the connection's region_name extra; --region on the "
                          "command line); every upload would be refused")
    named = next((r for status, r in answers if status < 300 and r and r != configured), None)
    if named:
        log.warning("the endpoint names %r as bucket %r's region, and accepts requests signed for %r: uploads are "
                    "signed for %r", named, bucket, configured, configured)


def client_pool_size(workers: int) -> int:
    """The botocore client's connections for ``workers`` uploads in flight (HeadObject checks), plus a few."""
    return max(1, workers) + 4


# --- run steps (Airflow-free; the DAG calls these) -----------------------------------------------


def _candidate_rows(cands: Iterable[Candidate]) -> list[list[Any]]:
    return [[c.rel, c.size, c.mtime_ns, c.ino] for c in cands]


def _candidates(rows: Iterable[list[Any]]) -> list[Candidate]:
    """A batch's rows as the scan wrote them. Each path is parsed again: a row edited in the artifact store
    (``../etc/x``) must not name a file outside the layout, which the upload would then delete. A row of
    three is a batch written before the scan kept which file it saw (its inode): unknown, not checked."""
    cands = []
    for row in rows:
        try:
            minute = parse_data_path(str(row[0])).minute
        except MalformedPath as exc:
            raise UploadError(f"a batch names {shown(str(row[0]))!r}, which is not a file of the layout ({exc}): the "
                              "batch was not written by the scan; nothing of it is uploaded or deleted") from None
        cands.append(Candidate(minute, row[0], int(row[1]), int(row[2]), int(row[3]) if len(row) > 3 else 0))
    return cands


LOG_CAP = 1000  # malformed paths named one per log line


def _scan_report(base: Path, scan: Scan, now: datetime, uploads: AbandonedUploads) -> dict[str, Any]:
    """Log what the scan found and return it as the ``scan.json`` body (without settings and batches)."""
    for path, reason in scan.malformed[:LOG_CAP]:
        log.warning("malformed, left alone: %s (%s)", path, reason)
    if scan.malformed_total > LOG_CAP:
        log.warning("… and %d more malformed paths (the first %d are listed in scan.json)",
                    scan.malformed_total - LOG_CAP, len(scan.malformed))
    for path, error in scan.errors:
        log.warning("scan error: %s: %s", path, error)
    for path, why in scan.future[:LOG_CAP]:
        log.warning("dated in the future, left for later: %s (%s)", path, why)
    log.info("scan of %s: %d eligible (%d this run, %d deferred by max_files), %d not ready, %d malformed, "
             "%d abandoned multipart upload(s) aborted",
             shown(str(base)), scan.eligible_total, len(scan.eligible), scan.deferred, scan.not_ready, scan.malformed_total,
             len(uploads.aborted))
    if uploads.left_alone:
        log.info("%d incomplete multipart upload(s) under the key prefix left alone: %s", uploads.left_alone,
                 LEFT_ALONE_WHY)
    return {
        "scanned_at": format_time(now), "selected": len(scan.eligible), "deferred": scan.deferred, "not_ready": scan.not_ready,
        "malformed_total": scan.malformed_total,
        "malformed": [{"path": p, "reason": r} for p, r in scan.malformed],
        "errors": [{"path": p, "error": e} for p, e in scan.errors], "errors_total": scan.errors_total,
        "future_dated": [{"path": p, "reason": r} for p, r in scan.future], "future_dated_total": scan.future_total,
        "aborted_uploads": uploads.aborted, "uploads_left_alone": uploads.left_alone,
    }


def _existing_base(settings: UploadSettings) -> Path:
    """``base_dir``, refused in words when it is no folder or cannot be opened (its lock and its scan open it):
    a folder the uploader's user may not list (the producer's, mode 0700) was a traceback, and in the DAG
    a scan retried for nothing."""
    base = Path(settings.base_dir)
    if not base.is_dir():
        raise UploadError(f"base_dir {settings.base_dir!r} is not an existing folder: create it or fix the setting")
    try:
        os.close(os.open(settings.base_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    except OSError as exc:
        raise UploadError(f"base_dir {settings.base_dir!r} cannot be read ({exc.strerror or exc}): give the user the "
                          "uploader runs as read and write access to it (the producer's group, say)") from None
    return base


ABORTS = "aborts"  # a run's folder of what each try of its tasks aborted (record_aborts)


def record_aborts(run_dir: Any, task: str, attempt: int, rows: list[dict[str, str]]) -> None:
    """``aborts/<task>.try<attempt>.json``: the multipart uploads one try of ``task`` (``scan`` or a batch)
    aborted, or failed to, written as soon as it did, before it uploads anything. A try that is killed
    afterwards, or fails, writes no result: its aborts would be in no summary (the next try finds those
    uploads gone). Nothing is written for a try that found nothing to abort."""
    if rows:
        artifacts.write_json(run_dir / ABORTS / f"{task}.try{attempt}.json", {"aborted_uploads": rows})


def recorded_aborts(run_dir: Any) -> dict[str, list[dict[str, str]]]:
    """Every try's rows of :func:`record_aborts`, by task (``scan`` or the batch name)."""
    folder = run_dir / ABORTS
    if not artifacts.exists(folder):
        return {}
    found: dict[str, list[dict[str, str]]] = {}
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        task, sep, rest = path.name.partition(".try")
        if sep and rest.endswith(".json"):
            found.setdefault(task, []).extend(artifacts.read_json(path).get("aborted_uploads") or [])
    return found


def scan_task(settings: UploadSettings, run_dir: Any, *, client: Any = None, now: datetime | None = None,
              attempt: int = 1) -> list[str]:
    """Abort abandoned multipart uploads (with ``client``), walk ``base_dir``, write the batches and
    ``scan.json`` (with the run's resolved settings, so every task of the run uses the same ones);
    return the batch names (the only thing in XCom). ``attempt``: the task's try number (its aborts'
    record, :func:`record_aborts`)."""
    base = _existing_base(settings)
    now = now or _now()
    with lock.holding(settings.base_dir):  # no other uploader's in-flight upload is taken for abandoned
        uploads = abort_abandoned_uploads(client, settings, now) if client is not None else AbandonedUploads()
        record_aborts(run_dir, "scan", attempt, uploads.aborted)
        scan = scan_base_dir(base, now, settings.settle_seconds, settings.max_files, key_room=settings.key_room)
    batches = split_batches(scan.eligible, BATCH_SIZE, MAX_BATCHES)
    names = [f"{i:05d}" for i in range(len(batches))]
    for name, batch in zip(names, batches, strict=True):
        artifacts.write_json(run_dir / "batches" / f"{name}.json",
                             {"scanned_at": format_time(now), "files": _candidate_rows(batch)})
    report = _scan_report(base, scan, now, uploads)
    artifacts.write_json(run_dir / "scan.json", {"settings": settings.to_dict(), "batches": names, **report})
    log.info("%d file(s) to upload in %d batch(es)", len(scan.eligible), len(names))
    return names


def upload_batch_task(client: Any, settings: UploadSettings, run_dir: Any, batch: str,
                      *, workers: int = DEFAULT_WORKERS, credentials: Any = None, attempt: int = 1) -> dict[str, int]:
    """Upload one batch, write ``results/<batch>.json``; return counts. Safe to retry (``attempt``: the
    task's try number; above 1, a retry)."""
    spec = artifacts.read_json(run_dir / "batches" / f"{batch}.json")
    scanned_at = datetime.fromisoformat(spec["scanned_at"].replace("Z", "+00:00"))
    retried = attempt > 1
    uploader = Uploader(client, settings, scanned_at, credentials, retried=retried)
    candidates = _candidates(spec["files"])
    with lock.holding(settings.base_dir, shared=True):  # shared with the run's other batches
        # An earlier try killed mid-multipart left its upload open. This try uploads the file and deletes it,
        # so the next scan would find no file for that upload and leave it alone for ever: abort it now.
        # Only at this batch's keys: the run's other batches may be sending theirs.
        aborted = abort_abandoned_uploads(client, settings, _now(), keys={settings.key(c.rel) for c in candidates}
                                          ).aborted if retried else []
        record_aborts(run_dir, batch, attempt, aborted)  # this try may die before its result: recorded now
        result = upload_candidates(uploader, candidates, workers=workers, what=f"uploading batch {batch}")
    result.aborted_uploads = aborted
    artifacts.write_json(run_dir / "results" / f"{batch}.json", asdict(result))
    counts = result.counts()
    log.info("batch %s: %s", batch, counts)
    return counts


def record_failed_batch(run_dir: Any, batch: str, error: str) -> dict[str, int]:
    """``results/<batch>.json`` of a batch whose last try failed: no rows (which of its files moved is not
    known), the error. Returns the batch's counts (nothing counted)."""
    log.error("batch %s failed on its last try: %s", batch, error)
    artifacts.write_json(run_dir / "results" / f"{batch}.json", {"rows": [], "failed": error})
    return BatchResult().counts()


def summarize(settings: UploadSettings, scan_info: dict[str, Any], results: Iterable[BatchResult],
              *, removed_folders: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run's ``summary.json`` and manifest rows (one per file the run tried) from the scan and the batches."""
    results = list(results)
    manifest = [row for res in results for row in res.rows]
    aborted = [*scan_info.get("aborted_uploads", []), *(u for res in results for u in res.aborted_uploads)]
    abort_failures = abort_problems(aborted)
    scan_errors = list(scan_info.get("errors", []))
    counts = BatchResult(manifest).counts()
    failures = scan_errors + [{"path": r["path"], "error": r["error"]} for r in manifest if r["status"] in (FAILED, NOT_DELETED)]
    malformed = scan_info.get("malformed", [])
    summary = {
        "uploaded": counts["uploaded"], "skipped_not_ready": int(scan_info.get("not_ready", 0)) + counts["skipped_not_ready"],
        "malformed": int(scan_info.get("malformed_total", len(malformed))), "conflicts": counts["conflicts"],
        "failed": int(scan_info.get("errors_total", len(scan_errors))) + counts["failed"], "bytes": counts["bytes"],
        "already_present": counts["already_present"],
        "local_delete_failed": sum(r["status"] == NOT_DELETED for r in manifest),
        "deferred": int(scan_info.get("deferred", 0)), "removed_folders": removed_folders, "batches_failed": 0,
        "aborted_uploads": sum(1 for u in aborted if not u.get("error")),
        "uploads_left_alone": int(scan_info.get("uploads_left_alone", 0)),
        "abort_failed": len(abort_failures),
        "future_dated": int(scan_info.get("future_dated_total", 0)),
        "malformed_paths": [m["path"] for m in malformed][:LIST_CAP],
        "future_dated_paths": [f["path"] for f in scan_info.get("future_dated", [])][:LIST_CAP],
        "abort_failures": abort_failures[:LIST_CAP],
        "conflict_keys": [r["key"] for r in manifest if r["status"] == CONFLICT][:LIST_CAP],
        "failed_paths": [f["path"] for f in failures][:LIST_CAP],
        "failures": failures[:LIST_CAP],
        "bucket": settings.bucket, "key_prefix": settings.key_prefix, "base_dir": settings.base_dir,
        "scanned_at": scan_info.get("scanned_at"), "finished_at": format_time(_now()),
    }
    return summary, manifest


RETURN_KEYS = ("uploaded", "skipped_not_ready", "malformed", "conflicts", "failed", "bytes", "batches_failed")
FAILED_BATCH = ("its upload_batch task failed on its last try: which of its files moved is not in the manifest; "
                "those still in base_dir are uploaded by the next run")


def abort_problems(rows: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    """The rows of :func:`abort_abandoned_uploads` that failed, as ``summary.json``'s ``abort_failures``:
    an AbortMultipartUpload refused or lost (``key``: the upload's), or the listing itself refused
    (``key`` empty). Not a file's failure (every file is still on disk or in S3), so the run is not
    failed for it; but the upload stays open and billed, so the run keeps its record to say so. An upload
    one try failed to abort and a later try aborted (the same key and start) is no failure any more."""
    rows = list(rows)
    done = {(r.get("key"), r.get("initiated")) for r in rows if not r.get("error")}
    return [{"key": str(r.get("key") or ""), "initiated": str(r.get("initiated") or ""), "error": str(r["error"])}
            for r in rows if r.get("error") and (r.get("key"), r.get("initiated")) not in done]


def found_nothing(summary: dict[str, Any], batches: Sequence[str]) -> bool:
    """A run with no batch and nothing malformed, failed, dated in the future or left unaborted has nothing
    worth a run folder."""
    return not batches and not any(summary[k] for k in ("uploaded", "malformed", "conflicts", "failed", "aborted_uploads",
                                                        "future_dated", "abort_failed"))


def problems(counts: dict[str, Any]) -> str | None:
    """Why an upload run must not look green: files failed or conflicted and stayed in ``base_dir``, or a
    batch's task failed."""
    failed, conflicts = int(counts.get("failed") or 0), int(counts.get("conflicts") or 0)
    lost = int(counts.get("batches_failed") or 0)
    if not failed and not conflicts and not lost:
        return None
    text = (f"{failed} file(s) failed and {conflicts} conflicted with a different object already in the bucket; "
            f"they stay in base_dir and are retried every run (summary.json lists them; set overwrite to replace "
            f"conflicting objects)")
    return text + (f"; {lost} batch(es) failed: {FAILED_BATCH}" if lost else "")


def tidy_task(settings: UploadSettings, run_dir: Any, batches: Sequence[str], *,
              now: datetime | None = None) -> dict[str, Any]:
    """Remove finished empty folders, write ``manifest.jsonl`` and ``summary.json``; return the summary."""
    scan_info = artifacts.read_json(run_dir / "scan.json")
    # what every try aborted (a result holds its own try's only; a killed or failed try left none)
    tries = recorded_aborts(run_dir)
    if "scan" in tries:
        scan_info["aborted_uploads"] = tries["scan"]
    results: list[BatchResult] = []
    missing: list[tuple[str, str]] = []  # (batch, why) of the batches that failed
    for batch in batches:
        path = run_dir / "results" / f"{batch}.json"
        data = artifacts.read_json(path) if artifacts.exists(path) else {"failed": "it left no result"}
        result = BatchResult.from_dict(data)
        if batch in tries:
            result.aborted_uploads = tries[batch]
        results.append(result)
        if data.get("failed"):  # what the others moved is still recorded, and the run is not green
            log.warning("batch %s failed: %s", batch, data["failed"])
            missing.append((batch, str(data["failed"])))
    try:
        with lock.holding(settings.base_dir, shared=True):
            removed = remove_empty_folders(Path(settings.base_dir), now or _now(), settings.settle_seconds)
    except (lock.Busy, OSError) as exc:  # the files have moved: their record must still be written
        log.warning("empty folders left in place this run: %s", exc)
        removed = []
    summary, manifest = summarize(settings, scan_info, results, removed_folders=len(removed))
    summary["batches_failed"] = len(missing)
    summary["failures"] += [{"path": f"batch {b}", "error": f"{why}; {FAILED_BATCH}"} for b, why in missing][:LIST_CAP]
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
    if summary["abort_failed"]:
        log.warning("%d abort(s) of incomplete multipart uploads failed (summary.json: abort_failures): %s",
                    summary["abort_failed"], ABORT_ADVICE)
    return summary


# --- command line ----------------------------------------------------------------------------------


def upload_tree(client: Any, settings: UploadSettings, *, workers: int = DEFAULT_WORKERS, tidy: bool = True,
                now: datetime | None = None, credentials: Any = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Abort abandoned uploads, scan, upload every eligible file in one process and tidy: what the DAG
    does, without Airflow."""
    base = _existing_base(settings)
    now = now or _now()
    with lock.holding(settings.base_dir):  # the whole run: one uploader per folder (include.upload.lock)
        uploads = abort_abandoned_uploads(client, settings, now)
        scan = scan_base_dir(base, now, settings.settle_seconds, settings.max_files, key_room=settings.key_room)
        scan_info = _scan_report(base, scan, now, uploads)
        result = upload_candidates(Uploader(client, settings, now, credentials), scan.eligible, workers=workers)
        removed = remove_empty_folders(base, _now(), settings.settle_seconds) if tidy else []
    return summarize(settings, scan_info, [result], removed_folders=len(removed))


@contextmanager
def _starting_up() -> Iterator[None]:
    """No garbage collection while the command starts: what it builds (modules, settings, the S3 model:
    ~90,000 objects) lives as long as the process, so collecting among it finds nothing and cost ~15 % of
    the start-up's CPU. Then freeze it all, so that later collections skip it too."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _parser() -> argparse.ArgumentParser:
    from include.upload.settings import SETTINGS

    workers = SETTINGS["workers"].schema
    parser = argparse.ArgumentParser(prog="s3ops upload", description=__doc__.splitlines()[0])
    parser.add_argument("--base-dir", help="the producer's folder (required)")
    parser.add_argument("--bucket", help="target bucket (required)")
    parser.add_argument("--key-prefix", help="prefix for every key (default '')")
    parser.add_argument("--settle-seconds", type=int,
                        help=f"default {SETTINGS['settle_seconds'].default}; 0 takes a file the moment its minute "
                             "ends, unchecked: only for files known finished (the DAG refuses 0)")
    parser.add_argument("--overwrite", action="store_true", default=None, help="replace objects with different content")
    parser.add_argument("--max-files", type=int, help=f"default {SETTINGS['max_files'].default}")
    parser.add_argument("--multipart-threshold-mib", type=int,
                        help=f"multipart upload from this size on (default {SETTINGS['multipart_threshold_mib'].default})")
    parser.add_argument("--throughput-target-gbps", type=float,
                        help=f"the CRT client's throughput target (default {SETTINGS['throughput_target_gbps'].default})")
    parser.add_argument("--endpoint-url", default=os.environ.get("S3OPS_S3_ENDPOINT"))
    parser.add_argument("--profile")
    parser.add_argument("--region")
    parser.add_argument("--workers", type=int, help=f"uploads in flight, {workers['minimum']} to {workers['maximum']} "
                                                    f"(default {DEFAULT_WORKERS})")
    parser.add_argument("--no-tidy", action="store_true", help="leave empty folders")
    parser.add_argument("--manifest", type=Path, help="also write the manifest (JSON lines) here")
    return parser


def _check_endpoint(url: str | None) -> None:
    """Refuse an endpoint botocore cannot use, in words: its own errors say "Invalid endpoint: notaurl",
    or nothing until the first request (a port that is not a number)."""
    if url is None:
        return
    try:
        parts = urlsplit(url)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # "http://[::1", "http://h:abc", "http://h:99999" (reading .port checks it)
        usable = False
    if not usable:
        raise UploadError(f"--endpoint-url (or S3OPS_S3_ENDPOINT) {url!r} is not a URL such as http://127.0.0.1:9000: "
                          "fix it, or leave it out for AWS")


def _check_manifest(path: Path, base_dir: str) -> None:
    """Refuse a ``--manifest`` the end of the run could not write, before anything moves. It is written as
    :func:`include.core.artifacts.write_jsonl` writes: its folder created if missing, a temporary file
    there renamed over the path. So: not a folder, and a folder that takes a new file (tried, then removed).
    Not inside ``base_dir`` either: the next scan would take it for the producer's."""
    base = os.path.realpath(base_dir)
    if os.path.commonpath([os.path.realpath(path), base]) == base:
        raise UploadError(f"--manifest {str(path)!r} is inside base_dir {base_dir!r}, whose files the next run "
                          "uploads (or lists as malformed): put it elsewhere")
    problem, folder = f"--manifest {str(path)!r} cannot be written", path.parent
    try:
        if path.is_dir():
            raise UploadError(f"{problem}: it is a folder; give a file path such as {path / 'manifest.jsonl'}")
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.")
        os.close(fd)
        os.unlink(tmp)
    except FileExistsError:
        raise UploadError(f"{problem}: {str(folder)!r} is a file, not a folder") from None
    except OSError as exc:
        raise UploadError(f"{problem}: no file can be made in {str(folder)!r} ({exc.strerror or exc}); give a path "
                          "in a folder you can write to") from None


def _set_up(args: argparse.Namespace) -> tuple[UploadSettings, Any, Any]:
    """Everything that can refuse the run before it touches a file: settings, endpoint, region, client,
    the bucket, the manifest path. Returns the settings, the botocore client and its credentials."""
    from include.aws.client import cli_session, client_from_args
    from include.upload.settings import SETTINGS, resolve_settings

    for name, what in (("base_dir", "the producer's folder (--base-dir /data/outbox)"),
                       ("bucket", "the bucket to upload to (--bucket NAME)")):
        if not getattr(args, name):  # the settings would say "type it in the trigger form"
            raise UploadError(f"{_option(name)} is required: {what}")
    conf = {k: getattr(args, k) for k in ("base_dir", "bucket", "key_prefix", "settle_seconds", "overwrite",
                                          "max_files", "multipart_threshold_mib", "throughput_target_gbps")}
    settings, _ = resolve_settings(conf, None, by_deployer=True)  # whoever runs the command line deploys it
    if args.workers is not None:  # a deployment setting (not a param): checked here, 1 to 256 as in the Variable
        SETTINGS["workers"].check(args.workers, "--workers")
        settings = replace(settings, workers=args.workers)
    _existing_base(settings)
    endpoint = args.endpoint_url or None  # an empty S3OPS_S3_ENDPOINT is no endpoint: AWS
    _check_endpoint(endpoint)
    session = cli_session(args.profile, args.region)
    client = client_from_args(endpoint_url=endpoint, region_name=args.region,
                              pool=client_pool_size(settings.workers), session=session)
    if not client.meta.region_name:  # "" passes botocore's check, then fails the signing of every request
        raise UploadError("the region is empty (--region '', AWS_DEFAULT_REGION='' or the profile's 'region ='): "
                          "give one such as eu-west-1, or leave it unset")
    check_bucket(client, settings.bucket)
    if args.manifest is not None:
        _check_manifest(args.manifest, settings.base_dir)
    return settings, client, session.get_credentials()


def _setup_error(exc: Exception, args: argparse.Namespace) -> str:
    """What is wrong and what to do, in one line (botocore's own words where they are clear)."""
    from include.aws.client import access_problem

    if access := access_problem(exc):  # no credentials, an unreachable endpoint: as the other commands say it
        text = access
    elif isinstance(exc, InvalidRegionError):
        where = "--region" if args.region else "the region (AWS_REGION, AWS_DEFAULT_REGION or the profile's)"
        text = f"{where} {exc.kwargs.get('region_name')!r} is not a region name such as eu-west-1: fix it"
    elif isinstance(exc, ClientError):  # HeadBucket answered neither 403 nor 404
        text = f"cannot check bucket {args.bucket!r}: {error_text(exc)}"
    else:
        text = _in_options(str(exc))
    return " ".join(text.split())  # one line, whatever the message holds (a credential process's output)


def _option(name: str) -> str:
    """The command line's option for a setting: ``settle_seconds`` → ``--settle-seconds``."""
    return "--" + name.replace("_", "-")


def _in_options(text: str) -> str:
    """A settings message in the command line's words: the options given, not "the run's param …" (the
    trigger form's)."""
    from include.upload.settings import SETTINGS

    for name in SETTINGS.names:
        text = text.replace(f"the run's param {name!r}", _option(name))
    return text


def _write_manifest(path: Path, rows: list[dict[str, Any]]) -> str | None:
    """Write ``--manifest``; if that fails now (after the check at the start), keep the record in a
    temporary file instead. Returns the error line, or None."""
    try:
        artifacts.write_jsonl(path, rows)
        return None
    except OSError as exc:
        problem = f"writing the manifest {str(path)!r} failed ({exc.strerror or exc})"
    spare = None
    try:
        fd, spare = tempfile.mkstemp(prefix="s3ops-upload-manifest-", suffix=".jsonl")
        os.close(fd)
        artifacts.write_jsonl(Path(spare), rows)
    except OSError:
        if spare is not None:
            Path(spare).unlink(missing_ok=True)
        return f"{problem}; the summary is the only record of this run"
    return f"{problem}; it is in {spare} instead"


def main(argv: list[str] | None = None) -> int:
    with _starting_up():
        args = _parser().parse_args(argv)
        try:
            settings, client, credentials = _set_up(args)
        except (ValueError, BotoCoreError, ClientError, UploadError) as exc:  # ValueError: SettingsError, AWS_MAX_ATTEMPTS
            print(f"error: {_setup_error(exc, args)}", file=sys.stderr)
            return 2
    # The run's log starts here: during the set-up botocore's INFO lines ("Found credentials in environment
    # variables.") would come before a setup error's one line.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        summary, manifest = upload_tree(client, settings, workers=settings.workers, tidy=not args.no_tidy,
                                        credentials=credentials)
    except lock.Busy as exc:  # runs overlapping (one outlasted its schedule): not a fault, so no "error:"
        print(f"s3ops upload: {exc}: this run did nothing; the next one goes on", file=sys.stderr)
        return lock.BUSY_EXIT
    except UploadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problem = _write_manifest(args.manifest, manifest) if args.manifest is not None else None
    print(json.dumps(summary, indent=2))  # printed whatever happened to the manifest: the run's record
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    return 1 if summary["failed"] or summary["conflicts"] else 0


if __name__ == "__main__":
    sys.exit(main())
