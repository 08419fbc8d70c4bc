"""include.core.notify: target parsing (what a deployment may write) and the messages (what people read)."""

from __future__ import annotations

import pytest

from include.core import notify
from include.core.notify import NotifyConfigError, Target, parse_targets


def test_unset_means_no_targets():
    for raw in (None, "", []):
        assert parse_targets(raw) == []


def test_targets_of_every_kind():
    targets = parse_targets([
        "ops@example.com",
        {"type": "email", "to": ["a@x.org", "b@x.org"], "conn_id": "smtp_ops", "from": "s3ops@x.org",
         "events": ["approval"]},
        {"type": "slack", "channel": "#s3ops"},
        {"type": "slack_webhook", "conn_id": "hooks", "events": "failure"},
        {"type": "webhook", "endpoint": "/hooks/s3ops"},
        {"type": "smtp", "to": "c@x.org"},
    ])
    assert targets[5] == Target("email", "smtp_default", to=("c@x.org",))
    assert targets[0] == Target("email", "smtp_default", to=("ops@example.com",))
    assert (targets[1].to, targets[1].conn_id, targets[1].sender) == (("a@x.org", "b@x.org"), "smtp_ops", "s3ops@x.org")
    assert targets[1].wants("approval") and not targets[1].wants("failure")
    assert (targets[2].kind, targets[2].conn_id, targets[2].channel) == ("slack", "slack_api_default", "#s3ops")
    assert targets[3].events == frozenset({"failure"})
    assert (targets[4].conn_id, targets[4].endpoint) == ("http_default", "/hooks/s3ops")


@pytest.mark.parametrize(("raw", "complaint"), [
    (42, "must be a list"),
    (["not an address"], r"\[0\]: 'not an address' is not an e-mail address"),
    (["a@b.c\nBcc: x@y.z"], "is not an e-mail address"),
    ([{"type": "pager"}], "'type' must be one of"),
    ([{"type": "email"}], "needs 'to'"),
    ([{"type": "email", "to": []}], "needs 'to'"),
    ([{"type": "slack"}], "needs 'channel'"),
    ([{"type": "slack", "channel": "#a b"}], "needs 'channel'"),
    ([{"type": "webhook", "endpoint": "http://evil.example/x"}], "'endpoint' is a path"),
    ([{"type": "webhook", "conn_id": "../x y"}], "conn_id must name"),
    ([{"type": "email", "to": ["a@b.c"], "events": ["everything"]}], "'events' must be"),
    ([{"type": "email", "to": ["a@b.c"], "events": []}], "'events' must be"),
    ([{"type": "email", "to": ["a@b.c"], "cc": ["d@e.f"]}], r"unknown keys \['cc'\]"),
])
def test_bad_targets_are_refused_naming_the_entry(raw, complaint):
    with pytest.raises(NotifyConfigError, match=complaint):
        parse_targets(raw, source="key 'notifications' of the Airflow Variable 's3ops_upload'")


def test_the_error_names_the_variable():
    with pytest.raises(NotifyConfigError, match=r"^key 'notifications' of the Airflow Variable 's3ops_upload'\[1\]"):
        parse_targets(["a@b.c", {"type": "x"}], source="key 'notifications' of the Airflow Variable 's3ops_upload'")


def test_settings_variable_names():
    assert [notify.settings_variable(d) for d in ("s3_upload", "s3_retention", "s3ops_housekeeping")] == [
        "s3ops_upload", "s3ops_retention", "s3ops_housekeeping"]


def test_failure_message_first_line_only_and_cleaned():
    err = RuntimeError("boom: key 'a\x1bb'\nTraceback (most recent call last):\n  secret stuff")
    msg = notify.failure_message(dag_id="s3_upload", run_id="manual__2026-11-30T10:00:00+00:00", task_id="check",
                                 error=err, link="/dags/s3_upload/runs/x", map_index=3, try_number=2)
    assert msg.subject == "[s3ops] failed: s3_upload.check[3]: RuntimeError: boom: key 'a\\x1bb'"
    assert "secret stuff" not in msg.text and "Traceback" not in msg.html
    assert "Task: check[3]" in msg.text and "Run: manual__2026-11-30T10:00:00+00:00" in msg.text
    assert msg.data["error"] == "RuntimeError: boom: key 'a\\x1bb'"


def test_failure_without_exception_and_huge_error():
    assert notify.first_line(None) == "unknown error"
    assert notify.first_line(ValueError()) == "ValueError"
    long = notify.first_line("x" * 10_000)
    assert len(long) == notify.LINE_MAX and long.endswith("…")


