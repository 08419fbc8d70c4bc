"""report.json → report.txt (plain table, also logged), report.csv and report.html (self-contained:
inline CSS bar charts, nothing fetched from anywhere)."""

from __future__ import annotations

import csv
import html
import io
from typing import Any

from include.core.units import format_size


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


def render_table(report: dict[str, Any]) -> str:
    """The plain-text report: buckets, storage classes, totals, pricing."""
    unit = report["size_unit"]
    rows = []
    for b in report["buckets"]:
        noncurrent, markers, mpu = _hidden(b, unit)
        rows.append([
            b["name"], _num(b["region"]), (b["creation_date"] or "-")[:10], _num(b["object_count"]),
            _num(b["total_size"]), _num(b["last_modified"]), _usd(b["estimated_monthly_cost_usd"]),
            noncurrent, markers, mpu, b["error"] or "",
        ])
    header = ["bucket", "region", "created", "objects", "size", "newest object", "cost/month", "noncurrent",
              "delete markers", "incomplete uploads", "error"]
    out = [f"S3 storage report ({report['source']}), generated {report['generated_at']}"]
    if report.get("metric_date"):
        out.append(f"CloudWatch metrics of {report['metric_date']} ({report.get('note', 'approximate')})")
    out += ["", *_grid(header, rows, {3, 4, 6})]
    classes = _class_totals(report)
    if classes:
        class_rows = [[cls, _num(v["object_count"]), format_size(v["bytes"], unit), _usd(v["estimated_monthly_cost_usd"])]
                      for cls, v in classes.items()]
        out += ["", *_grid(["storage class", "objects", "size", "cost/month"], class_rows, {1, 2, 3})]
    t = report["totals"]
    p = report["pricing"]
    out += [
        "",
        f"total: {t['bucket_count']} buckets, {t['object_count']} objects, {t['total_size']} "
        f"({t['total_bytes']} bytes), {_usd(t['estimated_monthly_cost_usd'])}/month {p['label']}"
        + (f"; {t['error_count']} bucket(s) could not be read" if t.get("error_count") else ""),
        f"prices: {p['source']}, as of {p['as_of']}"
        + (f"; priced as us-east-1: {', '.join(p['fallback_regions'])}" if p.get("fallback_regions") else ""),
    ]
    return "\n".join(out) + "\n"


def render_csv(report: dict[str, Any]) -> str:
    """One row per bucket; per-class columns ``<CLASS>_object_count`` / ``<CLASS>_bytes``."""
    classes = list(_class_totals(report))
    fields = ["name", "region", "creation_date", "object_count", "total_bytes", "total_size", "last_modified",
              "estimated_monthly_cost_usd", "noncurrent_object_count", "noncurrent_bytes", "delete_markers",
              "incomplete_multipart_uploads", "incomplete_multipart_bytes", "error"]
    fields += [f"{c}_{what}" for c in classes for what in ("object_count", "bytes")]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for b in report["buckets"]:
        nc, mpu = b.get("noncurrent_versions") or {}, b.get("incomplete_multipart_uploads") or {}
        row = {k: b.get(k) for k in fields if k in b}
        row.update(noncurrent_object_count=nc.get("object_count"), noncurrent_bytes=nc.get("bytes"),
                   incomplete_multipart_uploads=mpu.get("count"), incomplete_multipart_bytes=mpu.get("bytes"))
        for cls, v in (b.get("storage_classes") or {}).items():
            row[f"{cls}_object_count"] = v["object_count"]
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


def render_html(report: dict[str, Any]) -> str:
    """A readable page: the bucket table, bytes per bucket and per storage class as bar charts."""
    unit = report["size_unit"]
    e = html.escape
    head = ["bucket", "region", "created", "objects", "size", "newest object", "cost/month", "noncurrent",
            "delete markers", "incomplete uploads", "error"]
    body = []
    for b in report["buckets"]:
        noncurrent, markers, mpu = _hidden(b, unit)
        cells = [b["name"], _num(b["region"]), (b["creation_date"] or "-")[:10], _num(b["object_count"]),
                 _num(b["total_size"]), _num(b["last_modified"]), _usd(b["estimated_monthly_cost_usd"]),
                 noncurrent, markers, mpu, b["error"] or ""]
        tds = "".join(f'<td class="n">{e(c)}</td>' if i in (3, 4, 6) else f"<td>{e(c)}</td>" for i, c in enumerate(cells))
        body.append(f'<tr class="{"err" if b["error"] else ""}">{tds}</tr>')
    t, p = report["totals"], report["pricing"]
    per_bucket = [(b["name"], b["total_bytes"]) for b in report["buckets"] if b["total_bytes"] is not None]
    per_class = [(cls, v["bytes"]) for cls, v in _class_totals(report).items()]
    note = f"<p>CloudWatch metrics of {e(str(report['metric_date']))}: {e(report.get('note', ''))}</p>" \
        if report["source"] == "cloudwatch" else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>S3 storage report {e(report['generated_at'])}</title>
<style>{_CSS}</style></head><body>
<h1>S3 storage report</h1>
<p class="muted">source: {e(report['source'])} · generated {e(report['generated_at'])} · sizes in {e(unit)}</p>{note}
<p><strong>{t['bucket_count']}</strong> buckets · <strong>{t['object_count']}</strong> objects ·
<strong>{e(t['total_size'])}</strong> ({t['total_bytes']} bytes) ·
<strong>{e(_usd(t['estimated_monthly_cost_usd']))}</strong>/month {e(p['label'])}</p>
<table><thead><tr>{''.join(f'<th>{e(h)}</th>' for h in head)}</tr></thead><tbody>{''.join(body)}</tbody></table>
{_bars("Bytes per bucket", per_bucket, unit)}
{_bars("Bytes per storage class", per_class, unit)}
<p class="muted">Costs are {e(p['label'])} ({e(p['unit'])}): {e(p['source'])}, as of {e(p['as_of'])}.
Storage only: no requests, retrievals or transfer.</p>
</body></html>
"""
