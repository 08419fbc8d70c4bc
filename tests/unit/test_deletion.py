"""The shared deletion building blocks without a server: plan chunking, summary counts, guards."""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest

from include.deletion.plan import GuardRefused, PlanItem, PlanWriter, check_guards, guard_violations, read_chunk


def _items(n: int, reason: str = "r", size: int = 10) -> list[PlanItem]:
    return [PlanItem(key=f"k/{i:06d}", size=size, reason=reason) for i in range(n)]


def test_plan_is_chunked_and_summarised(tmp_path):
    writer = PlanWriter(tmp_path, chunk_size=1000, sample_size=3)
    items = _items(2500, "old", 7) + _items(3, "orphan", 100)
    for item in items:
        writer.add(item)
    for _ in range(4000):
        writer.note_scanned(5)
    summary = writer.close(listing_complete=True, extra={"policy": "test"})

    assert summary["chunks"] == ["00000", "00001", "00002"]
    assert summary["delete_count"] == 2503
    assert summary["delete_bytes"] == 2500 * 7 + 300
    assert summary["by_reason"] == {"old": {"count": 2500, "bytes": 17500}, "orphan": {"count": 3, "bytes": 300}}
    assert (summary["scanned_count"], summary["scanned_bytes"]) == (4000, 20000)
    assert summary["samples"] == ["k/000000", "k/000001", "k/000002"]
    assert summary["policy"] == "test" and summary["listing_complete"] is True
    # every item is in exactly one chunk, in order, and the summary is small enough for XCom
    back = [i for c in summary["chunks"] for i in read_chunk(tmp_path, c)]
    assert back == items
    assert [len(read_chunk(tmp_path, c)) for c in summary["chunks"]] == [1000, 1000, 503]
    assert len(json.dumps(summary)) < 2000
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["plan_id"] == summary["plan_id"] and plan["delete_count"] == 2503


def test_empty_plan_has_no_chunks(tmp_path):
    summary = PlanWriter(tmp_path).close(listing_complete=True)
    assert summary["chunks"] == [] and summary["delete_count"] == 0
    assert not list((tmp_path).glob("plan/*.jsonl"))


def test_rewriting_a_plan_drops_the_old_chunks(tmp_path):
    first = PlanWriter(tmp_path, chunk_size=2)
    for item in _items(5):
        first.add(item)
    first.close(listing_complete=True)
    second = PlanWriter(tmp_path, chunk_size=2)
    second.add(PlanItem("only", 1, "r"))
    summary = second.close(listing_complete=True)
    assert sorted(p.name for p in (tmp_path / "plan").iterdir()) == ["00000.jsonl"]
    assert summary["chunks"] == ["00000"]


def test_plan_item_needs_key_and_reason(tmp_path):
    writer = PlanWriter(tmp_path)
    with pytest.raises(ValueError, match="non-empty key"):
        writer.add(PlanItem("", 1, "r"))
    with pytest.raises(ValueError, match="needs a reason"):
        writer.add(PlanItem("a", 1, ""))


def test_versions_round_trip(tmp_path):
    writer = PlanWriter(tmp_path)
    item = PlanItem("a", 3, "r", version_id="v1", last_modified="2020-01-01T00:00:00.000Z", group="g")
    writer.add(item)
    writer.close(listing_complete=True)
    assert read_chunk(tmp_path, "00000") == [item]


_NULL = PlanItem("k", 1, "r", version_id="null", etag="abc")


@pytest.mark.parametrize(("item", "versioning", "sent", "kept_because"), [
    (PlanItem("k", 1, "r", etag="abc"), None, {"Key": "k", "ETag": '"abc"'}, None),  # a current object
    (PlanItem("k", 1, "r", version_id="v1", etag="abc"), "Suspended", {"Key": "k", "VersionId": "v1"}, None),
    (_NULL, "Enabled", {"Key": "k", "VersionId": "null"}, None),  # no PUT writes null any more
    (_NULL, "Disabled", {"Key": "k", "ETag": '"abc"'}, None),  # never versioned: null is the object itself
    (PlanItem("k", 1, "r", version_id="null"), "Disabled", None, "no ETag was recorded"),
    (_NULL, "Suspended", None, "versioning is Suspended"),
    (_NULL, "unknown (GetBucketVersioning: AccessDenied: no)", None, "s3:GetBucketVersioning"),
])
def test_a_null_version_is_deleted_only_where_its_delete_cannot_take_newer_content(item, versioning, sent,
                                                                                  kept_because):
    from include.deletion.plan import _s3_ident, null_version_kept

    why = null_version_kept(item, versioning) if versioning is not None else None
    if kept_because is None:
        assert why is None and _s3_ident(item, versioning) == sent
    else:
        assert why is not None and kept_because in why and why.startswith("kept: ")


