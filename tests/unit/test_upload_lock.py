"""One uploader per base_dir: the folder's lock (include.upload.lock), without a server."""

from __future__ import annotations

import errno
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from include.upload import lock

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("first", "second"), [(False, False), (False, True), (True, False)],
                         ids=["alone-then-alone", "alone-then-shared", "shared-then-alone"])
def test_a_held_lock_refuses_at_once_naming_the_folder(tmp_path, first, second):
    with lock.holding(str(tmp_path), shared=first):
        started = time.monotonic()
        with pytest.raises(lock.Busy, match=f"^base_dir '{tmp_path}' is in use by another uploader"):
            with lock.holding(str(tmp_path), shared=second):
                pytest.fail("two uploaders held the folder at once")
        assert time.monotonic() - started < 1  # no waiting


def test_shared_holders_run_side_by_side_and_the_lock_is_free_after(tmp_path):
    with lock.holding(str(tmp_path), shared=True), lock.holding(str(tmp_path), shared=True):
        pass  # a run's mapped batches
    with lock.holding(str(tmp_path)):
        assert list(tmp_path.iterdir()) == []  # nothing written into the producer's folder


def test_another_folder_is_not_locked(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with lock.holding(str(tmp_path / "a")), lock.holding(str(tmp_path / "b")):
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom include.upload import lock\n"
         f"with lock.holding({str(tmp_path)!r}):\n    print('held', flush=True)\n    time.sleep(600)\n"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(lock.Busy):  # held by another process
            with lock.holding(str(tmp_path)):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    with lock.holding(str(tmp_path)):  # the kernel released it with the process
        pass


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.EOPNOTSUPP, errno.EBADF, errno.EINVAL])
def test_a_filesystem_without_locks_goes_on_unlocked_and_says_so(tmp_path, monkeypatch, caplog, code):
    def no_flock(fd: int, op: int) -> None:
        raise OSError(code, "no locks here")

    monkeypatch.setattr(lock.fcntl, "flock", no_flock)
    caplog.set_level(logging.WARNING, logger="include.upload.lock")
    ran = False
    with lock.holding(str(tmp_path)):
        ran = True
    assert ran and f"base_dir '{tmp_path}' cannot be locked (no locks here): going on without the lock" in caplog.text


def test_any_other_locking_failure_stops_the_run(tmp_path, monkeypatch):
    def broken(fd: int, op: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(lock.fcntl, "flock", broken)
    with pytest.raises(OSError, match="I/O error"):
        with lock.holding(str(tmp_path)):
            pytest.fail("ran without knowing whether the folder is ours")
