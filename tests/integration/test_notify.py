"""Notifications through the providers' notifiers into a real local SMTP server (aiosmtpd).

A failed run mails DAG, run, task and the error's first line (once per window for the same failure);
nothing is sent when the deployment configured no targets; the approval request mails the plan's headline,
counts, bytes, guard limits and the Required Actions link, with untrusted text shown, never evaluated.
"""

from __future__ import annotations

import json
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from tests.integration.test_upload import NOW, rel_at, write


def _conflict(tmp_path: Any, s3: Any, bucket: str) -> str:
    rel = rel_at("oslo", NOW - timedelta(hours=2), "clash")
    write(tmp_path, rel, b"local\n")
    s3.put_object(Bucket=bucket, Key=rel, Body=b"different\n")
    return rel


def test_failed_run_mails_dag_run_task_and_first_line_once(tmp_path, s3, run_dag, mailbox, monkeypatch):
    bucket = f"notify-{tmp_path.name[-8:].lower().replace('_', '-')}"
    s3.create_bucket(Bucket=bucket)
    rel = _conflict(tmp_path, s3, bucket)
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_UPLOAD", json.dumps({"notifications": ["ops@example.com"]}))
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.example:8080")

    result = run_dag("s3_upload", {"base_dir": str(tmp_path), "bucket": bucket})

    assert result.state == "failed"
    mails = mailbox.wait_for(1)
    assert len(mails) == 1, mails
    mail = mails[0]
    assert mail["to"] == ["ops@example.com"] and mail["from"] == "s3ops@localhost"
    assert mail["subject"].startswith("[s3ops] failed: s3_upload.check: AirflowFailException: 0 file(s) failed "
                                      "and 1 conflicted")
    body = mail["body"]
    assert result.run_id.replace("+", "&#43;") in body or result.run_id in body
    assert ">check<" in body and "0 file(s) failed and 1 conflicted" in body
    assert "http://airflow.example:8080/dags/s3_upload/runs/" in body
    assert (tmp_path / rel).exists()

    # the same failure a minute later: red again, but not mailed again within the repeat window
    again = run_dag("s3_upload", {"base_dir": str(tmp_path), "bucket": bucket})
    assert again.state == "failed"
    assert len(mailbox.wait_for(2, timeout=5)) == 1


def test_nothing_is_sent_when_notifications_are_unset(tmp_path, run_dag, mailbox, monkeypatch):
    monkeypatch.delenv("AIRFLOW_VAR_S3OPS_UPLOAD", raising=False)
    write(tmp_path, rel_at("oslo", NOW - timedelta(hours=2), "t"), b"x\n")
    result = run_dag("s3_upload", {"base_dir": str(tmp_path), "bucket": "s3ops-no-such-bucket"})
    assert result.state == "failed"
    assert mailbox.wait_for(1, timeout=5) == []


class _TI(SimpleNamespace):
    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return self.xcoms.get(task_ids)


