"""Requirements: requirements.txt is the runtime set, requirements-dev.txt the tools; the image's runtime set
resolves beside apache-airflow 3.3.2 without replacing anything Airflow was installed with.

The resolution is pip's own (``pip install --dry-run --report``) against this virtualenv, with every package
of Airflow's installed dependency closure pinned as a constraint (as the Dockerfile pins the image's own
packages): nothing is downloaded when the sets agree, so the test is quick and needs the index only for
a package that would really change.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DEV_ONLY = {"moto", "pytest", "pytest-timeout", "pytest-xdist", "hypothesis", "ruff", "playwright", "mypy", "import-linter",
            "types-boto3", "tomli"}


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
    assert DEV_ONLY - {"tomli"} <= set(dev)
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
