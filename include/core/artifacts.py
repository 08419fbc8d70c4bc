"""The artifact store: where plans, manifests, reports and audits live (never in XCom).

One root, set by ``S3OPS_ARTIFACT_ROOT`` (a local path or ``s3://bucket/prefix``; default
``$AIRFLOW_HOME/s3ops-artifacts``). Each run writes under ``<root>/<dag_id>/<run_id>/``. An ``s3://``
root is reached through Airflow's ``ObjectStoragePath`` with the connection named by
``S3OPS_ARTIFACT_CONN_ID`` (default ``aws_default``); a local root is a plain ``pathlib.Path`` so the
library and its command line work without Airflow.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT_ENV = "S3OPS_ARTIFACT_ROOT"
CONN_ENV = "S3OPS_ARTIFACT_CONN_ID"

# Either a pathlib.Path or an airflow ObjectStoragePath: both offer /, open, exists, iterdir, read_text.
ArtifactPath = Any


def artifact_root() -> ArtifactPath:
    root = os.environ.get(ROOT_ENV)
    if not root:
        home = os.environ.get("AIRFLOW_HOME") or str(Path.home() / "airflow")
        root = str(Path(home) / "s3ops-artifacts")
    if "://" in root and not root.startswith("file://"):
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


def read_json(path: ArtifactPath) -> Any:
    with path.open("rb") as fh:
        return json.loads(fh.read())


def write_jsonl(path: ArtifactPath, rows: Iterable[dict[str, Any]]) -> int:
    """Write one JSON object per line; returns the row count."""
    lines = [json.dumps(row, separators=(",", ":"), default=str) for row in rows]
    write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return len(lines)


def read_jsonl(path: ArtifactPath) -> Iterator[dict[str, Any]]:
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def exists(path: ArtifactPath) -> bool:
    return bool(path.exists())


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
#   <root>/_index/<dag_id>/<YYYY-MM-DD>/<run_id>.<kind>.json        (live: one small file per run and kind)
# and housekeeping rolls closed days up into
#   <root>/_index/<dag_id>/<YYYY-MM-DD>.jsonl + <YYYY-MM-DD>.sum.json (entries; per-kind counts and sums).
# One writer per file (the run itself), so no append races, on a local disk and on S3 alike. The index is
# a cache of the run folders: rebuild_index() recreates it from them.
INDEX_DIR = "_index"
INDEXED = {"summary.json": "summary", "plan.json": "plan", "audit.json": "audit", "report.json": "report"}
LIST_KEEP = 20  # items kept per list in an index entry (the UI shows at most 20)
DAY_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


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


def _now_iso() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat()


def _same(a: ArtifactPath, b: ArtifactPath) -> bool:
    if _is_local(a) and _is_local(b):
        return Path(a).absolute() == Path(b).absolute()
    return str(a).rstrip("/") == str(b).rstrip("/")


def index_entry_for(path: ArtifactPath, obj: Any, at: str | None = None) -> tuple[ArtifactPath, dict] | None:
    """Where and what to index for an artifact written at ``path`` (``None``: not an indexed artifact, or
    not directly in a run folder ``<root>/<dag_id>/<run_id>/``)."""
    kind = INDEXED.get(path.name)
    if kind is None:
        return None
    run_folder = path.parent
    dag_folder = run_folder.parent
    root = dag_folder.parent
    if dag_folder.name.startswith("_") or not _same(root, artifact_root()):
        return None
    at = at or _now_iso()
    entry = {"run_id": run_folder.name, "kind": kind, "at": at, "doc": compact(kind, obj)}
    return root / INDEX_DIR / dag_folder.name / at[:10] / f"{run_folder.name}.{kind}.json", entry


def record_index(path: ArtifactPath, obj: Any) -> None:
    """File the index entry of an artifact just written (a failure is logged: the artifact is what counts)."""
    found = index_entry_for(path, obj)
    if found is None:
        return
    where, entry = found
    try:
        write_bytes(where, json.dumps(entry, separators=(",", ":"), default=str).encode())
    except OSError:
        import logging

        logging.getLogger(__name__).warning("could not index %s at %s; rebuild_index() repairs it", path, where)


def index_days(root: ArtifactPath, dag_id: str) -> list[tuple[str, bool]] | None:
    """``(day, rolled_up)`` of every indexed day of ``dag_id``, newest first; ``None`` when the DAG has no
    index yet (runs written before it: read the folders, or let housekeeping rebuild it)."""
    base = root / INDEX_DIR / dag_id
    try:
        if not base.exists():
            return None
        names = [child.name for child in base.iterdir()]
    except OSError:
        return None
    days: dict[str, bool] = {}
    for name in names:
        if DAY_RE.fullmatch(name):
            days.setdefault(name, False)
        elif name.endswith(".jsonl") and DAY_RE.fullmatch(name[:-6]):
            days[name[:-6]] = True
    return sorted(days.items(), reverse=True)


def read_index_day(root: ArtifactPath, dag_id: str, day: str, rolled_up: bool) -> list[dict[str, Any]]:
    """The entries of one day, oldest first; unreadable lines or files are skipped."""
    base = root / INDEX_DIR / dag_id
    entries: list[dict[str, Any]] = []
    if rolled_up:
        try:
            with (base / f"{day}.jsonl").open("rb") as fh:
                for line in fh:
                    try:
                        entries.append(json.loads(line))
                    except ValueError:
                        continue
        except OSError:
            pass
    folder = base / day
    try:
        children = list(folder.iterdir()) if folder.exists() else []
    except OSError:
        children = []
    for child in children:  # live entries (also late writes to a rolled-up day)
        try:
            entries.append(read_json(child))
        except (OSError, ValueError):
            continue
    entries.sort(key=lambda e: (str(e.get("at")), str(e.get("run_id"))))
    return entries


def read_day_sums(root: ArtifactPath, dag_id: str, day: str) -> dict[str, Any] | None:
    path = root / INDEX_DIR / dag_id / f"{day}.sum.json"
    try:
        return read_json(path) if path.exists() else None
    except (OSError, ValueError):
        return None


def day_sums(entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
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


def roll_up_index(root: ArtifactPath, dag_id: str, before_day: str) -> int:
    """Merge the live entries of every day older than ``before_day`` into ``<day>.jsonl`` (+ sums) and
    delete them; returns the number of days rolled up. Safe to repeat and to interrupt."""
    rolled = 0
    for day, _ in index_days(root, dag_id) or []:
        folder = root / INDEX_DIR / dag_id / day
        if day >= before_day or not folder.exists():
            continue
        entries = read_index_day(root, dag_id, day, rolled_up=True)
        write_jsonl(root / INDEX_DIR / dag_id / f"{day}.jsonl", entries)
        write_json(root / INDEX_DIR / dag_id / f"{day}.sum.json", day_sums(entries))
        for child in list(folder.iterdir()):
            remove(child)
        remove_empty_folder(folder)  # not empty after a late write: the next roll-up takes it
        rolled += 1
    return rolled


def rebuild_index(root: ArtifactPath, dag_id: str) -> int:
    """Index every run folder of ``dag_id`` that has an indexed artifact (for runs written before the
    index existed); entries are filed under the artifact's modification day. Returns the entries written."""
    from datetime import datetime, timezone

    written = 0
    base = root / dag_id
    if not base.exists():
        return 0
    for run_folder in list(base.iterdir()):
        for name in INDEXED:
            path = run_folder / name
            if not path.exists():
                continue
            try:
                doc = read_json(path)
            except (OSError, ValueError) as exc:
                doc = {"error": f"{name}: {exc}"}
            at = datetime.fromtimestamp(mtime(path) or 0, tz=timezone.utc).isoformat()
            found = index_entry_for(path, doc, at=at)
            if found is not None and not exists(found[0]):
                write_bytes(found[0], json.dumps(found[1], separators=(",", ":"), default=str).encode())
                written += 1
    return written


def mtime(path: ArtifactPath) -> float | None:
    """A file's modification time (epoch seconds), local or object storage; None when unknown."""
    try:
        stat = path.stat()
    except (OSError, ValueError):
        return None
    ts = getattr(stat, "st_mtime", None)
    if ts is None and isinstance(stat, dict):
        ts = stat.get("mtime") or stat.get("LastModified")
    if hasattr(ts, "timestamp"):
        return float(ts.timestamp())
    return float(ts) if ts is not None else None