def test_approval_request_mails_headline_counts_limits_and_link(mailbox, monkeypatch, tmp_path):
    """The mail tells what plan.json (which the approval pins) says, under the settings it was made with;
    the plan task's XCom, which anyone with task-instance edit rights can write, is not read."""
    from include.core import artifacts
    from include.dag_defaults import DeploymentNotifier

    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_RETENTION", json.dumps({"notifications": [
        {"type": "email", "to": ["approver@example.com", "second@example.com"], "events": ["approval"]},
        {"type": "email", "to": ["failures-only@example.com"], "events": ["failure"]},
    ]}))
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example")
    summary = {"headline": "TRIAL jobs expired: 1,203 files {{ 7 * 7 }} <b>", "bucket": "jobs-prod",
               "delete_count": 1203, "delete_bytes": 5 * 1024**3, "scanned_count": 9000, "scanned_bytes": 10**10,
               "by_reason": {"trial_expired": {"count": 1200, "bytes": 5 * 1024**3 - 10},
                             "orphan": {"count": 3, "bytes": 10}},
               "samples": ["t/{{ config }}.dat", "t/<img src=x onerror=alert(1)>.dat", "t/line\nbreak.dat"]}
    run_id = "scheduled__2026-11-30T00:00:00+00:00"
    monkeypatch.setenv(artifacts.ROOT_ENV, str(tmp_path))
    artifacts.write_json(artifacts.run_dir("s3_retention", run_id) / "plan.json", {**summary, "settings": {
        "bucket": "jobs-prod", "max_delete_count": 100000, "max_delete_fraction": 0.5}})
    forged = {"headline": "3 stale scratch files", "bucket": "jobs-prod", "delete_count": 3, "delete_bytes": 3}
    ti = _TI(dag_id="s3_retention", run_id=run_id, task_id="approve", map_index=-1, try_number=1,
             xcoms={"plan": forged})
    context = {"ti": ti, "task_instance": ti, "task": SimpleNamespace(plan_task_id="plan"),
               "params": {"bucket": "jobs-prod", "max_delete_count": 10**9, "max_delete_fraction": 1}}

    DeploymentNotifier("approval")(context)  # as the HITL operator calls its notifiers

    mails = mailbox.wait_for(1)
    assert len(mails) == 1 and sorted(mails[0]["to"]) == ["approver@example.com", "second@example.com"]
    mail = mails[0]
    assert mail["subject"] == "[s3ops] approval needed: s3_retention: TRIAL jobs expired: 1,203 files {{ 7 * 7 }} <b>"
    body = mail["body"]
    assert "1203 objects, 5.00 GiB (5368709120 bytes)" in body
    assert "max_delete_count=100000, max_delete_fraction=0.5" in body
    assert "stale scratch" not in body and "stale scratch" not in mail["subject"]
    link = ("https://airflow.example/dags/s3_retention/runs/scheduled__2026-11-30T00%3A00%3A00%2B00%3A00"
            "/tasks/approve/required_actions?map_index=-1")
    assert f'href="{link.replace("&", "&amp;")}"' in body
    # untrusted text is shown literally: not rendered by Jinja, not live HTML, no raw line break
    assert "{{ config }}" in body and "49" not in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body and "<img" not in body
    assert "t/line\\nbreak.dat" in body


