"""How the uploader decides that an object holds exactly the local file (no server needed)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from include.upload.settings import resolve_settings
from include.upload.uploader import read_local, same_content, summarize

BODY = b"berlin temperature 21.5\n" * 40


@pytest.fixture
def local(tmp_path):
    path = tmp_path / "f.dat"
    path.write_bytes(BODY)
    with path.open("rb") as fh:
        data, info = read_local(fh)
    assert data == BODY
    return info


def head(**over):
    base = {
        "ContentLength": len(BODY),
        "ETag": f'"{hashlib.md5(BODY).hexdigest()}"',
        "ChecksumSHA256": base64.b64encode(hashlib.sha256(BODY).digest()).decode(),
    }
    return {**base, **over}


def test_read_local_hashes_in_one_pass(local):
    assert local.size == len(BODY)
    assert local.md5_hex == hashlib.md5(BODY).hexdigest()
    assert local.checksum == "sha256:" + hashlib.sha256(BODY).hexdigest()


def test_same_content_when_etag_and_checksum_agree(local):
    assert same_content(head(), local) is True
    assert same_content(head(ChecksumSHA256=None), local) is True  # uploaded by another tool: the ETag is the MD5


@pytest.mark.parametrize(
    "over",
    [
        {"ContentLength": len(BODY) - 1},
        {"ETag": '"' + "0" * 32 + '"'},  # a truncated/different body stored under our checksum
        {"ChecksumSHA256": base64.b64encode(b"x" * 32).decode()},
    ],
)
def test_any_disagreement_means_different(local, over):
    assert same_content(head(**over), local) is False


def test_kms_etag_is_not_an_md5_so_the_checksum_decides(local):
    kms = head(ETag='"' + "a" * 32 + '"', ServerSideEncryption="aws:kms")
    assert same_content(kms, local) is True
    assert same_content({**kms, "ChecksumSHA256": base64.b64encode(b"y" * 32).decode()}, local) is False


def test_cannot_tell_without_md5_etag_or_checksum(local):
    multipart = head(ETag='"' + "b" * 32 + '-3"', ChecksumSHA256=None)
    assert same_content(multipart, local) is None  # the caller downloads and compares


def test_read_local_streams_big_files_without_keeping_them(tmp_path, monkeypatch):
    import include.upload.uploader as upload

    monkeypatch.setattr(upload, "IN_MEMORY_MAX", len(BODY) - 1)
    path = tmp_path / "big.dat"
    path.write_bytes(BODY)
    with path.open("rb") as fh:
        data, info = read_local(fh)
    assert data is None
    assert (info.size, info.md5_hex) == (len(BODY), hashlib.md5(BODY).hexdigest())


def test_summary_counts_and_lists():
    from include.upload.uploader import BatchResult

    settings = resolve_settings({"base_dir": "/d", "bucket": "b-1", "key_prefix": "p"}, None)[0]
    scan = {"not_ready": 2, "deferred": 5, "malformed": [{"path": "/d/x", "reason": "r"}],
            "errors": [{"path": "/d/l", "error": "cannot list"}]}
    one = BatchResult(uploaded=[{"key": "p/a", "size": 3, "checksum": "sha256:00", "uploaded_at": "t"}],
                      already_present=1, conflicts=[{"key": "p/c", "path": "/d/c"}],
                      failed=[{"path": "/d/f", "error": "boom"}], not_ready=[{"path": "/d/n", "why": "changed"}], bytes=3)
    summary, manifest = summarize(settings, scan, [one, BatchResult()])
    assert {k: summary[k] for k in ("uploaded", "skipped_not_ready", "malformed", "conflicts", "failed", "bytes")} == {
        "uploaded": 1, "skipped_not_ready": 3, "malformed": 1, "conflicts": 1, "failed": 2, "bytes": 3}
    assert summary["malformed_paths"] == ["/d/x"] and summary["conflict_keys"] == ["p/c"]
    assert summary["failed_paths"] == ["/d/l", "/d/f"] and summary["deferred"] == 5
    assert (summary["bucket"], summary["key_prefix"]) == ("b-1", "p/")
    assert manifest == one.uploaded
