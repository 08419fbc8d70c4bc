"""s3_upload against the local S3 server: keys, settling, malformed paths, conflicts, faults, crashes, the DAG."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from include.aws.client import client_from_args
from include.seed import upload_files
from include.upload.layout import Candidate
from include.upload.settings import UploadSettings, resolve_settings
from include.upload.uploader import Uploader, problems, tidy_task, upload_tree

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC).replace(second=0, microsecond=0)
MIB = 1024 * 1024


def crc(body: bytes) -> str:
    """The manifest's checksum of ``body``: S3's full-object CRC64NVME."""
    from awscrt.checksums import crc64nvme

    return "crc64nvme:" + base64.b64encode(crc64nvme(body).to_bytes(8, "big")).decode()


def settings(base: Path, bucket: str, **over: Any) -> UploadSettings:
    return resolve_settings({"base_dir": str(base), "bucket": bucket, **over}, None, by_deployer=True)[0]


def write(base: Path, rel: str, body: bytes, *, age_seconds: float = 600) -> Path:
    path = base / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    mtime = time.time() - age_seconds
    os.utime(path, (mtime, mtime))
    return path


def rel_at(location: str, when: datetime, topic: str) -> str:
    return f"{location}/{when:%Y/%m/%d/%H}/{when:%M}-{topic}.dat"


def body_of(s3: Any, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def keys_in(s3: Any, bucket: str) -> set[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def crt_putter(client: Any, bucket: str) -> Any:
    """A CRT client as the uploader builds one, with 5 MiB parts and threshold."""
    from include.aws.crt import CrtPutter, credentials_from_args
    from include.upload.settings import DEFAULT_THROUGHPUT_GBPS

    return CrtPutter(client, credentials_from_args(), bucket, part_size=5 * MIB, threshold=5 * MIB,
                     throughput_gbps=DEFAULT_THROUGHPUT_GBPS)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"up-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def client(s3_server: Any) -> Any:
    return client_from_args(endpoint_url=s3_server.endpoint_url, region_name="us-east-1", pool=20)


def test_keys_mirror_the_layout_for_several_locations_and_days(tmp_path, s3, bucket, client):
    truth: dict[str, bytes] = {}
    for location in ("berlin", "paris", "site-7"):
        for days_back in (1, 2, 40):
            for minute in (0, 31, 59):
                when = (NOW - timedelta(days=days_back)).replace(minute=minute)
                rel = rel_at(location, when, "temp")
                truth[rel] = f"{location} {when.isoformat()}\n".encode() * (minute + 1)
                write(tmp_path, rel, truth[rel])

    summary, manifest = upload_tree(client, settings(tmp_path, bucket, key_prefix="incoming"), workers=8)

    assert keys_in(s3, bucket) == {f"incoming/{rel}" for rel in truth}
    for rel, body in truth.items():
        assert body_of(s3, bucket, f"incoming/{rel}") == body
        assert not (tmp_path / rel).exists()
    assert summary["uploaded"] == len(truth) == 27 and summary["failed"] == summary["conflicts"] == 0
    assert summary["bytes"] == sum(map(len, truth.values()))
    assert {row["key"]: (row["size"], row["checksum"], row["status"]) for row in manifest} == {
        f"incoming/{rel}": (len(body), crc(body), "uploaded") for rel, body in truth.items()
    }
    # every emptied date folder whose period is over is gone; the locations and today's year/month/day stay
    assert sorted(p.name for p in tmp_path.iterdir()) == ["berlin", "paris", "site-7"]
    today = (f"{NOW:%Y}", f"{NOW:%m}", f"{NOW:%d}")
    for folder in tmp_path.rglob("*"):
        parts = folder.relative_to(tmp_path).parts[1:]
        assert folder.is_dir() and parts == today[: len(parts)], f"{folder} should have been removed"


def test_files_inside_the_settle_window_wait_for_a_later_run(tmp_path, s3, bucket, client):
    # this test compares file mtimes with a simulated clock, so its minute is taken now, not at import
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    old = write(tmp_path, rel_at("berlin", now - timedelta(minutes=10), "t"), b"old\n")
    current_minute = write(tmp_path, rel_at("berlin", now, "t"), b"this minute\n", age_seconds=0)
    fresh = write(tmp_path, rel_at("berlin", now - timedelta(minutes=5), "h"), b"just rewritten\n", age_seconds=0)
    cfg = settings(tmp_path, bucket, settle_seconds=30)

    first, _ = upload_tree(client, cfg, now=now + timedelta(seconds=20))  # now's minute has not even ended

    assert first["uploaded"] == 1 and first["skipped_not_ready"] == 2
    assert not old.exists() and current_minute.exists() and fresh.exists()
    assert keys_in(s3, bucket) == {rel_at("berlin", now - timedelta(minutes=10), "t")}

    second, _ = upload_tree(client, cfg, now=datetime.now(UTC) + timedelta(minutes=2))

    assert second["uploaded"] == 2 and second["skipped_not_ready"] == 0
    assert not current_minute.exists() and not fresh.exists()
    assert body_of(s3, bucket, rel_at("berlin", now, "t")) == b"this minute\n"


def test_malformed_paths_are_never_uploaded_or_deleted(tmp_path, s3, bucket, client):
    good = write(tmp_path, rel_at("paris", NOW - timedelta(hours=2), "t"), b"good\n")
    bad_rels = ["berlin/2026/13/01/00/05-t.dat", "berlin/2026/02/30/00/05-t.dat", "berlin/2026/01/01/25/05-t.dat",
                "berlin/2026/01/01/00/61-t.dat", "berlin/2026/01/01/00/05-t.txt", "berlin/loose.dat", "README"]
    bad = {rel: write(tmp_path, rel, f"keep {rel}\n".encode()) for rel in bad_rels}

    summary, _ = upload_tree(client, settings(tmp_path, bucket, settle_seconds=0), workers=4)

    assert keys_in(s3, bucket) == {good.relative_to(tmp_path).as_posix()}
    for rel, path in bad.items():
        assert path.read_bytes() == f"keep {rel}\n".encode()
    assert summary["malformed"] == len(bad_rels)
    assert sorted(summary["malformed_paths"]) == sorted(str(p) for p in bad.values())
    # the folders that hold malformed files are not real dates, or not empty: they all stay
    assert all(p.parent.is_dir() for p in bad.values())


def test_conflicting_object_keeps_the_local_file_unless_overwrite(tmp_path, s3, bucket, client):
    rel = rel_at("berlin", NOW - timedelta(hours=1), "t")
    path = write(tmp_path, rel, b"new local content\n")
    s3.put_object(Bucket=bucket, Key=rel, Body=b"someone else's object\n")

    summary, manifest = upload_tree(client, settings(tmp_path, bucket), workers=2)

    assert summary["conflicts"] == 1 and summary["conflict_keys"] == [rel] and summary["uploaded"] == 0
    assert path.read_bytes() == b"new local content\n"
    assert body_of(s3, bucket, rel) == b"someone else's object\n"
    assert [(r["key"], r["status"], r["path"]) for r in manifest] == [(rel, "conflict", str(path))]

    summary, manifest = upload_tree(client, settings(tmp_path, bucket, overwrite=True), workers=2)

    assert summary["uploaded"] == 1 and summary["conflicts"] == 0
    assert body_of(s3, bucket, rel) == b"new local content\n"
    assert not path.exists()
    assert manifest[0]["checksum"] == crc(b"new local content\n")


def test_rerun_after_a_crash_between_upload_and_delete_only_deletes(tmp_path, s3, bucket, client, s3_server):
    rels = [rel_at("berlin", NOW - timedelta(hours=1, minutes=m), "t") for m in range(5)]
    for rel in rels:
        write(tmp_path, rel, rel.encode())
    s3.put_object(Bucket=bucket, Key=rels[0], Body=rels[0].encode())  # uploaded, then the crash
    s3_server.control("POST", "stats/reset", {})

    summary, manifest = upload_tree(client, settings(tmp_path, bucket), workers=2)

    assert summary["uploaded"] == 5 and summary["already_present"] == 1 and summary["conflicts"] == 0
    assert {row["key"] for row in manifest} == set(rels)
    assert not any((tmp_path / rel).exists() for rel in rels)
    assert s3_server.control("GET", "stats").get("PutObject") == 5  # 4 new + 1 refused by If-None-Match
    again, _ = upload_tree(client, settings(tmp_path, bucket), workers=2)  # nothing left: a no-op
    assert (again["uploaded"], again["failed"], again["conflicts"]) == (0, 0, 0)


def test_missing_bucket_keeps_every_file(tmp_path, client):
    rels = [rel_at("berlin", NOW - timedelta(hours=3, minutes=m), "t") for m in range(3)]
    for rel in rels:
        write(tmp_path, rel, b"x")

    summary, _ = upload_tree(client, settings(tmp_path, "no-such-bucket-s3ops"), workers=2)

    assert summary["failed"] == 3 and summary["uploaded"] == 0
    assert all((tmp_path / rel).read_bytes() == b"x" for rel in rels)
    assert all("does not exist" in f["error"] for f in summary["failures"])


@pytest.mark.parametrize(("operation", "size", "needs"), [("PutObject", 100, "s3:PutObject"),
                                                         ("HeadObject", 6 * MIB, "s3:GetObject")],
                         ids=["put-denied", "head-denied"])
def test_an_upload_s3_denies_says_which_permission_is_missing(tmp_path, s3, bucket, client, s3_server, operation,
                                                              size, needs):
    """A bucket that answers HeadBucket but denies the upload (a write-only role without s3:GetObject denies
    the HeadObject a multipart upload needs): every file failed with a bare "AccessDenied: Access Denied" or
    "403: Forbidden", which says neither what was refused nor what to grant."""
    rel = rel_at("berlin", NOW - timedelta(hours=1), "t")
    path = write(tmp_path, rel, os.urandom(size))
    s3_server.control("POST", "faults", {"mode": "denied", "operation": operation, "bucket": bucket, "count": 1000})
    try:
        summary, manifest = upload_tree(client, settings(tmp_path, bucket, multipart_threshold_mib=5), tidy=False)
    finally:
        s3_server.control("POST", "faults", {"mode": "off"})
    assert (summary["uploaded"], summary["failed"]) == (0, 1) and path.exists()
    error = manifest[0]["error"]
    assert error.startswith(f"S3 denied access to bucket {bucket!r} (") and needs in error, error


def test_a_bucket_in_another_region_is_refused_once_up_front(tmp_path, s3, s3_server, caplog):
    """The region configured is not the bucket's: botocore follows S3's answer to the right region by itself
    (its HeadBucket passed), but the CRT client signs every upload for the configured region, so every file
    failed with S3's own error, run after run. The local server refuses a wrong region as S3 does (400 with
    ``x-amz-bucket-region``; moto itself takes any region, and names the bucket's region in HeadBucket's
    200 as S3 does)."""
    from include.upload.uploader import UploadError, check_bucket

    name = f"up-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "eu-west-1"
    rel = rel_at("berlin", NOW - timedelta(hours=1), "t")
    path = write(tmp_path / "base", rel, b"stays\n")
    args = ("--base-dir", str(tmp_path / "base"), "--bucket", name, "--endpoint-url", s3_server.endpoint_url)
    # an endpoint that takes any region (moto as it is, a MinIO without a region) and names another: logged only
    check_bucket(client_from_args(endpoint_url=s3_server.endpoint_url, region_name="us-east-1"), name)
    assert "names 'eu-west-1' as bucket" in caplog.text
    s3_server.control("POST", "regions", {"enforced": True})
    try:
        s3_server.control("POST", "stats/reset")
        done = upload_cli(*args, "--region", "us-east-1")
        stats = s3_server.control("GET", "stats")
        with pytest.raises(UploadError) as refused:
            check_bucket(client_from_args(endpoint_url=s3_server.endpoint_url, region_name="us-east-1"), name)
        check_bucket(client_from_args(endpoint_url=s3_server.endpoint_url, region_name="eu-west-1"), name)
        moved = upload_cli(*args, "--region", "eu-west-1")
    finally:
        s3_server.control("POST", "regions", {"enforced": False})

    line = (f"error: bucket {name!r} is in region 'eu-west-1', not in the configured region 'us-east-1': set the "
            "region to 'eu-west-1'")
    assert done.returncode == 2 and done.stderr.splitlines() == [done.stderr.strip()], done.stderr
    assert done.stderr.startswith(line) and done.stdout == "", done.stderr
    assert str(refused.value).startswith(line[len("error: "):])
    # once per run: HeadBucket, then botocore's own retry of it in the right region; no upload was tried
    assert stats.get("HeadBucket", 0) <= 2 and not stats.get("PutObject") and not stats.get("ListMultipartUploads"), stats
    assert moved.returncode == 0, moved.stderr
    assert not path.exists() and body_of(s3, name, rel) == b"stays\n"


def test_a_file_dated_in_the_future_waits_and_is_named(tmp_path, s3, bucket, client):
    """A file whose mtime (the writer's clock ahead, touch -d) or data minute lies in the future is not ready
    until then: that was only one more "skipped_not_ready", every run, for ever if far enough. Beyond a
    clock's drift it is named in the summary; a few seconds ahead waits quietly."""
    hour_ago = NOW - timedelta(hours=1)
    far = write(tmp_path, rel_at("berlin", hour_ago, "touched"), b"x\n", age_seconds=-3 * 86_400)
    minute = write(tmp_path, rel_at("berlin", NOW + timedelta(days=365), "ahead"), b"y\n")
    drift = write(tmp_path, rel_at("berlin", hour_ago, "drift"), b"z\n", age_seconds=-10)

    summary, manifest = upload_tree(client, settings(tmp_path, bucket), tidy=False)

    assert (summary["uploaded"], summary["skipped_not_ready"], summary["failed"]) == (0, 3, 0) and manifest == []
    assert summary["future_dated"] == 2 and sorted(summary["future_dated_paths"]) == sorted([str(far), str(minute)])
    assert far.exists() and minute.exists() and drift.exists() and keys_in(s3, bucket) == set()


def test_vanished_and_changed_files_are_reported_not_lost(tmp_path, s3, bucket, client):
    cfg = settings(tmp_path, bucket)
    uploader = Uploader(client, cfg, datetime.now(UTC))
    gone = uploader.upload_one(Candidate(NOW, rel_at("berlin", NOW - timedelta(hours=1), "gone"), 3, 0))
    assert (gone.status, gone.error) == ("failed", "vanished before upload")

    rel = rel_at("berlin", NOW - timedelta(hours=1), "changed")
    path = write(tmp_path, rel, b"version 1\n")
    st = path.stat()
    path.write_bytes(b"version 2, longer\n")  # rewritten after the scan saw it
    changed = uploader.upload_one(Candidate(NOW, rel, st.st_size, st.st_mtime_ns))
    assert changed.status == "not_ready" and path.read_bytes() == b"version 2, longer\n"
    assert keys_in(s3, bucket) == set()


def test_vanished_after_our_own_upload_counts_as_uploaded(tmp_path, s3, bucket, client):
    """A retried task finds files its first attempt already moved: they are reported, not failed."""
    rel = rel_at("paris", NOW - timedelta(hours=1), "t")
    path = write(tmp_path, rel, b"moved by attempt 1\n")
    st = path.stat()
    uploader = Uploader(client, settings(tmp_path, bucket), datetime.now(UTC))
    assert uploader.upload_one(Candidate(NOW, rel, st.st_size, st.st_mtime_ns)).status == "uploaded"
    retry = uploader.upload_one(Candidate(NOW, rel, st.st_size, st.st_mtime_ns))
    assert retry.status == "uploaded"
    assert retry.checksum == crc(b"moved by attempt 1\n")


def test_vanished_after_an_earlier_try_found_the_object_identical_is_already_present(tmp_path, s3, bucket, client):
    """A retried batch whose first try found an older identical object, deleted the file and died before
    writing its result: the retry found the file gone and the object older than its scan, and failed the
    run ("vanished before upload") though the data was safe in S3."""
    earlier = rel_at("berlin", NOW - timedelta(hours=1), "earlier")
    s3.put_object(Bucket=bucket, Key=earlier, Body=b"same\n")
    after = datetime.now(UTC) + timedelta(minutes=5)  # the batch's scan, later than the object
    later = Uploader(client, settings(tmp_path, bucket), after, retried=True)
    moved = later.upload_one(Candidate(NOW, earlier, 5, 0))
    assert moved.status == "already_present" and "an earlier try found it identical" in moved.error
    assert later.upload_one(Candidate(NOW, earlier, 6, 0)).status == "failed"  # another size: not this file
    # a first try: nobody but someone else can have removed the file
    first = Uploader(client, settings(tmp_path, bucket), after).upload_one(Candidate(NOW, earlier, 5, 0))
    assert (first.status, first.error) == ("failed", "vanished before upload")


def test_throttling_and_dropped_connections_are_retried(tmp_path, s3, bucket, client, s3_server):
    """The CRT client retries 503 SlowDown, 500 and dropped connections like botocore's standard mode."""
    truth = {rel_at("berlin", NOW - timedelta(hours=1, minutes=m), "t"): os.urandom(100 + m) for m in range(6)}
    for rel, body in truth.items():
        write(tmp_path, rel, body)
    s3_server.control("POST", "stats/reset", {})
    s3_server.control("POST", "faults", {"mode": "slowdown", "operation": "PutObject", "count": 3})
    s3_server.control("POST", "faults", {"mode": "error", "operation": "PutObject", "count": 2})
    s3_server.control("POST", "faults", {"mode": "drop", "operation": "PutObject", "count": 2})
    try:
        summary, _ = upload_tree(client, settings(tmp_path, bucket), workers=3)
        left = s3_server.control("POST", "faults", {"mode": "off"})["cleared"]
    finally:
        s3_server.control("POST", "faults", {"mode": "off"})

    assert left == 0, "every injected fault was hit"
    assert summary["uploaded"] == 6 and summary["failed"] == 0
    assert {k: body_of(s3, bucket, k) for k in keys_in(s3, bucket)} == truth
    assert s3_server.control("GET", "stats")["PutObject"] == 6 + 3 + 2 + 2


def test_a_409_with_no_object_at_the_key_is_a_failure_to_retry_not_a_conflict(tmp_path, s3, bucket, client,
                                                                               s3_server):
    """S3 answers 409 ConditionalRequestConflict to a write racing another on the same key ("you can retry").
    With nothing at the key, "a different object already exists" would be false: the file fails, is kept,
    and the next run uploads it."""
    rel = rel_at("berlin", NOW - timedelta(hours=1), "raced")
    path = write(tmp_path, rel, b"raced\n")
    s3_server.control("POST", "faults", {"mode": "conflict", "operation": "PutObject", "bucket": bucket, "count": 1})
    try:
        summary, manifest = upload_tree(client, settings(tmp_path, bucket), workers=1, tidy=False)
    finally:
        s3_server.control("POST", "faults", {"mode": "off"})
    assert (summary["uploaded"], summary["conflicts"], summary["failed"]) == (0, 0, 1)
    assert manifest[0]["status"] == "failed" and "ConditionalRequestConflict" in manifest[0]["error"]
    assert "no object is at the key" in manifest[0]["error"] and path.read_bytes() == b"raced\n"

    again, _ = upload_tree(client, settings(tmp_path, bucket), workers=1, tidy=False)
    assert (again["uploaded"], again["failed"]) == (1, 0) and body_of(s3, bucket, rel) == b"raced\n"
    assert not path.exists()


def test_command_line_reports_and_exits_nonzero_on_conflict(tmp_path, s3, bucket, s3_server):
    rel = rel_at("berlin", NOW - timedelta(hours=1), "t")
    write(tmp_path, rel, b"a\n")
    write(tmp_path, rel_at("berlin", NOW - timedelta(hours=1), "u"), b"b\n")
    s3.put_object(Bucket=bucket, Key=rel, Body=b"different\n")
    manifest = tmp_path.parent / f"{tmp_path.name}-manifest.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "include.upload.uploader", "--base-dir", str(tmp_path), "--bucket", bucket,
         "--endpoint-url", s3_server.endpoint_url, "--manifest", str(manifest)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["uploaded"], summary["conflicts"], summary["conflict_keys"]) == (1, 1, [rel])
    assert sorted((row["key"], row["status"]) for row in map(json.loads, manifest.read_text().splitlines())) == [
        (rel, "conflict"), (rel_at("berlin", NOW - timedelta(hours=1), "u"), "uploaded")]
    missing = subprocess.run(
        [sys.executable, "-m", "include.upload.uploader", "--base-dir", str(tmp_path), "--endpoint-url", s3_server.endpoint_url],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert missing.returncode == 2 and "--bucket is required" in missing.stderr
    base = [sys.executable, "-m", "include.upload.uploader", "--base-dir", str(tmp_path), "--bucket", bucket,
            "--endpoint-url", s3_server.endpoint_url]
    for extra, needle in ((["--throughput-target-gbps", "0"], "throughput_target_gbps"),  # the flag reaches the settings
                          (["--profile", "no-such-profile"], "no-such-profile")):
        refused = subprocess.run(base + extra, cwd=ROOT, capture_output=True, text=True, timeout=60,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert refused.returncode == 2 and needle in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def _without_root_file_powers() -> None:
    """In the child, before exec: root keeps its uid but not the capabilities that ignore file permissions
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, dropped from the bounding set), as a service account has none."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_a_base_dir_the_uploader_cannot_read_is_refused_in_one_line(tmp_path, bucket, s3_server):
    """The producer's folder exists but the uploader's user may not list it (the producer's, mode 0700): that
    was a traceback from the lock (exit 1), and in the DAG a scan retried three times for nothing."""
    base = tmp_path / "base"
    write(base, rel_at("berlin", NOW - timedelta(hours=1), "t"), b"stays\n")
    root = os.geteuid() == 0
    if root:
        os.chown(base, 65534, 65534)  # nobody's
    base.chmod(0o700 if root else 0o000)
    try:
        done = subprocess.run([sys.executable, "-m", "include.upload.uploader", "--base-dir", str(base), "--bucket",
                               bucket, "--endpoint-url", s3_server.endpoint_url], cwd=ROOT, capture_output=True,
                              text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              preexec_fn=_without_root_file_powers if root else None)
    finally:
        base.chmod(0o700)
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr.splitlines() == [done.stderr.strip()] and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"error: base_dir {str(base)!r} cannot be read (Permission denied)"), done.stderr


def test_the_filesystems_lost_and_found_in_base_dir_is_not_a_failure(tmp_path, s3, bucket, s3_server):
    """base_dir is the mount point of the producer's own volume: mkfs made lost+found there, root's, mode 0700.
    The uploader (not root) could not list it: a scan error, counted as a failed file, so every run went red
    and notified, every minute, for a folder that never holds a producer's file."""
    base = tmp_path / "base"
    rel = rel_at("berlin", NOW - timedelta(hours=1), "t")
    write(base, rel, b"moves\n")
    (base / "lost+found").mkdir(mode=0o700)
    root = os.geteuid() == 0
    if root:
        os.chown(base / "lost+found", 65534, 65534)  # not the uploader's: as root's is to a service account
    else:
        (base / "lost+found").chmod(0o000)
    try:
        done = subprocess.run([sys.executable, "-m", "include.upload.uploader", "--base-dir", str(base), "--bucket",
                               bucket, "--endpoint-url", s3_server.endpoint_url, "--no-tidy"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              preexec_fn=_without_root_file_powers if root else None)
    finally:
        (base / "lost+found").chmod(0o700)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert (summary["uploaded"], summary["failed"], summary["malformed"]) == (1, 0, 0) and summary["failures"] == []
    assert keys_in(s3, bucket) == {rel}


def upload_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``s3ops upload`` in a process of its own."""
    return subprocess.run([sys.executable, "-m", "include.upload.uploader", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), **env})


@pytest.mark.parametrize("where", ["/proc/nope/m.jsonl", "a folder", "under a file", "in base_dir"])
def test_an_unwritable_manifest_is_refused_before_anything_moves(tmp_path, s3, bucket, s3_server, where):
    rel = rel_at("berlin", NOW - timedelta(hours=1), "t")
    write(tmp_path / "base", rel, b"stays\n")
    (tmp_path / "a folder").mkdir()
    (tmp_path / "a file").write_text("x")
    manifest = {"a folder": str(tmp_path / "a folder"), "under a file": str(tmp_path / "a file" / "m.jsonl"),
                "in base_dir": str(tmp_path / "base" / "m.jsonl")}.get(where, where)

    done = upload_cli("--base-dir", str(tmp_path / "base"), "--bucket", bucket, "--endpoint-url", s3_server.endpoint_url,
                      "--manifest", manifest)

    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [done.stderr.strip()] and done.stderr.startswith(f"error: --manifest {manifest!r}")
    assert done.stdout == "" and (tmp_path / "base" / rel).read_bytes() == b"stays\n" and keys_in(s3, bucket) == set()


@pytest.mark.parametrize("spare", [True, False], ids=["kept-in-a-temporary-file", "nowhere-to-write"])
def test_a_manifest_that_cannot_be_written_at_the_end_still_leaves_a_record(tmp_path, s3, bucket, s3_server,
                                                                            monkeypatch, capsys, spare):
    """The files moved already: the summary is printed anyway, the rows kept if at all possible, exit 1."""
    from include.core import artifacts
    from include.upload.uploader import main

    rel = rel_at("berlin", NOW - timedelta(hours=1), "t")
    write(tmp_path / "base", rel, b"moved\n")
    wanted = tmp_path / "out" / "m.jsonl"
    real_write, spares = artifacts.write_jsonl, []

    def write_jsonl(path, rows):  # the disk filled up during the run, say
        if path == wanted or not spare:
            raise OSError(28, "No space left on device")
        spares.append(path)
        return real_write(path, rows)

    monkeypatch.setattr(artifacts, "write_jsonl", write_jsonl)
    code = main(["--base-dir", str(tmp_path / "base"), "--bucket", bucket, "--endpoint-url", s3_server.endpoint_url,
                 "--manifest", str(wanted)])

    out, err = capsys.readouterr()
    assert code == 1 and json.loads(out)["uploaded"] == 1 and body_of(s3, bucket, rel) == b"moved\n"
    assert err.count("error:") == 1 and f"error: writing the manifest {str(wanted)!r} failed (No space left on device)" in err
    if spare:
        assert f"it is in {spares[0]} instead" in err
        assert [r["key"] for r in artifacts.read_jsonl(spares[0])] == [rel]
        spares[0].unlink()
    else:
        assert "the summary is the only record of this run" in err


@pytest.mark.slow
def test_sigkill_at_any_instant_never_loses_a_file(tmp_path, s3, bucket, s3_server):
    """Kill real upload processes at random instants; after each kill every file is still on disk or
    in S3 with identical content. Then a clean run finishes the job."""
    rng = random.Random(4)
    truth: dict[str, bytes] = {}

    def add_files(count: int) -> None:
        for i in range(len(truth), len(truth) + count):
            when = NOW - timedelta(hours=1 + i % 7, minutes=i % 60)
            rel = rel_at(("berlin", "paris", "oslo")[i % 3], when, f"t{i}")
            truth[rel] = rng.randbytes(rng.choice([10, 500, 4000, 60_000]))
            write(tmp_path, rel, truth[rel])

    add_files(600)
    cmd = [sys.executable, "-m", "include.upload.uploader", "--base-dir", str(tmp_path), "--bucket", bucket,
           "--endpoint-url", s3_server.endpoint_url, "--settle-seconds", "0", "--workers", "8", "--no-tidy"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    checked: set[str] = set()  # moved to S3 and verified there: it can never come back

    def check_every_file() -> int:
        on_disk = 0
        for rel, body in truth.items():
            path = tmp_path / rel
            if path.exists():
                assert rel not in checked, f"{rel} reappeared"
                assert path.read_bytes() == body, f"{rel} changed on disk"
                on_disk += 1
            elif rel not in checked:
                assert body_of(s3, bucket, rel) == body, f"{rel} is gone from disk and not intact in S3"
                checked.add(rel)
        return on_disk

    def on_disk() -> int:
        return sum(1 for _ in tmp_path.rglob("*.dat"))

    remaining, mid_batch_kills = len(truth), 0
    for kill in range(30):
        if mid_batch_kills >= 6:  # enough kills landed: the clean run below finishes the job
            break
        if remaining < 60:  # a run moved most files before its kill (a loaded machine's timing): more work
            add_files(200)
            remaining = check_every_file()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if kill % 2:  # at a random instant, startup included
            time.sleep(rng.uniform(0.05, 1.0))
        else:  # once files are moving, a moment later (a long one would let an idle machine move them all)
            deadline = time.monotonic() + 20
            while on_disk() == remaining and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before, remaining = remaining, check_every_file()
        mid_batch_kills += 0 < remaining < before
    assert mid_batch_kills >= 4, f"only {mid_batch_kills} kills landed while files were being moved"

    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert check_every_file() == 0
    assert keys_in(s3, bucket) == set(truth)


# --- the DAG ---------------------------------------------------------------------------------------


def _asset_events(uri: str) -> list[Any]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return list(session.scalars(
            select(AssetEvent.extra).join(AssetModel, AssetEvent.asset_id == AssetModel.id).where(AssetModel.uri == uri)
        ))


def test_dag_run_moves_the_demo_files(tmp_path, s3, bucket, run_dag):
    base = tmp_path / "base"
    kinds = upload_files(base, datetime.now(UTC))
    empty_hour = base / "paris" / f"{NOW - timedelta(hours=5):%Y/%m/%d/%H}"
    empty_hour.mkdir(parents=True)
    finished_bytes = sum(p.stat().st_size for p in kinds["finished"])

    # the demo's conf, with a settle time long enough that a slow machine cannot make the in-progress file ready
    result = run_dag("s3_upload", {"base_dir": str(base), "bucket": bucket, "key_prefix": "in/", "settle_seconds": 120})

    assert result.state == "success", result.task_states()
    counts = result.xcom("tidy")
    assert counts == {"uploaded": 20, "skipped_not_ready": 1, "malformed": 2, "conflicts": 0, "failed": 0,
                      "bytes": finished_bytes, "batches_failed": 0}
    expected = {f"in/{p.relative_to(base).as_posix()}" for p in kinds["finished"]}
    assert keys_in(s3, bucket) == expected
    assert all(p.exists() for p in kinds["in_progress"] + kinds["malformed"])
    assert not any(p.exists() for p in kinds["finished"])
    assert not empty_hour.exists()
    summary = json.loads((result.artifacts() / "summary.json").read_text())
    assert sorted(summary["malformed_paths"]) == sorted(map(str, kinds["malformed"]))
    assert (summary["bucket"], summary["key_prefix"]) == (bucket, "in/")
    rows = [json.loads(line) for line in (result.artifacts() / "manifest.jsonl").read_text().splitlines()]
    assert {r["key"] for r in rows} == expected
    for row in rows:
        assert row["checksum"] == crc(body_of(s3, bucket, row["key"]))
    assert [e["uploaded"] for e in _asset_events(f"s3://{bucket}/in")] == [20]


def test_a_run_cannot_point_a_pinned_upload_at_another_folder_or_bucket(tmp_path, s3, bucket, run_dag, monkeypatch,
                                                                         capfd):
    """Whoever may trigger s3_upload could send another team's finished files to a bucket of their own (and
    delete them locally) through the run's conf. With base_dir and bucket pinned in the Variable, such a run
    fails its first task, and the other team's file stays where it was; the pinned values still upload."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    rel = rel_at("oslo", NOW - timedelta(hours=2), "t")
    write(ours, rel, b"ours\n")
    write(theirs, rel, b"theirs\n")
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_UPLOAD", json.dumps({"bucket": bucket, "base_dir": str(ours),
                                                               "pinned": ["base_dir", "bucket"]}))
    refused = run_dag("s3_upload", {"base_dir": str(theirs)})
    assert refused.state == "failed" and refused.task_states()[("scan", -1)] == "failed"
    assert "base_dir is pinned by the deployment" in capfd.readouterr().out
    assert (theirs / rel).read_bytes() == b"theirs\n" and keys_in(s3, bucket) == set()

    ok = run_dag("s3_upload", {"base_dir": str(ours)})  # the pinned value itself is accepted
    assert ok.state == "success", ok.task_states()
    assert body_of(s3, bucket, rel) == b"ours\n" and (theirs / rel).exists()