def _unreachable_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ``s3://`` artifact root on an endpoint nobody listens on (botocore raises EndpointConnectionError)."""
    from include.core import artifacts
    from scripts.stack import LOCAL_AWS_KEY, LOCAL_AWS_SECRET, LOCAL_REGION, free_port

    monkeypatch.setenv("AIRFLOW_CONN_S3OPS_DOWN", json.dumps({
        "conn_type": "aws", "login": LOCAL_AWS_KEY, "password": LOCAL_AWS_SECRET,
        "extra": {"region_name": LOCAL_REGION, "endpoint_url": f"http://127.0.0.1:{free_port()}",  # nobody listens
                  "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2}}}))
    monkeypatch.setenv(artifacts.CONN_ENV, "s3ops_down")
    monkeypatch.setenv(artifacts.ROOT_ENV, "s3://artifacts-down/store")


def _approval_context(run_id: str) -> dict[str, Any]:
    ti = _TI(dag_id="s3_retention", run_id=run_id, task_id="approve", map_index=-1, try_number=1, xcoms={})
    return {"ti": ti, "task_instance": ti, "task": SimpleNamespace(plan_task_id="plan"), "params": {}}


def test_an_unreachable_store_does_not_stop_the_approval_request_mail(mailbox, monkeypatch):
    """Reading plan.json for the message is best effort: botocore's EndpointConnectionError escaped the
    notifier and failed the approve task after its request was written. The mail goes out and says the
    summary could not be read, instead of counts it does not know."""
    from include.dag_defaults import DeploymentNotifier

    _unreachable_store(monkeypatch)
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_RETENTION", json.dumps({"notifications": ["approver@example.com"],
                                                                  "bucket": "jobs-prod"}))
    DeploymentNotifier("approval")(_approval_context("scheduled__2026-11-30T00:00:00+00:00"))
    (mail,) = mailbox.wait_for(1)
    assert mail["to"] == ["approver@example.com"]
    assert "summary could not be read" in mail["subject"]
    assert "could not be read: EndpointConnectionError" in mail["body"] and "0 objects" not in mail["body"]


@pytest.mark.parametrize(("content", "why"), [
    (b'{"plan_id": "p1", "delete_count": 12', "JSONDecodeError"),  # cut short
    (b'["not", "an", "object"]', "plan.json is not a JSON object"),
    (json.dumps({"plan_id": "p1", "delete_count": 12, "by_reason": ["orphan"], "samples": 3}).encode(), None),
])
def test_a_plan_summary_that_cannot_be_read_or_shown_still_mails_the_request(mailbox, monkeypatch, tmp_path,
                                                                             content, why):
    """A plan.json cut short mailed "Delete: 0 objects" (as if nothing were planned); one whose by_reason
    is a list failed the approve task (AttributeError) after its request was written. The request's mail
    goes out: with what can be shown, or saying why the summary cannot be."""
    from include.core import artifacts
    from include.dag_defaults import DeploymentNotifier

    monkeypatch.setenv(artifacts.ROOT_ENV, str(tmp_path))
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_RETENTION", json.dumps({"notifications": ["approver@example.com"]}))
    run_id = "manual__2026-11-30T00:00:00+00:00"
    artifacts.write_bytes(artifacts.run_dir("s3_retention", run_id) / "plan.json", content)
    DeploymentNotifier("approval")(_approval_context(run_id))
    (mail,) = mailbox.wait_for(1)
    if why is None:  # shown, odd fields left out
        assert "12 objects" in mail["body"]
    else:
        assert "summary could not be read" in mail["subject"] and why in mail["body"]
        assert "0 objects" not in mail["body"]
    notified = artifacts.read_json(artifacts.run_dir("s3_retention", run_id) / artifacts.NOTIFIED_FILE)
    assert notified["sent"] == 1 and notified["plan_id"] == ("p1" if why is None else None)
    # whom the request reached is recorded for the plan approve asked about, whatever the summary says
    context = _approval_context(run_id)
    context["task"].asked_plan_id = "p2"
    DeploymentNotifier("approval")(context)
    assert artifacts.read_json(artifacts.run_dir("s3_retention", run_id) / artifacts.NOTIFIED_FILE)["plan_id"] == "p2"


def test_a_malformed_setting_fails_the_approval_and_only_logs_on_failure(mailbox, monkeypatch, capfd, caplog):
    from airflow.sdk.exceptions import AirflowFailException

    from include.dag_defaults import DeploymentNotifier

    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_RETENTION", json.dumps({"notifications": [{"type": "pager", "to": "x"}]}))
    ti = _TI(dag_id="s3_retention", run_id="r", task_id="approve", map_index=-1, try_number=1, xcoms={})
    context = {"ti": ti, "task": SimpleNamespace(plan_task_id="plan"), "params": {}}
    with pytest.raises(AirflowFailException, match=r"Airflow Variable 's3ops_retention'\[0\]: 'type' must be"):
        DeploymentNotifier("approval")(context)
    DeploymentNotifier("failure")({**context, "exception": RuntimeError("boom")})  # logged, not raised
    logged = capfd.readouterr().out + caplog.text  # structlog's stdout, or pytest's capture once it is configured
    assert "no failure notification sent: key 'notifications' of the Airflow Variable" in logged
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_RETENTION", "{not json")
    with pytest.raises(AirflowFailException, match="'s3ops_retention' is not valid JSON"):
        DeploymentNotifier("approval")(context)
    assert mailbox.wait_for(1, timeout=2) == []


@pytest.fixture
def http_sink():
    """A local HTTP server that records every POST (path, JSON body)."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received: list[tuple[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's hook name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append((self.path, json.loads(body or b"null")))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], received
    finally:
        server.shutdown()


def test_webhook_and_slack_webhook_targets_post_through_their_providers(http_sink, monkeypatch, mailbox):
    from include.dag_defaults import DeploymentNotifier

    port, received = http_sink
    monkeypatch.setenv("AIRFLOW_CONN_OPS_WEBHOOK", json.dumps({"conn_type": "http", "host": "127.0.0.1",
                                                               "port": port, "schema": "http"}))
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_HOOK", json.dumps({
        "conn_type": "slackwebhook", "password": f"http://127.0.0.1:{port}/services/T000/B000/XXX"}))
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_UPLOAD", json.dumps({"notifications": [
        {"type": "webhook", "conn_id": "ops_webhook", "endpoint": "/hooks/s3ops"},
        {"type": "slack_webhook", "conn_id": "slack_hook"},
        {"type": "email", "to": ["approvals-only@example.com"], "events": ["approval"]},
    ]}))
    ti = _TI(dag_id="s3_upload", run_id="scheduled__2026-11-30T10:00:00+00:00", task_id="check", map_index=-1,
             try_number=1, xcoms={})
    DeploymentNotifier("failure")({"ti": ti, "exception": RuntimeError("2 file(s) failed <x> & y\nmore")})

    by_path = dict(received)
    hook = by_path["/hooks/s3ops"]
    assert (hook["event"], hook["dag_id"], hook["task_id"], hook["error"]) == (
        "failure", "s3_upload", "check", "RuntimeError: 2 file(s) failed <x> & y")
    slack = by_path["/services/T000/B000/XXX"]
    assert "RuntimeError: 2 file(s) failed &lt;x&gt; &amp; y" in slack["text"] and "more" not in slack["text"]
    assert mailbox.wait_for(1, timeout=2) == []  # the e-mail target only wants approvals


def test_the_runs_resolved_settings_win_over_the_variable(mailbox, monkeypatch):
    """When the run's first task recorded its resolved settings (settings.json: a value typed in the form
    beats the Variable), the approval goes where they say, with their limits."""
    from include.core import artifacts
    from include.dag_defaults import DeploymentNotifier

    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_DEPLOY_CLEANUP", json.dumps({"notifications": [
        {"type": "email", "to": ["from-variable@example.com"]}]}))
    run_id = "manual__2026-11-30T11:00:00+00:00"
    artifacts.write_json(artifacts.run_dir("s3_deploy_cleanup", run_id) / "settings.json", {"values": {
        "notifications": [{"type": "email", "to": ["typed-in-form@example.com"]}], "max_delete_count": 7,
        "max_delete_fraction": None, "bucket": "deploys"}})
    ti = _TI(dag_id="s3_deploy_cleanup", run_id=run_id, task_id="approve", map_index=-1, try_number=1,
             xcoms={"plan": {"delete_count": 3, "delete_bytes": 30, "headline": "3 old deployments"}})
    DeploymentNotifier("approval")({"ti": ti, "task": SimpleNamespace(plan_task_id="plan"),
                                    "params": {"bucket": None, "max_delete_count": None}})
    (mail,) = mailbox.wait_for(1)
    assert mail["to"] == ["typed-in-form@example.com"]
    assert "max_delete_count=7" in mail["body"] and "deploys" in mail["body"]


def test_a_broken_variable_still_sends_the_failure_to_the_last_targets(tmp_path, run_dag, mailbox, monkeypatch):
    """An invalid edit of the Variable fails every run in its first task, and the failure notifier read its
    targets from that same Variable: it only logged "no failure notification sent", and uploads stopped
    in silence. The targets the last run resolved get it now."""
    write(tmp_path, rel_at("oslo", NOW - timedelta(hours=2), "t"), b"x\n")
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_UPLOAD", json.dumps({"notifications": ["ops@example.com"]}))
    first = run_dag("s3_upload", {"base_dir": str(tmp_path), "bucket": "s3ops-no-such-bucket"}, retries=0)
    assert first.state == "failed" and len(mailbox.wait_for(1)) == 1  # resolved, remembered, mailed
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_UPLOAD", '{"notifications": ["ops@example.com"], oops}')
    broken = run_dag("s3_upload", {"base_dir": str(tmp_path), "bucket": "s3ops-no-such-bucket"}, retries=0)
    assert broken.state == "failed" and broken.task_states()[("scan", -1)] == "failed"
    mails = mailbox.wait_for(2)
    assert len(mails) == 2 and mails[1]["to"] == ["ops@example.com"]
    assert "failed: s3_upload.scan" in mails[1]["subject"] and "not valid JSON" in mails[1]["body"]


def test_a_failure_that_reached_nobody_is_sent_again_at_once(mailbox, monkeypatch, tmp_path):
    """The repeat window starts when a failure reached a target: one sent while SMTP was down was lost, and
    the same failure a minute later must still be mailed (it was held back for 6 hours)."""
    from include.core import artifacts
    from include.dag_defaults import DeploymentNotifier
    from scripts.stack import free_port

    monkeypatch.setenv(artifacts.ROOT_ENV, str(tmp_path))
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_UPLOAD", json.dumps({"notifications": ["ops@example.com"]}))
    ti = _TI(dag_id="s3_upload", run_id="r1", task_id="check", map_index=-1, try_number=1, xcoms={})
    context = {"ti": ti, "params": {}, "exception": RuntimeError("3 file(s) failed")}
    down = {**json.loads(mailbox.conn_uri_json()), "port": free_port()}  # nobody listens there
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(down))
    DeploymentNotifier("failure")(context)  # SMTP is down: logged, nothing delivered
    assert mailbox.wait_for(1, timeout=2) == []
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", mailbox.conn_uri_json())
    DeploymentNotifier("failure")({**context, "ti": _TI(**{**vars(ti), "run_id": "r2"})})
    assert len(mailbox.wait_for(1)) == 1
    DeploymentNotifier("failure")({**context, "ti": _TI(**{**vars(ti), "run_id": "r3"})})  # delivered: held back now
    assert len(mailbox.wait_for(2, timeout=3)) == 1


def test_an_audit_failing_for_a_task_that_already_failed_sends_no_second_mail(mailbox, monkeypatch, tmp_path):
    """The audit runs after a delete or purge failed for good, records it and fails the run: the failed task
    has reported itself, so the audit's own failure is not mailed again; any other audit failure is."""
    from include.core import artifacts
    from include.dag_defaults import AlreadyReported, DeploymentNotifier

    monkeypatch.setenv(artifacts.ROOT_ENV, str(tmp_path))
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", mailbox.conn_uri_json())
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_RETENTION", json.dumps({"notifications": ["ops@example.com"]}))
    ti = _TI(dag_id="s3_retention", run_id="r1", task_id="audit", map_index=-1, try_number=1, xcoms={})
    DeploymentNotifier("failure")({"ti": ti, "params": {}, "exception": AlreadyReported("purge_job_rows failed")})
    assert mailbox.wait_for(1, timeout=2) == []
    DeploymentNotifier("failure")({"ti": ti, "params": {}, "exception": RuntimeError("1 keys could not be deleted")})
    assert [m["subject"] for m in mailbox.wait_for(1)] == [
        "[s3ops] failed: s3_retention.audit: RuntimeError: 1 keys could not be deleted"]


def test_a_webhook_that_never_answers_does_not_hold_the_task(monkeypatch, mailbox):
    """A webhook target is given a bounded wait; the targets after it still get the message."""
    import socket
    import time

    from include import dag_defaults
    from include.core import notify

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    try:
        monkeypatch.setenv("AIRFLOW_CONN_HUNG", json.dumps({"conn_type": "http", "host": "127.0.0.1",
                                                            "port": listener.getsockname()[1], "schema": "http"}))
        monkeypatch.setattr(dag_defaults, "WEBHOOK_TIMEOUT_SECONDS", 1)
        targets = notify.parse_targets([{"type": "webhook", "conn_id": "hung", "endpoint": "/hook"}, "ops@example.com"])
        message = notify.failure_message(dag_id="s3_upload", run_id="r", task_id="check", error=RuntimeError("x"),
                                         map_index=-1, try_number=1, link="http://airflow.example/x")
        started = time.monotonic()
        sent = dag_defaults.send(message, targets, {"ti": None})
        assert time.monotonic() - started < 20 and sent == 1
        assert len(mailbox.wait_for(1)) == 1
    finally:
        listener.close()


def test_an_unreachable_s3_artifact_store_does_not_silence_the_failure(mailbox, monkeypatch):
    """s3fs passes botocore's connection errors through untranslated: the failure callback raised
    EndpointConnectionError, the Variable's targets were never tried, and an outage of the store failed every
    task with nobody told."""
    from include.dag_defaults import DeploymentNotifier

    _unreachable_store(monkeypatch)
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_UPLOAD", json.dumps({"notifications": ["ops@example.com"]}))
    ti = _TI(dag_id="s3_upload", run_id="scheduled__r1", task_id="scan", map_index=-1, try_number=4, xcoms={})
    DeploymentNotifier("failure")({"ti": ti, "exception": OSError("Could not connect to the endpoint URL")})
    (mail,) = mailbox.wait_for(1)
    assert mail["to"] == ["ops@example.com"] and "failed: s3_upload.scan" in mail["subject"]


def test_mapped_tasks_failing_together_on_an_s3_store_mail_once(s3, mailbox, monkeypatch):
    """The mark was read, the mail sent, and only then the mark written: every mapped task failing with the
    same error mailed. The first claims the mark with a conditional PUT (If-None-Match: *), the rest lose."""
    import threading
    import uuid

    from include.core import artifacts
    from include.dag_defaults import DeploymentNotifier

    bucket = f"artifacts-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    monkeypatch.setenv(artifacts.ROOT_ENV, f"s3://{bucket}/store")
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_STORAGE_REPORT", json.dumps({"notifications": ["ops@example.com"]}))
    mark = artifacts.artifact_root() / "_test" / "claim.json"
    assert artifacts.create_exclusive(mark, b"first") and not artifacts.create_exclusive(mark, b"second")
    assert artifacts.read_bytes(mark) == b"first"

    def fail(map_index: int) -> None:
        ti = _TI(dag_id="s3_storage_report", run_id="scheduled__r1", task_id="summarize_shard", map_index=map_index,
                 try_number=4, xcoms={})
        DeploymentNotifier("failure")({"ti": ti, "exception": ConnectionError("Could not connect to the endpoint")})

    threads = [threading.Thread(target=fail, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(mailbox.wait_for(2, timeout=5)) == 1


def test_the_report_marks_of_one_failure_on_an_s3_store_follow_each_other(s3, mailbox, monkeypatch):
    """On an s3:// root: tasks failing on either side of a 6-hour slot boundary mail once (each claimed
    its own slot's mark and both mailed), and the same failure a window after the report mails again."""
    import time
    import uuid

    from include import dag_defaults
    from include.core import artifacts
    from include.dag_defaults import DeploymentNotifier

    bucket = f"artifacts-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    monkeypatch.setenv(artifacts.ROOT_ENV, f"s3://{bucket}/store")
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_UPLOAD", json.dumps({"notifications": ["ops@example.com"]}))
    window = dag_defaults.FAILURE_REPEAT_AFTER.total_seconds()
    clock = {"now": 0.0}
    monkeypatch.setattr(time, "time", lambda: clock["now"])

    def fail_at(now: float, run_id: str) -> int:
        clock["now"] = now
        ti = _TI(dag_id="s3_upload", run_id=run_id, task_id="check", map_index=-1, try_number=1, xcoms={})
        DeploymentNotifier("failure")({"ti": ti, "exception": RuntimeError("3 file(s) failed")})
        return len(mailbox.wait_for(9, timeout=0.3))

    boundary = 100 * window
    assert fail_at(boundary + 1, "r1") == 1  # just after the boundary, first to claim
    assert fail_at(boundary - 1, "r2") == 1  # its clock read just before: held back, not a second mail
    assert fail_at(boundary + window + 2, "r3") == 2  # a window after the report
    assert fail_at(boundary + window + 3, "r4") == 2
    marks = sorted(p.name for p in (artifacts.artifact_root() / "_notifications").iterdir())
    assert [m.rsplit(".", 2)[1] for m in marks] == ["0", "1"]


def test_a_chain_forgotten_while_two_tasks_claim_on_an_s3_store_mails_once(s3, s3_server, mailbox, monkeypatch):
    """On an s3:// root (conditional PUTs, fresh listings): housekeeping forgets a failure's two-day-old
    mark after task A read it; B finds no mark; A creates mark 1, B mark 0, then A looks back. Both mailed."""
    import uuid
    from datetime import UTC, datetime, timedelta

    from include.core import artifacts
    from include.dag_defaults import DeploymentNotifier
    from tests.unit.test_failure_notifier import Steps, reported_days_ago

    bucket = f"artifacts-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    monkeypatch.setenv(artifacts.ROOT_ENV, f"s3://{bucket}/store")
    monkeypatch.setenv("AIRFLOW_VAR_S3OPS_UPLOAD", json.dumps({"notifications": ["ops@example.com"]}))

    def fails(run_id: str) -> Any:
        ti = _TI(dag_id="s3_upload", run_id=run_id, task_id="check", map_index=-1, try_number=1, xcoms={})
        return lambda: DeploymentNotifier("failure")({"ti": ti, "exception": RuntimeError("3 file(s) failed")})

    def age_marks() -> None:
        old = (datetime.now(UTC) - timedelta(days=3)).isoformat()
        s3_server.control("POST", "touch", {"bucket": bucket, "prefix": "store/_notifications/", "last_modified": old})

    reported_days_ago(fails("scheduled__r0"), age_marks, monkeypatch)
    assert len(mailbox.wait_for(1, timeout=5)) == 1
    steps = Steps(monkeypatch, ("A", "create", 1), ("A", "created", 1), ("B", "create", 1))
    a = steps.start("A", fails("scheduled__a"))
    steps.reach("A", "create")
    from include.core.housekeeping import housekeep

    assert housekeep(artifacts.artifact_root(), {})["notification_marks_removed"] == 1
    b = steps.start("B", fails("scheduled__b"))
    steps.reach("B", "create")
    steps.go("A", "create")
    steps.reach("A", "created")
    steps.go("B", "create")
    b.join()
    steps.go("A", "created")
    a.join()
    assert len(mailbox.wait_for(9, timeout=0.5)) == 2  # three days ago, and once now
    marks = [k["Key"] for k in s3.list_objects_v2(Bucket=bucket, Prefix="store/_notifications/").get("Contents", [])]
    assert [m.rsplit(".", 2)[1] for m in marks] == ["0"]
