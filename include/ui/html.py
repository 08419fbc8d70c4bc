"""HTML for the "S3 Ops" UI pages: self-contained (inline CSS, inline SVG charts, a few lines of inline
JS to sort tables). Nothing is fetched from outside the Airflow server. Every value from an artifact is
escaped. Exact numbers sit in ``data-value`` attributes so tests (and sorting) read them unformatted.
"""

from __future__ import annotations

from html import escape
from typing import Any

from include.core.dates import format_date
from include.core.errors import ABORT_ADVICE
from include.core.units import format_size
from include.ui.views import required_actions_url

PAGES = (("storage", "Storage"), ("plans", "Plans"), ("uploads", "Uploads"))
PALETTE = ("#017cee", "#e8710a", "#12a35a", "#c62f7e", "#7a4fd1", "#8c6b00", "#00838f", "#5f6368")

# Colours are variables: light by default, dark when the browser prefers it, and whatever Airflow's own
# theme says when the page sits in Airflow's iframe (THEME_JS copies the parent page's "dark"/"light" class).
_LIGHT = ("--fg:#1f2328;--bg:#ffffff;--muted:#656d76;--line:#d0d7de;--head:#f6f8fa;--err:#cf222e;--accent:#017cee;"
          "--badge:#eaeef2;--awaiting:#fff1c2;--finished:#d6f5df;--rejected:#ffd8d3;--ended:#e4e0f5;--warn:#fff8c5;"
          "--axis:#8c959f")
_DARK = ("--fg:#e6edf3;--bg:#111318;--muted:#9198a1;--line:#3d444d;--head:#1c2128;--err:#ff7b72;--accent:#4493f8;"
         "--badge:#2d333b;--awaiting:#4d3b00;--finished:#113b22;--rejected:#5a1e1e;--ended:#332b52;--warn:#3d3000;"
          "--axis:#768390")
CSS = (
    f":root{{{_LIGHT};color-scheme:light}}"
    f"@media (prefers-color-scheme: dark){{:root:not([data-theme=light]){{{_DARK};color-scheme:dark}}}}"
    f":root[data-theme=dark]{{{_DARK};color-scheme:dark}}"
    """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:var(--fg);background:var(--bg)}
a{color:var(--accent)}
header{display:flex;gap:1.5rem;align-items:center;padding:.6rem 1.2rem;border-bottom:1px solid var(--line);background:var(--head)}
header b{font-size:1.05rem}header a{color:var(--fg);text-decoration:none;padding:.2rem .5rem;border-radius:4px}
header a.active{background:var(--accent);color:#fff}
main{padding:1rem 1.2rem;max-width:1300px}
h2{font-size:1.1rem;margin:1.4rem 0 .5rem}h3{font-size:.95rem;margin:1rem 0 .4rem}
table{border-collapse:collapse;margin:.3rem 0 1rem;font-variant-numeric:tabular-nums}
th,td{border:1px solid var(--line);padding:.25rem .55rem;text-align:left;vertical-align:top}
th{background:var(--head);cursor:pointer;user-select:none;white-space:nowrap}
td.num,th.num{text-align:right}.muted{color:var(--muted)}.err{color:var(--err)}
.cards{display:flex;gap:.8rem;flex-wrap:wrap;margin:.6rem 0}
.card{border:1px solid var(--line);border-radius:6px;padding:.5rem .9rem;min-width:9rem}
.card .v{font-size:1.3rem;font-weight:600}
.charts{display:flex;gap:2rem;flex-wrap:wrap}svg text{fill:var(--fg)}
.badge{display:inline-block;padding:0 .45rem;border-radius:9px;font-size:.8rem;background:var(--badge)}
.badge.awaiting{background:var(--awaiting)}.badge.finished,.badge.approved{background:var(--finished)}
.badge.rejected,.badge.refused,.badge.failed,.badge.unreadable{background:var(--rejected)}
.badge.superseded,.badge.expired{background:var(--ended)}
.flags{border:1px solid var(--line);border-left:4px solid var(--err);background:var(--warn);padding:.4rem .8rem;margin:.6rem 0}
.flags ul{margin:.2rem 0;padding-left:1.1rem}
dl.limits{display:grid;grid-template-columns:max-content auto;gap:.1rem .8rem;margin:.3rem 0}dl.limits dd{margin:0}
code{font-size:.85em}ul.keys{margin:.2rem 0;padding-left:1.1rem;max-height:12rem;overflow:auto}
"""
)