def test_approval_message_escapes_per_channel():
    summary = {"headline": "2 files <b>&</b>", "delete_count": 2, "delete_bytes": 2048, "scanned_count": "bad",
               "samples": ["a<script>.dat", "b`c\u202e.dat"], "by_reason": {"orphan": {"count": 2, "bytes": 2048}}}
    msg = notify.approval_message(dag_id="s3_retention", run_id="r", summary=summary,
                                  limits={"bucket": "jobs", "max_delete_count": 10, "max_delete_fraction": None},
                                  link="https://af/x?a=1&b=2")
    assert "<script>" not in msg.html and "&lt;script&gt;" in msg.html
    assert 'href="https://af/x?a=1&amp;b=2"' in msg.html
    assert "\u202e" not in msg.text and "\\u202e" in msg.text  # bidi override shown, not obeyed
    assert "<b>" not in msg.slack and "&lt;b&gt;" in msg.slack and "<https://af/x?a=1&b=2|" in msg.slack
    assert "Guard limits: max_delete_count=10" in msg.text and "Scanned: 0 objects" in msg.text
    assert msg.data["delete_bytes"] == 2048 and msg.data["limits"] == {"max_delete_count": 10}
    assert "Delete: 2 objects, 2.00 KiB (2048 bytes)" in msg.text


def test_required_actions_link_quotes_ids():
    assert notify.required_actions_link("https://af/", "s3_retention", "manual__2026-11-30T10:00:00+00:00",
                                        "approve") == ("https://af/dags/s3_retention/runs/manual__2026-11-30T10%3A00%3A00"
                                                       "%2B00%3A00/tasks/approve/required_actions?map_index=-1")
    assert notify.required_actions_link(None, "d", "a/b?c", "t").startswith("/dags/d/runs/a%2Fb%3Fc/")


def test_failures_of_one_kind_are_repeated_only_after_the_window():
    def fail(error: str) -> notify.Message:
        return notify.failure_message(dag_id="s3_upload", run_id="r", task_id="check", error=error, link="/")

    first, same, other = fail("1 conflicted"), fail("2 conflicted"), fail("1 failed")  # counts do not count
    assert notify.dedupe_key(first) == notify.dedupe_key(same) != notify.dedupe_key(other)
    assert notify.should_send(first, None, 1000.0, 3600)
    assert not notify.should_send(same, 1000.0, 1000.0 + 3599, 3600)
    assert notify.should_send(same, 1000.0, 1000.0 + 3600, 3600)
    assert notify.should_send(same, 5000.0, 1000.0, 3600)  # a mark from the future (clock skew) does not mute
    approval = notify.approval_message(dag_id="d", run_id="r", summary={}, limits={}, link="/")
    assert notify.should_send(approval, 1000.0, 1000.0, 3600)  # approval requests always go out


def test_the_duplicate_key_ignores_numbers_only():
    def fail(error: str) -> notify.Message:
        return notify.failure_message(dag_id="s3_upload", run_id="r", task_id="check", error=error, link="/")

    assert notify.dedupe_key(fail("12 file(s) failed")) == notify.dedupe_key(fail("13 file(s) failed"))
    assert notify.dedupe_key(fail("12 file(s) failed")) != notify.dedupe_key(fail("12 file(s) conflicted"))
    assert notify.failure_kind("run scheduled__2026-01-02T10:00:00+00:00 had 3 errors") == "run scheduled__# had # errors"
    assert notify.failure_kind("3 of 5 chunks failed after 10 attempts") == "# of # chunks failed after # attempts"
    # numbers that name something are no counts: other buckets, other statuses are other failures
    assert notify.dedupe_key(fail("bucket 'web-1': AccessDenied")) != notify.dedupe_key(fail("bucket 'web-2': AccessDenied"))
    assert notify.dedupe_key(fail("ListObjectsV2 (403)")) != notify.dedupe_key(fail("ListObjectsV2 (500)"))
    assert notify.failure_kind("HTTP 503 Slow Down on v2 key k-17") == "HTTP 503 Slow Down on v2 key k-17"
    assert notify.failure_kind("500 (InternalError); 2006 (HY000)") == "500 (InternalError); 2006 (HY000)"


