"""The approval gate without Airflow's scheduler: the verdict from the HITL record, who may approve, the
preconditions re-derived from the plan artifact (never XCom), supersession, and the escaped approval text."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from include.core import artifacts
from include.deletion import approval as gate
from include.deletion.approval import DeleteRefused
from include.deletion.plan import PLAN_DIR, PLAN_FILE, PlanItem, PlanWriter

PARAMS = {"approval": "required", "dry_run": False, "max_delete_count": 100, "max_delete_fraction": None}
ALICE = {"id": "alice", "name": "alice"}


def _record(chosen: list[str], user: dict[str, str] | None = ALICE) -> dict[str, Any]:
    return {"response_received": True, "chosen_options": chosen, "responded_by_user": user,
            "responded_at": "2026-11-30T10:00:00+00:00"}


def _plan(run_dir: Path, n: int = 3, params: dict[str, Any] = PARAMS) -> dict[str, Any]:
    writer = PlanWriter(run_dir, chunk_size=2, settings=params)
    for i in range(n):
        writer.note_scanned(10)
        writer.add(PlanItem(key=f"k{i}", size=10, reason="orphan"))
    for _ in range(n):
        writer.note_scanned(10)
    return writer.close(listing_complete=True)


def _approved(run_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """What approve writes after a valid Approve: the verdict pinned to the plan's digests."""
    digests = gate.plan_digests(run_dir, summary["chunks"])
    return {"verdict": gate.APPROVED, "reason": "approved by alice", "plan_id": summary["plan_id"], **digests}


def _authorize(run_dir: Path, chunk: str | None = "00000", **over: Any) -> str:
    summary = json.loads((run_dir / PLAN_FILE).read_text())
    args: dict[str, Any] = {
        "plan": summary, "params": PARAMS, "chunk": chunk,
        "plan_file_digest": gate.file_digest(run_dir / PLAN_FILE),
        "chunk_digest": gate.file_digest(run_dir / PLAN_DIR / f"{chunk}.jsonl")
        if chunk and (run_dir / PLAN_DIR / f"{chunk}.jsonl").exists() else None,
        "guard": {"plan_id": summary["plan_id"], "passed": True, "plan_file_digest": gate.file_digest(run_dir / PLAN_FILE)},
        "approval": _approved(run_dir, summary), "superseded": None, "max_map_length": 1024,
    }
    args.update(over)
    return gate.authorize(**args)


# the verdict comes from the HITL record --------------------------------------------------------------
def test_judge_reads_who_answered_what():
    kw = {"approvers": [], "separate_approver": True, "triggered_by": "bob"}
    assert gate.judge(_record(["Approve"]), **kw) == ("approved", "approved by alice")
    assert gate.judge(_record(["Reject"]), **kw)[0] == "rejected"
    # Airflow applies the default (Reject) at the timeout with nobody as the responder
    assert gate.judge(_record(["Reject"], user=None), **kw)[0] == "expired"
    assert gate.judge({"response_received": False, "chosen_options": None}, **kw)[0] == "no_answer"


def test_judge_refuses_a_user_not_in_approvers_and_a_self_approval():
    verdict, reason = gate.judge(_record(["Approve"]), approvers=["carol"], separate_approver=False, triggered_by=None)
    assert verdict == "refused" and "'alice'" in reason and "not in approvers" in reason
    verdict, reason = gate.judge(_record(["Approve"]), approvers=[], separate_approver=True, triggered_by="alice")
    assert verdict == "refused" and "self-approval" in reason
    # off: the triggering user may approve; a scheduled run has no triggering user
    assert gate.judge(_record(["Approve"]), approvers=[], separate_approver=False, triggered_by="alice")[0] == "approved"
    assert gate.judge(_record(["Approve"]), approvers=["alice"], separate_approver=True, triggered_by=None)[0] == "approved"
    # a reject is a reject, whoever gives it: it deletes nothing
    assert gate.judge(_record(["Reject"]), approvers=["carol"], separate_approver=True, triggered_by="alice")[0] == "rejected"


def test_assigned_users_leave_out_the_triggering_user():
    assert gate.assigned_users(["alice", "bob"], separate_approver=True, triggered_by="bob") == [ALICE]
    assert gate.assigned_users(["alice", "bob"], separate_approver=False, triggered_by="bob") == [
        ALICE, {"id": "bob", "name": "bob"}]
    assert gate.assigned_users([], separate_approver=True, triggered_by="bob") == []
    with pytest.raises(ValueError, match="nobody may approve"):
        gate.assigned_users(["bob"], separate_approver=True, triggered_by="bob")


