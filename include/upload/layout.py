"""The producer's file layout, which files are finished, and which folders are done with.

Files are written as ``base_dir/<location>/YYYY/MM/DD/HH/<mm>-<topic>.dat`` (UTC; ``mm`` is the
data's minute). Month, day, hour and minute have one or two digits (the producer writes ``6`` as well as
``06``); the key in S3 is the path exactly as on disk. This module only reads and removes *empty* folders on the local disk; it never
touches S3 and never deletes a file. Everything here is pure and works without Airflow.

A file is *eligible* for upload when its path is in the layout with a real date and time, the data
minute ended at least ``settle_seconds`` ago, and the file's mtime is at least ``settle_seconds``
old. Anything that does not match the layout is *malformed*: never uploaded, never deleted, named
in the run's summary so a person can look at it. A name that is not valid UTF-8 cannot become an S3
key: it is malformed too, and shown with its odd bytes escaped (``caf\\xe9``).

Folders inside ``base_dir`` are opened from their parent's descriptor and never through a symbolic link,
by the scan (:func:`_walk`) and by the uploader (:class:`Folders`): a folder swapped for a link while the
scan walks or after it is never walked into, so no file of another folder is ever taken for one of ours.
"""

from __future__ import annotations

import errno
import heapq
import os
import re
import stat
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from include.core.text import shown

MINUTE = timedelta(minutes=1)
#: The last minute whose end a datetime can hold (9999-12-31 23:58); a later one is malformed.
LAST_MINUTE = datetime(9999, 12, 31, 23, 58, tzinfo=UTC)
# Digits are [0-9], never \d: \d also matches Arabic-Indic, full-width, math-bold… digits, which int()
# reads as numbers, so "٢٠٢٠" would pass for a year and such a file would be uploaded and deleted.
FILE_RE = re.compile(r"(?P<minute>[0-9]{1,2})-(?P<topic>[^/\x00-\x1f]+)\.dat")
YEAR_RE, TWO_DIGITS_RE = re.compile(r"[0-9]{4}"), re.compile(r"[0-9]{1,2}")  # month/day/hour: "6" or "06"
MALFORMED_CAP = 1000  # malformed paths (and scan errors) kept by name; the rest are counted
# Location names are free-form, but never hidden or control characters.
LOCATION_RE = re.compile(r"[^./\x00-\x1f][^/\x00-\x1f]*")
# A folder inside base_dir is opened from its parent's descriptor, never by path, and never through a
# symbolic link: one swapped in after its parent was listed (pointing at another tenant's folder that
# holds files of the same names) is refused, where a path would have led into it.
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: the name the uploader gives a file right before deleting it (include.upload.uploader._unlink_if_same):
#: ``PRIVATE_PREFIX``, 32 hex digits, "-", then the file's name, cut to ``PRIVATE_NAME_BYTES`` bytes
PRIVATE_PREFIX = ".s3ops-deleting-"
PRIVATE_NAME_BYTES = 200
_LEFTOVER = re.compile(re.escape(PRIVATE_PREFIX) + r"[0-9a-f]{32}-(?P<name>.+)", re.S)
_BASE_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC  # base_dir itself may be a link: the settings checked it
_NOT_A_FOLDER_NOW = (errno.ELOOP, errno.ENOTDIR)  # O_NOFOLLOW's answer for a link; a file in its place
#: The filesystem's own folder at the root of a volume (mkfs makes it, root's, mode 0700), in base_dir when
#: base_dir is the mount point of the producer's volume. Walked where the uploader may (fsck's recovered files
#: are listed as malformed); where it may not, it is no failure: it never holds a producer's file.
LOST_AND_FOUND = "lost+found"
#: The layout's folders: location, year, month, day, hour. A folder deeper than that is malformed and not
#: walked, so the walk never holds more descriptors than this (plus base_dir) whatever the tree holds.
LAYOUT_DEPTH = 5


def is_location(name: str) -> bool:
    """Is ``name`` a location folder the layout accepts: valid UTF-8 (it becomes part of an S3 key),
    not hidden, no control characters? The scan and the tidy ask this one question."""
    return _is_utf8(name) and LOCATION_RE.fullmatch(name) is not None


