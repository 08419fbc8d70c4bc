"""HTML for the "S3 Ops" UI pages: self-contained (inline CSS, inline SVG charts, a few lines of inline
JS to sort tables). Nothing is fetched from outside the Airflow server. Every value from an artifact is
escaped. Exact numbers sit in ``data-value`` attributes so tests (and sorting) read them unformatted.
"""

from __future__ import annotations

from html import escape
from typing import Any

from include.core.dates import format_date
from include.core.units import format_size
from include.ui.views import required_actions_url

PAGES = (("storage", "Storage"), ("plans", "Plans"), ("uploads", "Uploads"))
PALETTE = ("#017cee", "#e8710a", "#12a35a", "#c62f7e", "#7a4fd1", "#8c6b00", "#00838f", "#5f6368")

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2328;background:#fff}
header{display:flex;gap:1.5rem;align-items:center;padding:.6rem 1.2rem;border-bottom:1px solid #d0d7de;background:#f6f8fa}
header b{font-size:1.05rem}header a{color:#1f2328;text-decoration:none;padding:.2rem .5rem;border-radius:4px}
header a.active{background:#017cee;color:#fff}
main{padding:1rem 1.2rem;max-width:1300px}
h2{font-size:1.1rem;margin:1.4rem 0 .5rem}h3{font-size:.95rem;margin:1rem 0 .4rem}
table{border-collapse:collapse;margin:.3rem 0 1rem;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:.25rem .55rem;text-align:left;vertical-align:top}
th{background:#f6f8fa;cursor:pointer;user-select:none;white-space:nowrap}
td.num,th.num{text-align:right}.muted{color:#656d76}.err{color:#cf222e}
.cards{display:flex;gap:.8rem;flex-wrap:wrap;margin:.6rem 0}
.card{border:1px solid #d0d7de;border-radius:6px;padding:.5rem .9rem;min-width:9rem}
.card .v{font-size:1.3rem;font-weight:600}
.charts{display:flex;gap:2rem;flex-wrap:wrap}
.badge{display:inline-block;padding:0 .45rem;border-radius:9px;font-size:.8rem;background:#eaeef2}
.badge.awaiting{background:#fff1c2}.badge.finished,.badge.approved{background:#d6f5df}.badge.rejected,.badge.refused{background:#ffd8d3}
.badge.superseded,.badge.expired{background:#e4e0f5;color:#444}
code{font-size:.85em}ul.keys{margin:.2rem 0;padding-left:1.1rem;max-height:12rem;overflow:auto}
"""

SORT_JS = """
document.querySelectorAll("table.sortable th").forEach(function(th){th.addEventListener("click",function(){
 var table=th.closest("table"),body=table.tBodies[0],i=Array.prototype.indexOf.call(th.parentNode.children,th);
 var asc=th.dataset.dir!=="asc";th.parentNode.querySelectorAll("th").forEach(function(h){delete h.dataset.dir});
 th.dataset.dir=asc?"asc":"desc";
 var rows=Array.prototype.slice.call(body.rows);
 rows.sort(function(a,b){var x=a.cells[i].dataset.value,y=b.cells[i].dataset.value;
  if(x===undefined)x=a.cells[i].textContent;if(y===undefined)y=b.cells[i].textContent;
  var nx=parseFloat(x),ny=parseFloat(y),c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:String(x).localeCompare(String(y));
  return asc?c:-c});
 rows.forEach(function(r){body.appendChild(r)})})});
"""


def human_bytes(n: int | None) -> str:
    """1536 → "1.50 KiB": the project's one byte format (:func:`include.core.units.format_size`), "–" for unknown."""
    return "–" if n is None else format_size(n)


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _num(value: int | float | None, text: str | None = None) -> str:
    """A numeric cell: exact value for sorting/tests, readable text for people."""
    if value is None:
        return '<td class="num" data-value="">–</td>'
    shown = text if text is not None else (f"{value:,}" if isinstance(value, int) else _money(value))
    return f'<td class="num" data-value="{value}">{_e(shown)}</td>'


def _money(value: float) -> str:
    """Dollars: cents, or four decimals below one dollar (small buckets cost fractions of a cent)."""
    return f"{value:,.2f}" if abs(value) >= 1 or value == 0 else f"{value:.4f}"


def _count_cell(value: int | None, error: str | None = None) -> str:
    """An object count; "unknown" when the source cannot give it (CloudWatch with a class filter)."""
    if value is None and not error:
        return '<td class="num" data-value="" data-unknown="1">unknown</td>'
    return _num(value)


def _bytes_cell(n: int | None) -> str:
    return _num(n, None if n is None else f"{n:,} ({human_bytes(n)})")


def page(title: str, active: str, body: str, base: str = "") -> str:
    nav = "".join(
        f'<a href="{base}/{slug}" class="{"active" if slug == active else ""}" data-page="{slug}">{name}</a>'
        for slug, name in PAGES
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>S3 Ops · {_e(title)}</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head>'
        f"<body><header><b>S3 Ops</b>{nav}</header><main>{body}</main><script>{SORT_JS}</script></body></html>"
    )


def bar_chart(items: list[tuple[str, int]], *, title: str, chart_id: str, fmt: Any = human_bytes) -> str:
    """Horizontal bars as inline SVG; each bar carries its exact value in ``data-value``."""
    if not items:
        return f'<p class="muted">{_e(title)}: nothing to show.</p>'
    width, label_w, value_w, row_h = 560, 170, 110, 22
    top = max(v for _, v in items) or 1
    rows = []
    for i, (label, value) in enumerate(items):
        y = i * row_h
        w = max(1.0, (width - label_w - value_w) * value / top) if value else 0
        rows.append(
            f'<g class="bar" data-label="{_e(label)}" data-value="{value}">'
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" font-size="12">{_e(label[:26])}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{PALETTE[i % len(PALETTE)]}">'
            f"<title>{_e(label)}: {_e(fmt(value))}</title></rect>"
            f'<text x="{label_w + w + 5:.1f}" y="{y + 15}" font-size="12">{_e(fmt(value))}</text></g>'
        )
    height = row_h * len(items)
    return (
        f'<figure id="{chart_id}"><figcaption><b>{_e(title)}</b></figcaption>'
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{_e(title)}">{"".join(rows)}</svg></figure>'
    )


def line_chart(times: list[str], series: dict[str, list[int | None]], *, title: str, chart_id: str,
               fmt: Any = human_bytes, max_series: int = 8) -> str:
    """One polyline per series over report times (index-spaced), with a legend; at most ``max_series``
    series (the largest at the last point)."""
    series = {k: v for k, v in series.items() if any(x is not None for x in v)}  # e.g. an unreadable bucket
    if len(times) < 1 or not series:
        return f'<p class="muted">{_e(title)}: nothing to show.</p>'
    last = {k: next((v for v in reversed(vals) if v is not None), 0) for k, vals in series.items()}
    names = sorted(series, key=lambda k: -(last[k] or 0))[:max_series]
    width, height, left, bottom, top_pad = 560, 220, 70, 40, 10
    values = [v for k in names for v in series[k] if v is not None]
    vmax = max(values) if values else 1
    vmax = vmax or 1
    n = len(times)

    def x(i: int) -> float:
        return left + (width - left - 10) * (i / (n - 1) if n > 1 else 0.5)

    def y(v: int) -> float:
        return top_pad + (height - bottom - top_pad) * (1 - v / vmax)

    parts = [
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 5}" y2="{height - bottom}" stroke="#8c959f"/>',
        f'<line x1="{left}" y1="{top_pad}" x2="{left}" y2="{height - bottom}" stroke="#8c959f"/>',
        f'<text x="{left - 4}" y="{top_pad + 8}" text-anchor="end" font-size="11">{_e(fmt(vmax))}</text>',
        f'<text x="{left - 4}" y="{height - bottom}" text-anchor="end" font-size="11">{_e(fmt(0))}</text>',
        f'<text x="{left}" y="{height - bottom + 14}" font-size="11">{_e(times[0][:16])}</text>',
    ]
    if n > 1:
        parts.append(f'<text x="{width - 5}" y="{height - bottom + 14}" text-anchor="end" font-size="11">'
                     f"{_e(times[-1][:16])}</text>")
    legend = []
    for i, name in enumerate(names):
        color = PALETTE[i % len(PALETTE)]
        pts = [(x(j), y(v)) for j, v in enumerate(series[name]) if v is not None]
        path = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
        parts.append(f'<polyline class="series" data-series="{_e(name)}" fill="none" stroke="{color}" '
                     f'stroke-width="2" points="{path}"/>')
        parts.extend(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{color}"/>' for a, b in pts)
        legend.append(f'<span style="color:{color}">■</span> {_e(name)}')
    return (
        f'<figure id="{chart_id}"><figcaption><b>{_e(title)}</b></figcaption>'
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">'
        f'{"".join(parts)}</svg><div class="muted">{" &nbsp; ".join(legend)}</div></figure>'
    )


def _cards(items: list[tuple[str, str, Any]]) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card" data-card="{slug}" data-value="{_e(value)}"><div class="muted">{_e(label)}</div>'
        f'<div class="v">{_e(shown)}</div></div>'
        for slug, label, value, shown in ((s, lab, v, _shown(v, s)) for s, lab, v in items)
    ) + "</div>"


def _shown(value: Any, slug: str) -> str:
    if "bytes" in slug and isinstance(value, int):
        return human_bytes(value)
    if "cost" in slug and isinstance(value, float):
        return f"${_money(value)}"
    return f"{value:,}" if isinstance(value, int) else str(value)


# Pages --------------------------------------------------------------------------------------------
def render_storage(view: dict[str, Any], base: str = "") -> str:
    latest = view["latest"]
    if latest is None:
        empty = '<h2>Storage</h2><p class="muted" id="no-report">No storage report yet: trigger the ' \
                "<code>s3_storage_report</code> DAG.</p>"
        return page("Storage", "storage", empty, base)
    t = latest["totals"]
    fmt, show_time = latest.get("date_format") or "iso", latest.get("show_time", True)

    def when(value: str | None) -> str:
        return format_date(value, fmt, show_time) or "–"

    body = [
        f'<h2>Latest storage report</h2><p class="muted">Run <code id="report-run">{_e(latest["run_id"])}</code>, '
        f'generated {_e(when(latest["generated_at"]))}, source {_e(latest["source"])}. Costs are estimated at list price.</p>',
        _cards([("bucket_count", "Buckets", t["bucket_count"]),
                ("object_count", "Objects", "unknown" if t["object_count"] is None else t["object_count"]),
                ("total_bytes", "Total size", t["total_bytes"]),
                ("cost", "Est. monthly cost (USD)", t["estimated_monthly_cost_usd"])]),
        '<div class="charts">',
        bar_chart([(b["name"], b["total_bytes"]) for b in sorted(latest["buckets"], key=lambda b: -b["total_bytes"])],
                  title="Bytes per bucket", chart_id="chart-buckets"),
        bar_chart([(c["storage_class"], c["bytes"]) for c in latest["by_class"]],
                  title="Bytes per storage class", chart_id="chart-classes"),
        bar_chart([(r["region"] or "unknown", r["total_bytes"]) for r in latest.get("regions") or []],
                  title="Bytes per region", chart_id="chart-regions"),
        "</div>",
        '<h3>Buckets</h3><table class="sortable" id="buckets"><thead><tr><th>Bucket</th><th>Region</th>'
        '<th>Created</th><th class="num">Objects</th><th class="num">Bytes</th><th>Size</th><th>Newest object</th>'
        '<th>Storage classes</th><th class="num">Est. USD/month</th><th>Error</th></tr></thead><tbody>',
    ]
    for b in latest["buckets"]:
        body.append(
            f'<tr data-bucket="{_e(b["name"])}"><td>{_e(b["name"])}</td><td>{_e(b["region"])}</td>'
            f'<td data-value="{_e(b["creation_date"])}">{_e(when(b["creation_date"]))}</td>'
            f'{_count_cell(b["object_count"], b["error"])}{_bytes_cell(b["total_bytes"])}'
            f'<td>{_e(b["total_size"] or "–")}</td>'
            f'<td data-value="{_e(b["last_modified"] or "")}">{_e(when(b["last_modified"]))}</td>'
            f'<td>{_e(", ".join(b["storage_classes"]))}</td>{_num(b["estimated_monthly_cost_usd"])}'
            f'<td class="err">{_e(b["error"] or "")}</td></tr>'
        )
    body.append("</tbody></table>")
    body.append('<h3>Per region</h3><table class="sortable" id="regions"><thead><tr><th>Region</th>'
                '<th class="num">Buckets</th><th class="num">Unreadable</th><th class="num">Objects</th>'
                '<th class="num">Bytes</th><th class="num">Est. USD/month</th><th>Storage classes</th></tr></thead><tbody>')
    for r in latest.get("regions") or []:
        body.append(f'<tr data-region="{_e(r["region"] or "")}"><td>{_e(r["region"] or "unknown")}</td>'
                    f'{_num(r["bucket_count"])}{_num(r["error_count"])}{_count_cell(r["object_count"])}'
                    f'{_bytes_cell(r["total_bytes"])}{_num(r["estimated_monthly_cost_usd"])}'
                    f'<td>{_e(", ".join(r["storage_classes"]))}</td></tr>')
    body.append("</tbody></table>")
    body.append('<h3>Per storage class</h3><table class="sortable" id="classes"><thead><tr><th>Storage class</th>'
                '<th class="num">Objects</th><th class="num">Bytes</th><th class="num">Est. USD/month</th></tr></thead><tbody>')
    for c in latest["by_class"]:
        body.append(f'<tr data-class="{_e(c["storage_class"])}"><td>{_e(c["storage_class"])}</td>'
                    f'{_count_cell(c["object_count"])}{_bytes_cell(int(c["bytes"]))}{_num(float(c["estimated_monthly_cost_usd"]))}</tr>')
    body.append("</tbody></table>")
    body.append('<h3>Hidden costs</h3><p class="muted">Noncurrent versions, delete markers and incomplete multipart '
                "uploads are billed but do not show in a plain listing.</p>")
    if latest["hidden_costs"]:
        body.append('<table class="sortable" id="hidden"><thead><tr><th>Bucket</th><th class="num">Noncurrent versions</th>'
                    '<th class="num">Noncurrent bytes</th><th class="num">Delete markers</th>'
                    '<th class="num">Incomplete uploads</th><th class="num">Upload bytes</th></tr></thead><tbody>')
        for h in latest["hidden_costs"]:
            body.append(f'<tr data-bucket="{_e(h["name"])}"><td>{_e(h["name"])}</td>{_num(h["noncurrent_count"])}'
                        f'{_bytes_cell(h["noncurrent_bytes"])}{_num(h["delete_markers"])}{_num(h["multipart_count"])}'
                        f'{_bytes_cell(h["multipart_bytes"])}</tr>')
        body.append("</tbody></table>")
    else:
        body.append('<p class="muted" id="hidden">None found.</p>')
    hist = view["history"]
    body.append(f'<h2>History</h2><p class="muted"><span id="report-count">{view["report_count"]}</span> reports.</p>'
                '<div class="charts">')
    body.append(line_chart(hist["times"], {k: v["total_bytes"] for k, v in hist["buckets"].items()},
                           title="Bytes per bucket over time", chart_id="history-bytes"))
    body.append(line_chart(hist["times"], {k: v["object_count"] for k, v in hist["buckets"].items()},
                           title="Objects per bucket over time", chart_id="history-objects", fmt=lambda v: f"{v:,}"))
    body.append("</div>")
    if view["broken"]:
        body.append('<p class="err">Unreadable reports: ' + ", ".join(
            f'{_e(b["run_id"])} ({_e(b["error"])})' for b in view["broken"]) + "</p>")
    return page("Storage", "storage", "".join(body), base)


def _badge(status: str) -> str:
    cls = status.split()[0]
    return f'<span class="badge {cls}">{_e(status)}</span>'


def _plan_block(p: dict[str, Any]) -> str:
    if p.get("error") and "delete_count" not in p:
        return (f'<section class="plan" data-run="{_e(p["run_id"])}"><h3>{_e(p["dag_id"])} · {_e(p["run_id"])}</h3>'
                f'<p class="err">{_e(p["error"])}</p></section>')
    reasons = "".join(f'<tr data-reason="{_e(r["reason"])}"><td>{_e(r["reason"])}</td>{_num(r["count"])}'
                      f'{_bytes_cell(r["bytes"])}</tr>' for r in p["by_reason"])
    samples = "".join(f"<li><code>{_e(k)}</code></li>" for k in p["samples"])
    out = [
        f'<section class="plan" data-dag="{_e(p["dag_id"])}" data-run="{_e(p["run_id"])}" data-status="{_e(p["status"])}">',
        f'<h3>{_e(p["dag_id"])} · <code>{_e(p["run_id"])}</code> {_badge(p["status"])}</h3>',
        f'<p class="headline">{_e(p["headline"])}</p>' if p.get("headline") else "",
        f'<p>{"Bucket <code>" + _e(p["bucket"]) + "</code> · " if p.get("bucket") else ""}'
        f'{"Prefix <code>" + _e(p["prefix"]) + "</code> · " if p["prefix"] else ""}'
        f'planned {_e(p["planned_at"])} · <span class="delete-count" data-value="{p["delete_count"]}">'
        f'{p["delete_count"]:,}</span> objects to delete, <span class="delete-bytes" data-value="{p["delete_bytes"]}">'
        f'{human_bytes(p["delete_bytes"])}</span>, of {p["scanned_count"]:,} scanned '
        f'({human_bytes(p["scanned_bytes"])}){"" if p["listing_complete"] is not False else " · <b class=err>listing incomplete</b>"}'
        f'{" · dry run" if p.get("dry_run") else ""}</p>',
    ]
    if reasons:
        out.append('<table class="reasons"><thead><tr><th>Reason</th><th class="num">Objects</th>'
                   f'<th class="num">Bytes</th></tr></thead><tbody>{reasons}</tbody></table>')
    if samples:
        is_open = " open" if p["status"] == "awaiting approval" else ""
        out.append(f'<details{is_open}><summary>Sample keys ({len(p["samples"])})</summary><ul class="keys">{samples}</ul></details>')
    g = p.get("approval")
    if g:
        out.append(f'<p class="approval" data-verdict="{_e(g["verdict"])}">Approval: <b>{_e(g["verdict"])}</b>'
                   f'{" by " + _e(g["by"]) if g.get("by") else ""}{" at " + _e(g["at"]) if g.get("at") else ""}'
                   f' · {_e(g["reason"])}{" · plan <code>" + _e(g["plan_digest"]) + "</code>" if g.get("plan_digest") else ""}</p>')
    if p.get("superseded_by"):
        out.append(f'<p class="superseded">Superseded by run <code>{_e(p["superseded_by"])}</code>: nothing of this '
                   'plan is deleted.</p>')
    if p["status"] == "awaiting approval" and p.get("expires_at"):
        out.append(f'<p class="expires">Expires {_e(p["expires_at"])} (then nothing is deleted)'
                   f'{"; approvers: " + _e(", ".join(p["approvers"])) if p.get("approvers") else ""}.</p>')
    if p["status"] == "awaiting approval":
        out.append(f'<p><a class="approve-link" href="{_e(required_actions_url(p["dag_id"], p["run_id"]))}" '
                   'target="_top">Review and approve or reject in Required Actions →</a></p>')
    a = p.get("audit")
    if a:
        out.append(
            f'<p class="audit">Audit{" (" + _e(a["outcome"]) + ")" if a["outcome"] else ""}: '
            f'<span class="deleted-count" data-value="{a["deleted_count"]}">{a["deleted_count"]:,}</span> deleted '
            f'({human_bytes(a["deleted_bytes"])}), {a["skipped_count"]:,} skipped (protected again or changed since the plan), '
            f'<span class="error-count" data-value="{a["error_count"]}">{a["error_count"]:,}</span> errors'
            f'{", purged rows: " + _e(a["purged_rows"]) if a["purged_rows"] is not None else ""}.</p>'
        )
        if a["error_samples"]:
            out.append('<ul class="keys err">' + "".join(
                f'<li><code>{_e(e.get("key"))}</code> {_e(e.get("code"))} {_e(e.get("message"))}</li>'
                for e in a["error_samples"]) + "</ul>")
    if p.get("error"):
        out.append(f'<p class="err">{_e(p["error"])}</p>')
    out.append("</section>")
    return "".join(out)


def render_plans(view: dict[str, Any], base: str = "") -> str:
    body = [f'<h2>Awaiting approval (<span id="pending-count">{len(view["pending"])}</span>)</h2>']
    body += [_plan_block(p) for p in view["pending"]] or ['<p class="muted">Nothing is waiting for approval.</p>']
    recent = [p for p in view["recent"] if p["status"] != "awaiting approval"]
    body.append(f'<h2>Recent plans (<span id="plan-count">{len(recent)}</span>)</h2>')
    body += [_plan_block(p) for p in recent] or ['<p class="muted">No finished plans yet.</p>']
    return page("Plans", "plans", "".join(body), base)


def render_uploads(view: dict[str, Any], base: str = "") -> str:
    t = view["totals"]
    body = [
        f'<h2>Uploads</h2><p class="muted"><span id="run-count">{view["run_count"]}</span> upload runs with a summary.</p>',
        _cards([("uploaded", "Files uploaded", t["uploaded"]), ("bytes", "Bytes uploaded", t["bytes"]),
                ("malformed", "Malformed", t["malformed"]), ("conflicts", "Conflicts", t["conflicts"]),
                ("failed", "Failed", t["failed"])]),
        '<table class="sortable" id="uploads"><thead><tr><th>Run</th><th>Finished</th><th>Bucket</th>'
        '<th class="num">Uploaded</th><th class="num">Bytes</th><th class="num">Not ready</th>'
        '<th class="num">Malformed</th><th class="num">Conflicts</th><th class="num">Failed</th><th>Details</th>'
        "</tr></thead><tbody>",
    ]
    for r in view["runs"]:
        if r["error"]:
            body.append(f'<tr data-run="{_e(r["run_id"])}"><td>{_e(r["run_id"])}</td><td colspan="9" class="err">'
                        f'{_e(r["error"])}</td></tr>')
            continue
        details = []
        for label, items in (("malformed", r["malformed_paths"]), ("conflicts", r["conflict_keys"]),
                             ("failed", r["failed_paths"])):
            if items:
                details.append(f'<details><summary>{label}</summary><ul class="keys">'
                               + "".join(f"<li><code>{_e(i)}</code></li>" for i in items) + "</ul></details>")
        body.append(
            f'<tr data-run="{_e(r["run_id"])}"><td><code>{_e(r["run_id"])}</code></td><td>{_e(r["finished_at"])}</td>'
            f'<td>{_e(r["bucket"])}/{_e(r["key_prefix"] or "")}</td>{_num(r["uploaded"])}{_bytes_cell(r["bytes"])}'
            f'{_num(r["skipped_not_ready"])}{_num(r["malformed"])}{_num(r["conflicts"])}{_num(r["failed"])}'
            f'<td>{"".join(details)}</td></tr>'
        )
    body.append("</tbody></table>")
    return page("Uploads", "uploads", "".join(body), base)