@pytest.mark.parametrize("bad", [[""], ["  "], [1], "x,y" * 0 or 5, {"a": 1}])
def test_clean_approvers_rejects_odd_values(bad):
    with pytest.raises(ValueError, match="approvers must be a list"):
        gate.clean_approvers(bad)


def test_clean_approvers():
    assert gate.clean_approvers(None) == [] and gate.clean_approvers([]) == []
    assert gate.clean_approvers(["alice", " alice ", "bob"]) == ["alice", "bob"]


# preconditions from the artifact store ----------------------------------------------------------------
def test_delete_is_authorised_when_everything_holds(tmp_path):
    summary = _plan(tmp_path)
    assert _authorize(tmp_path) == "approved"
    # a guard.json from before the guard recorded refusals: written only when it passed, without "passed"
    legacy = {"plan_id": summary["plan_id"], "plan_file_digest": gate.file_digest(tmp_path / PLAN_FILE)}
    assert _authorize(tmp_path, guard=legacy) == "approved"
    assert _authorize(tmp_path, chunk=None) == "approved"  # purge_job_rows: a plan-wide check
    auto = {**PARAMS, "approval": "auto"}
    _plan(tmp_path, params=auto)
    assert _authorize(tmp_path, params=auto, approval=None) == "auto"


@pytest.mark.parametrize(("change", "message", "verdict"), [
    ({"plan": None}, "no plan.json", ""),
    ({"chunk": "00009"}, "not part of the plan", ""),
    ({"params": {**PARAMS, "dry_run": True}}, "dry run", "dry_run"),
    ({"params": {**PARAMS, "approval": "sometimes"}}, "approval must be", ""),
    ({"params": {**PARAMS, "max_delete_count": 2}}, "more than max_delete_count=2", ""),
    ({"params": {**PARAMS, "max_delete_fraction": 0.1}}, "max_delete_fraction", ""),
    ({"max_map_length": 1}, "more than Airflow's max_map_length=1", ""),
    ({"guard": None}, "the guard did not check this plan", ""),
    ({"guard": {"plan_id": "other"}}, "the guard did not check this plan", ""),
    ("refused guard", "the guard refused this plan", ""),
    # approve marked successful by hand, or an XCom forged through the API: no approval.json
    ({"approval": None}, "no approval is recorded", "no_answer"),
    ({"approval": {"verdict": "rejected", "reason": "rejected by alice"}}, "rejected by alice", "rejected"),
    ({"approval": {"verdict": "expired", "reason": "timeout"}}, "expired", "expired"),
    ({"approval": {"verdict": "refused", "reason": "self-approval refused"}}, "self-approval", "refused"),
    ({"superseded": {"superseded_by": "newer"}}, "superseded by run 'newer'", "superseded"),
])
def test_delete_is_refused_when_a_precondition_is_missing(tmp_path, change, message, verdict):
    summary = _plan(tmp_path, params=change.get("params", PARAMS) if isinstance(change, dict) else PARAMS)
    if change == "refused guard":  # the guard's record of this very plan, saying it refused it
        change = {"guard": {"plan_id": summary["plan_id"], "passed": False, "refusals": ["a limit"],
                            "plan_file_digest": gate.file_digest(tmp_path / PLAN_FILE)}}
    with pytest.raises(DeleteRefused, match=message) as info:
        _authorize(tmp_path, **change)
    assert info.value.verdict == verdict


def test_an_approval_holds_only_for_the_plan_it_was_given_for(tmp_path):
    summary = _plan(tmp_path)
    approval = _approved(tmp_path, summary)
    _plan(tmp_path)  # the plan task ran again: a new plan id, new files
    with pytest.raises(DeleteRefused, match="another plan"):
        _authorize(tmp_path, approval=approval)
    # a chunk rewritten after the approval (same plan.json): that chunk is refused
    summary = _plan(tmp_path)
    approval = _approved(tmp_path, summary)
    chunk = tmp_path / PLAN_DIR / "00000.jsonl"
    chunk.write_text(chunk.read_text().replace('"k0"', '"precious"'))
    with pytest.raises(DeleteRefused, match="chunk 00000 changed"):
        _authorize(tmp_path, approval=approval)
    assert _authorize(tmp_path, chunk="00001", approval=approval) == "approved"


