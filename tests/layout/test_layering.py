"""The layering rule of docs/architecture.md, enforced.

- include/: the import-linter contracts in pyproject.toml (which modules may import Airflow, what the
  pure logic and the command lines may reach, the package layers, no cycles), run with ``lint-imports``.
- dags/ and plugins/ are folders of files Airflow loads, not packages import-linter can walk: their
  imports are read from the source here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

from tests.layout._pyproject import pyproject

ROOT = Path(__file__).resolve().parents[2]

#: What a DAG file may import from the project: its feature's tasks, the shared deletion task group
#: and the shared DAG defaults (params, default_args) and settings model.
DAG_IMPORTS = ("include.*.tasks", "include.deletion.airflow", "include.dag_defaults", "include.core.settings")
#: The UI plugin sees the project only through include/ui.
PLUGIN_IMPORTS = ("include.ui", "include.ui.*")


def project_imports(path: Path) -> set[str]:
    """Every ``include.…`` module a file imports, at any depth (function bodies too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "include"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "include":
            # ``from include.x import y`` may name a module y: count it as include.x.y when it is one.
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                is_module = (ROOT / Path(*sub.split("."))).with_suffix(".py").exists()
                found.add(sub if is_module else node.module)
    return found


def violations(folder: str, allowed: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{path.relative_to(ROOT)} imports {module}"
        for path in (ROOT / folder).glob("*.py")
        for module in project_imports(path)
        if not any(fnmatch(module, pattern) for pattern in allowed)
    )


def test_include_keeps_the_import_linter_contracts() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-logo", "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    contracts = pyproject()["tool"]["importlinter"]["contracts"]
    assert f"Contracts: {len(contracts)} kept, 0 broken." in result.stdout


def test_every_include_module_is_classified_for_airflow() -> None:
    """A new module must be placed: either allowed to import Airflow or in the Airflow-free contract."""
    contracts = {c["id"]: c for c in pyproject()["tool"]["importlinter"]["contracts"]}
    allowed = [rule.split(" -> ")[0] for rule in contracts["airflow-importers"]["ignore_imports"]]
    free = contracts["airflow-free"]["source_modules"]
    unplaced = []
    for path in sorted((ROOT / "include").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if module.endswith("__init__") or module in ("include.seed",):  # seed: demo/test data writer
            continue
        if not any(fnmatch(module, p) or module.startswith(p + ".") for p in (*allowed, *free)):
            unplaced.append(module)
    assert not unplaced, f"add these to a contract in pyproject.toml [tool.importlinter]: {unplaced}"


def test_the_contracts_catch_a_forbidden_import(tmp_path: Path) -> None:
    """The contracts are not vacuous: a pure module that imports Airflow, or a cycle, breaks them."""
    import shutil

    copy = tmp_path / "proj"
    shutil.copytree(ROOT / "include", copy / "include")
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    with (copy / "include/core/units.py").open("a") as fh:
        fh.write("\nimport airflow  # noqa\n")
    with (copy / "include/retention/policy.py").open("a") as fh:
        fh.write("\nfrom include.retention import jobs  # noqa\n")
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-logo", "--no-cache"], cwd=copy, capture_output=True, text=True,
                            timeout=300, env={"PYTHONPATH": str(copy), "PATH": ""})
    assert result.returncode == 1, result.stdout[-3000:]
    assert "include.core.units -> airflow" in result.stdout
    assert "- .policy -> .jobs" in result.stdout  # the cycle, named by the acyclic contract


def test_plugins_import_only_include_ui() -> None:
    assert violations("plugins", PLUGIN_IMPORTS) == []


def test_dags_import_only_tasks_modules_and_shared_defaults() -> None:
    assert violations("dags", DAG_IMPORTS) == []
