"""The UI plugin's view models and HTML, from artifact folders built here (no Airflow server)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from include.ui import html as ui_html
from include.ui import views as ui_views


def _write(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)


def _bucket(name: str, classes: dict[str, tuple[int, int]], **extra: object) -> dict[str, object]:
    return {
        "name": name, "region": "us-east-1", "creation_date": "2026-01-01T00:00:00+00:00",
        "object_count": sum(c for c, _ in classes.values()), "total_bytes": sum(b for _, b in classes.values()),
        "total_size": "x", "last_modified": None,
        "storage_classes": {k: {"object_count": c, "bytes": b, "estimated_monthly_cost_usd": b / 1e6}
                            for k, (c, b) in classes.items()},
        "estimated_monthly_cost_usd": 0.5, "noncurrent_versions": None, "delete_markers": None,
        "incomplete_multipart_uploads": {"count": 0, "bytes": 0}, "error": None, **extra,
    }


@pytest.fixture
def root(tmp_path: Path) -> Path:
    rep = tmp_path / "s3_storage_report"
    _write(rep / "r1" / "report.json", {"generated_at": "2026-11-20T00:00:00+00:00", "source": "listing",
                                        "buckets": [_bucket("a", {"STANDARD": (3, 300)})], "totals": {}})
    _write(rep / "r2" / "report.json", {
        "generated_at": "2026-11-21T00:00:00+00:00", "source": "listing", "size_unit": "auto",
        "buckets": [
            _bucket("a", {"STANDARD": (5, 500), "GLACIER": (2, 2000)},
                    noncurrent_versions={"object_count": 4, "bytes": 40}, delete_markers=3),
            _bucket("b<script>", {"STANDARD": (1, 7)},
                    incomplete_multipart_uploads={"count": 1, "bytes": 1048576}),
            _bucket("broken", {}, error="AccessDenied: no"),
        ],
        "totals": {"bucket_count": 3, "object_count": 8, "total_bytes": 2507, "estimated_monthly_cost_usd": 1.5},
    })
    _write(rep / "r0-bad" / "report.json", "{not json")
    _write(rep / "no-report" / "report.csv", "a,b")  # a run still writing: ignored

    ret = tmp_path / "s3_retention"
    plan = {"plan_uri": "x", "chunks": ["00000.jsonl"], "delete_count": 20, "delete_bytes": 2000,
            "by_reason": {"trial_expired": {"count": 17, "bytes": 1700}, "orphan": {"count": 3, "bytes": 300}},
            "scanned_count": 48, "scanned_bytes": 4800, "listing_complete": True, "samples": ["k1", "k2"],
            "bucket": "jobs"}
    _write(ret / "waiting" / "plan.json", plan)
    _write(ret / "done" / "plan.json", plan)
    _write(ret / "done" / "audit.json", {"deleted_count": 19, "deleted_bytes": 1900, "skipped_count": 1,
                                         "error_count": 0, "error_samples": [], "outcome": "deleted",
                                         "deleted_by_reason": {"orphan": {"count": 3, "bytes": 300}},
                                         "purge_job_rows": {"planned": 23, "deleted": 22, "kept_count": 1}})
    _write(tmp_path / "s3_deploy_cleanup" / "rejected" / "plan.json", {**plan, "delete_count": 2, "by_reason": {}})

    up = tmp_path / "s3_upload"
    _write(up / "u1" / "summary.json", {"uploaded": 4, "skipped_not_ready": 1, "malformed": 2, "conflicts": 1,
                                        "failed": 0, "bytes": 400, "malformed_paths": ["p/x.txt", "p/13/y.dat"],
                                        "conflict_keys": ["c/k.dat"], "failed_paths": [], "bucket": "up",
                                        "key_prefix": ""})
    _write(up / "u1" / "manifest.jsonl", '{"key":"a","uploaded_at":"2026-11-21T10:00:00+00:00"}\n'
                                         '{"key":"b","uploaded_at":"2026-11-21T10:00:05+00:00"}\n')
    _write(up / "u2" / "summary.json", {"uploaded": 6, "bytes": 600, "malformed": 0, "conflicts": 0, "failed": 1})
    _write(up / "u2" / "manifest.jsonl", '{"key":"c","uploaded_at":"2026-11-21T11:00:00+00:00"}\n')
    return tmp_path


def test_storage_view_latest_report_and_per_class_totals(root: Path) -> None:
    view = ui_views.storage_view(root)
    latest = view["latest"]
    assert latest["run_id"] == "r2"
    assert [b["name"] for b in latest["buckets"]] == ["a", "b<script>", "broken"]
    assert {c["storage_class"]: (c["object_count"], c["bytes"]) for c in latest["by_class"]} == {
        "STANDARD": (6, 507), "GLACIER": (2, 2000)}
    assert latest["by_class"][0]["storage_class"] == "GLACIER"  # biggest first
    assert latest["totals"]["total_bytes"] == 2507 and latest["totals"]["bucket_count"] == 3
    hidden = {h["name"]: h for h in latest["hidden_costs"]}
    assert set(hidden) == {"a", "b<script>", "broken"}  # "broken" could not be read: its hidden costs are unknown
    assert (hidden["a"]["noncurrent_count"], hidden["a"]["noncurrent_bytes"], hidden["a"]["delete_markers"]) == (4, 40, 3)
    assert hidden["b<script>"]["multipart_bytes"] == 1048576
    assert view["broken"][0]["run_id"] == "r0-bad" and view["report_count"] == 3


def test_storage_history_has_one_point_per_report_and_gaps_for_missing_buckets(root: Path) -> None:
    hist = ui_views.storage_view(root)["history"]
    assert hist["run_ids"] == ["r1", "r2"]
    assert hist["buckets"]["a"] == {"object_count": [3, 7], "total_bytes": [300, 2500]}
    assert hist["buckets"]["b<script>"]["total_bytes"] == [None, 7]
    assert hist["buckets"]["broken"]["total_bytes"] == [None, None]  # an unreadable bucket is not a zero


# Hidden costs: measured 0, measured, or not measured (and why) -----------------------------------------
def _storage_page(tmp_path: Path, buckets: list[dict[str, object]], source: str = "listing") -> tuple[dict, str]:
    """The latest report's view and the Storage page's hidden-cost section, for a report of ``buckets``."""
    _write(tmp_path / "s3_storage_report" / "r" / "report.json",
           {"generated_at": "2026-11-21T00:00:00+00:00", "source": source, "buckets": buckets, "totals": {}})
    view = ui_views.storage_view(tmp_path)
    html = ui_html.render_storage(view)
    _parse(html)
    return view["latest"], html.split("<h3>Hidden costs</h3>")[1].split("<h2>History")[0]


def _cells(section: str, bucket: str) -> list[str]:
    """The text of a bucket's hidden-cost cells."""
    row = section.split(f'<tr data-bucket="{bucket}">')[1].split("</tr>")[0]
    return re.findall(r"<td[^>]*>([^<]*)</td>", row)[1:]


