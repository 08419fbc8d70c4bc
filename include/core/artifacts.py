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
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


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
