"""Every setting of ``s3_upload`` (the trigger form's params and the Variable ``s3ops_upload``) and the
checks that JSON schema cannot express.

Settings follow the one model of :mod:`include.core.settings`: a value typed in the form > key of the
Airflow Variable ``s3ops_upload`` > the built-in default. Scheduled runs (every minute) take everything
from the Variable; ``base_dir`` and ``bucket`` have no default. The command line passes its options as
the params and no Variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from include.core.settings import BUCKET, COMMON, REQUIRED, Setting, Settings, SettingsError

__all__ = ["SETTINGS", "SettingsError", "UploadSettings", "normalize_prefix", "resolve_settings", "upload_settings"]

#: uploads in flight per upload_batch task (the CRT client multiplexes them; no thread each)
DEFAULT_WORKERS = 64
#: The CRT client's throughput target: it sizes its connection pool from it (bench/README.md, scenarios 6 and 9)
DEFAULT_THROUGHPUT_GBPS = 1.0
MULTIPART_MIN_MIB, MULTIPART_MAX_MIB = 5, 5 * 1024  # S3's smallest part; PutObject's largest body
# Folders that are never a producer's base_dir: the scan would walk (and tidy) the whole system.
SYSTEM_ROOTS = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media", "/mnt", "/opt",
    "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/usr/local", "/var/lib", "/var/tmp",
    "/private", "/Users", "/System", "/Library", "/Applications", "/Volumes",
})
NEVER_UNDER = ("/proc/", "/sys/", "/dev/")

SETTINGS = Settings("s3_upload", "upload", (
    Setting("base_dir", {"type": "string", "minLength": 1, "maxLength": 4096}, REQUIRED, "Base folder",
            "Absolute path of the producer's folder (holds <location>/YYYY/MM/DD/HH/)."),
    Setting("bucket", BUCKET, REQUIRED, "Bucket", "Target bucket."),
    Setting("key_prefix", {"type": "string", "maxLength": 1024}, "", "Key prefix",
            "Prefix for every key, e.g. 'incoming/' (a '/' is added if missing)."),
    Setting("settle_seconds", {"type": "integer", "minimum": 0, "maximum": 86_400}, 30, "Settle time (seconds)",
            "A file is finished when its data minute ended and its mtime are at least this many seconds old "
            "(1 or more; 0, which takes a file the producer may still be writing, only on the command line)."),
    Setting("overwrite", {"type": "boolean"}, False, "Overwrite",
            "Replace an existing object with different content (otherwise: a conflict, the local file is kept).",
            tighten="off"),
    Setting("max_files", {"type": "integer", "minimum": 1, "maximum": 10**7}, 100_000, "Max files per run",
            "At most this many files per run, oldest data first; the rest wait."),
    Setting("multipart_threshold_mib", {"type": "integer", "minimum": MULTIPART_MIN_MIB, "maximum": MULTIPART_MAX_MIB},
            64, "Multipart from (MiB)", "Files of this size or more go up as a parallel multipart upload."),
    Setting("workers", {"type": "integer", "minimum": 1, "maximum": 256}, DEFAULT_WORKERS, "Uploads in flight",
            "Files handed to the CRT client at once by one upload_batch task.", form=False),
    Setting("throughput_target_gbps", {"type": "number", "minimum": 0.1, "maximum": 400}, DEFAULT_THROUGHPUT_GBPS,
            "Throughput target (Gbit/s)",
            "The CRT client sizes its connection pool from it: up to 4, its smallest pool of 10 connections (the "
            "AWS CLI's default concurrency); above, 1 more per 0.4. Raise it on a large instance that moves "
            "large files to AWS."),
    *COMMON,
))


@dataclass(frozen=True)
class UploadSettings:
    base_dir: str
    bucket: str
    key_prefix: str  # "" or ends with "/"
    settle_seconds: int
    overwrite: bool
    max_files: int
    aws_conn_id: str
    workers: int = DEFAULT_WORKERS
    multipart_threshold_mib: int = 64
    throughput_target_gbps: float = DEFAULT_THROUGHPUT_GBPS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key(self, rel: str) -> str:
        return f"{self.key_prefix}{rel}"

    @property
    def key_room(self) -> int:
        """The UTF-8 bytes of an S3 key left after the key prefix (for the path under ``base_dir``)."""
        return S3_KEY_BYTES - len(self.key_prefix.encode())

    @property
    def asset_uri(self) -> str:
        """The asset the DAG updates. ``?`` and ``#`` are escaped: Airflow reads a URI's query and fragment
        off, so the prefix ``a?b#c/`` was the asset ``s3://bucket/a``, another uploader's. (``%`` is left as
        it was: escaping it would rename the asset of a deployment whose prefix holds one.)"""
        return f"s3://{self.bucket}/{self.key_prefix.translate(_URI_ESCAPES)}"


_URI_ESCAPES = str.maketrans({"?": "%3F", "#": "%23"})
#: the shortest name the layout has (``a/2026/01/01/00/00-t.dat``): a prefix longer than S3's 1,024 bytes
#: of key minus this leaves room for no key
SHORTEST_REL = len("a/2026/01/01/00/00-t.dat")
S3_KEY_BYTES = 1024


def normalize_prefix(prefix: str) -> str:
    """``"a/b"`` → ``"a/b/"``; ``""`` stays ``""``. Keys then read ``<prefix><location>/YYYY/…``."""
    return f"{prefix.rstrip('/')}/" if prefix.strip("/") else ""


def _normal(path: str) -> str:
    """``path`` (absolute) without ``.``, ``..`` and doubled slashes; normpath keeps a leading ``//``."""
    return "/" + os.path.normpath(path).lstrip("/")


