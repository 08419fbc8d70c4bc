"""View models of the "S3 Ops" UI pages, read from the artifact store (no Airflow needed).

Each function takes the artifact root (a ``pathlib.Path`` or an ``ObjectStoragePath``, see
``include.core.artifacts``) and returns plain dicts/lists the HTML layer renders. Artifacts written by a
newer or older version of a DAG may lack fields: missing values become ``None``/0, never an error, and
a run folder whose files cannot be parsed is listed with its ``error`` instead of breaking the page.

Pages read the artifact store's run index (``<root>/_index/``, see ``include.core.artifacts``), not the
run folders: the Uploads page reads only the newest entries and per-hour and per-day sums, so it answers in
milliseconds with 50,000 runs of history. A DAG without an index yet (runs written before it existed;
the daily housekeeping builds it) is read from its run folders as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from include.core.artifacts import ArtifactPath, index_periods, period_sums, read_json, read_jsonl, read_period
from include.core.artifacts import (
    artifact_root as artifact_root,  # the store the pages read; the plugin sees only include.ui
)
from include.core.times import format_time

STORAGE_DAG = "s3_storage_report"
UPLOAD_DAG = "s3_upload"
PLAN_DAGS = ("s3_retention", "s3_deploy_cleanup")


def _run_dirs(root: ArtifactPath, dag_id: str, marker: str) -> Iterator[tuple[str, ArtifactPath]]:
    """(run_id, run folder) of every run of ``dag_id`` that has ``marker`` (e.g. ``report.json``)."""
    base = root / dag_id
    try:
        if not base.exists():
            return
        children = list(base.iterdir())
    except OSError:
        return
    for child in children:
        if (child / marker).exists():
            yield child.name, child


def _indexed(root: ArtifactPath, dag_id: str, kinds: tuple[str, ...]) -> list[dict[str, Any]] | None:
    """Every index entry of ``dag_id`` of the given kinds, oldest first (``None``: no index yet)."""
    periods = index_periods(root, dag_id)
    if periods is None:
        return None
    entries: list[dict[str, Any]] = []
    for period in reversed(periods):
        entries += [e for e in read_period(root, dag_id, period) if e.get("kind") in kinds]
    return entries


def _doc(entry: dict[str, Any]) -> dict[str, Any]:
    doc = entry.get("doc")
    if not isinstance(doc, dict):
        raise ValueError(f"index entry of {entry.get('run_id')!r} holds no JSON object")
    return doc


def _mtime(path: ArtifactPath) -> str | None:
    """When a file was written, ISO 8601 UTC (local files and object storage alike)."""
    try:
        stat = path.stat()
        ts = getattr(stat, "st_mtime", None)
        if ts is None and isinstance(stat, dict):
            ts = stat.get("mtime") or stat.get("LastModified")
    except (OSError, ValueError):
        return None
    if isinstance(ts, datetime):
        return format_time(ts, "seconds")
    if ts is None:
        return None
    return format_time(datetime.fromtimestamp(float(ts), tz=timezone.utc), "seconds")


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _float(value: Any) -> float:
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return 0.0


# Storage ------------------------------------------------------------------------------------------
def load_reports(root: ArtifactPath) -> list[dict[str, Any]]:
    """Every storage report, oldest first: ``{"run_id", "generated_at", "report" | "error"}``."""
    reports = []
    indexed = _indexed(root, STORAGE_DAG, ("report",))
    if indexed is not None:
        for entry in indexed:
            doc = entry.get("doc")
            if isinstance(doc, dict) and "error" not in doc:
                reports.append({"run_id": str(entry.get("run_id")), "report": doc,
                                "generated_at": str(doc.get("generated_at") or entry.get("at") or "")})
            else:
                reports.append({"run_id": str(entry.get("run_id")), "generated_at": str(entry.get("at") or ""),
                                "error": str((doc or {}).get("error") if isinstance(doc, dict) else doc)})
        return sorted(reports, key=lambda r: (r["generated_at"], r["run_id"]))
    for run_id, folder in _run_dirs(root, STORAGE_DAG, "report.json"):
        try:
            report = read_json(folder / "report.json")
            reports.append({"run_id": run_id, "generated_at": str(report.get("generated_at") or ""), "report": report})
        except (OSError, ValueError) as exc:
            reports.append({"run_id": run_id, "generated_at": _mtime(folder / "report.json") or "", "error": str(exc)})
    return sorted(reports, key=lambda r: (r["generated_at"], r["run_id"]))


def storage_view(root: ArtifactPath) -> dict[str, Any]:
    """The Storage page: the latest report (table, per-bucket and per-class totals, hidden costs) and
    the history of every report (object count and bytes per bucket over time)."""
    reports = load_reports(root)
    valid = [r for r in reports if "report" in r]
    view: dict[str, Any] = {"report_count": len(reports), "latest": None, "history": storage_history(valid),
                            "broken": [{"run_id": r["run_id"], "error": r["error"]} for r in reports if "error" in r]}
    if not valid:
        return view
    latest = valid[-1]
    report = _full_report(root, latest)
    buckets = []
    by_class: dict[str, dict[str, Any]] = {}
    hidden = []
    for b in report.get("buckets") or []:
        classes = b.get("storage_classes") or {}
        for name, c in classes.items():
            agg = by_class.setdefault(name, {"object_count": 0, "bytes": 0, "estimated_monthly_cost_usd": 0.0})
            agg["object_count"] = _count_sum(agg["object_count"], c.get("object_count"))
            agg["bytes"] += _int(c.get("bytes"))
            agg["estimated_monthly_cost_usd"] += _float(c.get("estimated_monthly_cost_usd"))
        noncurrent = b.get("noncurrent_versions") or {}
        mpu = b.get("incomplete_multipart_uploads") or {}
        row = {
            "name": b.get("name"),
            "region": b.get("region"),
            "creation_date": b.get("creation_date"),
            "object_count": None if b.get("object_count") is None else _int(b.get("object_count")),
            "total_bytes": _int(b.get("total_bytes")),
            "total_size": _display_size(b, str(report.get("size_unit") or "auto")),
            "last_modified": b.get("last_modified"),
            "estimated_monthly_cost_usd": _float(b.get("estimated_monthly_cost_usd")),
            "storage_classes": sorted(classes),
            "error": b.get("error"),
        }
        buckets.append(row)
        hidden_row = {
            "name": row["name"],
            "noncurrent_count": _int(noncurrent.get("object_count")) if b.get("noncurrent_versions") is not None else None,
            "noncurrent_bytes": _int(noncurrent.get("bytes")) if b.get("noncurrent_versions") is not None else None,
            "delete_markers": b.get("delete_markers"),
            "multipart_count": _int(mpu.get("count")),
            "multipart_bytes": _int(mpu.get("bytes")),
        }
        if any(hidden_row[k] for k in ("noncurrent_count", "noncurrent_bytes", "delete_markers", "multipart_count")):
            hidden.append(hidden_row)
    totals = report.get("totals") or {}
    display = report.get("display") or {}
    view["latest"] = {
        "run_id": latest["run_id"],
        "generated_at": report.get("generated_at"),
        "source": report.get("source"),
        "size_unit": report.get("size_unit"),
        "date_format": display.get("date_format") or "iso",
        "show_time": bool(display.get("show_time", True)),
        "buckets": buckets,
        "regions": _regions(report),
        "by_class": [{"storage_class": k, **v} for k, v in sorted(by_class.items(), key=lambda kv: -kv[1]["bytes"])],
        "hidden_costs": hidden,
        "totals": {
            "bucket_count": _int(totals.get("bucket_count", len(buckets))),
            "object_count": _known_total(totals, buckets),
            "total_bytes": _int(totals.get("total_bytes", sum(b["total_bytes"] for b in buckets))),
            "estimated_monthly_cost_usd": _float(totals.get("estimated_monthly_cost_usd")),
        },
    }
    return view


def _display_size(bucket: dict[str, Any], unit: str) -> str | None:
    """The size people read, in the report's unit (older reports stored this string themselves)."""
    from include.core.units import SIZE_UNITS, format_size

    if isinstance(bucket.get("total_size"), str):
        return bucket["total_size"]
    if bucket.get("total_bytes") is None or bucket.get("error"):
        return None
    return format_size(_int(bucket["total_bytes"]), unit if unit in SIZE_UNITS else "auto")