def test_scheduled_run_reads_the_variable_and_missing_settings_fail_the_run(
    tmp_path, s3, bucket, run_dag, monkeypatch, capfd
):
    rel = rel_at("oslo", NOW - timedelta(hours=2), "t")
    write(tmp_path, rel, b"from the variable\n")
    monkeypatch.setenv("S3OPS_UPLOAD_BASE_DIR", str(tmp_path))  # environment variables are not settings
    # the Variable s3ops_upload (here through Airflow's env secrets backend)
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_UPLOAD", json.dumps({"bucket": bucket, "key_prefix": "var"}))

    failed = run_dag("s3_upload", {})  # no base_dir anywhere
    assert failed.state == "failed"
    assert failed.task_states()[("scan", -1)] == "failed"
    out = capfd.readouterr().out
    assert "base_dir is not set" in out and "s3ops_upload" in out  # the task log names the setting and the Variable
    assert (tmp_path / rel).exists()

    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_UPLOAD", json.dumps({"bucket": bucket, "key_prefix": "var",
                                                               "base_dir": str(tmp_path)}))
    ok = run_dag("s3_upload", {})
    assert ok.state == "success", ok.task_states()
    assert ok.xcom("tidy")["uploaded"] == 1
    assert body_of(s3, bucket, f"var/{rel}") == b"from the variable\n"
    saved = json.loads((ok.artifacts() / "settings.json").read_text())
    assert saved["values"]["base_dir"] == str(tmp_path) and saved["sources"]["base_dir"] == "variable"


