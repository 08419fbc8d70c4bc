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
                                         "deleted_by_reason": {"orphan": {"count": 3, "bytes": 300}}})
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
    assert set(hidden) == {"a", "b<script>"}
    assert (hidden["a"]["noncurrent_count"], hidden["a"]["noncurrent_bytes"], hidden["a"]["delete_markers"]) == (4, 40, 3)
    assert hidden["b<script>"]["multipart_bytes"] == 1048576
    assert view["broken"][0]["run_id"] == "r0-bad" and view["report_count"] == 3


def test_storage_history_has_one_point_per_report_and_gaps_for_missing_buckets(root: Path) -> None:
    hist = ui_views.storage_view(root)["history"]
    assert hist["run_ids"] == ["r1", "r2"]
    assert hist["buckets"]["a"] == {"object_count": [3, 7], "total_bytes": [300, 2500]}
    assert hist["buckets"]["b<script>"]["total_bytes"] == [None, 7]
    assert hist["buckets"]["broken"]["total_bytes"] == [None, None]  # an unreadable bucket is not a zero


def test_plans_view_status_from_audit_and_approval_state(root: Path) -> None:
    states = {("s3_retention", "waiting"): "awaiting_input", ("s3_deploy_cleanup", "rejected"): "skipped",
              ("s3_retention", "done"): "success"}
    view = ui_views.plans_view(root, states)
    by_run = {p["run_id"]: p for p in view["recent"]}
    assert by_run["waiting"]["status"] == "awaiting approval"
    assert by_run["rejected"]["status"] == "rejected"
    assert by_run["done"]["status"] == "finished" and by_run["done"]["audit"]["deleted_count"] == 19
    assert [p["run_id"] for p in view["pending"]] == ["waiting"]
    assert by_run["waiting"]["by_reason"] == [{"reason": "orphan", "count": 3, "bytes": 300},
                                              {"reason": "trial_expired", "count": 17, "bytes": 1700}]
    # without Airflow's answer, a plan with deletions and no audit is shown as waiting
    assert {p["run_id"] for p in ui_views.plans_view(root)["pending"]} == {"waiting", "rejected"}


def test_uploads_view_newest_first_with_totals(root: Path) -> None:
    view = ui_views.uploads_view(root)
    assert [r["run_id"] for r in view["runs"]] == ["u2", "u1"]
    assert view["runs"][1]["finished_at"] == "2026-11-21T10:00:05+00:00"
    assert view["totals"] == {"uploaded": 10, "bytes": 1000, "malformed": 2, "conflicts": 1, "failed": 1}
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


def test_plans_view_shows_each_approval_lifecycle_state_distinctly(tmp_path: Path) -> None:
    """pending, approved, rejected, superseded, expired and refused each get their own status and badge,
    from what the gate recorded (approval_request.json, approval.json, superseded.json, audit.json)."""
    base = tmp_path / "s3_retention"
    plan = {"bucket": "b", "delete_count": 2, "delete_bytes": 20, "scanned_count": 9, "chunks": ["00000"]}
    request = {"timeout_at": "2026-12-01T06:00:00+00:00", "approvers": ["alice"]}
    alice = {"id": "alice", "name": "alice"}
    runs = {
        "pending": ({}, "awaiting_input"),
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
                      "superseded": "superseded", "expired": "expired", "refused": "refused"}
    assert [p["run_id"] for p in view["pending"]] == ["pending"]  # a superseded request no longer waits
    html = ui_html.render_plans(view)
    _parse(html)
    for run, badge in (("approved", "approved"), ("superseded", "superseded"), ("expired", "expired")):
        assert f'data-run="{run}" data-status="{badge}"' in html
        assert f'class="badge {badge}"' in html
    assert 'data-verdict="approved">Approval: <b>approved</b> by alice' in html
    assert "Superseded by run <code>pending</code>" in html
    assert "Expires 2026-12-01T06:00:00+00:00" in html and "approvers: alice" in html
