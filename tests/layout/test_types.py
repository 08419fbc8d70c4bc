"""The type checker over include/ (configuration: pyproject.toml [tool.mypy]), with the boto3 S3 stubs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def mypy(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("mypy")
    return subprocess.run([str(exe), *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_include_type_checks() -> None:
    result = mypy()
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Success: no issues found" in result.stdout


def test_s3_clients_are_typed_not_any(tmp_path: Path) -> None:
    """A misspelt S3 parameter is a type error: the clients carry the stubs' S3Client type, not Any."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from include.aws.client import client_from_args\n"
        "client_from_args().list_objects_v2(Bukket='b')\n"
    )
    result = mypy(str(probe))
    assert result.returncode == 1, result.stdout
    assert 'Unexpected keyword argument "Bukket"' in result.stdout
