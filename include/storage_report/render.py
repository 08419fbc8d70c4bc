"""report.json → report.txt (plain table, also logged), report.csv and report.html (self-contained:
inline CSS bar charts, nothing fetched from anywhere).

report.json is for programs (numbers, ISO 8601 UTC times); everything people read is made here: sizes
in the report's unit, dates in its ``display`` format (``date_format``, ``show_time``; see
``include.core.dates``), "unknown" for counts the source cannot give."""

from __future__ import annotations

import csv
import html
import io
from typing import Any

from include.core.dates import format_date
from include.core.units import format_size
from include.storage_report.aggregate import region_groups

UNKNOWN = "unknown"


def _class_totals(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Objects, bytes and cost per storage class over every readable bucket."""
    out: dict[str, dict[str, Any]] = {}
    for b in report["buckets"]:
        for cls, v in (b.get("storage_classes") or {}).items():
            t = out.setdefault(cls, {"object_count": 0, "bytes": 0, "estimated_monthly_cost_usd": 0.0})
            t["object_count"] = None if v["object_count"] is None or t["object_count"] is None \
                else t["object_count"] + v["object_count"]
            t["bytes"] += v["bytes"]
            t["estimated_monthly_cost_usd"] += v["estimated_monthly_cost_usd"]
    return dict(sorted(out.items()))


def _num(value: Any) -> str:
    return "-" if value is None else str(value)


def _count(value: int | None, error: str | None = None) -> str:
    """An object count: "unknown" when the source cannot give it, "-" for an unreadable bucket."""
    if value is None:
        return "-" if error else UNKNOWN
    return str(value)


class _Dates:
    """The report's date display settings (``display`` in report.json), overridable by the caller."""

    def __init__(self, report: dict[str, Any], date_format: str | None, show_time: bool | None) -> None:
        display = report.get("display") or {}
        self.date_format = date_format or display.get("date_format") or "iso"
        self.show_time = display.get("show_time", True) if show_time is None else show_time

    def __call__(self, value: str | None, *, date_only: bool = False) -> str:
        shown = format_date(value, self.date_format, self.show_time, date_only=date_only)
        return "-" if shown is None else shown


def _size(b: dict[str, Any], unit: str) -> str:
    return "-" if b.get("total_bytes") is None else format_size(b["total_bytes"], unit)


def _usd(value: float | None) -> str:
    if value is None:
        return "-"
    return "<$0.01" if 0 < value < 0.005 else f"${value:,.2f}"


def _hidden(b: dict[str, Any], unit: str) -> tuple[str, str, str]:
    nc, mpu = b.get("noncurrent_versions"), b.get("incomplete_multipart_uploads")
    return (
        "-" if nc is None else f"{nc['object_count']} / {format_size(nc['bytes'], unit)}",
        _num(b.get("delete_markers")),
        "-" if mpu is None else f"{mpu['count']} / {format_size(mpu['bytes'], unit)}",
    )


def _grid(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


BUCKET_HEADER = ["bucket", "region", "created", "objects", "size", "newest object", "cost/month", "noncurrent",
                 "delete markers", "incomplete uploads", "error"]
REGION_HEADER = ["region", "buckets", "unreadable", "objects", "size", "cost/month", "storage classes"]


def _bucket_cells(b: dict[str, Any], unit: str, when: _Dates) -> list[str]:
    noncurrent, markers, mpu = _hidden(b, unit)
    return [b["name"], _num(b["region"]), when(b["creation_date"]), _count(b["object_count"], b["error"]),
            _size(b, unit), when(b["last_modified"]), _usd(b["estimated_monthly_cost_usd"]),
            noncurrent, markers, mpu, b["error"] or ""]


def _region_cells(r: dict[str, Any], unit: str) -> list[str]:
    return [r["region"] or UNKNOWN, str(r["bucket_count"]), str(r["error_count"]), _count(r["object_count"]),
            format_size(r["total_bytes"], unit), _usd(r["estimated_monthly_cost_usd"]),
            ", ".join(r.get("storage_classes") or {}) or "-"]


def _regions(report: dict[str, Any]) -> list[dict[str, Any]]:
    """report.json's ``regions`` (reports written before it existed: rebuilt from the buckets)."""
    if "regions" in report:
        return report["regions"]
    return region_groups(report["buckets"], report["size_unit"])


def _inventory_lines(report: dict[str, Any], when: _Dates) -> list[str]:
    """Where each bucket's numbers come from with ``source: inventory``: the inventory's date, or why
    the bucket was listed instead."""
    lines = []
    for b in report["buckets"]:
        inv = b.get("inventory")
        if inv:
            lines.append(f"{b['name']}: S3 Inventory of {when(inv['date'])} ({inv['format']}, {inv['files']} data "
                         f"files, {inv['manifest']})"
                         + (f"; newer deliveries refused: {'; '.join(inv['skipped'])}" if inv.get("skipped") else ""))
        elif b.get("inventory_note"):
            lines.append(f"{b['name']}: {b['inventory_note']}")
    return lines


def unknown_notes(report: dict[str, Any]) -> list[str]:
    """What the report could not tell, bucket by bucket (the numbers shown are still right): incomplete
    multipart uploads that could not be listed, storage classes without a price (counted as $0)."""
    notes = [f"{b['name']}: incomplete multipart uploads unknown ({b['incomplete_multipart_uploads_error']})"
             for b in report["buckets"] if b.get("incomplete_multipart_uploads_error")]
    unpriced = report.get("pricing", {}).get("unpriced") or []
    if unpriced:
        notes.append(f"no price for {', '.join(unpriced)}: counted as $0 in the costs (add it under prices)")
    return notes


def filter_notes(report: dict[str, Any]) -> list[str]:
    """Plain lines naming each bucket glob and region asked for that matched no bucket (report.json's
    ``filters``), or saying the credentials see no bucket at all; none for an older report without them.

    With both kinds of filter, the filters are stated once, in a first line, and each note refers to
    them: a note repeating the other whole list made the notes grow as globs × regions."""
    if "filters" not in report:
        return []
    f = report["filters"]
    notes = [f"no bucket{' in those regions' if f['regions'] else ''} matches {p!r}" for p in f["unmatched_buckets"]]
    notes += [f"no bucket{' matching those globs' if f['buckets'] else ''} is in {r}" for r in f["unmatched_regions"]]
    if notes and f["buckets"] and f["regions"]:
        notes.insert(0, f"filters: buckets {', '.join(f['buckets'])}; regions {', '.join(f['regions'])}")
    if not report["buckets"] and not notes:
        notes.append("no bucket to report: the credentials see none")
    return notes


def render_table(report: dict[str, Any], *, group_by: str = "bucket", date_format: str | None = None,
                 show_time: bool | None = None) -> str:
    """The plain-text report: buckets (or regions, ``group_by="region"``), storage classes, totals, pricing."""
    unit = report["size_unit"]
    when = _Dates(report, date_format, show_time)
    out = [f"S3 storage report ({report['source']}), generated {when(report['generated_at'])}"]
    if report.get("metric_date"):
        out.append(f"CloudWatch metrics of {when(report['metric_date'], date_only=True)} "
                   f"({report.get('note', 'approximate')})")
    out += _inventory_lines(report, when)
    if group_by == "region":
        rows = [_region_cells(r, unit) for r in _regions(report)]
        out += ["", *_grid(REGION_HEADER, rows, {1, 2, 3, 4, 5})]
    else:
        rows = [_bucket_cells(b, unit, when) for b in report["buckets"]]
        out += ["", *_grid(BUCKET_HEADER, rows, {3, 4, 6})]
    classes = _class_totals(report)
    if classes:
        class_rows = [[cls, _count(v["object_count"]), format_size(v["bytes"], unit), _usd(v["estimated_monthly_cost_usd"])]
                      for cls, v in classes.items()]
        out += ["", *_grid(["storage class", "objects", "size", "cost/month"], class_rows, {1, 2, 3})]
    t = report["totals"]
    p = report["pricing"]
    out += [
        "",
        f"total: {t['bucket_count']} buckets, {_count(t['object_count'])} objects, {format_size(t['total_bytes'], unit)} "
        f"({t['total_bytes']} bytes), {_usd(t['estimated_monthly_cost_usd'])}/month {p['label']}"
        + (f"; {t['error_count']} bucket(s) could not be read" if t.get("error_count") else ""),
        f"prices: {p['source']}, as of {p['as_of']}"
        + (f"; priced as us-east-1: {', '.join(p['fallback_regions'])}" if p.get("fallback_regions") else ""),
        *unknown_notes(report),
        *filter_notes(report),
    ]
    return "\n".join(out) + "\n"


def _decimal(usd: float | None) -> str | None:
    """A cost as plain decimals for a spreadsheet: ``0.00004492``, not Python's ``4.492e-05``."""
    return None if usd is None else (f"{usd:.8f}".rstrip("0").rstrip(".") or "0")


def render_csv(report: dict[str, Any], *, group_by: str = "bucket", date_format: str | None = None,
               show_time: bool | None = None) -> str:
    """One row per bucket (or region); per-class columns ``<CLASS>_object_count`` / ``<CLASS>_bytes``.
    Exact numbers (bytes, counts) and a ``total_size`` display string; dates in the report's format."""
    unit = report["size_unit"]
    when = _Dates(report, date_format, show_time)
    classes = list(_class_totals(report))
    class_fields = [f"{c}_{what}" for c in classes for what in ("object_count", "bytes")]
    buf = io.StringIO()
    if group_by == "region":
        fields = ["region", "bucket_count", "error_count", "object_count", "total_bytes", "total_size",
                  "estimated_monthly_cost_usd", *class_fields]
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for r in _regions(report):
            row = {k: r.get(k) for k in fields if k in r}
            row.update(total_size=format_size(r["total_bytes"], unit),
                       object_count=_count(r["object_count"]), estimated_monthly_cost_usd=_decimal(
                           r.get("estimated_monthly_cost_usd")))
            for cls, v in (r.get("storage_classes") or {}).items():
                row[f"{cls}_object_count"] = _count(v["object_count"])
                row[f"{cls}_bytes"] = v["bytes"]
            writer.writerow(row)
        return buf.getvalue()
    fields = ["name", "region", "creation_date", "object_count", "total_bytes", "total_size", "last_modified",
              "estimated_monthly_cost_usd", "noncurrent_object_count", "noncurrent_bytes", "delete_markers",
              "incomplete_multipart_uploads", "incomplete_multipart_bytes", "error", *class_fields]
    if report["source"] == "inventory":
        fields.insert(fields.index("error"), "inventory_date")
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for b in report["buckets"]:
        nc, mpu = b.get("noncurrent_versions") or {}, b.get("incomplete_multipart_uploads") or {}
        row = {k: b.get(k) for k in fields if k in b}
        row.update(noncurrent_object_count=nc.get("object_count"), noncurrent_bytes=nc.get("bytes"),
                   incomplete_multipart_uploads=mpu.get("count"), incomplete_multipart_bytes=mpu.get("bytes"),
                   creation_date=when(b["creation_date"]) if b["creation_date"] else None,
                   last_modified=when(b["last_modified"]) if b["last_modified"] else None,
                   total_size=None if b["total_bytes"] is None else format_size(b["total_bytes"], unit),
                   estimated_monthly_cost_usd=_decimal(b.get("estimated_monthly_cost_usd")))
        if b["error"] is None and b["object_count"] is None:
            row["object_count"] = UNKNOWN
        if "inventory_date" in fields:
            row["inventory_date"] = when(b["inventory"]["date"]) if b.get("inventory") else "listed"
        for cls, v in (b.get("storage_classes") or {}).items():
            row[f"{cls}_object_count"] = _count(v["object_count"])
            row[f"{cls}_bytes"] = v["bytes"]
        writer.writerow(row)
    return buf.getvalue()


def _bars(title: str, items: list[tuple[str, int]], unit: str) -> str:
    top = max((v for _, v in items), default=0) or 1
    rows = "".join(
        f'<div class="bar"><span class="label">{html.escape(name)}</span>'
        f'<span class="track"><span class="fill" style="width:{100 * v / top:.1f}%"></span></span>'
        f'<span class="value">{html.escape(format_size(v, unit))}</span></div>'
        for name, v in items
    )
    return f"<h2>{html.escape(title)}</h2><div class=\"chart\">{rows or '<p>nothing stored</p>'}</div>"


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#1f2933}
table{border-collapse:collapse;font-size:.9rem}th,td{padding:.3rem .6rem;border-bottom:1px solid #d9e2ec;text-align:left}
td{white-space:nowrap}td.n{text-align:right;font-variant-numeric:tabular-nums}tr.err td{color:#b42318}
.chart{max-width:60rem}.bar{display:flex;align-items:center;gap:.6rem;margin:.2rem 0}
.label{width:16rem;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.track{flex:1;background:#f0f4f8;height:1rem}.fill{display:block;height:100%;background:#2f80ed}
.value{width:8rem;text-align:right;font-variant-numeric:tabular-nums}.muted{color:#627d98}
"""


def render_html(report: dict[str, Any], *, date_format: str | None = None, show_time: bool | None = None) -> str:
    """A readable page: the bucket and region tables, bytes per bucket, region and storage class as bar charts."""
    unit = report["size_unit"]
    when = _Dates(report, date_format, show_time)
    e = html.escape
    body = []
    for b in report["buckets"]:
        cells = _bucket_cells(b, unit, when)
        tds = "".join(f'<td class="n">{e(c)}</td>' if i in (3, 4, 6) else f"<td>{e(c)}</td>" for i, c in enumerate(cells))
        body.append(f'<tr class="{"err" if b["error"] else ""}">{tds}</tr>')
    regions = _regions(report)
    region_rows = "".join(
        "<tr>" + "".join(f'<td class="n">{e(c)}</td>' if 1 <= i <= 5 else f"<td>{e(c)}</td>"
                         for i, c in enumerate(_region_cells(r, unit))) + "</tr>"
        for r in regions)
    t, p = report["totals"], report["pricing"]
    per_bucket = [(b["name"], b["total_bytes"]) for b in report["buckets"] if b["total_bytes"] is not None]
    per_region = [(r["region"] or UNKNOWN, r["total_bytes"]) for r in regions]
    per_class = [(cls, v["bytes"]) for cls, v in _class_totals(report).items()]
    note = f"<p>CloudWatch metrics of {e(when(report.get('metric_date'), date_only=True))}: " \
        f"{e(report.get('note', ''))}</p>" if report["source"] == "cloudwatch" else ""
    generated = e(when(report["generated_at"]))
    inventory = "".join(f"<li>{e(line)}</li>" for line in _inventory_lines(report, when))
    if inventory:
        note += f'<ul id="inventory">{inventory}</ul>'
    note += "".join(f'<p class="filters">{e(line)}</p>' for line in [*unknown_notes(report), *filter_notes(report)])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>S3 storage report {generated}</title>
<style>{_CSS}</style></head><body>
<h1>S3 storage report</h1>
<p class="muted">source: {e(report['source'])} · generated {generated} · sizes in {e(unit)}</p>{note}
<p><strong>{t['bucket_count']}</strong> buckets · <strong>{e(_count(t['object_count']))}</strong> objects ·
<strong>{e(format_size(t['total_bytes'], unit))}</strong> ({t['total_bytes']} bytes) ·
<strong>{e(_usd(t['estimated_monthly_cost_usd']))}</strong>/month {e(p['label'])}</p>
<table><thead><tr>{''.join(f'<th>{e(h)}</th>' for h in BUCKET_HEADER)}</tr></thead><tbody>{''.join(body)}</tbody></table>
<h2>Per region</h2>
<table id="regions"><thead><tr>{''.join(f'<th>{e(h)}</th>' for h in REGION_HEADER)}</tr></thead><tbody>{region_rows}</tbody></table>
{_bars("Bytes per bucket", per_bucket, unit)}
{_bars("Bytes per region", per_region, unit)}
{_bars("Bytes per storage class", per_class, unit)}
<p class="muted">Costs are {e(p['label'])} ({e(p['unit'])}): {e(p['source'])}, as of {e(p['as_of'])}.
Storage only: no requests, retrievals or transfer.</p>
</body></html>
"""
