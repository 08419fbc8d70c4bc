"""The expired TRIAL job rows a retention plan found: the exact rows ``purge_job_rows`` may delete.

The plan writes them to ``<run>/expired_trial_rows/NNNNN.jsonl`` while it streams the table, and
``plan.json`` records each file's digest (the guard and the approval pin ``plan.json``, so they pin the
rows too). The purge deletes only those rows, each matched by every value recorded (its ``jobId`` as
bytes), with the expiry condition repeated in the ``DELETE``: a row added after the approval, even one
that has expired since or shares a ``jobId``, is never purged by this run (the approver saw a count of
these rows, not of whatever matches at purge time).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from include.core import artifacts
from include.deletion.plan import remove_children
from include.retention.policy import JobRow, Policy, classify_job

EXPIRED_ROWS_DIR = "expired_trial_rows"


class RowsChanged(RuntimeError):
    """The recorded rows are missing, or not those the plan wrote: nothing is purged."""


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _line(row: JobRow) -> str:
    completed = row.completed_at.isoformat() + "Z" if row.completed_at else None
    return json.dumps({"jobId": row.job_id, "completedAt": completed, "type": row.type, "sourceData": row.source_data},
                      separators=(",", ":"))


class ExpiredRowsWriter:
    """Records the expired TRIAL rows of a row stream, ``chunk_size`` rows per file (memory: one file).
    Writing replaces the files of an earlier plan of the run."""

    def __init__(self, run_dir: Any, policy: Policy, *, chunk_size: int = 10_000) -> None:
        self.folder = run_dir / EXPIRED_ROWS_DIR
        self.policy = policy
        self.chunk_size = chunk_size
        self.count = 0
        self._lines: list[str] = []
        self._chunks: dict[str, str] = {}
        remove_children(self.folder, suffix=".jsonl")

    def passing(self, rows: Iterable[JobRow]) -> Iterator[JobRow]:
        """``rows`` unchanged, recording the expired TRIAL ones on the way."""
        for row in rows:
            if classify_job(row.type, row.completed_at, self.policy) == "trial_expired":
                self._lines.append(_line(row))
                self.count += 1
                if len(self._lines) >= self.chunk_size:
                    self._flush()
            yield row

    def _flush(self) -> None:
        if not self._lines:
            return
        name = f"{len(self._chunks):05d}"
        data = ("\n".join(self._lines) + "\n").encode()
        artifacts.write_bytes(self.folder / f"{name}.jsonl", data)
        self._chunks[name] = _digest(data)
        self._lines = []

    def close(self) -> dict[str, Any]:
        """Write the last file; returns what ``plan.json`` records (``count``, and each file's digest)."""
        self._flush()
        return {"count": self.count, "chunks": dict(self._chunks)}


def planned_rows(run_dir: Any, recorded: Mapping[str, Any] | None) -> Iterator[list[dict[str, Any]]]:
    """The rows the plan recorded (``recorded``: plan.json's ``expired_trial_rows_files``), one list per
    file. Every file is checked against its digest, and the count against the plan's, before the first list
    is given: :class:`RowsChanged` is raised before anything is purged."""
    if not isinstance(recorded, Mapping) or not isinstance(recorded.get("chunks"), Mapping):
        raise RowsChanged("plan.json does not list the expired TRIAL rows to purge (a plan written before they were "
                          "recorded): nothing is purged; clear the run's plan task and everything after it to plan "
                          "again")
    paths = [run_dir / EXPIRED_ROWS_DIR / f"{name}.jsonl" for name in recorded["chunks"]]
    count = 0
    for path, digest in zip(paths, recorded["chunks"].values(), strict=True):
        if not artifacts.exists(path):
            raise RowsChanged(f"{artifacts.uri(path)} is missing: nothing is purged; plan the run again")
        data = _read(path)
        if _digest(data) != digest:
            raise RowsChanged(f"{artifacts.uri(path)} changed after the plan was written: nothing is purged; plan "
                              "the run again")
        count += sum(1 for line in data.splitlines() if line.strip())
    if count != recorded.get("count"):
        raise RowsChanged(f"the plan recorded {recorded.get('count')} expired TRIAL rows but its files hold {count}: "
                          "nothing is purged; plan the run again")

    def rows() -> Iterator[list[dict[str, Any]]]:
        for path, digest in zip(paths, recorded["chunks"].values(), strict=True):
            data = _read(path)
            if _digest(data) != digest:  # changed since the check above: the rest is not purged
                raise RowsChanged(f"{artifacts.uri(path)} changed while the rows were purged: its rows are not")
            yield [json.loads(line) for line in data.splitlines() if line.strip()]

    return rows()


def _read(path: Any) -> bytes:
    with path.open("rb") as fh:
        return bytes(fh.read())