_VERSIONED = {"noncurrent_versions": {"object_count": 0, "bytes": 0}, "delete_markers": 0}


def test_hidden_costs_not_checked_without_include_versions_are_not_none_found(tmp_path: Path) -> None:
    """Scheduled runs list without include_versions: the page says once that versions and delete markers
    were not checked (not a row of "not checked" per bucket), and that the uploads, measured, are 0."""
    latest, section = _storage_page(tmp_path, [_bucket("plain", {"STANDARD": (1, 10)}),
                                               _bucket("other", {"STANDARD": (2, 10)})])
    assert "None found" not in section and "<table" not in section
    assert latest["hidden_not_measured"] == {"noncurrent_versions": ui_views.NOT_CHECKED_VERSIONS,
                                             "delete_markers": ui_views.NOT_CHECKED_VERSIONS}
    assert latest["hidden_costs"] == [] and latest["no_hidden_costs"] == ["plain", "other"]
    assert section.count("not checked: include_versions is off") == 2
    assert '<p class="muted" id="hidden">Incomplete multipart uploads: 0 in every bucket.</p>' in section
    # one bucket with uploads: its row, the other kinds' cells saying why they were not measured
    latest, section = _storage_page(tmp_path, [_bucket("plain", {"STANDARD": (1, 10)}),
                                               _bucket("busy", {"STANDARD": (1, 10)},
                                                       incomplete_multipart_uploads={"count": 2, "bytes": 5})])
    assert [h["name"] for h in latest["hidden_costs"]] == ["busy"] and latest["no_hidden_costs"] == ["plain"]
    assert _cells(section, "busy") == ["not checked: include_versions is off"] * 2 + ["2 (5 B)"]


def test_hidden_costs_multipart_listing_error_is_shown_escaped(tmp_path: Path) -> None:
    error = "AccessDenied: <script>alert(1)</script> (ListMultipartUploads/ListParts)"
    latest, section = _storage_page(tmp_path, [_bucket("x", {"STANDARD": (1, 10)}, **_VERSIONED,
                                                       incomplete_multipart_uploads=None,
                                                       incomplete_multipart_uploads_error=error),
                                               _bucket("fine", {"STANDARD": (1, 10)}, **_VERSIONED)])
    assert "None found." not in section and "<script>alert" not in section
    assert latest["hidden_not_measured"] == {}  # the other bucket's uploads were listed: a reason of x's own
    assert _cells(section, "x") == ["0 (0 B)", "0",
                                    "unknown: AccessDenied: &lt;script&gt;alert(1)&lt;/script&gt; "
                                    "(ListMultipartUploads/ListParts)"]
    assert '<p class="muted" id="hidden-none">None found in: fine.</p>' in section


def test_hidden_costs_from_cloudwatch_are_not_measured(tmp_path: Path) -> None:
    _, section = _storage_page(tmp_path, [_bucket("cw", {"STANDARD": (1, 10)}, incomplete_multipart_uploads=None,
                                                  metric_date="2026-11-20")], source="cloudwatch")
    assert "None found" not in section and "<table" not in section
    assert section.count("not measured from CloudWatch") == 3
    assert '<p class="muted" id="hidden">Nothing of them was measured.</p>' in section


def test_hidden_costs_of_an_unreadable_bucket_are_unknown(tmp_path: Path) -> None:
    _, section = _storage_page(tmp_path, [_bucket("gone", {}, error="NoSuchBucket: gone",
                                                  incomplete_multipart_uploads=None)])
    assert "None found" not in section
    assert _cells(section, "gone") == ["unknown: the bucket could not be read"] * 3


def test_hidden_costs_measured_zero_everywhere_are_none_found(tmp_path: Path) -> None:
    latest, section = _storage_page(tmp_path, [_bucket("a", {"STANDARD": (1, 10)}, **_VERSIONED),
                                               _bucket("b", {"STANDARD": (2, 20)}, **_VERSIONED)])
    assert latest["hidden_costs"] == [] and latest["no_hidden_costs"] == ["a", "b"]
    assert '<p class="muted" id="hidden">None found.</p>' in section and "<table" not in section


def test_hidden_costs_measured_are_shown_and_zero_buckets_named(tmp_path: Path) -> None:
    latest, section = _storage_page(tmp_path, [
        _bucket("v<1>", {"STANDARD": (1, 10)}, noncurrent_versions={"object_count": 4, "bytes": 3 * 1024**4},
                delete_markers=2, incomplete_multipart_uploads={"count": 1, "bytes": 1048576}),
        _bucket("zero", {"STANDARD": (1, 10)}, **_VERSIONED)])
    assert [h["name"] for h in latest["hidden_costs"]] == ["v<1>"] and latest["hidden_costs"][0]["not_measured"] == {}
    assert _cells(section, "v&lt;1&gt;") == ["4 (3.00 TiB)", "2", "1 (1.00 MiB)"]
    assert f'data-value="{3 * 1024**4}" data-count="4"' in section
    assert '<p class="muted" id="hidden-none">None found in: zero.</p>' in section
    assert '<p class="muted" id="hidden">None found.</p>' not in section


def test_plans_view_status_from_audit_and_approval_state(root: Path) -> None:
    states = {("s3_retention", "waiting"): "deferred", ("s3_deploy_cleanup", "rejected"): "skipped",
              ("s3_retention", "done"): "success"}
    view = ui_views.plans_view(root, states)
    by_run = {p["run_id"]: p for p in view["recent"]}
    assert by_run["waiting"]["status"] == "awaiting approval"
    assert by_run["rejected"]["status"] == "rejected"
    assert by_run["done"]["status"] == "finished" and by_run["done"]["audit"]["deleted_count"] == 19
    assert by_run["done"]["audit"]["purged_rows"] == 22  # the purge task's result, as audit.json records it
    assert by_run["done"]["audit"]["purge_kept_rows"] == 1
    assert "purged rows: 22 (recorded but kept, changed or gone since the plan: 1)" in ui_html.render_plans(view)
    assert "stopped part way" not in ui_html.render_plans(view)
    assert [p["run_id"] for p in view["pending"]] == ["waiting"]
    assert by_run["waiting"]["by_reason"] == [{"reason": "orphan", "count": 3, "bytes": 300},
                                              {"reason": "trial_expired", "count": 17, "bytes": 1700}]
    # without Airflow's answer, a plan with deletions and no audit is shown as waiting
    assert {p["run_id"] for p in ui_views.plans_view(root)["pending"]} == {"waiting", "rejected"}


