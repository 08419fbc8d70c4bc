"""Where s3_upload's settings come from and how bad ones are reported."""

from __future__ import annotations

import pytest

from include.upload.settings import SettingsError, normalize_prefix, resolve_settings

BASE = {"base_dir": "/data/in", "bucket": "my-bucket"}


def test_defaults_fill_what_is_not_set():
    settings, source = resolve_settings(BASE, None, {})
    assert settings.to_dict() == {
        "base_dir": "/data/in", "bucket": "my-bucket", "key_prefix": "", "settle_seconds": 30,
        "overwrite": False, "max_files": 100_000, "aws_conn_id": "aws_default", "multipart_threshold_mib": 64,
    }
    assert source["bucket"] == "conf" and source["settle_seconds"] == "default"


def test_conf_beats_variable_beats_env():
    env = {"S3OPS_UPLOAD_BASE_DIR": "/env/dir", "S3OPS_UPLOAD_BUCKET": "env-bucket",
           "S3OPS_UPLOAD_SETTLE_SECONDS": "90", "S3OPS_UPLOAD_OVERWRITE": "true", "S3OPS_UPLOAD_MAX_FILES": "7"}
    variable = '{"bucket": "var-bucket", "settle_seconds": 60, "key_prefix": "in"}'
    settings, source = resolve_settings({"settle_seconds": 5, "base_dir": None}, variable, env)
    assert settings.base_dir == "/env/dir" and source["base_dir"] == "env"  # None in conf means unset
    assert settings.bucket == "var-bucket" and source["bucket"] == "variable"
    assert settings.settle_seconds == 5 and source["settle_seconds"] == "conf"
    assert settings.overwrite is True and settings.max_files == 7
    assert settings.key_prefix == "in/"
    assert settings.key("berlin/2026/01/01/00/05-t.dat") == "in/berlin/2026/01/01/00/05-t.dat"
    assert settings.asset_uri == "s3://var-bucket/in/"


def test_explicit_false_in_conf_overrides_the_variable():
    settings, _ = resolve_settings({**BASE, "overwrite": False}, {"overwrite": True}, {})
    assert settings.overwrite is False


@pytest.mark.parametrize("missing", ["base_dir", "bucket"])
def test_missing_required_setting_is_named_with_every_way_to_set_it(missing):
    conf = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(SettingsError) as err:
        resolve_settings(conf, None, {})
    text = str(err.value)
    assert missing in text and "s3_upload" in text and f"S3OPS_UPLOAD_{missing.upper()}" in text


@pytest.mark.parametrize(
    ("conf", "variable", "env", "needle"),
    [
        ({**BASE, "base_dir": "relative/dir"}, None, {}, "absolute"),
        ({**BASE, "bucket": "Bad_Bucket"}, None, {}, "bucket 'Bad_Bucket'"),
        ({**BASE, "key_prefix": "/abs"}, None, {}, "key_prefix"),
        ({**BASE, "key_prefix": "a/../b"}, None, {}, "key_prefix"),
        (BASE, None, {"S3OPS_UPLOAD_SETTLE_SECONDS": "soon"}, "S3OPS_UPLOAD_SETTLE_SECONDS"),
        (BASE, {"settle_seconds": -1}, {}, "settle_seconds must be >= 0"),
        (BASE, {"max_files": 0}, {}, "max_files"),
        (BASE, {"overwrite": "maybe"}, {}, "overwrite"),
        (BASE, "{not json", {}, "not valid JSON"),
        (BASE, {"bukket": "x"}, {}, "unknown keys"),
        (BASE, "[1, 2]", {}, "JSON object"),
        (BASE, {"multipart_threshold_mib": 4}, {}, "multipart_threshold_mib must be >= 5"),
        (BASE, {"multipart_threshold_mib": 5121}, {}, "multipart_threshold_mib must be <= 5120"),
        ({**BASE, "base_dir": "/"}, None, {}, "system folder"),
        ({**BASE, "base_dir": "/usr/"}, None, {}, "system folder"),
        ({**BASE, "base_dir": "/usr/./"}, None, {}, "system folder"),
        ({**BASE, "base_dir": "/etc"}, None, {}, "system folder"),
        ({**BASE, "base_dir": "/proc/1"}, None, {}, "system folder"),
        ({"bucket": "my-bucket"}, None, {"S3OPS_UPLOAD_BASE_DIR": "//"}, "S3OPS_UPLOAD_BASE_DIR"),
    ],
)
def test_bad_settings_say_what_and_where(conf, variable, env, needle):
    with pytest.raises(SettingsError, match=None) as err:
        resolve_settings(conf, variable, env)
    assert needle in str(err.value)


@pytest.mark.parametrize("folder", ["/data/in", "/var/spool/producer", "/tmp/producer", "/home/ann/out"])
def test_ordinary_folders_below_system_roots_are_fine(folder):
    assert resolve_settings({**BASE, "base_dir": folder}, None, {})[0].base_dir == folder


def test_normalize_prefix():
    assert normalize_prefix("") == ""
    assert normalize_prefix("/") == ""
    assert normalize_prefix("a/b") == "a/b/"
    assert normalize_prefix("a/b//") == "a/b/"