def _is_utf8(name: str) -> bool:
    """False for a name holding bytes that are not UTF-8 (``os.fsdecode`` kept them as surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class MalformedPath(ValueError):
    """A path that does not follow ``<location>/YYYY/MM/DD/HH/<mm>-<topic>.dat``; the message says why."""


@dataclass(frozen=True)
class DataFile:
    """A path in the layout: ``rel`` is relative to ``base_dir`` with ``/`` separators (also the key suffix)."""

    rel: str
    location: str
    minute: datetime  # start of the data's minute, UTC
    topic: str

    @property
    def minute_end(self) -> datetime:
        return self.minute + MINUTE


def parse_data_path(rel: str) -> DataFile:
    """Parse a path relative to ``base_dir``; raises :class:`MalformedPath` naming the first problem."""
    if not _is_utf8(rel):
        raise MalformedPath(f"name {shown(rel)!r} is not valid UTF-8, so it cannot be an S3 key")
    parts = rel.split("/")
    if len(parts) != 6:
        raise MalformedPath(f"expected <location>/YYYY/MM/DD/HH/<mm>-<topic>.dat, got {len(parts)} path parts")
    location, year, month, day, hour, name = parts
    if not is_location(location):
        raise MalformedPath(f"location folder {location!r} is hidden or has control characters")
    match = FILE_RE.fullmatch(name)
    if not match:
        raise MalformedPath(f"file name {name!r} is not <mm>-<topic>.dat")
    if not YEAR_RE.fullmatch(year) or not all(TWO_DIGITS_RE.fullmatch(p) for p in (month, day, hour)):
        # repr: a folder name is untrusted text, and the reason is printed on one log line
        raise MalformedPath(f"date folders {'/'.join((year, month, day, hour))!r} are not YYYY/M[M]/D[D]/H[H]")
    when = f"{year}-{month}-{day} {hour}:{match['minute']}"
    try:
        minute = datetime(int(year), int(month), int(day), int(hour), int(match["minute"]), tzinfo=UTC)
    except ValueError as exc:
        raise MalformedPath(f"{when} is not a real date and time ({exc})") from None
    if minute > LAST_MINUTE:  # its end cannot be held: minute_end would raise in every scan
        raise MalformedPath(f"{when} is out of range (its minute ends after year 9999)")
    return DataFile(rel=rel, location=location, minute=minute, topic=match["topic"])


#: How far ahead of the clock a file's mtime or data minute may be and wait quietly (a writer's clock a little
#: ahead); beyond, the scan names the file: it would wait unnoticed, for ever if far enough (``touch -d``).
FUTURE_SLACK = timedelta(minutes=5)


def future_dated(data: DataFile, mtime: float, now: datetime) -> str | None:
    """Why a file that is not ready will stay so for longer than a clock's drift, or None."""
    if data.minute > now + FUTURE_SLACK:
        return f"not ready: its data minute {data.minute:%Y-%m-%d %H:%M} UTC has not begun (the writer's clock ahead?)"
    if (ahead := mtime - now.timestamp()) > FUTURE_SLACK.total_seconds():
        return (f"not ready: its mtime is {ahead:,.0f} s ahead of this host's clock (the writer's clock ahead, or "
                "touch -d?); it waits until then, or touch it")
    return None


def is_eligible(data: DataFile, mtime: float, now: datetime, settle_seconds: float) -> bool:
    """Finished: the data minute ended, and the file was last written, at least ``settle_seconds`` ago."""
    settle = timedelta(seconds=settle_seconds)
    return now - data.minute_end >= settle and now.timestamp() - mtime >= settle_seconds


@dataclass(frozen=True, order=True)
class Candidate:
    """An eligible file as the scan saw it; the upload re-checks it before trusting it: the same size
    and mtime, and the same file (its inode; 0 when unknown), not another one renamed into its place. Not
    the device: on a network filesystem each host numbers the mount its own way, and the scan and the
    upload may run on two hosts."""

    minute: datetime
    rel: str
    size: int
    mtime_ns: int
    ino: int = 0