def test_untouched_trigger_form_runs_like_a_scheduled_run(tmp_path, s3, bucket, run_dag, monkeypatch):
    """The form sends every param at its default (null): the Variable must still decide."""
    from include.upload.settings import SETTINGS

    rel = rel_at("oslo", NOW - timedelta(hours=2), "t")
    write(tmp_path, rel, b"form\n")
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_UPLOAD", json.dumps(
        {"bucket": bucket, "base_dir": str(tmp_path), "key_prefix": "form", "settle_seconds": 120}))
    form = {name: spec["default"] for name, spec in SETTINGS.param_specs().items()}
    assert set(form) >= {"base_dir", "bucket", "settle_seconds", "aws_conn_id"} and set(form.values()) == {None}
    ok = run_dag("s3_upload", form)
    assert ok.state == "success", ok.task_states()
    saved = json.loads((ok.artifacts() / "settings.json").read_text())
    assert saved["values"]["settle_seconds"] == 120 and saved["sources"]["settle_seconds"] == "variable"
    assert body_of(s3, bucket, f"form/{rel}") == b"form\n"


@pytest.mark.parametrize(("settle", "says"), [(-5, "is invalid"), (0, "set 1 or more")])
def test_invalid_variable_fails_the_run_once_naming_key_and_variable(tmp_path, bucket, run_dag, monkeypatch, capfd,
                                                                     settle, says):
    write(tmp_path, rel_at("oslo", NOW - timedelta(hours=1), "t"), b"x\n")
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_UPLOAD", json.dumps(
        {"bucket": bucket, "base_dir": str(tmp_path), "settle_seconds": settle}))
    result = run_dag("s3_upload", {})
    assert result.state == "failed"
    assert result.task_states()[("scan", -1)] == "failed"
    out = capfd.readouterr().out
    assert "settle_seconds" in out and "Variable 's3ops_upload'" in out and says in out
    assert "up_for_retry" not in out.lower()
    assert (tmp_path / rel_at("oslo", NOW - timedelta(hours=1), "t")).exists()  # nothing touched


@pytest.mark.parametrize("refusal", ["region", "proxy"])
def test_a_bucket_in_another_region_or_a_proxy_the_crt_cannot_take_fails_scan_once(tmp_path, s3, s3_server, run_dag,
                                                                                     monkeypatch, capfd, refusal):
    """The DAG says it as the command line does: scan fails at once (AirflowFailException, no retry), naming
    the bucket and both regions, or the proxy and the variable to set; no file is touched."""
    from scripts.stack import LOCAL_AWS_KEY, LOCAL_AWS_SECRET

    name = f"up-{uuid.uuid4().hex[:12]}"
    rel = rel_at("oslo", NOW - timedelta(hours=1), "t")
    write(tmp_path, rel, b"x\n")
    extra: dict[str, Any] = {"region_name": "us-east-1", "endpoint_url": s3_server.endpoint_url}
    if refusal == "region":
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        says = f"bucket {name!r} is in region 'eu-west-1', not in the configured region 'us-east-1'"
    else:
        s3.create_bucket(Bucket=name)
        extra["config_kwargs"] = {"proxies": {"http": "http://127.0.0.1:9"}}
        says = "through the proxy http://127.0.0.1:9, which the CRT client that uploads cannot be given"
    for var in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_ODD", json.dumps({"conn_type": "aws", "login": LOCAL_AWS_KEY,
                                                           "password": LOCAL_AWS_SECRET, "extra": extra}))
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_UPLOAD", json.dumps(
        {"bucket": name, "base_dir": str(tmp_path), "aws_conn_id": "aws_odd"}))
    s3_server.control("POST", "regions", {"enforced": True})
    try:
        result = run_dag("s3_upload", {})
    finally:
        s3_server.control("POST", "regions", {"enforced": False})
    assert result.state == "failed" and result.task_states()[("scan", -1)] == "failed"
    out = capfd.readouterr().out
    assert says in out and "up_for_retry" not in out.lower()
    assert (tmp_path / rel).exists() and keys_in(s3, name) == set()


