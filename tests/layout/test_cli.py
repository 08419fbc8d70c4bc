"""The ``s3ops`` command line: one entry point, every command's --help, and no Airflow on its path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.layout._pyproject import pyproject

ROOT = Path(__file__).resolve().parents[2]

#: Runs ``include.cli.main(argv)`` with ``airflow`` made unimportable, then fails if anything loaded it.
NO_AIRFLOW = """
import importlib.abc, sys
class NoAirflow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "airflow" or name.startswith("airflow."):
            raise ImportError(f"airflow is blocked in this test (imported: {name})")
        return None
sys.meta_path.insert(0, NoAirflow())
from include.cli import main
code = main(sys.argv[1:])
assert not [m for m in sys.modules if m.split(".")[0] == "airflow"], "airflow was imported"
sys.exit(code)
"""


def s3ops(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``s3ops ARGV`` without Airflow (see NO_AIRFLOW), from the project root."""
    return subprocess.run([sys.executable, "-c", NO_AIRFLOW, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)


def test_the_entry_point_is_s3ops() -> None:
    project = pyproject()
    assert project["project"]["scripts"] == {"s3ops": "include.cli:main"}
    assert project["build-system"]["build-backend"] == "setuptools.build_meta"


def test_overview_lists_every_command() -> None:
    result = s3ops("--help")
    assert result.returncode == 0, result.stderr
    for command in ("report", "upload", "retention plan", "deploy-cleanup"):
        assert f"  {command} " in result.stdout


@pytest.mark.parametrize("command", [["report"], ["upload"], ["retention", "plan"], ["deploy-cleanup"]])
def test_each_command_has_help_and_needs_no_airflow(command: list[str]) -> None:
    result = s3ops(*command, "--help")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith(f"usage: s3ops {' '.join(command)} ")


def test_unknown_commands_say_so_in_one_line() -> None:
    result = s3ops("retention")
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == "s3ops: unknown command 'retention' (did you mean 'retention plan'?)"
    assert s3ops("delete-everything").returncode == 2


def test_retention_plan_rejects_bad_input_before_connecting() -> None:
    bad_table = s3ops("retention", "plan", "--bucket", "b", "--mysql-database", "d", "--jobs-table", "jobs; DROP")
    assert bad_table.returncode == 2 and "jobs_table 'jobs; DROP' is not a plain table name" in bad_table.stderr
    bad_now = s3ops("retention", "plan", "--bucket", "b", "--mysql-database", "d", "--now", "yesterday")
    assert bad_now.returncode == 2 and "--now 'yesterday' is not an ISO 8601 time" in bad_now.stderr
    bad_ages = [s3ops("retention", "plan", "--bucket", "b", "--mysql-database", "d", "--orphan-min-age-days", days)
                for days in ("-1", "nan", "1e12", "inf")]
    for bad_age in bad_ages:
        assert bad_age.returncode == 2 and "is not a number of days from 0 to 36500" in bad_age.stderr
    bad_duration = s3ops("retention", "plan", "--bucket", "b", "--mysql-database", "d", "--trial-retention", "3 months")
    assert bad_duration.returncode == 2 and "3 months" in bad_duration.stderr
    for result in (bad_table, bad_now, *bad_ages, bad_duration):
        assert "Traceback" not in result.stderr
