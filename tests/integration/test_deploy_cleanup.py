"""s3_deploy_cleanup end to end with dag.test() on the local S3 server, plus library-level scenarios."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

NOW = datetime.now(UTC).replace(microsecond=0)


def _iso(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat()


@pytest.fixture
def bucket(s3):
    name = f"deploys-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    return name


def _seed_deployments(s3_server, bucket, ages: dict[str, float], files=("index.html", "assets/app.js"), prefix="deploys/"):
    objs = [{"key": f"{prefix}README.txt", "body": "loose", "last_modified": _iso(400)}]
    for name, age in ages.items():
        for f in files:
            objs.append({"key": f"{prefix}{name}/{f}", "size": 10, "last_modified": _iso(age)})
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": objs})


def _keys(s3, bucket, prefix=""):
    return sorted(o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                  for o in p.get("Contents", []))


def _deployments_left(s3, bucket, prefix="deploys/"):
    return sorted({k[len(prefix):].split("/")[0] for k in _keys(s3, bucket, prefix) if "/" in k[len(prefix):]})


def test_keep_n_deletes_older_deployments_and_rerun_deletes_nothing(s3, s3_server, run_dag, bucket):
    ages = {f"release-{i:03d}": 5 * (12 - i) for i in range(1, 13)}  # release-012 is the newest
    _seed_deployments(s3_server, bucket, ages)
    conf = {"bucket": bucket, "prefix": "deploys/", "keep": 5, "approval": "auto"}
    result = run_dag("s3_deploy_cleanup", conf)
    assert result.state == "success", result.task_states()
    assert _deployments_left(s3, bucket) == [f"release-{i:03d}" for i in range(8, 13)]
    assert "deploys/README.txt" in _keys(s3, bucket)
    audit = json.loads((result.artifacts() / "audit.json").read_text())
    assert audit["outcome"] == "deleted" and audit["deleted_count"] == 14 and audit["error_count"] == 0
    assert audit["deleted_by_reason"] == {"beyond_keep": {"count": 14, "bytes": 140}}
    assert result.xcom("audit")["deleted_count"] == 14

    again = run_dag("s3_deploy_cleanup", conf)
    assert again.state == "success"
    assert again.xcom("plan")["delete_count"] == 0 and again.xcom("audit")["deleted_count"] == 0
    assert again.xcom("audit")["outcome"] == "nothing_to_delete"
    assert _deployments_left(s3, bucket) == [f"release-{i:03d}" for i in range(8, 13)]


def test_a_chunk_rewritten_after_its_authorisation_is_not_what_gets_deleted(s3, s3_server, run_dag, bucket,
                                                                              monkeypatch):
    """The delete task checks the chunk's digest, then makes its S3 client and re-check. A plan written again
    in between (a cleared plan task) must not have its new chunk deleted under the old authorisation: what
    is deleted is parsed from the bytes whose digest was checked."""
    import include.aws.client as aws_client
    from include.core import artifacts

    _seed_deployments(s3_server, bucket, {"old": 30, "new": 1})
    real = aws_client.client_from_connection
    swapped: list[str] = []

    def swapping(*args: Any, **kwargs: Any) -> Any:
        for chunk in artifacts.artifact_root().glob("s3_deploy_cleanup/*/plan/00000.jsonl"):
            if (chunk.parent.parent / "guard.json").exists() and not swapped:  # the delete task's client
                rows = [json.loads(line) for line in chunk.read_text().splitlines()]
                chunk.write_text("".join(json.dumps({**row, "key": row["key"].replace("/old/", "/new/")}) + "\n"
                                         for row in rows))
                swapped.append(str(chunk))
        return real(*args, **kwargs)

    monkeypatch.setattr(aws_client, "client_from_connection", swapping)
    result = run_dag("s3_deploy_cleanup", {"bucket": bucket, "prefix": "deploys/", "keep": 1, "approval": "auto"})
    assert swapped and result.state == "success", result.task_states()
    assert _deployments_left(s3, bucket) == ["new"]
    assert _keys(s3, bucket, "deploys/new/") == ["deploys/new/assets/app.js", "deploys/new/index.html"]


def test_deployments_edited_while_the_approval_waits_fail_the_delete_without_retries(s3, s3_server, run_dag, bucket,
                                                                                      monkeypatch):
    """The same edit in a DAG run: the delete task fails once (a retry cannot make the rows the planned ones)
    and nothing is deleted."""
    import include.aws.client as aws_client
    from include.core import artifacts

    _seed_deployments(s3_server, bucket, {"old": 30, "new": 1})
    real = aws_client.client_from_connection
    edited: list[str] = []
    logical_date = NOW + timedelta(days=1, minutes=7)  # a run folder of this test's own

    def editing(*args: Any, **kwargs: Any) -> Any:
        for rows in artifacts.artifact_root().glob(f"s3_deploy_cleanup/*{logical_date.isoformat()}/deployments.jsonl"):
            if (rows.parent / "guard.json").exists() and not edited:  # the delete task's client
                _edit_deployments(rows.parent, newest="9999-12-31T00:00:00+00:00")
                edited.append(str(rows))
        return real(*args, **kwargs)

    monkeypatch.setattr(aws_client, "client_from_connection", editing)
    result = run_dag("s3_deploy_cleanup", {"bucket": bucket, "prefix": "deploys/", "keep": 1, "approval": "auto"},
                     retries=2, logical_date=logical_date)
    assert edited and result.state == "failed", result.task_states()
    assert result.task_states()[("delete", 0)] == "failed" and result.try_numbers()[("delete", 0)] == 1
    assert _deployments_left(s3, bucket) == ["new", "old"]
    audit = json.loads((result.artifacts() / "audit.json").read_text())
    assert audit["outcome"] == "failed" and audit["failed_tasks"] == ["delete_0"] and audit["deleted_count"] == 0


def test_a_run_planned_again_after_it_deleted_keeps_the_earlier_record(s3, s3_server, run_dag, bucket):
    """Planning a run again (a rerun, a backfill that reprocesses its date, a cleared plan task) replaced its
    plan, and its next delete its chunk audits: the record of what was deleted under which approval was
    gone. The earlier record now moves to earlier/<plan id>/, byte for byte, and the new plan goes on."""
    _seed_deployments(s3_server, bucket, {"old": 30, "new": 1})
    conf = {"bucket": bucket, "prefix": "deploys/", "keep": 1, "approval": "auto"}
    first = run_dag("s3_deploy_cleanup", conf, logical_date=NOW)
    assert first.state == "success" and _deployments_left(s3, bucket) == ["new"]
    names = ("plan.json", "audit.json", "audit/00000.json", "plan/00000.jsonl", "deployments.jsonl")
    record = {name: (first.artifacts() / name).read_bytes() for name in names}
    plan_id = json.loads(record["plan.json"])["plan_id"]
    _seed_deployments(s3_server, bucket, {"newer": 0.5})  # the second plan deletes "new"
    again = run_dag("s3_deploy_cleanup", conf, logical_date=NOW)
    assert again.run_id == first.run_id and again.state == "success", again.task_states()
    assert _deployments_left(s3, bucket) == ["newer"]
    kept = again.artifacts() / "earlier" / plan_id
    assert {name: (kept / name).read_bytes() for name in names} == record
    audit = json.loads((again.artifacts() / "audit.json").read_text())
    assert audit["plan_id"] != plan_id and audit["deleted_count"] == 2


def test_a_plan_task_marked_failed_after_the_deletes_does_not_hide_them(s3, s3_server, run_dag, bucket, monkeypatch):
    """Anyone who may edit task instances can mark ``plan`` failed while the deletes run. The audit used to
    refuse to write anything then; the deletions happened, so it records them (and the run fails)."""
    import include.deletion.airflow as deletion_airflow

    _seed_deployments(s3_server, bucket, {"old": 30, "new": 1})
    real = deletion_airflow.run_task_states
    monkeypatch.setattr(deletion_airflow, "run_task_states", lambda context: {**real(context), "plan": "failed"})
    when = NOW - timedelta(seconds=5)  # a run folder of its own
    result = run_dag("s3_deploy_cleanup", {"bucket": bucket, "prefix": "deploys/", "keep": 1, "approval": "auto"},
                     logical_date=when)
    assert result.state == "failed" and _deployments_left(s3, bucket) == ["new"]
    audit = json.loads((result.artifacts() / "audit.json").read_text())
    assert (audit["outcome"], audit["failed_tasks"], audit["deleted_count"]) == ("failed", ["plan"], 2)


def test_an_answer_about_an_earlier_plan_of_the_run_is_not_in_its_audit(s3, s3_server, run_dag, bucket):
    """Bob approved the run's first plan; planned again (here with approval auto), the audit recorded Bob
    as the approver of a plan he never saw, and the page showed "given by Bob"."""
    _seed_deployments(s3_server, bucket, {"old": 30, "new": 1})
    conf = {"bucket": bucket, "prefix": "deploys/", "keep": 1, "approval": "auto", "dry_run": True}
    first = run_dag("s3_deploy_cleanup", conf, logical_date=NOW)
    (first.artifacts() / "approval.json").write_text(json.dumps({
        "plan_id": "an-earlier-plan", "verdict": "approved", "responded_by": {"id": "bob", "name": "bob"}}))
    again = run_dag("s3_deploy_cleanup", {**conf, "dry_run": False}, logical_date=NOW)  # the same run, planned again
    assert again.run_id == first.run_id and again.state == "success", again.task_states()
    audit = json.loads((again.artifacts() / "audit.json").read_text())
    assert audit["approval"] == "auto" and "approval_record" not in audit and audit["deleted_count"] == 2


def test_age_only_dry_run_with_min_keep_and_protect_deletes_nothing(s3, s3_server, run_dag, bucket):
    _seed_deployments(s3_server, bucket, {"old-a": 90, "old-b": 80, "pinned": 70, "mid": 20, "new": 2})
    before = _keys(s3, bucket)
    conf = {"bucket": bucket, "prefix": "deploys/", "older_than_days": 30, "min_keep": 1,
            "protect": ["pin*"], "dry_run": True, "approval": "required"}
    result = run_dag("s3_deploy_cleanup", conf)
    assert result.state == "success", result.task_states()
    assert _keys(s3, bucket) == before
    states = result.task_states()
    assert states[("approve", -1)] == "skipped" and states[("delete", -1)] == "skipped"
    plan = result.xcom("plan")
    assert (plan["deployments_total"], plan["deployments_delete"], plan["delete_count"]) == (5, 2, 4)
    assert plan["by_reason"] == {"older_than": {"count": 4, "bytes": 40}} and plan["loose_objects"] == 1
    rows = {json.loads(line)["name"]: json.loads(line) for line in
            (result.artifacts() / "deployments.jsonl").read_text().splitlines()}
    assert {n for n, r in rows.items() if r["delete"]} == {"old-a", "old-b"}
    assert rows["pinned"]["why"] == "protected by 'pin*'" and rows["mid"]["why"] == "not older than 30 days"
    audit = json.loads((result.artifacts() / "audit.json").read_text())
    assert audit["outcome"] == "dry_run" and audit["deleted_count"] == 0 and audit["planned_count"] == 4


@pytest.mark.parametrize(("answer", "why"), [
    ({}, "did not name the plan it approves"),  # a REST client that sent no params_input
    ({"plan_digest": "sha256:" + "0" * 64}, "given for an earlier request of the run"),  # a page loaded earlier
])
def test_an_approval_that_names_another_plan_deletes_nothing(s3, s3_server, run_dag, bucket, answer, why):
    """Airflow routes an answer to whatever request of 'approve' waits when it arrives: an Approve clicked on
    a page loaded before the run planned again would approve the new plan, unseen. The request's form holds
    the digest of the plan it shows, and an answer naming another (or none) is refused."""
    _seed_deployments(s3_server, bucket, {"a": 30, "b": 20, "c": 10})
    before = _keys(s3, bucket)
    with answering_approval("Approve", params_input=answer) as (answered, shown):
        result = run_dag("s3_deploy_cleanup", {"bucket": bucket, "prefix": "deploys/", "keep": 1,
                                               "approval": "required"})
    assert answered == [result.run_id] and result.state == "failed"
    assert _keys(s3, bucket) == before
    approval = json.loads((result.artifacts() / "approval.json").read_text())
    assert approval["verdict"] == "refused" and why in approval["reason"]
    assert shown["form"] == {"plan_digest": approval["plan_digest"]}  # what the approver was shown


def test_required_approval_is_not_bypassed_by_marking_approve_successful(s3, s3_server, run_dag, bucket):
    """Defence in depth: 'approve' marked success by hand carries no Approve answer, so delete refuses."""
    _seed_deployments(s3_server, bucket, {"a": 30, "b": 20, "c": 10})
    before = _keys(s3, bucket)
    result = run_dag("s3_deploy_cleanup", {"bucket": bucket, "prefix": "deploys/", "keep": 1, "approval": "required"},
                     mark_success_pattern="approve")
    assert result.state == "failed"
    assert result.task_states()[("delete", 0)] == "failed"
    assert _keys(s3, bucket) == before
    assert not (result.artifacts() / "approval.json").exists()  # nobody answered: no approval evidence


@pytest.mark.parametrize("guard", ["marked", "refused"])
def test_nobody_is_asked_about_a_plan_the_guard_did_not_pass(s3, s3_server, run_dag, bucket, mailbox, monkeypatch,
                                                              guard):
    """A guard marked successful by hand (it wrote no guard.json), or one that recorded a refusal and was then
    marked successful: delete would refuse the plan, so approve fails at once instead of asking the approvers
    (a request, a mail) to approve what cannot be deleted."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from include.core import artifacts
    from include.deletion import approval as gate

    if guard == "refused":  # guard.json records a refusal, the task a success: as marked successful by hand
        real_write = artifacts.write_json

        def refusal_recorded(path: Any, value: Any) -> Any:
            if path.name == gate.GUARD_FILE:
                value = {**value, "passed": False, "refusals": ["the plan deletes 2 objects, more than 1"]}
            return real_write(path, value)
        monkeypatch.setattr(artifacts, "write_json", refusal_recorded)
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_DEPLOY_CLEANUP", json.dumps({"notifications": [
        {"type": "email", "to": ["approvers@example.com"]}]}))
    _seed_deployments(s3_server, bucket, {"a": 30, "b": 20, "c": 10})
    before = _keys(s3, bucket)
    # a short timeout: a request asked (the bug) expires instead of holding the suite
    conf = {"bucket": bucket, "prefix": "deploys/", "keep": 1, "approval": "required", "approval_timeout_hours": 0.01}
    result = run_dag("s3_deploy_cleanup", conf, mark_success_pattern="guard" if guard == "marked" else None,
                     retries=0, logical_date=NOW + timedelta(days=2, minutes=11 if guard == "marked" else 12))
    states = result.task_states()
    assert result.state == "failed" and states[("approve", -1)] == "failed", states
    assert _keys(s3, bucket) == before
    with create_session() as session:
        asked = session.scalars(select(HITLDetail).join(TaskInstance, HITLDetail.ti_id == TaskInstance.id).where(
            TaskInstance.dag_id == "s3_deploy_cleanup", TaskInstance.run_id == result.run_id)).all()
    assert asked == [] and not (result.artifacts() / "approval_request.json").exists()
    # the one mail says approve failed and why; no approval is requested
    assert [m["subject"].split(": nobody is asked: ")[0] for m in mailbox.wait_for(2, timeout=3)] == [
        "[s3ops] failed: s3_deploy_cleanup.approve: AirflowFailException"]
    audit = json.loads((result.artifacts() / "audit.json").read_text())
    assert (audit["deleted_count"], audit["failed_tasks"]) == (0, ["approve"])


