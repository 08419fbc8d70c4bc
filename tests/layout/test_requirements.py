"""Requirements: requirements.txt is the runtime set, requirements-dev.txt the tools; the image's runtime set
resolves beside apache-airflow 3.3.2 without replacing anything Airflow was installed with.

The resolution is pip's own (``pip install --dry-run --report``) against this virtualenv, with every package
of Airflow's installed dependency closure pinned as a constraint (as the Dockerfile pins the image's own
packages): nothing is downloaded when the sets agree, so the test is quick and needs the index only for
a package that would really change.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.layout._pyproject import pyproject

ROOT = Path(__file__).resolve().parents[2]
DEV_ONLY = {"moto", "pytest", "pytest-timeout", "pytest-xdist", "hypothesis", "ruff", "playwright", "mypy", "import-linter",
            "types-boto3"}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            found[norm(req.name)] = str(req.specifier).removeprefix("==")
    return found


def closure(root: str) -> dict[str, str]:
    """{name: installed version} of ``root`` and everything it requires here (markers evaluated, no extras)."""
    seen: dict[str, str] = {}
    todo = [root]
    while todo:
        name = norm(todo.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[name] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def dry_run(tmp_path: Path, *args: str) -> dict:
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--disable-pip-version-check",
                           "--report", str(report), *args], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(report.read_text())


def test_dev_tools_are_not_in_the_runtime_set() -> None:
    runtime, dev = pins(ROOT / "requirements.txt"), pins(ROOT / "requirements-dev.txt")
    assert not DEV_ONLY & set(runtime), "test/dev tools belong in requirements-dev.txt"
    assert DEV_ONLY <= set(dev)
    assert not set(runtime) & set(dev), "a package is pinned in both locks"
    assert not {"pip", "setuptools", "wheel"} & (set(runtime) | set(dev)), "installer tools are not pinned"
    top = pins(ROOT / "requirements.in")
    assert top and all(runtime.get(name) == version for name, version in top.items()), "requirements.in ≠ lock"


def test_the_image_set_pins_what_the_runtime_lock_pins() -> None:
    image, runtime = pins(ROOT / "docker/requirements-airflow.txt"), pins(ROOT / "requirements.txt")
    assert image and {n: v for n, v in image.items() if runtime.get(n) != v} == {}


def test_runtime_sets_resolve_beside_airflow_without_replacing_its_dependencies(tmp_path: Path) -> None:
    airflow = closure("apache-airflow")
    assert airflow.get("apache-airflow") == "3.3.2"
    image_set = pins(ROOT / "docker/requirements-airflow.txt")
    # the image's packages are constraints, less those the project pins itself (the Dockerfile's rule)
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(airflow.items()) if n not in image_set))
    for runtime in ("docker/requirements-airflow.txt", "requirements.txt"):
        report = dry_run(tmp_path, "apache-airflow==3.3.2", "-r", runtime, "-c", str(constraints))
        replaced = {norm(i["metadata"]["name"]): i["metadata"]["version"] for i in report["install"]
                    if norm(i["metadata"]["name"]) in airflow}
        assert replaced == {}, f"{runtime} would replace Airflow's own dependencies: {replaced}"


def test_a_conflicting_pin_is_caught(tmp_path: Path) -> None:
    """The check is real: a runtime pin that moves one of Airflow's dependencies fails the resolution."""
    bad = tmp_path / "bad.txt"
    bad.write_text("apache-airflow==3.3.2\nsqlalchemy==1.3.24\n")
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(closure("apache-airflow").items())))
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
                           "--disable-pip-version-check", "-r", str(bad), "-c", str(constraints)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode != 0
    assert "Cannot install sqlalchemy==1.3.24 because these package versions have conflicting dependencies" in done.stderr


def imported_distributions(module: str) -> dict[str, set[str]]:
    """{distribution: top-level modules} that ``module`` can import, directly or through any module it imports
    (function-level imports included, ``if TYPE_CHECKING`` ones not), per the import graph import-linter uses."""
    import grimp

    graph = grimp.build_graph("include", include_external_packages=True, exclude_type_checking_imports=True)
    reached = graph.find_upstream_modules(module) | {module}
    # Airflow is reached only through the adapters' function-level imports, which pyproject's import-linter
    # contracts list one by one. The command lines never call them (they run with Airflow blocked in
    # tests/layout/test_cli.py and, with an artifact root on S3, in tests/integration/test_deploy_cleanup.py).
    tops = {m.split(".")[0] for m in reached} - {"include", "airflow"} - set(sys.stdlib_module_names)
    by_module = metadata.packages_distributions()
    found: dict[str, set[str]] = {}
    for top in tops:
        for dist in by_module.get(top, [f"<no distribution for {top}>"]):
            found.setdefault(norm(dist), set()).add(top)
    return found



