"""include.core.settings: one model for every DAG — params > Variable > built-in default, one schema."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime

import pytest

from include.core.settings import REQUIRED, Setting, Settings, SettingsError
from include.deploy_cleanup.settings import SETTINGS as DEPLOY_CLEANUP
from include.housekeeping.settings import SETTINGS as HOUSEKEEPING
from include.retention.settings import SETTINGS as RETENTION
from include.storage_report.settings import SETTINGS as STORAGE_REPORT
from include.upload.settings import SETTINGS as UPLOAD

ALL = (STORAGE_REPORT, UPLOAD, RETENTION, DEPLOY_CLEANUP, HOUSEKEEPING)

DEMO = Settings("demo_dag", "demo", (
    Setting("bucket", {"type": "string", "minLength": 3}, REQUIRED, "Bucket", "The bucket."),
    Setting("days", {"type": "number", "minimum": 0, "maximum": 100}, 7, "Days", "How old."),
    Setting("flag", {"type": "boolean"}, False, "Flag", "A switch."),
    Setting("hidden", {"type": "integer", "minimum": 1}, 5, "Hidden", "Variable only.", form=False),
))


def untouched_form(settings: Settings) -> dict:
    """What Airflow's trigger form sends when nothing is typed: every param at its default."""
    return {name: spec["default"] for name, spec in settings.param_specs().items()}


def test_variable_names_follow_one_scheme():
    assert [s.variable for s in ALL] == ["s3ops_storage_report", "s3ops_upload", "s3ops_retention",
                                         "s3ops_deploy_cleanup", "s3ops_housekeeping"]


@pytest.mark.parametrize("settings", ALL, ids=lambda s: s.dag_id)
def test_every_param_defaults_to_null_and_names_its_built_in_default(settings):
    for name, spec in settings.param_specs().items():
        assert spec["default"] is None, name
        assert "null" in spec["type"], name
        assert settings.variable in spec["description"] and "built-in default" in spec["description"]
        default = settings[name].default
        if default is not REQUIRED:
            assert json.dumps(default, ensure_ascii=False) in spec["description"], name


def test_typed_param_beats_variable_beats_default():
    resolved = DEMO.resolve({"bucket": "typed", "days": None, "flag": None}, '{"bucket": "var", "days": 30}')
    assert dict(resolved) == {"bucket": "typed", "days": 30, "flag": False, "hidden": 5}
    assert resolved.sources == {"bucket": "param", "days": "variable", "flag": "default", "hidden": "default"}


def test_explicit_false_and_zero_typed_in_the_form_win():
    resolved = DEMO.resolve({"bucket": "abc", "days": 0, "flag": False}, {"days": 30, "flag": True})
    assert (resolved["days"], resolved["flag"]) == (0, False)


def test_variable_only_settings_cannot_be_smuggled_through_conf():
    with pytest.raises(SettingsError, match="'hidden' only in the Airflow Variable 's3ops_demo'"):
        DEMO.resolve({"bucket": "abc", "hidden": 99}, None)
    assert DEMO.resolve({"bucket": "abc"}, {"hidden": 9})["hidden"] == 9


@pytest.mark.parametrize("key", ["dryRun", "dry_run ", "fl\u0430g", "Flag", "fl\x00ag"])
def test_a_misspelled_conf_key_is_refused_not_ignored(key):
    """Airflow hands a run's conf keys to its params unchecked (REST API): a misspelled ``dry_run`` that
    was ignored made a real run. A null or empty stray key changes nothing and is let through."""
    key = key.encode().decode("unicode_escape")
    with pytest.raises(SettingsError, match="not settings of this DAG: " + re.escape(ascii(key))):
        DEMO.resolve({"bucket": "abc", key: True}, None)
    assert DEMO.resolve({"bucket": "abc", key: None, "other": ""}, None)["bucket"] == "abc"


def test_untouched_form_equals_scheduled_run():
    variable = {"bucket": "from-var", "days": 3, "flag": True}
    assert dict(DEMO.resolve(untouched_form(DEMO), variable)) == dict(DEMO.resolve({}, variable))


def test_missing_required_setting_names_the_param_and_the_variable():
    with pytest.raises(SettingsError) as err:
        DEMO.resolve({}, None)
    assert "bucket" in str(err.value) and "s3ops_demo" in str(err.value)


