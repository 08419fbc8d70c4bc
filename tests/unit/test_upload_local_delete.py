"""The local delete after a verified upload deletes exactly the file that was uploaded: not one a producer
renamed over it (an atomic rewrite), not one rewritten with its mtime put back, and never a path a batch
edited in the artifact store points outside the layout. No server: the fake CRT client accepts every upload."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from include.aws.crt import Answer
from include.upload.layout import scan_base_dir
from include.upload.settings import resolve_settings
from include.upload.uploader import (
    CHANGED_AFTER_UPLOAD,
    REPLACED_AFTER_UPLOAD,
    UPLOADED,
    Pending,
    Uploader,
    UploadError,
    _candidates,
)
from tests.unit.test_upload_answers import FakePutter

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
REL = "berlin/2026/03/01/10/05-t.dat"
OLD_NS = int((NOW - timedelta(hours=1)).timestamp() * 1e9)


def _write(path: Path, body: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    os.utime(path, ns=(OLD_NS, OLD_NS))


def _uploaded(base: Path) -> tuple[Uploader, Pending, Answer]:
    """The file read and sent; S3's answer in hand, its local delete not yet done."""
    settings, _ = resolve_settings({"base_dir": str(base), "bucket": "my-bucket", "settle_seconds": 0}, None,
                                   by_deployer=True)
    putter = FakePutter()
    uploader = Uploader(client=None, settings=settings, scanned_at=NOW, putter=putter)  # type: ignore[arg-type]
    step = uploader.prepare(scan_base_dir(base, NOW, 0, 100).eligible[0])
    assert isinstance(step, Pending)
    answers: list[Answer] = []
    putter.start(step.key, step.sent_path, step.local.size, crc64nvme=step.local.crc64nvme, if_none_match=True,
                 done=answers.append)
    putter.pool.shutdown(wait=True)
    return uploader, step, answers[0]


def test_a_verified_upload_deletes_the_file_and_leaves_no_private_name(tmp_path):
    _write(tmp_path / REL, b"minute 05")
    uploader, step, answer = _uploaded(tmp_path)
    assert uploader.finish(step, answer).status == UPLOADED
    assert os.listdir(tmp_path / "berlin/2026/03/01/10") == []


def test_a_file_renamed_over_the_uploaded_one_just_before_its_delete_is_kept(tmp_path, monkeypatch):
    """The producer rewrites the minute atomically (write a temporary file, rename it over the name) in the
    instant between the delete's check and its unlink: the new file was never uploaded and must stay."""
    _write(tmp_path / REL, b"minute 05, first write")
    uploader, step, answer = _uploaded(tmp_path)
    folder = tmp_path / "berlin/2026/03/01/10"
    real_rename, raced = os.rename, []

    def producer_first(src, dst, *args, **kwargs):
        if src == "05-t.dat" and not raced:  # the uploader's own rename: the producer wins the race
            raced.append(True)
            _write(folder / ".tmp-05", b"minute 05, rewritten")
            real_rename(folder / ".tmp-05", folder / "05-t.dat")
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", producer_first)
    outcome = uploader.finish(step, answer)
    assert raced and outcome.status == "failed" and outcome.error == REPLACED_AFTER_UPLOAD
    assert sorted(os.listdir(folder)) == ["05-t.dat"]  # put back under its name; the private name is gone
    assert (folder / "05-t.dat").read_bytes() == b"minute 05, rewritten"


def test_a_rewrite_that_put_the_mtime_back_is_not_deleted(tmp_path):
    """cp -p, touch -r or rsync -t --inplace restore the mtime after writing; the ctime still moves."""
    _write(tmp_path / REL, b"minute 05, first write")
    uploader, step, answer = _uploaded(tmp_path)
    with open(tmp_path / REL, "r+b") as fh:  # same size, same inode, mtime put back
        fh.write(b"MINUTE")
    os.utime(tmp_path / REL, ns=(OLD_NS, OLD_NS))
    outcome = uploader.finish(step, answer)
    assert outcome.status == "failed" and outcome.error == CHANGED_AFTER_UPLOAD
    assert (tmp_path / REL).read_bytes() == b"MINUTE 05, first write"


@pytest.mark.parametrize("rel", ["../precious.cfg", "berlin/2026/03/01/10/../../../../../../etc/passwd",
                                 "berlin/2026/03/01/10/notes.txt", ".hidden/2026/03/01/10/05-t.dat"])
def test_a_batch_row_outside_the_layout_is_refused_before_anything_moves(rel):
    with pytest.raises(UploadError, match="not a file of the layout"):
        _candidates([[REL, 1, OLD_NS, 1], [rel, 10, OLD_NS, 0]])


def test_batch_rows_of_the_layout_are_read_with_their_minute():
    (cand,) = _candidates([[REL, 9, OLD_NS]])
    assert (cand.rel, cand.size, cand.ino, cand.minute) == (REL, 9, 0, datetime(2026, 3, 1, 10, 5, tzinfo=UTC))


