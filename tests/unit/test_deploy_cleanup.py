"""The deploy cleanup selection rule, parameter checks and key → deployment mapping (no server)."""

from __future__ import annotations

import fnmatch
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from include.aws.listing import S3Object
from include.deploy_cleanup.plan import (
    CleanupSettings,
    Deployment,
    deployment_name,
    scan,
    select,
    settings_from_params,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _ts(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _deps(ages: dict[str, float]) -> list[Deployment]:
    return [Deployment(name, _ts(age)) for name, age in ages.items()]


def _deleted(ages: dict[str, float], **kw) -> list[str]:
    return sorted(d.name for d in select(_deps(ages), CleanupSettings(**kw), NOW) if d.delete)


AGES = {"r1": 50, "r2": 40, "r3": 30, "r4": 20, "r5": 10, "r6": 1}


def test_keep_n():
    assert _deleted(AGES, keep=4) == ["r1", "r2"]
    assert _deleted(AGES, keep=0) == ["r1", "r2", "r3", "r4", "r5"]  # min_keep=1 still keeps r6
    assert _deleted(AGES, keep=10) == []


def test_age_only_with_min_keep():
    assert _deleted(AGES, older_than_days=15) == ["r1", "r2", "r3", "r4"]
    assert _deleted(AGES, older_than_days=0.5, min_keep=2) == ["r1", "r2", "r3", "r4"]
    assert _deleted({"a": 100, "b": 90}, older_than_days=1) == ["a"]  # the newest survives however old


def test_keep_and_age_must_both_hold():
    assert _deleted(AGES, keep=2, older_than_days=35) == ["r1", "r2"]
    assert _deleted(AGES, keep=5, older_than_days=15) == ["r1"]


def test_protect_names_and_globs():
    assert _deleted(AGES, keep=1, protect=("r2", "r[34]*")) == ["r1", "r5"]


def test_a_tie_with_a_deployment_kept_for_its_rank_is_kept_and_reasons_are_recorded():
    """S3 times have one-second steps: release-9 and release-10 uploaded (or restored) in the same second
    tie, and a name cannot tell which is newer ("release-9" sorts after "release-10")."""
    decisions = select(_deps({"release-10": 5, "release-9": 5, "old": 9}), CleanupSettings(keep=1), NOW)
    assert [(d.name, d.rank, d.delete) for d in decisions] == [
        ("release-9", 0, False), ("release-10", 1, False), ("old", 2, True)]
    assert decisions[1].why.startswith("as new as 'release-9', kept for its rank")
    assert decisions[2].reason == "beyond_keep" and "not among the newest 1" in decisions[2].why
    # a tie among deployments that are all beyond the kept ones changes nothing
    assert _deleted({"new": 1, "b": 5, "a": 5}, keep=1) == ["a", "b"]
    both = select(_deps(AGES), CleanupSettings(keep=1, older_than_days=1), NOW)
    assert {d.reason for d in both if d.delete} == {"beyond_keep_and_older_than"}
    assert {d.reason for d in select(_deps(AGES), CleanupSettings(older_than_days=1), NOW) if d.delete} == {"older_than"}


def test_deployment_name():
    assert deployment_name("deploys/r1/index.html", "deploys/") == "r1"
    assert deployment_name("deploys/r1/a/b/c.js", "deploys/") == "r1"
    assert deployment_name("deploys/README.txt", "deploys/") is None  # directly under the prefix
    assert deployment_name("deploys//x", "deploys/") is None
    assert deployment_name("other/r1/x", "deploys/") is None
    assert deployment_name("r1/x", "") == "r1"


def test_scan_dates_each_deployment_by_its_newest_object():
    objs = [S3Object("p/a/1", 1, _ts(9), "STANDARD", ""), S3Object("p/a/2", 2, _ts(3), "STANDARD", ""),
            S3Object("p/b/1", 4, _ts(5), "STANDARD", ""), S3Object("p/loose", 8, _ts(1), "STANDARD", "")]
    result = scan(objs, "p/")
    assert (result.objects, result.bytes, result.loose_objects) == (4, 15, 1)
    a = result.deployments["a"]
    assert (a.newest, a.newest_key, a.objects, a.bytes) == (_ts(3), "p/a/2", 2, 3)


@pytest.mark.parametrize(("params", "message"), [
    ({}, "set keep"),
    ({"keep": None, "older_than_days": None}, "set keep"),
    ({"keep": -1}, "keep must be a number from 0"),
    ({"keep": 2, "older_than_days": -3}, "older_than_days must be a number from 0 to 36500"),
    ({"keep": 2, "older_than_days": 1e6}, "older_than_days must be a number from 0 to 36500"),
    ({"keep": 2, "older_than_days": 1e12}, "older_than_days must be a number from 0 to 36500"),
    ({"keep": 2, "older_than_days": float("nan")}, "older_than_days must be a number"),
    ({"keep": 2, "older_than_days": float("inf")}, "older_than_days must be a number"),
    ({"keep": 2, "min_keep": 0}, "min_keep must be a whole number >= 1"),
    ({"keep": 2, "prefix": "deploys"}, "did you mean 'deploys/'"),
    ({"keep": 2}, "prefix is not set: .* or '/' for the bucket root"),  # never the root by omission
    ({"keep": 2, "prefix": ""}, "prefix is not set"),
    ({"keep": 1.5}, "whole number"),
])
def test_invalid_parameters_are_rejected_with_a_message(params, message):
    with pytest.raises(ValueError, match=message):
        settings_from_params(params)


def test_the_bucket_root_is_named_not_implied():
    assert settings_from_params({"keep": 2, "prefix": "/"}).prefix == ""


def test_valid_parameters():
    s = settings_from_params({"keep": 3, "older_than_days": 7, "min_keep": 2, "protect": ["x*"], "prefix": "d/"})
    assert s == CleanupSettings(prefix="d/", keep=3, older_than_days=7.0, min_keep=2, protect=("x*",))


# --- property test against a brute-force reference -------------------------------------------------

def _reference(ages: dict[str, int], keep, days, min_keep, protect) -> set[str]:
    """Straight from the spec: count the deployments that are newer (time, then name) than each one; one as
    new as a deployment kept for its rank (among the newest max(min_keep, keep)) is kept too."""
    def newer_than(name: str, age: int) -> int:
        return sum(1 for other, oage in ages.items() if (oage, other) != (age, name)
                   and (oage < age or (oage == age and other > name)))

    kept_rank = max(min_keep, keep or 0)
    kept_ages = {age for name, age in ages.items() if newer_than(name, age) < kept_rank}
    out = set()
    for name, age in ages.items():
        newer = newer_than(name, age)
        if any(fnmatch.fnmatchcase(name, p) for p in protect) or newer < min_keep or age in kept_ages:
            continue
        outside_keep = keep is None or newer >= keep
        old_enough = days is None or age * 3600 > days * 86400  # ages are in hours
        if outside_keep and old_enough:
            out.add(name)
    return out


@settings(max_examples=300, deadline=None)
@given(
    ages=st.dictionaries(st.text("abcd-1", min_size=1, max_size=4), st.integers(0, 24 * 60), max_size=25),
    keep=st.one_of(st.none(), st.integers(0, 30)),
    days=st.one_of(st.none(), st.integers(0, 60)),
    min_keep=st.integers(1, 5),
    protect=st.lists(st.sampled_from(["a*", "b", "*-1", "zz"]), max_size=2),
)
def test_selection_matches_the_brute_force_reference(ages, keep, days, min_keep, protect):
    if keep is None and days is None:
        keep = 0
    deps = [Deployment(name, (NOW - timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%S.000Z")) for name, h in ages.items()]
    cfg = CleanupSettings(keep=keep, older_than_days=days, min_keep=min_keep, protect=tuple(protect))
    decisions = select(deps, cfg, NOW)
    assert {d.name for d in decisions if d.delete} == _reference(ages, keep, days, min_keep, protect)
    assert sorted(d.rank for d in decisions) == list(range(len(ages)))
    # safety invariants, whatever the parameters
    kept_newest = [d for d in decisions if d.rank < min_keep]
    assert not any(d.delete for d in kept_newest)


def _protect(prefix: str, *patterns: str) -> tuple[str, ...]:
    return settings_from_params({"keep": 1, "prefix": prefix, "protect": list(patterns)}).protect


def test_protect_patterns_lose_the_prefix_and_trailing_slash():
    """Issue 12: ``deploys/prod-*`` and ``prod-1/`` used to protect nothing (prod-1 was planned for deletion)."""
    assert _protect("deploys/", "deploys/prod-*", "prod-1/", "deploys/prod-2/", "r*//") == ("prod-*", "prod-1", "prod-2", "r*")
    ages = {"prod-1": 50, "prod-2": 40, "other": 30, "new": 1}
    for typed in (["deploys/prod-*"], ["prod-1/", "prod-2/"], ["deploys/prod-1/", "prod-2"]):
        cfg = settings_from_params({"keep": 1, "prefix": "deploys/", "protect": typed})
        assert sorted(d.name for d in select(_deps(ages), cfg, NOW) if d.delete) == ["other"]


def test_an_empty_folder_is_no_deployment_and_pushes_none_out():
    """The console's "Create folder" makes a zero-byte "deploys/new folder/": it took rank 0 and min_keep=1
    kept it instead of the live release, which was deleted."""
    objects = [SimpleNamespace(key=f"deploys/release-{i}/index.html", size=10, last_modified=_ts(10 - i))
               for i in range(1, 6)]
    objects.append(SimpleNamespace(key="deploys/new folder/", size=0, last_modified=_ts(0)))
    scanned = scan(objects, "deploys/")
    decisions = {d.name: d for d in select(scanned.deployments.values(), CleanupSettings(keep=1), NOW)}
    assert sorted(n for n, d in decisions.items() if d.delete) == ["release-1", "release-2", "release-3", "release-4"]
    assert decisions["release-5"].rank == 0 and not decisions["release-5"].delete
    assert decisions["new folder"].rank == -1 and decisions["new folder"].why.startswith("empty: only folder markers")
    # a marker next to real content is an ordinary deployment
    with_content = scan([*objects, SimpleNamespace(key="deploys/new folder/a.js", size=1, last_modified=_ts(0))],
                        "deploys/")
    assert not with_content.deployments["new folder"].markers_only


@pytest.mark.parametrize(("name", "pattern"), [("build[1]", "build[1]"), ("golden?", "golden?"), ("prod-1", "prod-1 "),
                                               ("prod-1", " Prod-1")])
def test_a_protect_entry_protects_the_name_it_spells(name, pattern):
    """``build[1]`` as a glob means ``build1``: the folder named ``build[1]`` was deleted though protected by
    name; so was ``prod-1`` under ``"prod-1 "`` (a stray space in JSON)."""
    decisions = {d.name: d for d in select(_deps({name: 30, "build1": 40, "new": 1}),
                                           CleanupSettings(keep=1, protect=(pattern,)), NOW)}
    assert not decisions[name].delete and decisions[name].why == f"protected by {pattern!r}"


def test_protect_ignores_case_and_unicode_normalization():
    ages = {"prod-1": 50, "PROD-2": 40, "cafe\u0301-v1": 30, "x": 20, "new": 1}  # an NFD folder name
    cfg = settings_from_params({"keep": 1, "prefix": "/", "protect": ["Prod-*", "CAFÉ-*"]})
    decisions = {d.name: d for d in select(_deps(ages), cfg, NOW)}
    assert sorted(n for n, d in decisions.items() if d.delete) == ["x"]
    assert decisions["prod-1"].why == "protected by 'Prod-*'" and decisions["cafe\u0301-v1"].why == "protected by 'CAFÉ-*'"


@pytest.mark.parametrize(("prefix", "pattern", "hint"), [
    ("deploys/", "deploys/", "names no deployment"),
    ("deploys/", "/", "names no deployment"),
    ("deploys/", "other/prod-*", "can never match"),
    ("deploys/", "deploys/prod-1/assets", "can never match"),
    ("/", "a/b", "can never match"),
])
def test_a_protect_pattern_that_can_never_match_is_refused(prefix, pattern, hint):
    with pytest.raises(ValueError, match=hint) as exc:
        settings_from_params({"keep": 1, "prefix": prefix, "protect": ["ok", pattern]})
    assert repr(pattern) in str(exc.value)


@pytest.mark.parametrize("protect", [[""], ["prod-*", ""], ["  "], "prod-*,", "prod-*, ,dev"])
def test_an_empty_protect_entry_is_refused_not_dropped(protect):
    """``--protect "$UNSET"`` meant to protect something: dropping it would plan that deployment's deletion."""
    with pytest.raises(ValueError, match="protect entry [0-9] is empty"):
        settings_from_params({"keep": 1, "prefix": "/", "protect": protect})
    assert settings_from_params({"keep": 1, "prefix": "/", "protect": ""}).protect == ()  # no protect at all is fine


def test_unmatched_protect_patterns_are_named():
    from include.deploy_cleanup.plan import unmatched_patterns

    assert unmatched_patterns(["prod-1", "dev"], ("PROD-*", "prd-*", "dev", "stage")) == ["prd-*", "stage"]
    assert unmatched_patterns([], ("a",)) == ["a"]


def test_a_deployment_name_cannot_forge_a_log_line(tmp_path, caplog):
    """The headline is logged: a folder named with a CR/LF wrote a second, genuine-looking log line."""
    import logging
    from types import SimpleNamespace as NS

    from include.deploy_cleanup import plan as cleanup

    name = "release-4\r\nLOG guards passed: 0 objects in 0 chunks"
    objects = [NS(key=f"d/{n}/a", size=1, last_modified=_ts(age), etag='"e"') for n, age in ((name, 5), ("new", 1))]

    class Found:
        reading, snapshot = "listing", None

        def objects(self, prefix, on_batch=None):
            return iter(objects)

        def describe(self):
            return None

    with caplog.at_level(logging.INFO, logger="include.deploy_cleanup.plan"):
        cleanup._plan(None, "b", CleanupSettings(prefix="d/", keep=1), tmp_path, NOW, 1000, Found())
    lines = [r.getMessage() for r in caplog.records if r.name == "include.deploy_cleanup.plan"]
    assert any("release-4\\r\\nLOG guards passed" in line for line in lines)
    assert not any("\n" in line or "\r" in line for line in lines)


def test_a_prefix_with_no_deployment_says_so(tmp_path):
    """``Deploys/`` for ``deploys/`` cleaned nothing, every day, and said "Delete 0 of 0 deployments"."""
    from include.deploy_cleanup import plan as cleanup

    class Found:
        reading, snapshot = "listing", None

        def objects(self, prefix, on_batch=None):
            return iter([])

        def describe(self):
            return None

    summary = cleanup._plan(None, "b", CleanupSettings(prefix="Deploys/", keep=1), tmp_path, NOW, 1000, Found())
    assert "Warning: no deployment folder under s3://b/Deploys/ (0 objects there): check the prefix" in summary["headline"]


def test_what_the_delete_step_checks_is_marked_whatever_kept_it():
    """A protected or tied deployment among the newest still holds its rank: the delete step checks it."""
    decisions = {d.name: d for d in select(_deps({"prod-3": 1, "rel-2": 5, "rel-1b": 5, "rel-1": 20}),
                                           CleanupSettings(keep=2, protect=("prod-*",)), NOW)}
    assert decisions["prod-3"].holds_rank and decisions["prod-3"].min_keep and decisions["prod-3"].why.startswith("protected")
    assert decisions["rel-2"].holds_rank and not decisions["rel-2"].min_keep
    assert decisions["rel-1b"].holds_rank and decisions["rel-1b"].why.startswith("as new as 'rel-2'")  # a tie
    assert not decisions["rel-1"].holds_rank and decisions["rel-1"].delete


@pytest.mark.parametrize("pattern", ["prod-* ", " prod-*", "\tprod-1\n"])
def test_a_protect_glob_with_stray_spaces_still_protects(pattern):
    cfg = settings_from_params({"keep": 1, "prefix": "d/", "protect": [pattern]})
    assert not any(d.delete for d in select(_deps({"prod-1": 30, "new": 1}), cfg, NOW))