def test_uploads_view_newest_first_with_totals(root: Path) -> None:
    view = ui_views.uploads_view(root)
    assert [r["run_id"] for r in view["runs"]] == ["u2", "u1"]
    assert view["runs"][1]["finished_at"] == "2026-11-21T10:00:05+00:00"
    assert view["totals"] == {"uploaded": 10, "bytes": 1000, "malformed": 2, "conflicts": 1, "failed": 1,
                              "future_dated": 0, "abort_failed": 0}
    assert view["runs"][1]["malformed_paths"] == ["p/x.txt", "p/13/y.dat"]


def test_empty_root_gives_empty_pages(tmp_path: Path) -> None:
    assert ui_views.storage_view(tmp_path)["latest"] is None
    assert ui_views.plans_view(tmp_path)["plan_count"] == 0
    assert ui_views.uploads_view(tmp_path)["run_count"] == 0
    for html in (ui_html.render_storage(ui_views.storage_view(tmp_path)),
                 ui_html.render_plans(ui_views.plans_view(tmp_path)),
                 ui_html.render_uploads(ui_views.uploads_view(tmp_path))):
        _parse(html)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _parse(html: str) -> _Collector:
    parser = _Collector()
    parser.feed(html)
    return parser


def test_pages_are_self_contained_escaped_and_carry_exact_numbers(root: Path) -> None:
    storage = ui_html.render_storage(ui_views.storage_view(root), base="/s3ops")
    plans = ui_html.render_plans(ui_views.plans_view(root, {("s3_retention", "waiting"): "awaiting_input"}))
    uploads = ui_html.render_uploads(ui_views.uploads_view(root))
    for html in (storage, plans, uploads):
        tags = _parse(html).tags
        # nothing fetched from elsewhere: no external src/href, no stylesheet links
        assert not [a for t, a in tags if t in ("script", "img", "link", "iframe") and (a.get("src") or a.get("href"))]
        assert not re.search(r"https?://", html)
        assert "<script>alert" not in html and "b<script>" not in html
    assert "b&lt;script&gt;" in storage
    bars = {a["data-label"]: int(a["data-value"]) for t, a in _parse(storage).tags if t == "g" and "data-label" in a}
    assert bars["a"] == 2500 and bars["GLACIER"] == 2000 and bars["STANDARD"] == 507
    assert 'data-card="total_bytes" data-value="2507"' in storage
    assert storage.count('class="series"') == 4  # bytes and objects of a and b; "broken" has no data
    assert '/dags/s3_retention/runs/waiting/required_actions' in plans
    assert 'class="deleted-count" data-value="19"' in plans
    assert 'data-card="uploaded" data-value="10"' in uploads and "c/k.dat" in uploads


def test_human_bytes() -> None:
    assert [ui_html.human_bytes(n) for n in (0, 1023, 1024, 1536, 5 * 1024**3)] == [
        "0 B", "1023 B", "1.00 KiB", "1.50 KiB", "5.00 GiB"]


# Odd values in artifacts: flagged, never a 500 ------------------------------------------------------
def _odd_report(tmp_path: Path) -> Path:
    rep = tmp_path / "s3_storage_report"
    _write(rep / "r1" / "report.json", {"generated_at": "2026-11-20T00:00:00+00:00",
                                        "buckets": [_bucket("a", {"STANDARD": (3, 300)})], "totals": {}})
    # JSON as a careless writer (or an attacker with write access to the artifact store) might leave it
    _write(rep / "r2" / "report.json", '{"generated_at": "2026-11-21T00:00:00+00:00", "source": "listing", '
           '"buckets": [' + json.dumps(_bucket("good", {"STANDARD": (5, 500)})) + ', '
           '{"name": "odd", "object_count": "12abc", "total_bytes": 1e400, "estimated_monthly_cost_usd": "free", '
           '"storage_classes": [1, 2], "delete_markers": -3, "noncurrent_versions": {"object_count": NaN}, '
           '"incomplete_multipart_uploads": "none"}, "not a bucket", '
           '{"name": 7, "object_count": true, "total_bytes": 2.5, "storage_classes": {"STANDARD": 5}}], '
           '"totals": {"bucket_count": 3, "object_count": "many", "total_bytes": 505}}')
    _write(rep / "r3" / "report.json", "[1, 2, 3]")  # valid JSON, not a report
    return tmp_path


def test_a_report_with_non_integer_fields_renders_the_rest_and_flags_each_value(tmp_path: Path) -> None:
    view = ui_views.storage_view(_odd_report(tmp_path))
    latest = view["latest"]
    assert latest["run_id"] == "r2"
    rows = {b["name"]: b for b in latest["buckets"]}
    assert set(rows) == {"good", "odd", "7"}
    assert (rows["good"]["object_count"], rows["good"]["total_bytes"]) == (5, 500)
    assert rows["odd"]["object_count"] is None and rows["odd"]["total_bytes"] is None  # not a silent 0
    assert rows["odd"]["estimated_monthly_cost_usd"] is None and rows["7"]["object_count"] is None
    assert latest["totals"]["object_count"] is None and latest["totals"]["total_bytes"] == 505
    flags = "\n".join(view["flags"])
    for where in ("buckets[1].object_count is '12abc'", "buckets[1].total_bytes is inf", "buckets[1].storage_classes",
                  "buckets[1].delete_markers is -3", "buckets[1].noncurrent_versions.object_count is nan",
                  "buckets[1].incomplete_multipart_uploads", "buckets[2] is 'not a bucket'",
                  "buckets[3].object_count is True", "buckets[3].total_bytes is 2.5",
                  "buckets[3].storage_classes.STANDARD is 5", "totals.object_count is 'many'"):
        assert f"s3_storage_report/r2/report.json: {where}" in flags, where
    assert view["broken"] == [{"run_id": "r3", "error": "a report is a JSON object, this is list"}]
    html = ui_html.render_storage(view)
    _parse(html)
    assert 'id="flags"' in html and "&#x27;12abc&#x27;" in html
    assert f'<span class="flag-count">{len(view["flags"])}</span>' in html
    assert 'data-bucket="odd"><td>odd</td>' in html and 'data-value="">–</td>' in html
    assert 'data-label="good" data-value="500"' in html and 'data-label="odd"' not in html  # no bar for "unknown"