def test_an_approval_request_that_reached_nobody_and_expired_fails_the_run(s3, s3_server, run_dag, bucket,
                                                                          monkeypatch):
    """SMTP down when the request was asked: it waited in Required Actions, expired unanswered, and the run
    succeeded as if someone had let it expire. Nobody knew; now the audit fails the run saying so."""
    from scripts.stack import free_port

    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": free_port(),  # nothing listens there
        "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "s3ops@localhost", "retry_limit": 0,
                  "timeout": 5}}))
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_DEPLOY_CLEANUP", json.dumps({"notifications": [
        {"type": "email", "to": ["approvers@example.com"]}]}))
    _seed_deployments(s3_server, bucket, {"a": 30, "b": 20, "c": 10})
    before = _keys(s3, bucket)
    conf = {"bucket": bucket, "prefix": "deploys/", "keep": 1, "approval": "required", "approval_timeout_hours": 0.01}
    result = run_dag("s3_deploy_cleanup", conf, retries=0, logical_date=NOW + timedelta(days=2, minutes=13))
    states = result.task_states()
    assert result.state == "failed" and states[("audit", -1)] == "failed" and states[("approve", -1)] == "success"
    assert _keys(s3, bucket) == before
    audit = json.loads((result.artifacts() / "audit.json").read_text())
    assert (audit["outcome"], audit["approval_request_reached_nobody"], audit["deleted_count"]) == ("expired", True, 0)
    assert json.loads((result.artifacts() / "approval_notified.json").read_text())["sent"] == 0


