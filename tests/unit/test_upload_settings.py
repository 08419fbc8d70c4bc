"""Where s3_upload's settings come from and how bad ones are reported."""

from __future__ import annotations

import os

import pytest

from include.upload.settings import SettingsError, normalize_prefix, resolve_settings

BASE = {"base_dir": "/data/in", "bucket": "my-bucket"}


def test_defaults_fill_what_is_not_set():
    settings, source = resolve_settings(BASE, None)
    assert settings.to_dict() == {
        "base_dir": "/data/in", "bucket": "my-bucket", "key_prefix": "", "settle_seconds": 30,
        "overwrite": False, "max_files": 100_000, "aws_conn_id": "aws_default", "workers": 64,
        "multipart_threshold_mib": 64, "throughput_target_gbps": 1.0,
    }
    assert source["bucket"] == "param" and source["settle_seconds"] == "default"


def test_the_throughput_target_comes_from_the_form_or_the_variable():
    settings, source = resolve_settings(BASE, {"throughput_target_gbps": 25})
    assert settings.throughput_target_gbps == 25.0 and source["throughput_target_gbps"] == "variable"
    settings, source = resolve_settings({**BASE, "throughput_target_gbps": 2.5}, {"throughput_target_gbps": 25})
    assert settings.throughput_target_gbps == 2.5 and source["throughput_target_gbps"] == "param"


def test_param_beats_variable_beats_default():
    variable = '{"base_dir": "/var/dir", "bucket": "var-bucket", "settle_seconds": 60, "key_prefix": "in", "workers": 4}'
    settings, source = resolve_settings({"settle_seconds": 5, "base_dir": None}, variable)
    assert settings.base_dir == "/var/dir" and source["base_dir"] == "variable"  # None in the form means unset
    assert settings.bucket == "var-bucket" and source["bucket"] == "variable"
    assert settings.settle_seconds == 5 and source["settle_seconds"] == "param"
    assert settings.overwrite is False and source["overwrite"] == "default"
    assert settings.workers == 4 and settings.key_prefix == "in/"
    assert settings.key("berlin/2026/01/01/00/05-t.dat") == "in/berlin/2026/01/01/00/05-t.dat"
    assert settings.asset_uri == "s3://var-bucket/in/"


def test_explicit_false_in_the_form_overrides_the_variable():
    settings, _ = resolve_settings({**BASE, "overwrite": False}, {"overwrite": True})
    assert settings.overwrite is False


def test_environment_variables_are_not_settings(monkeypatch):
    monkeypatch.setenv("S3OPS_UPLOAD_BUCKET", "env-bucket")
    with pytest.raises(SettingsError, match="bucket is not set"):
        resolve_settings({"base_dir": "/d"}, None)


@pytest.mark.parametrize("missing", ["base_dir", "bucket"])
def test_missing_required_setting_is_named_with_every_way_to_set_it(missing):
    conf = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(SettingsError) as err:
        resolve_settings(conf, None)
    text = str(err.value)
    assert f"{missing} is not set" in text and "s3ops_upload" in text and f"param {missing!r}" in text


@pytest.mark.parametrize(
    ("conf", "variable", "needle"),
    [
        ({**BASE, "base_dir": "relative/dir"}, None, "absolute"),
        ({**BASE, "bucket": "Bad_Bucket"}, None, "bucket"),
        ({**BASE, "bucket": "a..b"}, None, "bucket 'a..b'"),
        ({**BASE, "key_prefix": "/abs"}, None, "key_prefix"),
        ({**BASE, "key_prefix": "a/../b"}, None, "key_prefix"),
        (BASE, {"settle_seconds": "soon"}, "key 'settle_seconds' of the Airflow Variable 's3ops_upload'"),
        (BASE, {"settle_seconds": -1}, "settle_seconds"),
        (BASE, {"max_files": 0}, "max_files"),
        (BASE, {"overwrite": "maybe"}, "overwrite"),
        (BASE, {"workers": 0}, "workers"),
        (BASE, "{not json", "not valid JSON"),
        (BASE, {"bukket": "x"}, "unknown keys"),
        (BASE, "[1, 2]", "JSON object"),
        (BASE, {"multipart_threshold_mib": 4}, "multipart_threshold_mib"),
        (BASE, {"multipart_threshold_mib": 5121}, "multipart_threshold_mib"),
        (BASE, {"throughput_target_gbps": 0}, "throughput_target_gbps"),
        (BASE, {"throughput_target_gbps": -5}, "throughput_target_gbps"),
        (BASE, {"throughput_target_gbps": 1e9}, "throughput_target_gbps"),
        (BASE, '{"throughput_target_gbps": NaN}', "throughput_target_gbps"),
        (BASE, {"throughput_target_gbps": "fast"}, "throughput_target_gbps"),
        ({**BASE, "base_dir": "/"}, None, "system folder"),
        ({**BASE, "base_dir": "//"}, None, "system folder"),
        ({**BASE, "base_dir": "/usr/"}, None, "system folder"),
        ({**BASE, "base_dir": "/usr/./"}, None, "system folder"),
        ({**BASE, "base_dir": "/etc"}, None, "system folder"),
        ({**BASE, "base_dir": "/proc/1"}, None, "system folder"),
        ({"bucket": "my-bucket"}, {"base_dir": "/"}, "key 'base_dir' of the Airflow Variable 's3ops_upload'"),
    ],
)
def test_bad_settings_say_what_and_where(conf, variable, needle):
    with pytest.raises(SettingsError) as err:
        resolve_settings(conf, variable)
    assert needle in str(err.value)


