"""View models of the "S3 Ops" UI pages, read from the artifact store (no Airflow needed).

Each function takes the artifact root (a ``pathlib.Path`` or an ``ObjectStoragePath``, see
``include.core.artifacts``) and returns plain dicts/lists the HTML layer renders. Artifacts written by a
newer or older version of a DAG may lack fields: missing values become ``None``/0, never an error, and
a run folder whose files cannot be parsed is listed with its ``error`` instead of breaking the page.
A value of the wrong kind (a count that is not a whole number ≥ 0, a list where a table belongs) is
shown as "–" and named in the view's ``flags``, so one odd artifact never hides (or fakes) the rest.
Which DAGs' artifacts a user may see is decided by the caller (``readable``: DAG ids), see the plugin.

Pages read the artifact store's run index (``<root>/_index/``, see ``include.core.artifacts``), not the
run folders: the Uploads page reads only the newest entries and per-hour and per-day sums, so it answers in
milliseconds with 50,000 runs of history. A DAG without an index yet (runs written before it existed;
the daily housekeeping builds it) is read from its run folders as before. A run page reads its own run
folder.

What a person with write access to the store put there must not stall or exhaust the API server these
pages run in: every file is read with ``include.core.artifacts.read_bytes_bounded``, at most
:data:`READ_LIMIT` bytes (a bigger one is flagged as too large and not read: a storage report is then
shown from its index entry), regular files only, opening no FIFO for good and following no symbolic link
below the root; run folders that are links are skipped, and run ids read from the index must name a
folder (:func:`safe_run_id`), so no DAG's data is shown under another's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from include.core.artifacts import (
    ArtifactPath,
    ReadRefused,
    TooLarge,
    index_periods,
    is_link,
    parse_json,
    parse_jsonl,
    period_sums,
    read_bytes_bounded,
    read_period,
)
from include.core.artifacts import (
    artifact_root as artifact_root,  # the store the pages read; the plugin sees only include.ui
)
from include.core.times import format_time, parse_time

STORAGE_DAG = "s3_storage_report"
UPLOAD_DAG = "s3_upload"
PLAN_DAGS = ("s3_retention", "s3_deploy_cleanup")
#: The most the pages read of one artifact (64 MiB, some 250 MB of memory once parsed): a report of tens of
#: thousands of buckets fits; a bigger file is flagged as too large, not read (a 400 MB report.json took 1.5 GB
#: per page view, and a link to /dev/zero all the memory there was).
READ_LIMIT = 64 * 1024 * 1024


def _read_json(root: ArtifactPath, path: ArtifactPath) -> Any:
    """The JSON document at ``path``, read within :data:`READ_LIMIT` (:class:`ReadRefused` otherwise)."""
    return parse_json(read_bytes_bounded(root, path, READ_LIMIT))


def _run_dirs(root: ArtifactPath, dag_id: str, marker: str) -> Iterator[tuple[str, ArtifactPath]]:
    """(run_id, run folder) of every run of ``dag_id`` that has ``marker`` (e.g. ``report.json``). A DAG or
    run folder that is a symbolic link is skipped: it would show another DAG's runs under this one."""
    base = root / dag_id
    try:
        if not base.exists() or is_link(base):
            return
        children = list(base.iterdir())
    except OSError:
        return
    for child in children:
        if not is_link(child) and (child / marker).exists():
            yield child.name, child


def _indexed(root: ArtifactPath, dag_id: str, kinds: tuple[str, ...],
             flags: list[str]) -> list[dict[str, Any]] | None:
    """Every index entry of ``dag_id`` of the given kinds, oldest first (``None``: no index yet). An index
    file refused (too large, a link…) or an entry whose run id names no run folder is skipped and flagged."""
    periods = index_periods(root, dag_id)
    if periods is None:
        return None
    entries: list[dict[str, Any]] = []
    for period in reversed(periods):
        for e in read_period(root, dag_id, period, READ_LIMIT, flags):
            if e.get("kind") not in kinds:
                continue
            if not safe_run_id(str(e.get("run_id"))):  # "/etc", "..": a hand-made entry; it names no run folder
                flags.append(f"_index/{dag_id}: an entry's run_id {str(e.get('run_id'))[:80]!r} names no run "
                             "folder; skipped")
                continue
            entries.append(e)
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
    return format_time(datetime.fromtimestamp(float(ts), tz=UTC), "seconds")


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError, OverflowError):  # OverflowError: 1e999 in a hand-edited sum
        return 0


