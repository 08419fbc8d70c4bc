"""What a person with write access to the artifact store can make the UI read: nothing too big, no FIFO
(it would block a request thread for good), no link into another DAG's folder or out of the root, and no
answer a cache may keep. Built in temporary folders; the plugin's app is driven by FastAPI's TestClient."""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from include.core import artifacts
from include.ui import html as ui_html
from include.ui import views as ui_views

LIMIT = 4096  # READ_LIMIT for these tests: the same code, without writing 64 MiB


@pytest.fixture
def small_limit(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(ui_views, "READ_LIMIT", LIMIT, raising=False)
    return LIMIT


def _write(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))


def _report(pad: int = 0) -> dict[str, Any]:
    """A storage report of one bucket, ``pad`` bytes bigger in what the run index does not keep of it."""
    bucket = {"name": "a", "object_count": 3, "total_bytes": 300, "storage_classes": {}, "error": None,
              "region": "x" * pad}
    return {"generated_at": "2026-11-20T00:00:00+00:00", "source": "listing", "buckets": [bucket], "totals": {}}


def _within(seconds: float, call: Callable[[], Any]) -> Any:
    """``call()``, failing the test (not hanging it) if it does not return in time: a FIFO blocks an open."""
    out: list[Any] = []
    worker = threading.Thread(target=lambda: out.append(call()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still reading after {seconds} s"
    return out[0]


# Size, file type, links: the storage report --------------------------------------------------------
def test_a_report_too_large_is_flagged_not_read(tmp_path: Path, small_limit: int) -> None:
    _write(tmp_path / "s3_storage_report" / "big" / "report.json", _report(pad=small_limit))
    _write(tmp_path / "s3_storage_report" / "ok" / "report.json", {**_report(), "generated_at": "2026-11-19T00:00:00+00:00"})
    view = ui_views.storage_view(tmp_path)
    assert view["latest"]["run_id"] == "ok"
    [broken] = view["broken"]
    assert broken["run_id"] == "big" and "too large to read" in broken["error"]
    assert "too large to read" in ui_html.render_storage(view)


def test_the_latest_report_too_large_is_shown_from_the_index_with_a_flag(
        tmp_path: Path, small_limit: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(artifacts.ROOT_ENV, str(tmp_path))
    path = tmp_path / "s3_storage_report" / "r1" / "report.json"
    artifacts.write_json(path, _report(pad=small_limit))  # indexed: the index keeps the counts per bucket
    view = ui_views.storage_view(tmp_path)
    assert [b["name"] for b in view["latest"]["buckets"]] == ["a"]
    assert view["latest"]["totals"]["total_bytes"] == 300
    assert any("r1/report.json: too large to read" in f and "shown from the run index" in f for f in view["flags"])


def test_a_report_that_links_to_a_device_or_is_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    """/dev/zero through a link took all the memory there was (here /dev/null: the same link, refused before
    it is opened, and a test that cannot exhaust the machine without the fix); a FIFO blocked the request
    thread for good."""
    run = tmp_path / "s3_storage_report"
    (run / "zero").mkdir(parents=True)
    os.symlink("/dev/null", run / "zero" / "report.json")
    (run / "fifo").mkdir()
    os.mkfifo(run / "fifo" / "report.json")
    view = _within(10, lambda: ui_views.storage_view(tmp_path))
    errors = {b["run_id"]: b["error"] for b in view["broken"]}
    assert "symbolic link" in errors["zero"] and "a FIFO" in errors["fifo"]


def test_an_index_file_too_large_is_skipped_and_flagged(
        tmp_path: Path, small_limit: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(artifacts.ROOT_ENV, str(tmp_path))
    artifacts.write_json(tmp_path / "s3_upload" / "u1" / "summary.json", {"uploaded": 2, "bytes": 20})
    day = tmp_path / "_index" / "s3_upload" / "2026-01-01"
    _write(day / "00.jsonl", json.dumps({"run_id": "u0", "kind": "summary", "at": "2026-01-01T00:00:00", "doc": {
        "uploaded": 1, "pad": "x" * small_limit}}) + "\n")
    view = ui_views.uploads_view(tmp_path)
    assert [r["run_id"] for r in view["runs"]] == ["u1"]
    assert any(f.startswith("_index/s3_upload/2026-01-01/00.jsonl: too large to read") for f in view["flags"])


# Plans, the approval gate's files, upload results ----------------------------------------------------
def test_plan_and_gate_files_too_large_or_linked_are_flagged_and_the_rest_shown(
        tmp_path: Path, small_limit: int) -> None:
    ret = tmp_path / "s3_retention"
    _write(ret / "huge" / "plan.json", {"delete_count": 1, "pad": "x" * small_limit})
    _write(ret / "gate" / "plan.json", {"delete_count": 1, "bucket": "jobs"})
    _write(ret / "gate" / "approval.json", {"verdict": "approved", "pad": "x" * small_limit})
    _write(tmp_path / "elsewhere.json", {"asked_at": "2026-01-01T00:00:00+00:00"})
    os.symlink(tmp_path / "elsewhere.json", ret / "gate" / "approval_request.json")
    by_run = {p["run_id"]: p for p in ui_views.plans_view(tmp_path)["recent"]}
    assert by_run["huge"]["status"] == "unreadable" and "too large to read" in by_run["huge"]["error"]
    gate = by_run["gate"]
    assert gate["bucket"] == "jobs" and gate["approval"] is None and gate["asked_at"] is None
    assert any("approval.json: unreadable (too large to read" in f for f in gate["flags"])
    assert any("approval_request.json: unreadable" in f and "symbolic link" in f for f in gate["flags"])


def test_an_upload_batch_result_too_large_is_a_row_with_the_error(tmp_path: Path, small_limit: int) -> None:
    run = tmp_path / "s3_upload" / "u1"
    _write(run / "summary.json", {"uploaded": 1})
    _write(run / "results" / "00000.json", {"rows": [], "pad": "x" * small_limit})
    _write(run / "results" / "00001.json", {"rows": [{"status": "uploaded", "size": 5, "path": "p"}]})
    view = ui_views.run_view(tmp_path, "s3_upload", "u1")
    big, ok = view["uploads"]["batches"]
    assert "too large to read" in big["error"] and ok["uploaded"] == 1


# Another DAG's data under this one -------------------------------------------------------------------
def _secret_retention_run(root: Path) -> None:
    _write(root / "s3_retention" / "secret-run" / "plan.json",
           {"bucket": "hr-payroll", "samples": ["payroll/2026/ceo.pdf"], "delete_count": 1})


def test_a_run_folder_that_links_to_another_dags_run_shows_nothing_of_it(tmp_path: Path) -> None:
    """``s3_deploy_cleanup/innocent -> ../s3_retention/secret-run`` showed the retention plan's bucket and
    keys to a user who may read only s3_deploy_cleanup."""
    _secret_retention_run(tmp_path)
    (tmp_path / "s3_deploy_cleanup").mkdir()
    os.symlink("../s3_retention/secret-run", tmp_path / "s3_deploy_cleanup" / "innocent")
    readable = {"s3_deploy_cleanup"}
    view = ui_views.plans_view(tmp_path, readable=readable)
    assert view["recent"] == []
    run = ui_views.run_view(tmp_path, "s3_deploy_cleanup", "innocent", readable=readable)
    shown = json.dumps(run) + ui_html.render_run(run)
    assert "hr-payroll" not in shown and "ceo.pdf" not in shown
    assert "symbolic link" in run["plan"]["error"]


def test_a_dag_folder_that_links_to_another_dags_folder_is_not_listed(tmp_path: Path) -> None:
    _secret_retention_run(tmp_path)
    os.symlink("s3_retention", tmp_path / "s3_deploy_cleanup")
    assert ui_views.plans_view(tmp_path, readable={"s3_deploy_cleanup"})["recent"] == []


def test_an_index_entry_whose_run_id_is_a_path_reads_nothing_there(tmp_path: Path) -> None:
    """A forged index entry's run id was joined to the root: an absolute one read the approval gate's files
    (and a storage report) anywhere on the disk."""
    outside = tmp_path / "outside"
    _write(outside / "approval.json", {"verdict": "approved", "responded_by": {"name": "from-outside"}})
    _write(outside / "report.json", {**_report(), "buckets": [{"name": "outside-bucket"}]})
    root = tmp_path / "root"
    for dag_id, kind, doc in (("s3_retention", "plan", {"delete_count": 1}), ("s3_storage_report", "report", _report())):
        _write(root / "_index" / dag_id / "2026-01-01.jsonl",
               json.dumps({"run_id": str(outside), "kind": kind, "at": "2026-01-01T00:00:00", "doc": doc}) + "\n")
    plans = ui_views.plans_view(root)
    storage = ui_views.storage_view(root)
    shown = json.dumps([plans, storage])
    assert plans["recent"] == [] and storage["latest"] is None
    assert "from-outside" not in shown and "outside-bucket" not in shown
    assert any("an entry's run_id" in f for f in plans["flags"]) and "an entry&#x27;s run_id" in ui_html.render_plans(plans)
    assert any("an entry's run_id" in f for f in storage["flags"]) and "names no run folder" in ui_html.render_storage(storage)


# The bounded read itself -------------------------------------------------------------------------------
def test_a_bounded_read_refuses_a_path_outside_the_root_or_through_a_linked_folder(tmp_path: Path) -> None:
    _write(tmp_path / "real" / "run" / "plan.json", {"a": 1})
    os.symlink("real", tmp_path / "linked")
    assert artifacts.read_bytes_bounded(tmp_path, tmp_path / "real" / "run" / "plan.json", 100) == b'{"a": 1}'
    with pytest.raises(artifacts.ReadRefused, match="linked is a symbolic link"):
        artifacts.read_bytes_bounded(tmp_path, tmp_path / "linked" / "run" / "plan.json", 100)
    with pytest.raises(artifacts.ReadRefused, match="outside the artifact root"):
        artifacts.read_bytes_bounded(tmp_path / "real", tmp_path / "plan.json", 100)
    with pytest.raises(artifacts.ReadRefused, match="names no file"):
        artifacts.read_bytes_bounded(tmp_path / "real", tmp_path / "real" / ".." / "real" / "run" / "plan.json", 100)
    # the root itself may be a link (a deployment's choice); the limit is inclusive
    assert artifacts.read_bytes_bounded(tmp_path / "linked", tmp_path / "linked" / "run" / "plan.json", 8) == b'{"a": 1}'
    with pytest.raises(artifacts.TooLarge):
        artifacts.read_bytes_bounded(tmp_path, tmp_path / "real" / "run" / "plan.json", 7)


class _RemoteFile:
    """An object-storage path as the bounded read sees one: ``open()`` gives a file that knows its size (fsspec
    asks it with one HEAD) and counts the bytes read."""

    def __init__(self, stored: int, data: bytes) -> None:
        self.stored, self.data, self.read = stored, data, 0

    def open(self, mode: str) -> io.BytesIO:
        remote = self

        class _Object(io.BytesIO):
            size = remote.stored

            def read(self, n: int | None = -1) -> bytes:
                chunk = super().read(n)
                remote.read += len(chunk)
                return chunk

        return _Object(self.data)


def test_a_bounded_read_on_object_storage_checks_the_size_before_reading() -> None:
    big = _RemoteFile(10**9, b"x" * 200)
    with pytest.raises(artifacts.TooLarge, match="1,000,000,000 bytes"):
        artifacts.read_bytes_bounded("s3://b/root", big, 100)
    assert big.read == 0
    grown = _RemoteFile(10, b"x" * 200)  # replaced by a bigger object since its size was asked: still capped
    with pytest.raises(artifacts.TooLarge):
        artifacts.read_bytes_bounded("s3://b/root", grown, 100)
    assert grown.read == 101
    assert artifacts.read_bytes_bounded("s3://b/root", _RemoteFile(3, b"abc"), 100) == b"abc"


# The plugin's JSON -------------------------------------------------------------------------------------
def test_the_plugins_json_is_never_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    import sys

    from fastapi.testclient import TestClient

    spec = importlib.util.spec_from_file_location("s3ops_ui_cache_test", Path(__file__).parents[2] / "plugins" / "s3ops_ui.py")
    assert spec is not None and spec.loader is not None
    plugin = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, plugin)
    spec.loader.exec_module(plugin)
    monkeypatch.setenv(artifacts.ROOT_ENV, str(tmp_path))
    monkeypatch.setattr(plugin, "readable_dags", lambda user: set(ui_views.S3OPS_DAGS))
    monkeypatch.setattr(plugin, "_approval_states", lambda dag_ids, run_id=None: {})
    monkeypatch.setattr(plugin, "_run_conf", lambda dag_id, run_id: None)
    app = plugin.create_app()
    app.dependency_overrides[plugin.require_user] = lambda: "viewer"
    client = TestClient(app)
    for url in ("/api/storage", "/api/plans", "/api/uploads", "/api/run/s3_retention/r1", "/storage"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.headers["cache-control"] == "no-store", url
    monkeypatch.setattr(plugin, "readable_dags", lambda user: set())
    assert client.get("/api/run/s3_retention/r1").headers["cache-control"] == "no-store"  # a 403 too
    missing = client.get("/nothing")  # an error of the plugin's own: a 404 of what exists is no-store as well
    assert missing.status_code == 404 and missing.headers["cache-control"] == "no-store"
    del app.dependency_overrides[plugin.require_user]  # no user: Airflow's 401, for a browser a login redirect
    refused = client.get("/api/storage")
    assert refused.status_code in (401, 403) and refused.headers["cache-control"] == "no-store"


def test_a_finished_runs_audit_too_large_is_shown_from_the_index_not_as_in_progress(
        tmp_path: Path, small_limit: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """audit.json lists every per-key error: 100,000 errors on long keys passed the read limit, and the run
    tab showed a failed, finished run as "in progress". Its index entry has the outcome and the counts."""
    monkeypatch.setenv(artifacts.ROOT_ENV, str(tmp_path))
    folder = tmp_path / "s3_retention" / "big"
    artifacts.write_json(folder / "plan.json", {"plan_id": "p1", "delete_count": 3, "bucket": "jobs", "chunks": ["00000"]})
    artifacts.write_json(folder / "audit.json", {"plan_id": "p1", "outcome": "failed", "deleted_count": 1,
                                                 "error_count": 200, "errors": [{"key": f"k{i:040d}"} for i in range(200)]})
    assert (folder / "audit.json").stat().st_size > small_limit
    plan = ui_views.run_view(tmp_path, "s3_retention", "big", approval_state="success")["plan"]
    assert plan["status"] == "failed" and plan["audit"]["deleted_count"] == 1 and plan["audit"]["error_count"] == 200
    # without an index entry to fall back on, it says why it cannot tell
    (folder / "audit.json").rename(tmp_path / "moved.json")
    _write(tmp_path / "s3_retention" / "lone" / "plan.json", {"plan_id": "p2", "delete_count": 3})
    (tmp_path / "moved.json").rename(tmp_path / "s3_retention" / "lone" / "audit.json")
    lone = ui_views.run_view(tmp_path, "s3_retention", "lone", approval_state="success")["plan"]
    assert "too large to read" in (lone["error"] or "")
