"""One uploader per ``base_dir`` at a time: an advisory lock (``flock``) on the folder itself.

Two uploaders on one folder (a cron entry whose run outlasts its minute, the command line beside the
DAG) would each take the other's in-flight multipart uploads for abandoned ones and abort them, and
PUT the same files twice. Nothing would be lost, but parts would be wasted every run. So:

- the command line holds the lock exclusively for its whole run;
- the DAG's ``scan`` (which aborts abandoned uploads) holds it exclusively, and ``upload_batch`` and
  ``tidy`` share it: a run's mapped batches run side by side, and no other uploader runs beside them.

The lock is taken on the folder's own descriptor, so nothing is written into the producer's folder,
and the kernel releases it when the process ends, however it ends (a SIGKILLed run leaves no stale
lock). A filesystem that refuses ``flock`` cannot be locked: the run goes on unlocked, as before the
lock existed, and says so in the log. On a network mount (NFS, SMB) Linux keeps a folder's lock on the
host that took it: uploaders on two hosts sharing one ``base_dir`` do not see each other's lock.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

BUSY_EXIT = 75  # sysexits.h EX_TEMPFAIL: "a temporary failure; try again later"
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF, errno.EINVAL}


class Busy(RuntimeError):
    """Another uploader holds ``base_dir``'s lock. Not an UploadError: in the DAG the task is retried."""

    def __init__(self, base_dir: str) -> None:
        super().__init__(f"base_dir {base_dir!r} is in use by another uploader (an s3ops upload command, or the "
                         "s3_upload DAG)")


@contextmanager
def holding(base_dir: str, *, shared: bool = False) -> Iterator[None]:
    """Hold ``base_dir``'s lock (``shared`` with other holders of a shared lock, or alone) for the block.
    Raises :class:`Busy` at once, without waiting, when another uploader holds it."""
    fd = os.open(base_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(base_dir) from None
        except OSError as exc:
            if exc.errno not in _NO_FLOCK:
                raise
            log.warning("base_dir %r cannot be locked (%s): going on without the lock; run one uploader per folder",
                        base_dir, exc.strerror or exc)
        yield
    finally:
        os.close(fd)  # releases the lock