def test_dag_run_with_nothing_to_do_succeeds_quietly(tmp_path, bucket, run_dag):
    from include.core import artifacts

    (tmp_path / "berlin").mkdir()
    result = run_dag("s3_upload", {"base_dir": str(tmp_path), "bucket": bucket})
    assert result.state == "success", result.task_states()
    assert result.xcom("tidy") == {"uploaded": 0, "skipped_not_ready": 0, "malformed": 0, "conflicts": 0,
                                   "failed": 0, "bytes": 0, "batches_failed": 0}
    # found nothing: no run folder at all, only one line in the index
    assert not result.artifacts().exists()
    root = artifacts.artifact_root()
    mine = [e for period in artifacts.index_periods(root, "s3_upload") or []
            for e in artifacts.read_period(root, "s3_upload", period) if e["run_id"] == result.run_id]
    assert [(e["kind"], e["doc"]["uploaded"], e["doc"]["bucket"]) for e in mine] == [("summary", 0, bucket)]
    at = mine[0]["at"]
    entry_file = root / "_index" / "s3_upload" / at[:10] / at[11:13] / f"{result.run_id}.summary.json"
    assert len(entry_file.read_text().splitlines()) == 1
    assert _asset_events(f"s3://{bucket}/") == []


def test_dag_run_with_a_conflict_fails_after_recording_it(tmp_path, s3, bucket, run_dag):
    """Files that stay behind make the run red (task check), after tidy recorded them and emitted the
    asset event for the file that did move."""
    moved, clash = rel_at("oslo", NOW - timedelta(hours=2), "a"), rel_at("oslo", NOW - timedelta(hours=2), "b")
    write(tmp_path, moved, b"new\n")
    write(tmp_path, clash, b"local\n")
    s3.put_object(Bucket=bucket, Key=clash, Body=b"different\n")
    result = run_dag("s3_upload", {"base_dir": str(tmp_path), "bucket": bucket})
    assert result.state == "failed"
    states = result.task_states()
    assert (states[("tidy", -1)], states[("check", -1)]) == ("success", "failed")
    assert result.xcom("tidy")["conflicts"] == 1 and result.xcom("tidy")["uploaded"] == 1
    assert (tmp_path / clash).read_bytes() == b"local\n" and not (tmp_path / moved).exists()
    assert json.loads((result.artifacts() / "summary.json").read_text())["conflict_keys"] == [clash]
    assert [e["uploaded"] for e in _asset_events(f"s3://{bucket}/")] == [1]


def test_dag_run_with_a_missing_bucket_fails_and_keeps_files(tmp_path, run_dag, capfd):
    rel = rel_at("oslo", NOW - timedelta(hours=2), "t")
    write(tmp_path, rel, b"keep me\n")
    result = run_dag("s3_upload", {"base_dir": str(tmp_path), "bucket": "s3ops-no-such-bucket"})
    assert result.state == "failed"
    assert "bucket 's3ops-no-such-bucket' does not exist" in capfd.readouterr().out
    assert (tmp_path / rel).read_bytes() == b"keep me\n"
    states = result.task_states()
    assert (states[("scan", -1)], states[("tidy", -1)], states[("check", -1)]) == ("failed", "upstream_failed",
                                                                                   "upstream_failed")


def test_tidy_records_a_batch_without_result_and_goes_on(tmp_path):
    from include.core import artifacts

    run_dir = tmp_path / "run"
    artifacts.write_json(run_dir / "scan.json", {"batches": ["00000"], "malformed": [], "not_ready": 0})
    summary = tidy_task(settings(tmp_path, "some-bucket"), run_dir, ["00000"])
    assert summary["batches_failed"] == 1 and summary["failures"][0]["path"] == "batch 00000"
    assert "batch(es) failed" in problems(summary)


def test_unreadable_file_is_kept_and_the_rest_move(tmp_path, s3, bucket, client, monkeypatch):
    import include.upload.uploader as upload

    locked = rel_at("berlin", NOW - timedelta(hours=1), "locked")
    fine = rel_at("berlin", NOW - timedelta(hours=1), "fine")
    write(tmp_path, locked, b"secret\n")
    write(tmp_path, fine, b"ok\n")
    real_read = upload.read_local

    def read_local(fh):  # tests run as root, where chmod 000 does not stop a read
        if fh.name.endswith("locked.dat"):
            raise PermissionError(13, "Permission denied")
        return real_read(fh)

    monkeypatch.setattr(upload, "read_local", read_local)
    summary, _ = upload_tree(client, settings(tmp_path, bucket), workers=2)

    assert (summary["uploaded"], summary["failed"]) == (1, 1)
    assert summary["failures"] == [{"path": str(tmp_path / locked), "error": "cannot read the local file: Permission denied"}]
    assert (tmp_path / locked).read_bytes() == b"secret\n"
    assert keys_in(s3, bucket) == {fine}


def test_any_exception_in_one_file_is_its_outcome_and_every_file_is_in_the_manifest(tmp_path, s3, bucket, client,
                                                                                     monkeypatch):
    """Issue 12 item 6: one file's surprise (here a bug-like error) never stops the others or the manifest."""
    import include.upload.uploader as upload

    rels = [rel_at("oslo", NOW - timedelta(hours=1, minutes=m), f"t{m}") for m in range(4)]
    for rel in rels:
        write(tmp_path, rel, rel.encode())
    real_read = upload.read_local

    def read_local(fh):
        if fh.name.endswith("t2.dat"):
            raise UnicodeEncodeError("utf-8", "caf\udce9", 3, 4, "surrogates not allowed")
        return real_read(fh)

    monkeypatch.setattr(upload, "read_local", read_local)
    summary, manifest = upload_tree(client, settings(tmp_path, bucket), workers=2)

    assert (summary["uploaded"], summary["failed"]) == (3, 1)
    assert {r["key"]: r["status"] for r in manifest} == {rel: ("failed" if rel == rels[2] else "uploaded") for rel in rels}
    failed = next(r for r in manifest if r["status"] == "failed")
    assert failed["error"].startswith("UnicodeEncodeError: 'utf-8' codec can't encode")
    assert (tmp_path / rels[2]).exists() and keys_in(s3, bucket) == set(rels) - {rels[2]}


def test_a_non_utf8_name_is_malformed_and_the_others_move(tmp_path, s3, bucket, client):
    good = write(tmp_path, rel_at("paris", NOW - timedelta(hours=1), "t"), b"good\n")
    bad = os.path.join(os.fsencode(good.parent), b"05-caf\xe9.dat")
    with open(bad, "wb") as fh:
        fh.write(b"latin-1 name\n")
    os.utime(bad, (time.time() - 600,) * 2)

    summary, manifest = upload_tree(client, settings(tmp_path, bucket), workers=2)

    assert (summary["uploaded"], summary["malformed"], summary["failed"]) == (1, 1, 0)
    assert summary["malformed_paths"] == [f"{good.parent}/05-caf\\xe9.dat"]
    assert [r["status"] for r in manifest] == ["uploaded"]
    assert open(bad, "rb").read() == b"latin-1 name\n" and keys_in(s3, bucket) == {good.relative_to(tmp_path).as_posix()}


def test_a_path_whose_key_would_pass_s3s_limit_is_malformed_not_a_failure_every_run(tmp_path, s3, bucket, client):
    """A long key prefix plus a long (multibyte) topic makes a key over S3's 1,024 bytes. S3 refuses such a
    PUT (KeyTooLongError), so the run failed every minute for good; now the file is malformed, listed and
    left alone, and the one that fits moves. The limit counts UTF-8 bytes, not characters."""
    prefix = "p" * 700 + "/"
    fits = write(tmp_path, rel_at("paris", NOW - timedelta(hours=1), "t"), b"fits\n")
    topic = "é" * 120  # 120 characters, 240 bytes: with the prefix, 40 bytes over, 80 characters under
    long = write(tmp_path, rel_at("ville-" + "x" * 95, NOW - timedelta(hours=1), topic), b"too long a key\n")
    key_bytes = len((prefix + long.relative_to(tmp_path).as_posix()).encode())
    assert key_bytes > 1024 > len(prefix + long.relative_to(tmp_path).as_posix())

    summary, manifest = upload_tree(client, settings(tmp_path, bucket, key_prefix=prefix), workers=2)

    assert (summary["uploaded"], summary["malformed"], summary["failed"]) == (1, 1, 0)
    assert summary["malformed_paths"] == [str(long)]
    assert [r["status"] for r in manifest] == ["uploaded"] and not fits.exists()
    assert long.read_bytes() == b"too long a key\n"
    assert keys_in(s3, bucket) == {prefix + fits.relative_to(tmp_path).as_posix()}


def test_a_failed_local_delete_after_a_verified_upload_says_so_and_the_next_run_finishes(tmp_path, s3, bucket,
                                                                                         client, monkeypatch):
    rel = rel_at("berlin", NOW - timedelta(hours=1), "stuck")
    path = write(tmp_path, rel, b"uploaded, not deleted\n")
    real_rename = os.rename

    def rename(src, *args, **kwargs):  # the delete's first step: the file to a private name, then unlinked
        if str(src).endswith("stuck.dat"):
            raise PermissionError(13, "Permission denied")
        return real_rename(src, *args, **kwargs)

    monkeypatch.setattr(os, "rename", rename)
    summary, manifest = upload_tree(client, settings(tmp_path, bucket), workers=1, tidy=False)
    assert (summary["uploaded"], summary["failed"], summary["local_delete_failed"]) == (1, 1, 1)
    assert manifest[0]["status"] == "uploaded_not_deleted" and manifest[0]["checksum"] == crc(b"uploaded, not deleted\n")
    assert "uploaded and verified, but deleting the local file failed (Permission denied)" in manifest[0]["error"]
    assert path.exists() and body_of(s3, bucket, rel) == b"uploaded, not deleted\n"
    assert [p.name for p in path.parent.iterdir()] == [path.name]

    monkeypatch.setattr(os, "rename", real_rename)
    again, manifest = upload_tree(client, settings(tmp_path, bucket), workers=1, tidy=False)
    assert (again["uploaded"], again["already_present"], again["failed"]) == (1, 1, 0) and not path.exists()


def test_unpadded_folders_upload_under_the_path_exactly_as_on_disk(tmp_path, s3, bucket, client):
    """Issue 15 item 5: the producer writes kitchen/2020/12/29/6/54-topic.dat; month 13 stays put."""
    rels = ["kitchen/2020/12/29/6/54-topic.dat", "kitchen/2020/1/2/03/4-topic.dat"]
    for rel in rels:
        write(tmp_path, rel, rel.encode())
    bad = write(tmp_path, "kitchen/2020/13/29/6/54-topic.dat", b"month 13\n")

    summary, _ = upload_tree(client, settings(tmp_path, bucket), workers=2, tidy=False)

    assert (summary["uploaded"], summary["malformed"]) == (2, 1)
    assert keys_in(s3, bucket) == set(rels)
    assert bad.read_bytes() == b"month 13\n"


@pytest.fixture
def botocore_puts(client: Any) -> Any:
    """How many PutObject calls went through the botocore client (none: uploads go through the CRT client)."""
    calls: list[str] = []
    client.meta.events.register("before-call.s3.PutObject", lambda **kw: calls.append(kw["model"].name),
                                unique_id="test-count-botocore-puts")
    yield calls
    client.meta.events.unregister("before-call.s3.PutObject", unique_id="test-count-botocore-puts")


def test_the_put_itself_verifies_so_each_small_file_costs_one_request(tmp_path, s3, bucket, client, s3_server,
                                                                      botocore_puts):
    """S3 checks the CRC64NVME sent with the PUT and echoes it: no HeadObject per file."""
    bodies = {rel_at("berlin", NOW - timedelta(hours=2, minutes=m), "t"): f"{m}\n".encode() * 50 for m in range(30)}
    for rel, body in bodies.items():
        write(tmp_path, rel, body)
    s3_server.control("POST", "stats/reset")
    summary, manifest = upload_tree(client, settings(tmp_path, bucket), workers=4, tidy=False)
    stats = s3_server.control("GET", "stats")
    assert summary["uploaded"] == 30 and summary["failed"] == 0
    assert stats.get("PutObject") == 30 and stats.get("CreateMultipartUpload", 0) == 0
    assert stats.get("HeadObject", 0) == 0 and stats.get("HeadBucket", 0) == 0
    assert botocore_puts == []
    for rel, body in bodies.items():
        assert body_of(s3, bucket, rel) == body and not (tmp_path / rel).exists()
        head = s3.head_object(Bucket=bucket, Key=rel, ChecksumMode="ENABLED")
        assert f"crc64nvme:{head['ChecksumCRC64NVME']}" == crc(body)