@dataclass
class Scan:
    """What one walk of ``base_dir`` found. ``eligible`` holds at most ``max_files``, oldest data first."""

    eligible: list[Candidate] = field(default_factory=list)
    eligible_total: int = 0
    not_ready: int = 0
    malformed: list[tuple[str, str]] = field(default_factory=list)  # (absolute path, reason): the first MALFORMED_CAP
    errors: list[tuple[str, str]] = field(default_factory=list)  # (absolute path, error): unreadable folders
    future: list[tuple[str, str]] = field(default_factory=list)  # (absolute path, why): not ready, dated ahead
    malformed_total: int = 0
    errors_total: int = 0
    future_total: int = 0

    def add_malformed(self, path: str, reason: str) -> None:
        self.malformed_total += 1
        if len(self.malformed) < MALFORMED_CAP:
            self.malformed.append((shown(path), reason))

    def add_error(self, path: str, error: str) -> None:
        self.errors_total += 1
        if len(self.errors) < MALFORMED_CAP:
            self.errors.append((shown(path), error))

    def add_future(self, path: str, why: str) -> None:
        self.future_total += 1
        if len(self.future) < MALFORMED_CAP:
            self.future.append((shown(path), why))

    @property
    def deferred(self) -> int:
        """Eligible files left for a later run because of ``max_files``."""
        return self.eligible_total - len(self.eligible)


class MovedSinceScan(Exception):
    """A folder on a file's path is no longer the folder the scan listed (a symbolic link or a file now)."""


def _list_folder(fd: int, root: str, rel: str, scan: Scan) -> Iterator[tuple[str, os.stat_result] | str]:
    """One folder of :func:`_walk`: yield (relative path, lstat) per regular file and the name of each
    subfolder; symbolic links and other kinds are malformed."""
    try:
        with os.scandir(fd) as entries:
            items = list(entries)
    except OSError as exc:
        scan.add_error((root + rel).rstrip("/") or "/", f"cannot list folder: {exc.strerror or exc}")
        return
    deepest = rel.count("/") >= LAYOUT_DEPTH
    names = {entry.name for entry in items}
    for entry in items:
        try:
            if deepest and entry.name.startswith(PRIVATE_PREFIX) and entry.is_file(follow_symlinks=False) and (
                    restored := _restore_leftover(fd, entry.name, names)):
                if restored is not SECOND_LINK:  # a second link: its file is listed under its own name
                    yield rel + restored, os.stat(restored, dir_fd=fd, follow_symlinks=False)
            elif entry.is_symlink():
                scan.add_malformed(root + rel + entry.name, "symbolic link (never followed)")
            elif entry.is_dir(follow_symlinks=False) and deepest:
                scan.add_malformed(root + rel + entry.name, "a folder inside an hour folder (not in the layout): "
                                                            "not walked")
            elif entry.is_dir(follow_symlinks=False):
                yield entry.name
            elif entry.is_file(follow_symlinks=False):
                yield rel + entry.name, entry.stat(follow_symlinks=False)
            else:
                scan.add_malformed(root + rel + entry.name, "not a regular file")
        except FileNotFoundError:  # gone since the listing (a producer's rename or delete): nothing to take, no error
            continue
        except OSError as exc:  # unreadable between listing and stat
            scan.add_error(root + rel + entry.name, f"cannot stat: {exc.strerror or exc}")


#: what :func:`_restore_leftover` returns for a private name that was only a second link of its file
SECOND_LINK = "\x00second link"


def _restore_leftover(fd: int, private: str, names: set[str]) -> str | None:
    """A file the uploader renamed to delete it, left under that name by a run killed in that instant: give
    it its name back, so that this run decides it as any other (its object compared byte for byte). Returns
    the name; :data:`SECOND_LINK` when the private name was a second link of the file under its name (a
    put-back killed between its link and its unlink: removed, the file is decided under its name); or None
    (left as it is, and listed as malformed): a name cut to fit, or taken since by another file."""
    match = _LEFTOVER.fullmatch(private)
    if match is None:
        return None
    name = match["name"]
    if len(os.fsencode(name)) >= PRIVATE_NAME_BYTES or not FILE_RE.fullmatch(name):
        return None
    if name in names:
        return SECOND_LINK if _drop_second_link(fd, private, name) else None
    try:
        put_back(fd, private, name)
    except OSError:
        return None
    names.add(name)
    return name