@pytest.mark.parametrize(("planned_etag", "now", "kept_because"), [
    ("abc", ("object", "abc"), None),  # what the plan saw
    ("abc", ("object", "def"), "is now an object with ETag def, not an object with ETag abc"),
    ("abc", ("delete_marker", ""), "is now a delete marker"),
    ("", ("delete_marker", ""), None),  # a marker then and now
    ("", ("object", "def"), "is now an object with ETag def, not a delete marker"),
    ("abc", ("gone", ""), "no longer in the bucket"),
    ("abc", ("unknown", "HeadObject: AccessDenied"), "could not be checked against the plan (HeadObject: AccessDenied)"),
])
def test_a_null_version_is_checked_against_the_plan_before_its_delete_by_id(monkeypatch, planned_etag, now,
                                                                            kept_because):
    import include.aws.client as aws_client
    from include.deletion.plan import null_versions_changed

    asked = []
    monkeypatch.setattr(aws_client, "head_version", lambda client, bucket, key, vid: asked.append((key, vid)) or now)
    found = null_versions_changed(object(), "b", [PlanItem("k", 1, "r", version_id="null", etag=planned_etag)])
    assert asked == [("k", "null")]
    if kept_because is None:
        assert found == {}
    else:
        assert list(found) == [("k", "null")] and kept_because in found[("k", "null")]


def test_a_folder_that_records_deletions_keeps_that_record_when_planned_again(tmp_path, monkeypatch):
    from include.core import artifacts
    from include.deletion.plan import PlanWriter, keep_earlier_record, recorded_deletions

    (tmp_path / "audit").mkdir()
    (tmp_path / "task_results").mkdir()
    (tmp_path / "audit" / "00000.json").write_text(json.dumps({"plan_id": "p1", "deleted": []}))  # a dry run's
    (tmp_path / "task_results" / "purge_job_rows.json").write_text(json.dumps({"plan_id": "p1", "deleted": 0}))
    assert recorded_deletions(tmp_path) == [] and keep_earlier_record(tmp_path) is None
    (tmp_path / "task_results" / "purge_job_rows.json").write_text(json.dumps({"plan_id": "p1", "deleted": 3}))
    (tmp_path / "audit" / "00001.json").write_text("{not json")  # unreadable: it may record deletions
    assert recorded_deletions(tmp_path) == ["audit/00001.json", "task_results/purge_job_rows.json"]
    for name, text in (("plan.json", '{"plan_id": "p1"}'), ("approval.json", "{}"), ("settings.json", "{}")):
        (tmp_path / name).write_text(text)
    (tmp_path / "plan").mkdir()
    (tmp_path / "plan" / "00000.jsonl").write_text("{}\n")
    before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    real = artifacts.read_bytes  # interrupted after three files: the next attempt goes on into the same folder
    calls = []
    monkeypatch.setattr(artifacts, "read_bytes", lambda path: calls.append(path) or (
        real(path) if len(calls) <= 3 else (_ for _ in ()).throw(OSError("store gone"))))
    with pytest.raises(OSError):
        keep_earlier_record(tmp_path)
    monkeypatch.setattr(artifacts, "read_bytes", real)
    assert recorded_deletions(tmp_path)  # the deletion records move last
    PlanWriter(tmp_path).close(listing_complete=True)
    moved = {p.relative_to(tmp_path / "earlier" / "p1"): p.read_bytes()
             for p in (tmp_path / "earlier" / "p1").rglob("*") if p.is_file()}
    assert moved == {k: v for k, v in before.items() if str(k) != "settings.json"}
    assert (tmp_path / "settings.json").exists() and recorded_deletions(tmp_path) == []
    assert json.loads((tmp_path / "plan.json").read_text())["plan_id"] != "p1"


class Interrupted(Exception):
    """The process stopped here (a kill, a lost worker): nothing after it runs."""


#: a retention run that deleted (audit/00000) and whose purge ran (and purged nothing): its whole record
DELETED_AND_PURGED = {
    "plan.json": {"plan_id": "p1", "chunks": ["00000", "00001"]}, "approval.json": {"approved_by": "ann"},
    "audit.json": {"plan_id": "p1", "outcome": "deleted"}, "plan/00000.jsonl": {"key": "k"},
    "audit/00000.json": {"plan_id": "p1", "deleted": [{"key": "k"}]}, "audit/00001.json": {"plan_id": "p1", "deleted": []},
    "expired_trial_rows/00000.jsonl": {"jobId": "j1"}, "task_results/purge_job_rows.json": {"plan_id": "p1", "deleted": 0},
}