THEME_JS = """
(function(){var root=document.documentElement;
 function parentRoot(){try{return window.parent!==window?window.parent.document.documentElement:null}catch(e){return null}}
 function apply(){var t=null,p=parentRoot();
  if(p){t=p.classList.contains("dark")?"dark":(p.classList.contains("light")?"light":null)}
  if(!t){try{var s=window.localStorage.getItem("theme");if(s==="dark"||s==="light")t=s}catch(e){}}
  if(t)root.setAttribute("data-theme",t);else root.removeAttribute("data-theme")}
 apply();var p=parentRoot();
 if(p&&window.MutationObserver)new MutationObserver(apply).observe(p,{attributes:true,attributeFilter:["class"]})})();
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
    # a lone surrogate (a hand-edited artifact) cannot be encoded as UTF-8: shown as its escape instead
    text = "" if value is None else str(value)
    return escape(text.encode("utf-8", "backslashreplace").decode("utf-8"))


def _num(value: int | float | None, text: str | None = None) -> str:
    """A numeric cell: exact value for sorting/tests, readable text for people."""
    if value is None:
        return '<td class="num" data-value="">–</td>'
    shown = text if text is not None else (f"{value:,}" if isinstance(value, int) else _money(value))
    return f'<td class="num" data-value="{value}">{_e(shown)}</td>'


def _money(value: float) -> str:
    """Dollars: cents, or four decimals below one dollar (small buckets cost fractions of a cent), and
    "<0.0001" below that, which is not nothing."""
    if 0 < value < 0.00005:
        return "<0.0001"
    return f"{value:,.2f}" if abs(value) >= 1 or value == 0 else f"{value:.4f}"


def _count_cell(value: int | None, unknown: bool = False) -> str:
    """An object count; "unknown" when the source cannot give it (CloudWatch with a class filter), "–"
    when the artifact's value is unreadable (flagged)."""
    if unknown:
        return '<td class="num" data-value="" data-unknown="1">unknown</td>'
    return _num(value)


def _bytes_cell(n: int | None) -> str:
    return _num(n, None if n is None else f"{n:,} ({human_bytes(n)})")


def page(title: str, active: str, body: str, base: str = "", *, nav: str | None = None) -> str:
    """A whole page: the S3 Ops header (its page links, or ``nav`` instead), ``body``, the theme and sort JS."""
    nav = nav if nav is not None else "".join(
        f'<a href="{base}/{slug}" class="{"active" if slug == active else ""}" data-page="{slug}">{name}</a>'
        for slug, name in PAGES
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>S3 Ops · {_e(title)}</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style>'
        f"<script>{THEME_JS}</script></head>"
        f"<body><header><b>S3 Ops</b>{nav}</header><main>{body}</main><script>{SORT_JS}</script></body></html>"
    )


def _count(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def flags_block(flags: list[str], limit: int = 50) -> str:
    """The values an artifact holds that could not be read, named (the rest of the page is shown)."""
    if not flags:
        return ""
    more = f"<li>… and {len(flags) - limit} more</li>" if len(flags) > limit else ""
    return ('<div class="flags" id="flags"><b>Some values in the artifacts are not what the DAG writes '
            f'(<span class="flag-count">{len(flags)}</span>); they are shown as –:</b><ul>'
            + "".join(f"<li>{_e(f)}</li>" for f in flags[:limit]) + more + "</ul></div>")


def not_allowed(dag_ids: list[str] | tuple[str, ...]) -> str:
    return ('<p class="muted" id="not-allowed">You may not read the runs of '
            + ", ".join(f"<code>{_e(d)}</code>" for d in dag_ids)
            + ": ask an Airflow admin for access to the DAG.</p>")


def bar_chart(items: list[tuple[str, int]], *, title: str, chart_id: str, fmt: Any = human_bytes) -> str:
    """Horizontal bars as inline SVG; each bar carries its exact value in ``data-value``."""
    items = [(str(label), value) for label, value in items if value is not None]  # unreadable: flagged elsewhere
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
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 5}" y2="{height - bottom}" stroke="var(--axis)"/>',
        f'<line x1="{left}" y1="{top_pad}" x2="{left}" y2="{height - bottom}" stroke="var(--axis)"/>',
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
    if value is None:
        return "–"
    if "bytes" in slug and isinstance(value, int):
        return human_bytes(value)
    if "cost" in slug and isinstance(value, float):
        return f"${_money(value)}"
    return f"{value:,}" if isinstance(value, int) else str(value)


