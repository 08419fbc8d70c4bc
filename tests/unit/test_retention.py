"""The retention rule, ISO durations and the merge join, checked against a brute-force reference."""

from __future__ import annotations

import calendar
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from include.aws.listing import S3Object
from include.retention.policy import (
    JobRow,
    OrderError,
    Policy,
    classify_job,
    parse_duration,
    plan_retention,
    protected_now,
    spellings,
)

NOW = datetime(2019, 6, 3, tzinfo=UTC)


def sql_type(value: str | None) -> str:
    """A job's type as MySQL's ``UPPER(TRIM(type))`` reads it for ASCII: spaces trimmed, letters upper-cased
    (anything else is no type this policy knows)."""
    kind = (value or "").strip(" ")
    return kind.upper() if kind.isascii() else ""


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def obj(key: str, size: int = 1, modified: datetime = NOW - timedelta(days=400)) -> S3Object:
    return S3Object(key, size, iso(modified), "STANDARD", "")


@pytest.mark.parametrize(
    ("text", "now", "expected"),
    [
        ("P3M", datetime(2019, 6, 3, tzinfo=UTC), datetime(2019, 3, 3, tzinfo=UTC)),
        ("P3M", datetime(2019, 5, 31, tzinfo=UTC), datetime(2019, 2, 28, tzinfo=UTC)),  # calendar months, clamped
        ("P1Y2M", datetime(2020, 4, 30, tzinfo=UTC), datetime(2019, 2, 28, tzinfo=UTC)),
        ("P90D", datetime(2019, 6, 3, tzinfo=UTC), datetime(2019, 3, 5, tzinfo=UTC)),
        ("P2W", datetime(2019, 6, 3, tzinfo=UTC), datetime(2019, 5, 20, tzinfo=UTC)),
        ("PT12H", datetime(2019, 6, 3, tzinfo=UTC), datetime(2019, 6, 2, 12, tzinfo=UTC)),
        ("P1M", datetime(2019, 3, 31, tzinfo=UTC), datetime(2019, 2, 28, tzinfo=UTC)),
        ("P1Y", datetime(2020, 2, 29, tzinfo=UTC), datetime(2019, 2, 28, tzinfo=UTC)),
    ],
)
def test_durations_subtract_calendar_units(text, now, expected):
    assert parse_duration(text).before(now) == expected


def plus(t: datetime, text: str) -> datetime:
    """``t`` + an ISO 8601 duration as ISO 8601 (and dateutil) add one: years and months first (the day clamped
    to the month's end), then weeks, days and time."""
    d = parse_duration(text)
    year, month = divmod(t.year * 12 + t.month - 1 + d.months, 12)
    return t.replace(year=year, month=month + 1, day=min(t.day, calendar.monthrange(year, month + 1)[1])) + d.delta


@settings(max_examples=500, deadline=None)
@given(text=st.sampled_from(["P3M", "P1M15D", "P2M30D", "P1Y2M3W", "P1MT12H", "P90D", "P1M1D"]),
       now=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(lambda t: t.replace(tzinfo=UTC)))
def test_no_trial_expires_before_it_completed_plus_the_retention(text, now):
    """A TRIAL completed at the cutoff was expired 3 days early under P1M15D (completed 2019-01-17, expired on
    2019-03-01, not 2019-03-04): the cutoff subtracted the months first, then the days."""
    assert plus(parse_duration(text).before(now), text) <= now


@pytest.mark.parametrize("bad", ["", "P", "PT", "3M", "P3", "P-3M", "P1.5M", "P3MT", "three months", "P1D2M",
                                 "p", "p1m", " P1M ", "P1D1D", "P1M1Y"])
def test_bad_durations_are_rejected_with_a_clear_message(bad):
    with pytest.raises(ValueError, match="not an ISO 8601 duration.*P3M"):
        parse_duration(bad)


def test_policy_rejects_negative_orphan_age():
    with pytest.raises(ValueError, match="orphan_min_age_days"):
        Policy.at(NOW, "P3M", -1)


def _dag_accepts(name: str, value: object) -> bool:
    from include.core.settings import SettingsError
    from include.retention.settings import SETTINGS

    try:
        SETTINGS[name].check(value, "a test")
    except SettingsError:
        return False
    return True


def _cli_days(text: str) -> float | None:
    import argparse

    from include.retention.cli import _days

    try:
        return _days(text)
    except argparse.ArgumentTypeError:
        return None


