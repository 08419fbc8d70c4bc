"""Where ``s3_upload`` gets its settings, and their validation.

Scheduled runs have no conf, so they read the Airflow Variable ``s3_upload`` (a JSON object with the
param names as keys), then environment variables (``S3OPS_UPLOAD_BASE_DIR``, ``S3OPS_UPLOAD_BUCKET``,
… one per param), then the defaults. A manual run's conf overrides all of them. Values from the
Variable and the environment bypass the trigger form, so everything is validated here, with a
message naming the setting and where it came from.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

VARIABLE = "s3_upload"
ENV_PREFIX = "S3OPS_UPLOAD_"
DEFAULTS: dict[str, Any] = {
    "base_dir": None,
    "bucket": None,
    "key_prefix": "",
    "settle_seconds": 30,
    "overwrite": False,
    "max_files": 100_000,
    "multipart_threshold_mib": 64,
    "aws_conn_id": "aws_default",
}
MULTIPART_MIN_MIB, MULTIPART_MAX_MIB = 5, 5 * 1024  # S3's smallest part; PutObject's largest body
# Folders that are never a producer's base_dir: the scan would walk (and tidy) the whole system.
SYSTEM_ROOTS = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media", "/mnt", "/opt",
    "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/usr/local", "/var/lib", "/var/tmp",
    "/private", "/Users", "/System", "/Library", "/Applications", "/Volumes",
})
NEVER_UNDER = ("/proc/", "/sys/", "/dev/")
BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class SettingsError(ValueError):
    """A missing or invalid setting; the message names it, where it came from and how to fix it."""


@dataclass(frozen=True)
class UploadSettings:
    base_dir: str
    bucket: str
    key_prefix: str  # "" or ends with "/"
    settle_seconds: int
    overwrite: bool
    max_files: int
    aws_conn_id: str
    multipart_threshold_mib: int = DEFAULTS["multipart_threshold_mib"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key(self, rel: str) -> str:
        return f"{self.key_prefix}{rel}"

    @property
    def asset_uri(self) -> str:
        return f"s3://{self.bucket}/{self.key_prefix}"


def env_name(setting: str) -> str:
    return f"{ENV_PREFIX}{setting.upper()}"


def _where(source: str, name: str) -> str:
    return {
        "conf": f"the run's conf key {name!r}",
        "variable": f"key {name!r} of the Airflow Variable {VARIABLE!r}",
        "env": f"the environment variable {env_name(name)}",
        "default": f"the default of {name!r}",
    }[source]


def _as_int(value: Any, name: str, where: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise SettingsError(f"{name} must be an integer >= {minimum}, got {value!r} from {where}")
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(f"{name} must be an integer >= {minimum}, got {value!r} from {where}") from None
    if number < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {number} from {where}")
    if maximum is not None and number > maximum:
        raise SettingsError(f"{name} must be <= {maximum}, got {number} from {where}")
    return number


def check_base_dir(base_dir: str, where: str) -> None:
    """Refuse ``/`` and the system's own folders: a scan there walks the whole machine."""
    normal = "/" + os.path.normpath(base_dir).lstrip("/")  # normpath keeps a leading "//"
    if normal in SYSTEM_ROOTS or any(f"{normal}/".startswith(p) for p in NEVER_UNDER):
        raise SettingsError(
            f"base_dir {base_dir!r} (from {where}) is a system folder: point it at the producer's own folder, "
            "e.g. /data/producer"
        )


