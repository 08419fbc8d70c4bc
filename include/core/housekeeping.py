"""Keeping the artifact store bounded: prune old run folders, keep deletion audits longer, maintain the index.

Run daily by the ``s3ops_housekeeping`` DAG; works on a local root and an ``s3://`` root alike (one
listing per DAG folder gives every file's modification time). A run folder's age is the age of its newest
file, so a run still being written (or an approval still pending) is never pruned under its feet.

- older than ``artifact_retention_days`` (default 30): the folder goes, except that a folder holding a
  deletion audit keeps the record of what was deleted and why (:data:`KEEP_WITH_AUDIT`: ``audit.json``,
  ``plan.json``, the per-chunk audits naming every deleted key, and, when its purge ran, the job rows a
  retention run was approved to purge; a run planned again after it deleted keeps the earlier record in
  ``earlier/``);
- older than ``audit_retention_days`` (default 400, never less than ``artifact_retention_days``): all of it;
- the run index (:mod:`include.core.artifacts`) loses the same runs, and days before yesterday are rolled up.

Only what s3ops wrote is touched: the folders of its DAGs (:data:`include.core.artifacts.DAG_FOLDERS`; a
folder that is a symbolic link is not followed), and in them only run folders holding an s3ops artifact.
Anything else under the root is kept and named in the report. A plan still waiting for an answer is kept
until its request can no longer be answered (the longest approval timeout), whatever the retention.

Hand-written because no library prunes an Airflow artifact layout; fsspec does the listing and deletes.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from include.core import artifacts
from include.core.artifacts import INDEX_DIR, ArtifactPath

log = logging.getLogger(__name__)

ARTIFACT_RETENTION_DAYS = 30
AUDIT_RETENTION_DAYS = 400
MAX_DAYS = 36_500
#: what a run folder with a deletion audit keeps until ``audit_retention_days``: files, and ``…/`` folders
EARLIER = f"{artifacts.EARLIER_DIR}/"
KEEP_WITH_AUDIT = ("audit.json", "plan.json", "audit/", "task_results/", "expired_trial_rows/", EARLIER)
#: kept with the audit only when the run's purge ran (a dry run's or a rejected plan's rows are no record
#: of anything, and a daily run would store the whole expired set again every day for 400 days)
KEEP_ONLY_WITH = {"expired_trial_rows/": "task_results/purge_job_rows.json"}
NOTIFICATIONS_DIR = "_notifications"
#: a record move to earlier/ under way (:func:`include.core.artifacts.move_record_to_earlier`)
MOVE_NOTE = f"{EARLIER}{artifacts.EARLIER_MOVE_FILE}"
#: a run folder holding none of these was not written by s3ops: never pruned
S3OPS_RUN_FILES = frozenset({"settings.json", "plan.json", "audit.json", "scan.json", "summary.json", "buckets.json",
                             "report.json", "approval_request.json", "guard.json"})
#: the longest ``approval_timeout_hours`` (include.deletion.settings), and a day to spare
PENDING_APPROVAL_DAYS = 31


def _kept_with_audit(rel: str, files: Mapping[str, float]) -> bool:
    """Is the run folder's file ``rel`` part of its deletion record (``files``: the folder's listing)?
    An earlier record (``earlier/<plan id>/…``) is kept whole, as it was moved, but for what
    :data:`KEEP_ONLY_WITH` keeps only with its own purge's result."""
    if rel.startswith(EARLIER):
        earlier, _, inner = rel.partition("/")[2].partition("/")
        needs = next((n for k, n in KEEP_ONLY_WITH.items() if inner.startswith(k)), None)
        return needs is None or f"{EARLIER}{earlier}/{needs}" in files
    for kept in KEEP_WITH_AUDIT:
        if rel == kept or (kept.endswith("/") and rel.startswith(kept)):
            needs = KEEP_ONLY_WITH.get(kept)
            return needs is None or needs in files
    return False


def _pending_approval(files: Mapping[str, float]) -> bool:
    """A request was asked and nothing answered it yet (no verdict, supersession or audit)."""
    return "approval_request.json" in files and not {"approval.json", "superseded.json", "audit.json"} & set(files)


class RetentionSettingError(ValueError):
    """A retention setting that is not a whole number of days in range; names the key and where it is."""


@dataclass(frozen=True)
class Retention:
    artifact_days: int = ARTIFACT_RETENTION_DAYS
    audit_days: int = AUDIT_RETENTION_DAYS