def test_plans_and_uploads_with_odd_values_flag_them(tmp_path: Path) -> None:
    _write(tmp_path / "s3_retention" / "odd" / "plan.json", {
        "delete_count": "20", "delete_bytes": -1, "by_reason": {"orphan": {"count": 1.5, "bytes": 3}, "x": 4},
        "samples": "k1", "chunks": {}, "scanned_count": 10, "listing_complete": True})
    _write(tmp_path / "s3_retention" / "odd" / "audit.json", {"deleted_count": [], "error_samples": ["boom"],
                                                                     "purge_job_rows": {"deleted": "<b>9</b>"}})
    _write(tmp_path / "s3_retention" / "list" / "plan.json", [])
    _write(tmp_path / "s3_upload" / "u1" / "summary.json", {"uploaded": "4", "bytes": 10, "malformed_paths": 3})
    _write(tmp_path / "s3_upload" / "u1" / "manifest.jsonl", '"not a row"\n{"uploaded_at": "2026-11-21T10:00:00Z"}\n')
    plans = ui_views.plans_view(tmp_path)
    by_run = {p["run_id"]: p for p in plans["recent"]}
    odd = by_run["odd"]
    assert odd["delete_count"] is None and odd["delete_bytes"] is None and odd["samples"] == []
    assert odd["audit"]["deleted_count"] is None and odd["audit"]["error_samples"] == [{"message": "boom"}]
    assert any("plan.json: delete_count is '20'" in f for f in odd["flags"])
    assert any("audit.json: deleted_count is []" in f for f in odd["flags"])
    assert odd["audit"]["purged_rows"] is None and any("purge_job_rows.deleted is '<b>9</b>'" in f for f in odd["flags"])
    assert by_run["list"]["status"] == "unreadable"
    html = ui_html.render_plans(plans)
    _parse(html)
    assert 'class="delete-count" data-value="">–</span>' in html and "by_reason.x is 4" in html
    uploads = ui_views.uploads_view(tmp_path)
    assert uploads["runs"][0]["uploaded"] is None and uploads["totals"]["bytes"] == 10
    assert uploads["runs"][0]["finished_at"] == "2026-11-21T10:00:00Z"
    assert "summary.json: uploaded is &#x27;4&#x27;" in ui_html.render_uploads(uploads)


# Only what the user may read ------------------------------------------------------------------------
def test_views_show_only_readable_dags(root: Path) -> None:
    none: set[str] = set()
    storage = ui_views.storage_view(root, none)
    assert storage["latest"] is None and storage["report_count"] == 0 and storage["allowed"] is False
    assert 'id="not-allowed"' in ui_html.render_storage(storage) and "b&lt;script" not in ui_html.render_storage(storage)
    plans = ui_views.plans_view(root, readable={"s3_deploy_cleanup"})
    assert {p["dag_id"] for p in plans["recent"]} == {"s3_deploy_cleanup"}
    assert plans["hidden_dags"] == ["s3_retention"]
    html = ui_html.render_plans(plans)
    assert "k1" in html  # the deploy-cleanup plan's samples
    assert 'data-dag="s3_retention"' not in html and 'id="not-allowed"' in html
    uploads = ui_views.uploads_view(root, readable={"s3_storage_report"})
    assert uploads["runs"] == [] and uploads["totals"]["uploaded"] == 0
    assert "c/k.dat" not in ui_html.render_uploads(uploads)


# Run pages ------------------------------------------------------------------------------------------
def test_run_view_of_a_deletion_run_shows_its_plan_limits_and_approval(root: Path) -> None:
    view = ui_views.run_view(root, "s3_retention", "waiting", approval_state="deferred",
                             conf={"max_delete_count": 100, "max_delete_fraction": 0.5, "bucket": "jobs"})
    assert view["kind"] == "plan" and view["plan"]["delete_count"] == 20
    assert view["plan"]["limits"] == [("max_delete_count", "100"), ("max_delete_fraction", "0.5")]
    html = ui_html.render_run(view, base="/s3ops")
    _parse(html)
    for part in ('data-limit="max_delete_count"', 'data-approval="deferred"', "waiting for a person",
                 "<code>k1</code>", 'data-reason="trial_expired"', '/dags/s3_retention/runs/waiting/required_actions',
                 'href="/s3ops/plans"'):
        assert part in html, part
    done = ui_html.render_run(ui_views.run_view(root, "s3_retention", "done", approval_state="success"))
    assert 'class="deleted-count" data-value="19"' in done and "approve-link" not in done
    no_plan = ui_views.run_view(root, "s3_retention", "not-yet")
    assert no_plan["plan"] is None and 'id="no-plan"' in ui_html.render_run(no_plan)


def test_run_view_of_storage_and_upload_runs(root: Path) -> None:
    storage = ui_views.run_view(root, "s3_storage_report", "r1")
    assert storage["storage"]["latest"]["run_id"] == "r1"  # that run's report, not the latest
    html = ui_html.render_run(storage)
    assert 'id="report-run">r1<' in html and "History" not in html
    up = tmp = root / "s3_upload" / "u1" / "results"
    _write(tmp / "00000.json", {"uploaded": [{"key": "a"}, {"key": "b"}], "bytes": 200, "already_present": 0,
                                "conflicts": [], "failed": [{"path": "/x/y.dat", "error": "boom"}], "not_ready": []})
    _write(up / "00001.json", "{broken")
    view = ui_views.run_view(root, "s3_upload", "u1")
    assert view["uploads"]["run_count"] == 1 and [b["batch"] for b in view["uploads"]["batches"]] == ["00000", "00001"]
    html = ui_html.render_run(view)
    assert 'data-batch="00000"' in html and "/x/y.dat" in html and 'data-batch="00001"' in html
    assert 'data-run="u2"' not in html  # only this run


def test_run_view_refuses_other_dags_unreadable_dags_and_path_tricks(root: Path) -> None:
    other = ui_views.run_view(root, "example_dag", "r", readable={"s3_upload"})
    assert other["kind"] == "other" and other["allowed"] is True and 'id="not-s3ops"' in ui_html.render_run(other)
    hidden = ui_views.run_view(root, "s3_retention", "waiting", readable={"s3_upload"})
    assert hidden["allowed"] is False and "plan" not in hidden
    assert "k1" not in ui_html.render_run(hidden) and 'id="not-allowed"' in ui_html.render_run(hidden)
    for bad in ("..", ".", "a/b", "a\\b", "x\x00y", ""):
        assert ui_views.run_view(root, "s3_retention", bad)["kind"] == "bad_run_id", bad