def _drop_second_link(fd: int, private: str, name: str) -> bool:
    """Remove ``private`` if it is a second hard link of the very file at ``name`` (:func:`put_back` killed
    after its link, before its unlink, or an unlink it could not do then): the file keeps its name, so
    nothing is lost. Anything else (another file, a filesystem that reports no links, an unlink refused)
    is kept and returns False: the private name is then listed as malformed, as before."""
    try:
        a = os.stat(private, dir_fd=fd, follow_symlinks=False)
        b = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except OSError:
        return False
    # (inode, device) alone could match two files on a filesystem that makes its inode numbers up; a link
    # count of 2 or more on both, the same size and mtime, and a regular file, say it is truly one file.
    same = (stat.S_ISREG(a.st_mode) and a.st_ino != 0 and a.st_nlink >= 2
            and (a.st_ino, a.st_dev, a.st_size, a.st_mtime_ns, a.st_nlink) == (b.st_ino, b.st_dev, b.st_size,
                                                                               b.st_mtime_ns, b.st_nlink))
    if not same:
        return False
    try:  # scan holds base_dir alone (include.upload.lock): no uploader moves either name meanwhile
        os.unlink(private, dir_fd=fd)
    except OSError:
        return False
    return True


def put_back(folder_fd: int, private: str, name: str) -> None:
    """Give the file at ``private`` its ``name`` again, unless a file was written there since (a link
    fails where a rename would replace it); OSError when it cannot."""
    os.link(private, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd, follow_symlinks=False)
    with suppress(OSError):  # both names lead to the file now: the private one is only clutter
        os.unlink(private, dir_fd=folder_fd)


def _nothing_to_report(exc: OSError, parent_rel: str, name: str) -> bool:
    """A subfolder the walk could not open that is no failure: gone since its parent was listed (nothing in it
    to take), or the volume's own lost+found, which the uploader may not read (:data:`LOST_AND_FOUND`)."""
    return exc.errno == errno.ENOENT or (exc.errno == errno.EACCES and not parent_rel and name == LOST_AND_FOUND)


def _walk(base: Path, scan: Scan) -> Iterator[tuple[str, os.stat_result]]:
    """Yield (relative path, lstat) for every regular file under ``base``; symlinks are malformed.
    Each folder is opened from its parent's descriptor without following a link (``_FOLDER_FLAGS``),
    depth first and never below ``LAYOUT_DEPTH``, so at most six descriptors are open. (Plain strings, not
    pathlib: this runs once per file of the tree.)"""
    root = os.path.join(str(base), "")
    try:
        top = os.open(root, _BASE_FLAGS)
    except OSError as exc:
        scan.add_error(root.rstrip("/") or "/", f"cannot list folder: {exc.strerror or exc}")
        return
    stack: list[tuple[int, str, list[str]]] = []  # (folder descriptor, relative path + "/", subfolders left)
    fd: int | None = top
    rel = ""
    try:
        while True:
            if fd is not None:
                subfolders = []
                for found in _list_folder(fd, root, rel, scan):
                    if isinstance(found, str):
                        subfolders.append(found)
                    else:
                        yield found
                stack.append((fd, rel, subfolders))
                fd = None
            if not stack:
                return
            parent, parent_rel, names = stack[-1]
            if not names:
                os.close(parent)
                stack.pop()
                continue
            name = names.pop()
            try:
                fd, rel = os.open(name, _FOLDER_FLAGS, dir_fd=parent), parent_rel + name + "/"
            except OSError as exc:
                if exc.errno in _NOT_A_FOLDER_NOW:
                    scan.add_malformed(root + parent_rel + name, "no longer a folder when opened (swapped for a "
                                                                 "symbolic link or a file?): never followed")
                elif not _nothing_to_report(exc, parent_rel, name):
                    scan.add_error(root + parent_rel + name, f"cannot list folder: {exc.strerror or exc}")
    finally:
        for frame_fd, _, _ in stack:
            os.close(frame_fd)
        if fd is not None:
            os.close(fd)