@contextmanager
def answering_approval(choice: str, dag_id: str = "s3_deploy_cleanup", timeout: float = 120,
                       users: tuple[str, ...] = ("tester",), params_input: dict[str, Any] | None = None):
    """Answer the run's 'approve' task as a human would, through the same code path as the REST API's
    PATCH …/hitlDetails (dag.test() only waits for such an answer), sending back the form's fields as the
    request shows them (``params_input`` instead, when given). Each user in ``users`` answers in turn until
    one is accepted; the refusals (HTTP status, detail) are collected in ``shown["refused"]``."""
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from fastapi import HTTPException
    from sqlalchemy import select

    class Approver:
        def __init__(self, name: str) -> None:
            self.name = name

        def get_id(self) -> str:
            return self.name

        def get_name(self) -> str:
            return self.name

    answered: list[str] = []
    shown: dict[str, Any] = {"refused": []}  # what the approver was shown
    stop = threading.Event()

    def answer() -> None:
        from airflow.api_fastapi.app import create_auth_manager

        create_auth_manager()  # the REST handler asks it whether a user is an assigned respondent
        deadline = time.monotonic() + timeout
        while not stop.is_set() and time.monotonic() < deadline:
            with create_session() as session:  # commits on exit: the trigger then sees the answer
                # the request waits (dag.test() runs approve's trigger in-process, the task meanwhile 'queued')
                ti = session.scalars(select(TaskInstance).join(HITLDetail, HITLDetail.ti_id == TaskInstance.id).where(
                    TaskInstance.dag_id == dag_id, TaskInstance.task_id == "approve",
                    HITLDetail.responded_at.is_(None))).first()
                if ti is not None:
                    asked = session.scalars(select(HITLDetail).where(HITLDetail.ti_id == ti.id)).one()
                    form = {k: v["value"] if isinstance(v, dict) else v for k, v in (asked.params or {}).items()}
                    shown["form"] = form
                    for name in users:
                        try:
                            update_hitl_detail(dag_id, ti.run_id, "approve", UpdateHITLDetailPayload(
                                chosen_options=[choice], params_input=form if params_input is None else params_input),
                                user=Approver(name), session=session)
                        except HTTPException as exc:
                            shown["refused"].append((name, exc.status_code, str(exc.detail)))
                            continue
                        answered.append(ti.run_id)
                        ti_id = ti.id
                        break
            if answered:
                with create_session() as session:
                    detail = session.scalars(select(HITLDetail).where(HITLDetail.ti_id == ti_id)).one()
                    shown.update(subject=detail.subject, body=detail.body)
                return
            time.sleep(0.5)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield answered, shown
    finally:
        stop.set()
        thread.join(timeout=10)


@pytest.mark.parametrize("choice", ["Approve", "Reject"])
def test_required_approval_approve_deletes_and_reject_deletes_nothing(s3, s3_server, run_dag, bucket, choice):
    _seed_deployments(s3_server, bucket, {"a": 30, "b": 20, "c": 10})
    before = _keys(s3, bucket)
    with answering_approval(choice) as (answered, shown):
        result = run_dag("s3_deploy_cleanup", {"bucket": bucket, "prefix": "deploys/", "keep": 1,
                                               "approval": "required"})
    assert answered == [result.run_id]
    assert shown["subject"] == f"s3_deploy_cleanup: approve deleting the planned objects from s3://{bucket}?"
    for part in ("Delete 2 of 3 deployments", "**4 objects** (40 B)", "| beyond_keep | 4 | 40 B |",
                 "\ndeploys/a/assets/app.js\n", str(result.artifacts() / "plan.json")):
        assert part in shown["body"]
    request = json.loads((result.artifacts() / "approval_request.json").read_text())
    assert f"Plan digest `{request['plan_digest']}`" in shown["body"]
    assert result.state == "success", result.task_states()
    audit = json.loads((result.artifacts() / "audit.json").read_text())
    if choice == "Approve":
        assert _deployments_left(s3, bucket) == ["c"]
        assert (audit["outcome"], audit["approval"], audit["deleted_count"]) == ("deleted", "approved", 4)
        # who approved, when, and the digest of the plan they were shown
        record = audit["approval_record"]
        assert record["responded_by"] == {"id": "tester", "name": "tester"} and record["responded_at"]
        assert record["plan_digest"] == request["plan_digest"]
    else:
        assert _keys(s3, bucket) == before
        assert result.task_states()[("delete", -1)] == "skipped"
        assert (audit["outcome"], audit["approval"], audit["deleted_count"]) == ("rejected", "rejected", 0)


def test_the_approver_sees_odd_deployment_names_and_keys_escaped(s3, s3_server, run_dag, bucket):
    """Deployment names and keys carrying backticks, newlines and image Markdown reach the approval text
    only escaped, inside fenced code blocks: no injected line, image or link (issue 12 item 4)."""
    from markdown_it import MarkdownIt

    evil = "x```\n**Reviewed by security: safe**\n![p](http://evil.example/p.png)"
    _seed_deployments(s3_server, bucket, {evil: 30, "b`c": 20, "new": 10}, files=("index.html",))
    with answering_approval("Reject") as (answered, shown):
        result = run_dag("s3_deploy_cleanup", {"bucket": bucket, "prefix": "deploys/", "keep": 1,
                                               "approval": "required"})
    assert answered == [result.run_id] and result.state == "success"
    html = MarkdownIt("commonmark").render(shown["body"])
    assert "<img" not in html and "<a " not in html
    assert "Reviewed by security" not in html.split("<pre>")[0]  # only inside code blocks, never as text
    fences = [t.content for t in MarkdownIt("commonmark").parse(shown["body"]) if t.type == "fence"]
    assert any("deploys/x```\\n**Reviewed by security: safe**\\n![p](http://evil.example/p.png)/index.html" in f
               for f in fences), fences
    assert any("deploys/b`c/index.html" in f for f in fences)
    assert len(_keys(s3, bucket)) == 4  # rejected: nothing deleted


def test_only_approvers_may_answer(s3, s3_server, run_dag, bucket):
    """approvers become the request's assigned users: Airflow refuses anyone else (403); the approver's
    Approve deletes, and the audit names them."""
    _seed_deployments(s3_server, bucket, {"a": 30, "b": 20, "c": 10})
    with answering_approval("Approve", users=("tester", "carol")) as (answered, shown):
        result = run_dag("s3_deploy_cleanup", {"bucket": bucket, "prefix": "deploys/", "keep": 1,
                                               "approval": "required", "approvers": ["carol"]})
    assert answered == [result.run_id]
    assert [(name, status) for name, status, _ in shown["refused"]] == [("tester", 403)]
    assert "not a respondent" in shown["refused"][0][2]
    assert result.state == "success", result.task_states()
    assert _deployments_left(s3, bucket) == ["c"]
    audit = json.loads((result.artifacts() / "audit.json").read_text())
    assert audit["approval_record"]["responded_by"] == {"id": "carol", "name": "carol"}