def json_safe(value: Any) -> Any:
    """A view as strict JSON can carry it: NaN and infinities (from a hand-edited artifact) as null. The
    pages' JSON must never fail on what a file holds."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class Fields:
    """Reads values out of one artifact, noting in ``flags`` each one that is not what the DAG writes.

    A missing value (``None``) is 0: older artifacts lack newer fields. Anything else that is not a
    finite number ≥ 0 (a string, a bool, NaN, a negative count) becomes ``None`` ("–" on the page) and a
    flag naming the file, the field and the value, never a silent 0.
    """

    def __init__(self, source: str, flags: list[str]) -> None:
        self.source, self.flags = source, flags

    def flag(self, where: str, value: Any, expected: str) -> None:
        shown = repr(value)
        self.flags.append(f"{self.source}: {where} is {shown[:80]}{'…' if len(shown) > 80 else ''}, "
                          f"not {expected}; shown as –")

    def count(self, value: Any, where: str) -> int | None:
        """A whole number ≥ 0 (an integral float such as ``5.0`` is accepted)."""
        if value is None:
            return 0
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, float) and math.isfinite(value) and value >= 0 and value.is_integer():
            return int(value)
        self.flag(where, value, "a whole number ≥ 0")
        return None

    def amount(self, value: Any, where: str) -> float | None:
        """A finite number ≥ 0 (money)."""
        if value is None:
            return 0.0
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
            return float(value)
        self.flag(where, value, "a number ≥ 0")
        return None

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        if value is None or isinstance(value, dict):
            return value or {}
        self.flag(where, value, "an object")
        return {}

    def items(self, value: Any, where: str) -> list[Any]:
        if value is None or isinstance(value, list):
            return value or []
        self.flag(where, value, "a list")
        return []

    def text(self, value: Any) -> str | None:
        return None if value is None else str(value)

    def flag_bool(self, value: Any, where: str) -> bool | None:
        """``true``/``false`` (None when absent)."""
        if value is None or isinstance(value, bool):
            return value
        self.flag(where, value, "true or false")
        return None


def _sum(values: Iterable[int | float | None]) -> Any:
    return sum(v for v in values if v is not None)


def _allowed(dag_id: str, readable: Collection[str] | None) -> bool:
    return readable is None or dag_id in readable


# Storage ------------------------------------------------------------------------------------------
def load_reports(root: ArtifactPath, flags: list[str] | None = None) -> list[dict[str, Any]]:
    """Every storage report, oldest first: ``{"run_id", "generated_at", "report" | "error"}``; what of the
    index could not be read is named in ``flags``."""
    reports = []
    indexed = _indexed(root, STORAGE_DAG, ("report",), [] if flags is None else flags)
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
            report = _read_json(root, folder / "report.json")
            if not isinstance(report, dict):
                raise ValueError(f"a report is a JSON object, this is {type(report).__name__}")
            reports.append({"run_id": run_id, "generated_at": str(report.get("generated_at") or ""), "report": report})
        except (OSError, ValueError) as exc:
            reports.append({"run_id": run_id, "generated_at": _mtime(folder / "report.json") or "", "error": str(exc)})
    return sorted(reports, key=lambda r: (r["generated_at"], r["run_id"]))


def storage_view(root: ArtifactPath, readable: Collection[str] | None = None,
                 run_id: str | None = None) -> dict[str, Any]:
    """The Storage page: the latest report (table, per-bucket and per-class totals, hidden costs) and
    the history of every report (object count and bytes per bucket over time). With ``run_id``: that
    run's report as "latest" (the run page). ``readable`` (DAG ids) without the storage DAG: nothing."""
    view: dict[str, Any] = {"report_count": 0, "latest": None, "history": storage_history([]), "broken": [],
                            "flags": [], "allowed": _allowed(STORAGE_DAG, readable)}
    if not view["allowed"]:
        return view
    reports = load_reports(root, view["flags"])
    if run_id is not None:
        reports = [r for r in reports if r["run_id"] == run_id]
    view["report_count"] = len(reports)
    view["broken"] = [{"run_id": r["run_id"], "error": r["error"]} for r in reports if "error" in r]
    valid = [r for r in reports if "report" in r]
    view["history"] = storage_history(valid)
    if valid:
        latest = valid[-1]
        view["latest"] = _report_summary(latest["run_id"], _full_report(root, latest, view["flags"]), view["flags"])
    return view


def _report_summary(run_id: str, report: dict[str, Any], flags: list[str]) -> dict[str, Any]:
    f = Fields(f"{STORAGE_DAG}/{run_id}/report.json", flags)
    buckets: list[dict[str, Any]] = []
    by_class: dict[str, dict[str, Any]] = {}
    hidden = []
    size_unit = f.text(report.get("size_unit"))
    source = f.text(report.get("source"))
    for i, b in enumerate(f.items(report.get("buckets"), "buckets")):
        where = f"buckets[{i}]"
        if not isinstance(b, dict):
            f.flag(where, b, "an object")
            continue
        classes = f.mapping(b.get("storage_classes"), f"{where}.storage_classes")
        for name, c in classes.items():
            c = f.mapping(c, f"{where}.storage_classes.{name}")
            agg = by_class.setdefault(str(name), {"object_count": 0, "object_count_unknown": False, "bytes": 0,
                                                  "estimated_monthly_cost_usd": 0.0})
            count, unknown = _object_count(f, c.get("object_count"), f"{where}.storage_classes.{name}.object_count")
            agg["object_count_unknown"] |= unknown
            agg["object_count"] = None if agg["object_count_unknown"] else agg["object_count"] + (count or 0)
            agg["bytes"] += f.count(c.get("bytes"), f"{where}.storage_classes.{name}.bytes") or 0
            agg["estimated_monthly_cost_usd"] += f.amount(
                c.get("estimated_monthly_cost_usd"), f"{where}.storage_classes.{name}.estimated_monthly_cost_usd") or 0.0
        bucket_name, error = f.text(b.get("name")), f.text(b.get("error"))
        count, unknown = _object_count(f, b.get("object_count"), f"{where}.object_count")
        total_bytes = None if b.get("total_bytes") is None and error else f.count(b.get("total_bytes"), f"{where}.total_bytes")
        row = {
            "name": bucket_name,
            "region": f.text(b.get("region")),
            "creation_date": f.text(b.get("creation_date")),
            "object_count": count,
            "object_count_unknown": unknown and not error,  # CloudWatch with a class filter: no count exists
            "total_bytes": total_bytes,
            "total_size": _display_size(b.get("total_size"), total_bytes, error, size_unit),
            "last_modified": f.text(b.get("last_modified")),
            "estimated_monthly_cost_usd": f.amount(b.get("estimated_monthly_cost_usd"), f"{where}.estimated_monthly_cost_usd"),
            "storage_classes": sorted(str(k) for k in classes),
            "error": error,
        }
        buckets.append(row)
        hidden.append(_hidden_costs(f, b, where, bucket_name, error, source))
    totals = f.mapping(report.get("totals"), "totals")

    def total(key: str, fallback: Any) -> Any:
        return f.count(totals[key], f"totals.{key}") if key in totals else fallback

    if "object_count" in totals:
        total_count, count_unknown = _object_count(f, totals["object_count"], "totals.object_count")
    else:  # older reports: the sum of the readable buckets, unknown when one of them is
        count_unknown = any(b["object_count_unknown"] for b in buckets)
        total_count = None if count_unknown else _sum(b["object_count"] for b in buckets if not b["error"])
    date_format, show_time = _display(f, f.mapping(report.get("display"), "display"))
    return {
        "run_id": run_id,
        "generated_at": f.text(report.get("generated_at")),
        "source": source,
        "size_unit": size_unit,
        "date_format": date_format,
        "show_time": show_time,
        "buckets": buckets,
        "regions": _regions(f, report.get("regions"), buckets),
        "by_class": [{"storage_class": k, **v} for k, v in sorted(by_class.items(), key=lambda kv: -kv[1]["bytes"])],
        **_hidden_sections(hidden, buckets),
        "totals": {
            "bucket_count": total("bucket_count", len(buckets)),
            "object_count": total_count,
            "object_count_unknown": count_unknown,
            "total_bytes": total("total_bytes", _sum(b["total_bytes"] for b in buckets)),
            "estimated_monthly_cost_usd": f.amount(totals.get("estimated_monthly_cost_usd"),
                                                   "totals.estimated_monthly_cost_usd"),
        },
    }


