"""The artifact store's run index and housekeeping (include.core.artifacts, include.core.housekeeping)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from include.core import artifacts, housekeeping
from include.core.housekeeping import Retention, RetentionSettingError, retention_from
from include.ui import views

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(artifacts.ROOT_ENV, str(tmp_path))
    return tmp_path


def _entries(root: Path, dag_id: str) -> list[dict]:
    return [e for period in artifacts.index_periods(root, dag_id) or []
            for e in artifacts.read_period(root, dag_id, period)]


def _age(path: Path, days: float) -> None:
    ts = (NOW - timedelta(days=days)).timestamp()
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (ts, ts))


def _world(root: Path) -> None:
    """The same runs the UI unit tests use, written the way the tasks write them (so they are indexed)."""
    plan = {"plan_uri": "x", "chunks": ["00000.jsonl"], "delete_count": 20, "delete_bytes": 2000,
            "by_reason": {"orphan": {"count": 20, "bytes": 2000}}, "scanned_count": 48, "samples": ["k1"],
            "bucket": "jobs"}
    artifacts.write_json(root / "s3_retention" / "waiting" / "plan.json", plan)
    artifacts.write_json(root / "s3_retention" / "done" / "plan.json", plan)
    artifacts.write_json(root / "s3_retention" / "done" / "audit.json",
                         {"deleted_count": 19, "deleted_bytes": 1900, "skipped_count": 1, "error_count": 0,
                          "outcome": "deleted", "deleted_by_reason": {"orphan": {"count": 19, "bytes": 1900}}})
    for i in range(3):
        artifacts.write_json(root / "s3_upload" / f"u{i}" / "summary.json", {
            "uploaded": i, "bytes": 100 * i, "malformed": 0, "conflicts": i % 2, "failed": 0,
            "conflict_keys": [f"k{j}" for j in range(100)], "finished_at": f"2026-11-2{i}T00:00:00+00:00"})
    artifacts.write_json(root / "s3_storage_report" / "r1" / "report.json", {
        "generated_at": "2026-11-21T00:00:00+00:00", "totals": {},
        "buckets": [{"name": "a", "object_count": 5, "total_bytes": 500, "storage_classes": {"STANDARD": {}}}]})


def test_tasks_writes_are_indexed_compactly(root):
    _world(root)
    ups = _entries(root, "s3_upload")
    assert sorted(e["run_id"] for e in ups) == ["u0", "u1", "u2"] and {e["kind"] for e in ups} == {"summary"}
    assert all(len(e["doc"]["conflict_keys"]) == artifacts.LIST_KEEP for e in ups)
    kinds = sorted((e["run_id"], e["kind"]) for e in _entries(root, "s3_retention"))
    assert kinds == [("done", "audit"), ("done", "plan"), ("waiting", "plan")]
    (report,) = _entries(root, "s3_storage_report")
    assert report["doc"]["buckets"] == [{"name": "a", "object_count": 5, "total_bytes": 500, "error": None}]


def test_only_run_artifacts_are_indexed(root, tmp_path):
    artifacts.write_json(root / "summary.json", {})  # not in a run folder
    artifacts.write_json(root / "s3_upload" / "r" / "batches" / "summary.json", {})  # too deep
    artifacts.write_json(root / "s3_upload" / "r" / "scan.json", {})  # not an indexed name
    artifacts.write_json(tmp_path.parent / "elsewhere" / "d" / "r" / "summary.json", {})  # outside the root
    assert artifacts.index_periods(root, "s3_upload") is None


def test_pages_read_the_index_like_the_folders(root, tmp_path):
    _world(root)
    from_index = (views.uploads_view(root), views.plans_view(root), views.storage_view(root))
    import shutil

    shutil.rmtree(root / "_index")  # the same runs, read from their folders
    from_folders = (views.uploads_view(root), views.plans_view(root), views.storage_view(root))
    assert from_index[0]["totals"] == from_folders[0]["totals"] == {
        "uploaded": 3, "bytes": 300, "malformed": 0, "conflicts": 1, "failed": 0, "future_dated": 0, "abort_failed": 0}
    assert [r["run_id"] for r in from_index[0]["runs"]] == [r["run_id"] for r in from_folders[0]["runs"]] == [
        "u2", "u1", "u0"]
    strip = ("planned_at",)
    idx = sorted(({k: v for k, v in p.items() if k not in strip} for p in from_index[1]["recent"]),
                 key=lambda p: p["run_id"])
    fol = sorted(({k: v for k, v in p.items() if k not in strip} for p in from_folders[1]["recent"]),
                 key=lambda p: p["run_id"])
    assert idx == fol and {p["run_id"]: p["status"] for p in idx} == {"done": "finished", "waiting": "awaiting approval"}
    assert from_index[2]["latest"]["buckets"][0]["storage_classes"] == ["STANDARD"]  # the full report, read once
    assert from_index[2]["history"] == from_folders[2]["history"]


def test_roll_ups_keep_what_the_pages_show(root):
    _world(root)
    before = views.uploads_view(root, limit=2)
    (period,) = artifacts.index_periods(root, "s3_upload")
    assert (period.live, period.rolled) == (True, False)
    day, next_hour = period.key[:10], (datetime.fromisoformat(period.key + ":00") + timedelta(hours=1))
    assert artifacts.roll_up_hours(root, "s3_upload", before_hour=next_hour.strftime("%Y-%m-%dT%H")) == 1
    (hour,) = artifacts.index_periods(root, "s3_upload")
    assert (hour.key, hour.live, hour.rolled) == (period.key, False, True)
    assert views.uploads_view(root, limit=2) == before

    next_day = (datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat()
    assert artifacts.roll_up_days(root, "s3_upload", before_day=next_day) == 1
    assert artifacts.roll_up_days(root, "s3_upload", before_day=next_day) == 0  # idempotent
    assert not (root / "_index" / "s3_upload" / day).exists()
    sums = json.loads((root / "_index" / "s3_upload" / f"{day}.sum.json").read_text())
    assert sums["summary"]["count"] == 3 and sums["summary"]["sums"]["bytes"] == 300
    after = views.uploads_view(root, limit=2)
    assert after == before and after["run_count"] == 3 and len(after["runs"]) == 2
    # a late write into a rolled-up day is read too, and merged by the next roll-up
    late = artifacts.index_entry_for(root / "s3_upload" / "late" / "summary.json", {"uploaded": 7},
                                     at=f"{day}T23:59:59+00:00")
    artifacts.write_bytes(late[0], json.dumps(late[1]).encode())
    assert views.uploads_view(root)["totals"]["uploaded"] == 10
    assert artifacts.roll_up_days(root, "s3_upload", before_day=next_day) == 1
    assert views.uploads_view(root)["run_count"] == 4
    # a retried task files its summary again (a later hour): the run is shown and counted once, newest wins
    again = artifacts.index_entry_for(root / "s3_upload" / "u2" / "summary.json", {"uploaded": 5},
                                      at=datetime.now(UTC).isoformat())
    artifacts.write_bytes(again[0], json.dumps(again[1]).encode())
    view = views.uploads_view(root)
    assert view["run_count"] == 4 and [r["uploaded"] for r in view["runs"] if r["run_id"] == "u2"] == [5]


def test_retention_settings_are_validated():
    assert retention_from(None, None, "v") == Retention(30, 400)
    assert retention_from(7, 3, "v") == Retention(7, 7)  # audits are never kept shorter than the rest
    assert retention_from(30.0, 400.0, "v") == Retention(30, 400)  # what the settings' JSON schema accepts too
    for bad in (0, -1, 36_501, 1.5, True, "30", float("nan")):
        with pytest.raises(RetentionSettingError, match="artifact_retention_days in the Variable 's3ops_upload'"):
            retention_from(bad, None, "the Variable 's3ops_upload'")


def _run(root: Path, dag_id: str, run_id: str, files: dict[str, object], age_days: float) -> Path:
    folder = root / dag_id / run_id
    for name, doc in files.items():
        path = folder / name
        entry = artifacts.index_entry_for(path, doc, at=(NOW - timedelta(days=age_days)).isoformat())
        artifacts.write_json(path, doc) if entry is None else artifacts.write_text(path, json.dumps(doc))
        if entry is not None:
            artifacts.write_bytes(entry[0], json.dumps(entry[1]).encode())
    _age(folder, age_days)
    return folder


def test_prune_keeps_audits_longer_and_fresh_runs_whole(root):
    old_upload = _run(root, "s3_upload", "old", {"summary.json": {"uploaded": 1}, "manifest.jsonl": {}}, 31)
    new_upload = _run(root, "s3_upload", "new", {"summary.json": {"uploaded": 2}}, 29)
    audited = _run(root, "s3_retention", "audited", {"plan.json": {"delete_count": 1}, "audit.json": {"outcome": "deleted"},
                                                      "chunks/00000.jsonl": {}}, 45)
    ancient = _run(root, "s3_retention", "ancient", {"plan.json": {}, "audit.json": {}}, 401)
    pending = _run(root, "s3_retention", "pending", {"plan.json": {}, "chunks/00000.jsonl": {}}, 31)

    dry = housekeeping.housekeep(root, {}, now=NOW, dry_run=True)
    assert old_upload.exists() and (audited / "chunks").exists()
    assert {d["dag_id"]: (d["runs_removed"], d["runs_trimmed"]) for d in dry["dags"]} == {
        "s3_upload": (1, 0), "s3_retention": (2, 1)}

    report = housekeeping.housekeep(root, {}, now=NOW)
    assert not old_upload.exists() and new_upload.exists() and not ancient.exists() and not pending.exists()
    assert sorted(p.name for p in audited.rglob("*") if p.is_file()) == ["audit.json", "plan.json"]
    assert {d["dag_id"]: (d["runs_removed"], d["runs_trimmed"]) for d in report["dags"]} == {
        "s3_upload": (1, 0), "s3_retention": (2, 1)}
    assert sorted(e["run_id"] for e in _entries(root, "s3_upload")) == ["new"]
    assert sorted({e["run_id"] for e in _entries(root, "s3_retention")}) == ["audited"]
    # a second pass finds the trimmed audit folder already minimal and leaves it alone
    again = housekeeping.housekeep(root, {}, now=NOW)
    assert all(d["runs_removed"] == d["runs_trimmed"] == 0 for d in again["dags"])
    assert (audited / "audit.json").exists()


def test_a_deletion_record_keeps_its_chunk_audits_and_purged_rows(root):
    """The per-key record of a deletion (audit/<chunk>.json) and the job rows a run purged stay as long as
    audit.json; a run whose audit task never ran but whose chunks deleted keeps its chunk audits too."""
    full = _run(root, "s3_retention", "full", {"plan.json": {}, "audit.json": {}, "audit/00000.json": {"deleted": ["k"]},
                                                "expired_trial_rows/00000.jsonl": {}, "plan/00000.jsonl": {},
                                                "task_results/purge_job_rows.json": {"deleted": 1},
                                                "settings.json": {}}, 45)
    # a dry run (or a rejected plan) recorded rows it never purged: not kept for 400 days
    dry = _run(root, "s3_retention", "dry", {"plan.json": {}, "audit.json": {}, "expired_trial_rows/00000.jsonl": {},
                                              "settings.json": {}}, 45)
    partial = _run(root, "s3_retention", "partial", {"plan.json": {}, "audit/00000.json": {"deleted": ["k"]},
                                                      "plan/00000.jsonl": {}}, 45)
    housekeeping.housekeep(root, {}, now=NOW)
    housekeeping.housekeep(root, {}, now=NOW + timedelta(days=1))  # a second pass keeps the same
    files = {p.relative_to(full).as_posix() for p in full.rglob("*") if p.is_file()}
    assert files == {"plan.json", "audit.json", "audit/00000.json", "expired_trial_rows/00000.jsonl",
                     "task_results/purge_job_rows.json"}
    assert {p.relative_to(dry).as_posix() for p in dry.rglob("*") if p.is_file()} == {"plan.json", "audit.json"}
    assert {p.relative_to(partial).as_posix() for p in partial.rglob("*") if p.is_file()} == {
        "plan.json", "audit/00000.json"}
    housekeeping.housekeep(root, {}, now=NOW + timedelta(days=356))  # 401 days: past the audit retention
    assert not full.exists() and not partial.exists()


def test_an_earlier_record_keeps_its_purged_rows_only_with_its_purge(root):
    """A run planned again after it deleted moved its record to earlier/<plan id>/ whole. Its approval and
    chunk audits stay with it, but job rows it recorded and never purged are no record of anything: they go
    after artifact_retention_days, as at the top of the folder."""
    run = _run(root, "s3_retention", "again", {
        "plan.json": {}, "audit.json": {},
        "earlier/p1/plan.json": {}, "earlier/p1/approval.json": {"verdict": "approved"},
        "earlier/p1/audit/00000.json": {"deleted": ["k"]}, "earlier/p1/expired_trial_rows/00000.jsonl": {},
        "earlier/p2/plan.json": {}, "earlier/p2/audit/00000.json": {"deleted": ["k"]},
        "earlier/p2/expired_trial_rows/00000.jsonl": {}, "earlier/p2/task_results/purge_job_rows.json": {"deleted": 1},
    }, 45)
    housekeeping.housekeep(root, {}, now=NOW)
    assert {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()} == {
        "plan.json", "audit.json",
        "earlier/p1/plan.json", "earlier/p1/approval.json", "earlier/p1/audit/00000.json",
        "earlier/p2/plan.json", "earlier/p2/audit/00000.json", "earlier/p2/expired_trial_rows/00000.jsonl",
        "earlier/p2/task_results/purge_job_rows.json"}


def test_only_s3ops_folders_are_pruned_and_a_linked_folder_is_not_followed(root, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "old-run").mkdir()
    (outside / "old-run" / "settings.json").write_text("{}")
    _age(outside, 90)
    (root / "s3_upload").symlink_to(outside, target_is_directory=True)  # the DAG folder is a link out of the root
    photos = root / "photos" / "2019"
    photos.mkdir(parents=True)
    (photos / "img1.jpg").write_bytes(b"x")
    _age(root / "photos", 90)
    stranger = root / "s3_retention" / "not-a-run"
    stranger.mkdir(parents=True)
    (stranger / "notes.txt").write_text("mine")
    _age(stranger, 90)
    report = housekeeping.housekeep(root, {}, now=NOW)
    assert (outside / "old-run" / "settings.json").exists() and (photos / "img1.jpg").exists()
    assert (stranger / "notes.txt").exists()
    assert report["foreign_folders_kept"] == ["photos"]
    assert [d["unknown_folders_kept"] for d in report["dags"]] == [["not-a-run"]]


def test_a_plan_waiting_for_an_answer_is_kept_until_it_can_no_longer_be_answered(root):
    asked = {"plan.json": {}, "settings.json": {}, "approval_request.json": {}}
    waiting = _run(root, "s3_retention", "waiting", asked, 29.5)
    answered = _run(root, "s3_retention", "answered", {**asked, "approval.json": {}}, 29.5)
    housekeeping.housekeep(root, {"s3_retention": Retention(1, 400)}, now=NOW)
    assert waiting.exists() and not answered.exists()
    housekeeping.housekeep(root, {"s3_retention": Retention(1, 400)}, now=NOW + timedelta(days=2))
    assert not waiting.exists()  # 31.5 days: past the longest approval timeout (720 h)


def test_a_run_id_too_long_for_an_index_file_name_does_not_stop_housekeeping(root):
    long_run = "r" * 250  # Airflow allows run ids of 250 characters; "<run_id>.summary.json" is not a valid name
    folder = root / "s3_upload" / long_run
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"uploaded": 1}))
    old = _run(root, "s3_upload", "old", {"summary.json": {"uploaded": 2}}, 90)
    _age(folder, 90)
    report = housekeeping.housekeep(root, {}, now=NOW)
    assert not old.exists() and not folder.exists() and report["dags"][0]["runs_removed"] == 2


def test_per_dag_retention(root):
    kept = _run(root, "s3_upload", "r", {"summary.json": {}}, 10)
    housekeeping.housekeep(root, {"s3_upload": Retention(20, 400)}, now=NOW)
    assert kept.exists()
    housekeeping.housekeep(root, {"s3_upload": Retention(5, 400)}, now=NOW, skip={"s3_upload"})
    assert kept.exists()  # a DAG whose retention setting is broken is skipped, not pruned by the defaults
    housekeeping.housekeep(root, {"s3_upload": Retention(5, 400)}, now=NOW)
    assert not kept.exists()


def test_runs_written_before_the_index_are_indexed_by_housekeeping(root):
    folder = root / "s3_upload" / "legacy"
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"uploaded": 5}))
    (root / "s3_upload" / "broken").mkdir()
    (root / "s3_upload" / "broken" / "summary.json").write_text("{nope")
    artifacts.write_json(root / "s3_upload" / "new" / "summary.json", {"uploaded": 1})  # creates the index
    assert views.uploads_view(root)["run_count"] == 1  # the index exists: legacy folders are not scanned
    report = housekeeping.housekeep(root, {}, now=datetime.now(UTC))
    assert report["indexed"] == 2  # the two legacy runs; the new one is indexed already
    view = views.uploads_view(root)
    assert view["run_count"] == 3 and view["totals"]["uploaded"] == 6
    assert housekeeping.housekeep(root, {}, now=datetime.now(UTC))["indexed"] == 0