def _files(folder: Any) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, step: int) -> list[int]:
    """Make the ``step``-th read, write or removal of the artifact store stop the process; returns the count."""
    from include.core import artifacts

    count = [0]
    for name in ("read_bytes", "write_bytes", "remove"):
        real = getattr(artifacts, name)

        def stepped(*args: Any, _real: Any = real) -> Any:
            count[0] += 1
            if count[0] == step:
                raise Interrupted(f"stopped at step {step}")
            return _real(*args)
        monkeypatch.setattr(artifacts, name, stepped)
    return count


@pytest.mark.parametrize("then", ["planned again", "given up, then housekeeping"])
def test_a_record_move_stopped_at_any_step_is_finished_by_whoever_comes_next(tmp_path, monkeypatch, then):
    """The move to earlier/ went file by file with the deletion records last, and went on only while deletions
    were left at the top. Stopped after the last of them moved, the next plan left the rest at the top; given
    up, housekeeping pruned the moved purge's rows (its result still at the top) as rows of no purge."""
    from datetime import UTC, datetime, timedelta

    from include.core.housekeeping import housekeep
    from include.deletion.plan import keep_earlier_record

    step = 0
    while True:
        step += 1
        root = tmp_path / f"step{step}"
        run = root / "s3_retention" / "r1"
        for rel, doc in {**DELETED_AND_PURGED, "settings.json": {}}.items():
            (run / rel).parent.mkdir(parents=True, exist_ok=True)
            (run / rel).write_text(json.dumps(doc))
        record = {k: v for k, v in _files(run).items() if k != "settings.json"}
        with monkeypatch.context() as m:
            count = _interrupt_at(m, step)
            try:
                keep_earlier_record(run)
                done = True
            except Interrupted:
                done = False
        if then == "planned again":
            keep_earlier_record(run)
            assert _files(run / "earlier" / "p1") == record, f"step {step}"
            assert set(_files(run)) == {"settings.json", *(f"earlier/p1/{k}" for k in record)}, f"step {step}"
        else:
            now = datetime.now(UTC)
            for later in (31, 62):  # past the artifact retention: finished (a fresh write), then trimmed
                housekeep(root, {}, now=now + timedelta(days=later))
            left = _files(run)
            if any(k.startswith("earlier/") for k in left):  # the move had begun: all of it, once
                assert left == {f"earlier/p1/{k}": v for k, v in record.items()}, f"step {step}"
            else:  # it had not: the record as a run that was never planned again keeps it
                assert left == {k: v for k, v in record.items() if not k.startswith(("plan/", "approval"))}, step
        if done:
            break
    assert step > len(record) * 3  # every read, write and removal of the move was a stopping point
    assert count[0] == step - 1


@pytest.mark.parametrize("note", [b'{"to": "../../elsewhere"}', b'{"to": "moving.json"}', b'{"to": ""}', b"[1]",
                                  b"{not json", b'{"to": ["p1"]}'])
def test_a_record_move_whose_note_names_no_folder_is_left_as_it_is_and_named(tmp_path, note):
    """What a damaged note meant is unknown: the plan task fails naming it, housekeeping keeps the folder."""
    from datetime import UTC, datetime, timedelta

    from include.core.housekeeping import housekeep
    from include.deletion.plan import keep_earlier_record

    run = tmp_path / "s3_retention" / "r1"
    for rel, doc in DELETED_AND_PURGED.items():
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_text(json.dumps(doc))
    (run / "earlier").mkdir()
    (run / "earlier" / "moving.json").write_bytes(note)
    before = _files(run)
    with pytest.raises(ValueError, match=r"moving\.json does not name the folder"):
        keep_earlier_record(run)
    report = housekeep(tmp_path, {}, now=datetime.now(UTC) + timedelta(days=450))
    assert _files(run) == before
    assert [d["unfinished_record_moves_kept"] for d in report["dags"]] == [
        [f"r1: {run / 'earlier' / 'moving.json'} does not name the folder a record was being moved to: the move was "
         "not finished; move the run's files into the right earlier/<plan id>/ folder and remove the note"]]