@pytest.mark.parametrize("days", [0, 7.5, 36_500, 36_500.5, 36_501, 800_000, 1e6, 1e400, math.nan, -1])
def test_orphan_age_bounds_are_the_dags_in_the_library_and_the_command_line(days):
    """One limit (include.core.settings.MAX_DAYS): what the DAG's setting refuses, Policy.at and
    --orphan-min-age-days refuse too (800000 raised OverflowError on the command line)."""
    dag = _dag_accepts("orphan_min_age_days", days)
    assert (_cli_days(repr(days)) is not None) == dag
    if dag:
        assert Policy.at(NOW, "P3M", days).orphan_cutoff == NOW - timedelta(days=days)
    else:
        with pytest.raises(ValueError, match="orphan_min_age_days must be a number of days from 0 to 36500"):
            Policy.at(NOW, "P3M", days)


@pytest.mark.parametrize("text", ["P999999999D", "P99999999999999999999999D", "P1000Y", "P10000M", "P10000W",
                                  "P100000D", "PT1000000H", "PT10000000M", "PT1000000000S", "P00000000001D"])
def test_durations_the_dag_refuses_are_refused_here_too(text):
    assert not _dag_accepts("trial_retention", text)
    with pytest.raises(ValueError, match=f"trial_retention '{text}' is out of range: at most 3 digits of years"):
        parse_duration(text)


@pytest.mark.parametrize(("now", "text", "days"), [
    (NOW, "P999Y9999M9999W99999DT999999H9999999M999999999S", 7),  # the DAG's pattern allows it: ~2,500 years
    (datetime(1800, 1, 1, tzinfo=UTC), "P999Y9999M", 7),  # months alone (1,832 years)
    (datetime(1, 1, 1, tzinfo=UTC), "PT1S", 0),  # the day count (timedelta) part
    (datetime(1, 1, 1, tzinfo=UTC), "P0D", 1),  # the orphan cutoff
    (datetime(1, 1, 1, 11, 59, tzinfo=UTC), "P0D", 0),  # the cutoff less 12 hours for a DATETIME completedAt
])
def test_a_cutoff_before_year_1_is_refused_not_an_overflow(now, text, days):
    assert _dag_accepts("trial_retention", text)
    with pytest.raises(ValueError, match="before year 1"):
        Policy.at(now, text, days)


def test_a_completed_at_of_no_time_zone_moves_the_trial_cutoff_12_hours_back_and_nothing_else():
    policy = Policy.at(datetime(1, 1, 1, 12, tzinfo=UTC), "P0D", 0)  # the earliest time it can be done for
    zoneless = policy.for_zoneless_times()
    assert zoneless.trial_cutoff == datetime(1, 1, 1, tzinfo=UTC)
    assert (zoneless.now, zoneless.orphan_cutoff) == (policy.now, policy.orphan_cutoff)
    late = datetime(1, 1, 1, 6, tzinfo=UTC)  # before the cutoff read as UTC; after it in a zone west of UTC-6
    assert classify_job("TRIAL", late, policy) == "trial_expired"
    assert classify_job("TRIAL", late, zoneless) == "trial_recent"