def test_pages_carry_light_and_dark_colours_and_follow_airflow_theme() -> None:
    html = ui_html.render_storage({"latest": None, "broken": [], "allowed": True})
    assert "@media (prefers-color-scheme: dark)" in html and ":root[data-theme=dark]" in html
    assert "window.parent.document.documentElement" in html  # copies Airflow's dark/light class
    assert "#fff;" not in html.split("<style>")[1].split("body{")[1]  # body colours come from variables


def test_run_view_shows_the_gate_settings_the_run_resolved(root: Path) -> None:
    _write(root / "s3_retention" / "waiting" / "settings.json", {
        "values": {"bucket": "jobs", "max_delete_count": 100, "approval": "required", "approvers": ["ana"],
                   "max_delete_fraction": 0.25},
        "sources": {"max_delete_count": "param", "approval": "default", "approvers": "variable s3ops_retention"}})
    view = ui_views.run_view(root, "s3_retention", "waiting", conf={"max_delete_count": 5})
    assert view["plan"]["limits"] == [("max_delete_count", "100 (param)"), ("max_delete_fraction", "0.25"),
                                      ("approval", "required (default)"),
                                      ("approvers", '["ana"] (variable s3ops_retention)')]
    html = ui_html.render_run(view)
    assert "as the run recorded them" in html and "100 (param)" in html
    _write(root / "s3_retention" / "waiting" / "settings.json", "[not, json")
    assert ui_views.run_view(root, "s3_retention", "waiting", conf={"max_delete_count": 5})["plan"]["limits"] == [
        ("max_delete_count", "5")]  # unreadable settings: the conf, labelled as such


def test_plans_view_shows_each_approval_lifecycle_state_distinctly(tmp_path: Path) -> None:
    """pending, approved, rejected, superseded, expired and refused each get their own status and badge,
    from what the gate recorded (approval_request.json, approval.json, superseded.json, audit.json)."""
    base = tmp_path / "s3_retention"
    plan = {"bucket": "b", "delete_count": 2, "delete_bytes": 20, "scanned_count": 9, "chunks": ["00000"]}
    request = {"timeout_at": "2026-12-01T06:00:00+00:00", "approvers": ["alice"]}
    alice = {"id": "alice", "name": "alice"}
    runs = {
        "pending": ({}, "deferred"),  # approve waits deferred on its trigger
        "approved": ({"approval.json": {"verdict": "approved", "responded_by": alice, "reason": "approved by alice",
                                        "responded_at": "2026-11-30T10:00:00+00:00", "plan_digest": "sha256:ab"}},
                     "success"),
        "rejected": ({"approval.json": {"verdict": "rejected", "responded_by": alice, "reason": "rejected by alice"},
                      "audit.json": {"outcome": "rejected"}}, "success"),
        "superseded": ({"superseded.json": {"superseded_by": "pending"}}, "awaiting_input"),
        "expired": ({"approval.json": {"verdict": "expired", "responded_by": None, "reason": "timeout"},
                     "audit.json": {"outcome": "expired"}}, "success"),
        "refused": ({"approval.json": {"verdict": "refused", "responded_by": {"id": "bob", "name": "bob"},
                                       "reason": "self-approval refused"}}, "failed"),
        "failed": ({"approval.json": {"verdict": "approved", "responded_by": alice, "reason": "approved by alice"},
                    "audit.json": {"outcome": "failed", "failed_tasks": ["delete_1"], "deleted_count": 1}}, "success"),
        "guard": ({"audit.json": {"outcome": "guard_refused", "failed_tasks": ["guard"]}}, "upstream_failed"),
    }
    states = {}
    for run, (files, state) in runs.items():
        _write(base / run / "plan.json", plan)
        _write(base / run / "approval_request.json", request)
        for name, obj in files.items():
            _write(base / run / name, obj)
        states[("s3_retention", run)] = state
    view = ui_views.plans_view(tmp_path, states)
    status = {p["run_id"]: p["status"] for p in view["recent"]}
    assert status == {"pending": "awaiting approval", "approved": "approved", "rejected": "rejected",
                      "superseded": "superseded", "expired": "expired", "refused": "refused", "failed": "failed",
                      "guard": "refused"}
    assert [p["run_id"] for p in view["pending"]] == ["pending"]  # a superseded request no longer waits
    html = ui_html.render_plans(view)
    _parse(html)
    for run, badge in (("approved", "approved"), ("superseded", "superseded"), ("expired", "expired"),
                       ("failed", "failed")):
        assert f'data-run="{run}" data-status="{badge}"' in html
        assert f'class="badge {badge}"' in html
    assert 'data-verdict="approved">Approval: <b>approved</b> by alice' in html
    assert "Superseded by run <code>pending</code>" in html
    assert "Expires 2026-12-01T06:00:00+00:00" in html and "approvers: alice" in html


# main's report fields through the value checks (merge of h8's display/regions/unknown counts with h6's flags)
def test_unknown_counts_and_odd_values_stay_apart_and_odd_display_fields_are_flagged(tmp_path: Path) -> None:
    rep = tmp_path / "s3_storage_report"
    _write(rep / "r1" / "report.json", {
        "generated_at": "2026-11-21T00:00:00+00:00", "source": "cloudwatch", "size_unit": "no-such-unit",
        "display": {"date_format": "%Q", "show_time": "yes"},
        "buckets": [_bucket("cw", {"GLACIER": (0, 50)}, object_count=None, total_size=None),
                    _bucket("odd", {"STANDARD": (1, 10)}, object_count="12abc", total_size=1.5)],
        "regions": [{"region": "us-east-1", "bucket_count": 2, "error_count": 0, "object_count": None,
                     "total_bytes": "60", "estimated_monthly_cost_usd": 0.1}, "not a region"],
        "totals": {"object_count": None, "total_bytes": 60}})
    view = ui_views.storage_view(tmp_path)
    latest = view["latest"]
    cw, odd = latest["buckets"]
    assert (cw["object_count"], cw["object_count_unknown"]) == (None, True)
    assert (odd["object_count"], odd["object_count_unknown"]) == (None, False)
    assert cw["total_size"] == "50 B" and odd["total_size"] == "10 B"  # from the exact bytes, unknown unit: auto
    assert (latest["date_format"], latest["show_time"]) == ("iso", True)
    assert latest["totals"]["object_count_unknown"] is True
    region = latest["regions"][0]
    assert region["object_count_unknown"] is True and region["total_bytes"] is None
    flags = "\n".join(view["flags"])
    for where in ("display.date_format is '%Q'", "display.show_time is 'yes'", "buckets[1].object_count is '12abc'",
                  "regions[0].total_bytes is '60'", "regions[1] is 'not a region'"):
        assert where in flags, where
    assert "buckets[0].object_count" not in flags  # null is an unknown count, not an odd value
    html = ui_html.render_storage(view)
    _parse(html)
    assert 'data-bucket="cw"><td>cw</td>' in html
    cw_row = html[html.index('data-bucket="cw"'):].split("</tr>")[0]
    odd_row = html[html.index('data-bucket="odd"'):].split("</tr>")[0]
    assert 'data-unknown="1">unknown<' in cw_row and "unknown" not in odd_row and 'data-value="">–</td>' in odd_row
    assert 'data-card="object_count" data-value="unknown"' in html and "2026-11-21T00:00:00Z" in html