@pytest.mark.parametrize(("verdict", "guard_failed", "refused", "failed", "outcome"), [
    ("no_answer", True, True, True, "guard_refused"),  # the guard refused: whatever the approval said
    ("no_answer", True, False, True, "failed"),  # the guard failed on its own (approval: required)
    ("dry_run", True, False, True, "failed"),  # a dry run whose guard failed did not finish
    ("auto", True, False, True, "failed"),
    ("auto", False, False, True, "failed"),  # delete failed
    ("superseded", False, False, False, "superseded"),
    ("no_answer", False, False, False, "not_approved"),
    ("approved", False, False, False, "deleted"),
])
def test_audit_outcome_says_guard_refused_only_for_a_refusal(verdict, guard_failed, refused, failed, outcome):
    assert gate.audit_outcome(verdict, has_chunks=True, failed=failed, guard_failed=guard_failed,
                              refused=refused) == outcome
    assert gate.audit_outcome("auto", has_chunks=False, failed=False, guard_failed=False, refused=False) == \
        "nothing_to_delete"


def test_guard_refused_reads_this_plans_record_only():
    plan = {"plan_id": "p2"}
    assert gate.guard_refused({"plan_id": "p2", "passed": False}, plan)
    assert not gate.guard_refused({"plan_id": "p1", "passed": False}, plan)  # an earlier plan's refusal
    assert not gate.guard_refused({"plan_id": "p2", "passed": True}, plan)
    assert not gate.guard_refused({"plan_id": "p2"}, plan) and not gate.guard_refused(None, plan)


def test_verdict_of():
    assert gate.verdict_of({"dry_run": True, "approval": "auto"}, None, None) == "dry_run"
    assert gate.verdict_of({"approval": "auto"}, None, None) == "auto"
    assert gate.verdict_of({"approval": "required"}, None, None) == "no_answer"
    assert gate.verdict_of({"approval": "required"}, None, {"superseded_by": "r2"}) == "superseded"
    assert gate.verdict_of({"approval": "required"}, {"verdict": "approved"}, None) == "approved"


def test_supersede_older_marks_only_waiting_requests_of_the_same_target(tmp_path):
    target = {"bucket": "b", "prefix": "p/"}

    def request(run: str, asked_at: str, tgt: dict[str, str] = target, answered: bool = False) -> None:
        artifacts.write_json(tmp_path / run / gate.REQUEST_FILE, {"plan_id": run, "target": tgt, "asked_at": asked_at})
        if answered:
            artifacts.write_json(tmp_path / run / gate.APPROVAL_FILE, {"verdict": "approved"})

    request("old", "2026-11-28T00:00:00+00:00")
    request("answered", "2026-11-28T00:00:00+00:00", answered=True)
    request("other-target", "2026-11-28T00:00:00+00:00", {"bucket": "b", "prefix": "q/"})
    request("newer", "2026-11-30T00:00:00+00:00")
    (tmp_path / "no-request").mkdir()
    request("me", "2026-11-29T00:00:00+00:00")
    assert gate.supersede_older(tmp_path, run_id="me", target=target, asked_at="2026-11-29T00:00:00+00:00") == ["old"]
    marker = json.loads((tmp_path / "old" / gate.SUPERSEDED_FILE).read_text())
    assert marker["superseded_by"] == "me" and marker["plan_id"] == "old"
    assert not (tmp_path / "newer" / gate.SUPERSEDED_FILE).exists()
    assert not (tmp_path / "me" / gate.SUPERSEDED_FILE).exists()  # it only closes older requests
    # idempotent: a retried approve marks nothing twice
    assert gate.supersede_older(tmp_path, run_id="me", target=target, asked_at="2026-11-29T00:00:00+00:00") == []