def retention_from(artifact_days: Any, audit_days: Any, where: str) -> Retention:
    """Validate the two settings (``None``: the default); ``where`` names the Variable for the message."""
    def days(value: Any, key: str, default: int) -> int:
        if value is None:
            return default
        if isinstance(value, float) and value.is_integer():  # JSON's 30.0 is 30, as the settings' schema says
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DAYS:
            raise RetentionSettingError(
                f"{key} in {where} must be a whole number of days from 1 to {MAX_DAYS}, got {value!r}")
        return value

    artifact = days(artifact_days, "artifact_retention_days", ARTIFACT_RETENTION_DAYS)
    audit = days(audit_days, "audit_retention_days", AUDIT_RETENTION_DAYS)
    return Retention(artifact, max(audit, artifact))


def _run_files(root: ArtifactPath, dag_id: str, only: str | None = None) -> dict[str, dict[str, float]]:
    """``{run_id: {file path relative to the run folder: mtime}}`` for every run folder of ``dag_id`` (``only``:
    for that run folder alone)."""
    base = root / dag_id
    runs: dict[str, dict[str, float]] = {}
    if isinstance(base, Path):
        if not base.is_dir():
            return runs
        for run in os.scandir(base):
            if not run.is_dir(follow_symlinks=False) or only not in (None, run.name):
                continue
            files = runs.setdefault(run.name, {})
            for folder, _, names in os.walk(run.path):
                for name in names:
                    full = os.path.join(folder, name)
                    try:
                        files[os.path.relpath(full, run.path)] = os.lstat(full).st_mtime
                    except OSError:
                        continue
        return runs
    prefix = base.path.rstrip("/") + "/"
    for key, info in base.fs.find(prefix + (f"{only}/" if only is not None else ""), detail=True).items():
        run_id, _, rel = key[len(prefix):].partition("/")
        if not rel:
            continue
        modified = info.get("LastModified") or info.get("mtime")
        ts = modified.timestamp() if hasattr(modified, "timestamp") else float(modified or 0)
        runs.setdefault(run_id, {})[rel] = ts
    return runs


def _remove_run(root: ArtifactPath, dag_id: str, run_id: str, files: Mapping[str, float], keep: bool) -> int:
    """Remove a run folder's files (``keep``: all but :data:`KEEP_WITH_AUDIT`); returns how many."""
    folder = root / dag_id / run_id
    doomed = [rel for rel in files if not (keep and _kept_with_audit(rel, files))]
    if not keep and isinstance(folder, Path):
        shutil.rmtree(folder, ignore_errors=True)
        return len(doomed)
    for rel in doomed:
        artifacts.remove(folder / rel)
    if isinstance(folder, Path):  # drop the emptied sub-folders (object stores have none)
        for sub, _, _ in sorted(os.walk(folder), key=lambda t: -len(t[0])):
            if Path(sub) != folder or not keep:
                try:
                    Path(sub).rmdir()
                except OSError:
                    pass
    return len(doomed)