def test_a_long_multibyte_name_is_deleted_too(tmp_path):
    """The private name the delete gives the file must fit any name the layout takes: 217 bytes of UTF-8
    here, which with a prefix added would pass the 255 bytes a file name may have."""
    rel = "berlin/2026/03/01/10/05-" + "数" * 70 + ".dat"
    assert len(rel.rsplit("/", 1)[1].encode()) == 217
    _write(tmp_path / rel, b"minute 05")
    uploader, step, answer = _uploaded(tmp_path)
    assert uploader.finish(step, answer).status == UPLOADED
    assert os.listdir(tmp_path / "berlin/2026/03/01/10") == []


def test_a_delete_that_fails_after_the_rename_puts_the_file_back_under_its_name(tmp_path, monkeypatch):
    _write(tmp_path / REL, b"minute 05")
    uploader, step, answer = _uploaded(tmp_path)
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        if str(path).startswith(".s3ops-deleting-"):
            raise PermissionError(13, "Permission denied")
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    outcome = uploader.finish(step, answer)
    assert outcome.status == "uploaded_not_deleted" and "Permission denied" in outcome.error
    folder = tmp_path / "berlin/2026/03/01/10"
    assert (folder / "05-t.dat").read_bytes() == b"minute 05"  # under its name again (the private one: the same file)
    assert {p.stat().st_ino for p in folder.iterdir()} == {(folder / "05-t.dat").stat().st_ino}


LEFTOVER = ".s3ops-deleting-" + "0123456789abcdef" * 2 + "-"


def test_a_file_left_under_its_private_name_by_a_killed_run_gets_its_name_back_at_the_next_scan(tmp_path):
    """A run killed between the delete's rename and its unlink left the file under the private name: the
    next scan gives it its name back, and it is decided as any other file (its object compared byte for
    byte: already there, or a conflict if it was a producer's file caught by the rename)."""
    folder = tmp_path / "berlin/2026/03/01/10"
    _write(folder / (LEFTOVER + "05-t.dat"), b"minute 05")
    scan = scan_base_dir(tmp_path, NOW, 0, 100)
    assert [c.rel for c in scan.eligible] == [REL] and scan.malformed == []
    assert os.listdir(folder) == ["05-t.dat"] and (folder / "05-t.dat").read_bytes() == b"minute 05"


@pytest.mark.parametrize(("leftover", "also"), [
    (LEFTOVER + "05-t.dat", "05-t.dat"),  # the name was taken since: never replaced
    (LEFTOVER + "05-" + "x" * 193 + ".dat", None),  # 200 bytes: perhaps cut to fit, so not a name to trust
    (LEFTOVER + "notes.txt", None),  # not a data file's name
    (".s3ops-deleting-xyz-05-t.dat", None),  # not the uploader's private name
])
def test_a_leftover_that_cannot_be_given_its_name_back_is_kept_and_listed(tmp_path, leftover, also):
    folder = tmp_path / "berlin/2026/03/01/10"
    _write(folder / leftover, b"left over")
    if also:
        _write(folder / also, b"written since")
    scan = scan_base_dir(tmp_path, NOW, 0, 100)
    assert (folder / leftover).read_bytes() == b"left over"
    assert [path for path, _ in scan.malformed] == [str(folder / leftover)]
    if also:
        assert (folder / also).read_bytes() == b"written since"


def test_a_private_name_left_as_a_second_link_of_its_file_is_removed_not_listed_as_malformed(tmp_path):
    """A run killed inside the put-back (the file linked back under its name, the private name not yet
    unlinked) leaves two names for one file. The private one is no unknown data: it is that file. It was
    listed as malformed on every run for ever; now it is removed and the file is decided under its name."""
    folder = tmp_path / "berlin/2026/03/01/10"
    _write(folder / "05-t.dat", b"minute 05")
    os.link(folder / "05-t.dat", folder / (LEFTOVER + "05-t.dat"))
    scan = scan_base_dir(tmp_path, NOW, 0, 100)
    assert scan.malformed == [] and [c.rel for c in scan.eligible] == [REL]
    assert os.listdir(folder) == ["05-t.dat"] and (folder / "05-t.dat").read_bytes() == b"minute 05"
    assert (folder / "05-t.dat").stat().st_nlink == 1


def test_a_private_name_that_is_another_file_than_its_name_is_still_kept_and_listed(tmp_path):
    """Same name, same size, same mtime, but another file (a copy, not a link): never removed."""
    base = tmp_path / "base"
    folder = base / "berlin/2026/03/01/10"
    _write(folder / "05-t.dat", b"minute 05")
    _write(folder / (LEFTOVER + "05-t.dat"), b"minute 05")
    os.link(folder / "05-t.dat", tmp_path / "backup")  # the name's file has 2 links, the private one 1
    scan = scan_base_dir(base, NOW, 0, 100)
    assert [path for path, _ in scan.malformed] == [str(folder / (LEFTOVER + "05-t.dat"))]
    assert sorted(os.listdir(folder)) == [LEFTOVER + "05-t.dat", "05-t.dat"]