def test_odd_approval_files_are_flagged_and_the_plan_still_shows(tmp_path: Path) -> None:
    run = tmp_path / "s3_retention" / "r"
    _write(run / "plan.json", {"delete_count": 2, "delete_bytes": 20, "bucket": "b"})
    _write(run / "approval_request.json", {"timeout_at": 5, "approvers": "alice"})
    _write(run / "approval.json", ["approved"])
    _write(run / "superseded.json", "{broken")
    entry = ui_views.plans_view(tmp_path)["recent"][0]
    assert entry["delete_count"] == 2 and entry["approval"] is None and entry["superseded_by"] is None
    assert entry["approvers"] == [] and entry["expires_at"] == "5"
    flags = "\n".join(entry["flags"])
    assert "s3_retention/r/approval_request.json: approvers is 'alice'" in flags
    assert "s3_retention/r/approval.json: a list, not a JSON object" in flags
    assert "s3_retention/r/superseded.json: unreadable" in flags
    _parse(ui_html.render_plans(ui_views.plans_view(tmp_path)))


def test_run_view_counts_batches_written_as_manifest_rows(tmp_path: Path) -> None:
    run = tmp_path / "s3_upload" / "u1"
    _write(run / "summary.json", {"uploaded": 2, "bytes": 30})
    _write(run / "results" / "00000.json", {"rows": [
        {"path": "/d/a", "status": "uploaded", "size": 10}, {"path": "/d/b", "status": "already_present", "size": 20},
        {"path": "/d/c", "status": "conflict", "size": 5}, {"path": "/d/e", "status": "failed", "size": 1},
        {"path": "/d/f", "status": "uploaded", "size": "big"}, "junk"]})
    view = ui_views.run_view(tmp_path, "s3_upload", "u1")
    (batch,) = view["uploads"]["batches"]
    assert (batch["uploaded"], batch["already_present"], batch["conflicts"], batch["failed"], batch["bytes"]) == \
        (3, 1, 1, 1, 30)
    assert batch["failed_paths"] == ["/d/e"]
    flags = "\n".join(view["uploads"]["flags"])
    assert "rows[4].size is 'big'" in flags and "rows[5] is 'junk'" in flags
    assert "/d/e" in ui_html.render_run(view)


def _deleted_run(root: Path, run: str, *, extra: dict, approval: dict | None = None, plan_id: str = "p1") -> None:
    """A run folder as the gate writes it: plan.json, one chunk audit with a deletion and an error, and
    audit.json by the real ``write_audit``."""
    from include.core import artifacts
    from include.deletion.plan import write_audit

    folder = root / "s3_retention" / run
    artifacts.write_json(folder / "plan.json", {"plan_id": plan_id, "chunks": ["00000"], "delete_count": 2,
                                                "delete_bytes": 20, "bucket": "b"})
    artifacts.write_json(folder / "audit" / "00000.json", {
        "plan_id": plan_id, "complete": True, "requests": 1,
        "deleted": [{"key": "gone.dat", "size": 10, "reason": "orphan"}],
        "errors": [{"key": "stuck.dat", "code": "AccessDenied", "message": "Access Denied"}], "skipped": []})
    if approval is not None:
        artifacts.write_json(folder / "approval.json", approval)
    write_audit(folder, extra=extra)


def test_an_audit_of_an_earlier_plan_or_request_does_not_hide_the_request_that_waits(tmp_path: Path) -> None:
    """A refused run (now audited too) whose approve was cleared and asked again, or which was planned
    again: the page showed the old audit's "refused" and left the waiting request out of the pending list.
    A partial chunk audit (its delete failed part way) counts what it deleted and is listed as missing."""
    from include.core import artifacts
    from include.deletion.plan import write_audit

    _deleted_run(tmp_path, "r", extra={"outcome": "refused", "approval": "refused"})
    folder = tmp_path / "s3_retention" / "r"
    audited_at = json.loads((folder / "audit.json").read_text())["audited_at"]
    entry = ui_views.plans_view(tmp_path, {("s3_retention", "r"): "deferred"})["recent"][0]
    assert entry["status"] == "refused"  # no newer request: the audit is this one's
    artifacts.write_json(folder / "approval_request.json", {"asked_at": "2999-01-01T00:00:00+00:00"})
    view = ui_views.plans_view(tmp_path, {("s3_retention", "r"): "deferred"})
    assert view["recent"][0]["audit"] is None and [p["run_id"] for p in view["pending"]] == ["r"]
    for odd in ("9999-12-31T23:30:00-01:00", "soon", "2026-13-01T00:00:00Z"):  # hand-edited: kept, no crash
        artifacts.write_json(folder / "approval_request.json", {"asked_at": odd})
        assert ui_views.plans_view(tmp_path, {("s3_retention", "r"): "deferred"})["recent"][0]["status"] == "refused"
    artifacts.write_json(folder / "approval_request.json", {"asked_at": "2000-01-01T00:00:00+00:00"})
    artifacts.write_json(folder / "plan.json", {"plan_id": "p2", "chunks": ["00000"], "delete_count": 2})
    assert ui_views.plans_view(tmp_path, {("s3_retention", "r"): "deferred"})["recent"][0]["audit"] is None
    chunk = folder / "audit" / "00000.json"
    artifacts.write_json(chunk, {**json.loads(chunk.read_text()), "plan_id": "p2", "complete": False})
    partial = write_audit(folder)
    assert (partial["deleted_count"], partial["chunks_done"], partial["chunks_missing"]) == (1, 0, ["00000"])
    assert partial["audited_at"] >= audited_at