def test_keys_with_odd_characters_land_under_the_same_key(tmp_path, s3, bucket, client):
    """The CRT request's path is the key percent-encoded as botocore does: spaces, '+', '=', '%', unicode."""
    rels = [f"{loc}/{(NOW - timedelta(hours=1)):%Y/%m/%d/%H}/07-{topic}.dat"
            for loc, topic in (("site 7", "temp+hum"), ("zürich", "a=b~c"), ("x'y", "%41"), ("a&b", "q?x#y"))]
    for rel in rels:
        write(tmp_path, rel, rel.encode())
    summary, _ = upload_tree(client, settings(tmp_path, bucket, key_prefix="in box"), workers=2, tidy=False)
    assert summary["uploaded"] == 4
    assert keys_in(s3, bucket) == {f"in box/{rel}" for rel in rels}
    for rel in rels:
        assert body_of(s3, bucket, f"in box/{rel}") == rel.encode()


@pytest.mark.parametrize("size", [100, 12 * MIB], ids=["single-put", "multipart"])
def test_an_upload_that_does_not_hold_our_bytes_keeps_the_file(tmp_path, bucket, client, s3, monkeypatch, size):
    """If the stored object does not hold the local bytes, the local file is never deleted."""
    from include.aws.crt import CrtPutter

    rel = rel_at("paris", NOW - timedelta(hours=3), "t")
    write(tmp_path, rel, os.urandom(size))
    other = tmp_path.parent / f"{tmp_path.name}-other.bin"
    other.write_bytes(os.urandom(size))
    real_start = CrtPutter.start

    def swapped(self, key, path, size, *, crc64nvme, if_none_match, done, progress=None):  # S3 checks other bytes
        return real_start(self, key, str(other), size, crc64nvme=crc(other.read_bytes()).split(":")[1],
                          if_none_match=if_none_match, done=done, progress=progress)

    monkeypatch.setattr(CrtPutter, "start", swapped)
    summary, manifest = upload_tree(client, settings(tmp_path, bucket, multipart_threshold_mib=5), workers=1, tidy=False)
    assert summary["failed"] == 1 and summary["uploaded"] == 0
    assert manifest[0]["error"] == "verification failed: the object differs after upload"
    assert (tmp_path / rel).exists()


@pytest.mark.parametrize("size", [100, 12 * MIB], ids=["single-put", "multipart"])
def test_s3_refuses_bytes_that_do_not_match_the_checksum_and_nothing_is_left(tmp_path, bucket, client, s3, s3_server,
                                                                             monkeypatch, size):
    """A file that changes between its checksum and its upload: S3 (the whole object, even across parts)
    refuses it, no object and no incomplete upload remain, and the file stays."""
    import include.upload.uploader as upload

    rel = rel_at("paris", NOW - timedelta(hours=3), "t")
    write(tmp_path, rel, os.urandom(size))
    real_read = upload.read_local
    monkeypatch.setattr(upload, "read_local", lambda fh: upload.Local(**{**real_read(fh).__dict__,
                                                                          "crc64nvme": "AAAAAAAAAAE="}))
    s3_server.control("POST", "stats/reset")
    summary, manifest = upload_tree(client, settings(tmp_path, bucket, multipart_threshold_mib=5), workers=1, tidy=False)
    stats = s3_server.control("GET", "stats")
    assert summary["failed"] == 1 and "S3 refused the content" in manifest[0]["error"] and "BadDigest" in manifest[0]["error"]
    assert (tmp_path / rel).exists() and keys_in(s3, bucket) == set()
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    if size > 5 * MIB:
        assert stats.get("CompleteMultipartUpload") >= 1 and stats.get("AbortMultipartUpload") == 1


# --- multipart -------------------------------------------------------------------------------------


def test_big_files_go_up_in_parallel_parts_with_a_full_object_checksum(tmp_path, s3, bucket, client, s3_server):
    small = {rel_at("berlin", NOW - timedelta(hours=1, minutes=m), "small"): os.urandom(1000 + m) for m in range(3)}
    big = {rel_at("berlin", NOW - timedelta(hours=2, minutes=m), "big"): os.urandom(21 * MIB + m) for m in range(2)}
    for rel, body in {**small, **big}.items():
        write(tmp_path, rel, body)
    s3_server.control("POST", "stats/reset")

    summary, manifest = upload_tree(client, settings(tmp_path, bucket, multipart_threshold_mib=5), workers=4)

    stats = s3_server.control("GET", "stats")
    assert summary["uploaded"] == 5 and summary["failed"] == 0
    assert stats["PutObject"] == 3 and stats["CreateMultipartUpload"] == 2 and stats["CompleteMultipartUpload"] == 2
    assert stats["UploadPart"] == 2 * 5  # 21 MiB in parts of 5 MiB (the threshold caps the part size)
    assert {k: body_of(s3, bucket, k) for k in keys_in(s3, bucket)} == {**small, **big}
    assert {r["key"]: r["checksum"] for r in manifest} == {k: crc(v) for k, v in {**small, **big}.items()}
    for rel, body in big.items():
        head = s3.head_object(Bucket=bucket, Key=rel, ChecksumMode="ENABLED")
        assert head["ChecksumType"] == "FULL_OBJECT" and f"crc64nvme:{head['ChecksumCRC64NVME']}" == crc(body)
        assert head["ETag"].endswith('-5"')  # really a multipart object
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def same_crc64nvme(original: bytes, changed: bytes, at: int) -> bytes:
    """``changed`` (as long as ``original``) with its 8 bytes at ``at`` set so that its CRC64NVME equals
    ``original``'s: CRC64 is linear over GF(2), so the 64 bits solve 64 linear equations."""
    from awscrt.checksums import crc64nvme

    zeroed = bytearray(changed)
    zeroed[at:at + 8] = bytes(8)
    start = crc64nvme(bytes(zeroed))
    pivots: dict[int, tuple[int, int]] = {}  # leading bit → (effect on the CRC, the bits that make it)
    for bit in range(64):
        flipped = bytearray(zeroed)
        flipped[at + bit // 8] ^= 1 << (bit % 8)
        effect, bits = crc64nvme(bytes(flipped)) ^ start, 1 << bit
        for lead in sorted(pivots, reverse=True):
            if effect >> lead & 1:
                effect, bits = effect ^ pivots[lead][0], bits ^ pivots[lead][1]
        if effect:
            pivots[effect.bit_length() - 1] = (effect, bits)
    need, bits = crc64nvme(original) ^ start, 0
    for lead in sorted(pivots, reverse=True):
        if need >> lead & 1:
            need, bits = need ^ pivots[lead][0], bits ^ pivots[lead][1]
    assert need == 0
    for bit in range(64):
        if bits >> bit & 1:
            zeroed[at + bit // 8] ^= 1 << (bit % 8)
    forged = bytes(zeroed)
    assert len(forged) == len(original) and forged != original and crc64nvme(forged) == crc64nvme(original)
    return forged


@pytest.mark.parametrize("size", [4096, 6 * MIB])  # one PUT (refused: 412), and the multipart pre-check
def test_an_object_with_the_files_size_and_crc_but_other_bytes_is_a_conflict(tmp_path, s3, bucket, client, size):
    """Someone who may write the bucket puts an object of the file's length and CRC64NVME, other bytes, at
    its key first. Taken for the file, it would have the only real copy deleted: every byte is compared."""
    rel = rel_at("oslo", NOW - timedelta(hours=1), "ledger")
    body = os.urandom(size)
    write(tmp_path, rel, body)
    forged = same_crc64nvme(body, b"account=66 balance=0; " + body[22:], 22)
    s3.put_object(Bucket=bucket, Key=rel, Body=forged, ChecksumAlgorithm="CRC64NVME")
    summary, manifest = upload_tree(client, settings(tmp_path, bucket, multipart_threshold_mib=5), workers=1, tidy=False)
    assert [r["status"] for r in manifest] == ["conflict"] and summary["conflicts"] == 1
    assert (tmp_path / rel).read_bytes() == body and body_of(s3, bucket, rel) == forged


def test_a_big_file_never_overwrites_and_conflicts_cost_no_parts(tmp_path, s3, bucket, client, s3_server):
    same_rel, other_rel = rel_at("oslo", NOW - timedelta(hours=1), "same"), rel_at("oslo", NOW - timedelta(hours=1), "other")
    body = os.urandom(11 * MIB)
    write(tmp_path, same_rel, body)
    write(tmp_path, other_rel, body)
    s3.put_object(Bucket=bucket, Key=same_rel, Body=body, ChecksumAlgorithm="CRC64NVME")  # a crash after the upload
    s3.put_object(Bucket=bucket, Key=other_rel, Body=b"someone else's\n")
    s3_server.control("POST", "stats/reset")

    summary, manifest = upload_tree(client, settings(tmp_path, bucket, multipart_threshold_mib=5), workers=2, tidy=False)

    assert {r["key"]: r["status"] for r in manifest} == {same_rel: "already_present", other_rel: "conflict"}
    assert s3_server.control("GET", "stats").get("UploadPart", 0) == 0
    assert not (tmp_path / same_rel).exists() and (tmp_path / other_rel).read_bytes() == body
    assert body_of(s3, bucket, other_rel) == b"someone else's\n"

    summary, _ = upload_tree(client, settings(tmp_path, bucket, multipart_threshold_mib=5, overwrite=True), workers=1)
    assert summary["uploaded"] == 1 and body_of(s3, bucket, other_rel) == body


def test_completion_carries_if_none_match_and_a_refused_upload_is_aborted(tmp_path, s3, bucket, client, s3_server):
    """An object that appears while the parts are uploading: CompleteMultipartUpload is refused (412),
    the CRT client aborts the upload, the other object stays."""
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(11 * MIB))
    s3.put_object(Bucket=bucket, Key="k/big.bin", Body=b"first\n")
    putter = crt_putter(client, bucket)
    s3_server.control("POST", "stats/reset")
    answer = putter.put_file("k/big.bin", str(path), 11 * MIB, crc64nvme=crc(path.read_bytes()).split(":")[1],
                             if_none_match=True)
    stats = s3_server.control("GET", "stats")
    assert (answer.status, answer.code) == (412, "PreconditionFailed")
    assert stats["UploadPart"] == 3 and stats["CompleteMultipartUpload"] == 1 and stats["AbortMultipartUpload"] == 1
    assert body_of(s3, bucket, "k/big.bin") == b"first\n"
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_crt_threads_keep_their_python_thread_state_between_requests(tmp_path, s3, bucket, client):
    """awscrt calls into Python from threads Python did not start; each such call used to build and tear
    down a thread state. Kept, what one request's callback leaves in a thread-local is there for the next
    request's on the same thread, a refused request (no headers callback) included."""
    import threading

    local = threading.local()
    seen: dict[int, list[int]] = {}
    answers: list[Any] = []
    done_all = threading.Event()
    total = max(40, 2 * (os.cpu_count() or 1))  # more requests than event-loop threads (one per core)

    def done(answer: Any) -> None:
        local.n = getattr(local, "n", 0) + 1
        seen.setdefault(threading.get_ident(), []).append(local.n)
        answers.append(answer)
        if len(answers) == total:
            done_all.set()

    s3.put_object(Bucket=bucket, Key="k/taken", Body=b"x")
    putter = crt_putter(client, bucket)
    for i in range(total):
        path = tmp_path / f"f{i}"
        path.write_bytes(b"%d" % i)
        key = "k/taken" if i % 10 == 0 else f"k/f{i}"
        putter.start(key, str(path), path.stat().st_size, crc64nvme=crc(path.read_bytes()).split(":")[1],
                     if_none_match=True, done=done)
    assert done_all.wait(60)
    refused = len(range(0, total, 10))
    assert sorted(a.status for a in answers) == [200] * (total - refused) + [412] * refused
    assert threading.get_ident() not in seen
    assert all(counts == list(range(1, len(counts) + 1)) for counts in seen.values()), seen
    assert max(len(counts) for counts in seen.values()) > 1


def test_a_forked_child_uploads_through_event_loops_of_its_own(tmp_path, s3, bucket, client):
    """The CRT's event-loop threads are shared per process; a child forked after an upload inherits the
    group but not its threads, so it starts its own (a request would otherwise wait for ever). The
    parent's client refuses to work in the child, in one clear error instead of that wait."""
    path = tmp_path / "f"
    path.write_bytes(b"fork\n")
    checksum = crc(b"fork\n").split(":")[1]
    putter = crt_putter(client, bucket)
    assert putter.put_file("k/parent", str(path), 5, crc64nvme=checksum, if_none_match=True).status == 200
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            try:
                putter.put_file("k/inherited", str(path), 5, crc64nvme=checksum, if_none_match=True)
                os._exit(5)
            except RuntimeError as exc:
                if "before a fork" not in str(exc):
                    os._exit(6)
            child = crt_putter(client, bucket)
            answer = child.put_file("k/child", str(path), 5, crc64nvme=checksum, if_none_match=True)
            os._exit(0 if answer.status == 200 else 3)
        finally:
            os._exit(4)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert done[0] == pid and os.waitstatus_to_exitcode(done[1]) == 0
    assert body_of(s3, bucket, "k/child") == b"fork\n" and body_of(s3, bucket, "k/parent") == b"fork\n"
    assert "k/inherited" not in keys_in(s3, bucket)


def test_the_next_run_aborts_uploads_a_killed_worker_left(tmp_path, s3, bucket, client):
    """Only ours (a layout key under key_prefix whose file is still in base_dir), only those started
    before this run; the file is then uploaded again."""
    rel = rel_at("berlin", NOW - timedelta(hours=1), "t")
    write(tmp_path, rel, b"killed mid-upload\n")
    ours = f"in/{rel}"
    theirs = "in/someone/else.bin"
    outside = f"other/{rel}"
    elsewhere = f"in/{rel_at('oslo', NOW - timedelta(hours=1), 't')}"  # another host's: no such file here
    for key in (ours, theirs, outside, elsewhere):
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC64NVME")["UploadId"]
        s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x" * 1000)

    before, _ = upload_tree(client, settings(tmp_path, bucket, key_prefix="in"), now=NOW - timedelta(days=1))
    assert (before["aborted_uploads"], before["uploads_left_alone"]) == (0, 0)  # started after that run's scan
    summary, _ = upload_tree(client, settings(tmp_path, bucket, key_prefix="in"),
                             now=datetime.now(UTC) + timedelta(seconds=5))

    assert (summary["aborted_uploads"], summary["uploads_left_alone"], summary["uploaded"]) == (1, 1, 1)
    assert sorted(u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == sorted(
        [theirs, outside, elsewhere])
    assert body_of(s3, bucket, ours) == b"killed mid-upload\n" and not (tmp_path / rel).exists()


def test_an_abort_the_network_drops_is_recorded_and_the_run_goes_on(tmp_path, s3, bucket, s3_server):
    """AbortMultipartUpload whose connection drops on every attempt: a traceback that stopped the command line
    (exit 1, nothing moved) and failed the DAG's scan. Like an abort S3 refuses, it is recorded (log,
    scan.json) and the run goes on: the file goes up as a new upload."""
    rel = rel_at("berlin", NOW - timedelta(hours=1), "t")
    write(tmp_path, rel, b"killed mid-upload\n")
    s3.create_multipart_upload(Bucket=bucket, Key=rel)
    time.sleep(1)
    client = client_from_args(endpoint_url=s3_server.endpoint_url, region_name="us-east-1", max_attempts=2)
    s3_server.control("POST", "faults", {"mode": "drop", "operation": "AbortMultipartUpload", "count": 2})
    try:
        summary, manifest = upload_tree(client, settings(tmp_path, bucket), tidy=False)
    finally:
        s3_server.control("POST", "faults", {"mode": "off"})
    assert (summary["uploaded"], summary["aborted_uploads"]) == (1, 0) and [r["status"] for r in manifest] == ["uploaded"]
    assert body_of(s3, bucket, rel) == b"killed mid-upload\n" and not (tmp_path / rel).exists()
    assert len(s3.list_multipart_uploads(Bucket=bucket)["Uploads"]) == 1


@pytest.mark.parametrize(("operation", "error"), [
    ("ListMultipartUploads", "cannot list incomplete multipart uploads: "),
    ("AbortMultipartUpload", ""),
])
def test_a_quiet_run_whose_abort_failed_keeps_its_record_and_says_what_failed(tmp_path, s3, bucket, client, s3_server,
                                                                              operation, error):
    """A refused ListMultipartUploads (no s3:ListBucketMultipartUploads) or AbortMultipartUpload, in a run that
    uploads nothing: the run folder of a quiet run is removed, so it was only in the task log. The run keeps
    scan.json and summary.json, whose abort_failed and abort_failures say what failed; it is not failed."""
    from include.upload.uploader import scan_task, tidy_task

    rel = rel_at("oslo", NOW - timedelta(hours=1), "t")
    write(tmp_path, rel, b"still being written\n", age_seconds=0)  # not ready: nothing to upload this run
    s3.create_multipart_upload(Bucket=bucket, Key=rel)
    time.sleep(1)
    conf = settings(tmp_path, bucket)
    run_dir = tmp_path.parent / f"{tmp_path.name}-run"
    s3_server.control("POST", "faults", {"mode": "denied", "operation": operation, "bucket": bucket, "count": 1})
    try:
        batches = scan_task(conf, run_dir, client=client)
    finally:
        s3_server.control("POST", "faults", {"mode": "off"})
    summary = tidy_task(conf, run_dir, batches)

    assert batches == [] and (summary["uploaded"], summary["skipped_not_ready"], summary["failed"]) == (0, 1, 0)
    assert (run_dir / "scan.json").exists() and (run_dir / "summary.json").exists()  # the run's record is kept
    assert (summary["abort_failed"], summary["aborted_uploads"]) == (1, 0)
    [failure] = summary["abort_failures"]
    assert failure["key"] == ("" if error else rel) and failure["error"].startswith(error)
    assert "AccessDenied" in failure["error"] or "Access Denied" in failure["error"]
    assert json.loads((run_dir / "summary.json").read_text())["abort_failures"] == [failure]
    assert problems(summary) is None  # recorded, not a red run: every file is still on disk or in S3
    assert (tmp_path / rel).exists() and len(s3.list_multipart_uploads(Bucket=bucket)["Uploads"]) == 1


def test_another_uploaders_multipart_upload_is_never_aborted(tmp_path, s3, bucket, client, caplog):
    """Another host (or a command line on another folder) uploads to the same bucket and prefix: its
    upload in progress is not this base_dir's, whether its folder is missing here or only reachable
    through a symbolic link (the scan follows none), and it completes after our runs."""
    import logging

    base, other_host = tmp_path / "base", tmp_path / "hostB-disk"
    base.mkdir()
    rel_b = f"hostB/{NOW:%Y}/{NOW.month}/{NOW.day}/{NOW.hour}/01-t.dat"  # the probe's unpadded key
    rel_c = rel_at("hostC", NOW - timedelta(hours=1), "t")
    write(other_host, rel_c, b"host C's file\n")
    (base / "hostC").symlink_to(other_host / "hostC")  # hostC's folder is visible here, but not ours
    parts: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for rel in (rel_b, rel_c):
        key = f"p15/{rel}"
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"a" * (5 * MIB))["ETag"]
        parts[key] = (upload_id, [{"PartNumber": 1, "ETag": etag}])

    caplog.set_level(logging.INFO, logger="include.upload.uploader")
    summaries = [upload_tree(client, settings(base, bucket, key_prefix="p15"),
                             now=datetime.now(UTC) + timedelta(seconds=5))[0] for _ in range(2)]  # every minute

    for key, (upload_id, done) in parts.items():  # the other uploader goes on and finishes
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=2, Body=b"b")["ETag"]
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                     MultipartUpload={"Parts": [*done, {"PartNumber": 2, "ETag": etag}]})
        assert body_of(s3, bucket, key) == b"a" * (5 * MIB) + b"b"
    assert (other_host / rel_c).read_bytes() == b"host C's file\n"
    for summary in summaries:
        assert (summary["aborted_uploads"], summary["uploads_left_alone"], summary["uploaded"]) == (0, 2, 0)
    assert "2 incomplete multipart upload(s) under the key prefix left alone: no such file in base_dir" in caplog.text


