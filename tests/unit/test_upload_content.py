"""How the uploader decides that an object holds exactly the local file, and what a run reports (no server)."""

from __future__ import annotations

import base64

import pytest
from awscrt.checksums import crc64nvme

from include.aws.crt import Answer
from include.upload.settings import resolve_settings
from include.upload.uploader import (
    BatchResult,
    Outcome,
    found_nothing,
    put_verified,
    read_local,
    same_content,
    summarize,
)

BODY = b"berlin temperature 21.5\n" * 40
CRC = base64.b64encode(crc64nvme(BODY).to_bytes(8, "big")).decode()


@pytest.fixture
def local(tmp_path):
    path = tmp_path / "f.dat"
    path.write_bytes(BODY)
    with path.open("rb") as fh:
        return read_local(fh)


def head(**over):
    return {"ContentLength": len(BODY), "ETag": '"whatever"', "ChecksumCRC64NVME": CRC, "ChecksumType": "FULL_OBJECT", **over}


def test_read_local_computes_the_crc64nvme_s3_keeps(local, tmp_path, monkeypatch):
    assert (local.size, local.crc64nvme, local.checksum) == (len(BODY), CRC, f"crc64nvme:{CRC}")
    import include.upload.uploader as upload

    monkeypatch.setattr(upload, "READ_CHUNK", 7)  # chunked reads give the same checksum
    with (tmp_path / "f.dat").open("rb") as fh:
        assert read_local(fh).crc64nvme == CRC


def test_same_content_when_size_and_full_object_checksum_agree(local):
    assert same_content(head(), local) is True
    assert same_content(head(ChecksumType=None), local) is True  # a single PUT: the checksum is the object's


@pytest.mark.parametrize("over", [{"ContentLength": len(BODY) - 1},
                                  {"ChecksumCRC64NVME": base64.b64encode(b"\0" * 8).decode()}])
def test_any_disagreement_means_different(local, over):
    assert same_content(head(**over), local) is False


def test_cannot_tell_without_a_full_object_checksum(local):
    assert same_content(head(ChecksumCRC64NVME=None), local) is None  # the caller downloads and compares
    assert same_content(head(ChecksumType="COMPOSITE"), local) is None


def test_only_an_echo_of_our_checksum_verifies_a_put(local):
    assert put_verified(Answer(200, {"x-amz-checksum-crc64nvme": CRC}), local)
    assert not put_verified(Answer(200, {}), local)  # a multipart upload's answer: HeadObject decides
    assert not put_verified(Answer(200, {"x-amz-checksum-crc64nvme": base64.b64encode(b"\1" * 8).decode()}), local)


def test_summary_and_manifest_record_every_file():
    settings = resolve_settings({"base_dir": "/d", "bucket": "b-1", "key_prefix": "p"}, None)[0]
    scan = {"not_ready": 2, "deferred": 5, "malformed_total": 4, "malformed": [{"path": "/d/x", "reason": "r"}],
            "errors": [{"path": "/d/l", "error": "cannot list"}], "errors_total": 1,
            "aborted_uploads": [{"key": "p/a", "initiated": "t"}], "uploads_left_alone": 2}
    one = BatchResult()
    for outcome in (Outcome("uploaded", "a", "p/a", 3, "crc64nvme:x", "t"), Outcome("already_present", "b", "p/b", 4),
                    Outcome("conflict", "c", "p/c", 1), Outcome("failed", "f", "p/f", 1, error="boom"),
                    Outcome("not_ready", "n", "p/n", 1, error="changed"),
                    Outcome("uploaded_not_deleted", "u", "p/u", 5, "crc64nvme:y", "t", error="delete failed")):
        one.add(outcome, "/d")
    summary, manifest = summarize(settings, scan, [one, BatchResult()])
    assert {k: summary[k] for k in ("uploaded", "skipped_not_ready", "malformed", "conflicts", "failed", "bytes")} == {
        "uploaded": 3, "skipped_not_ready": 3, "malformed": 4, "conflicts": 1, "failed": 3, "bytes": 12}
    assert (summary["local_delete_failed"], summary["aborted_uploads"], summary["already_present"]) == (1, 1, 1)
    assert summary["uploads_left_alone"] == 2  # another uploader's incomplete uploads: counted, not aborted
    assert summary["malformed_paths"] == ["/d/x"] and summary["conflict_keys"] == ["p/c"]
    assert summary["failed_paths"] == ["/d/l", "/d/f", "/d/u"] and summary["deferred"] == 5
    assert (summary["bucket"], summary["key_prefix"]) == ("b-1", "p/")
    assert [(r["key"], r["status"]) for r in manifest] == [
        ("p/a", "uploaded"), ("p/b", "already_present"), ("p/c", "conflict"), ("p/f", "failed"), ("p/n", "not_ready"),
        ("p/u", "uploaded_not_deleted")]
    assert manifest[3]["error"] == "boom" and manifest[0]["checksum"] == "crc64nvme:x"


def test_an_abort_that_failed_in_the_scan_or_a_retried_batch_is_reported_and_keeps_the_run():
    """Rows with an error (the listing refused, an abort refused or lost) are no abort: they were counted
    nowhere, and a run with nothing else left no folder. They are abort_failed / abort_failures now."""
    settings = resolve_settings({"base_dir": "/d", "bucket": "b-1", "key_prefix": "p"}, None)[0]
    scan = {"aborted_uploads": [{"key": "", "initiated": "", "error": "cannot list incomplete multipart uploads: "
                                                                        "Access Denied"}]}
    retried = BatchResult(aborted_uploads=[{"key": "p/a", "initiated": "t1"},
                                           {"key": "p/b", "initiated": "t2", "error": "connection dropped"}])
    summary, _ = summarize(settings, scan, [retried])
    assert (summary["aborted_uploads"], summary["abort_failed"]) == (1, 2)
    assert summary["abort_failures"] == [
        {"key": "", "initiated": "", "error": "cannot list incomplete multipart uploads: Access Denied"},
        {"key": "p/b", "initiated": "t2", "error": "connection dropped"}]
    quiet, _ = summarize(settings, scan, [])
    assert quiet["abort_failed"] == 1 and not found_nothing(quiet, [])
    assert found_nothing(summarize(settings, {}, [])[0], [])
    later = BatchResult(aborted_uploads=[{"key": "p/b", "initiated": "t2"}])  # the next try aborted it
    assert summarize(settings, {}, [BatchResult(aborted_uploads=[*retried.aborted_uploads, *later.aborted_uploads])]
                     )[0]["abort_failed"] == 0