# Pages --------------------------------------------------------------------------------------------
def render_storage(view: dict[str, Any], base: str = "") -> str:
    return page("Storage", "storage", storage_body(view), base)


def storage_body(view: dict[str, Any], *, history: bool = True) -> str:
    """The Storage page's content (also the storage report run page, without the history)."""
    if not view.get("allowed", True):
        return "<h2>Storage</h2>" + not_allowed(["s3_storage_report"])
    latest = view["latest"]
    if latest is None:
        broken = "".join(f'<p class="err">Unreadable report {_e(b["run_id"])}: {_e(b["error"])}</p>'
                         for b in view.get("broken", []))
        return '<h2>Storage</h2><p class="muted" id="no-report">No storage report yet: trigger the ' \
               "<code>s3_storage_report</code> DAG.</p>" + broken + flags_block(view.get("flags", []))
    t = latest["totals"]
    fmt, show_time = latest.get("date_format") or "iso", latest.get("show_time", True)

    def when(value: str | None) -> str:
        return format_date(value, fmt, show_time) or "–"

    body = [
        f'<h2>{"Latest storage report" if history else "Storage report"}</h2><p class="muted">Run '
        f'<code id="report-run">{_e(latest["run_id"])}</code>, '
        f'generated {_e(when(latest["generated_at"]))}, source {_e(latest["source"])}. Costs are estimated at list price.</p>',
        flags_block(view.get("flags", [])),
        _cards([("bucket_count", "Buckets", t["bucket_count"]),
                ("object_count", "Objects", "unknown" if t.get("object_count_unknown") else t["object_count"]),
                ("total_bytes", "Total size", t["total_bytes"]),
                ("cost", "Est. monthly cost (USD)", t["estimated_monthly_cost_usd"])]),
        '<div class="charts">',
        bar_chart([(b["name"], b["total_bytes"]) for b in sorted(latest["buckets"], key=lambda b: -(b["total_bytes"] or 0))],
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
            f'{_count_cell(b["object_count"], b.get("object_count_unknown", False))}{_bytes_cell(b["total_bytes"])}'
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
                    f'{_num(r["bucket_count"])}{_num(r["error_count"])}{_count_cell(r["object_count"], r.get("object_count_unknown", False))}'
                    f'{_bytes_cell(r["total_bytes"])}{_num(r["estimated_monthly_cost_usd"])}'
                    f'<td>{_e(", ".join(r["storage_classes"]))}</td></tr>')
    body.append("</tbody></table>")
    body.append('<h3>Per storage class</h3><table class="sortable" id="classes"><thead><tr><th>Storage class</th>'
                '<th class="num">Objects</th><th class="num">Bytes</th><th class="num">Est. USD/month</th></tr></thead><tbody>')
    for c in latest["by_class"]:
        body.append(f'<tr data-class="{_e(c["storage_class"])}"><td>{_e(c["storage_class"])}</td>'
                    f'{_count_cell(c["object_count"], c.get("object_count_unknown", False))}{_bytes_cell(int(c["bytes"]))}'
                    f'{_num(round(float(c["estimated_monthly_cost_usd"]), 6))}</tr>')
    body.append("</tbody></table>")
    body.append('<h3>Hidden costs</h3><p class="muted">Noncurrent versions, delete markers and incomplete multipart '
                "uploads are billed but do not show in a plain listing.</p>")
    for kind, why in latest.get("hidden_not_measured", {}).items():  # the same for every bucket: said once
        body.append(f'<p class="muted" data-not-measured="{_e(kind)}">{_e(_HIDDEN_TITLES.get(kind, kind))}: '
                    f'{_e(why)}.</p>')
    if latest["hidden_costs"]:
        body.append('<table class="sortable" id="hidden"><thead><tr><th>Bucket</th><th class="num">Noncurrent versions</th>'
                    '<th class="num">Delete markers</th><th class="num">Incomplete multipart uploads</th></tr></thead><tbody>')
        for h in latest["hidden_costs"]:
            body.append(f'<tr data-bucket="{_e(h["name"])}"><td>{_e(h["name"])}</td>'
                        + _hidden_cell(h, "noncurrent_versions", _count_bytes_cell(h["noncurrent_count"], h["noncurrent_bytes"]))
                        + _hidden_cell(h, "delete_markers", _num(h["delete_markers"]))
                        + _hidden_cell(h, "incomplete_multipart_uploads",
                                       _count_bytes_cell(h["multipart_count"], h["multipart_bytes"])) + "</tr>")
        body.append("</tbody></table>")
        if latest.get("no_hidden_costs"):
            body.append('<p class="muted" id="hidden-none">None found in: '
                        + ", ".join(_e(name) for name in latest["no_hidden_costs"]) + ".</p>")
    elif latest.get("hidden_not_measured"):  # not all was measured: name what was, and is 0
        measured = [title for kind, title in _HIDDEN_TITLES.items() if kind not in latest["hidden_not_measured"]]
        body.append('<p class="muted" id="hidden">' + ("".join(f"{_e(t)}: 0 in every bucket. " for t in measured)
                                                       or "Nothing of them was measured.").strip() + "</p>")
    else:  # every kind was measured in every bucket, and is 0
        body.append('<p class="muted" id="hidden">None found.</p>')
    if not history:
        return "".join(body)
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
    return "".join(body)


_HIDDEN_TITLES = {"noncurrent_versions": "Noncurrent versions", "delete_markers": "Delete markers",
                  "incomplete_multipart_uploads": "Incomplete multipart uploads"}


def _hidden_cell(h: dict[str, Any], kind: str, measured: str) -> str:
    """One hidden cost of one bucket: the ``measured`` cell (0 is a measured 0), or why it was not measured."""
    reason = h["not_measured"].get(kind)
    if reason is None:
        return measured
    return f'<td class="muted" data-value="" data-not-measured="{_e(kind)}">{_e(reason)}</td>'


def _count_bytes_cell(count: int | None, size: int | None) -> str:
    """A count and the bytes it holds ("–" when either is flagged); ``data-value``: the bytes, for sorting."""
    if count is None or size is None:
        return _num(None)
    return f'<td class="num" data-value="{size}" data-count="{count}">{count:,} ({_e(human_bytes(size))})</td>'


def _badge(status: str) -> str:
    cls = status.split()[0]
    return f'<span class="badge {cls}">{_e(status)}</span>'


def plan_block(p: dict[str, Any], *, heading: bool = True) -> str:
    """One plan: headline, counts, reasons, guard limits, approval state, sample keys and the audit."""
    if p.get("error") and "delete_count" not in p:
        return (f'<section class="plan" data-dag="{_e(p["dag_id"])}" data-run="{_e(p["run_id"])}" '
                f'data-status="{_e(p.get("status"))}"><h3>{_e(p["dag_id"])} · {_e(p["run_id"])} '
                f'{_badge(p.get("status") or "unreadable")}</h3><p class="err">{_e(p["error"])}</p></section>')
    reasons = "".join(f'<tr data-reason="{_e(r["reason"])}"><td>{_e(r["reason"])}</td>{_num(r["count"])}'
                      f'{_bytes_cell(r["bytes"])}</tr>' for r in p["by_reason"])
    samples = "".join(f"<li><code>{_e(k)}</code></li>" for k in p["samples"])
    out = [
        f'<section class="plan" data-dag="{_e(p["dag_id"])}" data-run="{_e(p["run_id"])}" data-status="{_e(p["status"])}">',
        f'<h3>{_e(p["dag_id"])} · <code>{_e(p["run_id"])}</code> {_badge(p["status"])}</h3>' if heading
        else f'<h3>Deletion plan {_badge(p["status"])}</h3>',
        f'<p class="headline">{_e(p["headline"])}</p>' if p.get("headline") else "",
        f'<p>{"Bucket <code>" + _e(p["bucket"]) + "</code> · " if p.get("bucket") else ""}'
        f'{"Prefix <code>" + _e(p["prefix"]) + "</code> · " if p["prefix"] else ""}'
        f'planned {_e(p["planned_at"])} · <span class="delete-count" data-value="{_e(p["delete_count"])}">'
        f'{_count(p["delete_count"])}</span> objects to delete, <span class="delete-bytes" '
        f'data-value="{_e(p["delete_bytes"])}">{human_bytes(p["delete_bytes"])}</span>, of '
        f'{_count(p["scanned_count"])} scanned ({human_bytes(p["scanned_bytes"])})'
        f'{"" if p["listing_complete"] is not False else " · <b class=err>listing incomplete</b>"}'
        f'{" · dry run" if p.get("dry_run") else ""}</p>',
        flags_block(p.get("flags", [])),
    ]
    if reasons:
        out.append('<table class="reasons"><thead><tr><th>Reason</th><th class="num">Objects</th>'
                   f'<th class="num">Bytes</th></tr></thead><tbody>{reasons}</tbody></table>')
    limits = p.get("limits") or []
    if limits:
        source = p.get("limits_source") or "as the run recorded them"
        out.append(f'<h4>Guard limits <span class="muted">({_e(source)})</span></h4><dl class="limits">'
                   + "".join(f'<dt>{_e(k)}</dt><dd data-limit="{_e(k)}"><code>{_e(v)}</code></dd>' for k, v in limits)
                   + "</dl>")
    g = p.get("approval")  # the verdict the gate recorded (approval.json); else what Airflow says of the task
    if not g:
        out.append(f'<p class="approval">Approval: <b data-approval="{_e(p.get("approval_state") or "")}">'
                   f'{_e(_approval_text(p))}</b>'
                   f'{" by " + _e(p["audit"]["approved_by"]) if p.get("audit") and p["audit"].get("approved_by") else ""}</p>')
    if samples:
        is_open = " open" if p["status"] == "awaiting approval" else ""
        out.append(f'<details{is_open}><summary>Sample keys ({len(p["samples"])})</summary><ul class="keys">{samples}</ul></details>')
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
            f'<span class="deleted-count" data-value="{_e(a["deleted_count"])}">{_count(a["deleted_count"])}</span> '
            f'deleted ({human_bytes(a["deleted_bytes"])}), {_count(a["skipped_count"])} skipped (protected again or '
            f'changed since the plan), '
            f'<span class="error-count" data-value="{_e(a["error_count"])}">{_count(a["error_count"])}</span> errors'
            f'{", purged rows: " + _count(a["purged_rows"]) if a["purged_rows"] is not None else ""}'
            f'{" (recorded but kept, changed or gone since the plan: " + _count(a["purge_kept_rows"]) + ")" if a.get("purge_kept_rows") else ""}'
            f'{" (the purge stopped part way)" if a.get("purge_stopped") else ""}.</p>'
        )
        if a["error_samples"]:
            out.append('<ul class="keys err">' + "".join(
                f'<li><code>{_e(e.get("key"))}</code> {_e(e.get("code"))} {_e(e.get("message"))}</li>'
                for e in a["error_samples"]) + "</ul>")
    if p.get("error"):
        out.append(f'<p class="err">{_e(p["error"])}</p>')
    out.append("</section>")
    return "".join(out)