def _as_bool(value: Any, name: str, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {value!r} from {where}")


def normalize_prefix(prefix: str) -> str:
    """``"a/b"`` → ``"a/b/"``; ``""`` stays ``""``. Keys then read ``<prefix><location>/YYYY/…``."""
    return f"{prefix.rstrip('/')}/" if prefix.strip("/") else ""


def resolve_settings(
    conf: Mapping[str, Any] | None, variable: Mapping[str, Any] | str | None, env: Mapping[str, str]
) -> tuple[UploadSettings, dict[str, str]]:
    """Merge conf > Variable > environment > defaults and validate; returns the settings and, per
    setting, where its value came from (for the log). ``None`` or ``""`` in conf/Variable means unset."""
    if isinstance(variable, str):
        try:
            variable = json.loads(variable) if variable.strip() else None
        except json.JSONDecodeError as exc:
            raise SettingsError(f"the Airflow Variable {VARIABLE!r} is not valid JSON: {exc}") from None
    if variable is not None and not isinstance(variable, Mapping):
        raise SettingsError(f"the Airflow Variable {VARIABLE!r} must be a JSON object with the param names as keys")
    unknown = sorted(set(variable or {}) - set(DEFAULTS))
    if unknown:
        raise SettingsError(f"the Airflow Variable {VARIABLE!r} has unknown keys {unknown}; known: {sorted(DEFAULTS)}")

    raw: dict[str, Any] = {}
    source: dict[str, str] = {}
    for name, default in DEFAULTS.items():
        for where, layer in (("conf", conf or {}), ("variable", variable or {}), ("env", None)):
            value = layer.get(name) if layer is not None else env.get(env_name(name))
            if value is not None and value != "":
                raw[name], source[name] = value, where
                break
        else:
            raw[name], source[name] = default, "default"

    for name in ("base_dir", "bucket"):
        if raw[name] is None:
            raise SettingsError(
                f"{name} is not set: pass it in the run's conf, set key {name!r} in the Airflow Variable "
                f"{VARIABLE!r}, or set the environment variable {env_name(name)}"
            )
    base_dir = str(raw["base_dir"])
    if not Path(base_dir).is_absolute():
        raise SettingsError(f"base_dir must be an absolute path, got {base_dir!r} from {_where(source['base_dir'], 'base_dir')}")
    check_base_dir(base_dir, _where(source["base_dir"], "base_dir"))
    bucket = str(raw["bucket"])
    if not BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise SettingsError(f"bucket {bucket!r} (from {_where(source['bucket'], 'bucket')}) is not a valid S3 bucket name")
    prefix = str(raw["key_prefix"])
    if prefix.startswith("/") or any(part in (".", "..") for part in prefix.split("/")):
        raise SettingsError(
            f"key_prefix {prefix!r} (from {_where(source['key_prefix'], 'key_prefix')}) must not start with '/' "
            "or contain '.'/'..' segments"
        )
    conn_id = str(raw["aws_conn_id"]).strip()
    if not conn_id:
        raise SettingsError("aws_conn_id must name an Airflow connection")
    settings = UploadSettings(
        base_dir=base_dir,
        bucket=bucket,
        key_prefix=normalize_prefix(prefix),
        settle_seconds=_as_int(raw["settle_seconds"], "settle_seconds", _where(source["settle_seconds"], "settle_seconds"), 0),
        overwrite=_as_bool(raw["overwrite"], "overwrite", _where(source["overwrite"], "overwrite")),
        max_files=_as_int(raw["max_files"], "max_files", _where(source["max_files"], "max_files"), 1),
        multipart_threshold_mib=_as_int(raw["multipart_threshold_mib"], "multipart_threshold_mib",
                                        _where(source["multipart_threshold_mib"], "multipart_threshold_mib"),
                                        MULTIPART_MIN_MIB, MULTIPART_MAX_MIB),
        aws_conn_id=conn_id,
    )
    return settings, source


def load_settings(conf: Mapping[str, Any]) -> UploadSettings:
    """Resolve the settings inside a task: the run's conf, the Variable ``s3_upload``, the environment."""
    import logging
    import os

    from airflow.sdk import Variable

    settings, source = resolve_settings(conf, Variable.get(VARIABLE, default=None), os.environ)
    logging.getLogger(__name__).info(
        "settings: %s", ", ".join(f"{k}={v!r} ({source[k]})" for k, v in settings.to_dict().items())
    )
    return settings