@pytest.mark.parametrize("same_instant", [False, True])
@pytest.mark.parametrize("first_to_look", ["earlier", "later"])
def test_two_runs_asking_at_once_leave_exactly_one_request_waiting(tmp_path, first_to_look, same_instant):
    """Each run writes its request, then looks for the others'. The one that looks first may find nothing yet
    (the other's file is not written); the one that looks last sees the other. Whatever the order, the later
    request (``asked_at``, then the run id) waits and the earlier one is closed: both left waiting was the bug.
    An older request still waiting is closed in favour of the one that waits, not of the one that gave way."""
    target = {"bucket": "b", "prefix": "p/"}
    asked = {"earlier": "2026-11-29T00:00:00+00:00",
             "later": "2026-11-29T00:00:00+00:00" if same_instant else "2026-11-29T00:00:01+00:00"}
    runs = {"earlier": "run-a", "later": "run-b"}  # on a tie, run-b is the later one by its id
    artifacts.write_json(tmp_path / "old" / gate.REQUEST_FILE,
                         {"plan_id": "plan-old", "target": target, "asked_at": "2026-11-28T00:00:00+00:00"})
    now = datetime(2026, 11, 29, 0, 0, 2, tzinfo=UTC)  # both looked within two seconds

    def ask(which: str) -> tuple[list[str], str | None]:
        request = {"plan_id": f"plan-{which}", "target": target, "asked_at": asked[which]}
        artifacts.write_json(tmp_path / runs[which] / gate.REQUEST_FILE, request)
        return gate.supersede_waiting(tmp_path, run_id=runs[which], request=request, now=now)

    second = "later" if first_to_look == "earlier" else "earlier"
    assert ask(first_to_look) == (["old"], None)  # the other's request is not written yet
    # looking last, the earlier run gives way to run-b; the later run closes run-a's request itself
    assert ask(second) == (([], "run-b") if second == "earlier" else (["run-a"], None))

    def waiting(run: str) -> bool:
        request = json.loads((tmp_path / run / gate.REQUEST_FILE).read_text())
        return not gate.closes(gate.read_optional(tmp_path / run / gate.SUPERSEDED_FILE), request)

    assert (waiting("old"), waiting("run-a"), waiting("run-b")) == (False, False, True)
    marker = json.loads((tmp_path / "run-a" / gate.SUPERSEDED_FILE).read_text())
    assert (marker["superseded_by"], marker["plan_id"], marker["request_asked_at"]) == (
        "run-b", "plan-earlier", asked["earlier"])
    # the earlier run, looking first, closed the old request in its own favour; looking last, in run-b's
    old = json.loads((tmp_path / "old" / gate.SUPERSEDED_FILE).read_text())
    assert old["superseded_by"] == ("run-a" if first_to_look == "earlier" else "run-b")


@pytest.mark.parametrize(("ahead", "closes_mine"), [
    (timedelta(seconds=30), True),  # written already, dated within the clock skew
    (timedelta(seconds=61), False),  # dated after this worker's clock plus the skew: no racer wrote it
    (timedelta(days=3000), False),  # a stale or hand-written file
])
def test_only_a_request_written_by_now_closes_this_one(tmp_path, ahead, closes_mine):
    """A later request closes this run's own only if it could have been asked by now (CLOCK_SKEW aside): one
    dated ahead is a clock ahead or a file written by hand, and both wait (a pile-up, never every request of
    the target closed, unnoticed, until that date)."""
    target = {"bucket": "b", "prefix": "p/"}
    now = datetime(2026, 11, 29, tzinfo=UTC)
    artifacts.write_json(tmp_path / "ahead" / gate.REQUEST_FILE,
                         {"plan_id": "x", "target": target, "asked_at": (now + ahead).isoformat()})
    request = {"plan_id": "m", "target": target, "asked_at": (now - timedelta(seconds=1)).isoformat()}
    artifacts.write_json(tmp_path / "me" / gate.REQUEST_FILE, request)
    assert gate.supersede_waiting(tmp_path, run_id="me", request=request, now=now) == (
        [], "ahead" if closes_mine else None)
    assert (tmp_path / "me" / gate.SUPERSEDED_FILE).exists() is closes_mine
    assert not (tmp_path / "ahead" / gate.SUPERSEDED_FILE).exists()


def test_a_marker_closes_only_the_request_it_was_written_for():
    """Once approve asks again (the task cleared, the run planned again), the earlier request's marker closes
    nothing; a marker or request that does not say which request it is about still closes (deletes nothing)."""
    first, again = {"asked_at": "2026-11-28T00:00:00+00:00"}, {"asked_at": "2026-11-29T00:00:00+00:00"}
    marker = {"superseded_by": "newer", "request_asked_at": first["asked_at"]}
    assert gate.closes(marker, first) and not gate.closes(marker, again) and not gate.closes(None, first)
    assert gate.closes({"superseded_by": "newer"}, again)  # written before markers named their request
    assert gate.closes(marker, None)  # no request file: the safe side


def test_request_files_that_are_no_requests_close_nothing_and_stop_nothing(tmp_path):
    """Files written by hand into other runs' folders: an ``asked_at`` that is no time never wins over this
    run's request, a request that is no JSON object is left alone, and this run's request still waits."""
    target = {"bucket": "b", "prefix": "p/"}
    artifacts.write_json(tmp_path / "no-time" / gate.REQUEST_FILE, {"plan_id": "x", "target": target, "asked_at": "soon"})
    artifacts.write_json(tmp_path / "a-list" / gate.REQUEST_FILE, ["not", "a", "request"])  # type: ignore[arg-type]
    request = {"plan_id": "m", "target": target, "asked_at": "2026-11-29T00:00:00+00:00"}
    artifacts.write_json(tmp_path / "me" / gate.REQUEST_FILE, request)
    assert gate.supersede_waiting(tmp_path, run_id="me", request=request,
                                  now=datetime(2026, 11, 29, 0, 0, 1, tzinfo=UTC)) == ([], None)
    assert not any((tmp_path / run / gate.SUPERSEDED_FILE).exists() for run in ("no-time", "a-list", "me"))