@contextmanager
def superseding_the_waiting_request(target: dict[str, str], dag_id: str = "s3_deploy_cleanup", timeout: float = 120):
    """Once the run's request waits, do what a newer run of the same target does when it asks
    (``gate.supersede_older``: it writes the waiting run's ``superseded.json``), and answer nothing."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from include.core import artifacts
    from include.deletion import approval as gate

    done: dict[str, Any] = {}
    stop = threading.Event()

    def supersede() -> None:
        deadline = time.monotonic() + timeout
        while not stop.is_set() and time.monotonic() < deadline:
            with create_session() as session:
                waiting = session.scalars(select(TaskInstance.run_id).join(
                    HITLDetail, HITLDetail.ti_id == TaskInstance.id).where(
                    TaskInstance.dag_id == dag_id, TaskInstance.task_id == "approve",
                    HITLDetail.responded_at.is_(None))).first()
            if waiting is not None:
                time.sleep(1)  # the request has been waiting a moment, as it would before a newer run plans
                done["at"] = datetime.now(UTC)
                done["runs"] = gate.supersede_older(artifacts.run_dir(dag_id, waiting).parent, run_id="newer-run",
                                                    target=target, asked_at=done["at"].isoformat())
                return
            time.sleep(0.5)

    thread = threading.Thread(target=supersede, daemon=True)
    thread.start()
    try:
        yield done
    finally:
        stop.set()
        thread.join(timeout=10)


def test_a_superseded_request_closes_by_itself_and_deletes_nothing(s3, s3_server, run_dag, bucket):
    """Nobody answers: once a newer plan of the same target supersedes the waiting request, approve's trigger
    closes it within seconds (Reject with no responder, so it is no longer pending in Required Actions), the
    verdict is superseded, delete is skipped, nothing is deleted and the run succeeds."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    _seed_deployments(s3_server, bucket, {"a": 30, "b": 20, "c": 10})
    before = _keys(s3, bucket)
    with superseding_the_waiting_request({"bucket": bucket, "prefix": "deploys/"}) as superseded:
        result = run_dag("s3_deploy_cleanup", {"bucket": bucket, "prefix": "deploys/", "keep": 1,
                                               "approval": "required"})
    assert superseded["runs"] == [result.run_id]
    assert result.state == "success", result.task_states()
    states = result.task_states()
    assert (states[("approve", -1)], states[("delete", -1)], states[("audit", -1)]) == ("success", "skipped", "success")
    assert _keys(s3, bucket) == before
    with create_session() as session:
        detail = session.scalars(select(HITLDetail).join(TaskInstance, HITLDetail.ti_id == TaskInstance.id).where(
            TaskInstance.dag_id == "s3_deploy_cleanup", TaskInstance.run_id == result.run_id,
            TaskInstance.task_id == "approve")).one()
        closed = (detail.response_received, detail.chosen_options, detail.responded_by, detail.responded_at)
    assert closed[:3] == (True, ["Reject"], None)  # closed by the system, not by a person
    assert closed[3] - superseded["at"] < timedelta(seconds=30)
    approval = json.loads((result.artifacts() / "approval.json").read_text())
    assert (approval["verdict"], approval["responded_by"]) == ("superseded", None)
    assert "superseded by run 'newer-run': the request was closed without an answer" in approval["reason"]
    audit = json.loads((result.artifacts() / "audit.json").read_text())
    assert (audit["outcome"], audit["approval"], audit["superseded_by"], audit["deleted_count"]) == (
        "superseded", "superseded", "newer-run", 0)


def test_a_request_asked_in_the_same_instant_as_a_later_one_closes_before_anyone_is_asked(s3, s3_server, run_dag,
                                                                                             bucket, mailbox,
                                                                                             monkeypatch):
    """Two runs of the same target ask at once: the other run writes its request (dated after this run's) just
    after this run wrote its own, having looked before this run's file existed. This run sees it and gives
    way: no request in Required Actions, nobody mailed, nothing deleted, instead of both waiting. The
    control: the same settings mail an ordinary request."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from include.core import artifacts
    from include.deletion import approval as gate

    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_DEPLOY_CLEANUP", json.dumps({"notifications": [
        {"type": "email", "to": ["approvers@example.com"]}]}))
    _seed_deployments(s3_server, bucket, {"a": 30, "b": 20, "c": 10})
    before = _keys(s3, bucket)
    real_write = artifacts.write_json
    raced = artifacts.run_dir("s3_deploy_cleanup", "raced-run") / gate.REQUEST_FILE

    def racing(path: Any, value: Any) -> Any:
        written = real_write(path, value)
        if path.name == gate.REQUEST_FILE and path.parent.name != "raced-run" and not raced.exists():
            real_write(raced, {"plan_id": "theirs", "target": {"bucket": bucket, "prefix": "deploys/"},
                               "asked_at": datetime.now(UTC).isoformat()})  # after this run's asked_at
        return written

    monkeypatch.setattr(artifacts, "write_json", racing)
    # a short timeout: a request left waiting (the bug) expires instead of holding the suite for good
    conf = {"bucket": bucket, "prefix": "deploys/", "keep": 1, "approval": "required", "approval_timeout_hours": 0.01}
    result = run_dag("s3_deploy_cleanup", conf, logical_date=NOW + timedelta(days=2, minutes=3))
    assert raced.exists() and result.state == "success", result.task_states()
    assert result.task_states()[("delete", -1)] == "skipped" and _keys(s3, bucket) == before
    approval = json.loads((result.artifacts() / "approval.json").read_text())
    assert approval["verdict"] == "superseded" and "same instant: nobody was asked" in approval["reason"]
    audit = json.loads((result.artifacts() / "audit.json").read_text())
    assert (audit["outcome"], audit["superseded_by"], audit["deleted_count"]) == ("superseded", "raced-run", 0)
    assert not (raced.parent / gate.SUPERSEDED_FILE).exists()  # the other request waits
    with create_session() as session:
        asked = session.scalars(select(HITLDetail).join(TaskInstance, HITLDetail.ti_id == TaskInstance.id).where(
            TaskInstance.dag_id == "s3_deploy_cleanup", TaskInstance.run_id == result.run_id)).all()
    assert asked == [] and mailbox.wait_for(1, timeout=3) == []

    monkeypatch.setattr(artifacts, "write_json", real_write)
    raced.unlink()  # the control
    with answering_approval("Reject") as (answered, _):
        control = run_dag("s3_deploy_cleanup", conf, logical_date=NOW + timedelta(days=2, minutes=4))
    assert answered == [control.run_id] and _keys(s3, bucket) == before
    assert [m["to"] for m in mailbox.wait_for(1)] == [["approvers@example.com"]]


def test_a_run_planned_again_after_it_was_superseded_asks_again_and_deletes_once_approved(s3, s3_server, run_dag,
                                                                                           bucket):
    """The run's first request was superseded; cleared and planned again, its new request was closed the moment
    it was asked (the first request's superseded.json), so the run could never be approved. Now it asks anew."""
    _seed_deployments(s3_server, bucket, {"a": 30, "b": 20, "c": 10})
    conf = {"bucket": bucket, "prefix": "deploys/", "keep": 1, "approval": "required"}
    with superseding_the_waiting_request({"bucket": bucket, "prefix": "deploys/"}) as superseded:
        first = run_dag("s3_deploy_cleanup", conf, logical_date=NOW)
    assert superseded["runs"] == [first.run_id] and _deployments_left(s3, bucket) == ["a", "b", "c"]
    with answering_approval("Approve") as (answered, _):
        again = run_dag("s3_deploy_cleanup", conf, logical_date=NOW)
    assert again.run_id == first.run_id and answered == [again.run_id]
    assert again.state == "success", again.task_states()
    assert not (again.artifacts() / "superseded.json").exists()  # a new request voids the earlier close
    audit = json.loads((again.artifacts() / "audit.json").read_text())
    assert (audit["outcome"], audit["approval"], audit.get("superseded_by")) == ("deleted", "approved", None)
    assert _deployments_left(s3, bucket) == ["c"]


def test_guard_refuses_a_plan_over_max_delete_count(s3, s3_server, run_dag, bucket):
    _seed_deployments(s3_server, bucket, {"a": 30, "b": 20, "c": 10})
    before = _keys(s3, bucket)
    result = run_dag("s3_deploy_cleanup", {"bucket": bucket, "prefix": "deploys/", "keep": 1, "max_delete_count": 3})
    assert result.state == "failed"
    states = result.task_states()
    assert states[("guard", -1)] == "failed" and states[("delete", -1)] == "upstream_failed"
    assert _keys(s3, bucket) == before
    audit = json.loads((result.artifacts() / "audit.json").read_text())
    assert (audit["outcome"], audit["failed_tasks"], audit["deleted_count"]) == ("guard_refused", ["guard"], 0)
    assert len(audit["guard_refusals"]) == 1 and "max_delete_count=3" in audit["guard_refusals"][0]


@pytest.mark.parametrize("conf", [{"approval": "required"}, {"approval": "auto", "dry_run": True}])
def test_a_guard_that_fails_on_its_own_is_no_refusal_in_the_audit(s3, s3_server, run_dag, bucket, monkeypatch, conf):
    """The guard failed without refusing anything (the artifact store unreachable, a bug): the audit says
    failed, not that the plan broke a limit (which would send the operator after the wrong cause), nor
    not_approved or dry_run, whatever the approval setting."""
    import include.deletion.plan as deletion_plan

    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise OSError("artifact store unreachable")

    monkeypatch.setattr(deletion_plan, "check_guards", unreachable)
    _seed_deployments(s3_server, bucket, {"a": 30, "b": 20, "c": 10})
    before = _keys(s3, bucket)
    result = run_dag("s3_deploy_cleanup", {"bucket": bucket, "prefix": "deploys/", "keep": 1, **conf},
                     retries=0, logical_date=NOW + timedelta(days=2, minutes=9 if conf.get("dry_run") else 10))
    assert result.state == "failed" and result.task_states()[("guard", -1)] == "failed"
    assert _keys(s3, bucket) == before
    audit = json.loads((result.artifacts() / "audit.json").read_text())
    assert (audit["outcome"], audit["failed_tasks"], audit["deleted_count"]) == ("failed", ["guard"], 0)
    assert "guard_refusals" not in audit


def test_invalid_combination_is_rejected_before_listing(s3_server, run_dag, bucket):
    s3_server.control("POST", "stats/reset", {})
    result = run_dag("s3_deploy_cleanup", {"bucket": bucket, "prefix": "deploys/"})
    assert result.state == "failed" and result.task_states()[("plan", -1)] == "failed"
    # the audit runs after a failure too, but without a plan of this run it records nothing
    assert result.task_states()[("audit", -1)] == "failed" and not (result.artifacts() / "audit.json").exists()
    assert s3_server.control("GET", "stats", None).get("ListObjectsV2", 0) == 0


def test_invalid_numbers_are_rejected_by_the_trigger_form(run_dag, bucket):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        run_dag("s3_deploy_cleanup", {"bucket": bucket, "keep": 2, "min_keep": 0})
    with pytest.raises(ParamValidationError):
        run_dag("s3_deploy_cleanup", {"bucket": bucket, "keep": -1})


def test_more_than_1000_deployments_and_a_deployment_of_more_than_1000_objects(s3, s3_server, run_dag, bucket):
    # 1100 one-object deployments d-0000 (oldest) … d-1099, and "huge" (2500 objects), older than all of them
    objs = [{"key": f"deploys/d-{i:04d}/index.html", "size": 1, "last_modified": _iso(2000 - i)} for i in range(1100)]
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": objs})
    s3_server.control("POST", "seed", {"bucket": bucket, "generate": {"prefix": "deploys/huge/assets/", "count": 2500,
                                                                      "size": 2, "last_modified": _iso(3000)}})
    result = run_dag("s3_deploy_cleanup", {"bucket": bucket, "prefix": "deploys/", "keep": 1000, "approval": "auto"})
    assert result.state == "success", result.task_states()
    plan = result.xcom("plan")
    assert (plan["deployments_total"], plan["deployments_delete"], plan["delete_count"]) == (1101, 101, 2600)
    assert len(plan["chunks"]) == 3 and result.xcom("audit")["deleted_count"] == 2600
    assert _deployments_left(s3, bucket) == [f"d-{i:04d}" for i in range(100, 1100)]
    assert _keys(s3, bucket, "deploys/huge/") == []


# --- library level: the same code the DAG tasks call, without a DAG run -------------------------------

def _plan(s3, bucket, tmp_path, **params):
    from include.deploy_cleanup.plan import plan_cleanup, settings_from_params

    return plan_cleanup(s3, bucket, settings_from_params({"prefix": "deploys/", **params}), tmp_path, NOW)


def _delete_all(s3, bucket, tmp_path, summary):
    from include.deletion.plan import delete_chunk, read_plan, write_audit
    from include.deletion.recheck import RecheckContext
    from include.deploy_cleanup.plan import make_recheck

    recheck = make_recheck(RecheckContext(s3, bucket, {}, read_plan(tmp_path), tmp_path))
    for chunk in summary["chunks"]:
        delete_chunk(s3, bucket, tmp_path, chunk, recheck=recheck, dry_run=False)
    return write_audit(tmp_path)


def test_a_kept_deployment_gone_before_the_delete_keeps_the_whole_chunk(s3, s3_server, bucket, tmp_path):
    """The plan keeps A (newest) and deletes B and C. A is removed before the delete (a rollback, while the
    approval waited): deleting B and C then would leave no deployment at all, against min_keep."""
    _seed_deployments(s3_server, bucket, {"a": 1, "b": 10, "c": 20})
    summary = _plan(s3, bucket, tmp_path, keep=1)
    assert summary["deployments_delete"] == 2
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in _keys(s3, bucket, "deploys/a/")]})
    audit = _delete_all(s3, bucket, tmp_path, summary)
    assert _deployments_left(s3, bucket) == ["b", "c"] and audit["deleted_count"] == 0
    reasons = json.loads((tmp_path / "audit" / "00000.json").read_text())["skipped"]
    assert reasons and all("kept as the newest are gone or emptied since planning ('a')" in r["why"] for r in reasons)