_APPROVAL = {"deferred": "waiting for a person", "awaiting_input": "waiting for a person", "success": "given", "skipped": "rejected (nothing deleted)",
             "failed": "refused", "upstream_failed": "not asked (an earlier step failed)",
             "removed": "not asked", None: "unknown (Airflow did not say)"}


def _approval_text(p: dict[str, Any]) -> str:
    state = p.get("approval_state")
    audit = p.get("audit") or {}
    mode = audit.get("approval") if audit.get("approval") in ("auto", "dry_run") else p.get("approval_mode")
    if mode in ("auto", "dry_run"):  # the approve task skips itself: nobody was asked
        return "not needed (approval: auto)" if mode == "auto" else "not needed (dry run)"
    if state == "success" and not (p.get("approval") or audit.get("approved_by")):
        # the gate never takes a task state for an answer: neither does the page
        return "marked successful, no approval recorded (nothing is deleted on it)"
    return _APPROVAL.get(state, str(state).replace("_", " "))


def render_plans(view: dict[str, Any], base: str = "") -> str:
    body = [f'<h2>Awaiting approval (<span id="pending-count">{len(view["pending"])}</span>)</h2>']
    if view.get("hidden_dags"):
        body.append(not_allowed(view["hidden_dags"]))
    body.append(flags_block(view.get("flags", [])))  # index files or entries that could not be read
    body += [plan_block(p) for p in view["pending"]] or ['<p class="muted">Nothing is waiting for approval.</p>']
    recent = [p for p in view["recent"] if p["status"] != "awaiting approval"]
    body.append(f'<h2>Recent plans (<span id="plan-count">{len(recent)}</span>)</h2>')
    body += [plan_block(p) for p in recent] or ['<p class="muted">No finished plans yet.</p>']
    return page("Plans", "plans", "".join(body), base)


