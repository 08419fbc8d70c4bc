"""The artifact store: where plans, manifests, reports and audits live (never in XCom).

One root, set by ``S3OPS_ARTIFACT_ROOT`` (a local path or ``s3://bucket/prefix``; default
``$AIRFLOW_HOME/s3ops-artifacts``). Each run writes under ``<root>/<dag_id>/<run_id>/``. An ``s3://``
root is reached through Airflow's ``ObjectStoragePath`` with the connection named by
``S3OPS_ARTIFACT_CONN_ID`` (default ``aws_default``); a local root is a plain ``pathlib.Path`` so the
library and its command line work without Airflow.

Two ways to read. :func:`read_bytes` (and :func:`read_json`, :func:`read_jsonl`) read a whole file, with
no limit: the pipelines read their own run's artifacts, some legitimately big (a retention plan's chunks,
the listing of buckets or deployments, a report of tens of thousands of buckets), and a cap there would
fail a big run. :func:`read_bytes_bounded` is for a reader that must not be stalled or exhausted by what
someone with write access put in the store, the UI (it runs in Airflow's API server, whose sync routes share
one thread pool): it reads at most a given size, checked before reading, and on a local root opens
no symbolic link below the root (``O_NOFOLLOW``), never blocks on a FIFO (``O_NONBLOCK``) and reads
regular files only (``fstat``). Which limit is the reader's (the UI's: ``include.ui.views.READ_LIMIT``).
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

ROOT_ENV = "S3OPS_ARTIFACT_ROOT"
CONN_ENV = "S3OPS_ARTIFACT_CONN_ID"

# Either a pathlib.Path or an airflow ObjectStoragePath: both offer /, open, exists, iterdir, read_text.
ArtifactPath = Any


def _configured_root() -> str:
    root = os.environ.get(ROOT_ENV)
    if not root:
        home = os.environ.get("AIRFLOW_HOME") or str(Path.home() / "airflow")
        root = str(Path(home) / "s3ops-artifacts")
    return root


def _is_remote(root: str) -> bool:
    return "://" in root and not root.startswith("file://")


def artifact_root() -> ArtifactPath:
    root = _configured_root()
    if _is_remote(root):
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(root, conn_id=os.environ.get(CONN_ENV, "aws_default"))
    return Path(root.removeprefix("file://"))


def run_dir(dag_id: str, run_id: str) -> ArtifactPath:
    """``<root>/<dag_id>/<run_id>/``; run ids are used as they are (they are unique per DAG)."""
    if not run_id or "/" in run_id or run_id in (".", ".."):
        raise ValueError(f"run_id {run_id!r} cannot name an artifact folder")
    return artifact_root() / dag_id / run_id


def _is_local(path: ArtifactPath) -> bool:
    return isinstance(path, Path)


def write_bytes(path: ArtifactPath, data: bytes) -> None:
    """Write atomically: a reader (or a retried task) never sees half a file."""
    if _is_local(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    else:  # a single S3 PUT is atomic already
        with path.open("wb") as fh:
            fh.write(data)


def write_text(path: ArtifactPath, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: ArtifactPath, obj: Any) -> None:
    """Write ``obj`` as JSON; a run's summary, plan, audit or report is also filed in the run index."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    record_index(path, obj)


def _loads(data: bytes | str) -> Any:
    """``json.loads``, with a document nested too deep to read (a hand-edited file) a ``ValueError`` like any
    other unreadable one, not a ``RecursionError`` the readers do not expect."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None


def read_bytes(path: ArtifactPath) -> bytes:
    with path.open("rb") as fh:
        return bytes(fh.read())


def read_json(path: ArtifactPath) -> Any:
    return _loads(read_bytes(path))


class ReadRefused(ValueError):
    """A file :func:`read_bytes_bounded` does not read (the message says why): a ``ValueError``, as an
    unparsable artifact is, so readers that show one show the other."""


class TooLarge(ReadRefused):
    """A file bigger than the reader's limit."""

    def __init__(self, size: int | None, limit: int) -> None:
        self.size, self.limit = size, limit
        what = f"{size:,} bytes" if size is not None else "it grew while read"
        super().__init__(f"too large to read: {what}, more than the {limit:,} bytes read here")


#: bytes read at a time by :func:`read_bytes_bounded` (no buffer of the whole limit for a small file)
_READ_CHUNK = 1 << 20