def _edit_deployments(run_dir: Any, **changes: Any) -> None:
    """Rewrite deployments.jsonl as someone with write access to the artifact store could."""
    path = run_dir / "deployments.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({**row, **changes}) + "\n" for row in rows))


def test_deployments_edited_after_planning_refuse_the_delete(s3, s3_server, bucket, tmp_path):
    """deployments.jsonl is what the re-check judges by (what the plan kept for its rank). Edited to drop
    those flags, the rollback of the newest deployment would go unseen and B and C would go, leaving none:
    plan.json (which the approval pins) records its digest, so the edit refuses the delete instead."""
    from include.deletion.approval import DeleteRefused

    _seed_deployments(s3_server, bucket, {"a": 1, "b": 10, "c": 20})
    summary = _plan(s3, bucket, tmp_path, keep=1)
    assert summary["deployments_delete"] == 2 and summary["deployments_digest"].startswith("sha256:")
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in _keys(s3, bucket, "deploys/a/")]})
    _edit_deployments(tmp_path, holds_rank=False, min_keep=False)
    with pytest.raises(DeleteRefused, match=r"deployments\.jsonl changed since planning"):
        _delete_all(s3, bucket, tmp_path, summary)
    assert _deployments_left(s3, bucket) == ["b", "c"]


@pytest.mark.parametrize("damage", ["removed", "plan without its digest"])
def test_deployments_missing_or_not_pinned_refuse_the_delete(s3, s3_server, bucket, tmp_path, damage):
    """A plan that cannot show its rows are the planned ones (the file gone, or a plan made before the
    digest) deletes nothing and says to plan again."""
    from include.deletion.approval import DeleteRefused

    _seed_deployments(s3_server, bucket, {"a": 1, "b": 10})
    summary = _plan(s3, bucket, tmp_path, keep=1)
    if damage == "removed":
        (tmp_path / "deployments.jsonl").unlink()
    else:
        plan = json.loads((tmp_path / "plan.json").read_text())
        del plan["deployments_digest"]
        (tmp_path / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(DeleteRefused, match="plan again"):
        _delete_all(s3, bucket, tmp_path, summary)
    assert _deployments_left(s3, bucket) == ["a", "b"]


def test_a_protected_newest_deployment_gone_or_emptied_before_the_delete_keeps_the_chunk(s3, s3_server, bucket,
                                                                                          tmp_path):
    """The newest deployment was protected (so its decision read "protected", not "among the newest") and
    its removal went unseen; one emptied down to its folder marker went unseen too."""
    _seed_deployments(s3_server, bucket, {"prod-3": 1, "rel-2": 10, "rel-1": 20})
    summary = _plan(s3, bucket, tmp_path, keep=1, protect=["prod-*"])
    assert summary["deployments_delete"] == 2
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in _keys(s3, bucket, "deploys/prod-3/")]})
    s3.put_object(Bucket=bucket, Key="deploys/prod-3/", Body=b"")  # the folder stays, as a marker
    audit = _delete_all(s3, bucket, tmp_path, summary)
    assert audit["deleted_count"] == 0 and _deployments_left(s3, bucket) == ["prod-3", "rel-1", "rel-2"]


def test_a_deployment_kept_by_keep_and_emptied_before_the_delete_keeps_the_chunk(s3, s3_server, bucket, tmp_path):
    """keep=2 (min_keep 1) keeps a and b and deletes c. A rollback empties b down to its folder marker while
    the approval waits: deleting c then would leave one deployment of the two promised, so nothing goes."""
    _seed_deployments(s3_server, bucket, {"a": 1, "b": 10, "c": 20})
    summary = _plan(s3, bucket, tmp_path, keep=2)
    assert summary["deployments_delete"] == 1
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in _keys(s3, bucket, "deploys/b/")]})
    s3.put_object(Bucket=bucket, Key="deploys/b/", Body=b"")
    audit = _delete_all(s3, bucket, tmp_path, summary)
    assert audit["deleted_count"] == 0 and _deployments_left(s3, bucket) == ["a", "b", "c"]
    reasons = json.loads((tmp_path / "audit" / "00000.json").read_text())["skipped"]
    assert reasons and all("gone or emptied since planning ('b')" in r["why"] for r in reasons)