def test_a_second_uploader_on_the_same_folder_does_nothing_until_the_first_is_done(tmp_path, s3, bucket, s3_server):
    """A cron run that outlasts its minute: the next one would take the first one's in-flight multipart
    upload for abandoned and abort it. It touches nothing instead, and says so without "error:"."""
    from include.upload import lock

    rel = rel_at("berlin", NOW - timedelta(hours=1), "t")
    write(tmp_path, rel, b"the first run is uploading me\n")
    in_flight = s3.create_multipart_upload(Bucket=bucket, Key=rel)["UploadId"]  # the first run's, started earlier
    time.sleep(1)
    args = ("--base-dir", str(tmp_path), "--bucket", bucket, "--endpoint-url", s3_server.endpoint_url)
    with lock.holding(str(tmp_path)):  # the first run
        second = upload_cli(*args)
    assert second.returncode == lock.BUSY_EXIT, second.stderr
    assert second.stderr.strip().splitlines() == [
        f"s3ops upload: base_dir '{tmp_path}' is in use by another uploader (an s3ops upload command, or the "
        "s3_upload DAG): this run did nothing; the next one goes on"]
    assert second.stdout == "" and (tmp_path / rel).exists() and keys_in(s3, bucket) == set()
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [in_flight]

    third = upload_cli(*args)  # the first run is gone (killed): its upload is abandoned now
    assert third.returncode == 0, third.stderr
    assert json.loads(third.stdout)["aborted_uploads"] == 1 and not (tmp_path / rel).exists()
    assert body_of(s3, bucket, rel) == b"the first run is uploading me\n"


def test_the_dags_batches_share_the_folder_and_keep_other_uploaders_out(tmp_path, s3, bucket, client):
    """scan holds the folder alone (it aborts abandoned uploads); a run's mapped batches share it, and
    neither a scan nor the command line runs beside them."""
    from include.upload import lock
    from include.upload.uploader import scan_task, upload_batch_task

    rel = rel_at("oslo", NOW - timedelta(hours=1), "t")
    write(tmp_path, rel, b"x\n")
    abandoned = s3.create_multipart_upload(Bucket=bucket, Key=rel)["UploadId"]
    time.sleep(1)
    run_dir = tmp_path.parent / f"{tmp_path.name}-run"
    conf = settings(tmp_path, bucket)
    with lock.holding(str(tmp_path), shared=True):  # another run's batch
        with pytest.raises(lock.Busy):
            scan_task(conf, run_dir, client=client)
        with pytest.raises(lock.Busy):
            upload_tree(client, conf)  # the command line
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [abandoned]
    assert not run_dir.exists() and (tmp_path / rel).exists()

    batches = scan_task(conf, run_dir, client=client)
    with lock.holding(str(tmp_path), shared=True):  # a sibling batch
        counts = upload_batch_task(client, conf, run_dir, batches[0])
    assert counts["uploaded"] == 1 and s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_tidy_shares_the_folder_and_a_held_lock_only_leaves_the_empty_folders(tmp_path, s3, bucket, client):
    """The files have moved by then: their summary and manifest are written whatever the lock says."""
    from include.upload import lock
    from include.upload.uploader import scan_task, upload_batch_task

    rel = rel_at("oslo", NOW - timedelta(days=2), "t")
    write(tmp_path, rel, b"x\n")
    conf = settings(tmp_path, bucket)
    for held_alone in (True, False):
        run_dir = tmp_path.parent / f"{tmp_path.name}-run-{held_alone}"
        batches = scan_task(conf, run_dir, client=client)
        for batch in batches:
            upload_batch_task(client, conf, run_dir, batch)
        with lock.holding(str(tmp_path), shared=not held_alone):  # the command line, or a sibling batch
            summary = tidy_task(conf, run_dir, batches)
        hour_folder = (tmp_path / rel).parent
        if held_alone:
            assert summary["removed_folders"] == 0 and hour_folder.is_dir()
            assert json.loads((run_dir / "summary.json").read_text())["uploaded"] == 1
            assert (run_dir / "manifest.jsonl").exists()
        else:
            assert summary["removed_folders"] >= 2 and not hour_folder.parent.exists()  # the ended day and hour (and month…)


def test_a_dag_task_that_finds_the_folder_in_use_is_retried_not_failed_at_once(tmp_path, bucket, run_dag):
    from include.upload import lock

    write(tmp_path, rel_at("oslo", NOW - timedelta(hours=1), "t"), b"x\n")
    with lock.holding(str(tmp_path)):  # the command line, for the whole run
        result = run_dag("s3_upload", {"base_dir": str(tmp_path), "bucket": bucket}, retries=1)
    assert result.state == "failed" and result.task_states()[("scan", -1)] == "failed"
    tries = result.try_numbers()[("scan", -1)]
    assert tries == 2  # retried (a configuration error would fail at once, on try 1)