def test_a_status_written_like_a_count_is_another_failure():
    """"error 404 not found" and "error 500 internal error" shared one key (the status was taken for a count):
    the second failure of a window was never sent. A status after a status word, or before an HTTP reason
    phrase, stays in the key; the counts of one outage still do not."""
    def key(error: str) -> str:
        return notify.dedupe_key(notify.failure_message(dag_id="s3_upload", run_id="r", task_id="check",
                                                        error=RuntimeError(error), link="/"))

    distinct = ["error 404 not found", "error 500 internal error", "HTTP/1.1 503 slow down",
                "HTTP/1.1 502 bad gateway", "status 403 forbidden", "exit 2 from the hook", "exit 1 from the hook",
                "errno 28 no space left on device", "errno 13 no space left on device",
                "got 401 unauthorized from the proxy", "got 407 unauthorized from the proxy"]
    assert len({key(e) for e in distinct}) == len(distinct)
    # true duplicates still share a key: counts, also after other words and in the status range
    assert key("error 404 not found") == key("error 404 not found")
    assert key("Error: 3 files failed") == key("Error: 4 files failed")
    assert key("120 of 400 keys failed") == key("121 of 401 keys failed")
    assert key("404 objects not deleted") == key("405 objects not deleted")


def test_an_upload_outage_with_growing_counts_keeps_its_key_and_its_counts():
    """The upload's check names the counts, they grew every minute, and each minute was a new failure."""
    from include.upload.uploader import problems

    def fail(failed: int) -> notify.Message:
        return notify.failure_message(dag_id="s3_upload", run_id="r", task_id="check", link="/",
                                      error=RuntimeError(problems({"failed": failed, "conflicts": 0})))

    assert len({notify.dedupe_key(fail(n)) for n in (12, 13, 14, 15)}) == 1
    assert "12 file(s) failed" in fail(12).subject


@pytest.mark.parametrize("secret", [
    "https://hooks.slack.com/services/T0000/B0000/XXXXSECRETXXXX",
    "mailto://alice:S3cretPassw0rd@smtp.gmail.com",
    "alice:S3cretPassw0rd@smtp.gmail.com",
    {"type": "webhook", "endpoint": "/hooks/s3ops?token=S3cretPassw0rd"},
    {"type": "slack", "conn_id": "https://hooks.slack.com/services/T0000/B0000/XXXXSECRETXXXX", "channel": "#x"},
    "hooks.slack.com/services/T0000/B0000/XXXXSECRETXXXX",  # no scheme
    "ops:pa/S3cretPassw0rd@smtp.example.com",  # a password with a '/'
    {"type": "slack", "channel": "https://hooks.slack.com/services/T0000/B0000/XXXXSECRETXXXX x"},
    {"type": "email", "to": ["ops@example.com"], "events": "https://hooks.slack.com/services/XXXXSECRETXXXX"},
    {"type": "slack", "conn_id": ["https://hooks.slack.com/services/XXXXSECRETXXXX"], "channel": "#x"},
    {"type": "https://hooks.slack.com/services/XXXXSECRETXXXX"},
    "xoxb-1234567890-1234567890123-AbCdEfS3cretPassw0rd",  # a Slack bot token in the wrong place
    {"type": "email", "to": "S3cretPassw0rd"},
])
def test_a_rejected_target_that_may_hold_a_secret_is_not_echoed(secret):
    """The error is logged and mailed to the remembered targets: a URL pasted as a target is named, never shown."""
    with pytest.raises(notify.NotifyConfigError) as err:
        notify.parse_targets([secret])
    assert "S3cretPassw0rd" not in str(err.value) and "XXXXSECRETXXXX" not in str(err.value)
    assert "not shown: it may hold a secret" in str(err.value)


def test_plain_addresses_are_still_accepted_and_named_when_wrong():
    assert notify.parse_targets(["ops@example.com"])[0].to == ("ops@example.com",)
    with pytest.raises(notify.NotifyConfigError, match="'not-an-address' is not an e-mail address"):
        notify.parse_targets(["not-an-address"])



@pytest.mark.parametrize("value", [[["https://hooks.slack.com/services/XXXXSECRETXXXX"]], 5,
                                   [{"type": "email", "to": "S3cretPassw0rd"}, 7]])
def test_a_notifications_setting_that_fails_its_schema_does_not_echo_it(value):
    """The JSON schema's own message quoted the value (a webhook URL nested in a list)."""
    from include.core.settings import NOTIFICATIONS, SettingsError

    with pytest.raises(SettingsError) as err:
        NOTIFICATIONS.check(value, "the Variable 's3ops_upload'")
    assert "XXXXSECRETXXXX" not in str(err.value) and "S3cretPassw0rd" not in str(err.value)
    assert "notifications" in str(err.value) and "the Variable 's3ops_upload'" in str(err.value)