def _system_folder(path: str, roots: Mapping[str, str]) -> str | None:
    """The system folder that ``path`` (normalized) is, or lies under (``/proc``, ``/sys``, ``/dev``);
    ``roots`` maps every spelling of a system folder (as listed, as resolved) to its listed name."""
    if path in roots:
        return roots[path]
    return next((p.rstrip("/") for p in NEVER_UNDER if f"{path}/".startswith(p)), None)


def _system_spellings() -> dict[str, str]:
    """Each system folder by its listed name and by its real path: on a merged-/usr system ``/lib`` is
    ``/usr/lib``, on macOS ``/var`` is ``/private/var``, so a link to one resolves to a name not listed."""
    roots = {r: r for r in SYSTEM_ROOTS}
    for r in sorted(SYSTEM_ROOTS):
        roots.setdefault(os.path.realpath(r), r)
    return roots


def check_base_dir(base_dir: str, where: str) -> None:
    """Refuse ``/`` and the system's own folders: a scan there walks the whole machine.

    Checked as written and as resolved (``os.path.realpath``): a symbolic link to ``/usr``, or a
    ``link/..`` that climbs out of a link's target, is the system folder it leads to.
    """
    given = _normal(base_dir)
    try:
        real = os.path.realpath(base_dir)  # not of `given`: normpath drops a "link/.." the system follows
    except ValueError as exc:  # a NUL byte: no such path can exist
        raise SettingsError(f"base_dir {base_dir!r} (from {where}) is not a usable path ({exc})") from None
    roots = _system_spellings()
    folder = _system_folder(given, roots) or _system_folder(real, roots)
    if folder is not None:
        leads = f"resolves to {real!r}, " if real != given else "is "
        named = f" ({folder})" if folder not in (given, real) else ""
        raise SettingsError(
            f"base_dir {base_dir!r} (from {where}) {leads}a system folder{named}: point it at the producer's "
            "own folder, e.g. /data/producer"
        )