def render_uploads(view: dict[str, Any], base: str = "") -> str:
    return page("Uploads", "uploads", uploads_body(view), base)


def uploads_body(view: dict[str, Any], *, title: str = "Uploads") -> str:
    """The Uploads page's content (also the upload run page, for one run)."""
    if not view.get("allowed", True):
        return f"<h2>{_e(title)}</h2>" + not_allowed(["s3_upload"])
    t = view["totals"]
    body = [
        f'<h2>{_e(title)}</h2><p class="muted"><span id="run-count">{view["run_count"]}</span> upload runs with a summary.</p>',
        flags_block(view.get("flags", [])),
        _cards([("uploaded", "Files uploaded", t["uploaded"]), ("bytes", "Bytes uploaded", t["bytes"]),
                ("malformed", "Malformed", t["malformed"]), ("conflicts", "Conflicts", t["conflicts"]),
                ("failed", "Failed", t["failed"]), ("future_dated", "Dated in the future", t["future_dated"]),
                ("abort_failed", "Aborts failed", t["abort_failed"])]),
        '<table class="sortable" id="uploads"><thead><tr><th>Run</th><th>Finished</th><th>Bucket</th>'
        '<th class="num">Uploaded</th><th class="num">Bytes</th><th class="num">Not ready</th>'
        '<th class="num">Malformed</th><th class="num">Conflicts</th><th class="num">Failed</th>'
        '<th class="num">Future-dated</th><th class="num">Aborts failed</th><th>Details</th>'
        "</tr></thead><tbody>",
    ]
    for r in view["runs"]:
        if r["error"]:
            body.append(f'<tr data-run="{_e(r["run_id"])}"><td>{_e(r["run_id"])}</td><td colspan="11" class="err">'
                        f'{_e(r["error"])}</td></tr>')
            continue
        details = []
        for label, items in (("malformed", r["malformed_paths"]), ("conflicts", r["conflict_keys"]),
                             ("failed", r["failed_paths"])):
            if items:
                details.append(f'<details><summary>{label}</summary><ul class="keys">'
                               + "".join(f"<li><code>{_e(i)}</code></li>" for i in items) + "</ul></details>")
        details += _waiting_details(r)
        body.append(
            f'<tr data-run="{_e(r["run_id"])}"><td><code>{_e(r["run_id"])}</code></td><td>{_e(r["finished_at"])}</td>'
            f'<td>{_e(r["bucket"])}/{_e(r["key_prefix"] or "")}</td>{_num(r["uploaded"])}{_bytes_cell(r["bytes"])}'
            f'{_num(r["skipped_not_ready"])}{_num(r["malformed"])}{_num(r["conflicts"])}{_num(r["failed"])}'
            f'{_num(r["future_dated"])}{_num(r["abort_failed"])}<td>{"".join(details)}</td></tr>'
        )
    body.append("</tbody></table>")
    return "".join(body)