#: the kinds of hidden cost, as report.json names them
HIDDEN_KINDS = ("noncurrent_versions", "delete_markers", "incomplete_multipart_uploads")
#: a hidden-cost row's numbers (None: not measured, or a value flagged as odd), and the kind each measures
HIDDEN_NUMBERS = {"noncurrent_count": "noncurrent_versions", "noncurrent_bytes": "noncurrent_versions",
                  "delete_markers": "delete_markers", "multipart_count": "incomplete_multipart_uploads",
                  "multipart_bytes": "incomplete_multipart_uploads"}
NOT_CHECKED_VERSIONS = "not checked: include_versions is off"
NOT_MEASURED_CLOUDWATCH = "not measured from CloudWatch"
UNREADABLE_BUCKET = "unknown: the bucket could not be read"


def _not_measured(b: Mapping[str, Any], error: str | None, source: str | None) -> dict[str, str]:
    """Why each kind of hidden cost of a bucket was not measured (kind → reason; a kind not named was
    measured). report.json holds an unmeasured one as null: never "none found"."""
    if error:
        return dict.fromkeys(HIDDEN_KINDS, UNREADABLE_BUCKET)
    if source == "cloudwatch":  # daily metrics, no listing: nothing is known of versions or uploads
        return dict.fromkeys(HIDDEN_KINDS, NOT_MEASURED_CLOUDWATCH)
    reasons = {}
    for kind in ("noncurrent_versions", "delete_markers"):
        if b.get(kind) is None:  # listed (or read from an inventory) without include_versions
            reasons[kind] = NOT_CHECKED_VERSIONS
    if b.get("incomplete_multipart_uploads") is None:  # ListMultipartUploads/ListParts refused
        reasons["incomplete_multipart_uploads"] = f"unknown: {b.get('incomplete_multipart_uploads_error') or 'not recorded'}"
    return reasons


def _measured(f: Fields, value: Any, where: str, count_key: str) -> tuple[int | None, int | None]:
    """``(count, bytes)`` of a measured hidden cost; a value that is no object is flagged and unknown, not 0."""
    if not isinstance(value, dict):
        f.flag(where, value, "an object")
        return None, None
    return f.count(value.get(count_key), f"{where}.{count_key}"), f.count(value.get("bytes"), f"{where}.bytes")


def _hidden_costs(f: Fields, b: Mapping[str, Any], where: str, name: str | None, error: str | None,
                  source: str | None) -> dict[str, Any]:
    """A bucket's hidden-cost row: the measured numbers (None where not measured, or flagged) and, in
    ``not_measured``, why each kind that was not measured was not."""
    not_measured = _not_measured(b, error, source)
    row: dict[str, Any] = dict.fromkeys(HIDDEN_NUMBERS)
    if "noncurrent_versions" not in not_measured:
        row["noncurrent_count"], row["noncurrent_bytes"] = _measured(
            f, b["noncurrent_versions"], f"{where}.noncurrent_versions", "object_count")
    if "delete_markers" not in not_measured:
        row["delete_markers"] = f.count(b["delete_markers"], f"{where}.delete_markers")
    if "incomplete_multipart_uploads" not in not_measured:
        row["multipart_count"], row["multipart_bytes"] = _measured(
            f, b["incomplete_multipart_uploads"], f"{where}.incomplete_multipart_uploads", "count")
    return {"name": name, **row, "not_measured": not_measured}


def _hidden_sections(rows: list[dict[str, Any]], buckets: list[dict[str, Any]]) -> dict[str, Any]:
    """The page's hidden costs: ``hidden_not_measured``, each kind no readable bucket had measured, for one
    reason (include_versions off, CloudWatch), said once; ``hidden_costs``, the rows of the buckets with a
    hidden cost, an odd value or a reason of their own (an error); ``no_hidden_costs``, the other buckets'
    names (every kind measured, or not measured for the common reason, is 0)."""
    readable = [row for row, bucket in zip(rows, buckets, strict=True) if not bucket["error"]]
    common = dict(set.intersection(*(set(row["not_measured"].items()) for row in readable))) if readable else {}
    shown, none = [], []
    for row in rows:
        why_not = row["not_measured"]
        own = any(common.get(kind) != why for kind, why in why_not.items())
        found = any(row[number] != 0 for number, kind in HIDDEN_NUMBERS.items() if kind not in why_not)
        if own or found:
            shown.append(row)
        else:
            none.append(row["name"])
    return {"hidden_costs": shown, "no_hidden_costs": none,
            "hidden_not_measured": {kind: common[kind] for kind in HIDDEN_KINDS if kind in common}}


def _object_count(f: Fields, value: Any, where: str) -> tuple[int | None, bool]:
    """``(count, unknown)``: ``null`` is an unknown count (CloudWatch with a storage class filter has none),
    not 0; anything else goes through :meth:`Fields.count` (an odd value is flagged, shown as –)."""
    if value is None:
        return None, True
    return f.count(value, where), False


def _display(f: Fields, display: dict[str, Any]) -> tuple[str, bool]:
    """The report's ``date_format`` and ``show_time`` (report.json's ``display``); an unusable one is
    flagged and the default (iso, with time) used, so the page still renders."""
    from include.core.dates import check_date_format

    date_format: Any = display.get("date_format") or "iso"
    try:
        check_date_format(date_format)
    except ValueError:
        f.flag("display.date_format", date_format, "iso, us, eu or a strftime pattern")
        date_format = "iso"
    show_time = display.get("show_time", True)
    if not isinstance(show_time, bool):
        f.flag("display.show_time", show_time, "true or false")
        show_time = True
    return date_format, show_time


def _display_size(stored: Any, total_bytes: int | None, error: str | None, unit: str | None) -> str | None:
    """The size people read, in the report's unit (older reports stored this string themselves; newer
    ones a number and its unit, shown here from the exact bytes)."""
    from include.core.units import SIZE_UNITS, format_size

    if isinstance(stored, str):
        return stored
    if total_bytes is None or error:
        return None
    return format_size(total_bytes, unit if unit in SIZE_UNITS else "auto")