def _count_sum(a: int | None, b: Any) -> int | None:
    """Object counts add up; an unknown one (CloudWatch with a class filter) makes the sum unknown."""
    return None if a is None or b is None else a + _int(b)


def _known_total(totals: dict[str, Any], buckets: list[dict[str, Any]]) -> int | None:
    if "object_count" in totals:
        return None if totals["object_count"] is None else _int(totals["object_count"])
    counts = [b["object_count"] for b in buckets if not b["error"]]
    return None if None in counts else sum(counts)


def _regions(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-region rows (report.json's ``regions``; rebuilt from the buckets for older reports)."""
    rows = report.get("regions")
    if not isinstance(rows, list):
        groups: dict[Any, dict[str, Any]] = {}
        for b in report.get("buckets") or []:
            g = groups.setdefault(b.get("region"), {"region": b.get("region"), "bucket_count": 0, "error_count": 0,
                                                     "object_count": 0, "total_bytes": 0,
                                                     "estimated_monthly_cost_usd": 0.0})
            g["bucket_count"] += 1
            if b.get("error"):
                g["error_count"] += 1
                continue
            g["object_count"] = _count_sum(g["object_count"], b.get("object_count"))
            g["total_bytes"] += _int(b.get("total_bytes"))
            g["estimated_monthly_cost_usd"] += _float(b.get("estimated_monthly_cost_usd"))
        rows = sorted(groups.values(), key=lambda r: (r["region"] is None, str(r["region"] or "")))
    return [{
        "region": r.get("region"), "bucket_count": _int(r.get("bucket_count")), "error_count": _int(r.get("error_count")),
        "object_count": None if r.get("object_count") is None else _int(r.get("object_count")),
        "total_bytes": _int(r.get("total_bytes")),
        "estimated_monthly_cost_usd": _float(r.get("estimated_monthly_cost_usd")),
        "storage_classes": sorted(r.get("storage_classes") or {}),
    } for r in rows if isinstance(r, dict)]


def _full_report(root: ArtifactPath, latest: dict[str, Any]) -> dict[str, Any]:
    """The latest report whole (the index keeps only counts per bucket): one file read."""
    path = root / STORAGE_DAG / latest["run_id"] / "report.json"
    try:
        report = read_json(path)
        if isinstance(report, dict):
            return report
    except (OSError, ValueError):
        pass
    return latest["report"]  # pruned or unreadable: what the index kept


def storage_history(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-bucket series over the reports (oldest first): ``{"times": [...], "buckets": {name:
    {"object_count": [...], "total_bytes": [...]}}}``; a bucket absent from a report has ``None`` there."""
    times = [r["generated_at"] for r in reports]
    series: dict[str, dict[str, list[int | None]]] = {}
    for i, r in enumerate(reports):
        for b in r["report"].get("buckets") or []:
            name = str(b.get("name"))
            s = series.setdefault(name, {"object_count": [None] * len(reports), "total_bytes": [None] * len(reports)})
            if not b.get("error"):
                s["object_count"][i] = None if b.get("object_count") is None else _int(b.get("object_count"))
                s["total_bytes"][i] = _int(b.get("total_bytes"))
    return {"times": times, "run_ids": [r["run_id"] for r in reports], "buckets": dict(sorted(series.items()))}


# Plans --------------------------------------------------------------------------------------------
def plans_view(root: ArtifactPath, run_states: dict[tuple[str, str], str] | None = None,
               limit: int = 50) -> dict[str, Any]:
    """The Plans page: every retention / deploy-cleanup plan, newest first, with its audit if the run
    deleted (or refused) already. ``run_states`` maps ``(dag_id, run_id)`` to the approval task's
    state when Airflow can tell (``awaiting_input``, ``success``, ``skipped``…)."""
    run_states = run_states or {}
    plans = []
    for dag_id in PLAN_DAGS:
        indexed = _indexed(root, dag_id, ("plan", "audit"))
        if indexed is None:
            for run_id, folder in _run_dirs(root, dag_id, "plan.json"):
                plans.append(_plan_entry(dag_id, run_id, folder, run_states.get((dag_id, run_id))))
            continue
        docs: dict[str, dict[str, Any]] = {}
        for entry in indexed:
            docs.setdefault(str(entry.get("run_id")), {})[str(entry.get("kind"))] = entry
        for run_id, kinds in docs.items():
            if "plan" in kinds:
                plans.append(_plan_entry_from(dag_id, run_id, lambda k=kinds: _doc(k["plan"]),
                                              (lambda k=kinds: _doc(k["audit"])) if "audit" in kinds else None,
                                              kinds["plan"].get("at"), run_states.get((dag_id, run_id)),
                                              root / dag_id / run_id))
    plans.sort(key=lambda p: (p["planned_at"] or "", p["run_id"]), reverse=True)
    pending = [p for p in plans if p["status"] == "awaiting approval"]
    return {"pending": pending, "recent": plans[:limit], "plan_count": len(plans)}


def _plan_entry(dag_id: str, run_id: str, folder: ArtifactPath, approval_state: str | None) -> dict[str, Any]:
    audit_file = folder / "audit.json"
    return _plan_entry_from(dag_id, run_id, lambda: read_json(folder / "plan.json"),
                            (lambda: read_json(audit_file)) if audit_file.exists() else None,
                            _mtime(folder / "plan.json"), approval_state, folder)


def _plan_entry_from(dag_id: str, run_id: str, load_plan: Any, load_audit: Any, planned_at: str | None,
                     approval_state: str | None, folder: ArtifactPath) -> dict[str, Any]:
    """A Plans page row from the plan and (when there is one) the audit, read from a folder or the index;
    the approval gate's small files are read from the run folder (deleting DAGs have few runs)."""
    entry: dict[str, Any] = {"dag_id": dag_id, "run_id": run_id, "planned_at": planned_at,
                             "approval_state": approval_state, "audit": None, "error": None}
    try:
        plan = load_plan()
    except (OSError, ValueError) as exc:
        entry.update(status="unreadable", error=f"plan.json: {exc}")
        return entry
    by_reason = plan.get("by_reason") or {}
    entry.update(
        planned_at=plan.get("planned_at") or plan.get("generated_at") or entry["planned_at"],
        bucket=plan.get("bucket"),
        headline=plan.get("headline"),
        prefix=plan.get("key_prefix", plan.get("prefix")),
        delete_count=_int(plan.get("delete_count")),
        delete_bytes=_int(plan.get("delete_bytes")),
        scanned_count=_int(plan.get("scanned_count")),
        scanned_bytes=_int(plan.get("scanned_bytes")),
        listing_complete=plan.get("listing_complete"),
        by_reason=[{"reason": k, "count": _int(v.get("count")), "bytes": _int(v.get("bytes"))}
                   for k, v in sorted(by_reason.items())],
        samples=[str(s) for s in (plan.get("samples") or [])][:20],
        chunks=len(plan.get("chunks") or []),
        plan_uri=plan.get("plan_uri"),
        dry_run=plan.get("dry_run"),
    )
    if load_audit is not None:
        try:
            audit = load_audit()
            entry["audit"] = {
                "outcome": audit.get("outcome"),
                "deleted_count": _int(audit.get("deleted_count")),
                "deleted_bytes": _int(audit.get("deleted_bytes")),
                "skipped_count": _int(audit.get("skipped_count")),
                "error_count": _int(audit.get("error_count")),
                "error_samples": list(audit.get("error_samples") or [])[:10],
                "deleted_by_reason": [{"reason": k, "count": _int(v.get("count")), "bytes": _int(v.get("bytes"))}
                                      for k, v in sorted((audit.get("deleted_by_reason") or {}).items())],
                "purged_rows": audit.get("purged_rows", audit.get("purged_row_count")),
            }
        except (OSError, ValueError) as exc:
            entry["error"] = f"audit.json: {exc}"
    entry.update(_approval_entry(folder))
    entry["status"] = _plan_status(entry, approval_state)
    return entry


def _read_optional(path: ArtifactPath) -> dict[str, Any] | None:
    try:
        return dict(read_json(path)) if path.exists() else None
    except (OSError, ValueError, TypeError):
        return None


def _approval_entry(folder: ArtifactPath) -> dict[str, Any]:
    """What the approval gate recorded for the run (``approval_request.json``, ``approval.json``,
    ``superseded.json``; see include.deletion.approval)."""
    request = _read_optional(folder / "approval_request.json") or {}
    approval = _read_optional(folder / "approval.json")
    superseded = _read_optional(folder / "superseded.json")
    out: dict[str, Any] = {"approval": None, "superseded_by": None, "expires_at": request.get("timeout_at") or None,
                           "approvers": [str(a) for a in (request.get("approvers") or [])]}
    if approval is not None:
        who: dict[str, Any] = approval["responded_by"] if isinstance(approval.get("responded_by"), dict) else {}
        out["approval"] = {"verdict": str(approval.get("verdict") or ""), "reason": str(approval.get("reason") or ""),
                           "by": str(who.get("name") or who.get("id") or "") or None,
                           "at": approval.get("responded_at"), "plan_digest": approval.get("plan_digest")}
    if superseded is not None:
        out["superseded_by"] = str(superseded.get("superseded_by") or "")
    return out


#: how a plan ends up, from its audit's outcome (``deleted`` and ``nothing_to_delete`` are "finished")
_OUTCOME_STATUS = {"rejected": "rejected", "expired": "expired", "superseded": "superseded", "refused": "refused",
                   "not_approved": "refused"}


def _plan_status(entry: dict[str, Any], approval_state: str | None) -> str:
    """One of: awaiting approval (pending), approved, rejected, superseded, expired, refused, finished,
    no deletions, in progress."""
    if entry["audit"] is not None:
        return _OUTCOME_STATUS.get(str(entry["audit"].get("outcome")), "finished")
    if entry.get("superseded_by"):
        return "superseded"
    verdict = (entry.get("approval") or {}).get("verdict")
    if verdict in ("approved", "rejected", "expired", "refused", "superseded"):
        return str(verdict)
    if approval_state == "awaiting_input":
        return "awaiting approval"
    if approval_state == "skipped":
        return "rejected"
    if approval_state in ("failed", "upstream_failed"):
        return "refused"
    if approval_state is None:
        # Airflow could not tell: a plan without an audit is waiting (for a guard, the gate or deletes)
        return "awaiting approval" if entry.get("delete_count") else "no deletions"
    return "in progress"


def required_actions_url(dag_id: str, run_id: str) -> str:
    """The Airflow UI page where a run's approval is given or refused."""
    from urllib.parse import quote

    return f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/required_actions"


# Uploads ------------------------------------------------------------------------------------------
def uploads_view(root: ArtifactPath, limit: int = 50) -> dict[str, Any]:
    """The Uploads page: recent upload runs, newest first, and totals over them."""
    periods = index_periods(root, UPLOAD_DAG)
    if periods is not None:
        return _uploads_from_index(root, periods, limit)
    runs = []
    for run_id, folder in _run_dirs(root, UPLOAD_DAG, "summary.json"):
        entry: dict[str, Any] = {"run_id": run_id, "finished_at": _mtime(folder / "summary.json"), "error": None}
        try:
            summary = read_json(folder / "summary.json")
        except (OSError, ValueError) as exc:
            entry["error"] = str(exc)
            runs.append(entry)
            continue
        entry.update(_upload_row(summary))
        entry["finished_at"] = summary.get("finished_at") or _last_upload(folder) or entry["finished_at"]
        runs.append(entry)
    runs.sort(key=lambda r: (r["finished_at"] or "", r["run_id"]), reverse=True)
    ok = [r for r in runs if not r["error"]]
    totals = {k: sum(r[k] for r in ok) for k in UPLOAD_TOTALS}
    return {"runs": runs[:limit], "run_count": len(runs), "totals": totals}


UPLOAD_TOTALS = ("uploaded", "bytes", "malformed", "conflicts", "failed")


def _uploads_from_index(root: ArtifactPath, periods: list[Any], limit: int) -> dict[str, Any]:
    """Newest ``limit`` runs from the newest index periods; totals from the sums of the older ones (a
    period with live entries is summed from them)."""
    runs: list[dict[str, Any]] = []
    totals = dict.fromkeys(UPLOAD_TOTALS, 0)
    run_count = 0
    seen: set[Any] = set()
    for period in periods:  # newest first
        sums = period_sums(root, UPLOAD_DAG, period) if len(runs) >= limit else None
        if sums is not None:
            slot = sums.get("summary") or {}
            run_count += _int(slot.get("count"))
            for k in UPLOAD_TOTALS:
                totals[k] += _int((slot.get("sums") or {}).get(k))
            continue
        entries = [e for e in read_period(root, UPLOAD_DAG, period) if e.get("kind") == "summary"]
        for e in reversed(entries):
            if e.get("run_id") in seen:  # a retried tidy wrote its summary again: the newest one counts
                continue
            seen.add(e.get("run_id"))
            run_count += 1
            doc = e.get("doc") if isinstance(e.get("doc"), dict) else {}
            for k in UPLOAD_TOTALS:
                totals[k] += _int(doc.get(k))
            if len(runs) < limit:
                row = {"run_id": str(e.get("run_id")), "error": None, **_upload_row(doc)}
                row["finished_at"] = doc.get("finished_at") or e.get("at")
                runs.append(row)
    runs.sort(key=lambda r: (r["finished_at"] or "", r["run_id"]), reverse=True)
    return {"runs": runs, "run_count": run_count, "totals": totals}


def _upload_row(summary: dict[str, Any]) -> dict[str, Any]:
    return dict(
        bucket=summary.get("bucket"),
        key_prefix=summary.get("key_prefix"),
        uploaded=_int(summary.get("uploaded")),
        skipped_not_ready=_int(summary.get("skipped_not_ready")),
        malformed=_int(summary.get("malformed")),
        conflicts=_int(summary.get("conflicts")),
        failed=_int(summary.get("failed")),
        bytes=_int(summary.get("bytes")),
        malformed_paths=[str(p) for p in (summary.get("malformed_paths") or [])][:20],
        conflict_keys=[str(k) for k in (summary.get("conflict_keys") or [])][:20],
        failed_paths=[str(p) for p in (summary.get("failed_paths") or [])][:20],
    )


def _last_upload(folder: ArtifactPath) -> str | None:
    manifest = folder / "manifest.jsonl"
    if not manifest.exists():
        return None
    try:
        times = [str(row.get("uploaded_at")) for row in read_jsonl(manifest) if row.get("uploaded_at")]
    except (OSError, json.JSONDecodeError):
        return None
    return max(times) if times else None
