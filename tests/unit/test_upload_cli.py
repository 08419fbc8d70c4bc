"""``s3ops upload`` refuses to start in one line on stderr and exit 2, never a traceback (no server: each
problem is found before any request could reach one)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOWHERE = "http://127.0.0.1:1"  # nothing listens there


def upload_cli(base: Path, *args: str, credentials: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    """The command in a process of its own, with only the AWS settings given here (no profile, no instance
    metadata: nothing can reach real AWS)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3OPS_S3_"))}
    clean.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_EC2_METADATA_DISABLED="true",
                 PYTHONPATH=str(ROOT))
    if credentials:
        clean.update(AWS_ACCESS_KEY_ID="AKIDTEST", AWS_SECRET_ACCESS_KEY="secret")
    clean.update(env)
    return subprocess.run([sys.executable, "-m", "include.upload.uploader", "--base-dir", str(base),
                           "--bucket", "my-bucket", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=clean)


CASES = {
    "no-credentials": ((["--endpoint-url", NOWHERE], {"credentials": False}), "no AWS credentials found"),
    "endpoint-unreachable": ((["--endpoint-url", NOWHERE], {"AWS_MAX_ATTEMPTS": "1"}),
                             f"cannot reach the S3 endpoint {NOWHERE}/my-bucket: is it up?"),
    "endpoint-not-a-url": ((["--endpoint-url", "notaurl"], {}), "--endpoint-url (or S3OPS_S3_ENDPOINT) 'notaurl'"),
    "endpoint-bad-port": ((["--endpoint-url", "http://127.0.0.1:abc"], {}), "'http://127.0.0.1:abc' is not a URL"),
    "endpoint-ftp": ((["--endpoint-url", "ftp://127.0.0.1:1"], {}), "'ftp://127.0.0.1:1' is not a URL"),
    "bad-region": ((["--region", "bad region!", "--endpoint-url", NOWHERE], {}),
                   "--region 'bad region!' is not a region name"),
    "bad-region-from-env": ((["--endpoint-url", NOWHERE], {"AWS_DEFAULT_REGION": "bad region!"}),
                            "'bad region!' is not a region name"),
    "empty-region": ((["--region=", "--endpoint-url", NOWHERE], {}), "the region is empty"),
    "empty-region-from-env": ((["--endpoint-url", NOWHERE], {"AWS_DEFAULT_REGION": ""}), "the region is empty"),
    "max-attempts-abc": ((["--endpoint-url", NOWHERE], {"AWS_MAX_ATTEMPTS": "abc"}), "AWS_MAX_ATTEMPTS"),
    "max-attempts-0": ((["--endpoint-url", NOWHERE], {"AWS_MAX_ATTEMPTS": "0"}), "AWS_MAX_ATTEMPTS"),
    "workers-0": ((["--workers", "0", "--endpoint-url", NOWHERE], {}), "workers = 0 (from --workers)"),
    "workers-negative": ((["--workers=-5", "--endpoint-url", NOWHERE], {}), "workers = -5 (from --workers)"),
    "workers-huge": ((["--workers", "100000", "--endpoint-url", NOWHERE], {}),
                     "workers = 100000 (from --workers) is invalid: it is greater than the maximum of 256"),
    "credential-process-fails": ((["--profile", "broken", "--endpoint-url", NOWHERE], {"AWS_CONFIG_FILE": "CONFIG"}),
                                 "Error when retrieving credentials from custom-process: first second"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_setup_error_is_one_line_and_exit_2(tmp_path, case):
    (args, env), needle = CASES[case]
    if env.get("AWS_CONFIG_FILE") == "CONFIG":  # a profile whose credential process fails on two lines
        config = tmp_path / "config"
        config.write_text('[profile broken]\ncredential_process = sh -c "echo first >&2; echo second >&2; exit 1"\n')
        env = {**env, "AWS_CONFIG_FILE": str(config)}
    base = tmp_path / "base"
    base.mkdir()

    done = upload_cli(base, *args, **env)

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert done.stderr.splitlines() == [done.stderr.strip()] and done.stderr.startswith("error: "), done.stderr
    assert needle in done.stderr


def test_an_empty_endpoint_variable_means_aws(tmp_path):
    """S3OPS_S3_ENDPOINT set but empty is no endpoint (AWS), not the URL ''. Unreachable here: one line."""
    base = tmp_path / "base"
    base.mkdir()
    done = upload_cli(base, S3OPS_S3_ENDPOINT="", AWS_MAX_ATTEMPTS="1", AWS_ENDPOINT_URL_S3=NOWHERE)
    assert done.returncode == 2 and done.stderr.splitlines() == [done.stderr.strip()], done.stderr
    assert "is not a URL" not in done.stderr and "cannot reach the S3 endpoint" in done.stderr


OPTION_CASES = {
    "bucket-missing": (["--base-dir", "BASE"], "error: --bucket is required: the bucket to upload to (--bucket NAME)"),
    "base-dir-missing": (["--bucket", "my-bucket"],
                         "error: --base-dir is required: the producer's folder (--base-dir /data/outbox)"),
    "settle-negative": (["--base-dir", "BASE", "--bucket", "my-bucket", "--settle-seconds", "-1"],
                        "error: settle_seconds = -1 (from --settle-seconds) is invalid"),
    "prefix-slash": (["--base-dir", "BASE", "--bucket", "my-bucket", "--key-prefix", "/raw"],
                     "error: key_prefix '/raw' (from --key-prefix) must not start with '/'"),
    "base-dir-relative": (["--base-dir", "data/outbox", "--bucket", "my-bucket"],
                          "error: base_dir must be an absolute path, got 'data/outbox' from --base-dir"),
}


@pytest.mark.parametrize("case", OPTION_CASES)
def test_a_bad_or_missing_option_is_named_as_the_command_line_spells_it(tmp_path, case):
    """The settings' messages speak of the trigger form and the run's params: a command line user is told
    the option to give, not to type a value in a form or set an Airflow Variable."""
    args, start = OPTION_CASES[case]
    base = tmp_path / "base"
    base.mkdir()
    args = [str(base) if a == "BASE" else a for a in args]
    done = subprocess.run([sys.executable, "-m", "include.upload.uploader", *args, "--endpoint-url", NOWHERE], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and done.stderr.splitlines() == [done.stderr.strip()], done.stderr
    assert done.stderr.startswith(start), done.stderr
    assert "trigger form" not in done.stderr and "Airflow Variable" not in done.stderr and "param" not in done.stderr