@pytest.mark.parametrize(("variable", "needle"), [
    ('{"days": 1e6}', "key 'days' of the Airflow Variable 's3ops_demo'"),
    ('{"days": NaN}', "not a finite number"),
    ('{"days": "7"}', "key 'days'"),
    ('{"dayz": 7}', "unknown keys ['dayz']"),
    ("{not json", "not valid JSON"),
    ("[1]", "JSON object"),
])
def test_invalid_variable_fails_naming_key_and_variable(variable, needle):
    with pytest.raises(SettingsError, match=None) as err:
        DEMO.resolve({"bucket": "abc"}, variable)
    assert needle in str(err.value)


def test_invalid_param_is_named_as_a_param():
    with pytest.raises(SettingsError, match="the run's param 'days'"):
        DEMO.resolve({"bucket": "abc", "days": math.nan}, None)
    with pytest.raises(SettingsError, match="the run's param 'days'"):
        DEMO.resolve({"bucket": "abc", "days": 101}, None)


@pytest.mark.parametrize("settings", ALL, ids=lambda s: s.dag_id)
def test_built_in_defaults_satisfy_their_own_schema(settings):
    settings.check_defaults()


def test_a_wrong_built_in_default_is_caught():
    with pytest.raises(SettingsError):
        Settings("x", "x", (Setting("n", {"type": "integer"}, "seven", "N", "N."),)).check_defaults()
    with pytest.raises(ValueError, match="duplicate"):
        Settings("x", "x", (Setting("n", {"type": "integer"}, 1, "N", "N."),) * 2)
    for schema in ({"type": "string", "format": "date-time"},
                   {"type": "array", "items": {"type": "string", "format": "uri"}}):
        with pytest.raises(SettingsError, match="uses 'format'"):
            Settings("x", "x", (Setting("s", schema, None, "S", "S."),)).check_defaults()
    named_format = {"type": "object", "properties": {"format": {"type": "string"}}}  # a property, not the keyword
    Settings("x", "x", (Setting("s", named_format, None, "S", "S."),)).check_defaults()


@pytest.mark.parametrize("bad", ["P", "p", "P1D1D", "P1M1Y", "P999999999D", "p3m", "P3m", "PT", "P1DT", "3M", " P3M",
                                 "P3M ", "P-1D", "P1.5D", ""])
def test_trial_retention_grammar_refuses(bad):
    with pytest.raises(SettingsError, match="Variable 's3ops_retention'"):  # from the deployment setting
        RETENTION.resolve({"bucket": "jobs-bucket"}, {"trial_retention": bad})
    if bad:  # "" in the form means "not set"
        with pytest.raises(SettingsError, match="the run's param 'trial_retention'"):
            RETENTION.resolve({"bucket": "jobs-bucket", "trial_retention": bad}, None)


@pytest.mark.parametrize("good", ["P3M", "P90D", "P1Y2M", "P2W", "PT36H", "P1Y2M3W4DT5H6M7S", "P0D", "P999Y"])
def test_trial_retention_grammar_accepts(good):
    assert RETENTION.resolve({"bucket": "jobs-bucket", "trial_retention": good}, None)["trial_retention"] == good


@pytest.mark.parametrize(("settings", "name"), [(RETENTION, "orphan_min_age_days"), (DEPLOY_CLEANUP, "older_than_days")])
@pytest.mark.parametrize("bad", [1e6, 1e12, math.nan, math.inf, -1])
def test_day_counts_are_bounded(settings, name, bad):
    with pytest.raises(SettingsError, match=name):
        settings.resolve({"bucket": "jobs-bucket", name: bad}, None)


@pytest.mark.parametrize("settings", [RETENTION, UPLOAD], ids=lambda s: s.dag_id)
@pytest.mark.parametrize("bucket", ["ab", "Bad_Bucket", " x-bucket", "a" * 64])
def test_bad_buckets_refused(settings, bucket):
    with pytest.raises(SettingsError, match="bucket"):
        settings.resolve({"bucket": bucket, "base_dir": "/data"}, None)


def test_empty_bucket_in_the_form_means_unset_and_then_required():
    with pytest.raises(SettingsError, match="bucket is not set"):
        RETENTION.resolve({**untouched_form(RETENTION), "bucket": ""}, None)