def test_a_real_audit_shows_its_key_errors_and_who_approved(tmp_path: Path) -> None:
    """The page read "error_samples" and "approved_by", which write_audit never writes: a real audit showed
    "1 errors" with no key, and no approver once housekeeping had pruned approval.json."""
    record = {"verdict": "approved", "responded_by": {"id": "alice", "name": "Alice"}}
    _deleted_run(tmp_path, "r", extra={"outcome": "deleted", "approval": "approved", "approval_record": record})
    entry = ui_views.plans_view(tmp_path, {("s3_retention", "r"): "success"})["recent"][0]
    assert entry["audit"]["error_samples"] == [{"key": "stuck.dat", "code": "AccessDenied", "message": "Access Denied",
                                                "chunk": "00000"}]
    assert entry["audit"]["approved_by"] == "Alice"
    html = ui_html.render_plans(ui_views.plans_view(tmp_path, {("s3_retention", "r"): "success"}))
    assert "stuck.dat" in html and "AccessDenied" in html and "given</b> by Alice" in html


def test_a_hand_marked_approve_is_not_shown_as_an_approval(tmp_path: Path) -> None:
    """PATCH taskInstances/approve {"new_state": "success"} is no approval to the gate: nor to the page."""
    _write(tmp_path / "s3_retention" / "r" / "plan.json", {"plan_id": "p1", "chunks": ["00000"], "delete_count": 2})
    html = ui_html.render_plans(ui_views.plans_view(tmp_path, {("s3_retention", "r"): "success"}))
    assert "marked successful, no approval recorded" in html and ">given<" not in html
    _deleted_run(tmp_path, "auto", extra={"outcome": "deleted", "approval": "auto"})
    html = ui_html.render_plans(ui_views.plans_view(tmp_path, {("s3_retention", "auto"): "skipped"}))
    assert "not needed (approval: auto)" in html and "rejected (nothing deleted)" not in html


def test_a_verdict_or_supersession_of_an_earlier_plan_is_not_shown_for_this_one(tmp_path: Path) -> None:
    """Planned again with approval auto, the run deleted: an old Reject or supersession of its earlier plan
    was shown next to the audit that did delete."""
    _deleted_run(tmp_path, "r", plan_id="p2", extra={"outcome": "deleted", "approval": "auto"},
                 approval={"verdict": "rejected", "plan_id": "p1", "responded_by": {"id": "bob"}})
    _write(tmp_path / "s3_retention" / "r" / "superseded.json", {"plan_id": "p1", "superseded_by": "manual__0"})
    entry = ui_views.plans_view(tmp_path, {("s3_retention", "r"): "skipped"})["recent"][0]
    assert entry["approval"] is None and entry["superseded_by"] is None and entry["status"] == "finished"
    _write(tmp_path / "s3_retention" / "r" / "superseded.json", {"plan_id": "p2", "superseded_by": "manual__1"})
    assert ui_views.plans_view(tmp_path)["recent"][0]["superseded_by"] == "manual__1"
    # the same plan asked again since (its approve cleared): the first request's close is not this request's
    _write(tmp_path / "s3_retention" / "r" / "approval_request.json", {"asked_at": "2026-11-30T07:00:00+00:00"})
    _write(tmp_path / "s3_retention" / "r" / "superseded.json", {"plan_id": "p2", "superseded_by": "manual__1",
                                                                 "request_asked_at": "2026-11-30T00:00:00+00:00"})
    assert ui_views.plans_view(tmp_path)["recent"][0]["superseded_by"] is None


def test_hand_edited_artifacts_never_break_a_page_or_its_json(tmp_path: Path) -> None:
    """A store someone edited by hand: NaN flags, a lone surrogate, dates without a UTC time, index lines
    that are no objects, a sum of 1e999. The pages show the rest and flag what they cannot read."""
    import importlib.util
    import sys

    ret = tmp_path / "s3_retention" / "odd"
    ret.mkdir(parents=True)
    (ret / "plan.json").write_text('{"delete_count": 1, "listing_complete": NaN, "dry_run": Infinity, '
                                   '"samples": ["k\\udc80"], "bucket": "b\\udc80", "chunks": []}')
    (ret / "audit.json").write_text('{"outcome": "deleted", "errors": [{"key": "x", "message": NaN}]}')
    rep = tmp_path / "s3_storage_report" / "r1"
    rep.mkdir(parents=True)
    (rep / "report.json").write_text(json.dumps({"generated_at": "0001-01-01T00:00:00+01:00", "totals": {}, "buckets": [
        {"name": "a", "creation_date": "9999-12-31T23:30:00-01:00", "object_count": 1, "total_bytes": 1}]}))
    idx = tmp_path / "_index" / "s3_upload"
    idx.mkdir(parents=True)
    (idx / "2026-11-01.jsonl").write_text('[1, 2]\n"text"\n{"run_id": "u1", "kind": "summary", "at": 5, "doc": []}\n')
    (idx / "2026-11-01.sum.json").write_text("[]")
    (idx / "2026-10-31.jsonl").write_text("")
    (idx / "2026-10-31.sum.json").write_text('{"summary": {"count": 1e999, "sums": {"uploaded": 1e999}}}')

    plans = ui_views.plans_view(tmp_path)
    odd = plans["recent"][0]
    assert odd["listing_complete"] is None and odd["dry_run"] is None
    assert any("listing_complete is nan" in f for f in odd["flags"])
    for page, view in (("plans", plans), ("storage", ui_views.storage_view(tmp_path)),
                       ("uploads", ui_views.uploads_view(tmp_path, limit=0))):
        html = {"plans": ui_html.render_plans, "storage": ui_html.render_storage,
                "uploads": ui_html.render_uploads}[page](view)
        html.encode("utf-8")  # a lone surrogate would raise here, and the page would be a 500
        json.dumps(ui_views.json_safe(view), ensure_ascii=True, allow_nan=False)
    assert "\\udc80" in ui_html.render_plans(plans)

    # the plugin's own JSON response: strict JSON, whatever the view holds
    spec = importlib.util.spec_from_file_location("s3ops_ui_under_test", Path(__file__).parents[2] / "plugins" / "s3ops_ui.py")
    plugin = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = plugin
    spec.loader.exec_module(plugin)
    body = plugin.StrictJSONResponse({"a": float("nan"), "b": "k\udc80", "c": [float("inf")]}).body
    assert json.loads(body) == {"a": None, "b": "k\udc80", "c": [None]}


