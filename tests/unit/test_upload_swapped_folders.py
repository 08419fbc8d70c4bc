"""A folder of base_dir swapped for a symbolic link after the scan (or while it walks) is never walked
into: the uploader never reads, uploads or deletes a file of another folder that has the same name, size
and mtime (another tenant's, say). No server: a fake CRT client that accepts every upload."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from include.aws.crt import Answer
from include.upload import layout
from include.upload.layout import Folders, MovedSinceScan, scan_base_dir
from include.upload.settings import resolve_settings
from include.upload.uploader import IN_S3, NOT_DELETED, NOT_READY, Pending, Uploader, upload_candidates
from tests.unit.test_upload_answers import FakePutter

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
REL = "berlin/2026/03/01/10/05-t.dat"
OLD = (NOW - timedelta(hours=1)).timestamp()


def _file(path: Path, body: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    os.utime(path, ns=(int(OLD * 1e9), int(OLD * 1e9)))
    return path


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path]:
    """base_dir with one decoy file, and a victim tree elsewhere with a file of the same name, size and
    mtime (what an attacker who can write base_dir arranges before swapping a folder for a link)."""
    base, victim = tmp_path / "base", tmp_path / "other-tenant"
    _file(base / REL, b"decoy!")
    _file(victim / REL, b"secret")
    return base, victim


class Listing:
    """What a hooked ``os.scandir`` returns: entries already listed (the hook acts between the listing and
    what the caller does next)."""

    def __init__(self, entries: list[Any]) -> None:
        self.entries = entries

    def __enter__(self) -> Listing:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __iter__(self) -> Any:
        return iter(self.entries)


def swap_after_listing(monkeypatch: pytest.MonkeyPatch, names: list[str], swap: Callable[[], None]) -> list[bool]:
    """Run ``swap`` once, right after a folder holding exactly ``names`` was listed (``os.scandir``, by
    path or descriptor): between the listing and what the caller does with it. Returns ``[True]`` once
    it ran."""
    real_scandir, swapped = os.scandir, []

    def swapping_scandir(target: Any) -> Listing:
        with real_scandir(target) as it:
            entries = list(it)
        if not swapped and [e.name for e in entries] == names:
            swapped.append(True)
            swap()
        return Listing(entries)

    monkeypatch.setattr(os, "scandir", swapping_scandir)
    return swapped


def _uploader(base: Path) -> tuple[Uploader, FakePutter]:
    settings, _ = resolve_settings({"base_dir": str(base), "bucket": "my-bucket", "settle_seconds": 0}, None,
                                   by_deployer=True)
    putter = FakePutter()
    return Uploader(client=None, settings=settings, scanned_at=NOW, putter=putter), putter  # type: ignore[arg-type]


def _swap(base: Path, victim: Path, level: str) -> None:
    """Replace ``level`` (a folder on REL's path) with a link to the victim's folder at the same place."""
    os.rename(base / level, base.parent / f"moved-{level.replace('/', '-')}")
    (base / level).symlink_to(victim / level)


@pytest.mark.parametrize("level", ["berlin", "berlin/2026/03", "berlin/2026/03/01/10"])
def test_a_folder_swapped_for_a_link_after_the_scan_is_never_read_or_deleted_through(world, level):
    base, victim = world
    scan = scan_base_dir(base, NOW, 0, 100)
    assert [c.rel for c in scan.eligible] == [REL]
    _swap(base, victim, level)
    uploader, putter = _uploader(base)
    result = upload_candidates(uploader, scan.eligible, workers=4)

    assert putter.started == []  # nothing was read, so nothing was sent
    (row,) = result.rows
    assert row["status"] == NOT_READY and "no longer the folder the scan listed" in row["error"]
    assert (victim / REL).read_bytes() == b"secret"  # the other tenant's file is untouched
    moved = base.parent / f"moved-{level.replace('/', '-')}"
    assert (moved / REL.removeprefix(level + "/")).read_bytes() == b"decoy!"  # and ours is kept


def test_a_folder_swapped_while_its_file_is_uploading_changes_neither_what_is_sent_nor_what_is_deleted(world):
    """On Linux the CRT client reads the file this process opened (/proc/self/fd), and the delete goes
    through the folder's descriptor: both are the folder the scan listed, whatever the path leads to by
    then. Without /proc (macOS) the path is read, and the checksum refuses the other folder's bytes
    (the next test forces that case here)."""
    import include.upload.uploader as uploader_module

    base, victim = world
    scan = scan_base_dir(base, NOW, 0, 100)
    uploader, putter = _uploader(base)
    step = uploader.prepare(scan.eligible[0])
    assert isinstance(step, Pending)
    moved = base.parent / "moved-hour"
    os.rename(base / "berlin/2026/03/01/10", moved)
    (base / "berlin/2026/03/01/10").symlink_to(victim / "berlin/2026/03/01/10")
    answers: list[Answer] = []
    putter.start(step.key, step.sent_path, step.local.size, crc64nvme=step.local.crc64nvme, if_none_match=True,
                 done=answers.append)
    putter.pool.shutdown(wait=True)
    outcome = uploader.finish(step, answers[0])
    if uploader_module._PROC_FD:
        assert putter.sent[REL] == b"decoy!"  # not the other tenant's bytes, though the path now leads there
        assert outcome.status in IN_S3 and not (moved / "05-t.dat").exists()  # deleted where it was read
    else:
        assert outcome.status == "failed" and (moved / "05-t.dat").read_bytes() == b"decoy!"
    assert (victim / REL).read_bytes() == b"secret"
    uploader.close()
    fresh = scan_base_dir(base, NOW, 0, 100)
    assert fresh.eligible == [] and any("symbolic link" in why for _, why in fresh.malformed)  # nor does the scan


def test_without_proc_the_crt_client_reads_the_path_and_the_checksum_guards_it(world, monkeypatch):
    """Where /proc is missing (macOS) the CRT client reads the path: bytes of another folder reached by
    a link swapped in meanwhile do not match the checksum sent, so S3 refuses them and the file is kept."""
    import include.upload.uploader as uploader_module

    monkeypatch.setattr(uploader_module, "_PROC_FD", False)
    base, victim = world
    scan = scan_base_dir(base, NOW, 0, 100)
    uploader, putter = _uploader(base)
    step = uploader.prepare(scan.eligible[0])
    assert isinstance(step, Pending) and step.sent_path == str(base / REL)
    _swap(base, victim, "berlin")
    answers: list[Answer] = []
    putter.start(step.key, step.sent_path, step.local.size, crc64nvme=step.local.crc64nvme, if_none_match=True,
                 done=answers.append)
    putter.pool.shutdown(wait=True)
    outcome = uploader.finish(step, answers[0])
    assert outcome.status == "failed" and "does not match the file's checksum" in outcome.error
    assert (victim / REL).read_bytes() == b"secret"
    assert (base.parent / "moved-berlin" / REL.removeprefix("berlin/")).read_bytes() == b"decoy!"


def test_a_verified_upload_whose_folder_was_swapped_before_the_delete_is_kept(world):
    base, victim = world
    scan = scan_base_dir(base, NOW, 0, 100)
    uploader, _ = _uploader(base)
    step = uploader.prepare(scan.eligible[0])
    assert isinstance(step, Pending)
    uploader.folders.close()  # the descriptor is gone (evicted): the delete must reopen the folder
    _swap(base, victim, "berlin/2026")
    outcome = uploader.finish(step, Answer(200, {"x-amz-checksum-crc64nvme": step.local.crc64nvme,
                                                 "x-amz-checksum-type": "FULL_OBJECT"}))
    assert outcome.status == NOT_DELETED and "no longer the folder the scan listed" in outcome.error
    assert (victim / REL).read_bytes() == b"secret"
    assert (base.parent / "moved-berlin-2026" / "03/01/10/05-t.dat").read_bytes() == b"decoy!"


def test_the_scan_never_walks_into_a_folder_swapped_for_a_link_after_its_parent_was_listed(world, monkeypatch):
    base, victim = world
    real_open = os.open

    def swap_then_open(path: Any, flags: int, *args: Any, dir_fd: int | None = None, **kw: Any) -> int:
        if path == "2026" and dir_fd is not None and not (base / "berlin/2026").is_symlink():
            _swap(base, victim, "berlin/2026")  # between listing berlin/ and opening berlin/2026
        return real_open(path, flags, *args, dir_fd=dir_fd, **kw)

    monkeypatch.setattr(layout.os, "open", swap_then_open)
    scan = scan_base_dir(base, NOW, 0, 100)
    assert scan.eligible == [] and scan.eligible_total == 0
    assert [(p, why) for p, why in scan.malformed] == [
        (str(base / "berlin/2026"), "no longer a folder when opened (swapped for a symbolic link or a file?): "
                                    "never followed")]


def test_a_real_folder_renamed_into_the_place_of_a_scanned_one_is_not_taken_for_it(tmp_path):
    """No link at all: ``mv berlin x; mv paris berlin``, paris holding files of the same names, sizes and
    mtimes. The scan saw other files (inode and device): nothing is sent, nothing deleted."""
    base = tmp_path / "base"
    _file(base / REL, b"berlin")
    _file(base / REL.replace("berlin", "paris", 1), b"paris!")
    scan = scan_base_dir(base, NOW, 0, 100)
    berlin = next(c for c in scan.eligible if c.rel == REL)
    os.rename(base / "berlin", tmp_path / "x")
    os.rename(base / "paris", base / "berlin")
    uploader, putter = _uploader(base)
    result = upload_candidates(uploader, [berlin], workers=2)
    (row,) = result.rows
    assert row["status"] == NOT_READY and row["error"] == "changed since the scan: another file"
    assert putter.started == [] and (base / REL).read_bytes() == b"paris!" and (tmp_path / "x" / REL[7:]).exists()


def test_a_folder_replaced_by_a_file_is_refused_like_a_link(world):
    base, _ = world
    scan = scan_base_dir(base, NOW, 0, 100)
    os.rename(base / "berlin/2026/03", base.parent / "moved")
    (base / "berlin/2026/03").write_bytes(b"not a folder")
    uploader, putter = _uploader(base)
    (row,) = upload_candidates(uploader, scan.eligible, workers=2).rows
    assert row["status"] == NOT_READY and "no longer the folder the scan listed" in row["error"]
    assert putter.started == []


def test_folders_deeper_than_the_layout_are_malformed_and_never_walked(tmp_path, monkeypatch):
    """The walk holds one descriptor per level: below the hour folders it stops, so a tree thousands of
    folders deep costs six descriptors, and its files (never in the layout) are named by the folder."""
    base = tmp_path / "base"
    deep = base / "berlin/2026/03/01/10" / "/".join(["d"] * 300)
    _file(deep / "05-t.dat", b"deep")
    _file(base / REL, b"ok")
    opened: list[int] = []
    real_open = os.open

    def counting_open(*args: Any, **kwargs: Any) -> int:
        fd = real_open(*args, **kwargs)
        opened.append(fd)
        return fd

    monkeypatch.setattr(layout.os, "open", counting_open)
    scan = scan_base_dir(base, NOW, 0, 100)
    assert [c.rel for c in scan.eligible] == [REL] and scan.errors == []
    assert scan.malformed == [(str(base / "berlin/2026/03/01/10/d"),
                               "a folder inside an hour folder (not in the layout): not walked")]
    assert len(opened) == 6  # base_dir and the five layout folders


def test_folders_keep_a_bounded_number_open_and_reopen_what_they_closed(tmp_path):
    for i in range(10):
        (tmp_path / f"loc{i}" / "2026").mkdir(parents=True)
    folders = Folders(str(tmp_path), keep=4)
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    fds = {f"loc{i}/2026": folders.fd(f"loc{i}/2026") for i in range(10)}
    assert len(folders._open) == 4
    if before is not None:  # the folders on the way were closed again: the kept ones and base_dir only
        assert len(os.listdir("/proc/self/fd")) == before + 4 + 1
    assert os.path.samestat(os.fstat(folders.fd("loc0/2026")), os.stat(tmp_path / "loc0/2026"))  # reopened
    folders.close()
    assert not folders._open
    for fd in fds.values():
        with pytest.raises(OSError):
            os.fstat(fd)  # every descriptor was closed (none leaks)
    (tmp_path / "loc1" / "2026").rmdir()
    (tmp_path / "loc1" / "2026").symlink_to(tmp_path / "loc0" / "2026")
    with pytest.raises(MovedSinceScan):
        folders.fd("loc1/2026")
    folders.close()


def test_tidy_never_walks_into_a_folder_swapped_for_a_link_after_it_was_listed(tmp_path, monkeypatch):
    """Tidy removes only empty, ended date folders, and only in base_dir: a year folder swapped for a link
    to another tenant's tree between its listing and its walk must not cost that tenant its folders."""
    base, victim = tmp_path / "base", tmp_path / "other-tenant"
    (base / "berlin/2020/01/01/00").mkdir(parents=True)
    (victim / "berlin/2020/01/01/00").mkdir(parents=True)
    def swap() -> None:
        os.rename(base / "berlin/2020", tmp_path / "moved-2020")
        (base / "berlin/2020").symlink_to(victim / "berlin/2020")

    swapped = swap_after_listing(monkeypatch, ["2020"], swap)  # right after berlin/ was listed
    removed = layout.remove_empty_folders(base, NOW, 0)
    assert swapped and removed == []
    assert (victim / "berlin/2020/01/01/00").is_dir()  # the other tenant's folders are all there
    assert (base / "berlin/2020").is_symlink()  # and the link itself is left for a person to look at


def test_the_abort_check_never_takes_another_folders_file_for_ours(world, monkeypatch):
    """An incomplete upload is aborted only if its file is in base_dir. A location folder swapped for a
    link to another tenant's tree between its listing and its opening must not make that tenant's file
    look like ours (aborting their upload in flight)."""
    from include.upload.uploader import abort_abandoned_uploads

    base, victim = world
    os.rename(base / "berlin", base.parent / "decoy-berlin")
    (base / "berlin").mkdir()  # listed as a real folder, swapped for a link right after
    aborted: list[str] = []

    class Client:
        def get_paginator(self, name: str) -> Any:
            upload = {"Key": REL, "UploadId": "u1", "Initiated": NOW - timedelta(hours=2)}
            return type("P", (), {"paginate": lambda self, **kw: [{"Uploads": [upload]}]})()

        def abort_multipart_upload(self, **kw: Any) -> None:
            aborted.append(kw["Key"])

    def swap() -> None:
        (base / "berlin").rmdir()
        (base / "berlin").symlink_to(victim / "berlin")

    swapped = swap_after_listing(monkeypatch, ["berlin"], swap)  # right after base_dir was listed
    settings, _ = resolve_settings({"base_dir": str(base), "bucket": "my-bucket", "settle_seconds": 0}, None,
                                   by_deployer=True)
    result = abort_abandoned_uploads(Client(), settings, NOW)
    assert swapped and (base / "berlin").is_symlink()  # the swap happened
    assert aborted == [] and result.aborted == [] and result.left_alone == 1


def test_batch_rows_carry_the_inode_and_rows_of_an_older_batch_are_still_read():
    from include.upload.uploader import _candidate_rows, _candidates

    (cand,) = _candidates(_candidate_rows([layout.Candidate(NOW, REL, 6, 123, 456)]))
    assert (cand.rel, cand.size, cand.mtime_ns, cand.ino) == (REL, 6, 123, 456)
    (old,) = _candidates([[REL, 6, 123]])  # written before the scan kept the inode: not checked
    assert (old.rel, old.size, old.mtime_ns, old.ino) == (REL, 6, 123, 0)