def test_supersede_older_replaces_a_marker_left_from_an_earlier_request(tmp_path):
    """A run superseded, then asked again: its new request waits and a newer run must close it too, or
    requests would pile up behind the stale marker. A marker that names no request is left as it is."""
    target = {"bucket": "b", "prefix": "p/"}
    asked = "2026-11-29T00:00:00+00:00"
    artifacts.write_json(tmp_path / "again" / gate.REQUEST_FILE, {"plan_id": "p2", "target": target, "asked_at": asked})
    artifacts.write_json(tmp_path / "again" / gate.SUPERSEDED_FILE, {
        "superseded_by": "r1", "plan_id": "p1", "request_asked_at": "2026-11-28T00:00:00+00:00"})
    artifacts.write_json(tmp_path / "legacy" / gate.REQUEST_FILE, {"plan_id": "p3", "target": target, "asked_at": asked})
    artifacts.write_json(tmp_path / "legacy" / gate.SUPERSEDED_FILE, {"superseded_by": "r1", "plan_id": "p3"})
    assert gate.supersede_older(tmp_path, run_id="me", target=target, asked_at="2026-11-30T00:00:00+00:00") == ["again"]
    marker = json.loads((tmp_path / "again" / gate.SUPERSEDED_FILE).read_text())
    assert marker == {"superseded_by": "me", "at": "2026-11-30T00:00:00+00:00", "plan_id": "p2", "request_asked_at": asked}
    assert json.loads((tmp_path / "legacy" / gate.SUPERSEDED_FILE).read_text())["superseded_by"] == "r1"
    # a marker edited by hand into something else than an object: that run is left alone, the others are done
    artifacts.write_json(tmp_path / "odd" / gate.REQUEST_FILE, {"plan_id": "p4", "target": target, "asked_at": asked})
    (tmp_path / "odd" / gate.SUPERSEDED_FILE).write_text("5")
    with pytest.raises(ValueError, match="not a JSON object"):
        gate.read_optional(tmp_path / "odd" / gate.SUPERSEDED_FILE)
    artifacts.write_json(tmp_path / "fresh" / gate.REQUEST_FILE, {"plan_id": "p5", "target": target, "asked_at": asked})
    assert gate.supersede_older(tmp_path, run_id="later", target=target, asked_at="2026-12-01T00:00:00+00:00") == [
        "fresh"]


def test_an_approval_of_a_request_asked_again_is_not_refused_by_the_earlier_requests_marker(tmp_path):
    """The same plan, its approve cleared after a newer run superseded it, asked again and approved: the
    marker of the first request refused the delete ("superseded"), though the approvers said yes since."""
    summary = _plan(tmp_path)
    request = {"plan_id": summary["plan_id"], "asked_at": "2026-11-29T00:00:00+00:00"}
    stale = {"superseded_by": "newer", "plan_id": summary["plan_id"], "request_asked_at": "2026-11-28T00:00:00+00:00"}
    assert _authorize(tmp_path, superseded=stale, request=request) == "approved"
    with pytest.raises(DeleteRefused, match="superseded by run 'newer'"):
        _authorize(tmp_path, superseded={**stale, "request_asked_at": request["asked_at"]}, request=request)
    plan = json.loads((tmp_path / PLAN_FILE).read_text())
    assert gate.this_plans(plan, stale, None, auto=True, request=request) == (None, None)


# the approver is shown the truth ----------------------------------------------------------------------
INJECTIONS = [
    "a`b",
    "x\n\n**Reviewed by security: safe to delete**",
    "```\n![pixel](https://evil.example/p.png)\n```",
    "[click](javascript:alert(1))",
    "tab\there\rcr",
    "cafe\u0301",  # NFD: shown with the combining accent escaped
    "zero\u200bwidth\u202eevil",
    "hangul\u3164filler",  # a letter that prints blank
    "nul\x00bell\x07",
    "surrogate\udce9",  # an undecodable byte kept by surrogateescape
    "back\\slash",
]


@pytest.mark.parametrize("value", INJECTIONS)
def test_shown_is_one_line_and_reversible_enough_to_read(value):
    out = gate.shown(value)
    assert "\n" not in out and "\r" not in out
    assert all(ch == " " or ch.isprintable() for ch in out)
    # what was escaped reads back as the original (an undecodable byte as that byte)
    as_bytes = "".join(chr(ord(c) - 0xDC00) if 0xDC80 <= ord(c) <= 0xDCFF else c for c in value)
    assert out.encode("latin-1", "backslashreplace").decode("unicode_escape") == as_bytes