@pytest.mark.parametrize("folder", ["/data/in", "/var/spool/producer", "/tmp/producer", "/home/ann/out"])
def test_ordinary_folders_below_system_roots_are_fine(folder):
    assert resolve_settings({**BASE, "base_dir": folder}, None)[0].base_dir == folder


def test_normalize_prefix():
    assert normalize_prefix("") == ""
    assert normalize_prefix("/") == ""
    assert normalize_prefix("a/b") == "a/b/"
    assert normalize_prefix("a/b//") == "a/b/"


@pytest.mark.parametrize("enabled", [True, False])
def test_the_command_line_leaves_garbage_collection_as_it_found_it(tmp_path, capsys, enabled):
    """`s3ops upload` collects no garbage while it starts (see uploader._starting_up); whatever ends the
    start-up, a bad setting here, the collector is back as it was."""
    import gc

    from include.upload.uploader import main

    (gc.enable if enabled else gc.disable)()
    try:
        assert main(["--base-dir", str(tmp_path), "--bucket", "my-bucket", "--settle-seconds", "-5"]) == 2
        assert gc.isenabled() is enabled
    finally:
        gc.unfreeze()  # main froze this test process's objects: let the collector have them again
        gc.enable()
    assert "settle_seconds" in capsys.readouterr().err


# A base_dir that leads to a system folder through a symbolic link is that system folder ----------------


def _refusal(base_dir: str) -> str:
    with pytest.raises(SettingsError) as err:
        resolve_settings({**BASE, "base_dir": base_dir}, None)
    return str(err.value)


@pytest.mark.parametrize("target", ["/usr", "/", "/etc", "/var", "/lib", "/bin", "/proc/self", "/dev/shm"])
def test_a_link_to_a_system_folder_is_refused_naming_both_paths(tmp_path, target):
    link = tmp_path / "link"
    link.symlink_to(target)
    real = os.path.realpath(target)  # /lib is /usr/lib on a merged-/usr system: refused all the same
    text = _refusal(str(link))
    assert "system folder" in text and repr(str(link)) in text and repr(real) in text


def test_every_way_of_reaching_a_system_folder_through_links_is_refused(tmp_path):
    (tmp_path / "share").symlink_to("/usr/share")
    (tmp_path / "relative").symlink_to(os.path.relpath("/usr", tmp_path))
    (tmp_path / "hop2").symlink_to("/usr")
    (tmp_path / "hop1").symlink_to(tmp_path / "hop2")
    (tmp_path / "root").symlink_to("/proc/self/root")  # a magic link to "/"
    for base_dir in (f"{tmp_path}/share/..",  # normpath would say tmp_path; the system goes to /usr
                     f"{tmp_path}/relative", f"{tmp_path}/hop1", f"{tmp_path}/hop1/./", f"{tmp_path}/root"):
        assert "system folder" in _refusal(base_dir), base_dir


def test_a_link_to_an_ordinary_folder_is_fine(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "share").symlink_to("/usr/share")
    for base_dir in (f"{tmp_path}/link", f"{tmp_path}/share"):  # below a system root, as /usr/share itself
        assert resolve_settings({**BASE, "base_dir": base_dir}, None)[0].base_dir == base_dir


def test_a_system_folder_written_plainly_names_it_once():
    text = _refusal("/usr/")
    assert text.startswith("base_dir '/usr/' (from the run's param 'base_dir') is a system folder:")


def test_a_base_dir_with_a_nul_byte_is_a_settings_error_not_a_crash():
    assert "not a usable path" in _refusal("/data/in\x00x")


# key_prefix: printable characters only ------------------------------------------------------------------