def check_key_prefix(prefix: str, where: str) -> None:
    """Refuse a key prefix S3 would mangle or that reads as something else: a leading ``/``, ``.`` or
    ``..`` folders, and any character that is not printable (control characters such as a newline,
    which made every upload fail with a bare HTTP 404; format characters such as a right-to-left
    override; line separators; non-UTF-8 surrogates), as location and topic names refuse control characters."""
    if prefix.startswith("/") or any(part in (".", "..") for part in prefix.split("/")):
        raise SettingsError(f"key_prefix {prefix!r} (from {where}) must not start with '/' "
                            "or contain '.'/'..' segments")
    odd = next((ch for ch in prefix if not ch.isprintable()), None)
    if odd is not None:
        raise SettingsError(
            f"key_prefix {prefix!r} (from {where}) holds the non-printable character U+{ord(odd):04X} at "
            f"position {prefix.index(odd)}: a key prefix may hold printable characters only (letters and "
            "digits of any script, punctuation, spaces; '/' between folders), no control or format characters"
        )
    size = len(normalize_prefix(prefix).encode())  # printable, so no lone surrogate: it encodes
    if size > S3_KEY_BYTES - SHORTEST_REL:
        raise SettingsError(
            f"key_prefix (from {where}) is {size:,} bytes in UTF-8: S3 keys hold at most {S3_KEY_BYTES:,} bytes, "
            f"so with the layout's shortest name ({SHORTEST_REL} bytes) no file would fit; shorten it to "
            f"{S3_KEY_BYTES - SHORTEST_REL:,} bytes or fewer"
        )


def check_settle_seconds(seconds: int, where: str, *, command_line: bool) -> None:
    """Refuse ``settle_seconds`` 0 outside the command line. 0 switches the check that a file is finished
    off: its mtime need not be any age, and its minute only just over, so a run takes a file the producer is
    still writing the instant its minute ends; S3 then holds part of it, and the next runs report a conflict
    at its key until someone uploads it with ``overwrite``. A DAG that runs every minute gains at most a
    minute by it. The command line takes 0 from the person running it, on files known finished (the
    benchmarks, the tests, a backlog copied in)."""
    if seconds == 0 and not command_line:
        raise SettingsError(
            f"settle_seconds = 0 (from {where}) would take a file the instant its minute ends, while the producer "
            f"may still be writing it (its mtime is then not checked at all): set 1 or more "
            f"({SETTINGS['settle_seconds'].default} is the default; 1 suits a producer that renames finished files "
            "into place). Only the command line takes 0 (s3ops upload --settle-seconds 0), for files known finished")


def upload_settings(values: Mapping[str, Any], sources: Mapping[str, str] | None = None, *,
                    command_line: bool = False) -> UploadSettings:
    """Resolved values → :class:`UploadSettings`, after the checks a schema cannot express
    (``command_line``: the values are the ``s3ops upload`` options, whose user deploys it)."""
    sources = sources or {}

    def where(name: str) -> str:
        return SETTINGS.where(name, sources.get(name, "param"))

    check_settle_seconds(int(values["settle_seconds"]), where("settle_seconds"), command_line=command_line)

    base_dir = str(values["base_dir"])
    if not Path(base_dir).is_absolute():
        raise SettingsError(f"base_dir must be an absolute path, got {base_dir!r} from {where('base_dir')}")
    check_base_dir(base_dir, where("base_dir"))
    prefix = str(values["key_prefix"])
    check_key_prefix(prefix, where("key_prefix"))
    bucket = str(values["bucket"])
    if ".." in bucket:
        raise SettingsError(f"bucket {bucket!r} (from {where('bucket')}) is not a valid S3 bucket name")
    return UploadSettings(
        base_dir=base_dir, bucket=bucket, key_prefix=normalize_prefix(prefix),
        settle_seconds=int(values["settle_seconds"]), overwrite=bool(values["overwrite"]),
        max_files=int(values["max_files"]), aws_conn_id=str(values["aws_conn_id"]),
        workers=int(values.get("workers") or DEFAULT_WORKERS),
        multipart_threshold_mib=int(values.get("multipart_threshold_mib") or 64),
        throughput_target_gbps=float(values.get("throughput_target_gbps") or DEFAULT_THROUGHPUT_GBPS),
    )


def resolve_settings(
    params: Mapping[str, Any] | None, variable: Mapping[str, Any] | str | None, *, by_deployer: bool = False,
) -> tuple[UploadSettings, dict[str, str]]:
    """params > the Variable ``s3ops_upload`` > defaults, validated; returns the settings and, per
    setting, where its value came from (for the log). ``by_deployer``: the command line's options, which
    may also loosen a safety setting (``--overwrite``) and take ``settle_seconds`` 0."""
    resolved = SETTINGS.resolve(params, variable, by_deployer=by_deployer)
    return upload_settings(resolved, resolved.sources, command_line=by_deployer), dict(resolved.sources)