def test_shown_examples():
    assert gate.shown("cafe\u0301") == "cafe\\u0301"
    assert gate.shown("a\nb\x01") == "a\\nb\\u0001"  # \xNN is kept for a byte that is not UTF-8
    assert gate.shown("caf\udce9") == "caf\\xe9"
    assert gate.shown("café ok") == "café ok"  # NFC letters and spaces are shown as they are


def _fenced_blocks(markdown: str) -> list[list[str]]:
    """The contents of the fenced code blocks, parsed the CommonMark way with markdown-it."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").parse(markdown)
    return [t.content.rstrip("\n").split("\n") for t in tokens if t.type == "fence"]


def _rendered(markdown: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").render(markdown)


def test_keys_and_names_cannot_inject_markdown_into_the_approval_text():
    summary = {"headline": "Delete 1 of 2 deployments: " + INJECTIONS[2], "delete_count": len(INJECTIONS),
               "delete_bytes": 10, "scanned_count": 20, "samples": INJECTIONS, "plan_uri": "/a/plan.json",
               "by_reason": {"orphan": {"count": 1, "bytes": 1}, "x|![i](http://e/i.png)": {"count": 1, "bytes": 1}},
               "chunks": ["00000"]}
    body = gate.approval_body(summary, {"bucket": "b`\n**ok**"})
    html = _rendered(body)
    # no image, link, emphasis or heading made from the data: only our own bold count and the table
    assert "<img" not in html and "<a " not in html and "<h" not in html.replace("<hr", "")
    assert html.count("<strong>") == 1 and "Reviewed by security" not in html.split("<pre>")[0]
    blocks = _fenced_blocks(body)
    assert [gate.shown(v) for v in INJECTIONS] in blocks  # every key, escaped, one per line, inside a fence
    assert ["b`\\n**ok**"] in blocks
    assert "| (unusual reason: see the plan) | 1 | 1 B |" in body


def test_a_fence_longer_than_any_backtick_run_inside():
    text = gate.fenced(["````", "a```b"])
    assert text.startswith("`````text\n") and text.endswith("\n`````")
    assert _fenced_blocks(text) == [["````", "a```b"]]


# the approve task itself: the verdict it records when it resumes --------------------------------------
class _TI:
    dag_id, run_id, try_number = "d", "r", 1


class _Task:
    def get_direct_relatives(self, upstream: bool = False) -> list[Any]:
        class Delete:
            task_id, is_teardown = "delete", False

        return [Delete()]


def _resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, event: dict[str, Any], *, triggered_by: str | None = "bob",
            approvers: list[str] | None = None, change_plan: bool = False,
            superseded: bool | dict[str, Any] = False) -> Any:
    """Write a plan and the request approve made for it (asked at 2026-11-30 00:00), then resume approve with
    ``event``. ``superseded``: a supersession marker (True: one that names no request) in the run's folder."""
    from include.deletion.airflow import PlanApprovalOperator

    monkeypatch.setenv("S3OPS_ARTIFACT_ROOT", str(tmp_path))
    run_dir = tmp_path / "d" / "r"
    summary = _plan(run_dir)
    digests = gate.plan_digests(run_dir, summary["chunks"])
    artifacts.write_json(run_dir / gate.REQUEST_FILE, {
        "plan_id": summary["plan_id"], **digests, "approvers": approvers or [],
        "separate_approver": True, "triggered_by": triggered_by, "asked_at": "2026-11-30T00:00:00+00:00"})
    if event.get("params_input") is AS_SHOWN:  # the form sent back as the request showed it
        event = {**event, "params_input": {gate.PLAN_DIGEST_FIELD: digests["plan_digest"]}}
    if change_plan:
        chunk = run_dir / PLAN_DIR / "00001.jsonl"
        chunk.write_text(chunk.read_text().replace('"k2"', '"precious"'))
    if superseded:
        marker = superseded if isinstance(superseded, dict) else {"superseded_by": "newer"}
        artifacts.write_json(run_dir / gate.SUPERSEDED_FILE, marker)
    op = PlanApprovalOperator(task_id="approve", plan_task_id="plan", subject="s")
    skipped: list[str] = []
    monkeypatch.setattr(op, "skip", lambda ti, tasks: skipped.extend(t.task_id for t in tasks))
    return op.execute_complete({"ti": _TI(), "task": _Task(), "params": PARAMS}, event), skipped


AS_SHOWN: Any = object()


def _event(chosen: list[str], user: dict[str, str] | None = ALICE, params_input: Any = AS_SHOWN) -> dict[str, Any]:
    return {"chosen_options": chosen, "params_input": params_input, "responded_by_user": user,
            "responded_at": datetime(2026, 11, 30, 10, tzinfo=UTC), "timedout": user is None}