@pytest.mark.parametrize("prefix", [
    "x\ny", "x\x01y", "x\ry", "x\ty", "x\x00y", "x\x1by", "x\x7fy", "x\x85y",  # C0, DEL, C1 (NEL)
    "x\u2028y", "x\u2029y", "\u202eevil", "x\u200by", "x\ufeffy", "x\udce9y", "x\ufffey", "in\xa0box",
])
def test_a_key_prefix_with_a_non_printable_character_is_refused(prefix):
    with pytest.raises(SettingsError) as err:
        resolve_settings({**BASE, "key_prefix": prefix}, None)
    text = str(err.value)
    assert text.startswith(f"key_prefix {prefix!r} (from the run's param 'key_prefix')")
    assert f"U+{ord(next(c for c in prefix if not c.isprintable())):04X}" in text
    assert "printable characters only" in text and text.isprintable()  # the error itself is one clean line


def test_a_key_prefix_from_the_variable_is_checked_the_same_way():
    with pytest.raises(SettingsError, match="key 'key_prefix' of the Airflow Variable 's3ops_upload'"):
        resolve_settings(BASE, {"key_prefix": "x\ny"})


@pytest.mark.parametrize("prefix", ["raw", "in box/", "données/日本/", "a-b_c.d/e+f=g@h", "x//y"])
def test_printable_key_prefixes_of_any_script_are_fine(prefix):
    assert resolve_settings({**BASE, "key_prefix": prefix}, None)[0].key_prefix == normalize_prefix(prefix)


def test_a_key_prefix_too_long_in_bytes_for_any_key_is_refused():
    """maxLength counts characters: 1,024 'é' (2,048 bytes) passed, then every file failed every minute
    with KeyTooLongError."""
    with pytest.raises(SettingsError, match=r"key_prefix \(from the run's param 'key_prefix'\) is 2,049 bytes"):
        resolve_settings({**BASE, "key_prefix": "é" * 1024}, None)
    fits = "a" * 999  # + "/" + the shortest name: 1,024 bytes
    assert len(resolve_settings({**BASE, "key_prefix": fits}, None)[0].key("a/2026/01/01/00/00-t.dat").encode()) == 1024
    with pytest.raises(SettingsError, match="1,001 bytes"):
        resolve_settings({**BASE, "key_prefix": "a" * 1000}, None)


@pytest.mark.parametrize(("prefix", "uri"), [("a?b#c", "s3://bkt/a%3Fb%23c"), ("100%/", "s3://bkt/100%"), ("in/", "s3://bkt/in")])
def test_the_asset_is_the_whole_prefix_whatever_it_holds(prefix, uri):
    """Airflow reads a URI's query and fragment off: the prefix 'a?b#c' was the asset s3://b/a."""
    from airflow.sdk import Asset

    settings = resolve_settings({**BASE, "bucket": "bkt", "key_prefix": prefix}, None)[0]
    assert Asset(settings.asset_uri).uri == uri


@pytest.mark.parametrize(("conf", "variable", "where"), [
    ({**BASE, "settle_seconds": 0}, None, "the run's param 'settle_seconds'"),
    (BASE, {"settle_seconds": 0}, "key 'settle_seconds' of the Airflow Variable 's3ops_upload'"),
    (BASE, '{"settle_seconds": 0.0}', "key 'settle_seconds' of the Airflow Variable 's3ops_upload'"),
])
def test_a_dag_run_refuses_settle_seconds_0_saying_what_to_set(conf, variable, where):
    """0 turns the check that a file is finished off (its mtime may be of this instant): a run every minute
    would take a file the producer is still writing as its minute ends, and S3 would keep part of it (a
    conflict at its key, run after run). The trigger form and the Variable are refused, in one line."""
    with pytest.raises(SettingsError) as err:
        resolve_settings(conf, variable)
    text = str(err.value)
    assert text.startswith(f"settle_seconds = 0 (from {where})") and "set 1 or more" in text
    assert "\n" not in text and "s3ops upload --settle-seconds 0" in text


def test_settle_seconds_1_in_the_dag_and_0_on_the_command_line_are_taken():
    """The command line's user deploys it: 0 for files known finished (the benchmarks, the tests)."""
    from include.upload.settings import SETTINGS, upload_settings

    assert resolve_settings({**BASE, "settle_seconds": 1}, None)[0].settle_seconds == 1
    assert resolve_settings({**BASE, "settle_seconds": 0}, None, by_deployer=True)[0].settle_seconds == 0
    resolved = SETTINGS.resolve({**BASE, "settle_seconds": 0}, None)  # what the DAG's tasks do with it
    with pytest.raises(SettingsError, match="settle_seconds = 0"):
        upload_settings(resolved, resolved.sources)