def test_a_retried_batch_aborts_the_multipart_upload_its_killed_try_left(tmp_path, s3, bucket, client):
    """A worker killed mid-multipart (SIGKILL, the OOM killer) is retried by Airflow within the same run. The
    retry uploaded the file and deleted it, so the next run's scan found no file at the key and left the
    killed try's upload alone for ever ("another uploader's"), its parts billed. The retry aborts it first."""
    from include.upload.uploader import scan_task, upload_batch_task

    rel = rel_at("oslo", NOW - timedelta(hours=1), "big")
    body = os.urandom(6 * MIB)
    write(tmp_path, rel, body)
    conf = settings(tmp_path, bucket, key_prefix="in", multipart_threshold_mib=5)
    run_dir = tmp_path.parent / f"{tmp_path.name}-run"
    batches = scan_task(conf, run_dir, client=client)
    # the batch's first try: its multipart upload started, a part sent, then the worker was killed
    killed = s3.create_multipart_upload(Bucket=bucket, Key=f"in/{rel}", ChecksumAlgorithm="CRC64NVME",
                                        ChecksumType="FULL_OBJECT")["UploadId"]
    s3.upload_part(Bucket=bucket, Key=f"in/{rel}", UploadId=killed, PartNumber=1, Body=body[: 5 * MIB])
    time.sleep(1)

    counts = upload_batch_task(client, conf, run_dir, batches[0], attempt=2)
    summary = tidy_task(conf, run_dir, batches)

    assert counts["uploaded"] == 1 and body_of(s3, bucket, f"in/{rel}") == body and not (tmp_path / rel).exists()
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert (summary["aborted_uploads"], summary["uploads_left_alone"]) == (1, 0)
    next_run = tmp_path.parent / f"{tmp_path.name}-run-2"
    assert scan_task(conf, next_run, client=client) == []  # nothing left for it to leave alone
    assert json.loads((next_run / "scan.json").read_text())["uploads_left_alone"] == 0


def test_every_trys_aborts_are_in_the_summary_even_of_a_try_that_died(tmp_path, s3, bucket, client, monkeypatch):
    """A batch killed twice mid-upload: try 2 aborts try 1's upload, starts its own and is killed before its
    result; try 3 aborts try 2's. The summary counted try 3's abort only (a result holds its own try's, and
    try 2 wrote none). Each try records its aborts before it uploads: the summary counts both."""
    from include.upload import uploader
    from include.upload.uploader import scan_task, upload_batch_task

    rel = rel_at("oslo", NOW - timedelta(hours=1), "t")
    write(tmp_path, rel, b"killed twice\n")
    conf = settings(tmp_path, bucket)
    run_dir = tmp_path.parent / f"{tmp_path.name}-run"
    batches = scan_task(conf, run_dir, client=client)
    s3.create_multipart_upload(Bucket=bucket, Key=rel)  # try 1's, killed
    time.sleep(1)

    def killed(*_: Any, **__: Any) -> Any:  # try 2 starts its own multipart upload, and dies
        s3.create_multipart_upload(Bucket=bucket, Key=rel)
        raise SystemExit("killed")

    with monkeypatch.context() as patch:
        patch.setattr(uploader, "upload_candidates", killed)
        with pytest.raises(SystemExit):
            upload_batch_task(client, conf, run_dir, batches[0], attempt=2)
    time.sleep(1)
    counts = upload_batch_task(client, conf, run_dir, batches[0], attempt=3)
    summary = tidy_task(conf, run_dir, batches)

    assert counts["uploaded"] == 1 and body_of(s3, bucket, rel) == b"killed twice\n"
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert summary["aborted_uploads"] == 2
    assert json.loads((run_dir / "summary.json").read_text())["aborted_uploads"] == 2


def test_each_trys_aborts_are_read_back_from_an_s3_artifact_root(s3, monkeypatch):
    """The record of every try's aborts lists a folder of the artifact store: on an s3:// root too."""
    from include.core import artifacts
    from include.upload.uploader import record_aborts, recorded_aborts

    store = f"artifacts-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=store)
    monkeypatch.setenv(artifacts.ROOT_ENV, f"s3://{store}/store")
    run = artifacts.run_dir("s3_upload", "r1")
    assert recorded_aborts(run) == {}
    for task, attempt, key in (("00000", 2, "a"), ("00000", 3, "b"), ("scan", 1, "c")):
        record_aborts(run, task, attempt, [{"key": key, "initiated": "t"}])
    record_aborts(run, "00001", 2, [])  # nothing aborted: nothing written
    assert recorded_aborts(run) == {"00000": [{"key": "a", "initiated": "t"}, {"key": "b", "initiated": "t"}],
                                    "scan": [{"key": "c", "initiated": "t"}]}


def test_the_aborts_of_a_scan_that_died_are_in_the_summary(tmp_path, s3, bucket, client, monkeypatch):
    """scan aborts the abandoned uploads, then dies before scan.json (a killed worker, a full disk): its retry
    finds nothing left to abort, and the abort was in no record."""
    from include.upload import uploader
    from include.upload.uploader import scan_task, upload_batch_task

    rel = rel_at("oslo", NOW - timedelta(hours=1), "t")
    write(tmp_path, rel, b"abandoned\n")
    s3.create_multipart_upload(Bucket=bucket, Key=rel)
    time.sleep(1)
    conf = settings(tmp_path, bucket)
    run_dir = tmp_path.parent / f"{tmp_path.name}-run"
    with monkeypatch.context() as patch:
        patch.setattr(uploader, "scan_base_dir", lambda *_, **__: (_ for _ in ()).throw(OSError("disk gone")))
        with pytest.raises(OSError):
            scan_task(conf, run_dir, client=client, attempt=1)
    batches = scan_task(conf, run_dir, client=client, attempt=2)
    for batch in batches:
        upload_batch_task(client, conf, run_dir, batch)
    summary = tidy_task(conf, run_dir, batches)
    assert json.loads((run_dir / "scan.json").read_text())["aborted_uploads"] == []  # try 2's: nothing left
    assert (summary["aborted_uploads"], summary["uploaded"]) == (1, 1)


def test_dag_scan_aborts_abandoned_uploads_and_records_them(tmp_path, s3, bucket, run_dag):
    key = rel_at("oslo", NOW - timedelta(hours=2), "killed")
    write(tmp_path, key, b"its upload was killed\n")  # still on disk, as a killed worker leaves it
    s3.create_multipart_upload(Bucket=bucket, Key=key)
    time.sleep(1)
    result = run_dag("s3_upload", {"base_dir": str(tmp_path), "bucket": bucket})
    assert result.state == "success", result.task_states()
    scan = json.loads((result.artifacts() / "scan.json").read_text())
    assert [u["key"] for u in scan["aborted_uploads"]] == [key] and scan["uploads_left_alone"] == 0
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert body_of(s3, bucket, key) == b"its upload was killed\n"


@pytest.mark.slow
def test_sigkill_during_multipart_uploads_never_loses_a_file(tmp_path, s3, bucket, s3_server):
    """Kill upload processes while big files are in flight (parts sent, completion pending); after each
    kill every file is on disk or intact in S3; the clean run that follows aborts what was left."""
    rng = random.Random(16)
    truth = {rel_at("berlin", NOW - timedelta(hours=1, minutes=i), f"big{i}"): rng.randbytes(7 * MIB + i) for i in range(8)}
    for rel, body in truth.items():
        write(tmp_path, rel, body)
    cmd = [sys.executable, "-m", "include.upload.uploader", "--base-dir", str(tmp_path), "--bucket", bucket,
           "--endpoint-url", s3_server.endpoint_url, "--settle-seconds", "0", "--workers", "4", "--no-tidy",
           "--multipart-threshold-mib", "5"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    left_incomplete = 0
    for attempt in range(6):
        if sum(1 for _ in tmp_path.rglob("*.dat")) <= 2:
            break
        s3_server.control("POST", "stats/reset")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30  # wait until parts are flowing, then kill at a random instant
        while s3_server.control("GET", "stats").get("UploadPart", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        # the first kill lands as the parts start (uploads surely open, however fast the machine), later ones anywhere
        time.sleep(rng.uniform(0, 0.8) if attempt else 0)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        left_incomplete += len(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))
        for rel, body in truth.items():
            if not (tmp_path / rel).exists():
                assert body_of(s3, bucket, rel) == body, f"{rel} is gone from disk and not intact in S3"
            else:
                assert (tmp_path / rel).read_bytes() == body
    assert left_incomplete >= 1, "no kill landed while a multipart upload was open"

    open_before = len(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))  # left by the last kill
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["aborted_uploads"] == open_before  # (earlier kills' ones: by the next killed run)
    assert keys_in(s3, bucket) == set(truth) and not list(tmp_path.rglob("*.dat"))
    assert {k: body_of(s3, bucket, k) for k in truth} == truth
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_failed_batch_still_leaves_the_runs_record_and_fails_the_run(tmp_path, s3, bucket, run_dag, monkeypatch):
    """One upload_batch failing made tidy upstream_failed: no summary, no manifest, no asset event for the
    files the other batches had already moved. Now its last try records the failure (earlier tries raise,
    so Airflow retries), tidy records the rest, and the run fails naming the batch."""
    import include.upload.uploader as upload

    rels = [rel_at("oslo", NOW - timedelta(hours=1, minutes=i), f"t{i}") for i in range(3)]
    for rel in rels:
        write(tmp_path, rel, rel.encode())
    monkeypatch.setattr(upload, "BATCH_SIZE", 1)  # one file per batch: three mapped tasks
    real = upload.upload_batch_task

    def one_fails(client, settings, run_dir, batch, **kw):
        if batch == "00001":
            raise RuntimeError("worker lost")
        return real(client, settings, run_dir, batch, **kw)

    monkeypatch.setattr(upload, "upload_batch_task", one_fails)
    result = run_dag("s3_upload", {"base_dir": str(tmp_path), "bucket": bucket}, retries=1)
    states = result.task_states()
    assert result.state == "failed" and states[("tidy", -1)] == "success" and states[("check", -1)] == "failed"
    assert result.try_numbers()[("upload_batch", 1)] == 2  # retried first, recorded on the last try
    summary = json.loads((result.artifacts() / "summary.json").read_text())
    assert summary["uploaded"] == 2 and summary["batches_failed"] == 1
    assert [f["path"] for f in summary["failures"]] == ["batch 00001"]
    assert summary["failures"][0]["error"].startswith("RuntimeError: worker lost; its upload_batch task failed")
    kept = [rel for rel in rels if (tmp_path / rel).exists()]
    assert len(kept) == 1  # the failed batch's file is still there for the next run
    assert [e["uploaded"] for e in _asset_events(f"s3://{bucket}/")] == [2]


def test_a_file_written_to_after_its_upload_is_kept_and_the_error_says_what_to_do(tmp_path, s3, bucket, client,
                                                                                   monkeypatch):
    """A producer appending after settle_seconds: the file is kept (never deleted with bytes S3 lacks), and
    the outcome tells the operator why the next runs will report a conflict and what to do."""
    import include.upload.uploader as upload

    rel = rel_at("berlin", NOW - timedelta(hours=1), "late")
    path = write(tmp_path, rel, b"first part\n")
    st = path.stat()
    real = upload.put_verified

    def append_then_verify(answer, local):
        with path.open("ab") as fh:  # the producer writes more after the PUT, before the delete
            fh.write(b"second part\n")
        return real(answer, local)

    monkeypatch.setattr(upload, "put_verified", append_then_verify)
    outcome = Uploader(client, settings(tmp_path, bucket), datetime.now(UTC)).upload_one(
        Candidate(NOW, rel, st.st_size, st.st_mtime_ns, st.st_ino))
    assert outcome.status == "failed" and outcome.error.startswith("changed after its upload")
    assert "overwrite" in outcome.error and path.read_bytes() == b"first part\nsecond part\n"
    assert body_of(s3, bucket, rel) == b"first part\n"


@pytest.mark.parametrize("change", ["hard link", "chmod", "rewritten, mtime put back"])
def test_only_a_change_of_content_after_the_upload_keeps_the_file(tmp_path, s3, bucket, client, monkeypatch, change):
    """Between the upload and the delete the file's inode change time moves with its content, and also when
    only its metadata changes: a backup tool hard-linking the outbox (cp -al, rsnapshot), a chmod. Those
    failed the file ("changed after its upload … the next runs report a conflict", a red run) though S3
    held exactly its bytes. The file is read again: the same bytes are deleted, other bytes kept."""
    import include.upload.uploader as upload

    rel = rel_at("berlin", NOW - timedelta(hours=1), "t")
    path = write(tmp_path, rel, b"the minute's data\n")
    st = path.stat()
    real = upload.put_verified

    def changed_then_verify(answer, local):
        if change == "hard link":
            os.link(path, tmp_path.parent / f"{tmp_path.name}-backup.dat")
        elif change == "chmod":
            path.chmod(0o640)
        else:  # same size, other bytes, the mtime put back (cp -p, touch -r)
            path.write_bytes(b"THE MINUTE'S DATA\n")
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        return real(answer, local)

    monkeypatch.setattr(upload, "put_verified", changed_then_verify)
    outcome = Uploader(client, settings(tmp_path, bucket), datetime.now(UTC)).upload_one(
        Candidate(NOW, rel, st.st_size, st.st_mtime_ns, st.st_ino))
    assert body_of(s3, bucket, rel) == b"the minute's data\n"
    if change == "rewritten, mtime put back":
        assert outcome.status == "failed" and outcome.error.startswith("changed after its upload")
        assert path.read_bytes() == b"THE MINUTE'S DATA\n"
    else:
        assert (outcome.status, outcome.error) == ("uploaded", "") and not path.exists()