class Folders:
    """Descriptors of ``base_dir``'s folders for the files of one run, each reached from ``base_dir``
    one folder at a time without following a symbolic link: a file is read, checked and deleted in the
    folder the scan listed, or not at all. A folder swapped for a link (or a file) after the scan, to
    another tenant's folder with files of the same names, say, is :class:`MovedSinceScan`; one swapped
    after it was opened here no longer matters, since the descriptor is the folder itself. The ``keep``
    most recently used folders stay open (only them: the folders on the way are closed again), so a
    batch taken folder by folder opens each folder once, not once per file."""

    def __init__(self, base_dir: str, keep: int = 32) -> None:
        self.base_dir = base_dir
        self.keep = max(1, keep)
        self._base: int | None = None
        self._open: OrderedDict[str, int] = OrderedDict()

    def fd(self, folder: str) -> int:
        """The descriptor of ``folder``: "" for ``base_dir``, else its relative path ("berlin/2026/01/02/03").
        Valid until the next call (a later one may close it)."""
        if self._base is None:
            self._base = os.open(self.base_dir, _BASE_FLAGS)
        if not folder:
            return self._base
        fd = self._open.get(folder)
        if fd is not None:
            self._open.move_to_end(folder)
            return fd
        fd = self._base
        try:
            for name in folder.split("/"):
                parent = fd
                try:
                    fd = os.open(name, _FOLDER_FLAGS, dir_fd=parent)
                finally:
                    if parent != self._base:
                        os.close(parent)
        except OSError as exc:
            if exc.errno in _NOT_A_FOLDER_NOW:
                raise MovedSinceScan(f"{shown(folder)} is no longer the folder the scan listed (a symbolic "
                                     "link or a file now)") from None
            raise
        self._open[folder] = fd
        while len(self._open) > self.keep:
            os.close(self._open.popitem(last=False)[1])
        return fd

    def close(self) -> None:
        while self._open:
            os.close(self._open.popitem()[1])
        if self._base is not None:
            os.close(self._base)
            self._base = None


def scan_base_dir(base_dir: Path, now: datetime, settle_seconds: float, max_files: int, *,
                  key_room: int | None = None) -> Scan:
    """Walk ``base_dir`` once: classify every file, keep the ``max_files`` oldest eligible ones.

    ``key_room``: the UTF-8 bytes an S3 key leaves after the key prefix. A longer path is malformed: S3
    would refuse its upload in every run (``KeyTooLongError``), and it must be renamed by a person anyway.
    Memory stays bounded by ``max_files`` however many files are waiting (a heap, not a full sort).
    """
    scan = Scan()

    def eligible() -> Iterator[Candidate]:
        for rel, st in _walk(base_dir, scan):
            try:
                data = parse_data_path(rel)
                if key_room is not None and (size := len(rel.encode())) > key_room:
                    raise MalformedPath(f"its S3 key would be {size - key_room:,} bytes over S3's limit (UTF-8, "
                                        "the key prefix included): shorten the location, the topic or the key prefix")
            except MalformedPath as exc:
                scan.add_malformed(os.path.join(str(base_dir), rel), str(exc))
                continue
            if not is_eligible(data, st.st_mtime, now, settle_seconds):
                scan.not_ready += 1
                if why := future_dated(data, st.st_mtime, now):
                    scan.add_future(os.path.join(str(base_dir), rel), why)
                continue
            scan.eligible_total += 1
            yield Candidate(data.minute, rel, st.st_size, st.st_mtime_ns, st.st_ino)

    scan.eligible = heapq.nsmallest(max_files, eligible())
    scan.malformed.sort()
    return scan