def read_bytes_bounded(root: ArtifactPath, path: ArtifactPath, limit: int) -> bytes:
    """The bytes of the artifact at ``path`` (below ``root``), refused (:class:`ReadRefused`) when it is
    larger than ``limit``, is no regular file, or (local root) has a symbolic link on its way below ``root``
    or lies outside it. The size is checked before reading, and again while reading (a file that grows)."""
    if _is_local(path):
        with os.fdopen(_open_below(Path(root), Path(path)), "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ReadRefused(f"not a regular file ({_file_kind(st.st_mode)}); not read")
            if st.st_size > limit:
                raise TooLarge(st.st_size, limit)
            return _read_at_most(fh, limit)
    # Object stores have no links, FIFOs or devices. Opening an object asks its size (fsspec's info(), one
    # HEAD, no byte read yet): a second HEAD through path.stat() would double a page's requests.
    with path.open("rb") as fh:
        size = getattr(fh, "size", None)
        if isinstance(size, int) and size > limit:
            raise TooLarge(size, limit)
        return _read_at_most(fh, limit)


def _read_at_most(fh: Any, limit: int) -> bytes:
    """All of ``fh``, or :class:`TooLarge` as soon as it holds more than ``limit`` bytes."""
    chunks: list[bytes] = []
    total = 0
    while chunk := fh.read(min(_READ_CHUNK, limit + 1 - total)):
        chunks.append(bytes(chunk))
        total += len(chunk)
        if total > limit:
            raise TooLarge(None, limit)
    return b"".join(chunks)


def _open_below(root: Path, path: Path) -> int:
    """A read-only descriptor of ``path``, opened folder by folder from ``root`` (the root itself may be a
    link), each one relative to the one before, so no link below the root is followed, not even one swapped
    in while walking; ``O_NONBLOCK``: opening a FIFO does not wait for a writer."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        raise ReadRefused(f"{path} is outside the artifact root; not read") from None
    if not parts or ".." in parts:
        raise ReadRefused(f"{path} names no file below the artifact root; not read")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            folder = _open_at(part, flags | os.O_DIRECTORY, fd)
            os.close(fd)
            fd = folder
        return _open_at(parts[-1], flags | os.O_NONBLOCK, fd)
    finally:
        os.close(fd)


def _open_at(name: str, flags: int, dir_fd: int) -> int:
    """``os.open`` of ``name`` in the folder ``dir_fd``; a symbolic link refused (``O_NOFOLLOW`` fails on one
    with ELOOP, or ENOTDIR with ``O_DIRECTORY`` on Linux: which one it was is asked of ``lstat``)."""
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link_at(name, dir_fd):
            raise ReadRefused(f"{name} is a symbolic link; not followed") from None
        raise


def _is_link_at(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def _file_kind(mode: int) -> str:
    """What a file that is not a regular one is, for a message."""
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def is_link(path: ArtifactPath) -> bool:
    """A symbolic link (local only: object stores have none); what the UI does not follow."""
    return _is_local(path) and Path(path).is_symlink()


def parse_json(data: bytes) -> Any:
    """A JSON document already read (:func:`read_json` reads one from a path)."""
    return _loads(data)


def parse_jsonl(data: bytes) -> list[dict[str, Any]]:
    """The rows of a JSON-lines document already read (:func:`read_jsonl` reads one from a path)."""
    return [_loads(line) for line in data.splitlines() if line.strip()]


def write_jsonl(path: ArtifactPath, rows: Iterable[dict[str, Any]]) -> int:
    """Write one JSON object per line; returns the row count."""
    data = jsonl_bytes(rows)
    write_bytes(path, data)
    return data.count(b"\n")


def jsonl_bytes(rows: Iterable[dict[str, Any]]) -> bytes:
    """What :func:`write_jsonl` writes for ``rows``: for a caller that takes the digest of exactly the bytes
    it writes (:func:`write_bytes`), not of a second read."""
    lines = [json.dumps(row, separators=(",", ":"), default=str) for row in rows]
    return ("\n".join(lines) + ("\n" if lines else "")).encode()


def read_jsonl(path: ArtifactPath) -> Iterator[dict[str, Any]]:
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                yield _loads(line)


def exists(path: ArtifactPath) -> bool:
    return bool(path.exists())


#: S3 error codes of a conditional PUT that lost to another writer of the key (``ConditionalRequestConflict``:
#: a concurrent conditional write of it is still in progress)
_TAKEN_CODES = ("PreconditionFailed", "ConditionalRequestConflict")


def create_exclusive(path: ArtifactPath, data: bytes) -> bool:
    """Create ``path`` holding ``data`` unless it exists: True when this call created it, False when it was
    there already. Atomic among concurrent callers on any host, so it claims something exactly once:
    ``O_CREAT|O_EXCL`` on a local root, a conditional PUT (``If-None-Match: *``) on an ``s3://`` root. A
    store that does not implement conditional writes (501) gets a plain write after an existence check:
    best effort, as good as check-then-write can be."""
    if _is_local(path):
        return _create_local(Path(path), data)
    if path.exists():  # also what a store that ignores the condition relies on
        return False
    try:
        path.fs.pipe_file(path.path, data, mode="create")
    except FileExistsError:
        return False
    except OSError as exc:
        if _s3_error_code(exc) in _TAKEN_CODES:
            return False
        if exc.errno != errno.ENOSYS:
            raise
        import logging

        logging.getLogger(__name__).warning("%s: the store does not support conditional writes; the claim is "
                                            "best effort", uri(path))
        write_bytes(path, data)
    return True


def _create_local(path: Path, data: bytes) -> bool:
    """Write ``data`` to a temporary file beside ``path``, then hard-link it to ``path`` (fails when ``path``
    exists): a reader never sees the claim empty or half written, as a conditional PUT on S3 is never seen.
    Where the file system has no hard links, ``O_EXCL`` (the claim is empty for the instant of its write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        return _create_local_excl(path, data)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return True


def _create_local_excl(path: Path, data: bytes) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except BaseException:
        path.unlink(missing_ok=True)  # a claim left empty by a full disk must not hold
        raise
    return True


def names_in(folder: ArtifactPath) -> list[str]:
    """The names of the files in ``folder`` as the store holds them now ([] when there is no such folder):
    an ``s3://`` folder is listed afresh, not from s3fs's listing cache, which another worker's writes do not
    update. An error of the store is raised."""
    if _is_local(folder):
        try:
            return [entry.name for entry in os.scandir(folder)]
        except FileNotFoundError:
            return []
    try:
        listed = folder.fs.ls(folder.path, detail=False, refresh=True)
    except FileNotFoundError:
        return []
    return [str(name).rstrip("/").rsplit("/", 1)[-1] for name in listed]


def _s3_error_code(exc: BaseException) -> str | None:
    """The S3 error code behind an error s3fs translated (it keeps botocore's ``ClientError`` as the cause)."""
    response = getattr(exc.__cause__, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


def uri(path: ArtifactPath) -> str:
    """A string a user can paste: ``s3://…`` or an absolute local path."""
    return str(path) if not _is_local(path) else str(Path(path).resolve())


def remove(path: ArtifactPath) -> None:
    """Delete one file (missing is fine)."""
    if _is_local(path):
        Path(path).unlink(missing_ok=True)
    elif path.exists():
        path.unlink()


def remove_empty_folder(path: ArtifactPath) -> None:
    """Remove a local folder if it is empty (object stores have no folders to remove)."""
    if _is_local(path):
        try:
            Path(path).rmdir()
        except OSError:
            pass


# The run index ------------------------------------------------------------------------------------
# The UI must not open every run folder to draw a page (0.73 s for 20,000 upload runs, growing). So the
# store keeps its own index: each time a run writes one of INDEXED, a compact copy of it is filed under
#   <root>/_index/<dag_id>/<YYYY-MM-DD>/<HH>/<run_id>.<kind>.json      live: one small file per run and kind
# The writer then rolls the DAG's closed hours (older than the previous hour) up into
#   <root>/_index/<dag_id>/<YYYY-MM-DD>/<HH>.jsonl + <HH>.sum.json     entries; per-kind counts and sums
# and daily housekeeping rolls closed days up into
#   <root>/_index/<dag_id>/<YYYY-MM-DD>.jsonl + <YYYY-MM-DD>.sum.json
# so a page reads at most two hours of small files, a few dozen hour files and one sum per day. Each DAG
# runs one run at a time (max_active_runs=1), so one writer rolls up a DAG's hours at a time; the index is a
# cache of the run folders all the same: rebuild_index() recreates it from them.
#: A deleting run's plan (include.deletion.plan writes it; notifications and housekeeping read it)
PLAN_FILE = "plan.json"
#: whom a run's approval request reached: written by the approval notifier (include.dag_defaults), read by the
#: deletion audit (include.deletion.approval.reached_nobody); here, so neither imports the other
NOTIFIED_FILE = "approval_notified.json"
#: where a task besides ``delete`` that deletes (retention's purge) records its result for the audit
TASK_RESULTS_DIR = "task_results"
#: where a run planned again after it deleted keeps the earlier plan's record, one folder per plan id
EARLIER_DIR = "earlier"
#: the chunk audits of a deleting run (include.deletion.plan); moved last with the task results
AUDIT_DIR = "audit"
#: in ``earlier/``: the destination of a record move under way, written before the first file moves and
#: removed after the last, so whoever finds it (the plan task again, or housekeeping) finishes the move
EARLIER_MOVE_FILE = "moving.json"
#: what stays in place when a run's record moves to ``earlier/``: its settings (written afresh) and the
#: earlier records
STAYS_IN_PLACE = ("settings.json", EARLIER_DIR)
_EARLIER_NAME = re.compile(r"[A-Za-z0-9_-]+")


def earlier_name(plan_id: str) -> str:
    """The folder under ``earlier/`` for the record of ``plan_id`` (a name that cannot be ``moving.json``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", plan_id) or "unknown-plan"


def move_record_to_earlier(run_dir: ArtifactPath, name: str) -> ArtifactPath:
    """Move the run folder's record (everything but :data:`STAYS_IN_PLACE`) to ``earlier/<name>/``, file by
    file (copy, then remove; the chunk audits and task results last). The destination is noted first
    (:data:`EARLIER_MOVE_FILE`): an interrupted move is finished by :func:`finish_earlier_move` into the
    same folder, whoever calls it, so no file is left at the top or kept twice. A move under way to another
    folder is finished first. Returns the destination."""
    note = run_dir / EARLIER_DIR / EARLIER_MOVE_FILE
    if not exists(note):
        if not _EARLIER_NAME.fullmatch(name):
            raise ValueError(f"{name!r} cannot name a folder of {EARLIER_DIR}/")
        write_bytes(note, json.dumps({"to": name}).encode())
    dest = finish_earlier_move(run_dir)
    assert dest is not None  # noted above
    return dest


def finish_earlier_move(run_dir: ArtifactPath) -> ArtifactPath | None:
    """Finish the record move under way in ``run_dir`` (None: there is none). A note that does not name a
    folder raises ``ValueError`` naming it, and nothing moves: what it meant is unknown."""
    note = run_dir / EARLIER_DIR / EARLIER_MOVE_FILE
    try:
        to = json.loads(read_bytes(note)).get("to")
    except FileNotFoundError:
        return None
    except (ValueError, AttributeError):
        to = None
    if not isinstance(to, str) or not _EARLIER_NAME.fullmatch(to):
        raise ValueError(f"{uri(note)} does not name the folder a record was being moved to: the move was not "
                         "finished; move the run's files into the right earlier/<plan id>/ folder and remove the note")
    dest = run_dir / EARLIER_DIR / to
    base = str(run_dir).rstrip("/") + "/"  # relative_to cannot be printed on an s3:// ObjectStoragePath
    children = [c for c in run_dir.iterdir() if c.name not in STAYS_IN_PLACE]
    moves: list[tuple[ArtifactPath, list[ArtifactPath]]] = []
    for child in sorted(children, key=lambda c: (c.name in (AUDIT_DIR, TASK_RESULTS_DIR), c.name)):
        found = [child] if not child.is_dir() or _is_link(child) else sorted(child.rglob("*"), key=str)
        for path in found:
            if not str(path).startswith(base):  # never flatten two folders' files onto one name
                raise ValueError(f"cannot tell where {path} lies in {base}: the record was not moved")
            _refuse_links(run_dir, path, dest / str(path)[len(base):], to)
        moves.append((child, [p for p in found if not p.is_dir()]))
    for child, files in moves:  # every path checked first: a refused move moves nothing
        for path in files:
            try:
                data = read_bytes(path)
            except FileNotFoundError:  # moved by another caller finishing the same move
                continue
            write_bytes(dest / str(path)[len(base):], data)
            remove(path)
        if child.is_dir():
            remove_empty_folder(child)
    remove(note)
    return dest


def _is_link(path: ArtifactPath) -> bool:
    return _is_local(path) and Path(path).is_symlink()


def _refuse_links(run_dir: ArtifactPath, path: ArtifactPath, target: ArtifactPath, to: str) -> None:
    """On a local root, a record file that is a symbolic link or lies behind one, or a destination behind one
    (``earlier``, ``earlier/<to>`` or a folder in it a link to another run's folder), raises ``ValueError``:
    moving it would read or overwrite, then remove, files outside the run folder (another run's record)."""
    if not _is_local(path):
        return
    real = Path(run_dir).resolve()
    outside = Path(path).is_symlink() or not Path(path).resolve().is_relative_to(real)
    if outside or not Path(target).resolve().is_relative_to(real / EARLIER_DIR / to):
        raise ValueError(f"{path if outside else target} is a symbolic link or lies behind one: the record was not "
                         f"moved to {EARLIER_DIR}/{to}/ (its files would be read or written outside the run folder); "
                         "replace the link with what it stands for, or remove it, and plan again")


#: The DAGs that write run folders under the root (``<root>/<dag_id>/<run_id>/``): what housekeeping prunes.
DAG_FOLDERS = ("s3_storage_report", "s3_upload", "s3_retention", "s3_deploy_cleanup", "s3ops_housekeeping")
INDEX_DIR = "_index"
INDEXED = {"summary.json": "summary", "plan.json": "plan", "audit.json": "audit", "report.json": "report"}
LIST_KEEP = 20  # items kept per list in an index entry (the UI shows at most 20)
DAY_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
HOUR_RE = re.compile(r"\d{2}")


def compact(kind: str, doc: Any) -> Any:
    """What the index keeps of an artifact: scalars and small mappings whole, lists cut to LIST_KEEP; a
    report keeps every bucket's name, counts and error (its history chart needs all of them)."""
    if not isinstance(doc, dict):
        return doc
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if kind == "report" and key == "buckets" and isinstance(value, list):
            out[key] = [{k: b.get(k) for k in ("name", "object_count", "total_bytes", "error")}
                        for b in value if isinstance(b, dict)]
        elif isinstance(value, list):
            out[key] = value[:LIST_KEEP]
        elif isinstance(value, dict):
            out[key] = value if len(value) <= 50 else dict(list(value.items())[:50])
        else:
            out[key] = value
    return out


def _now() -> Any:
    from datetime import datetime

    return datetime.now(UTC)


def _same(a: ArtifactPath, b: ArtifactPath) -> bool:
    if _is_local(a) and _is_local(b):
        return Path(a).absolute() == Path(b).absolute()
    return str(a).rstrip("/") == str(b).rstrip("/")


def index_entry_for(path: ArtifactPath, obj: Any, at: str | None = None) -> tuple[ArtifactPath, dict] | None:
    """Where and what to index for an artifact written at ``path`` (``None``: not an indexed artifact, or
    not directly in a run folder ``<root>/<dag_id>/<run_id>/``). ``at``: ISO 8601 UTC, default now."""
    kind = INDEXED.get(path.name)
    if kind is None:
        return None
    run_folder = path.parent
    dag_folder = run_folder.parent
    root = dag_folder.parent
    if dag_folder.name.startswith("_"):
        return None
    # A local artifact is never under a remote root: said without building the remote root, so the command
    # lines (they write locally and have no Airflow) work whatever the root is set to.
    if _is_local(root) and _is_remote(_configured_root()):
        return None
    if not _same(root, artifact_root()):
        return None
    at = at or _now().isoformat()
    entry = {"run_id": run_folder.name, "kind": kind, "at": at, "doc": compact(kind, obj)}
    return root / INDEX_DIR / dag_folder.name / at[:10] / at[11:13] / f"{run_folder.name}.{kind}.json", entry


def record_index(path: ArtifactPath, obj: Any) -> None:
    """File the index entry of an artifact just written, then roll up the DAG's closed hours. A failure is
    logged: the artifact is what counts, and housekeeping's rebuild repairs the index."""
    found = index_entry_for(path, obj)
    if found is None:
        return
    where, entry = found
    try:
        write_bytes(where, json.dumps(entry, separators=(",", ":"), default=str).encode())
        from datetime import timedelta

        before = (_now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H")
        roll_up_hours(where.parent.parent.parent.parent, where.parent.parent.parent.name, before)
    except OSError:
        import logging

        logging.getLogger(__name__).warning("could not index %s at %s; housekeeping rebuilds it", path, where)


@dataclass(frozen=True)
class Period:
    """A slice of a DAG's index: a whole day (``YYYY-MM-DD``, rolled up by housekeeping) or an hour
    (``YYYY-MM-DDTHH``: rolled up by a writer, live entries, or both after a late write)."""

    key: str
    rolled: bool  # has <key>.jsonl and <key>.sum.json
    live: bool  # has a folder of entry files

    def base(self, root: ArtifactPath, dag_id: str) -> ArtifactPath:
        index = root / INDEX_DIR / dag_id
        return index if len(self.key) == 10 else index / self.key[:10]

    @property
    def name(self) -> str:
        return self.key if len(self.key) == 10 else self.key[11:]


def _children(folder: ArtifactPath) -> list[ArtifactPath]:
    try:
        return list(folder.iterdir()) if folder.exists() else []
    except OSError:
        return []


def index_periods(root: ArtifactPath, dag_id: str) -> list[Period] | None:
    """Every period of ``dag_id``'s index, newest first; ``None`` when the DAG has no index yet (runs
    written before it: read the folders, or let housekeeping rebuild it)."""
    base = root / INDEX_DIR / dag_id
    try:
        if not base.exists():
            return None
    except OSError:
        return None
    found: dict[str, list[bool]] = {}
    for child in _children(base):
        name = child.name
        if DAY_RE.fullmatch(name):
            for sub in _children(child):
                if HOUR_RE.fullmatch(sub.name):
                    found.setdefault(f"{name}T{sub.name}", [False, False])[1] = True
                elif sub.name.endswith(".jsonl") and HOUR_RE.fullmatch(sub.name[:-6]):
                    found.setdefault(f"{name}T{sub.name[:-6]}", [False, False])[0] = True
        elif name.endswith(".jsonl") and DAY_RE.fullmatch(name[:-6]):
            found.setdefault(name[:-6], [False, False])[0] = True
    return [Period(key, rolled, live) for key, (rolled, live) in sorted(found.items(), reverse=True)]


def read_period(root: ArtifactPath, dag_id: str, period: Period, limit: int | None = None,
                refused: list[str] | None = None) -> list[dict[str, Any]]:
    """The entries of one period, oldest first; unreadable lines or files are skipped. ``limit``: each file
    is read with :func:`read_bytes_bounded` (the UI), and one refused is named in ``refused`` too."""
    base = period.base(root, dag_id)
    entries: list[dict[str, Any]] = []
    if period.rolled:
        try:
            data = _read_index_file(root, base / f"{period.name}.jsonl", limit, refused)
        except (OSError, ValueError):
            data = b""
        for line in data.splitlines():
            try:
                entries.append(_loads(line))
            except ValueError:
                continue
    if period.live:
        for child in _children(base / period.name):
            try:
                entries.append(_loads(_read_index_file(root, child, limit, refused)))
            except (OSError, ValueError):
                continue
    entries = [e for e in entries if isinstance(e, dict)]  # a line of valid JSON that is no entry: skipped too
    entries.sort(key=lambda e: (str(e.get("at")), str(e.get("run_id"))))
    return entries


def _read_index_file(root: ArtifactPath, path: ArtifactPath, limit: int | None, refused: list[str] | None) -> bytes:
    """An index file whole (no ``limit``: the writers and housekeeping), or bounded, a refusal named in ``refused``."""
    if limit is None:
        return read_bytes(path)
    try:
        return read_bytes_bounded(root, path, limit)
    except ReadRefused as exc:
        if refused is not None:
            refused.append(f"{str(path)[len(str(root)):].lstrip('/')}: {exc}")
        raise


def period_sums(root: ArtifactPath, dag_id: str, period: Period, limit: int | None = None,
                refused: list[str] | None = None) -> dict[str, Any] | None:
    """The per-kind sums of a rolled-up period with no live entries (``None``: read its entries);
    ``limit`` and ``refused`` as for :func:`read_period`."""
    if not period.rolled or period.live:
        return None
    path = period.base(root, dag_id) / f"{period.name}.sum.json"
    try:
        sums = _loads(_read_index_file(root, path, limit, refused))
    except (OSError, ValueError):
        return None
    return sums if isinstance(sums, dict) else None


def entry_sums(entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Per kind: how many entries and the sum of every numeric top-level field of their documents."""
    sums: dict[str, Any] = {}
    for entry in entries:
        slot = sums.setdefault(str(entry.get("kind")), {"count": 0, "sums": {}})
        slot["count"] += 1
        doc = entry.get("doc")
        if isinstance(doc, dict):
            for key, value in doc.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    slot["sums"][key] = slot["sums"].get(key, 0) + value
    return sums


def write_period(root: ArtifactPath, dag_id: str, period: Period, entries: list[dict[str, Any]]) -> None:
    """Replace a period by one rolled-up file of ``entries`` (none: the period is removed)."""
    base = period.base(root, dag_id)
    if entries:
        write_jsonl(base / f"{period.name}.jsonl", entries)
        write_json(base / f"{period.name}.sum.json", entry_sums(entries))
    else:
        remove(base / f"{period.name}.jsonl")
        remove(base / f"{period.name}.sum.json")
    if period.live:
        folder = base / period.name
        for child in _children(folder):
            remove(child)
        remove_empty_folder(folder)


def roll_up_hours(root: ArtifactPath, dag_id: str, before_hour: str) -> int:
    """Roll the live hours older than ``before_hour`` (``YYYY-MM-DDTHH``) up into hour files."""
    rolled = 0
    for period in index_periods(root, dag_id) or []:
        if len(period.key) == 13 and period.live and period.key < before_hour:
            write_period(root, dag_id, period, read_period(root, dag_id, period))
            rolled += 1
    return rolled


def roll_up_days(root: ArtifactPath, dag_id: str, before_day: str) -> int:
    """Merge every day older than ``before_day`` into ``<day>.jsonl`` (+ sums); returns the days merged.
    Safe to repeat and to interrupt (a half-merged day is read from both places, de-duplicated)."""
    periods = index_periods(root, dag_id) or []
    days = sorted({p.key[:10] for p in periods if len(p.key) == 13 and p.key[:10] < before_day})
    for day in days:
        parts = [p for p in periods if p.key[:10] == day]
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        for p in parts:
            for e in read_period(root, dag_id, p):
                seen[(str(e.get("run_id")), str(e.get("kind")))] = e
        entries = sorted(seen.values(), key=lambda e: (str(e.get("at")), str(e.get("run_id"))))
        write_period(root, dag_id, Period(day, rolled=True, live=False), entries)
        for p in parts:
            if len(p.key) == 13:
                write_period(root, dag_id, p, [])
        remove_empty_folder(root / INDEX_DIR / dag_id / day)
    return len(days)


def rebuild_index(root: ArtifactPath, dag_id: str, run_files: Mapping[str, Mapping[str, float]] | None = None) -> int:
    """Index the artifacts of ``dag_id``'s run folders that the index lacks (runs written before it
    existed, or whose entry was lost); each is filed at its file's modification time. ``run_files``
    (``{run_id: {relative path: mtime}}``, from one listing) saves a request per file on object storage.
    Returns the entries written."""
    from datetime import datetime

    known = {(str(e.get("run_id")), str(e.get("kind"))) for period in index_periods(root, dag_id) or []
             for e in read_period(root, dag_id, period)}
    if run_files is None:
        base = root / dag_id
        run_files = {}
        for run_folder in _children(base):
            run_files[run_folder.name] = {name: mtime(run_folder / name) or 0.0 for name in INDEXED
                                          if (run_folder / name).exists()}
    written = 0
    for run_id, files in run_files.items():
        for name, kind in INDEXED.items():
            if name not in files or (run_id, kind) in known:
                continue
            path = root / dag_id / run_id / name
            try:
                doc = read_json(path)
            except (OSError, ValueError) as exc:
                doc = {"error": f"{name}: {exc}"}
            found = index_entry_for(path, doc, at=datetime.fromtimestamp(files[name], tz=UTC).isoformat())
            if found is None:
                continue
            try:
                write_bytes(found[0], json.dumps(found[1], separators=(",", ":"), default=str).encode())
            except OSError as exc:  # e.g. a run id too long for a file name: that run stays unindexed, the rest go on
                import logging

                logging.getLogger(__name__).warning("could not index %s: %s", path, exc)
                continue
            written += 1
    return written


def mtime(path: ArtifactPath) -> float | None:
    """A file's modification time (epoch seconds), local or object storage; None when unknown."""
    try:
        stat = path.stat()
    except (OSError, ValueError):
        return None
    ts: Any = getattr(stat, "st_mtime", None)
    if ts is None and isinstance(stat, dict):
        ts = stat.get("mtime") or stat.get("LastModified")
    if hasattr(ts, "timestamp"):
        return float(ts.timestamp())
    return float(ts) if ts is not None else None