def test_a_folder_name_that_is_not_utf8_and_a_plan_nested_too_deep_are_flagged_not_fatal(tmp_path: Path) -> None:
    import os

    base = tmp_path / "s3_retention"
    base.mkdir()
    odd = os.fsdecode(b"run-\xff")  # a lone surrogate in Python's view of the name
    (base / odd).mkdir()
    (base / odd / "plan.json").write_text(json.dumps({"delete_count": 1, "chunks": ["00000"]}))
    (base / "deep").mkdir()
    (base / "deep" / "plan.json").write_text("[" * 100_000 + "]" * 100_000)
    view = ui_views.plans_view(tmp_path)
    by_run = {p["run_id"]: p for p in view["recent"]}
    assert by_run["deep"]["status"] == "unreadable" and "nested too deeply" in by_run["deep"]["error"]
    ui_html.render_plans(view).encode("utf-8")
    assert ui_views.required_actions_url("s3_retention", odd).endswith("/runs/run-%FF/required_actions")


def test_an_auto_run_still_deleting_is_not_shown_as_rejected(tmp_path: Path) -> None:
    _write(tmp_path / "s3_deploy_cleanup" / "r" / "plan.json", {"plan_id": "p", "chunks": ["00000"], "delete_count": 3,
                                                                "settings": {"approval": "auto", "dry_run": False}})
    view = ui_views.plans_view(tmp_path, {("s3_deploy_cleanup", "r"): "skipped"})
    assert view["recent"][0]["status"] == "in progress"
    assert "not needed (approval: auto)" in ui_html.render_plans(view)
    _write(tmp_path / "s3_deploy_cleanup" / "r" / "plan.json", {"plan_id": "p", "chunks": ["00000"], "delete_count": 3,
                                                                "settings": {"approval": "required"}})
    assert ui_views.plans_view(tmp_path, {("s3_deploy_cleanup", "r"): "skipped"})["recent"][0]["status"] == "rejected"


def test_a_cost_under_a_hundredth_of_a_cent_is_not_shown_as_nothing() -> None:
    """report.json keeps costs to 8 decimals: a 2 MiB bucket costs ~$0.000045 a month, which four decimals
    showed as 0.0000, the same as a bucket that costs nothing."""
    assert [ui_html._money(v) for v in (0.0, 0.00004492, 0.00005, 0.1234, 12.5)] == [
        "0.00", "<0.0001", "0.0001", "0.1234", "12.50"]


def test_upload_runs_show_future_dated_files_and_failed_aborts_with_what_to_do(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """summary.json and the run index carry ``future_dated`` and ``abort_failed`` (a run keeps its record for
    them), but the Uploads page showed neither: a file dated in the future waits unnoticed, an incomplete
    upload S3 would not let the uploader abort stays billed. Built with the uploader's own ``summarize``;
    the names and errors are hostile (markup, a newline)."""
    from include.core import artifacts
    from include.upload.settings import resolve_settings
    from include.upload.uploader import summarize

    monkeypatch.setenv(artifacts.ROOT_ENV, str(tmp_path))
    settings = resolve_settings({"base_dir": "/data/outbox", "bucket": "sensor-data"}, None, by_deployer=True)[0]
    odd = "/data/outbox/x/2099/01/01/00/00-<b>t\n.dat"
    scan = {"future_dated": [{"path": odd, "reason": "mtime 2099"}, {"path": "/data/outbox/y/2099/1/1/0/1-t.dat",
                                                                     "reason": "data minute"}],
            "future_dated_total": 2,
            "aborted_uploads": [{"key": "x/2026/01/01/00/00-<i>.dat", "initiated": "2026-01-01T00:00:00Z",
                                 "error": "AccessDenied: <script>no</script>"},
                                {"key": "", "initiated": "", "error": "ListMultipartUploads: AccessDenied"},
                                {"key": "ok", "initiated": "2026-01-01T00:00:00Z", "error": ""}]}
    summary, _ = summarize(settings, scan, [])
    assert (summary["future_dated"], summary["abort_failed"]) == (2, 2)
    artifacts.write_json(tmp_path / "s3_upload" / "r1" / "summary.json", summary)  # the run folder and its index entry
    quiet, _ = summarize(settings, {}, [])
    artifacts.write_json(tmp_path / "s3_upload" / "r0" / "summary.json", quiet)

    def check(html: str) -> None:
        row = html[html.index('data-run="r1"'):].split("</tr>")[0]
        cells = re.findall(r'<td class="num" data-value="([^"]*)"', row)
        assert cells[-2:] == ["2", "2"]  # Future-dated, Aborts failed
        assert "<th class=\"num\">Future-dated</th><th class=\"num\">Aborts failed</th>" in html
        assert "00-&lt;b&gt;t\n.dat" in row and "<b>" not in row and "<script>" not in row
        assert "AccessDenied: &lt;script&gt;no&lt;/script&gt;" in row and "(listing the uploads)" in row
        assert "s3:ListBucketMultipartUploads" in row and "s3:AbortMultipartUpload" in row
        assert "ahead of the clock" in row
        if 'data-run="r0"' in html:
            quiet_row = html[html.index('data-run="r0"'):].split("</tr>")[0]
            assert "future-dated" not in quiet_row and "aborts failed" not in quiet_row

    view = ui_views.uploads_view(tmp_path)  # from the run index
    assert view["totals"]["future_dated"] == 2 and view["totals"]["abort_failed"] == 2 and view["flags"] == []
    page = ui_html.render_uploads(view)
    check(page)
    assert 'data-card="future_dated" data-value="2"' in page and 'data-card="abort_failed" data-value="2"' in page
    check(ui_html.render_run(ui_views.run_view(tmp_path, "s3_upload", "r1")))  # the run's own page, from its folder
    artifacts.roll_up_hours(tmp_path, "s3_upload", "9999-12-31T23")  # older periods: read from their sums
    assert ui_views.uploads_view(tmp_path, limit=0)["totals"]["abort_failed"] == 2


def test_odd_abort_failures_in_a_summary_are_flagged_not_fatal(tmp_path: Path) -> None:
    _write(tmp_path / "s3_upload" / "u1" / "summary.json",
           {"uploaded": 0, "abort_failed": "2", "abort_failures": ["junk", {"key": 5, "error": None}],
            "future_dated": 1, "future_dated_paths": "not a list"})
    view = ui_views.uploads_view(tmp_path)
    (run,) = view["runs"]
    assert run["abort_failed"] is None and run["abort_failures"] == [{"key": "5", "initiated": "", "error": ""}]
    assert run["future_dated"] == 1 and run["future_dated_paths"] == []
    assert any("abort_failures[0]" in f for f in view["flags"]) and any("future_dated_paths" in f for f in view["flags"])
    ui_html.render_uploads(view).encode("utf-8")