def split_batches(items: list[Candidate], batch_size: int, max_batches: int) -> list[list[Candidate]]:
    """Split into batches of ``batch_size``, growing the size so there are never more than ``max_batches``."""
    if not items:
        return []
    size = max(batch_size, -(-len(items) // max_batches))
    return [items[i : i + size] for i in range(0, len(items), size)]


# --- tidy: empty folders whose period is over -------------------------------------------------------

def _period_end(parts: tuple[str, ...]) -> datetime | None:
    """End of the period a ``YYYY[/MM[/DD[/HH]]]`` folder covers, or None if it is not a real one or it
    ends after year 9999 (a period that never ends in the calendar is never over: its folder stays)."""
    if not 1 <= len(parts) <= 4 or not YEAR_RE.fullmatch(parts[0]):
        return None
    if not all(TWO_DIGITS_RE.fullmatch(p) for p in parts[1:]):
        return None
    year, month, day, hour = [int(p) for p in parts] + [1, 1, 0][len(parts) - 1 :]
    try:
        start = datetime(year, month, day, hour, tzinfo=UTC)
        if len(parts) == 1:
            return start.replace(year=year + 1)
        if len(parts) == 2:
            return (start + timedelta(days=32)).replace(day=1)
        return start + (timedelta(days=1) if len(parts) == 3 else timedelta(hours=1))
    except (ValueError, OverflowError):  # month 13, 30 February…; or an end after 9999-12-31
        return None


def _subfolder_names(fd: int) -> list[str]:
    """The folders (never symbolic links) right inside the folder ``fd``; none if it cannot be listed."""
    try:
        with os.scandir(fd) as entries:
            return [e.name for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _open_folder(name: str, parent: int) -> int | None:
    """``name`` inside the folder ``parent``, as the scan opens it (never through a link); None if it is
    gone, a link or a file now, or unreadable: not ours to walk."""
    try:
        return os.open(name, _FOLDER_FLAGS, dir_fd=parent)
    except OSError:
        return None


def remove_empty_folders(base_dir: Path, now: datetime, settle_seconds: float) -> list[str]:
    """Remove empty year/month/day/hour folders whose period ended more than ``settle_seconds`` ago.

    Only inside the layout the scan accepts: a location folder :func:`is_location` accepts, then real
    ``YYYY/M[M]/D[D]/H[H]`` folders. Never ``base_dir`` or a location folder, never a folder elsewhere
    (a hidden ``.snapshot/2020/…``, a location the scan calls malformed: unknown data is left alone),
    never a folder a producer may still write into (its period is not over). ``rmdir`` itself refuses a
    folder that is not empty, so a file created meanwhile is never lost. Folders are opened and removed
    through their parent's descriptor, as the scan opens them: a folder swapped for a link is never
    walked into, so no empty folder elsewhere is removed.
    Returns the removed folders (absolute paths), deepest first.
    """
    removed: list[str] = []
    settle = timedelta(seconds=settle_seconds)
    root = str(base_dir)

    def visit(parent: int, name: str, rel: str, parts: tuple[str, ...]) -> None:
        end = _period_end(parts)
        if end is None:  # not a date folder of the layout: neither it nor anything below is ours
            return
        if len(parts) < 4:
            fd = _open_folder(name, parent)
            if fd is None:
                return
            try:
                for child in _subfolder_names(fd):
                    visit(fd, child, f"{rel}/{child}", (*parts, child))
            finally:
                os.close(fd)
        if now - end <= settle:
            return
        try:
            os.rmdir(name, dir_fd=parent)
        except OSError:  # not empty, gone, a link now (not ours to remove): leave it
            return
        removed.append(os.path.join(root, rel))

    try:
        base = os.open(root, _BASE_FLAGS)
    except OSError:
        return removed
    try:
        for location in _subfolder_names(base):
            if not is_location(location):
                continue
            fd = _open_folder(location, base)
            if fd is None:
                continue
            try:
                for year in _subfolder_names(fd):
                    visit(fd, year, f"{location}/{year}", (year,))
            finally:
                os.close(fd)
    finally:
        os.close(base)
    return removed