def test_scheduled_retention_is_fully_configurable_through_its_variable():
    variable = {
        "bucket": "jobs-bucket", "key_prefix": "incoming/", "jobs_table": "ops.ndvr_job_status",
        "trial_retention": "P30D", "orphan_min_age_days": 2, "approval": "auto", "approvers": ["alice"],
        "max_delete_count": 5, "max_delete_fraction": 0.1, "notifications": [{"type": "smtp", "to": ["ops@example.com"]}],
    }
    resolved = RETENTION.resolve({}, variable)
    assert {k: resolved[k] for k in variable} == variable
    assert all(resolved.sources[k] == "variable" for k in variable)


def test_deploy_cleanup_targets_are_validated_per_key():
    good = [{"bucket": "deploys-a", "prefix": "web/", "keep": 3}, {"bucket": "deploys-b", "older_than_days": 30}]
    assert DEPLOY_CLEANUP.resolve({}, {"targets": good})["targets"] == good
    for bad, needle in [([{"prefix": "web/"}], "'bucket' is a required property"),
                        ([{"bucket": "deploys-a", "prefx": "x/"}], "Additional properties"),
                        ([{"bucket": "deploys-a", "older_than_days": 1e12}], "older_than_days")]:
        with pytest.raises(SettingsError, match="targets") as err:
            DEPLOY_CLEANUP.resolve({}, {"targets": bad})
        assert needle in str(err.value)


def test_storage_report_shards_and_prices_are_settings():
    resolved = STORAGE_REPORT.resolve({}, {"shard_objects": 1000, "pricing": {"prices": {"eu-west-1": {"STANDARD": 0.02}}}})
    assert resolved["shard_objects"] == 1000 and resolved["shard_parts"] == 16
    with pytest.raises(SettingsError, match="pricing"):
        STORAGE_REPORT.resolve({}, {"pricing": {"prices": {"eu-west-1": {"STANDARD": -1}}}})


DAY = datetime(2026, 11, 1, tzinfo=UTC)
DAY_TEXT = "2026-11-01T00:00:00.000Z"


def test_deploy_cleanup_dispatch_confs():
    from airflow.sdk.exceptions import AirflowFailException

    from include.deploy_cleanup.tasks import dispatch_confs

    def dispatch_confs_at_day(resolved):  # the dispatching run's time
        return dispatch_confs(resolved, DAY)

    targets = [{"bucket": "deploys-a", "prefix": "web/", "keep": 2},
               {"bucket": "deploys-b", "prefix": "/", "older_than_days": 30}]
    variable = {"targets": targets, "min_keep": 2}
    # scheduled: one conf per target and the dispatching run's time, nothing else (the target's run
    # reads the Variable itself)
    assert dispatch_confs_at_day(DEPLOY_CLEANUP.resolve({}, variable)) == [{**t, "now": DAY_TEXT} for t in targets]
    # params typed for the dispatching run go to every target's run (but not over a target's own keys)
    confs = dispatch_confs_at_day(DEPLOY_CLEANUP.resolve({"dry_run": True, "keep": 9}, variable))
    assert confs == [{"dry_run": True, "keep": 9, **t, "now": DAY_TEXT} for t in targets]
    assert [c["keep"] for c in confs] == [2, 9]
    # a run with a bucket cleans only that target
    assert dispatch_confs_at_day(DEPLOY_CLEANUP.resolve({"bucket": "deploys-c", "keep": 1}, variable)) == []
    with pytest.raises(AirflowFailException, match="nothing to clean"):
        dispatch_confs_at_day(DEPLOY_CLEANUP.resolve({}, {}))
    with pytest.raises(AirflowFailException, match="both bucket and targets"):
        dispatch_confs_at_day(DEPLOY_CLEANUP.resolve({}, {**variable, "bucket": "deploys-c"}))
    with pytest.raises(AirflowFailException, match=r"targets\[1\] \(bucket 'deploys-b'\).*set keep"):
        dispatch_confs_at_day(DEPLOY_CLEANUP.resolve({}, {"targets": [targets[0], {"bucket": "deploys-b", "prefix": "d/"}]}))
    # a target without a prefix (and none in the Variable) is refused, not cleaned at the bucket root
    with pytest.raises(AirflowFailException, match=r"targets\[1\] \(bucket 'deploys-b'\).*prefix is not set"):
        dispatch_confs_at_day(DEPLOY_CLEANUP.resolve({}, {"targets": [targets[0], {"bucket": "deploys-b", "keep": 2}]}))