def _regions(f: Fields, stored: Any, buckets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-region rows (report.json's ``regions``, values checked; rebuilt from the checked bucket rows
    for older reports)."""
    if stored is None:
        groups: dict[Any, dict[str, Any]] = {}
        for b in buckets:
            g = groups.setdefault(b["region"], {"region": b["region"], "bucket_count": 0, "error_count": 0,
                                                "object_count": 0, "object_count_unknown": False, "total_bytes": 0,
                                                "estimated_monthly_cost_usd": 0.0, "storage_classes": set()})
            g["bucket_count"] += 1
            if b["error"]:
                g["error_count"] += 1
                continue
            g["object_count_unknown"] |= b["object_count_unknown"]
            g["object_count"] = None if g["object_count_unknown"] else g["object_count"] + (b["object_count"] or 0)
            g["total_bytes"] += b["total_bytes"] or 0
            g["estimated_monthly_cost_usd"] += b["estimated_monthly_cost_usd"] or 0.0
            g["storage_classes"].update(b["storage_classes"])
        rows = sorted(groups.values(), key=lambda r: (r["region"] is None, str(r["region"] or "")))
        return [{**r, "storage_classes": sorted(r["storage_classes"])} for r in rows]
    out = []
    for i, r in enumerate(f.items(stored, "regions")):
        where = f"regions[{i}]"
        if not isinstance(r, dict):
            f.flag(where, r, "an object")
            continue
        count, unknown = _object_count(f, r.get("object_count"), f"{where}.object_count")
        out.append({
            "region": f.text(r.get("region")),
            "bucket_count": f.count(r.get("bucket_count"), f"{where}.bucket_count"),
            "error_count": f.count(r.get("error_count"), f"{where}.error_count"),
            "object_count": count,
            "object_count_unknown": unknown,
            "total_bytes": f.count(r.get("total_bytes"), f"{where}.total_bytes"),
            "estimated_monthly_cost_usd": f.amount(r.get("estimated_monthly_cost_usd"),
                                                   f"{where}.estimated_monthly_cost_usd"),
            "storage_classes": sorted(str(k) for k in f.mapping(r.get("storage_classes"), f"{where}.storage_classes")),
        })
    return out


def _full_report(root: ArtifactPath, latest: dict[str, Any], flags: list[str]) -> dict[str, Any]:
    """The latest report whole (the index keeps only counts per bucket): one file read. One refused (too
    large, not a regular file) is flagged, and what the index kept shown."""
    path = root / STORAGE_DAG / latest["run_id"] / "report.json"
    try:
        report = _read_json(root, path)
        if isinstance(report, dict):
            return report
    except ReadRefused as exc:
        flags.append(f"{STORAGE_DAG}/{latest['run_id']}/report.json: {exc}; shown from the run index "
                     "(each bucket's name, counts, bytes and error only)")
    except (OSError, ValueError):
        pass
    return latest["report"]  # pruned or unreadable: what the index kept


def storage_history(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-bucket series over the reports (oldest first): ``{"times": [...], "buckets": {name:
    {"object_count": [...], "total_bytes": [...]}}}``; a bucket absent from a report, unreadable, or
    with a value of the wrong kind has ``None`` there (a gap, not a zero)."""
    times = [r["generated_at"] for r in reports]
    series: dict[str, dict[str, list[int | None]]] = {}
    quiet: list[str] = []  # the latest report's flags are shown with it; older ones only make gaps
    for i, r in enumerate(reports):
        f = Fields(r["run_id"], quiet)
        for b in f.items(r["report"].get("buckets"), "buckets"):
            if not isinstance(b, dict):
                continue
            name = str(b.get("name"))
            s = series.setdefault(name, {"object_count": [None] * len(reports), "total_bytes": [None] * len(reports)})
            if not b.get("error"):
                s["object_count"][i] = _object_count(f, b.get("object_count"), "object_count")[0]
                s["total_bytes"][i] = f.count(b.get("total_bytes"), "total_bytes")
    return {"times": times, "run_ids": [r["run_id"] for r in reports], "buckets": dict(sorted(series.items()))}


# Plans --------------------------------------------------------------------------------------------
def plans_view(root: ArtifactPath, run_states: dict[tuple[str, str], str] | None = None,
               limit: int = 50, readable: Collection[str] | None = None) -> dict[str, Any]:
    """The Plans page: every retention / deploy-cleanup plan, newest first, with its audit if the run
    deleted (or refused) already. ``run_states`` maps ``(dag_id, run_id)`` to the approval task's
    state when Airflow can tell (``deferred`` while it waits, ``success``, ``skipped``…). Only the DAGs in
    ``readable`` (all when ``None``) are looked at."""
    run_states = run_states or {}
    plans = []
    flags: list[str] = []
    for dag_id in PLAN_DAGS:
        if not _allowed(dag_id, readable):
            continue
        indexed = _indexed(root, dag_id, ("plan", "audit"), flags)
        if indexed is None:
            for run_id, _ in _run_dirs(root, dag_id, "plan.json"):
                plans.append(_plan_entry(root, dag_id, run_id, run_states.get((dag_id, run_id))))
            continue
        docs: dict[str, dict[str, Any]] = {}
        for entry in indexed:
            docs.setdefault(str(entry.get("run_id")), {})[str(entry.get("kind"))] = entry
        for run_id, kinds in docs.items():
            if "plan" in kinds:
                plans.append(_plan_entry_from(dag_id, run_id, lambda k=kinds: _doc(k["plan"]),
                                              (lambda k=kinds: _doc(k["audit"])) if "audit" in kinds else None,
                                              kinds["plan"].get("at"), run_states.get((dag_id, run_id)),
                                              root))
    plans.sort(key=lambda p: (p["planned_at"] or "", p["run_id"]), reverse=True)
    pending = [p for p in plans if p["status"] == "awaiting approval"]
    return {"pending": pending, "recent": plans[:limit], "plan_count": len(plans),
            "hidden_dags": [d for d in PLAN_DAGS if not _allowed(d, readable)], "flags": flags}


def _plan_entry(root: ArtifactPath, dag_id: str, run_id: str, approval_state: str | None) -> dict[str, Any]:
    """A plan read from its run folder ``<root>/<dag_id>/<run_id>/``."""
    folder = root / dag_id / run_id
    audit_file = folder / "audit.json"

    def load_audit() -> dict[str, Any]:
        try:
            return _object(_read_json(root, audit_file), "an audit")
        except TooLarge:  # every per-key error of a big run: its index entry has the counts and the outcome
            indexed = [e for e in _indexed(root, dag_id, ("audit",), []) or () if str(e.get("run_id")) == run_id]
            if not indexed:
                raise
            return _doc(indexed[-1])

    return _plan_entry_from(dag_id, run_id, lambda: _object(_read_json(root, folder / "plan.json"), "a plan"),
                            load_audit if audit_file.exists() else None, _mtime(folder / "plan.json"),
                            approval_state, root)


def _object(doc: Any, what: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ValueError(f"{what} is a JSON object, this is {type(doc).__name__}")
    return doc


def _plan_entry_from(dag_id: str, run_id: str, load_plan: Any, load_audit: Any, planned_at: str | None,
                     approval_state: str | None, root: ArtifactPath | None = None) -> dict[str, Any]:
    """A plan (and, when there is one, its audit) as the Plans page and the run page show it, read from
    a run folder or the index; the approval gate's small files are read from the run folder under ``root``
    (deleting DAGs have few runs)."""
    folder = None if root is None else root / dag_id / run_id
    entry: dict[str, Any] = {"dag_id": dag_id, "run_id": run_id, "planned_at": planned_at,
                             "approval_state": approval_state, "audit": None, "error": None, "flags": []}
    try:
        plan = load_plan()
    except (OSError, ValueError) as exc:
        entry.update(status="unreadable", error=f"plan.json: {exc}")
        return entry
    f = Fields(f"{dag_id}/{run_id}/plan.json", entry["flags"])
    by_reason = f.mapping(plan.get("by_reason"), "by_reason")
    entry.update(
        planned_at=f.text(plan.get("planned_at") or plan.get("generated_at")) or entry["planned_at"],
        bucket=f.text(plan.get("bucket")),
        headline=f.text(plan.get("headline")),
        prefix=f.text(plan.get("key_prefix", plan.get("prefix"))),
        delete_count=f.count(plan.get("delete_count"), "delete_count"),
        delete_bytes=f.count(plan.get("delete_bytes"), "delete_bytes"),
        scanned_count=f.count(plan.get("scanned_count"), "scanned_count"),
        scanned_bytes=f.count(plan.get("scanned_bytes"), "scanned_bytes"),
        listing_complete=f.flag_bool(plan.get("listing_complete"), "listing_complete"),
        by_reason=_reasons(f, by_reason, "by_reason"),
        samples=[str(s) for s in f.items(plan.get("samples"), "samples")][:20],
        chunks=len(f.items(plan.get("chunks"), "chunks")),
        plan_uri=f.text(plan.get("plan_uri")),
        dry_run=f.flag_bool(plan.get("dry_run"), "dry_run"),
        # the gate's mode the plan was made under: approve skips itself for auto and dry runs (not a Reject)
        approval_mode=_approval_mode(f.mapping(plan.get("settings"), "settings")),
        limits=_limits(plan, root, folder),
    )
    if load_audit is not None:
        try:
            audit = load_audit()
            a = Fields(f"{dag_id}/{run_id}/audit.json", entry["flags"])
            entry["audit"] = {
                "outcome": a.text(audit.get("outcome")),
                "deleted_count": a.count(audit.get("deleted_count"), "deleted_count"),
                "deleted_bytes": a.count(audit.get("deleted_bytes"), "deleted_bytes"),
                "skipped_count": a.count(audit.get("skipped_count"), "skipped_count"),
                "error_count": a.count(audit.get("error_count"), "error_count"),
                # audit.json keeps every per-key error as "errors"; an index entry may hold "error_samples"
                "error_samples": [e if isinstance(e, dict) else {"message": str(e)} for e in a.items(
                    audit.get("errors", audit.get("error_samples")), "errors")][:10],
                "deleted_by_reason": _reasons(a, a.mapping(audit.get("deleted_by_reason"), "deleted_by_reason"),
                                              "deleted_by_reason"),
                "purged_rows": _purge_count(a, audit.get("purge_job_rows"), "deleted"),
                "purge_kept_rows": _purge_count(a, audit.get("purge_job_rows"), "kept_count"),
                "purge_stopped": a.mapping(audit.get("purge_job_rows"), "purge_job_rows").get("complete") is False,
                "approved_by": _responder(a, a.mapping(audit.get("approval_record"), "approval_record")),
                "approval": a.text(audit.get("approval")),  # the gate's verdict: approved, auto, dry_run, …
                "plan_id": a.text(audit.get("plan_id")), "audited_at": a.text(audit.get("audited_at")),
            }
        except (OSError, ValueError) as exc:
            entry["error"] = f"audit.json: {exc}"
    if root is not None and folder is not None:
        entry.update(_approval_entry(root, folder, f"{dag_id}/{run_id}", entry["flags"], plan))
    if entry["audit"] is not None and _audit_is_earlier(entry["audit"], plan.get("plan_id"), entry.get("asked_at")):
        entry["audit"] = None  # the run was planned or asked again since: its status is what happened since
    entry["status"] = _plan_status(entry, approval_state)
    return entry


def _audit_is_earlier(audit: Mapping[str, Any], plan_id: Any, asked_at: str | None) -> bool:
    """Is ``audit`` about an earlier plan of the run, or written before its approval request was asked
    (``approve`` cleared and asked again after a refusal)? An audit that does not say (written before
    audits recorded their time) is taken as current."""
    if audit.get("plan_id") and isinstance(plan_id, str) and audit["plan_id"] != plan_id:
        return True
    try:
        return bool(asked_at and audit.get("audited_at")) and parse_time(str(asked_at)) > parse_time(
            str(audit["audited_at"]))
    except (ValueError, OverflowError):  # hand-edited: not a time, or 9999-12-31T23:30-01:00
        return False


def _approval_mode(settings: dict[str, Any]) -> str | None:
    """``dry_run``, ``auto`` or ``required`` from the settings plan.json pinned (None: an older plan)."""
    if settings.get("dry_run") is True:
        return "dry_run"
    mode = settings.get("approval")
    return mode if mode in ("auto", "required") else None


def _purge_count(f: Fields, purge: Any, name: str) -> int | None:
    """A count from the ``purge_job_rows`` task's result in audit.json (``deleted``: the job rows the run
    purged; ``kept_count``: recorded rows it did not, changed or gone since the plan), or None when the
    purge did not run (off, dry run, nothing deleted) or did not record it (before kept rows were counted)."""
    result = f.mapping(purge, "purge_job_rows")
    return f.count(result[name], f"purge_job_rows.{name}") if name in result else None


def _reasons(f: Fields, by_reason: dict[str, Any], where: str) -> list[dict[str, Any]]:
    rows = []
    for k, v in sorted(by_reason.items()):
        v = f.mapping(v, f"{where}.{k}")
        rows.append({"reason": str(k), "count": f.count(v.get("count"), f"{where}.{k}.count"),
                     "bytes": f.count(v.get("bytes"), f"{where}.{k}.bytes")})
    return rows


GUARD_PARAMS = ("max_delete_count", "max_delete_fraction", "approval", "approvers", "separate_approver", "dry_run",
                "allow_empty_jobs")


def _shown_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _limits(plan: dict[str, Any], root: ArtifactPath | None = None,
            folder: ArtifactPath | None = None) -> list[tuple[str, str]]:
    """The guard limits of the run, shown as written, not interpreted: ``limits`` in plan.json, else the
    gate's settings in the run's ``settings.json`` (with where each value came from); empty when the
    run recorded neither (the run page then shows its conf)."""
    found: Any = plan.get("limits") or plan.get("guard_limits")
    if found:
        if not isinstance(found, dict):
            return [("limits", str(found))]
        return [(str(k), _shown_value(v)) for k, v in sorted(found.items())]
    if root is None or folder is None:
        return []
    try:
        settings = _read_json(root, folder / "settings.json") if (folder / "settings.json").exists() else None
    except (OSError, ValueError):
        return []
    if not isinstance(settings, dict):
        return []
    values = settings.get("values")
    if not isinstance(values, dict):
        return []
    sources: dict[str, Any] = settings["sources"] if isinstance(settings.get("sources"), dict) else {}
    return [(k, _shown_value(values[k]) + (f" ({sources[k]})" if sources.get(k) else ""))
            for k in GUARD_PARAMS if k in values]


def conf_limits(conf: Any) -> list[tuple[str, str]]:
    """The safety settings a run was triggered with (its conf), for the run page when the plan
    recorded no limits itself."""
    if not isinstance(conf, dict):
        return []
    return [(k, _shown_value(conf[k])) for k in GUARD_PARAMS if k in conf]


def _read_optional(root: ArtifactPath, path: ArtifactPath, f: Fields) -> dict[str, Any] | None:
    """A small JSON object the run may have written: None when missing; unreadable (too large, a link…) or
    not an object: flagged."""
    try:
        if not path.exists():
            return None
        doc = _read_json(root, path)
    except (OSError, ValueError) as exc:
        f.flags.append(f"{f.source}: unreadable ({exc}); not shown")
        return None
    if not isinstance(doc, dict):
        f.flags.append(f"{f.source}: a {type(doc).__name__}, not a JSON object; not shown")
        return None
    return doc


def _responder(f: Fields, record: Mapping[str, Any]) -> str | None:
    """Who answered an approval request (``responded_by``: ``{"id", "name"}``), or None."""
    who = f.mapping(record.get("responded_by"), "responded_by")
    return str(who.get("name") or who.get("id") or "") or None


def _approval_entry(root: ArtifactPath, folder: ArtifactPath, run: str, flags: list[str],
                    plan: Mapping[str, Any]) -> dict[str, Any]:
    """What the approval gate recorded for the run (``approval_request.json``, ``approval.json``,
    ``superseded.json``; see include.deletion.approval), values checked like the plan's. A verdict or
    supersession recorded for another plan or request of the run (before it was planned or asked again) is not
    this plan's (:func:`include.deletion.approval.this_plans`): not shown."""
    from include.deletion.approval import this_plans

    fr, fa, fs = (Fields(f"{run}/{name}", flags) for name in ("approval_request.json", "approval.json", "superseded.json"))
    request = _read_optional(root, folder / "approval_request.json", fr) or {}
    superseded, approval = this_plans(plan, _read_optional(root, folder / "superseded.json", fs),
                                      _read_optional(root, folder / "approval.json", fa), auto=True,
                                      request=request or None)
    out: dict[str, Any] = {"approval": None, "superseded_by": None,
                           "asked_at": fr.text(request.get("asked_at") or None),
                           "expires_at": fr.text(request.get("timeout_at") or None),
                           "approvers": [str(a) for a in fr.items(request.get("approvers"), "approvers")]}
    if approval is not None:
        out["approval"] = {"verdict": str(approval.get("verdict") or ""), "reason": str(approval.get("reason") or ""),
                           "by": _responder(fa, approval),
                           "at": fa.text(approval.get("responded_at")), "plan_digest": fa.text(approval.get("plan_digest"))}
    if superseded is not None:
        out["superseded_by"] = str(superseded.get("superseded_by") or "")
    return out


#: how a plan ends up, from its audit's outcome (``deleted`` and ``nothing_to_delete`` are "finished")
#: the approve task's states while its request waits for a person: ``deferred`` (on its trigger, which also
#: closes a superseded request: include/deletion/trigger.py) or ``awaiting_input`` (Airflow 3.3's own HITL wait)
WAITING_STATES = ("deferred", "awaiting_input")
_OUTCOME_STATUS = {"rejected": "rejected", "expired": "expired", "superseded": "superseded", "refused": "refused",
                   "not_approved": "refused", "guard_refused": "refused", "failed": "failed"}


def _plan_status(entry: dict[str, Any], approval_state: str | None) -> str:
    """One of: awaiting approval (pending), approved, rejected, superseded, expired, refused (the guard's
    refusal too), failed (a task failed, the guard included: the audit says what was deleted), finished, no
    deletions, in progress."""
    if entry["audit"] is not None:
        return _OUTCOME_STATUS.get(str(entry["audit"].get("outcome")), "finished")
    if entry.get("superseded_by"):
        return "superseded"
    verdict = (entry.get("approval") or {}).get("verdict")
    if verdict in ("approved", "rejected", "expired", "refused", "superseded"):
        return str(verdict)
    if approval_state in WAITING_STATES:
        return "awaiting approval"
    if approval_state == "skipped":  # approve skips itself for auto and dry runs: only then is it no Reject
        return "in progress" if entry.get("approval_mode") in ("auto", "dry_run") else "rejected"
    if approval_state in ("failed", "upstream_failed"):
        return "refused"
    if approval_state is None:
        # Airflow could not tell: a plan without an audit is waiting (for a guard, the gate or deletes)
        return "awaiting approval" if entry.get("delete_count") else "no deletions"
    return "in progress"


def required_actions_url(dag_id: str, run_id: str) -> str:
    """The Airflow UI page where a run's approval is given or refused."""
    from urllib.parse import quote

    # bytes: a folder name that is not UTF-8 (a lone surrogate) still makes a URL, not a crashed page
    return (f"/dags/{quote(dag_id.encode('utf-8', 'surrogateescape'), safe='')}/runs/"
            f"{quote(run_id.encode('utf-8', 'surrogateescape'), safe='')}/required_actions")


# Uploads ------------------------------------------------------------------------------------------
def uploads_view(root: ArtifactPath, limit: int = 50, readable: Collection[str] | None = None,
                 run_id: str | None = None) -> dict[str, Any]:
    """The Uploads page: recent upload runs, newest first, and totals over them (with ``run_id``: that
    run only, read from its folder: the run page). ``readable`` (DAG ids) without the upload DAG: nothing."""
    flags: list[str] = []
    if not _allowed(UPLOAD_DAG, readable):
        return {"runs": [], "run_count": 0, "totals": dict.fromkeys(UPLOAD_TOTALS, 0), "flags": flags,
                "allowed": False}
    periods = index_periods(root, UPLOAD_DAG) if run_id is None else None
    if periods is not None:
        return {**_uploads_from_index(root, periods, limit, flags), "flags": flags, "allowed": True}
    runs = []
    for rid, folder in _run_dirs(root, UPLOAD_DAG, "summary.json"):
        if run_id is not None and rid != run_id:
            continue
        runs.append(upload_entry(root, rid, folder, flags))
    runs.sort(key=lambda r: (r["finished_at"] or "", r["run_id"]), reverse=True)
    ok = [r for r in runs if not r["error"]]
    totals = {k: _sum(r[k] for r in ok) for k in UPLOAD_TOTALS}
    return {"runs": runs[:limit], "run_count": len(runs), "totals": totals, "flags": flags, "allowed": True}


def upload_entry(root: ArtifactPath, run_id: str, folder: ArtifactPath, flags: list[str]) -> dict[str, Any]:
    """An upload run's row, read from its run folder under ``root``."""
    entry: dict[str, Any] = {"run_id": run_id, "finished_at": _mtime(folder / "summary.json"), "error": None}
    try:
        summary = _object(_read_json(root, folder / "summary.json"), "a summary")
    except (OSError, ValueError) as exc:
        entry["error"] = str(exc)
        return entry
    f = Fields(f"{UPLOAD_DAG}/{run_id}/summary.json", flags)
    entry.update(_upload_row(summary, f))
    entry["finished_at"] = f.text(summary.get("finished_at")) or _last_upload(root, folder) or entry["finished_at"]
    return entry


UPLOAD_TOTALS = ("uploaded", "bytes", "malformed", "conflicts", "failed", "future_dated", "abort_failed")


def _uploads_from_index(root: ArtifactPath, periods: list[Any], limit: int, flags: list[str]) -> dict[str, Any]:
    """Newest ``limit`` runs from the newest index periods; totals from the sums of the older ones (a
    period with live entries is summed from them)."""
    runs: list[dict[str, Any]] = []
    totals = dict.fromkeys(UPLOAD_TOTALS, 0)
    run_count = 0
    seen: set[Any] = set()
    for period in periods:  # newest first
        sums = period_sums(root, UPLOAD_DAG, period, READ_LIMIT, flags) if len(runs) >= limit else None
        if sums is not None:
            slot = sums.get("summary") or {}
            run_count += _int(slot.get("count"))
            for k in UPLOAD_TOTALS:
                totals[k] += _int((slot.get("sums") or {}).get(k))
            continue
        entries = [e for e in read_period(root, UPLOAD_DAG, period, READ_LIMIT, flags) if e.get("kind") == "summary"]
        for e in reversed(entries):
            if e.get("run_id") in seen:  # a retried tidy wrote its summary again: the newest one counts
                continue
            seen.add(e.get("run_id"))
            run_count += 1
            doc = e.get("doc") if isinstance(e.get("doc"), dict) else {}
            f = Fields(f"{UPLOAD_DAG}/{e.get('run_id')}/summary.json", flags if len(runs) < limit else [])
            row = {"run_id": str(e.get("run_id")), "error": None, **_upload_row(doc, f)}
            for k in UPLOAD_TOTALS:
                totals[k] += row[k] or 0
            if len(runs) < limit:
                row["finished_at"] = f.text(doc.get("finished_at") or e.get("at"))
                runs.append(row)
    runs.sort(key=lambda r: (r["finished_at"] or "", r["run_id"]), reverse=True)
    return {"runs": runs, "run_count": run_count, "totals": totals}


def _upload_row(summary: dict[str, Any], f: Fields) -> dict[str, Any]:
    return dict(
        bucket=f.text(summary.get("bucket")),
        key_prefix=f.text(summary.get("key_prefix")),
        uploaded=f.count(summary.get("uploaded"), "uploaded"),
        skipped_not_ready=f.count(summary.get("skipped_not_ready"), "skipped_not_ready"),
        malformed=f.count(summary.get("malformed"), "malformed"),
        conflicts=f.count(summary.get("conflicts"), "conflicts"),
        failed=f.count(summary.get("failed"), "failed"),
        bytes=f.count(summary.get("bytes"), "bytes"),
        malformed_paths=[str(p) for p in f.items(summary.get("malformed_paths"), "malformed_paths")][:20],
        conflict_keys=[str(k) for k in f.items(summary.get("conflict_keys"), "conflict_keys")][:20],
        failed_paths=[str(p) for p in f.items(summary.get("failed_paths"), "failed_paths")][:20],
        future_dated=f.count(summary.get("future_dated"), "future_dated"),
        future_dated_paths=[str(p) for p in f.items(summary.get("future_dated_paths"), "future_dated_paths")][:20],
        abort_failed=f.count(summary.get("abort_failed"), "abort_failed"),
        abort_failures=_abort_failures(f, summary.get("abort_failures")),
    )


def _abort_failures(f: Fields, rows: Any) -> list[dict[str, str]]:
    """The first 20 of ``abort_failures`` (``key``, ``initiated``, ``error``; the listing's own failure has
    an empty ``key``); a row of the wrong kind is flagged and left out."""
    out = []
    for i, row in enumerate(f.items(rows, "abort_failures")[:20]):
        if isinstance(row, dict):
            out.append({k: str(row.get(k) or "") for k in ("key", "initiated", "error")})
        else:
            f.flag(f"abort_failures[{i}]", row, "an object")
    return out


def _last_upload(root: ArtifactPath, folder: ArtifactPath) -> str | None:
    """When the run's last file was uploaded (its manifest), for a summary that does not say; None when
    unknown (no manifest, or one unreadable or too large)."""
    manifest = folder / "manifest.jsonl"
    if not manifest.exists():
        return None
    try:
        times = [str(row["uploaded_at"]) for row in parse_jsonl(read_bytes_bounded(root, manifest, READ_LIMIT))
                 if isinstance(row, dict) and row.get("uploaded_at")]
    except (OSError, ValueError):
        return None
    return max(times) if times else None


# Run pages ----------------------------------------------------------------------------------------
S3OPS_DAGS = (STORAGE_DAG, UPLOAD_DAG, *PLAN_DAGS)


def safe_run_id(run_id: str) -> bool:
    """A run id that names one folder under the DAG's artifact folder (no ``..``, separators or NULs)."""
    return bool(run_id) and run_id not in (".", "..") and not any(c in run_id for c in "/\\\x00")


def run_view(root: ArtifactPath, dag_id: str, run_id: str, *, readable: Collection[str] | None = None,
             approval_state: str | None = None, conf: Any = None) -> dict[str, Any]:
    """What a DAG run's "S3 Ops" tab shows: the plan of a deletion run, the report of a storage-report
    run, the batch results of an upload run (the same entries as the S3 Ops pages)."""
    view: dict[str, Any] = {"dag_id": dag_id, "run_id": run_id, "kind": None, "allowed": _allowed(dag_id, readable)}
    if dag_id not in S3OPS_DAGS:  # Airflow shows the tab on every DAG's runs; there is nothing to hide here
        view.update(kind="other", allowed=True)
        return view
    if not view["allowed"]:
        return view
    if not safe_run_id(run_id):
        view.update(kind="bad_run_id")
        return view
    if dag_id == STORAGE_DAG:
        view.update(kind="storage", storage=storage_view(root, readable, run_id=run_id))
    elif dag_id == UPLOAD_DAG:
        uploads = uploads_view(root, readable=readable, run_id=run_id)
        uploads["batches"] = upload_batches(root, root / UPLOAD_DAG / run_id, uploads["flags"])
        view.update(kind="uploads", uploads=uploads)
    else:
        folder = root / dag_id / run_id
        try:
            has_plan = (folder / "plan.json").exists()
        except OSError:
            has_plan = False
        if not has_plan:
            view.update(kind="plan", plan=None)
            return view
        entry = _plan_entry(root, dag_id, run_id, approval_state)
        if not entry.get("limits"):
            entry["limits"] = conf_limits(conf)
            entry["limits_source"] = "from the run's conf"
        view.update(kind="plan", plan=entry)
    return view


def upload_batches(root: ArtifactPath, folder: ArtifactPath, flags: list[str]) -> list[dict[str, Any]]:
    """Each batch's results (``results/<batch>.json``) of one upload run, in batch order."""
    try:
        files = sorted((p for p in (folder / "results").iterdir() if p.name.endswith(".json")), key=lambda p: p.name)
    except (OSError, FileNotFoundError):
        return []
    rows = []
    for path in files:
        batch = path.name[: -len(".json")]
        try:
            data = _read_json(root, path)
            if not isinstance(data, dict):
                raise ValueError(f"a batch result is a JSON object, this is {type(data).__name__}")
        except (OSError, ValueError) as exc:
            rows.append({"batch": batch, "error": str(exc)})
            continue
        f = Fields(f"{UPLOAD_DAG}/{folder.name}/results/{path.name}", flags)
        if "rows" in data:
            rows.append({"batch": batch, "error": None, **_batch_rows(f, data["rows"])})
            continue
        uploaded = f.items(data.get("uploaded"), "uploaded")  # results written before the one-row-per-file format
        rows.append({
            "batch": batch, "error": None, "uploaded": len(uploaded),
            "bytes": f.count(data.get("bytes"), "bytes"),
            "already_present": f.count(data.get("already_present"), "already_present"),
            "conflicts": len(f.items(data.get("conflicts"), "conflicts")),
            "failed": len(f.items(data.get("failed"), "failed")),
            "not_ready": len(f.items(data.get("not_ready"), "not_ready")),
            "failed_paths": [str(x.get("path") if isinstance(x, dict) else x)
                             for x in f.items(data.get("failed"), "failed")][:20],
        })
    return rows


#: the upload's row statuses (include.upload.uploader; not imported: it needs the CRT client) and how
#: its ``BatchResult.counts`` adds them up
_IN_S3 = ("uploaded", "already_present", "uploaded_not_deleted")
_FAILED = ("failed", "uploaded_not_deleted")


def _batch_rows(f: Fields, rows: Any) -> dict[str, Any]:
    """A batch's counts from its manifest rows (``{"rows": [...]}``, one per file), counted as the
    upload counts them; a row of the wrong kind is flagged and not counted."""
    status: list[str] = []
    size = 0
    failed_paths = []
    for i, row in enumerate(f.items(rows, "rows")):
        if not isinstance(row, dict):
            f.flag(f"rows[{i}]", row, "an object")
            continue
        st = str(row.get("status"))
        status.append(st)
        if st in _IN_S3:
            size += f.count(row.get("size"), f"rows[{i}].size") or 0
        if st in _FAILED:
            failed_paths.append(str(row.get("path")))
    return {
        "uploaded": sum(s in _IN_S3 for s in status), "bytes": size,
        "already_present": status.count("already_present"), "conflicts": status.count("conflict"),
        "failed": sum(s in _FAILED for s in status), "not_ready": status.count("not_ready"),
        "failed_paths": failed_paths[:20],
    }