#: what a future-dated file means and what to do (the upload's scan names them: FUTURE_SLACK in include.upload.layout)
FUTURE_DATED_ADVICE = ("These files' modification time or folder date (the data minute) is ahead of the clock (the "
                       "writer's clock is ahead, or touch -d). They wait, unnoticed, until that time comes: fix the "
                       "writer's clock or the files' dates.")


def _waiting_details(r: dict[str, Any]) -> list[str]:
    """The details of what the run left waiting without failing: files dated in the future, and incomplete
    multipart uploads it could not list or abort (they stay open and billed), each with what to do."""
    out = []
    if r["future_dated"]:
        out.append('<details class="future-dated"><summary>future-dated</summary>'
                   f'<p class="muted">{_e(FUTURE_DATED_ADVICE)}</p><ul class="keys">'
                   + "".join(f"<li><code>{_e(p)}</code></li>" for p in r["future_dated_paths"]) + "</ul></details>")
    if r["abort_failed"]:
        rows = "".join(f'<li><code>{_e(a["key"] or "(listing the uploads)")}</code> {_e(a["initiated"])}: '
                       f'<span class="err">{_e(a["error"])}</span></li>' for a in r["abort_failures"])
        out.append('<details class="abort-failed"><summary>aborts failed</summary>'
                   f'<p class="muted">Incomplete multipart uploads could not be listed or aborted: {_e(ABORT_ADVICE)}.'
                   f'</p><ul class="keys">{rows}</ul></details>')
    return out