def test_a_target_setting_a_key_to_null_is_refused_naming_the_target_and_the_key():
    """{"keep": null} in a target read as "no count limit here", but the target's run took the Variable's keep
    (a null param falls back to the Variable), and it overrode a keep typed for the dispatching run."""
    from include.deploy_cleanup.tasks import dispatch_confs

    variable = {"keep": 5, "targets": [{"bucket": "deploys-a", "prefix": "web/"},
                                       {"bucket": "deploys-b", "prefix": "web/", "keep": None, "older_than_days": 30}]}
    for params in ({}, {"keep": 9}, {"bucket": "deploys-c"}):  # whatever the run, the Variable is checked whole
        with pytest.raises(SettingsError, match=r"targets\[1\]\['keep'\] = null \(from key 'targets' of the Airflow "
                                                r"Variable 's3ops_deploy_cleanup'\) is invalid: it is not of type 'integer'"):
            DEPLOY_CLEANUP.resolve(params, variable)
    age = {"targets": [{"bucket": "deploys-b", "prefix": "web/", "older_than_days": None}], "older_than_days": 9}
    with pytest.raises(SettingsError, match=r"targets\[0\]\['older_than_days'\] = null .* not of type 'number'"):
        DEPLOY_CLEANUP.resolve({}, age)
    # the key left out takes the Variable's, as documented
    variable["targets"][1].pop("keep")
    assert dispatch_confs(DEPLOY_CLEANUP.resolve({}, variable), DAY)[1] == {"bucket": "deploys-b", "prefix": "web/",
                                                                            "older_than_days": 30, "now": DAY_TEXT}


def test_notification_targets_are_checked_with_the_notifier_parser():
    assert RETENTION.resolve({"bucket": "jobs-bucket"}, {"notifications": ["ops@example.com"]})["notifications"] == [
        "ops@example.com"]
    with pytest.raises(SettingsError, match=r"notifications \(from key 'notifications' of the Airflow Variable "
                                            r"'s3ops_retention'\)\[0\]: 'type' must be"):
        RETENTION.resolve({"bucket": "jobs-bucket"}, {"notifications": [{"type": "pager", "to": "x"}]})


#: wrong in as many ways as the settings' schemas can be: types, empties, duplicates, bounds, lengths
BAD_VALUES = ["", "Not A Bucket!", ["", ""], ["a", "a", ""], [1, "a"], -1, 0, 10**12, 1.5, "x" * 300, {"a": 1},
              True, [], "P", "s3://x"]


@pytest.mark.parametrize("settings", ALL, ids=lambda s: s.dag_id)
def test_a_bad_value_is_reported_with_the_error_jsonschema_validate_would_raise(settings):
    """Setting.check builds its validator once; the error it names is still the one jsonschema.validate
    picks (best_match), not merely the first one found."""
    import jsonschema

    compared = 0
    for s in settings.entries:
        for bad in BAD_VALUES:
            try:
                jsonschema.validate(bad, dict(s.schema), format_checker=jsonschema.FormatChecker())
                continue
            except jsonschema.ValidationError as exc:
                # a secret setting names the rule broken, not the value (the message quotes it)
                # the reason, without the value jsonschema quotes first (shown shortened before it)
                expected = f"where {exc.validator} " if s.secret else exc.message.removeprefix(repr(exc.instance))[-300:]
            with pytest.raises(SettingsError) as err:
                s.check(bad, "a test")
            assert expected in str(err.value), (s.name, bad)
            compared += 1
    assert compared > 3 * len(settings.entries)