def test_a_kept_deployment_whose_newest_file_is_deleted_before_the_delete_keeps_the_chunk(s3, s3_server, bucket,
                                                                                        tmp_path):
    """keep=1 keeps a (newest file 1 day old, the others 15) and deletes b (10) and c (20). Someone deletes
    only a's newest file while the approval waits: a is still there, so the count held and b went, though b
    is now the newest deployment. Deleting another file of a changes nothing of the ranking: b and c go."""
    def seed() -> None:
        s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
            {"key": "deploys/a/index.html", "size": 10, "last_modified": _iso(1)},
            {"key": "deploys/a/assets/app.js", "size": 10, "last_modified": _iso(15)},
            *({"key": f"deploys/{name}/index.html", "size": 10, "last_modified": _iso(age)}
              for name, age in (("b", 10), ("c", 20)))]})

    seed()
    summary = _plan(s3, bucket, tmp_path, keep=1)
    assert summary["delete_sample"] == ["b", "c"]
    s3.delete_object(Bucket=bucket, Key="deploys/a/index.html")
    audit = _delete_all(s3, bucket, tmp_path, summary)
    assert audit["deleted_count"] == 0 and _deployments_left(s3, bucket) == ["a", "b", "c"]
    reasons = json.loads((tmp_path / "audit" / "00000.json").read_text())["skipped"]
    assert reasons and all("kept as the newest changed since planning ('a': its newest object "
                           "'deploys/a/index.html' is gone since planning)" in r["why"] for r in reasons)

    seed()
    again = tmp_path / "again"
    summary = _plan(s3, bucket, again, keep=1)
    s3.delete_object(Bucket=bucket, Key="deploys/a/assets/app.js")  # not its newest: a's time is unchanged
    assert _delete_all(s3, bucket, again, summary)["deleted_count"] == 2 and _deployments_left(s3, bucket) == ["a"]

    seed()  # HeadObject denied: a is listed instead
    denied = tmp_path / "denied"
    summary = _plan(s3, bucket, denied, keep=1)
    s3.delete_object(Bucket=bucket, Key="deploys/a/index.html")
    s3_server.control("POST", "faults", {"operation": "HeadObject", "bucket": bucket, "mode": "denied", "count": 100})
    try:
        audit = _delete_all(s3, bucket, denied, summary)
    finally:
        s3_server.control("POST", "faults", {"mode": "off"})
    assert audit["deleted_count"] == 0 and _deployments_left(s3, bucket) == ["a", "b", "c"]
    assert "'a': its newest object is older now ('deploys/a/assets/app.js'" in audit["skipped_samples"][0]["why"]


def test_the_root_prefix_is_refused_where_keys_start_with_a_slash(s3, s3_server, bucket, tmp_path):
    """'/' named the keys "/rel-1/…" before it named the bucket root: a Variable written then must not
    switch to cleaning the top-level folders (backups/, data/) in silence."""
    s3_server.control("POST", "seed", {"bucket": bucket, "objects": [
        {"key": k, "size": 1, "last_modified": _iso(30)} for k in ("/rel-1/a", "/rel-2/a", "backups/db", "data/x")]})
    from include.deploy_cleanup.plan import plan_cleanup, settings_from_params

    summary = plan_cleanup(s3, bucket, settings_from_params({"prefix": "/", "keep": 1}), tmp_path, NOW)
    assert any("keys start with '/' here" in r for r in summary["refusals"])
    from include.deletion.plan import guard_violations

    assert guard_violations(summary, max_delete_count=10**6, max_delete_fraction=None)


def test_keep_and_age_both_must_hold(s3, s3_server, bucket, tmp_path):
    _seed_deployments(s3_server, bucket, {"a": 60, "b": 50, "c": 40, "d": 5, "e": 4, "f": 3})
    summary = _plan(s3, bucket, tmp_path, keep=2, older_than_days=45)
    assert summary["by_reason"] == {"beyond_keep_and_older_than": {"count": 4, "bytes": 40}}
    _delete_all(s3, bucket, tmp_path, summary)
    assert _deployments_left(s3, bucket) == ["c", "d", "e", "f"]


@pytest.mark.parametrize("range_listing_from", [20, 1], ids=["listing-per-deployment", "one-range-listing"])
def test_a_deployment_updated_between_plan_and_delete_is_skipped(s3, s3_server, bucket, tmp_path, monkeypatch,
                                                                 range_listing_from):
    from include.deploy_cleanup import plan as deploy_cleanup

    monkeypatch.setattr(deploy_cleanup, "RANGE_LISTING_FROM", range_listing_from)
    # "a-x" and "b0" sort next to "a"/"b" and would confuse a careless range listing
    _seed_deployments(s3_server, bucket, {"a": 60, "a-x": 1, "b": 50, "b0": 1, "c": 1})
    summary = _plan(s3, bucket, tmp_path, keep=3)
    assert summary["deployments_delete"] == 2
    # someone redeploys b after the plan was written: its newest object is now newer than planned
    s3_server.control("POST", "touch", {"bucket": bucket, "key": "deploys/b/index.html", "last_modified": _iso(0)})
    audit = _delete_all(s3, bucket, tmp_path, summary)
    assert _deployments_left(s3, bucket) == ["a-x", "b", "b0", "c"]
    assert (audit["deleted_count"], audit["skipped_count"], audit["error_count"]) == (2, 2, 0)
    skipped = json.loads((tmp_path / "audit.json").read_text())["skipped"]
    assert {s["key"] for s in skipped} == {"deploys/b/index.html", "deploys/b/assets/app.js"}
    assert all("changed since planning" in s["why"] for s in skipped)


@pytest.mark.parametrize("range_listing_from", [20, 1], ids=["listing-per-deployment", "one-range-listing"])
def test_a_redeploy_is_seen_when_another_doomed_name_extends_its_name(s3, s3_server, bucket, tmp_path, monkeypatch,
                                                                      range_listing_from):
    """"release-1.9/…" sorts after "release-1.9.1…" ("/" follows "."): the re-check's range listing must still
    reach the shorter name's objects, or its redeploy goes unseen and half of a live deployment is deleted."""
    from include.deploy_cleanup import plan as deploy_cleanup

    monkeypatch.setattr(deploy_cleanup, "RANGE_LISTING_FROM", range_listing_from)
    _seed_deployments(s3_server, bucket, {"release-1.9": 60, "release-1.9.1": 50, "release-1.9-rc": 55,
                                          "release-2.0": 1})
    summary = _plan(s3, bucket, tmp_path, keep=1)
    assert summary["deployments_delete"] == 3
    s3_server.control("POST", "touch", {"bucket": bucket, "key": "deploys/release-1.9/index.html",
                                        "last_modified": _iso(0)})
    audit = _delete_all(s3, bucket, tmp_path, summary)
    assert _deployments_left(s3, bucket) == ["release-1.9", "release-2.0"]
    assert _keys(s3, bucket, "deploys/release-1.9/") == ["deploys/release-1.9/assets/app.js",
                                                         "deploys/release-1.9/index.html"]
    assert (audit["deleted_count"], audit["skipped_count"]) == (4, 2)


def test_include_versions_deletes_every_version_and_delete_marker(s3, s3_server, bucket, tmp_path):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for name in ("old", "new"):
        for body in (b"v1", b"v2"):
            s3.put_object(Bucket=bucket, Key=f"deploys/{name}/app.js", Body=body)
        s3.put_object(Bucket=bucket, Key=f"deploys/{name}/gone.js", Body=b"x")
        s3.delete_object(Bucket=bucket, Key=f"deploys/{name}/gone.js")
        s3.put_object(Bucket=bucket, Key=f"deploys/{name}/index.html", Body=b"i")
    s3_server.control("POST", "touch", {"bucket": bucket, "prefix": "deploys/old/", "last_modified": _iso(10)})
    summary = _plan(s3, bucket, tmp_path, keep=1, include_versions=True)
    assert summary["deployments_delete"] == 1 and summary["delete_count"] == 5  # 2 + 1 + marker + 1
    audit = _delete_all(s3, bucket, tmp_path, summary)
    assert audit["deleted_count"] == 5 and audit["error_count"] == 0
    left = s3.list_object_versions(Bucket=bucket, Prefix="deploys/")
    keys = {v["Key"] for v in left.get("Versions", []) + left.get("DeleteMarkers", [])}
    assert keys == {"deploys/new/app.js", "deploys/new/gone.js", "deploys/new/index.html"}


