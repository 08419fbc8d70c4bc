"""include.core.times, include.core.errors and include.core.text (the one timestamp form, the one S3 error reader and the
one way a name is shown), and the S3 clients' attempts from AWS_MAX_ATTEMPTS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from include.core.errors import error_code, error_text
from include.core.times import format_time, logical_now, parse_time, utc


def test_format_time_is_utc_with_z_at_the_asked_precision() -> None:
    t = datetime(2026, 11, 22, 5, 28, 13, 456789, tzinfo=timezone(timedelta(hours=1)))
    assert format_time(t) == "2026-11-22T04:28:13.456Z"
    assert format_time(t, "seconds") == "2026-11-22T04:28:13Z"
    assert format_time(datetime(2026, 1, 1)) == "2026-01-01T00:00:00.000Z"  # naive means UTC


def test_parse_time_round_trips_and_accepts_offsets() -> None:
    assert parse_time("2026-11-22T04:28:13.000Z") == datetime(2026, 11, 22, 4, 28, 13, tzinfo=UTC)
    assert parse_time("2026-11-22T06:28:13+02:00") == datetime(2026, 11, 22, 4, 28, 13, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_time("yesterday")


def test_logical_now_prefers_the_logical_date_then_run_after() -> None:
    logical, after = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    run = SimpleNamespace(run_after=after)
    assert logical_now({"logical_date": logical, "dag_run": run}) == logical
    assert logical_now({"logical_date": None, "dag_run": run}) == after
    # a logical date in the future (the REST API takes one): the run's now is when it was due, not 2099
    assert logical_now({"logical_date": datetime(2099, 1, 1, tzinfo=UTC), "dag_run": run}) == after
    assert utc(datetime(2026, 1, 1)).tzinfo is UTC


def test_utc_gives_a_plain_aware_datetime_whatever_it_is_given() -> None:
    """MySQL's naive rows, another offset, and Airflow's pendulum DateTime (whose arithmetic can drop the zone)."""
    import pendulum

    paris = pendulum.datetime(2026, 1, 1, 1, tz="Europe/Paris")
    for given in (datetime(2026, 1, 1), datetime(2026, 1, 1, 2, tzinfo=timezone(timedelta(hours=2))), paris):
        got = utc(given)
        assert type(got) is datetime and got.tzinfo is UTC and got == datetime(2026, 1, 1, tzinfo=UTC), given


def test_error_code_and_text_read_s3_answers_and_name_other_errors() -> None:
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "ListObjectsV2")
    assert error_code(denied) == "AccessDenied" and error_text(denied) == "AccessDenied: no"
    bare = ClientError({"Error": {}}, "HeadObject")
    assert error_code(bare) == "" and error_text(bare).startswith("Error")
    down = EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    assert error_code(down) == "" and error_text(down).startswith("EndpointConnectionError: ")
    odd = RuntimeError("x")
    odd.response = "not a dict"  # type: ignore[attr-defined]
    assert error_code(odd) == "" and error_text(odd) == "RuntimeError: x"


@pytest.mark.parametrize(("raw", "attempts"), [(None, 10), ("", 10), (" 3 ", 3), ("1", 1), ("25", 25)])
def test_client_attempts_follow_aws_max_attempts(monkeypatch, raw, attempts):
    from include.aws import client

    if raw is None:
        monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    else:
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", raw)
    assert client._max_attempts() == attempts
    made = client.client_from_args(endpoint_url="http://127.0.0.1:9", region_name="us-east-1")
    assert made.meta.config.retries["total_max_attempts"] == attempts  # read when the client is made


@pytest.mark.parametrize("raw", ["0", "-1", "1.5", "three", "\u0663"])  # the last: an Arabic-Indic 3
def test_a_bad_aws_max_attempts_is_refused_by_name(monkeypatch, raw):
    from include.aws import client

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", raw)
    with pytest.raises(ValueError, match="AWS_MAX_ATTEMPTS must be a whole number"):
        client._max_attempts()


def test_one_shown_for_paths_keys_and_rows_tells_twins_and_bytes_apart():
    """Upload reports and approval texts showed names by two rules: the upload's kept NFD ``é`` looking like NFC
    ``é`` (two local files, one name on screen), the approval's wrote a control character as ``\\x1b``, which in
    the upload's meant a byte that is not UTF-8. One rule now: a combining mark and a control are code points, a
    raw byte is ``\\xNN``."""
    from include.core.text import shown
    from include.deletion.approval import shown as approval_shown
    from include.upload.layout import shown as layout_shown

    assert layout_shown is approval_shown is shown
    assert shown("2020/cafe\u0301.dat") == "2020/cafe\\u0301.dat" != shown("2020/caf\u00e9.dat") == "2020/caf\u00e9.dat"
    assert shown("a\x1bb") == "a\\u001bb" and shown("a\udc9bb") == "a\\x9bb" and shown("a\\x9bb") == "a\\\\x9bb"
    assert shown("Ünïcödé 日本 𝟎") == "Ünïcödé 日本 𝟎" and shown(42) == "42"