@pytest.mark.parametrize(("variable", "conf", "needle"), [
    ({"approval": "required"}, {"approval": "auto"}, "approval = \"auto\""),
    ({}, {"approval": "auto"}, "a run may only make it 'required'"),  # retention's default is required
    ({"approvers": ["alice"]}, {"approvers": ["mallory"]}, "approvers = [\"mallory\"]"),
    ({"approvers": ["alice"]}, {"approvers": []}, "name some of the deployment's users"),
    ({"approvers": ["alice"]}, {"approvers": ["alice", "mallory"]}, "name some of the deployment's users"),
    ({}, {"separate_approver": False}, "turn it on"),
    ({"dry_run": True}, {"dry_run": False}, "dry_run = false"),
    ({"max_delete_count": 100}, {"max_delete_count": 101}, "the deployment's 100 (key 'max_delete_count'"),
    ({}, {"max_delete_fraction": 0.51}, "the deployment's 0.5 (the built-in default"),
    ({}, {"allow_empty_jobs": True}, "turn it off"),
])
def test_a_run_may_only_tighten_a_safety_setting(variable, conf, needle):
    """The person who triggers a run cannot widen the gate between them and a deletion through its conf."""
    from include.retention.settings import SETTINGS as RETENTION

    with pytest.raises(SettingsError, match="a run may only") as err:
        RETENTION.resolve({"bucket": "jobs", **conf}, {**variable})
    assert needle in str(err.value) and "s3ops_retention" in str(err.value)


@pytest.mark.parametrize(("variable", "conf"), [
    ({}, {"approval": "required"}), ({"approval": "auto"}, {"approval": "required"}),
    ({"approval": "auto"}, {"approval": "auto"}), ({"approvers": ["alice", "bob"]}, {"approvers": ["bob"]}),
    ({}, {"approvers": ["carol"]}), ({}, {"dry_run": True}), ({"separate_approver": False}, {"separate_approver": True}),
    ({"max_delete_count": 100}, {"max_delete_count": 0}), ({"max_delete_fraction": 0.9}, {"max_delete_fraction": 0.9}),
    ({"allow_empty_jobs": True}, {"allow_empty_jobs": False}), ({"allow_empty_jobs": True}, {"allow_empty_jobs": True}),
])
def test_a_run_may_tighten_or_repeat_a_safety_setting(variable, conf):
    from include.retention.settings import SETTINGS as RETENTION

    resolved = RETENTION.resolve({"bucket": "jobs", **conf}, variable)
    for name, value in conf.items():
        assert resolved[name] == value and resolved.sources[name] == "param"


def test_the_form_says_which_settings_a_run_may_only_tighten():
    from include.upload.settings import SETTINGS as UPLOAD

    assert UPLOAD.param_specs()["overwrite"]["description"].endswith("A run may only turn it off, never loosen it.")
    assert "A run may only" not in UPLOAD.param_specs()["settle_seconds"]["description"]
    with pytest.raises(SettingsError, match="overwrite = true .* a run may only turn it off"):
        UPLOAD.resolve({"base_dir": "/data", "bucket": "upload", "overwrite": True}, None)
    assert UPLOAD.resolve({"base_dir": "/data", "bucket": "upload", "overwrite": True}, {"overwrite": True})["overwrite"]
    # the command line's user is the deployment: `s3ops upload --overwrite` may
    assert UPLOAD.resolve({"base_dir": "/data", "bucket": "upload", "overwrite": True}, None,
                          by_deployer=True)["overwrite"]


PINNED_UPLOAD = {"base_dir": "/data/producer", "bucket": "prod-drops", "aws_conn_id": "aws_upload",
                 "pinned": ["base_dir", "bucket", "aws_conn_id", "key_prefix"]}


@pytest.mark.parametrize(("conf", "needle"), [
    ({"base_dir": "/data/tenant-b"}, 'base_dir = "/data/tenant-b" (from the run\'s param \'base_dir\'): base_dir is '
                                     'pinned by the deployment (key \'pinned\' of the Airflow Variable '
                                     '\'s3ops_upload\'), so every run uses "/data/producer"'),
    ({"bucket": "attacker-bucket"}, 'bucket = "attacker-bucket"'),
    ({"aws_conn_id": "prod_admin"}, 'aws_conn_id = "prod_admin"'),
    # pinned at the built-in default (no key in the Variable): the default is what every run uses
    ({"key_prefix": "other-team/"}, 'so every run uses ""'),
])
def test_a_run_may_not_change_a_pinned_setting(conf, needle):
    """Whoever may trigger s3_upload could point it at another team's folder, their own bucket or an
    admin's connection through the run's conf; a deployment that pins those settings refuses that."""
    with pytest.raises(SettingsError, match="is pinned by the deployment") as err:
        UPLOAD.resolve(conf, PINNED_UPLOAD)
    assert needle in str(err.value)