def _private_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A CA of its own and a certificate it signed for 127.0.0.1: (CA, certificate, key) as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now, day = datetime.now(UTC), timedelta(days=1)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "s3ops test CA")])

    def signed(subject: Any, public_key: Any, *extensions: tuple[Any, bool]) -> Any:
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(public_key)
                   .serial_number(x509.random_serial_number()).not_valid_before(now - day).not_valid_after(now + day))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(ca_key, hashes.SHA256())

    ca = signed(ca_name, ca_key.public_key(), (x509.BasicConstraints(ca=True, path_length=None), True))
    cert = signed(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), key.public_key(),
                  (x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False))
    pem = serialization.Encoding.PEM
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(cert.public_bytes(pem))
    paths[2].write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


_METHODS = (b"GET", b"PUT", b"HEAD", b"POST", b"DELETE")


def _relay(source: Any, sink: Any, requests: list[bytes] | None = None) -> None:
    """Copy ``source`` to ``sink`` until one end closes, then close both; keep in ``requests`` the first line
    of each chunk that starts a request (enough to tell the requests of a test apart)."""
    import socket

    with suppress(OSError):
        while data := source.recv(65536):
            if requests is not None and data.split(b" ", 1)[0] in _METHODS:
                requests.append(data.split(b"\r\n", 1)[0])
            sink.sendall(data)
    for end in (source, sink):
        with suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)


def _both_ways(client: Any, server: Any, requests: list[bytes] | None = None) -> None:
    import threading

    back = threading.Thread(target=_relay, args=(server, client), daemon=True)
    back.start()
    _relay(client, server, requests)
    back.join(10)


def _serving(listener: Any, serve: Callable[[Any], None]) -> None:
    """Accept connections on ``listener`` for the rest of the session, each served on a daemon thread."""
    import threading

    def accept() -> None:
        while True:
            threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def _tls_front(cert: Path, key: Path, backend: str, requests: dict[int, list[bytes]] | None = None) -> str:
    """An https:// endpoint in front of the local S3 server (plain HTTP), with ``cert``: an S3-compatible
    server behind a company CA. ``requests``: per client port, the request lines its connection carried."""
    import socket
    import ssl
    from urllib.parse import urlsplit

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    target = urlsplit(backend)

    def serve(raw: Any) -> None:
        lines = None if requests is None else requests.setdefault(raw.getpeername()[1], [])
        try:
            tls = ctx.wrap_socket(raw, server_side=True)
        except OSError:  # a client that refused our certificate
            raw.close()
            return
        with tls, socket.create_connection((target.hostname, target.port)) as plain:
            _both_ways(tls, plain, lines)

    _serving(listener, serve)
    return f"https://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("verify", ["the private CA", False], ids=["private-ca", "verify-off"])
def test_the_crt_client_verifies_tls_as_the_connection_says(tmp_path, s3, bucket, s3_server, verify):
    """An S3-compatible endpoint behind a private CA, given in the Airflow connection's ``verify`` extra (the
    hook makes the botocore client with it; or no verification, verify: false). HeadBucket passed, and every
    upload failed: the CRT client knew only AWS_CA_BUNDLE ("TLS (SSL) negotiation failed")."""
    import botocore.session
    from botocore.config import Config

    ca, cert, key = _private_ca(tmp_path)
    endpoint = _tls_front(cert, key, s3_server.endpoint_url)
    client = botocore.session.Session().create_client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", verify=str(ca) if verify else False,
        config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 2}))
    rel = rel_at("berlin", NOW - timedelta(hours=1), "t")
    write(tmp_path / "base", rel, b"over TLS\n")

    summary, manifest = upload_tree(client, settings(tmp_path / "base", bucket), tidy=False)

    assert (summary["uploaded"], summary["failed"]) == (1, 0), manifest
    assert body_of(s3, bucket, rel) == b"over TLS\n"


def test_with_verify_on_the_crt_client_trusts_the_bundle_botocore_trusts_not_the_systems(tmp_path, s3, bucket,
                                                                                        s3_server, monkeypatch):
    """With ``verify`` left on, botocore checks TLS against certifi's bundle (``botocore.httpsession.where``);
    the CRT client checked against the system's trust store, so the two could disagree. Here "certifi's
    bundle" is the private CA's (botocore's lookup pointed at it; the system's store does not hold it):
    botocore's HeadBucket passed and every upload failed TLS negotiation."""
    import botocore.httpsession
    import certifi

    from include.aws.crt import tls_verify_of

    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)  # botocore honours it: some hosts set it
    ca, cert, key = _private_ca(tmp_path)
    default = client_from_args(endpoint_url="https://127.0.0.1:1", region_name="us-east-1")
    assert tls_verify_of(default) == certifi.where()  # what botocore trusts when nothing is configured
    monkeypatch.setattr(botocore.httpsession, "where", lambda: str(ca))
    endpoint = _tls_front(cert, key, s3_server.endpoint_url)
    client = client_from_args(endpoint_url=endpoint, region_name="us-east-1", max_attempts=2)
    assert tls_verify_of(client) == str(ca)
    client.head_bucket(Bucket=bucket)  # botocore trusts it
    rel = rel_at("berlin", NOW - timedelta(hours=1), "t")
    write(tmp_path / "base", rel, b"certifi's CAs\n")

    summary, manifest = upload_tree(client, settings(tmp_path / "base", bucket), tidy=False)

    assert (summary["uploaded"], summary["failed"]) == (1, 0), manifest
    assert body_of(s3, bucket, rel) == b"certifi's CAs\n"


def _forwarding_proxy(target: str) -> tuple[str, list[bytes], set[int]]:
    """An HTTP proxy: a plain-HTTP request is relayed to ``target`` (the local S3 server, which takes the
    absolute request targets a proxy is sent), a ``CONNECT host:port`` tunnels to that address. Returns its
    URL, the request lines it saw (a tunnel's CONNECT only: the rest is TLS) and the local ports of the
    connections it opened (so an endpoint can tell that a connection came through it)."""
    import socket
    from urllib.parse import urlsplit

    seen: list[bytes] = []
    opened: set[int] = set()
    listener = socket.create_server(("127.0.0.1", 0))
    back_to = urlsplit(target)

    def serve(client: Any) -> None:
        with client:
            first = client.recv(65536)
            line = first.split(b"\r\n", 1)[0]
            tunnel = line.startswith(b"CONNECT ")
            if tunnel:
                host, _, port = line.split(b" ")[1].decode().rpartition(":")
                address = (host.strip("[]"), int(port))
            else:
                address = (str(back_to.hostname), int(back_to.port or 80))
            with socket.create_connection(address) as server:
                opened.add(server.getsockname()[1])
                seen.append(line)
                if tunnel:  # the request's headers end the first chunk: a CONNECT has no body
                    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                else:
                    server.sendall(first)
                _both_ways(client, server, None if tunnel else seen)

    _serving(listener, serve)
    return f"http://127.0.0.1:{listener.getsockname()[1]}", seen, opened


def test_a_proxy_only_the_connection_names_is_refused_one_in_the_environment_carries_both_clients(
        tmp_path, s3, bucket, s3_server, monkeypatch):
    """The connection's ``config_kwargs.proxies`` reached neither client: the hook's own config replaced the
    connection's whole. botocore takes it now; the CRT client cannot be given a proxy (awscrt's S3Client has
    no such option; its native code reads HTTP(S)_PROXY from the environment), so the run is refused in one
    line, naming the fix, instead of uploading around the proxy. A proxy in the environment carries both."""
    from include.aws.client import client_from_connection
    from include.upload.uploader import UploadError, check_bucket
    from scripts.stack import LOCAL_AWS_KEY, LOCAL_AWS_SECRET

    proxy, seen, _ = _forwarding_proxy(s3_server.endpoint_url)
    host = proxy.split("://")[1]
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_PROXIED", json.dumps({
        "conn_type": "aws", "login": LOCAL_AWS_KEY, "password": LOCAL_AWS_SECRET,
        "extra": {"region_name": "us-east-1", "endpoint_url": s3_server.endpoint_url,
                  "config_kwargs": {"proxies": {"http": f"http://user:secret@{host}/"}}}}))
    client = client_from_connection("aws_proxied")
    client.head_bucket(Bucket=bucket)
    assert seen == [f"HEAD {s3_server.endpoint_url}/{bucket} HTTP/1.1".encode()]  # botocore went through it
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 10}  # the project's, still

    with pytest.raises(UploadError) as refused:
        check_bucket(client, bucket)
    assert str(refused.value) == (
        f"the connection sends http requests to the bucket through the proxy {proxy}, which the CRT client that "
        "uploads cannot be given (awscrt reads a proxy only from the environment): set HTTP_PROXY in the workers' "
        "environment instead (both clients use it) and remove proxies from the connection's config_kwargs")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # another proxy in the environment: refused too
    with pytest.raises(UploadError, match="where HTTP_PROXY names another"):
        check_bucket(client, bucket)
    monkeypatch.setenv("http_proxy", host)  # the same one (as a bare host:port), where lower case wins
    check_bucket(client, bucket)
    monkeypatch.delenv("HTTP_PROXY")
    monkeypatch.delenv("http_proxy")

    seen.clear()
    rel = rel_at("berlin", NOW - timedelta(hours=1), "t")
    path = write(tmp_path / "base", rel, b"through the proxy\n")
    done = upload_cli("--base-dir", str(tmp_path / "base"), "--bucket", bucket, "--endpoint-url",
                      s3_server.endpoint_url, HTTP_PROXY=proxy)
    assert done.returncode == 0, done.stderr
    assert not path.exists() and body_of(s3, bucket, rel) == b"through the proxy\n"
    assert f"PUT {s3_server.endpoint_url}/{bucket}/{rel} HTTP/1.1".encode() in seen, seen  # the CRT client's PUT


def test_https_proxy_in_the_environment_carries_both_clients_through_a_tunnel(tmp_path, s3, bucket, s3_server):
    """Over TLS (AWS's case), through ``HTTPS_PROXY``: botocore's HeadBucket and the CRT client's PUT both go
    through the proxy's CONNECT tunnel; the endpoint sees no connection but the proxy's."""
    ca, cert, key = _private_ca(tmp_path)
    requests: dict[int, list[bytes]] = {}
    endpoint = _tls_front(cert, key, s3_server.endpoint_url, requests)
    proxy, seen, opened = _forwarding_proxy(s3_server.endpoint_url)
    rel = rel_at("berlin", NOW - timedelta(hours=1), "t")
    path = write(tmp_path / "base", rel, b"tunnelled\n")

    done = upload_cli("--base-dir", str(tmp_path / "base"), "--bucket", bucket, "--endpoint-url", endpoint,
                      HTTPS_PROXY=proxy, AWS_CA_BUNDLE=str(ca), NO_PROXY="", no_proxy="")

    assert done.returncode == 0, done.stderr
    assert not path.exists() and body_of(s3, bucket, rel) == b"tunnelled\n"
    assert seen and all(line.startswith(f"CONNECT {endpoint.split('://')[1]} ".encode()) for line in seen), seen
    assert requests and set(requests) <= opened, (requests, opened)  # every connection came through the proxy
    lines = [line for conn in requests.values() for line in conn]
    assert f"HEAD /{bucket} HTTP/1.1".encode() in lines, lines  # botocore's
    assert f"PUT /{bucket}/{rel} HTTP/1.1".encode() in lines, lines  # the CRT client's


def test_an_endpoint_that_stops_answering_is_given_up_on_and_every_file_kept(tmp_path, s3, bucket, client,
                                                                            s3_server, monkeypatch):
    """With the real CRT client: uploads that get no answer for STALL_SECONDS are cancelled (the batch no
    longer waits for ever), their files kept, and the rest not sent."""
    import include.upload.uploader as upload

    monkeypatch.setattr(upload, "STALL_SECONDS", 1)
    rels = [rel_at("oslo", NOW - timedelta(hours=1, minutes=m), "t") for m in range(6)]
    for rel in rels:
        write(tmp_path, rel, rel.encode())
    s3_server.control("POST", "latency", {"seconds": 4})  # every request answers after 4 s: stalled at 1 s
    try:
        summary, manifest = upload_tree(client, settings(tmp_path, bucket), workers=2, tidy=False)
    finally:
        s3_server.control("POST", "latency", {"seconds": 0})
    assert summary["uploaded"] == 0 and summary["failed"] == 6
    errors = sorted(r["error"].split(":")[0] for r in manifest)
    assert errors == ["no answer and no progress from S3 for 1 s"] * 2 + ["not sent"] * 4, errors
    assert all((tmp_path / rel).exists() for rel in rels)