def test_the_command_line_needs_only_its_declared_dependencies() -> None:
    """``pip install s3ops`` (no Airflow) gives every package the ``s3ops`` commands import: a missing one
    would be a ModuleNotFoundError in the middle of a user's run (an inventory report needs DuckDB)."""
    needed = imported_distributions("include.cli")
    assert {"awscrt", "botocore", "duckdb", "jsonschema", "mysqlclient"} <= set(needed)  # the graph is real
    declared = [Requirement(text) for text in pyproject()["project"]["dependencies"]]
    brought = {name for req in declared for name in closure(req.name)}
    missing = {dist: sorted(tops) for dist, tops in needed.items() if dist not in brought}
    assert missing == {}, f"add to pyproject.toml [project] dependencies: {missing}"
    locked = pins(ROOT / "requirements.txt")
    for req in declared:  # the floor is the version the tests ran with: no older one was ever tested
        assert str(req.specifier) == f">={locked[norm(req.name)]}", f"{req}: the lock pins {locked[norm(req.name)]}"


@pytest.mark.slow
def test_pip_install_gives_a_working_command_line_without_airflow(tmp_path: Path) -> None:
    """The command line installed alone, as a user (and the bench, scenarios 6 and 9) installs it: every
    command starts, and what only some runs import (DuckDB for an inventory report, MySQL for a retention
    plan, the CRT) imports."""
    from bench.run import install_cli

    s3ops = install_cli(tmp_path / "venv")
    assert s3ops is not None
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for command in (["report"], ["upload"], ["retention", "plan"], ["deploy-cleanup"]):
        done = subprocess.run([s3ops, *command, "--help"], capture_output=True, text=True, cwd=tmp_path, env=env,
                              timeout=120)
        assert done.returncode == 0 and done.stdout.startswith(f"usage: s3ops {' '.join(command)} "), done.stderr
    python = str(tmp_path / "venv/bin/python")
    probe = ("import include, duckdb, MySQLdb, awscrt.s3, jsonschema, importlib.util as u; "
             "print(include.__file__, u.find_spec('airflow'))")
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    where, airflow = done.stdout.split()
    assert where.startswith(str(tmp_path / "venv")) and airflow == "None"


def pythons(spec: str) -> set[str]:
    """The CPython releases 3.8.0 … 3.15.30 that ``spec`` (a Requires-Python) admits."""
    from packaging.specifiers import SpecifierSet

    allowed = SpecifierSet(spec)
    return {v for minor in range(8, 16) for micro in range(31) if (v := f"3.{minor}.{micro}") in allowed}


def bootstrap_pythons() -> set[str]:
    """What scripts/bootstrap.sh accepts: its ``(3, X, Y) <= version[:3]`` and ``version[:2] <= (3, Z)``."""
    text = (ROOT / "scripts/bootstrap.sh").read_text()
    low = re.search(r"\(3, (\d+), (\d+)\) <= sys\.version_info\[:3\]", text)
    high = re.search(r"sys\.version_info\[:2\] <= \(3, (\d+)\)", text)
    assert low and high, "the bootstrap's Python check changed shape: update this test"
    return pythons(f">=3.{low[1]}.{low[2]},<3.{int(high[1]) + 1}")


def test_every_python_the_project_accepts_can_install_what_it_pins() -> None:
    """pyproject's requires-python admits only Pythons every dependency of the command line supports, and
    the bootstrap only Pythons the whole pinned set supports (a wider range fails in pip's resolver,
    with no word about the Python version)."""
    project = pythons(pyproject()["project"]["requires-python"])
    bootstrap = bootstrap_pythons()
    assert "3.12.0" in project and "3.13.5" in bootstrap and bootstrap <= project
    declared = {name for text in pyproject()["project"]["dependencies"] for name in closure(Requirement(text).name)}
    for name, version in pins(ROOT / "requirements.txt").items():
        assert metadata.version(name) == version, f"{name}: the lock pins {version}; run the bootstrap"
        needs = metadata.metadata(name).get("Requires-Python") or ""
        accepted = project if name in declared else bootstrap
        refused = sorted(accepted - pythons(needs), key=lambda v: tuple(map(int, v.split("."))))
        assert not refused, f"{name} needs Python {needs}; {refused[0]} is accepted: raise the floor"