def render_run(view: dict[str, Any], base: str = "") -> str:
    """A DAG run's "S3 Ops" tab (inside Airflow's run page)."""
    kind, dag_id, run_id = view["kind"], view["dag_id"], view["run_id"]
    full = {"storage": "storage", "uploads": "uploads", "plan": "plans"}.get(kind or "", "storage")
    nav = (f'<span class="muted">run <code id="run-id">{_e(run_id)}</code> of <code>{_e(dag_id)}</code></span>'
           f'<a href="{base}/{full}" data-page="{full}">All {dict(PAGES)[full].lower()} →</a>')
    if kind == "other":
        body = (f'<p class="muted" id="not-s3ops">S3 Ops shows the plans, storage reports and upload results of '
                f'its DAGs; <code>{_e(dag_id)}</code> is not one of them.</p>')
    elif not view["allowed"]:
        body = not_allowed([dag_id])
    elif kind == "bad_run_id":
        body = '<p class="err">This run id cannot name an artifact folder.</p>'
    elif kind == "storage":
        body = storage_body(view["storage"], history=False)
    elif kind == "uploads":
        body = uploads_body(view["uploads"], title="Upload run") + _batches_table(view["uploads"].get("batches", []))
    elif view.get("plan") is None:
        body = ('<p class="muted" id="no-plan">This run has no plan yet: the <code>plan</code> task writes it '
                "(or it failed before; see its log).</p>")
    else:
        body = plan_block(view["plan"], heading=False)
    return page(f"{dag_id} · {run_id}", "", body, base, nav=nav)


def _batches_table(batches: list[dict[str, Any]]) -> str:
    if not batches:
        return '<p class="muted" id="no-batches">No batch has finished yet.</p>'
    rows = []
    for b in batches:
        if b["error"]:
            rows.append(f'<tr data-batch="{_e(b["batch"])}"><td>{_e(b["batch"])}</td>'
                        f'<td colspan="7" class="err">{_e(b["error"])}</td></tr>')
            continue
        failed = ("<details><summary>failed</summary><ul class=\"keys\">"
                  + "".join(f"<li><code>{_e(x)}</code></li>" for x in b["failed_paths"]) + "</ul></details>"
                  if b["failed_paths"] else "")
        rows.append(f'<tr data-batch="{_e(b["batch"])}"><td><code>{_e(b["batch"])}</code></td>{_num(b["uploaded"])}'
                    f'{_bytes_cell(b["bytes"])}{_num(b["already_present"])}{_num(b["not_ready"])}'
                    f'{_num(b["conflicts"])}{_num(b["failed"])}<td>{failed}</td></tr>')
    return ('<h3>Batches</h3><table class="sortable" id="batches"><thead><tr><th>Batch</th><th class="num">Uploaded'
            '</th><th class="num">Bytes</th><th class="num">Already there</th><th class="num">Not ready</th>'
            '<th class="num">Conflicts</th><th class="num">Failed</th><th>Details</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table>")