def prune_dag(root: ArtifactPath, dag_id: str, retention: Retention, now: datetime,
              dry_run: bool = False, run_files: Mapping[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """Prune one DAG's run folders and index; returns what was (or, on a dry run, would be) removed.
    ``run_files``: the DAG's listing (:func:`_run_files`) when the caller has it already."""
    artifact_cutoff = (now - timedelta(days=retention.artifact_days)).timestamp()
    audit_cutoff = (now - timedelta(days=retention.audit_days)).timestamp()
    pending_cutoff = (now - timedelta(days=PENDING_APPROVAL_DAYS)).timestamp()
    result: dict[str, Any] = {"dag_id": dag_id, "runs_removed": 0, "runs_trimmed": 0, "files_removed": 0, "runs_kept": 0,
                              "index_periods_changed": 0, "unknown_folders_kept": [], "record_moves_finished": [],
                              "unfinished_record_moves_kept": []}
    removed: set[str] = set()
    for run_id, files in sorted((run_files if run_files is not None else _run_files(root, dag_id)).items()):
        newest = max(files.values(), default=0.0)
        if MOVE_NOTE in files and newest < artifact_cutoff:
            # A record move to earlier/ that stopped half way and was never resumed (its plan task killed, the
            # run given up): finished first, so the record is kept whole, not pruned by halves (the rows of a
            # purge in earlier/, its result still at the top). Untouched for a day at least: no task is moving it.
            if dry_run:
                result["record_moves_finished"].append(run_id)
                result["runs_kept"] += 1
                continue
            try:
                artifacts.finish_earlier_move(root / dag_id / run_id)
            except ValueError as exc:  # what the note meant is unknown: the run folder is kept as it is
                result["unfinished_record_moves_kept"].append(f"{run_id}: {exc}")
                result["runs_kept"] += 1
                continue
            result["record_moves_finished"].append(run_id)
            files = _run_files(root, dag_id, only=run_id).get(run_id, {})
            newest = max(files.values(), default=0.0)
        if not S3OPS_RUN_FILES & set(files):
            result["unknown_folders_kept"].append(run_id)
            continue
        has_audit = "audit.json" in files or any(rel.startswith(("audit/", EARLIER)) for rel in files)
        if newest >= artifact_cutoff or (_pending_approval(files) and newest >= pending_cutoff) or (
                has_audit and newest >= audit_cutoff and all(_kept_with_audit(rel, files) for rel in files)):
            result["runs_kept"] += 1
            continue
        keep = has_audit and newest >= audit_cutoff
        result["runs_trimmed" if keep else "runs_removed"] += 1
        if not keep:
            removed.add(run_id)
        if dry_run:
            result["files_removed"] += len([f for f in files if not (keep and _kept_with_audit(f, files))])
        else:
            result["files_removed"] += _remove_run(root, dag_id, run_id, files, keep)
    result["index_periods_changed"] = _prune_index(root, dag_id, now, retention, removed, dry_run)
    return result


def _prune_index(root: ArtifactPath, dag_id: str, now: datetime, retention: Retention, removed: set[str],
                 dry_run: bool) -> int:
    """Past the artifact cutoff, keep only the plan and audit entries of runs whose audit is kept; past the
    audit cutoff, nothing. Returns how many index periods changed."""
    artifact_day = (now - timedelta(days=retention.artifact_days)).date().isoformat()
    audit_day = (now - timedelta(days=retention.audit_days)).date().isoformat()
    changed = 0
    for period in artifacts.index_periods(root, dag_id) or []:
        day = period.key[:10]
        if day >= artifact_day:
            continue
        entries = artifacts.read_period(root, dag_id, period)
        kept = [e for e in entries if day >= audit_day and e.get("kind") in ("plan", "audit")
                and e.get("run_id") not in removed]
        if len(kept) == len(entries) and period.rolled and not period.live:
            continue
        changed += 1
        if not dry_run:
            artifacts.write_period(root, dag_id, period, kept)
            if len(period.key) == 13:
                artifacts.remove_empty_folder(root / INDEX_DIR / dag_id / day)
    return changed


def _folders(root: ArtifactPath) -> list[str]:
    """The folders under the root (a symbolic link to a folder is not one: it is never followed)."""
    try:
        return sorted(c.name for c in root.iterdir()
                      if not (isinstance(c, Path) and c.is_symlink()) and c.is_dir())
    except OSError:
        return []


def dag_folders(root: ArtifactPath) -> list[str]:
    """The s3ops DAG folders under the root (:data:`include.core.artifacts.DAG_FOLDERS`)."""
    return [name for name in _folders(root) if name in artifacts.DAG_FOLDERS]


def foreign_folders(root: ArtifactPath) -> list[str]:
    """Folders under the root that are neither an s3ops DAG's nor the store's own (``_…``): kept, reported."""
    return [name for name in _folders(root) if name not in artifacts.DAG_FOLDERS and not name.startswith((".", "_"))]


def housekeep(root: ArtifactPath, retention: Mapping[str, Retention], now: datetime | None = None,
              dry_run: bool = False, skip: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """Prune every DAG folder but ``skip`` (``retention[dag_id]``, else the defaults), index the run
    artifacts the index lacks (runs written before it existed), roll up index days before yesterday,
    forget old failure-notification marks."""
    now = now or datetime.now(UTC)
    report: dict[str, Any] = {"dags": [], "indexed": 0, "days_rolled_up": 0, "notification_marks_removed": 0,
                              "foreign_folders_kept": foreign_folders(root), "skipped": sorted(skip)}
    for dag_id in [d for d in dag_folders(root) if d not in skip]:
        files = _run_files(root, dag_id)  # one listing serves the index repair and the pruning
        if not dry_run:
            report["indexed"] += artifacts.rebuild_index(root, dag_id, files)
        report["dags"].append(prune_dag(root, dag_id, retention.get(dag_id, Retention()), now, dry_run, files))
        if not dry_run:
            yesterday = (now - timedelta(days=1)).date().isoformat()
            report["days_rolled_up"] += artifacts.roll_up_days(root, dag_id, before_day=yesterday)
    marks = root / NOTIFICATIONS_DIR
    if marks.exists():
        for mark in list(marks.iterdir()):
            ts = artifacts.mtime(mark)
            if ts is not None and ts < (now - timedelta(days=2)).timestamp():
                report["notification_marks_removed"] += 1
                if not dry_run:
                    artifacts.remove(mark)
    log.info("housekeeping: %s", report)
    return report