def test_a_pinned_setting_given_its_own_value_and_the_rest_of_the_form_are_accepted():
    resolved = UPLOAD.resolve({"base_dir": "/data/producer", "bucket": "prod-drops", "settle_seconds": 5,
                               "key_prefix": None}, PINNED_UPLOAD)
    assert (resolved["base_dir"], resolved["bucket"], resolved["aws_conn_id"], resolved["settle_seconds"]) == (
        "/data/producer", "prod-drops", "aws_upload", 5)
    # the command line's user is the deployment
    assert UPLOAD.resolve({"bucket": "other-drops"}, PINNED_UPLOAD, by_deployer=True)["bucket"] == "other-drops"


@pytest.mark.parametrize("pinned", [["bukcet"], ["notifications"], ["pinned"]])
def test_a_pinned_name_that_no_run_could_set_fails_every_run(pinned):
    """A typo would otherwise pin nothing, silently; a Variable-only setting cannot be set by a run anyway."""
    with pytest.raises(SettingsError, match=r"key 'pinned' of the Airflow Variable 's3ops_upload' names .* no setting "
                                            r"a run may set"):
        UPLOAD.resolve({}, {**PINNED_UPLOAD, "pinned": pinned})


def test_whole_numbers_written_as_floats_are_integers_where_the_schema_says_integer():
    """JSON schema counts 16.0 as an integer: it reached slices and ranges as a float and failed there with
    a TypeError naming no setting (the command line, through argparse, refused it)."""
    resolved = STORAGE_REPORT.resolve({}, {"shard_parts": 16.0, "shard_objects": 100.0})
    assert (resolved["shard_parts"], resolved["shard_objects"]) == (16, 100)
    assert type(resolved["shard_parts"]) is int and type(resolved["shard_objects"]) is int
    from_param = RETENTION.resolve({"bucket": "jobs", "max_delete_count": 100.0, "max_delete_fraction": 0.0}, None)
    assert type(from_param["max_delete_count"]) is int and type(from_param["max_delete_fraction"]) is float


@pytest.mark.parametrize("hours", [0, 1e-10, 0.009])
def test_an_approval_timeout_too_small_to_be_a_time_is_refused(hours):
    """1e-10 hours passed the schema (> 0) and became timedelta(0), which Airflow reads as no timeout: the
    request then waited until superseded instead of expiring at once."""
    with pytest.raises(SettingsError, match="approval_timeout_hours"):
        RETENTION.resolve({"bucket": "jobs", "approval_timeout_hours": hours}, None)
    assert RETENTION.resolve({"bucket": "jobs", "approval_timeout_hours": 0.01}, None)["approval_timeout_hours"] == 0.01


def test_deploy_cleanups_dispatched_target_runs_pass_the_pins_and_no_other_target_does():
    """The scheduled deploy cleanup starts one run per target with the target's keys in its conf: pinning
    bucket and prefix refused every one of them. A run that cleans exactly a target of the Variable passes;
    any other bucket or prefix is refused, as on every DAG."""
    from include.deploy_cleanup.tasks import dispatch_confs

    variable = {"targets": [{"bucket": "web-a", "prefix": "deploys/", "keep": 2}, {"bucket": "web-b", "prefix": "d/", "keep": 3}],
                "pinned": ["bucket", "prefix", "keep"]}
    dispatcher = DEPLOY_CLEANUP.resolve({}, variable)
    for conf in dispatch_confs(dispatcher, DAY):
        resolved = DEPLOY_CLEANUP.resolve(conf, variable)
        assert {k: resolved[k] for k in conf} == conf
    for conf in ({"bucket": "web-c", "prefix": "deploys/"}, {"bucket": "web-a", "prefix": "other/"},
                 {"bucket": "web-b", "prefix": "d/", "keep": 1}, {"bucket": "web-a", "keep": 2},
                 {"bucket": "web-a", "prefix": "deploys/", "keep": 2.5}):
        with pytest.raises(SettingsError, match="is pinned by the deployment"):
            DEPLOY_CLEANUP.resolve(conf, variable)
    # a param the dispatching run was given (not pinned) reaches each target's run, which still passes
    for conf in dispatch_confs(DEPLOY_CLEANUP.resolve({"min_keep": 3}, variable), DAY):
        assert DEPLOY_CLEANUP.resolve(conf, variable)["min_keep"] == 3