@pytest.mark.parametrize("limit", ["-1", "x"])
def test_the_command_line_refuses_a_negative_limit(limit, capsys):
    """``--limit -5`` printed no file and then "… and N+5 more": a count of files that do not exist."""
    from include.retention import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main(["--bucket", "b-bucket", "--mysql-database", "d", "--limit", limit])
    assert exit_.value.code == 2 and "--limit" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "says"), [
    (["--trial-retention", "P999999999D"], "trial_retention 'P999999999D' is out of range"),
    (["--now", "1800-01-01T00:00:00Z", "--trial-retention", "P999Y9999M"], "is before year 1"),
    (["--now", "0001-01-01T00:00:00Z", "--trial-retention", "PT1S"], "is before year 1"),
    (["--now", "0001-01-01T00:30:00+01:00"], "--now '0001-01-01T00:30:00+01:00' is not an ISO 8601 time"),
])
def test_the_command_line_refuses_a_cutoff_off_the_calendar_in_one_line_before_connecting(args, says, monkeypatch,
                                                                                          capsys):
    import include.aws.client
    from include.retention import cli, jobs

    def no_connection(*_: object, **__: object) -> None:
        raise AssertionError("connected before refusing the arguments")

    monkeypatch.setattr(include.aws.client, "client_from_args", no_connection)
    monkeypatch.setattr(jobs, "connect_direct", no_connection)
    assert cli.main(["--bucket", "b-bucket", "--mysql-database", "d", "--endpoint-url", "http://127.0.0.1:9",
                     *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("retention plan: ") and says in err, err


def test_the_command_line_refuses_800000_orphan_days_like_the_dag(capsys):
    from include.retention import cli

    with pytest.raises(SystemExit) as refused:
        cli.main(["--bucket", "b-bucket", "--mysql-database", "d", "--orphan-min-age-days", "800000"])
    assert refused.value.code == 2
    assert "'800000' is not a number of days from 0 to 36500" in capsys.readouterr().err


# ------------------------------------------------------------------------------- a brute-force reference

TYPES = ["OFFICIAL", "TRIAL", "trial", " Trial ", "official\t", "BETA", "", None]


def reference(objects, rows, prefix, now, retention_days, min_age_days):
    """The rule written as plainly as possible: for every object, look at every row."""
    cutoff = now - timedelta(days=retention_days)
    orphan_cutoff = now - timedelta(days=min_age_days)
    out = {}
    for o in objects:
        if not o.key.startswith(prefix):
            continue
        name = o.key[len(prefix):]
        refs = [r for r in rows if r.source_data == name]
        keep = name == ""
        for r in refs:
            kind = sql_type(r.type)
            if kind == "OFFICIAL" or kind != "TRIAL":
                keep = True
            elif r.completed_at is None or r.completed_at.replace(tzinfo=UTC) > cutoff:
                keep = True
        if keep:
            continue
        if refs:
            out[o.key] = "trial_expired"
        elif datetime.fromisoformat(o.last_modified.replace("Z", "+00:00")) < orphan_cutoff:
            out[o.key] = "orphan"
    return out


def by_name(flat):
    """A fake lookup of values one by one (``flat(values) -> {value: rows}``, or Unmatchable) asked as
    ``jobs.rows_for_names`` is: {name: its other spellings} → {name: the rows found for any of them, or
    Unmatchable when none was and the name itself is}."""
    from include.retention.policy import Unmatchable

    def lookup(spellings):
        answer = {}
        for name, forms in spellings.items():
            values = list(dict.fromkeys((name, *forms)))
            found = flat(values)
            rows = list(dict.fromkeys(r for v in values for r in found.get(v, ())))
            if rows:
                answer[name] = rows
            elif isinstance(found.get(name), Unmatchable):
                answer[name] = found[name]
        return answer
    return lookup


def run_plan(objects, rows, prefix, policy, lookup=None, batch=7):
    planned = {}
    scanned = []
    extra = plan_retention(
        objects, sorted(rows, key=lambda r: (r.source_data is not None, r.source_data or "")),
        key_prefix=prefix, policy=policy, add=lambda o, reason: planned.setdefault(o.key, reason),
        note_scanned=scanned.append, lookup=lookup, batch=batch,
    )
    return planned, scanned, extra


names = st.sampled_from(["a", "b", "a ", "A", "ab", "a\tb", "é", "e", "z", "ü", "\U0001f600", "x/y", "", "a-1", "a_1"])
days_ago = st.integers(min_value=0, max_value=200)


@st.composite
def worlds(draw):
    prefix = draw(st.sampled_from(["", "in/", "a"]))
    keys = draw(st.sets(st.builds(lambda p, n: p + n, st.sampled_from([prefix, "", "other/"]), names), max_size=12))
    objects = [obj(k, size=len(k) + 1, modified=NOW - timedelta(days=draw(days_ago))) for k in sorted(keys)]
    rows = [
        JobRow(f"job-{i}", draw(st.one_of(st.none(), days_ago.map(lambda d: (NOW - timedelta(days=d)).replace(tzinfo=None)))),
               draw(st.sampled_from(TYPES)), draw(st.one_of(st.none(), names)))
        for i in range(draw(st.integers(0, 15)))
    ]
    return prefix, objects, rows


@settings(max_examples=300, deadline=None)
@given(world=worlds(), retention=st.integers(0, 120), min_age=st.integers(0, 30))
def test_plan_matches_brute_force(world, retention, min_age):
    prefix, objects, rows = world
    policy = Policy.at(NOW, f"P{retention}D", min_age)
    planned, scanned, extra = run_plan(objects, rows, prefix, policy)
    assert planned == reference(objects, rows, prefix, NOW, retention, min_age)
    under = [o for o in objects if o.key.startswith(prefix)]
    assert scanned == [o.size for o in under]
    assert extra["protected"]["count"] + len(planned) == len(under)
    assert extra["jobs"]["rows"] == len(rows)
    sources = {r.source_data for r in rows if r.source_data is not None}
    assert extra["jobs"]["sources"] == len(sources)
    assert extra["jobs"]["sources_without_object"] == len(sources - {o.key[len(prefix):] for o in under})
    assert extra["unknown_type_rows"]["count"] == sum(
        1 for r in rows if sql_type(r.type) not in ("OFFICIAL", "TRIAL")
    )


@settings(max_examples=200, deadline=None)
@given(world=worlds())
def test_loose_matches_from_the_table_collation_keep_the_key(world):
    """A lookup that (like a _ci collation) matches case-insensitively and ignoring trailing spaces
    can only keep more, never delete more; keys it matches loosely, or under another spelling (the whole
    key, a leading slash…: :func:`spellings`), are kept as ambiguous."""
    prefix, objects, rows = world
    policy = Policy.at(NOW, "P3M", 0)

    def fold(s):
        return s.rstrip(" ").casefold()

    def lookup(sources):
        return {s: [r for r in rows if r.source_data is not None and fold(r.source_data) == fold(s)] for s in sources}

    exact, _, _ = run_plan(objects, rows, prefix, policy)
    loose, _, extra = run_plan(objects, rows, prefix, policy, lookup=by_name(lookup))
    assert set(loose) <= set(exact)
    for key in set(exact) - set(loose):
        name = key[len(prefix):]
        assert any(r.source_data not in (None, name) and fold(r.source_data) in {fold(s) for s in spellings(name, prefix)}
                   for r in rows)
    assert extra["protected"]["by_cause"]["ambiguous"] >= len(set(exact) - set(loose))


def test_reference_case():
    from include.seed import reference_files, reference_job_rows

    rows = [JobRow(j, c.replace(tzinfo=None) if c else None, t, s) for j, c, t, s in reference_job_rows(NOW)]
    planned, _, extra = run_plan([obj(k) for k in sorted(reference_files())], rows, "", Policy.at(NOW, "P3M", 0))
    expired = [f"incoming_{n:06d}" for n in (11, 12, 13, 14, 15, 17, 18, *range(36, 46))]
    assert planned == {**dict.fromkeys(expired, "trial_expired"), **dict.fromkeys(["test", "test_1.txt", "test_2.txt"], "orphan")}
    assert extra["protected"]["by_cause"] == {
        "unknown_type": 0, "official": 21, "trial_running": 2, "trial_recent": 5, "ambiguous": 0, "unmatchable": 0,
        "too_young": 0,
    }
    assert extra["expired_trial_rows"] == 22


def test_shared_official_and_expired_trial_keeps_the_file():
    old = (NOW - timedelta(days=300)).replace(tzinfo=None)
    rows = [JobRow("1", old, "TRIAL", "f"), JobRow("2", old, "official", "f"), JobRow("3", old, "TRIAL", "g")]
    planned, _, extra = run_plan([obj("f"), obj("g")], rows, "", Policy.at(NOW))
    assert planned == {"g": "trial_expired"}
    assert extra["protected"]["by_cause"]["official"] == 1


def test_unknown_types_are_kept_and_reported():
    old = (NOW - timedelta(days=300)).replace(tzinfo=None)
    rows = [JobRow("1", old, "TRIAL", "f"), JobRow("2", old, "BETA", "f"), JobRow("3", None, None, "g")]
    planned, _, extra = run_plan([obj("f"), obj("g")], rows, "", Policy.at(NOW))
    assert planned == {}
    assert extra["protected"]["by_cause"]["unknown_type"] == 2
    assert extra["unknown_type_rows"]["count"] == 2
    assert {s["jobId"] for s in extra["unknown_type_rows"]["samples"]} == {"2", "3"}


def test_young_unreferenced_objects_are_not_orphans():
    planned, _, extra = run_plan([obj("new", modified=NOW - timedelta(days=1)), obj("old")], [], "", Policy.at(NOW))
    assert planned == {"old": "orphan"}
    assert extra["protected"]["too_young_samples"] == ["new"]


def test_the_prefix_itself_is_ambiguous_and_kept():
    assert protected_now("", [], Policy.at(NOW)) == "ambiguous"
    planned, _, _ = run_plan([obj("in/"), obj("in/x")], [], "in/", Policy.at(NOW))
    assert planned == {"in/x": "orphan"}


def test_rows_out_of_binary_order_stop_the_plan():
    rows = [JobRow("1", None, "TRIAL", "b"), JobRow("2", None, "TRIAL", "a")]
    with pytest.raises(OrderError, match="not sorted in binary order"):
        plan_retention([obj("a")], rows, key_prefix="", policy=Policy.at(NOW), add=lambda *a: None,
                       note_scanned=lambda s: None)


def test_listing_out_of_order_stops_the_plan():
    with pytest.raises(OrderError, match="not in key order"):
        plan_retention([obj("b"), obj("a")], [], key_prefix="", policy=Policy.at(NOW), add=lambda *a: None,
                       note_scanned=lambda s: None)


def test_policy_from_a_pendulum_logical_date_stays_aware():
    import pendulum

    policy = Policy.at(pendulum.datetime(2019, 6, 3, tz="UTC"), "P3M", 0)
    assert policy.orphan_cutoff == NOW and policy.orphan_cutoff.tzinfo is not None
    assert policy.trial_cutoff == datetime(2019, 3, 3, tzinfo=UTC)


def test_recheck_keeps_what_a_job_now_protects_and_anything_outside_the_prefix():
    from include.deletion.plan import PlanItem
    from include.retention.policy import make_recheck

    old = (NOW - timedelta(days=300)).replace(tzinfo=None)
    table = {"a": [JobRow("1", None, "TRIAL", "a")], "b": [JobRow("2", old, "TRIAL", "b")],
             "c": [JobRow("3", old, "TRIAL", "C")]}
    recheck = make_recheck(lambda names: {n: table[n] for n in names if n in table}, "in/", Policy.at(NOW))
    items = [PlanItem(k, 1, "orphan") for k in ("in/a", "in/b", "in/c", "in/d", "out/a")]
    assert recheck(items) == {"in/a": "trial_running", "in/c": "ambiguous", "out/a": "outside key_prefix"}


def test_the_approver_sees_the_rule_and_the_row_purge():
    from include.deletion.airflow import approval_body
    from include.retention.policy import headline

    summary = {"policy": {"now": "2019-06-03T00:00:00+00:00", "trial_cutoff": "2019-03-03T00:00:00+00:00",
                          "orphan_cutoff": "2019-05-27T00:00:00+00:00"}, "trial_retention": "P3M",
               "protected": {"count": 28}, "unknown_type_rows": {"count": 1}, "purge_job_rows": True,
               "expired_trial_rows": 22, "delete_count": 20, "by_reason": {}}
    body = approval_body({**summary, "headline": headline(summary)}, {"bucket": "b"})
    assert "2019-03-03" in body and "22 expired TRIAL job rows" in body and "1 job rows have an unknown type" in body
    assert headline({**summary, "refusals": ["x"]}) == "Refused: x"


# --- issue 12: Unicode forms, NULL sourceData, names the table cannot hold ------------------------------

NFC, NFD = "caf\u00e9.dat", "cafe\u0301.dat"
OLD = (NOW - timedelta(days=300)).replace(tzinfo=None)


def exact_lookup(rows):
    """Like utf8mb4_general_ci for these names: NFC and NFD spellings are *different* strings to it."""
    def lookup(sources):
        return {s: [r for r in rows if r.source_data == s] for s in sources if any(r.source_data == s for r in rows)}
    return by_name(lookup)


@pytest.mark.parametrize(("key", "row_name"), [(NFD, NFC), (NFC, NFD)])
def test_a_file_named_in_another_unicode_form_than_its_job_row_is_ambiguous_and_kept(key, row_name):
    """Issue 12: an NFD key (as macOS writes names) and an NFC job row were 'different': the file went as an orphan."""
    rows = [JobRow("1", None, "OFFICIAL", row_name)]
    planned, _, extra = run_plan([obj(key), obj("gone.dat")], rows, "", Policy.at(NOW), lookup=exact_lookup(rows))
    assert planned == {"gone.dat": "orphan"}
    assert extra["protected"]["by_cause"]["ambiguous"] == 1 and extra["protected"]["ambiguous_samples"] == [key]


def test_an_expired_trial_file_with_a_twin_row_in_another_form_is_kept():
    rows = [JobRow("1", OLD, "TRIAL", NFC), JobRow("2", None, "OFFICIAL", NFD)]
    planned, _, extra = run_plan([obj(NFC)], rows, "", Policy.at(NOW), lookup=exact_lookup(rows))
    assert planned == {} and extra["protected"]["by_cause"]["ambiguous"] == 1


def test_the_recheck_also_sees_the_other_unicode_form():
    from include.deletion.plan import PlanItem
    from include.retention.policy import make_recheck

    rows = [JobRow("1", None, "TRIAL", NFC)]  # a job was added for the NFC name after the plan
    recheck = make_recheck(exact_lookup(rows), "in/", Policy.at(NOW))
    assert recheck([PlanItem(f"in/{NFD}", 1, "orphan"), PlanItem("in/x", 1, "orphan")]) == {f"in/{NFD}": "ambiguous"}


def test_job_rows_whose_source_data_is_all_null_are_refused_like_an_empty_table():
    from include.retention.policy import refusals

    rows = [JobRow(str(i), OLD, "TRIAL", None) for i in range(3)]
    planned, _, extra = run_plan([obj("a"), obj("b")], rows, "", Policy.at(NOW))
    assert planned == {"a": "orphan", "b": "orphan"}  # what the guard must stop
    found = refusals(extra, jobs_table="jobs", allow_empty_jobs=False)
    assert len(found) == 1 and "every one of the 3 job rows" in found[0] and "sourceData NULL" in found[0]
    assert refusals(extra, jobs_table="jobs", allow_empty_jobs=True) == []
    extra["jobs"]["rows_without_source"] = 2  # one row names a file: the table is in use
    assert refusals(extra, jobs_table="jobs", allow_empty_jobs=False) == []


def test_a_name_the_table_cannot_hold_is_kept_as_unmatchable_and_reported():
    from include.retention.policy import Unmatchable, headline

    def latin1_lookup(sources):
        return {s: Unmatchable("latin1") for s in sources if any(ord(c) > 255 for c in s)}

    planned, _, extra = run_plan([obj("a\u0142"), obj("b"), obj("caf\u00e9"), obj("d\U0001f600")], [], "",
                                 Policy.at(NOW), lookup=by_name(latin1_lookup))
    assert planned == {"b": "orphan", "caf\u00e9": "orphan"}
    assert extra["protected"]["by_cause"]["unmatchable"] == 2
    assert extra["protected"]["unmatchable_samples"] == ["a\u0142", "d\U0001f600"]
    assert "2 files have names the jobs table's sourceData column cannot hold" in headline(
        {**extra, "trial_retention": "P3M"})


def test_a_row_for_the_other_form_beats_unmatchable():
    """latin1 holds 'é' (NFC) but not the combining accent of the NFD spelling: the NFC row is found."""
    from include.retention.policy import Unmatchable

    rows = [JobRow("1", None, "OFFICIAL", NFC)]

    def latin1_lookup(sources):
        return {s: (Unmatchable("latin1") if any(ord(c) > 255 for c in s) else [r for r in rows if r.source_data == s])
                for s in sources}

    planned, _, extra = run_plan([obj(NFD)], rows, "", Policy.at(NOW), lookup=by_name(latin1_lookup))
    assert planned == {} and extra["protected"]["by_cause"]["ambiguous"] == 1


@pytest.mark.parametrize("odd", ["trıal", "TRIAL\xa0", "\u2003trial", "TRİAL"])
def test_a_type_that_only_looks_like_trial_is_unknown_and_kept(odd):
    """Python's strip().upper() made these TRIAL (and deleted the file as expired) while the purge's
    UPPER(TRIM(type)) did not: they are an unknown type, kept and reported."""
    from include.retention.policy import classify_job

    policy = Policy.at(NOW, "P3M", 7)
    old = NOW - timedelta(days=400)
    assert classify_job(odd, old, policy) == "unknown_type"
    assert classify_job("  trial  ", old, policy) == "trial_expired"  # spaces and case, as SQL reads them
    assert classify_job("Official", old, policy) == "official"


def test_rows_that_share_a_job_id_or_have_none_are_all_kept_by_the_lookup():
    """Rows were told apart by jobId: two NULL ids (str(None) == "None") or a duplicated id hid one row,
    so an OFFICIAL row could vanish behind an expired TRIAL one and its file be deleted."""
    from include.retention.policy import lookup_forms

    old = NOW - timedelta(days=400)
    official, trial = JobRow("None", None, "OFFICIAL", "foo"), JobRow("None", old, "TRIAL", "foo")
    found = lookup_forms(lambda names: {"foo": [official, trial]}, ["foo"])
    assert found["foo"] == [official, trial]