def _recorded(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "d" / "r" / gate.APPROVAL_FILE).read_text())


def test_approve_records_who_approved_when_and_the_plan_digest(tmp_path, monkeypatch):
    result, skipped = _resume(tmp_path, monkeypatch, _event(["Approve"]))
    rec = _recorded(tmp_path)
    request = json.loads((tmp_path / "d" / "r" / gate.REQUEST_FILE).read_text())
    assert result["verdict"] == rec["verdict"] == "approved" and skipped == []
    assert rec["responded_by"] == ALICE and rec["responded_at"] == "2026-11-30T10:00:00+00:00"
    assert rec["plan_digest"] == request["plan_digest"] and rec["chunk_digests"] == request["chunk_digests"]


@pytest.mark.parametrize(("kwargs", "event", "verdict"), [
    ({}, _event(["Reject"]), "rejected"),
    ({}, _event(["Reject"], user=None), "expired"),
    ({"superseded": True}, _event(["Approve"]), "superseded"),
])
def test_approve_skips_delete_on_reject_expiry_and_supersession(tmp_path, monkeypatch, kwargs, event, verdict):
    result, skipped = _resume(tmp_path, monkeypatch, event, **kwargs)
    assert result["verdict"] == _recorded(tmp_path)["verdict"] == verdict and skipped == ["delete"]


@pytest.mark.parametrize(("params_input", "why"), [
    ({}, "plan_digest is missing"),
    (None, "plan_digest is missing"),
    ("not a mapping", "plan_digest is missing"),
    ({"plan_digest": "sha256:" + "1" * 64}, "not the plan this request shows"),
    ({"plan_digest": "x\x1b[2Jy"}, "x\\u001b[2Jy"),  # shown escaped: no terminal control reaches the log
])
def test_an_approve_naming_another_plan_or_none_is_refused(tmp_path, monkeypatch, params_input, why):
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="nothing deleted"):
        _resume(tmp_path, monkeypatch, _event(["Approve"], params_input=params_input))
    rec = _recorded(tmp_path)
    assert rec["verdict"] == "refused" and why in rec["reason"]
    assert rec["answered_plan_digest"] == (params_input or {}).get("plan_digest") if isinstance(params_input, dict) \
        else rec["answered_plan_digest"] is None


def test_a_reject_naming_another_plan_is_still_a_reject(tmp_path, monkeypatch):
    result, skipped = _resume(tmp_path, monkeypatch, _event(["Reject"], params_input={}))
    assert result["verdict"] == "rejected" and skipped == ["delete"]


def test_approve_takes_the_answer_when_the_marker_is_about_an_earlier_request(tmp_path, monkeypatch):
    stale = {"superseded_by": "newer", "request_asked_at": "2026-11-29T00:00:00+00:00"}
    result, skipped = _resume(tmp_path, monkeypatch, _event(["Approve"]), superseded=stale)
    assert result["verdict"] == _recorded(tmp_path)["verdict"] == "approved" and skipped == []
    this = {**stale, "request_asked_at": "2026-11-30T00:00:00+00:00"}
    result, skipped = _resume(tmp_path, monkeypatch, _event(["Approve"]), superseded=this)
    assert result["verdict"] == "superseded" and skipped == ["delete"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"triggered_by": "alice"}, "self-approval refused"),
    ({"approvers": ["carol"]}, "not in approvers"),
    ({"change_plan": True}, "the plan changed while the approval request waited"),
])
def test_approve_fails_and_records_a_refused_approval(tmp_path, monkeypatch, kwargs, message):
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match=message):
        _resume(tmp_path, monkeypatch, _event(["Approve"]), **kwargs)
    assert _recorded(tmp_path)["verdict"] == "refused"


@pytest.mark.parametrize("edit", [{"approval": "auto"}, {"bucket": "another-bucket"}, {"aws_conn_id": "other"},
                                  {"mysql_conn_id": "other_db"}, {"purge_job_rows": True}, {"max_delete_count": 10**6}])