@pytest.mark.parametrize("link", ["task_results", "audit/00001.json", "earlier/p1", "earlier/p1/audit", "earlier"])
def test_a_record_move_through_a_symbolic_link_touches_nothing_outside_the_run_folder(tmp_path, link):
    """A link in the run folder (a record folder or file that is one, or earlier/, earlier/<plan id>/ or a folder
    in it one to another run's folder) made the move read another run's record, write over it and remove it
    (another run's purge rows lost, its audit overwritten): refused, naming the link, and nothing moves."""
    from datetime import UTC, datetime, timedelta

    from include.core.housekeeping import housekeep
    from include.deletion.plan import keep_earlier_record

    run, other = tmp_path / "s3_retention" / "r1", tmp_path / "elsewhere"
    for rel, doc in DELETED_AND_PURGED.items():
        for folder in (run, other):
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(json.dumps({**doc, "run": folder.name}))
    for name in ("earlier/p1/audit", "earlier/p1", "earlier"):  # destinations that stand as links: none there yet
        (other / name).mkdir(parents=True, exist_ok=True)
    if (run / link).is_dir():
        shutil.rmtree(run / link)
    (run / link).unlink(missing_ok=True)
    (run / link).parent.mkdir(parents=True, exist_ok=True)
    (run / link).symlink_to(other / link if link.startswith(("task_results", "audit")) else other)
    (run / "earlier").mkdir(exist_ok=True)
    (run / "earlier" / "moving.json").write_bytes(b'{"to": "p1"}')
    before, theirs = _files(run), _files(other)
    with pytest.raises(ValueError, match="is a symbolic link or lies behind one: the record was not moved"):
        keep_earlier_record(run)
    assert _files(other) == theirs and _files(run) == before
    report = housekeep(tmp_path, {}, now=datetime.now(UTC) + timedelta(days=40))  # past the artifacts' 30 days
    assert _files(other) == theirs
    if link != "earlier":  # a linked earlier/ is not followed: its note is not seen, the run is trimmed as any
        assert _files(run) == before
        assert ["is a symbolic link or lies behind one" in k for d in report["dags"]
                for k in d["unfinished_record_moves_kept"]] == [True]


def test_asking_again_after_deletions_is_refused(tmp_path):
    """approve asking again would remove approval.json, the record of who approved what was deleted."""
    from include.deletion.plan import AlreadyDeleted, refuse_after_deletions

    refuse_after_deletions(tmp_path, "asking again")  # nothing deleted: fine
    (tmp_path / "audit").mkdir()
    (tmp_path / "audit" / "00000.json").write_text(json.dumps({"plan_id": "p1", "deleted": [{"key": "k"}]}))
    with pytest.raises(AlreadyDeleted, match=r"records deletions \(audit/00000.json\): asking again would replace"):
        refuse_after_deletions(tmp_path, "asking again")


@pytest.mark.parametrize("bad", ["../x", "00000.jsonl", "", "abc"])
def test_read_chunk_rejects_names_that_are_not_chunks(tmp_path, bad):
    with pytest.raises(ValueError, match="not a plan chunk name"):
        read_chunk(tmp_path, bad)


def _summary(**kw):
    return {"delete_count": 10, "scanned_count": 100, "listing_complete": True, **kw}


def test_guards_pass_within_limits():
    check_guards(_summary(), max_delete_count=10, max_delete_fraction=0.1)
    check_guards(_summary(), max_delete_count=10, max_delete_fraction=None)
    check_guards(_summary(delete_count=0, scanned_count=0), max_delete_count=0, max_delete_fraction=0.0)


def test_guards_name_every_violated_limit():
    with pytest.raises(GuardRefused) as exc:
        check_guards(
            _summary(delete_count=60, listing_complete=False, refusals=["the jobs table is empty"]),
            max_delete_count=50, max_delete_fraction=0.5, refusals=["policy says no"],
        )
    text = str(exc.value)
    assert "nothing was deleted" in text
    for part in ("policy says no", "the jobs table is empty", "listing was incomplete",
                 "max_delete_count=50", "max_delete_fraction=0.5", "60 of 100"):
        assert part in text
    assert len(exc.value.violations) == 5


def test_fraction_guard_with_nothing_scanned_refuses_any_deletion():
    assert guard_violations(_summary(scanned_count=0), max_delete_count=100, max_delete_fraction=1.0) == []
    assert guard_violations(_summary(scanned_count=0), max_delete_count=100, max_delete_fraction=0.99)


def test_bad_limits_are_rejected():
    with pytest.raises(ValueError, match="max_delete_count"):
        check_guards(_summary(), max_delete_count=-1, max_delete_fraction=None)
    with pytest.raises(ValueError, match="max_delete_fraction"):
        check_guards(_summary(), max_delete_count=1, max_delete_fraction=1.5)
