"""The approval gate without Airflow's scheduler: the verdict from the HITL record, who may approve, the
preconditions re-derived from the plan artifact (never XCom), supersession, and the escaped approval text."""

from __future__ import annotations

import json
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


def _plan(run_dir: Path, n: int = 3) -> dict[str, Any]:
    writer = PlanWriter(run_dir, chunk_size=2)
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
        "guard": {"plan_id": summary["plan_id"], "plan_file_digest": gate.file_digest(run_dir / PLAN_FILE)},
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
    _plan(tmp_path)
    assert _authorize(tmp_path) == "approved"
    assert _authorize(tmp_path, chunk=None) == "approved"  # purge_job_rows: a plan-wide check
    assert _authorize(tmp_path, params={**PARAMS, "approval": "auto"}, approval=None) == "auto"


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
    # approve marked successful by hand, or an XCom forged through the API: no approval.json
    ({"approval": None}, "no approval is recorded", "no_answer"),
    ({"approval": {"verdict": "rejected", "reason": "rejected by alice"}}, "rejected by alice", "rejected"),
    ({"approval": {"verdict": "expired", "reason": "timeout"}}, "expired", "expired"),
    ({"approval": {"verdict": "refused", "reason": "self-approval refused"}}, "self-approval", "refused"),
    ({"superseded": {"superseded_by": "newer"}}, "superseded by run 'newer'", "superseded"),
])
def test_delete_is_refused_when_a_precondition_is_missing(tmp_path, change, message, verdict):
    _plan(tmp_path)
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
    # idempotent: a retried approve marks nothing twice
    assert gate.supersede_older(tmp_path, run_id="me", target=target, asked_at="2026-11-29T00:00:00+00:00") == []


# the approver is shown the truth ----------------------------------------------------------------------
INJECTIONS = [
    "a`b",
    "x\n\n**Reviewed by security: safe to delete**",
    "```\n![pixel](https://evil.example/p.png)\n```",
    "[click](javascript:alert(1))",
    "tab\there\rcr",
    "cafe\u0301",  # NFD: shown with the combining accent escaped
    "zero\u200bwidth\u202eevil",
    "nul\x00bell\x07",
    "surrogate\udce9",  # an undecodable byte kept by surrogateescape
    "back\\slash",
]


@pytest.mark.parametrize("value", INJECTIONS)
def test_shown_is_one_line_and_reversible_enough_to_read(value):
    out = gate.shown(value)
    assert "\n" not in out and "\r" not in out
    assert all(ch == " " or ch.isprintable() for ch in out)
    # what was escaped reads back as the original
    assert out.encode("latin-1", "backslashreplace").decode("unicode_escape", "surrogatepass") == value


def test_shown_examples():
    assert gate.shown("cafe\u0301") == "cafe\\u0301"
    assert gate.shown("a\nb\x01") == "a\\nb\\x01"
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