def test_settings_changed_after_the_plan_delete_nothing(tmp_path, edit):
    """settings.json is rewritten whenever the run's first task runs again. Someone who edits the Variable
    (``approval: auto``, another bucket or connection) and clears only that task must not get a plan that
    was rejected, or never answered, deleted; nor an approved plan deleted in another bucket."""
    made_with = {**PARAMS, "bucket": "b", "aws_conn_id": "aws_default", "mysql_conn_id": "db", "purge_job_rows": False}
    _plan(tmp_path, params=made_with)
    rejected = {"verdict": "rejected", "reason": "rejected by alice"}
    for approval in (rejected, None, _approved(tmp_path, json.loads((tmp_path / PLAN_FILE).read_text()))):
        with pytest.raises(DeleteRefused, match=f"not those its plan was made with .*{next(iter(edit))}") as info:
            _authorize(tmp_path, params={**made_with, **edit}, approval=approval)
        assert info.value.verdict == gate.REFUSED
    assert _authorize(tmp_path, params=made_with) == "approved"  # the settings it was made with: as before


def test_a_plan_that_does_not_record_its_settings_deletes_nothing(tmp_path):
    """A plan.json from before the settings were pinned (a run in flight across an upgrade) is planned again."""
    writer = PlanWriter(tmp_path, chunk_size=2)
    writer.add(PlanItem(key="k", size=1, reason="orphan"))
    writer.note_scanned(1)
    writer.close(listing_complete=True)
    with pytest.raises(DeleteRefused, match="does not record them"):
        _authorize(tmp_path, params={**PARAMS, "approval": "auto"}, approval=None)


def test_a_recorded_reject_or_supersession_holds_even_when_the_plan_was_made_with_approval_auto(tmp_path):
    """approval 'auto' returned before the approval record and the supersession marker were read."""
    auto = {**PARAMS, "approval": "auto"}
    plan_id = _plan(tmp_path, params=auto)["plan_id"]
    with pytest.raises(DeleteRefused, match="rejected by alice"):
        _authorize(tmp_path, params=auto, approval={"verdict": "rejected", "reason": "rejected by alice",
                                                    "plan_id": plan_id})
    with pytest.raises(DeleteRefused, match="superseded"):
        _authorize(tmp_path, params=auto, approval=None, superseded={"superseded_by": "newer"})
    assert gate.verdict_of(auto, {"verdict": "rejected"}, None) == "rejected"
    assert gate.verdict_of(auto, None, None) == "auto"


@pytest.mark.parametrize("verdict", ["approved", "rejected", "expired"])
def test_an_earlier_plans_answer_neither_blocks_nor_voids_a_plan_made_with_approval_auto(tmp_path, verdict):
    """approve skips itself with approval 'auto' and so never clears approval.json: a run answered under
    'required', then cleared and planned again under 'auto', was refused (an old Approve: "another plan") or
    ended green having deleted nothing (an old Reject or expiry). A record for another plan is not this
    plan's; one for this plan still holds."""
    auto = {**PARAMS, "approval": "auto"}
    _plan(tmp_path, params=auto)
    old = {"verdict": verdict, "reason": f"{verdict} by alice", "plan_id": "an-earlier-plan"}
    assert _authorize(tmp_path, params=auto, approval=old, superseded={"superseded_by": "r2", "plan_id": "an-earlier-plan"}) == "auto"
    assert gate.verdict_of(auto, old, None, json.loads((tmp_path / PLAN_FILE).read_text())) == "auto"
    if verdict != "approved":
        this = {**old, "plan_id": json.loads((tmp_path / PLAN_FILE).read_text())["plan_id"]}
        with pytest.raises(DeleteRefused, match=f"{verdict} by alice"):
            _authorize(tmp_path, params=auto, approval=this)


@pytest.mark.parametrize(("notified", "expected"), [
    ({"plan_id": "p1", "sent": 0, "wanted": 2}, True),
    ({"plan_id": "p1", "sent": 1, "wanted": 2}, False),  # one target had it: someone could have answered
    ({"plan_id": "p1", "sent": 0, "wanted": 0}, False),  # no target wants approval requests: nothing failed
    ({"plan_id": "p0", "sent": 0, "wanted": 2}, False),  # an earlier plan's request
    ({"plan_id": "p1", "sent": 0, "wanted": "2"}, False), (None, False),  # hand-written, or none
])
def test_an_approval_request_reached_nobody_only_when_every_send_failed(notified, expected):
    assert gate.reached_nobody(notified, {"plan_id": "p1"}) is expected


def test_a_notifier_record_that_is_no_record_is_none(tmp_path):
    """A hand-written approval_notified.json (a list, not JSON) must not make the audit fail with a traceback."""
    assert gate.read_notified(tmp_path) is None
    for text in ("[1, 2]", "{not json"):
        (tmp_path / gate.NOTIFIED_FILE).write_text(text)
        assert gate.read_notified(tmp_path) is None
    (tmp_path / gate.NOTIFIED_FILE).write_text('{"plan_id": "p1", "sent": 0, "wanted": 1}')
    assert gate.reached_nobody(gate.read_notified(tmp_path), {"plan_id": "p1"})