def _all_versions(s3, bucket, prefix="deploys/"):
    """{(key, version id or "marker:<id>"): body} of every entry under ``prefix``."""
    left = s3.list_object_versions(Bucket=bucket, Prefix=prefix)
    found = {(v["Key"], v["VersionId"]): s3.get_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])["Body"].read()
             for v in left.get("Versions", [])}
    found.update({(m["Key"], f"marker:{m['VersionId']}"): b"" for m in left.get("DeleteMarkers", [])})
    return found


def _two_deployments(s3, s3_server, bucket):
    """deploys/old (10 days) and deploys/new, two files each, written through PUT (so their ETags are real)."""
    for name in ("old", "new"):
        for f in ("index.html", "app.js"):
            s3.put_object(Bucket=bucket, Key=f"deploys/{name}/{f}", Body=f"{name}/{f} v1".encode())
    s3_server.control("POST", "touch", {"bucket": bucket, "prefix": "deploys/old/", "last_modified": _iso(10)})


def test_never_versioned_bucket_null_versions_are_deleted_only_while_unchanged(s3, s3_server, bucket, tmp_path):
    """With include_versions on a bucket never versioned, every object is version ``null``: a delete by
    that id takes whatever is stored now. A file rewritten between the plan and the delete must stay, so
    the delete is conditional on the ETag the plan saw, and (no version id) adds no delete marker."""
    _two_deployments(s3, s3_server, bucket)
    summary = _plan(s3, bucket, tmp_path, keep=1, include_versions=True)
    items = [json.loads(line) for chunk in summary["chunks"]
             for line in (tmp_path / "plan" / f"{chunk}.jsonl").read_text().splitlines()]
    assert {(i["key"], i["version_id"], bool(i["etag"])) for i in items} == {
        ("deploys/old/app.js", "null", True), ("deploys/old/index.html", "null", True)}
    s3.put_object(Bucket=bucket, Key="deploys/old/app.js", Body=b"rewritten after the plan")
    s3_server.control("POST", "touch", {"bucket": bucket, "key": "deploys/old/app.js", "last_modified": _iso(10)})
    audit = _delete_all(s3, bucket, tmp_path, summary)
    assert (audit["deleted_count"], audit["skipped_count"], audit["error_count"]) == (1, 1, 0)
    assert "changed since plan" in audit["skipped_samples"][0]["why"]
    left = _all_versions(s3, bucket)
    assert left[("deploys/old/app.js", "null")] == b"rewritten after the plan"
    assert ("deploys/old/index.html", "null") not in left
    assert not [k for k in left if k[1].startswith("marker:")]


def test_suspended_bucket_null_versions_are_kept_and_say_why(s3, s3_server, bucket, tmp_path):
    """While versioning is Suspended a PUT replaces the ``null`` version, and S3 cannot make deleting it
    conditional: the ``null`` versions stay and the audit says why. (moto 5.2.5 deletes a Suspended
    bucket's ``null`` version with any other version of its key, unlike S3, so the plan here holds
    ``null`` versions only.)"""
    _two_deployments(s3, s3_server, bucket)  # written before versioning: version null
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    before = _all_versions(s3, bucket)
    summary = _plan(s3, bucket, tmp_path, keep=1, include_versions=True)
    assert summary["delete_count"] == 2 and summary["versioning"] == "Suspended"
    assert "keeps every 'null' version" in summary["headline"]  # the approver knows before answering
    audit = _delete_all(s3, bucket, tmp_path, summary)
    assert (audit["deleted_count"], audit["skipped_count"], audit["error_count"]) == (0, 2, 0)
    assert {(r["key"], r["version_id"]) for r in audit["skipped_samples"]} == {
        ("deploys/old/app.js", "null"), ("deploys/old/index.html", "null")}
    assert all("Suspended" in r["why"] for r in audit["skipped_samples"])
    assert _all_versions(s3, bucket) == before


def test_a_null_version_of_a_bucket_versioned_since_is_deleted_by_its_id(s3, s3_server, bucket, tmp_path):
    """Once versioning is Enabled no PUT writes ``null`` again: that version is as fixed as any other."""
    _two_deployments(s3, s3_server, bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="deploys/old/app.js", Body=b"old/app.js v2")
    s3_server.control("POST", "touch", {"bucket": bucket, "prefix": "deploys/old/", "last_modified": _iso(10)})
    summary = _plan(s3, bucket, tmp_path, keep=1, include_versions=True)
    assert summary["versioning"] == "Enabled" and "'null'" not in summary["headline"]
    audit = _delete_all(s3, bucket, tmp_path, summary)
    assert (audit["deleted_count"], audit["skipped_count"], audit["error_count"]) == (3, 0, 0)
    assert not [k for k in _all_versions(s3, bucket) if k[0].startswith("deploys/old/")]


@pytest.mark.parametrize("then_deleted", [False, True])
def test_a_null_version_rewritten_before_versioning_was_enabled_is_kept(s3, s3_server, bucket, tmp_path,
                                                                        then_deleted):
    """Planned while never versioned; the file is rewritten, then versioning is enabled (and, the second
    time, the key deleted: a marker on top) before the delete. Enabled says the 'null' version cannot change
    any more, not that it did not: it is checked against the plan's ETag first, and the rewrite stays."""
    _two_deployments(s3, s3_server, bucket)
    summary = _plan(s3, bucket, tmp_path, keep=1, include_versions=True)
    s3.put_object(Bucket=bucket, Key="deploys/old/app.js", Body=b"rewritten after the plan")
    s3_server.control("POST", "touch", {"bucket": bucket, "key": "deploys/old/app.js", "last_modified": _iso(10)})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    if then_deleted:
        s3.delete_object(Bucket=bucket, Key="deploys/old/app.js")
    audit = _delete_all(s3, bucket, tmp_path, summary)
    assert (audit["deleted_count"], audit["skipped_count"], audit["error_count"]) == (1, 1, 0)
    assert audit["skipped_samples"][0]["key"] == "deploys/old/app.js"
    assert "changed since plan" in audit["skipped_samples"][0]["why"]
    left = _all_versions(s3, bucket)
    assert left[("deploys/old/app.js", "null")] == b"rewritten after the plan"
    assert ("deploys/old/index.html", "null") not in left


@pytest.mark.parametrize(("versioning", "denied", "why"), [
    # Enabled, but HeadObject refused: whether the 'null' version is still the planned one is unknown
    ("Enabled", "HeadObject", ("could not be checked against the plan (HeadObject: 403)",)),
    # never versioned, but GetBucketVersioning refused: whether a 'null' version can still change is unknown
    (None, "GetBucketVersioning", ("(GetBucketVersioning: AccessDenied", "allow s3:GetBucketVersioning")),
])
def test_null_versions_are_kept_when_the_check_is_refused(s3, s3_server, bucket, tmp_path, versioning, denied, why):
    """A user with fewer permissions: the 'null' versions stay, and the audit names what was refused."""
    _two_deployments(s3, s3_server, bucket)
    if versioning:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": versioning})
    summary = _plan(s3, bucket, tmp_path, keep=1, include_versions=True)
    s3_server.control("POST", "faults", {"operation": denied, "bucket": bucket, "mode": "denied", "count": 100})
    try:
        audit = _delete_all(s3, bucket, tmp_path, summary)
    finally:
        s3_server.control("POST", "faults", {"mode": "off"})
    assert (audit["deleted_count"], audit["skipped_count"], audit["error_count"]) == (0, 2, 0)
    assert all(part in row["why"] for row in audit["skipped_samples"] for part in why), audit["skipped_samples"]
    assert len(_all_versions(s3, bucket)) == 4


def test_versioning_enabled_during_the_delete_is_an_error_not_a_deletion(s3, s3_server, bucket, tmp_path, monkeypatch):
    """Versioning turned on between the check and the delete: the conditional delete without a version id
    then only adds a delete marker. Nothing is lost, and the audit must not count it as deleted."""
    import include.deletion.plan as deletion_plan

    _two_deployments(s3, s3_server, bucket)
    summary = _plan(s3, bucket, tmp_path, keep=1, include_versions=True)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    monkeypatch.setattr(deletion_plan, "versioning_state", lambda client, name: "Disabled")  # read before the change
    audit = _delete_all(s3, bucket, tmp_path, summary)
    assert (audit["deleted_count"], audit["error_count"]) == (0, 2)
    assert {e["code"] for e in audit["error_samples"]} == {"DeleteMarkerAdded"}
    assert {(k, body) for k, body in _all_versions(s3, bucket).items() if k[1] == "null"} == {
        (("deploys/old/app.js", "null"), b"old/app.js v1"), (("deploys/old/index.html", "null"), b"old/index.html v1"),
        (("deploys/new/app.js", "null"), b"new/app.js v1"), (("deploys/new/index.html", "null"), b"new/index.html v1")}