def test_a_long_refused_value_is_not_quoted_whole_in_the_error():
    """jsonschema's message starts by quoting the value: 4,000 bucket globs made an 87 KB error line, in the
    task log and the failure mail. The value is shown shortened once; the reason is kept."""
    from include.storage_report.settings import SETTINGS as REPORT

    with pytest.raises(SettingsError) as err:
        REPORT.resolve({"buckets": [f"logs-{i}-*" for i in range(4000)]}, None)
    assert len(str(err.value)) < 400 and str(err.value).endswith("is invalid: it is too long")


def test_deploy_cleanup_now_is_a_runs_param_only_and_never_later_than_its_time():
    """A target's run judges older_than_days as of the dispatching run's time (its conf's ``now``): a value
    for one run, so the Variable may not set or pin it, and a time after the run's own would delete more."""
    from include.core.times import decided_as_of

    base = {"bucket": "deploys-a", "prefix": "web/", "older_than_days": 30}
    assert DEPLOY_CLEANUP.resolve({**base, "now": "2026-11-01T00:00:00Z"}, {})["now"] == "2026-11-01T00:00:00Z"
    with pytest.raises(SettingsError, match=r"sets 'now', which only a run's param may set"):
        DEPLOY_CLEANUP.resolve(base, {"now": "2026-11-01T00:00:00Z"})
    with pytest.raises(SettingsError, match=r"names 'now', which is no setting a run may set and the Variable may pin"):
        DEPLOY_CLEANUP.resolve(base, {"pinned": ["now"]})
    for bad in ("yesterday", "2026-13-01T00:00:00Z", "0001-01-01T00:30:00+01:00", "2026-11-01T00:00:00Z\n",
                "\u0662\u0660\u0662\u0666-11-01"):  # Arabic-Indic digits: fromisoformat takes them on some versions
        with pytest.raises(SettingsError, match=r"now \(from the run's param 'now'\) .* is not an ISO 8601 time"):
            DEPLOY_CLEANUP.resolve({**base, "now": bad}, {})

    day = datetime(2026, 11, 30, tzinfo=UTC)
    assert decided_as_of(day, None) == day
    assert decided_as_of(day, "2026-11-01T00:00:00") == datetime(2026, 11, 1, tzinfo=UTC)  # no offset: UTC
    assert decided_as_of(day, "2026-11-30T01:00:00+01:00") == day  # the same instant
    with pytest.raises(ValueError, match=r"later than the run's logical time 2026-11-30T00:00:00Z"):
        decided_as_of(day, "2026-11-30T00:00:01Z")


def test_a_run_named_as_a_dispatched_targets_run_must_have_been_started_by_dispatch():
    """Anyone who may trigger the DAG could create ``scheduled__<tomorrow>__target0`` through the REST API (the
    default allowed_run_id_pattern takes it, a scheduled run's id is known in advance): the day's dispatch then
    skipped that target (``skip_when_already_exists``) and the target was cleaned with that user's conf under the
    name of the deployment's run. Such a run fails in its first task, before any setting is read."""
    from types import SimpleNamespace

    from airflow.sdk.api.datamodels._generated import DagRunType
    from airflow.sdk.exceptions import AirflowFailException

    from include.deploy_cleanup.tasks import require_dispatched, targets

    forged = "scheduled__2026-12-09T00:00:00+00:00__target0"
    for run_type in (DagRunType.MANUAL, "manual", DagRunType.SCHEDULED, DagRunType.BACKFILL, None):
        with pytest.raises(AirflowFailException, match=r"was not started by a dispatch .* nothing is done"):
            require_dispatched(forged, run_type)
    # before anything else: no Variable, no artifact store is needed to refuse it
    with pytest.raises(AirflowFailException, match=r"was not started by a dispatch"):
        targets({"dag_run": SimpleNamespace(run_id=forged, run_type=DagRunType.MANUAL)})
    for run_type in (DagRunType.OPERATOR_TRIGGERED, "operator_triggered"):
        require_dispatched(forged, run_type)  # dispatch's own run
        require_dispatched("backfill__2026-11-01T00:00:00+00:00__target12", run_type)
    for run_id in ("manual__2026-12-08T01:00:00+00:00", "scheduled__2026-12-09T00:00:00+00:00",
                   "my_run__target0_retry", "__targets"):
        require_dispatched(run_id, DagRunType.MANUAL)  # any other id: a manual run as before