def test_command_line_plans_by_default_and_deletes_on_request(s3, s3_server, bucket, tmp_path, capsys):
    from include.deploy_cleanup.cli import main

    _seed_deployments(s3_server, bucket, {"a": 30, "b": 20, "c": 10})
    before = _keys(s3, bucket)
    base = ["--bucket", bucket, "--prefix", "deploys/", "--keep", "1", "--endpoint-url", s3_server.endpoint_url]
    assert main([*base, "--out", str(tmp_path / "plan-only")]) == 0
    out = capsys.readouterr().out
    assert "DELETE  a " in out and "keep    c " in out and "run again with --delete" in out
    assert _keys(s3, bucket) == before
    assert main([*base, "--min-keep", "0"]) == 2
    assert "min_keep must be a whole number >= 1" in capsys.readouterr().err
    assert main([*base, "--delete", "--out", str(tmp_path / "real")]) == 0
    assert _deployments_left(s3, bucket) == ["c"]
    assert json.loads((tmp_path / "real" / "audit.json").read_text())["deleted_count"] == 4


def test_the_command_line_plan_shows_hostile_names_escaped_one_line_each(s3, s3_server, bucket, tmp_path, capsys):
    """Anyone who can write to the bucket names deployments. A raw carriage return or terminal escape in a
    name would let it overwrite its own DELETE line (or the screen) for whoever reads the plan before
    running --delete; lookalikes (NFD, zero-width) are shown as the approver sees them."""
    from include.deploy_cleanup.cli import main

    hostile = {"old\rkeep    prod": 40, "x\x1b[2K\x1b[1Aold-2": 30, "cafe\u0301": 25, "re\u200blease": 20, "new": 1}
    _seed_deployments(s3_server, bucket, hostile)
    assert main(["--bucket", bucket, "--prefix", "deploys/", "--keep", "1", "--protect", "pr\u200bod",
                 "--endpoint-url", s3_server.endpoint_url, "--out", str(tmp_path / "plan")]) == 0
    out = capsys.readouterr().out
    assert "\r" not in out and "\x1b" not in out and "\u200b" not in out and "\u0301" not in out
    rows = [line for line in out.splitlines() if line.startswith(("DELETE", "keep"))]
    assert len(rows) == len(hostile)
    assert {line.split()[1] for line in rows if line.startswith("DELETE")} == {
        "old\\rkeep", "x\\u001b[2K\\u001b[1Aold-2", "cafe\\u0301", "re\\u200blease"}
    assert "protect patterns that matched no deployment: pr\\u200bod" in out


def test_the_command_line_works_without_airflow_whatever_the_artifact_root(s3_server, bucket, tmp_path):
    """The command line writes its plan locally; an artifact root on S3 (a deployment's setting, in the same
    environment) is not its concern and must not make it reach for Airflow to build that root."""
    from tests.layout.test_cli import s3ops

    _seed_deployments(s3_server, bucket, {"a": 30, "b": 20})
    result = s3ops("deploy-cleanup", "--bucket", bucket, "--prefix", "deploys/", "--keep", "1", "--endpoint-url",
                   s3_server.endpoint_url, "--out", str(tmp_path / "plan"),
                   env={**os.environ, "S3OPS_ARTIFACT_ROOT": "s3://artifacts-bucket/s3ops"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DELETE  a " in result.stdout and "keep    b " in result.stdout
    assert json.loads((tmp_path / "plan" / "plan.json").read_text())["deployments_delete"] == 1


def test_the_command_line_says_what_is_wrong_in_one_line(s3_server, bucket, tmp_path, capsys):
    from include.deploy_cleanup.cli import main

    base = ["--prefix", "deploys/", "--keep", "1", "--out", str(tmp_path / "plan")]
    assert main(["--bucket", f"{bucket}-missing", *base, "--endpoint-url", s3_server.endpoint_url]) == 2
    assert capsys.readouterr().err == f"deploy cleanup: bucket '{bucket}-missing' does not exist: check --bucket\n"
    assert main(["--bucket", "Bad_Name", *base, "--endpoint-url", s3_server.endpoint_url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deploy cleanup: ") and "Bad_Name" in err and len(err.splitlines()) == 1
    # refused before anything is listed: the endpoint here refuses connections, and is never tried
    assert main(["--bucket", bucket, *base, "--max-delete-count", "-1", "--endpoint-url", "http://127.0.0.1:1"]) == 2
    assert capsys.readouterr().err == "deploy cleanup: --max-delete-count must be a number >= 0, got -1\n"


def test_per_key_errors_fail_the_run_after_the_audit_records_them(s3, s3_server, run_dag):
    """A legal hold (Object Lock) makes DeleteObjects refuse one version; the rest is deleted."""
    bucket = f"locked-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    held = None
    for name in ("old", "new"):
        for f in ("a.js", "b.js"):
            vid = s3.put_object(Bucket=bucket, Key=f"deploys/{name}/{f}", Body=b"x")["VersionId"]
            if (name, f) == ("old", "b.js"):
                held = vid
    s3.put_object_legal_hold(Bucket=bucket, Key="deploys/old/b.js", VersionId=held, LegalHold={"Status": "ON"})
    s3_server.control("POST", "touch", {"bucket": bucket, "prefix": "deploys/old/", "last_modified": _iso(10)})
    result = run_dag("s3_deploy_cleanup", {"bucket": bucket, "prefix": "deploys/", "keep": 1,
                                           "include_versions": True, "approval": "auto"})
    assert result.state == "failed"
    states = result.task_states()
    assert states[("delete", 0)] == "success" and states[("audit", -1)] == "failed"
    audit = json.loads((result.artifacts() / "audit.json").read_text())
    assert (audit["deleted_count"], audit["error_count"]) == (1, 1)
    assert audit["errors"][0]["key"] == "deploys/old/b.js" and audit["errors"][0]["code"] == "AccessDenied"
    assert _keys(s3, bucket) == ["deploys/new/a.js", "deploys/new/b.js", "deploys/old/b.js"]


def test_protect_patterns_as_people_type_them_protect_and_typos_are_shown_to_the_approver(s3, s3_server, bucket,
                                                                                          tmp_path):
    """Issue 12: ``deploys/prod-*``, ``prod-1/`` and ``Prod-*`` silently protected nothing."""
    from include.deletion.airflow import approval_body

    _seed_deployments(s3_server, bucket, {"prod-1": 60, "prod-2": 50, "Prod-3": 45, "old": 40, "new": 1})
    summary = _plan(s3, bucket, tmp_path, keep=1, protect=["prod-1/", "deploys/prod-2", "PROD-3*", "prd-*"])
    rows = {r["name"]: r for r in (json.loads(line) for line in (tmp_path / "deployments.jsonl").read_text().splitlines())}
    assert sorted(n for n, r in rows.items() if r["delete"]) == ["old"]
    assert rows["prod-1"]["why"] == "protected by 'prod-1'" and rows["Prod-3"]["why"] == "protected by 'PROD-3*'"
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["protect"] == ["prod-1", "prod-2", "PROD-3*", "prd-*"] and plan["protect_unmatched"] == ["prd-*"]
    body = approval_body(summary, {"bucket": bucket})
    assert "matched no deployment" in body and "prd-*" in body

    _delete_all(s3, bucket, tmp_path, summary)
    assert _deployments_left(s3, bucket) == ["Prod-3", "new", "prod-1", "prod-2"]


def test_the_plan_records_etags_so_an_object_rewritten_after_the_recheck_is_kept(s3, s3_server, bucket, tmp_path):
    """The re-check compares deployment times; between it and the delete only S3's If-Match can see a
    rewrite. The plan carries each object's ETag; with the re-check out of the way the rewrite is kept."""
    from include.deletion.plan import delete_chunk, read_chunk

    _seed_deployments(s3_server, bucket, {"old": 60, "new": 1})
    summary = _plan(s3, bucket, tmp_path, keep=1)
    items = read_chunk(tmp_path, summary["chunks"][0])
    assert {i.key: i.etag for i in items} == {
        i.key: s3.head_object(Bucket=bucket, Key=i.key)["ETag"].strip('"') for i in items}
    s3.put_object(Bucket=bucket, Key="deploys/old/index.html", Body=b"hotfix")
    out = delete_chunk(s3, bucket, tmp_path, summary["chunks"][0], recheck=None, dry_run=False)
    assert (out["deleted"], out["skipped"], out["errors"]) == (1, 1, 0)
    assert _keys(s3, bucket, "deploys/old/") == ["deploys/old/index.html"]
